//! Group commit: `complete` and `fail` calls that arrive while a write is in flight are gathered
//! and written together in one statement, up to the batch size.
//!
//! A caller's future resolves only after the statement carrying its row has committed (each
//! statement is its own transaction), so nothing is acknowledged that a crash could lose. When
//! the statement fails, every caller in it gets the error and the worker retries; a retry after
//! an unseen commit finds the token cleared and gets `Conflict`, which the worker treats as
//! "already reported".

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bg_run_core::{Error, Result};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::Db;
use crate::error::ADAPTER;
use crate::report::{write_completions, write_failures, Completion, FailureRow, ReportSql};

pub(crate) enum Write {
    Complete(Completion),
    Fail(FailureRow),
}

impl Write {
    fn id(&self) -> i64 {
        match self {
            Write::Complete(c) => c.id,
            Write::Fail(f) => f.id,
        }
    }
}

struct Job {
    write: Write,
    /// `Ok(true)` when the row was written, `Ok(false)` when its claim was no longer valid.
    reply: oneshot::Sender<Result<bool>>,
}

/// Handle to the background writer. Dropping it lets the writer finish what it holds and stop.
pub(crate) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the writer: at most `max_rows` rows per statement, at most `in_flight` statements
    /// at once. While all are in flight new calls queue up and form the next, larger batch.
    pub(crate) fn start(db: Arc<Db>, sql: Arc<ReportSql>, max_rows: usize, in_flight: usize) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, db, sql, max_rows.max(1), in_flight.max(1)));
        GroupCommit { jobs }
    }

    pub(crate) async fn write(&self, write: Write) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { write, reply })
            .map_err(|_| Error::backend(ADAPTER, "the group-commit writer has stopped", false))?;
        answer.await.map_err(|_| Error::backend(ADAPTER, "the group-commit writer stopped before writing", true))?
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Job>,
    db: Arc<Db>,
    sql: Arc<ReportSql>,
    max_rows: usize,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    // Jobs held back because their task already had a row in the batch being formed: one
    // statement cannot update a row twice, and the second write must see the first one's effect.
    let mut held: VecDeque<Job> = VecDeque::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let first = match held.pop_front() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut ids = HashSet::from([first.write.id()]);
        let mut batch = vec![first];
        let mut again = Vec::new();
        while batch.len() < max_rows {
            let next = match held.pop_front() {
                Some(job) => job,
                None => match rx.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if ids.insert(next.write.id()) {
                batch.push(next);
            } else {
                again.push(next);
            }
        }
        held.extend(again);
        let (db, sql) = (db.clone(), sql.clone());
        tokio::spawn(async move {
            flush(&db, &sql, batch).await;
            drop(slot);
        });
    }
}

async fn flush(db: &Db, sql: &ReportSql, batch: Vec<Job>) {
    let mut completes = Vec::new();
    let mut fails = Vec::new();
    for job in batch {
        match job.write {
            Write::Complete(row) => completes.push((row, job.reply)),
            Write::Fail(row) => fails.push((row, job.reply)),
        }
    }
    if !completes.is_empty() {
        let (rows, replies): (Vec<_>, Vec<_>) = completes.into_iter().unzip();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        answer(ids, replies, write_completions(db, sql, rows).await);
    }
    if !fails.is_empty() {
        let (rows, replies): (Vec<_>, Vec<_>) = fails.into_iter().unzip();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        answer(ids, replies, write_failures(db, sql, rows).await);
    }
}

fn answer(ids: Vec<i64>, replies: Vec<oneshot::Sender<Result<bool>>>, written: Result<HashSet<i64>>) {
    match written {
        Ok(written) => {
            for (id, reply) in ids.into_iter().zip(replies) {
                // A caller that gave up waiting is fine: its row is written either way.
                let _ = reply.send(Ok(written.contains(&id)));
            }
        }
        Err(error) => {
            let retryable = error.is_retryable();
            let message = match &error {
                Error::Backend { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            for reply in replies {
                let _ = reply.send(Err(Error::backend(ADAPTER, message.clone(), retryable)));
            }
        }
    }
}
