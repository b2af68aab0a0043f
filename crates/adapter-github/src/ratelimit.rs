//! GitHub's rate-limit rules, as its REST documentation states them: after a 403 or 429, wait
//! `retry-after` seconds if given; else, if `x-ratelimit-remaining` is 0, until
//! `x-ratelimit-reset`; else at least a minute, growing exponentially. And space mutating
//! requests at least a second apart.

use std::time::{Duration, Instant};

use chrono::Utc;
use http::{HeaderMap, StatusCode};

/// How long to wait before the next request, when a response says the client went too fast.
pub(crate) fn wait_after(status: StatusCode, headers: &HeaderMap, body: &str, consecutive: u32) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(secs) = header(headers, "retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header(headers, "x-ratelimit-remaining") == Some("0") {
        return Some(until_reset(headers).unwrap_or(Duration::from_secs(60)));
    }
    // A 403 can also mean "no permission"; only the message tells a rate limit apart then.
    if status == StatusCode::TOO_MANY_REQUESTS || body.to_ascii_lowercase().contains("rate limit") {
        let exp = consecutive.saturating_sub(1).min(4);
        return Some(Duration::from_secs(60 << exp));
    }
    None
}

/// When a successful response reports the hourly budget spent, how long until it refills.
pub(crate) fn exhausted(headers: &HeaderMap) -> Option<Duration> {
    (header(headers, "x-ratelimit-remaining") == Some("0")).then(|| until_reset(headers)).flatten()
}

fn until_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset = header(headers, "x-ratelimit-reset")?.parse::<i64>().ok()?;
    let secs = (reset - Utc::now().timestamp()).max(0) as u64;
    // The reset is whole seconds; one more keeps us from arriving a moment early.
    Some(Duration::from_secs(secs + 1))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Spaces mutating requests: each starts at least `interval` after the previous one finished,
/// so the server sees them at least that far apart whatever the network did in between.
pub(crate) struct WriteGate {
    interval: Duration,
    last_done: tokio::sync::Mutex<Option<Instant>>,
}

pub(crate) struct WriteTurn<'a> {
    guard: tokio::sync::MutexGuard<'a, Option<Instant>>,
}

impl WriteTurn<'_> {
    pub fn finished(mut self) {
        *self.guard = Some(Instant::now());
    }
}

impl WriteGate {
    pub fn new(interval: Duration) -> Self {
        WriteGate { interval, last_done: tokio::sync::Mutex::new(None) }
    }

    /// Waits for this writer's turn; hold the turn until the response is in, then `finished`.
    pub async fn turn(&self) -> WriteTurn<'_> {
        let guard = self.last_done.lock().await;
        if let Some(last) = *guard {
            let ready = last + self.interval;
            if ready > Instant::now() {
                tokio::time::sleep_until(ready.into()).await;
            }
        }
        WriteTurn { guard }
    }
}

/// A shared "do not send before" time, so one rate-limited request pauses every other one too.
#[derive(Default)]
pub(crate) struct Pause {
    until: std::sync::Mutex<Option<Instant>>,
}

impl Pause {
    pub fn extend(&self, wait: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let candidate = Instant::now() + wait;
        if until.is_none_or(|u| u < candidate) {
            *until = Some(candidate);
        }
    }

    pub fn remaining(&self) -> Duration {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.map(|u| u.saturating_duration_since(Instant::now())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_wins() {
        let h = headers(&[("retry-after", "3".into()), ("x-ratelimit-remaining", "0".into())]);
        assert_eq!(wait_after(StatusCode::FORBIDDEN, &h, "", 1), Some(Duration::from_secs(3)));
        assert_eq!(wait_after(StatusCode::TOO_MANY_REQUESTS, &h, "", 1), Some(Duration::from_secs(3)));
    }

    #[test]
    fn exhausted_primary_waits_until_reset() {
        let reset = Utc::now().timestamp() + 30;
        let h = headers(&[("x-ratelimit-remaining", "0".into()), ("x-ratelimit-reset", reset.to_string())]);
        let wait = wait_after(StatusCode::FORBIDDEN, &h, "API rate limit exceeded", 1).unwrap();
        assert!(wait >= Duration::from_secs(29) && wait <= Duration::from_secs(32), "{wait:?}");
        assert!(exhausted(&h).is_some());
    }

    #[test]
    fn otherwise_a_minute_growing_exponentially() {
        let h = headers(&[("x-ratelimit-remaining", "12".into())]);
        let body = "You have exceeded a secondary rate limit";
        assert_eq!(wait_after(StatusCode::FORBIDDEN, &h, body, 1), Some(Duration::from_secs(60)));
        assert_eq!(wait_after(StatusCode::FORBIDDEN, &h, body, 3), Some(Duration::from_secs(240)));
        assert_eq!(wait_after(StatusCode::TOO_MANY_REQUESTS, &h, "", 2), Some(Duration::from_secs(120)));
    }

    #[test]
    fn a_permission_403_is_not_a_rate_limit() {
        let h = headers(&[("x-ratelimit-remaining", "4999".into())]);
        assert_eq!(wait_after(StatusCode::FORBIDDEN, &h, "Resource not accessible by integration", 1), None);
        assert_eq!(wait_after(StatusCode::INTERNAL_SERVER_ERROR, &h, "rate limit", 1), None);
        assert_eq!(exhausted(&h), None);
    }
}
