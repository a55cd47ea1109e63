//! What the cloud tests share to play a machine: its stand-in programs, the checksum of the
//! `cml` it downloads, its service's log, and a bounded wait.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `tests/fixtures/machine/`: the `systemctl` and `curl` stand-ins a sandboxed machine runs.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/machine")
}

/// The SHA-256 of the file at `path`, in hex (what `--cloud-cml-sha256` takes).
pub fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// What the sandboxed machine's `cml` service printed (empty before it started).
pub fn service_log(root: &Path) -> String {
    std::fs::read_to_string(root.join("cml.service.log")).unwrap_or_default()
}

/// Asks `f` every 100 ms until it gives a value; fails the test naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
