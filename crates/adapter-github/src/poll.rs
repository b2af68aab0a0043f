//! Finding work: list the open issues with the trigger label page by page (conditional requests,
//! so an unchanged page costs no rate limit), read each candidate's history from its comments,
//! and turn the eligible ones into tasks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bg_run_core::{Author, Error, Result, Task};
use chrono::Utc;
use serde_json::json;

use crate::client::{Fetched, Reply};
use crate::history::{verdict, History, Verdict};
use crate::markers::{MarkState, Marker};
use crate::model::{CommentInfo, IssueInfo};
use crate::queue::Core;

/// One page of a listing as last fetched, kept to answer a 304.
struct CachedPage<T> {
    etag: String,
    items: Arc<Vec<T>>,
    next: Option<String>,
}

/// Pages by URL. Entries are small (parsed, not raw JSON) so an idle worker stays lean.
pub(crate) struct PageCache<T> {
    pages: Mutex<HashMap<String, CachedPage<T>>>,
}

impl<T> Default for PageCache<T> {
    fn default() -> Self {
        PageCache { pages: Mutex::new(HashMap::new()) }
    }
}

impl<T> PageCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedPage<T>>> {
        self.pages.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops every cached page whose URL starts with `prefix`.
    pub fn forget(&self, prefix: &str) {
        self.lock().retain(|url, _| !url.starts_with(prefix));
    }
}

impl Core {
    /// Every item of a paginated listing, following `Link: rel="next"`.
    async fn fetch_all<T: Clone>(
        &self,
        first: String,
        cache: &PageCache<T>,
        parse: fn(&Reply) -> Result<Vec<T>>,
        what: &str,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut url = Some(first);
        let mut pages = 0;
        while let Some(current) = url.take() {
            pages += 1;
            if pages > 1_000 {
                return Err(crate::client::backend(format!("{what}: more than 1000 pages; giving up"), false));
            }
            let etag = cache.lock().get(&current).map(|p| p.etag.clone());
            let (items, next) = match self.http.get_if_changed(&current, etag.as_deref()).await? {
                Fetched::NotModified => match cache.lock().get(&current) {
                    Some(page) => (page.items.clone(), page.next.clone()),
                    None => return Err(crate::client::backend(format!("{what}: 304 for a page never fetched"), true)),
                },
                Fetched::Fresh(reply) => {
                    let reply = reply.ok(what)?;
                    let items = Arc::new(parse(&reply)?);
                    let next = reply.next_page();
                    if let Some(etag) = reply.etag() {
                        cache
                            .lock()
                            .insert(current.clone(), CachedPage { etag, items: items.clone(), next: next.clone() });
                    }
                    (items, next)
                }
            };
            all.extend(items.iter().cloned());
            url = next;
        }
        Ok(all)
    }

    fn issues_url(&self) -> String {
        let o = &self.options;
        let mut labels = vec![o.trigger_label.clone()];
        labels.extend(o.extra_labels.iter().cloned());
        let labels: Vec<String> = labels.iter().map(|l| encode(l)).collect();
        let mut url = format!(
            "{}/issues?state=open&labels={}&sort=created&direction=asc&per_page={}",
            self.repo_path(),
            labels.join(","),
            o.per_page
        );
        if let Some(assignee) = &o.assignee {
            url.push_str(&format!("&assignee={}", encode(assignee)));
        }
        url
    }

    /// Open issues (and pull requests) with the trigger label, oldest first.
    pub(crate) async fn list_issues(&self) -> Result<Vec<IssueInfo>> {
        let what = format!("issues of {}", self.options.repo);
        self.fetch_all(self.issues_url(), &self.issue_pages, parse_issues, &what).await
    }

    /// All comments of an issue, oldest first.
    pub(crate) async fn comments(&self, number: u64) -> Result<Vec<CommentInfo>> {
        let url = format!("{}/issues/{number}/comments?per_page=100", self.repo_path());
        self.fetch_all(url, &self.comment_pages, parse_comments, &format!("comments of issue #{number}")).await
    }

    pub(crate) async fn history(&self, number: u64) -> Result<(Vec<CommentInfo>, History)> {
        let comments = self.comments(number).await?;
        let history = History::read(&comments, &self.login);
        Ok((comments, history))
    }

    pub(crate) async fn get_issue(&self, number: u64) -> Result<IssueInfo> {
        let what = format!("issue #{number} of {}", self.options.repo);
        let reply = self.http.get(&format!("{}/issues/{number}", self.repo_path())).await?.ok(&what)?;
        reply.json::<IssueInfo>(&what)
    }

    /// Why an issue cannot be a task at all, whatever its history says.
    pub(crate) fn unsuitable(&self, issue: &IssueInfo) -> Option<&'static str> {
        let labels = &self.options.labels;
        if issue.pull_request {
            Some("a pull request")
        } else if !issue.open {
            Some("closed")
        } else if !issue.has_label(&self.options.trigger_label) {
            Some("no trigger label")
        } else if issue.has_label(&labels.done) {
            Some("done")
        } else if issue.has_label(&labels.failed) {
            Some("failed")
        } else if !self.options.trust.trusts(&issue.author, &issue.association) {
            Some("untrusted author")
        } else {
            None
        }
    }

    pub(crate) async fn poll_tasks(&self, max: usize) -> Result<Vec<Task>> {
        let issues = self.list_issues().await?;
        let now = Utc::now();
        let mut tasks = Vec::new();
        for issue in issues {
            if tasks.len() >= max {
                break;
            }
            match self.unsuitable(&issue) {
                None => {}
                Some("untrusted author") => {
                    self.untrusted(&issue).await;
                    continue;
                }
                Some(_) => continue,
            }
            let history = if issue.comments == 0 {
                History::default()
            } else {
                match self.history(issue.number).await {
                    Ok((_, history)) => history,
                    // Deleted or transferred since the listing: simply not a task any more.
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                }
            };
            let working = &self.options.labels.working;
            if let Verdict::Eligible { attempts } = verdict(&issue, &history, working, self.options.stale_after, now) {
                tasks.push(self.task(&issue, attempts, &history, &[]));
            }
        }
        Ok(tasks)
    }

    /// The task for an issue. `comments` are appended to the body when the options ask for it,
    /// from trusted authors only and without the bot's own.
    pub(crate) fn task(&self, issue: &IssueInfo, attempts: u32, history: &History, comments: &[CommentInfo]) -> Task {
        let mut body = issue.body.clone();
        let trust = &self.options.trust;
        let relevant: Vec<&CommentInfo> = comments
            .iter()
            .filter(|c| !c.author.eq_ignore_ascii_case(&self.login))
            .filter(|c| trust.trusts(&c.author, &c.association))
            .filter(|c| Marker::find(&c.body).is_none())
            .collect();
        if self.options.include_comments && !relevant.is_empty() {
            body.push_str("\n\n---\nComments on the issue (from trusted authors):\n");
            for c in relevant {
                body.push_str(&format!(
                    "\n**@{}** ({}):\n{}\n",
                    c.author,
                    c.created_at.format("%Y-%m-%d %H:%M UTC"),
                    c.body.trim()
                ));
            }
        }
        let mut meta = BTreeMap::new();
        meta.insert("repo".to_owned(), self.options.repo.to_string());
        meta.insert("number".to_owned(), issue.number.to_string());
        meta.insert("author_association".to_owned(), issue.association.clone());
        Task {
            id: issue.number.to_string().into(),
            title: issue.title.clone(),
            body,
            url: Some(issue.html_url.clone()),
            labels: issue.labels.clone(),
            author: Some(Author { login: issue.author.clone(), trusted: true }),
            created_at: Some(issue.created_at),
            attempts,
            max_attempts: None,
            last_session_id: history.last_session(),
            meta,
        }
    }

    /// Logs an untrusted issue once per process and, if asked, leaves one notice on it (checked
    /// against the bot's earlier comments, so a restart does not repeat it).
    async fn untrusted(&self, issue: &IssueInfo) {
        let first = self.untrusted_seen.lock().unwrap_or_else(|e| e.into_inner()).insert(issue.number);
        if !first {
            return;
        }
        tracing::info!(
            adapter = "github",
            issue = issue.number,
            author = %issue.author,
            association = %issue.association,
            "skipping issue: its author is not trusted to direct an agent"
        );
        if !self.options.trust.comment_on_untrusted {
            return;
        }
        let notice = async {
            let (_, history) = self.history(issue.number).await?;
            if history.has_untrusted_notice() {
                return Ok(());
            }
            let text = format!(
                "🔒 This issue is not picked up by an agent: its author @{} ({}) is not trusted to direct one in this \
                 repository. A maintainer can restate the work in an issue of their own.",
                issue.author,
                issue.association.to_lowercase().replace('_', " ")
            );
            let marker = Marker::new(MarkState::Untrusted, 0, Utc::now());
            self.post_comment(issue.number, &marker.attach(&text)).await.map(|_| ())
        };
        if let Err(error) = notice.await {
            tracing::warn!(adapter = "github", issue = issue.number, %error, "could not post the untrusted-author notice");
        }
    }

    /// Opens an issue this queue will pick up: the trigger label and the filter's extra labels,
    /// plus the task's own, and the configured assignee. Returns its number.
    pub(crate) async fn open_issue(&self, task: &bg_run_core::NewTask) -> Result<u64> {
        let o = &self.options;
        let mut labels = vec![o.trigger_label.clone()];
        for label in o.extra_labels.iter().chain(&task.labels) {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
        let mut body = json!({ "title": task.title.trim(), "body": task.body, "labels": labels });
        if let Some(assignee) = &o.assignee {
            body["assignees"] = json!([assignee]);
        }
        let what = format!("new issue in {}", o.repo);
        // Not retried on its own: a retry after a lost answer would open a second issue.
        let reply =
            self.http.send(http::Method::POST, &format!("{}/issues", self.repo_path()), Some(&body), false).await?;
        let issue = reply.ok(&what)?.json::<IssueInfo>(&what)?;
        // GitHub silently drops the labels of a new issue when the token's user cannot push to
        // the repository; such an issue would never be picked up.
        if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&o.trigger_label)) {
            return Err(Error::config(format!(
                "GitHub opened issue #{} in {} but dropped its labels: only users with push access can label new issues. \
                 Add the '{}' label to it by hand, or use a token whose user can push to the repository",
                issue.number, o.repo, o.trigger_label
            )));
        }
        Ok(issue.number)
    }

    pub(crate) async fn post_comment(&self, number: u64, body: &str) -> Result<u64> {
        let what = format!("comment on issue #{number}");
        let url = format!("{}/issues/{number}/comments", self.repo_path());
        let reply = self.http.send(http::Method::POST, &url, Some(&json!({ "body": body })), false).await?.ok(&what)?;
        Ok(reply.json::<CommentInfo>(&what)?.id)
    }
}

fn parse_issues(reply: &Reply) -> Result<Vec<IssueInfo>> {
    reply.json("issue list")
}

fn parse_comments(reply: &Reply) -> Result<Vec<CommentInfo>> {
    reply.json("comment list")
}

/// Percent-encodes a query value or path segment (labels may hold spaces, ':' or emoji).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
