//! Everything a GitHub queue can be told, with the defaults the lifecycle rules describe.

use std::time::Duration;

use bg_run_core::{Error, Result};

use crate::repo::{normalize_api_url, RepoRef, DEFAULT_API_URL};
use crate::trust::TrustPolicy;

/// Names of the labels that show a task's state on the issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelNames {
    /// Claimed: an agent is on it. Default `agent-working`.
    pub working: String,
    /// Finished, waiting for human review. Default `agent-done`.
    pub done: String,
    /// Given up after the last attempt. Default `agent-failed`.
    pub failed: String,
}

impl Default for LabelNames {
    fn default() -> Self {
        LabelNames { working: "agent-working".into(), done: "agent-done".into(), failed: "agent-failed".into() }
    }
}

/// How a [`GithubQueue`](crate::GithubQueue) talks to GitHub and which issues it takes.
#[derive(Clone)]
pub struct GithubOptions {
    /// API base URL without a trailing slash: `https://api.github.com`, or
    /// `https://HOST/api/v3` for GitHub Enterprise Server, or a proxy or fake.
    pub api_url: String,
    /// Personal access token, fine-grained token or `GITHUB_TOKEN`. Never logged.
    pub token: String,
    pub repo: RepoRef,
    /// Only open issues with this label are tasks. Default `agent`.
    pub trigger_label: String,
    /// Further labels an issue must also carry.
    pub extra_labels: Vec<String>,
    /// Only issues assigned to this login.
    pub assignee: Option<String>,
    pub labels: LabelNames,
    pub trust: TrustPolicy,
    /// Append the comments by trusted authors to the task body. Default true.
    pub include_comments: bool,
    /// A claim whose "working" marker was not refreshed for this long belongs to a dead worker and
    /// is taken back (counting its attempt). Running claims refresh it about every third of this.
    /// Default 30 minutes.
    pub stale_after: Duration,
    /// Least time between the end of one mutating request (POST, PATCH, PUT, DELETE) and the
    /// start of the next, as GitHub's best practices ask. Default 1 s.
    pub min_write_interval: Duration,
    /// Longest a single call waits out rate limits itself before it reports
    /// `Error::RateLimited` to the worker instead. Default 90 s.
    pub max_rate_limit_wait: Duration,
    /// Login of the token's account. `None` asks `GET /user` once; set it where that endpoint is
    /// not available to the token (GitHub Actions' `GITHUB_TOKEN` is `github-actions[bot]`).
    pub bot_login: Option<String>,
    /// Issues per page when listing (GitHub allows at most 100). Default 100.
    pub per_page: u32,
    /// Timeout for connecting and for each read. Default 30 s.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for GithubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubOptions")
            .field("api_url", &self.api_url)
            .field("token", &"[REDACTED]")
            .field("repo", &self.repo.to_string())
            .field("trigger_label", &self.trigger_label)
            .field("extra_labels", &self.extra_labels)
            .field("assignee", &self.assignee)
            .field("labels", &self.labels)
            .field("trust", &self.trust)
            .field("include_comments", &self.include_comments)
            .field("stale_after", &self.stale_after)
            .field("min_write_interval", &self.min_write_interval)
            .field("max_rate_limit_wait", &self.max_rate_limit_wait)
            .field("bot_login", &self.bot_login)
            .field("per_page", &self.per_page)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl GithubOptions {
    /// Defaults for everything but the repository and the token.
    pub fn new(repo: RepoRef, token: impl Into<String>) -> Self {
        GithubOptions {
            api_url: DEFAULT_API_URL.to_owned(),
            token: token.into(),
            repo,
            trigger_label: "agent".into(),
            extra_labels: Vec::new(),
            assignee: None,
            labels: LabelNames::default(),
            trust: TrustPolicy::default(),
            include_comments: true,
            stale_after: Duration::from_secs(30 * 60),
            min_write_interval: Duration::from_secs(1),
            max_rate_limit_wait: Duration::from_secs(90),
            bot_login: None,
            per_page: 100,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let fail = |what: String| Err(Error::config(format!("github: {what}")));
        if let Err(why) = normalize_api_url(&self.api_url) {
            return fail(format!("invalid api_url '{}': {why}", self.api_url));
        }
        if self.token.trim().is_empty() {
            return fail("empty token: set GITHUB_TOKEN or GH_TOKEN".into());
        }
        let labels = [
            ("trigger_label", &self.trigger_label),
            ("labels.working", &self.labels.working),
            ("labels.done", &self.labels.done),
            ("labels.failed", &self.labels.failed),
        ];
        for (what, label) in labels.iter().copied().chain(self.extra_labels.iter().map(|l| ("extra_labels", l))) {
            if label.trim().is_empty() {
                return fail(format!("{what} must not be empty"));
            }
            if label.contains(',') {
                return fail(format!("{what} '{label}' must not contain ',' (GitHub's label filter separator)"));
            }
            if label.chars().count() > 50 {
                return fail(format!("{what} '{label}' is longer than GitHub's 50-character label limit"));
            }
        }
        for (i, (a, x)) in labels.iter().enumerate() {
            if let Some((b, _)) = labels[i + 1..].iter().find(|(_, y)| y.eq_ignore_ascii_case(x)) {
                return fail(format!("{a} and {b} are both '{x}': each state needs its own label"));
            }
        }
        if !(1..=100).contains(&self.per_page) {
            return fail(format!("per_page must be between 1 and 100, not {}", self.per_page));
        }
        if self.stale_after < Duration::from_millis(100) {
            return fail("stale_after must be at least 100ms".into());
        }
        if self.request_timeout.is_zero() {
            return fail("request_timeout must be longer than 0s".into());
        }
        self.trust.validate()
    }
}
