//! A minimal Confluent Schema Registry client: registers a schema under a
//! subject (`POST /subjects/{subject}/versions` with
//! `{"schema": "<schema JSON as a string>"}`, answer `{"id": N}`).
//!
//! Transport: one `reqwest` client (rustls) per sink, `http://` or
//! `https://`, optional basic authentication
//! (`schema_registry_username` / `schema_registry_password`, as Confluent
//! Cloud wants) and an optional PEM CA file added to the built-in web roots
//! (`schema_registry_ca_file`, for a private CA). The registry returns the
//! existing id when the same schema is registered again, so re-registering
//! after a restart is harmless.
//!
//! Invariants kept:
//! - every failure is classified here, once: refused credentials (401,
//!   403), an untrusted or mismatched certificate, and a refused schema
//!   (other 4xx but 408 and 429) are fatal and name the setting to fix;
//!   5xx, 408, 429, timeouts and connection errors are transient (the
//!   pipeline restarts the sink with backoff);
//! - the password only ever goes into the `Authorization` header (marked
//!   sensitive), never into a message; URLs carrying credentials are refused
//!   by the config's validation, so the URL in messages is safe to log.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use rowstream_api::kit::{read_ca_pem, with_causes};

use crate::config::KafkaSinkConfig;

/// Longest wait for one registration (connection, TLS and answer).
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT: &str = "application/vnd.schemaregistry.v1+json";
/// The most of an answer read (memory stays bounded whatever the registry sends).
const MAX_ANSWER: usize = 64 << 10;

/// A configured registry client.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    /// The base URL without the trailing `/` (no credentials in it).
    base: String,
    /// `schema_registry_username` and the sensitive `Authorization` value.
    auth: Option<HeaderValue>,
}

/// A failed registration: `fatal` when retrying cannot help (refused
/// credentials, untrusted certificate, refused schema), not when the
/// registry could not be reached or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub fatal: bool,
    pub message: String,
}

impl Registry {
    /// The client of `cfg`'s registry (`schema_registry_url` must be set and
    /// valid); fails, naming the key, on an unreadable or malformed CA file.
    pub fn new(cfg: &KafkaSinkConfig) -> Result<Registry, String> {
        let url = cfg
            .schema_registry_url
            .as_deref()
            .ok_or_else(|| "schema_registry_url: is required with format = \"avro\"".to_string())?;
        crate::config::check_registry_url(url).map_err(|e| format!("schema_registry_url: {e}"))?;
        let mut b = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy();
        if let Some(path) = &cfg.schema_registry_ca_file {
            let pem = read_ca_pem("schema_registry_ca_file", path)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "schema_registry_ca_file: {}: not PEM certificates: {e}",
                    path.display()
                )
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("schema registry HTTP client: {e}"))?;
        let auth = match (&cfg.schema_registry_username, &cfg.schema_registry_password) {
            (Some(u), Some(p)) => {
                let token = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{u}:{p}"),
                );
                let mut v = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    "schema_registry_username: not valid in an HTTP header".to_string()
                })?;
                v.set_sensitive(true);
                Some(v)
            }
            _ => None,
        };
        Ok(Registry {
            http,
            base: url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// Registers `schema` (the schema's JSON text) under `subject`; returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let url = format!("{}/subjects/{}/versions", self.base, subject);
        let mut req = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, CONTENT)
            .header(ACCEPT, format!("{CONTENT}, application/json"))
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, a.clone());
        }
        let transport = |e: reqwest::Error| {
            let cert = is_certificate_error(&e);
            RegistryError {
                fatal: cert,
                message: if cert {
                    format!(
                        "schema registry {}: TLS: the registry's certificate is not trusted \
                         (set schema_registry_ca_file to the PEM of the CA that signed it): {}",
                        self.base,
                        describe(&e)
                    )
                } else {
                    format!("schema registry {}: {}", self.base, describe(&e))
                },
            }
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        // An answer is `{"id":N}` or a short error: read at most MAX_ANSWER of it.
        let mut body = Vec::new();
        while let Some(c) = resp.chunk().await.map_err(transport)? {
            body.extend_from_slice(&c[..c.len().min(MAX_ANSWER - body.len())]);
            if body.len() == MAX_ANSWER {
                break;
            }
        }
        let text: String = String::from_utf8_lossy(&body).chars().take(2048).collect();
        if status == 401 || status == 403 {
            return Err(RegistryError {
                fatal: true,
                message: format!(
                    "schema registry {}: registering subject {subject:?}: HTTP {status}: {}: \
                     check schema_registry_username and schema_registry_password (and the \
                     user's permission to register schemas): {text}",
                    self.base,
                    if status == 401 {
                        "authentication failed"
                    } else {
                        "not allowed"
                    }
                ),
            });
        }
        if status != 200 {
            return Err(RegistryError {
                // 4xx: the registry refuses this schema (409 incompatible,
                // 422 invalid); retrying cannot help. 5xx: maybe later.
                fatal: (400..500).contains(&status) && status != 408 && status != 429,
                message: format!(
                    "schema registry {}: registering subject {subject:?}: HTTP {status}: {text}",
                    self.base
                ),
            });
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| RegistryError {
            fatal: false,
            message: format!("schema registry {}: bad answer {text:?}: {e}", self.base),
        })?;
        v["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError {
                fatal: false,
                message: format!("schema registry {}: no id in {text:?}", self.base),
            })
    }
}

/// True when the TLS handshake failed on the registry's certificate
/// (untrusted, expired, wrong name) or the registry refused ours: a
/// configuration problem, not an outage. Matched on rustls' messages: the
/// connector boxes its errors (`Box<dyn Error>`), so the rustls error cannot
/// be downcast from reqwest's source chain.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    let text = describe(e);
    [
        "invalid peer certificate",
        "peer sent no certificates",
        "received fatal alert: UnknownCA",
        "received fatal alert: BadCertificate",
        "received fatal alert: CertificateUnknown",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// A transport error with its causes (reqwest's `Display` hides them).
fn describe(e: &reqwest::Error) -> String {
    let s = with_causes(e);
    if e.is_timeout() {
        format!("no answer in {}s: {s}", TIMEOUT.as_secs())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(crate::config::check_registry_url("http://reg:8081/").is_ok());
        assert!(crate::config::check_registry_url(
            "https://psrc-abc.eu-central-1.aws.confluent.cloud"
        )
        .is_ok());
        assert!(crate::config::check_registry_url("http://reg/sr").is_ok());
        assert!(crate::config::check_registry_url("reg:8081").is_err());
        assert!(crate::config::check_registry_url("ftp://reg").is_err());
        assert!(crate::config::check_registry_url("http://reg:8081/?x=1").is_err());
        let e = crate::config::check_registry_url("https://key:secret@reg").unwrap_err();
        assert!(
            e.contains("schema_registry_username") && !e.contains("secret@"),
            "{e}"
        );
    }

    #[test]
    fn client_from_config() {
        let mut c = KafkaSinkConfig::new("k", "b:1");
        c.schema_registry_url = Some("https://reg:8081/sr/".into());
        c.schema_registry_username = Some("u".into());
        c.schema_registry_password = Some("hunter2".into());
        let r = Registry::new(&c).unwrap();
        assert_eq!(r.base, "https://reg:8081/sr");
        assert!(!format!("{r:?}").contains("hunter2"));
        c.schema_registry_ca_file = Some("/nonexistent/ca.pem".into());
        let e = Registry::new(&c).unwrap_err();
        assert!(e.starts_with("schema_registry_ca_file: cannot read"), "{e}");
    }
}
