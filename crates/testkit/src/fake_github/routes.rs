//! The endpoints, with the parameters, status codes and bodies the REST reference documents.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::gate::{self, error, Login, DOCS};
use super::state::{encode_path_segment, Association, Problem, State};

type Shared = Arc<Mutex<State>>;
type Params = Query<Vec<(String, String)>>;

/// GitHub's documented maximum size of an issue or comment body, in characters.
const MAX_BODY_CHARS: usize = 65_536;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/user", get(current_user))
        .route("/rate_limit", get(rate_limit))
        .route("/repos/{owner}/{repo}", get(repository))
        .route("/repos/{owner}/{repo}/issues", get(list_issues).post(create_issue))
        .route("/repos/{owner}/{repo}/issues/comments/{id}", get(get_comment).patch(update_comment))
        .route("/repos/{owner}/{repo}/issues/{number}", get(get_issue).patch(update_issue))
        .route("/repos/{owner}/{repo}/issues/{number}/comments", get(list_comments).post(create_comment))
        .route("/repos/{owner}/{repo}/issues/{number}/labels", get(list_labels).post(add_labels))
        .route("/repos/{owner}/{repo}/issues/{number}/labels/{name}", delete(remove_label))
        .fallback(|| async { not_found() })
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate::gate))
        .with_state(state)
}

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", DOCS)
}

fn problem(p: Problem) -> Response {
    match p {
        Problem::NotFound => not_found(),
        Problem::LabelMissing => error(
            StatusCode::NOT_FOUND,
            "Label does not exist",
            "https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue",
        ),
    }
}

/// 422 with GitHub's validation error shape.
fn invalid(resource: &str, field: &str, code: &str, message: Option<&str>, docs: &str) -> Response {
    let mut detail = json!({ "resource": resource, "field": field, "code": code });
    if let Some(message) = message {
        detail["message"] = json!(message);
    }
    let body =
        json!({ "message": "Validation Failed", "errors": [detail], "documentation_url": docs, "status": "422" });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

/// A request body parsed as JSON; a body that does not parse is rejected as GitHub rejects it. An
/// empty body is an empty object.
struct JsonBody(Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        if body.is_empty() {
            return Ok(JsonBody(json!({})));
        }
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|_| error(StatusCode::BAD_REQUEST, "Problems parsing JSON", DOCS))
    }
}

fn etag_of(body: &str) -> String {
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    format!("W/\"{:016x}{:08x}\"", hasher.finish(), body.len())
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers.get_all("if-none-match").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |candidate| {
            let candidate = candidate.trim();
            candidate == "*" || bare(candidate) == bare(etag)
        },
    )
}

/// A JSON response to a GET, with an `ETag`, answered 304 when the client already has it.
fn conditional(request: &HeaderMap, status: StatusCode, body: &Value, extra: Vec<(&'static str, String)>) -> Response {
    let text = body.to_string();
    let etag = etag_of(&text);
    let mut response = if matches_etag(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (status, text).into_response();
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
        r
    };
    let h = response.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("private, max-age=60, s-maxage=60"));
    h.insert("vary", HeaderValue::from_static("Accept, Authorization, Cookie, X-GitHub-OTP"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert("etag", v);
    }
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

fn created(body: Value, location: String) -> Response {
    let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert("location", v);
    }
    r
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Page `page` of `items` and the `Link` header for page-number pagination: `per_page` defaults
/// to 30 and is capped at 100; links keep every other query parameter.
fn paginate<T>(base: &str, path: &str, params: &[(String, String)], items: Vec<T>) -> (Vec<T>, Option<String>) {
    let per_page = param(params, "per_page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100);
    let page = param(params, "page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<T> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    if last == 1 {
        return (slice, None);
    }
    let url = |p: usize| {
        let mut query: Vec<(String, String)> = params.iter().filter(|(k, _)| k != "page").cloned().collect();
        query.push(("page".to_owned(), p.to_string()));
        let query: Vec<String> =
            query.iter().map(|(k, v)| format!("{}={}", encode_path_segment(k), encode_path_segment(v))).collect();
        let query = query.join("&");
        format!("<{base}{path}?{query}>")
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
    }
    (slice, Some(links.join(", ")))
}

/// The number of an issue that exists in this repository, from the path's parts.
fn issue_at(s: &State, owner: &str, repo: &str, number: &str) -> Option<u64> {
    issue_number(number).filter(|n| s.issues.contains_key(n) && s.is_repo(owner, repo))
}

fn issue_number(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

async fn current_user(
    AxState(state): AxState<Shared>,
    Extension(Login(login)): Extension<Login>,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    let mut user = s.user_json(&login);
    user["name"] = Value::Null;
    user["public_repos"] = json!(0);
    conditional(&headers, StatusCode::OK, &user, vec![])
}

async fn rate_limit(AxState(state): AxState<Shared>) -> Response {
    let s = lock(&state);
    let core = json!({ "limit": s.rate.limit, "remaining": s.rate.remaining, "used": s.rate.used(), "reset": s.rate.reset, "resource": "core" });
    axum::Json(json!({ "resources": { "core": core }, "rate": core })).into_response()
}

async fn repository(
    AxState(state): AxState<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    conditional(&headers, StatusCode::OK, &s.repo_json(), vec![])
}

async fn list_issues(
    AxState(state): AxState<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/issues#list-repository-issues";
    let s = lock(&state);
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let state_filter = param(&params, "state").unwrap_or("open");
    if !matches!(state_filter, "open" | "closed" | "all") {
        return invalid("Issue", "state", "invalid", None, docs);
    }
    let sort = param(&params, "sort").unwrap_or("created");
    if !matches!(sort, "created" | "updated" | "comments") {
        return invalid("Issue", "sort", "invalid", None, docs);
    }
    let ascending = match param(&params, "direction").unwrap_or("desc") {
        "asc" => true,
        "desc" => false,
        _ => return invalid("Issue", "direction", "invalid", None, docs),
    };
    let since = match param(&params, "since") {
        Some(raw) => match DateTime::parse_from_rfc3339(raw) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => return invalid("Issue", "since", "invalid", None, docs),
        },
        None => None,
    };
    let wanted: Vec<String> = param(&params, "labels")
        .map(|l| l.split(',').map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let assignee = param(&params, "assignee");

    let mut issues: Vec<_> = s
        .issues
        .values()
        .filter(|i| match state_filter {
            "open" => i.open,
            "closed" => !i.open,
            _ => true,
        })
        .filter(|i| wanted.iter().all(|w| i.labels.iter().any(|l| l.to_lowercase() == *w)))
        .filter(|i| match assignee {
            None => true,
            Some("none") => i.assignees.is_empty(),
            Some("*") => !i.assignees.is_empty(),
            Some(login) => i.assignees.iter().any(|a| a.eq_ignore_ascii_case(login)),
        })
        .filter(|i| since.is_none_or(|t| i.updated_at >= t))
        .collect();
    let comments = |n: u64| s.comment_count(n);
    issues.sort_by(|a, b| {
        let order = match sort {
            "updated" => a.updated_at.cmp(&b.updated_at),
            "comments" => comments(a.number).cmp(&comments(b.number)),
            _ => a.created_at.cmp(&b.created_at),
        }
        .then(a.number.cmp(&b.number));
        if ascending {
            order
        } else {
            order.reverse()
        }
    });
    let path = format!("/repos/{owner}/{repo}/issues");
    let (page, link) = paginate(&s.base, &path, &params, issues);
    let page = Value::Array(page.into_iter().map(|i| s.issue_json(i)).collect());
    conditional(&headers, StatusCode::OK, &page, link.map(|l| ("link", l)).into_iter().collect())
}

async fn create_issue(
    AxState(state): AxState<Shared>,
    Extension(Login(login)): Extension<Login>,
    Path((owner, repo)): Path<(String, String)>,
    JsonBody(input): JsonBody,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/issues#create-an-issue";
    let mut s = lock(&state);
    if !s.is_repo(&owner, &repo) {
        return not_found();
    }
    let title = match &input["title"] {
        Value::String(t) if !t.trim().is_empty() => t.clone(),
        Value::Number(n) => n.to_string(),
        _ => return invalid("Issue", "title", "missing_field", None, docs),
    };
    let body_text = input["body"].as_str().map(str::to_owned);
    if body_text.as_ref().is_some_and(|b| b.chars().count() > MAX_BODY_CHARS) {
        return invalid("Issue", "body", "custom", Some("body is too long (maximum is 65536 characters)"), docs);
    }
    let association = s.association_of(&login);
    // "Only users with push access can set labels [assignees] for new issues. Labels [Assignees]
    // are silently dropped otherwise."
    let can_push = matches!(association, Association::Owner | Association::Member | Association::Collaborator);
    let (labels, assignees) = match can_push {
        true => (string_list(&input["labels"]), string_list(&input["assignees"])),
        false => (Vec::new(), Vec::new()),
    };
    let number = s.create_issue(&login, association, title, body_text, labels, assignees, false);
    let issue = &s.issues[&number];
    let json = s.issue_json(issue);
    let location = json["url"].as_str().unwrap_or_default().to_owned();
    created(json, location)
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

async fn get_issue(
    AxState(state): AxState<Shared>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    let Some(issue) = issue_at(&s, &owner, &repo, &number).and_then(|n| s.issues.get(&n)) else {
        return not_found();
    };
    conditional(&headers, StatusCode::OK, &s.issue_json(issue), vec![])
}

async fn update_issue(
    AxState(state): AxState<Shared>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    JsonBody(input): JsonBody,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/issues#update-an-issue";
    let mut s = lock(&state);
    let Some(n) = issue_at(&s, &owner, &repo, &number) else {
        return not_found();
    };
    if let Some(state_value) = input.get("state") {
        match state_value.as_str() {
            Some("open") => s.set_open(n, true).ok(),
            Some("closed") => s.set_open(n, false).ok(),
            _ => return invalid("Issue", "state", "invalid", None, docs),
        };
    }
    if let Some(title) = input.get("title") {
        match title.as_str() {
            Some(t) if !t.trim().is_empty() => s.issues.get_mut(&n).into_iter().for_each(|i| i.title = t.to_owned()),
            _ => return invalid("Issue", "title", "missing_field", None, docs),
        }
    }
    if let Some(body_value) = input.get("body") {
        let text = body_value.as_str().map(str::to_owned);
        if text.as_ref().is_some_and(|b| b.chars().count() > MAX_BODY_CHARS) {
            return invalid("Issue", "body", "custom", Some("body is too long (maximum is 65536 characters)"), docs);
        }
        s.issues.get_mut(&n).into_iter().for_each(|i| i.body = text.clone());
    }
    if let Some(labels) = input.get("labels") {
        let labels = string_list(labels);
        s.issues.get_mut(&n).into_iter().for_each(|i| i.labels.clear());
        let _ = s.add_labels(n, &labels);
    }
    if let Some(assignees) = input.get("assignees") {
        let assignees = string_list(assignees);
        s.issues.get_mut(&n).into_iter().for_each(|i| i.assignees = assignees.clone());
    }
    s.touch(n);
    axum::Json(s.issue_json(&s.issues[&n])).into_response()
}

async fn list_comments(
    AxState(state): AxState<Shared>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    let Some(n) = issue_at(&s, &owner, &repo, &number) else {
        return not_found();
    };
    let since =
        param(&params, "since").and_then(|raw| DateTime::parse_from_rfc3339(raw).ok()).map(|t| t.with_timezone(&Utc));
    let items: Vec<_> = s.comments_of(n).into_iter().filter(|c| since.is_none_or(|t| c.updated_at >= t)).collect();
    let path = format!("/repos/{owner}/{repo}/issues/{n}/comments");
    let (page, link) = paginate(&s.base, &path, &params, items);
    let page = Value::Array(page.into_iter().map(|c| s.comment_json(c)).collect());
    conditional(&headers, StatusCode::OK, &page, link.map(|l| ("link", l)).into_iter().collect())
}

/// The comment body from a create or update request, checked as GitHub checks it.
fn comment_body(input: &Value, docs: &str) -> Result<String, Box<Response>> {
    match input.get("body").and_then(Value::as_str) {
        None => Err(Box::new(invalid("IssueComment", "body", "missing_field", None, docs))),
        Some(b) if b.trim().is_empty() => Err(Box::new(invalid("IssueComment", "body", "missing_field", None, docs))),
        Some(b) if b.chars().count() > MAX_BODY_CHARS => Err(Box::new(invalid(
            "IssueComment",
            "body",
            "custom",
            Some("Body is too long (maximum is 65536 characters)"),
            docs,
        ))),
        Some(b) => Ok(b.to_owned()),
    }
}

async fn create_comment(
    AxState(state): AxState<Shared>,
    Extension(Login(login)): Extension<Login>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    JsonBody(input): JsonBody,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/comments#create-an-issue-comment";
    let mut s = lock(&state);
    let Some(n) = issue_at(&s, &owner, &repo, &number) else {
        return not_found();
    };
    let text = match comment_body(&input, docs) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match s.add_comment(n, &login, &text) {
        Ok(id) => {
            let json = s.comment_json(&s.comments[&id]);
            let location = json["url"].as_str().unwrap_or_default().to_owned();
            created(json, location)
        }
        Err(p) => problem(p),
    }
}

async fn get_comment(
    AxState(state): AxState<Shared>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    let Some(comment) = id.parse::<u64>().ok().and_then(|id| s.comments.get(&id)).filter(|_| s.is_repo(&owner, &repo))
    else {
        return not_found();
    };
    conditional(&headers, StatusCode::OK, &s.comment_json(comment), vec![])
}

async fn update_comment(
    AxState(state): AxState<Shared>,
    Extension(Login(login)): Extension<Login>,
    Path((owner, repo, id)): Path<(String, String, String)>,
    JsonBody(input): JsonBody,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/comments#update-an-issue-comment";
    let mut s = lock(&state);
    let Some(id) = id.parse::<u64>().ok().filter(|id| s.comments.contains_key(id) && s.is_repo(&owner, &repo)) else {
        return not_found();
    };
    let text = match comment_body(&input, docs) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    // Only the author (or a maintainer) may edit; the bot edits its own comments.
    let author = s.comments[&id].author.clone();
    let may_edit = author.eq_ignore_ascii_case(&login)
        || matches!(s.association_of(&login).as_str(), "OWNER" | "MEMBER" | "COLLABORATOR");
    if !may_edit {
        return error(StatusCode::FORBIDDEN, "Must have admin rights to Repository.", DOCS);
    }
    match s.update_comment(id, &text) {
        Ok(()) => axum::Json(s.comment_json(&s.comments[&id])).into_response(),
        Err(p) => problem(p),
    }
}

async fn list_labels(
    AxState(state): AxState<Shared>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let s = lock(&state);
    let Some(n) = issue_at(&s, &owner, &repo, &number) else {
        return not_found();
    };
    let items = match s.labels_json(n) {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let path = format!("/repos/{owner}/{repo}/issues/{n}/labels");
    let (page, link) = paginate(&s.base, &path, &params, items);
    let page = Value::Array(page);
    conditional(&headers, StatusCode::OK, &page, link.map(|l| ("link", l)).into_iter().collect())
}

async fn add_labels(
    AxState(state): AxState<Shared>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    JsonBody(input): JsonBody,
) -> Response {
    let docs = "https://docs.github.com/rest/issues/labels#add-labels-to-an-issue";
    let mut s = lock(&state);
    let Some(n) = issue_at(&s, &owner, &repo, &number) else {
        return not_found();
    };
    // Documented bodies: {"labels": ["bug"]}, {"labels": [{"name": "bug"}]}, or ["bug"].
    let labels = match &input {
        Value::Array(_) => string_list(&input),
        Value::Object(o) => match o.get("labels") {
            Some(list @ Value::Array(_)) => string_list(list),
            _ => return invalid("Label", "labels", "missing_field", None, docs),
        },
        _ => return invalid("Label", "labels", "invalid", None, docs),
    };
    if labels.iter().any(|l| l.trim().is_empty()) {
        return invalid("Label", "name", "invalid", None, docs);
    }
    if let Err(p) = s.add_labels(n, &labels) {
        return problem(p);
    }
    axum::Json(s.labels_json(n)).into_response()
}

async fn remove_label(
    AxState(state): AxState<Shared>,
    Path((owner, repo, number, name)): Path<(String, String, String, String)>,
) -> Response {
    let mut s = lock(&state);
    let Some(n) = issue_at(&s, &owner, &repo, &number) else {
        return not_found();
    };
    match s.remove_label(n, &name) {
        Ok(true) => axum::Json(s.labels_json(n)).into_response(),
        Ok(false) => problem(Problem::LabelMissing),
        Err(p) => problem(p),
    }
}
