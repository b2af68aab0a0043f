//! Command-line arguments. Flags mirror the keys of `[agents.NAME]` in bg-run.toml, so every
//! setting can be tried ad hoc and then written down.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::parse as parse_duration;

const ABOUT: &str = "Run AI agents in the background on the tasks in your tracker";

const LONG_ABOUT: &str = "\
bg-run turns a task tracker into a work queue for AI agents. It polls for tasks, claims one \
(\"working on it\"), runs an agent command with the task as its prompt, and reports back: a \
summary for a human to review, or a failure that is retried with backoff.

Run one worker ad hoc:   bg-run --once -- echo 'Working on {title}'
Run the named agents:    bg-run run            (from bg-run.toml)
Add a task:              bg-run add 'Fix the flaky test' --body '...'";

#[derive(Debug, Parser)]
#[command(name = "bg-run", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Config file [default: ./bg-run.toml if present]
    #[arg(long, global = true, value_name = "FILE", env = "BG_RUN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "BG_RUN_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More log output (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the named agents from bg-run.toml, all of them or the ones given
    Run(RunArgs),
    /// Add a task to the embedded (or PostgreSQL) queue
    Add(AddArgs),
    /// List the tasks of one queue (the default one, or --queue-name), oldest first
    Tasks(TasksArgs),
    /// Show one task with its history
    Show(IdArgs),
    /// Close a task you are done with: it is never picked up again, and a running agent on it is stopped
    Close(IdArgs),
    /// Put a task that is not running back in the queue with fresh attempts
    Retry(IdArgs),
    /// Cancel a pending or running task; a running agent on it is stopped
    Cancel(IdArgs),
    /// Measure throughput and pickup latency of a queue with a no-op or command agent
    Bench(BenchArgs),
    /// Check the config, each agent's binary and version, and each queue's reachability
    Doctor(DoctorArgs),
}

/// How to run one worker: the flags of the ad-hoc mode.
#[derive(Debug, Default, Args, PartialEq)]
pub struct WorkerArgs {
    /// Queue to take tasks from: sqlite, postgres, github
    #[arg(long, value_name = "KIND")]
    pub queue: Option<String>,

    /// Agent to dispatch tasks to: claude, codex, gemini, aider, or command (the program after --)
    #[arg(long, value_name = "NAME")]
    pub dispatch: Option<String>,

    /// Process the tasks that are eligible now, then exit (non-zero if any failed)
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,

    /// Keep watching the queue until SIGINT/SIGTERM [default]
    #[arg(long)]
    pub watch: bool,

    /// Name of this agent, shown in comments and logs [default: the dispatcher's name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Agents running at once
    #[arg(short = 'j', long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Stop an agent after this long (e.g. 30m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,

    /// Attempts per task before giving up
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// First retry delay, doubled on each further attempt
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub backoff: Option<std::time::Duration>,

    /// How often an idle worker polls
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub poll_interval: Option<std::time::Duration>,

    /// How long a claim holds without a heartbeat (a dead worker's tasks return after this)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lease: Option<std::time::Duration>,

    /// On shutdown, how long running agents may finish before they are stopped
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<std::time::Duration>,

    /// Directory the agent runs in
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Prompt template (placeholders: {title} {body} {url} {id} {labels} {attempt})
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,

    /// Read the prompt template from a file
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,

    /// Write the prompt to the agent's stdin instead of passing it as an argument
    #[arg(long)]
    pub stdin_prompt: bool,

    /// Let the agent see this environment variable (or PREFIX_*); repeatable
    #[arg(long, value_name = "NAME")]
    pub env_allow: Vec<String>,

    /// Stop claiming when the agents' reported cost reaches this many USD today
    #[arg(long, value_name = "USD")]
    pub budget_usd: Option<f64>,

    #[command(flatten)]
    pub agent: AgentOpts,

    #[command(flatten)]
    pub queue_opts: QueueOpts,

    #[command(flatten)]
    pub selection: SelectionOpts,

    /// The agent program and its arguments, after `--`
    #[arg(last = true, value_name = "PROGRAM")]
    pub command: Vec<String>,
}

/// Options of the agent presets (claude, codex, gemini, aider).
#[derive(Clone, Debug, Default, Args, PartialEq)]
#[command(next_help_heading = "Agent presets")]
pub struct AgentOpts {
    /// Model to ask for
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// claude: a tool the agent may use without asking (e.g. Edit, "Bash(git diff:*)"); repeatable
    #[arg(long = "allowed-tool", value_name = "TOOL")]
    pub allowed_tools: Vec<String>,

    /// claude: a tool the agent may never use; repeatable
    #[arg(long = "disallowed-tool", value_name = "TOOL")]
    pub disallowed_tools: Vec<String>,

    /// claude: permission mode (acceptEdits, auto, dontAsk, manual, plan)
    #[arg(long, value_name = "MODE")]
    pub permission_mode: Option<String>,

    /// claude: stop after this many turns
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u32>,

    /// codex: sandbox (read-only, workspace-write)
    #[arg(long, value_name = "MODE")]
    pub sandbox: Option<String>,

    /// gemini: approval mode (default, auto_edit, plan)
    #[arg(long, value_name = "MODE")]
    pub approval_mode: Option<String>,

    /// Extra system prompt for the agent, read from a file
    #[arg(long, value_name = "FILE")]
    pub system_prompt_file: Option<PathBuf>,

    /// One more argument for the agent CLI; repeatable
    #[arg(long = "agent-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub extra_args: Vec<String>,

    /// The agent binary [default: the preset's name on PATH]
    #[arg(long = "agent-bin", value_name = "PATH")]
    pub program: Option<String>,

    /// Run each task in its own git worktree on branch bg-run/<task>
    #[arg(long)]
    pub worktree: bool,

    /// Let the agent skip its own permission checks (off by default)
    #[arg(long)]
    pub bypass_permissions: bool,
}

/// Where the queue lives; shared by the worker and the task commands.
#[derive(Clone, Debug, Default, Args, PartialEq)]
#[command(next_help_heading = "Queue location")]
pub struct QueueOpts {
    /// SQLite database file [default: .bg-run/bg-run.db]
    #[arg(long, value_name = "FILE", env = "BG_RUN_DB")]
    pub db: Option<PathBuf>,

    /// Named queue inside the database [default: default]
    #[arg(long, value_name = "NAME")]
    pub queue_name: Option<String>,

    /// PostgreSQL schema for bg-run's tables [default: bg_run] (the URL comes from DATABASE_URL)
    #[arg(long, value_name = "SCHEMA")]
    pub pg_schema: Option<String>,

    /// GitHub repository owner/name [default: GITHUB_REPOSITORY or the origin remote]
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: Option<String>,

    /// GitHub API base URL (GitHub Enterprise, proxies) [default: GITHUB_API_URL or api.github.com]
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
}

/// Which tasks a worker takes, beyond the queue's location.
#[derive(Clone, Debug, Default, Args, PartialEq)]
#[command(next_help_heading = "Task selection")]
pub struct SelectionOpts {
    /// Only take tasks that carry this label; repeatable
    #[arg(long = "label-filter", value_name = "LABEL")]
    pub label_filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Agents to run [default: all in the config]
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub agents: Vec<String>,

    /// Process what is eligible now, then exit
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Agents to check [default: all in the config]
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub agents: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Queue holding the tasks: sqlite or postgres (and github for `add`)
    #[arg(long, value_name = "KIND", default_value = "sqlite")]
    pub queue: String,

    #[command(flatten)]
    pub opts: QueueOpts,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// What needs doing
    pub title: String,

    /// Details for the agent
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Read the details from a file (- for stdin)
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,

    /// Label the task; repeatable
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,

    /// Higher runs first
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,

    /// Attempts before giving up [default: the worker's]
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// Do not run before this much time has passed (e.g. 10m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<std::time::Duration>,

    /// Idempotency key: adding the same key again returns the existing task
    #[arg(long, value_name = "KEY")]
    pub unique_key: Option<String>,

    /// Print the new task as JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks in this status: pending, running, review, failed, closed, cancelled
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,

    /// Print a JSON array
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Task id (as listed by `bg-run tasks`)
    pub id: String,

    /// Print JSON
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Queue to measure: sqlite or postgres
    #[arg(long, value_name = "KIND", default_value = "sqlite")]
    pub queue: String,

    /// Agent: noop (in-process, measures the queue and engine) or command (the program after --)
    #[arg(long, value_name = "NAME", default_value = "noop")]
    pub dispatch: String,

    /// Tasks to run through the queue
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,

    /// Agents running at once
    #[arg(short = 'j', long, default_value_t = 8)]
    pub concurrency: usize,

    /// Tasks claimed (and reported) per round trip, where the queue supports it
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Tasks added one at a time to measure pickup latency (0 to skip)
    #[arg(long, default_value_t = 200)]
    pub pickup_samples: usize,

    #[command(flatten)]
    pub opts: QueueOpts,

    /// Agent program for --dispatch command, after `--` (e.g. -- /bin/true)
    #[arg(last = true, value_name = "PROGRAM")]
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
