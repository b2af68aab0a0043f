//! The worker engine: poll → claim → dispatch → report, with bounded concurrency, retries,
//! heartbeats and graceful shutdown.
//!
//! The worker owns the lifecycle; queues only store state and dispatchers only run agents. That
//! keeps retry policy, attempt limits and shutdown behaviour identical across every tracker.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::dispatcher::{DispatchContext, Dispatcher, ProgressSink};
use crate::event::{EventBus, EventKind};
use crate::outcome::{FailureKind, Outcome};
use crate::queue::{Claim, Claimant, Failure, Report, RetryDecision, TaskQueue};
use crate::redact::redact;
use crate::{Error, Result};

/// Whether the worker stops once the queue is drained or keeps watching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Process what is eligible now, then return.
    Once,
    /// Keep polling (or waiting for a wake-up) until shut down.
    Watch,
}

/// How one worker behaves. `WorkerConfig::new(agent)` gives sensible defaults.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Name of the agent ("employee") this worker runs, shown in trackers and logs.
    pub agent: String,
    /// Unique id of this worker, stored with claims.
    pub worker_id: String,
    pub mode: RunMode,
    /// Agents running at once.
    pub concurrency: usize,
    /// Longest an agent may run on one attempt.
    pub timeout: Duration,
    /// Attempts before giving up, unless the task sets its own limit.
    pub max_attempts: u32,
    /// First retry delay; doubles on each further attempt.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often an idle worker looks for work (queues with wake-ups may return sooner).
    pub poll_interval: Duration,
    /// How long a claim holds without a heartbeat; a dead worker's tasks come back after this.
    pub lease: Duration,
    /// On shutdown, how long running agents may go on before they are stopped and released.
    pub shutdown_grace: Duration,
    pub workdir: PathBuf,
    /// Stop claiming once this much has been spent today (UTC), as reported by the agents.
    pub daily_budget_usd: Option<f64>,
    /// Resume the previous attempt's agent session on retry, where the agent supports it.
    pub resume_sessions: bool,
}

impl WorkerConfig {
    pub fn new(agent: impl Into<String>) -> Self {
        let agent = agent.into();
        WorkerConfig {
            worker_id: default_worker_id(&agent),
            agent,
            mode: RunMode::Watch,
            concurrency: 1,
            timeout: Duration::from_secs(30 * 60),
            max_attempts: 3,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(60 * 60),
            poll_interval: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            workdir: PathBuf::from("."),
            daily_budget_usd: None,
            resume_sessions: true,
        }
    }

    /// Rejects settings that would make the worker misbehave, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let fail = |what: &str| Err(Error::config(format!("agent '{}': {what}", self.agent)));
        if self.concurrency == 0 {
            return fail("concurrency must be at least 1");
        }
        if self.max_attempts == 0 {
            return fail("max_attempts must be at least 1");
        }
        if self.timeout.is_zero() {
            return fail("timeout must be longer than 0s");
        }
        if self.lease < Duration::from_millis(100) {
            return fail("lease must be at least 100ms");
        }
        if self.poll_interval.is_zero() {
            return fail("poll_interval must be longer than 0s");
        }
        if self.daily_budget_usd.is_some_and(|b| b.is_nan() || b <= 0.0) {
            return fail("daily_budget_usd must be a positive number");
        }
        Ok(())
    }

    fn claimant(&self) -> Claimant {
        Claimant {
            worker_id: self.worker_id.clone(),
            agent: self.agent.clone(),
            lease: self.lease,
            max_attempts: self.max_attempts,
        }
    }
}

/// `agent@host:pid`: enough to find the process that holds a claim.
pub fn default_worker_id(agent: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{agent}@{host}:{}", std::process::id())
}

/// What a run did, for the exit code and the closing log line.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub claimed: u64,
    pub completed: u64,
    /// Attempts that failed (including those that will be retried).
    pub failed_attempts: u64,
    pub gave_up: u64,
    pub released: u64,
}

impl RunSummary {
    /// True when no attempt failed.
    pub fn all_succeeded(&self) -> bool {
        self.failed_attempts == 0 && self.gave_up == 0
    }

    fn record(&mut self, end: TaskEnd) {
        match end {
            TaskEnd::Completed => self.completed += 1,
            TaskEnd::Failed => self.failed_attempts += 1,
            TaskEnd::GaveUp => {
                self.failed_attempts += 1;
                self.gave_up += 1
            }
            TaskEnd::Released => self.released += 1,
            TaskEnd::Lost => {}
        }
    }

    pub fn merge(&mut self, other: &RunSummary) {
        self.claimed += other.claimed;
        self.completed += other.completed;
        self.failed_attempts += other.failed_attempts;
        self.gave_up += other.gave_up;
        self.released += other.released;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskEnd {
    Completed,
    Failed,
    GaveUp,
    Released,
    /// The claim was lost (lease taken over, task cancelled); nothing to report.
    Lost,
}

/// Runs one agent against one queue.
pub struct Worker {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Arc<dyn TaskQueue>,
    dispatcher: Arc<dyn Dispatcher>,
    config: WorkerConfig,
    claimant: Claimant,
    events: EventBus,
    spend: std::sync::Mutex<DailySpend>,
}

#[derive(Default)]
struct DailySpend {
    day: Option<chrono::NaiveDate>,
    usd: f64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.shared.queue.name())
            .field("dispatcher", &self.shared.dispatcher.name())
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Worker {
    pub fn new(queue: Arc<dyn TaskQueue>, dispatcher: Arc<dyn Dispatcher>, config: WorkerConfig) -> Self {
        Self::with_events(queue, dispatcher, config, EventBus::default())
    }

    /// A worker that publishes to an existing bus (several agents can share one).
    pub fn with_events(
        queue: Arc<dyn TaskQueue>,
        dispatcher: Arc<dyn Dispatcher>,
        config: WorkerConfig,
        events: EventBus,
    ) -> Self {
        let claimant = config.claimant();
        Worker { shared: Arc::new(Shared { queue, dispatcher, config, claimant, events, spend: Default::default() }) }
    }

    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    /// Runs until the queue is drained (`RunMode::Once`) or `shutdown` fires. On shutdown no new
    /// task is claimed, running agents get `shutdown_grace` to finish, and the rest are stopped
    /// and their tasks released. Queue errors never end the run: they are reported as events and
    /// retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<RunSummary> {
        self.shared.config.validate()?;
        let shared = self.shared;
        let config = &shared.config;
        let mut summary = RunSummary::default();
        let mut running: JoinSet<TaskEnd> = JoinSet::new();
        // Fired after the grace period: every running agent is stopped.
        let stop_agents = CancellationToken::new();
        let mut queue_errors = 0u32;
        // After an idle wait the first claim asks for one task: it is the one that woke the
        // worker, and a queue that claims several statements' worth at once would hold it back
        // until all of them return. The claims that follow fill the remaining slots.
        let mut probe = true;

        while !shutdown.is_cancelled() {
            while let Some(end) = running.try_join_next() {
                summary.record(end.unwrap_or(TaskEnd::Lost));
            }
            if let Some(reason) = shared.budget_exhausted() {
                shared.events.emit(&config.agent, None, EventKind::Paused { reason });
                if config.mode == RunMode::Once && running.is_empty() {
                    break;
                }
                let wait = if running.is_empty() { config.poll_interval } else { Duration::MAX };
                wait_any(&mut running, &mut summary, &shutdown, tokio::time::sleep(wait)).await;
                continue;
            }
            let free = config.concurrency.saturating_sub(running.len());
            let want = if probe { free.min(1) } else { free };
            probe = false;
            let mut found = 0;
            if want > 0 {
                let claimed = tokio::select! {
                    r = shared.queue.claim_batch(want, &shared.claimant) => r,
                    _ = shutdown.cancelled() => break,
                };
                match claimed {
                    Ok(claims) => {
                        queue_errors = 0;
                        found = claims.len();
                        summary.claimed += found as u64;
                        for claim in claims {
                            let shared = shared.clone();
                            let stop = stop_agents.child_token();
                            running.spawn(async move { shared.run_claim(claim, stop).await });
                        }
                    }
                    Err(error) => {
                        queue_errors += 1;
                        let delay = error.retry_after().unwrap_or_else(|| {
                            backoff::exponential(Duration::from_millis(500), Duration::from_secs(60), queue_errors)
                        });
                        shared.queue_error("claim", &error, delay);
                        wait_any(&mut running, &mut summary, &shutdown, tokio::time::sleep(delay)).await;
                        continue;
                    }
                }
            }
            if found > 0 && found == want {
                // Full: go round once a slot frees (or immediately if more slots are open).
                if running.len() >= config.concurrency {
                    wait_any(&mut running, &mut summary, &shutdown, std::future::pending()).await;
                }
                continue;
            }
            if found > 0 {
                continue;
            }
            match config.mode {
                RunMode::Once if running.is_empty() => break,
                RunMode::Once => wait_any(&mut running, &mut summary, &shutdown, std::future::pending()).await,
                RunMode::Watch => {
                    let wake = shared.queue.wait_for_work(config.poll_interval);
                    wait_any(&mut running, &mut summary, &shutdown, wake).await;
                    probe = true;
                }
            }
        }

        if !running.is_empty() {
            tracing::info!(agent = %config.agent, running = running.len(), grace = ?config.shutdown_grace, "shutting down: waiting for running agents");
            let grace = tokio::time::sleep(config.shutdown_grace);
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    end = running.join_next() => match end {
                        Some(end) => summary.record(end.unwrap_or(TaskEnd::Lost)),
                        None => break,
                    },
                    _ = &mut grace, if !stop_agents.is_cancelled() => {
                        tracing::warn!(agent = %config.agent, running = running.len(), "grace period over: stopping agents and releasing their tasks");
                        stop_agents.cancel();
                    }
                }
            }
        }
        Ok(summary)
    }
}

/// Waits for `wake`, a finished task, or shutdown, whichever is first.
async fn wait_any(
    running: &mut JoinSet<TaskEnd>,
    summary: &mut RunSummary,
    shutdown: &CancellationToken,
    wake: impl Future<Output = ()>,
) {
    tokio::select! {
        _ = wake => {}
        Some(end) = running.join_next(), if !running.is_empty() => summary.record(end.unwrap_or(TaskEnd::Lost)),
        _ = shutdown.cancelled() => {}
    }
}

impl Shared {
    fn queue_error(&self, operation: &str, error: &Error, retry_in: Duration) {
        let error = redact(&error.to_string());
        tracing::warn!(agent = %self.config.agent, queue = self.queue.name(), operation, %error, retry_in = ?retry_in, "queue error");
        self.events.emit(
            &self.config.agent,
            None,
            EventKind::QueueError { operation: operation.to_owned(), error, retry_in_ms: retry_in.as_millis() as u64 },
        );
    }

    fn budget_exhausted(&self) -> Option<String> {
        let budget = self.config.daily_budget_usd?;
        let spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let today = Utc::now().date_naive();
        (spend.day == Some(today) && spend.usd >= budget).then(|| {
            format!("daily budget spent: ${:.2} of ${budget:.2} today (UTC); claiming resumes tomorrow", spend.usd)
        })
    }

    fn add_spend(&self, usd: f64) {
        let mut spend = self.spend.lock().unwrap_or_else(|e| e.into_inner());
        let today = Utc::now().date_naive();
        if spend.day != Some(today) {
            *spend = DailySpend { day: Some(today), usd: 0.0 };
        }
        spend.usd += usd;
    }

    fn max_attempts_for(&self, claim: &Claim) -> u32 {
        claim.task.max_attempts.unwrap_or(self.config.max_attempts)
    }

    async fn run_claim(self: Arc<Self>, claim: Claim, stop: CancellationToken) -> TaskEnd {
        let agent = &self.config.agent;
        let id = &claim.task.id;
        let max_attempts = self.max_attempts_for(&claim);
        self.events.emit(
            agent,
            Some(id),
            EventKind::Claimed { attempt: claim.attempt, title: claim.task.title.clone() },
        );

        if claim.attempt > max_attempts {
            // The previous attempt's worker vanished (its lease expired); that attempt counted.
            let reason = format!(
                "attempt {} of {max_attempts} never reported back (its worker stopped or lost its lease); giving up",
                claim.attempt - 1
            );
            return self.report_failure(&claim, Outcome::failure(FailureKind::Permanent, reason), max_attempts).await;
        }
        if !claim.task.is_trusted() {
            let who = claim.task.author.as_ref().map(|a| a.login.as_str()).unwrap_or("unknown");
            let reason = format!("the task's author '{who}' is not trusted to direct this agent; not dispatched");
            return self.report_failure(&claim, Outcome::failure(FailureKind::Permanent, reason), 1).await;
        }

        self.events.emit(agent, Some(id), EventKind::Started { attempt: claim.attempt });
        let agent_cancel = stop.child_token();
        let progress = {
            let events = self.events.clone();
            let agent = agent.clone();
            let id = id.clone();
            ProgressSink::new(move |p| {
                events.emit(&agent, Some(&id), EventKind::Progress { kind: p.kind, message: p.message })
            })
        };
        let ctx = DispatchContext {
            workdir: self.config.workdir.clone(),
            timeout: self.config.timeout,
            cancel: agent_cancel.clone(),
            attempt: claim.attempt,
            resume_session: if self.config.resume_sessions { claim.task.last_session_id.clone() } else { None },
            progress,
        };

        let lost = CancellationToken::new();
        let heartbeat = self.keep_claim_alive(&claim, agent_cancel.clone(), lost.clone());
        // A dispatcher that ignores its deadline is dropped a while after it.
        let backstop = self.config.timeout + Duration::from_secs(60);
        let started = Instant::now();
        let mut outcome = tokio::select! {
            outcome = self.dispatcher.dispatch(&claim.task, ctx) => outcome,
            _ = heartbeat => unreachable_heartbeat(),
            _ = tokio::time::sleep(backstop) => Outcome::failure(
                FailureKind::Timeout,
                format!("the agent did not stop within {}s of its timeout and was abandoned", 60),
            ),
        };
        if outcome.duration.is_zero() {
            outcome.duration = started.elapsed();
        }
        if let Some(cost) = outcome.usage.cost_usd {
            self.add_spend(cost);
        }

        if lost.is_cancelled() {
            tracing::warn!(agent = %agent, task = %id, "claim lost while the agent ran (lease taken over or task cancelled); result discarded");
            return TaskEnd::Lost;
        }
        match outcome.failure {
            None => self.report_success(&claim, outcome).await,
            Some(FailureKind::Cancelled) if stop.is_cancelled() => {
                let released = self.with_retries("release", || self.queue.release(&claim)).await;
                self.events.emit(agent, Some(id), EventKind::Released);
                if released {
                    TaskEnd::Released
                } else {
                    TaskEnd::Lost
                }
            }
            Some(_) => self.report_failure(&claim, outcome, max_attempts).await,
        }
    }

    /// Heartbeats until the claim is lost; then cancels the agent. Never completes otherwise.
    async fn keep_claim_alive(&self, claim: &Claim, agent_cancel: CancellationToken, lost: CancellationToken) {
        if !self.queue.capabilities().leases {
            return std::future::pending().await;
        }
        let every = (self.config.lease / 3).max(Duration::from_millis(30));
        loop {
            tokio::time::sleep(every).await;
            match self.queue.heartbeat(claim).await {
                Ok(()) => {}
                Err(Error::Conflict { message }) | Err(Error::NotFound { what: message }) => {
                    tracing::warn!(agent = %self.config.agent, task = %claim.task.id, %message, "claim lost; stopping the agent");
                    lost.cancel();
                    agent_cancel.cancel();
                    return std::future::pending().await;
                }
                Err(error) => self.queue_error("heartbeat", &error, every),
            }
        }
    }

    async fn report_success(&self, claim: &Claim, outcome: Outcome) -> TaskEnd {
        let report = Report {
            summary: redact(&outcome.summary),
            duration: outcome.duration,
            usage: outcome.usage.clone(),
            exit_code: outcome.exit_code,
        };
        if !self.with_retries("complete", || self.queue.complete(claim, &report)).await {
            return TaskEnd::Lost;
        }
        self.events.emit(
            &self.config.agent,
            Some(&claim.task.id),
            EventKind::Completed {
                duration_ms: report.duration.as_millis() as u64,
                summary: report.summary,
                usage: report.usage,
            },
        );
        TaskEnd::Completed
    }

    async fn report_failure(&self, claim: &Claim, outcome: Outcome, max_attempts: u32) -> TaskEnd {
        let kind = outcome.failure.unwrap_or(FailureKind::Transient);
        let decision = if kind.is_retryable() && claim.attempt < max_attempts {
            let delay = backoff::exponential(self.config.backoff_base, self.config.backoff_max, claim.attempt);
            RetryDecision::RetryAt(Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
        } else {
            RetryDecision::GiveUp
        };
        let failure = Failure {
            kind,
            reason: redact(&outcome.summary),
            exit_code: outcome.exit_code,
            stderr_tail: redact(&outcome.stderr_tail),
            duration: outcome.duration,
            usage: outcome.usage,
            decision: decision.clone(),
        };
        if !self.with_retries("fail", || self.queue.fail(claim, &failure)).await {
            return TaskEnd::Lost;
        }
        let (agent, id) = (&self.config.agent, Some(&claim.task.id));
        self.events.emit(agent, id, EventKind::Failed { attempt: claim.attempt, kind, reason: failure.reason.clone() });
        match decision {
            RetryDecision::RetryAt(at) => {
                self.events.emit(agent, id, EventKind::Retrying { attempt: claim.attempt + 1, at });
                TaskEnd::Failed
            }
            RetryDecision::GiveUp => {
                self.events.emit(agent, id, EventKind::GaveUp { attempts: claim.attempt, reason: failure.reason });
                TaskEnd::GaveUp
            }
        }
    }

    /// Calls a reporting operation until it succeeds or a few tries fail. Returns false when it
    /// never succeeded: the task's lease then runs out and the task comes back, so nothing is lost.
    async fn with_retries<F, Fut>(&self, operation: &str, mut call: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        const TRIES: u32 = 5;
        for n in 1..=TRIES {
            match call().await {
                Ok(()) => return true,
                Err(error @ (Error::Conflict { .. } | Error::NotFound { .. })) => {
                    tracing::warn!(agent = %self.config.agent, operation, error = %redact(&error.to_string()), "claim no longer ours; not reported");
                    return false;
                }
                Err(error) if n < TRIES && (error.is_retryable() || matches!(error, Error::Backend { .. })) => {
                    let delay = error.retry_after().unwrap_or_else(|| {
                        backoff::exponential(Duration::from_millis(200), Duration::from_secs(30), n)
                    });
                    self.queue_error(operation, &error, delay);
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    self.queue_error(operation, &error, Duration::ZERO);
                    return false;
                }
            }
        }
        false
    }
}

fn unreachable_heartbeat() -> Outcome {
    // keep_claim_alive never returns; this keeps the select exhaustive without a panic.
    Outcome::failure(FailureKind::Transient, "heartbeat loop ended unexpectedly")
}
