//! Fleets of `bg-run` processes on one PostgreSQL: a worker killed with SIGKILL mid-run, and a
//! PostgreSQL restart mid-run. Nothing may be lost, run twice without reason, or left running.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bg_run_core::{NewTask, TaskStore};
use bg_run_postgres::{PostgresOptions, PostgresQueue};
use common::{signal, status, wait_exit, Sandbox};
use serde_json::Value;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether the tests may run: PostgreSQL must answer. Under CI its absence is a failure.
fn reachable(url: &str) -> bool {
    let ok = Command::new("pg_isready").args(["-q", "-d", url]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL at {url} is unreachable (CI requires it)");
        eprintln!("skipping: PostgreSQL at {url} is unreachable");
    }
    ok
}

fn unique_schema(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn drop_schema(url: &str, schema: &str) {
    let _ = Command::new("psql").args(["-q", url, "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")]).output();
}

async fn enqueue(url: &str, schema: &str, n: usize) {
    let queue = PostgresQueue::connect(PostgresOptions::new(url).schema(schema)).await.expect("connect");
    let tasks = (0..n).map(|i| NewTask::new(format!("task {i}"))).collect();
    queue.enqueue_many(tasks).await.expect("enqueue");
}

fn list(sb: &Sandbox, url: &str, schema: &str) -> Vec<Value> {
    let out = sb
        .cmd(&["tasks", "--json", "--queue", "postgres", "--pg-schema", schema])
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_array().cloned().unwrap()
}

fn count_status(tasks: &[Value], wanted: &str) -> usize {
    tasks.iter().filter(|t| status(t) == wanted).count()
}

fn spawn_worker(sb: &Sandbox, url: &str, schema: &str, log: &Path, agent_sleep: &str) -> Child {
    let script = format!("echo \"$1\" >> {}; sleep {agent_sleep}", log.display());
    let args = [
        "--queue",
        "postgres",
        "--pg-schema",
        schema,
        "--watch",
        "-j",
        "4",
        "--lease",
        "2s",
        "--poll-interval",
        "200ms",
        "--backoff",
        "100ms",
        "--max-attempts",
        "5",
        "--",
        "sh",
        "-c",
        &script,
        "agent",
        "{id}",
    ];
    sb.cmd(&args)
        .env("DATABASE_URL", url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    done()
}

fn runs_per_task(log: &Path) -> HashMap<u64, u32> {
    let mut runs = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        *runs.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_one_killed_midway_every_task_reaches_review() {
    let url = database_url();
    if !reachable(&url) {
        return;
    }
    let schema = unique_schema("bg_run_fleet");
    enqueue(&url, &schema, 2000).await;
    let sb = Sandbox::new();

    let (sb, tasks) = tokio::task::spawn_blocking({
        let (url, schema) = (url.clone(), schema.clone());
        move || {
            // One log per worker, so the test can see the victim at work before killing it.
            let logs: Vec<PathBuf> = (0..4).map(|n| sb.file(&format!("runs-{n}.log"))).collect();
            let mut workers: Vec<Child> = logs.iter().map(|log| spawn_worker(&sb, &url, &schema, log, "0.1")).collect();
            assert!(wait_until(Duration::from_secs(120), || count_status(&list(&sb, &url, &schema), "review") >= 300));
            let victim_started = || std::fs::metadata(&logs[0]).map(|m| m.len()).unwrap_or(0);
            let before = victim_started();
            assert!(
                wait_until(Duration::from_secs(30), || victim_started() > before),
                "the victim is not running agents"
            );
            let mut victim = workers.remove(0);
            assert!(victim.try_wait().unwrap().is_none(), "the victim died on its own");
            signal(&victim, 9);
            victim.wait().unwrap();
            let all_reviewed =
                wait_until(Duration::from_secs(180), || count_status(&list(&sb, &url, &schema), "review") == 2000);
            for worker in &workers {
                signal(worker, 15);
            }
            for worker in &mut workers {
                assert!(wait_exit(worker, Duration::from_secs(30)).is_some(), "worker stops on SIGTERM");
            }
            assert!(all_reviewed, "not every task reached review");
            let tasks = list(&sb, &url, &schema);
            (sb, tasks)
        }
    })
    .await
    .unwrap();
    drop_schema(&url, &schema);

    assert_eq!(tasks.len(), 2000);
    assert_eq!(count_status(&tasks, "review"), 2000, "none lost, none left running");
    let runs = (0..4).fold(HashMap::new(), |mut all: HashMap<u64, u32>, n| {
        for (id, count) in runs_per_task(&sb.file(&format!("runs-{n}.log"))) {
            *all.entry(id).or_default() += count;
        }
        all
    });
    let mut rerun = 0;
    for task in &tasks {
        let id = task["id"].as_u64().unwrap();
        let attempts = task["attempts"].as_u64().unwrap() as u32;
        let ran = runs.get(&id).copied().unwrap_or(0);
        assert!(ran >= 1 && ran <= attempts, "task {id}: ran {ran} times in {attempts} attempts");
        if attempts > 1 {
            rerun += 1;
        }
    }
    assert!(rerun >= 1, "the killed worker's in-flight tasks were run again with the attempt counted");
}

/// A PostgreSQL cluster of the test's own, so restarting it disturbs no other test.
struct PrivateCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PrivateCluster {
    fn start() -> Option<PrivateCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file())?;
        let dir = tempfile::tempdir().ok()?;
        let data = dir.path().join("data");
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .ok()?
            .success()
            .then_some(())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let initdb = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .ok()?;
        if !initdb.status.success() {
            eprintln!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
            return None;
        }
        let cluster = PrivateCluster { dir, bin, port };
        cluster.pg_ctl(&["start"]).then_some(cluster)
    }

    fn pg_ctl(&self, action: &[&str]) -> bool {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(action)
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.path().join("data"))
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &options])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.pg_ctl(&["stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_from_a_postgres_restart_and_finish_every_task() {
    if !reachable(&database_url()) {
        return;
    }
    let Some(cluster) = tokio::task::spawn_blocking(PrivateCluster::start).await.unwrap() else {
        assert!(std::env::var_os("CI").is_none(), "could not start a private PostgreSQL cluster (runuser, initdb)");
        eprintln!("skipping: cannot start a private PostgreSQL cluster here");
        return;
    };
    let url = cluster.url();
    enqueue(&url, "bg_run", 300).await;
    let sb = Sandbox::new();
    let log = sb.file("runs.log");
    let (cluster, tasks) = tokio::task::spawn_blocking(move || {
        let mut workers: Vec<Child> = (0..2).map(|_| spawn_worker(&sb, &url, "bg_run", &log, "0.2")).collect();
        assert!(wait_until(Duration::from_secs(60), || count_status(&list(&sb, &url, "bg_run"), "review") >= 60));
        assert!(cluster.pg_ctl(&["restart"]), "pg_ctl restart");
        let finished =
            wait_until(Duration::from_secs(120), || count_status(&list(&sb, &url, "bg_run"), "review") == 300);
        for worker in &workers {
            signal(worker, 15);
        }
        for worker in &mut workers {
            assert!(wait_exit(worker, Duration::from_secs(30)).is_some(), "worker stops on SIGTERM");
        }
        assert!(finished, "the workers did not finish after the restart");
        (cluster, list(&sb, &url, "bg_run"))
    })
    .await
    .unwrap();
    drop(cluster);
    assert_eq!(count_status(&tasks, "review"), 300, "every task reached review");
}

/// A change the task's status refuses names the command to run instead, for the same store.
#[test]
fn a_refused_change_suggests_the_command_for_the_same_store() {
    let url = database_url();
    if !reachable(&url) {
        return;
    }
    let schema = unique_schema("bg_run_cli_hint");
    let sb = Sandbox::new();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--queue", "postgres", "--pg-schema", &schema]);
        sb.cmd(&all).env("DATABASE_URL", &url).output().unwrap()
    };
    assert!(run(&["add", "Review me"]).status.success());
    let worked = sb
        .cmd(&["--once", "--queue", "postgres", "--pg-schema", &schema, "--", "echo", "ok"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(worked.status.success(), "{}", String::from_utf8_lossy(&worked.stderr));
    let refused = run(&["cancel", "1"]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    drop_schema(&url, &schema);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("task 1 is review") && err.contains("close it instead"), "{err}");
    assert!(err.contains(&format!("`bg-run close 1 --queue postgres --pg-schema {schema}`")), "{err}");
}
