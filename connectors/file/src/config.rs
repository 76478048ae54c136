//! Configuration of the file backup sink: one `[[sinks]]` table with
//! `type = "file"` in the service's TOML (the service strips `type` and
//! deserializes the rest into [`FileSinkConfig`]).
//!
//! Invariants kept: unknown keys are an error (`deny_unknown_fields`); every
//! field has a documented default except `name` and `dir`; [`FileSinkConfig::validate`]
//! rejects values the sink cannot work with, naming the sink and the key.

use std::path::PathBuf;

use rowstream_api::ConfigError;
use serde::Deserialize;

/// Default size at which the open segment is closed: 128 MiB.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 128 * 1024 * 1024;
/// Default age at which the open segment is closed: one hour.
pub const DEFAULT_SEGMENT_MAX_AGE_SECS: u64 = 3600;

/// `[[sinks]] type = "file"`: a real-time backup into append-only NDJSON
/// segment files.
///
/// ```toml
/// [[sinks]]
/// type = "file"
/// name = "backup"
/// dir = "/var/lib/rowstream/backup"
/// segment_max_bytes = 134217728   # optional
/// segment_max_age_secs = 3600     # optional
/// compress = true                 # optional
/// fsync = true                    # optional
/// ```
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The sink's name, for logs and metrics. Required, non-empty.
    pub name: String,
    /// The backup directory. Created if missing; holds the segments and a
    /// `.lock` file. One rowstream process at a time may use it (enforced
    /// with an exclusive `flock`). Required.
    pub dir: PathBuf,
    /// The open segment is closed at the first transaction boundary after
    /// it reached this many bytes (uncompressed). A transaction never spans
    /// two segments, so a large transaction makes its segment larger.
    /// Default 134217728 (128 MiB); must be > 0.
    #[serde(default = "default_segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// The open segment is closed at the first transaction boundary (or
    /// idle flush) after it has been open this many seconds. Default 3600;
    /// must be > 0.
    #[serde(default = "default_segment_max_age_secs")]
    pub segment_max_age_secs: u64,
    /// Write segments zstd-compressed as they are appended (a frame per
    /// group commit or per 4 MiB of it, `N.ndjson.zst.open`, renamed `N.ndjson.zst` when
    /// closed; see `segment`). `false` writes plain `N.ndjson` segments.
    /// Default true.
    #[serde(default = "default_true")]
    pub compress: bool,
    /// fsync data before acknowledging it (and the directory after creating,
    /// renaming or removing segments). Default true. With `false` an ack
    /// only means "written to the OS page cache": the backup survives a
    /// crash of rowstream but not a crash of the machine, and after a power
    /// loss the checkpoint may cover transactions that are not in the backup.
    #[serde(default = "default_true")]
    pub fsync: bool,
}

fn default_segment_max_bytes() -> u64 {
    DEFAULT_SEGMENT_MAX_BYTES
}

fn default_segment_max_age_secs() -> u64 {
    DEFAULT_SEGMENT_MAX_AGE_SECS
}

fn default_true() -> bool {
    true
}

impl FileSinkConfig {
    /// A configuration with every optional field at its default.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> FileSinkConfig {
        FileSinkConfig {
            name: name.into(),
            dir: dir.into(),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age_secs: DEFAULT_SEGMENT_MAX_AGE_SECS,
            compress: true,
            fsync: true,
        }
    }

    /// Checks the values (not the file system: that happens in `start`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, problem: &str| ConfigError::of("file", &self.name)(key, problem.into());
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty"));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(err("dir", "must not be empty"));
        }
        if self.segment_max_bytes == 0 {
            return Err(err("segment_max_bytes", "must be greater than 0"));
        }
        if self.segment_max_age_secs == 0 {
            return Err(err("segment_max_age_secs", "must be greater than 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: FileSinkConfig = serde_json::from_str(r#"{"name":"backup","dir":"/b"}"#).unwrap();
        assert_eq!(c, FileSinkConfig::new("backup", "/b"));
        assert!(c.validate().is_ok());
        assert!(serde_json::from_str::<FileSinkConfig>(
            r#"{"name":"backup","dir":"/b","type":"file"}"#
        )
        .is_err());
        let c: FileSinkConfig = serde_json::from_str(
            r#"{"name":"b","dir":"/b","segment_max_bytes":10,"segment_max_age_secs":5,"compress":false,"fsync":false}"#,
        )
        .unwrap();
        assert_eq!(c.segment_max_bytes, 10);
        assert!(!c.compress && !c.fsync);
    }

    #[test]
    fn validate_rejects() {
        let mut c = FileSinkConfig::new("b", "/b");
        c.segment_max_bytes = 0;
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "segment_max_bytes");
        assert!(e.to_string().contains("\"b\""), "{e}");
        let mut c = FileSinkConfig::new("", "/b");
        assert_eq!(c.validate().unwrap_err().key, "name");
        c.name = "b".into();
        c.dir = PathBuf::new();
        assert_eq!(c.validate().unwrap_err().key, "dir");
    }
}
