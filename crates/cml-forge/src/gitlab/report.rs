//! [`Reports`] for GitLab: commit notes (as commit discussions, which can be edited), merge
//! request and issue notes, merge requests with "merge when the pipeline succeeds", and
//! project uploads.

use async_trait::async_trait;
use cml_core::report::Target;
use cml_core::Secret;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::GitlabClient;
use crate::http::Payload;
use crate::report::{
    AutoMerged, Comment, MergeMethod, NewPullRequest, PullRequest, Reports, Upload,
};
use crate::{ApiError, ForgeError};

/// GitLab's longest note, in characters.
pub const NOTE_LIMIT: usize = 1_000_000;
const WRITE_HINT: &str = "use a GitLab access token with the `api` scope of a user with at least the Developer role on the project (Reporter can comment but not push or open merge requests)";

#[derive(Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    body: String,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
struct Discussion {
    id: String,
    #[serde(default)]
    notes: Vec<Note>,
}

#[derive(Deserialize)]
struct MergeRequest {
    iid: u64,
    web_url: String,
    #[serde(default)]
    state: String,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    merge_when_pipeline_succeeds: bool,
}

impl From<MergeRequest> for PullRequest {
    fn from(m: MergeRequest) -> Self {
        PullRequest {
            number: m.iid,
            url: m.web_url,
            source: m.source_branch,
            target: m.target_branch,
            node_id: None,
        }
    }
}

#[derive(Deserialize)]
struct Uploaded {
    url: String,
    #[serde(default)]
    full_path: Option<String>,
}

impl GitlabClient {
    fn project_url(&self, rest: &str) -> String {
        format!("{}/projects/{}/{rest}", self.api, self.project_id)
    }

    fn project_web(&self) -> String {
        format!("{}/{}", self.instance, self.project_path)
    }

    /// The notes route of a merge request or issue.
    fn notes_url(&self, target: &Target) -> String {
        match target {
            Target::Pr(n) => self.project_url(&format!("merge_requests/{n}/notes")),
            Target::Issue(n) => self.project_url(&format!("issues/{n}/notes")),
            Target::Commit(sha) => {
                self.project_url(&format!("repository/commits/{sha}/discussions"))
            }
        }
    }

    /// Where a note is seen on the web.
    fn note_web_url(&self, target: &Target, note: u64) -> String {
        let page = match target {
            Target::Commit(sha) => format!("-/commit/{sha}"),
            Target::Pr(n) => format!("-/merge_requests/{n}"),
            Target::Issue(n) => format!("-/issues/{n}"),
        };
        format!("{}/{page}#note_{note}", self.project_web())
    }

    /// Every page of a list.
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        err: impl Fn(ApiError) -> ForgeError,
    ) -> Result<Vec<T>, ForgeError> {
        self.all_pages(url, WRITE_HINT).await.map_err(err)
    }

    async fn write(
        &self,
        method: Method,
        url: &str,
        body: Value,
        ok: &[u16],
    ) -> Result<crate::http::Answer, ApiError> {
        self.call_hinted(method, url, Payload::Json(body), ok, WRITE_HINT)
            .await
    }
}

#[async_trait]
impl Reports for GitlabClient {
    fn scope(&self) -> String {
        crate::Forge::scope(self)
    }

    fn web_url(&self) -> String {
        self.project_web()
    }

    fn comment_limit(&self) -> usize {
        NOTE_LIMIT
    }

    async fn comments(&self, target: &Target) -> Result<Vec<Comment>, ForgeError> {
        let err = |cause| ForgeError::ListComments {
            scope: Reports::scope(self),
            target: target.to_string(),
            cause,
        };
        if let Target::Commit(_) = target {
            let discussions: Vec<Discussion> = self.pages(&self.notes_url(target), err).await?;
            return Ok(discussions
                .into_iter()
                .flat_map(|d| {
                    let id = d.id;
                    d.notes
                        .into_iter()
                        .filter(|n| !n.system)
                        .map(move |n| Comment {
                            id: format!("{id}/{}", n.id),
                            body: n.body,
                        })
                })
                .collect());
        }
        let url = format!("{}?sort=asc&order_by=created_at", self.notes_url(target));
        let notes: Vec<Note> = self.pages(&url, err).await?;
        Ok(notes
            .into_iter()
            .filter(|n| !n.system)
            .map(|n| Comment {
                id: n.id.to_string(),
                body: n.body,
            })
            .collect())
    }

    async fn create_comment(&self, target: &Target, body: &str) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::PostComment {
            scope: Reports::scope(self),
            target: target.to_string(),
            cause,
        };
        let a = self
            .write(
                Method::POST,
                &self.notes_url(target),
                json!({ "body": body }),
                &[201],
            )
            .await
            .map_err(err)?;
        let id = match target {
            Target::Commit(_) => a
                .json::<Discussion>()
                .map_err(err)?
                .notes
                .first()
                .map(|n| n.id)
                .unwrap_or_default(),
            _ => a.json::<Note>().map_err(err)?.id,
        };
        Ok(self.note_web_url(target, id))
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
        let (url, note) = match (target, id.split_once('/')) {
            (Target::Commit(_), Some((discussion, note))) => (
                format!("{}/{discussion}/notes/{note}", self.notes_url(target)),
                note,
            ),
            _ => (format!("{}/{id}", self.notes_url(target)), id),
        };
        self.write(Method::PUT, &url, json!({ "body": body }), &[200])
            .await
            .map_err(err)?;
        Ok(self.note_web_url(target, note.parse().unwrap_or_default()))
    }

    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let err = |cause| ForgeError::FindPullRequests {
            scope: Reports::scope(self),
            what: format!("commit {sha}"),
            cause,
        };
        let url = self.project_url(&format!("repository/commits/{sha}/merge_requests"));
        let mrs: Vec<MergeRequest> = self.pages(&url, err).await?;
        Ok(mrs
            .into_iter()
            .filter(|m| m.state == "opened")
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
        let url = reqwest::Url::parse_with_params(
            &self.project_url("merge_requests"),
            &[
                ("state", "opened"),
                ("source_branch", source),
                ("target_branch", target),
            ],
        )
        .map_err(|e| err(ApiError::Decode(e.to_string())))?;
        let mrs: Vec<MergeRequest> = self.pages(url.as_str(), err).await?;
        Ok(mrs.into_iter().map(PullRequest::from).collect())
    }

    async fn create_pull_request(&self, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let err = |cause| ForgeError::CreatePullRequest {
            scope: Reports::scope(self),
            source_branch: pr.source.clone(),
            target_branch: pr.target.clone(),
            cause,
        };
        let body = json!({
            "source_branch": pr.source, "target_branch": pr.target,
            "title": pr.title, "description": pr.body,
        });
        let a = self
            .write(
                Method::POST,
                &self.project_url("merge_requests"),
                body,
                &[201],
            )
            .await
            .map_err(err)?;
        Ok(a.json::<MergeRequest>().map_err(err)?.into())
    }

    fn supports_merge(&self, method: MergeMethod) -> Result<(), ForgeError> {
        match method {
            MergeMethod::Rebase => Err(ForgeError::Unsupported {
                scope: Reports::scope(self),
                what: "rebase auto-merge",
                hint: "GitLab merges with the project's merge method; use --merge (a project set to fast-forward merges rebases by itself) or --squash",
            }),
            _ => Ok(()),
        }
    }

    async fn auto_merge(
        &self,
        pr: &PullRequest,
        method: MergeMethod,
    ) -> Result<AutoMerged, ForgeError> {
        self.supports_merge(method)?;
        let err = |cause| ForgeError::AutoMerge {
            scope: Reports::scope(self),
            number: pr.number,
            method: method.as_str(),
            cause,
        };
        let url = self.project_url(&format!("merge_requests/{}/merge", pr.number));
        let body = json!({
            "merge_when_pipeline_succeeds": true,
            "squash": method == MergeMethod::Squash,
        });
        let a = self
            .write(Method::PUT, &url, body, &[200])
            .await
            .map_err(err)?;
        let mr: MergeRequest = a.json().map_err(err)?;
        Ok(if mr.merge_when_pipeline_succeeds {
            AutoMerged::Scheduled
        } else {
            AutoMerged::MergedNow
        })
    }

    fn upload_place(&self) -> String {
        format!("the uploads of GitLab project {}", self.project_path)
    }

    async fn upload(&self, file: Upload<'_>) -> Result<String, ForgeError> {
        let err = |cause| ForgeError::Upload {
            file: file.name.to_string(),
            place: self.upload_place(),
            cause,
        };
        let payload = Payload::File {
            field: "file",
            name: file.name.to_string(),
            bytes: file.bytes.to_vec(),
            mime: file.mime.to_string(),
        };
        let a = self
            .call_hinted(
                Method::POST,
                &self.project_url("uploads"),
                payload,
                &[201],
                WRITE_HINT,
            )
            .await
            .map_err(err)?;
        let up: Uploaded = a.json().map_err(err)?;
        // `full_path` is absolute on the host (sub-path included); older GitLab only answers
        // `url`, relative to the project.
        Ok(match up.full_path.filter(|p| p.starts_with('/')) {
            Some(path) => {
                let origin = match self.instance.find("://") {
                    Some(i) => match self.instance[i + 3..].find('/') {
                        Some(j) => self.instance[..i + 3 + j].to_string(),
                        None => self.instance.clone(),
                    },
                    None => self.instance.clone(),
                };
                format!("{origin}{}", url_safe(&path))
            }
            None => format!("{}{}", self.project_web(), url_safe(&up.url)),
        })
    }

    async fn git_credentials(&self) -> Result<(String, Secret), ForgeError> {
        Ok(("oauth2".into(), self.token.clone()))
    }
}

/// `path` with the bytes a URL path cannot hold percent-encoded (`/` and existing escapes
/// are kept).
fn url_safe(path: &str) -> String {
    crate::http::percent_encode(path, b"/%+@:=&")
}
