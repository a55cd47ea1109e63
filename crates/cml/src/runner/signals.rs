//! SIGINT, SIGTERM, SIGHUP and SIGQUIT as values: once installed, they no longer kill the
//! process, they are handled by the lifecycle (stop the agent, deregister, destroy what a
//! launch created, exit with 128 + the signal's number).
//!
//! SIGHUP (the terminal or session going away) and SIGQUIT take the same path as SIGTERM:
//! their default action would end the process with nothing cleaned up. (SIGQUIT's default
//! core dump is given up for that.) CI systems stop a job with SIGINT, then SIGTERM, then
//! SIGKILL (GitHub Actions: 7.5 s and 2.5 s apart), so every signal after the first is
//! delivered too, for a teardown to cut its waiting short.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next SIGINT, SIGTERM, SIGHUP or SIGQUIT and returns its number.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
        }
    }
}
