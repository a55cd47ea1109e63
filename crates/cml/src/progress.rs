//! Progress of a cloud launch: a spinner line per phase on a terminal (stderr), and one log
//! record per phase (`phase` field) everywhere.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FRAMES: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Default)]
struct State {
    phase: Option<(&'static str, Instant)>,
    done: bool,
}

/// A running progress display. `finish` (or drop) clears the spinner line.
pub struct Progress {
    state: Arc<Mutex<State>>,
    spinner: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the display; the spinner only runs when stderr is a terminal.
    pub fn start() -> Progress {
        let state = Arc::new(Mutex::new(State::default()));
        let spinner = std::io::stderr().is_terminal().then(|| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut i = 0usize;
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let Ok(st) = state.lock() else { return };
                    if st.done {
                        return;
                    }
                    if let Some((phase, since)) = st.phase {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(
                            err,
                            "\r\x1b[2K{} {phase}… {} s",
                            FRAMES[i % FRAMES.len()],
                            since.elapsed().as_secs()
                        );
                        let _ = err.flush();
                    }
                    i += 1;
                }
            })
        });
        Progress { state, spinner }
    }

    /// Enters a phase: `creating`, `booting`, `registering`.
    pub fn phase(&self, phase: &'static str) {
        if let Ok(mut st) = self.state.lock() {
            if let Some((previous, since)) = st.phase {
                tracing::debug!("{previous} took {} s", since.elapsed().as_secs());
            }
            st.phase = Some((phase, Instant::now()));
        }
        self.clear_line();
        tracing::info!(phase, "{phase}");
    }

    pub fn finish(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.done = true;
        }
        if let Some(h) = &self.spinner {
            h.abort();
        }
        self.clear_line();
    }

    fn clear_line(&self) {
        if self.spinner.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
