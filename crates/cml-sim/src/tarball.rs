//! The simulated agent as installed on disk: `config.sh` and `run.sh` that `exec` the
//! `cml-sim` executable, loose in a directory or packed as a release tarball.

use std::io::{self, Write};
use std::path::Path;

/// Quote `s` for a POSIX shell (single quotes).
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script that runs `cml-sim agent <sub>` from the directory holding the script.
pub fn script(agent_exe: &Path, sub: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Simulated actions/runner {sub}.sh: runs the cml-sim runner agent.\n\
         CML_SIM_AGENT_ROOT=\"$(cd \"$(dirname \"$0\")\" && pwd)\" || exit 1\n\
         export CML_SIM_AGENT_ROOT\n\
         cd \"$CML_SIM_AGENT_ROOT\" || exit 1\n\
         exec {} agent {sub} \"$@\"\n",
        sh_quote(&agent_exe.to_string_lossy())
    )
}

/// Write executable `config.sh` and `run.sh` into `dir` (a pre-installed agent).
pub fn write_agent_scripts(dir: &Path, agent_exe: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for sub in ["config", "run"] {
        let path = dir.join(format!("{sub}.sh"));
        std::fs::write(&path, script(agent_exe, sub))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// A gzip tar holding `config.sh` and `run.sh` (mode 0755); deterministic for one `agent_exe`.
pub fn agent_tarball(agent_exe: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for sub in ["config", "run"] {
        let data = script(agent_exe, sub);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        // Writing into memory cannot fail.
        let _ = tar.append_data(&mut header, format!("{sub}.sh"), data.as_bytes());
    }
    let gz = tar.into_inner().expect("in-memory tar");
    let mut out = gz.finish().expect("in-memory gzip");
    out.flush().ok();
    out
}
