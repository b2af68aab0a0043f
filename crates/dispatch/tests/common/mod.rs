#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bg_run_core::DispatchContext;
use bg_run_dispatch::{CommandSpec, EnvPolicy};

/// The parts of the real environment the test programs need, given to the dispatcher as its
/// explicit parent environment so no test touches the process environment.
pub fn parent_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_owned(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()));
    env.insert("HOME".to_owned(), "/nonexistent-home".to_owned());
    env
}

pub fn spec(program: &str, args: &[&str]) -> CommandSpec {
    let mut spec = CommandSpec::new(program).args(args.iter().copied());
    spec.env = EnvPolicy { parent: Some(parent_env()), ..Default::default() };
    spec
}

pub fn ctx(workdir: &Path, timeout: Duration) -> DispatchContext {
    DispatchContext::new(workdir, timeout)
}

/// Whether `pid` is gone: no such process, or a zombie nobody has reaped yet (it runs nothing).
pub fn pid_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            matches!(state, Some('Z') | Some('X'))
        }
    }
}

/// Signal delivery is asynchronous: give a killed process a moment to actually die.
pub fn wait_until_gone(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if pid_is_gone(pid) {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("pid file {} not written: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|e| panic!("pid file holds {text:?}: {e}"))
}

/// Kills a test's own stray process by pid if an assertion fails before it is gone.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !pid_is_gone(self.0) {
            let _ = std::process::Command::new("kill").arg("-9").arg(self.0.to_string()).status();
        }
    }
}
