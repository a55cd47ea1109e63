//! `cml runner cleanup`: finds what `cml` left behind in a cloud region (every resource with
//! the owner tag) and in the forge (offline runners it registered), says for each whether it
//! is orphaned and why (rules in [`cml_core::orphans`]), and deletes the orphans only with
//! `--delete`.
//!
//! Contract: without `--delete` nothing is changed. With it, only resources judged orphaned
//! are deleted — never an untagged resource, a resource made for another repository or
//! organization than `--repo`, a machine whose runner is online, or a busy runner — and
//! running it again finds nothing more to delete (idempotent). Every deletion is attempted
//! even when some fail; then the failures are reported and the exit code is 1.

use crate::exit::{ExitCode, Failure};
use crate::logging;
use crate::settings::CleanupSettings;
use cml_cloud::{Created, OwnedResource, ProviderOptions, Resource};
use cml_core::orphans::{analyze, Finding, Judge, Kind, Owned};
use cml_core::RunnerInfo;
use cml_forge::Forge;

/// Lists, judges, prints, and with `--delete` removes.
pub async fn run(s: CleanupSettings) -> Result<ExitCode, Failure> {
    let provider = cml_cloud::provider_for(&s.cloud, &ProviderOptions::default())
        .await
        .map_err(|e| Failure::error(e.into()))?;
    let owned: Vec<Owned> = provider
        .list_owned()
        .await
        .map_err(|e| Failure::error(e.into()))?
        .into_iter()
        .map(owned)
        .collect();
    let forge: Option<Box<dyn Forge>> = match &s.forge {
        Some(fs) => Some(
            super::forge::connect(fs, None)
                .await
                .map_err(Failure::error)?,
        ),
        None => {
            tracing::warn!("no repository or token: machines are not checked against the forge and no runner is removed\nhint: pass --repo and --token (or set REPO_TOKEN) to include them");
            None
        }
    };
    match &s.repo {
        Some(repo) => tracing::info!(
            repo = %repo,
            "judging what was made for {repo}; resources of any other repository or organization are not judged"
        ),
        None => tracing::warn!("no repository: resources of every repository are judged, but only by the rules needing no forge (no running machine is deleted)\nhint: pass --repo to judge one repository's resources fully"),
    }
    let runners: Option<Vec<RunnerInfo>> = match &forge {
        Some(f) => {
            logging::add_secrets(f.secrets());
            Some(f.runners().await.map_err(|e| Failure::error(e.into()))?)
        }
        None => None,
    };
    let findings = analyze(
        &owned,
        &Judge {
            scope: s.repo.as_ref(),
            runners: runners.as_deref(),
            grace: s.older_than,
        },
    );
    print_table(&findings);
    let orphans: Vec<&Finding> = findings.iter().filter(|f| f.is_orphan()).collect();
    let place = match s.cloud.cloud {
        cml_core::cloud::Cloud::Kubernetes => format!("namespace {}", provider.region()),
        _ => provider.region().to_string(),
    };
    tracing::info!(
        orphans = orphans.len(),
        region = %provider.region(),
        "{} orphaned of {} found in {}{}",
        orphans.len(),
        findings.len(),
        place,
        match &forge {
            Some(f) => format!(" and {}", f.scope()),
            None => String::new(),
        }
    );
    if !s.delete {
        if !orphans.is_empty() {
            tracing::info!("nothing deleted\nhint: run again with --delete to delete the orphans");
        }
        return Ok(ExitCode::Success);
    }

    // Every deletion is attempted, cloud and forge at once; failures are reported together.
    let created = Created::new();
    for f in &orphans {
        if let Some(r) = resource(f) {
            created.push(r);
        }
    }
    let cloud = async {
        if created.is_empty() {
            return Ok(0);
        }
        let asked = created.list().len();
        provider.destroy(&created).await?;
        Ok::<usize, cml_cloud::CloudError>(asked)
    };
    let runners = async {
        let mut failed = Vec::new();
        if let Some(forge) = &forge {
            for f in orphans.iter().filter(|f| f.kind == Kind::Runner) {
                // Judged orphaned = offline with no live machine: its agent is gone, so the
                // forge's "busy" (GitLab lists a killed runner's job as running for an hour)
                // must not keep it.
                match forge.delete_stopped_runner(&f.id, &f.owner).await {
                    Ok(d) => tracing::info!("runner {}: {d:?}", f.owner),
                    Err(e) => failed.push(format!("{e}")),
                }
            }
        }
        failed
    };
    let (cloud, mut failed) = tokio::join!(cloud, runners);
    match cloud {
        Ok(0) => {}
        Ok(n) => tracing::info!("deleted {n} cloud resource(s)"),
        Err(e) => failed.insert(0, format!("{e}")),
    }
    if failed.is_empty() {
        Ok(ExitCode::Success)
    } else {
        Err(Failure::error(anyhow::anyhow!(
            "some deletions failed (all were attempted):\n{}",
            failed.join("\n")
        )))
    }
}

fn owned(r: OwnedResource) -> Owned {
    let (kind, id) = match r.resource {
        Resource::Instance(id) => (Kind::Instance, id),
        Resource::SpotRequest(id) => (Kind::SpotRequest, id),
        Resource::KeyPair(id) => (Kind::KeyPair, id),
        Resource::SecurityGroup(id) => (Kind::SecurityGroup, id),
        Resource::Volume(id) => (Kind::Volume, id),
        Resource::Disk(id) => (Kind::Disk, id),
        Resource::ResourceGroup(id) => (Kind::ResourceGroup, id),
        Resource::Job(id) => (Kind::Job, id),
        Resource::Pod(id) => (Kind::Pod, id),
        Resource::Secret(id) => (Kind::Secret, id),
    };
    Owned {
        kind,
        id,
        owner: r.owner,
        scope: r.scope,
        state: r.state,
        age: r.age,
        used_by: r.used_by,
    }
}

fn resource(f: &Finding) -> Option<Resource> {
    Some(match f.kind {
        Kind::Instance => Resource::Instance(f.id.clone()),
        Kind::SpotRequest => Resource::SpotRequest(f.id.clone()),
        Kind::KeyPair => Resource::KeyPair(f.id.clone()),
        Kind::SecurityGroup => Resource::SecurityGroup(f.id.clone()),
        Kind::Volume => Resource::Volume(f.id.clone()),
        Kind::Disk => Resource::Disk(f.id.clone()),
        Kind::ResourceGroup => Resource::ResourceGroup(f.id.clone()),
        Kind::Job => Resource::Job(f.id.clone()),
        Kind::Pod => Resource::Pod(f.id.clone()),
        Kind::Secret => Resource::Secret(f.id.clone()),
        Kind::Runner => return None,
    })
}

/// The table, on stderr with the log records, so that stdout stays empty as for every
/// `cml runner` command.
fn print_table(findings: &[Finding]) {
    let mut rows = vec![[
        "VERDICT".to_string(),
        "KIND".into(),
        "ID".into(),
        "RUNNER".into(),
        "STATE".into(),
        "WHY".into(),
    ]];
    for f in findings {
        rows.push([
            f.verdict.as_str().into(),
            f.kind.as_str().into(),
            f.id.clone(),
            f.owner.clone(),
            f.state.clone(),
            f.reason.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (c, w) in widths.iter().enumerate() {
            line.push_str(&format!("{:<w$}  ", r[c], w = w));
        }
        line.push_str(&r[5]);
        eprintln!("{}", logging::redact(&line));
    }
    if findings.is_empty() {
        eprintln!("nothing of cml's found");
    }
}
