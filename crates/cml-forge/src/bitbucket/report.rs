//! [`Reports`] for Bitbucket Cloud: commit, pull request and issue comments, pull requests
//! (Bitbucket has no auto-merge: they are merged at once, as CML does), and repository
//! downloads.

use async_trait::async_trait;
use base64::Engine;
use cml_core::report::Target;
use cml_core::Secret;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::BitbucketClient;
use crate::http::Payload;
use crate::report::{
    AutoMerged, Comment, MergeMethod, NewPullRequest, PullRequest, Reports, Upload,
};
use crate::{ApiError, ForgeError};

const WRITE_HINT: &str = "the app password needs the Pull requests: Write, Issues: Write and Repositories: Write permissions, from a user with write access to the repository";

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct ApiComment {
    id: u64,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    raw: Option<String>,
}

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    html: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    href: String,
}

#[derive(Deserialize)]
struct ApiPull {
    id: u64,
    #[serde(default)]
    state: String,
    source: Side,
    destination: Side,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
struct Side {
    branch: Branch,
}

#[derive(Deserialize)]
struct Branch {
    name: String,
}

impl From<ApiPull> for PullRequest {
    fn from(p: ApiPull) -> Self {
        PullRequest {
            number: p.id,
            url: p.links.html.map(|h| h.href).unwrap_or_default(),
            source: p.source.branch.name,
            target: p.destination.branch.name,
            node_id: None,
        }
    }
}

impl BitbucketClient {
    fn repo_url(&self, rest: &str) -> String {
        format!("{}/2.0/repositories/{}/{rest}", self.api, self.full_name)
    }

    fn comments_url(&self, target: &Target) -> String {
        match target {
            Target::Commit(sha) => self.repo_url(&format!("commit/{sha}/comments")),
            Target::Pr(n) => self.repo_url(&format!("pullrequests/{n}/comments")),
            Target::Issue(n) => self.repo_url(&format!("issues/{n}/comments")),
        }
    }

    /// Every page of a list (bounded: 50 pages); `next` links are followed only on the API.
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        first: String,
        err: impl Fn(ApiError) -> ForgeError,
    ) -> Result<Vec<T>, ForgeError> {
        let mut url = first;
        let mut out = Vec::new();
        for _ in 0..50 {
            let page: Page<T> = self
                .call_hinted(Method::GET, &url, Payload::None, &[200], WRITE_HINT)
                .await
                .and_then(|a| a.json())
                .map_err(&err)?;
            out.extend(page.values);
            match page.next.filter(|n| n.starts_with(&self.api)) {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(out)
    }

    fn comment_url(&self, c: &ApiComment, target: &Target) -> String {
        c.links
            .as_ref()
            .and_then(|l| l.html.as_ref())
            .map(|h| h.href.clone())
            .unwrap_or_else(|| {
                let page = match target {
                    Target::Commit(sha) => format!("commits/{sha}"),
                    Target::Pr(n) => format!("pull-requests/{n}"),
                    Target::Issue(n) => format!("issues/{n}"),
                };
                format!("{}/{page}#comment-{}", self.web, c.id)
            })
    }
}

#[async_trait]
impl Reports for BitbucketClient {
    fn scope(&self) -> String {
        crate::Forge::scope(self)
    }

    fn web_url(&self) -> String {
        self.web.clone()
    }

    /// Bitbucket documents no limit on a comment's length.
    fn comment_limit(&self) -> usize {
        usize::MAX
    }

    async fn comments(&self, target: &Target) -> Result<Vec<Comment>, ForgeError> {
        let err = |cause| ForgeError::ListComments {
            scope: Reports::scope(self),
            target: target.to_string(),
            cause,
        };
        let listed: Vec<ApiComment> = self
            .pages(format!("{}?pagelen=100", self.comments_url(target)), err)
            .await?;
        Ok(listed
            .into_iter()
            .map(|c| Comment {
                id: c.id.to_string(),
                body: c.content.and_then(|c| c.raw).unwrap_or_default(),
            })
            .collect())
    }

    async fn create_comment(&self, target: &Target, body: &str) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::PostComment {
            scope: Reports::scope(self),
            target: target.to_string(),
            cause,
        };
        let c: ApiComment = self
            .call_hinted(
                Method::POST,
                &self.comments_url(target),
                Payload::Json(json!({"content": {"raw": body}})),
                &[201],
                WRITE_HINT,
            )
            .await
            .and_then(|a| a.json())
            .map_err(err)?;
        Ok(self.comment_url(&c, target))
    }

    async fn update_comment(
        &self,
        target: &Target,
        id: &str,
        body: &str,
    ) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::UpdateComment {
            scope: Reports::scope(self),
            target: target.to_string(),
            id: id.to_string(),
            cause,
        };
        let c: ApiComment = self
            .call_hinted(
                Method::PUT,
                &format!("{}/{id}", self.comments_url(target)),
                Payload::Json(json!({"content": {"raw": body}})),
                &[200],
                WRITE_HINT,
            )
            .await
            .and_then(|a| a.json())
            .map_err(err)?;
        Ok(self.comment_url(&c, target))
    }

    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let err = |cause| ForgeError::FindPullRequests {
            scope: Reports::scope(self),
            what: format!("commit {sha}"),
            cause,
        };
        let pulls: Vec<ApiPull> = self
            .pages(
                self.repo_url(&format!("commit/{sha}/pullrequests?pagelen=50")),
                err,
            )
            .await?;
        Ok(pulls
            .into_iter()
            .filter(|p| p.state == "OPEN")
            .map(PullRequest::from)
            .collect())
    }

    async fn open_pull_requests(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let err = |cause| ForgeError::FindPullRequests {
            scope: Reports::scope(self),
            what: format!("branch {source}"),
            cause,
        };
        let q = format!("source.branch.name=\"{source}\" AND destination.branch.name=\"{target}\"");
        let url = reqwest::Url::parse_with_params(
            &self.repo_url("pullrequests"),
            &[("state", "OPEN"), ("pagelen", "50"), ("q", q.as_str())],
        )
        .map_err(|e| err(ApiError::Decode(e.to_string())))?;
        let pulls: Vec<ApiPull> = self.pages(url.to_string(), err).await?;
        Ok(pulls
            .into_iter()
            .filter(|p| p.source.branch.name == source && p.destination.branch.name == target)
            .map(PullRequest::from)
            .collect())
    }

    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let err = |cause| ForgeError::CreatePullRequest {
            scope: Reports::scope(self),
            source_branch: pr.source.clone(),
            target_branch: pr.target.clone(),
            cause,
        };
        let body = json!({
            "title": pr.title, "description": pr.body,
            "source": {"branch": {"name": pr.source}},
            "destination": {"branch": {"name": pr.target}},
        });
        let p: ApiPull = self
            .call_hinted(
                Method::POST,
                &self.repo_url("pullrequests"),
                Payload::Json(body),
                &[201],
                WRITE_HINT,
            )
            .await
            .and_then(|a| a.json())
            .map_err(err)?;
        Ok(p.into())
    }

    /// Bitbucket Cloud has no auto-merge: the pull request is merged now, with the matching
    /// strategy (`merge_commit`, `squash`, `fast_forward` for rebase).
    async fn auto_merge(
        &self,
        pr: &PullRequest,
        method: MergeMethod,
    ) -> Result<AutoMerged, ForgeError> {
        let err = |cause| ForgeError::AutoMerge {
            scope: Reports::scope(self),
            number: pr.number,
            method: method.as_str(),
            cause,
        };
        let strategy = match method {
            MergeMethod::Merge => "merge_commit",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "fast_forward",
        };
        self.call_hinted(
            Method::POST,
            &self.repo_url(&format!("pullrequests/{}/merge", pr.number)),
            Payload::Json(json!({"merge_strategy": strategy})),
            &[200],
            WRITE_HINT,
        )
        .await
        .map_err(err)?;
        Ok(AutoMerged::MergedNow)
    }

    fn upload_place(&self) -> String {
        format!("the downloads of Bitbucket repository {}", self.full_name)
    }

    /// A file in the repository's Downloads, replacing one of the same name.
    async fn upload(&self, file: Upload<'_>) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::Upload {
            file: file.name.to_string(),
            place: self.upload_place(),
            cause,
        };
        let payload = Payload::File {
            field: "files",
            name: file.name.to_string(),
            bytes: file.bytes.to_vec(),
            mime: file.mime.to_string(),
        };
        self.call_hinted(
            Method::POST,
            &self.repo_url("downloads"),
            payload,
            &[201],
            WRITE_HINT,
        )
        .await
        .map_err(err)?;
        let name = crate::http::percent_encode(file.name, b"");
        Ok(format!("{}/downloads/{name}", self.web))
    }

    async fn git_credentials(&self) -> Result<(String, Secret), ForgeError> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.token.expose().trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (user, password) = decoded.split_once(':').unwrap_or(("", ""));
        Ok((user.to_string(), Secret::new(password.to_string())))
    }
}
