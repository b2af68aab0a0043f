//! The fake's data: one repository's issues, comments, labels and accounts, rendered as the REST
//! API documents them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::gate::{Faults, RateLimit};
use super::{IssueSpec, RequestRecord};

/// `author_association` values, as documented for issues and comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Association {
    Owner,
    Member,
    Collaborator,
    Contributor,
    FirstTimeContributor,
    FirstTimer,
    Mannequin,
    None,
}

impl Association {
    pub fn as_str(self) -> &'static str {
        match self {
            Association::Owner => "OWNER",
            Association::Member => "MEMBER",
            Association::Collaborator => "COLLABORATOR",
            Association::Contributor => "CONTRIBUTOR",
            Association::FirstTimeContributor => "FIRST_TIME_CONTRIBUTOR",
            Association::FirstTimer => "FIRST_TIMER",
            Association::Mannequin => "MANNEQUIN",
            Association::None => "NONE",
        }
    }
}

/// An issue as a test sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct IssueView {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub open: bool,
    pub labels: Vec<String>,
    pub author: String,
    pub pull_request: bool,
    pub comments: Vec<CommentView>,
    pub updated_at: DateTime<Utc>,
}

impl IssueView {
    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l.eq_ignore_ascii_case(name))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CommentView {
    pub id: u64,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) struct User {
    pub login: String,
    pub id: u64,
    pub association: Association,
}

pub(super) struct Issue {
    pub number: u64,
    pub id: u64,
    pub title: String,
    pub body: Option<String>,
    pub open: bool,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub author: String,
    pub association: Association,
    pub assignees: Vec<String>,
    pub pull_request: bool,
    pub locked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

pub(super) struct Comment {
    pub id: u64,
    pub issue: u64,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) struct Label {
    pub id: u64,
    pub name: String,
    pub color: String,
}

pub(super) struct State {
    pub base: String,
    pub owner: String,
    pub repo: String,
    pub repo_id: u64,
    pub users: Vec<User>,
    pub tokens: HashMap<String, String>,
    pub issues: BTreeMap<u64, Issue>,
    pub comments: BTreeMap<u64, Comment>,
    /// Comment ids per issue, so listing an issue's comments does not scan every comment.
    by_issue: HashMap<u64, Vec<u64>>,
    pub labels: BTreeMap<String, Label>,
    next_id: u64,
    last_stamp: DateTime<Utc>,
    pub rate: RateLimit,
    pub faults: Faults,
    pub log: Vec<RequestRecord>,
}

/// Errors a handler turns into GitHub's documented error responses.
#[derive(Debug)]
pub(super) enum Problem {
    NotFound,
    LabelMissing,
}

impl State {
    pub fn new(base: String, owner: &str, repo: &str) -> State {
        let mut state = State {
            base,
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            repo_id: 1_296_269,
            users: Vec::new(),
            tokens: HashMap::new(),
            issues: BTreeMap::new(),
            comments: BTreeMap::new(),
            by_issue: HashMap::new(),
            labels: BTreeMap::new(),
            next_id: 1_000,
            last_stamp: DateTime::<Utc>::MIN_UTC,
            rate: RateLimit::new(5000),
            faults: Faults::default(),
            log: Vec::new(),
        };
        state.add_user(owner, Association::Owner);
        state
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Strictly increasing timestamps, so "updated since" and sort order never tie even when a
    /// test creates hundreds of issues within one millisecond.
    fn stamp(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let next = if now > self.last_stamp { now } else { self.last_stamp + chrono::Duration::milliseconds(1) };
        self.last_stamp = next;
        next
    }

    pub fn add_user(&mut self, login: &str, association: Association) -> String {
        if !self.users.iter().any(|u| u.login.eq_ignore_ascii_case(login)) {
            let id = self.next_id();
            self.users.push(User { login: login.to_owned(), id, association });
        }
        let token = format!("ghp_fake{:0>32}", self.tokens.len() + 1);
        self.tokens.insert(token.clone(), login.to_owned());
        token
    }

    pub fn user(&self, login: &str) -> Option<&User> {
        self.users.iter().find(|u| u.login.eq_ignore_ascii_case(login))
    }

    fn ensure_user(&mut self, login: &str, association: Association) {
        if self.user(login).is_none() {
            let id = self.next_id();
            self.users.push(User { login: login.to_owned(), id, association });
        }
    }

    pub fn association_of(&self, login: &str) -> Association {
        self.user(login).map(|u| u.association).unwrap_or(Association::None)
    }

    pub fn is_repo(&self, owner: &str, repo: &str) -> bool {
        owner.eq_ignore_ascii_case(&self.owner) && repo.eq_ignore_ascii_case(&self.repo)
    }

    pub fn numbers(&self) -> Vec<u64> {
        self.issues.keys().copied().collect()
    }

    pub fn open_issue(&mut self, spec: IssueSpec) -> u64 {
        let author = spec.author.unwrap_or_else(|| self.owner.clone());
        self.ensure_user(&author, spec.association);
        self.create_issue(
            &author,
            spec.association,
            spec.title,
            spec.body,
            spec.labels,
            spec.assignees,
            spec.pull_request,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_issue(
        &mut self,
        author: &str,
        association: Association,
        title: String,
        body: Option<String>,
        labels: Vec<String>,
        assignees: Vec<String>,
        pull_request: bool,
    ) -> u64 {
        let number = self.issues.keys().next_back().copied().unwrap_or(0) + 1;
        let id = self.next_id();
        let now = self.stamp();
        let mut issue = Issue {
            number,
            id,
            title,
            body,
            open: true,
            state_reason: None,
            labels: Vec::new(),
            author: author.to_owned(),
            association,
            assignees,
            pull_request,
            locked: false,
            created_at: now,
            updated_at: now,
            closed_at: None,
        };
        for label in labels {
            let name = self.ensure_label(&label);
            if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
                issue.labels.push(name);
            }
        }
        self.issues.insert(number, issue);
        number
    }

    /// The repository's label of that name (matched case-insensitively), created if missing,
    /// as adding a label to an issue does.
    fn ensure_label(&mut self, name: &str) -> String {
        let key = name.to_lowercase();
        if let Some(label) = self.labels.get(&key) {
            return label.name.clone();
        }
        let id = self.next_id();
        self.labels.insert(key, Label { id, name: name.to_owned(), color: "ededed".to_owned() });
        name.to_owned()
    }

    pub fn issue_mut(&mut self, number: u64) -> Result<&mut Issue, Problem> {
        self.issues.get_mut(&number).ok_or(Problem::NotFound)
    }

    pub fn touch(&mut self, number: u64) {
        let now = self.stamp();
        if let Some(issue) = self.issues.get_mut(&number) {
            issue.updated_at = now;
        }
    }

    pub fn add_labels(&mut self, number: u64, labels: &[String]) -> Result<(), Problem> {
        if !self.issues.contains_key(&number) {
            return Err(Problem::NotFound);
        }
        let mut changed = false;
        for label in labels {
            let name = self.ensure_label(label);
            let issue = self.issue_mut(number)?;
            if !issue.labels.iter().any(|l| l.eq_ignore_ascii_case(&name)) {
                issue.labels.push(name);
                changed = true;
            }
        }
        if changed {
            self.touch(number);
        }
        Ok(())
    }

    pub fn remove_label(&mut self, number: u64, label: &str) -> Result<bool, Problem> {
        let issue = self.issue_mut(number)?;
        let before = issue.labels.len();
        issue.labels.retain(|l| !l.eq_ignore_ascii_case(label));
        let removed = issue.labels.len() != before;
        if removed {
            self.touch(number);
        }
        Ok(removed)
    }

    pub fn set_open(&mut self, number: u64, open: bool) -> Result<(), Problem> {
        let now = self.stamp();
        let issue = self.issue_mut(number)?;
        if issue.open != open {
            issue.open = open;
            issue.closed_at = if open { None } else { Some(now) };
            issue.state_reason = Some(if open { "reopened" } else { "completed" }.to_owned());
            issue.updated_at = now;
        }
        Ok(())
    }

    pub fn add_comment_as(
        &mut self,
        number: u64,
        login: &str,
        association: Association,
        body: &str,
    ) -> Result<u64, Problem> {
        self.ensure_user(login, association);
        self.add_comment(number, login, body)
    }

    pub fn add_comment(&mut self, number: u64, login: &str, body: &str) -> Result<u64, Problem> {
        if !self.issues.contains_key(&number) {
            return Err(Problem::NotFound);
        }
        let id = self.next_id();
        let now = self.stamp();
        self.by_issue.entry(number).or_default().push(id);
        self.comments.insert(
            id,
            Comment {
                id,
                issue: number,
                author: login.to_owned(),
                body: body.to_owned(),
                created_at: now,
                updated_at: now,
            },
        );
        self.touch(number);
        Ok(id)
    }

    pub fn update_comment(&mut self, id: u64, body: &str) -> Result<(), Problem> {
        let now = self.stamp();
        let comment = self.comments.get_mut(&id).ok_or(Problem::NotFound)?;
        comment.body = body.to_owned();
        comment.updated_at = now;
        Ok(())
    }

    pub fn comments_of(&self, number: u64) -> Vec<&Comment> {
        let ids = self.by_issue.get(&number).map(Vec::as_slice).unwrap_or_default();
        ids.iter().filter_map(|id| self.comments.get(id)).collect()
    }

    pub fn comment_count(&self, number: u64) -> usize {
        self.by_issue.get(&number).map(Vec::len).unwrap_or(0)
    }

    pub fn view(&self, number: u64) -> Option<IssueView> {
        let issue = self.issues.get(&number)?;
        Some(IssueView {
            number,
            title: issue.title.clone(),
            body: issue.body.clone(),
            open: issue.open,
            labels: issue.labels.clone(),
            author: issue.author.clone(),
            pull_request: issue.pull_request,
            comments: self
                .comments_of(number)
                .into_iter()
                .map(|c| CommentView {
                    id: c.id,
                    author: c.author.clone(),
                    body: c.body.clone(),
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                })
                .collect(),
            updated_at: issue.updated_at,
        })
    }

    // ---- JSON, with the fields the REST reference documents ----

    fn repo_api(&self) -> String {
        format!("{}/repos/{}/{}", self.base, self.owner, self.repo)
    }

    fn html_repo(&self) -> String {
        format!("{}/{}/{}", self.base, self.owner, self.repo)
    }

    pub fn user_json(&self, login: &str) -> Value {
        let (login, id) = match self.user(login) {
            Some(u) => (u.login.clone(), u.id),
            None => (login.to_owned(), 0),
        };
        let api = format!("{}/users/{login}", self.base);
        let kind = if login.ends_with("[bot]") { "Bot" } else { "User" };
        json!({
            "login": login,
            "id": id,
            "node_id": format!("MDQ6VXNlcj{id}"),
            "avatar_url": format!("{}/avatars/u/{id}", self.base),
            "gravatar_id": "",
            "url": api,
            "html_url": format!("{}/{login}", self.base),
            "followers_url": format!("{api}/followers"),
            "following_url": format!("{api}/following{{/other_user}}"),
            "gists_url": format!("{api}/gists{{/gist_id}}"),
            "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/subscriptions"),
            "organizations_url": format!("{api}/orgs"),
            "repos_url": format!("{api}/repos"),
            "events_url": format!("{api}/events{{/privacy}}"),
            "received_events_url": format!("{api}/received_events"),
            "type": kind,
            "site_admin": false,
        })
    }

    pub fn label_json(&self, name: &str) -> Value {
        let label = self.labels.get(&name.to_lowercase());
        let (id, name, color) = match label {
            Some(l) => (l.id, l.name.clone(), l.color.clone()),
            None => (0, name.to_owned(), "ededed".to_owned()),
        };
        json!({
            "id": id,
            "node_id": format!("MDU6TGFiZW{id}"),
            "url": format!("{}/labels/{}", self.repo_api(), encode_path_segment(&name)),
            "name": name,
            "description": Value::Null,
            "color": color,
            "default": false,
        })
    }

    pub fn labels_json(&self, number: u64) -> Value {
        let labels = self.issues.get(&number).map(|i| i.labels.clone()).unwrap_or_default();
        Value::Array(labels.iter().map(|l| self.label_json(l)).collect())
    }

    pub fn issue_json(&self, issue: &Issue) -> Value {
        let api = format!("{}/issues/{}", self.repo_api(), issue.number);
        let comments = self.comment_count(issue.number);
        let assignees: Vec<Value> = issue.assignees.iter().map(|a| self.user_json(a)).collect();
        let mut value = json!({
            "id": issue.id,
            "node_id": format!("MDU6SXNzdWU{}", issue.id),
            "url": api,
            "repository_url": self.repo_api(),
            "labels_url": format!("{api}/labels{{/name}}"),
            "comments_url": format!("{api}/comments"),
            "events_url": format!("{api}/events"),
            "html_url": format!("{}/{}/{}", self.html_repo(), if issue.pull_request { "pull" } else { "issues" }, issue.number),
            "number": issue.number,
            "state": if issue.open { "open" } else { "closed" },
            "state_reason": issue.state_reason,
            "title": issue.title,
            "body": issue.body,
            "user": self.user_json(&issue.author),
            "labels": issue.labels.iter().map(|l| self.label_json(l)).collect::<Vec<_>>(),
            "assignee": assignees.first().cloned().unwrap_or(Value::Null),
            "assignees": assignees,
            "milestone": Value::Null,
            "locked": issue.locked,
            "active_lock_reason": Value::Null,
            "comments": comments,
            "closed_at": issue.closed_at.map(ts),
            "created_at": ts(issue.created_at),
            "updated_at": ts(issue.updated_at),
            "closed_by": Value::Null,
            "author_association": issue.association.as_str(),
            "reactions": reactions(&api),
        });
        if issue.pull_request {
            let html = format!("{}/pull/{}", self.html_repo(), issue.number);
            value["pull_request"] = json!({
                "url": format!("{}/pulls/{}", self.repo_api(), issue.number),
                "html_url": html,
                "diff_url": format!("{html}.diff"),
                "patch_url": format!("{html}.patch"),
                "merged_at": Value::Null,
            });
            value["draft"] = json!(false);
        }
        value
    }

    pub fn comment_json(&self, comment: &Comment) -> Value {
        let api = format!("{}/issues/comments/{}", self.repo_api(), comment.id);
        json!({
            "id": comment.id,
            "node_id": format!("MDEyOklzc3VlQ29tbWVudD{}", comment.id),
            "url": api,
            "html_url": format!("{}/issues/{}#issuecomment-{}", self.html_repo(), comment.issue, comment.id),
            "issue_url": format!("{}/issues/{}", self.repo_api(), comment.issue),
            "body": comment.body,
            "user": self.user_json(&comment.author),
            "created_at": ts(comment.created_at),
            "updated_at": ts(comment.updated_at),
            "author_association": self.association_of(&comment.author).as_str(),
            "performed_via_github_app": Value::Null,
            "reactions": reactions(&api),
        })
    }

    pub fn repo_json(&self) -> Value {
        json!({
            "id": self.repo_id,
            "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", self.repo_id),
            "name": self.repo,
            "full_name": format!("{}/{}", self.owner, self.repo),
            "private": false,
            "owner": self.user_json(&self.owner),
            "html_url": self.html_repo(),
            "url": self.repo_api(),
            "issues_url": format!("{}/issues{{/number}}", self.repo_api()),
            "labels_url": format!("{}/labels{{/name}}", self.repo_api()),
            "default_branch": "main",
            "has_issues": true,
            "open_issues_count": self.issues.values().filter(|i| i.open).count(),
        })
    }
}

fn reactions(api: &str) -> Value {
    json!({
        "url": format!("{api}/reactions"),
        "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
        "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
    })
}

/// ISO 8601 in UTC with a `Z`, to the second, as GitHub writes timestamps.
pub(super) fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub(super) fn encode_path_segment(text: &str) -> String {
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
