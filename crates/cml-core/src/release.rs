//! Where this project publishes `cml`, and where a download's checksum is found.
//!
//! Every release (tag `vVERSION`, VERSION = the crates' version) publishes, side by side:
//! - `cml-x86_64-linux` and `cml-aarch64-linux`: static Linux binaries, named by the
//!   architecture as `uname -m` prints it;
//! - `SHA256SUMS`: one line per binary in `sha256sum` format (`<64 hex digits>  <file name>`).
//!
//! `.github/workflows/release.yml` publishes them; a test here checks that it publishes
//! exactly these names, so the default download URL always resolves for a released version.

/// The repository whose releases hold the binaries: the workspace's `repository` (a fork
/// changes it there).
pub const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// The architectures published, as `uname -m` prints them.
pub const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// A published binary's file name; `{arch}` is one of [`ARCHES`].
pub const ASSET_TEMPLATE: &str = "cml-{arch}-linux";

/// The checksum list published next to the binaries.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// The default download URL of `cml` on a cloud machine: this project's release of
/// `{version}` (the launcher's own), the binary for `{arch}` (the machine's `uname -m`).
pub const DEFAULT_URL_TEMPLATE: &str = concat!(
    env!("CARGO_PKG_REPOSITORY"),
    "/releases/download/v{version}/cml-{arch}-linux"
);

/// Where the checksum of a download is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    /// The `SHA256SUMS` file in the download's directory.
    pub sums_url: String,
    /// The name the download has in it: the URL's last path segment.
    pub asset: String,
}

/// For a download URL laid out as a release (or a template of one: `{version}` and `{arch}`
/// are kept for the caller to substitute), the [`SUMS_FILE`] in the same directory and the
/// name to look up in it. `None` when the URL cannot be read that way: not `http(s)`, no file
/// name at the end of its path, or a query or fragment (a signed URL, whose signature would
/// not cover a neighbour) — the checksum must then be given explicitly.
pub fn checksums_for(url: &str) -> Option<Checksums> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    if url.contains(['?', '#']) {
        return None;
    }
    let (host, path) = rest.split_once('/')?;
    let asset = path.rsplit_once('/').map_or(path, |(_, file)| file);
    if host.is_empty() || asset.is_empty() || asset == "." || asset == ".." {
        return None;
    }
    let base = &url[..url.len() - asset.len()];
    Some(Checksums {
        sums_url: format!("{base}{SUMS_FILE}"),
        asset: asset.to_string(),
    })
}

/// `template` with `{version}` and `{arch}` substituted.
pub fn resolve(template: &str, version: &str, arch: &str) -> String {
    template
        .replace("{version}", version)
        .replace("{arch}", arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_this_versions_release_asset() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            resolve(DEFAULT_URL_TEMPLATE, version, "x86_64"),
            format!("{REPOSITORY}/releases/download/v{version}/cml-x86_64-linux")
        );
        assert!(
            REPOSITORY.starts_with("https://github.com/"),
            "{REPOSITORY}"
        );
        let sums = checksums_for(DEFAULT_URL_TEMPLATE).unwrap();
        assert_eq!(
            sums.sums_url,
            format!("{REPOSITORY}/releases/download/v{{version}}/SHA256SUMS")
        );
        assert_eq!(sums.asset, ASSET_TEMPLATE);
        assert!(DEFAULT_URL_TEMPLATE.ends_with(&format!("/{ASSET_TEMPLATE}")));
    }

    #[test]
    fn the_checksum_list_is_found_next_to_a_download_or_not_at_all() {
        assert_eq!(
            checksums_for("https://mirror.example.com/cml/v1.2.3/cml-aarch64-linux"),
            Some(Checksums {
                sums_url: "https://mirror.example.com/cml/v1.2.3/SHA256SUMS".into(),
                asset: "cml-aarch64-linux".into(),
            })
        );
        assert_eq!(
            checksums_for("http://127.0.0.1:8080/cml").unwrap().sums_url,
            "http://127.0.0.1:8080/SHA256SUMS"
        );
        for url in [
            "https://bucket.example.com/cml?X-Amz-Signature=abc",
            "https://example.com/cml#x",
            "https://example.com/dir/",
            "https://example.com",
            "https:///cml",
            "ftp://example.com/cml",
            "/usr/local/bin/cml",
            "https://example.com/dir/..",
        ] {
            assert_eq!(checksums_for(url), None, "{url}");
        }
    }

    /// The release workflow publishes exactly the names the default URL and the checksum
    /// lookup expect, for every architecture, and the tag it checks is `v` + the version.
    #[test]
    fn the_release_workflow_publishes_what_the_default_url_names() {
        let workflow = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.github/workflows/release.yml");
        let text = std::fs::read_to_string(&workflow)
            .unwrap_or_else(|e| panic!("{}: {e}", workflow.display()));
        for arch in ARCHES {
            let asset = resolve(ASSET_TEMPLATE, "", arch);
            assert!(
                text.contains(&format!("asset: {asset}\n")),
                "release.yml does not publish {asset}"
            );
        }
        assert!(text.contains(&format!("sha256sum cml-*-linux > {SUMS_FILE}")));
        assert!(text.contains("tags: [\"v*\"]"));
    }
}
