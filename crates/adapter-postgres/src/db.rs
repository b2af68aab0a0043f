//! Connections for the hot path, kept checked out of the sqlx pool between statements.
//!
//! sqlx pings every connection it gets back, which costs one more round trip per statement (and
//! on a small machine the context switches are what limits throughput). Here a connection goes
//! back into a local list after a statement that finished cleanly and is reused directly. One
//! whose statement failed at the connection level, or was abandoned half-way (its future
//! dropped), goes back to the sqlx pool instead, which checks it and closes it if it is broken.
//! A connection that died while idle here (a server restart) fails its next statement with a
//! retryable error; since a restart kills all of them at once, every cached connection is then
//! handed back for checking, so the next statements get working ones. Connections unused for a
//! minute also go back, so an idle worker does not keep a full pool open.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgPool, Postgres};
use tokio::sync::{Semaphore, SemaphorePermit};

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

pub(crate) struct Db {
    pool: PgPool,
    /// Most recently used last, with the time each was put back.
    idle: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    /// One per pool connection. Cached connections never go back to the sqlx pool, so a caller
    /// waiting there would not see them; everyone waits here instead, and a permit guarantees a
    /// connection is either cached or free in the pool.
    permits: Semaphore,
    acquire_timeout: Duration,
}

/// How long a connection may sit unused here before it goes back to the sqlx pool.
const KEEP_IDLE: Duration = Duration::from_secs(60);

/// Errors after which the connection itself cannot be trusted.
fn breaks_connection(error: &sqlx::Error) -> bool {
    !matches!(error, sqlx::Error::Database(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_))
}

impl Db {
    pub(crate) fn new(pool: PgPool, size: u32, acquire_timeout: Duration) -> Self {
        let permits = Semaphore::new(usize::try_from(size).unwrap_or(1));
        Db { pool, idle: Mutex::new(Vec::new()), permits, acquire_timeout }
    }

    async fn permit(&self) -> Result<SemaphorePermit<'_>, sqlx::Error> {
        match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(sqlx::Error::PoolClosed),
            Err(_) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    async fn take(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let (cached, stale) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let cached = idle.pop().map(|(conn, _)| conn);
            let fresh_from = idle.iter().position(|(_, since)| since.elapsed() < KEEP_IDLE).unwrap_or(idle.len());
            (cached, idle.drain(..fresh_from).collect::<Vec<_>>())
        };
        // Dropped outside the lock: each goes back to the sqlx pool.
        drop(stale);
        match cached {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    /// Keeps the connection for the next statement if this one left it usable. (A statement whose
    /// future is dropped never gets here: its connection drops back into the sqlx pool.)
    fn put_back<T>(&self, conn: PoolConnection<Postgres>, result: &Result<T, sqlx::Error>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if result.as_ref().err().is_none_or(|e| !breaks_connection(e)) {
            idle.push((conn, Instant::now()));
        } else {
            let suspect = std::mem::take(&mut *idle);
            drop(idle);
            drop(conn);
            drop(suspect);
        }
    }

    pub(crate) async fn fetch_all(&self, query: Query<'_>) -> Result<Vec<PgRow>, sqlx::Error> {
        let _permit = self.permit().await?;
        let mut conn = self.take().await?;
        let result = query.fetch_all(&mut *conn).await;
        self.put_back(conn, &result);
        result
    }

    pub(crate) async fn fetch_optional(&self, query: Query<'_>) -> Result<Option<PgRow>, sqlx::Error> {
        let _permit = self.permit().await?;
        let mut conn = self.take().await?;
        let result = query.fetch_optional(&mut *conn).await;
        self.put_back(conn, &result);
        result
    }

    /// Gives the cached connections back and closes the pool.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        drop(idle);
        self.pool.close().await;
    }
}
