//! A subset of GitHub's official OpenAPI description (`@octokit/openapi`,
//! `generated/api.github.com.json`) and a structural checker for JSON bodies.
//!
//! The subset (`openapi/github-subset.json`, produced by `openapi/extract.py`) holds, for every
//! GitHub route the simulator serves, the success status and the response and request-body
//! schemas with every `$ref` resolved. Routes are keyed by method and path template exactly as
//! in the spec, e.g. `("GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}")`.
//!
//! Checks are structural: required fields present, no fields outside the schema, JSON types,
//! `nullable`, `enum`, and `oneOf`/`anyOf` (valid when any variant is), recursively.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

const BUNDLED: &str = include_str!("../openapi/github-subset.json");

/// One route of the spec subset.
#[derive(Clone, Debug)]
pub struct RouteSpec {
    /// Success status (e.g. 200, 201, 204).
    pub status: u16,
    /// Response body schema; `None` for empty answers (204).
    pub response: Option<Value>,
    /// Request body schema, if the route takes one.
    pub request: Option<Value>,
}

/// A loaded spec subset.
#[derive(Clone, Debug)]
pub struct Spec {
    version: Option<String>,
    routes: BTreeMap<(String, String), RouteSpec>,
}

impl Spec {
    /// The subset shipped with this crate.
    pub fn bundled() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::from_json(BUNDLED).expect("bundled OpenAPI subset is valid"))
    }

    /// Parse a subset document as written by `extract.py`.
    pub fn from_json(text: &str) -> Result<Spec, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut routes = BTreeMap::new();
        let map = doc["routes"].as_object().ok_or("no \"routes\" object")?;
        for (key, r) in map {
            let (method, template) = key
                .split_once(' ')
                .ok_or_else(|| format!("bad route key {key}"))?;
            let opt = |v: &Value| (!v.is_null()).then(|| v.clone());
            routes.insert(
                (method.to_uppercase(), template.to_string()),
                RouteSpec {
                    status: r["status"].as_u64().unwrap_or(200) as u16,
                    response: opt(&r["response"]),
                    request: opt(&r["request"]),
                },
            );
        }
        Ok(Spec {
            version: doc["source"]["version"].as_str().map(str::to_string),
            routes,
        })
    }

    /// Version of the `@octokit/openapi` package the subset came from.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// All (method, template) pairs.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes.keys().map(|(m, t)| (m.as_str(), t.as_str()))
    }

    /// The route `method template`, if in the subset.
    pub fn route(&self, method: &str, template: &str) -> Option<&RouteSpec> {
        self.routes
            .get(&(method.to_uppercase(), template.to_string()))
    }

    /// Whether the subset has `method template`.
    pub fn has_route(&self, method: &str, template: &str) -> bool {
        self.route(method, template).is_some()
    }

    /// Problems of `body` as the success response of `method template` (empty = conforms).
    pub fn check_response(&self, method: &str, template: &str, body: &Value) -> Vec<String> {
        match self.route(method, template) {
            None => vec![format!(
                "{method} {template}: route not in the OpenAPI description"
            )],
            Some(RouteSpec { response: None, .. }) if body.is_null() => Vec::new(),
            Some(RouteSpec { response: None, .. }) => {
                vec![format!("{method} {template}: expected no body")]
            }
            Some(RouteSpec {
                response: Some(s), ..
            }) => check_schema(s, body),
        }
    }

    /// Problems of `body` as the request body of `method template`.
    pub fn check_request(&self, method: &str, template: &str, body: &Value) -> Vec<String> {
        match self.route(method, template) {
            None => vec![format!(
                "{method} {template}: route not in the OpenAPI description"
            )],
            Some(RouteSpec { request: None, .. }) => {
                vec![format!("{method} {template}: takes no request body")]
            }
            Some(RouteSpec {
                request: Some(s), ..
            }) => check_schema(s, body),
        }
    }

    /// Whether the response of `method template` has the field at `path`
    /// (`runners[].labels[].name`: `[]` steps into array items).
    pub fn has_response_field(&self, method: &str, template: &str, path: &str) -> bool {
        self.route(method, template)
            .and_then(|r| r.response.as_ref())
            .is_some_and(|s| schema_has_field(s, path))
    }

    /// Whether the request body of `method template` has the field at `path`.
    pub fn has_request_field(&self, method: &str, template: &str, path: &str) -> bool {
        self.route(method, template)
            .and_then(|r| r.request.as_ref())
            .is_some_and(|s| schema_has_field(s, path))
    }

    /// The template matching a concrete path (an `/api/v3` prefix and query are ignored),
    /// preferring the template with most literal segments.
    pub fn match_path(&self, method: &str, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or(path);
        let path = path
            .strip_prefix("/api/v3")
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path);
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = method.to_uppercase();
        self.routes
            .keys()
            .filter(|(m, _)| *m == method)
            .filter_map(|(_, t)| {
                let tsegs: Vec<&str> = t.split('/').filter(|s| !s.is_empty()).collect();
                // A trailing `{ref}` takes the rest of the path (`heads/feature/x`).
                let rest_ref = tsegs.last() == Some(&"{ref}") && segs.len() > tsegs.len();
                if tsegs.len() != segs.len() && !rest_ref {
                    return None;
                }
                let mut literal = 0;
                for (ts, s) in tsegs.iter().zip(&segs) {
                    if ts.starts_with('{') && ts.ends_with('}') {
                        continue;
                    }
                    if ts != s {
                        return None;
                    }
                    literal += 1;
                }
                Some((literal, t.as_str()))
            })
            .max_by_key(|(l, _)| *l)
            .map(|(_, t)| t)
    }
}

/// The success response of `method template` for `data`: every field `data` has is kept
/// (recursively shaped by the schema), and every required field it lacks gets a neutral value
/// of its type (`null` when nullable, the first `enum` value, `""`, `0`, `false`, `[]`, or an
/// object built the same way). The simulator answers GitHub's large objects (pull requests,
/// check runs) this way, so they conform to the spec while carrying only what it simulates.
pub fn instance(method: &str, template: &str, data: Value) -> Value {
    match Spec::bundled()
        .route(method, template)
        .and_then(|r| r.response.as_ref())
    {
        Some(schema) => shape(schema, data),
        None => data,
    }
}

fn shape(schema: &Value, data: Value) -> Value {
    let schema = variants(schema)
        .and_then(|v| {
            v.iter()
                .find(|s| check_schema(s, &data).is_empty())
                .or(v.first())
        })
        .unwrap_or(schema);
    match data {
        Value::Null if schema["nullable"] == Value::Bool(true) => Value::Null,
        Value::Null => neutral(schema),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| shape(&schema["items"], i))
                .collect(),
        ),
        Value::Object(mut map)
            if schema["type"] == "object" || schema.get("properties").is_some() =>
        {
            let props = schema["properties"].as_object();
            for (k, v) in map.iter_mut() {
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    *v = shape(p, v.take());
                }
            }
            for req in schema["required"].as_array().into_iter().flatten() {
                if let Some(k) = req.as_str() {
                    if !map.contains_key(k) {
                        let p = props.and_then(|p| p.get(k)).cloned().unwrap_or(Value::Null);
                        map.insert(k.to_string(), neutral(&p));
                    }
                }
            }
            Value::Object(map)
        }
        other => other,
    }
}

fn neutral(schema: &Value) -> Value {
    if let Some(first) = variants(schema).and_then(|v| v.first()) {
        return neutral(first);
    }
    if schema["nullable"] == Value::Bool(true) {
        return Value::Null;
    }
    if let Some(e) = schema["enum"].as_array().and_then(|e| e.first()) {
        return e.clone();
    }
    match schema["type"].as_str() {
        Some("string") => Value::String(String::new()),
        Some("integer" | "number") => Value::from(0),
        Some("boolean") => Value::Bool(false),
        Some("array") => Value::Array(Vec::new()),
        _ => shape(schema, Value::Object(Default::default())),
    }
}

/// [`Spec::has_route`] on the bundled subset.
pub fn has_route(method: &str, template: &str) -> bool {
    Spec::bundled().has_route(method, template)
}

/// [`Spec::check_response`] on the bundled subset.
pub fn check_response(method: &str, template: &str, body: &Value) -> Vec<String> {
    Spec::bundled().check_response(method, template, body)
}

/// [`Spec::check_request`] on the bundled subset.
pub fn check_request(method: &str, template: &str, body: &Value) -> Vec<String> {
    Spec::bundled().check_request(method, template, body)
}

/// [`Spec::match_path`] on the bundled subset.
pub fn match_path(method: &str, path: &str) -> Option<&'static str> {
    Spec::bundled().match_path(method, path)
}

/// Problems of `value` against `schema` (empty = conforms). Messages start with a JSON path
/// such as `$.runners[0].labels[1].name`.
pub fn check_schema(schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check(schema, value, "$", &mut problems);
    problems
}

fn variants(schema: &Value) -> Option<&Vec<Value>> {
    schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
        || schema.get("type").and_then(Value::as_str) == Some("null")
        || variants(schema).is_some_and(|v| v.iter().any(nullable))
}

fn check(schema: &Value, value: &Value, at: &str, p: &mut Vec<String>) {
    if value.is_null() {
        if !nullable(schema) {
            p.push(format!("{at}: null, but the schema does not allow null"));
        }
        return;
    }
    if let Some(vs) = variants(schema) {
        let results: Vec<Vec<String>> = vs
            .iter()
            .map(|s| {
                let mut q = Vec::new();
                check(s, value, at, &mut q);
                q
            })
            .collect();
        if !results.iter().any(Vec::is_empty) {
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                p.extend(best);
            }
        }
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            p.push(format!(
                "{at}: {value} is not one of {}",
                Value::Array(e.clone())
            ));
        }
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let ty = ty.or_else(|| schema.get("properties").map(|_| "object"));
    match ty {
        Some("object") => check_object(schema, value, at, p),
        Some("array") => match value.as_array() {
            Some(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        check(item_schema, item, &format!("{at}[{i}]"), p);
                    }
                }
            }
            None => p.push(format!("{at}: expected an array, got {value}")),
        },
        Some("string") if !value.is_string() => {
            p.push(format!("{at}: expected a string, got {value}"))
        }
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            p.push(format!("{at}: expected an integer, got {value}"))
        }
        Some("number") if !value.is_number() => {
            p.push(format!("{at}: expected a number, got {value}"))
        }
        Some("boolean") if !value.is_boolean() => {
            p.push(format!("{at}: expected a boolean, got {value}"))
        }
        _ => {}
    }
}

fn check_object(schema: &Value, value: &Value, at: &str, p: &mut Vec<String>) {
    let Some(obj) = value.as_object() else {
        p.push(format!("{at}: expected an object, got {value}"));
        return;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = req.as_str() {
            if !obj.contains_key(k) {
                p.push(format!("{at}.{k}: missing required field"));
            }
        }
    }
    for (k, v) in obj {
        let here = format!("{at}.{k}");
        match (props.and_then(|m| m.get(k)), additional) {
            (Some(s), _) => check(s, v, &here, p),
            (None, Some(Value::Object(s))) => check(&Value::Object(s.clone()), v, &here, p),
            (None, Some(Value::Bool(true))) => {}
            (None, _) if props.is_none_or(|m| m.is_empty()) && additional.is_none() => {}
            (None, _) => p.push(format!("{here}: field not in the schema")),
        }
    }
}

/// Whether `schema` has the field at `path` (`a.b[].c`; `[]` steps into array items).
pub fn schema_has_field(schema: &Value, path: &str) -> bool {
    fn walk(schema: &Value, segs: &[&str]) -> bool {
        let Some((first, rest)) = segs.split_first() else {
            return true;
        };
        if let Some(vs) = variants(schema) {
            return vs.iter().any(|v| walk(v, segs));
        }
        let (name, into_items) = match first.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (*first, false),
        };
        let mut s = if name.is_empty() {
            schema
        } else {
            match schema.get("properties").and_then(|p| p.get(name)) {
                Some(s) => s,
                None => return false,
            }
        };
        if into_items {
            if let Some(vs) = variants(s) {
                return vs
                    .iter()
                    .any(|v| v.get("items").is_some_and(|i| walk(i, rest)));
            }
            match s.get("items") {
                Some(i) => s = i,
                None => return false,
            }
        }
        walk(s, rest)
    }
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    walk(schema, &segs)
}
