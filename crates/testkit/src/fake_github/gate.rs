//! What every request passes through before and after its endpoint: the request log,
//! authentication, injected faults, and primary/secondary rate limiting with the documented
//! headers and messages.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::state::State;
use super::{FakeFault, RequestRecord};

pub(super) const DOCS: &str = "https://docs.github.com/rest";
const RATE_DOCS: &str = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api";
const SECONDARY_DOCS: &str =
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits";
/// Versions the fake accepts in `X-GitHub-Api-Version`.
const API_VERSIONS: &[&str] = &["2022-11-28", "2026-03-10"];

/// The hourly primary rate limit of the `core` resource.
pub(crate) struct RateLimit {
    pub limit: u32,
    pub remaining: u32,
    /// Epoch seconds when the window resets.
    pub reset: i64,
}

impl RateLimit {
    pub fn new(limit: u32) -> Self {
        RateLimit { limit, remaining: limit, reset: Utc::now().timestamp() + 3600 }
    }

    pub fn used(&self) -> u32 {
        self.limit - self.remaining.min(self.limit)
    }

    fn roll_window(&mut self) {
        let now = Utc::now().timestamp();
        if now >= self.reset {
            self.remaining = self.limit;
            self.reset = now + 3600;
        }
    }
}

/// Faults waiting to start, and those running.
#[derive(Default)]
pub(crate) struct Faults {
    scheduled: VecDeque<(u32, FakeFault)>,
    server_errors: Option<(u16, u32)>,
    delays: Option<(Duration, u32)>,
    secondary: Option<(Instant, u16)>,
    primary_status: u16,
}

impl Faults {
    pub fn schedule(&mut self, after: u32, fault: FakeFault) {
        self.scheduled.push_back((after, fault));
    }

    pub fn secondary_left(&self, now: Instant) -> Option<Duration> {
        self.secondary.and_then(|(until, _)| until.checked_duration_since(now))
    }

    /// Counts one arriving request down on every scheduled fault and starts those that are due,
    /// so a fault scheduled after 0 requests already hits this one.
    fn tick(&mut self, rate: &mut RateLimit) {
        let mut waiting = VecDeque::new();
        while let Some((after, fault)) = self.scheduled.pop_front() {
            if after > 0 {
                waiting.push_back((after - 1, fault));
                continue;
            }
            match fault {
                FakeFault::ServerError { status, count } => self.server_errors = Some((status, count)),
                FakeFault::Delay { millis, count } => self.delays = Some((Duration::from_millis(millis), count)),
                FakeFault::SecondaryRateLimit { retry_after_secs, status } => {
                    self.secondary = Some((Instant::now() + Duration::from_secs(retry_after_secs), status))
                }
                FakeFault::PrimaryRateLimitExhausted { reset_after_secs, status } => {
                    rate.remaining = 0;
                    rate.reset = Utc::now().timestamp() + reset_after_secs as i64;
                    self.primary_status = status;
                }
            }
        }
        self.scheduled = waiting;
    }

    fn take_delay(&mut self) -> Option<Duration> {
        let (delay, count) = self.delays.as_mut()?;
        let delay = *delay;
        *count -= 1;
        if *count == 0 {
            self.delays = None;
        }
        Some(delay)
    }

    fn take_server_error(&mut self) -> Option<u16> {
        let (status, count) = self.server_errors.as_mut()?;
        let status = *status;
        *count -= 1;
        if *count == 0 {
            self.server_errors = None;
        }
        Some(status)
    }
}

pub(super) fn error(status: StatusCode, message: &str, docs: &str) -> Response {
    let body = json!({ "message": message, "documentation_url": docs, "status": status.as_u16().to_string() });
    (status, axum::Json(body)).into_response()
}

enum Verdict {
    Pass,
    Answer(Response),
}

/// The login a request is authenticated as, stored in request extensions for the endpoints.
#[derive(Clone)]
pub(super) struct Login(pub String);

pub(super) async fn gate(AxState(state): AxState<Arc<Mutex<State>>>, mut request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let counts = path.split('?').next() != Some("/rate_limit");

    let (verdict, delay) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *s;
        s.rate.roll_window();
        s.faults.tick(&mut s.rate);
        let delay = s.faults.take_delay();
        (check(s, request.headers(), Instant::now()), delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }

    let mut response = match verdict {
        Verdict::Answer(response) => response,
        Verdict::Pass => {
            let login = login_of(&state, request.headers()).unwrap_or_default();
            request.extensions_mut().insert(Login(login));
            next.run(request).await
        }
    };

    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let status = response.status();
    // A 304 to a conditional request is free, as is reading the rate limit itself.
    if counts && status != StatusCode::NOT_MODIFIED && s.rate.remaining > 0 && status != StatusCode::UNAUTHORIZED {
        s.rate.remaining -= 1;
    }
    let h = response.headers_mut();
    put(h, "x-ratelimit-limit", s.rate.limit.to_string());
    put(h, "x-ratelimit-remaining", s.rate.remaining.to_string());
    put(h, "x-ratelimit-used", s.rate.used().to_string());
    put(h, "x-ratelimit-reset", s.rate.reset.to_string());
    put(h, "x-ratelimit-resource", "core".to_owned());
    put(h, "x-github-media-type", "github.v3; format=json".to_owned());
    put(h, "x-github-api-version-selected", "2022-11-28".to_owned());
    s.log.push(RequestRecord { at: arrived, method, path, headers, status: status.as_u16() });
    response
}

fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

fn token_of(headers: &HeaderMap) -> Option<Option<String>> {
    let value = headers.get("authorization")?.to_str().ok()?.trim().to_owned();
    let (scheme, token) = value.split_once(' ').unwrap_or((value.as_str(), ""));
    let ok = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    Some(ok.then(|| token.trim().to_owned()))
}

fn login_of(state: &Arc<Mutex<State>>, headers: &HeaderMap) -> Option<String> {
    let token = token_of(headers)??;
    let s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.tokens.get(&token).cloned()
}

fn check(s: &mut State, headers: &HeaderMap, now: Instant) -> Verdict {
    match token_of(headers) {
        None => return Verdict::Answer(error(StatusCode::UNAUTHORIZED, "Requires authentication", DOCS)),
        Some(None) => return Verdict::Answer(error(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS)),
        Some(Some(token)) if !s.tokens.contains_key(&token) => {
            return Verdict::Answer(error(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS))
        }
        Some(Some(_)) => {}
    }
    if let Some(version) = headers.get("x-github-api-version").and_then(|v| v.to_str().ok()) {
        if !API_VERSIONS.contains(&version) {
            let message = format!("API version '{version}' is not supported.");
            return Verdict::Answer(error(StatusCode::BAD_REQUEST, &message, DOCS));
        }
    }
    if let Some(left) = s.faults.secondary_left(now) {
        let status = s.faults.secondary.map(|(_, st)| st).unwrap_or(403);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. \
                       If you reach out to GitHub Support for help, please include the request ID 0000:FAKE.";
        let mut response = error(status, message, SECONDARY_DOCS);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        put(response.headers_mut(), "retry-after", secs.to_string());
        return Verdict::Answer(response);
    }
    s.faults.secondary = None;
    if s.rate.remaining == 0 {
        let status = StatusCode::from_u16(s.faults.primary_status).unwrap_or(StatusCode::FORBIDDEN);
        let login = token_of(headers).flatten().and_then(|t| s.tokens.get(&t).cloned()).unwrap_or_default();
        let id = s.user(&login).map(|u| u.id).unwrap_or(0);
        let message = format!("API rate limit exceeded for user ID {id}.");
        return Verdict::Answer(error(status, &message, RATE_DOCS));
    }
    if let Some(status) = s.faults.take_server_error() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(r#"{"message":"Server Error"}"#));
        *response.status_mut() = status;
        put(response.headers_mut(), "content-type", "application/json; charset=utf-8".to_owned());
        return Verdict::Answer(response);
    }
    Verdict::Pass
}
