//! Console output of the agent, line by line, with the test knobs for split writes and an
//! event log (`CML_SIM_AGENT_SPLIT_WRITES`, `CML_SIM_AGENT_EVENTS_FILE`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Serialised writer of whole lines to stdout/stderr.
pub struct Out {
    split: bool,
    events: Option<Mutex<File>>,
    lock: Mutex<()>,
}

impl Out {
    pub fn from_env() -> Out {
        let split = std::env::var("CML_SIM_AGENT_SPLIT_WRITES").is_ok_and(|v| v == "1");
        let events = std::env::var_os("CML_SIM_AGENT_EVENTS_FILE")
            .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok())
            .map(Mutex::new);
        Out {
            split,
            events,
            lock: Mutex::new(()),
        }
    }

    fn record(&self, line: &str) {
        if let Some(f) = &self.events {
            let ev =
                serde_json::json!({"line": line, "unix_nanos": crate::util::unix_nanos() as u64});
            if let Ok(mut f) = f.lock() {
                let _ = writeln!(f, "{ev}");
                let _ = f.flush();
            }
        }
    }

    /// Print `line` on stdout.
    pub fn line(&self, line: &str) {
        let _g = self.lock.lock();
        self.record(line);
        let mut so = std::io::stdout().lock();
        let text = format!("{line}\n");
        if self.split && text.len() > 2 {
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            let n = if chars.len() >= 6 { 3 } else { 2 };
            let mut cuts: Vec<usize> = (1..n).map(|i| chars[i * chars.len() / n].0).collect();
            cuts.push(text.len());
            let mut start = 0;
            for cut in cuts {
                let _ = so.write_all(&text.as_bytes()[start..cut]);
                let _ = so.flush();
                start = cut;
                if start < text.len() {
                    std::thread::sleep(Duration::from_millis(15));
                }
            }
        } else {
            let _ = so.write_all(text.as_bytes());
            let _ = so.flush();
        }
    }

    /// Print `line` on stderr.
    pub fn err(&self, line: &str) {
        let _g = self.lock.lock();
        self.record(line);
        let mut se = std::io::stderr().lock();
        let _ = writeln!(se, "{line}");
        let _ = se.flush();
    }
}
