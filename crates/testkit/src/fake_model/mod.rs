//! Fake model endpoints (Anthropic Messages API, OpenAI Responses API) for running the real agent
//! CLIs (`claude`, `codex`) offline.
//!
//! ```ignore
//! let model = FakeModel::start().await;
//! model.push(Turn::tool_call("Write", json!({"file_path": path, "content": "hi"})));
//! model.push(Turn::text("wrote it").usage(1200, 80));
//! // run `claude -p ...` with model.claude_env(home) ...
//! assert_eq!(model.model_requests().len(), 2);
//! ```
//!
//! One server speaks both protocols and serves one script: each model request (`POST
//! /v1/messages` or `POST /v1/responses`) takes the next [`Turn`]. `CLI_NOTES.md` beside this file
//! records how the pinned CLI versions behave against it: flags, exit codes, output fields.

mod anthropic;
mod cli;
mod openai;
mod script;
mod server;

pub use cli::{agent_bin_dir, agent_cli, run_cli, CliRun, AGENT_BIN_DIR_ENV, FAKE_API_KEY};
pub use script::{Block, Turn, Usage, DEFAULT_REPLY};
pub use server::{FakeModel, RecordedRequest};
