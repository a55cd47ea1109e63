//! The unprivileged user an agent and its jobs can run as (`--cloud-job-user`).
//!
//! Contract: a [`RunAs`] names an existing user that is not root, with the numeric ids the
//! kernel needs (uid, primary gid and every supplementary group of the user). It is resolved
//! once, in the supervisor, before any runner is registered, so a misspelt user fails before
//! anything exists in the forge. The switch itself happens in the agent's child process just
//! before `exec` (see [`crate::process::prepare`]); the supervisor stays root, so it can keep
//! reading root-only credentials and signal the agent.

use crate::AgentError;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};

/// Groups that give their members root's power (or Docker's, which is the same): a job user
/// in one of them would defeat the point of running jobs unprivileged.
pub const PRIVILEGED_GROUPS: &[&str] = &["root", "sudo", "admin", "wheel", "docker"];

/// A resolved unprivileged user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// Every group of the user (primary included), as `getgrouplist(3)` reports them.
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

impl RunAs {
    /// Looks `name` up in the user database. Fails for an unknown user, for root (uid 0), and
    /// for a member of one of [`PRIVILEGED_GROUPS`].
    pub fn lookup(name: &str) -> Result<RunAs, AgentError> {
        let err = |reason: String| AgentError::JobUser {
            user: name.to_string(),
            reason,
        };
        let cname = CString::new(name).map_err(|_| err("the name holds a NUL byte".into()))?;
        let (uid, gid, home) = passwd_entry(&cname).map_err(err)?;
        if uid == 0 {
            return Err(err("it is root (uid 0)".into()));
        }
        let groups = group_list(&cname, gid).map_err(err)?;
        for g in &groups {
            if let Some(group) = group_name(*g) {
                if PRIVILEGED_GROUPS.contains(&group.as_str()) {
                    return Err(err(format!(
                        "it is a member of the group {group}, which is as powerful as root"
                    )));
                }
            }
        }
        Ok(RunAs {
            name: name.to_string(),
            uid,
            gid,
            groups,
            home,
        })
    }

    /// The environment a process of this user expects: `HOME`, `USER` and `LOGNAME` set to
    /// this user's, replacing the supervisor's.
    pub fn apply_env(&self, env: &mut Vec<(String, String)>) {
        env.retain(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"));
        env.push(("HOME".into(), self.home.to_string_lossy().into_owned()));
        env.push(("USER".into(), self.name.clone()));
        env.push(("LOGNAME".into(), self.name.clone()));
    }

    /// Makes `dir` and everything below it owned by this user and its primary group, so the
    /// agent can write its configuration and jobs their checkouts. Symbolic links are changed
    /// themselves and never followed (`lchown`, no descent into linked directories), so a link
    /// planted in the directory cannot hand the user a file elsewhere.
    pub fn own(&self, dir: &Path) -> Result<(), AgentError> {
        chown_tree(dir, self.uid, self.gid).map_err(|cause| AgentError::JobUserWorkdir {
            path: dir.to_path_buf(),
            user: self.name.clone(),
            cause,
        })
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                chown_tree(&entry.path(), uid, gid)?;
            } else {
                std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

/// `(uid, gid, home)` of `name`, from `getpwnam_r(3)`.
fn passwd_entry(name: &CStr) -> Result<(u32, u32, PathBuf), String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `pwd` is plain data the call fills in; `buf` outlives every pointer the
        // call stores into `pwd` (we copy what we need before `buf` is dropped or resized);
        // `result` is set to `&pwd` or null. The `_r` variant keeps no static state.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "looking it up failed: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        if result.is_null() {
            return Err("no such user on this machine".into());
        }
        // SAFETY: `pw_dir` points into `buf`, a NUL-terminated string, or is null.
        let home = if pwd.pw_dir.is_null() {
            PathBuf::from("/")
        } else {
            PathBuf::from(
                unsafe { CStr::from_ptr(pwd.pw_dir) }
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        return Ok((pwd.pw_uid, pwd.pw_gid, home));
    }
}

/// Every group of `name` (with primary group `gid`), from `getgrouplist(3)`.
fn group_list(name: &CStr, gid: u32) -> Result<Vec<u32>, String> {
    let mut n: libc::c_int = 32;
    for _ in 0..8 {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: `groups` has room for `count` entries; the call writes at most that many
        // and sets `count` to the number the user has (more than given when -1 is returned).
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        n = count.max(n * 2);
    }
    Err("its group list could not be read".into())
}

/// The name of group `gid`, if the group database knows it.
fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: as in `passwd_entry`: `grp` is filled in by the call, its strings point into
    // `buf`, which outlives their use here.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || grp.gr_name.is_null() {
        return None;
    }
    // SAFETY: `gr_name` is a NUL-terminated string inside `buf`.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_is_a_job_user_root_and_strangers_are_not() {
        let nobody = RunAs::lookup("nobody").unwrap();
        assert_ne!(nobody.uid, 0);
        assert!(nobody.groups.contains(&nobody.gid), "{nobody:?}");
        let e = RunAs::lookup("root").unwrap_err().to_string();
        assert!(e.contains("root (uid 0)") && e.contains("hint:"), "{e}");
        let e = RunAs::lookup("no-such-user-here").unwrap_err().to_string();
        assert!(e.contains("no such user"), "{e}");
    }

    #[test]
    fn the_environment_names_the_user() {
        let u = RunAs {
            name: "runner".into(),
            uid: 1001,
            gid: 1001,
            groups: vec![1001],
            home: "/home/runner".into(),
        };
        let mut env = vec![
            ("HOME".to_string(), "/root".to_string()),
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("USER".to_string(), "root".to_string()),
        ];
        u.apply_env(&mut env);
        env.sort();
        assert_eq!(
            env,
            [
                ("HOME".to_string(), "/home/runner".to_string()),
                ("LOGNAME".to_string(), "runner".to_string()),
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("USER".to_string(), "runner".to_string()),
            ]
        );
    }

    #[test]
    fn owning_a_tree_changes_links_not_their_targets() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a/link")).unwrap();
        let nobody = RunAs::lookup("nobody").unwrap();
        nobody.own(dir.path()).unwrap();
        for p in ["", "a", "a/b", "a/b/f"] {
            let m = std::fs::metadata(dir.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (nobody.uid, nobody.gid), "{p}");
        }
        let link = std::fs::symlink_metadata(dir.path().join("a/link")).unwrap();
        assert_eq!(link.uid(), nobody.uid);
        assert_eq!(
            std::fs::metadata(outside.path()).unwrap().uid(),
            0,
            "the link's target is untouched"
        );
    }
}
