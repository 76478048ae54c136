//! The HTTP side: the `elasticsearch` crate's transport (rustls, round-robin
//! over the configured nodes, basic or API-key auth) and the three calls the
//! sink makes: cluster info, create index, `_bulk`.
//!
//! Invariants: every answer is classified once, here: an unreachable node,
//! a timeout, 429 and 5xx are [`Failure::Transient`] (retry); any other
//! non-2xx answer to a whole request is [`Failure::Rejected`] with the
//! status and the cluster's error text. Transient failures are retried in
//! one place, [`until_answered`]: forever, with capped backoff and jitter,
//! because a cluster that is down is an outage to wait out (the checkpoint
//! does not advance meanwhile), not a reason to stop. Credentials go to the
//! transport only and are never formatted into messages.

use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{MultiNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use rowstream_api::metrics::Handle;
use rowstream_api::Backoff;
use serde::Deserialize;

use crate::config::ElasticsearchSinkConfig;

/// Why a request did not succeed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Failure {
    /// Worth retrying: no answer, a timeout, 429 or 5xx.
    #[error("{0}")]
    Transient(String),
    /// The cluster refused the request (other 4xx): retrying cannot help.
    #[error("HTTP {status}: {reason}")]
    Rejected { status: u16, reason: String },
}

/// A client for the configured cluster.
#[derive(Clone)]
pub struct Client {
    es: Elasticsearch,
    timeout: Duration,
}

/// One item of a `_bulk` response.
#[derive(Debug, Deserialize)]
pub struct BulkItem {
    /// The item's HTTP status (201 created, 409 conflict, 400 mapping error...).
    pub status: u16,
    /// The error object of a failed item (`type`, `reason`, `caused_by`).
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

impl Client {
    /// Builds the transport; fails on unusable URLs or an unreadable CA file.
    pub fn new(cfg: &ElasticsearchSinkConfig) -> Result<Client, String> {
        let urls = cfg
            .urls
            .iter()
            .map(|u| Url::parse(u).map_err(|e| format!("urls: {u:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = MultiNodeConnectionPool::round_robin(urls, None);
        let mut b = TransportBuilder::new(pool)
            .disable_proxy()
            .enable_meta_header(false)
            .timeout(Duration::from_millis(cfg.timeout_ms));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            b = b.auth(Credentials::Basic(u.clone(), p.clone()));
        } else if let Some(k) = &cfg.api_key {
            b = b.auth(Credentials::EncodedApiKey(k.clone()));
        }
        if cfg.tls_insecure {
            b = b.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &cfg.ca_file {
            let pem = rowstream_api::kit::read_ca_pem("ca_file", path)?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("ca_file: {}: not a PEM certificate: {e}", path.display()))?;
            b = b.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client {
            es: Elasticsearch::new(transport),
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// Sends one request; returns the status and body of a 2xx answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        ndjson: bool,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let resp = self
            .es
            .send(method, path, headers, None::<&()>, body, Some(self.timeout))
            .await
            .map_err(|e| Failure::Transient(format!("{method:?} {path}: {e}")))?;
        let status = resp.status_code().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            Failure::Transient(format!("{method:?} {path}: reading the answer: {e}"))
        })?;
        if (200..300).contains(&status) {
            return Ok((status, bytes.to_vec()));
        }
        let reason = error_reason(&bytes);
        if status == 429 || status >= 500 {
            Err(Failure::Transient(format!(
                "{method:?} {path}: HTTP {status}: {reason}"
            )))
        } else {
            Err(Failure::Rejected { status, reason })
        }
    }

    /// `GET /`: the cluster's name and version, for the start log line.
    pub async fn info(&self) -> Result<String, Failure> {
        let (_, body) = self.send(Method::Get, "/", None, false).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(format!(
            "{} {} ({})",
            v["version"]["distribution"]
                .as_str()
                .unwrap_or("elasticsearch"),
            v["version"]["number"].as_str().unwrap_or("?"),
            v["cluster_name"].as_str().unwrap_or("?")
        ))
    }

    /// `PUT /<index>` with `body`; an index that already exists is success.
    /// True when this call created it.
    pub async fn create_index(
        &self,
        index: &str,
        body: &serde_json::Value,
    ) -> Result<bool, Failure> {
        let path = format!("/{}", encode_path(index));
        match self
            .send(
                Method::Put,
                &path,
                Some(body.to_string().into_bytes()),
                false,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Failure::Rejected { reason, .. }) if reason.contains("already_exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `POST /_bulk`: the per-item results in request order, or `None` for
    /// an answer without errors (the common case: the items are not parsed
    /// one by one).
    pub async fn bulk(
        &self,
        body: Vec<u8>,
        items: usize,
    ) -> Result<Option<Vec<BulkItem>>, Failure> {
        let (_, resp) = self.send(Method::Post, "/_bulk", Some(body), true).await?;
        let parsed: BulkResponse = serde_json::from_slice(&resp)
            .map_err(|e| Failure::Transient(format!("POST /_bulk: unreadable answer: {e}")))?;
        if parsed.items.len() != items {
            return Err(Failure::Transient(format!(
                "POST /_bulk: {} results for {items} actions",
                parsed.items.len()
            )));
        }
        if !parsed.errors {
            return Ok(None);
        }
        Ok(Some(
            parsed
                .items
                .into_iter()
                .map(|m| {
                    m.into_values().next().unwrap_or(BulkItem {
                        status: 0,
                        error: None,
                    })
                })
                .collect(),
        ))
    }
}

/// Runs `attempt` until the cluster answers it: a [`Failure::Transient`]
/// is logged (as `what`), counted in `retries` if given, and retried after
/// `backoff`; the result or the refusal `(status, reason)` is returned.
pub async fn until_answered<T, F, Fut>(
    sink: &str,
    what: &str,
    backoff: &mut Backoff,
    retries: Option<&Handle>,
    mut attempt: F,
) -> Result<T, (u16, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Rejected { status, reason }) => return Err((status, reason)),
            Err(Failure::Transient(m)) => {
                tracing::warn!(sink, error = %m, "{what} failed; retrying");
                if let Some(r) = retries {
                    r.inc();
                }
                backoff.wait().await;
            }
        }
    }
}

/// The `type: reason` of an Elasticsearch error body, or the body itself.
pub fn error_reason(body: &[u8]) -> String {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
    };
    describe_error(&v["error"]).unwrap_or_else(|| v.to_string())
}

/// `type: reason` (plus the root cause's, when it differs) of an error object.
pub fn describe_error(e: &serde_json::Value) -> Option<String> {
    if let Some(s) = e.as_str() {
        return Some(s.to_string());
    }
    let ty = e["type"].as_str()?;
    let mut s = format!("{ty}: {}", e["reason"].as_str().unwrap_or(""));
    if let Some(c) = e["caused_by"].as_object() {
        s.push_str(&format!(
            " (caused by {}: {})",
            c.get("type").and_then(|t| t.as_str()).unwrap_or(""),
            c.get("reason").and_then(|t| t.as_str()).unwrap_or("")
        ));
    }
    Some(s)
}

pub(crate) fn encode_path(index: &str) -> String {
    url::form_urlencoded::byte_serialize(index.as_bytes()).collect()
}
