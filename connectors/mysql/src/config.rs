//! Configuration of the MySQL / MariaDB apply sink: one `[[sinks]]` table
//! with `type = "mysql"` (the service strips `type` and deserializes the
//! rest into [`MysqlSinkConfig`]); `rowstream restore` builds the same
//! struct from its command line.
//!
//! Invariants kept: unknown keys are an error (`deny_unknown_fields`); every
//! field but `name` and `url` has a documented default;
//! [`MysqlSinkConfig::validate`] rejects what the sink cannot work with,
//! naming the sink and the key. The password inside `url` is a secret: the
//! `Debug` output masks it and no log line prints the url.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rowstream_api::ConfigError;
use serde::Deserialize;

/// What to do when the target's row is not the one the event expects (an
/// update or delete whose before image is not in the target, an insert that
/// finds a different row under its key).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Stop with the table, key, GTID, expected and found row (the batch is
    /// not acked; the DB transaction rolls back).
    Stop,
    /// Apply the event's after image (upsert, or delete by key), append the
    /// conflict to `conflict_log` and count it.
    #[default]
    Log,
    /// Keep the target's row, append the conflict to `conflict_log`.
    Skip,
}

impl OnConflict {
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Stop => "stop",
            OnConflict::Log => "log",
            OnConflict::Skip => "skip",
        }
    }
}

/// `[[sinks]] type = "mysql"`: applies the stream to a MySQL or MariaDB
/// server, exactly once (the progress table is written in the same
/// transaction as the rows).
///
/// ```toml
/// [[sinks]]
/// type = "mysql"
/// name = "replica"
/// url = "mysql://rowstream:secret@10.0.0.7:3306"
/// threads = 4                       # optional
/// on_conflict = "log"               # optional: stop | log | skip
/// conflict_log = "/var/lib/rowstream/replica-conflicts.jsonl"   # optional
/// include = ["shop.*"]              # optional, DB.TABLE globs with *
/// exclude = ["shop.audit_*"]        # optional
/// progress_schema = "rowstream"     # optional
/// preserve_commit_order = true      # optional
/// [sinks.rename]                    # optional: source db -> target db
/// shop = "shop_copy"
/// ```
#[derive(Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MysqlSinkConfig {
    /// The sink's name, for logs and metrics, and its key in the progress
    /// table (two sinks writing one target must have different names).
    /// Required, non-empty, at most 255 characters.
    pub name: String,
    /// `mysql://user:password@host:port` of the target (mysql_async URL
    /// parameters allowed, e.g. `?require_ssl=true`). Required. Secret.
    pub url: String,
    /// Connections applying transactions in parallel (WRITESET: those whose
    /// primary / unique key values do not overlap), 1 to 64; commits stay in
    /// source order. 1 applies serially. Default 4 (plus one connection for
    /// DDL and transactions that span batches).
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// `"stop"`, `"log"` (default) or `"skip"`: see [`OnConflict`].
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// JSON-lines file conflicts are appended to (fsync'd before the batch
    /// is acked). Default `<name>-conflicts.jsonl` in the working directory.
    #[serde(default)]
    pub conflict_log: Option<PathBuf>,
    /// `DB.TABLE` globs (`*` matches any run of characters) of the tables to
    /// apply; empty (default) = every table.
    #[serde(default)]
    pub include: Vec<String>,
    /// `DB.TABLE` globs of tables not to apply (wins over `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Source database -> target database. Default: none (same names).
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Schema (database) holding the `progress` table, created if missing.
    /// Default `"rowstream"`.
    #[serde(default = "default_progress_schema")]
    pub progress_schema: String,
    /// Make commits visible in source commit order. Default true; false is
    /// refused (not supported yet).
    #[serde(default = "default_true")]
    pub preserve_commit_order: bool,
}

fn default_threads() -> usize {
    4
}
fn default_progress_schema() -> String {
    "rowstream".to_string()
}
fn default_true() -> bool {
    true
}

impl fmt::Debug for MysqlSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlSinkConfig")
            .field("name", &self.name)
            .field("url", &mask_url(&self.url))
            .field("threads", &self.threads)
            .field("on_conflict", &self.on_conflict)
            .field("conflict_log", &self.conflict_log)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field("rename", &self.rename)
            .field("progress_schema", &self.progress_schema)
            .field("preserve_commit_order", &self.preserve_commit_order)
            .finish()
    }
}

/// The url with its password replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.rsplit_once('@') {
        Some((cred, host)) => match cred.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl MysqlSinkConfig {
    /// A config with every default: what `rowstream restore` starts from.
    pub fn new(name: &str, url: &str) -> MysqlSinkConfig {
        MysqlSinkConfig {
            name: name.into(),
            url: url.into(),
            threads: default_threads(),
            on_conflict: OnConflict::default(),
            conflict_log: None,
            include: Vec::new(),
            exclude: Vec::new(),
            rename: BTreeMap::new(),
            progress_schema: default_progress_schema(),
            preserve_commit_order: true,
        }
    }

    /// The conflict log path (the configured one or the default).
    pub fn conflict_log_path(&self) -> PathBuf {
        self.conflict_log
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}-conflicts.jsonl", self.name)))
    }

    /// Rejects values the sink cannot work with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = ConfigError::of("mysql", &self.name);
        if self.name.trim().is_empty() || self.name.len() > 255 {
            return Err(err("name", "must be 1 to 255 characters".into()));
        }
        if !self.url.starts_with("mysql://") {
            return Err(err("url", "must be mysql://user:password@host:port".into()));
        }
        if mysql_async::Opts::from_url(&self.url).is_err() {
            return Err(err(
                "url",
                format!("{} is not a valid mysql:// url", mask_url(&self.url)),
            ));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(err("threads", "must be 1 to 64".into()));
        }
        if !self.preserve_commit_order {
            return Err(err(
                "preserve_commit_order",
                "false is not supported yet: remove the key or set it to true".into(),
            ));
        }
        let ident_ok = |s: &str| !s.is_empty() && s.len() <= 64 && !s.contains('`');
        if !ident_ok(&self.progress_schema) {
            return Err(err(
                "progress_schema",
                "must be a database name of 1 to 64 characters without backquotes".into(),
            ));
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for g in globs.iter() {
                if g.split_once('.')
                    .is_none_or(|(d, t)| d.is_empty() || t.is_empty())
                {
                    return Err(err(
                        key,
                        format!("{g:?} must be DB.TABLE (with * as a wildcard)"),
                    ));
                }
            }
        }
        for (from, to) in &self.rename {
            if !ident_ok(from) || !ident_ok(to) {
                return Err(err(
                    "rename",
                    format!("{from:?} = {to:?}: database names of 1 to 64 characters without backquotes"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MysqlSinkConfig, toml_like::Error> {
        toml_like::from_json(s)
    }

    /// The service parses TOML; serde_json exercises the same derive here
    /// without a toml dependency.
    mod toml_like {
        pub type Error = serde_json::Error;
        pub fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Error> {
            serde_json::from_str(s)
        }
    }

    #[test]
    fn defaults_and_validation() {
        let c = parse(r#"{"name":"r","url":"mysql://u:secret@h:3306"}"#).unwrap();
        assert_eq!(c.threads, 4);
        assert_eq!(c.on_conflict, OnConflict::Log);
        assert_eq!(c.progress_schema, "rowstream");
        assert!(c.preserve_commit_order);
        assert_eq!(c.conflict_log_path(), PathBuf::from("r-conflicts.jsonl"));
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("secret"));
        assert!(parse(r#"{"name":"r","url":"mysql://h","bogus":1}"#).is_err());
        let c = parse(r#"{"name":"r","url":"mysql://h","on_conflict":"skip"}"#).unwrap();
        assert_eq!(c.on_conflict, OnConflict::Skip);
        let mut bad = c.clone();
        bad.include = vec!["shop".into()];
        assert_eq!(bad.validate().unwrap_err().key, "include");
        let mut bad = c.clone();
        bad.preserve_commit_order = false;
        assert_eq!(bad.validate().unwrap_err().key, "preserve_commit_order");
        let mut bad = c;
        bad.url = "http://h".into();
        assert_eq!(bad.validate().unwrap_err().key, "url");
    }
}
