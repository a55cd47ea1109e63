//! `cml asset publish` (old name `cml publish`): upload a file and print its URL or Markdown.
//!
//! Where files go: with `--url`, to that asset server (CML's protocol: the file is POSTed as
//! the body, with `Content-Type` and `Content-Disposition`, and the answer is the URL);
//! otherwise to the forge: GitLab project uploads, Bitbucket downloads, and on GitHub, which
//! has no upload API, a commit on the `cml-assets` branch. No third-party service is used
//! unless named with `--url`.

use super::{file_name, read_input};
use crate::cli::PublishArgs;
use crate::exit::Failure;
use crate::settings::ReportSettings;
use anyhow::{anyhow, bail, Context};
use cml_core::report::{asset_markdown, mime_type};
use cml_forge::{Reports, Upload};
use std::io::Write;
use std::path::Path;

/// Uploads files to the forge or to an asset server.
pub struct Publisher<'a> {
    forge: &'a dyn Reports,
    server: Option<String>,
}

impl<'a> Publisher<'a> {
    pub fn new(forge: &'a dyn Reports, server: Option<String>) -> Publisher<'a> {
        Publisher { forge, server }
    }

    /// Where files go, for messages.
    pub fn place(&self) -> String {
        match &self.server {
            Some(url) => format!("asset server {url}"),
            None => self.forge.upload_place(),
        }
    }

    /// Uploads `bytes` as `name`; its URL.
    pub async fn upload(&self, name: &str, bytes: &[u8], mime: &str) -> anyhow::Result<String> {
        let url = match &self.server {
            Some(server) => post_to_server(server, name, bytes, mime).await?,
            None => self.forge.upload(Upload { name, bytes, mime }).await?,
        };
        tracing::info!(
            file = name,
            url = url.as_str(),
            "published to {}",
            self.place()
        );
        Ok(url)
    }
}

/// CML's asset server protocol.
async fn post_to_server(
    server: &str,
    name: &str,
    bytes: &[u8],
    mime: &str,
) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("cml/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let answer = client
        .post(server)
        .header("content-type", mime)
        .header(
            "content-disposition",
            format!("inline; filename=\"{}\"", name.replace('"', "")),
        )
        .body(bytes.to_vec())
        .send()
        .await
        .with_context(|| {
            format!("uploading {name} to asset server {server} failed\nhint: check --url")
        })?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default().trim().to_string();
    if !status.is_success() || !(text.starts_with("http://") || text.starts_with("https://")) {
        bail!(
            "uploading {name} to asset server {server} failed: {status} {}\nhint: the server must answer the file's URL",
            text.chars().take(200).collect::<String>()
        );
    }
    Ok(text)
}

/// The MIME type of a file: `--mime-type`, else from its contents and name.
pub fn mime_of(path: &Path, bytes: &[u8], explicit: Option<&str>) -> String {
    match explicit.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => mime_type(&file_name(path), &bytes[..bytes.len().min(64)]).to_string(),
    }
}

/// The asset server the file goes to: `--url`, unless `--native` (which wins, as in CML);
/// `None`: the forge.
pub fn server(args: &PublishArgs) -> Option<String> {
    let url = args.url.clone().filter(|u| !u.is_empty());
    if args.native.unwrap_or(false) {
        if let Some(url) = url {
            tracing::warn!(
                url = url.as_str(),
                "--native: the file goes to the forge, not to the asset server of --url (as in CML)"
            );
        }
        return None;
    }
    url
}

/// Runs `cml asset publish`.
pub async fn run(s: ReportSettings, args: PublishArgs) -> Result<i32, Failure> {
    let path = Path::new(&args.asset);
    let bytes = read_input(&args.asset, "file to publish")?;
    if let Some(m) = &args.mime_type {
        if !m.contains('/') {
            return Err(Failure::usage(anyhow!(
                "invalid --mime-type {m:?}\nhint: give a type/subtype such as image/png"
            )));
        }
    }
    let server = server(&args);
    let forge = super::connect(&s).await?;
    let publisher = Publisher::new(forge.as_ref(), server);
    let mime = mime_of(path, &bytes, args.mime_type.as_deref());
    let name = file_name(path);
    let url = publisher
        .upload(&name, &bytes, &mime)
        .await
        .map_err(Failure::error)?;
    let out = if args.md.unwrap_or(false) {
        asset_markdown(&url, &mime, args.title.as_deref().unwrap_or(""), &name)
    } else {
        url
    };
    emit(&out, args.file.as_deref()).map_err(Failure::error)?;
    Ok(0)
}

/// Prints `text`, or appends it to `file`.
fn emit(text: &str, file: Option<&str>) -> anyhow::Result<()> {
    match file {
        Some(f) => {
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .with_context(|| format!("cannot append to {f:?}"))?;
            writeln!(out, "{text}")?;
        }
        None => println!("{text}"),
    }
    Ok(())
}
