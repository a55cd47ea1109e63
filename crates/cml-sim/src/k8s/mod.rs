//! A simulated Kubernetes API server (plain HTTP on 127.0.0.1), checked against Kubernetes'
//! strict JSON schemas (see [`contract`]).

pub mod contract;
