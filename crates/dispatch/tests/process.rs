//! Process supervision: timeouts and cancellation stop the whole process group, nothing the
//! agent started outlives it, and nothing it left behind can hang the worker.

mod common;

use std::time::Duration;

use bg_run_core::{Dispatcher, FailureKind, Task};
use bg_run_dispatch::capture::Stream;
use bg_run_dispatch::env::ResolvedEnv;
use bg_run_dispatch::process::{run_process, Exit, ProcessSpec, Stop};
use bg_run_dispatch::CommandDispatcher;
use common::{ctx, parent_env, read_pid, spec, wait_until_gone, KillOnDrop};

const GONE_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn timeout_terminates_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let mut s =
        spec("sh", &["-c", r#"sleep 300 & echo $! > "$1"; echo started; wait"#, "sh", pidfile.to_str().unwrap()]);
    s.kill_grace = Duration::from_secs(30);
    let out = CommandDispatcher::new(s)
        .unwrap()
        .dispatch(&Task::new("1", "t"), ctx(dir.path(), Duration::from_secs(1)))
        .await;

    let grandchild = read_pid(&pidfile);
    let _cleanup = KillOnDrop(grandchild);
    assert_eq!(out.failure, Some(FailureKind::Timeout), "{out:?}");
    assert_eq!(out.summary, "timed out after 1s; process group killed (SIGTERM)");
    assert_eq!(out.stdout_tail, "started\n");
    assert!(out.duration < Duration::from_secs(30), "SIGTERM was enough, no grace wait: {:?}", out.duration);
    assert!(wait_until_gone(grandchild, GONE_WITHIN), "grandchild {grandchild} survived the timeout");
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let script = r#"trap '' TERM; sleep 300 & echo $! > "$1"; while :; do wait; done"#;
    let mut s = spec("sh", &["-c", script, "sh", pidfile.to_str().unwrap()]);
    s.kill_grace = Duration::from_millis(300);
    let out = CommandDispatcher::new(s)
        .unwrap()
        .dispatch(&Task::new("1", "t"), ctx(dir.path(), Duration::from_secs(1)))
        .await;

    let grandchild = read_pid(&pidfile);
    let _cleanup = KillOnDrop(grandchild);
    assert_eq!(out.failure, Some(FailureKind::Timeout), "{out:?}");
    assert_eq!(out.summary, "timed out after 1s; process group killed (SIGTERM, then SIGKILL after the grace period)");
    assert!(wait_until_gone(grandchild, GONE_WITHIN), "grandchild {grandchild} survived SIGKILL");
}

#[tokio::test]
async fn cancellation_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let s = spec("sh", &["-c", r#"sleep 300 & echo $! > "$1"; wait"#, "sh", pidfile.to_str().unwrap()]);
    let c = ctx(dir.path(), Duration::from_secs(120));
    let cancel = c.cancel.clone();
    let pidfile_seen = pidfile.clone();
    tokio::spawn(async move {
        while !pidfile_seen.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
    });
    let out = CommandDispatcher::new(s).unwrap().dispatch(&Task::new("1", "t"), c).await;

    let grandchild = read_pid(&pidfile);
    let _cleanup = KillOnDrop(grandchild);
    assert_eq!(out.failure, Some(FailureKind::Cancelled), "{out:?}");
    assert!(out.summary.starts_with("cancelled after "), "{}", out.summary);
    assert!(out.summary.ends_with("; process group killed (SIGTERM)"), "{}", out.summary);
    assert!(wait_until_gone(grandchild, GONE_WITHIN), "grandchild {grandchild} survived cancellation");
}

#[tokio::test]
async fn an_already_cancelled_run_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let s = spec("touch", &[marker.to_str().unwrap()]);
    let c = ctx(dir.path(), Duration::from_secs(60));
    c.cancel.cancel();
    let out = CommandDispatcher::new(s).unwrap().dispatch(&Task::new("1", "t"), c).await;
    assert_eq!(out.failure, Some(FailureKind::Cancelled));
    assert_eq!(out.summary, "cancelled before the agent started");
    assert!(!marker.exists());
}

#[tokio::test]
async fn background_processes_left_by_a_finished_agent_are_killed_and_do_not_hold_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    // The background sleep inherits stdout and stderr: reading to EOF would wait 300s for it.
    let script = r#"sleep 300 & echo $! > "$1"; echo done"#;
    let s = spec("sh", &["-c", script, "sh", pidfile.to_str().unwrap()]);
    let out = CommandDispatcher::new(s)
        .unwrap()
        .dispatch(&Task::new("1", "t"), ctx(dir.path(), Duration::from_secs(60)))
        .await;

    let grandchild = read_pid(&pidfile);
    let _cleanup = KillOnDrop(grandchild);
    assert_eq!(out.failure, None, "{out:?}");
    assert_eq!(out.summary, "done");
    assert!(wait_until_gone(grandchild, GONE_WITHIN), "orphan {grandchild} outlived the agent");
}

#[tokio::test]
async fn a_process_that_left_the_group_cannot_hang_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("escaped.pid");
    // setsid puts the child in a new session, out of reach of the group kill, still holding the
    // agent's stdout and stderr.
    let script = r#"setsid sh -c 'echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 300' sh "$1" &
                    while [ ! -s "$1" ]; do sleep 0.01; done; echo finished"#;
    let env = ResolvedEnv::from_vars(parent_env());
    let args = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned(), pidfile.to_str().unwrap().to_owned()];
    let mut p = ProcessSpec::new("sh", args, env);
    p.drain_timeout = Duration::from_millis(200);
    let mut lines = Vec::new();
    let result = run_process(p, &ctx(dir.path(), Duration::from_secs(60)), |stream, line| {
        lines.push((stream, line.to_owned()));
    })
    .await
    .expect("spawned");

    let escaped = read_pid(&pidfile);
    let _cleanup = KillOnDrop(escaped);
    assert_eq!(result.exit, Exit::Code(0));
    assert_eq!(result.stopped, None);
    assert!(!result.output_complete, "the escaped process still holds the pipes");
    assert_eq!(lines, [(Stream::Stdout, "finished".to_owned())]);
}

#[tokio::test]
async fn abandoning_a_run_kills_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    let s = spec("sh", &["-c", r#"sleep 300 & echo $! > "$1"; wait"#, "sh", pidfile.to_str().unwrap()]);
    let d = CommandDispatcher::new(s).unwrap();
    let task = Task::new("1", "t");
    let run = d.dispatch(&task, ctx(dir.path(), Duration::from_secs(120)));
    let watch = async {
        while !pidfile.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        out = run => panic!("the run ended by itself: {out:?}"),
        _ = watch => {}
    }
    // The dispatch future is dropped here, as the worker's backstop does with a stuck dispatcher.
    let grandchild = read_pid(&pidfile);
    let _cleanup = KillOnDrop(grandchild);
    assert!(wait_until_gone(grandchild, GONE_WITHIN), "grandchild {grandchild} survived the abandoned run");
}

#[tokio::test]
async fn stderr_lines_reach_the_callback_and_the_result_describes_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let env = ResolvedEnv::from_vars(parent_env());
    let args = vec!["-c".to_owned(), "echo out; echo err >&2; printf 'no newline' >&2; exit 4".to_owned()];
    let mut lines = Vec::new();
    let result = run_process(ProcessSpec::new("sh", args, env), &ctx(dir.path(), Duration::from_secs(60)), |s, l| {
        lines.push((s, l.to_owned()))
    })
    .await
    .expect("spawned");
    lines.sort_by_key(|(s, _)| *s == Stream::Stderr);
    assert_eq!(
        lines,
        [
            (Stream::Stdout, "out".to_owned()),
            (Stream::Stderr, "err".to_owned()),
            (Stream::Stderr, "no newline".to_owned())
        ]
    );
    assert_eq!(result.exit, Exit::Code(4));
    assert!(!result.success());
    assert_eq!(result.describe(), "agent exited with code 4");
    assert_eq!(result.stderr_tail(), "err\nno newline");
    assert!(result.output_complete);
}

#[tokio::test]
async fn a_zero_timeout_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = ResolvedEnv::from_vars(parent_env());
    let result =
        run_process(ProcessSpec::new("sleep", vec!["300".into()], env), &ctx(dir.path(), Duration::ZERO), |_, _| {})
            .await
            .expect("spawned");
    assert_eq!(result.stopped, Some(Stop::Timeout(Duration::ZERO)));
    assert_eq!(result.exit, Exit::Signal(15));
    assert_eq!(result.describe(), "timed out after 0s; process group killed (SIGTERM)");
}
