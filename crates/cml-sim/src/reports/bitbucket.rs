//! Bitbucket Cloud's report routes under `/2.0/repositories/{workspace}/{slug}/`: commit,
//! pull request and issue comments, pull requests and their merge, and repository downloads.

use serde_json::{json, Value};

use super::{multipart, CommentOn, ForgeKind, SimComment, SimPull, SimUpload};
use crate::github::{Req, Resp, Shared};

const BB: ForgeKind = ForgeKind::Bitbucket;

fn error(status: u16, message: &str) -> Resp {
    Resp::json(
        status,
        json!({"type": "error", "error": {"message": message}}),
    )
}

/// Whether `rest` (after `/2.0/repositories/{ws}/{slug}/`) is a report route, and whether it
/// writes.
pub(crate) fn route_kind(method: &str, rest: &[&str]) -> Option<bool> {
    let known = matches!(
        (method, rest),
        ("GET" | "POST", ["commit", _, "comments"])
            | ("PUT", ["commit", _, "comments", _])
            | ("GET" | "POST", ["pullrequests" | "issues", _, "comments"])
            | ("PUT", ["pullrequests" | "issues", _, "comments", _])
            | ("GET", ["commit", _, "pullrequests"])
            | ("GET" | "POST", ["pullrequests"])
            | ("POST", ["pullrequests", _, "merge"])
            | ("POST", ["downloads"])
    );
    known.then_some(method != "GET")
}

/// Serves a report route of repository `full` (`workspace/slug`); authentication is done.
pub(crate) fn handle(sh: &Shared, req: &Req, full: &str, rest: &[&str]) -> Resp {
    let m = req.method.as_str();
    let web = format!("{}/{full}", sh.base_url);
    let body = req.json();
    let raw = body["content"]["raw"].as_str().map(str::to_string);
    let mut st = sh.reports();
    match (m, rest) {
        ("GET" | "POST" | "PUT", [kind, key, "comments", tail @ ..]) => {
            let on = match *kind {
                "commit" => CommentOn::Commit(key.to_string()),
                "pullrequests" => CommentOn::Pull(key.parse().unwrap_or(0)),
                _ => CommentOn::Issue(key.parse().unwrap_or(0)),
            };
            if !st.exists(BB, full, &on) {
                return error(404, "No such resource");
            }
            match (m, tail, raw) {
                ("GET", [], _) => {
                    let all = st.comments_on(BB, full, &on);
                    let (page, next) = super::paginate(&all, req, 10);
                    let values: Vec<Value> = page.iter().map(|c| comment(&web, c)).collect();
                    let mut v = json!({"size": all.len(), "values": values});
                    if let Some(p) = next {
                        let here = format!("{}{}?{}", sh.base_url, req.raw_path, req.query);
                        v["next"] = json!(super::with_page(&here, p));
                    }
                    Resp::json(200, v)
                }
                ("POST", [], Some(text)) => {
                    let c = st.add_comment(BB, full, on, text);
                    Resp::json(201, comment(&web, &c))
                }
                ("PUT", [id], Some(text)) => st
                    .edit_comment(BB, full, Some(&on), id.parse().unwrap_or(0), text)
                    .map(|c| Resp::json(200, comment(&web, &c)))
                    .unwrap_or_else(|| error(404, "No such comment")),
                _ => error(400, "content.raw: This field is required."),
            }
        }
        ("GET", ["commit", sha, "pullrequests"]) => {
            let values: Vec<Value> = st
                .repo(BB, full)
                .pulls
                .iter()
                .filter(|p| !p.head_sha.is_empty() && p.head_sha.starts_with(sha))
                .map(|p| pull(&web, p))
                .collect();
            Resp::json(200, json!({"pagelen": 50, "page": 1, "values": values}))
        }
        ("GET", ["pullrequests"]) => {
            let state = req.param("state").unwrap_or("OPEN").to_ascii_uppercase();
            let values: Vec<Value> = st
                .repo(BB, full)
                .pulls
                .iter()
                .filter(|p| (state == "OPEN") == (p.state == "open"))
                .map(|p| pull(&web, p))
                .collect();
            Resp::json(200, json!({"pagelen": 50, "page": 1, "values": values}))
        }
        ("POST", ["pullrequests"]) => {
            let source = body["source"]["branch"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let target = body["destination"]["branch"]["name"]
                .as_str()
                .unwrap_or("main")
                .to_string();
            let title = body["title"].as_str().unwrap_or("").to_string();
            if source.is_empty() || title.is_empty() {
                return error(400, "source and title are required");
            }
            let sha = sh.cfg.git_root.as_ref().and_then(|root| {
                super::git_http::branch_sha(&root.join(format!("{full}.git")), &source)
            });
            let Some(sha) = sha else {
                return error(400, &format!("source: branch {source} not found"));
            };
            let description = body["description"].as_str().unwrap_or("");
            match st.open_pull(
                BB,
                full,
                SimPull::new(&source, &target, &title, description, &sha),
            ) {
                Some(p) => Resp::json(201, pull(&web, &p)),
                None => error(
                    400,
                    "There is already an open pull request from this branch",
                ),
            }
        }
        ("POST", ["pullrequests", id, "merge"]) => {
            let strategy = body["merge_strategy"]
                .as_str()
                .unwrap_or("merge_commit")
                .to_string();
            match st.pull_mut(BB, full, id.parse().unwrap_or(0)) {
                Some(p) if p.state == "open" => {
                    p.state = "merged".into();
                    p.auto_merge = Some(strategy);
                    Resp::json(200, pull(&web, p))
                }
                Some(_) => error(400, "The pull request is not open"),
                None => error(404, "No such pull request"),
            }
        }
        ("POST", ["downloads"]) => {
            let ct = req
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let Some(parts) = multipart::parse(ct, &req.body) else {
                return error(400, "files: a multipart upload is expected");
            };
            let files: Vec<_> = parts.into_iter().filter(|p| p.name == "files").collect();
            if files.is_empty() {
                return error(400, "files: This field is required.");
            }
            for f in files {
                let name = f.filename.clone().unwrap_or_else(|| "file".into());
                st.add_upload(
                    BB,
                    full,
                    SimUpload {
                        url: format!("{web}/downloads/{name}"),
                        name,
                        bytes: f.data,
                        mime: f
                            .content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                    },
                );
            }
            Resp::empty(201)
        }
        _ => error(404, "Resource not found"),
    }
}

fn comment(web: &str, c: &SimComment) -> Value {
    let href = match &c.on {
        CommentOn::Commit(sha) => format!("{web}/commits/{sha}#comment-{}", c.id),
        CommentOn::Pull(n) => format!("{web}/pull-requests/{n}#comment-{}", c.id),
        CommentOn::Issue(n) => format!("{web}/issues/{n}#comment-{}", c.id),
    };
    json!({
        "type": "comment", "id": c.id,
        "content": {"raw": c.body, "markup": "markdown", "html": ""},
        "user": {"display_name": "cml-sim", "uuid": "{00000000-0000-4000-8000-000000000001}"},
        "links": {"html": {"href": href}},
    })
}

fn pull(web: &str, p: &SimPull) -> Value {
    json!({
        "type": "pullrequest", "id": p.number, "title": p.title, "description": p.body,
        "state": match p.state.as_str() { "open" => "OPEN", "merged" => "MERGED", _ => "DECLINED" },
        "source": {"branch": {"name": p.source}, "commit": {"hash": p.head_sha}},
        "destination": {"branch": {"name": p.target}},
        "links": {"html": {"href": format!("{web}/pull-requests/{}", p.number)}},
    })
}
