//! GitHub's report routes: commit and issue comments, pull requests (REST, plus the GraphQL
//! `enablePullRequestAutoMerge` mutation), check runs, the Git data API (refs, blobs, trees,
//! commits), and `raw` file URLs. Answers are shaped by [`crate::openapi::instance`], so they
//! carry every field GitHub's OpenAPI description requires.

use base64::Engine;
use serde_json::{json, Value};

use super::{object_id, CommentOn, ForgeKind, SimComment, SimPull};
use crate::github::{Req, Resp, Shared};
use crate::openapi::instance;
use crate::util::{percent_decode, rfc3339};

const GH: ForgeKind = ForgeKind::Github;

/// The caller of a report route.
pub struct Caller {
    /// May write (not a read-only token).
    pub write: bool,
    /// A GitHub App installation token (or Actions' `GITHUB_TOKEN`, `ghs_…`).
    pub app: bool,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Serves `/repos/{owner}/{repo}/{rest}` if it is a report route.
pub(crate) fn handle(
    sh: &Shared,
    req: &Req,
    caller: &Caller,
    full: &str,
    rest: &[&str],
) -> Option<Resp> {
    let m = req.method.as_str();
    let known = matches!(
        (m, rest),
        ("GET" | "POST", ["commits", _, "comments"])
            | ("PATCH", ["comments", _])
            | ("GET" | "POST", ["issues", _, "comments"])
            | ("PATCH", ["issues", "comments", _])
            | ("GET", ["commits", _, "pulls"])
            | ("GET" | "POST", ["pulls"])
            | ("PUT", ["pulls", _, "merge"])
            | ("POST", ["check-runs"])
            | ("GET", ["git", "ref", ..])
            | ("POST", ["git", "refs" | "blobs" | "trees" | "commits"])
            | ("PATCH", ["git", "refs", ..])
            | ("GET", ["git", "commits", _])
    );
    if !known {
        return None;
    }
    if m != "GET" && !caller.write {
        return Some(Resp::error(
            403,
            "Resource not accessible by personal access token",
        ));
    }
    let web = format!("{}/{full}", sh.base_url);
    // API URLs in answers and `Link` headers are where the request came: under `/api/v3`
    // when the client uses GitHub Enterprise Server's paths, as such a server answers.
    let prefix = if req.raw_path.starts_with("/api/v3/") {
        "/api/v3"
    } else {
        ""
    };
    let api = format!("{}{prefix}/repos/{full}", sh.base_url);
    let body = req.json();
    let mut st = sh.reports();
    let resp = match (m, rest) {
        ("GET", ["commits", sha, "comments"]) => {
            let all = st.comments_on(GH, full, &CommentOn::Commit(sha.to_string()));
            let (page, next) = super::paginate(&all, req, 30);
            let list: Vec<Value> = page
                .iter()
                .map(|c| commit_comment(&web, &api, c, sha))
                .collect();
            let path = format!("{api}/commits/{sha}/comments?{}", req.query);
            linked(
                ok(
                    m,
                    "/repos/{owner}/{repo}/commits/{commit_sha}/comments",
                    200,
                    Value::Array(list),
                ),
                &path,
                next,
            )
        }
        ("POST", ["commits", sha, "comments"]) => match text(&body, "body") {
            None => unprocessable("body"),
            Some(b) => {
                let c = st.add_comment(GH, full, CommentOn::Commit(sha.to_string()), b);
                ok(
                    m,
                    "/repos/{owner}/{repo}/commits/{commit_sha}/comments",
                    201,
                    commit_comment(&web, &api, &c, sha),
                )
            }
        },
        ("PATCH", ["comments", id]) => {
            let on_commit = |c: &SimComment| matches!(c.on, CommentOn::Commit(_));
            let id = id.parse().unwrap_or(0);
            let found = st
                .repo(GH, full)
                .comments
                .iter()
                .any(|c| c.id == id && on_commit(c));
            match (text(&body, "body"), found) {
                (None, _) => unprocessable("body"),
                (_, false) => Resp::not_found(),
                (Some(b), true) => {
                    let c = st.edit_comment(GH, full, None, id, b).unwrap();
                    let CommentOn::Commit(sha) = c.on.clone() else {
                        unreachable!()
                    };
                    ok(
                        m,
                        "/repos/{owner}/{repo}/comments/{comment_id}",
                        200,
                        commit_comment(&web, &api, &c, &sha),
                    )
                }
            }
        }
        ("GET", ["issues", n, "comments"]) => {
            let Some(on) = issue_or_pull(&mut st, full, n) else {
                return Some(Resp::not_found());
            };
            let all = st.comments_on(GH, full, &on);
            let (page, next) = super::paginate(&all, req, 30);
            let list: Vec<Value> = page.iter().map(|c| issue_comment(&web, &api, c)).collect();
            let path = format!("{api}/issues/{n}/comments?{}", req.query);
            linked(
                ok(
                    m,
                    "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                    200,
                    Value::Array(list),
                ),
                &path,
                next,
            )
        }
        ("POST", ["issues", n, "comments"]) => {
            match (issue_or_pull(&mut st, full, n), text(&body, "body")) {
                (None, _) => Resp::not_found(),
                (_, None) => unprocessable("body"),
                (Some(on), Some(b)) => {
                    let c = st.add_comment(GH, full, on, b);
                    ok(
                        m,
                        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                        201,
                        issue_comment(&web, &api, &c),
                    )
                }
            }
        }
        ("PATCH", ["issues", "comments", id]) => {
            let id = id.parse().unwrap_or(0);
            let found = st
                .repo(GH, full)
                .comments
                .iter()
                .any(|c| c.id == id && !matches!(c.on, CommentOn::Commit(_)));
            match (text(&body, "body"), found) {
                (None, _) => unprocessable("body"),
                (_, false) => Resp::not_found(),
                (Some(b), true) => {
                    let c = st.edit_comment(GH, full, None, id, b).unwrap();
                    ok(
                        m,
                        "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                        200,
                        issue_comment(&web, &api, &c),
                    )
                }
            }
        }
        ("GET", ["commits", sha, "pulls"]) => {
            let list: Vec<Value> = st
                .repo(GH, full)
                .pulls
                .iter()
                .filter(|p| !p.head_sha.is_empty() && p.head_sha.starts_with(sha))
                .map(|p| pull(&web, &api, full, p))
                .collect();
            ok(
                m,
                "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
                200,
                Value::Array(list),
            )
        }
        ("GET", ["pulls"]) => {
            let state = req.param("state").unwrap_or("open").to_string();
            let head = req.param("head").map(percent_decode);
            let base = req.param("base").map(percent_decode);
            let owner = full.split('/').next().unwrap_or("");
            let list: Vec<Value> = st
                .repo(GH, full)
                .pulls
                .iter()
                .filter(|p| state == "all" || (state == "open") == (p.state == "open"))
                .filter(|p| {
                    head.as_ref()
                        .is_none_or(|h| *h == format!("{owner}:{}", p.source))
                })
                .filter(|p| base.as_ref().is_none_or(|b| *b == p.target))
                .map(|p| pull(&web, &api, full, p))
                .collect();
            ok(m, "/repos/{owner}/{repo}/pulls", 200, Value::Array(list))
        }
        ("POST", ["pulls"]) => {
            let (Some(head), Some(base)) = (text(&body, "head"), text(&body, "base")) else {
                return Some(unprocessable("head"));
            };
            let head = head
                .split_once(':')
                .map(|(_, b)| b.to_string())
                .unwrap_or(head);
            let Some(sha) = branch_sha(sh, full, &head) else {
                return Some(Resp::json(
                    422,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}),
                ));
            };
            let title = text(&body, "title").unwrap_or_default();
            let text_body = text(&body, "body").unwrap_or_default();
            match st.open_pull(
                GH,
                full,
                SimPull::new(&head, &base, &title, &text_body, &sha),
            ) {
                Some(p) => ok(
                    m,
                    "/repos/{owner}/{repo}/pulls",
                    201,
                    pull(&web, &api, full, &p),
                ),
                None => Resp::json(
                    422,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {head}.")}]}),
                ),
            }
        }
        ("PUT", ["pulls", n, "merge"]) => {
            let method = text(&body, "merge_method").unwrap_or_else(|| "merge".into());
            match st.pull_mut(GH, full, n.parse().unwrap_or(0)) {
                Some(p) if p.state == "open" => {
                    p.state = "merged".into();
                    p.auto_merge = Some(method);
                    let sha = object_id("merge", p.head_sha.as_bytes());
                    ok(
                        m,
                        "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
                        200,
                        json!({"merged": true, "message": "Pull Request successfully merged", "sha": sha}),
                    )
                }
                Some(_) => Resp::error(405, "Pull Request is not mergeable"),
                None => Resp::not_found(),
            }
        }
        ("POST", ["check-runs"]) => {
            if !caller.app {
                return Some(Resp::error(403, "You must authenticate via a GitHub App."));
            }
            let (Some(name), Some(head_sha)) = (text(&body, "name"), text(&body, "head_sha"))
            else {
                return Some(unprocessable("name"));
            };
            let id = st.next_id();
            let check = super::SimCheck {
                id,
                name,
                head_sha,
                status: text(&body, "status").unwrap_or_else(|| "queued".into()),
                conclusion: text(&body, "conclusion"),
                title: body["output"]["title"].as_str().unwrap_or("").into(),
                summary: body["output"]["summary"].as_str().unwrap_or("").into(),
            };
            if check.summary.chars().count() > 65535 {
                return Some(unprocessable("output.summary"));
            }
            st.repo(GH, full).checks.push(check.clone());
            let data = json!({
                "id": id, "name": check.name, "head_sha": check.head_sha, "status": check.status,
                "conclusion": check.conclusion, "html_url": format!("{web}/runs/{id}"),
                "url": format!("{api}/check-runs/{id}"),
                "output": {"title": check.title, "summary": check.summary, "text": null, "annotations_count": 0, "annotations_url": ""},
            });
            ok(m, "/repos/{owner}/{repo}/check-runs", 201, data)
        }
        ("GET", ["git", "ref", path @ ..]) => {
            let key = path.join("/");
            match st.repo(GH, full).refs.get(&key) {
                Some(sha) => ok(
                    m,
                    "/repos/{owner}/{repo}/git/ref/{ref}",
                    200,
                    git_ref(&api, &key, sha),
                ),
                None => Resp::not_found(),
            }
        }
        ("POST", ["git", "refs"]) => {
            let (Some(r), Some(sha)) = (text(&body, "ref"), text(&body, "sha")) else {
                return Some(unprocessable("ref"));
            };
            let repo = st.repo(GH, full);
            let key = r.trim_start_matches("refs/").to_string();
            if !r.starts_with("refs/") || !repo.commits.contains_key(&sha) {
                Resp::error(422, "Reference update failed")
            } else if repo.refs.contains_key(&key) {
                Resp::error(422, "Reference already exists")
            } else {
                repo.refs.insert(key.clone(), sha.clone());
                ok(
                    m,
                    "/repos/{owner}/{repo}/git/refs",
                    201,
                    git_ref(&api, &key, &sha),
                )
            }
        }
        ("PATCH", ["git", "refs", path @ ..]) => {
            let key = path.join("/");
            let Some(sha) = text(&body, "sha") else {
                return Some(unprocessable("sha"));
            };
            let force = body["force"].as_bool().unwrap_or(false);
            let repo = st.repo(GH, full);
            let Some(current) = repo.refs.get(&key).cloned() else {
                return Some(Resp::error(422, "Reference does not exist"));
            };
            let fast_forward = repo
                .commits
                .get(&sha)
                .is_some_and(|(_, parents)| parents.contains(&current));
            if !force && !fast_forward {
                Resp::error(422, "Update is not a fast forward")
            } else {
                repo.refs.insert(key.clone(), sha.clone());
                ok(
                    m,
                    "/repos/{owner}/{repo}/git/refs/{ref}",
                    200,
                    git_ref(&api, &key, &sha),
                )
            }
        }
        ("POST", ["git", "blobs"]) => {
            let Some(content) = text(&body, "content") else {
                return Some(unprocessable("content"));
            };
            let bytes = if body["encoding"] == "base64" {
                match b64().decode(content.replace(['\n', '\r'], "")) {
                    Ok(b) => b,
                    Err(_) => return Some(unprocessable("content")),
                }
            } else {
                content.into_bytes()
            };
            let sha = object_id("blob", &bytes);
            st.repo(GH, full).blobs.insert(sha.clone(), bytes);
            ok(
                m,
                "/repos/{owner}/{repo}/git/blobs",
                201,
                json!({"sha": sha, "url": format!("{api}/git/blobs/{sha}")}),
            )
        }
        ("POST", ["git", "trees"]) => {
            let repo = st.repo(GH, full);
            let mut entries = match text(&body, "base_tree") {
                Some(base) => match repo.trees.get(&base) {
                    Some(t) => t.clone(),
                    None => return Some(unprocessable("base_tree")),
                },
                None => Default::default(),
            };
            for e in body["tree"].as_array().into_iter().flatten() {
                let (Some(path), Some(sha)) = (e["path"].as_str(), e["sha"].as_str()) else {
                    return Some(unprocessable("tree"));
                };
                if !repo.blobs.contains_key(sha) {
                    return Some(unprocessable("tree.sha"));
                }
                entries.insert(path.to_string(), sha.to_string());
            }
            let listing = serde_json::to_vec(&entries).unwrap_or_default();
            let sha = object_id("tree", &listing);
            let items: Vec<Value> = entries
                .iter()
                .map(|(p, s)| json!({"path": p, "mode": "100644", "type": "blob", "sha": s}))
                .collect();
            repo.trees.insert(sha.clone(), entries);
            ok(
                m,
                "/repos/{owner}/{repo}/git/trees",
                201,
                json!({"sha": sha, "url": format!("{api}/git/trees/{sha}"), "tree": items, "truncated": false}),
            )
        }
        ("POST", ["git", "commits"]) => {
            let (Some(message), Some(tree)) = (text(&body, "message"), text(&body, "tree")) else {
                return Some(unprocessable("tree"));
            };
            let parents: Vec<String> = body["parents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_str().map(String::from))
                .collect();
            let repo = st.repo(GH, full);
            if !repo.trees.contains_key(&tree)
                || parents.iter().any(|p| !repo.commits.contains_key(p))
            {
                return Some(unprocessable("parents"));
            }
            let sha = object_id(
                "commit",
                format!("{tree}{parents:?}{message}{}", crate::util::unix_nanos()).as_bytes(),
            );
            repo.commits
                .insert(sha.clone(), (tree.clone(), parents.clone()));
            ok(
                m,
                "/repos/{owner}/{repo}/git/commits",
                201,
                git_commit(&web, &api, &sha, &tree, &parents, &message),
            )
        }
        ("GET", ["git", "commits", sha]) => match st.repo(GH, full).commits.get(*sha).cloned() {
            Some((tree, parents)) => ok(
                m,
                "/repos/{owner}/{repo}/git/commits/{commit_sha}",
                200,
                git_commit(&web, &api, sha, &tree, &parents, ""),
            ),
            None => Resp::not_found(),
        },
        _ => Resp::not_found(),
    };
    Some(resp)
}

/// `POST /graphql` (`/api/graphql` on GitHub Enterprise Server): the auto-merge mutation.
pub(crate) fn graphql(sh: &Shared, req: &Req, caller: &Caller) -> Resp {
    let body = req.json();
    let query = body["query"].as_str().unwrap_or("");
    if !query.contains("enablePullRequestAutoMerge") {
        return Resp::json(
            200,
            json!({"errors": [{"message": "the simulator only knows enablePullRequestAutoMerge"}]}),
        );
    }
    if !caller.write {
        return Resp::json(
            200,
            json!({"data": null, "errors": [{"type": "FORBIDDEN", "message": "Resource not accessible by personal access token"}]}),
        );
    }
    // The variables are found by their values: a pull request node id and a merge method.
    let values: Vec<&str> = body["variables"]
        .as_object()
        .map(|o| o.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let node = values
        .iter()
        .find(|v| v.starts_with("PR_"))
        .copied()
        .unwrap_or("");
    let method = values
        .iter()
        .find(|v| matches!(**v, "MERGE" | "SQUASH" | "REBASE"))
        .copied()
        .unwrap_or("MERGE")
        .to_ascii_lowercase();
    let Some((full, number)) = decode_node_id(node) else {
        return Resp::json(
            200,
            json!({"data": null, "errors": [{"type": "NOT_FOUND", "message": format!("Could not resolve to a node with the global id of '{node}'")}]}),
        );
    };
    let mut st = sh.reports();
    let Some(p) = st.pull_mut(GH, &full, number) else {
        return Resp::json(
            200,
            json!({"data": null, "errors": [{"type": "NOT_FOUND", "message": "Pull request not found"}]}),
        );
    };
    let protected = sh.cfg.protected_branches.contains(&p.target);
    if !protected {
        // Without required checks the pull request can be merged at once, and GitHub refuses
        // to schedule it.
        return Resp::json(
            200,
            json!({"data": {"enablePullRequestAutoMerge": null}, "errors": [{"type": "UNPROCESSABLE", "message": "Pull request Pull request is in clean status"}]}),
        );
    }
    p.auto_merge = Some(method.clone());
    Resp::json(
        200,
        json!({"data": {"enablePullRequestAutoMerge": {"pullRequest": {"number": number, "autoMergeRequest": {"mergeMethod": method.to_uppercase()}}}}}),
    )
}

/// `GET /{owner}/{repo}/raw/{commit}/{path}`: a file of a commit made through the Git data API.
pub(crate) fn raw(sh: &Shared, owner: &str, repo: &str, commit: &str, path: &[&str]) -> Resp {
    let full = format!("{owner}/{repo}");
    let mut st = sh.reports();
    let r = st.repo(GH, &full);
    let path = path
        .iter()
        .map(|s| percent_decode(s))
        .collect::<Vec<_>>()
        .join("/");
    let blob = r
        .commits
        .get(commit)
        .and_then(|(tree, _)| r.trees.get(tree))
        .and_then(|t| t.get(&path))
        .and_then(|b| r.blobs.get(b));
    match blob {
        Some(bytes) => Resp::bytes(bytes.clone()),
        None => Resp::not_found(),
    }
}

/// The pull request's GraphQL node id.
pub fn node_id(full: &str, number: u64) -> String {
    format!(
        "PR_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{full}#{number}"))
    )
}

fn decode_node_id(node: &str) -> Option<(String, u64)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(node.strip_prefix("PR_")?)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (full, n) = s.rsplit_once('#')?;
    Some((full.to_string(), n.parse().ok()?))
}

/// The commit a branch of the repository served over HTTP points at, if it exists.
fn branch_sha(sh: &Shared, full: &str, branch: &str) -> Option<String> {
    let root = sh.cfg.git_root.as_ref()?;
    super::git_http::branch_sha(&root.join(format!("{full}.git")), branch)
}

fn issue_or_pull(st: &mut super::Store, full: &str, n: &str) -> Option<CommentOn> {
    let n: u64 = n.parse().ok()?;
    let r = st.repo(GH, full);
    if r.pulls.iter().any(|p| p.number == n) {
        Some(CommentOn::Pull(n))
    } else if r.issues.contains(&n) {
        Some(CommentOn::Issue(n))
    } else {
        None
    }
}

fn text(body: &Value, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).map(str::to_string)
}

fn unprocessable(field: &str) -> Resp {
    Resp::json(
        422,
        json!({"message": "Invalid request.", "errors": [{"field": field, "code": "missing_field"}]}),
    )
}

/// `r` with a `Link: <…>; rel="next"` header when there is a next page.
fn linked(r: Resp, url: &str, next: Option<usize>) -> Resp {
    match next {
        Some(p) => r.header(
            "link",
            format!("<{}>; rel=\"next\"", super::with_page(url, p)),
        ),
        None => r,
    }
}

fn ok(method: &str, template: &str, status: u16, data: Value) -> Resp {
    Resp::json(status, instance(method, template, data))
}

fn now() -> String {
    rfc3339(std::time::SystemTime::now())
}

fn user() -> Value {
    json!({"login": "cml-sim", "id": 1, "type": "User"})
}

fn commit_comment(web: &str, api: &str, c: &SimComment, sha: &str) -> Value {
    json!({
        "id": c.id, "body": c.body, "commit_id": sha, "user": user(),
        "html_url": format!("{web}/commit/{sha}#commitcomment-{}", c.id),
        "url": format!("{api}/comments/{}", c.id),
        "created_at": now(), "updated_at": now(), "author_association": "OWNER",
    })
}

fn issue_comment(web: &str, api: &str, c: &SimComment) -> Value {
    let (kind, n) = match c.on {
        CommentOn::Pull(n) => ("pull", n),
        CommentOn::Issue(n) => ("issues", n),
        CommentOn::Commit(_) => ("commit", 0),
    };
    json!({
        "id": c.id, "body": c.body, "user": user(),
        "html_url": format!("{web}/{kind}/{n}#issuecomment-{}", c.id),
        "issue_url": format!("{api}/issues/{n}"),
        "url": format!("{api}/issues/comments/{}", c.id),
        "created_at": now(), "updated_at": now(), "author_association": "OWNER",
    })
}

fn pull(web: &str, api: &str, full: &str, p: &SimPull) -> Value {
    let owner = full.split('/').next().unwrap_or("");
    let auto = p.auto_merge.as_ref().filter(|_| p.state == "open").map(|m| {
        json!({"merge_method": m, "enabled_by": user(), "commit_title": "", "commit_message": ""})
    });
    json!({
        "id": p.number, "number": p.number, "node_id": node_id(full, p.number),
        "state": if p.state == "open" { "open" } else { "closed" },
        "title": p.title, "body": p.body, "user": user(),
        "html_url": format!("{web}/pull/{}", p.number),
        "url": format!("{api}/pulls/{}", p.number),
        "head": {"ref": p.source, "sha": p.head_sha, "label": format!("{owner}:{}", p.source), "user": user(), "repo": null},
        "base": {"ref": p.target, "sha": "", "label": format!("{owner}:{}", p.target), "user": user()},
        "merged_at": if p.state == "merged" { Value::String(now()) } else { Value::Null },
        "auto_merge": auto,
        "created_at": now(), "updated_at": now(), "locked": false, "author_association": "OWNER",
    })
}

fn git_ref(api: &str, key: &str, sha: &str) -> Value {
    json!({
        "ref": format!("refs/{key}"), "node_id": format!("REF_{key}"),
        "url": format!("{api}/git/refs/{key}"),
        "object": {"type": "commit", "sha": sha, "url": format!("{api}/git/commits/{sha}")},
    })
}

fn git_commit(
    web: &str,
    api: &str,
    sha: &str,
    tree: &str,
    parents: &[String],
    message: &str,
) -> Value {
    let who = json!({"name": "cml", "email": "cml@localhost", "date": now()});
    json!({
        "sha": sha, "node_id": format!("C_{sha}"), "url": format!("{api}/git/commits/{sha}"),
        "html_url": format!("{web}/commit/{sha}"), "author": who, "committer": who,
        "tree": {"sha": tree, "url": format!("{api}/git/trees/{tree}")},
        "message": message,
        "parents": parents.iter().map(|p| json!({"sha": p, "url": format!("{api}/git/commits/{p}"), "html_url": format!("{web}/commit/{p}")})).collect::<Vec<_>>(),
        "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
    })
}
