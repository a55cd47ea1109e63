//! The Azure Resource Manager contract: the operations the simulator serves and every model
//! they reach, extracted from Microsoft's generated SDK models (PyPI `azure-mgmt-compute`,
//! `azure-mgmt-network`, `azure-mgmt-resource`, `azure-mgmt-authorization`, versions in
//! [`Contract::sources`]), and a structural checker of bodies against it.
//!
//! The subset (`azure/azure-subset.json`, written by `azure/extract.py`) keeps, per operation,
//! its HTTP method, path template, pinned `api-version`, and request/response model; per model,
//! its JSON fields with their type (string, integer, number, boolean, model, array, map, any),
//! whether the service sets it (`readOnly`) and whether a create must carry it (`required`).
//!
//! Two strictness levels:
//! - [`Level::Contract`] checks what the simulator answers and what a client should send: no
//!   unknown field, JSON types, required fields; in a request also no read-only field.
//! - [`Level::Server`] is what Resource Manager refuses with HTTP 400: unknown fields, wrong JSON
//!   types and missing required fields; read-only fields and `null` are ignored, as ARM does.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

const BUNDLED: &str = include_str!("../../azure/azure-subset.json");

/// How strictly a body is checked (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Contract,
    Server,
}

/// One operation of the subset.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `virtualMachines.createOrUpdate`.
    pub id: String,
    pub method: String,
    /// `/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/...`.
    pub path: String,
    /// The `api-version` the pinned SDK sends and the simulator requires.
    pub api_version: String,
    pub request: Option<String>,
    pub response: Option<String>,
}

/// One problem found in a body: where (`$.properties.osProfile`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// JSON path from the root, `properties.osProfile.adminUsername` (empty: the root).
    pub path: String,
    /// The model the field was looked up in (`compute.OSProfile`).
    pub model: String,
    pub kind: ProblemKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    UnknownField,
    WrongType { expected: &'static str },
    MissingRequired,
    ReadOnlyInRequest,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.path.is_empty() {
            "$"
        } else {
            &self.path
        };
        match &self.kind {
            ProblemKind::UnknownField => write!(f, "{at}: field not in model {}", self.model),
            ProblemKind::WrongType { expected } => write!(f, "{at}: expected {expected}"),
            ProblemKind::MissingRequired => {
                write!(f, "{at}: missing required field of {}", self.model)
            }
            ProblemKind::ReadOnlyInRequest => {
                write!(f, "{at}: read-only field of {} in a request", self.model)
            }
        }
    }
}

/// A loaded contract subset.
#[derive(Debug)]
pub struct Contract {
    sources: BTreeMap<String, String>,
    operations: BTreeMap<String, Operation>,
    models: Map<String, Value>,
}

impl Contract {
    /// The subset shipped with this crate.
    pub fn bundled() -> &'static Contract {
        static C: OnceLock<Contract> = OnceLock::new();
        C.get_or_init(|| Contract::from_json(BUNDLED).expect("bundled Azure subset is valid"))
    }

    /// Parses a subset as written by `extract.py`.
    pub fn from_json(text: &str) -> Result<Contract, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut operations = BTreeMap::new();
        for (id, op) in doc["operations"]
            .as_object()
            .ok_or("no \"operations\" object")?
        {
            let s = |k: &str| op[k].as_str().map(str::to_string);
            operations.insert(
                id.clone(),
                Operation {
                    id: id.clone(),
                    method: s("method").ok_or(format!("{id}: no method"))?,
                    path: s("path").ok_or(format!("{id}: no path"))?,
                    api_version: s("apiVersion").ok_or(format!("{id}: no apiVersion"))?,
                    request: s("request"),
                    response: s("response"),
                },
            );
        }
        let models = doc["models"]
            .as_object()
            .cloned()
            .ok_or("no \"models\" object")?;
        let sources = doc["source"]
            .as_object()
            .ok_or("no \"source\" object")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let c = Contract {
            sources,
            operations,
            models,
        };
        for op in c.operations.values() {
            for m in [&op.request, &op.response].into_iter().flatten() {
                if !c.models.contains_key(m) {
                    return Err(format!("{}: model {m} is not in the subset", op.id));
                }
            }
        }
        Ok(c)
    }

    /// PyPI package → version the subset was extracted from.
    pub fn sources(&self) -> &BTreeMap<String, String> {
        &self.sources
    }

    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values()
    }

    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.operations.get(id)
    }

    /// The pinned `api-version` of operation `id` (panics on an id not in the subset: a
    /// simulator bug).
    pub fn api_version(&self, id: &str) -> &str {
        &self
            .operations
            .get(id)
            .unwrap_or_else(|| panic!("operation {id} is not in the Azure subset"))
            .api_version
    }

    pub fn model(&self, name: &str) -> Option<&Value> {
        self.models.get(name)
    }

    /// Whether `model` has the dotted field path `path` (`properties.osProfile.customData`).
    pub fn has_field(&self, model: &str, path: &str) -> bool {
        let mut cur = model.to_string();
        for part in path.split('.') {
            let Some(field) = self.models.get(&cur).and_then(|m| m["fields"].get(part)) else {
                return false;
            };
            let mut t = &field["type"];
            while t["kind"] == "array" || t["kind"] == "map" {
                t = if t["kind"] == "array" {
                    &t["items"]
                } else {
                    &t["values"]
                };
            }
            cur = t["model"].as_str().unwrap_or_default().to_string();
        }
        true
    }

    /// Matches `method` and `path` to an operation, answering its id and path parameters.
    /// Literal segments compare case-insensitively, as ARM's do.
    pub fn match_path(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&Operation, Vec<(String, String)>)> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        'ops: for op in self.operations.values() {
            if !op.method.eq_ignore_ascii_case(method) {
                continue;
            }
            let tmpl: Vec<&str> = op.path.split('/').collect();
            if tmpl.get(1) == Some(&"{scope}") {
                // `/{scope}/providers/...`: the scope is any number of segments.
                let rest = &tmpl[2..];
                if segs.len() < rest.len() + 2 {
                    continue;
                }
                let split = segs.len() - rest.len();
                let mut params = vec![("scope".to_string(), segs[1..split].join("/"))];
                for (t, s) in rest.iter().zip(&segs[split..]) {
                    if !seg_matches(t, s, &mut params) {
                        continue 'ops;
                    }
                }
                return Some((op, params));
            }
            if tmpl.len() != segs.len() {
                continue;
            }
            let mut params = Vec::new();
            for (t, s) in tmpl.iter().zip(&segs) {
                if !seg_matches(t, s, &mut params) {
                    continue 'ops;
                }
            }
            return Some((op, params));
        }
        None
    }

    /// Problems of a request body of operation `id` at `level`.
    pub fn check_request(&self, id: &str, body: &Value, level: Level) -> Vec<Problem> {
        let Some(model) = self.operations.get(id).and_then(|o| o.request.clone()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        self.walk(&model, body, "", true, level, &mut out);
        out
    }

    /// Problems of an answer of operation `id` (always [`Level::Contract`]).
    pub fn check_response(&self, id: &str, body: &Value) -> Vec<Problem> {
        let Some(model) = self.operations.get(id).and_then(|o| o.response.clone()) else {
            return Vec::new();
        };
        self.check_model(&model, body)
    }

    /// Problems of `value` as an answer of model `model` (`resource.CloudError`).
    pub fn check_model(&self, model: &str, value: &Value) -> Vec<Problem> {
        let mut out = Vec::new();
        self.walk(model, value, "", false, Level::Contract, &mut out);
        out
    }

    fn walk(
        &self,
        model: &str,
        v: &Value,
        at: &str,
        request: bool,
        level: Level,
        out: &mut Vec<Problem>,
    ) {
        let Some(obj) = v.as_object() else {
            out.push(Problem {
                path: at.into(),
                model: model.into(),
                kind: ProblemKind::WrongType { expected: "object" },
            });
            return;
        };
        let fields = self
            .models
            .get(model)
            .and_then(|m| m["fields"].as_object())
            .cloned()
            .unwrap_or_default();
        for (k, val) in obj {
            let path = join(at, k);
            let Some(f) = fields.get(k) else {
                out.push(Problem {
                    path,
                    model: model.into(),
                    kind: ProblemKind::UnknownField,
                });
                continue;
            };
            let read_only = f["readOnly"].as_bool().unwrap_or(false);
            if request && read_only {
                if level == Level::Contract {
                    out.push(Problem {
                        path,
                        model: model.into(),
                        kind: ProblemKind::ReadOnlyInRequest,
                    });
                }
                continue;
            }
            if val.is_null() && level == Level::Server {
                continue;
            }
            self.check_type(model, &f["type"], val, &path, request, level, out);
        }
        for (k, f) in &fields {
            let required = f["required"].as_bool().unwrap_or(false);
            let read_only = f["readOnly"].as_bool().unwrap_or(false);
            if required && !(request && read_only) && obj.get(k).is_none_or(Value::is_null) {
                out.push(Problem {
                    path: join(at, k),
                    model: model.into(),
                    kind: ProblemKind::MissingRequired,
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_type(
        &self,
        model: &str,
        t: &Value,
        v: &Value,
        at: &str,
        request: bool,
        level: Level,
        out: &mut Vec<Problem>,
    ) {
        let wrong = |expected: &'static str, out: &mut Vec<Problem>| {
            out.push(Problem {
                path: at.into(),
                model: model.into(),
                kind: ProblemKind::WrongType { expected },
            })
        };
        match t["kind"].as_str().unwrap_or("any") {
            "string" if !v.is_string() => wrong("a string", out),
            "integer" if !(v.is_i64() || v.is_u64()) => wrong("an integer", out),
            "number" if !v.is_number() => wrong("a number", out),
            "boolean" if !v.is_boolean() => wrong("a boolean", out),
            "model" => {
                let m = t["model"].as_str().unwrap_or_default();
                self.walk(m, v, at, request, level, out);
            }
            "array" => match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{at}[{i}]");
                        self.check_type(model, &t["items"], item, &p, request, level, out);
                    }
                }
                None => wrong("an array", out),
            },
            "map" => match v.as_object() {
                Some(m) => {
                    for (k, item) in m {
                        let p = join(at, k);
                        self.check_type(model, &t["values"], item, &p, request, level, out);
                    }
                }
                None => wrong("an object", out),
            },
            _ => {}
        }
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn seg_matches(t: &str, s: &str, params: &mut Vec<(String, String)>) -> bool {
    if let Some(name) = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        if s.is_empty() {
            return false;
        }
        params.push((name.to_string(), percent_decode(s)));
        true
    } else {
        t.eq_ignore_ascii_case(s)
    }
}

/// `%XX` escapes of a path segment or query value decoded (`+` stays).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && s.is_char_boundary(i + 3) {
            if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=%20` → `[("a","1"),("b"," ")]` (`+` is a space, as in forms).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}
