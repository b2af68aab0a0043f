//! The parts of GitHub's issue and comment objects this adapter uses, read through octocrab's
//! models so the field names and types follow its maintained description of the REST schema.

use chrono::{DateTime, Utc};
use octocrab::models::issues::{Comment, Issue};
use octocrab::models::{AuthorAssociation, IssueState};

#[derive(Clone, Debug)]
pub(crate) struct IssueInfo {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub open: bool,
    pub labels: Vec<String>,
    pub author: String,
    pub association: String,
    pub pull_request: bool,
    pub comments: u32,
    pub html_url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl IssueInfo {
    pub fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|l| l.eq_ignore_ascii_case(name))
    }
}

impl From<Issue> for IssueInfo {
    fn from(issue: Issue) -> Self {
        IssueInfo {
            number: issue.number,
            title: issue.title,
            body: issue.body.unwrap_or_default(),
            open: issue.state == IssueState::Open,
            labels: issue.labels.into_iter().map(|l| l.name).collect(),
            author: issue.user.login,
            association: association(issue.author_association.as_ref()),
            pull_request: issue.pull_request.is_some(),
            comments: issue.comments,
            html_url: issue.html_url.to_string(),
            created_at: issue.created_at,
            updated_at: issue.updated_at,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CommentInfo {
    pub id: u64,
    pub author: String,
    pub association: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<Comment> for CommentInfo {
    fn from(comment: Comment) -> Self {
        CommentInfo {
            id: comment.id.into_inner(),
            author: comment.user.login,
            association: association(comment.author_association.as_ref()),
            body: comment.body.unwrap_or_default(),
            created_at: comment.created_at,
        }
    }
}

/// The documented upper-case value (`OWNER`, `NONE` ...); absent means `NONE`.
fn association(value: Option<&AuthorAssociation>) -> String {
    value
        .and_then(|a| serde_json::to_value(a).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "NONE".to_owned())
}
