//! The startup script of a cloud runner machine, rendered from the launcher's settings.
//!
//! What the script guarantees, in order:
//! 0. until `cml.service` runs, any failure (a command of the script, the user's script, the
//!    download or its checksum) is logged to the console and powers the machine off, so a
//!    machine whose setup failed does not live on until its maximum lifetime;
//! 1. the secrets (forge token or GitHub App key) go into `/etc/cml/credentials`, a root-only
//!    file (mode 0600 in a 0700 directory) whose *path* the `cml` service is given: never a
//!    command line, never an environment (not the service's, not the job steps');
//! 2. the user's `--cloud-startup-script` runs before `cml` is installed, so it can set up the
//!    network, mounts or proxies the rest needs;
//! 3. with a job user (`--cloud-job-user`): the user exists (created when missing) and has no
//!    root-equivalent group or sudo rule, the instance metadata service (which serves
//!    user-data, and so the credential) answers root only (a firewall rule on the machine's
//!    own traffic to 169.254.169.254 and fd00:ec2::254), cloud-init's copies of user-data are
//!    removed, and the runner's work directory belongs to the job user; a machine where any
//!    of this fails powers off rather than run jobs unprotected;
//! 4. the same `cml` version as the launcher is installed from a release URL template
//!    (`{version}` and `{arch}` are substituted), its SHA-256 checked when one is given;
//! 5. `cml runner` runs under the systemd unit `cml.service` with the launcher's runner
//!    options and `--self-terminate`, so the machine removes itself when the runner ends; the
//!    instance is launched with shutdown behaviour `terminate`, so a plain OS shutdown
//!    removes it too, and the unit powers the machine off whenever `cml` stops, even killed
//!    or crashed, so no machine outlives its supervisor.
//!
//! Every value is quoted for the context it lands in (shell here-documents with quoted
//! delimiters, systemd's `ExecStart=` quoting), so no value can break out of its place.

use crate::Secret;

/// Where the runner's files live on the machine.
pub const MACHINE_WORKDIR: &str = "/var/lib/cml/runner";
/// The root-only file holding the machine's forge credential.
pub const MACHINE_CREDENTIALS: &str = "/etc/cml/credentials";
/// The instance metadata service's addresses (IPv4, and IPv6 on Nitro instances).
pub const METADATA_ADDRESSES: [&str; 2] = ["169.254.169.254", "fd00:ec2::254"];

/// What the downloaded `cml` is checked against before it is installed; a mismatch, or no
/// checksum found, fails the setup (and so powers the machine off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmlChecksum {
    /// This SHA-256 (`--cloud-cml-sha256`).
    Sha256(String),
    /// The line for the downloaded file's name in the checksum list at this URL (`{version}`
    /// and `{arch}` substituted like the download's): a release's `SHA256SUMS`, published next
    /// to its binaries (see `crate::release`).
    Published { sums_url_template: String },
}

/// Everything the script needs.
pub struct StartupScript {
    /// The `cml` release URL template (`{version}`, `{arch}` = `x86_64` / `aarch64`).
    pub cml_url_template: String,
    /// The version substituted for `{version}`.
    pub cml_version: String,
    /// How the downloaded binary is checked: always, against a given SHA-256 or the release's
    /// published checksums.
    pub cml_checksum: CmlChecksum,
    /// The decoded `--cloud-startup-script`.
    pub user_script: Option<String>,
    /// Arguments after `cml` for the machine's runner (no secrets). The script adds
    /// `--credentials-file` when there are secrets.
    pub runner_args: Vec<String>,
    /// Non-secret environment for the service (`CML_GITHUB_RUNNER_RELEASES_URL`, ...).
    pub env: Vec<(String, String)>,
    /// Secrets for the service (`REPO_TOKEN`, `CML_GITHUB_APP_PEM`, ...), written to
    /// [`MACHINE_CREDENTIALS`].
    pub secrets: Vec<(String, Secret)>,
    /// The machine powers itself off this long after boot, whatever `cml` does; `None` = never.
    pub max_lifetime: Option<std::time::Duration>,
    /// The unprivileged user jobs run as; `None` = root.
    pub job_user: Option<String>,
}

impl std::fmt::Debug for StartupScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartupScript")
            .field("cml_url_template", &self.cml_url_template)
            .field("runner_args", &self.runner_args)
            .field(
                "secrets",
                &self.secrets.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("job_user", &self.job_user)
            .finish_non_exhaustive()
    }
}

/// Step 0: until the runner's service has started, any failure powers the machine off.
/// `set -E` hands the ERR trap to functions and subshells; the EXIT trap catches an explicit
/// `exit` (a failed download or checksum), the signal traps a cloud-init timeout. Only the line
/// number is logged, never the failing command, which might hold a value.
const FAILURE_TRAP: &str = r#"# 0. Until cml.service runs, any failure logs to the console and powers the machine off
# (shutdown behaviour `terminate` removes it): no half-set-up machine lives on.
cml_setup_failed() {
  trap - ERR EXIT HUP INT TERM
  local code=$1
  if [ "$code" = 0 ]; then code=1; fi
  log "setup failed at line $2 of the startup script (exit status $1); powering off"
  systemctl poweroff --no-block || poweroff || shutdown -h now || true
  exit "$code"
}
trap 'cml_setup_failed $? $LINENO' ERR EXIT
trap 'cml_setup_failed 129 $LINENO' HUP
trap 'cml_setup_failed 130 $LINENO' INT
trap 'cml_setup_failed 143 $LINENO' TERM

"#;

/// Step 3's checks of the job user (`$job_user`).
const JOB_USER_CHECKS: &str = r#"if ! id -u "$job_user" > /dev/null 2>&1; then
  log "creating the job user $job_user"
  useradd --create-home --shell /bin/bash --user-group "$job_user"
fi
if [ "$(id -u "$job_user")" = 0 ]; then log "the job user $job_user is root"; exit 1; fi
for group in $(id -Gn "$job_user"); do
  case "$group" in
    root|sudo|admin|wheel|docker)
      log "the job user $job_user is in group $group, which is as powerful as root"; exit 1 ;;
  esac
done
if command -v sudo > /dev/null 2>&1 && sudo -n -l -U "$job_user" 2>/dev/null | grep -q 'may run'; then
  log "the job user $job_user may use sudo"; exit 1
fi
"#;

/// Step 3's removal of cloud-init's copies of user-data (`instance` links to `instances/ID`).
const CLOUD_INIT_COPIES: &str = r#"rm -f "$R"/var/lib/cloud/instance/user-data.txt* "$R"/var/lib/cloud/instance/scripts/part-* \
  "$R"/var/lib/cloud/instances/*/user-data.txt* "$R"/var/lib/cloud/instances/*/scripts/part-*
"#;

impl StartupScript {
    /// The script (bash).
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("#!/bin/bash\n");
        s.push_str(&format!(
            "# Runner machine setup, rendered by cml {}.\n",
            self.cml_version
        ));
        s.push_str("set -Eeuo pipefail\numask 077\n");
        s.push_str(
            "# Files go below $CML_MACHINE_ROOT (empty on a real machine; a sandbox in tests).\n",
        );
        s.push_str("R=${CML_MACHINE_ROOT:-}\n");
        s.push_str("log() { echo \"cml-setup: $*\"; echo \"cml-setup: $*\" > /dev/console 2>/dev/null || true; }\n\n");
        s.push_str(FAILURE_TRAP);

        s.push_str("# 1. Secrets: a root-only file; cml.service is given its path only.\n");
        s.push_str("install -d -m 0700 \"$R/etc/cml\"\n");
        if !self.secrets.is_empty() {
            let secrets: Vec<(String, String)> = self
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect();
            s.push_str(&heredoc(
                &format!("\"$R{MACHINE_CREDENTIALS}\""),
                &key_value_lines(&secrets),
                "CML_CREDENTIALS",
            ));
            s.push_str(&format!("chmod 0600 \"$R{MACHINE_CREDENTIALS}\"\n"));
        }
        s.push_str("# The service's other settings, none secret.\n");
        s.push_str(&heredoc(
            "\"$R/etc/cml/env\"",
            &key_value_lines(&self.env),
            "CML_ENV",
        ));
        s.push_str("chmod 0600 \"$R/etc/cml/env\"\n\n");

        s.push_str(
            "# 1b. A hard end, set before anything can fail: a timer powers the machine off\n",
        );
        s.push_str("# (shutdown behaviour `terminate` removes it) however cml fares.\n");
        match self.max_lifetime {
            Some(d) => {
                let secs = d.as_secs().max(1);
                s.push_str("install -d -m 0755 \"$R/etc/systemd/system\"\n");
                s.push_str(&heredoc(
                    "\"$R/etc/systemd/system/cml-deadline.timer\"",
                    &format!(
                        "[Unit]\nDescription=cml: the machine's maximum lifetime\n\n[Timer]\nOnBootSec={secs}s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n"
                    ),
                    "CML_TIMER",
                ));
                s.push_str(&heredoc(
                    "\"$R/etc/systemd/system/cml-deadline.service\"",
                    "[Unit]\nDescription=cml: power off at the maximum lifetime\n\n[Service]\nType=oneshot\nExecStart=/bin/systemctl poweroff --no-block\n",
                    "CML_DEADLINE",
                ));
                s.push_str("systemctl daemon-reload\n");
                s.push_str("systemctl enable --now cml-deadline.timer\n");
                s.push_str(&format!(
                    "log 'this machine powers off {secs} s after boot at the latest'\n\n"
                ));
            }
            None => s.push_str("# (none: --cloud-max-lifetime=never)\n\n"),
        }

        s.push_str("# 2. The user's startup script, before cml is installed.\n");
        match &self.user_script {
            Some(script) => {
                s.push_str(&heredoc(
                    "\"$R/etc/cml/startup.sh\"",
                    script,
                    "CML_USER_SCRIPT",
                ));
                s.push_str("chmod 0700 \"$R/etc/cml/startup.sh\"\n");
                s.push_str("log 'running --cloud-startup-script'\n");
                s.push_str("bash \"$R/etc/cml/startup.sh\"\n\n");
            }
            None => s.push_str("# (none given)\n\n"),
        }

        match &self.job_user {
            Some(user) => s.push_str(&job_user_section(user)),
            None => s.push_str("# 3. Jobs run as root (no --cloud-job-user).\n\n"),
        }

        s.push_str("# 4. cml, the same version as the launcher.\n");
        s.push_str("arch=$(uname -m)\n");
        let url = self
            .cml_url_template
            .replace("{version}", &self.cml_version);
        s.push_str(&format!("url={}\n", shell_quote(&url)));
        s.push_str("url=${url//\\{arch\\}/$arch}\n");
        s.push_str("log \"installing cml from $url\"\n");
        s.push_str(
            "install -d -m 0755 \"$R/usr/local/bin\"\ntmp=\"$R/usr/local/bin/.cml.download\"\n",
        );
        s.push_str("for attempt in 1 2 3 4 5; do\n");
        s.push_str("  if curl -fsSL --connect-timeout 20 -o \"$tmp\" \"$url\"; then break; fi\n");
        s.push_str("  if [ \"$attempt\" = 5 ]; then log \"cannot download $url\"; exit 1; fi\n");
        s.push_str("  sleep $((attempt * 3))\n");
        s.push_str("done\n");
        match &self.cml_checksum {
            CmlChecksum::Sha256(sha) => s.push_str(&format!("expected={}\n", shell_quote(sha))),
            CmlChecksum::Published { sums_url_template } => {
                let sums = sums_url_template.replace("{version}", &self.cml_version);
                s.push_str(&format!("sums_url={}\n", shell_quote(&sums)));
                s.push_str("sums_url=${sums_url//\\{arch\\}/$arch}\n");
                s.push_str("asset=${url##*/}\n");
                s.push_str("for attempt in 1 2 3 4 5; do\n");
                s.push_str("  if curl -fsSL --connect-timeout 20 -o \"$tmp.sums\" \"$sums_url\"; then break; fi\n");
                s.push_str("  if [ \"$attempt\" = 5 ]; then log \"cannot download $sums_url\"; rm -f \"$tmp\"; exit 1; fi\n");
                s.push_str("  sleep $((attempt * 3))\n");
                s.push_str("done\n");
                s.push_str("expected=$(awk -v f=\"$asset\" '($2 == f || $2 == \"*\" f) && length($1) == 64 {print $1; exit}' \"$tmp.sums\")\n");
                s.push_str("rm -f \"$tmp.sums\"\n");
                s.push_str("[ -n \"$expected\" ] || { log \"no checksum for $asset in $sums_url\"; rm -f \"$tmp\"; exit 1; }\n");
            }
        }
        s.push_str("echo \"$expected  $tmp\" | sha256sum -c --quiet || { log 'cml checksum mismatch'; rm -f \"$tmp\"; exit 1; }\n");
        s.push_str("chmod 0755 \"$tmp\"\nmv -f \"$tmp\" \"$R/usr/local/bin/cml\"\n\n");

        s.push_str("# 5. The runner, under systemd.\n");
        s.push_str("install -d -m 0755 \"$R/var/lib/cml\"\n");
        match &self.job_user {
            None => s.push_str(&format!("install -d -m 0700 \"$R{MACHINE_WORKDIR}\"\n")),
            Some(_) => s.push_str(&format!(
                "install -d -m 0700 -o \"$job_user\" -g \"$(id -gn \"$job_user\")\" \"$R{MACHINE_WORKDIR}\"\n"
            )),
        }
        s.push_str("install -d -m 0755 \"$R/etc/systemd/system\"\n");
        let credentials = if self.secrets.is_empty() {
            vec![]
        } else {
            vec![
                "--credentials-file".to_string(),
                MACHINE_CREDENTIALS.to_string(),
            ]
        };
        let exec = std::iter::once("/usr/local/bin/cml".to_string())
            .chain(
                self.runner_args
                    .iter()
                    .chain(&credentials)
                    .map(|a| systemd_quote(a)),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let unit = format!(
            "[Unit]\n\
             Description=cml self-hosted runner\n\
             After=network-online.target\n\
             Wants=network-online.target\n\
             \n\
             [Service]\n\
             Type=simple\n\
             EnvironmentFile=/etc/cml/env\n\
             ExecStart={exec}\n\
             # However cml ends (even killed or crashed), the machine goes: shutdown terminates it.\n\
             ExecStopPost=/bin/systemctl poweroff --no-block\n\
             Restart=no\n\
             KillMode=mixed\n\
             TimeoutStopSec=120\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n"
        );
        s.push_str(&heredoc(
            "\"$R/etc/systemd/system/cml.service\"",
            &unit,
            "CML_UNIT",
        ));
        s.push_str("chmod 0644 \"$R/etc/systemd/system/cml.service\"\n");
        s.push_str("systemctl daemon-reload\n");
        s.push_str("systemctl enable --now cml.service\n");
        s.push_str("# From here on, cml.service (and its ExecStopPost) owns the machine's end.\n");
        s.push_str("trap - ERR EXIT HUP INT TERM\n");
        s.push_str("log 'cml.service started'\n");
        s
    }
}

/// Step 3: the job user, and what it must not reach.
fn job_user_section(user: &str) -> String {
    let [v4, v6] = METADATA_ADDRESSES;
    let mut s = format!("# 3. Jobs run as {user}, who can read no credential.\n");
    s.push_str(&format!("job_user={}\n", shell_quote(user)));
    s.push_str(JOB_USER_CHECKS);
    s.push_str(
        "# The metadata service serves user-data (which holds the credential): root only.\n",
    );
    s.push_str("if command -v nft > /dev/null 2>&1; then\n");
    s.push_str(&format!(
        "  nft -f - <<'CML_NFT'\ntable inet cml_metadata {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    ip daddr {v4} meta skuid != 0 reject\n    ip6 daddr {v6} meta skuid != 0 reject\n  }}\n}}\nCML_NFT\n"
    ));
    s.push_str("elif command -v iptables > /dev/null 2>&1; then\n");
    s.push_str(&format!(
        "  iptables -w -I OUTPUT -d {v4} -m owner ! --uid-owner 0 -j REJECT\n"
    ));
    s.push_str(&format!(
        "  if command -v ip6tables > /dev/null 2>&1; then ip6tables -w -I OUTPUT -d {v6} -m owner ! --uid-owner 0 -j REJECT; fi\n"
    ));
    s.push_str(
        "else\n  log 'neither nft nor iptables is installed: the metadata service cannot be kept from jobs'\n  exit 1\nfi\n",
    );
    s.push_str("# cloud-init's copies of user-data hold the credential too.\n");
    s.push_str(CLOUD_INIT_COPIES);
    s.push('\n');
    s
}

/// `KEY="value"` lines: `\`, `"` and newlines escaped (`\\`, `\"`, `\n`), so a multi-line
/// value (a PEM key) is one line. [`parse_credentials`] reads them back exactly; systemd's
/// `EnvironmentFile=` reads the single-line values of the non-secret file the same way.
pub fn key_value_lines(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('"', "\\\"");
            format!("{k}=\"{v}\"\n")
        })
        .collect()
}

/// Reads [`key_value_lines`] back: `KEY="value"` per line, blank lines and `#` comments
/// skipped. Errors name the line number, never its content (it may be a secret).
pub fn parse_credentials(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = || format!("line {} is not KEY=\"value\"", n + 1);
        let (key, quoted) = line.split_once('=').ok_or_else(bad)?;
        let valid_key =
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .filter(|_| valid_key && quoted.len() >= 2)
            .ok_or_else(bad)?;
        let mut value = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    _ => return Err(bad()),
                },
                '"' => return Err(bad()),
                c => value.push(c),
            }
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// A here-document writing `body` to `path`, with a quoted delimiter (no expansion inside);
/// the delimiter is made unique if the body happens to contain it.
fn heredoc(path: &str, body: &str, delimiter: &str) -> String {
    let mut d = delimiter.to_string();
    while body.lines().any(|l| l == d) {
        d.push('_');
    }
    let body = if body.ends_with('\n') {
        body.to_string()
    } else {
        format!("{body}\n")
    };
    format!("cat > {path} <<'{d}'\n{body}{d}\n")
}

/// Single-quotes a value for bash.
pub fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// Quotes one `ExecStart=` argument: double quotes with C-style escapes, `$` and `%` doubled
/// (systemd would otherwise expand variables and specifiers).
pub fn systemd_quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StartupScript {
        StartupScript {
            cml_url_template: "https://releases.example.com/cml/v{version}/cml-{arch}-linux".into(),
            cml_version: "0.1.0".into(),
            cml_checksum: CmlChecksum::Sha256("ab".repeat(32)),
            user_script: Some("#!/bin/sh\necho 'network setup'\n".into()),
            runner_args: vec![
                "runner".into(),
                "--labels".into(),
                "cml-gpu".into(),
                "--idle-timeout".into(),
                "300".into(),
                "--name".into(),
                "odd \"name\" $HOME 100%".into(),
            ],
            env: vec![(
                "CML_GITHUB_RUNNER_RELEASES_URL".into(),
                "http://mirror/releases".into(),
            )],
            secrets: vec![("REPO_TOKEN".into(), Secret::new("ghp_secretvalue"))],
            max_lifetime: Some(std::time::Duration::from_secs(435600)),
            job_user: None,
        }
    }

    #[test]
    fn once_the_service_runs_the_trap_is_disarmed() {
        let s = sample().render();
        let started = s.find("systemctl enable --now cml.service").unwrap();
        let disarmed = s
            .find("trap - ERR EXIT HUP INT TERM\nlog 'cml.service started'")
            .unwrap();
        assert!(started < disarmed);
        assert!(
            s.find("trap 'cml_setup_failed $? $LINENO' ERR EXIT")
                .unwrap()
                < s.find("/etc/cml/credentials").unwrap()
        );
    }

    #[test]
    fn with_a_job_user_the_metadata_service_is_root_only_and_cloud_init_copies_go() {
        let mut sample = sample();
        sample.job_user = Some("runner".into());
        let s = sample.render();
        let at = |needle: &str| {
            s.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing:\n{s}"))
        };
        assert!(at("bash \"$R/etc/cml/startup.sh\"") < at("job_user='runner'"));
        assert!(at("ip daddr 169.254.169.254 meta skuid != 0 reject") < at("curl "));
        assert!(s.contains("ip6 daddr fd00:ec2::254 meta skuid != 0 reject"));
        assert!(s.contains("-m owner ! --uid-owner 0 -j REJECT"));
        assert!(at("rm -f \"$R\"/var/lib/cloud/instance/user-data.txt*") < at("curl "));
        assert!(s.contains("install -d -m 0700 -o \"$job_user\" -g \"$(id -gn \"$job_user\")\" \"$R/var/lib/cml/runner\""));
        assert!(
            !self::sample().render().contains("job_user="),
            "root by default"
        );
    }

    /// Compares `got` with the golden file `name` (`CML_UPDATE_GOLDEN=1` rewrites it).
    fn check_golden(name: &str, got: &str) {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("CML_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, got).unwrap();
        }
        let want =
            std::fs::read_to_string(&path).expect("golden file (CML_UPDATE_GOLDEN=1 writes it)");
        assert_eq!(
            got, want,
            "the startup script changed; review and rerun with CML_UPDATE_GOLDEN=1"
        );
    }

    #[test]
    fn golden() {
        check_golden("startup-script.sh", &sample().render());
        let mut hardened = sample();
        hardened.job_user = Some("runner".into());
        check_golden("startup-script-job-user.sh", &hardened.render());
    }

    #[test]
    fn order_is_secrets_user_script_install_service() {
        let s = sample().render();
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle} missing"));
        assert!(at("/etc/cml/credentials") < at("bash \"$R/etc/cml/startup.sh\""));
        assert!(
            at("OnBootSec=435600s") < at("bash \"$R/etc/cml/startup.sh\""),
            "the deadline is set before anything that may fail"
        );
        assert!(at("bash \"$R/etc/cml/startup.sh\"") < at("curl "));
        assert!(at("curl ") < at("systemctl enable --now cml.service"));
        assert!(s.contains("REPO_TOKEN=\"ghp_secretvalue\""));
        assert!(
            s.contains("ExecStopPost=/bin/systemctl poweroff --no-block"),
            "no machine outlives cml"
        );
        assert!(
            s.contains("\"--credentials-file\" \"/etc/cml/credentials\"\n"),
            "the service is given the credentials' path"
        );
        let unit = &s[at("[Unit]\nDescription=cml self-hosted runner")..];
        assert!(!unit.contains("ghp_"), "no secret in the unit: {unit}");
        let env = &s[at("cat > \"$R/etc/cml/env\"")..at("chmod 0600 \"$R/etc/cml/env\"")];
        assert!(
            !env.contains("ghp_"),
            "no secret in the service's environment: {env}"
        );
        assert!(
            s.contains("\"odd \\\"name\\\" $$HOME 100%%\""),
            "systemd quoting"
        );
        assert!(!format!("{:?}", sample()).contains("ghp_secretvalue"));
    }

    #[test]
    fn without_a_given_sha256_the_release_s_published_checksum_is_checked() {
        let mut s = sample();
        s.cml_checksum = CmlChecksum::Published {
            sums_url_template: "https://releases.example.com/cml/v{version}/SHA256SUMS".into(),
        };
        let out = s.render();
        let at = |needle: &str| {
            out.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing"))
        };
        assert!(out.contains("sums_url='https://releases.example.com/cml/v0.1.0/SHA256SUMS'"));
        assert!(out.contains("asset=${url##*/}"));
        assert!(at("curl -fsSL --connect-timeout 20 -o \"$tmp.sums\"") < at("sha256sum -c"));
        assert!(
            at("no checksum for $asset") < at("sha256sum -c"),
            "a list without the file fails the setup"
        );
        assert!(
            at("sha256sum -c") < at("mv -f \"$tmp\""),
            "checked before it is installed"
        );
    }

    #[test]
    fn a_body_containing_the_delimiter_cannot_end_the_heredoc_early() {
        let mut s = sample();
        s.user_script = Some("echo one\nCML_USER_SCRIPT\necho two\n".into());
        let out = s.render();
        assert!(out.contains("<<'CML_USER_SCRIPT_'"), "{out}");
    }

    #[test]
    fn multi_line_secrets_become_one_line_and_read_back_exactly() {
        let pairs = vec![
            (
                "CML_GITHUB_APP_PEM".to_string(),
                "-----BEGIN\nabc\n-----END".to_string(),
            ),
            ("ODD".to_string(), r#"a "quoted" \n back\slash"#.to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        let out = key_value_lines(&pairs);
        assert!(
            out.starts_with("CML_GITHUB_APP_PEM=\"-----BEGIN\\nabc\\n-----END\"\n"),
            "{out}"
        );
        assert_eq!(out.lines().count(), 3);
        assert_eq!(parse_credentials(&out).unwrap(), pairs);
    }

    #[test]
    fn malformed_credentials_name_the_line_not_the_value() {
        for bad in [
            "REPO_TOKEN=ghp_unquoted\n",
            "\nREPO_TOKEN=\"ghp_open\n",
            "REPO TOKEN=\"ghp_x\"\n",
            "REPO_TOKEN=\"ghp_\\x\"\n",
        ] {
            let e = parse_credentials(bad).unwrap_err();
            assert!(e.starts_with("line ") && !e.contains("ghp_"), "{e}");
        }
        assert_eq!(
            parse_credentials("# comment\n\nA=\"1\"\n").unwrap(),
            [("A".to_string(), "1".to_string())]
        );
    }
}
