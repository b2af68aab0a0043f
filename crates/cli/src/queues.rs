//! The queue registry: the one place that knows every adapter. Adding a tracker is a new crate
//! plus one arm in [`open`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bg_run_core::TaskQueue;
use bg_run_github::{resolve_api_url, resolve_repo, resolve_token, GithubOptions, GithubQueue};
use bg_run_postgres::{PostgresOptions, PostgresQueue, TableMapping};
use bg_run_sqlite::{SqliteOptions, SqliteQueue};

use crate::args::QueueOpts;
use crate::config::{GithubSection, PostgresSection, SqliteSection, TableSection};
use crate::error::CliError;
use crate::plan::AgentPlan;

pub const KNOWN_QUEUES: &[&str] = &["sqlite", "postgres", "github"];

pub fn unknown_queue(kind: &str) -> CliError {
    CliError::config(format!("unknown queue '{kind}' (known queues: {})", KNOWN_QUEUES.join(", ")))
}

/// Opens the queue an agent takes its tasks from.
pub async fn open(plan: &AgentPlan) -> Result<Arc<dyn TaskQueue>, CliError> {
    let s = &plan.settings;
    match plan.queue_kind() {
        "sqlite" => Ok(Arc::new(open_sqlite(&s.sqlite.clone().unwrap_or_default(), true).await?)),
        "postgres" => Ok(Arc::new(open_postgres(&s.postgres.clone().unwrap_or_default(), None, true).await?)),
        "github" => {
            let workdir = s.workdir.clone().unwrap_or_else(|| PathBuf::from("."));
            Ok(Arc::new(open_github(&workdir, &s.github.clone().unwrap_or_default()).await?))
        }
        other => Err(unknown_queue(other)),
    }
}

pub async fn open_sqlite(section: &SqliteSection, create: bool) -> Result<SqliteQueue, CliError> {
    let options =
        SqliteOptions::new(section.path.clone().unwrap_or_else(|| PathBuf::from(SqliteOptions::DEFAULT_PATH)))
            .queue(section.queue_name.clone().unwrap_or_else(|| SqliteOptions::DEFAULT_QUEUE.to_owned()))
            .labels(section.labels.clone().unwrap_or_default())
            .create(create);
    Ok(SqliteQueue::open(options).await?)
}

pub fn sqlite_section_from_opts(opts: &QueueOpts) -> SqliteSection {
    SqliteSection { path: opts.db.clone(), queue_name: opts.queue_name.clone(), labels: None }
}

/// Connects to PostgreSQL. The URL comes from `DATABASE_URL`, else the config (a secret in a
/// file is allowed but discouraged). `batch` overrides the configured batch size (bench);
/// `listen` opens the LISTEN connection that wakes a waiting worker, which managing tasks does not
/// need.
pub async fn open_postgres(
    section: &PostgresSection,
    batch: Option<usize>,
    listen: bool,
) -> Result<PostgresQueue, CliError> {
    let url = std::env::var("DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).or_else(|| section.url.clone());
    let Some(url) = url else {
        return Err(CliError::config(
            "postgres: no database URL; set DATABASE_URL (or `url` in the [postgres] section of bg-run.toml)",
        ));
    };
    bg_run_core::redact::register_secret(&url);
    let mut options = PostgresOptions::new(url)
        .schema(section.schema.clone().unwrap_or_else(|| PostgresOptions::DEFAULT_SCHEMA.to_owned()))
        .queue(section.queue_name.clone().unwrap_or_else(|| PostgresOptions::DEFAULT_QUEUE.to_owned()))
        .labels(section.labels.clone().unwrap_or_default())
        .listen(listen);
    if let Some(batch) = batch.or(section.batch) {
        options = options.batch(batch);
    }
    if let Some(pool_size) = section.pool_size {
        options = options.pool_size(pool_size);
    }
    if let Some(table) = &section.table {
        options = options.mapping(table_mapping(table));
    }
    Ok(PostgresQueue::connect(options).await?)
}

fn table_mapping(table: &TableSection) -> TableMapping {
    let mut mapping = TableMapping::new(table.name.clone());
    set_if_given(&mut mapping.id_column, &table.id_column);
    set_if_given(&mut mapping.title_column, &table.title_column);
    set_if_given(&mut mapping.status_column, &table.status_column);
    set_if_given(&mut mapping.pending_value, &table.pending_value);
    set_if_given(&mut mapping.running_value, &table.running_value);
    set_if_given(&mut mapping.done_value, &table.done_value);
    set_if_given(&mut mapping.failed_value, &table.failed_value);
    if let Some(body) = &table.body_column {
        mapping.body_column = Some(body.clone()).filter(|b| !b.is_empty());
    }
    mapping
}

pub fn github_section_from_opts(opts: &QueueOpts) -> GithubSection {
    GithubSection { repo: opts.repo.clone(), api_url: opts.api_url.clone(), ..Default::default() }
}

pub fn postgres_section_from_opts(opts: &QueueOpts) -> PostgresSection {
    PostgresSection {
        schema: opts.pg_schema.clone(),
        queue_name: opts.queue_name.clone(),
        labels: None,
        ..Default::default()
    }
}

/// GitHub Issues of one repository: `--repo`, the config, GITHUB_REPOSITORY, or the origin
/// remote of the clone in `workdir` (where the agent works). The token comes from GITHUB_TOKEN or
/// GH_TOKEN only.
pub async fn open_github(workdir: &Path, section: &GithubSection) -> Result<GithubQueue, CliError> {
    let repo = resolve_repo(None, section.repo.as_deref(), workdir)?;
    let token = resolve_token()?;
    bg_run_core::redact::register_secret(&token);
    let mut options = GithubOptions::new(repo, token);
    options.api_url = resolve_api_url(None, section.api_url.as_deref())?;
    set_if_given(&mut options.trigger_label, &section.trigger_label);
    set_if_given(&mut options.labels.working, &section.working_label);
    set_if_given(&mut options.labels.done, &section.done_label);
    set_if_given(&mut options.labels.failed, &section.failed_label);
    if let Some(labels) = &section.extra_labels {
        options.extra_labels.clone_from(labels);
    }
    options.assignee.clone_from(&section.assignee);
    if let Some(associations) = &section.trusted_associations {
        options.trust.associations = associations.iter().map(|a| a.to_ascii_uppercase()).collect();
    }
    if let Some(logins) = &section.allow_logins {
        options.trust.allow_logins.clone_from(logins);
    }
    if let Some(logins) = &section.block_logins {
        options.trust.block_logins.clone_from(logins);
    }
    if let Some(comment) = section.comment_on_untrusted {
        options.trust.comment_on_untrusted = comment;
    }
    if let Some(include) = section.include_comments {
        options.include_comments = include;
    }
    if let Some(stale) = section.stale_after {
        options.stale_after = stale.0;
    }
    if let Some(interval) = section.min_write_interval {
        options.min_write_interval = interval.0;
    }
    if section.bot_login.is_some() {
        options.bot_login.clone_from(&section.bot_login);
    }
    Ok(GithubQueue::connect(options).await?)
}

/// Overrides a default with a configured value, if there is one.
fn set_if_given(target: &mut String, value: &Option<String>) {
    if let Some(value) = value {
        target.clone_from(value);
    }
}
