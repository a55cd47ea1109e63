//! The `filter` query parameter of Compute Engine's list methods, for the forms a client of
//! the simulator needs:
//!
//! - `FIELD = VALUE`, `FIELD != VALUE`: equality of the field's text (`labels.cml-id = r1`,
//!   `status = TERMINATED`, `scheduling.provisioningModel = "SPOT"`); values may be quoted;
//! - `FIELD : VALUE` (the field contains VALUE) and `FIELD:*` (the field is set);
//! - several such expressions, each optionally in parentheses, separated by blanks or `AND`:
//!   all must hold;
//! - one un-parenthesized `FIELD eq REGEX` or `FIELD ne REGEX` (the whole text matches).
//!
//! `FIELD` is a dotted path into the resource as answered. Anything else (`OR`, `NOT`, `<`) is
//! refused with an error that says the simulator does not support it, rather than guessed.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq,
    Ne,
    Has,
    Present,
    RegexEq,
    RegexNe,
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    field: String,
    op: Op,
    value: String,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter(Vec<Term>);

impl Filter {
    /// Parses `text`; the error names what is not supported.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filter::default());
        }
        let toks = tokens(text)?;
        // `FIELD eq REGEX` / `FIELD ne REGEX`: one expression, no parentheses.
        if toks.len() == 3 && (toks[1] == "eq" || toks[1] == "ne") && !text.starts_with('(') {
            let op = if toks[1] == "eq" {
                Op::RegexEq
            } else {
                Op::RegexNe
            };
            return Ok(Filter(vec![Term {
                field: toks[0].clone(),
                op,
                value: unquote(&toks[2]),
            }]));
        }
        let mut terms = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let t = &toks[i];
            if t == "AND" || t == "(" || t == ")" {
                i += 1;
                continue;
            }
            if t == "OR" || t == "NOT" || t == "-" {
                return Err(format!(
                    "the simulator supports only AND of comparisons in 'filter', not {t}"
                ));
            }
            let (Some(op), Some(value)) = (toks.get(i + 1), toks.get(i + 2)) else {
                return Err(format!("incomplete expression in 'filter' at {t:?}"));
            };
            let op = match op.as_str() {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                ":" if value == "*" => Op::Present,
                ":" => Op::Has,
                other => {
                    return Err(format!(
                        "the simulator does not support the operator {other:?} in 'filter'"
                    ))
                }
            };
            terms.push(Term {
                field: t.clone(),
                op,
                value: unquote(value),
            });
            i += 3;
        }
        Ok(Filter(terms))
    }

    /// Whether `resource` passes every expression.
    pub fn matches(&self, resource: &Value) -> bool {
        self.0.iter().all(|t| {
            let v = field(resource, &t.field);
            match t.op {
                Op::Present => v.is_some(),
                Op::Eq => v.as_deref() == Some(t.value.as_str()),
                Op::Ne => v.as_deref() != Some(t.value.as_str()),
                Op::Has => v.is_some_and(|v| v.contains(&t.value)),
                Op::RegexEq => v.is_some_and(|v| super::contract::full_match(&t.value, &v)),
                Op::RegexNe => !v.is_some_and(|v| super::contract::full_match(&t.value, &v)),
            }
        })
    }
}

/// The text of the field at the dotted `path` (strings as they are, other scalars printed).
fn field(resource: &Value, path: &str) -> Option<String> {
    let mut v = resource;
    for seg in path.split('.') {
        v = v.get(seg)?;
    }
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => Some(v.to_string()),
        other => Some(other.to_string()),
    }
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' || c == ':' || c == '=' {
            out.push(c.to_string());
            i += 1;
        } else if c == '!' && chars.get(i + 1) == Some(&'=') {
            out.push("!=".into());
            i += 2;
        } else if c == '<' || c == '>' {
            return Err(format!(
                "the simulator does not support the operator {c:?} in 'filter'"
            ));
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            if i >= chars.len() {
                return Err("unterminated quote in 'filter'".into());
            }
            i += 1;
            out.push(chars[start..i].iter().collect());
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '(' | ')' | ':' | '=' | '!' | '"')
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_status_and_presence() {
        let r = json!({"name": "a-1", "status": "TERMINATED", "labels": {"cml-id": "r1"},
                       "scheduling": {"preemptible": true}});
        let ok = |f: &str| Filter::parse(f).unwrap().matches(&r);
        assert!(ok("labels.cml-id = r1"));
        assert!(ok("labels.cml-id=\"r1\""));
        assert!(ok("(labels.cml-id = r1) (status = TERMINATED)"));
        assert!(ok("labels.cml-id = r1 AND status != RUNNING"));
        assert!(ok("labels.cml-id:*"));
        assert!(!ok("labels.other:*"));
        assert!(ok("scheduling.preemptible = true"));
        assert!(ok("name eq a-.*"));
        assert!(!ok("name ne a-.*"));
        assert!(!ok("labels.cml-id = r2"));
        assert!(ok(""));
    }

    #[test]
    fn unsupported_forms_are_refused() {
        for f in ["(a = b) OR (c = d)", "a < 3", "a =", "a = \"x"] {
            assert!(Filter::parse(f).is_err(), "{f}");
        }
    }
}
