//! `GithubQueue`: the lifecycle on an issue — claim, refresh, report, give back — written as
//! labels people can see and comments whose hidden markers a restarted worker reads back.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bg_run_core::redact::register_secret;
use bg_run_core::text::{done_comment, failure_comment, working_comment};
use bg_run_core::{
    async_trait, Capabilities, Claim, ClaimOutcome, Claimant, Error, Failure, NewTask, Report, Result, RetryDecision,
    Task, TaskId, TaskQueue,
};
use chrono::Utc;
use http::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Http, ADAPTER};
use crate::history::{verdict, Verdict};
use crate::markers::{MarkState, Marker};
use crate::model::{CommentInfo, IssueInfo};
use crate::options::GithubOptions;
use crate::poll::{encode, PageCache};
use crate::repo::RepoRef;

/// GitHub's limit on an issue comment, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// GitHub Issues of one repository as a bg-run task queue. See the crate docs for the rules.
pub struct GithubQueue {
    core: Core,
}

pub(crate) struct Core {
    pub options: GithubOptions,
    pub http: Http,
    /// The token's own account: only its comments' markers are believed.
    pub login: String,
    pub issue_pages: PageCache<IssueInfo>,
    pub comment_pages: PageCache<CommentInfo>,
    pub untrusted_seen: Mutex<HashSet<u64>>,
    /// When each of this process's live claims (by token) last refreshed its marker.
    refreshed: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for GithubQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubQueue")
            .field("repo", &self.core.options.repo.to_string())
            .field("login", &self.core.login)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct UserLogin {
    login: String,
}

/// Whose the claim is now, according to the issue's comments.
enum Standing {
    /// Our working marker is still the latest.
    Ours,
    /// Our report was already posted (a retried `complete`/`fail`/`release`).
    Reported,
}

impl GithubQueue {
    /// Checks the options, the token and the repository, and learns the token's login
    /// (`GET /user`, unless `options.bot_login` is set). Must run inside a Tokio runtime.
    pub async fn connect(options: GithubOptions) -> Result<GithubQueue> {
        options.validate()?;
        register_secret(&options.token);
        let http = Http::new(&options)?;
        let repo = &options.repo;
        let repo_path = format!("/repos/{}/{}", repo.owner, repo.name);
        match http.get(&repo_path).await?.ok(&format!("repository {repo}")) {
            Ok(_) => {}
            Err(Error::NotFound { .. }) => {
                return Err(Error::config(format!(
                    "github: repository {repo} not found at {}, or the token cannot see it",
                    options.api_url
                )))
            }
            Err(e) => return Err(e),
        }
        let login = match &options.bot_login {
            Some(login) => login.clone(),
            None => match http.get("/user").await?.ok("the token's account") {
                Ok(reply) => reply.json::<UserLogin>("the token's account")?.login,
                Err(Error::Unauthorized { .. } | Error::NotFound { .. }) => {
                    return Err(Error::config(
                        "github: this token cannot read its own account (GET /user); set bot_login to the account \
                         it acts as (GitHub Actions' GITHUB_TOKEN acts as github-actions[bot])",
                    ))
                }
                Err(e) => return Err(e),
            },
        };
        tracing::debug!(adapter = ADAPTER, repo = %repo, login = %login, "connected");
        Ok(GithubQueue {
            core: Core {
                options,
                http,
                login,
                issue_pages: PageCache::default(),
                comment_pages: PageCache::default(),
                untrusted_seen: Mutex::new(HashSet::new()),
                refreshed: Mutex::new(HashMap::new()),
            },
        })
    }

    pub fn options(&self) -> &GithubOptions {
        &self.core.options
    }

    pub fn repo(&self) -> &RepoRef {
        &self.core.options.repo
    }

    /// The account the token acts as; its comments carry the lifecycle markers.
    pub fn login(&self) -> &str {
        &self.core.login
    }
}

impl Core {
    pub(crate) fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.options.repo.owner, self.options.repo.name)
    }

    fn refreshed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.refreshed.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn add_label(&self, number: u64, label: &str) -> Result<()> {
        let url = format!("{}/issues/{number}/labels", self.repo_path());
        let body = json!({ "labels": [label] });
        self.http.send(Method::POST, &url, Some(&body), true).await?.ok(&format!("issue #{number}"))?;
        Ok(())
    }

    /// Removes a label; one that is already gone is fine.
    async fn remove_label(&self, number: u64, label: &str) -> Result<()> {
        let url = format!("{}/issues/{number}/labels/{}", self.repo_path(), encode(label));
        match self.http.send(Method::DELETE, &url, None, true).await?.ok(&format!("label {label} on #{number}")) {
            Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn edit_comment(&self, id: u64, body: &str) -> Result<()> {
        let url = format!("{}/issues/comments/{id}", self.repo_path());
        let reply = self.http.send(Method::PATCH, &url, Some(&json!({ "body": body })), true).await?;
        reply.ok(&format!("comment {id}"))?.json::<CommentInfo>("comment").map(|_| ())
    }

    fn marker(&self, state: MarkState, attempt: u32, claimant: &Claimant) -> Marker {
        let mut marker = Marker::new(state, attempt, Utc::now());
        marker.worker = Some(claimant.worker_id.clone());
        marker
    }

    /// Checks the claim still stands before reporting on it, so a worker whose claim went stale
    /// and was taken over does not report over the new owner.
    async fn standing(&self, claim: &Claim) -> Result<Standing> {
        let number = number_of(&claim.task)?;
        let (_, history) = self.history(number).await?;
        match history.latest() {
            Some(e) if e.comment_id.to_string() == claim.token && e.marker.state == MarkState::Working => {
                Ok(Standing::Ours)
            }
            Some(e) if e.marker.claim.as_deref() == Some(claim.token.as_str()) => Ok(Standing::Reported),
            _ => Err(Error::conflict(format!(
                "issue #{number}: the claim was taken over by another worker or reset by a person"
            ))),
        }
    }

    async fn report(&self, claim: &Claim, text: &str, marker: Marker) -> Result<()> {
        let number = number_of(&claim.task)?;
        if let Standing::Ours = self.standing(claim).await? {
            let mut marker = marker;
            marker.claim = Some(claim.token.clone());
            let rendered = marker.render();
            let room = COMMENT_LIMIT.saturating_sub(rendered.len() + 2);
            let text = bg_run_core::text::truncate(text, room);
            self.post_comment(number, &marker.attach(&text)).await?;
        }
        Ok(())
    }

    /// Drops what this process kept about a claim once it is reported. A finished issue's
    /// comments are never read again, so their cached pages go too.
    fn forget(&self, claim: &Claim, finished: bool) {
        self.refreshed().remove(&claim.token);
        if finished {
            if let Ok(number) = number_of(&claim.task) {
                self.comment_pages.forget(&format!("{}/issues/{number}/comments", self.repo_path()));
            }
        }
    }
}

fn number_of(task: &Task) -> Result<u64> {
    task.id.as_str().parse().map_err(|_| Error::not_found(format!("issue '{}' (not an issue number)", task.id)))
}

#[async_trait]
impl TaskQueue for GithubQueue {
    fn name(&self) -> &str {
        ADAPTER
    }

    /// Claims are not atomic on GitHub; they do expire (`stale_after`) unless heartbeats refresh them.
    fn capabilities(&self) -> Capabilities {
        Capabilities::none().with_leases().with_enqueue()
    }

    async fn poll(&self, max: usize) -> Result<Vec<Task>> {
        self.core.poll_tasks(max).await
    }

    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        let core = &self.core;
        let number = number_of(task)?;
        let issue = match core.get_issue(number).await {
            Ok(issue) => issue,
            Err(Error::NotFound { .. }) => return Ok(ClaimOutcome::Taken),
            Err(e) => return Err(e),
        };
        if core.unsuitable(&issue).is_some() {
            return Ok(ClaimOutcome::Taken);
        }
        let (comments, history) = core.history(number).await?;
        let now = Utc::now();
        let working = &core.options.labels.working;
        let Verdict::Eligible { attempts } = verdict(&issue, &history, working, core.options.stale_after, now) else {
            return Ok(ClaimOutcome::Taken);
        };
        let before = history.entries.last().map(|e| e.comment_id).unwrap_or(0);
        let attempt = attempts + 1;

        let mut claim = Claim {
            task: core.task(&issue, attempts, &history, &comments),
            attempt,
            claimant: claimant.clone(),
            token: String::new(),
            lease_until: chrono::Duration::from_std(core.options.stale_after).ok().map(|d| now + d),
        };
        // The comment goes first: until it exists nothing has changed, so a failed claim can simply
        // be tried again; a claim comment without the label still holds the issue.
        let stamped = Instant::now();
        let marker = core.marker(MarkState::Working, attempt, claimant);
        let id = core.post_comment(number, &marker.attach(&working_comment(&claim))).await?;
        claim.token = id.to_string();
        if !issue.has_label(working) {
            core.add_label(number, working).await?;
        }

        // No atomic claims on GitHub: read back, and if another claim landed first, withdraw.
        let (_, after) = core.history(number).await?;
        if let Some(first) = after.first_claim_after(before).filter(|first| first.comment_id != id) {
            let winner = first.marker.worker.clone().unwrap_or_else(|| "another worker".into());
            let text =
                format!("↪️ `{winner}` claimed this issue first; this claim by `{}` is withdrawn.", claimant.worker_id);
            core.edit_comment(id, &core.marker(MarkState::Superseded, attempt, claimant).attach(&text)).await?;
            return Ok(ClaimOutcome::Taken);
        }
        core.refreshed().insert(claim.token.clone(), stamped);
        tracing::info!(adapter = ADAPTER, issue = number, attempt, worker = %claimant.worker_id, "claimed");
        Ok(ClaimOutcome::Claimed(Box::new(claim)))
    }

    /// Refreshes the claim's marker about every third of `stale_after` (not on every call, to
    /// spare the rate limit), and reports the claim lost when a person closed the issue or
    /// removed `agent-working`, or another worker took it over.
    async fn heartbeat(&self, claim: &Claim) -> Result<()> {
        let core = &self.core;
        let due = core.options.stale_after / 3;
        let last = core.refreshed().get(&claim.token).copied();
        if last.is_some_and(|at| at.elapsed() < due) {
            return Ok(());
        }
        let number = number_of(&claim.task)?;
        let issue = core.get_issue(number).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::conflict(format!("issue #{number} is gone")),
            e => e,
        })?;
        if !issue.open {
            return Err(Error::conflict(format!("issue #{number} was closed")));
        }
        if !issue.has_label(&core.options.labels.working) {
            return Err(Error::conflict(format!("'{}' was removed from issue #{number}", core.options.labels.working)));
        }
        if !matches!(core.standing(claim).await?, Standing::Ours) {
            return Err(Error::conflict(format!("issue #{number} was already reported")));
        }
        let stamped = Instant::now();
        let marker = core.marker(MarkState::Working, claim.attempt, &claim.claimant);
        let id: u64 = claim.token.parse().map_err(|_| Error::conflict("claim token is not a comment id"))?;
        match core.edit_comment(id, &marker.attach(&working_comment(claim))).await {
            Ok(()) => {}
            Err(Error::NotFound { .. }) => {
                return Err(Error::conflict(format!("the claim comment on #{number} was deleted")))
            }
            Err(e) => return Err(e),
        }
        core.refreshed().insert(claim.token.clone(), stamped);
        Ok(())
    }

    async fn complete(&self, claim: &Claim, report: &Report) -> Result<()> {
        let core = &self.core;
        let number = number_of(&claim.task)?;
        let marker = core.marker(MarkState::Done, claim.attempt, &claim.claimant);
        let text = done_comment(claim, report, COMMENT_LIMIT.saturating_sub(marker.render().len() + 64));
        core.report(claim, &text, marker).await?;
        core.add_label(number, &core.options.labels.done).await?;
        core.remove_label(number, &core.options.labels.working).await?;
        core.forget(claim, true);
        tracing::info!(adapter = ADAPTER, issue = number, attempt = claim.attempt, "done");
        Ok(())
    }

    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()> {
        let core = &self.core;
        let number = number_of(&claim.task)?;
        let mut marker = match &failure.decision {
            RetryDecision::RetryAt(at) => {
                let mut m = core.marker(MarkState::Retry, claim.attempt, &claim.claimant);
                m.retry_at = Some(*at);
                m
            }
            RetryDecision::GiveUp => core.marker(MarkState::Failed, claim.attempt, &claim.claimant),
        };
        marker.session = failure.usage.session_id.clone();
        let text = failure_comment(claim, failure, COMMENT_LIMIT.saturating_sub(marker.render().len() + 64));
        core.report(claim, &text, marker).await?;
        if failure.gives_up() {
            core.add_label(number, &core.options.labels.failed).await?;
        }
        core.remove_label(number, &core.options.labels.working).await?;
        core.forget(claim, failure.gives_up());
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let core = &self.core;
        let number = number_of(&claim.task)?;
        // The attempt is not counted: the marker records the count from before this claim.
        let marker = core.marker(MarkState::Released, claim.attempt.saturating_sub(1), &claim.claimant);
        let text = format!(
            "⏸️ **{}** stopped before finishing attempt {}/{} (worker `{}` shutting down). The issue is back in the \
             queue; this attempt does not count.",
            claim.claimant.agent, claim.attempt, claim.claimant.max_attempts, claim.claimant.worker_id
        );
        core.report(claim, &text, marker).await?;
        core.remove_label(number, &core.options.labels.working).await?;
        core.forget(claim, false);
        Ok(())
    }

    /// Opens an issue with the trigger label (see `open_issue`). GitHub has no priorities, start
    /// times, per-task attempt limits, idempotency keys or named queues: a task that asks for one
    /// is refused, naming it, rather than filed without it.
    async fn enqueue(&self, task: NewTask) -> Result<TaskId> {
        task.validate()?;
        let unsupported = [
            ("a priority", task.priority != 0),
            ("a start time (--delay)", task.run_at.is_some()),
            ("its own attempt limit", task.max_attempts.is_some()),
            ("a unique key", task.unique_key.is_some()),
            ("a named queue", task.queue.is_some()),
        ];
        if let Some((what, _)) = unsupported.iter().find(|(_, asked)| *asked) {
            return Err(Error::unsupported(format!("a task with {what} (GitHub issues have none)"), ADAPTER));
        }
        if task.body.chars().count() > COMMENT_LIMIT {
            return Err(Error::config(format!(
                "the task's body is {} characters long; GitHub takes at most {COMMENT_LIMIT}",
                task.body.chars().count()
            )));
        }
        Ok(TaskId(self.core.open_issue(&task).await?.to_string()))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}
