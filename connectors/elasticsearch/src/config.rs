//! Configuration of the Elasticsearch / OpenSearch sink: one `[[sinks]]`
//! table with `type = "elasticsearch"` (the service strips `type` and
//! deserializes the rest into [`ElasticsearchSinkConfig`]).
//!
//! Invariants kept: unknown keys are an error (`deny_unknown_fields`); every
//! field but `name` and `urls` has a documented default;
//! [`ElasticsearchSinkConfig::validate`] rejects values the sink cannot work
//! with, naming the sink and the key. `password` and `api_key` are secrets:
//! the `Debug` output masks them and no log line prints them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rowstream_api::kit::template::TemplateError;
use rowstream_api::{ConfigError, TableTemplate};
use serde::Deserialize;

/// The default index template.
pub const DEFAULT_INDEX: &str = "{db}.{table}";

/// What to do with a document the cluster refuses for its content (a
/// mapping error, an `_id` too long): anything but 409, 429 and 5xx.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the service with the cluster's reason; the batch is not
    /// acknowledged, so the checkpoint stays before it.
    #[default]
    Stop,
    /// Append the item (index, id, op, status, reason, GTID, the document)
    /// as one JSON line to `dead_letter_file`, count it in
    /// `rowstream_es_dead_letters_total`, and carry on.
    DeadLetter,
}

/// How DECIMAL columns are mapped in indices the sink creates. Documents
/// always carry the exact digits as a JSON string (`"12.50"`).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DecimalMapping {
    /// `keyword`: exact, sortable only as text.
    #[default]
    Keyword,
    /// `scaled_float` with `scaling_factor = 10^scale`: a number, exact
    /// while the unscaled value fits in 2^53.
    ScaledFloat,
    /// `double`: a number, rounded to 53 bits.
    Double,
}

/// `[[sinks]] type = "elasticsearch"`: one index per table, one document per
/// row (`_id` = primary key), external versions from the binlog position.
///
/// ```toml
/// [[sinks]]
/// type = "elasticsearch"
/// name = "search"
/// urls = ["https://es1:9200", "https://es2:9200"]
/// index = "{db}.{table}"          # optional
/// username = "rowstream"          # optional, basic auth
/// password = "secret"
/// # api_key = "base64(id:key)"    # optional, instead of username/password
/// ca_file = "/etc/rowstream/es-ca.pem"   # optional
/// bulk_docs = 1000                # optional
/// bulk_bytes = 5242880            # optional
/// flush_ms = 200                  # optional
/// create_indices = true           # optional
/// decimal = "keyword"             # optional: keyword | scaled_float | double
/// on_error = "stop"               # optional: stop | dead_letter
/// dead_letter_file = "/var/lib/rowstream/es-dead.ndjson"
/// [sinks.key_columns]             # optional, tables without a primary key
/// "shop.events" = ["event_uuid"]
/// ```
#[derive(Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    /// The sink's name, for logs and metrics. Required, non-empty.
    pub name: String,
    /// Base URLs of one or more nodes (`http://host:9200`,
    /// `https://host:9200`); requests go round-robin. Required.
    pub urls: Vec<String>,
    /// Index of each table. `{name}` is replaced by the source's logical
    /// server name, `{db}` and `{table}` by the table's database and name;
    /// the result is lowercased and characters Elasticsearch refuses in
    /// index names (`\ / * ? " < > | , # :` and spaces) become `_`.
    /// Default `"{db}.{table}"`. Must contain `{table}`.
    #[serde(default = "default_index")]
    pub index: String,
    /// Basic authentication user; requires `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password (secret, never logged).
    #[serde(default)]
    pub password: Option<String>,
    /// API key in the encoded form the cluster returns (`base64(id:key)`),
    /// sent as `Authorization: ApiKey ...` (secret, never logged). Excludes
    /// `username`/`password`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// PEM file with the CA certificate(s) that signed the nodes'
    /// certificates, for clusters with a private CA. Default: the system's
    /// trust roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate verification. Default false. For tests only: it
    /// lets anyone in the middle read and change the data.
    #[serde(default)]
    pub tls_insecure: bool,
    /// Most documents (actions) in one `_bulk` request. Default 1000.
    #[serde(default = "default_bulk_docs")]
    pub bulk_docs: usize,
    /// Size of a `_bulk` request body: a request is sent as soon as its
    /// body reaches this many bytes, so it exceeds it by at most one row
    /// change's actions. Default 5 MiB.
    #[serde(default = "default_bulk_bytes")]
    pub bulk_bytes: usize,
    /// Longest a change waits in the buffer for a fuller bulk request while
    /// more batches keep arriving, in milliseconds (when the stream goes
    /// idle the buffer is sent at once). Default 200.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Create missing indices with a mapping derived from the column types
    /// (see the README). Default true. With false the indices must exist
    /// (or the cluster must create them, e.g. from an index template).
    #[serde(default = "default_true")]
    pub create_indices: bool,
    /// Mapping of DECIMAL columns in created indices. Default `"keyword"`.
    #[serde(default)]
    pub decimal: DecimalMapping,
    /// `"stop"` (default) or `"dead_letter"` (requires `dead_letter_file`):
    /// what to do with documents the cluster refuses for their content.
    #[serde(default)]
    pub on_error: OnError,
    /// NDJSON file the refused documents are appended to (fsync'd before
    /// their batch is acknowledged) with `on_error = "dead_letter"`.
    #[serde(default)]
    pub dead_letter_file: Option<PathBuf>,
    /// Document id columns of tables without a primary key, by
    /// `"db.table"`: the columns must identify a row (a unique key of NOT
    /// NULL columns). A table with neither stops the sink when its first
    /// change arrives.
    #[serde(default)]
    pub key_columns: BTreeMap<String, Vec<String>>,
    /// Longest wait between retries of a request that failed transiently
    /// (unreachable node, 429, 5xx), in milliseconds. Retries go on forever
    /// with exponential backoff and jitter up to this; the checkpoint does
    /// not advance meanwhile. Default 30000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Timeout of one HTTP request, in milliseconds. Default 60000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_index() -> String {
    DEFAULT_INDEX.to_string()
}
fn default_bulk_docs() -> usize {
    1000
}
fn default_bulk_bytes() -> usize {
    5 << 20
}
fn default_flush_ms() -> u64 {
    200
}
fn default_true() -> bool {
    true
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_timeout_ms() -> u64 {
    60_000
}

impl fmt::Debug for ElasticsearchSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mask = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("ElasticsearchSinkConfig")
            .field("name", &self.name)
            .field("urls", &self.urls)
            .field("index", &self.index)
            .field("username", &self.username)
            .field("password", &mask(&self.password))
            .field("api_key", &mask(&self.api_key))
            .field("ca_file", &self.ca_file)
            .field("tls_insecure", &self.tls_insecure)
            .field("bulk_docs", &self.bulk_docs)
            .field("bulk_bytes", &self.bulk_bytes)
            .field("flush_ms", &self.flush_ms)
            .field("create_indices", &self.create_indices)
            .field("decimal", &self.decimal)
            .field("on_error", &self.on_error)
            .field("dead_letter_file", &self.dead_letter_file)
            .field("key_columns", &self.key_columns)
            .field("retry_max_ms", &self.retry_max_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl ElasticsearchSinkConfig {
    /// A configuration with every optional field at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> ElasticsearchSinkConfig {
        ElasticsearchSinkConfig {
            name: name.into(),
            urls: vec![url.into()],
            index: default_index(),
            username: None,
            password: None,
            api_key: None,
            ca_file: None,
            tls_insecure: false,
            bulk_docs: default_bulk_docs(),
            bulk_bytes: default_bulk_bytes(),
            flush_ms: default_flush_ms(),
            create_indices: true,
            decimal: DecimalMapping::Keyword,
            on_error: OnError::Stop,
            dead_letter_file: None,
            key_columns: BTreeMap::new(),
            retry_max_ms: default_retry_max_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// The parsed `index` template.
    pub fn index_template(&self) -> Result<TableTemplate, TemplateError> {
        TableTemplate::parse(
            &self.index,
            "documents are keyed per table and tables must not share an index",
        )
    }

    /// Checks the values (not the cluster: that happens in `start`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = ConfigError::of("elasticsearch", &self.name);
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        if self.urls.is_empty() {
            return Err(err("urls", "must list at least one node URL".into()));
        }
        for u in &self.urls {
            match url::Url::parse(u) {
                Ok(p) if !p.username().is_empty() || p.password().is_some() => {
                    return Err(err(
                        "urls",
                        "must not carry credentials (URLs are logged): use username/password or api_key".into(),
                    ))
                }
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                _ => {
                    return Err(err(
                        "urls",
                        format!("{u:?} is not an http:// or https:// URL"),
                    ))
                }
            }
        }
        let index = self
            .index_template()
            .map_err(|e| err("index", e.to_string()))?;
        if index.prefix().starts_with(['-', '_', '+']) {
            return Err(err(
                "index",
                format!("{:?}: index names may not start with -, _ or +", self.index),
            ));
        }
        match (&self.username, &self.password, &self.api_key) {
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(err("username", "username and password go together".into()))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(err(
                    "api_key",
                    "use either api_key or username/password, not both".into(),
                ))
            }
            _ => {}
        }
        if self.bulk_docs == 0 {
            return Err(err("bulk_docs", "must be greater than 0".into()));
        }
        if self.bulk_bytes < 1024 {
            return Err(err("bulk_bytes", "must be at least 1024".into()));
        }
        if self.on_error == OnError::DeadLetter && self.dead_letter_file.is_none() {
            return Err(err(
                "dead_letter_file",
                "is required with on_error = \"dead_letter\"".into(),
            ));
        }
        for (t, cols) in &self.key_columns {
            if t.split_once('.')
                .is_none_or(|(d, n)| d.is_empty() || n.is_empty())
            {
                return Err(err(
                    &format!("key_columns.{t:?}"),
                    "keys are \"db.table\"".into(),
                ));
            }
            if cols.is_empty() {
                return Err(err(
                    &format!("key_columns.{t:?}"),
                    "must list at least one column".into(),
                ));
            }
        }
        if self.retry_max_ms == 0 {
            return Err(err("retry_max_ms", "must be greater than 0".into()));
        }
        if self.timeout_ms == 0 {
            return Err(err("timeout_ms", "must be greater than 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: ElasticsearchSinkConfig =
            serde_json::from_str(r#"{"name":"es","urls":["http://localhost:9200"]}"#).unwrap();
        assert_eq!(
            c,
            ElasticsearchSinkConfig::new("es", "http://localhost:9200")
        );
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<ElasticsearchSinkConfig>(
            r#"{"name":"es","urls":["http://a:1"],"type":"elasticsearch"}"#
        )
        .is_err());
        let c: ElasticsearchSinkConfig = serde_json::from_str(
            r#"{"name":"es","urls":["https://a:9200","https://b:9200"],"index":"cdc-{table}",
                "username":"u","password":"hunter2","decimal":"scaled_float","on_error":"dead_letter",
                "dead_letter_file":"/tmp/d.ndjson","key_columns":{"s.log":["uuid"]}}"#,
        )
        .unwrap();
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        assert_eq!(c.decimal, DecimalMapping::ScaledFloat);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("\"u\""), "{dbg}");
    }

    #[test]
    fn validate_rejects() {
        let ok = ElasticsearchSinkConfig::new("es", "http://a:9200");
        let bad = |f: &dyn Fn(&mut ElasticsearchSinkConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(&|c| c.name = "".into()), "name");
        assert_eq!(bad(&|c| c.urls.clear()), "urls");
        assert_eq!(bad(&|c| c.urls = vec!["a:9200".into()]), "urls");
        assert_eq!(
            bad(&|c| c.urls = vec!["http://u:secret@a:9200".into()]),
            "urls"
        );
        assert_eq!(bad(&|c| c.index = "{db}".into()), "index");
        assert_eq!(bad(&|c| c.index = "{schema}.{table}".into()), "index");
        assert_eq!(bad(&|c| c.index = "_{table}".into()), "index");
        assert_eq!(bad(&|c| c.username = Some("u".into())), "username");
        assert_eq!(
            bad(&|c| {
                c.username = Some("u".into());
                c.password = Some("p".into());
                c.api_key = Some("k".into());
            }),
            "api_key"
        );
        assert_eq!(bad(&|c| c.bulk_docs = 0), "bulk_docs");
        assert_eq!(
            bad(&|c| c.on_error = OnError::DeadLetter),
            "dead_letter_file"
        );
        assert_eq!(
            bad(&|c| {
                c.key_columns.insert("nodot".into(), vec!["a".into()]);
            }),
            "key_columns.\"nodot\""
        );
    }
}
