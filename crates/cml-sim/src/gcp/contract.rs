//! The Compute Engine v1 contract: the subset of Google's discovery document (`compute.v1.json`
//! from the PyPI package `google-api-python-client`) for the methods the simulator serves, and a
//! structural checker of paths, query strings, request bodies and answers against it.
//!
//! The subset (`gcp/compute-subset.json`, written by `gcp/extract.py`) keeps, per method, its
//! HTTP method, path template and parameters, the request and response schema names, and every
//! schema they reach, in the discovery format (`$ref` by schema name, `properties`,
//! `additionalProperties`, `items`, `type`, `format`, `enum`, `pattern`) plus two derived marks:
//! `outputOnly` (the server sets the field) and `requiredFor` (the methods that need the field).
//!
//! Two strictness levels:
//! - [`Level::Contract`] is the discovery document taken literally, for checking what a client
//!   sends and what the simulator answers: unknown fields, JSON types (`int64`/`uint64` are JSON
//!   strings of digits), `enum`, `pattern` (whole value), required fields, no `null`, and in a
//!   request no output-only field.
//! - [`Level::Server`] is what Compute Engine's front end refuses with HTTP 400: unknown fields,
//!   wrong JSON types (integers may come as numbers or strings, as in proto3 JSON; `null` means
//!   "unset"), `enum`, `pattern` and required fields. Output-only fields are ignored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

const BUNDLED: &str = include_str!("../../gcp/compute-subset.json");

/// How strictly a body is checked (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Contract,
    Server,
}

/// One method of the subset.
#[derive(Clone, Debug)]
pub struct Method {
    /// Discovery id, e.g. `compute.instances.insert`.
    pub id: String,
    /// `GET`, `POST` or `DELETE`.
    pub http_method: String,
    /// Path template relative to the service path, e.g.
    /// `projects/{project}/zones/{zone}/instances/{instance}`.
    pub path: String,
    /// Parameters by name (discovery `parameters` entries).
    pub parameters: Map<String, Value>,
    /// Request schema name (`Instance`), if the method takes a body.
    pub request: Option<String>,
    /// Response schema name (`Operation`).
    pub response: Option<String>,
}

/// A loaded contract subset.
#[derive(Debug)]
pub struct Contract {
    source: Value,
    parameters: Map<String, Value>,
    methods: BTreeMap<String, Method>,
    schemas: Map<String, Value>,
}

impl Contract {
    /// The subset shipped with this crate.
    pub fn bundled() -> &'static Contract {
        static C: OnceLock<Contract> = OnceLock::new();
        C.get_or_init(|| Contract::from_json(BUNDLED).expect("bundled Compute subset is valid"))
    }

    /// Parses a subset as written by `extract.py`.
    pub fn from_json(text: &str) -> Result<Contract, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let obj = |k: &str| {
            doc[k]
                .as_object()
                .cloned()
                .ok_or_else(|| format!("no {k:?} object"))
        };
        let mut methods = BTreeMap::new();
        for (id, m) in obj("methods")? {
            let s = |k: &str| m[k].as_str().map(str::to_string);
            methods.insert(
                id.clone(),
                Method {
                    id: id.clone(),
                    http_method: s("httpMethod").ok_or_else(|| format!("{id}: no httpMethod"))?,
                    path: s("path").ok_or_else(|| format!("{id}: no path"))?,
                    parameters: m["parameters"].as_object().cloned().unwrap_or_default(),
                    request: s("request"),
                    response: s("response"),
                },
            );
        }
        Ok(Contract {
            source: doc["source"].clone(),
            parameters: obj("parameters")?,
            methods,
            schemas: obj("schemas")?,
        })
    }

    /// Version of `google-api-python-client` the subset came from.
    pub fn version(&self) -> Option<&str> {
        self.source["version"].as_str()
    }

    /// Revision of the discovery document (`20261106`).
    pub fn revision(&self) -> Option<&str> {
        self.source["revision"].as_str()
    }

    /// Every method, by id.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.methods.values()
    }

    pub fn method(&self, id: &str) -> Option<&Method> {
        self.methods.get(id)
    }

    /// A schema by name (`Instance`).
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.schemas.get(name)
    }

    /// The method serving `http_method path`, with its path parameters (percent-decoded).
    /// `path` may start with `/compute/v1/` or be relative to it; a query is ignored.
    pub fn match_path(
        &self,
        http_method: &str,
        path: &str,
    ) -> Option<(&Method, BTreeMap<String, String>)> {
        let path = path.split('?').next().unwrap_or(path);
        let path = path.trim_start_matches('/');
        let path = path.strip_prefix("compute/v1/").unwrap_or(path);
        let segs: Vec<&str> = path.split('/').collect();
        self.methods
            .values()
            .filter(|m| m.http_method.eq_ignore_ascii_case(http_method))
            .find_map(|m| {
                let t: Vec<&str> = m.path.split('/').collect();
                if t.len() != segs.len() {
                    return None;
                }
                let mut params = BTreeMap::new();
                for (ts, s) in t.iter().zip(&segs) {
                    match ts.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
                        Some(name) if !s.is_empty() => {
                            params.insert(name.to_string(), crate::util::percent_decode(s));
                        }
                        Some(_) => return None,
                        None if ts == s => {}
                        None => return None,
                    }
                }
                Some((m, params))
            })
    }

    /// Problems of the path parameters of `method` (each must match its `pattern`).
    pub fn check_path_params(
        &self,
        method: &str,
        params: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let Some(m) = self.method(method) else {
            return vec![format!("{method}: not in the Compute Engine contract")];
        };
        let mut out = Vec::new();
        for (name, spec) in &m.parameters {
            if spec["location"] != "path" {
                continue;
            }
            match params.get(name) {
                None => out.push(format!("path parameter {name}: missing")),
                Some(v) => {
                    if let Some(p) = spec["pattern"].as_str() {
                        if !full_match(p, v) {
                            out.push(format!("path parameter {name}: {v:?} does not match '{p}'"));
                        }
                    }
                }
            }
        }
        out
    }

    /// Problems of a query string (`a=1&b=x`, undecoded) for `method`: every parameter must be
    /// the method's or a standard one, of its type (`integer`, `boolean`) and `enum`.
    pub fn check_query(&self, method: &str, query: &str) -> Vec<String> {
        let Some(m) = self.method(method) else {
            return vec![format!("{method}: not in the Compute Engine contract")];
        };
        let mut out = Vec::new();
        for (k, v) in parse_query(query) {
            let spec = m
                .parameters
                .get(&k)
                .filter(|s| s["location"] == "query")
                .or_else(|| self.parameters.get(&k));
            let Some(spec) = spec else {
                out.push(format!("query parameter {k}: not a parameter of {method}"));
                continue;
            };
            let ok = match spec["type"].as_str() {
                Some("integer") => v.parse::<i64>().is_ok(),
                Some("boolean") => v == "true" || v == "false",
                _ => true,
            };
            if !ok {
                out.push(format!(
                    "query parameter {k}: {v:?} is not a {}",
                    spec["type"].as_str().unwrap_or("value")
                ));
            }
            if let Some(e) = spec["enum"].as_array() {
                if !e.iter().any(|x| x.as_str() == Some(v.as_str())) {
                    out.push(format!(
                        "query parameter {k}: {v:?} is not one of {}",
                        Value::Array(e.clone())
                    ));
                }
            }
        }
        out
    }

    /// Problems of `body` as the request body of `method` (empty = conforms).
    pub fn check_request(&self, method: &str, body: &Value, level: Level) -> Vec<String> {
        match self.method(method) {
            None => vec![format!("{method}: not in the Compute Engine contract")],
            Some(Method { request: None, .. }) => vec![format!("{method}: takes no request body")],
            Some(Method {
                request: Some(s), ..
            }) => {
                let ctx = Ctx {
                    contract: self,
                    method,
                    request: true,
                    level,
                };
                let mut p = Vec::new();
                ctx.check(&Value::from(json_ref(s)), body, "$", &mut p);
                p
            }
        }
    }

    /// Problems of `body` as the answer of `method`, checked at [`Level::Contract`].
    pub fn check_response(&self, method: &str, body: &Value) -> Vec<String> {
        match self.method(method) {
            None => vec![format!("{method}: not in the Compute Engine contract")],
            Some(Method { response: None, .. }) => vec![format!("{method}: has no answer body")],
            Some(Method {
                response: Some(s), ..
            }) => {
                let ctx = Ctx {
                    contract: self,
                    method,
                    request: false,
                    level: Level::Contract,
                };
                let mut p = Vec::new();
                ctx.check(&Value::from(json_ref(s)), body, "$", &mut p);
                p
            }
        }
    }

    /// Problems of `value` against the named schema as an answer (e.g. one `Instance`).
    pub fn check_schema(&self, schema: &str, value: &Value) -> Vec<String> {
        let ctx = Ctx {
            contract: self,
            method: "",
            request: false,
            level: Level::Contract,
        };
        let mut p = Vec::new();
        ctx.check(&Value::from(json_ref(schema)), value, "$", &mut p);
        p
    }

    /// Whether the named schema has the field at `path` (`scheduling.maxRunDuration.seconds`;
    /// `disks[].initializeParams.labels`: `[]` steps into array items, a map's values are
    /// reached by any key segment).
    pub fn has_field(&self, schema: &str, path: &str) -> bool {
        let mut node = Value::Object(json_ref(schema));
        for seg in path.split('.').filter(|s| !s.is_empty()) {
            let (name, items) = match seg.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (seg, false),
            };
            let resolved = self.resolve(&node).clone();
            let next = match resolved.get("properties").and_then(|p| p.get(name)) {
                Some(n) => n.clone(),
                None => match resolved.get("additionalProperties") {
                    Some(a) => a.clone(),
                    None => return false,
                },
            };
            node = if items {
                match self.resolve(&next).get("items") {
                    Some(i) => i.clone(),
                    None => return false,
                }
            } else {
                next
            };
        }
        true
    }

    fn resolve<'a>(&'a self, node: &'a Value) -> &'a Value {
        let mut n = node;
        for _ in 0..16 {
            match n.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.schemas.get(r) {
                    Some(s) => n = s,
                    None => return n,
                },
                None => return n,
            }
        }
        n
    }
}

fn json_ref(name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("$ref".into(), Value::String(name.into()));
    m
}

/// `(key, value)` pairs of an undecoded query string, percent-decoded.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                crate::util::percent_decode(k),
                crate::util::percent_decode(v),
            )
        })
        .collect()
}

/// Whether the whole of `value` matches the discovery `pattern`.
pub fn full_match(pattern: &str, value: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex_lite::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let Ok(mut c) = cache.lock() else {
        return false;
    };
    let re = c
        .entry(pattern.to_string())
        .or_insert_with(|| regex_lite::Regex::new(&format!("^(?:{pattern})$")).ok());
    re.as_ref().is_some_and(|r| r.is_match(value))
}

struct Ctx<'a> {
    contract: &'a Contract,
    method: &'a str,
    request: bool,
    level: Level,
}

impl Ctx<'_> {
    fn check(&self, node: &Value, value: &Value, at: &str, p: &mut Vec<String>) {
        if self.request && self.level == Level::Contract && node["outputOnly"] == true {
            p.push(format!("{at}: output-only field set in a request"));
        }
        let node = self.contract.resolve(node);
        if value.is_null() {
            if !(self.request && self.level == Level::Server) {
                p.push(format!(
                    "{at}: null (Compute Engine never sends null; leave the field out)"
                ));
            }
            return;
        }
        match node["type"].as_str() {
            Some("object") => self.object(node, value, at, p),
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check(&node["items"], item, &format!("{at}[{i}]"), p);
                    }
                }
                None => p.push(format!("{at}: expected an array, got {value}")),
            },
            Some("string") => self.string(node, value, at, p),
            Some("integer") => self.integer(node, value, at, p),
            Some("number") => {
                if !value.is_number() {
                    p.push(format!("{at}: expected a number, got {value}"));
                }
            }
            Some("boolean") => {
                if !value.is_boolean() {
                    p.push(format!("{at}: expected a boolean, got {value}"));
                }
            }
            Some("any") | None => {}
            Some(other) => p.push(format!("{at}: unknown schema type {other}")),
        }
    }

    fn object(&self, node: &Value, value: &Value, at: &str, p: &mut Vec<String>) {
        let Some(obj) = value.as_object() else {
            p.push(format!("{at}: expected an object, got {value}"));
            return;
        };
        let props = node.get("properties").and_then(Value::as_object);
        let additional = node.get("additionalProperties");
        if self.request {
            for (k, s) in props.into_iter().flatten() {
                let required = s["requiredFor"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|m| m == self.method));
                if required && obj.get(k).is_none_or(Value::is_null) {
                    p.push(format!("{at}.{k}: missing required field"));
                }
            }
        }
        for (k, v) in obj {
            let here = format!("{at}.{k}");
            match (props.and_then(|m| m.get(k)), additional) {
                (Some(s), _) => self.check(s, v, &here, p),
                (None, Some(a)) => self.check(a, v, &here, p),
                (None, None) if props.is_none() => {} // a free-form object
                (None, None) => p.push(format!("{here}: field not in the schema")),
            }
        }
    }

    fn string(&self, node: &Value, value: &Value, at: &str, p: &mut Vec<String>) {
        let format = node["format"].as_str();
        let s = match value {
            Value::String(s) => s.clone(),
            Value::Number(n)
                if self.level == Level::Server
                    && matches!(format, Some("int64" | "uint64"))
                    && (n.is_i64() || n.is_u64()) =>
            {
                n.to_string()
            }
            _ => {
                p.push(format!("{at}: expected a string, got {value}"));
                return;
            }
        };
        match format {
            Some("int64") if s.parse::<i64>().is_err() => {
                p.push(format!("{at}: {s:?} is not an int64 (a string of digits)"))
            }
            Some("uint64") if s.parse::<u64>().is_err() => {
                p.push(format!("{at}: {s:?} is not a uint64 (a string of digits)"))
            }
            Some("byte") => {
                use base64::Engine;
                let std = base64::engine::general_purpose::STANDARD.decode(&s).is_ok();
                let url = base64::engine::general_purpose::URL_SAFE.decode(&s).is_ok();
                if !(std || url) {
                    p.push(format!("{at}: {s:?} is not base64"));
                }
            }
            _ => {}
        }
        if let Some(e) = node["enum"].as_array() {
            if !e.iter().any(|x| x.as_str() == Some(s.as_str())) {
                p.push(format!(
                    "{at}: {s:?} is not one of {}",
                    Value::Array(e.clone())
                ));
            }
        }
        if let Some(pat) = node["pattern"].as_str() {
            if !full_match(pat, &s) {
                p.push(format!("{at}: {s:?} does not match '{pat}'"));
            }
        }
    }

    fn integer(&self, node: &Value, value: &Value, at: &str, p: &mut Vec<String>) {
        let n: Option<i128> = match value {
            Value::Number(n) if n.is_i64() => n.as_i64().map(i128::from),
            Value::Number(n) if n.is_u64() => n.as_u64().map(i128::from),
            Value::String(s) if self.level == Level::Server => s.parse().ok(),
            _ => None,
        };
        let Some(n) = n else {
            p.push(format!("{at}: expected an integer, got {value}"));
            return;
        };
        let (lo, hi): (i128, i128) = match node["format"].as_str() {
            Some("int32") => (i32::MIN.into(), i32::MAX.into()),
            Some("uint32") => (0, u32::MAX.into()),
            _ => (i64::MIN.into(), u64::MAX.into()),
        };
        if n < lo || n > hi {
            p.push(format!(
                "{at}: {n} is out of range for {}",
                node["format"].as_str().unwrap_or("integer")
            ));
        }
    }
}
