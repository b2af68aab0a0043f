//! A task's lifecycle as recorded in the bot's own comments, and what it means for eligibility.
//!
//! Labels say what people see and can change (`agent-done`, `agent-failed` end the lifecycle;
//! removing them asks for a fresh run). Markers carry what labels cannot: attempt counts,
//! backoff, and when a claim was last known alive. Only markers in comments written by the
//! token's own account count, so nobody can forge state by pasting a marker into a comment.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::markers::{MarkState, Marker};
use crate::model::{CommentInfo, IssueInfo};

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub comment_id: u64,
    pub marker: Marker,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    /// The bot's markers, oldest first.
    pub entries: Vec<Entry>,
}

impl History {
    pub fn read(comments: &[CommentInfo], own_login: &str) -> History {
        let mut entries: Vec<Entry> = comments
            .iter()
            .filter(|c| c.author.eq_ignore_ascii_case(own_login))
            .filter_map(|c| Marker::find(&c.body).map(|marker| Entry { comment_id: c.id, marker }))
            .collect();
        entries.sort_by_key(|e| e.comment_id);
        History { entries }
    }

    /// The newest marker that says something about the lifecycle.
    pub fn latest(&self) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.marker.state.is_lifecycle())
    }

    pub fn has_untrusted_notice(&self) -> bool {
        self.entries.iter().any(|e| e.marker.state == MarkState::Untrusted)
    }

    /// The first claim posted after comment `after`: of two racing claims, it is the one that holds.
    pub fn first_claim_after(&self, after: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.comment_id > after && e.marker.state == MarkState::Working)
    }

    /// The agent session of the last failed attempt of the current run, for resuming it.
    pub fn last_session(&self) -> Option<String> {
        for entry in self.entries.iter().rev().filter(|e| e.marker.state.is_lifecycle()) {
            match entry.marker.state {
                MarkState::Done | MarkState::Failed => return None,
                _ if entry.marker.session.is_some() => return entry.marker.session.clone(),
                _ => {}
            }
        }
        None
    }
}

/// Whether an open, trusted, not done and not failed issue may be claimed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Claimable; `attempts` already counted against it.
    Eligible { attempts: u32 },
    /// A live claim holds it.
    Held,
    /// Backing off after a failed attempt.
    Waiting { until: DateTime<Utc> },
}

pub(crate) fn verdict(
    issue: &IssueInfo,
    history: &History,
    working_label: &str,
    stale_after: Duration,
    now: DateTime<Utc>,
) -> Verdict {
    let stale_after = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    let Some(latest) = history.latest() else {
        // A working label without the bot's claim marker: a claim that died between labelling and
        // commenting, or one made by another account. Respect it until it goes stale.
        if issue.has_label(working_label) && now - issue.updated_at < stale_after {
            return Verdict::Held;
        }
        return Verdict::Eligible { attempts: 0 };
    };
    let marker = &latest.marker;
    if marker.state != MarkState::Working && issue.has_label(working_label) && now - marker.at < stale_after {
        // The report is posted but its worker has not yet taken `agent-working` off: it is still
        // finishing. (If it died there, the claim goes stale like any other.)
        return Verdict::Held;
    }
    match marker.state {
        MarkState::Working if now - marker.at < stale_after => Verdict::Held,
        // The claimant stopped refreshing its claim: it died, and its attempt counts.
        MarkState::Working => Verdict::Eligible { attempts: marker.attempt },
        MarkState::Retry => match marker.retry_at {
            Some(until) if until > now => Verdict::Waiting { until },
            _ => Verdict::Eligible { attempts: marker.attempt },
        },
        MarkState::Released => Verdict::Eligible { attempts: marker.attempt },
        // The done or failed label was removed by a person: a fresh run was asked for.
        MarkState::Done | MarkState::Failed => Verdict::Eligible { attempts: 0 },
        MarkState::Superseded | MarkState::Untrusted => Verdict::Eligible { attempts: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(labels: &[&str], updated_at: DateTime<Utc>) -> IssueInfo {
        IssueInfo {
            number: 1,
            title: "t".into(),
            body: String::new(),
            open: true,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            author: "alice".into(),
            association: "OWNER".into(),
            pull_request: false,
            comments: 0,
            html_url: String::new(),
            created_at: updated_at,
            updated_at,
        }
    }

    fn comment(id: u64, author: &str, marker: &Marker) -> CommentInfo {
        CommentInfo {
            id,
            author: author.into(),
            association: "NONE".into(),
            body: marker.attach("text"),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn markers_by_others_do_not_count() {
        let now = Utc::now();
        let forged = Marker::new(MarkState::Done, 3, now);
        let history = History::read(&[comment(5, "mallory", &forged)], "bot");
        assert!(history.latest().is_none());
        let own = History::read(&[comment(5, "BOT", &forged)], "bot");
        assert_eq!(own.latest().unwrap().marker.attempt, 3);
    }

    #[test]
    fn verdicts_follow_the_latest_marker() {
        let now = Utc::now();
        let stale = Duration::from_secs(60);
        let fresh = issue(&["agent"], now);
        let at = |state, attempt, secs_ago: i64| Marker::new(state, attempt, now - chrono::Duration::seconds(secs_ago));
        let one = |m: Marker| History::read(&[comment(1, "bot", &m)], "bot");

        assert_eq!(
            verdict(&fresh, &History::default(), "agent-working", stale, now),
            Verdict::Eligible { attempts: 0 }
        );
        assert_eq!(verdict(&fresh, &one(at(MarkState::Working, 1, 10)), "agent-working", stale, now), Verdict::Held);
        assert_eq!(
            verdict(&fresh, &one(at(MarkState::Working, 2, 61)), "agent-working", stale, now),
            Verdict::Eligible { attempts: 2 }
        );
        let mut retry = at(MarkState::Retry, 1, 5);
        retry.retry_at = Some(now + chrono::Duration::seconds(30));
        assert!(matches!(verdict(&fresh, &one(retry.clone()), "agent-working", stale, now), Verdict::Waiting { .. }));
        retry.retry_at = Some(now - chrono::Duration::seconds(1));
        assert_eq!(verdict(&fresh, &one(retry), "agent-working", stale, now), Verdict::Eligible { attempts: 1 });
        assert_eq!(
            verdict(&fresh, &one(at(MarkState::Released, 1, 5)), "agent-working", stale, now),
            Verdict::Eligible { attempts: 1 }
        );
        assert_eq!(
            verdict(&fresh, &one(at(MarkState::Done, 1, 5)), "agent-working", stale, now),
            Verdict::Eligible { attempts: 0 }
        );
    }

    #[test]
    fn a_report_in_progress_holds_until_its_label_is_gone() {
        let now = Utc::now();
        let stale = Duration::from_secs(60);
        let history = History::read(&[comment(1, "bot", &Marker::new(MarkState::Done, 1, now))], "bot");
        let finishing = issue(&["agent", "agent-working"], now);
        assert_eq!(verdict(&finishing, &history, "agent-working", stale, now), Verdict::Held);
        let later = now + chrono::Duration::seconds(61);
        assert_eq!(verdict(&finishing, &history, "agent-working", stale, later), Verdict::Eligible { attempts: 0 });
    }

    #[test]
    fn a_bare_working_label_holds_until_stale() {
        let now = Utc::now();
        let stale = Duration::from_secs(60);
        let recent = issue(&["agent", "agent-working"], now - chrono::Duration::seconds(5));
        assert_eq!(verdict(&recent, &History::default(), "agent-working", stale, now), Verdict::Held);
        let old = issue(&["agent", "agent-working"], now - chrono::Duration::seconds(120));
        assert_eq!(verdict(&old, &History::default(), "agent-working", stale, now), Verdict::Eligible { attempts: 0 });
    }

    #[test]
    fn the_earliest_racing_claim_wins_and_superseded_ones_are_ignored() {
        let now = Utc::now();
        let base = Marker::new(MarkState::Retry, 1, now);
        let a = Marker::new(MarkState::Working, 2, now);
        let b = Marker::new(MarkState::Superseded, 2, now);
        let history =
            History::read(&[comment(10, "bot", &base), comment(12, "bot", &a), comment(11, "bot", &b)], "bot");
        assert_eq!(history.first_claim_after(10).unwrap().comment_id, 12);
        assert_eq!(history.latest().unwrap().comment_id, 12);
    }
}
