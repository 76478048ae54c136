//! Configuration of the HTTP sink: one `[[sinks]]` table with
//! `type = "http"` (the service strips `type` and deserializes the rest
//! into [`HttpSinkConfig`]), and its parsed `url` template ([`UrlTemplate`]).
//!
//! Invariants kept: unknown keys are an error (`deny_unknown_fields`, also
//! in the nested `oauth` and `mapping` tables); every field but `name` and
//! `url` has a documented default; [`HttpSinkConfig::validate`] rejects what
//! the sink cannot work with, naming the sink and the key. `password`,
//! `bearer_token`, `secret` and the OAuth client secret and refresh token
//! are secrets: `Debug` masks them and no log line prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rowstream_api::ConfigError;
use serde::Deserialize;

/// The body shape.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A JSON array of change envelopes (as in the file backup), each with
    /// the record id as its first member `"id"`.
    #[default]
    Envelope,
    /// A JSON array of rows: the after image (the key for deletes) with the
    /// op and the record id (see `op_field`, `id_field`), mapped per table.
    Rows,
}

/// What to do with a request the receiver refuses (a 4xx other than 401,
/// 403, 408 and 429).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the service (exit 1) with the URL, status and answer; the batch
    /// is not acknowledged, so the checkpoint stays before it.
    #[default]
    Stop,
    /// Append the request's records and the answer as one JSON line to
    /// `dead_letter` (fsync'd before the ack) and carry on.
    DeadLetter,
}

/// What a delete becomes with `format = "rows"` for a mapped table.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    /// A row with the key columns and `op = "d"`.
    #[default]
    Send,
    /// Nothing is sent (CRMs where deleting a lead by sync is unwanted).
    Skip,
}

/// `[sinks.mapping."db.table"]`: how rows of one table are shaped (`format = "rows"`).
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    /// Substituted for `{module}` in `url` (a CRM module such as `Leads`).
    #[serde(default)]
    pub module: Option<String>,
    /// Column -> field name. When not empty, only these columns are sent,
    /// renamed; when empty every column is sent under its own name.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Fixed members added to every row of the table (`Lead_Source = "shop"`).
    #[serde(default, rename = "static")]
    pub statics: BTreeMap<String, serde_json::Value>,
    /// `"send"` (default) or `"skip"`.
    #[serde(default)]
    pub on_delete: OnDelete,
}

/// `[sinks.oauth]`: the OAuth2 refresh-token flow.
#[derive(Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The token endpoint (`https://accounts.zoho.eu/oauth/v2/token`).
    pub token_url: String,
    pub client_id: String,
    /// Secret, never logged.
    pub client_secret: String,
    /// Secret, never logged.
    pub refresh_token: String,
    /// An access token is refreshed this long before its `expires_in` runs
    /// out, in milliseconds. Default 60000.
    #[serde(default = "default_refresh_margin_ms")]
    pub refresh_margin_ms: u64,
}

impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .field("refresh_margin_ms", &self.refresh_margin_ms)
            .finish()
    }
}

/// `[[sinks]] type = "http"`: per-table JSON requests to a URL template.
///
/// ```toml
/// [[sinks]]
/// type = "http"
/// name = "crm"
/// url = "https://www.zohoapis.eu/crm/v8/{module}/upsert"
/// format = "rows"                 # envelope | rows
/// wrap = "data"                   # optional: {"data": [...]}
/// extra = { duplicate_check_fields = ["Email"] }
/// batch_records = 100
/// rate_per_second = 5
/// daily_budget = 20000
/// on_error = "dead_letter"
/// dead_letter = "/var/lib/rowstream/crm-dead.ndjson"
/// [sinks.oauth]
/// token_url = "https://accounts.zoho.eu/oauth/v2/token"
/// client_id = "..."
/// client_secret = "..."
/// refresh_token = "..."
/// [sinks.mapping."shop.customers"]
/// module = "Leads"
/// fields = { email = "Email", name = "Last_Name" }
/// static = { Lead_Source = "shop" }
/// on_delete = "skip"
/// ```
#[derive(Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The sink's name, for logs and metrics. Required, non-empty.
    pub name: String,
    /// Where requests go: an `http://` or `https://` URL in which `{name}`
    /// (the source's logical name), `{db}`, `{table}` and `{module}` (the
    /// table mapping's) are substituted per table. Required.
    pub url: String,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// More request headers (`X-Api-Version = "2"`). Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one request, in milliseconds; a timed out request is
    /// retried. Default 30000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM file with the CA certificate(s) of the receiver. Default: the
    /// built-in web roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `Authorization: Bearer <token>` (secret). Excludes the other methods.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Basic authentication user; requires `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password (secret).
    #[serde(default)]
    pub password: Option<String>,
    /// OAuth2 refresh-token flow: the access token is fetched from
    /// `token_url`, cached until shortly before it expires, and refreshed
    /// once on a 401.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// `"envelope"` (default) or `"rows"`.
    #[serde(default)]
    pub format: Format,
    /// With a member name, the body is `{"<wrap>": [...]}` instead of the array.
    #[serde(default)]
    pub wrap: Option<String>,
    /// Fixed members added next to `wrap` (requires `wrap`).
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Per-table row shaping by `"db.table"` (`format = "rows"` only).
    #[serde(default)]
    pub mapping: BTreeMap<String, TableMapping>,
    /// Member of each row carrying the record id (`format = "rows"`);
    /// `""` leaves it out (then only `Idempotency-Key` identifies a
    /// request). Default `"_id"`.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Member of each row carrying the op (`c`, `u`, `d`, `r`); `""` leaves
    /// it out. Default `"_op"`.
    #[serde(default = "default_op_field")]
    pub op_field: String,
    /// Most records in one request. Default 100 (Zoho's upsert limit).
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    /// A request is sent once its body reaches this many bytes. Default 1 MiB.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Longest a record waits for a fuller request while more keep
    /// arriving, in milliseconds (when the stream goes idle everything is
    /// sent at once). Default 200.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Requests in flight at once, each for a different table (requests of
    /// one table are always sent one at a time, so changes of one key are
    /// never reordered). Default 1.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest wait between retries (429, 5xx, timeouts, connection
    /// errors), in milliseconds; retries go on forever. Default 30000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Requests per second at most, retries included (OAuth token requests
    /// go to another server and are not counted). Default unlimited.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Requests per UTC day at most; when spent the sink waits for
    /// midnight UTC (it never fails for it). Counted in memory: a restart
    /// of rowstream starts the day's count again. Default unlimited.
    #[serde(default)]
    pub daily_budget: Option<u64>,
    /// `"stop"` (default) or `"dead_letter"` (requires `dead_letter`).
    #[serde(default)]
    pub on_error: OnError,
    /// File the refused requests are appended to, one JSON line each.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Where the first and last record id of every request are noted, so
    /// that a replay after a crash groups the same records into the same
    /// requests with the same `Idempotency-Key` (see `journal`). Default
    /// `<name>-requests.log` in the working directory.
    #[serde(default)]
    pub request_log: Option<PathBuf>,
    /// Signs every request the Standard Webhooks way (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`). A `whsec_` prefixed
    /// secret is base64-decoded after the prefix; any other is used as is.
    #[serde(default)]
    pub secret: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_id_field() -> String {
    "_id".into()
}
fn default_op_field() -> String {
    "_op".into()
}
fn default_batch_records() -> usize {
    100
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_linger_ms() -> u64 {
    200
}
fn default_concurrency() -> usize {
    1
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_refresh_margin_ms() -> u64 {
    60_000
}

impl fmt::Debug for HttpSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("HttpSinkConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .field("bearer_token", &mask(&self.bearer_token))
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .field("oauth", &self.oauth)
            .field("format", &self.format)
            .field("wrap", &self.wrap)
            .field("extra", &self.extra)
            .field("mapping", &self.mapping)
            .field("id_field", &self.id_field)
            .field("op_field", &self.op_field)
            .field("batch_records", &self.batch_records)
            .field("batch_bytes", &self.batch_bytes)
            .field("linger_ms", &self.linger_ms)
            .field("concurrency", &self.concurrency)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("rate_per_second", &self.rate_per_second)
            .field("daily_budget", &self.daily_budget)
            .field("on_error", &self.on_error)
            .field("dead_letter", &self.dead_letter)
            .field("request_log", &self.request_log)
            .field("secret", &mask(&self.secret))
            .finish()
    }
}

impl HttpSinkConfig {
    /// A configuration with every optional field at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> HttpSinkConfig {
        HttpSinkConfig {
            name: name.into(),
            url: url.into(),
            method: default_method(),
            headers: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
            ca_file: None,
            bearer_token: None,
            username: None,
            password: None,
            oauth: None,
            format: Format::Envelope,
            wrap: None,
            extra: BTreeMap::new(),
            mapping: BTreeMap::new(),
            id_field: default_id_field(),
            op_field: default_op_field(),
            batch_records: default_batch_records(),
            batch_bytes: default_batch_bytes(),
            linger_ms: default_linger_ms(),
            concurrency: default_concurrency(),
            retry_max_ms: default_retry_max_ms(),
            rate_per_second: None,
            daily_budget: None,
            on_error: OnError::Stop,
            dead_letter: None,
            request_log: None,
            secret: None,
        }
    }

    /// The request log path (the configured one or the default).
    pub fn request_log_path(&self) -> PathBuf {
        self.request_log
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}-requests.log", self.name)))
    }

    /// Checks the values (not the receiver: that is met on the first request).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = ConfigError::of("http", &self.name);
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        let url = UrlTemplate::parse(&self.url).map_err(|e| err("url", e))?;
        if url.needs_module() && self.mapping.values().all(|m| m.module.is_none()) {
            return Err(err(
                "url",
                "uses {module} but no [sinks.mapping.\"db.table\"] sets a module".into(),
            ));
        }
        if !matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            return Err(err(
                "method",
                format!("{:?}: must be POST, PUT or PATCH", self.method),
            ));
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(err(
                    &format!("headers.{k:?}"),
                    "not a valid HTTP header".into(),
                ));
            }
        }
        let auths = [
            self.bearer_token.is_some(),
            self.username.is_some() || self.password.is_some(),
            self.oauth.is_some(),
        ];
        if auths.iter().filter(|a| **a).count() > 1 {
            return Err(err(
                "bearer_token",
                "use one of bearer_token, username/password and [sinks.oauth]".into(),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(err("username", "username and password go together".into()));
        }
        if let Some(o) = &self.oauth {
            match url::Url::parse(&o.token_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(err("oauth.token_url", "must be an http(s) URL".into())),
            }
        }
        self.validate_shape(&err)?;
        self.validate_delivery(&err)
    }

    fn validate_shape(
        &self,
        err: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.wrap.as_ref().is_some_and(|w| w.is_empty()) {
            return Err(err(
                "wrap",
                "must not be empty (leave it out for a bare array)".into(),
            ));
        }
        if !self.extra.is_empty() && self.wrap.is_none() {
            return Err(err(
                "extra",
                "requires wrap (a bare array has no members)".into(),
            ));
        }
        if self
            .wrap
            .as_ref()
            .is_some_and(|w| self.extra.contains_key(w))
        {
            return Err(err("extra", "must not hold the wrap member".into()));
        }
        if !self.mapping.is_empty() && self.format != Format::Rows {
            return Err(err("mapping", "requires format = \"rows\"".into()));
        }
        for t in self.mapping.keys() {
            if t.split_once('.')
                .is_none_or(|(d, n)| d.is_empty() || n.is_empty())
            {
                return Err(err(
                    &format!("mapping.{t:?}"),
                    "keys are \"db.table\"".into(),
                ));
            }
        }
        Ok(())
    }

    fn validate_delivery(
        &self,
        err: &impl Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let positive = [
            ("batch_records", self.batch_records as u64),
            ("concurrency", self.concurrency as u64),
            ("timeout_ms", self.timeout_ms),
            ("retry_max_ms", self.retry_max_ms),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(err(k, "must be greater than 0".into()));
            }
        }
        if self.batch_bytes < 1024 {
            return Err(err("batch_bytes", "must be at least 1024".into()));
        }
        if self
            .rate_per_second
            .is_some_and(|r| !(r > 0.0 && r.is_finite()))
        {
            return Err(err("rate_per_second", "must be a positive number".into()));
        }
        if self.daily_budget == Some(0) {
            return Err(err("daily_budget", "must be greater than 0".into()));
        }
        if self.on_error == OnError::DeadLetter && self.dead_letter.is_none() {
            return Err(err(
                "dead_letter",
                "is required with on_error = \"dead_letter\"".into(),
            ));
        }
        Ok(())
    }

    /// The mapping of `db.table`, if any.
    pub fn mapping_for(&self, db: &str, table: &str) -> Option<&TableMapping> {
        if self.mapping.is_empty() {
            return None;
        }
        self.mapping.get(&format!("{db}.{table}"))
    }
}

/// One piece of a URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Name,
    Db,
    Table,
    Module,
}

/// A parsed `url`: `{name}`, `{db}`, `{table}` and `{module}` substituted
/// per table (percent-encoded, so a table name cannot change the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    pieces: Vec<Piece>,
}

impl UrlTemplate {
    /// Parses and checks `url` (an http(s) URL without credentials once
    /// the placeholders are filled); the error is the problem's wording.
    pub fn parse(url: &str) -> Result<UrlTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = url;
        while !rest.is_empty() {
            let found = [
                ("{name}", Piece::Name),
                ("{db}", Piece::Db),
                ("{table}", Piece::Table),
                ("{module}", Piece::Module),
            ]
            .into_iter()
            .find(|(p, _)| rest.starts_with(p));
            if let Some((p, piece)) = found {
                pieces.push(piece);
                rest = &rest[p.len()..];
            } else if rest.starts_with(['{', '}']) {
                return Err(format!(
                    "{url:?}: only {{name}}, {{db}}, {{table}} and {{module}} may be substituted"
                ));
            } else {
                let len = rest.find(['{', '}']).unwrap_or(rest.len());
                pieces.push(Piece::Text(rest[..len].to_string()));
                rest = &rest[len..];
            }
        }
        let t = UrlTemplate { pieces };
        match url::Url::parse(&t.render("n", "d", "t", Some("m"))) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(
                "must not carry credentials (URLs are logged): use username/password or bearer_token"
                    .into(),
            ),
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(t),
            _ => Err(format!("{url:?} is not an http:// or https:// URL")),
        }
    }

    /// True when the template uses `{module}`.
    pub fn needs_module(&self) -> bool {
        self.pieces.contains(&Piece::Module)
    }

    /// The URL of one table (`module` only matters with `{module}`).
    pub fn render(&self, name: &str, db: &str, table: &str, module: Option<&str>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Name => out.push_str(&percent_encode(name)),
                Piece::Db => out.push_str(&percent_encode(db)),
                Piece::Table => out.push_str(&percent_encode(table)),
                Piece::Module => out.push_str(&percent_encode(module.unwrap_or(""))),
            }
        }
        out
    }
}

/// What `{placeholders}` escape: all but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_zoho_shape_and_secrets() {
        let c: HttpSinkConfig =
            serde_json::from_str(r#"{"name":"h","url":"http://localhost:8080/{table}"}"#).unwrap();
        assert_eq!(c, HttpSinkConfig::new("h", "http://localhost:8080/{table}"));
        assert!(c.validate().is_ok());
        let c: HttpSinkConfig = serde_json::from_str(
            r#"{"name":"crm","url":"https://crm/v8/{module}/upsert","format":"rows","wrap":"data",
                "extra":{"duplicate_check_fields":["Email"]},
                "oauth":{"token_url":"https://acc/token","client_id":"i","client_secret":"cs3cret","refresh_token":"rt0ken"},
                "mapping":{"shop.customers":{"module":"Leads","fields":{"email":"Email"},
                  "static":{"Lead_Source":"shop"},"on_delete":"skip"}},
                "secret":"whsec_abc","password":null}"#,
        )
        .unwrap();
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        let m = c.mapping_for("shop", "customers").unwrap();
        assert_eq!(m.on_delete, OnDelete::Skip);
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("cs3cret") && !dbg.contains("rt0ken") && !dbg.contains("whsec"),
            "{dbg}"
        );
        assert!(serde_json::from_str::<HttpSinkConfig>(
            r#"{"name":"h","url":"http://a","nope":1}"#
        )
        .is_err());
    }

    #[test]
    fn url_templates() {
        let t = UrlTemplate::parse("https://crm/v8/{module}/upsert?t={db}.{table}").unwrap();
        assert!(t.needs_module());
        assert_eq!(
            t.render("n", "sh op", "c/x", Some("Leads")),
            "https://crm/v8/Leads/upsert?t=sh%20op.c%2Fx"
        );
        assert!(UrlTemplate::parse("http://h/{x}").is_err());
        assert!(UrlTemplate::parse("http://u:p@h/").is_err());
        assert!(UrlTemplate::parse("h/{table}").is_err());
        assert!(!UrlTemplate::parse("http://h/hook").unwrap().needs_module());
    }

    /// The example in the README's "Sending changes over HTTP" section.
    const README_EXAMPLE: &str = r#"
[[sinks]]
name = "crm"
url = "https://www.zohoapis.eu/crm/v8/{module}/upsert"
format = "rows"
wrap = "data"
extra = { duplicate_check_fields = ["Email"] }
batch_records = 100
rate_per_second = 5
daily_budget = 20000
on_error = "dead_letter"
dead_letter = "/var/lib/rowstream/crm-dead.jsonl"
[sinks.oauth]
token_url = "https://accounts.zoho.eu/oauth/v2/token"
client_id = "1000.XXXX"
client_secret = "..."
refresh_token = "1000.yyyy"
[sinks.mapping."shop.customers"]
module = "Leads"
fields = { email = "Email", name = "Last_Name" }
static = { Lead_Source = "shop" }
on_delete = "skip"
"#;

    #[test]
    fn readme_example_parses_from_toml() {
        #[derive(Deserialize)]
        struct File {
            sinks: Vec<HttpSinkConfig>,
        }
        let f: File = toml::from_str(README_EXAMPLE).unwrap();
        let c = &f.sinks[0];
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        assert_eq!(
            c.extra["duplicate_check_fields"],
            serde_json::json!(["Email"])
        );
        assert_eq!(
            c.mapping_for("shop", "customers").unwrap().statics["Lead_Source"],
            "shop"
        );
        assert_eq!(c.oauth.as_ref().unwrap().refresh_margin_ms, 60_000);
    }

    #[test]
    fn validate_rejects() {
        let ok = HttpSinkConfig::new("h", "http://a/x");
        let bad = |f: &dyn Fn(&mut HttpSinkConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(&|c| c.name = "".into()), "name");
        assert_eq!(bad(&|c| c.url = "ftp://a".into()), "url");
        assert_eq!(bad(&|c| c.url = "http://a/{schema}".into()), "url");
        assert_eq!(bad(&|c| c.url = "http://a/{module}".into()), "url");
        assert_eq!(bad(&|c| c.method = "GET".into()), "method");
        assert_eq!(bad(&|c| c.username = Some("u".into())), "username");
        assert_eq!(
            bad(&|c| {
                c.bearer_token = Some("t".into());
                c.username = Some("u".into());
                c.password = Some("p".into());
            }),
            "bearer_token"
        );
        assert_eq!(
            bad(&|c| {
                c.extra.insert("a".into(), 1.into());
            }),
            "extra"
        );
        assert_eq!(
            bad(&|c| {
                c.mapping.insert("a.b".into(), TableMapping::default());
            }),
            "mapping"
        );
        assert_eq!(bad(&|c| c.batch_records = 0), "batch_records");
        assert_eq!(bad(&|c| c.rate_per_second = Some(0.0)), "rate_per_second");
        assert_eq!(bad(&|c| c.on_error = OnError::DeadLetter), "dead_letter");
    }
}
