//! The HTTP side: one `reqwest` client (rustls), authentication (bearer,
//! basic, OAuth2 refresh token with a cached access token), the request
//! budget (`rate_per_second`, `daily_budget`), signing, and
//! [`Client::deliver`], the one retry loop.
//!
//! Invariants kept:
//! - every answer is classified here, once: 2xx delivered; 408, 429, 5xx,
//!   timeouts and connection errors retried forever with the kit's capped
//!   backoff, never sooner than a `Retry-After` asks; 401 once refreshes the
//!   OAuth token and retries at once, a second 401 (or any 401/403 without
//!   OAuth) is fatal (credentials are for the operator, never dead-lettered);
//!   every other status is [`Answer::Refused`] for the sink's `on_error`;
//! - every attempt (retries included) first takes a token from the budget:
//!   request starts are at least `1 / rate_per_second` apart, and at most
//!   `daily_budget` start per UTC day; a spent budget waits, it never fails;
//! - a retry sends the same body and the same `Idempotency-Key` (the
//!   signature's timestamp is the attempt's, as Standard Webhooks wants);
//! - secrets go into headers only, never into messages or logs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use rowstream_api::kit::{read_ca_pem, with_causes};
use rowstream_api::metrics::Handle;
use rowstream_api::Backoff;

use crate::config::{HttpSinkConfig, OAuthConfig};
use crate::encode::{retry_after, signature, signing_key};

const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest `Retry-After` honoured: a receiver asking for more is waited
/// out in steps of this, with a log line each time.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Answers kept for messages and dead letters.
pub const MAX_ANSWER: usize = 4096;

/// One request: where, what, and its idempotency key.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub body: Vec<u8>,
    pub key: String,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx.
    Delivered,
    /// A status retrying cannot change (400, 404, 422...), with the answer's
    /// first [`MAX_ANSWER`] bytes.
    Refused { status: u16, body: String },
    /// The operator must act (credentials, token endpoint refusal).
    Fatal(String),
}

/// Why no access token could be had.
enum TokenError {
    /// The token endpoint is unreachable or answered 429/5xx: wait and retry.
    Retry,
    /// It refused the credentials.
    Fatal(String),
}

enum Auth {
    None,
    Bearer(HeaderValue),
    Basic(String, String),
    OAuth(OAuth),
}

struct OAuth {
    cfg: OAuthConfig,
    /// The access token and when to stop using it.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

/// The request budget.
struct Limiter {
    interval: Option<Duration>,
    daily: Option<u64>,
    state: tokio::sync::Mutex<LimitState>,
    budget_left: Handle,
}

struct LimitState {
    next: Instant,
    day: u64,
    used: u64,
}

/// The configured client, shared by the sink's request tasks.
pub struct Client {
    sink: String,
    http: reqwest::Client,
    method: reqwest::Method,
    headers: HeaderMap,
    auth: Auth,
    signing: Option<Vec<u8>>,
    limiter: Limiter,
    retry_max: Duration,
    retries: Handle,
}

fn utc_day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl Limiter {
    async fn acquire(&self, sink: &str) {
        let mut st = self.state.lock().await;
        if let Some(budget) = self.daily {
            let today = utc_day(SystemTime::now());
            if today != st.day {
                st.day = today;
                st.used = 0;
            }
            if st.used >= budget {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let midnight = Duration::from_secs((today + 1) * 86_400);
                let wait = midnight.saturating_sub(now) + Duration::from_secs(1);
                tracing::warn!(
                    sink,
                    budget,
                    wait_s = wait.as_secs(),
                    "daily request budget spent; waiting for midnight UTC"
                );
                tokio::time::sleep(wait).await;
                st.day = utc_day(SystemTime::now());
                st.used = 0;
            }
            st.used += 1;
            self.budget_left.set((budget - st.used) as f64);
        }
        if let Some(iv) = self.interval {
            let now = Instant::now();
            if st.next > now {
                tokio::time::sleep_until(st.next.into()).await;
            }
            st.next = st.next.max(now) + iv;
        }
    }
}

impl Client {
    /// Builds the client; fails on an unreadable CA file or a bad secret.
    pub fn new(
        cfg: &HttpSinkConfig,
        retries: Handle,
        budget_left: Handle,
    ) -> Result<Client, String> {
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .no_proxy()
            .pool_max_idle_per_host(cfg.concurrency.max(1) * 2);
        if let Some(path) = &cfg.ca_file {
            let pem = read_ca_pem("ca_file", path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file: {}: not PEM certificates: {e}", path.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &cfg.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("headers.{k:?}: {e}"))?;
            let value = HeaderValue::from_str(v).map_err(|e| format!("headers.{k:?}: {e}"))?;
            headers.insert(name, value);
        }
        let auth = if let Some(t) = &cfg.bearer_token {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "bearer_token: not a valid header value".to_string())?;
            v.set_sensitive(true);
            Auth::Bearer(v)
        } else if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            Auth::Basic(u.clone(), p.clone())
        } else if let Some(o) = &cfg.oauth {
            Auth::OAuth(OAuth {
                cfg: o.clone(),
                token: tokio::sync::Mutex::new(None),
            })
        } else {
            Auth::None
        };
        let signing = cfg
            .secret
            .as_deref()
            .map(signing_key)
            .transpose()
            .map_err(|e| format!("secret: {e}"))?;
        Ok(Client {
            sink: cfg.name.clone(),
            http,
            method: cfg
                .method
                .parse()
                .map_err(|_| format!("method: {:?}", cfg.method))?,
            headers,
            auth,
            signing,
            limiter: Limiter {
                interval: cfg
                    .rate_per_second
                    .map(|r| Duration::from_secs_f64(1.0 / r)),
                daily: cfg.daily_budget,
                state: tokio::sync::Mutex::new(LimitState {
                    next: Instant::now(),
                    day: 0,
                    used: 0,
                }),
                budget_left,
            },
            retry_max: Duration::from_millis(cfg.retry_max_ms),
            retries,
        })
    }

    /// Sends `req` until it is delivered or refused (see the module docs).
    pub async fn deliver(&self, req: &Request) -> Answer {
        let sink = self.sink.as_str();
        let mut backoff = Backoff::new(FIRST_RETRY, self.retry_max);
        let mut refreshed = false;
        loop {
            self.limiter.acquire(sink).await;
            let token = match self.access_token(false).await {
                Ok(t) => t,
                Err(TokenError::Retry) => {
                    self.retries.inc();
                    backoff.wait().await;
                    continue;
                }
                Err(TokenError::Fatal(m)) => return Answer::Fatal(m),
            };
            let (why, wait) = match self.attempt(req, token.as_deref()).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, SystemTime::now()));
                    let body = match resp.bytes().await {
                        Ok(b) => truncate(&b),
                        Err(e) if (200..300).contains(&status) => {
                            tracing::debug!(sink, error = %e, "2xx answer body unreadable; delivered");
                            String::new()
                        }
                        Err(e) => format!("(answer unreadable: {e})"),
                    };
                    match status {
                        200..=299 => return Answer::Delivered,
                        401 if matches!(self.auth, Auth::OAuth(_)) && !refreshed => {
                            refreshed = true;
                            match self.access_token(true).await {
                                Err(TokenError::Fatal(m)) => return Answer::Fatal(m),
                                // A token endpoint down now is met again by the next attempt.
                                Ok(_) | Err(TokenError::Retry) => continue,
                            }
                        }
                        401 | 403 => {
                            return Answer::Fatal(format!(
                                "{} {} answered HTTP {status}: {body}: check the sink's credentials \
                                 (bearer_token, username/password or [sinks.oauth]) and their permissions",
                                self.method, req.url
                            ))
                        }
                        408 | 429 | 500..=599 => (format!("HTTP {status}: {body}"), after),
                        _ => return Answer::Refused { status, body },
                    }
                }
                Err(e) => (describe(&e), None),
            };
            self.retries.inc();
            let mut wait_for = backoff.next_wait();
            if let Some(a) = wait {
                wait_for = wait_for.max(a.min(MAX_RETRY_AFTER));
            }
            tracing::warn!(sink, url = %req.url, key = %req.key, error = %why, wait_ms = wait_for.as_millis() as u64, "request failed; retrying");
            tokio::time::sleep(wait_for).await;
        }
    }

    // The idempotency key is our own hex digest and the signature base64:
    // both are always valid header values.
    #[allow(clippy::expect_used)]
    async fn attempt(
        &self,
        req: &Request,
        token: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut headers = self.headers.clone();
        let key = HeaderValue::from_str(&req.key).expect("hex key");
        headers.insert("idempotency-key", key.clone());
        if let Some(k) = &self.signing {
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            headers.insert("webhook-id", key);
            headers.insert("webhook-timestamp", HeaderValue::from(ts));
            let sig = signature(k, &req.key, ts, &req.body);
            headers.insert(
                "webhook-signature",
                HeaderValue::from_str(&sig).expect("base64"),
            );
        }
        let mut rb = self
            .http
            .request(self.method.clone(), &req.url)
            .headers(headers);
        rb = match (&self.auth, token) {
            (Auth::Bearer(v), _) => rb.header(AUTHORIZATION, v.clone()),
            (Auth::Basic(u, p), _) => rb.basic_auth(u, Some(p)),
            (Auth::OAuth(_), Some(t)) => rb.bearer_auth(t),
            _ => rb,
        };
        rb.body(req.body.clone()).send().await
    }

    /// The OAuth access token (None without OAuth), refreshed when expired
    /// or `force`d.
    async fn access_token(&self, force: bool) -> Result<Option<String>, TokenError> {
        let Auth::OAuth(o) = &self.auth else {
            return Ok(None);
        };
        let mut cached = o.token.lock().await;
        if let Some((t, until)) = &*cached {
            if !force && Instant::now() < *until {
                return Ok(Some(t.clone()));
            }
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &o.cfg.client_id)
            .append_pair("client_secret", &o.cfg.client_secret)
            .append_pair("refresh_token", &o.cfg.refresh_token)
            .finish();
        let sent = self
            .http
            .post(&o.cfg.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(sink = %self.sink, url = %o.cfg.token_url, error = %describe(&e), "OAuth token request failed; retrying");
                return Err(TokenError::Retry);
            }
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        if status == 429 || status >= 500 {
            tracing::warn!(sink = %self.sink, url = %o.cfg.token_url, status, "OAuth token endpoint unavailable; retrying");
            return Err(TokenError::Retry);
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let Some(token) = v["access_token"]
            .as_str()
            .filter(|_| (200..300).contains(&status))
        else {
            return Err(TokenError::Fatal(format!(
                "OAuth token request to {} answered HTTP {status}: {}: check [sinks.oauth] client_id, client_secret and refresh_token",
                o.cfg.token_url,
                truncate(&body)
            )));
        };
        let life = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
        let margin = Duration::from_millis(o.cfg.refresh_margin_ms).min(life / 2);
        *cached = Some((token.to_string(), Instant::now() + life - margin));
        tracing::info!(sink = %self.sink, expires_in_s = life.as_secs(), "OAuth access token refreshed");
        Ok(Some(token.to_string()))
    }
}

/// The first [`MAX_ANSWER`] bytes of an answer, as text.
fn truncate(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(MAX_ANSWER)]).into_owned();
    if b.len() > MAX_ANSWER {
        s.push_str("...");
    }
    s
}

/// A transport error with its causes (reqwest's `Display` hides them).
fn describe(e: &reqwest::Error) -> String {
    let s = with_causes(e);
    if e.is_timeout() {
        format!("timed out: {s}")
    } else {
        s
    }
}

/// Shared by the sink's request tasks.
pub type Shared = Arc<Client>;

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::metrics::Family;

    static RETRIES: Family = Family::counter("test_retries_total", "Test.", "sink");
    static BUDGET: Family = Family::gauge("test_budget_left", "Test.", "sink");

    #[test]
    fn an_empty_ca_file_is_refused_at_start() {
        let path =
            std::env::temp_dir().join(format!("rowstream-http-ca-{}.pem", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let mut cfg = HttpSinkConfig::new("crm", "https://127.0.0.1:1/hook");
        cfg.ca_file = Some(path.clone());
        let e = Client::new(&cfg, RETRIES.with("crm"), BUDGET.with("crm"))
            .err()
            .expect("an empty ca_file must not start the sink");
        assert!(
            e.starts_with(&format!(
                "ca_file: {}: holds no PEM certificate",
                path.display()
            )),
            "{e}"
        );
        let _ = std::fs::remove_file(path);
    }
}
