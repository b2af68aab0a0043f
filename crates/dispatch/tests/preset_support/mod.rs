//! Shared by the preset tests: a workspace and home per test, the agent's environment as an
//! explicit parent map, progress recording, the last structured event the CLI printed, and a
//! check that no process of a run is left.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bg_run_core::{DispatchContext, Progress, ProgressSink};
use bg_run_dispatch::EnvPolicy;
use serde_json::Value;
use tempfile::TempDir;

/// Set in every test agent's environment, so that its processes can be found in /proc.
pub const MARKER_VAR: &str = "BG_RUN_PRESET_TEST_MARKER";

/// Fake tracker secrets put in the parent environment of every test agent.
pub const GITHUB_TOKEN: &str = "ghp_presettesttokenpresettoken0000";
pub const DATABASE_URL: &str = "postgres://app:presetsecret@db.invalid/prod";

pub struct Dirs {
    pub home: TempDir,
    pub workspace: TempDir,
    /// Unique per test: the value of [`MARKER_VAR`].
    pub marker: String,
}

impl Dirs {
    pub fn new() -> Dirs {
        let home = TempDir::new().expect("temp home");
        let workspace = TempDir::new().expect("temp workspace");
        let marker = format!("marker-{}", workspace.path().file_name().unwrap().to_string_lossy());
        Dirs { home, workspace, marker }
    }

    pub fn ws(&self) -> &Path {
        self.workspace.path()
    }

    /// The policy for an agent whose would-be parent environment is `vars` plus tracker
    /// secrets; `allow` as given, the marker set.
    pub fn env(&self, vars: Vec<(String, String)>, allow: &[&str]) -> EnvPolicy {
        let mut parent: BTreeMap<String, String> = vars.into_iter().collect();
        parent.insert("GITHUB_TOKEN".into(), GITHUB_TOKEN.into());
        parent.insert("DATABASE_URL".into(), DATABASE_URL.into());
        EnvPolicy {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            set: [(MARKER_VAR.to_owned(), self.marker.clone())].into(),
            parent: Some(parent),
        }
    }

    /// Waits until no process carries this test's marker (signals take a moment); the pids
    /// still alive after `limit`.
    pub fn leftover_processes(&self, limit: Duration) -> Vec<u32> {
        let needle = format!("{MARKER_VAR}={}", self.marker);
        let start = Instant::now();
        loop {
            let alive = processes_with_env(&needle);
            if alive.is_empty() || start.elapsed() > limit {
                return alive;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn processes_with_env(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

/// What a recording sink received, each with the note taken at that moment.
pub type Seen<N> = Arc<Mutex<Vec<(Progress, N)>>>;

/// A progress sink and what it received, each with a note taken by `note` at that moment.
pub fn recorder<N: Send + 'static>(note: impl Fn() -> N + Send + Sync + 'static) -> (ProgressSink, Seen<N>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        ProgressSink::new(move |p| seen.lock().unwrap().push((p, note())))
    };
    (sink, seen)
}

pub fn ctx(workdir: &Path, timeout: Duration, progress: ProgressSink) -> DispatchContext {
    let mut ctx = DispatchContext::new(workdir, timeout);
    ctx.progress = progress;
    ctx
}

/// The last event of `kind` among the JSON lines of `stdout`.
pub fn last_event(stdout: &str, kind: &str) -> Value {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in\n{stdout}"))
}
