//! Secrets handed to `cml` through its environment or command line, taken out of both.
//!
//! Contract: after [`take_secrets`] (called first thing in `main`), the process's
//! environment holds none of the credential variables it started with, and neither does
//! what the kernel shows of it in `/proc/PID/environ`; the value of `--token` /
//! `--driver-token` is blanked in `/proc/PID/cmdline` (`ps`) the same way. The values stay
//! available to the settings through [`captured`]. A long-running supervisor so keeps no
//! secret where another process of the machine, or a child inheriting the environment,
//! could read it.
//!
//! Why overwriting is needed: the kernel shows `/proc/PID/environ` and `cmdline` from the
//! memory the process was started with (the block between `env_start` and `env_end`, and
//! `arg_start` and `arg_end`, on its stack). `unsetenv` only drops the entry from the C
//! library's `environ` array; the bytes stay there, readable, for the life of the process.

use std::ffi::OsString;
use std::sync::OnceLock;

static CAPTURED: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Variables that carry a credential, besides the agent's (`cml_agent::env`).
const MORE_SECRETS: &[&str] = &["CML_RUNNER_CLOUD_SSH_PRIVATE", "CML_GITLAB_RUNNER_TOKEN"];

/// Options whose value is a credential.
const SECRET_OPTIONS: &[&str] = &[
    "--token",
    "--driver-token",
    "--driverToken",
    "--gcp-access-token",
    "--gcpAccessToken",
    "--tf-resource",
    "--tf_resource",
    "--tfResource",
];

/// The value a credential variable had when `cml` started.
pub fn captured(name: &str) -> Option<String> {
    CAPTURED
        .get()?
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Copies the credential variables' values, then erases them from the process's
/// environment and the memory `/proc/PID/environ` shows, and blanks the values of the
/// secret options in the memory `/proc/PID/cmdline` shows. Returns the arguments as they were
/// given, for the command-line parser.
///
/// Must be called before any other thread exists (first thing in `main`): it changes the
/// environment, which other threads may be reading.
pub fn take_secrets() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let names: Vec<&str> = cml_agent::env::CREDENTIAL_VARIABLES
        .iter()
        .chain(MORE_SECRETS)
        .copied()
        .collect();
    let captured: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
        .collect();
    let blocks = startup_blocks();
    if let Some((_, env_block)) = &blocks {
        for name in &names {
            // SAFETY: see `blank_env_values`: no other thread exists yet.
            unsafe { blank_env_values(name, env_block) };
        }
    }
    for name in &names {
        if std::env::var_os(name).is_some() {
            std::env::remove_var(name);
        }
    }
    if let Some((arg_block, _)) = &blocks {
        // SAFETY: see `blank_secret_options`.
        unsafe { blank_secret_options(arg_block) };
    }
    let _ = CAPTURED.set(captured);
    args
}

/// `[start, end)` of the memory the kernel shows as the command line and as the
/// environment, from `/proc/self/stat` (fields 48 to 51, `arg_start` to `env_end`).
fn startup_blocks() -> Option<((usize, usize), (usize, usize))> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // "pid (comm) state ...": the command name may hold spaces, so count after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After ')' comes field 3, so field N is at index N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    let blocks = ((field(48)?, field(49)?), (field(50)?, field(51)?));
    let sane = |(start, end): (usize, usize)| start != 0 && start < end;
    (sane(blocks.0) && sane(blocks.1)).then_some(blocks)
}

/// Overwrites with NUL bytes the value of every `name=value` entry of `environ` that lies
/// inside `block` (the start-up environment the kernel shows).
///
/// # Safety
/// No other thread may be running. The entries written to are inside the process's initial
/// environment block, writable memory on the main thread's stack that lives as long as the
/// process; only bytes strictly inside an entry (after `name=`, before its terminating NUL)
/// are written, so every C string stays terminated and `environ` itself is not touched.
unsafe fn blank_env_values(name: &str, block: &(usize, usize)) {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let mut entry = environ;
    if entry.is_null() {
        return;
    }
    while !(*entry).is_null() {
        let s = *entry;
        let addr = s as usize;
        if addr >= block.0 && addr < block.1 {
            let text = std::ffi::CStr::from_ptr(s).to_bytes();
            if text.len() > name.len()
                && text.starts_with(name.as_bytes())
                && text[name.len()] == b'='
                && addr + text.len() <= block.1
            {
                let value = s.add(name.len() + 1);
                std::ptr::write_bytes(value, 0, text.len() - name.len() - 1);
            }
        }
        entry = entry.add(1);
    }
}

/// Overwrites with NUL bytes the values of [`SECRET_OPTIONS`] (`--token VALUE` and
/// `--token=VALUE`) in the command-line block `[start, end)` the kernel shows.
///
/// # Safety
/// No other thread may be running. The block is the process's initial argument strings,
/// writable memory on the main thread's stack; it is read and written only within its bounds.
/// Rust's copy of the arguments was taken before (see [`take_secrets`]).
unsafe fn blank_secret_options(block: &(usize, usize)) {
    let bytes = std::slice::from_raw_parts_mut(block.0 as *mut u8, block.1 - block.0);
    let mut blank_next = false;
    let mut i = 0;
    while i < bytes.len() {
        let len = bytes[i..]
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(bytes.len() - i);
        let arg = &mut bytes[i..i + len];
        if blank_next {
            arg.fill(0);
            blank_next = false;
        } else if SECRET_OPTIONS.iter().any(|o| arg == o.as_bytes()) {
            blank_next = true;
        } else if let Some(option) = SECRET_OPTIONS
            .iter()
            .find(|o| arg.len() > o.len() && arg.starts_with(o.as_bytes()) && arg[o.len()] == b'=')
        {
            arg[option.len() + 1..].fill(0);
        }
        i += len + 1;
    }
}
