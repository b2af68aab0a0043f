//! A fake GitHub REST API server that follows the official documentation: the issue, comment and
//! label endpoints a tracker adapter uses, bearer/token authentication, page-number pagination
//! with `Link` headers, `ETag`/`If-None-Match` with free 304s, the `x-ratelimit-*` headers, the
//! documented error bodies (401, 403/429 rate limits, 404, 422), plus fault injection and a
//! request log so tests can assert what a client actually sent.
//!
//! ```ignore
//! let gh = FakeGithub::start().await;
//! let n = gh.open_issue(IssueSpec::new("Fix the build").label("agent"));
//! // point the client at gh.api_url() with gh.token(), then:
//! assert!(gh.issue(n).unwrap().labels.contains(&"agent-done".to_owned()));
//! ```

mod gate;
mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use state::{Association, CommentView, IssueView};

use state::State;

/// One request as the server saw it, for assertions about what a client did.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// When the request arrived (before any injected delay).
    pub at: Instant,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl RequestRecord {
    /// POST, PATCH, PUT and DELETE: the requests GitHub asks clients to space out.
    pub fn is_mutation(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// Misbehaviour the server can be told to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeFault {
    /// The next `count` requests answer `status` (500, 502, 503 ...) without doing anything.
    ServerError { status: u16, count: u32 },
    /// A secondary rate limit: for `retry_after_secs` every request answers `status` (403 or 429)
    /// with a `retry-after` header counting down and GitHub's secondary-limit message.
    SecondaryRateLimit { retry_after_secs: u64, status: u16 },
    /// The primary rate limit runs out: `x-ratelimit-remaining: 0` and every request answers
    /// `status` (403 or 429) until `x-ratelimit-reset`, `reset_after_secs` from now.
    PrimaryRateLimitExhausted { reset_after_secs: u64, status: u16 },
    /// The next `count` requests are answered `millis` late.
    Delay { millis: u64, count: u32 },
}

/// A new issue (or pull request) for test setup, as a person would open it.
#[derive(Clone, Debug)]
pub struct IssueSpec {
    pub title: String,
    pub body: Option<String>,
    pub labels: Vec<String>,
    /// Author login; `None` means the repository owner.
    pub author: Option<String>,
    /// The author's association with the repository, as GitHub would compute it.
    pub association: Association,
    pub assignees: Vec<String>,
    /// Opens a pull request instead: it shows up in the issues list with a `pull_request` key.
    pub pull_request: bool,
}

impl IssueSpec {
    pub fn new(title: impl Into<String>) -> Self {
        IssueSpec {
            title: title.into(),
            body: None,
            labels: Vec::new(),
            author: None,
            association: Association::Owner,
            assignees: Vec::new(),
            pull_request: false,
        }
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.labels.push(label.into());
        self
    }

    /// Opened by `login`, whose association with the repository is `association`.
    pub fn by(mut self, login: impl Into<String>, association: Association) -> Self {
        self.author = Some(login.into());
        self.association = association;
        self
    }

    pub fn assignee(mut self, login: impl Into<String>) -> Self {
        self.assignees.push(login.into());
        self
    }

    pub fn pull_request(mut self) -> Self {
        self.pull_request = true;
        self
    }
}

/// A running fake GitHub API for one repository. The server stops when this is dropped.
pub struct FakeGithub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    bot_token: String,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeGithub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGithub").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Login of the account the default token belongs to.
pub const BOT_LOGIN: &str = "bg-run-bot";
/// Owner (an organization) and name of the one repository the fake serves.
pub const OWNER: &str = "octo-org";
pub const REPO: &str = "widgets";

impl FakeGithub {
    /// Starts a server on 127.0.0.1 with an ephemeral port, serving `octo-org/widgets`, with a
    /// bot account (`bg-run-bot`, a collaborator) whose token is [`FakeGithub::token`].
    pub async fn start() -> FakeGithub {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let mut state = State::new(format!("http://{addr}"), OWNER, REPO);
        let bot_token = state.add_user(BOT_LOGIN, Association::Collaborator);
        let state = Arc::new(Mutex::new(state));
        let app = routes::router(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub { addr, state, bot_token, server }
    }

    /// The API base URL (what `GITHUB_API_URL` would be), without a trailing slash.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bot account's token.
    pub fn token(&self) -> String {
        self.bot_token.clone()
    }

    pub fn bot_login(&self) -> &'static str {
        BOT_LOGIN
    }

    pub fn owner(&self) -> &'static str {
        OWNER
    }

    pub fn repo(&self) -> &'static str {
        REPO
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an account and returns a token for it.
    pub fn add_user(&self, login: &str, association: Association) -> String {
        self.lock().add_user(login, association)
    }

    /// Opens an issue (or pull request) directly, as a person would. Returns its number.
    pub fn open_issue(&self, spec: IssueSpec) -> u64 {
        self.lock().open_issue(spec)
    }

    /// What the issue looks like now, with its comments oldest first.
    pub fn issue(&self, number: u64) -> Option<IssueView> {
        self.lock().view(number)
    }

    /// Every issue and pull request, by number.
    pub fn issues(&self) -> Vec<IssueView> {
        let state = self.lock();
        state.numbers().into_iter().filter_map(|n| state.view(n)).collect()
    }

    /// Posts a comment as `login` (created with `association` if new). Returns the comment id.
    pub fn comment(&self, number: u64, login: &str, association: Association, body: &str) -> u64 {
        self.lock().add_comment_as(number, login, association, body).expect("issue exists")
    }

    /// Adds a label as a person would (no request is logged).
    pub fn add_label(&self, number: u64, label: &str) {
        self.lock().add_labels(number, &[label.to_owned()]).expect("issue exists");
    }

    /// Removes a label as a person would; true if it was there.
    pub fn remove_label(&self, number: u64, label: &str) -> bool {
        self.lock().remove_label(number, label).unwrap_or(false)
    }

    /// Closes or reopens an issue as a person would.
    pub fn set_open(&self, number: u64, open: bool) {
        self.lock().set_open(number, open).expect("issue exists");
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Starts `fault` with the next request.
    pub fn inject(&self, fault: FakeFault) {
        self.inject_after(0, fault);
    }

    /// Starts `fault` once `requests` more requests have arrived.
    pub fn inject_after(&self, requests: u32, fault: FakeFault) {
        self.lock().faults.schedule(requests, fault);
    }

    /// Primary rate limit as the headers report it: `(limit, remaining, used)`.
    pub fn rate_limit(&self) -> (u32, u32, u32) {
        let state = self.lock();
        (state.rate.limit, state.rate.remaining, state.rate.used())
    }

    /// Sets the primary rate limit per hour and refills it.
    pub fn set_rate_limit(&self, limit: u32) {
        let mut state = self.lock();
        state.rate.limit = limit;
        state.rate.remaining = limit;
    }

    /// How long until an active secondary rate limit ends, if one is active.
    pub fn secondary_limit_left(&self) -> Option<Duration> {
        self.lock().faults.secondary_left(Instant::now())
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}
