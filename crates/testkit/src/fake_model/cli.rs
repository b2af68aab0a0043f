//! Finding the pinned agent CLIs and pointing them at a [`FakeModel`] without touching the real
//! home directory or the network.

use std::path::{Path, PathBuf};

use super::FakeModel;

/// Overrides where the agent CLIs are looked for.
pub const AGENT_BIN_DIR_ENV: &str = "BG_RUN_AGENT_BIN_DIR";

/// The API key the CLIs are given; the fake accepts any key.
pub const FAKE_API_KEY: &str = "sk-bg-run-fake";

/// `$BG_RUN_AGENT_BIN_DIR`, or `tools/agent-clis/node_modules/.bin` in this workspace, where
/// `.ci/install-agent-clis` puts the pinned `claude` and `codex`.
pub fn agent_bin_dir() -> PathBuf {
    match std::env::var_os(AGENT_BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/agent-clis/node_modules/.bin"),
    }
}

/// The path of an installed agent CLI (`"claude"`, `"codex"`).
///
/// When it is missing: in CI (`CI` set) this panics, since a test that silently skips there
/// proves nothing; elsewhere it prints how to install it and returns `None`, so that the test
/// can return early on a machine without Node.js.
pub fn agent_cli(name: &str) -> Option<PathBuf> {
    let path = agent_bin_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    let hint = format!(
        "agent CLI `{name}` not found at {}: run .ci/install-agent-clis (or set {AGENT_BIN_DIR_ENV})",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{hint}");
    }
    eprintln!("skipping: {hint}");
    None
}

impl FakeModel {
    /// Environment for `claude` against this server: the base URL and a fake key, `HOME` and
    /// `CLAUDE_CONFIG_DIR` inside `home` (a temporary directory), and every switch that stops
    /// Claude Code from reaching the network on its own (auto-update, telemetry, error
    /// reporting, feature flags). Meant for a command whose environment was cleared first.
    pub fn claude_env(&self, home: &Path) -> Vec<(String, String)> {
        let mut env = base_env(home);
        env.extend(
            [
                ("ANTHROPIC_BASE_URL", self.base_url()),
                ("ANTHROPIC_API_KEY", FAKE_API_KEY.to_owned()),
                ("CLAUDE_CONFIG_DIR", home.join(".claude").to_string_lossy().into_owned()),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
                ("DISABLE_AUTOUPDATER", "1".to_owned()),
                ("DISABLE_TELEMETRY", "1".to_owned()),
                ("DISABLE_ERROR_REPORTING", "1".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }

    /// Environment for `codex` against this server: `HOME` inside `home` and `CODEX_HOME` at
    /// `home/.codex` (created here, since Codex refuses a `CODEX_HOME` that does not exist), and
    /// the key that [`codex_config_args`](Self::codex_config_args) names as `env_key`.
    pub fn codex_env(&self, home: &Path) -> Vec<(String, String)> {
        let codex_home = home.join(".codex");
        std::fs::create_dir_all(&codex_home).expect("create CODEX_HOME");
        let mut env = base_env(home);
        env.push(("CODEX_HOME".to_owned(), codex_home.to_string_lossy().into_owned()));
        env.push(("OPENAI_API_KEY".to_owned(), FAKE_API_KEY.to_owned()));
        env
    }

    /// `-c` overrides that make `codex` use this server as its model provider `fake` over the
    /// Responses API. `extra` is added inside the provider table, e.g.
    /// `request_max_retries=0, stream_max_retries=0`.
    pub fn codex_config_args(&self, extra: &str) -> Vec<String> {
        let mut provider = format!(
            r#"model_providers.fake={{name="fake",base_url="{}",env_key="OPENAI_API_KEY",wire_api="responses""#,
            self.openai_base_url()
        );
        if !extra.is_empty() {
            provider.push(',');
            provider.push_str(extra);
        }
        provider.push('}');
        vec!["-c".to_owned(), "model_provider=fake".to_owned(), "-c".to_owned(), provider]
    }
}

fn base_env(home: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".to_owned(), home.to_string_lossy().into_owned()),
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
    ]
}

/// What an agent CLI run left behind.
#[derive(Clone, Debug)]
pub struct CliRun {
    /// None when the process was killed by a signal (or by [`run_cli`]'s timeout).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl CliRun {
    /// Every line of stdout that is a JSON object (`stream-json`, `--json` JSONL), in order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// The events whose `type` is `kind`.
    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.events().into_iter().filter(|e| e.get("type").and_then(serde_json::Value::as_str) == Some(kind)).collect()
    }

    /// The last event whose `type` is `kind`, or a panic that shows the whole output.
    pub fn last_event(&self, kind: &str) -> serde_json::Value {
        self.events_of(kind).pop().unwrap_or_else(|| panic!("no `{kind}` event in the CLI's output\n{self}"))
    }
}

impl std::fmt::Display for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.exit_code,
            if self.timed_out { " (timed out, killed)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `command` in its own process group with stdin at /dev/null (Codex otherwise waits for
/// more prompt on an open stdin), capturing its output. Once `timeout` has passed the whole
/// group is killed, so that tool subprocesses do not outlive the test; the output up to then is
/// kept.
pub async fn run_cli(mut command: tokio::process::Command, timeout: std::time::Duration) -> CliRun {
    use std::process::Stdio;
    use tokio::io::{AsyncRead, AsyncReadExt};

    fn drain(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<String> {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        })
    }

    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    let mut child = command.spawn().expect("spawn the agent CLI");
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status.expect("wait for the agent CLI").code(), false),
        Err(_) => {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
            }
            let _ = child.kill().await;
            (None, true)
        }
    };
    // A tool subprocess that escaped the group could hold the pipes open; do not wait for it.
    let collect = |handle: tokio::task::JoinHandle<String>| async move {
        tokio::time::timeout(std::time::Duration::from_secs(5), handle)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    CliRun { exit_code, stdout: collect(stdout).await, stderr: collect(stderr).await, timed_out }
}
