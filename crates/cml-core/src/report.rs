//! Rules of the report commands (`cml comment`, `cml check`, `cml asset publish`, `cml pr`)
//! that need no I/O: comment targets, the watermark that lets `--update` find our comment,
//! the local links of a Markdown report, how a published file is written in Markdown, MIME
//! types, the names `cml pr` gives its branch, commit and pull request, and the masking of
//! credentials written into URLs.

use crate::repo::RepoUrl;
use std::fmt;
use std::ops::Range;

/// What `--target` asked for, before the CI environment and the forge are consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// The current pull request from the CI environment, else the open one that contains the
    /// commit, else the commit.
    Auto,
    /// Like `Auto`, but without a pull request it is an error.
    Pr,
    /// The head commit.
    Commit,
    /// That commit.
    CommitSha(String),
    /// Pull (merge) request N.
    PrNumber(u64),
    /// Issue N.
    Issue(u64),
}

/// An unusable `--target`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown comment target `{0}`\nhint: use auto, pr, commit, commit/SHA, pr/N or issue/N")]
pub struct TargetError(pub String);

impl TargetSpec {
    /// Parses CML's `--target` values: `auto`, `pr`, `commit`, `commit/SHA`, `pr/N`,
    /// `issue/N` (case-insensitive kinds; SHA is 4 to 64 hex digits).
    pub fn parse(s: &str) -> Result<TargetSpec, TargetError> {
        let bad = || TargetError(s.to_string());
        let (kind, arg) = match s.trim().split_once('/') {
            Some((k, a)) => (k.to_ascii_lowercase(), Some(a)),
            None => (s.trim().to_ascii_lowercase(), None),
        };
        let number = |a: &str| a.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(bad);
        match (kind.as_str(), arg) {
            ("auto" | "", None) => Ok(TargetSpec::Auto),
            ("pr" | "mr", None) => Ok(TargetSpec::Pr),
            ("commit", None) => Ok(TargetSpec::Commit),
            ("commit", Some(sha)) => is_commit_id(sha)
                .then(|| TargetSpec::CommitSha(sha.to_ascii_lowercase()))
                .ok_or_else(bad),
            ("pr" | "mr", Some(n)) => number(n).map(TargetSpec::PrNumber),
            ("issue", Some(n)) => number(n).map(TargetSpec::Issue),
            _ => Err(bad()),
        }
    }
}

/// Whether `s` looks like a (possibly abbreviated) commit id: 4 to 64 hex digits.
pub fn is_commit_id(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Where a comment goes, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Commit(String),
    Pr(u64),
    Issue(u64),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Commit(sha) => write!(f, "commit {sha}"),
            Target::Pr(n) => write!(f, "pull request #{n}"),
            Target::Issue(n) => write!(f, "issue #{n}"),
        }
    }
}

/// The text that identifies our comments: `CML watermark` and the title, if any.
///
/// CML writes it as the title of an image (`![](https://cml.dev/watermark.png#… "CML
/// watermark TITLE")`); we write it as a Markdown link reference definition, which every
/// forge's renderer hides. Both contain the text in double quotes, which is what
/// [`has_watermark`] looks for, so comments either tool wrote can be updated by the other.
pub fn watermark_text(title: &str) -> String {
    let title: String = title
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect();
    format!("CML watermark {}", title.trim()).trim().to_string()
}

/// `body` with the hidden watermark for `title` appended.
pub fn with_watermark(body: &str, title: &str) -> String {
    format!(
        "{}\n\n[//]: # \"{}\"\n",
        body.trim_end(),
        watermark_text(title)
    )
}

/// Whether `body` carries the watermark of `title` (ours, or CML's image watermark).
pub fn has_watermark(body: &str, title: &str) -> bool {
    body.contains(&format!("\"{}\"", watermark_text(title)))
}

/// `{workflow}` and `{run}` in a watermark title replaced, as CML does.
pub fn expand_watermark_title(title: &str, workflow: &str, run: &str) -> String {
    title.replace("{workflow}", workflow).replace("{run}", run)
}

/// A local link or image in a Markdown report: where its destination is, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLink {
    /// Byte range of the destination in the text.
    pub range: Range<usize>,
    pub path: String,
    pub image: bool,
}

/// Every inline link or image `[..](dest)` / `![..](dest "title")` whose destination is a
/// local path: no scheme, not an anchor, not inside a fenced code block or a code span.
pub fn local_links(markdown: &str) -> Vec<LocalLink> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut fenced = false;
    for line in markdown.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
        } else if !fenced {
            scan_line(line, offset, &mut out);
        }
        offset += line.len();
    }
    out
}

fn scan_line(line: &str, offset: usize, out: &mut Vec<LocalLink>) {
    let bytes = line.as_bytes();
    let mut in_code = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'`' => in_code = !in_code,
            b']' if !in_code && bytes.get(i + 1) == Some(&b'(') => {
                let image = link_is_image(&line[..i]);
                let start = i + 2;
                let rest = &line[start..];
                let (dest_start, dest_len) = if let Some(r) = rest.strip_prefix('<') {
                    match r.find('>') {
                        Some(end) => (start + 1, end),
                        None => (start, 0),
                    }
                } else {
                    let end = rest
                        .find(|c: char| c.is_whitespace() || c == ')')
                        .unwrap_or(rest.len());
                    (start, end)
                };
                let dest = &line[dest_start..dest_start + dest_len];
                if is_local(dest) {
                    out.push(LocalLink {
                        range: offset + dest_start..offset + dest_start + dest_len,
                        path: dest.to_string(),
                        image,
                    });
                }
                i = dest_start + dest_len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// Whether the `[` matching the `]` at the end of `before` is preceded by `!`.
fn link_is_image(before: &str) -> bool {
    let mut depth = 0usize;
    for (idx, c) in before.char_indices().rev() {
        match c {
            ']' => depth += 1,
            '[' if depth == 0 => return before[..idx].ends_with('!'),
            '[' => depth -= 1,
            _ => {}
        }
    }
    false
}

fn is_local(dest: &str) -> bool {
    !dest.is_empty()
        && !dest.starts_with('#')
        && !dest.starts_with("//")
        && !dest.contains("://")
        && !dest.split_once(':').is_some_and(|(scheme, _)| {
            scheme.chars().all(|c| c.is_ascii_alphabetic()) && scheme.len() > 1
        })
}

/// `markdown` with each link destination in `replacements` (range → URL) replaced.
/// Ranges must come from [`local_links`] on the same text.
pub fn rewrite_links(markdown: &str, replacements: &[(Range<usize>, String)]) -> String {
    let mut sorted: Vec<_> = replacements.iter().collect();
    sorted.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(markdown.len());
    let mut at = 0;
    for (range, url) in sorted {
        if range.start < at || range.end > markdown.len() {
            continue;
        }
        out.push_str(&markdown[at..range.start]);
        out.push_str(url);
        at = range.end;
    }
    out.push_str(&markdown[at..]);
    out
}

/// How `cml asset publish --md` writes a published file: images and videos as
/// `![](URL "TITLE")`, anything else as `[TITLE](URL)` (the file name when there is no title).
pub fn asset_markdown(url: &str, mime: &str, title: &str, file_name: &str) -> String {
    let title = title.replace('"', "'");
    if mime.starts_with("image/") || mime.starts_with("video/") {
        if title.is_empty() {
            format!("![]({url})")
        } else {
            format!("![]({url} \"{title}\")")
        }
    } else {
        let text = if title.is_empty() { file_name } else { &title };
        format!("[{}]({url})", text.replace(['[', ']'], ""))
    }
}

/// The MIME type of a file: from its first bytes when they are a known signature, else from
/// its extension, else `application/octet-stream`.
pub fn mime_type(file_name: &str, head: &[u8]) -> &'static str {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),
    ];
    if let Some((_, m)) = SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return m;
    }
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return "image/webp";
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return "video/mp4";
    }
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "txt" | "log" => "text/plain",
        "json" => "application/json",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// `cml pr`'s branch for changes made on `base` at commit `sha`: `BASE-cml-pr-SHORT`, SHORT
/// being the first 8 characters of the commit, as CML names it.
pub fn pr_branch(base: &str, sha: &str) -> String {
    format!("{base}-cml-pr-{}", short_sha(sha))
}

/// The first 8 characters of a commit id.
pub fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(8)]
}

/// `cml pr`'s commit message: `--message` or `CML PR for SHORT`, with `[skip ci]` appended
/// unless the pull request is to be merged automatically (its checks must then run) or
/// `skip_ci` says otherwise.
pub fn pr_commit_message(
    message: Option<&str>,
    sha: &str,
    skip_ci: Option<bool>,
    merging: bool,
) -> String {
    let mut m = message
        .map(str::to_string)
        .unwrap_or_else(|| format!("CML PR for {}", short_sha(sha)));
    if skip_ci.unwrap_or(!merging) && !m.contains("[skip ci]") {
        m.push_str(" [skip ci]");
    }
    m
}

/// `cml pr`'s default pull request title and description.
pub fn pr_title_and_body(target: &str, sha: &str, repo_url: &str) -> (String, String) {
    (
        format!("CML PR for {target} {}", short_sha(sha)),
        format!(
            "Automated commits for {}/commit/{sha} created by CML.",
            repo_url.trim_end_matches('/')
        ),
    )
}

/// `text` with the credentials of every URL in it masked: `scheme://USER:PASSWORD@host`
/// becomes `scheme://***@host` (a user name alone is masked too: GitHub accepts a token as
/// the user name).
///
/// Guarantee: no `user[:password]@` part of a `scheme://` URL survives, wherever the URL is in
/// the text (a log line, git's error output). Assumed: the user and password are
/// percent-encoded as URLs require, so they contain no `/`, `?`, `#` or whitespace.
pub fn redact_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`')
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where a Git remote URL points, seen from the forge whose token `cml pr` and `cml ci` hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteHost {
    /// An http(s) URL on the forge's host and port: the token may be sent there. `scope` is
    /// `SCHEME://HOST[:PORT]/` of the remote, the URL Git's `http.<url>.extraHeader` is keyed
    /// on, so that Git sends the header to that host and no other.
    Forge { scope: String },
    /// An http(s) URL on another host or port (credentials masked): no token goes there.
    Elsewhere { url: String },
    /// Not an http(s) URL (ssh, scp-like `git@host:path`, a local path): Git authenticates by
    /// its own means; no token is given to it.
    OtherTransport,
}

/// Classifies `remote` (a `git remote get-url` answer) against the forge's repository URL.
///
/// The host names must be equal and so must the ports, a port left out being the scheme's
/// default, so `http://` and `https://` on default ports count as the same host (Bitbucket
/// Pipelines' checkouts use `http://bitbucket.org/…`).
pub fn remote_host(remote: &str, forge: &RepoUrl) -> RemoteHost {
    let Ok(url) = url::Url::parse(remote.trim()) else {
        return RemoteHost::OtherTransport;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return RemoteHost::OtherTransport;
    }
    let forge_url = url::Url::parse(&format!("{}://{}/", forge.scheme, forge.host)).ok();
    let same = forge_url.is_some_and(|f| {
        f.host_str().is_some() && f.host_str() == url.host_str() && f.port() == url.port()
    });
    if !same {
        return RemoteHost::Elsewhere {
            url: redact_url_credentials(remote.trim()),
        };
    }
    let host = url.host_str().unwrap_or_default();
    RemoteHost::Forge {
        scope: match url.port() {
            Some(port) => format!("{}://{host}:{port}/", url.scheme()),
            None => format!("{}://{host}/", url.scheme()),
        },
    }
}

/// What the CI environment says about the current change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiContext {
    /// The pull (merge) request this pipeline runs for.
    pub pr: Option<u64>,
    /// The commit under test (a pull request's head, not GitHub's merge commit).
    pub commit: Option<String>,
    /// The branch the change is on (a pull request's source branch).
    pub branch: Option<String>,
    /// The repository's web URL.
    pub repo_url: Option<String>,
    /// For watermark titles: the workflow (GitHub), job (GitLab) or step (Bitbucket) name.
    pub workflow: String,
    /// For watermark titles: the run (GitHub), pipeline (GitLab) or build number (Bitbucket).
    pub run: String,
}

/// Reads the CI variables of GitHub Actions, GitLab CI and Bitbucket Pipelines. `env` looks a
/// variable up; `github_event` is the contents of `$GITHUB_EVENT_PATH`, if readable.
pub fn ci_context(env: impl Fn(&str) -> Option<String>, github_event: Option<&str>) -> CiContext {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let Some(repo) = get("GITHUB_REPOSITORY") {
        let event: serde_json::Value = github_event
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        let pr_event = &event["pull_request"];
        let pr = pr_event["number"].as_u64().or_else(|| {
            get("GITHUB_REF")?
                .strip_prefix("refs/pull/")?
                .split('/')
                .next()?
                .parse()
                .ok()
        });
        let server = get("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
        return CiContext {
            pr,
            commit: pr_event["head"]["sha"]
                .as_str()
                .map(str::to_string)
                .or_else(|| get("GITHUB_SHA")),
            branch: get("GITHUB_HEAD_REF").or_else(|| get("GITHUB_REF_NAME")),
            repo_url: Some(format!("{}/{repo}", server.trim_end_matches('/'))),
            workflow: get("GITHUB_WORKFLOW").unwrap_or_default(),
            run: get("GITHUB_RUN_ID").unwrap_or_default(),
        };
    }
    if let Some(url) = get("CI_PROJECT_URL") {
        return CiContext {
            pr: get("CI_MERGE_REQUEST_IID").and_then(|n| n.parse().ok()),
            commit: get("CI_COMMIT_SHA"),
            branch: get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
                .or_else(|| get("CI_COMMIT_BRANCH"))
                .or_else(|| get("CI_COMMIT_REF_NAME")),
            repo_url: Some(url),
            workflow: get("CI_JOB_NAME").unwrap_or_default(),
            run: get("CI_PIPELINE_ID").unwrap_or_default(),
        };
    }
    if get("BITBUCKET_COMMIT").is_some() || get("BITBUCKET_REPO_FULL_NAME").is_some() {
        return CiContext {
            pr: get("BITBUCKET_PR_ID").and_then(|n| n.parse().ok()),
            commit: get("BITBUCKET_COMMIT"),
            branch: get("BITBUCKET_BRANCH"),
            repo_url: get("BITBUCKET_GIT_HTTP_ORIGIN").or_else(|| {
                get("BITBUCKET_REPO_FULL_NAME").map(|r| format!("https://bitbucket.org/{r}"))
            }),
            workflow: get("BITBUCKET_STEP_UUID").unwrap_or_default(),
            run: get("BITBUCKET_BUILD_NUMBER").unwrap_or_default(),
        };
    }
    CiContext::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_cml() {
        assert_eq!(TargetSpec::parse("auto"), Ok(TargetSpec::Auto));
        assert_eq!(TargetSpec::parse("PR"), Ok(TargetSpec::Pr));
        assert_eq!(TargetSpec::parse("commit"), Ok(TargetSpec::Commit));
        assert_eq!(
            TargetSpec::parse("commit/ABCDEF12"),
            Ok(TargetSpec::CommitSha("abcdef12".into()))
        );
        assert_eq!(TargetSpec::parse("pr/42"), Ok(TargetSpec::PrNumber(42)));
        assert_eq!(TargetSpec::parse("issue/1337"), Ok(TargetSpec::Issue(1337)));
        for bad in [
            "pull",
            "pr/x",
            "pr/0",
            "issue",
            "commit/xyz",
            "commit/ab",
            "issue/-1",
        ] {
            let e = TargetSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("hint: use auto"), "{e}");
        }
    }

    #[test]
    fn watermarks_are_found_in_ours_and_in_cml_s() {
        let body = with_watermark("# Report\n\nok\n", "nightly");
        assert!(body.starts_with("# Report\n\nok\n\n[//]: # \"CML watermark nightly\"\n"));
        assert!(has_watermark(&body, "nightly"));
        assert!(!has_watermark(&body, ""));
        assert!(!has_watermark(&body, "night"));
        let cml = "report\n\n![](https://cml.dev/watermark.png#0e2c \"CML watermark\")";
        assert!(has_watermark(cml, ""));
        assert!(!has_watermark(cml, "nightly"));
        assert!(has_watermark(&with_watermark("x", ""), ""));
        let tricky = with_watermark("x", "a \"quoted\"\ntitle");
        assert!(has_watermark(&tricky, "a \"quoted\"\ntitle"));
        assert!(!tricky.contains("\"quoted\""));
        assert_eq!(
            expand_watermark_title("{workflow}-{run}", "CI", "7"),
            "CI-7"
        );
    }

    #[test]
    fn local_links_skip_urls_anchors_and_code() {
        let md = "![plot](plot.png \"Confusion\")\n[data](./out/data.csv) [web](https://x.io/a.png) [top](#top)\n`[no](code.png)`\n```\n![no](fenced.png)\n```\n![<sp>](<with space.png>) [mail](mailto:a@b) ![nested [x]](img/n.svg)\n";
        let links = local_links(md);
        let paths: Vec<(&str, bool)> = links.iter().map(|l| (l.path.as_str(), l.image)).collect();
        assert_eq!(
            paths,
            vec![
                ("plot.png", true),
                ("./out/data.csv", false),
                ("with space.png", true),
                ("img/n.svg", true)
            ]
        );
        for l in &links {
            assert_eq!(&md[l.range.clone()], l.path);
        }
        let reps: Vec<_> = links
            .iter()
            .map(|l| (l.range.clone(), format!("https://u/{}", l.path.len())))
            .collect();
        let out = rewrite_links(md, &reps);
        assert!(
            out.starts_with("![plot](https://u/8 \"Confusion\")\n[data](https://u/14)"),
            "{out}"
        );
        assert!(out.contains("`[no](code.png)`") && out.contains("![no](fenced.png)"));
    }

    #[test]
    fn published_files_in_markdown() {
        assert_eq!(
            asset_markdown("https://h/p.png", "image/png", "Confusion Matrix", "p.png"),
            "![](https://h/p.png \"Confusion Matrix\")"
        );
        assert_eq!(asset_markdown("u", "image/png", "", "p.png"), "![](u)");
        assert_eq!(asset_markdown("u", "text/csv", "", "d.csv"), "[d.csv](u)");
        assert_eq!(
            asset_markdown("u", "text/csv", "Data", "d.csv"),
            "[Data](u)"
        );
        assert_eq!(mime_type("x.bin", b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(mime_type("plot.SVG", b"<svg"), "image/svg+xml");
        assert_eq!(mime_type("noext", b"??"), "application/octet-stream");
    }

    #[test]
    fn pr_names_follow_cml() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(pr_branch("main", sha), "main-cml-pr-01234567");
        assert_eq!(
            pr_commit_message(None, sha, None, false),
            "CML PR for 01234567 [skip ci]"
        );
        assert_eq!(
            pr_commit_message(None, sha, None, true),
            "CML PR for 01234567"
        );
        assert_eq!(
            pr_commit_message(Some("m"), sha, Some(true), true),
            "m [skip ci]"
        );
        assert_eq!(pr_commit_message(Some("m"), sha, Some(false), false), "m");
        let (t, b) = pr_title_and_body("main", sha, "https://github.com/o/r/");
        assert_eq!(t, "CML PR for main 01234567");
        assert_eq!(
            b,
            format!("Automated commits for https://github.com/o/r/commit/{sha} created by CML.")
        );
    }

    #[test]
    fn credentials_in_urls_are_masked_wherever_they_are() {
        let line =
            "fetching https://gitlab-ci-token:glcbt-SECRET@gitlab.example.com/g/p.git failed";
        assert_eq!(
            redact_url_credentials(line),
            "fetching https://***@gitlab.example.com/g/p.git failed"
        );
        // A token as the user name, several URLs, a port, quotes, and URLs without credentials.
        let text = "'http://ghp_TOKEN@127.0.0.1:8080/o/r' and \"https://a:b%40c@h/x?q=1\" then https://plain.example/p ssh://git@github.com/o/r";
        assert_eq!(
            redact_url_credentials(text),
            "'http://***@127.0.0.1:8080/o/r' and \"https://***@h/x?q=1\" then https://plain.example/p ssh://***@github.com/o/r"
        );
        // An unencoded `@` in the password: everything before the last one is masked.
        assert_eq!(
            redact_url_credentials("https://u:p@ss@host"),
            "https://***@host"
        );
        // The path and the query are left alone, even with an `@` in them.
        assert_eq!(
            redact_url_credentials("https://host/@team?to=a@b ok"),
            "https://host/@team?to=a@b ok"
        );
        for plain in [
            "",
            "no url here",
            "://",
            "a@b",
            "x://",
            "git@github.com:o/r.git",
        ] {
            assert_eq!(redact_url_credentials(plain), plain);
        }
    }

    #[test]
    fn the_token_goes_only_to_remotes_on_the_forge_s_host() {
        let forge = RepoUrl::parse("https://gitlab.example.com/g/p").unwrap();
        let forge_scope = |scope: &str| RemoteHost::Forge {
            scope: scope.to_string(),
        };
        for (remote, want) in [
            (
                "https://gitlab-ci-token:SECRET@gitlab.example.com/g/p.git",
                forge_scope("https://gitlab.example.com/"),
            ),
            (
                "https://GitLab.Example.com:443/other/repo.git",
                forge_scope("https://gitlab.example.com/"),
            ),
            (
                "http://gitlab.example.com/g/p",
                forge_scope("http://gitlab.example.com/"),
            ),
            ("git@gitlab.example.com:g/p.git", RemoteHost::OtherTransport),
            ("ssh://git@evil.example/g/p.git", RemoteHost::OtherTransport),
            ("/srv/git/p.git", RemoteHost::OtherTransport),
            (
                "https://u:SECRET@evil.example/g/p.git",
                RemoteHost::Elsewhere {
                    url: "https://***@evil.example/g/p.git".into(),
                },
            ),
            (
                "https://gitlab.example.com.evil.example/g/p.git",
                RemoteHost::Elsewhere {
                    url: "https://gitlab.example.com.evil.example/g/p.git".into(),
                },
            ),
            (
                "https://gitlab.example.com:8443/g/p.git",
                RemoteHost::Elsewhere {
                    url: "https://gitlab.example.com:8443/g/p.git".into(),
                },
            ),
        ] {
            assert_eq!(remote_host(remote, &forge), want, "{remote}");
        }
        // Another port on the same address is another server.
        let local = RepoUrl::parse("http://127.0.0.1:4000/octo/app").unwrap();
        assert_eq!(
            remote_host("http://127.0.0.1:4000/octo/app.git", &local),
            forge_scope("http://127.0.0.1:4000/")
        );
        assert!(matches!(
            remote_host("http://127.0.0.1:4001/octo/app.git", &local),
            RemoteHost::Elsewhere { .. }
        ));
    }

    #[test]
    fn ci_contexts_of_the_three_forges() {
        let gh = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let event = r#"{"pull_request":{"number":12,"head":{"sha":"feedbeef"}}}"#;
        let c = ci_context(
            gh(&[
                ("GITHUB_REPOSITORY", "o/r"),
                ("GITHUB_SHA", "merge1"),
                ("GITHUB_HEAD_REF", "feat"),
                ("GITHUB_RUN_ID", "9"),
                ("GITHUB_WORKFLOW", "CML"),
            ]),
            Some(event),
        );
        assert_eq!(
            (c.pr, c.commit.as_deref(), c.branch.as_deref()),
            (Some(12), Some("feedbeef"), Some("feat"))
        );
        assert_eq!(
            (c.repo_url.as_deref(), c.workflow.as_str(), c.run.as_str()),
            (Some("https://github.com/o/r"), "CML", "9")
        );
        let c = ci_context(
            gh(&[
                ("GITHUB_REPOSITORY", "o/r"),
                ("GITHUB_SHA", "abc"),
                ("GITHUB_REF", "refs/pull/5/merge"),
            ]),
            None,
        );
        assert_eq!((c.pr, c.commit.as_deref()), (Some(5), Some("abc")));
        let c = ci_context(
            gh(&[
                ("GITHUB_REPOSITORY", "o/r"),
                ("GITHUB_SHA", "abc"),
                ("GITHUB_REF_NAME", "main"),
            ]),
            None,
        );
        assert_eq!((c.pr, c.branch.as_deref()), (None, Some("main")));
        let c = ci_context(
            gh(&[
                ("CI_PROJECT_URL", "https://gl/g/p"),
                ("CI_COMMIT_SHA", "c1"),
                ("CI_MERGE_REQUEST_IID", "3"),
                ("CI_COMMIT_REF_NAME", "dev"),
            ]),
            None,
        );
        assert_eq!(
            (c.pr, c.commit.as_deref(), c.branch.as_deref()),
            (Some(3), Some("c1"), Some("dev"))
        );
        let c = ci_context(
            gh(&[
                ("BITBUCKET_COMMIT", "b1"),
                ("BITBUCKET_PR_ID", "8"),
                ("BITBUCKET_BRANCH", "x"),
                ("BITBUCKET_REPO_FULL_NAME", "ws/s"),
            ]),
            None,
        );
        assert_eq!(
            (c.pr, c.commit.as_deref(), c.repo_url.as_deref()),
            (Some(8), Some("b1"), Some("https://bitbucket.org/ws/s"))
        );
        assert_eq!(ci_context(gh(&[]), None), CiContext::default());
    }
}
