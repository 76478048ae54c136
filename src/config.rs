//! The service configuration: a TOML file, overridden by `ROWSTREAM_*__*`
//! environment variables, then validated.
//!
//! ```toml
//! [source]
//! url = "mysql://repl:secret@127.0.0.1:3306"   # or urls = [primary, replica, ...]
//! server_id = 5401
//! name = "prod"
//! start = "latest"
//! include = ["shop.*"]
//! exclude = []
//! heartbeat_secs = 5
//!
//! [checkpoint]
//! dir = "/var/lib/rowstream"
//!
//! [[sinks]]
//! type = "file"
//! name = "backup"
//! dir = "/var/lib/rowstream/backup"
//!
//! [metrics]
//! listen = "127.0.0.1:9187"
//! ```
//!
//! # Environment overrides
//!
//! A variable `ROWSTREAM_<KEY>__<KEY>[__<KEY>...]` sets the key at that path
//! before the file is deserialized: `__` separates nesting levels, the names
//! are lowercased, a number is an index into an array.
//! `ROWSTREAM_SOURCE__URL` sets `source.url`, `ROWSTREAM_SOURCE__SERVER_ID`
//! sets `source.server_id`, `ROWSTREAM_SINKS__0__DIR` sets `sinks[0].dir`
//! (index = the current length appends a new element). Only variables whose
//! name (after `ROWSTREAM_`) contains `__` are overrides; `ROWSTREAM_LOG` and
//! the like are not. The value is read as a TOML value when it is one
//! (`5401`, `true`, `["a.*", "b.*"]`, `"quoted"`), otherwise as a plain string
//! (`mysql://...`, `latest`); when the file already holds a string at that
//! key, the raw value is kept as a string (so `ROWSTREAM_SOURCE__NAME=123`
//! is the name "123"). Setting `source.url` drops a `source.urls` list from
//! the file and the other way round: they are two spellings of one setting.
//!
//! Invariants: unknown keys are errors at every level (top, `[source]`,
//! `[checkpoint]`, inside each `[[sinks]]` table); a [`Config`] returned by
//! [`load`] has passed [`Config::validate`]; a sink type whose cargo feature
//! (`kafka`, `elasticsearch`) is off in this build parses but fails
//! validation, naming the fix ([`NotBuilt`]); passwords in source URLs never
//! appear in `Debug` output nor in the messages of [`ConfigError`].

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::gtid::GtidSet;
use crate::source::conn::ConnOpts;
use crate::source::filter::TableFilter;
use crate::source::SourceError;
use rowstream_api::Flavor;

/// Prefix of every environment variable rowstream reads.
pub const ENV_PREFIX: &str = "ROWSTREAM_";

/// Why a configuration could not be loaded. Every message names the file;
/// none contains a password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or the keys and types do not match: unknown key, missing
    /// required key, wrong type. `message` is the TOML parser's, which names
    /// the key and, when the value came from the file, its line and column.
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// An override variable could not be applied (bad path, or it would
    /// index past the end of an array).
    #[error("config file {}: environment variable {var} (key `{key}`): {message}", path.display())]
    Env {
        path: PathBuf,
        var: String,
        key: String,
        message: String,
    },
    /// The configuration parsed but a value is not acceptable.
    #[error("config file {}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A value that failed [`Config::validate`]: which key (`source.server_id`,
/// `sinks[1].name`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct InvalidConfig {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> InvalidConfig {
    InvalidConfig {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server to read the binlog from.
    pub source: SourceConfig,
    /// Where the GTID checkpoint is kept.
    pub checkpoint: CheckpointConfig,
    /// Where change events go (`[[sinks]]`); at least one, names unique.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// `[metrics]`: the Prometheus endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Reading the rows that already exist (`[snapshot]`); optional.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// `[heartbeat]`: per-sink lag measured with a heartbeat row; off unless present.
    #[serde(default)]
    pub heartbeat: Option<HeartbeatConfig>,
    /// `[health]`: when `GET /health` answers 503.
    #[serde(default)]
    pub health: HealthConfig,
    /// `[pipeline]`: where the sinks run.
    #[serde(default)]
    pub pipeline: PipelineConfig,
}

/// `[pipeline]`: how the work is spread over threads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// `"auto"` (default), `"per_sink"` or `"none"`: see [`SinkThreads`].
    #[serde(default)]
    pub sink_threads: SinkThreads,
}

/// Where the sinks encode and write (`[pipeline] sink_threads`). Their I/O
/// is asynchronous either way (the file sink's compression, writes and
/// fsyncs run on a pool of their own); what moves is the CPU work of
/// encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SinkThreads {
    /// `per_sink` with more than two CPUs available to the process, `none`
    /// with one or two. The default.
    #[default]
    Auto,
    /// A thread per sink: decoding and each sink's encoding run in parallel.
    PerSink,
    /// The sinks run on the thread that decodes. On two cores `run` into
    /// the file backup caught up 12% sooner with 6% less CPU (README,
    /// Performance): the batches are encoded and freed while still in that
    /// core's cache, and no thread waits behind another on a busy core
    /// while the other one idles.
    None,
}

impl SinkThreads {
    /// The value as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkThreads::Auto => "auto",
            SinkThreads::PerSink => "per_sink",
            SinkThreads::None => "none",
        }
    }

    /// Whether each sink gets a thread of its own, `cpus` being the CPUs
    /// available to the process.
    pub fn per_sink(self, cpus: usize) -> bool {
        match self {
            SinkThreads::Auto => cpus > 2,
            SinkThreads::PerSink => true,
            SinkThreads::None => false,
        }
    }
}

/// `[heartbeat]`: rowstream upserts its own row in a table on the source
/// every interval and measures, per sink, how long until that change is
/// durable there (on rowstream's own clock).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Milliseconds between heartbeat writes (default 1000, at least 10).
    #[serde(default = "default_heartbeat_interval_ms")]
    pub interval_ms: u64,
    /// `db.table` of the heartbeat table (default "rowstream.heartbeat");
    /// created when missing (needs CREATE on the schema), and it must be
    /// captured (`source.include` / `exclude`).
    #[serde(default = "default_heartbeat_table")]
    pub table: String,
    /// Also write heartbeat rows to the sinks (default false: they pass
    /// through the pipeline and advance the checkpoint, sinks skip them).
    #[serde(default)]
    pub deliver: bool,
    /// Account that writes the heartbeat (needs INSERT, UPDATE on the table);
    /// default: the source URL (the replication account rarely may write).
    #[serde(default)]
    pub url: Option<String>,
}

fn default_heartbeat_interval_ms() -> u64 {
    1000
}

fn default_heartbeat_table() -> String {
    "rowstream.heartbeat".to_string()
}

impl HeartbeatConfig {
    /// The table as (db, table).
    pub fn db_table(&self) -> Option<(&str, &str)> {
        let (d, t) = self.table.split_once('.')?;
        (!d.is_empty() && !t.is_empty() && !t.contains('.')).then_some((d, t))
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        if self.interval_ms < 10 {
            return Err(invalid("heartbeat.interval_ms", "must be at least 10"));
        }
        let Some((d, t)) = self.db_table() else {
            return Err(invalid("heartbeat.table", "must be `db.table`"));
        };
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if !ok(d) || !ok(t) {
            return Err(invalid(
                "heartbeat.table",
                "letters, digits, `_` and `$` only",
            ));
        }
        Ok(())
    }
}

/// `[health]`: the bounds past which `GET /health` answers 503.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A sink with a batch (or heartbeat) unacked for longer is unhealthy and
    /// named in a warning, again every such period (default 60000).
    #[serde(default = "default_stall_ms")]
    pub max_sink_stall_ms: u64,
    /// The source disconnected for longer is unhealthy and logged, again every
    /// such period (default 60000).
    #[serde(default = "default_stall_ms")]
    pub max_source_down_ms: u64,
}

fn default_stall_ms() -> u64 {
    60_000
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            max_sink_stall_ms: default_stall_ms(),
            max_source_down_ms: default_stall_ms(),
        }
    }
}

/// `[metrics]`: where `GET /metrics` is served in the Prometheus text format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` to listen on, e.g. `"127.0.0.1:9187"`; unset = no endpoint.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

/// When the rows that already exist are read (`[snapshot] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when there is no checkpoint (and `source.start` is
    /// "latest"), then stream. The default.
    #[default]
    Initial,
    /// Never snapshot: stream from `source.start` or the checkpoint.
    Never,
    /// Like `initial`, and also snapshot again when the checkpoint's position
    /// has been purged from the server (instead of refusing to start).
    WhenNeeded,
    /// Snapshot like `initial`, then stop (exit 0) instead of streaming.
    InitialOnly,
}

/// `[snapshot]`: how existing rows are read before streaming.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// `"initial"` (default), `"never"`, `"when_needed"` or `"initial_only"`.
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Connections reading chunks in parallel (default 2, 1..=64). Each holds
    /// one consistent-snapshot transaction for the whole snapshot.
    #[serde(default = "default_snapshot_threads")]
    pub threads: usize,
    /// Rows per chunk (default 10000): the unit of parallel work and of
    /// resumable progress in the checkpoint.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// Schema holding the `rowstream_signal` table (`id VARCHAR(64) PRIMARY
    /// KEY, type VARCHAR(32) NOT NULL, data TEXT`) for on-demand snapshots
    /// while streaming; unset (default): no on-demand snapshots. The table
    /// must be captured (not excluded) and the rowstream user needs INSERT
    /// on it (watermark rows). A snapshot in progress is kept in the
    /// checkpoint and resumed after a restart.
    #[serde(default)]
    pub signal_schema: Option<String>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            threads: default_snapshot_threads(),
            chunk_rows: default_chunk_rows(),
            signal_schema: None,
        }
    }
}

fn default_snapshot_threads() -> usize {
    2
}

fn default_chunk_rows() -> u64 {
    10_000
}

impl SnapshotConfig {
    fn validate(&self) -> Result<(), InvalidConfig> {
        if !(1..=64).contains(&self.threads) {
            return Err(invalid("snapshot.threads", "must be between 1 and 64"));
        }
        if self
            .signal_schema
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(invalid("snapshot.signal_schema", "must not be empty"));
        }
        if !(1..=10_000_000).contains(&self.chunk_rows) {
            return Err(invalid(
                "snapshot.chunk_rows",
                "must be between 1 and 10000000",
            ));
        }
        Ok(())
    }
}

/// `[source]`: the MySQL / MariaDB server rowstream reads as a replica.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The server's URL, `mysql://user:password@host:port[?tls=...]`.
    /// Exactly one of `url` and `urls` is set.
    #[serde(default)]
    pub url: Option<String>,
    /// Servers to read from in order of preference: the primary first, then
    /// replicas (with the same GTIDs) to fail over to. Exactly one of `url`
    /// and `urls` is set.
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// Our replica server id: non-zero, unique among the server's replicas
    /// (and different from the server's own `server_id`).
    pub server_id: u32,
    /// Logical server name, printed as `source.name` in every event. Required.
    pub name: String,
    /// Where to start when there is no checkpoint yet: `"latest"` (default:
    /// changes from now on), `"earliest"` (everything still in the binlog) or
    /// a GTID set in the server's notation (streaming starts after it).
    /// Ignored once a checkpoint exists. With "latest" and `[snapshot] mode`
    /// other than "never", the existing rows are snapshotted first and
    /// streaming starts at the snapshot's cut.
    #[serde(default = "default_start")]
    pub start: String,
    /// Tables to stream, `db.table` globs (`*`, `?`). Default: every table
    /// of every non-system schema.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables to leave out, `db.table` globs; excludes win over includes.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Heartbeat period asked from the server, in seconds (default 5); a read
    /// that sees nothing for three periods counts the connection as dead.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u64,
    /// Leave out transactions that a rowstream `mysql` sink applied to this
    /// server (two-way sync: A -> B and B -> A without loops). Off by
    /// default, so a chain A -> rowstream -> B -> rowstream -> Kafka
    /// captures everything.
    #[serde(default)]
    pub skip_rowstream_applied: bool,
    /// The `progress_schema` of the mysql sinks writing into this server
    /// (default "rowstream"), for `skip_rowstream_applied`.
    #[serde(default = "default_progress_schema")]
    pub rowstream_progress_schema: String,
    /// Leave out transactions that originated on these server ids.
    #[serde(default)]
    pub exclude_server_ids: Vec<u32>,
    /// Columns no sink ever sees (`db.table.column` globs; Debezium's
    /// `column.exclude.list`). A primary key column cannot be excluded.
    #[serde(default)]
    pub columns_exclude: Vec<String>,
    /// Columns whose values are replaced: `"db.table.column" = "sha256"`
    /// (salted hash, `mask_salt`) or `"redact"` (a fixed string).
    #[serde(default)]
    pub columns_mask: std::collections::BTreeMap<String, String>,
    /// The secret salt of `sha256` masks.
    #[serde(default)]
    pub mask_salt: Option<String>,
    /// Act as a semi-sync replica: acknowledge each transaction to the
    /// server once it is durable in every sink and in the checkpoint, so a
    /// commit that returned on the source is in every sink (zero loss).
    /// Needs semi-sync on the server (MySQL: plugin `rpl_semi_sync_source`;
    /// MariaDB: `rpl_semi_sync_master_enabled`). Default false.
    #[serde(default)]
    pub semi_sync: bool,
}

fn default_progress_schema() -> String {
    "rowstream".to_string()
}

impl SourceConfig {
    /// The origin rules of this source (`source::origin`).
    pub fn origins(&self) -> crate::source::origin::OriginFilter {
        crate::source::origin::OriginFilter {
            exclude_server_ids: self.exclude_server_ids.clone(),
            skip_applied_schema: self
                .skip_rowstream_applied
                .then(|| self.rowstream_progress_schema.clone()),
        }
    }
}

fn default_start() -> String {
    "latest".to_string()
}

fn default_heartbeat_secs() -> u64 {
    5
}

/// `[checkpoint]`: where the position is remembered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Directory holding `checkpoint.json` (and its lock); created if
    /// missing. One rowstream process per directory.
    pub dir: PathBuf,
}

/// One `[[sinks]]` table; `type` selects the kind, the other keys are that
/// kind's own (unknown keys are errors).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// `type = "file"`: the file backup (`connectors/file`).
    File(rowstream_file::FileSinkConfig),
    /// `type = "kafka"`: per-table Kafka topics keyed by primary key (`connectors/kafka`).
    #[cfg(feature = "kafka")]
    Kafka(rowstream_kafka::KafkaSinkConfig),
    /// `type = "kafka"` in a build without the `kafka` feature: refused by validation.
    #[cfg(not(feature = "kafka"))]
    Kafka(NotBuilt),
    /// `type = "elasticsearch"`: one Elasticsearch / OpenSearch index per
    /// table, documents keyed by primary key (`connectors/elasticsearch`).
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(rowstream_elasticsearch::ElasticsearchSinkConfig),
    /// `type = "elasticsearch"` in a build without the `elasticsearch` feature.
    #[cfg(not(feature = "elasticsearch"))]
    Elasticsearch(NotBuilt),
    /// `type = "mysql"`: applies every change to a MySQL or MariaDB server,
    /// in parallel and exactly once (`connectors/mysql`).
    Mysql(rowstream_mysql::MysqlSinkConfig),
    /// `type = "http"`: JSON requests per table to a webhook or CRM
    /// (`connectors/http`).
    Http(Box<rowstream_http::HttpSinkConfig>),
}

/// A sink table of a type left out of this build (a cargo feature): any
/// keys are accepted, [`NotBuilt::validate`] refuses it with how to fix it.
#[derive(Debug, Clone, Deserialize)]
pub struct NotBuilt {
    /// The sink's name, for the message.
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    _keys: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// Why a [`NotBuilt`] sink is refused (same shape as the sinks' config errors).
#[derive(Debug)]
pub struct NotBuiltError {
    pub key: String,
    pub problem: String,
}

impl NotBuilt {
    /// Always an error: this build cannot run the sink.
    pub fn validate(&self) -> Result<(), NotBuiltError> {
        Err(NotBuiltError {
            key: "type".into(),
            problem: "this sink type is not built into this rowstream: rebuild with its cargo \
                      feature (`--features kafka,elasticsearch`, the default) or remove the sink"
                .into(),
        })
    }
}

impl SinkConfig {
    /// The sink's name (unique within the config).
    pub fn name(&self) -> &str {
        match self {
            SinkConfig::File(c) => &c.name,
            SinkConfig::Kafka(c) => &c.name,
            SinkConfig::Elasticsearch(c) => &c.name,
            SinkConfig::Mysql(c) => &c.name,
            SinkConfig::Http(c) => &c.name,
        }
    }

    /// The sink's `type`, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::Mysql(_) => "mysql",
            SinkConfig::Http(_) => "http",
        }
    }

    /// The kind's own validation: the offending key inside the sink table
    /// and what is wrong with it.
    fn validate_kind(&self) -> Result<(), (String, String)> {
        match self {
            SinkConfig::File(c) => c.validate().map_err(|e| (e.key.to_string(), e.problem)),
            SinkConfig::Kafka(c) => c.validate().map_err(|e| (e.key, e.problem)),
            SinkConfig::Elasticsearch(c) => c.validate().map_err(|e| (e.key, e.problem)),
            SinkConfig::Mysql(c) => c.validate().map_err(|e| (e.key.to_string(), e.problem)),
            SinkConfig::Http(c) => c.validate().map_err(|e| (e.key, e.problem)),
        }
    }
}

impl SourceConfig {
    /// The servers to read from, in order: `[url]` or `urls`.
    pub fn urls(&self) -> Vec<String> {
        match (&self.url, &self.urls) {
            (Some(u), _) => vec![u.clone()],
            (None, Some(us)) => us.clone(),
            (None, None) => Vec::new(),
        }
    }

    /// [`Self::urls`] parsed into connection options.
    pub fn conn_opts(&self) -> Result<Vec<ConnOpts>, SourceError> {
        self.urls().iter().map(|u| ConnOpts::from_url(u)).collect()
    }

    /// The include/exclude table filter.
    pub fn filter(&self) -> Result<TableFilter, String> {
        let columns = rowstream_api::kit::ColumnRules::new(
            &self.columns_exclude,
            &self.columns_mask,
            self.mask_salt.as_deref(),
        )?;
        Ok(TableFilter::new(&self.include, &self.exclude)?.with_columns(columns))
    }

    fn validate(&self) -> Result<(), InvalidConfig> {
        match (&self.url, &self.urls) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "source.url",
                    "set either `url` or `urls`, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "source.url",
                    "missing: set `url` (one server) or `urls` (primary first, then replicas)",
                ))
            }
            (None, Some(us)) if us.is_empty() => {
                return Err(invalid("source.urls", "empty: list at least one server"))
            }
            _ => {}
        }
        for (i, u) in self.urls().iter().enumerate() {
            let key = if self.url.is_some() {
                "source.url".to_string()
            } else {
                format!("source.urls[{i}]")
            };
            ConnOpts::from_url(u).map_err(|e| invalid(key, redact_secrets(&e.to_string())))?;
        }
        if self.server_id == 0 {
            return Err(invalid(
                "source.server_id",
                "must not be 0 (a server refuses replica id 0); pick an id unique among its replicas",
            ));
        }
        if self.name.trim().is_empty() {
            return Err(invalid(
                "source.name",
                "must not be empty: it is the logical server name in every event",
            ));
        }
        match self.start.as_str() {
            "earliest" | "latest" => {}
            s if s.trim().is_empty() => {
                return Err(invalid(
                    "source.start",
                    "must not be empty: \"earliest\", \"latest\" or a GTID set",
                ))
            }
            s => {
                if GtidSet::parse(Flavor::MySql, s).is_err() {
                    if let Err(e) = GtidSet::parse(Flavor::MariaDb, s) {
                        return Err(invalid(
                            "source.start",
                            format!(
                                "must be \"earliest\", \"latest\" or a GTID set (MySQL \
                                 `uuid:1-100,...` or MariaDB `0-1-100,...`): {e}"
                            ),
                        ));
                    }
                }
            }
        }
        if let Err(e) = self.filter() {
            let key = if self.columns_exclude.iter().any(|p| e.contains(p.as_str())) {
                "source.columns_exclude"
            } else if e.contains("column") || e.contains("mask") {
                "source.columns_mask"
            } else if self.include.iter().any(|p| !p.contains('.')) {
                "source.include"
            } else {
                "source.exclude"
            };
            return Err(invalid(key, e));
        }
        if self.heartbeat_secs == 0 {
            return Err(invalid("source.heartbeat_secs", "must be at least 1"));
        }
        Ok(())
    }
}

impl fmt::Debug for SourceConfig {
    // URLs are printed with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field(
                "urls",
                &self
                    .urls
                    .as_ref()
                    .map(|us| us.iter().map(|u| redact_url(u)).collect::<Vec<_>>()),
            )
            .field("server_id", &self.server_id)
            .field("name", &self.name)
            .field("start", &self.start)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("semi_sync", &self.semi_sync)
            .finish()
    }
}

impl Config {
    /// Checks every value: `source` (exactly one of `url`/`urls`, each URL
    /// parses, `server_id` non-zero, `name` non-empty, `start` is `earliest`,
    /// `latest` or a GTID set, table patterns valid, `heartbeat_secs` >= 1),
    /// `checkpoint.dir` non-empty, at least one sink, sink names non-empty and
    /// unique, and each sink's own validation. Returns the first problem.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.source.validate()?;
        self.snapshot.validate()?;
        if let Some(h) = &self.heartbeat {
            h.validate()?;
        }
        if self.checkpoint.dir.as_os_str().is_empty() {
            return Err(invalid("checkpoint.dir", "must not be empty"));
        }
        if self.sinks.is_empty() {
            return Err(invalid(
                "sinks",
                "no sink configured: add at least one [[sinks]] table (e.g. type = \"file\")",
            ));
        }
        let mut names = HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            if s.name().trim().is_empty() {
                return Err(invalid(format!("sinks[{i}].name"), "must not be empty"));
            }
            if !names.insert(s.name()) {
                return Err(invalid(
                    format!("sinks[{i}].name"),
                    format!(
                        "sink name {:?} is used twice; sink names must be unique",
                        s.name()
                    ),
                ));
            }
            s.validate_kind().map_err(|(key, problem)| {
                invalid(
                    format!("sinks[{i}].{key}"),
                    format!("{problem} ({} sink {:?})", s.kind(), s.name()),
                )
            })?;
        }
        Ok(())
    }
}

/// Reads `path`, applies the `ROWSTREAM_*__*` overrides of the process
/// environment, deserializes and validates. See the module docs for the
/// override rules.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    // Non-UTF-8 variables cannot be config values; they are not ours.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_with_env(path, env)
}

/// [`load`] with the environment given explicitly (for tests and for
/// callers that filter it). Variables not matching the override rules are
/// ignored.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_with_env(&text, path, env)
}

/// Parses TOML `text` (read from `path`, used in messages), applies the
/// overrides in `env`, deserializes and validates.
pub fn parse_with_env(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let parse_err = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message: redact_secrets(message.trim_end()),
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.to_string()))?;
    let applied = apply_overrides(&mut table, env, path)?;
    let config: Config = if applied.is_empty() {
        // From the text, so errors carry line and column.
        toml::from_str(text).map_err(|e| parse_err(e.to_string()))?
    } else {
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                parse_err(format!(
                    "{} (after environment overrides: {})",
                    e.to_string().trim_end(),
                    applied.join(", ")
                ))
            })?
    };
    config.validate().map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        key: e.key,
        message: e.message,
    })?;
    Ok(config)
}

/// One path segment of an override variable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    Index(usize),
    Key(String),
}

fn show_key(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
        }
    }
    s
}

/// Applies the override variables in `env` to `table`; returns the names of
/// the variables applied, in the order applied.
fn apply_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    path: &Path,
) -> Result<Vec<String>, ConfigError> {
    let mut overrides: Vec<(Vec<Seg>, String, String)> = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let parts: Vec<&str> = rest.split("__").collect();
        let segs: Vec<Seg> = parts
            .iter()
            .map(|p| {
                if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                    p.parse().map(Seg::Index).map_err(|_| ())
                } else {
                    Ok(Seg::Key(p.to_ascii_lowercase()))
                }
            })
            .collect::<Result<_, _>>()
            .map_err(|_| ConfigError::Env {
                path: path.to_path_buf(),
                var: var.clone(),
                key: rest.to_ascii_lowercase(),
                message: "array index too large".into(),
            })?;
        if parts.iter().any(|p| p.is_empty()) || matches!(segs[0], Seg::Index(_)) {
            return Err(ConfigError::Env {
                path: path.to_path_buf(),
                key: show_key(&segs),
                var,
                message: "not a key path: use ROWSTREAM_SECTION__KEY, `__` between levels \
                          (e.g. ROWSTREAM_SOURCE__URL, ROWSTREAM_SINKS__0__DIR)"
                    .into(),
            });
        }
        overrides.push((segs, var, value));
    }
    // Parents before children, array elements in index order (so a new
    // element can be built from several variables).
    overrides.sort();

    let mut applied = Vec::new();
    let mut keys = Vec::new();
    let mut root = toml::Value::Table(std::mem::take(table));
    let mut result = Ok(());
    for (segs, var, raw) in &overrides {
        if let Err(message) = set_path(&mut root, segs, raw) {
            result = Err(ConfigError::Env {
                path: path.to_path_buf(),
                var: var.clone(),
                key: show_key(segs),
                message,
            });
            break;
        }
        applied.push(var.clone());
        keys.push(show_key(segs));
    }
    let toml::Value::Table(mut t) = root else {
        unreachable!("the root stays a table")
    };
    // `url` and `urls` are one setting: an override of one replaces the other.
    let touched = |k: &str| {
        keys.iter()
            .any(|x| x == k || x.starts_with(&format!("{k}[")) || x.starts_with(&format!("{k}.")))
    };
    if let Some(toml::Value::Table(src)) = t.get_mut("source") {
        if touched("source.url") && !touched("source.urls") {
            src.remove("urls");
        } else if touched("source.urls") && !touched("source.url") {
            src.remove("url");
        }
    }
    *table = t;
    result.map(|()| applied)
}

/// An empty container for the segment that will be looked up in it.
fn container_for(next: &Seg) -> toml::Value {
    match next {
        Seg::Index(_) => toml::Value::Array(Vec::new()),
        Seg::Key(_) => toml::Value::Table(toml::Table::new()),
    }
}

fn set_path(node: &mut toml::Value, segs: &[Seg], raw: &str) -> Result<(), String> {
    let Some((first, rest)) = segs.split_first() else {
        return Err("empty key path".into());
    };
    let slot: &mut toml::Value = match (node, first) {
        (toml::Value::Table(t), Seg::Key(k)) => {
            if rest.is_empty() {
                let v = override_value(raw, t.get(k));
                t.insert(k.clone(), v);
                return Ok(());
            }
            t.entry(k.clone())
                .or_insert_with(|| container_for(&rest[0]))
        }
        (toml::Value::Array(a), Seg::Index(i)) => {
            let i = *i;
            if i > a.len() {
                return Err(format!(
                    "index {i} is past the end: the list has {} element(s); \
                     add new elements in order (index {} appends one)",
                    a.len(),
                    a.len()
                ));
            }
            if i == a.len() {
                a.push(match rest.first() {
                    Some(next) => container_for(next),
                    None => override_value(raw, None),
                });
                if rest.is_empty() {
                    return Ok(());
                }
            } else if rest.is_empty() {
                a[i] = override_value(raw, Some(&a[i]));
                return Ok(());
            }
            &mut a[i]
        }
        (toml::Value::Table(_), Seg::Index(i)) => {
            return Err(format!("cannot index [{i}] into a table"))
        }
        (toml::Value::Array(_), Seg::Key(k)) => {
            return Err(format!(
                "cannot look up `{k}` in a list: give an index (e.g. __0__)"
            ))
        }
        (_, _) => return Err("a parent key holds a plain value, not a table or list".into()),
    };
    set_path(slot, rest, raw)
}

/// The TOML value of an override: TOML when `raw` is a TOML scalar or
/// array, else the string itself; kept as a string when the file's value at
/// that key is a string.
fn override_value(raw: &str, existing: Option<&toml::Value>) -> toml::Value {
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_) | toml::Value::Datetime(_)));
    match (parsed, existing) {
        (Some(v @ toml::Value::String(_)), _) => v,
        (Some(_), Some(toml::Value::String(_))) | (None, _) => toml::Value::String(raw.to_string()),
        (Some(v), _) => v,
    }
}

/// `url` with its password replaced by `***` (`mysql://repl:***@db1:3306`);
/// everything else unchanged. Text without a password is returned as is.
pub fn redact_url(url: &str) -> String {
    redact_secrets(url)
}

/// `text` with the password of every `scheme://user:password@host` in it
/// replaced by `***` (for error messages that quote config lines).
pub fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment, or where the
        // surrounding text resumes (quote, whitespace).
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | ',' | ']' | ')')
                    || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        // The `@` ending the user info, and the `:` before the password in it.
        let userinfo = authority
            .rfind('@')
            .and_then(|at| Some((at, authority[..at].find(':')?)));
        match userinfo {
            // `user:password@` in prose (our own error messages) is no secret.
            Some((at, colon)) if !authority[..at].ends_with(":password") => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[source]
url = "mysql://repl:s3cret@127.0.0.1:3306"
server_id = 5401
name = "prod"
include = ["shop.*"]

[checkpoint]
dir = "/var/lib/rowstream"

[[sinks]]
type = "file"
name = "backup"
dir = "/var/lib/rowstream/backup"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        parse_with_env(text, Path::new("test.toml"), env(pairs))
    }

    #[test]
    fn semi_sync_heartbeat_and_health() {
        let c = parse(BASE, &[]).unwrap();
        assert!(!c.source.semi_sync && c.heartbeat.is_none());
        assert_eq!(c.health.max_sink_stall_ms, 60_000);
        let text = BASE.replace("name = \"prod\"", "name = \"prod\"\nsemi_sync = true")
            + "[heartbeat]\n[health]\nmax_source_down_ms = 5000\n";
        let c = parse(&text, &[]).unwrap();
        assert!(c.source.semi_sync);
        let hb = c.heartbeat.unwrap();
        assert_eq!(
            (hb.interval_ms, hb.db_table()),
            (1000, Some(("rowstream", "heartbeat")))
        );
        assert!(!hb.deliver && hb.url.is_none());
        assert_eq!(c.health.max_source_down_ms, 5000);
        for (bad, what) in [
            ("table = \"nodot\"", "db.table"),
            ("table = \"a.b`c\"", "letters"),
            ("interval_ms = 1", "at least 10"),
        ] {
            match parse(&format!("{BASE}[heartbeat]\n{bad}\n"), &[]) {
                Err(ConfigError::Invalid { message, .. }) => {
                    assert!(message.contains(what), "{message}")
                }
                other => panic!("{bad}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn sink_threads_auto_by_cpus_or_as_set() {
        let c = parse(BASE, &[]).unwrap();
        assert_eq!(c.pipeline.sink_threads, SinkThreads::Auto);
        assert_eq!(
            [1, 2, 3, 16].map(|cpus| c.pipeline.sink_threads.per_sink(cpus)),
            [false, false, true, true]
        );
        let c = parse(
            &format!("{BASE}[pipeline]\nsink_threads = \"per_sink\"\n"),
            &[],
        )
        .unwrap();
        assert!(c.pipeline.sink_threads.per_sink(1));
        let c = parse(BASE, &[("ROWSTREAM_PIPELINE__SINK_THREADS", "none")]).unwrap();
        assert!(!c.pipeline.sink_threads.per_sink(64));
        let e = parse(&format!("{BASE}[pipeline]\nsink_threads = \"two\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink_threads") && e.contains("per_sink"), "{e}");
    }

    fn file_sink(c: &Config, i: usize) -> &rowstream_file::FileSinkConfig {
        #[allow(unreachable_patterns)]
        match &c.sinks[i] {
            SinkConfig::File(f) => f,
            _ => panic!("not a file sink"),
        }
    }

    #[test]
    fn sink_type_not_built_is_refused_with_the_fix() {
        let table: toml::Table =
            toml::from_str("name = \"k\"\nbrokers = \"b:9092\"\n[properties]\nx = \"1\"").unwrap();
        let nb: NotBuilt = toml::Value::Table(table).try_into().unwrap();
        assert_eq!(nb.name, "k");
        let e = nb.validate().unwrap_err();
        assert_eq!(e.key, "type");
        assert!(
            e.problem.contains("not built into this rowstream"),
            "{}",
            e.problem
        );
        #[cfg(not(feature = "kafka"))]
        {
            let text = format!(
                "{BASE}\n[[sinks]]\ntype = \"kafka\"\nname = \"k\"\nbrokers = \"b:9092\"\n"
            );
            let e = parse(&text, &[]).unwrap_err().to_string();
            assert!(
                e.contains("sinks[1].type") && e.contains("not built"),
                "{e}"
            );
        }
    }

    #[test]
    fn base_parses_with_defaults() {
        let c = parse(BASE, &[]).unwrap();
        assert_eq!(c.source.urls(), vec!["mysql://repl:s3cret@127.0.0.1:3306"]);
        assert_eq!(c.source.server_id, 5401);
        assert_eq!(c.source.start, "latest");
        assert_eq!(c.source.heartbeat_secs, 5);
        assert!(c.source.exclude.is_empty());
        assert_eq!(c.checkpoint.dir, PathBuf::from("/var/lib/rowstream"));
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.sinks[0].name(), "backup");
        assert_eq!(c.sinks[0].kind(), "file");
        let f = file_sink(&c, 0);
        assert_eq!(f.dir, PathBuf::from("/var/lib/rowstream/backup"));
        assert_eq!(f.segment_max_bytes, 128 << 20);
        assert!(f.fsync);
        assert_eq!(c.source.conn_opts().unwrap()[0].port, 3306);
    }

    #[test]
    fn debug_hides_passwords() {
        let text = BASE.replace(
            "url = \"mysql://repl:s3cret@127.0.0.1:3306\"",
            "urls = [\"mysql://repl:s3cret@db1:3306?tls=required\", \"mysql://u:p%40ss@db2\"]",
        );
        let c = parse(&text, &[]).unwrap();
        let dbg = format!("{c:?} {c:#?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(!dbg.contains("p%40ss"), "{dbg}");
        assert!(
            dbg.contains("mysql://repl:***@db1:3306?tls=required"),
            "{dbg}"
        );
        assert!(dbg.contains("mysql://u:***@db2"), "{dbg}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("mysql://a:b@h:1/x?y"), "mysql://a:***@h:1/x?y");
        assert_eq!(redact_url("mysql://a@h"), "mysql://a@h");
        assert_eq!(redact_url("mysql://a:b:c@d@h"), "mysql://a:***@h");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_secrets("expected mysql://user:password@host:port"),
            "expected mysql://user:password@host:port"
        );
        assert_eq!(
            redact_secrets(r#"1 | url = "mysql://r:pw@h:3306" x, ["mysql://q:z@k"]"#),
            r#"1 | url = "mysql://r:***@h:3306" x, ["mysql://q:***@k"]"#
        );
    }

    #[test]
    fn errors_hide_passwords() {
        // A syntax error on the URL's line: toml quotes the line.
        let text = BASE.replace("3306\"", "3306\" oops");
        let e = parse(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = parse(BASE, &[("ROWSTREAM_SOURCE__URL", "postgres://u:hunter2@h")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("source.url"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn sink_unknown_key_rejected() {
        let text = format!("{BASE}compresss = true\n");
        let e = parse(&text, &[]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("compresss"), "{msg}");
        // Also when the sinks come from the environment-modified tree.
        let e = parse(&text, &[("ROWSTREAM_SINKS__0__DIR", "/x")]).unwrap_err();
        assert!(e.to_string().contains("compresss"), "{e}");
    }

    #[test]
    fn unknown_sink_type_rejected() {
        let text = BASE.replace("type = \"file\"", "type = \"webhook\"");
        let e = parse(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("webhook"), "{e}");
        // A known type with another type's keys names the offending key.
        let text = BASE.replace("type = \"file\"", "type = \"kafka\"");
        let e = parse(&text, &[]).unwrap_err().to_string();
        #[cfg(feature = "kafka")]
        assert!(e.contains("unknown field `dir`"), "{e}");
        #[cfg(not(feature = "kafka"))]
        assert!(e.contains("not built into this rowstream"), "{e}");
        let text = BASE.replace("type = \"file\"\n", "");
        let e = parse(&text, &[]).unwrap_err().to_string();
        assert!(e.contains("type"), "{e}");
    }

    #[test]
    fn validation() {
        let check = |text: String, key: &str, what: &str| match parse(&text, &[]) {
            Err(ConfigError::Invalid {
                key: k, message, ..
            }) => {
                assert_eq!(k, key, "{message}");
                assert!(message.contains(what), "{key}: {message}");
            }
            other => panic!("{key}: expected Invalid, got {other:?}"),
        };
        check(BASE.replace("5401", "0"), "source.server_id", "0");
        check(BASE.replace("\"prod\"", "\"\""), "source.name", "empty");
        check(
            BASE.replace("name = \"prod\"", "name = \"prod\"\nstart = \"\""),
            "source.start",
            "empty",
        );
        check(
            BASE.replace("name = \"prod\"", "name = \"prod\"\nstart = \"yesterday\""),
            "source.start",
            "GTID set",
        );
        check(BASE.replace("shop.*", "shop"), "source.include", "db.table");
        check(
            BASE.replace("name = \"prod\"", "name = \"prod\"\nexclude = [\"tmp\"]"),
            "source.exclude",
            "db.table",
        );
        check(
            BASE.replace("name = \"prod\"", "name = \"prod\"\nheartbeat_secs = 0"),
            "source.heartbeat_secs",
            "at least 1",
        );
        check(
            BASE.replace("url = ", "urls = [\"mysql://a@b\"]\nurl = "),
            "source.url",
            "not both",
        );
        check(
            BASE.replace("url = \"mysql://repl:s3cret@127.0.0.1:3306\"", ""),
            "source.url",
            "missing",
        );
        check(
            BASE.replace("url = \"mysql://repl:s3cret@127.0.0.1:3306\"", "urls = []"),
            "source.urls",
            "empty",
        );
        check(
            BASE.replace(
                "url = \"mysql://repl:s3cret@127.0.0.1:3306\"",
                "urls = [\"mysql://a@b\", \"http://a@b\"]",
            ),
            "source.urls[1]",
            "scheme",
        );
        check(
            BASE.replace("dir = \"/var/lib/rowstream\"", "dir = \"\""),
            "checkpoint.dir",
            "empty",
        );
        let no_sinks = BASE.split("[[sinks]]").next().unwrap().to_string();
        check(no_sinks, "sinks", "at least one");
        let twice =
            format!("{BASE}\n[[sinks]]\ntype = \"file\"\nname = \"backup\"\ndir = \"/other\"\n");
        check(twice, "sinks[1].name", "unique");
        check(
            format!("{BASE}segment_max_bytes = 0\n"),
            "sinks[0].segment_max_bytes",
            "greater than 0",
        );
        // Good GTID sets of both flavours are accepted.
        for start in [
            "earliest",
            "0-1-100,1-2-5",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        ] {
            let t = BASE.replace(
                "name = \"prod\"",
                &format!("name = \"prod\"\nstart = \"{start}\""),
            );
            assert_eq!(parse(&t, &[]).unwrap().source.start, start);
        }
    }

    #[test]
    fn overrides() {
        let c = parse(
            BASE,
            &[
                ("ROWSTREAM_SOURCE__URL", "mysql://u:p@other:3307"),
                ("ROWSTREAM_SOURCE__SERVER_ID", "77"),
                ("ROWSTREAM_SOURCE__NAME", "123"),
                ("ROWSTREAM_SOURCE__EXCLUDE", r#"["shop.tmp_*"]"#),
                ("ROWSTREAM_SOURCE__START", "0-1-5"),
                ("ROWSTREAM_CHECKPOINT__DIR", "/tmp/cp"),
                ("ROWSTREAM_SINKS__0__DIR", "/tmp/backup"),
                ("ROWSTREAM_SINKS__0__FSYNC", "false"),
                // Not overrides.
                ("ROWSTREAM_LOG", "debug"),
                ("ROWSTREAM_SOURCE_URL", "mysql://ignored@x"),
                ("OTHER__THING", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.source.urls(), vec!["mysql://u:p@other:3307"]);
        assert_eq!(c.source.server_id, 77);
        assert_eq!(c.source.name, "123");
        assert_eq!(c.source.exclude, vec!["shop.tmp_*"]);
        assert_eq!(c.source.start, "0-1-5");
        assert_eq!(c.checkpoint.dir, PathBuf::from("/tmp/cp"));
        assert_eq!(file_sink(&c, 0).dir, PathBuf::from("/tmp/backup"));
        assert!(!file_sink(&c, 0).fsync);
    }

    #[test]
    fn override_url_replaces_urls_and_back() {
        let text = BASE.replace(
            "url = \"mysql://repl:s3cret@127.0.0.1:3306\"",
            "urls = [\"mysql://a@db1\", \"mysql://a@db2\"]",
        );
        let c = parse(&text, &[("ROWSTREAM_SOURCE__URL", "mysql://a@db3")]).unwrap();
        assert_eq!(c.source.urls(), vec!["mysql://a@db3"]);
        let c = parse(
            BASE,
            &[(
                "ROWSTREAM_SOURCE__URLS",
                r#"["mysql://a@db1", "mysql://a@db2"]"#,
            )],
        )
        .unwrap();
        assert_eq!(c.source.urls(), vec!["mysql://a@db1", "mysql://a@db2"]);
        let c = parse(&text, &[("ROWSTREAM_SOURCE__URLS__1", "mysql://a@db9")]).unwrap();
        assert_eq!(c.source.urls(), vec!["mysql://a@db1", "mysql://a@db9"]);
    }

    #[test]
    fn override_builds_sections_and_sinks() {
        let text = "[source]\nserver_id = 1\nname = \"n\"\n";
        let c = parse(
            text,
            &[
                ("ROWSTREAM_SOURCE__URL", "mysql://a@h"),
                ("ROWSTREAM_CHECKPOINT__DIR", "/cp"),
                ("ROWSTREAM_SINKS__0__TYPE", "file"),
                ("ROWSTREAM_SINKS__0__NAME", "b"),
                ("ROWSTREAM_SINKS__0__DIR", "/b"),
            ],
        )
        .unwrap();
        assert_eq!(c.sinks[0].name(), "b");
        let e = parse(BASE, &[("ROWSTREAM_SINKS__2__DIR", "/b")]).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
        assert!(e.to_string().contains("ROWSTREAM_SINKS__2__DIR"), "{e}");
        assert!(e.to_string().contains("sinks[2].dir"), "{e}");
        let e = parse(BASE, &[("ROWSTREAM_SOURCE____URL", "x")]).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
        let e = parse(BASE, &[("ROWSTREAM_SOURCE__NAME__X", "x")]).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
        // A typo in an override is an unknown key, like in the file.
        let e = parse(BASE, &[("ROWSTREAM_SOURCE__URLL", "x")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("urll"), "{msg}");
        assert!(msg.contains("ROWSTREAM_SOURCE__URLL"), "{msg}");
    }

    #[test]
    fn override_values() {
        let s = |raw: &str| override_value(raw, None);
        assert_eq!(s("5"), toml::Value::Integer(5));
        assert_eq!(s("true"), toml::Value::Boolean(true));
        assert_eq!(s("latest"), toml::Value::String("latest".into()));
        assert_eq!(s("\"5\""), toml::Value::String("5".into()));
        assert_eq!(s("1\nx = 2"), toml::Value::String("1\nx = 2".into()));
        assert_eq!(s("{a = 1}"), toml::Value::String("{a = 1}".into()));
        assert_eq!(s("2024-01-01"), toml::Value::String("2024-01-01".into()));
        let existing = toml::Value::String("old".into());
        assert_eq!(
            override_value("42", Some(&existing)),
            toml::Value::String("42".into())
        );
    }

    /// The real process environment reaches `load` (the only test in this
    /// crate that sets ROWSTREAM_*__* variables).
    #[test]
    fn load_reads_process_env() {
        let dir = std::env::temp_dir().join(format!("rowstream-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, BASE).unwrap();
        std::env::set_var("ROWSTREAM_SOURCE__HEARTBEAT_SECS", "9");
        let c = load(&file);
        std::env::remove_var("ROWSTREAM_SOURCE__HEARTBEAT_SECS");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(c.unwrap().source.heartbeat_secs, 9);
        let e = load(Path::new("/nonexistent/rowstream.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/rowstream.toml"), "{e}");
    }
}
