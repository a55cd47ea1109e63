//! Kubernetes' strict JSON schemas (as PyPI `kubernetes-validate` ships them) for the kinds the
//! simulated API server serves, and a checker for them.
//!
//! The committed subsets (`k8s/k8s-1.NN-subset.json`, made by `k8s/extract.py`) hold one root
//! schema per `apiVersion/Kind` and the definitions they reference. Every object schema is
//! strict (`additionalProperties: false`), so a misspelled field is a violation, as it is for an
//! API server asked for `fieldValidation=Strict`.
//!
//! Supported keywords: `type` (a name or a list of names; `null` accepts JSON null), `properties`,
//! `additionalProperties` (false or a schema), `items`, `required`, `enum`, `format` (`int32`
//! and `int64` ranges), `oneOf`, `$ref` (`#/defs/NAME`). Any other keyword in a subset is refused
//! when the subset is loaded, so a checker that silently accepts everything cannot ship.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The Kubernetes versions whose schemas are bundled: the oldest and the newest supported.
pub const KUBERNETES_VERSIONS: &[&str] = &["1.29", "1.37"];

/// The `kubernetes-validate` release the subsets were extracted from.
pub const KUBERNETES_VALIDATE: &str = "1.37.0";

const SUBSET_1_29: &str = include_str!("../../k8s/k8s-1.29-subset.json");
const SUBSET_1_37: &str = include_str!("../../k8s/k8s-1.37-subset.json");

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "enum",
    "format",
    "oneOf",
    "$ref",
];

/// What is wrong with an object, and where (`spec.template.spec.containers[0].imag`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A field the schema does not declare (strict decoding's "unknown field").
    UnknownField(String),
    /// A field the schema requires is absent.
    Required(String),
    /// A value of the wrong JSON type, outside its enum or format.
    Invalid { path: String, message: String },
}

impl Violation {
    pub fn path(&self) -> &str {
        match self {
            Violation::UnknownField(p) | Violation::Required(p) => p,
            Violation::Invalid { path, .. } => path,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::UnknownField(p) => write!(f, "unknown field \"{p}\""),
            Violation::Required(p) => write!(f, "{p}: Required value"),
            Violation::Invalid { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

/// One Kubernetes version's schemas.
#[derive(Debug)]
pub struct Contract {
    kubernetes: String,
    generator: String,
    roots: Map<String, Value>,
    defs: Map<String, Value>,
}

impl Contract {
    /// Parses a subset file. Fails on a keyword the checker does not implement.
    pub fn parse(text: &str) -> Result<Contract, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("subset: {e}"))?;
        fn check(v: &Value, at: &str) -> Result<(), String> {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if !KEYWORDS.contains(&k.as_str()) {
                            return Err(format!("{at}: unsupported keyword {k}"));
                        }
                        match (k.as_str(), x) {
                            ("properties", Value::Object(p)) => {
                                for (name, s) in p {
                                    check(s, &format!("{at}.{name}"))?;
                                }
                            }
                            ("items" | "additionalProperties", s @ Value::Object(_)) => {
                                check(s, at)?
                            }
                            ("oneOf", Value::Array(a)) => {
                                for s in a {
                                    check(s, at)?;
                                }
                            }
                            _ => {}
                        }
                    }
                    Ok(())
                }
                _ => Err(format!("{at}: a schema must be an object")),
            }
        }
        let get = |k: &str| -> Result<Map<String, Value>, String> {
            v.get(k)
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| format!("subset: no {k}"))
        };
        let (roots, defs) = (get("roots")?, get("defs")?);
        for (k, s) in roots.iter().chain(defs.iter()) {
            check(s, k)?;
        }
        Ok(Contract {
            kubernetes: v["kubernetes"].as_str().unwrap_or_default().to_string(),
            generator: v["generator"].as_str().unwrap_or_default().to_string(),
            roots,
            defs,
        })
    }

    /// The bundled schemas of Kubernetes `version` (one of [`KUBERNETES_VERSIONS`]).
    pub fn bundled(version: &str) -> Option<&'static Contract> {
        static C129: OnceLock<Contract> = OnceLock::new();
        static C137: OnceLock<Contract> = OnceLock::new();
        let (cell, text) = match version {
            "1.29" => (&C129, SUBSET_1_29),
            "1.37" => (&C137, SUBSET_1_37),
            _ => return None,
        };
        Some(cell.get_or_init(|| Contract::parse(text).expect("bundled Kubernetes subset")))
    }

    /// `1.29`, `1.37`.
    pub fn kubernetes(&self) -> &str {
        &self.kubernetes
    }

    /// `kubernetes-validate 1.37.0`.
    pub fn generator(&self) -> &str {
        &self.generator
    }

    /// The `apiVersion/Kind` keys this contract has a root schema for.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.roots.keys().map(String::as_str)
    }

    /// Every violation of `value` against the schema of `kind` (`batch/v1/Job`, `v1/Secret`...);
    /// empty when it conforms. An unknown kind is itself a violation at the root.
    pub fn check(&self, kind: &str, value: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        match self.roots.get(kind) {
            Some(s) => self.walk(s, value, "", &mut out),
            None => out.push(Violation::Invalid {
                path: String::new(),
                message: format!("no schema for {kind} in Kubernetes {}", self.kubernetes),
            }),
        }
        out
    }

    /// Whether `path` (`spec.template.spec.containers[].image`, `metadata.labels.anykey`) is a
    /// field `kind` declares.
    pub fn has_field(&self, kind: &str, path: &str) -> bool {
        let Some(mut s) = self.roots.get(kind) else {
            return false;
        };
        for part in path.split('.') {
            let (name, arrays) = match part.find("[]") {
                Some(i) => (&part[..i], part[i..].matches("[]").count()),
                None => (part, 0),
            };
            s = self.resolve(s);
            let next = match s.get("properties").and_then(|p| p.get(name)) {
                Some(n) => n,
                None => match s.get("additionalProperties") {
                    Some(a @ Value::Object(_)) => a,
                    _ => return false,
                },
            };
            s = next;
            for _ in 0..arrays {
                s = match self.resolve(s).get("items") {
                    Some(i) => i,
                    None => return false,
                };
            }
        }
        true
    }

    fn resolve<'a>(&'a self, mut s: &'a Value) -> &'a Value {
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix("#/defs/").and_then(|n| self.defs.get(n)) {
                Some(d) => s = d,
                None => break,
            }
        }
        s
    }

    fn walk(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<Violation>) {
        let s = self.resolve(schema);
        if let Some(Value::Array(alts)) = s.get("oneOf") {
            let ok = alts.iter().any(|a| {
                let mut o = Vec::new();
                self.walk(a, v, at, &mut o);
                o.is_empty()
            });
            if !ok {
                out.push(Violation::Invalid {
                    path: at.into(),
                    message: format!("Invalid value: {v}: matches none of the accepted forms"),
                });
            }
            return;
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(x) => vec![x.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let fits = types.iter().any(|t| match *t {
                "null" => v.is_null(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "object" => v.is_object(),
                "array" => v.is_array(),
                _ => false,
            });
            if !fits {
                out.push(Violation::Invalid {
                    path: at.into(),
                    message: format!(
                        "Invalid value: {}: must be of type {}",
                        short(v),
                        types.join(" or ")
                    ),
                });
                return;
            }
        }
        if v.is_null() {
            return;
        }
        if let Some(Value::Array(allowed)) = s.get("enum") {
            if !allowed.contains(v) {
                out.push(Violation::Invalid {
                    path: at.into(),
                    message: format!("Unsupported value: {}", short(v)),
                });
            }
        }
        if let (Some(f), Some(n)) = (s.get("format").and_then(Value::as_str), v.as_i64()) {
            let fits = match f {
                "int32" => i32::try_from(n).is_ok(),
                _ => true,
            };
            if !fits {
                out.push(Violation::Invalid {
                    path: at.into(),
                    message: format!("Invalid value: {n}: out of range for {f}"),
                });
            }
        }
        if let (Some(f), Some(_)) = (s.get("format").and_then(Value::as_str), v.as_u64()) {
            if v.as_i64().is_none() && (f == "int32" || f == "int64") {
                out.push(Violation::Invalid {
                    path: at.into(),
                    message: format!("Invalid value: {v}: out of range for {f}"),
                });
            }
        }
        match v {
            Value::Object(m) => {
                let props = s.get("properties").and_then(Value::as_object);
                for r in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !m.contains_key(r) {
                        out.push(Violation::Required(join(at, r)));
                    }
                }
                for (k, x) in m {
                    let p = join(at, k);
                    match props.and_then(|p| p.get(k)) {
                        Some(sub) => self.walk(sub, x, &p, out),
                        None => match s.get("additionalProperties") {
                            Some(a @ Value::Object(_)) => self.walk(a, x, &p, out),
                            Some(Value::Bool(true)) => {}
                            None if props.is_none() => {}
                            _ => out.push(Violation::UnknownField(p)),
                        },
                    }
                }
            }
            Value::Array(a) => {
                if let Some(items) = s.get("items") {
                    for (i, x) in a.iter().enumerate() {
                        self.walk(items, x, &format!("{at}[{i}]"), out);
                    }
                }
            }
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

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_bundled_version_parses() {
        for v in KUBERNETES_VERSIONS {
            let c = Contract::bundled(v).unwrap();
            assert_eq!(c.kubernetes(), *v);
            assert!(c.kinds().any(|k| k == "batch/v1/Job"));
        }
    }

    #[test]
    fn unsupported_keyword_is_refused_at_load() {
        let e = Contract::parse(r#"{"roots":{"v1/X":{"pattern":"a"}},"defs":{}}"#).unwrap_err();
        assert!(e.contains("unsupported keyword pattern"), "{e}");
    }

    #[test]
    fn a_misspelled_container_field_is_an_unknown_field() {
        let c = Contract::bundled("1.37").unwrap();
        let job = json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},
            "spec":{"template":{"spec":{"restartPolicy":"Never",
                "containers":[{"name":"c","imagee":"x"}]}}}});
        assert_eq!(
            c.check("batch/v1/Job", &job),
            vec![Violation::UnknownField(
                "spec.template.spec.containers[0].imagee".into()
            )]
        );
    }

    #[test]
    fn wrong_types_required_fields_and_int32_ranges_are_violations() {
        let c = Contract::bundled("1.29").unwrap();
        let job = json!({"apiVersion":"batch/v1","kind":"Job",
            "spec":{"backoffLimit": 4294967296i64, "ttlSecondsAfterFinished":"60",
                "template":{"spec":{"containers":[{"image":"x"}]}}}});
        let v = c.check("batch/v1/Job", &job);
        let paths: Vec<&str> = v.iter().map(Violation::path).collect();
        assert!(paths.contains(&"spec.backoffLimit"), "{v:?}");
        assert!(paths.contains(&"spec.ttlSecondsAfterFinished"), "{v:?}");
        assert!(
            v.contains(&Violation::Required(
                "spec.template.spec.containers[0].name".into()
            )),
            "{v:?}"
        );
    }

    #[test]
    fn quantities_take_strings_or_numbers_only() {
        let c = Contract::bundled("1.37").unwrap();
        let pod = |q: Value| {
            json!({"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c",
                "resources":{"limits":{"cpu": q}}}]}})
        };
        assert!(c.check("v1/Pod", &pod(json!("500m"))).is_empty());
        assert!(c.check("v1/Pod", &pod(json!(2))).is_empty());
        assert!(!c.check("v1/Pod", &pod(json!(true))).is_empty());
    }

    #[test]
    fn has_field_follows_references_arrays_and_maps() {
        let c = Contract::bundled("1.37").unwrap();
        assert!(c.has_field(
            "batch/v1/Job",
            "spec.template.spec.containers[].env[].valueFrom.secretKeyRef.name"
        ));
        assert!(c.has_field("batch/v1/Job", "metadata.labels.anykey"));
        assert!(c.has_field("batch/v1/Job", "spec.template.spec.tolerations[].effect"));
        assert!(!c.has_field("batch/v1/Job", "spec.template.spec.nodeSelecter"));
    }
}
