//! `cml runner cleanup` against moto (EC2) and the GitHub simulator: resources leaked on
//! purpose are found and, only with `--delete`, removed; everything else is left alone.

mod harness;

use harness::moto::{Ec2, Moto};
use harness::{Running, World, PAT, SECS};

fn tag(k: &str, v: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder().key(k).value(v).build()
}

/// Starts an instance, tagged with our owner tag when `owner` is given, made for `repo`.
fn instance(ec2: &Ec2, owner: Option<&str>, repo: &str) -> String {
    instance_in(ec2, owner, repo, None)
}

/// [`instance`] in the security group `group`, if given.
fn instance_in(ec2: &Ec2, owner: Option<&str>, repo: &str, group: Option<&str>) -> String {
    let mut req = ec2
        .client
        .run_instances()
        .image_id("ami-0c0ffee0c0ffee001")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if let Some(g) = group {
        req = req.security_group_ids(g);
    }
    if let Some(o) = owner {
        req = req.tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(tag("cml:id", o))
                .tags(tag("cml:repo", repo))
                .build(),
        );
    }
    let out = ec2.rt.block_on(req.send()).unwrap();
    out.instances()[0].instance_id().unwrap().to_string()
}

fn cleanup(w: &World, moto: &Moto, extra: &[&str]) -> Running {
    let repo = w.repo_url();
    let mut args = vec![
        "runner",
        "cleanup",
        "--cloud=aws",
        "--cloud-region=us-east",
        "--driver=github",
        "--repo",
        &repo,
        "--token",
        PAT,
    ];
    args.extend_from_slice(extra);
    let mut cmd = w.cml(&args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    Running::spawn(cmd)
}

fn state(ec2: &Ec2, id: &str) -> String {
    ec2.instances()
        .into_iter()
        .find(|i| i.id == id)
        .map(|i| i.state)
        .unwrap_or_default()
}

#[test]
fn leaked_resources_are_listed_then_deleted_and_the_rest_left_alone() {
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();

    // A runner that is online, with its machine: kept.
    let mut alive = w.runner("alive", &["--idle-timeout=never"]);
    alive.wait_status("ready", SECS(20));
    let repo = w.repo_url();
    let alive_machine = instance(&ec2, Some("alive"), &repo);
    // A runner whose supervisor died: registered, offline, with cml's default name.
    let mut dead = w.runner("cml-0deadbeef0", &["--idle-timeout=never"]);
    dead.wait_status("ready", SECS(20));
    dead.child.kill().unwrap();
    dead.wait_exit(SECS(10));
    w.wait_until("the dead runner offline", SECS(10), |s| {
        s.runners()
            .iter()
            .any(|r| r.name == "cml-0deadbeef0" && r.status == "offline")
    });
    // Leaked on purpose: a machine without a runner, a key pair without a machine.
    let leaked = instance(&ec2, Some("leaked-1"), &repo);
    ec2.rt
        .block_on(
            ec2.client
                .create_key_pair()
                .key_name("cml-leaked-2")
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::KeyPair)
                        .tags(tag("cml:id", "leaked-2"))
                        .tags(tag("cml:repo", &repo))
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let volume = ec2
        .rt
        .block_on(
            ec2.client
                .create_volume()
                .availability_zone("us-east-1a")
                .size(1)
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                        .tags(tag("cml:id", "leaked-3"))
                        .tags(tag("cml:repo", &repo))
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .volume_id()
        .unwrap()
        .to_string();
    // Not ours: never touched.
    let foreign = instance(&ec2, None, &repo);

    // 1. The table only (young machines are given time to register by default).
    let mut r = cleanup(&w, &moto, &["--older-than=0"]);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    let out = r.output();
    for (needle, verdict) in [
        (leaked.as_str(), "orphan"),
        ("cml-leaked-2", "orphan"),
        ("cml-0deadbeef0", "orphan"),
        (volume.as_str(), "orphan"),
        (alive_machine.as_str(), "keep"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not listed:\n{out}"));
        assert!(
            line.contains(verdict),
            "{needle} should be {verdict}: {line}"
        );
    }
    assert!(
        !out.contains(&foreign),
        "an untagged machine was listed:\n{out}"
    );
    assert!(out.contains("--delete"), "says how to delete:\n{out}");
    assert_eq!(
        state(&ec2, &leaked),
        "running",
        "nothing deleted without --delete"
    );
    assert!(ec2.key_pairs().contains(&"cml-leaked-2".to_string()));

    // 2. Deleting.
    let mut r = cleanup(&w, &moto, &["--older-than=0", "--delete"]);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert!(matches!(
        state(&ec2, &leaked).as_str(),
        "terminated" | "shutting-down"
    ));
    assert!(!ec2.key_pairs().contains(&"cml-leaked-2".to_string()));
    let volumes = ec2
        .rt
        .block_on(ec2.client.describe_volumes().volume_ids(&volume).send());
    assert!(
        volumes.map_or(true, |v| v.volumes().is_empty()),
        "the detached disk was deleted"
    );
    assert_eq!(state(&ec2, &alive_machine), "running");
    assert_eq!(state(&ec2, &foreign), "running");
    let names: Vec<String> = w.sim.runners().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        ["alive"],
        "the offline runner removed, the online one kept"
    );

    // 3. Idempotent: nothing more to delete.
    let mut r = cleanup(&w, &moto, &["--older-than=0", "--delete"]);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert!(!r.output().contains("orphan "), "{}", r.output());
    assert!(r.output().contains("0 orphaned"), "{}", r.output());

    // By default a machine younger than 20 minutes may still be registering: kept.
    let young = instance(&ec2, Some("young"), &repo);
    let mut r = cleanup(&w, &moto, &["--delete"]);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    assert_eq!(state(&ec2, &young), "running");
    assert!(
        r.output().contains("may still be registering"),
        "{}",
        r.output()
    );

    alive.signal(libc::SIGTERM);
    alive.wait_exit(SECS(20));
}

#[test]
fn cleanup_needs_a_cloud_and_changes_nothing_on_bad_input() {
    let w = World::new();
    let mut r = Running::spawn(w.cml(&["runner", "cleanup"]));
    assert_eq!(r.wait_exit(SECS(20)), 2, "{}", r.output());
    assert!(r.output().contains("needs --cloud"), "{}", r.output());
    assert!(r.output().contains("--cloud=kubernetes"), "{}", r.output());
    let mut r = Running::spawn(w.cml(&["runner", "cleanup", "--cloud=aws", "--older-than=soon"]));
    assert_eq!(r.wait_exit(SECS(20)), 2, "{}", r.output());
    assert!(r.output().contains("--older-than"), "{}", r.output());
    assert!(w.sim.requests().is_empty());
}

/// `cml runner cleanup` with `extra` arguments, talking to EC2 at `endpoint`.
fn cleanup_via(w: &World, moto: &Moto, endpoint: &str, extra: &[&str]) -> Running {
    let mut args = vec!["runner", "cleanup", "--cloud=aws", "--cloud-region=us-east"];
    args.extend_from_slice(extra);
    let mut cmd = w.cml(&args);
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint);
    Running::spawn(cmd)
}

fn key_pair(ec2: &Ec2, owner: &str, repo: &str) {
    ec2.rt
        .block_on(
            ec2.client
                .create_key_pair()
                .key_name(format!("cml-{owner}"))
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::KeyPair)
                        .tags(tag("cml:id", owner))
                        .tags(tag("cml:repo", repo))
                        .build(),
                )
                .send(),
        )
        .unwrap();
}

/// The table row of resource `needle` (its id column, not a mention in another's reason).
fn verdict_line(out: &str, needle: &str) -> String {
    out.lines()
        .find(|l| l.split_whitespace().nth(2) == Some(needle))
        .unwrap_or_else(|| panic!("{needle} not listed:\n{out}"))
        .to_string()
}

#[test]
fn only_the_given_scope_is_judged_the_shared_group_in_use_and_young_key_pairs_are_kept_and_a_failed_deletion_stops_nothing(
) {
    use cml_sim::ec2proxy::{Ec2FaultProxy, Fault};
    let w = World::new();
    let moto = Moto::start();
    let ec2 = moto.ec2();
    let proxy = Ec2FaultProxy::start(&moto.url, &[]).unwrap();
    let repo = w.repo_url();

    // The shared group, used by another repository's machine.
    let shared = ec2
        .rt
        .block_on(
            ec2.client
                .create_security_group()
                .group_name("cml-runners")
                .description("cml runners")
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                        .tags(tag("cml:id", "shared"))
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    // Other scopes' machines without online runners; one has a name this repository's
    // forge knows as offline.
    let other = instance_in(
        &ec2,
        Some("cml-0deadbeef1"),
        "https://github.com/someone/else",
        Some(&shared),
    );
    let org = instance(&ec2, Some("org-runner"), &format!("{}/octo", w.sim.url()));
    let gitlab = instance(&ec2, Some("gl-runner"), "https://gitlab.com/octo/app");
    // This repository's leaks, and an offline runner with cml's default name.
    let leak_a = instance(&ec2, Some("leak-a"), &repo);
    let leak_b = instance(&ec2, Some("leak-b"), &repo);
    key_pair(&ec2, "leak-c", &repo);
    let mut dead = w.runner("cml-0deadbeef1", &["--idle-timeout=never"]);
    dead.wait_status("ready", SECS(20));
    dead.child.kill().unwrap();
    dead.wait_exit(SECS(10));
    w.wait_until("the dead runner offline", SECS(10), |s| {
        s.runners()
            .iter()
            .any(|r| r.name == "cml-0deadbeef1" && r.status == "offline")
    });
    std::thread::sleep(SECS(3));
    // A launch in flight: its key pair exists, its machine not yet.
    key_pair(&ec2, "launching", &repo);

    // One deletion fails: the others are all attempted.
    proxy.inject(
        "TerminateInstances",
        Some(&leak_a),
        Fault::Error("UnauthorizedOperation".into()),
        None,
    );
    let mut r = cleanup_via(
        &w,
        &moto,
        &proxy.url(),
        &[
            "--driver=github",
            "--repo",
            &repo,
            "--token",
            PAT,
            "--older-than=2",
            "--delete",
        ],
    );
    assert_eq!(r.wait_exit(SECS(60)), 1, "{}", r.output());
    let out = r.output();
    for id in [&other, &org, &gitlab] {
        let line = verdict_line(&out, id);
        assert!(
            line.contains("not-judged") && line.contains("another repository's"),
            "{line}"
        );
        assert_eq!(state(&ec2, id), "running", "{id} was touched");
    }
    assert!(
        verdict_line(&out, &shared).contains(&format!("used by {other}")),
        "{out}"
    );
    assert!(
        verdict_line(&out, "cml-launching").contains("a launch may be in flight"),
        "{out}"
    );
    assert!(ec2.key_pairs().contains(&"cml-launching".to_string()));
    let groups = ec2
        .rt
        .block_on(
            ec2.client
                .describe_security_groups()
                .group_ids(&shared)
                .send(),
        )
        .unwrap();
    assert_eq!(
        groups.security_groups().len(),
        1,
        "the shared group is kept"
    );
    // The failure is reported; everything else was deleted.
    assert!(out.contains("some deletions failed"), "{out}");
    assert!(
        out.contains(&format!("instance {leak_a}")) && out.contains("UnauthorizedOperation"),
        "{out}"
    );
    assert_eq!(state(&ec2, &leak_a), "running");
    assert!(matches!(
        state(&ec2, &leak_b).as_str(),
        "terminated" | "shutting-down"
    ));
    assert!(!ec2.key_pairs().contains(&"cml-leak-c".to_string()));
    assert!(
        w.sim.runners().is_empty(),
        "the offline runner was removed: {:?}",
        w.sim.runners()
    );

    // Without a repository: only what needs no forge is judged, in every scope; no running
    // machine is an orphan.
    proxy.clear_faults();
    let mut r = cleanup_via(&w, &moto, &proxy.url(), &["--older-than=2"]);
    assert_eq!(r.wait_exit(SECS(60)), 0, "{}", r.output());
    let out = r.output();
    for id in [&other, &org, &gitlab, &leak_a] {
        let line = verdict_line(&out, id);
        assert!(
            line.contains("keep") && line.contains("not checked against the forge"),
            "{line}"
        );
    }
}
