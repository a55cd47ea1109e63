//! The startup script of a cloud runner machine, rendered from the launcher's settings.
//!
//! What the script guarantees, in order:
//! 1. the secrets (forge token or GitHub App key) go into `/etc/cml/env`, a root-only file
//!    (mode 0600 in a 0700 directory) that only the `cml` service reads — never the command
//!    line, never the job steps' environment (the agent's environment is filtered by `cml`);
//! 2. the user's `--cloud-startup-script` runs *before* anything else, so it can set up the
//!    network, mounts or proxies the rest needs;
//! 3. the same `cml` version as the launcher is installed from a release URL template
//!    (`{version}` and `{arch}` are substituted), its SHA-256 checked when one is given;
//! 4. `cml runner` runs under the systemd unit `cml.service` with the launcher's runner
//!    options (idle timeout included) and `--self-terminate`, so the machine removes itself
//!    when the runner ends; the instance is launched with shutdown behaviour `terminate`, so a
//!    plain OS shutdown removes it too, and the unit powers the machine off whenever `cml`
//!    stops, even killed or crashed, so no machine outlives its supervisor.
//!
//! Every value is quoted for the context it lands in (shell here-documents with quoted
//! delimiters, systemd's `ExecStart=` quoting), so no value can break out of its place.

use crate::Secret;

/// Where the runner's files live on the machine.
pub const MACHINE_WORKDIR: &str = "/var/lib/cml/runner";

/// Everything the script needs.
pub struct StartupScript {
    /// The `cml` release URL template (`{version}`, `{arch}` = `x86_64` / `aarch64`).
    pub cml_url_template: String,
    /// The version substituted for `{version}`.
    pub cml_version: String,
    /// Expected SHA-256 of the downloaded binary, when known.
    pub cml_sha256: Option<String>,
    /// The decoded `--cloud-startup-script`.
    pub user_script: Option<String>,
    /// Arguments after `cml` for the machine's runner (no secrets).
    pub runner_args: Vec<String>,
    /// Non-secret environment for the service (`CML_GITHUB_RUNNER_RELEASES_URL`, ...).
    pub env: Vec<(String, String)>,
    /// Secret environment for the service (`REPO_TOKEN`, `CML_GITHUB_APP_PEM`, ...).
    pub secrets: Vec<(String, Secret)>,
    /// The machine powers itself off this long after boot, whatever `cml` does; `None` = never.
    pub max_lifetime: Option<std::time::Duration>,
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
            .finish_non_exhaustive()
    }
}

impl StartupScript {
    /// The script (bash).
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("#!/bin/bash\n");
        s.push_str(&format!(
            "# Runner machine setup, rendered by cml {}.\n",
            self.cml_version
        ));
        s.push_str("set -euo pipefail\numask 077\n");
        s.push_str(
            "# Files go below $CML_MACHINE_ROOT (empty on a real machine; a sandbox in tests).\n",
        );
        s.push_str("R=${CML_MACHINE_ROOT:-}\n");
        s.push_str("log() { echo \"cml-setup: $*\"; echo \"cml-setup: $*\" > /dev/console 2>/dev/null || true; }\n\n");

        s.push_str("# 1. Secrets: a root-only file read by cml.service alone.\n");
        s.push_str("install -d -m 0700 \"$R/etc/cml\"\n");
        s.push_str(&heredoc(
            "\"$R/etc/cml/env\"",
            &env_file(&self.secrets, &self.env),
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

        s.push_str("# 2. The user's startup script, before anything else.\n");
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

        s.push_str("# 3. cml, the same version as the launcher.\n");
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
        if let Some(sha) = &self.cml_sha256 {
            s.push_str(&format!(
                "echo {}'  '\"$tmp\" | sha256sum -c --quiet || {{ log 'cml checksum mismatch'; rm -f \"$tmp\"; exit 1; }}\n",
                shell_quote(sha)
            ));
        }
        s.push_str("chmod 0755 \"$tmp\"\nmv -f \"$tmp\" \"$R/usr/local/bin/cml\"\n\n");

        s.push_str("# 4. The runner, under systemd.\n");
        s.push_str(&format!("install -d -m 0700 \"$R{MACHINE_WORKDIR}\"\n"));
        s.push_str("install -d -m 0755 \"$R/etc/systemd/system\"\n");
        let exec = std::iter::once("/usr/local/bin/cml".to_string())
            .chain(self.runner_args.iter().map(|a| systemd_quote(a)))
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
        s.push_str("log 'cml.service started'\n");
        s
    }
}

/// `KEY='value'` lines for systemd's `EnvironmentFile=`. Multi-line values (a PEM key) are
/// written with `\n` escapes, which `cml` turns back into newlines.
fn env_file(secrets: &[(String, Secret)], env: &[(String, String)]) -> String {
    let line = |k: &str, v: &str| {
        let v = v
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('"', "\\\"");
        format!("{k}=\"{v}\"\n")
    };
    env.iter()
        .map(|(k, v)| line(k, v))
        .chain(secrets.iter().map(|(k, v)| line(k, v.expose())))
        .collect()
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
            cml_sha256: Some("ab".repeat(32)),
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
        }
    }

    #[test]
    fn golden() {
        let got = sample().render();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/startup-script.sh"
        );
        if std::env::var_os("CML_UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &got).unwrap();
        }
        let want =
            std::fs::read_to_string(path).expect("golden file (CML_UPDATE_GOLDEN=1 writes it)");
        assert_eq!(
            got, want,
            "the startup script changed; review and rerun with CML_UPDATE_GOLDEN=1"
        );
    }

    #[test]
    fn order_is_secrets_user_script_install_service() {
        let s = sample().render();
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle} missing"));
        assert!(at("/etc/cml/env") < at("bash \"$R/etc/cml/startup.sh\""));
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
            !s.contains("ExecStart=/usr/local/bin/cml ghp_"),
            "no secret on the command line"
        );
        assert!(
            s.contains("\"odd \\\"name\\\" $$HOME 100%%\""),
            "systemd quoting"
        );
        assert!(!format!("{:?}", sample()).contains("ghp_secretvalue"));
    }

    #[test]
    fn a_body_containing_the_delimiter_cannot_end_the_heredoc_early() {
        let mut s = sample();
        s.user_script = Some("echo one\nCML_USER_SCRIPT\necho two\n".into());
        let out = s.render();
        assert!(out.contains("<<'CML_USER_SCRIPT_'"), "{out}");
    }

    #[test]
    fn multi_line_secrets_become_one_line() {
        let out = env_file(
            &[(
                "CML_GITHUB_APP_PEM".into(),
                Secret::new("-----BEGIN\nabc\n-----END"),
            )],
            &[],
        );
        assert_eq!(out, "CML_GITHUB_APP_PEM=\"-----BEGIN\\nabc\\n-----END\"\n");
    }
}
