//! The runner image's entrypoint (`docker/entrypoint.sh`), run here as a script with the real
//! `cml` first on PATH (no container engine is needed): every `cml` subcommand and option
//! goes to `cml`, even where a system program has the same name (`pr`), and any other
//! program runs as it is, as CI job images need.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn entrypoint() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/entrypoint.sh")
}

fn run(args: &[&str]) -> Output {
    let cml_dir = Path::new(env!("CARGO_BIN_EXE_cml")).parent().unwrap();
    Command::new("sh")
        .arg(entrypoint())
        .args(args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", cml_dir.display()))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The subcommands `cml --help` lists.
fn subcommands() -> Vec<String> {
    let help = stdout(
        &Command::new(env!("CARGO_BIN_EXE_cml"))
            .arg("--help")
            .output()
            .unwrap(),
    );
    let list = help
        .split_once("Commands:\n")
        .expect("cml --help lists its commands")
        .1;
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn every_cml_subcommand_goes_to_cml_and_other_programs_run_as_they_are() {
    let subs = subcommands();
    assert!(
        subs.iter().any(|s| s == "runner") && subs.iter().any(|s| s == "pr"),
        "{subs:?}"
    );
    for sub in &subs {
        // `cml help` takes no `--help`; its usage line is cml's own.
        let (out, usage) = if sub == "help" {
            (run(&["help"]), "Usage: cml ".to_string())
        } else {
            (run(&[sub, "--help"]), format!("Usage: cml {sub}"))
        };
        assert!(out.status.success(), "{sub}: {out:?}");
        assert!(
            stdout(&out).contains(&usage),
            "`{sub}` did not reach cml (add it to docker/entrypoint.sh): {}",
            stdout(&out)
        );
    }
    let version = format!("cml {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout(&run(&["--version"])), version);
    // No arguments: cml itself (its usage, on stderr).
    let bare = run(&[]);
    assert!(String::from_utf8_lossy(&bare.stderr).contains("Usage: cml"));
    // A job's shell command, as GitLab's Docker executor gives it.
    let job = run(&["sh", "-c", "echo job ran; cml --version"]);
    assert!(job.status.success(), "{job:?}");
    assert_eq!(stdout(&job), format!("job ran\n{version}"));
    // A word that is no program: cml says what is wrong.
    let unknown = run(&["no-such-subcommand"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-subcommand"));
}
