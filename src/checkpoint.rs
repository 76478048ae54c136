//! The checkpoint store: how far every sink has durably got, as a GTID set.
//!
//! The checkpoint lives in `<dir>/checkpoint.json` (JSON Schema:
//! `schemas/checkpoint.schema.json`):
//!
//! ```json
//! {"version":2,"flavor":"mysql","gtid_set":"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100",
//!  "server":"db1:3306","updated_at":"2026-11-21T10:00:00Z"}
//! ```
//!
//! Version 2 adds an optional `snapshot` object while a snapshot is being
//! read (see [`SnapshotState`]); `gtid_set` is then the snapshot's cut and
//! does not move until the snapshot is complete. Version 1 files (no
//! `snapshot`) are still read; every save writes version 2.
//!
//! An optional `overlap` GTID set (same notation as `gtid_set`) names the
//! newest transactions a snapshot's read views may have held, when that is
//! more than `gtid_set` (a lock-free cut, a snapshot resumed after a
//! crash): the stream marks the changes of those transactions as
//! `overlap` (apply sinks make their after images hold). It stays until
//! `gtid_set` contains it. Files without it load as "no overlap".
//!
//! An optional `on_demand` object holds the durable progress of an
//! on-demand (signal table) snapshot ([`OnDemandState`]); `gtid_set` moves
//! as usual then. Files without it (older rowstreams) load as "no
//! on-demand snapshot in progress".
//!
//! Invariants:
//! * **One writer.** [`CheckpointStore::open`] takes an exclusive `flock` on
//!   `<dir>/lock` and holds it for the life of the store, so two rowstream
//!   processes can never advance the same checkpoint.
//! * **Atomic writes.** [`CheckpointStore::save`] writes `checkpoint.json.tmp`,
//!   fsyncs it, renames it over `checkpoint.json` and fsyncs the directory.
//!   A crash or an I/O error at any point leaves either the old or the new
//!   checkpoint, whole; never a mix, never nothing. A stale `.tmp` left by a
//!   crash is ignored by [`CheckpointStore::load`] and overwritten by the
//!   next save.
//! * **No silent restarts.** [`CheckpointStore::load`] returns `None` only when
//!   `checkpoint.json` does not exist. A file that is empty, truncated, not
//!   JSON, of an unknown version or with an unparseable GTID set is a
//!   [`CheckpointError::Corrupt`] that tells the operator what to do.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rowstream_api::Flavor;
use serde::{Deserialize, Serialize};

use crate::gtid::GtidSet;
pub use rowstream_api::sink::{chunk_marker, parse_marker};

/// The checkpoint format version this build writes (it also reads version 1).
pub const CHECKPOINT_VERSION: u32 = 2;

/// The checkpoint file's name inside the checkpoint directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The temporary file a save writes before renaming it over [`CHECKPOINT_FILE`].
pub const CHECKPOINT_TMP_FILE: &str = "checkpoint.json.tmp";
/// The lock file inside the checkpoint directory (holds the owner's pid).
pub const LOCK_FILE: &str = "lock";

/// What can go wrong with the checkpoint store. Every variant is fatal for
/// the service: the operator must act.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// An I/O operation on the checkpoint directory failed (permissions, full
    /// disk, ...). `what` says which operation, `path` on which file.
    #[error("checkpoint: cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another store in this process) holds the lock.
    #[error(
        "checkpoint directory {} is in use by another rowstream process{} (lock {} is held); \
         two rowstream instances cannot share a checkpoint directory: stop the other one \
         or give this one its own checkpoint.dir",
        dir.display(),
        holder.as_deref().map(|p| format!(" (pid {p})")).unwrap_or_default(),
        dir.join(LOCK_FILE).display()
    )]
    Locked {
        dir: PathBuf,
        /// The pid the holder wrote into the lock file, when readable.
        holder: Option<String>,
    },
    /// `checkpoint.json` exists but cannot be used. rowstream never restarts
    /// from scratch on its own.
    #[error(
        "checkpoint file {} is corrupt: {reason}. rowstream will not start over on its own: \
         restore the file from a backup, or delete it to start again from `source.start` \
         (which re-reads or skips changes)",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// A saved position: every transaction in `gtid_set` is durable in every sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The transactions delivered, in the server's own notation (its flavour
    /// is the checkpoint's flavour).
    pub gtid_set: GtidSet,
    /// `host:port` of the server this was last read from (informational).
    pub server: String,
    /// When it was written, RFC 3339 UTC (`2026-11-21T10:00:00Z`; informational).
    pub updated_at: String,
    /// A snapshot in progress: what of it every sink has made durable.
    pub snapshot: Option<SnapshotState>,
    /// An on-demand snapshot in progress: what of it every sink has made
    /// durable together with the transactions of `gtid_set`.
    pub on_demand: Option<OnDemandState>,
    /// A set containing every read view of the snapshot, when it may hold
    /// transactions after `gtid_set` (see the module docs).
    pub overlap: Option<GtidSet>,
}

/// Progress of a snapshot, as durable in every sink.
///
/// Chunks reach the sinks in plan order (tables in `tables` order, each in
/// primary-key order), so progress is a prefix: the tables before the first
/// one not `done` are complete, that one is complete up to `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotState {
    /// Identifies the snapshot (its start time in ms); part of the chunk
    /// markers in sinks (`snapshot:<id>:<chunk>`).
    pub id: u64,
    /// Chunks durable in every sink; chunk numbers are 1-based over the
    /// whole snapshot, so chunk `n` is durable iff `n <= chunks_done`.
    pub chunks_done: u64,
    /// The tables to read, in order.
    pub tables: Vec<TableProgress>,
}

/// One table of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableProgress {
    pub db: String,
    pub table: String,
    /// Every row of the table is durable.
    pub done: bool,
    /// The primary key of the last row of the last durable chunk (tagged
    /// values, see `snapshot::chunk`); null when no chunk is durable yet.
    pub after: Option<serde_json::Value>,
    /// Rows durable so far.
    pub rows: u64,
}

/// Progress of an on-demand snapshot (signal table, DBLog watermarks), as
/// durable in every sink: it is checkpointed only with the high watermark
/// transaction that carries the chunk it counts (see `snapshot::signal`).
///
/// Tables are read one after the other in `tables` order, each in
/// primary-key order, so progress is a prefix as in [`SnapshotState`]:
/// the first table not `done` is read up to its `after` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnDemandState {
    /// The `id` of the signal row that started it (later requests that
    /// arrive while it runs append their tables).
    pub signal: String,
    /// The tables asked for, in order; complete ones stay (for the counts)
    /// until the whole snapshot is complete.
    pub tables: Vec<TableProgress>,
    /// Rows the chunk SELECTs returned in durable windows (`rows` of the
    /// tables counts those emitted: a row changed inside its window is not).
    pub read: u64,
    /// How many times a restart resumed this snapshot from the checkpoint.
    pub resumes: u64,
}

impl OnDemandState {
    /// True when every table is done: the checkpoint no longer needs it.
    pub fn is_complete(&self) -> bool {
        self.tables.iter().all(|t| t.done)
    }

    /// Rows emitted so far, all tables.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

impl SnapshotState {
    /// True when every table is done: the checkpoint no longer needs it.
    pub fn is_complete(&self) -> bool {
        self.tables.iter().all(|t| t.done)
    }

    /// True when the chunk marker `snapshot:<id>:<n>` is durable: chunk
    /// markers of another (earlier) snapshot are, those of this one up to
    /// `chunks_done` are.
    pub fn covers_marker(&self, marker: &str) -> bool {
        match parse_marker(marker) {
            Some((id, n)) if id == self.id => n <= self.chunks_done,
            _ => true,
        }
    }
}

impl Checkpoint {
    /// A checkpoint of `gtid_set` read from `server` (`host:port`), stamped now.
    pub fn new(gtid_set: GtidSet, server: impl Into<String>) -> Self {
        Checkpoint {
            gtid_set,
            server: server.into(),
            updated_at: rfc3339_utc(SystemTime::now()),
            snapshot: None,
            on_demand: None,
            overlap: None,
        }
    }

    /// The same with a snapshot's views set (`None`, or one `gtid_set`
    /// already contains: no overlap).
    pub fn with_overlap(mut self, overlap: Option<GtidSet>) -> Self {
        self.overlap = overlap.filter(|o| !o.is_subset(&self.gtid_set));
        self
    }

    /// The same with an on-demand snapshot in progress (`None`: none).
    pub fn with_on_demand(mut self, on_demand: Option<OnDemandState>) -> Self {
        self.on_demand = on_demand;
        self
    }

    /// The same with a snapshot in progress (`None`: no snapshot).
    pub fn with_snapshot(mut self, snapshot: Option<SnapshotState>) -> Self {
        self.snapshot = snapshot;
        self
    }

    /// The flavour of the GTID set.
    pub fn flavor(&self) -> Flavor {
        self.gtid_set.flavor()
    }
}

/// The on-disk form, versions 1 and 2 (1 has no `snapshot`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    flavor: String,
    gtid_set: String,
    server: String,
    updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<SnapshotState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_demand: Option<OnDemandState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    overlap: Option<String>,
}

/// The checkpoint directory, locked for this process while the value lives.
#[derive(Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    // Holds the flock; closing it (drop) releases the lock.
    _lock: File,
}

impl CheckpointStore {
    /// Opens the checkpoint directory `dir`, creating it (and its parents) if
    /// needed, and takes an exclusive lock on `<dir>/lock` without waiting.
    /// Fails with [`CheckpointError::Locked`] when another store (in any
    /// process) holds it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_err("open lock file", &lock_path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CheckpointError::Locked {
                    dir,
                    holder: (!holder.is_empty() && holder.len() < 32).then(|| holder.to_string()),
                });
            }
            return Err(io_err("lock", &lock_path, e));
        }
        // Who holds it, for the error message of the next one. Best effort:
        // the lock itself is what matters.
        let _ = lock
            .set_len(0)
            .and_then(|_| lock.write_all(format!("{}\n", std::process::id()).as_bytes()));
        Ok(CheckpointStore { dir, _lock: lock })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/checkpoint.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// Reads the checkpoint. `Ok(None)` only when `checkpoint.json` does not
    /// exist (a first start: the caller begins at `source.start`). Anything
    /// else that is not a valid version-1 checkpoint is an error, never `None`.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        read_unlocked(&self.dir)
    }

    /// Writes `cp` atomically: `checkpoint.json.tmp`, fsync, rename over
    /// `checkpoint.json`, fsync of the directory. When this returns `Ok` the
    /// new checkpoint survives a power loss; when it returns an error the
    /// previous checkpoint is still in place, whole.
    pub fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let file = CheckpointFile {
            version: CHECKPOINT_VERSION,
            flavor: cp.flavor().as_str().to_string(),
            gtid_set: cp.gtid_set.to_string(),
            server: cp.server.clone(),
            updated_at: cp.updated_at.clone(),
            snapshot: cp.snapshot.clone(),
            on_demand: cp.on_demand.clone(),
            overlap: cp.overlap.as_ref().map(|o| o.to_string()),
        };
        #[allow(clippy::expect_used)] // our own struct of strings and numbers: cannot fail
        let mut json = serde_json::to_vec(&file).expect("a checkpoint always serializes");
        json.push(b'\n');

        let tmp = self.dir.join(CHECKPOINT_TMP_FILE);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(&json).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        drop(f);
        let path = self.path();
        std::fs::rename(&tmp, &path).map_err(|e| io_err("rename into place", &path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("fsync directory", &self.dir, e))?;
        Ok(())
    }
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Parses the bytes of a checkpoint file; the error says what is wrong with it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let version = match value.get("version") {
        None => return Err("no \"version\" field".into()),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("\"version\" is {v}, not a number"))?,
    };
    if version != 1 && version != u64::from(CHECKPOINT_VERSION) {
        return Err(format!(
            "unknown version {version} (this rowstream reads versions 1 and {CHECKPOINT_VERSION}; \
             was it written by a newer rowstream?)"
        ));
    }
    let file: CheckpointFile = serde_json::from_value(value)
        .map_err(|e| format!("not a version {version} checkpoint ({e})"))?;
    if version == 1
        && (file.snapshot.is_some() || file.on_demand.is_some() || file.overlap.is_some())
    {
        return Err("a version 1 checkpoint cannot hold a snapshot".into());
    }
    let flavor = match file.flavor.as_str() {
        "mysql" => Flavor::MySql,
        "mariadb" => Flavor::MariaDb,
        other => {
            return Err(format!(
                "unknown flavor {other:?} (expected \"mysql\" or \"mariadb\")"
            ))
        }
    };
    let gtid_set = GtidSet::parse(flavor, &file.gtid_set)
        .map_err(|e| format!("bad gtid_set for flavor {}: {e}", file.flavor))?;
    let overlap = file
        .overlap
        .map(|o| GtidSet::parse(flavor, &o))
        .transpose()
        .map_err(|e| format!("bad overlap for flavor {}: {e}", file.flavor))?;
    Ok(Checkpoint {
        gtid_set,
        server: file.server,
        updated_at: file.updated_at,
        snapshot: file.snapshot,
        on_demand: file.on_demand,
        overlap,
    })
}

/// `t` as RFC 3339 UTC with whole seconds: `2026-11-21T10:00:00Z`.
fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    rowstream_api::rfc3339::format_ms(secs * 1000)
}

/// Reads `<dir>/checkpoint.json` without taking the store's lock (for
/// `rowstream status` while the service runs: a rename makes every write
/// atomic, so a reader sees the old or the new file). Same results as
/// [`CheckpointStore::load`].
pub fn read_unlocked(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path, e)),
    };
    parse(&bytes)
        .map(Some)
        .map_err(|reason| CheckpointError::Corrupt { path, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    const MYSQL_SET: &str =
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:102,4f11fa47-71ca-11e1-9e33-c80aa9429562:1-5";

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "rowstream-checkpoint-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mysql_cp() -> Checkpoint {
        Checkpoint::new(
            GtidSet::parse(Flavor::MySql, MYSQL_SET).unwrap(),
            "db1:3306",
        )
    }

    fn corrupt_reason(content: &[u8]) -> String {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        std::fs::write(store.path(), content).unwrap();
        match store.load() {
            Err(e @ CheckpointError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("corrupt"), "{msg}");
                assert!(msg.contains("restore"), "{msg}");
                assert!(msg.contains("delete it"), "{msg}");
                assert!(msg.contains(&store.path().display().to_string()), "{msg}");
                msg
            }
            other => panic!("{content:?}: expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn missing_file_is_none() {
        let t = TempDir::new();
        let store = CheckpointStore::open(t.0.join("a/b")).unwrap();
        assert!(store.dir().is_dir());
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn round_trip_both_flavors() {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        let cp = mysql_cp();
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp.clone()));

        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["version"], 2);
        assert!(json.get("snapshot").is_none());
        assert_eq!(json["flavor"], "mysql");
        assert_eq!(json["gtid_set"], MYSQL_SET);
        assert_eq!(json["server"], "db1:3306");

        // Overwrite with a MariaDB one; the tmp file is gone after a save.
        let cp = Checkpoint::new(
            GtidSet::parse(Flavor::MariaDb, "0-1-100,1-2-5").unwrap(),
            "[::1]:3307",
        );
        store.save(&cp).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.flavor(), Flavor::MariaDb);
        assert!(!t.0.join(CHECKPOINT_TMP_FILE).exists());

        // The empty set is a valid checkpoint too.
        let cp = Checkpoint::new(GtidSet::empty(Flavor::MySql), "db1:3306");
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp));
    }

    #[test]
    fn corrupt_files_are_errors() {
        assert!(corrupt_reason(b"").contains("empty"));
        assert!(corrupt_reason(b"\n").contains("empty"));
        assert!(corrupt_reason(b"\x00\x01garbage").contains("not valid JSON"));
        assert!(corrupt_reason(b"[1,2]").contains("version"));
        assert!(
            corrupt_reason(br#"{"version":1,"flavor":"mysql","gtid_set":"3e11fa47-71ca-11e1"#)
                .contains("not valid JSON")
        );
        assert!(corrupt_reason(
            br#"{"version":99,"flavor":"mysql","gtid_set":"","server":"a:1","updated_at":"x"}"#
        )
        .contains("unknown version 99"));
        assert!(corrupt_reason(
            br#"{"version":"1","flavor":"mysql","gtid_set":"","server":"a:1","updated_at":"x"}"#
        )
        .contains("not a number"));
        assert!(corrupt_reason(
            br#"{"version":1,"flavor":"mysql","gtid_set":"not-a-gtid","server":"a:1","updated_at":"x"}"#
        )
        .contains("bad gtid_set"));
        // A MariaDB position labelled mysql.
        assert!(corrupt_reason(
            br#"{"version":1,"flavor":"mysql","gtid_set":"0-1-100","server":"a:1","updated_at":"x"}"#
        )
        .contains("bad gtid_set"));
        assert!(corrupt_reason(
            br#"{"version":1,"flavor":"postgres","gtid_set":"","server":"a:1","updated_at":"x"}"#
        )
        .contains("unknown flavor"));
        assert!(corrupt_reason(
            br#"{"version":1,"flavor":"mysql","server":"a:1","updated_at":"x"}"#
        )
        .contains("gtid_set"));
        // Every prefix of a valid file is refused, never read as "no checkpoint".
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        store.save(&mysql_cp()).unwrap();
        let good = std::fs::read(store.path()).unwrap();
        for n in 0..good.len() - 1 {
            std::fs::write(store.path(), &good[..n]).unwrap();
            assert!(
                matches!(store.load(), Err(CheckpointError::Corrupt { .. })),
                "prefix of {n} bytes"
            );
        }
    }

    #[test]
    fn version_1_is_read_and_snapshot_round_trips() {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        std::fs::write(
            store.path(),
            format!(r#"{{"version":1,"flavor":"mysql","gtid_set":"{MYSQL_SET}","server":"a:1","updated_at":"x"}}"#),
        )
        .unwrap();
        let cp = store.load().unwrap().unwrap();
        assert_eq!(cp.gtid_set.to_string(), MYSQL_SET);
        assert_eq!(cp.snapshot, None);

        let snap = SnapshotState {
            id: 7,
            chunks_done: 3,
            tables: vec![
                TableProgress {
                    db: "s".into(),
                    table: "a".into(),
                    done: true,
                    after: None,
                    rows: 10,
                },
                TableProgress {
                    db: "s".into(),
                    table: "b".into(),
                    done: false,
                    after: Some(serde_json::json!([{"i": 5}])),
                    rows: 5,
                },
            ],
        };
        let cp = mysql_cp().with_snapshot(Some(snap.clone()));
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp));
        assert!(!snap.is_complete());
        assert!(snap.covers_marker("snapshot:7:3"));
        assert!(!snap.covers_marker("snapshot:7:4"));
        assert!(snap.covers_marker("snapshot:6:400"));
        assert_eq!(parse_marker(&chunk_marker(7, 4)), Some((7, 4)));
        assert_eq!(parse_marker("0-1-5"), None);
        // A version 1 file with a snapshot is refused.
        std::fs::write(
            store.path(),
            br#"{"version":1,"flavor":"mysql","gtid_set":"","server":"a:1","updated_at":"x","snapshot":{"id":1,"chunks_done":0,"tables":[]}}"#,
        )
        .unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
    }

    #[test]
    fn overlap_round_trips_and_is_dropped_once_contained() {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        let g = |s: &str| GtidSet::parse(Flavor::MariaDb, s).unwrap();
        let cp = Checkpoint::new(g("0-1-10"), "a:1").with_overlap(Some(g("0-1-14")));
        assert_eq!(cp.overlap, Some(g("0-1-14")));
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["overlap"], "0-1-14");
        let mut bad = json;
        bad["overlap"] = "0-x".into();
        std::fs::write(store.path(), bad.to_string()).unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        // Contained in gtid_set: nothing to mark, not written.
        let past = Checkpoint::new(g("0-1-14"), "a:1").with_overlap(Some(g("0-1-12")));
        assert_eq!(past.overlap, None);
    }

    #[test]
    fn on_demand_round_trips_and_old_files_load() {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        // A version 2 file written before on-demand progress existed.
        std::fs::write(
            store.path(),
            format!(r#"{{"version":2,"flavor":"mysql","gtid_set":"{MYSQL_SET}","server":"a:1","updated_at":"x"}}"#),
        )
        .unwrap();
        assert_eq!(store.load().unwrap().unwrap().on_demand, None);

        let od = OnDemandState {
            signal: "req-1".into(),
            tables: vec![
                TableProgress {
                    db: "s".into(),
                    table: "a".into(),
                    done: true,
                    after: None,
                    rows: 3,
                },
                TableProgress {
                    db: "s".into(),
                    table: "b".into(),
                    done: false,
                    after: Some(serde_json::json!([{"i": 40}])),
                    rows: 38,
                },
            ],
            read: 44,
            resumes: 2,
        };
        assert!(!od.is_complete());
        assert_eq!(od.rows(), 41);
        let cp = mysql_cp().with_on_demand(Some(od.clone()));
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(json["on_demand"]["signal"], "req-1");
        assert_eq!(json["on_demand"]["tables"][1]["after"][0]["i"], 40);
        // Unknown fields inside it are refused like anywhere else in the file.
        let mut bad = json.clone();
        bad["on_demand"]["extra"] = 1.into();
        std::fs::write(store.path(), bad.to_string()).unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        // Not in a version 1 file.
        let mut v1 = json;
        v1["version"] = 1.into();
        std::fs::write(store.path(), v1.to_string()).unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
    }

    #[test]
    fn leftover_tmp_does_not_matter() {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        // A crash before the first rename: only a tmp file, no checkpoint.
        std::fs::write(t.0.join(CHECKPOINT_TMP_FILE), b"{\"version\":1,\"fla").unwrap();
        assert_eq!(store.load().unwrap(), None);
        // A crash after a save: the tmp is half-written garbage; load uses the real one.
        let cp = mysql_cp();
        store.save(&cp).unwrap();
        std::fs::write(t.0.join(CHECKPOINT_TMP_FILE), b"garbage").unwrap();
        assert_eq!(store.load().unwrap(), Some(cp));
        // The next save overwrites the stale tmp.
        let cp2 = Checkpoint::new(
            GtidSet::parse(Flavor::MySql, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-200").unwrap(),
            "db2:3306",
        );
        store.save(&cp2).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp2));
    }

    #[test]
    fn failed_save_keeps_the_old_checkpoint() {
        let t = TempDir::new();
        let store = CheckpointStore::open(&t.0).unwrap();
        let cp = mysql_cp();
        store.save(&cp).unwrap();
        // The tmp path is taken by a directory: the write fails before the rename.
        std::fs::create_dir(t.0.join(CHECKPOINT_TMP_FILE)).unwrap();
        let err = store
            .save(&Checkpoint::new(GtidSet::empty(Flavor::MySql), "x:1"))
            .unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
        assert!(err.to_string().contains(CHECKPOINT_TMP_FILE), "{err}");
        assert_eq!(store.load().unwrap(), Some(cp));
    }

    #[test]
    fn lock_is_exclusive() {
        let t = TempDir::new();
        let first = CheckpointStore::open(&t.0).unwrap();
        let err = CheckpointStore::open(&t.0).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CheckpointError::Locked { .. }), "{msg}");
        assert!(msg.contains(&t.0.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // Released on drop.
        drop(first);
        let again = CheckpointStore::open(&t.0).unwrap();
        assert_eq!(again.load().unwrap(), None);
    }

    #[test]
    fn unusable_dir_is_an_io_error() {
        let t = TempDir::new();
        std::fs::create_dir_all(&t.0).unwrap();
        let file = t.0.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = CheckpointStore::open(&file).unwrap_err();
        assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_795_255_046)),
            "2026-11-21T09:57:26Z"
        );
        let now = Checkpoint::new(GtidSet::empty(Flavor::MySql), "x:1").updated_at;
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
