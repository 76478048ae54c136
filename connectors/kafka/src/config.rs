//! Configuration of the Kafka sink: one `[[sinks]]` table with
//! `type = "kafka"` in the service's TOML (the service strips `type` and
//! deserializes the rest into [`KafkaSinkConfig`]).
//!
//! Invariants kept: unknown keys are an error (`deny_unknown_fields`); every
//! field but `name` and `brokers` has a documented default;
//! [`KafkaSinkConfig::validate`] rejects values the sink cannot work with,
//! naming the sink and the key. `properties` may hold secrets (SASL
//! passwords) and `schema_registry_password` is one: the `Debug` output
//! masks them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rowstream_api::kit::template::TemplateError;
use rowstream_api::{ConfigError, TableTemplate};
use serde::Deserialize;

/// The default topic template: Debezium's `<prefix>.<db>.<table>`.
pub const DEFAULT_TOPIC: &str = "{name}.{db}.{table}";

/// librdkafka properties the sink sets itself; `properties` may not override
/// them because the delivery guarantees depend on them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "acks",
    "request.required.acks",
    "transactional.id",
];

/// How record values (and keys) are encoded.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Key: the primary key columns as a JSON object; value: the change
    /// envelope of `schemas/change-event.schema.json`.
    #[default]
    Json,
    /// Confluent Avro: key and value schemas derived from the table's
    /// columns (see `crate::avro`), registered in the Schema Registry at
    /// `schema_registry_url`; records in the Confluent wire format.
    Avro,
    /// Debezium's MySQL connector with `JsonConverter` and
    /// `schemas.enable=false` under its default settings (see
    /// `crate::debezium`): keys, values and tombstones as Debezium writes
    /// them, and DDL on the schema-change topic `{name}`.
    Debezium,
}

/// `[[sinks]] type = "kafka"`: every row change as a Kafka record, one topic
/// per table, keyed by primary key.
///
/// ```toml
/// [[sinks]]
/// type = "kafka"
/// name = "kafka"
/// brokers = "kafka1:9092,kafka2:9092"
/// topic = "{name}.{db}.{table}"   # optional
/// format = "json"                 # optional
/// partitions = 1                  # optional, for topics rowstream creates
/// replication_factor = 1          # optional, for topics rowstream creates
/// tombstones = true               # optional
/// transactions = false            # optional: the {name}.transaction topic
/// # format = "avro" with a registry over HTTPS and basic auth (Confluent Cloud):
/// # schema_registry_url = "https://psrc-xxxxx.europe-west3.gcp.confluent.cloud"
/// # schema_registry_username = "<API key>"
/// # schema_registry_password = "<API secret>"
/// # schema_registry_ca_file = "/etc/rowstream/registry-ca.pem"   # private CA only
/// [sinks.properties]              # optional, passed to librdkafka
/// "compression.type" = "zstd"
/// "linger.ms" = "5"
/// # TLS + SASL as librdkafka users write it (PLAIN, SCRAM-SHA-256/512):
/// # "security.protocol" = "SASL_SSL"
/// # "sasl.mechanism" = "SCRAM-SHA-512"
/// # "sasl.username" = "rowstream"
/// # "sasl.password" = "..."
/// # "ssl.ca.location" = "/etc/rowstream/kafka-ca.pem"
/// ```
///
/// Refused credentials or an untrusted broker certificate at start are
/// fatal, naming the properties to fix (librdkafka alone would retry them
/// forever).
#[derive(Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The sink's name, for logs and metrics. Required, non-empty.
    pub name: String,
    /// Bootstrap brokers, `host:port[,host:port...]` (librdkafka's
    /// `bootstrap.servers`). Required.
    pub brokers: String,
    /// Topic of each table. `{name}` is replaced by the source's logical
    /// server name (`source.name` of the envelope, Debezium's topic prefix),
    /// `{db}` and `{table}` by the table's database and name. Default
    /// `"{name}.{db}.{table}"`. Topics that do not exist are created through
    /// the admin API with `partitions` and `replication_factor` (rowstream
    /// never relies on broker auto-creation).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `"json"` (default), `"avro"` (requires `schema_registry_url`) or
    /// `"debezium"` (Debezium-compatible records, DDL on the `{name}` topic).
    #[serde(default)]
    pub format: Format,
    /// Schema Registry base URL for `format = "avro"`:
    /// `http(s)://host[:port][/path]`, without credentials (use
    /// `schema_registry_username` / `schema_registry_password`). Subjects
    /// follow the TopicNameStrategy: `<topic>-key` and `<topic>-value`.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
    /// Basic authentication user of the registry (Confluent Cloud: the
    /// Schema Registry API key); requires `schema_registry_password`.
    /// Confluent clients' `basic.auth.user.info = "user:password"` is these
    /// two keys. Default none.
    #[serde(default)]
    pub schema_registry_username: Option<String>,
    /// Basic authentication password of the registry (Confluent Cloud: the
    /// API secret). Secret: never logged. Default none.
    #[serde(default)]
    pub schema_registry_password: Option<String>,
    /// PEM file with the CA certificate(s) that signed the registry's
    /// certificate, added to the built-in web roots; only with an
    /// `https://` `schema_registry_url`. Default: the web roots alone.
    #[serde(default)]
    pub schema_registry_ca_file: Option<PathBuf>,
    /// librdkafka configuration properties (security, compression, linger,
    /// batch sizes...), passed through as given. The ones in
    /// [`RESERVED_PROPERTIES`] are refused. The sink's defaults, which these
    /// may override: `message.timeout.ms = "0"` (retry forever: a broker
    /// outage stalls the pipeline instead of failing it) and
    /// `allow.auto.create.topics = "false"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Partitions of topics rowstream creates. Default 1; must be > 0.
    #[serde(default = "default_one")]
    pub partitions: i32,
    /// Replication factor of topics rowstream creates. Default 1; must be > 0.
    #[serde(default = "default_one")]
    pub replication_factor: i32,
    /// After the record of a delete, send a tombstone (same key, null
    /// value) so log compaction can drop the key. Default true. Tables
    /// without a primary key never get tombstones (their records have no key).
    #[serde(default = "default_true")]
    pub tombstones: bool,
    /// Also write transaction metadata (Debezium's
    /// `provide.transaction.metadata`) to the topic `{name}.transaction`: a
    /// BEGIN record before the first change of each transaction and an END
    /// record after its last, with the number of change events per table;
    /// key `{"id":"<gtid>"}`. Always JSON, so only with `format = "json"`.
    /// Default false.
    #[serde(default)]
    pub transactions: bool,
}

fn default_topic() -> String {
    DEFAULT_TOPIC.to_string()
}

fn default_one() -> i32 {
    1
}

fn default_true() -> bool {
    true
}

impl KafkaSinkConfig {
    /// A configuration with every optional field at its default.
    pub fn new(name: impl Into<String>, brokers: impl Into<String>) -> KafkaSinkConfig {
        KafkaSinkConfig {
            name: name.into(),
            brokers: brokers.into(),
            topic: default_topic(),
            format: Format::Json,
            schema_registry_url: None,
            schema_registry_username: None,
            schema_registry_password: None,
            schema_registry_ca_file: None,
            properties: BTreeMap::new(),
            partitions: 1,
            replication_factor: 1,
            tombstones: true,
            transactions: false,
        }
    }

    /// Checks the values (not the brokers: that happens in `start`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = ConfigError::of("kafka", &self.name);
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        if self.brokers.trim().is_empty() {
            return Err(err(
                "brokers",
                "must not be empty (host:port[,host:port...])".into(),
            ));
        }
        if self.transactions && self.format == Format::Avro {
            return Err(err(
                "transactions",
                "the transaction topic is JSON only; use format = \"json\" or transactions = false"
                    .into(),
            ));
        }
        self.topic_template()
            .map_err(|e| err("topic", e.to_string()))?;
        match (&self.schema_registry_url, self.format) {
            (None, Format::Avro) => {
                return Err(err(
                    "schema_registry_url",
                    "is required with format = \"avro\"".into(),
                ))
            }
            (Some(u), _) => {
                if let Err(e) = check_registry_url(u) {
                    return Err(err("schema_registry_url", e));
                }
            }
            _ => {}
        }
        if self.schema_registry_username.is_some() != self.schema_registry_password.is_some() {
            return Err(err(
                if self.schema_registry_username.is_some() {
                    "schema_registry_password"
                } else {
                    "schema_registry_username"
                },
                "schema_registry_username and schema_registry_password go together".into(),
            ));
        }
        if self
            .schema_registry_username
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.contains(':'))
        {
            return Err(err(
                "schema_registry_username",
                "must be non-empty and without ':' (basic authentication)".into(),
            ));
        }
        let https = self
            .schema_registry_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .is_some_and(|u| u.scheme() == "https");
        if self.schema_registry_ca_file.is_some() && !https {
            return Err(err(
                "schema_registry_ca_file",
                "is only used with an https:// schema_registry_url".into(),
            ));
        }
        if self.schema_registry_url.is_none() && self.schema_registry_username.is_some() {
            return Err(err(
                "schema_registry_username",
                "is only used with schema_registry_url".into(),
            ));
        }
        for k in self.properties.keys() {
            if RESERVED_PROPERTIES.contains(&k.as_str()) {
                return Err(err(
                    &format!("properties.{k}"),
                    "is set by the sink itself (brokers, idempotent producer with acks=all) and cannot be overridden".into(),
                ));
            }
        }
        if self.partitions <= 0 {
            return Err(err("partitions", "must be greater than 0".into()));
        }
        if self.replication_factor <= 0 {
            return Err(err("replication_factor", "must be greater than 0".into()));
        }
        Ok(())
    }

    /// The parsed `topic` template.
    pub fn topic_template(&self) -> Result<TableTemplate, TemplateError> {
        TableTemplate::parse(
            &self.topic,
            "records are keyed per table and tables must not share a topic",
        )
    }
}

impl fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked: BTreeMap<&str, &str> = self
            .properties
            .keys()
            .map(|k| {
                let secret = ["password", "secret", "key", "token", "jaas"]
                    .iter()
                    .any(|s| k.contains(s));
                (k.as_str(), if secret { "***" } else { &self.properties[k] })
            })
            .collect();
        f.debug_struct("KafkaSinkConfig")
            .field("name", &self.name)
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("format", &self.format)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("schema_registry_username", &self.schema_registry_username)
            .field(
                "schema_registry_password",
                &self.schema_registry_password.as_ref().map(|_| "***"),
            )
            .field("schema_registry_ca_file", &self.schema_registry_ca_file)
            .field("properties", &masked)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("tombstones", &self.tombstones)
            .field("transactions", &self.transactions)
            .finish()
    }
}

/// Checks a `schema_registry_url`: `http(s)://host[:port][/path]`, without
/// credentials (they would be logged with the URL).
pub fn check_registry_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(
            "must not carry credentials (URLs are logged): use schema_registry_username and schema_registry_password".into(),
        ),
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                Err(format!("{url:?}: expected http(s)://host[:port][/path], without query or fragment"))
            } else {
                Ok(())
            }
        }
        _ => Err(format!("{url:?}: expected http(s)://host[:port][/path]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: KafkaSinkConfig =
            serde_json::from_str(r#"{"name":"k","brokers":"localhost:9092"}"#).unwrap();
        assert_eq!(c, KafkaSinkConfig::new("k", "localhost:9092"));
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<KafkaSinkConfig>(
            r#"{"name":"k","brokers":"b:1","type":"kafka"}"#
        )
        .is_err());
        let c: KafkaSinkConfig = serde_json::from_str(
            r#"{"name":"k","brokers":"b:1","topic":"cdc.{table}","format":"json","partitions":3,
                "replication_factor":2,"tombstones":false,"properties":{"linger.ms":"10","sasl.password":"hunter2"}}"#,
        )
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(
            (c.partitions, c.replication_factor, c.tombstones),
            (3, 2, false)
        );
        assert_eq!(
            c.topic_template().unwrap().render("srv", "shop", "orders"),
            "cdc.orders"
        );
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("hunter2") && dbg.contains("linger.ms"),
            "{dbg}"
        );
    }

    #[test]
    fn debezium_format() {
        let c: KafkaSinkConfig = serde_json::from_str(
            r#"{"name":"k","brokers":"b:1","format":"debezium","transactions":true}"#,
        )
        .unwrap();
        assert_eq!(c.format, Format::Debezium);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects() {
        let ok = KafkaSinkConfig::new("k", "b:1");
        assert_eq!(
            ok.topic_template().unwrap().render("srv", "shop", "orders"),
            "srv.shop.orders"
        );
        let mut c = ok.clone();
        c.name = " ".into();
        assert_eq!(c.validate().unwrap_err().key, "name");
        let mut c = ok.clone();
        c.brokers = "".into();
        assert_eq!(c.validate().unwrap_err().key, "brokers");
        let mut c = ok.clone();
        c.topic = "{name}.{schema}.{table}".into();
        assert_eq!(c.validate().unwrap_err().key, "topic");
        c.topic = "{name}.{db}".into();
        assert_eq!(c.validate().unwrap_err().key, "topic");
        let mut c = ok.clone();
        c.format = Format::Avro;
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_url");
        c.schema_registry_url = Some("reg:8081".into());
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_url");
        c.schema_registry_url = Some("https://u:p@reg:8081".into());
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_url");
        c.schema_registry_url = Some("http://reg:8081".into());
        assert!(c.validate().is_ok());
        c.schema_registry_ca_file = Some("/etc/ca.pem".into());
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_ca_file");
        c.schema_registry_url = Some("HTTPS://reg:8081".into());
        assert!(c.validate().is_ok());
        c.schema_registry_username = Some("key".into());
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_password");
        c.schema_registry_password = Some("hunter2".into());
        assert!(c.validate().is_ok());
        c.schema_registry_username = None;
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_username");
        c.schema_registry_username = Some("a:b".into());
        assert_eq!(c.validate().unwrap_err().key, "schema_registry_username");
        c.schema_registry_username = Some("key".into());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("key"), "{dbg}");
        let mut c = ok.clone();
        c.properties.insert("acks".into(), "1".into());
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "properties.acks");
        assert!(e.to_string().contains("\"k\""), "{e}");
        let mut c = ok.clone();
        c.partitions = 0;
        assert_eq!(c.validate().unwrap_err().key, "partitions");
        let mut c = ok;
        c.replication_factor = -1;
        assert_eq!(c.validate().unwrap_err().key, "replication_factor");
    }
}
