//! Lifecycle state kept in GitHub itself: a hidden HTML comment at the end of each comment the
//! bot posts, e.g. `<!-- bg-run:v1 state=retry attempt=2 worker=w at=… retry_at=… -->`.
//! Rendered Markdown hides it, so people see only the text; a restarted worker reads it back
//! from the bot's own comments to know attempt counts, backoff and live claims.

use chrono::{DateTime, SecondsFormat, Utc};

const OPEN: &str = "<!-- bg-run:v1 ";
const CLOSE: &str = "-->";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkState {
    /// A claim: an agent is running this attempt.
    Working,
    /// The attempt failed; eligible again at `retry_at`.
    Retry,
    Done,
    /// Given up.
    Failed,
    /// Given back at shutdown; the attempt did not count.
    Released,
    /// A claim that lost a race with another worker's; it means nothing.
    Superseded,
    /// The "not picked up: untrusted author" notice, posted once per issue.
    Untrusted,
}

impl MarkState {
    fn as_str(self) -> &'static str {
        match self {
            MarkState::Working => "working",
            MarkState::Retry => "retry",
            MarkState::Done => "done",
            MarkState::Failed => "failed",
            MarkState::Released => "released",
            MarkState::Superseded => "superseded",
            MarkState::Untrusted => "untrusted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "working" => MarkState::Working,
            "retry" => MarkState::Retry,
            "done" => MarkState::Done,
            "failed" => MarkState::Failed,
            "released" => MarkState::Released,
            "superseded" => MarkState::Superseded,
            "untrusted" => MarkState::Untrusted,
            _ => return None,
        })
    }

    /// Whether this marker says anything about the task's lifecycle.
    pub fn is_lifecycle(self) -> bool {
        !matches!(self, MarkState::Superseded | MarkState::Untrusted)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    pub state: MarkState,
    /// Attempts counted so far, including the one this marker is about (`Released`: excluding).
    pub attempt: u32,
    pub worker: Option<String>,
    pub at: DateTime<Utc>,
    pub retry_at: Option<DateTime<Utc>>,
    /// The agent session of the failed attempt, so the retry can resume it.
    pub session: Option<String>,
    /// The working comment (claim token) a report belongs to, so a retried report is not posted twice.
    pub claim: Option<String>,
}

impl Marker {
    pub fn new(state: MarkState, attempt: u32, at: DateTime<Utc>) -> Self {
        Marker { state, attempt, worker: None, at, retry_at: None, session: None, claim: None }
    }

    pub fn render(&self) -> String {
        let mut out = format!("{OPEN}state={} attempt={} at={}", self.state.as_str(), self.attempt, stamp(self.at));
        let mut field = |key: &str, value: &str| out.push_str(&format!(" {key}={}", clean(value)));
        if let Some(w) = &self.worker {
            field("worker", w);
        }
        if let Some(r) = self.retry_at {
            field("retry_at", &stamp(r));
        }
        if let Some(s) = &self.session {
            field("session", s);
        }
        if let Some(c) = &self.claim {
            field("claim", c);
        }
        out.push(' ');
        out.push_str(CLOSE);
        out
    }

    /// `text` with this marker appended on its own line.
    pub fn attach(&self, text: &str) -> String {
        format!("{}\n\n{}", text.trim_end(), self.render())
    }

    /// The last marker in a comment body, if any.
    pub fn find(body: &str) -> Option<Marker> {
        let start = body.rfind(OPEN)?;
        let rest = &body[start + OPEN.len()..];
        let inner = &rest[..rest.find(CLOSE)?];
        let mut state = None;
        let mut marker = Marker::new(MarkState::Working, 0, DateTime::<Utc>::MIN_UTC);
        let mut has_at = false;
        for pair in inner.split_whitespace() {
            let Some((key, value)) = pair.split_once('=') else { continue };
            match key {
                "state" => state = MarkState::parse(value),
                "attempt" => marker.attempt = value.parse().ok()?,
                "at" => {
                    marker.at = parse_stamp(value)?;
                    has_at = true;
                }
                "worker" => marker.worker = Some(value.to_owned()),
                "retry_at" => marker.retry_at = Some(parse_stamp(value)?),
                "session" => marker.session = Some(value.to_owned()),
                "claim" => marker.claim = Some(value.to_owned()),
                _ => {}
            }
        }
        marker.state = state?;
        has_at.then_some(marker)
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_stamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Keeps values to one token that cannot end the HTML comment early.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "@:._/+=-".contains(c) { c } else { '_' })
        .collect::<String>()
        .replace("--", "-_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let at = Utc::now();
        let marker = Marker {
            state: MarkState::Retry,
            attempt: 2,
            worker: Some("triage@host:42".into()),
            at,
            retry_at: Some(at + chrono::Duration::seconds(90)),
            session: Some("sess-1".into()),
            claim: Some("1234".into()),
        };
        let body = marker.attach("❌ failed\n\nsee above");
        assert!(body.starts_with("❌ failed\n\nsee above\n\n<!-- bg-run:v1 state=retry attempt=2 "), "{body}");
        let back = Marker::find(&body).unwrap();
        assert_eq!(back.state, MarkState::Retry);
        assert_eq!(back.attempt, 2);
        assert_eq!(back.worker.as_deref(), Some("triage@host:42"));
        assert_eq!(back.session.as_deref(), Some("sess-1"));
        assert_eq!(back.claim.as_deref(), Some("1234"));
        assert_eq!(back.at.timestamp_millis(), at.timestamp_millis());
        assert_eq!(back.retry_at.unwrap().timestamp_millis(), (at + chrono::Duration::seconds(90)).timestamp_millis());
    }

    #[test]
    fn hostile_values_cannot_break_out_of_the_comment() {
        let mut marker = Marker::new(MarkState::Working, 1, Utc::now());
        marker.worker = Some("evil --> <b>x</b> state=done".into());
        let rendered = marker.render();
        assert_eq!(rendered.matches("-->").count(), 1, "{rendered}");
        let back = Marker::find(&rendered).unwrap();
        assert_eq!(back.state, MarkState::Working);
    }

    #[test]
    fn text_without_a_marker_or_with_a_broken_one_has_none() {
        assert_eq!(Marker::find("just a comment"), None);
        assert_eq!(Marker::find("<!-- bg-run:v1 state=working attempt=1 -->"), None, "no timestamp");
        assert_eq!(Marker::find("<!-- bg-run:v1 state=bogus attempt=1 at=2024-01-01T00:00:00.000Z -->"), None);
        assert_eq!(Marker::find("<!-- bg-run:v1 state=done attempt=1 at=2024-01-01T00:00:00.000Z"), None, "unclosed");
    }
}
