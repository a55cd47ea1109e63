//! One HTTP round trip with bounded retries.
//!
//! Retried: 500, 502, 503, 504, 429, and 403 when it is a rate limit (`retry-after`, or
//! `x-ratelimit-remaining: 0`), plus requests that got no answer at all. The wait is the
//! server's (`retry-after`, `x-ratelimit-reset`) or an exponential backoff; a wait longer
//! than [`RetryPolicy::max_wait`] is not taken: the call fails at once saying how long.
//!
//! A request that is not idempotent ([`Http::send_once`]: creating a runner, starting a
//! pipeline) is only retried when the forge said it did not process it (429, a rate-limit
//! 403). A 5xx or a lost answer may come after the forge did the work, so sending it again
//! could do it twice: the caller gets that outcome and looks up whether the work was done.

use crate::ApiError;
use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How hard to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff when the server gives no wait; doubled each time.
    pub base_delay: Duration,
    /// Cap of one backoff.
    pub max_delay: Duration,
    /// Longest server-requested wait we accept.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// A final answer (any status that is not retried, or the last one).
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// GitHub's `message` field, or the body's first 200 characters.
    pub fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            })
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Decode(e.to_string()))
    }
}

/// What a request carries.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    None,
    Json(serde_json::Value),
    /// A `multipart/form-data` body with one file in `field`.
    File {
        field: &'static str,
        name: String,
        bytes: Vec<u8>,
        mime: String,
    },
}

impl Payload {
    /// `r` with this payload (built anew for each attempt).
    pub fn apply(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Payload::None => r,
            Payload::Json(v) => r.json(v),
            Payload::File {
                field,
                name,
                bytes,
                mime,
            } => {
                let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone());
                let part = match part.mime_str(mime) {
                    Ok(p) => p,
                    Err(_) => {
                        reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone())
                    }
                };
                r.multipart(reqwest::multipart::Form::new().part(*field, part))
            }
        }
    }
}

impl From<Option<serde_json::Value>> for Payload {
    fn from(v: Option<serde_json::Value>) -> Self {
        v.map(Payload::Json).unwrap_or(Payload::None)
    }
}

#[derive(Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    pub retry: RetryPolicy,
}

impl Http {
    pub fn new(retry: RetryPolicy) -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("cml/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Http { client, retry })
    }

    /// Sends the request `build` makes (called again for each attempt), retrying every
    /// transient failure: for requests that do the same when sent twice.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        self.send_as(Repeat::Safe, build).await
    }

    /// Sends a request that must not be done twice. Retried only after an answer saying the
    /// request was not processed (429, a rate-limit 403). A 5xx is returned as the final
    /// answer and a lost answer as [`ApiError::Transport`]: the request may have taken effect
    /// ([`ApiError::may_have_taken_effect`]), which the caller finds out.
    pub async fn send_once(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        self.send_as(Repeat::Once, build).await
    }

    async fn send_as(
        &self,
        repeat: Repeat,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, ApiError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = build(&self.client);
            let (url, outcome) = match request.build() {
                Ok(req) => {
                    let url = format!("{}{}", origin(req.url()), req.url().path());
                    (url, self.client.execute(req).await)
                }
                Err(e) => return Err(ApiError::Decode(format!("bad request: {e}"))),
            };
            let (wait, last) = match outcome {
                Err(e) => {
                    let last = format!("{url}: {}", without_url(&e));
                    if repeat == Repeat::Once || attempt >= self.retry.max_attempts.min(3) {
                        return Err(ApiError::Transport {
                            url,
                            message: without_url(&e),
                        });
                    }
                    (self.backoff(attempt), last)
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    let answer = Answer {
                        status,
                        headers,
                        body,
                    };
                    if repeat == Repeat::Once && is_server_error(answer.status) {
                        return Ok(answer);
                    }
                    match self.retry_wait(&answer, attempt) {
                        None => return Ok(answer),
                        Some(Err(e)) => return Err(e),
                        Some(Ok(wait)) => (wait, format!("{status} {}", answer.message())),
                    }
                }
            };
            if attempt >= self.retry.max_attempts {
                return Err(ApiError::Exhausted {
                    attempts: attempt,
                    last,
                });
            }
            tracing::warn!(
                "{last}; retrying in {} ms (attempt {}/{})",
                wait.as_millis(),
                attempt + 1,
                self.retry.max_attempts
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// `None`: final answer. `Some(Ok(d))`: retry after `d`. `Some(Err)`: give up now.
    fn retry_wait(&self, a: &Answer, attempt: u32) -> Option<Result<Duration, ApiError>> {
        let header = |k: &str| a.headers.get(k).and_then(|v| v.to_str().ok());
        let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let exhausted = header("x-ratelimit-remaining").map(str::trim) == Some("0");
        let reset_in = header("x-ratelimit-reset")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|reset| reset.saturating_sub(now_unix()) + 1);
        let rate_limited =
            a.status == 429 || (a.status == 403 && (retry_after.is_some() || exhausted));
        let server_error = is_server_error(a.status);
        if !rate_limited && !server_error {
            return None;
        }
        let wait = match (retry_after, exhausted.then_some(reset_in).flatten()) {
            (Some(s), _) => Duration::from_secs(s),
            (None, Some(s)) => Duration::from_secs(s),
            _ => self.backoff(attempt),
        };
        if wait > self.retry.max_wait {
            return Some(Err(ApiError::RateLimited {
                wait_secs: wait.as_secs(),
                max_wait_secs: self.retry.max_wait.as_secs(),
            }));
        }
        Some(Ok(wait))
    }

    /// The wait before attempt `attempt + 1`: the base delay doubled each time, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << (attempt.saturating_sub(1)).min(16);
        (self.retry.base_delay * factor).min(self.retry.max_delay)
    }
}

/// Whether a request may be sent again when its answer is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repeat {
    /// Sending it twice does what sending it once does.
    Safe,
    /// Sending it twice does it twice.
    Once,
}

/// The statuses of a failing server (retried for idempotent requests).
fn is_server_error(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

fn origin(u: &reqwest::Url) -> String {
    match u.port() {
        Some(p) => format!("{}://{}:{p}", u.scheme(), u.host_str().unwrap_or("")),
        None => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
    }
}

/// reqwest's error text without the URL (which we print ourselves, without its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.without_url_ref_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

trait WithoutUrl {
    fn without_url_ref_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref_string(&self) -> String {
        if self.is_connect() {
            "connection failed".into()
        } else if self.is_timeout() {
            "timed out".into()
        } else if self.is_request() {
            "request failed".into()
        } else {
            "error".into()
        }
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `s` percent-encoded for a URL: every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`)
/// and those in `keep` becomes `%XX`.
pub(crate) fn percent_encode(s: &str, keep: &[u8]) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b if keep.contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A server on 127.0.0.1 that reads each request and closes the connection without an
    /// answer (a lost answer); returns its URL and how many requests reached it.
    fn answer_losing_server() -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/runners", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(10) {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                counter.fetch_add(1, Ordering::SeqCst);
                // Dropped: the connection closes with no answer.
            }
        });
        (url, seen)
    }

    fn quick() -> Http {
        Http::new(RetryPolicy {
            base_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_request_that_must_not_be_done_twice_is_not_resent_after_a_lost_answer() {
        let (url, seen) = answer_losing_server();
        let e = quick()
            .send_once(|c| c.post(&url).body("create"))
            .await
            .err()
            .expect("no answer");
        assert!(matches!(e, ApiError::Transport { .. }), "{e}");
        assert!(e.may_have_taken_effect());
        assert_eq!(seen.load(Ordering::SeqCst), 1, "sent once");

        // An idempotent request is sent again (bounded).
        let (url, seen) = answer_losing_server();
        let e = quick()
            .send(|c| c.get(&url))
            .await
            .err()
            .expect("no answer");
        assert!(matches!(e, ApiError::Transport { .. }), "{e}");
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }
}
