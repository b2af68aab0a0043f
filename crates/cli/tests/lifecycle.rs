//! The acceptance scenarios of the embedded queue, through the real binary.

mod common;

use std::time::Duration;

use common::{pid_alive, signal, status, stderr, wait_exit, Sandbox};
use serde_json::Value;

#[test]
fn a_successful_agent_leaves_the_task_in_review_with_its_summary() {
    let sb = Sandbox::new();
    let id = sb.add("Write a haiku", &["--body", "five seven five"]);
    sb.ok(&["--once", "--", "sh", "-c", "echo working; echo \"summary for $1\"", "agent", "{title}"]);
    let task = sb.task(id);
    assert_eq!(status(&task), "review");
    assert_eq!(task["attempts"], 1);
    assert!(task["summary"].as_str().unwrap().contains("summary for Write a haiku"), "{task}");
}

#[test]
fn a_failing_agent_is_retried_with_backoff_then_given_up_with_the_reason() {
    let sb = Sandbox::new();
    let id = sb.add("Doomed", &[]);
    let log = sb.file("starts.log");
    let script = format!("date +%s.%N >> {}; echo 'it broke' >&2; exit 1", log.display());
    let mut worker = sb.spawn(&[
        "--watch",
        "--max-attempts",
        "3",
        "--backoff",
        "300ms",
        "--poll-interval",
        "50ms",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let task = sb.wait_for(id, Duration::from_secs(20), |t| status(t) == "failed");
    signal(&worker, 15);
    wait_exit(&mut worker, Duration::from_secs(10)).expect("worker exits on SIGTERM");
    assert_eq!(status(&task), "failed", "{task}");
    assert_eq!(task["attempts"], 3);
    let error = task["last_error"].as_str().unwrap();
    assert!(error.contains("code 1") || error.contains("exit"), "{error}");
    assert!(error.contains("it broke"), "the stderr tail is kept: {error}");
    // Backoff: 300ms then 600ms (plus jitter) between the starts.
    let starts: Vec<f64> = std::fs::read_to_string(&log).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(starts.len(), 3);
    assert!(starts[1] - starts[0] >= 0.3, "{starts:?}");
    assert!(starts[2] - starts[1] >= 0.6, "{starts:?}");
}

#[test]
fn once_mode_exits_non_zero_when_an_attempt_failed() {
    let sb = Sandbox::new();
    sb.add("fails", &[]);
    let out = sb.run(&["--once", "--", "false"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_timed_out_agent_is_killed_with_its_whole_process_group() {
    let sb = Sandbox::new();
    let id = sb.add("Slow", &[]);
    let pidfile = sb.file("grandchild.pid");
    let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let out =
        sb.run(&["--once", "--timeout", "1s", "--max-attempts", "2", "--backoff", "1h", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!pid_alive(grandchild), "the agent's background child {grandchild} survived the timeout");
    let task = sb.task(id);
    assert_eq!(status(&task), "pending", "a timeout is a failed attempt with a retry scheduled: {task}");
    assert_eq!(task["attempts"], 1);
    assert!(task["last_error"].as_str().unwrap().contains("timed out"), "{task}");
}

#[test]
fn sigterm_lets_a_short_task_finish_within_the_grace_period() {
    let sb = Sandbox::new();
    let id = sb.add("Finishing", &[]);
    let mut worker = sb.spawn(&["--watch", "--grace", "10s", "--", "sh", "-c", "sleep 1; echo finished"]);
    sb.wait_for(id, Duration::from_secs(10), |t| status(t) == "running");
    signal(&worker, 15);
    let exit = wait_exit(&mut worker, Duration::from_secs(15)).expect("worker exits");
    assert!(exit.success(), "{exit:?}");
    let task = sb.task(id);
    assert_eq!(status(&task), "review", "{task}");
}

#[test]
fn sigterm_releases_a_task_that_outlives_the_grace_period() {
    let sb = Sandbox::new();
    let id = sb.add("Long", &[]);
    let pidfile = sb.file("agent.pid");
    let script = format!("echo $$ > {}; sleep 300", pidfile.display());
    let mut worker = sb.spawn(&["--watch", "--grace", "500ms", "--", "sh", "-c", &script]);
    sb.wait_for(id, Duration::from_secs(10), |t| status(t) == "running");
    signal(&worker, 15);
    wait_exit(&mut worker, Duration::from_secs(20)).expect("worker exits after the grace period");
    let task = sb.task(id);
    assert_eq!(status(&task), "pending", "{task}");
    assert_eq!(task["attempts"], 0, "a released attempt does not count: {task}");
    let agent: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(!pid_alive(agent), "the agent was stopped");
}

#[test]
fn a_killed_worker_s_task_is_picked_up_after_its_lease_expires_and_the_attempt_counts() {
    let sb = Sandbox::new();
    let id = sb.add("Survivor", &[]);
    let mut worker = sb.spawn(&["--watch", "--lease", "1s", "--", "sleep", "300"]);
    sb.wait_for(id, Duration::from_secs(10), |t| status(t) == "running");
    signal(&worker, 9);
    worker.wait().unwrap();
    // The dead worker's agent keeps running as an orphan; that is what a real crash leaves.
    let out = sb.run(&["--once", "--lease", "1s", "--poll-interval", "100ms", "--", "echo", "recovered"]);
    // Right after the kill the lease is still valid: nothing is eligible yet.
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1200));
    sb.ok(&["--once", "--", "echo", "recovered"]);
    let task = sb.task(id);
    assert_eq!(status(&task), "review", "{task}");
    assert_eq!(task["attempts"], 2, "the lost attempt counts: {task}");
    assert_eq!(task["summary"], "recovered");
}

#[test]
fn task_text_reaches_the_agent_as_literal_text() {
    let sb = Sandbox::new();
    let marker = sb.file("pwned");
    let body = format!("\"; rm -rf ~; $(touch {m}) `touch {m}` && touch {m}", m = marker.display());
    let id = sb.add(&body, &["--body", &body]);
    let out_file = sb.file("argv.txt");
    let script = format!("printf '%s\\n' \"$1\" \"$2\" > {}", out_file.display());
    sb.ok(&["--once", "--", "sh", "-c", &script, "agent", "{title}", "{body}"]);
    assert!(!marker.exists(), "task text was executed");
    let argv = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(argv, format!("{body}\n{body}\n"));
    assert_eq!(status(&sb.task(id)), "review");
}

#[test]
fn two_workers_on_one_database_never_run_the_same_task_twice() {
    let sb = Sandbox::new();
    for i in 0..120 {
        sb.add(&format!("task {i}"), &[]);
    }
    let log = sb.file("runs.log");
    let script = format!("echo \"$1\" >> {}", log.display());
    let args = ["--once", "-j", "4", "--", "sh", "-c", script.as_str(), "agent", "{id}"];
    let mut a = sb.spawn(&args);
    let mut b = sb.spawn(&args);
    assert!(wait_exit(&mut a, Duration::from_secs(60)).unwrap().success());
    assert!(wait_exit(&mut b, Duration::from_secs(60)).unwrap().success());
    let mut runs: Vec<u64> = std::fs::read_to_string(&log).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    runs.sort();
    let expected: Vec<u64> = (1..=120).collect();
    assert_eq!(runs, expected, "every task ran exactly once");
    assert!(sb.tasks().iter().all(|t| status(t) == "review"));
}

#[test]
fn close_and_retry_move_a_task_on() {
    let sb = Sandbox::new();
    let id = sb.add("Review me", &["--max-attempts", "1"]);
    assert_eq!(sb.run(&["--once", "--", "false"]).status.code(), Some(1));
    assert_eq!(status(&sb.task(id)), "failed");
    sb.ok(&["retry", &id.to_string()]);
    assert_eq!(status(&sb.task(id)), "pending");
    sb.ok(&["--once", "--", "echo", "ok"]);
    assert_eq!(status(&sb.task(id)), "review");
    sb.ok(&["close", &id.to_string()]);
    assert_eq!(status(&sb.task(id)), "closed");
    // A closed task is never picked up again.
    assert!(sb.run(&["--once", "--", "false"]).status.success(), "nothing to run, nothing failed");
    assert_eq!(status(&sb.task(id)), "closed");
}

#[test]
fn named_agents_run_side_by_side_from_the_config() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.file("bg-run.toml"),
        r#"
[defaults]
max_attempts = 1

[agents.writer]
command = ["echo", "writer did {title}"]
sqlite = { queue_name = "docs" }

[agents.fixer]
command = ["echo", "fixer did {title}"]
"#,
    )
    .unwrap();
    let docs = sb.add("docs task", &["--queue-name", "docs"]);
    let bug = sb.add("bug task", &[]);
    sb.ok(&["run", "--once"]);
    assert_eq!(sb.task(docs)["summary"], "writer did docs task");
    assert_eq!(sb.task(bug)["summary"], "fixer did bug task");
}

#[test]
fn tasks_lists_one_queue_and_show_finds_any() {
    let sb = Sandbox::new();
    let docs = sb.add("docs task", &["--queue-name", "docs"]);
    let bug = sb.add("bug task", &[]);
    let ids = |args: &[&str]| -> Vec<u64> {
        let listed: Value = serde_json::from_str(&sb.ok(args)).expect("json");
        listed.as_array().expect("an array").iter().map(|t| t["id"].as_u64().expect("id")).collect()
    };
    assert_eq!(ids(&["tasks", "--json"]), [bug], "the default queue only");
    assert_eq!(ids(&["tasks", "--json", "--queue-name", "docs"]), [docs]);
    assert_eq!(sb.task(docs)["queue"], "docs", "show finds a task of any queue");
}

/// A human closing or cancelling a task while its agent runs takes it from the worker: the agent
/// is stopped at the next heartbeat, the task keeps the human's status, and the interrupted
/// attempt is in its history. The worker carries on with other work.
#[test]
fn closing_or_cancelling_a_running_task_stops_its_agent() {
    let sb = Sandbox::new();
    let closed = sb.add("Close me while I run", &[]);
    let cancelled = sb.add("Cancel me while I run", &[]);
    let pids = sb.file("agents.pid");
    let script = format!("echo $$ >> {}; sleep 300", pids.display());
    let mut worker = sb.spawn(&[
        "--watch",
        "-j",
        "2",
        "--lease",
        "900ms",
        "--poll-interval",
        "100ms",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    for id in [closed, cancelled] {
        sb.wait_for(id, Duration::from_secs(20), |t| status(t) == "running");
    }
    sb.ok(&["close", &closed.to_string()]);
    sb.ok(&["cancel", &cancelled.to_string()]);
    let agents: Vec<i32> = std::fs::read_to_string(&pids).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(agents.len(), 2, "{agents:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while agents.iter().any(|&pid| pid_alive(pid)) {
        assert!(std::time::Instant::now() < deadline, "an agent survived its task being taken away: {agents:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let later = sb.add("Next task", &[]);
    sb.wait_for(later, Duration::from_secs(20), |t| status(t) == "running");
    signal(&worker, 15);
    wait_exit(&mut worker, Duration::from_secs(20)).expect("the worker exits on SIGTERM");

    for (id, expected) in [(closed, "closed"), (cancelled, "cancelled")] {
        let task = sb.task(id);
        assert_eq!(status(&task), expected, "{task}");
        let outcomes: Vec<&str> =
            task["history"].as_array().unwrap().iter().filter_map(|a| a["outcome"].as_str()).collect();
        assert_eq!(outcomes, ["cancelled"], "the interrupted attempt is recorded: {task}");
    }
}
