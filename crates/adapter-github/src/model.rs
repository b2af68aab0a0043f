//! The parts of GitHub's issue and comment objects this adapter uses. Lean on purpose: a page of
//! 100 issues is mostly URLs and user profiles nobody here reads, and skipping them keeps each
//! busy poll cheap. (A test checks the fake's full objects against octocrab's models.)

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct LabelName {
    name: String,
}

#[derive(Deserialize)]
struct RawIssue {
    number: u64,
    title: String,
    body: Option<String>,
    state: String,
    #[serde(default)]
    labels: Vec<LabelName>,
    user: Option<Login>,
    author_association: Option<String>,
    pull_request: Option<IgnoredAny>,
    #[serde(default)]
    comments: u32,
    html_url: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

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

impl<'de> Deserialize<'de> for IssueInfo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawIssue::deserialize(deserializer)?;
        Ok(IssueInfo {
            number: raw.number,
            title: raw.title,
            body: raw.body.unwrap_or_default(),
            open: raw.state == "open",
            labels: raw.labels.into_iter().map(|l| l.name).collect(),
            // A deleted account shows as `null`; GitHub calls it "ghost".
            author: raw.user.map(|u| u.login).unwrap_or_else(|| "ghost".to_owned()),
            association: raw.author_association.unwrap_or_else(|| "NONE".to_owned()),
            pull_request: raw.pull_request.is_some(),
            comments: raw.comments,
            html_url: raw.html_url,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
        })
    }
}

#[derive(Deserialize)]
struct RawComment {
    id: u64,
    user: Option<Login>,
    author_association: Option<String>,
    body: Option<String>,
    created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct CommentInfo {
    pub id: u64,
    pub author: String,
    pub association: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl<'de> Deserialize<'de> for CommentInfo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawComment::deserialize(deserializer)?;
        Ok(CommentInfo {
            id: raw.id,
            author: raw.user.map(|u| u.login).unwrap_or_else(|| "ghost".to_owned()),
            association: raw.author_association.unwrap_or_else(|| "NONE".to_owned()),
            body: raw.body.unwrap_or_default(),
            created_at: raw.created_at,
        })
    }
}
