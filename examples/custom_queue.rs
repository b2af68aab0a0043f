//! A queue adapter in ~100 lines: an in-memory queue that implements `TaskQueue`, driven by the
//! real worker engine. A tracker adapter has the same shape: map "eligible", "claim", "complete"
//! and "fail" onto the tracker's own API, then run the conformance suite from bg-run-testkit.
//!
//! Run: cargo run -p bg-run-examples --example custom_queue

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bg_run_core::{
    async_trait, CancellationToken, Capabilities, Claim, ClaimOutcome, Claimant, DispatchContext, Dispatcher, Failure,
    Outcome, Report, Result, RetryDecision, RunMode, Task, TaskId, TaskQueue, Worker, WorkerConfig,
};

#[derive(Clone, Debug, PartialEq)]
enum State {
    Open,
    Working,
    Done(String),
    Failed(String),
}

/// Tasks in a map; a real adapter would talk to its tracker here.
#[derive(Default)]
struct MemoryQueue {
    tasks: Mutex<BTreeMap<String, (Task, State)>>,
}

impl MemoryQueue {
    fn add(&self, id: &str, title: &str) {
        let task = Task::new(id, title);
        self.tasks.lock().unwrap().insert(id.to_owned(), (task, State::Open));
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        // One mutex makes claims atomic; there are no leases because nothing survives a restart.
        Capabilities::none().with_atomic_claim()
    }

    async fn poll(&self, max: usize) -> Result<Vec<Task>> {
        let tasks = self.tasks.lock().unwrap();
        Ok(tasks.values().filter(|(_, s)| *s == State::Open).map(|(t, _)| t.clone()).take(max).collect())
    }

    async fn claim(&self, task: &Task, claimant: &Claimant) -> Result<ClaimOutcome> {
        let mut tasks = self.tasks.lock().unwrap();
        let Some((stored, state)) = tasks.get_mut(task.id.as_str()) else { return Ok(ClaimOutcome::Taken) };
        if *state != State::Open {
            return Ok(ClaimOutcome::Taken);
        }
        *state = State::Working;
        stored.attempts += 1;
        Ok(ClaimOutcome::Claimed(Box::new(Claim {
            attempt: stored.attempts,
            task: stored.clone(),
            claimant: claimant.clone(),
            token: String::new(),
            lease_until: None,
        })))
    }

    async fn heartbeat(&self, _claim: &Claim) -> Result<()> {
        Ok(())
    }

    async fn complete(&self, claim: &Claim, report: &Report) -> Result<()> {
        self.set(&claim.task.id, State::Done(report.summary.clone()));
        Ok(())
    }

    async fn fail(&self, claim: &Claim, failure: &Failure) -> Result<()> {
        // No scheduler here, so a retry is simply "open again"; real queues honour the time.
        let state = match failure.decision {
            RetryDecision::RetryAt(_) => State::Open,
            RetryDecision::GiveUp => State::Failed(failure.reason.clone()),
        };
        self.set(&claim.task.id, state);
        Ok(())
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let mut tasks = self.tasks.lock().unwrap();
        if let Some((task, state)) = tasks.get_mut(claim.task.id.as_str()) {
            task.attempts -= 1;
            *state = State::Open;
        }
        Ok(())
    }
}

impl MemoryQueue {
    fn set(&self, id: &TaskId, state: State) {
        if let Some(entry) = self.tasks.lock().unwrap().get_mut(id.as_str()) {
            entry.1 = state;
        }
    }
}

/// An "agent" that shouts the title back.
struct Shout;

#[async_trait]
impl Dispatcher for Shout {
    fn name(&self) -> &str {
        "shout"
    }
    async fn dispatch(&self, task: &Task, _ctx: DispatchContext) -> Outcome {
        Outcome::success(task.title.to_uppercase())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let queue = Arc::new(MemoryQueue::default());
    queue.add("1", "write the release notes");
    queue.add("2", "triage new issues");

    let mut config = WorkerConfig::new("example");
    config.mode = RunMode::Once;
    let summary = Worker::new(queue.clone(), Arc::new(Shout), config).run(CancellationToken::new()).await?;

    println!("completed {} of {} claimed tasks", summary.completed, summary.claimed);
    for (id, (_, state)) in queue.tasks.lock().unwrap().iter() {
        println!("task {id}: {state:?}");
    }
    Ok(())
}
