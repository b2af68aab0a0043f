//! The fake GitHub answers as the REST documentation says, checked over real HTTP.

use std::time::{Duration, Instant};

use bg_run_testkit::fake_github::{Association, FakeFault, FakeGithub, IssueSpec};
use http::{HeaderMap, HeaderValue, Uri};
use octocrab::Octocrab;
use serde_json::{json, Value};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

fn client(fake: &FakeGithub, auth: Option<&str>) -> Octocrab {
    let mut builder = Octocrab::builder().base_uri(fake.api_url()).unwrap();
    if let Some(auth) = auth {
        builder = builder.add_header(http::header::AUTHORIZATION, auth.to_owned());
    }
    builder.build().unwrap()
}

fn bot(fake: &FakeGithub) -> Octocrab {
    client(fake, Some(&format!("Bearer {}", fake.token())))
}

async fn call(octo: &Octocrab, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
    let uri: Uri = path.parse().unwrap();
    let response = match method {
        "GET" => {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            octo._get_with_headers(uri, Some(map)).await
        }
        "POST" => octo._post(uri, body.as_ref()).await,
        "PATCH" => octo._patch(uri, body.as_ref()).await,
        "DELETE" => octo._delete(uri, None::<&()>).await,
        other => panic!("method {other}"),
    }
    .expect("request reaches the fake");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = octo.body_to_string(response).await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    Answer { status, headers, body }
}

fn repo_path(fake: &FakeGithub, rest: &str) -> String {
    format!("/repos/{}/{}{rest}", fake.owner(), fake.repo())
}

#[tokio::test]
async fn authentication_is_required_and_checked() {
    let fake = FakeGithub::start().await;
    let path = repo_path(&fake, "/issues");
    let none = call(&client(&fake, None), "GET", &path, None, &[]).await;
    assert_eq!((none.status, none.message()), (401, "Requires authentication"));
    assert!(none.body["documentation_url"].as_str().unwrap().starts_with("https://docs.github.com/"));
    let wrong = call(&client(&fake, Some("Bearer nope")), "GET", &path, None, &[]).await;
    assert_eq!((wrong.status, wrong.message()), (401, "Bad credentials"));
    let token = call(&client(&fake, Some(&format!("token {}", fake.token()))), "GET", &path, None, &[]).await;
    assert_eq!(token.status, 200);
    let user = call(&bot(&fake), "GET", "/user", None, &[]).await;
    assert_eq!(user.body["login"], "bg-run-bot");
    let version = call(&bot(&fake), "GET", &path, None, &[("x-github-api-version", "1999-01-01")]).await;
    assert_eq!(version.status, 400);
}

#[tokio::test]
async fn the_issue_list_mixes_in_pull_requests_and_paginates_with_link_headers() {
    let fake = FakeGithub::start().await;
    for n in 0..149 {
        fake.open_issue(IssueSpec::new(format!("issue {n}")).label("agent"));
    }
    let pr = fake.open_issue(IssueSpec::new("a pull request").label("agent").pull_request());
    let octo = bot(&fake);

    let default = call(&octo, "GET", &repo_path(&fake, "/issues"), None, &[]).await;
    assert_eq!(default.body.as_array().unwrap().len(), 30, "per_page defaults to 30");
    assert_eq!(default.body[0]["number"], pr, "newest first by default");
    assert!(default.body[0]["pull_request"]["url"].is_string(), "pull requests carry a pull_request key");
    assert!(default.body[1].get("pull_request").is_none());

    let first =
        call(&octo, "GET", &repo_path(&fake, "/issues?labels=agent&per_page=500&direction=asc"), None, &[]).await;
    assert_eq!(first.body.as_array().unwrap().len(), 100, "per_page is capped at 100");
    assert_eq!(first.body[0]["number"], 1);
    let link = first.header("link").unwrap();
    assert!(link.contains("page=2>; rel=\"next\"") && link.contains("page=2>; rel=\"last\""), "{link}");
    assert!(!link.contains("rel=\"prev\"") && !link.contains("rel=\"first\""), "{link}");
    let next = link.split(", ").find(|l| l.ends_with("rel=\"next\"")).unwrap();
    let next = next.trim_start_matches('<').split('>').next().unwrap();
    assert!(next.starts_with(&fake.api_url()) && next.contains("labels=agent"), "{next}");

    let second = call(&octo, "GET", next, None, &[]).await;
    assert_eq!(second.body.as_array().unwrap().len(), 50);
    let link = second.header("link").unwrap();
    assert!(
        link.contains("rel=\"prev\"") && link.contains("rel=\"first\"") && !link.contains("rel=\"next\""),
        "{link}"
    );
}

#[tokio::test]
async fn filters_by_state_labels_and_assignee() {
    let fake = FakeGithub::start().await;
    let a = fake.open_issue(IssueSpec::new("a").label("agent").label("Docs").assignee("octocat"));
    let b = fake.open_issue(IssueSpec::new("b").label("agent"));
    let c = fake.open_issue(IssueSpec::new("c").label("agent"));
    fake.set_open(c, false);
    let octo = bot(&fake);
    let numbers = |answer: Answer| -> Vec<u64> {
        answer.body.as_array().unwrap().iter().map(|i| i["number"].as_u64().unwrap()).collect()
    };
    let list = |query: &str| {
        let path = repo_path(&fake, &format!("/issues?direction=asc&{query}"));
        let octo = &octo;
        async move { call(octo, "GET", &path, None, &[]).await }
    };
    assert_eq!(numbers(list("labels=agent").await), [a, b], "open by default");
    assert_eq!(numbers(list("labels=agent,docs").await), [a], "all labels, case-insensitive");
    assert_eq!(numbers(list("assignee=octocat").await), [a]);
    assert_eq!(numbers(list("assignee=none").await), [b]);
    assert_eq!(numbers(list("state=closed").await), [c]);
    assert_eq!(numbers(list("state=all").await), [a, b, c]);
    assert_eq!(list("state=bogus").await.status, 422);
}

#[tokio::test]
async fn etags_answer_304_and_a_304_costs_no_rate_limit() {
    let fake = FakeGithub::start().await;
    let n = fake.open_issue(IssueSpec::new("t").label("agent"));
    let octo = bot(&fake);
    let path = repo_path(&fake, "/issues?labels=agent");
    let first = call(&octo, "GET", &path, None, &[]).await;
    let etag = first.header("etag").unwrap().to_owned();
    let remaining: u32 = first.header("x-ratelimit-remaining").unwrap().parse().unwrap();
    assert_eq!(first.header("x-ratelimit-limit"), Some("5000"));
    assert_eq!(first.header("x-ratelimit-resource"), Some("core"));
    assert_eq!(first.header("x-ratelimit-used"), Some((5000 - remaining).to_string().as_str()));

    let again = call(&octo, "GET", &path, None, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.body, Value::Null);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("x-ratelimit-remaining").unwrap().parse::<u32>().unwrap(), remaining, "a 304 is free");

    fake.add_label(n, "agent-working");
    let changed = call(&octo, "GET", &path, None, &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(changed.header("x-ratelimit-remaining").unwrap().parse::<u32>().unwrap(), remaining - 1);
}

#[tokio::test]
async fn labels_are_added_with_post_and_removed_with_delete() {
    let fake = FakeGithub::start().await;
    let n = fake.open_issue(IssueSpec::new("t").label("agent"));
    let octo = bot(&fake);
    let labels = repo_path(&fake, &format!("/issues/{n}/labels"));
    let added = call(&octo, "POST", &labels, Some(json!({ "labels": ["agent-working"] })), &[]).await;
    assert_eq!(added.status, 200);
    let names: Vec<&str> = added.body.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["agent", "agent-working"], "the answer lists all the issue's labels");
    assert!(added.body[1]["id"].is_u64() && added.body[1]["color"].is_string());

    let removed = call(&octo, "DELETE", &format!("{labels}/agent-working"), None, &[]).await;
    assert_eq!(removed.status, 200);
    assert_eq!(removed.body.as_array().unwrap().len(), 1);
    let absent = call(&octo, "DELETE", &format!("{labels}/agent-working"), None, &[]).await;
    assert_eq!((absent.status, absent.message()), (404, "Label does not exist"));

    let spaced = call(&octo, "POST", &labels, Some(json!(["needs review"])), &[]).await;
    assert_eq!(spaced.status, 200, "a bare array is accepted too");
    assert_eq!(call(&octo, "DELETE", &format!("{labels}/needs%20review"), None, &[]).await.status, 200);
    let invalid = call(&octo, "POST", &labels, Some(json!({ "names": ["x"] })), &[]).await;
    assert_eq!((invalid.status, invalid.message()), (422, "Validation Failed"));
    assert_eq!(invalid.body["errors"][0]["code"], "missing_field");
}

#[tokio::test]
async fn comments_are_created_updated_and_validated() {
    let fake = FakeGithub::start().await;
    let n = fake.open_issue(IssueSpec::new("t").by("drive-by", Association::Contributor));
    let octo = bot(&fake);
    let comments = repo_path(&fake, &format!("/issues/{n}/comments"));
    let created = call(&octo, "POST", &comments, Some(json!({ "body": "working on it" })), &[]).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("location"), created.body["url"].as_str());
    assert_eq!(created.body["user"]["login"], "bg-run-bot");
    assert_eq!(created.body["author_association"], "COLLABORATOR");
    let id = created.body["id"].as_u64().unwrap();

    let edited = call(
        &octo,
        "PATCH",
        &repo_path(&fake, &format!("/issues/comments/{id}")),
        Some(json!({ "body": "done" })),
        &[],
    )
    .await;
    assert_eq!((edited.status, edited.body["body"].as_str()), (200, Some("done")));
    let listed = call(&octo, "GET", &comments, None, &[]).await;
    assert_eq!(listed.body[0]["body"], "done");

    let missing = call(&octo, "POST", &comments, Some(json!({})), &[]).await;
    assert_eq!((missing.status, missing.message()), (422, "Validation Failed"));
    assert_eq!(missing.body["errors"][0]["field"], "body");
    let too_long = call(&octo, "POST", &comments, Some(json!({ "body": "é".repeat(65_537) })), &[]).await;
    assert_eq!(too_long.status, 422);
    assert!(too_long.body["errors"][0]["message"].as_str().unwrap().contains("65536"));
    let at_limit = call(&octo, "POST", &comments, Some(json!({ "body": "é".repeat(65_536) })), &[]).await;
    assert_eq!(at_limit.status, 201, "the limit counts characters, not bytes");

    let issue = call(&octo, "GET", &repo_path(&fake, &format!("/issues/{n}")), None, &[]).await;
    assert_eq!(issue.body["author_association"], "CONTRIBUTOR");
    assert_eq!(issue.body["comments"], 2);
    assert_eq!(fake.issue(n).unwrap().comments.len(), 2);
}

#[tokio::test]
async fn unknown_things_are_404_and_issues_can_be_created_and_closed() {
    let fake = FakeGithub::start().await;
    let octo = bot(&fake);
    let missing = call(&octo, "GET", "/repos/octo-org/nope/issues", None, &[]).await;
    assert_eq!((missing.status, missing.message()), (404, "Not Found"));
    assert!(missing.header("x-ratelimit-remaining").is_some(), "every answer carries the rate-limit headers");
    assert_eq!(call(&octo, "GET", &repo_path(&fake, "/issues/999"), None, &[]).await.status, 404);

    let no_title = call(&octo, "POST", &repo_path(&fake, "/issues"), Some(json!({ "body": "x" })), &[]).await;
    assert_eq!(no_title.status, 422);
    let created =
        call(&octo, "POST", &repo_path(&fake, "/issues"), Some(json!({ "title": "new", "labels": ["agent"] })), &[])
            .await;
    assert_eq!(created.status, 201);
    let n = created.body["number"].as_u64().unwrap();
    let closed =
        call(&octo, "PATCH", &repo_path(&fake, &format!("/issues/{n}")), Some(json!({ "state": "closed" })), &[]).await;
    assert_eq!(
        (closed.body["state"].as_str(), closed.body["state_reason"].as_str()),
        (Some("closed"), Some("completed"))
    );
    let bad =
        call(&octo, "PATCH", &repo_path(&fake, &format!("/issues/{n}")), Some(json!({ "state": "gone" })), &[]).await;
    assert_eq!(bad.status, 422);
    assert!(!fake.issue(n).unwrap().open);
}

#[tokio::test]
async fn faults_follow_githubs_rate_limit_and_error_shapes() {
    let fake = FakeGithub::start().await;
    let octo = bot(&fake);
    let path = repo_path(&fake, "/issues");

    fake.inject(FakeFault::ServerError { status: 502, count: 2 });
    assert_eq!(call(&octo, "GET", &path, None, &[]).await.status, 502);
    assert_eq!(call(&octo, "GET", &path, None, &[]).await.status, 502);
    assert_eq!(call(&octo, "GET", &path, None, &[]).await.status, 200);

    fake.inject_after(1, FakeFault::SecondaryRateLimit { retry_after_secs: 1, status: 403 });
    assert_eq!(call(&octo, "GET", &path, None, &[]).await.status, 200, "the fault starts after one request");
    let limited = call(&octo, "GET", &path, None, &[]).await;
    assert_eq!((limited.status, limited.header("retry-after")), (403, Some("1")));
    assert!(limited.message().starts_with("You have exceeded a secondary rate limit"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&octo, "GET", &path, None, &[]).await.status, 200, "the limit lifts after retry-after");

    fake.inject(FakeFault::PrimaryRateLimitExhausted { reset_after_secs: 1, status: 429 });
    let exhausted = call(&octo, "GET", &path, None, &[]).await;
    assert_eq!(exhausted.status, 429);
    assert_eq!(exhausted.header("x-ratelimit-remaining"), Some("0"));
    assert!(exhausted.message().starts_with("API rate limit exceeded"));
    let reset: i64 = exhausted.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset >= chrono::Utc::now().timestamp());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refilled = call(&octo, "GET", &path, None, &[]).await;
    assert_eq!(refilled.status, 200);
    assert_eq!(refilled.header("x-ratelimit-remaining"), Some("4999"));

    fake.inject(FakeFault::Delay { millis: 300, count: 1 });
    let started = Instant::now();
    assert_eq!(call(&octo, "GET", &path, None, &[]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn the_request_log_records_what_clients_sent() {
    let fake = FakeGithub::start().await;
    let n = fake.open_issue(IssueSpec::new("t"));
    let octo = bot(&fake);
    call(&octo, "GET", &repo_path(&fake, "/issues?per_page=5"), None, &[("if-none-match", "W/\"x\"")]).await;
    call(&octo, "POST", &repo_path(&fake, &format!("/issues/{n}/comments")), Some(json!({ "body": "hi" })), &[]).await;
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].method.as_str(), log[0].path.as_str()), ("GET", "/repos/octo-org/widgets/issues?per_page=5"));
    assert_eq!(log[0].header("If-None-Match"), Some("W/\"x\""));
    assert!(log[0].header("authorization").unwrap().ends_with(&fake.token()));
    assert!(!log[0].is_mutation() && log[1].is_mutation());
    assert_eq!(
        (log[1].status, log[1].path_only()),
        (201, format!("/repos/octo-org/widgets/issues/{n}/comments").as_str())
    );
    assert!(log[1].at >= log[0].at);
}
