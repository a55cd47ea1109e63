//! What the client tests share: a simulator, a runtime, a quick retry policy.

#![allow(dead_code)]

use cml_forge::RetryPolicy;
use cml_sim::{SimConfig, SimServer};
use std::path::PathBuf;
use std::time::Duration;

/// A simulator configured by `configure`; its agent executable is not used by these tests.
pub fn sim_with(configure: impl FnOnce(&mut SimConfig)) -> SimServer {
    let mut cfg = SimConfig::new(PathBuf::from("/bin/false"));
    configure(&mut cfg);
    SimServer::start(cfg).unwrap()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The default retries with a short first backoff.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}
