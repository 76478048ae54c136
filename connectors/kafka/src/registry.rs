//! A minimal Confluent Schema Registry client: registers a schema under a
//! subject (`POST /subjects/{subject}/versions` with
//! `{"schema": "<schema JSON as a string>"}`, answer `{"id": N}`).
//!
//! Plain `http://` only (HTTP/1.1 over a TCP connection per request,
//! `Connection: close`, fixed-length or chunked answers); put a TLS
//! terminating proxy in front of a registry that requires https. The
//! registry returns the existing id when the same schema is registered
//! again, so re-registering after a restart is harmless.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the registry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host:port`.
    pub authority: String,
    /// Path prefix without the trailing `/` (usually empty).
    pub base: String,
}

/// A failed registration: `fatal` when the registry refused the schema
/// (incompatible, invalid), not when it could not be reached or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub fatal: bool,
    pub message: String,
}

impl Registry {
    /// Parses `http://host[:port][/path]` (port 80 by default).
    pub fn parse(url: &str) -> Result<Registry, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if auth.is_empty() || auth.contains('@') {
            return Err(format!("{url:?}: expected http://host[:port][/path]"));
        }
        let authority = if auth.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        Ok(Registry {
            authority,
            base: path.trim_end_matches('/').to_string(),
        })
    }

    /// Registers `schema` (the schema's JSON text) under `subject`; returns its id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema }).to_string();
        let path = format!("{}/subjects/{}/versions", self.base, subject);
        let (status, answer) = tokio::time::timeout(TIMEOUT, self.post(&path, &body))
            .await
            .map_err(|_| RegistryError {
                fatal: false,
                message: format!(
                    "schema registry {}: no answer in {}s",
                    self.authority,
                    TIMEOUT.as_secs()
                ),
            })?
            .map_err(|e| RegistryError {
                fatal: false,
                message: format!("schema registry {}: {e}", self.authority),
            })?;
        let text = String::from_utf8_lossy(&answer);
        if status != 200 {
            return Err(RegistryError {
                // 4xx: the registry refuses this schema (409 incompatible,
                // 422 invalid); retrying cannot help. 5xx: maybe later.
                fatal: (400..500).contains(&status) && status != 408 && status != 429,
                message: format!(
                    "schema registry {}: registering subject {subject:?}: HTTP {status}: {text}",
                    self.authority
                ),
            });
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| RegistryError {
            fatal: false,
            message: format!(
                "schema registry {}: bad answer {text:?}: {e}",
                self.authority
            ),
        })?;
        v["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError {
                fatal: false,
                message: format!("schema registry {}: no id in {text:?}", self.authority),
            })
    }

    async fn post(&self, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(&self.authority).await?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
             Accept: application/vnd.schemaregistry.v1+json, application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        parse_response(&resp)
            .ok_or_else(|| std::io::Error::other("malformed HTTP response".to_string()))
    }
}

/// Status and body of an HTTP/1.1 response (Content-Length, chunked or
/// until close).
pub fn parse_response(resp: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&resp[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let mut body = &resp[end + 4..];
    if chunked {
        let mut out = Vec::new();
        loop {
            let nl = body.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&body[..nl]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            body = &body[nl + 2..];
            if size == 0 {
                return Some((status, out));
            }
            out.extend_from_slice(body.get(..size)?);
            body = body.get(size + 2..)?;
        }
    }
    if let Some(n) = length {
        body = body.get(..n)?;
    }
    Some((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_responses() {
        let r = Registry::parse("http://reg:8081/").unwrap();
        assert_eq!((r.authority.as_str(), r.base.as_str()), ("reg:8081", ""));
        let r = Registry::parse("http://reg/sr").unwrap();
        assert_eq!((r.authority.as_str(), r.base.as_str()), ("reg:80", "/sr"));
        assert!(Registry::parse("https://reg:8081").is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":7}"),
            Some((200, b"{\"id\":7}".to_vec()))
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            ),
            Some((409, b"abcde".to_vec()))
        );
    }
}
