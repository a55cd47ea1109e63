//! `actions/runner` releases and the agent tarball downloads.
//!
//! The release body carries `<!-- BEGIN SHA linux-x64 -->HEX<!-- END SHA linux-x64 -->` lines as
//! the real release notes do; with `tamper_download` the served bytes do not match them.

use std::time::SystemTime;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::objects;
use super::{Resp, Shared};
use crate::util::rfc3339;
use crate::AGENT_VERSION;

const ARCHES: &[&str] = &["linux-x64", "linux-arm64"];

fn asset_name(arch: &str) -> String {
    format!("actions-runner-{arch}-{AGENT_VERSION}.tar.gz")
}

fn served_bytes(sh: &Shared) -> Vec<u8> {
    let mut data = sh.tarball.clone();
    if sh.cfg.tamper_download {
        data.extend_from_slice(b"tampered");
    }
    data
}

/// `GET /repos/{o}/{r}/releases/latest|tags/{tag}`; only `actions/runner` has releases.
pub fn release(sh: &Shared, owner: &str, repo: &str, rest: &[&str]) -> Resp {
    if !(owner.eq_ignore_ascii_case("actions") && repo.eq_ignore_ascii_case("runner")) {
        return Resp::not_found();
    }
    let tag = format!("v{AGENT_VERSION}");
    match rest {
        ["latest"] => {}
        ["tags", t] if *t == tag => {}
        _ => return Resp::not_found(),
    }
    let sha = hex::encode(Sha256::digest(&sh.tarball));
    let served = served_bytes(sh);
    let served_sha = hex::encode(Sha256::digest(&served));
    let mut body = format!(
        "## Runner {tag}\n\nSimulated release of the runner agent.\n\n## SHA-256 Checksums\n\n"
    );
    for arch in ARCHES {
        body.push_str(&format!(
            "- {}\n<!-- BEGIN SHA {arch} -->{sha}<!-- END SHA {arch} -->\n",
            asset_name(arch)
        ));
    }
    let now = rfc3339(SystemTime::now());
    let rel_url = super::api_url(sh, "/repos/actions/runner/releases/1");
    let assets: Vec<Value> = ARCHES
        .iter()
        .enumerate()
        .map(|(i, arch)| {
            let name = asset_name(arch);
            json!({
                "url": super::api_url(sh, &format!("/repos/actions/runner/releases/assets/{}", i + 1)),
                "browser_download_url": format!("{}/_sim/downloads/{name}", sh.base_url),
                "id": i + 1, "node_id": format!("RA_{}", i + 1), "name": name, "label": "",
                "state": "uploaded", "content_type": "application/gzip", "size": served.len(),
                "digest": format!("sha256:{served_sha}"), "download_count": 0,
                "created_at": now, "updated_at": now, "uploader": objects::user(sh, "github-actions", "Bot"),
            })
        })
        .collect();
    Resp::json(
        200,
        json!({
            "url": rel_url, "html_url": format!("{}/actions/runner/releases/tag/{tag}", sh.base_url),
            "assets_url": format!("{rel_url}/assets"), "upload_url": format!("{rel_url}/assets{{?name,label}}"),
            "tarball_url": super::api_url(sh, &format!("/repos/actions/runner/tarball/{tag}")),
            "zipball_url": super::api_url(sh, &format!("/repos/actions/runner/zipball/{tag}")),
            "id": 1, "node_id": "RE_1", "tag_name": tag, "target_commitish": "main",
            "name": tag, "body": body, "draft": false, "prerelease": false,
            "created_at": now, "published_at": now, "author": objects::user(sh, "github-actions", "Bot"),
            "assets": assets,
        }),
    )
}

/// `GET /_sim/downloads/{file}` (also `/actions/runner/releases/download/{tag}/{file}`).
pub fn download(sh: &Shared, file: &str) -> Resp {
    if !ARCHES.iter().any(|a| asset_name(a) == file) {
        return Resp::not_found();
    }
    sh.lock().downloads += 1;
    Resp::bytes(served_bytes(sh))
}
