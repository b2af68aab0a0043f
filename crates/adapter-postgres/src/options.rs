//! How to open the PostgreSQL queue, and how to map a user's own table onto it.

use std::fmt;
use std::time::Duration;

use bg_run_core::{redact::redact, Error, Result};

/// Where the queue lives and how this handle works on it.
///
/// `PostgresOptions::new(url)` gives the defaults; the builder methods change one setting each.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`. Its password never appears in errors or
    /// logs (`Debug` masks it too).
    pub url: String,
    /// Schema holding bg-run's tables, created on connect. Several independent installations can
    /// share a database by using different schemas. Default `bg_run`.
    pub schema: String,
    /// Named queue inside the schema: claims, polls, wake-ups and listings only see this queue's
    /// tasks, and `enqueue` puts tasks without a queue of their own here. Default `default`.
    pub queue: String,
    /// A task is eligible only if it carries all of these labels; empty means any task.
    pub labels: Vec<String>,
    /// Tasks per round trip. `claim_batch` claims up to this many rows in one statement, and
    /// `complete`/`fail` calls arriving together are written in one statement of up to this many
    /// rows (group commit). 1 means one statement per task. Default 1.
    pub batch: usize,
    /// Connections in the pool (the LISTEN connection comes on top). Default 10.
    pub pool_size: u32,
    /// How long to wait for a connection before an operation fails with a retryable error.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// Hold a LISTEN connection so `wait_for_work` returns as soon as a task is added. Without it
    /// an idle worker only polls. Default true.
    pub listen: bool,
    /// Work on a table of the user's instead of bg-run's own `tasks` table.
    pub mapping: Option<TableMapping>,
}

impl PostgresOptions {
    pub const DEFAULT_SCHEMA: &'static str = "bg_run";
    pub const DEFAULT_QUEUE: &'static str = "default";
    /// Longest group-commit or claim batch accepted; larger batches only make statements slower.
    pub const MAX_BATCH: usize = 10_000;

    /// Default options for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            queue: Self::DEFAULT_QUEUE.to_owned(),
            labels: Vec::new(),
            batch: 1,
            pool_size: 10,
            connect_timeout: Duration::from_secs(10),
            listen: true,
            mapping: None,
        }
    }

    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    pub fn labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }

    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    pub fn pool_size(mut self, pool_size: u32) -> Self {
        self.pool_size = pool_size;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    pub fn mapping(mut self, mapping: TableMapping) -> Self {
        self.mapping = Some(mapping);
        self
    }

    /// Rejects settings that cannot work, naming the setting and how to fix it.
    pub fn validate(&self) -> Result<()> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(Error::config(
                "postgres: no database URL; set DATABASE_URL or `url` in the [postgres] config section",
            ));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::config(format!(
                "postgres: the database URL '{}' must start with postgres:// or postgresql://",
                redact(url)
            )));
        }
        validate_schema(&self.schema)?;
        if self.queue.trim().is_empty() {
            return Err(Error::config("postgres: the queue name must not be empty"));
        }
        if self.batch == 0 || self.batch > Self::MAX_BATCH {
            return Err(Error::config(format!(
                "postgres: batch must be between 1 and {} (got {})",
                Self::MAX_BATCH,
                self.batch
            )));
        }
        if self.pool_size == 0 {
            return Err(Error::config("postgres: pool_size must be at least 1"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::config("postgres: connect_timeout must be longer than 0s"));
        }
        if let Some(mapping) = &self.mapping {
            mapping.validate()?;
        }
        Ok(())
    }

    /// The NOTIFY channel for this schema; the schema's rules keep it under PostgreSQL's 63 bytes.
    pub(crate) fn channel(&self) -> String {
        format!("bg_run_wakeup_{}", self.schema)
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("schema", &self.schema)
            .field("queue", &self.queue)
            .field("labels", &self.labels)
            .field("batch", &self.batch)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("listen", &self.listen)
            .field("mapping", &self.mapping)
            .finish()
    }
}

/// Letters, digits and underscores, so the schema name is also safe in the NOTIFY channel name and
/// never needs quoting surprises in `psql`.
fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 40
        && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "postgres: invalid schema name '{schema}': use 1 to 40 letters, digits or underscores, not starting with a digit"
        )))
    }
}

/// A user's existing table used as the queue: rows whose status column holds `pending_value` are
/// tasks; claiming sets `running_value`, success `done_value`, giving up `failed_value`.
///
/// The user's table only needs these columns. Leases, attempt counts, retry times and the agent's
/// results live in bg-run's side table `<schema>.mapped_tasks`, keyed by the table name and the
/// row's id (as text).
///
/// Guarantees, and what they rest on:
/// - A row is claimed by one worker at a time: the claim locks it with `FOR UPDATE SKIP LOCKED`
///   and moves it to `running_value` in the same statement.
/// - A claimed row whose worker died (its lease in the side table ran out) is claimed again and
///   that counts as an attempt; a row set to `running_value` by someone else, with no lease of
///   bg-run's, is left alone.
/// - Changing a running row's status away from `running_value` (by hand or by an application)
///   cancels it: the worker's next heartbeat fails and it stops the agent; its result is dropped.
/// - A failed attempt that will be retried goes back to `pending_value`, with its retry time in
///   the side table: rows that went back to pending are not taken before that time.
/// - Rows are taken in id order. There are no named queues, priorities or labels in this mode,
///   `enqueue` is unsupported (insert rows into your table) and there is no LISTEN/NOTIFY
///   wake-up (bg-run creates nothing on your table): idle workers poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableMapping {
    /// `table` or `schema.table`.
    pub table: String,
    pub id_column: String,
    pub title_column: String,
    /// `None` when the table has no body: tasks then have an empty body.
    pub body_column: Option<String>,
    pub status_column: String,
    pub pending_value: String,
    pub running_value: String,
    pub done_value: String,
    pub failed_value: String,
}

impl TableMapping {
    /// The mapping for `table` with columns `id`, `title`, `body`, `status` and the values
    /// `pending`, `running`, `review`, `failed`.
    pub fn new(table: impl Into<String>) -> Self {
        TableMapping {
            table: table.into(),
            id_column: "id".to_owned(),
            title_column: "title".to_owned(),
            body_column: Some("body".to_owned()),
            status_column: "status".to_owned(),
            pending_value: "pending".to_owned(),
            running_value: "running".to_owned(),
            done_value: "review".to_owned(),
            failed_value: "failed".to_owned(),
        }
    }

    pub fn columns(
        mut self,
        id: impl Into<String>,
        title: impl Into<String>,
        body: Option<&str>,
        status: impl Into<String>,
    ) -> Self {
        self.id_column = id.into();
        self.title_column = title.into();
        self.body_column = body.map(str::to_owned);
        self.status_column = status.into();
        self
    }

    pub fn values(
        mut self,
        pending: impl Into<String>,
        running: impl Into<String>,
        done: impl Into<String>,
        failed: impl Into<String>,
    ) -> Self {
        self.pending_value = pending.into();
        self.running_value = running.into();
        self.done_value = done.into();
        self.failed_value = failed.into();
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let names = [
            ("table", self.table.as_str()),
            ("id_column", &self.id_column),
            ("title_column", &self.title_column),
            ("status_column", &self.status_column),
        ];
        for (what, name) in names.into_iter().chain(self.body_column.as_deref().map(|b| ("body_column", b))) {
            if name.trim().is_empty() {
                return Err(Error::config(format!("postgres table mapping: {what} must not be empty")));
            }
        }
        if self.table.split('.').count() > 2 {
            return Err(Error::config(format!(
                "postgres table mapping: table '{}' must be `table` or `schema.table`",
                self.table
            )));
        }
        let values = [&self.pending_value, &self.running_value, &self.done_value, &self.failed_value];
        for (i, a) in values.iter().enumerate() {
            if values[i + 1..].contains(a) {
                return Err(Error::config(format!(
                    "postgres table mapping: the status value '{a}' is used for two states; pending, running, done and failed need distinct values"
                )));
            }
        }
        Ok(())
    }

    /// The table name, quoted part by part.
    pub(crate) fn quoted_table(&self) -> String {
        self.table.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
    }
}

/// `name` as a PostgreSQL identifier that keeps its exact spelling.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_debug_hides_the_password() {
        let options = PostgresOptions::new("postgres://bob:hunter2hunter2@db:5432/app");
        assert!(options.validate().is_ok());
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2hunter2"), "{shown}");
        assert!(shown.contains("bob:[REDACTED]@db"), "{shown}");
    }

    #[test]
    fn rejects_bad_settings_by_name() {
        let base = PostgresOptions::new("postgres://localhost/x");
        let message = |o: PostgresOptions| o.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message(base.clone().schema("1abc")).contains("invalid schema name '1abc'"));
        assert!(message(base.clone().schema("a-b")).contains("invalid schema name"));
        assert!(message(base.clone().batch(0)).contains("batch must be between 1"));
        assert!(message(base.clone().pool_size(0)).contains("pool_size"));
        assert!(message(base.clone().queue(" ")).contains("queue name"));
        assert!(message(PostgresOptions::new("mysql://x")).contains("must start with postgres://"));
        assert!(message(PostgresOptions::new("")).contains("DATABASE_URL"));
        let clash = TableMapping::new("jobs").values("todo", "doing", "todo", "failed");
        assert!(message(base.mapping(clash)).contains("'todo' is used for two states"));
    }

    #[test]
    fn quotes_identifiers_exactly() {
        assert_eq!(quote_ident("Jobs"), "\"Jobs\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(TableMapping::new("app.Jobs").quoted_table(), "\"app\".\"Jobs\"");
    }
}
