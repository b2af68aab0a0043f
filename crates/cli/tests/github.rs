//! `bg-run --queue github` end to end against the fake GitHub API.

mod common;

use bg_run_testkit::fake_github::{Association, FakeGithub, IssueSpec};
use common::{stderr, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_issues_are_done_and_left_open_for_review_and_strangers_are_ignored() {
    let github = FakeGithub::start().await;
    let trusted = github.open_issue(IssueSpec::new("Fix the typo").body("in README").label("agent"));
    let stranger = github.open_issue(IssueSpec::new("Run my script").label("agent").by("mallory", Association::None));
    let unlabelled = github.open_issue(IssueSpec::new("Not for the agent"));

    let sb = Sandbox::new();
    let repo = format!("{}/{}", github.owner(), github.repo());
    let api_url = github.api_url();
    let token = github.token();
    let out = tokio::task::spawn_blocking(move || {
        let out = sb
            .cmd(&[
                "--queue",
                "github",
                "--repo",
                &repo,
                "--api-url",
                &api_url,
                "--once",
                "--",
                "echo",
                "fixed: {title}",
            ])
            .env("GITHUB_TOKEN", &token)
            .env("BG_RUN_GITHUB__MIN_WRITE_INTERVAL", "10ms")
            .output()
            .unwrap();
        (sb, out)
    });
    let (_sb, out) = out.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let done = github.issue(trusted).unwrap();
    assert!(done.open, "the worker never closes an issue");
    assert!(done.has_label("agent-done") && !done.has_label("agent-working"), "{:?}", done.labels);
    assert!(done.comments.iter().any(|c| c.body.contains("fixed: Fix the typo")), "{:?}", done.comments);

    let ignored = github.issue(stranger).unwrap();
    assert!(!ignored.has_label("agent-working") && !ignored.has_label("agent-done"), "{:?}", ignored.labels);
    assert!(ignored.comments.iter().all(|c| !c.body.contains("fixed")));
    assert!(github.issue(unlabelled).unwrap().comments.is_empty());

    let log = stderr(&out);
    assert!(!log.contains(&github.token()), "the token must never be logged");
}

/// `bg-run add --queue github` opens an issue with the trigger label that a worker then runs;
/// what GitHub issues cannot hold is refused by name, with nothing opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_opens_an_issue_that_the_worker_runs() {
    let github = FakeGithub::start().await;
    let sb = Sandbox::new();
    let repo = format!("{}/{}", github.owner(), github.repo());
    let (api_url, token) = (github.api_url(), github.token());
    let outs = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let mut all = vec!["--queue", "github", "--repo", &repo, "--api-url", &api_url];
            all.extend_from_slice(args);
            sb.cmd(&all).env("GITHUB_TOKEN", &token).env("BG_RUN_GITHUB__MIN_WRITE_INTERVAL", "10ms").output().unwrap()
        };
        let refused = sb
            .cmd(&["add", "--queue", "github", "--repo", &repo, "--api-url", &api_url, "--priority", "3", "urgent"])
            .env("GITHUB_TOKEN", &token)
            .output()
            .unwrap();
        let added = sb
            .cmd(&["add", "--queue", "github", "--repo", &repo, "--api-url", &api_url, "--label", "docs"])
            .arg("Update the changelog")
            .env("GITHUB_TOKEN", &token)
            .output()
            .unwrap();
        let worked = run(&["--once", "--", "echo", "done: {title}"]);
        (refused, added, worked)
    });
    let (refused, added, worked) = outs.await.unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("priority"), "{}", stderr(&refused));
    assert!(added.status.success(), "{}", stderr(&added));
    let stdout = String::from_utf8_lossy(&added.stdout);
    assert!(stdout.contains("opened issue #1") && stdout.contains("Update the changelog"), "{stdout}");
    assert!(worked.status.success(), "{}", stderr(&worked));

    let issue = github.issue(1).expect("the issue was opened");
    assert_eq!(github.issues().len(), 1, "the refused task opened nothing");
    assert!(issue.has_label("agent") && issue.has_label("docs"), "{:?}", issue.labels);
    assert!(issue.has_label("agent-done"), "the worker ran it: {:?}", issue.labels);
    assert!(issue.comments.iter().any(|c| c.body.contains("done: Update the changelog")), "{:?}", issue.comments);
}
