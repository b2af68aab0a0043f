//! Bad input gets one clear line naming the problem, a non-zero exit, and changes nothing.

mod common;

use common::{stderr, Sandbox};

/// Runs bg-run expecting failure; returns its stderr.
fn fails(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.run(args);
    assert!(!out.status.success(), "bg-run {args:?} should fail");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn tasks_untouched(sb: &Sandbox) {
    assert!(!sb.file(".bg-run").exists(), "nothing may be created by a failed command");
}

#[test]
fn an_unknown_config_key_is_named() {
    let sb = Sandbox::new();
    std::fs::write(sb.file("bg-run.toml"), "[agents.a]\ncommand = [\"echo\"]\nconcurrenc = 2\n").unwrap();
    let err = fails(&sb, &["run", "--once"]);
    assert!(err.contains("concurrenc"), "{err}");
    tasks_untouched(&sb);
}

#[test]
fn a_wrong_type_is_named() {
    let sb = Sandbox::new();
    std::fs::write(sb.file("bg-run.toml"), "[agents.a]\ncommand = [\"echo\"]\nconcurrency = \"lots\"\n").unwrap();
    let err = fails(&sb, &["run", "--once"]);
    assert!(err.contains("concurrency") || err.contains("lots"), "{err}");
    tasks_untouched(&sb);
}

#[test]
fn a_bad_duration_is_named() {
    let sb = Sandbox::new();
    std::fs::write(sb.file("bg-run.toml"), "[agents.a]\ncommand = [\"echo\"]\ntimeout = \"soon\"\n").unwrap();
    let err = fails(&sb, &["run", "--once"]);
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn a_missing_config_file_is_named() {
    let sb = Sandbox::new();
    let err = fails(&sb, &["--config", "nope.toml", "run"]);
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn an_unknown_agent_lists_the_known_ones() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.file("bg-run.toml"),
        "[agents.alpha]\ncommand = [\"echo\"]\n[agents.beta]\ncommand = [\"echo\"]\n",
    )
    .unwrap();
    let err = fails(&sb, &["run", "--agents", "gamma"]);
    assert!(err.contains("gamma") && err.contains("alpha") && err.contains("beta"), "{err}");
}

#[test]
fn an_unknown_queue_or_dispatcher_is_named() {
    let sb = Sandbox::new();
    let err = fails(&sb, &["--queue", "carrier-pigeon", "--once", "--", "echo"]);
    assert!(err.contains("carrier-pigeon") && err.contains("sqlite"), "{err}");
    let err = fails(&sb, &["--dispatch", "hal9000", "--once", "--", "echo"]);
    assert!(err.contains("hal9000") && err.contains("command"), "{err}");
    tasks_untouched(&sb);
}

#[test]
fn a_missing_agent_command_is_explained() {
    let sb = Sandbox::new();
    let err = fails(&sb, &["--once"]);
    assert!(err.contains("--"), "{err}");
}

#[test]
fn an_unreadable_database_file_is_named_and_left_alone() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.file(".bg-run")).unwrap();
    let db = sb.file(".bg-run/bg-run.db");
    let garbage = b"this is not a database, it is a shopping list\n".repeat(100);
    std::fs::write(&db, &garbage).unwrap();
    let err = fails(&sb, &["tasks"]);
    assert!(err.contains("bg-run.db"), "{err}");
    let err = fails(&sb, &["--once", "--", "echo"]);
    assert!(err.contains("bg-run.db"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the file is unchanged");
}

#[test]
fn an_unknown_task_id_is_named() {
    let sb = Sandbox::new();
    sb.add("exists", &[]);
    let err = fails(&sb, &["show", "999"]);
    assert!(err.contains("999"), "{err}");
    let err = fails(&sb, &["close", "abc"]);
    assert!(err.contains("abc"), "{err}");
}

#[test]
fn a_bad_status_filter_lists_the_valid_ones() {
    let sb = Sandbox::new();
    sb.add("exists", &[]);
    let err = fails(&sb, &["tasks", "--status", "done"]);
    assert!(err.contains("done") && err.contains("review"), "{err}");
}

#[test]
fn an_empty_title_is_rejected() {
    let sb = Sandbox::new();
    let err = fails(&sb, &["add", "  "]);
    assert!(err.contains("title"), "{err}");
    tasks_untouched(&sb);
}

#[test]
fn a_change_the_status_does_not_allow_says_what_to_do_instead() {
    let sb = Sandbox::new();
    let id = sb.add("Review me", &[]).to_string();
    sb.ok(&["--once", "--", "echo", "ok"]);
    let err = fails(&sb, &["cancel", &id]);
    assert!(err.contains(&format!("task {id} is review")) && err.contains(&format!("`bg-run close {id}`")), "{err}");
    assert!(sb.ok(&["close", &id]).contains("closed"));
    assert!(sb.ok(&["close", &id]).contains("closed"), "closing a closed task is fine");
}
