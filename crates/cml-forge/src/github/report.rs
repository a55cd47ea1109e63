//! [`Reports`] for GitHub: commit comments, issue comments (pull requests are issues), pull
//! requests with auto-merge through GraphQL, check runs, and files committed to the
//! `cml-assets` branch through the Git data API (GitHub has no API for attachments).

use async_trait::async_trait;
use base64::Engine;
use cml_core::report::Target;
use cml_core::Secret;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::GithubClient;
use crate::report::{
    AutoMerged, CheckRun, Comment, MergeMethod, NewPullRequest, PullRequest, Reports, Upload,
};
use crate::{ApiError, ForgeError};

/// The branch `cml asset publish` commits files to.
pub const ASSETS_BRANCH: &str = "cml-assets";
/// Pages of a list read at most.
const MAX_LIST_PAGES: usize = 50;
/// GitHub's longest comment and check summary, in characters.
const COMMENT_LIMIT: usize = 65_536;
const WRITE_HINT: &str = "the token needs write access to this repository's issues, pull requests and contents (classic token: the `repo` scope; fine-grained: Issues, Pull requests and Contents: read and write; Actions' GITHUB_TOKEN: `permissions:` with `pull-requests: write`, `issues: write` and `contents: write`)";
const CHECK_HINT: &str = "only GitHub Apps can create check runs, personal access tokens cannot: use Actions' GITHUB_TOKEN (with `permissions: checks: write`) or a GitHub App (CML_GITHUB_APP_ID and CML_GITHUB_APP_PEM)";

#[derive(Deserialize)]
struct ListedComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct HtmlUrl {
    html_url: String,
}

#[derive(Deserialize)]
struct ApiPull {
    number: u64,
    html_url: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    node_id: Option<String>,
    head: BranchRef,
    base: BranchRef,
}

#[derive(Deserialize)]
struct BranchRef {
    #[serde(rename = "ref")]
    name: String,
}

impl From<ApiPull> for PullRequest {
    fn from(p: ApiPull) -> Self {
        PullRequest {
            number: p.number,
            url: p.html_url,
            source: p.head.name,
            target: p.base.name,
            node_id: p.node_id,
        }
    }
}

#[derive(Deserialize)]
struct Sha {
    sha: String,
}

#[derive(Deserialize)]
struct GitRef {
    object: Sha,
}

#[derive(Deserialize)]
struct GitCommit {
    tree: Sha,
}

impl GithubClient {
    fn repo_url(&self, rest: &str) -> String {
        format!("{}{}/{rest}", self.api, self.scope.api_prefix())
    }

    /// `/repos/{o}/{r}/commits/{sha}/comments` or `/repos/{o}/{r}/issues/{n}/comments`.
    fn comments_url(&self, target: &Target) -> String {
        match target {
            Target::Commit(sha) => self.repo_url(&format!("commits/{sha}/comments")),
            Target::Pr(n) | Target::Issue(n) => self.repo_url(&format!("issues/{n}/comments")),
        }
    }

    /// GraphQL's URL: `https://api.github.com/graphql`, or `/api/graphql` on GitHub
    /// Enterprise Server.
    fn graphql_url(&self) -> String {
        match self.api.strip_suffix("/api/v3") {
            Some(host) => format!("{host}/api/graphql"),
            None => format!("{}/graphql", self.api),
        }
    }

    /// Every page of a list (bounded: [`MAX_LIST_PAGES`], with a warning when there are
    /// more); next pages are followed only on the API (see `next_page`).
    async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        first: String,
        err: impl Fn(ApiError) -> ForgeError,
    ) -> Result<Vec<T>, ForgeError> {
        let mut url = first;
        let mut out = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let a = self
                .call_hinted(Method::GET, &url, None, &[200], WRITE_HINT)
                .await
                .map_err(|e| e.into_forge(&err))?;
            let page: Vec<T> = a.json().map_err(&err)?;
            out.extend(page);
            match self.next_page(&a, &url).map_err(&err)? {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        tracing::warn!(
            "{} has more than {MAX_LIST_PAGES} pages at {url}: only the first {MAX_LIST_PAGES} were read",
            self.scope_name()
        );
        Ok(out)
    }

    /// One commit on [`ASSETS_BRANCH`] adding `path`; the commit. `Ok(None)` when the branch
    /// moved meanwhile (another upload): the caller tries again.
    async fn commit_asset(
        &self,
        path: &str,
        bytes: &[u8],
        err: &impl Fn(ApiError) -> ForgeError,
    ) -> Result<Option<String>, ForgeError> {
        let call = |method: Method, rest: String, body: Option<Value>, ok: &'static [u16]| async move {
            self.call_hinted(method, &self.repo_url(&rest), body, ok, WRITE_HINT)
                .await
                .map_err(|e| e.into_forge(err))
        };
        let head = call(
            Method::GET,
            format!("git/ref/heads/{ASSETS_BRANCH}"),
            None,
            &[200, 404],
        )
        .await?;
        let parent = match head.status {
            200 => Some(head.json::<GitRef>().map_err(err)?.object.sha),
            _ => None,
        };
        let base_tree: Option<String> = match &parent {
            Some(sha) => Some(
                call(Method::GET, format!("git/commits/{sha}"), None, &[200])
                    .await?
                    .json::<GitCommit>()
                    .map_err(err)?
                    .tree
                    .sha,
            ),
            None => None,
        };
        let content = base64::engine::general_purpose::STANDARD.encode(bytes);
        let blob: Sha = call(
            Method::POST,
            "git/blobs".into(),
            Some(json!({"content": content, "encoding": "base64"})),
            &[201],
        )
        .await?
        .json()
        .map_err(err)?;
        let mut tree_body =
            json!({"tree": [{"path": path, "mode": "100644", "type": "blob", "sha": blob.sha}]});
        if let Some(base) = &base_tree {
            tree_body["base_tree"] = json!(base);
        }
        let tree: Sha = call(Method::POST, "git/trees".into(), Some(tree_body), &[201])
            .await?
            .json()
            .map_err(err)?;
        // The same file published before: its commit is reused.
        if let (Some(parent), Some(base)) = (&parent, &base_tree) {
            if *base == tree.sha {
                return Ok(Some(parent.clone()));
            }
        }
        let commit: Sha = call(
            Method::POST,
            "git/commits".into(),
            Some(json!({
                "message": format!("cml asset publish: {path}"),
                "tree": tree.sha,
                "parents": parent.iter().collect::<Vec<_>>(),
            })),
            &[201],
        )
        .await?
        .json()
        .map_err(err)?;
        let moved =
            match parent {
                Some(_) => {
                    call(
                        Method::PATCH,
                        format!("git/refs/heads/{ASSETS_BRANCH}"),
                        Some(json!({"sha": commit.sha, "force": false})),
                        &[200, 422],
                    )
                    .await?
                    .status
                        == 422
                }
                None => call(
                    Method::POST,
                    "git/refs".into(),
                    Some(json!({"ref": format!("refs/heads/{ASSETS_BRANCH}"), "sha": commit.sha})),
                    &[201, 422],
                )
                .await?
                .status
                    == 422,
            };
        Ok((!moved).then_some(commit.sha))
    }
}

#[async_trait]
impl Reports for GithubClient {
    fn scope(&self) -> String {
        self.scope_name()
    }

    fn web_url(&self) -> String {
        self.web_url.trim_end_matches('/').to_string()
    }

    fn comment_limit(&self) -> usize {
        COMMENT_LIMIT
    }

    async fn comments(&self, target: &Target) -> Result<Vec<Comment>, ForgeError> {
        let err = |cause| ForgeError::ListComments {
            scope: self.scope_name(),
            target: target.to_string(),
            cause,
        };
        let listed: Vec<ListedComment> = self
            .list_all(format!("{}?per_page=100", self.comments_url(target)), err)
            .await?;
        Ok(listed
            .into_iter()
            .map(|c| Comment {
                id: c.id.to_string(),
                body: c.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn create_comment(&self, target: &Target, body: &str) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::PostComment {
            scope: self.scope_name(),
            target: target.to_string(),
            cause,
        };
        let a = self
            .call_hinted(
                Method::POST,
                &self.comments_url(target),
                Some(json!({ "body": body })),
                &[201],
                WRITE_HINT,
            )
            .await
            .map_err(|e| e.into_forge(err))?;
        Ok(a.json::<HtmlUrl>().map_err(err)?.html_url)
    }

    async fn update_comment(
        &self,
        target: &Target,
        id: &str,
        body: &str,
    ) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::UpdateComment {
            scope: self.scope_name(),
            target: target.to_string(),
            id: id.to_string(),
            cause,
        };
        let url = match target {
            Target::Commit(_) => self.repo_url(&format!("comments/{id}")),
            _ => self.repo_url(&format!("issues/comments/{id}")),
        };
        let a = self
            .call_hinted(
                Method::PATCH,
                &url,
                Some(json!({ "body": body })),
                &[200],
                WRITE_HINT,
            )
            .await
            .map_err(|e| e.into_forge(err))?;
        Ok(a.json::<HtmlUrl>().map_err(err)?.html_url)
    }

    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let err = |cause| ForgeError::FindPullRequests {
            scope: self.scope_name(),
            what: format!("commit {sha}"),
            cause,
        };
        let pulls: Vec<ApiPull> = self
            .list_all(
                self.repo_url(&format!("commits/{sha}/pulls?per_page=100")),
                err,
            )
            .await?;
        Ok(pulls
            .into_iter()
            .filter(|p| p.state == "open")
            .map(PullRequest::from)
            .collect())
    }

    async fn open_pull_requests(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let err = |cause| ForgeError::FindPullRequests {
            scope: self.scope_name(),
            what: format!("branch {source}"),
            cause,
        };
        let owner = match &self.scope {
            cml_core::repo::GithubScope::Repo { owner, .. } => owner.clone(),
            cml_core::repo::GithubScope::Org { org } => org.clone(),
        };
        let url = reqwest::Url::parse_with_params(
            &self.repo_url("pulls"),
            &[
                ("state", "open"),
                ("head", &format!("{owner}:{source}")),
                ("base", target),
                ("per_page", "100"),
            ],
        )
        .map_err(|e| err(ApiError::Decode(e.to_string())))?;
        let pulls: Vec<ApiPull> = self.list_all(url.to_string(), err).await?;
        Ok(pulls.into_iter().map(PullRequest::from).collect())
    }

    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let err = |cause| ForgeError::CreatePullRequest {
            scope: self.scope_name(),
            source_branch: pr.source.clone(),
            target_branch: pr.target.clone(),
            cause,
        };
        let body =
            json!({"title": pr.title, "head": pr.source, "base": pr.target, "body": pr.body});
        let a = self
            .call_hinted(
                Method::POST,
                &self.repo_url("pulls"),
                Some(body),
                &[201],
                WRITE_HINT,
            )
            .await
            .map_err(|e| e.into_forge(err))?;
        Ok(a.json::<ApiPull>().map_err(err)?.into())
    }

    /// `enablePullRequestAutoMerge`; when GitHub answers that the pull request can be merged
    /// now ("clean status": no required checks are pending), it is merged now instead, as CML
    /// does.
    async fn auto_merge(
        &self,
        pr: &PullRequest,
        method: MergeMethod,
    ) -> Result<AutoMerged, ForgeError> {
        let err = |cause| ForgeError::AutoMerge {
            scope: self.scope_name(),
            number: pr.number,
            method: method.as_str(),
            cause,
        };
        let query = "mutation($id: ID!, $method: PullRequestMergeMethod!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method}) { clientMutationId } }";
        let node = pr.node_id.clone().unwrap_or_default();
        let body = json!({"query": query, "variables": {"id": node, "method": method.as_str().to_uppercase()}});
        let a = self
            .call_hinted(
                Method::POST,
                &self.graphql_url(),
                Some(body),
                &[200],
                WRITE_HINT,
            )
            .await
            .map_err(|e| e.into_forge(err))?;
        let answer: Value = a.json().map_err(err)?;
        let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) else {
            return Ok(AutoMerged::Scheduled);
        };
        let messages: Vec<&str> = errors
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        let message = messages.join("; ");
        if message.contains("clean status") {
            let url = self.repo_url(&format!("pulls/{}/merge", pr.number));
            self.call_hinted(
                Method::PUT,
                &url,
                Some(json!({"merge_method": method.as_str()})),
                &[200],
                WRITE_HINT,
            )
            .await
            .map_err(|e| e.into_forge(err))?;
            return Ok(AutoMerged::MergedNow);
        }
        let forbidden = errors.iter().any(|e| e["type"] == "FORBIDDEN");
        Err(err(if forbidden {
            ApiError::Forbidden {
                forge: "GitHub",
                status: 200,
                message,
                token_source: self.auth.source(),
                hint: WRITE_HINT,
            }
        } else {
            ApiError::Status {
                status: 200,
                message: format!(
                    "{message} (auto-merge must be allowed in the repository settings)"
                ),
            }
        }))
    }

    fn upload_place(&self) -> String {
        format!("branch {ASSETS_BRANCH} of {}", self.scope_name())
    }

    /// Commits the file as `<first 16 hex digits of its SHA-256>/<name>` on
    /// [`ASSETS_BRANCH`] (created on first use, without history from other branches) and
    /// answers its `raw` URL at that commit, which GitHub serves to whoever can read the
    /// repository.
    async fn upload(&self, file: Upload<'_>) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::Upload {
            file: file.name.to_string(),
            place: self.upload_place(),
            cause,
        };
        let path = format!("{}/{}", &hex_sha256(file.bytes)[..16], file.name);
        for _ in 0..3 {
            if let Some(commit) = self.commit_asset(&path, file.bytes, &err).await? {
                let encoded: Vec<String> = path
                    .split('/')
                    .map(|seg| crate::http::percent_encode(seg, b""))
                    .collect();
                return Ok(format!(
                    "{}/raw/{commit}/{}",
                    self.web_url(),
                    encoded.join("/")
                ));
            }
        }
        Err(err(ApiError::Status {
            status: 422,
            message: format!("branch {ASSETS_BRANCH} kept moving; try again"),
        }))
    }

    async fn create_check(&self, check: &CheckRun) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::CreateCheck {
            scope: self.scope_name(),
            name: check.name.clone(),
            sha: check.head_sha.clone(),
            cause,
        };
        let mut body = json!({
            "name": check.name,
            "head_sha": check.head_sha,
            "status": check.status,
            "output": {"title": check.title, "summary": check.summary},
        });
        if let Some(c) = &check.conclusion {
            body["conclusion"] = json!(c);
        }
        if check.status == "completed" {
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            body["completed_at"] = json!(now);
        }
        let a = self
            .call_hinted(
                Method::POST,
                &self.repo_url("check-runs"),
                Some(body),
                &[201],
                CHECK_HINT,
            )
            .await
            .map_err(|e| e.into_forge(err))?;
        Ok(a.json::<HtmlUrl>().map_err(err)?.html_url)
    }

    async fn git_credentials(&self) -> Result<(String, Secret), ForgeError> {
        // GitHub takes a token as the password of any user; `x-access-token` is the name
        // its docs use for installation tokens, and works for personal tokens too.
        Ok(("x-access-token".into(), self.bearer().await?))
    }
}

/// The SHA-256 of `data` in hex.
fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
