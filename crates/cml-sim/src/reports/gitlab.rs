//! GitLab's report routes under `/api/v4/projects/:id/`: commit discussions, merge request
//! and issue notes (with GitLab's 1,000,000-character limit), merge requests, merge when the
//! pipeline succeeds, and project uploads.

use serde_json::{json, Value};

use super::{multipart, CommentOn, ForgeKind, SimComment, SimPull, SimUpload};
use crate::github::{Req, Resp, Shared};
use crate::util::random_hex;

const GL: ForgeKind = ForgeKind::Gitlab;
/// GitLab's limit on a note's length, in characters.
pub const NOTE_LIMIT: usize = 1_000_000;

fn error(status: u16, message: Value) -> Resp {
    Resp::json(status, json!({ "message": message }))
}

fn not_found() -> Resp {
    error(404, json!("404 Not found"))
}

/// Serves `rest` (after `/api/v4/`) if it is a report route. `project` is the project's path
/// for its `:id`.
pub(crate) fn handle(
    sh: &Shared,
    req: &Req,
    write: bool,
    rest: &[&str],
    project: impl FnOnce(&str) -> String,
) -> Option<Resp> {
    let m = req.method.as_str();
    let ["projects", id, tail @ ..] = rest else {
        return None;
    };
    let known = matches!(
        (m, tail),
        ("GET" | "POST", ["repository", "commits", _, "discussions"])
            | (
                "PUT",
                ["repository", "commits", _, "discussions", _, "notes", _]
            )
            | ("GET" | "POST", ["merge_requests" | "issues", _, "notes"])
            | ("PUT", ["merge_requests" | "issues", _, "notes", _])
            | ("GET", ["repository", "commits", _, "merge_requests"])
            | ("GET" | "POST", ["merge_requests"])
            | ("PUT", ["merge_requests", _, "merge"])
            | ("POST", ["uploads"])
    );
    if !known {
        return None;
    }
    if m != "GET" && !write {
        return Some(error(403, json!("403 Forbidden")));
    }
    let path = project(id);
    let prefix = sh.cfg.gitlab.path_prefix.trim_end_matches('/');
    let web = format!("{}{prefix}/{path}", sh.base_url);
    let body = req.json();
    let note = body["body"].as_str().map(str::to_string);
    let too_long = note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_LIMIT);
    if too_long {
        return Some(error(
            400,
            json!({"note": [format!("is too long (maximum is {NOTE_LIMIT} characters)")]}),
        ));
    }
    let mut st = sh.reports();
    let resp = match (m, tail) {
        ("GET", ["repository", "commits", sha, "discussions"]) => {
            let all = st.comments_on(GL, &path, &CommentOn::Commit(sha.to_string()));
            let (page, next) = super::paginate(&all, req, 20);
            let list: Vec<Value> = page.iter().map(|c| discussion(&web, c)).collect();
            next_page(Resp::json(200, Value::Array(list)), next)
        }
        ("POST", ["repository", "commits", sha, "discussions"]) => match note {
            None => error(400, json!("body is missing")),
            Some(b) => {
                let c = st.add_comment(GL, &path, CommentOn::Commit(sha.to_string()), b);
                Resp::json(201, discussion(&web, &c))
            }
        },
        ("PUT", ["repository", "commits", sha, "discussions", did, "notes", nid]) => {
            let on = CommentOn::Commit(sha.to_string());
            let in_discussion = st
                .repo(GL, &path)
                .comments
                .iter()
                .any(|c| c.discussion.to_string() == *did && c.id.to_string() == *nid);
            match (note, in_discussion) {
                (Some(b), true) => {
                    let c = st.edit_comment(GL, &path, Some(&on), nid.parse().unwrap_or(0), b);
                    c.map(|c| Resp::json(200, note_json(&web, &c)))
                        .unwrap_or_else(not_found)
                }
                (None, _) => error(400, json!("body is missing")),
                _ => not_found(),
            }
        }
        ("GET" | "POST" | "PUT", [kind, n, "notes", rest @ ..]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let on = if *kind == "merge_requests" {
                CommentOn::Pull(n)
            } else {
                CommentOn::Issue(n)
            };
            if !st.exists(GL, &path, &on) {
                return Some(not_found());
            }
            match (m, rest, note) {
                ("GET", [], _) => {
                    // GitLab lists notes newest first by default.
                    let mut list = st.comments_on(GL, &path, &on);
                    if req.param("sort") != Some("asc") {
                        list.reverse();
                    }
                    let (page, next) = super::paginate(&list, req, 20);
                    let list: Vec<Value> = page.iter().map(|c| note_json(&web, c)).collect();
                    next_page(Resp::json(200, Value::Array(list)), next)
                }
                ("POST", [], Some(b)) => {
                    let c = st.add_comment(GL, &path, on, b);
                    Resp::json(201, note_json(&web, &c))
                }
                ("PUT", [nid], Some(b)) => st
                    .edit_comment(GL, &path, Some(&on), nid.parse().unwrap_or(0), b)
                    .map(|c| Resp::json(200, note_json(&web, &c)))
                    .unwrap_or_else(not_found),
                _ => error(400, json!("body is missing")),
            }
        }
        ("GET", ["repository", "commits", sha, "merge_requests"]) => {
            let list: Vec<Value> = st
                .repo(GL, &path)
                .pulls
                .iter()
                .filter(|p| !p.head_sha.is_empty() && p.head_sha.starts_with(sha))
                .map(|p| merge_request(&web, p))
                .collect();
            Resp::json(200, Value::Array(list))
        }
        ("GET", ["merge_requests"]) => {
            let state = req.param("state").unwrap_or("all");
            let source = req.param("source_branch").map(crate::util::percent_decode);
            let target = req.param("target_branch").map(crate::util::percent_decode);
            let list: Vec<Value> = st
                .repo(GL, &path)
                .pulls
                .iter()
                .filter(|p| state == "all" || (state == "opened") == (p.state == "open"))
                .filter(|p| source.as_ref().is_none_or(|s| *s == p.source))
                .filter(|p| target.as_ref().is_none_or(|t| *t == p.target))
                .map(|p| merge_request(&web, p))
                .collect();
            Resp::json(200, Value::Array(list))
        }
        ("POST", ["merge_requests"]) => {
            let s = |k: &str| body[k].as_str().unwrap_or("").to_string();
            let (source, target) = (s("source_branch"), s("target_branch"));
            if source.is_empty() || target.is_empty() || s("title").is_empty() {
                return Some(error(
                    400,
                    json!("source_branch, target_branch and title are required"),
                ));
            }
            let sha = sh.cfg.git_root.as_ref().and_then(|root| {
                super::git_http::branch_sha(&root.join(format!("{path}.git")), &source)
            });
            let Some(sha) = sha else {
                return Some(error(400, json!(["Source branch does not exist"])));
            };
            match st.open_pull(
                GL,
                &path,
                SimPull::new(&source, &target, &s("title"), &s("description"), &sha),
            ) {
                Some(p) => Resp::json(201, merge_request(&web, &p)),
                None => error(
                    409,
                    json!(["Another open merge request already exists for this source branch"]),
                ),
            }
        }
        ("PUT", ["merge_requests", iid, "merge"]) => {
            let squash = body["squash"].as_bool().unwrap_or(false);
            let when = body["merge_when_pipeline_succeeds"]
                .as_bool()
                .unwrap_or(false)
                || body["auto_merge"].as_bool().unwrap_or(false);
            match st.pull_mut(GL, &path, iid.parse().unwrap_or(0)) {
                Some(p) if p.state == "open" => {
                    p.auto_merge = Some(if squash { "squash" } else { "merge" }.into());
                    if !when {
                        p.state = "merged".into();
                    }
                    let mut v = merge_request(&web, p);
                    v["merge_when_pipeline_succeeds"] = json!(when);
                    Resp::json(200, v)
                }
                Some(_) => error(405, json!("405 Method Not Allowed")),
                None => not_found(),
            }
        }
        ("POST", ["uploads"]) => {
            let ct = req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let file = multipart::parse(ct, &req.body)
                .and_then(|parts| parts.into_iter().find(|p| p.name == "file"));
            let Some(file) = file else {
                return Some(error(400, json!("file is missing")));
            };
            // GitLab keeps word characters, `.`, `-` and `+` of a file name, and turns every
            // other character into `_`.
            let name: String = file
                .filename
                .clone()
                .unwrap_or_else(|| "file".into())
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || "_.-+".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let secret = random_hex(32);
            let url = format!("/uploads/{secret}/{name}");
            let full_path = format!("{prefix}/{path}/uploads/{secret}/{name}");
            st.add_upload(
                GL,
                &path,
                SimUpload {
                    name: name.clone(),
                    bytes: file.data,
                    mime: file
                        .content_type
                        .unwrap_or_else(|| "application/octet-stream".into()),
                    url: format!("{}{full_path}", sh.base_url),
                },
            );
            Resp::json(
                201,
                json!({
                    "id": st.next_id(), "alt": name, "url": url, "full_path": full_path,
                    "markdown": format!("![{name}]({url})"),
                }),
            )
        }
        _ => not_found(),
    };
    Some(resp)
}

/// `r` with GitLab's `x-next-page` header when there is a next page.
fn next_page(r: Resp, next: Option<usize>) -> Resp {
    match next {
        Some(p) => r.header("x-next-page", p.to_string()),
        None => r,
    }
}

fn author() -> Value {
    json!({"id": 1, "username": "cml-sim", "name": "cml-sim"})
}

fn note_json(web: &str, c: &SimComment) -> Value {
    let (noteable_type, anchor) = match &c.on {
        CommentOn::Commit(sha) => ("Commit", format!("{web}/-/commit/{sha}")),
        CommentOn::Pull(n) => ("MergeRequest", format!("{web}/-/merge_requests/{n}")),
        CommentOn::Issue(n) => ("Issue", format!("{web}/-/issues/{n}")),
    };
    json!({
        "id": c.id, "type": null, "body": c.body, "author": author(), "system": false,
        "noteable_type": noteable_type, "web_url": format!("{anchor}#note_{}", c.id),
    })
}

fn discussion(web: &str, c: &SimComment) -> Value {
    json!({"id": c.discussion.to_string(), "individual_note": true, "notes": [note_json(web, c)]})
}

fn merge_request(web: &str, p: &SimPull) -> Value {
    json!({
        "id": p.number, "iid": p.number, "title": p.title, "description": p.body,
        "state": match p.state.as_str() { "open" => "opened", s => s },
        "source_branch": p.source, "target_branch": p.target, "sha": p.head_sha,
        "web_url": format!("{web}/-/merge_requests/{}", p.number),
        "merge_when_pipeline_succeeds": p.auto_merge.is_some() && p.state == "open",
        "squash": p.auto_merge.as_deref() == Some("squash"),
    })
}
