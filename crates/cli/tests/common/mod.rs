//! Runs the real `bg-run` binary in a scratch directory, as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `bg-run ARGS` in the sandbox, with a clean slate of BG_RUN_* variables.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bg-run"));
        cmd.args(args).current_dir(self.path()).stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("BG_RUN_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("BG_RUN_LOG", "warn,bg_run=info,bg_run_core=info");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run bg-run")
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "bg-run {args:?} failed: {}\n{}", out.status, stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn bg-run")
    }

    pub fn add(&self, title: &str, extra: &[&str]) -> u64 {
        let mut args = vec!["add", title, "--json"];
        args.extend_from_slice(extra);
        let task: Value = serde_json::from_str(&self.ok(&args)).expect("add --json prints JSON");
        task["id"].as_u64().expect("id")
    }

    pub fn tasks(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok(&["tasks", "--json"])).expect("json").as_array().cloned().unwrap()
    }

    pub fn task(&self, id: u64) -> Value {
        serde_json::from_str(&self.ok(&["show", &id.to_string(), "--json"])).expect("json")
    }

    /// Polls `show` until `pred` holds or `timeout` passes; returns the last state.
    pub fn wait_for(&self, id: u64, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let task = self.task(id);
            if pred(&task) || Instant::now() > deadline {
                return task;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn status(task: &Value) -> &str {
    task["status"].as_str().unwrap_or("?")
}

pub fn signal(child: &Child, sig: i32) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap();
    assert!(ok.success());
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
