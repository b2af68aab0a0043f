//! GitHub Issues as a bg-run task queue.
//!
//! Open issues of one repository that carry the trigger label (default `agent`) are tasks. The
//! queue shows the lifecycle on the issue itself: `agent-working` and a "working on it" comment
//! when claimed, a done comment and `agent-done` when finished (the issue stays open for review),
//! a failure comment per failed attempt and `agent-failed` after the last one. Label names are
//! configurable ([`LabelNames`]).
//!
//! ```no_run
//! # async fn run() -> bg_run_core::Result<()> {
//! use bg_run_github::{resolve_api_url, resolve_repo, resolve_token, GithubOptions, GithubQueue};
//! let repo = resolve_repo(None, None, std::path::Path::new("."))?;
//! let mut options = GithubOptions::new(repo, resolve_token()?);
//! options.api_url = resolve_api_url(None, None)?;
//! let queue = GithubQueue::connect(options).await?;
//! # let _ = queue; Ok(()) }
//! ```
//!
//! # Safe on public repositories
//! Only issues whose author is trusted are tasks: by default `author_association` OWNER, MEMBER
//! or COLLABORATOR, plus [`TrustPolicy::allow_logins`], minus [`TrustPolicy::block_logins`].
//! Anything else is skipped with a log line (and, if asked, one comment saying why). With
//! [`GithubOptions::include_comments`] the task body carries the issue's comments, again from
//! trusted authors only. Lifecycle markers are read only from the token's own comments.
//!
//! # State kept in GitHub
//! Each comment the bot posts ends with a hidden marker,
//! `<!-- bg-run:v1 state=retry attempt=2 at=… worker=… retry_at=… -->`. A new process reads the
//! bot's markers back from the issue's comments, so attempt counts, retry backoff and live
//! claims survive restarts. A claim's marker is refreshed by heartbeats about every third of
//! [`GithubOptions::stale_after`]; a claim not refreshed for `stale_after` belongs to a dead
//! worker, is taken back, and its attempt counts. A person can cancel a running claim by removing
//! `agent-working` or closing the issue, and ask for a fresh run by removing `agent-done` or
//! `agent-failed`.
//!
//! # One worker per repository and trigger label
//! GitHub has no atomic compare-and-set on issues, so claims are not atomic. After claiming, the
//! queue reads the comments back and withdraws if another claim landed first, which catches
//! most races, but the design assumes **one worker process per repository and trigger label**.
//! To run more (different agents, or more throughput), give each worker its own trigger label
//! (`agent-docs`, `agent-tests`, ...), so no two workers ever see the same issue. All workers on
//! one repository should use the same bot account, whose markers they all trust.
//!
//! # Rate limits
//! Listing uses conditional requests: each page's `ETag` is kept, and an unchanged page is
//! answered `304 Not Modified`, which costs no primary rate limit, so an idle worker polls for
//! free. Mutating requests are spaced [`GithubOptions::min_write_interval`] apart (1 s by
//! default, as GitHub asks). On 403/429 rate-limit responses every request pauses for
//! `retry-after`, else until `x-ratelimit-reset` when the budget is spent, else for an
//! exponentially growing wait from one minute; waits up to
//! [`GithubOptions::max_rate_limit_wait`] happen inside the call, longer ones are reported as
//! `Error::RateLimited` with the wait for the worker to honour.

mod client;
mod history;
mod markers;
mod model;
mod options;
mod poll;
mod queue;
mod ratelimit;
mod repo;
mod trust;

pub use options::{GithubOptions, LabelNames};
pub use queue::{GithubQueue, COMMENT_LIMIT};
pub use repo::{repo_from_git_remote, resolve_api_url, resolve_repo, resolve_token, RepoRef, DEFAULT_API_URL};
pub use trust::{TrustPolicy, ASSOCIATIONS};
