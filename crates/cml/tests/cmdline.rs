//! CML's command lines and variables, through the real binary: each form CML's parser takes is
//! accepted with CML's meaning (checked on the resolved settings, which `CML_PRINT_SETTINGS=1`
//! prints instead of running the command), the per-command and legacy variables are read in
//! CML's order, bad forms are refused before anything is done, and `cml runner` writes its
//! records on standard error and nothing on standard output.

mod harness;

use harness::{Kind, World, SECS};
use serde_json::Value;

/// What a finished `cml` run printed.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `cml ARGS` with `CML_PRINT_SETTINGS=1` and only `vars` (plus a HOME, a repository and a
/// token, unless `vars` names its own), in a scratch directory.
fn run(w: &World, args: &[&str], vars: &[(&str, &str)]) -> Out {
    let mut cmd = w.cml(args);
    cmd.current_dir(w.tmp.path()).env("CML_PRINT_SETTINGS", "1");
    if !vars.iter().any(|(k, _)| k.ends_with("REPO")) {
        cmd.env("CML_REPO", "https://github.com/octo/app");
    }
    if !vars.iter().any(|(k, _)| k.contains("TOKEN")) {
        cmd.env("REPO_TOKEN", "ghp_cmdline_token");
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cml runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The settings `cml ARGS` resolved.
fn settings(w: &World, args: &[&str], vars: &[(&str, &str)]) -> Value {
    let out = run(w, args, vars);
    assert_eq!(out.code, 0, "{args:?} {vars:?}: {}", out.stderr);
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {:?}", out.stdout))
}

/// A case: the command line, its variables, and what the resolved settings then say (JSON
/// pointer, value).
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    Vec<(&'static str, Value)>,
);

fn check(w: &World, cases: &[Case]) {
    for (args, vars, expected) in cases {
        let got = settings(w, args, vars);
        for (pointer, value) in expected.iter() {
            assert_eq!(
                got.pointer(pointer),
                Some(value),
                "{args:?} {vars:?}: {pointer} in {got}"
            );
        }
    }
}

fn t() -> Value {
    Value::Bool(true)
}
fn f() -> Value {
    Value::Bool(false)
}
fn s(v: &str) -> Value {
    Value::String(v.into())
}
fn list(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|x| s(x)).collect())
}

#[test]
fn cml_s_runner_command_lines_mean_what_they_mean_in_cml() {
    let w = World::new();
    let cases: Vec<Case> = vec![
        // Booleans: bare, =true/=false, a following true/false, --no-X; given false beats
        // a variable's true.
        (
            &["runner", "--single"],
            &[],
            vec![("/settings/single", t())],
        ),
        (
            &["runner", "--single=true"],
            &[],
            vec![("/settings/single", t())],
        ),
        (
            &["runner", "--single", "true"],
            &[],
            vec![("/settings/single", t())],
        ),
        (
            &["runner", "--single=false"],
            &[("RUNNER_SINGLE", "true")],
            vec![("/settings/single", f())],
        ),
        (
            &["runner", "--single", "false"],
            &[("CML_RUNNER_SINGLE", "true")],
            vec![("/settings/single", f())],
        ),
        (
            &["runner", "--no-reuse"],
            &[("CML_RUNNER_REUSE", "true")],
            vec![("/settings/reuse", f())],
        ),
        (
            &["runner", "--reuse-idle"],
            &[],
            vec![("/settings/reuse_idle", t())],
        ),
        (
            &["runner", "--cloud=aws", "--cloud-spot=false"],
            &[("CML_RUNNER_CLOUD_SPOT", "true")],
            vec![("/settings/cloud/spot", f())],
        ),
        (
            &["runner", "--cloud=aws", "--no-cloud-spot"],
            &[("CML_RUNNER_CLOUD_SPOT", "true")],
            vec![("/settings/cloud/spot", f())],
        ),
        (
            &[
                "runner",
                "--cloud=aws",
                "--cloud-spot",
                "--cloud-spot-fallback=true",
            ],
            &[],
            vec![
                ("/settings/cloud/spot", t()),
                ("/settings/cloud/spot_fallback", t()),
            ],
        ),
        // --no-retry is an option of its own (CML rejects it: a bug not copied).
        (
            &["runner", "--no-retry"],
            &[],
            vec![("/settings/no_retry", t())],
        ),
        (
            &["runner", "--no-retry=false"],
            &[("RUNNER_NO_RETRY", "true")],
            vec![("/settings/no_retry", f())],
        ),
        // Repeated --labels are joined (CML: a string option given twice).
        (
            &["runner", "--labels=a", "--labels=b,c"],
            &[],
            vec![("/settings/labels", s("a,b,c"))],
        ),
        // Array options: several values after one flag, or repeated.
        (
            &["runner", "--docker-volumes", "a:/a", "b:/b"],
            &[],
            vec![("/settings/docker_volumes", list(&["a:/a", "b:/b"]))],
        ),
        (
            &[
                "runner",
                "--docker-volumes=a:/a",
                "--docker-volumes",
                "b:/b",
            ],
            &[],
            vec![("/settings/docker_volumes", list(&["a:/a", "b:/b"]))],
        ),
        (
            &[
                "runner",
                "--cloud=aws",
                "--cloud-metadata",
                "a=1",
                "b=2",
                "--cloud-metadata=a=3",
            ],
            &[],
            vec![("/settings/cloud/metadata", list(&["a=3", "b=2"]))],
        ),
        (
            &[
                "runner",
                "--cloud=aws",
                "--cloud-kubernetes-node-selector=a=1",
                "--cloud-kubernetes-node-selector=b=2",
            ],
            &[],
            vec![(
                "/settings/cloud/kubernetes_node_selector",
                list(&["a=1", "b=2"]),
            )],
        ),
        (
            &["runner", "--cloud=aws"],
            &[],
            vec![(
                "/settings/cloud/kubernetes_node_selector",
                list(&["accelerator=infer"]),
            )],
        ),
        // Aliases and camelCase.
        (
            &["runner", "--cloud=aws", "--cloud-aws-subnet-id=subnet-1"],
            &[],
            vec![("/settings/cloud/aws_subnet", s("subnet-1"))],
        ),
        (
            &["runner", "launch", "--path", "/work/dir"],
            &[],
            vec![("/settings/workdir", s("/work/dir"))],
        ),
        (
            &["runner", "--idleTimeout=90", "--noRetry"],
            &[],
            vec![
                ("/settings/idle_timeout", 90.0.into()),
                ("/settings/no_retry", t()),
            ],
        ),
        // CML's own machines pass --tf-resource so the runner removes the machine at the end.
        (
            &["runner", "--tf-resource=eyJ9"],
            &[],
            vec![("/settings/self_terminate", t())],
        ),
        (
            &["runner", "--tf_resource", "eyJ9"],
            &[],
            vec![("/settings/self_terminate", t())],
        ),
        (&["runner"], &[], vec![("/settings/self_terminate", f())]),
        // Globals anywhere.
        (
            &[
                "--driver=gitlab",
                "runner",
                "--repo",
                "https://example.com/g/p",
            ],
            &[],
            vec![
                ("/settings/driver", s("gitlab")),
                ("/settings/repo", s("https://example.com/g/p")),
            ],
        ),
        (
            &["runner", "cleanup", "--cloud=aws", "--delete=false"],
            &[("CML_RUNNER_DELETE", "true")],
            vec![("/settings/delete", f())],
        ),
        (
            &["runner", "cleanup", "--cloud=aws", "--delete"],
            &[],
            vec![("/settings/delete", t())],
        ),
    ];
    check(&w, &cases);
}

#[test]
fn cml_s_report_command_lines_mean_what_they_mean_in_cml() {
    let w = World::new();
    let cases: Vec<Case> = vec![
        // comment create / update / send-comment
        (
            &["comment", "create", "r.md"],
            &[],
            vec![
                ("/settings/comment/publish", t()),
                ("/settings/comment/update", f()),
                ("/settings/comment/target", s("auto")),
            ],
        ),
        (
            &["comment", "create", "r.md", "--publish=false"],
            &[],
            vec![("/settings/comment/publish", f())],
        ),
        (
            &["comment", "create", "--no-publish", "r.md"],
            &[],
            vec![("/settings/comment/publish", f())],
        ),
        (
            &[
                "comment",
                "create",
                "r.md",
                "--publish-url=https://assets.example",
            ],
            &[],
            vec![(
                "/settings/comment/asset_server",
                s("https://assets.example"),
            )],
        ),
        // --publish-native (CML's main name) and --native win over an asset server.
        (
            &[
                "comment",
                "create",
                "r.md",
                "--publish-native",
                "--publish-url=https://assets.example",
            ],
            &[],
            vec![("/settings/comment/asset_server", Value::Null)],
        ),
        (
            &[
                "send-comment",
                "r.md",
                "--native",
                "--publish-url=https://a.example",
            ],
            &[],
            vec![("/settings/comment/asset_server", Value::Null)],
        ),
        (
            &[
                "comment",
                "create",
                "r.md",
                "--watch",
                "--trigger-file",
                "go",
            ],
            &[],
            vec![
                ("/settings/comment/watch", t()),
                ("/settings/comment/trigger_file", s("go")),
            ],
        ),
        (
            &["comment", "update", "r.md"],
            &[],
            vec![("/settings/comment/update", t())],
        ),
        (
            &["send-comment", "r.md", "--update", "--target=pr/3"],
            &[],
            vec![
                ("/settings/comment/update", t()),
                ("/settings/comment/target", s("pr/3")),
            ],
        ),
        (
            &["send-comment", "r.md", "--pr"],
            &[],
            vec![("/settings/comment/target", s("pr"))],
        ),
        (
            &["comment", "create", "r.md", "--rm-watermark"],
            &[],
            vec![("/settings/comment/watermark", f())],
        ),
        // check create / send-github-check
        (
            &["check", "create", "r.md", "--conclusion=failure"],
            &[],
            vec![
                ("/settings/check/conclusion", s("failure")),
                ("/settings/check/status", s("completed")),
            ],
        ),
        (
            &[
                "send-github-check",
                "r.md",
                "--head-sha",
                "abc1234",
                "--title",
                "T",
            ],
            &[],
            vec![
                ("/options/commit-sha", s("abc1234")),
                ("/options/title", s("T")),
            ],
        ),
        // asset publish / publish: --native wins over --url, as in CML.
        (
            &["asset", "publish", "f.png", "--url", "https://a.example"],
            &[],
            vec![("/settings/asset_server", s("https://a.example"))],
        ),
        (
            &[
                "asset",
                "publish",
                "f.png",
                "--url",
                "https://a.example",
                "--native",
            ],
            &[],
            vec![("/settings/asset_server", Value::Null)],
        ),
        (
            &[
                "publish",
                "f.png",
                "--gitlab-uploads",
                "--url=https://a.example",
            ],
            &[],
            vec![("/settings/asset_server", Value::Null)],
        ),
        (
            &["publish", "f.png", "--md=true", "-t", "Plot"],
            &[],
            vec![("/options/md", t()), ("/options/title", s("Plot"))],
        ),
        // pr
        (
            &["pr", "--auto-merge", "a.txt", "b.txt"],
            &[],
            vec![
                ("/settings/merge", s("merge")),
                ("/options/globs", list(&["a.txt", "b.txt"])),
            ],
        ),
        (
            &["pr", "create", "--squash=true", "a.txt"],
            &[],
            vec![("/settings/merge", s("squash"))],
        ),
        (
            &["pr", "--merge=false", "--rebase"],
            &[],
            vec![("/settings/merge", s("rebase"))],
        ),
        (
            &["pr", "create", "--skip-ci", "--md", "x"],
            &[],
            vec![
                ("/options/skip-ci", t()),
                ("/options/md", t()),
                ("/settings/merge", Value::Null),
            ],
        ),
        // ci / repo prepare: --fetch-depth as CML (0 or less: the full history).
        (
            &["ci", "--fetch-depth", "10"],
            &[],
            vec![("/settings/fetch", 10.into())],
        ),
        (
            &["repo", "prepare", "--fetch-depth=0"],
            &[],
            vec![("/settings/fetch", s("unshallow"))],
        ),
        (
            &["ci", "--unshallow"],
            &[],
            vec![("/settings/fetch", s("unshallow"))],
        ),
        (
            &["ci", "--unshallow=false"],
            &[],
            vec![("/settings/fetch", Value::Null)],
        ),
        // workflow rerun / rerun-workflow
        (
            &["workflow", "rerun", "--id", "42"],
            &[],
            vec![("/settings/id", s("42"))],
        ),
        (
            &["rerun-workflow", "--id=43"],
            &[],
            vec![("/settings/id", s("43"))],
        ),
    ];
    check(&w, &cases);
}

#[test]
fn per_command_and_legacy_variables_in_cml_s_order() {
    let w = World::new();
    let cases: Vec<Case> = vec![
        // CML_<COMMAND>_<OPTION>, for every command.
        (
            &["comment", "create", "r.md"],
            &[
                ("CML_COMMENT_PUBLISH_NATIVE", "true"),
                ("CML_COMMENT_PUBLISH_URL", "https://a.example"),
            ],
            vec![("/settings/comment/asset_server", Value::Null)],
        ),
        (
            &["pr", "x"],
            &[("CML_PR_MERGE", "true")],
            vec![("/settings/merge", s("merge"))],
        ),
        (
            &["check", "create", "r.md"],
            &[("CML_CHECK_CONCLUSION", "neutral")],
            vec![("/settings/check/conclusion", s("neutral"))],
        ),
        (
            &["asset", "publish", "f"],
            &[("CML_ASSET_MD", "true")],
            vec![("/options/md", t()), ("/sources/md", s("CML_ASSET_MD"))],
        ),
        (
            &["repo", "prepare"],
            &[("CML_REPO_FETCH_DEPTH", "3")],
            vec![("/settings/fetch", 3.into())],
        ),
        (
            &["ci"],
            &[("CML_REPO_FETCH_DEPTH", "3")],
            vec![("/settings/fetch", 3.into())],
        ),
        (
            &["workflow", "rerun"],
            &[("CML_WORKFLOW_ID", "6")],
            vec![("/settings/id", s("6"))],
        ),
        (
            &["runner", "--cloud=aws"],
            &[("CML_RUNNER_CLOUD_AWS_SUBNET_ID", "subnet-9")],
            vec![("/settings/cloud/aws_subnet", s("subnet-9"))],
        ),
        // The old names' prefixes win over the new ones (CML copies them over).
        (
            &["comment", "update", "r.md"],
            &[
                ("CML_SEND_COMMENT_TARGET", "pr/1"),
                ("CML_COMMENT_TARGET", "pr/2"),
            ],
            vec![("/settings/comment/target", s("pr/1"))],
        ),
        (
            &["check", "create", "r.md"],
            &[
                ("CML_SEND_GITHUB_CHECK_CONCLUSION", "skipped"),
                ("CML_CHECK_CONCLUSION", "failure"),
            ],
            vec![("/settings/check/conclusion", s("skipped"))],
        ),
        (
            &["asset", "publish", "f"],
            &[
                ("CML_PUBLISH_URL", "https://p.example"),
                ("CML_ASSET_URL", "https://a.example"),
            ],
            vec![("/settings/asset_server", s("https://p.example"))],
        ),
        (
            &["repo", "prepare"],
            &[("CML_CI_FETCH_DEPTH", "4"), ("CML_REPO_FETCH_DEPTH", "3")],
            vec![("/settings/fetch", 4.into())],
        ),
        (
            &["rerun-workflow"],
            &[("CML_RERUN_WORKFLOW_ID", "5"), ("CML_WORKFLOW_ID", "6")],
            vec![("/settings/id", s("5"))],
        ),
        // Runner: RUNNER_X beats CML_X, which beats CML_RUNNER_X.
        (
            &["runner"],
            &[
                ("RUNNER_REPO", "https://github.com/legacy/r"),
                ("CML_REPO", "https://github.com/global/r"),
                ("CML_RUNNER_REPO", "https://github.com/runner/r"),
            ],
            vec![("/settings/repo", s("https://github.com/legacy/r"))],
        ),
        (
            &["runner"],
            &[
                ("CML_REPO", "https://github.com/global/r"),
                ("CML_RUNNER_REPO", "https://github.com/runner/r"),
            ],
            vec![("/settings/repo", s("https://github.com/global/r"))],
        ),
        (
            &["runner"],
            &[("CML_RUNNER_REPO", "https://github.com/runner/r")],
            vec![("/settings/repo", s("https://github.com/runner/r"))],
        ),
        (
            &["runner"],
            &[("RUNNER_LABELS", "old"), ("CML_RUNNER_LABELS", "new")],
            vec![("/settings/labels", s("old"))],
        ),
        (
            &["runner"],
            &[
                ("RUNNER_DRIVER", "gitlab"),
                ("CML_DRIVER", "bitbucket"),
                ("CML_RUNNER_DRIVER", "github"),
            ],
            vec![("/settings/driver", s("gitlab"))],
        ),
        (
            &["runner"],
            &[
                ("CML_TOKEN", "ghp_global"),
                ("CML_RUNNER_TOKEN", "ghp_runner"),
            ],
            vec![("/settings/credential/token_from", s("CML_TOKEN"))],
        ),
        (
            &["runner"],
            &[("RUNNER_PATH", "/legacy"), ("CML_RUNNER_WORKDIR", "/new")],
            vec![("/settings/workdir", s("/legacy"))],
        ),
        (
            &["runner"],
            &[
                ("RUNNER_IDLE_TIMEOUT", "never"),
                ("CML_RUNNER_IDLE_TIMEOUT", "60"),
                ("RUNNER_SINGLE", "true"),
                ("RUNNER_REUSE", ""),
                ("RUNNER_NO_RETRY", "true"),
            ],
            vec![
                ("/settings/idle_timeout", s("never")),
                ("/settings/single", t()),
                ("/settings/no_retry", t()),
            ],
        ),
        // The global CML_X beats the command's CML_<COMMAND>_X (CML_REPO is also repo
        // prepare's prefix: CML_REPO_REPO is its --repo).
        (
            &["ci"],
            &[
                ("CML_REPO", "https://github.com/global/r"),
                ("CML_REPO_REPO", "https://github.com/command/r"),
            ],
            vec![("/settings/forge/repo", s("https://github.com/global/r"))],
        ),
        (
            &["ci"],
            &[("CML_REPO_REPO", "https://github.com/command/r")],
            vec![("/settings/forge/repo", s("https://github.com/command/r"))],
        ),
        (
            &["comment", "create", "r.md"],
            &[("CML_TOKEN", "ghp_a"), ("CML_COMMENT_TOKEN", "ghp_b")],
            vec![("/settings/forge/credential/token_from", s("CML_TOKEN"))],
        ),
        (
            &["comment", "create", "r.md"],
            &[("CML_COMMENT_DRIVER_TOKEN", "ghp_b")],
            vec![(
                "/settings/forge/credential/token_from",
                s("CML_COMMENT_DRIVER_TOKEN"),
            )],
        ),
        // An empty variable is unset.
        (
            &["runner"],
            &[("RUNNER_LABELS", ""), ("CML_RUNNER_LABELS", "x")],
            vec![("/settings/labels", s("x"))],
        ),
    ];
    check(&w, &cases);
}

/// Only `true` is true (CML's rule): anything else is false, with a warning naming the
/// variable.
#[test]
fn a_boolean_variable_other_than_true_is_false_with_a_warning() {
    let w = World::new();
    let out = run(&w, &["runner"], &[("RUNNER_SINGLE", "yes")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(got["settings"]["single"], false);
    assert!(
        out.stderr
            .contains("RUNNER_SINGLE=\\\"yes\\\" is not `true`, so it means false"),
        "{}",
        out.stderr
    );
}

/// CML's hidden options are accepted; those without a meaning here are ignored with one
/// warning each, which never shows their value.
#[test]
fn cml_s_hidden_options_are_accepted_and_the_meaningless_ones_warned_about() {
    let w = World::new();
    let out = run(
        &w,
        &[
            "runner",
            "--tpi-version",
            ">= 0.9.10",
            "--cml-version=0.20.6",
            "--gcp-access-token=ya29.secret-gcp-token",
            "--runner-path",
            "/opt/runner",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    for option in [
        "--tpi-version",
        "--cml-version",
        "--gcp-access-token",
        "--runner-path",
    ] {
        let lines = out
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("{option} is ignored")))
            .count();
        assert_eq!(lines, 1, "{option}: {}", out.stderr);
    }
    assert!(!out.stderr.contains("secret-gcp-token"), "{}", out.stderr);
    assert!(!out.stdout.contains("secret-gcp-token"), "{}", out.stdout);
    assert!(
        out.stdout.contains("\"gcp-access-token\":\"***\""),
        "{}",
        out.stdout
    );
}

/// The help names each option's variables in CML's order, and never a variable's value.
#[test]
fn help_names_the_variables_read_and_no_value() {
    let w = World::new();
    let mut cmd = w.cml(&["runner", "--help"]);
    cmd.env("CML_TOKEN", "ghp_help_secret_value");
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "[env: RUNNER_LABELS, CML_RUNNER_LABELS]",
        "[env: RUNNER_REPO, CML_REPO, CML_RUNNER_REPO]",
        "[env: CML_DRIVER_TOKEN, CML_TOKEN, CML_RUNNER_DRIVER_TOKEN, CML_RUNNER_TOKEN]",
        "[env: CML_RUNNER_CLOUD_AWS_SUBNET, CML_RUNNER_CLOUD_AWS_SUBNET_ID]",
    ] {
        assert!(help.contains(needle), "{needle}:\n{help}");
    }
    assert!(!help.contains("ghp_help_secret_value"), "{help}");
    let out = w.cml(&["send-comment", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("[env: CML_SEND_COMMENT_PUBLISH_NATIVE, CML_SEND_COMMENT_NATIVE, CML_COMMENT_PUBLISH_NATIVE, CML_COMMENT_NATIVE]"),
        "{help}"
    );
}

/// Bad forms fail with exit code 2 and a message naming the option, before anything is
/// registered or posted.
#[test]
fn bad_forms_are_refused_before_anything_is_done() {
    let w = World::new();
    let repo = w.repo_url();
    let cases: &[(&[&str], &str)] = &[
        (
            &["runner", "--single=yes"],
            "invalid value 'yes' for '--single",
        ),
        (
            &["runner", "--no-labels"],
            "unexpected argument '--no-labels'",
        ),
        (
            &["runner", "--single", "--reuse"],
            "--single cannot be combined with --reuse",
        ),
        (&["runner", "--labels", "a", "b"], "'b'"),
        (
            &["ci", "--fetch-depth=abc"],
            "invalid --fetch-depth \\\"abc\\\"",
        ),
        (
            &["pr", "--merge", "--squash", "x"],
            "--merge and --squash exclude each other",
        ),
        (
            &["comment", "update", "r.md", "--rm-watermark"],
            "--rm-watermark cannot be combined with updating",
        ),
        (
            &["check", "create", "r.md", "--status=maybe"],
            "invalid --status \\\"maybe\\\"",
        ),
    ];
    std::fs::write(w.tmp.path().join("r.md"), "# report\n").unwrap();
    for (args, needle) in cases {
        let mut cmd = w.cml(args);
        cmd.current_dir(w.tmp.path())
            .env("CML_REPO", &repo)
            .env("CML_DRIVER", "github")
            .env("REPO_TOKEN", Kind::Github.token());
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(
        w.registered_names().is_empty(),
        "{:?}",
        w.registered_names()
    );
    assert!(w
        .sim
        .comments(cml_sim::ForgeKind::Github, Kind::Github.repo_path())
        .is_empty());
}

/// `cml runner` writes its records on standard error and nothing on standard output (as CML
/// does), so `cml runner ... > file` and pipelines made for CML work alike; its status records
/// carry CML's `date` and `repo`, and `job` (Bitbucket: with its `pipeline`).
fn records_on_stderr_only(kind: Kind) {
    let w = World::of(kind);
    let mut r = w.runner(&format!("{}-stderr", kind.driver()), &["--single"]);
    r.wait_status("ready", SECS(20));
    let job = w.queue_job("train", &["cml"], "true");
    let started = r.wait_status("job_started", SECS(20));
    assert_eq!(r.wait_exit(SECS(30)), 0, "{}", r.output());
    assert_eq!(r.stdout(), Vec::<String>::new(), "{}", r.output());
    let statuses: Vec<&Value> = r.seen.iter().filter(|v| v["status"].is_string()).collect();
    assert!(statuses.len() >= 4, "{}", r.output());
    for record in &statuses {
        assert_eq!(record["repo"], w.repo_url().as_str(), "{record}");
        assert!(record["date"].is_string(), "{record}");
        assert!(record["time"].is_string() && record["message"].is_string());
    }
    assert_eq!(started["job"], w.job_label(&job, "train").as_str());
    match kind {
        Kind::Bitbucket => assert_eq!(
            started["pipeline"],
            w.sim.bitbucket_pipeline_of(&job).unwrap().as_str(),
            "{started}"
        ),
        _ => assert!(started.get("pipeline").is_none(), "{started}"),
    }
}

#[test]
fn runner_records_go_to_stderr_only_on_github() {
    records_on_stderr_only(Kind::Github);
}

#[test]
fn runner_records_go_to_stderr_only_on_gitlab() {
    records_on_stderr_only(Kind::Gitlab);
}

#[test]
fn runner_records_go_to_stderr_only_on_bitbucket() {
    records_on_stderr_only(Kind::Bitbucket);
}
