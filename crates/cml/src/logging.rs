//! Log output, on standard error for every command (as CML's): one record per event,
//! human-readable when standard output is a terminal, JSON lines otherwise (`time`, `level`,
//! `message`, then the event's fields such as `status`, `job`, `success`, `reason`). A runner's
//! status records (those with a `status`) also carry CML's `date` and `repo`.
//!
//! Guarantee: every string written is passed through [`cml_core::secret::redact`] with every
//! secret registered by [`add_secrets`], so a token that reaches a message by any path (an
//! error echoing it, an agent's output) is printed as `***`; and the credentials written into
//! any URL (`https://user:password@host`) are masked too, registered or not.

use crate::settings::LogLevel;
use serde_json::{Map, Value};
use std::fmt;
use std::io::Write;
use std::sync::RwLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The repository of the runner, for the `repo` of status records.
static REPO: RwLock<Option<String>> = RwLock::new(None);

/// Sets the repository status records name from now on.
pub fn set_repo(repo: &str) {
    if let Ok(mut r) = REPO.write() {
        *r = Some(repo.to_string());
    }
}

/// Registers values that must never be printed.
pub fn add_secrets<I: IntoIterator<Item = String>>(secrets: I) {
    if let Ok(mut s) = SECRETS.write() {
        for v in secrets {
            if v.len() >= 4 && !s.contains(&v) {
                // Also mask each line of multi-line secrets (PEM keys).
                for line in v.lines().map(str::trim).filter(|l| l.len() >= 16) {
                    if !s.iter().any(|x| x == line) {
                        s.push(line.to_string());
                    }
                }
                s.push(v);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered secret, and every credential in a URL, masked.
pub fn redact(text: &str) -> String {
    let text = cml_core::report::redact_url_credentials(text);
    match SECRETS.read() {
        Ok(s) => cml_core::secret::redact(&text, &s),
        Err(_) => text,
    }
}

/// Installs the global logger, writing to standard error. `json`: JSON lines instead of
/// human text.
pub fn init(level: LogLevel, json: bool) {
    let max = match level {
        LogLevel::Error => Level::ERROR,
        LogLevel::Warn => Level::WARN,
        LogLevel::Info => Level::INFO,
        LogLevel::Debug => Level::DEBUG,
    };
    let layer = CmlLayer { json }.with_filter(tracing_subscriber::filter::filter_fn(move |m| {
        m.level() <= &max && m.target().starts_with("cml")
    }));
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

struct CmlLayer {
    json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest
                .insert(field.name().into(), Value::String(redact(value)));
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.insert(field.name().into(), Value::Bool(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest
                .insert(field.name().into(), Value::String(redact(&text)));
        }
    }
}

impl<S: Subscriber> Layer<S> for CmlLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = redact(&fields.message);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            _ => "debug",
        };
        let line = if self.json {
            let mut record = Map::new();
            let time = now_rfc3339();
            record.insert("time".into(), Value::String(time.clone()));
            record.insert("level".into(), Value::String(level.into()));
            record.insert("message".into(), Value::String(message));
            if fields.rest.contains_key("status") {
                // CML's status records: `date`, and the runner's `repo`.
                record.insert("date".into(), Value::String(time));
                if let Some(repo) = REPO.read().ok().and_then(|r| r.clone()) {
                    record.insert("repo".into(), Value::String(redact(&repo)));
                }
            }
            record.extend(fields.rest);
            Value::Object(record).to_string()
        } else {
            let mut s = format!("{} {:<5} {}", now_human(), level, message);
            for (k, v) in &fields.rest {
                match v {
                    Value::String(t) => s.push_str(&format!(" {k}={t}")),
                    other => s.push_str(&format!(" {k}={other}")),
                }
            }
            s
        };
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn now_rfc3339() -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}

fn now_human() -> String {
    let f = time::macros::format_description!("[hour]:[minute]:[second]");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}
