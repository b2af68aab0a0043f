//! One way to send a request: octocrab's raw calls (typed calls drop the response headers this
//! adapter needs: `ETag`, `Link`, `retry-after`, `x-ratelimit-*`), wrapped with GitHub's
//! rate-limit rules, write spacing, bounded retries of server errors and error mapping.

use std::time::Duration;

use bg_run_core::redact::redact;
use bg_run_core::{Error, Result};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::options::GithubOptions;
use crate::ratelimit::{self, Pause, WriteGate};

pub(crate) const ADAPTER: &str = "github";

/// Tries of a request that failed with a server error or a broken connection.
const SERVER_ERROR_TRIES: u32 = 3;

/// An error text from GitHub or the transport, kept as the source of `Error::Backend`.
#[derive(Debug)]
pub(crate) struct ApiError(pub String);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ApiError {}

pub(crate) fn backend(message: impl Into<String>, retryable: bool) -> Error {
    Error::backend(ADAPTER, ApiError(redact(&message.into())), retryable)
}

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// GitHub's `message` (and validation `errors`), or the status line when the body has none.
    pub fn message(&self) -> String {
        let parsed: Option<Value> = serde_json::from_str(&self.body).ok();
        let mut message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("error").to_owned());
        if let Some(errors) = parsed.as_ref().and_then(|v| v.get("errors")).filter(|e| !e.is_null()) {
            message.push_str(&format!(" {errors}"));
        }
        redact(&message)
    }

    /// This reply if it is a success, else the error it means. `what` names the object.
    pub fn ok(self, what: &str) -> Result<Reply> {
        match self.status.as_u16() {
            200..=299 => Ok(self),
            404 | 410 => Err(Error::not_found(what)),
            403 => Err(Error::Unauthorized {
                adapter: ADAPTER.into(),
                message: format!(
                    "{what}: forbidden ({}); the token needs read and write access to the repository's issues",
                    self.message()
                ),
            }),
            422 => Err(backend(format!("{what}: GitHub rejected the request: {}", self.message()), false)),
            status => Err(backend(format!("{what}: unexpected HTTP {status}: {}", self.message()), false)),
        }
    }

    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_str(&self.body)
            .map_err(|e| backend(format!("{what}: unexpected response from GitHub: {e}"), false))
    }

    /// The `rel="next"` URL of a `Link` header.
    pub fn next_page(&self) -> Option<String> {
        let link = self.headers.get("link")?.to_str().ok()?;
        link.split(',').find_map(|part| {
            let (url, params) = part.split_once(';')?;
            let is_next = params.split(';').any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
            is_next.then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
        })
    }

    pub fn etag(&self) -> Option<String> {
        self.headers.get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// The answer to a conditional GET.
pub(crate) enum Fetched {
    /// 304: what the caller cached for this ETag is still current (and cost no rate limit).
    NotModified,
    Fresh(Reply),
}

pub(crate) struct Http {
    octo: Octocrab,
    writes: WriteGate,
    pause: Pause,
    max_wait: Duration,
}

impl Http {
    /// Must be called inside a Tokio runtime (octocrab starts its request buffer there).
    pub fn new(options: &GithubOptions) -> Result<Self> {
        let octo = Octocrab::builder()
            .base_uri(options.api_url.as_str())
            .map_err(|_| Error::config(format!("github: invalid api_url '{}'", options.api_url)))?
            .personal_token(options.token.clone())
            .add_header(http::header::ACCEPT, "application/vnd.github+json".to_owned())
            .set_connect_timeout(Some(options.request_timeout))
            .set_read_timeout(Some(options.request_timeout))
            .set_write_timeout(Some(options.request_timeout))
            .build()
            .map_err(|e| Error::config(format!("github: cannot set up the HTTP client: {e}")))?;
        Ok(Http {
            octo,
            writes: WriteGate::new(options.min_write_interval),
            pause: Pause::default(),
            max_wait: options.max_rate_limit_wait,
        })
    }

    pub async fn get(&self, url: &str) -> Result<Reply> {
        self.exchange(Method::GET, url, None, None, true).await
    }

    /// A GET that sends `If-None-Match: etag`, so an unchanged resource costs no rate limit.
    pub async fn get_if_changed(&self, url: &str, etag: Option<&str>) -> Result<Fetched> {
        let reply = self.exchange(Method::GET, url, None, etag, true).await?;
        Ok(if reply.status == StatusCode::NOT_MODIFIED { Fetched::NotModified } else { Fetched::Fresh(reply) })
    }

    /// A mutating request. `retry_safe` says whether repeating it after a server error cannot
    /// do it twice (adding a label can be repeated; creating a comment cannot).
    pub async fn send(&self, method: Method, url: &str, body: Option<&Value>, retry_safe: bool) -> Result<Reply> {
        self.exchange(method, url, body, None, retry_safe).await
    }

    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
        retry_safe: bool,
    ) -> Result<Reply> {
        let mutation = method != Method::GET && method != Method::HEAD;
        let mut waited = Duration::ZERO;
        let mut limited = 0;
        let mut failures = 0;
        loop {
            let pause = self.pause.remaining();
            if !pause.is_zero() {
                if waited + pause > self.max_wait {
                    return Err(Error::RateLimited { adapter: ADAPTER.into(), retry_after: Some(pause) });
                }
                tokio::time::sleep(pause).await;
                waited += pause;
            }
            let turn = if mutation { Some(self.writes.turn().await) } else { None };
            let result = self.once(&method, url, body, etag).await;
            if let Some(turn) = turn {
                turn.finished();
            }
            let reply = match result {
                Ok(reply) => reply,
                Err(error) => {
                    failures += 1;
                    if retry_safe && failures < SERVER_ERROR_TRIES {
                        tokio::time::sleep(server_backoff(failures)).await;
                        continue;
                    }
                    return Err(backend(format!("{method} {}: {error}", path_of(url)), true));
                }
            };
            if let Some(wait) = ratelimit::wait_after(reply.status, &reply.headers, &reply.body, limited + 1) {
                limited += 1;
                let wait = wait.max(Duration::from_secs(1));
                tracing::warn!(
                    adapter = ADAPTER,
                    status = reply.status.as_u16(),
                    wait_s = wait.as_secs_f64(),
                    message = %reply.message(),
                    "GitHub rate limit; pausing requests"
                );
                self.pause.extend(wait);
                continue;
            }
            if let Some(wait) = ratelimit::exhausted(&reply.headers) {
                self.pause.extend(wait);
            }
            if reply.status.is_server_error() {
                failures += 1;
                if retry_safe && failures < SERVER_ERROR_TRIES {
                    tokio::time::sleep(server_backoff(failures)).await;
                    continue;
                }
                let message =
                    format!("{method} {}: GitHub answered {}: {}", path_of(url), reply.status, reply.message());
                return Err(backend(message, true));
            }
            if reply.status == StatusCode::UNAUTHORIZED {
                return Err(Error::Unauthorized {
                    adapter: ADAPTER.into(),
                    message: format!(
                        "GitHub rejected the token ({}); set GITHUB_TOKEN or GH_TOKEN to a valid token",
                        reply.message()
                    ),
                });
            }
            return Ok(reply);
        }
    }

    async fn once(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> Result<Reply, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let response = match *method {
            Method::GET => {
                let mut headers = HeaderMap::new();
                if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(t).ok()) {
                    headers.insert(http::header::IF_NONE_MATCH, tag);
                }
                self.octo._get_with_headers(uri, Some(headers)).await
            }
            Method::POST => self.octo._post(uri, body).await,
            Method::PATCH => self.octo._patch(uri, body).await,
            Method::PUT => self.octo._put(uri, body).await,
            Method::DELETE => self.octo._delete(uri, body).await,
            _ => return Err(format!("unsupported method {method}")),
        }
        .map_err(|e| redact(&error_chain(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.octo.body_to_string(response).await.map_err(|e| redact(&error_chain(&e)))?;
        Ok(Reply { status, headers, body })
    }
}

fn server_backoff(failures: u32) -> Duration {
    Duration::from_millis(250 << failures.min(6))
}

/// The path of a URL, for error messages that should not repeat hosts and queries.
fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest.find('/').map(|i| &rest[i..]).unwrap_or("/"));
    after_scheme.unwrap_or(url).split('?').next().unwrap_or(url)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str, link: Option<&str>) -> Reply {
        let mut headers = HeaderMap::new();
        if let Some(link) = link {
            headers.insert("link", link.parse().unwrap());
        }
        Reply { status: StatusCode::from_u16(status).unwrap(), headers, body: body.to_owned() }
    }

    #[test]
    fn follows_the_next_link_only() {
        let link = "<https://api.github.com/repositories/1/issues?page=1>; rel=\"prev\", \
                    <https://api.github.com/repositories/1/issues?page=3>; rel=\"next\", \
                    <https://api.github.com/repositories/1/issues?page=9>; rel=\"last\"";
        let r = reply(200, "[]", Some(link));
        assert_eq!(r.next_page().as_deref(), Some("https://api.github.com/repositories/1/issues?page=3"));
        let last = "<https://x/issues?page=1>; rel=\"first\", <https://x/issues?page=2>; rel=\"prev\"";
        assert_eq!(reply(200, "[]", Some(last)).next_page(), None);
        assert_eq!(reply(200, "[]", None).next_page(), None);
    }

    #[test]
    fn maps_statuses_to_core_errors() {
        assert!(matches!(reply(404, r#"{"message":"Not Found"}"#, None).ok("issue #3"), Err(Error::NotFound { .. })));
        let forbidden =
            reply(403, r#"{"message":"Resource not accessible by integration"}"#, None).ok("x").unwrap_err();
        assert!(matches!(&forbidden, Error::Unauthorized { message, .. } if message.contains("not accessible")));
        let invalid = reply(422, r#"{"message":"Validation Failed","errors":[{"code":"custom"}]}"#, None);
        let error = invalid.ok("comment").unwrap_err();
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("Validation Failed"), "{error}");
    }

    #[test]
    fn error_paths_leave_out_host_and_query() {
        assert_eq!(path_of("https://api.github.com/repos/o/r/issues?page=2"), "/repos/o/r/issues");
        assert_eq!(path_of("/repos/o/r"), "/repos/o/r");
    }
}
