//! `bg-run.toml`: named agents plus per-queue defaults, overridden by `BG_RUN_…` environment
//! variables. Unknown keys and wrong types are errors that name the key, so a typo never silently
//! turns into a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::duration::ConfigDuration;
use crate::error::CliError;

/// The config file looked for when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "bg-run.toml";

/// Top-level keys, also the only `BG_RUN_<KEY>…` variables read as config overrides (so
/// variables such as `BG_RUN_TASK_ID`, which bg-run sets for agents, are never mistaken for it).
const TOP_LEVEL_KEYS: &[&str] = &["defaults", "agents", "sqlite", "postgres", "github"];

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Settings every agent inherits unless it sets its own.
    #[serde(default)]
    pub defaults: AgentSection,
    #[serde(default)]
    pub sqlite: SqliteSection,
    #[serde(default)]
    pub postgres: PostgresSection,
    #[serde(default)]
    pub github: GithubSection,
    #[serde(default)]
    pub agents: BTreeMap<String, AgentSection>,
}

/// One named agent ("employee"), or the `[defaults]` all agents inherit.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Queue kind: sqlite (default), postgres, github.
    pub queue: Option<String>,
    /// Dispatcher: command, claude, codex, gemini, aider.
    pub dispatch: Option<String>,
    /// Program and arguments for `dispatch = "command"` (placeholders allowed).
    pub command: Option<Vec<String>>,
    pub prompt_template: Option<String>,
    pub prompt_template_file: Option<PathBuf>,
    /// Pass the prompt on stdin instead of as an argument.
    pub stdin_prompt: Option<bool>,
    pub concurrency: Option<usize>,
    pub timeout: Option<ConfigDuration>,
    pub max_attempts: Option<u32>,
    pub backoff: Option<ConfigDuration>,
    pub backoff_max: Option<ConfigDuration>,
    pub poll_interval: Option<ConfigDuration>,
    pub lease: Option<ConfigDuration>,
    pub shutdown_grace: Option<ConfigDuration>,
    /// Between SIGTERM and SIGKILL when an agent must stop.
    pub kill_grace: Option<ConfigDuration>,
    pub workdir: Option<PathBuf>,
    /// Extra environment variable names (or `PREFIX_*`) the agent may see.
    pub env_allow: Option<Vec<String>>,
    /// Variables set for the agent.
    pub env: Option<BTreeMap<String, String>>,
    pub daily_budget_usd: Option<f64>,
    /// Retry an attempt by resuming the previous attempt's agent session (claude, codex, gemini).
    pub resume_sessions: Option<bool>,
    /// Agent binary for a preset (default: the preset's name on PATH).
    pub program: Option<String>,
    pub model: Option<String>,
    /// claude: tools the agent may use without asking, e.g. "Edit", "Bash(cargo test:*)".
    pub allowed_tools: Option<Vec<String>>,
    /// claude: tools the agent may never use.
    pub disallowed_tools: Option<Vec<String>>,
    /// claude: acceptEdits, auto, dontAsk, manual, plan.
    pub permission_mode: Option<String>,
    /// claude: stop after this many turns.
    pub max_turns: Option<u32>,
    /// codex: read-only, workspace-write (default).
    pub sandbox: Option<String>,
    /// gemini: default, auto_edit, plan.
    pub approval_mode: Option<String>,
    /// Extra system prompt text (claude --append-system-prompt, codex developer instructions).
    pub system_prompt: Option<String>,
    pub system_prompt_file: Option<PathBuf>,
    /// codex: `-c key=value` overrides.
    pub config_overrides: Option<Vec<String>>,
    /// aider: the files it may edit.
    pub files: Option<Vec<String>>,
    /// More arguments for the agent CLI.
    pub extra_args: Option<Vec<String>>,
    /// Let the agent skip its own permission checks. Off unless set here explicitly.
    pub bypass_permissions: Option<bool>,
    /// "fixed" (run in `workdir`) or "worktree" (a git worktree per task on branch bg-run/<id>).
    pub workspace: Option<String>,
    /// With workspace = "worktree": keep it "always", "on_failure" (default) or "never".
    pub worktree_keep: Option<String>,
    /// With workspace = "worktree": the ref new branches start from (default HEAD).
    pub worktree_base: Option<String>,
    /// Queue settings for this agent only, over the top-level `[sqlite]` / `[postgres]` /
    /// `[github]` sections.
    pub sqlite: Option<SqliteSection>,
    pub postgres: Option<PostgresSection>,
    pub github: Option<GithubSection>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSection {
    /// Database file; default `.bg-run/bg-run.db`.
    pub path: Option<PathBuf>,
    /// Named queue inside the file; default "default".
    pub queue_name: Option<String>,
    /// Only tasks with all of these labels.
    pub labels: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// Prefer `DATABASE_URL`: a URL here is a secret in a file.
    pub url: Option<String>,
    pub schema: Option<String>,
    pub queue_name: Option<String>,
    pub labels: Option<Vec<String>>,
    pub batch: Option<usize>,
    pub pool_size: Option<u32>,
    /// Work on an existing table of yours instead of bg-run's own.
    pub table: Option<TableSection>,
}

/// Column mapping for a user's own table: `SELECT … WHERE status = 'pending'`, then
/// `UPDATE … SET status = 'review'`. Unset keys take the defaults shown.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// `table` or `schema.table` (required).
    pub name: String,
    /// Default "id".
    pub id_column: Option<String>,
    /// Default "title".
    pub title_column: Option<String>,
    /// Default "body"; "" for a table without one.
    pub body_column: Option<String>,
    /// Default "status".
    pub status_column: Option<String>,
    /// Defaults "pending", "running", "review", "failed".
    pub pending_value: Option<String>,
    pub running_value: Option<String>,
    pub done_value: Option<String>,
    pub failed_value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubSection {
    /// `owner/name`; default from GITHUB_REPOSITORY or the clone's origin remote.
    pub repo: Option<String>,
    /// API base URL (GitHub Enterprise, a proxy); default GITHUB_API_URL or api.github.com.
    pub api_url: Option<String>,
    pub trigger_label: Option<String>,
    pub extra_labels: Option<Vec<String>>,
    pub assignee: Option<String>,
    pub working_label: Option<String>,
    pub done_label: Option<String>,
    pub failed_label: Option<String>,
    pub trusted_associations: Option<Vec<String>>,
    pub allow_logins: Option<Vec<String>>,
    pub block_logins: Option<Vec<String>>,
    pub comment_on_untrusted: Option<bool>,
    pub include_comments: Option<bool>,
    pub stale_after: Option<ConfigDuration>,
    /// Login of the token's account, where `GET /user` is not available to the token.
    pub bot_login: Option<String>,
    /// Least time between two mutating requests; default 1s, as GitHub asks.
    pub min_write_interval: Option<ConfigDuration>,
}

/// `top`'s settings with `base` filling the gaps. The struct is destructured without `..`, so
/// a field added later and not listed here is a compile error rather than a silently dropped
/// setting.
macro_rules! overlay {
    ($top:expr, $base:expr, $ty:ident { $($field:ident),* $(,)? }) => {{
        let $ty { $($field),* } = $top.clone();
        $ty { $($field: $field.or_else(|| $base.$field.clone())),* }
    }};
}

impl AgentSection {
    /// This agent's settings with `defaults` filling the gaps.
    pub fn over(&self, defaults: &AgentSection) -> AgentSection {
        let mut merged = overlay!(
            self,
            defaults,
            AgentSection {
                queue,
                dispatch,
                command,
                prompt_template,
                prompt_template_file,
                stdin_prompt,
                concurrency,
                timeout,
                max_attempts,
                backoff,
                backoff_max,
                poll_interval,
                lease,
                shutdown_grace,
                kill_grace,
                workdir,
                env_allow,
                env,
                daily_budget_usd,
                resume_sessions,
                program,
                model,
                allowed_tools,
                disallowed_tools,
                permission_mode,
                max_turns,
                sandbox,
                approval_mode,
                system_prompt,
                system_prompt_file,
                config_overrides,
                files,
                extra_args,
                bypass_permissions,
                workspace,
                worktree_keep,
                worktree_base,
                sqlite,
                postgres,
                github,
            }
        );
        merged.sqlite = merge_opt(&defaults.sqlite, &self.sqlite, SqliteSection::over);
        merged.postgres = merge_opt(&defaults.postgres, &self.postgres, PostgresSection::over);
        merged.github = merge_opt(&defaults.github, &self.github, GithubSection::over);
        merged
    }
}

fn merge_opt<T: Clone>(base: &Option<T>, top: &Option<T>, over: fn(&T, &T) -> T) -> Option<T> {
    match (base, top) {
        (Some(b), Some(t)) => Some(over(t, b)),
        (b, t) => t.clone().or_else(|| b.clone()),
    }
}

impl SqliteSection {
    pub fn over(&self, base: &SqliteSection) -> SqliteSection {
        overlay!(self, base, SqliteSection { path, queue_name, labels })
    }
}

impl PostgresSection {
    pub fn over(&self, base: &PostgresSection) -> PostgresSection {
        overlay!(self, base, PostgresSection { url, schema, queue_name, labels, batch, pool_size, table })
    }
}

impl GithubSection {
    pub fn over(&self, base: &GithubSection) -> GithubSection {
        overlay!(
            self,
            base,
            GithubSection {
                repo,
                api_url,
                trigger_label,
                extra_labels,
                assignee,
                working_label,
                done_label,
                failed_label,
                trusted_associations,
                allow_logins,
                block_logins,
                comment_on_untrusted,
                include_comments,
                stale_after,
                bot_login,
                min_write_interval,
            }
        )
    }
}

/// Loads the config. `explicit` is the `--config` path: it must exist. Without it,
/// `bg-run.toml` in the current directory is read if present, else everything is default.
pub fn load(explicit: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), CliError> {
    let path = match explicit {
        Some(path) if !path.is_file() => {
            return Err(CliError::config(format!("config file {} not found (check the --config path)", path.display())))
        }
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
    };
    let mut builder = config::Config::builder();
    if let Some(path) = &path {
        // Read it ourselves so an unreadable file is reported as such, not as "not found".
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::config(format!("cannot read config file {}: {e}", path.display())))?;
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }
    let overrides: config::Map<String, String> = std::env::vars().filter(|(key, _)| is_config_override(key)).collect();
    builder = builder.add_source(
        config::Environment::with_prefix("BG_RUN")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("defaults.command")
            .source(Some(overrides)),
    );
    let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "environment".into());
    let config = builder
        .build()
        .and_then(|c| c.try_deserialize::<FileConfig>())
        .map_err(|e| CliError::config(format!("invalid config in {shown}: {}", describe_config_error(&e))))?;
    for name in config.agents.keys() {
        validate_agent_name(name)?;
    }
    Ok((config, path))
}

fn is_config_override(key: &str) -> bool {
    key.strip_prefix("BG_RUN_").is_some_and(|rest| {
        let first = rest.split("__").next().unwrap_or_default().to_ascii_lowercase();
        TOP_LEVEL_KEYS.contains(&first.as_str())
    })
}

fn describe_config_error(error: &config::ConfigError) -> String {
    // The config crate's messages already name the key ("unknown field `x`, expected one of …
    // for key `agents.a`"); strip its noise so the line stays short.
    error.to_string().replace("\n", " ")
}

/// Agent names appear in worker ids, tracker comments and env var names: keep them simple.
pub fn validate_agent_name(name: &str) -> Result<(), CliError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CliError::config(format!("agent name '{name}' is invalid: use 1-64 letters, digits, '-' or '_'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_settings_fall_back_to_defaults() {
        let defaults = AgentSection {
            concurrency: Some(4),
            sqlite: Some(SqliteSection { path: Some("a.db".into()), ..Default::default() }),
            ..Default::default()
        };
        let agent = AgentSection {
            concurrency: Some(1),
            sqlite: Some(SqliteSection { queue_name: Some("q".into()), ..Default::default() }),
            ..Default::default()
        };
        let merged = agent.over(&defaults);
        assert_eq!(merged.concurrency, Some(1));
        let sqlite = merged.sqlite.unwrap();
        assert_eq!(sqlite.path, Some(PathBuf::from("a.db")));
        assert_eq!(sqlite.queue_name.as_deref(), Some("q"));
    }

    #[test]
    fn only_known_sections_are_read_from_the_environment() {
        assert!(is_config_override("BG_RUN_AGENTS__A__CONCURRENCY"));
        assert!(is_config_override("BG_RUN_SQLITE__PATH"));
        assert!(!is_config_override("BG_RUN_TASK_ID"));
        assert!(!is_config_override("OTHER"));
    }
}
