//! `bg-run doctor`: one line per check, non-zero exit if any fails, nothing changed.

mod common;

use common::Sandbox;

#[test]
fn doctor_checks_each_agent_and_fails_on_a_missing_binary() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.file("bg-run.toml"),
        "[agents.good]\ncommand = [\"echo\", \"{title}\"]\n\n[agents.broken]\ncommand = [\"no-such-agent-binary-xyz\"]\n",
    )
    .unwrap();
    let out = sb.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("agent good dispatch")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("FAIL") && l.contains("no-such-agent-binary-xyz")), "{stdout}");
    assert!(stdout.contains("will be created on first use"), "{stdout}");
    assert!(!sb.file(".bg-run").exists(), "doctor must not create the database");

    let out = sb.run(&["doctor", "--agents", "good"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn doctor_reports_a_broken_config() {
    let sb = Sandbox::new();
    std::fs::write(sb.file("bg-run.toml"), "[agents.a]\nwat = 1\n").unwrap();
    let out = sb.run(&["doctor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.starts_with("FAIL  config") && stdout.contains("wat"), "{stdout}");
}
