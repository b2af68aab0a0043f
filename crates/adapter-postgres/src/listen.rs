//! LISTEN/NOTIFY as a wake-up hint for idle workers.
//!
//! A trigger on the tasks table notifies the schema's channel with the queue name whenever tasks
//! are inserted; a dedicated connection listens and wakes `wait_for_work`. Notifications are only
//! hints: one lost while the connection was down costs at most one poll interval, and every
//! reconnect wakes the waiters once in case something arrived meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bg_run_core::{backoff, redact::redact, CancellationToken};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;

/// Counts notifications so a waiter can tell whether one arrived since it last looked for work.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    epoch: AtomicU64,
    /// The epoch when work was last looked for; a newer epoch means something may have arrived
    /// that the last look missed.
    seen: AtomicU64,
    notify: Notify,
}

impl Wakeup {
    pub(crate) fn wake(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Called as a claim starts: notifications before this point are covered by the claim.
    pub(crate) fn looking(&self) {
        self.seen.store(self.epoch.load(Ordering::Acquire), Ordering::Release);
    }

    /// Returns when a notification arrives (or arrived since the last claim) or after `timeout`.
    pub(crate) async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = self.epoch.load(Ordering::Acquire);
        if self.seen.swap(now, Ordering::AcqRel) != now {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }
}

/// Starts the listener task; it stops when `stop` fires.
pub(crate) fn spawn(
    connect: PgConnectOptions,
    connect_timeout: Duration,
    channel: String,
    queue: String,
    wakeup: Arc<Wakeup>,
    stop: CancellationToken,
) {
    // Its own one-connection pool, so the listener never takes a connection from the workers.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(connect_timeout)
        .connect_lazy_with(connect);
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = listen_forever(&pool, &channel, &queue, &wakeup) => {}
        }
        pool.close().await;
    });
}

async fn listen_forever(pool: &PgPool, channel: &str, queue: &str, wakeup: &Wakeup) {
    let mut failures = 0u32;
    loop {
        let error = listen(pool, channel, queue, wakeup, &mut failures).await;
        failures += 1;
        let delay = backoff::exponential(Duration::from_millis(200), Duration::from_secs(10), failures);
        let error = redact(&error.to_string());
        if failures == 1 {
            tracing::warn!(channel, %error, retry_in = ?delay, "postgres: LISTEN connection lost; polling until it is back");
        } else {
            tracing::debug!(channel, %error, retry_in = ?delay, "postgres: LISTEN connection still down");
        }
        // Waiters fall back to polling meanwhile; wake them so none sleeps a full interval on a
        // notification that may have been lost.
        wakeup.wake();
        tokio::time::sleep(delay).await;
    }
}

/// Listens until the connection fails for good; returns the error.
async fn listen(pool: &PgPool, channel: &str, queue: &str, wakeup: &Wakeup, failures: &mut u32) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(channel).await {
        return error;
    }
    if *failures > 0 {
        tracing::info!(channel, "postgres: LISTEN connection is back");
    }
    *failures = 0;
    wakeup.wake();
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) if notification.payload() == queue => wakeup.wake(),
            Ok(Some(_)) => {}
            // The connection dropped and sqlx re-established it (and re-subscribed): anything
            // sent in between is lost, so look once.
            Ok(None) => wakeup.wake(),
            Err(error) => return error,
        }
    }
}
