//! Disk faults beyond the full disk of `tests/service.rs` (issue 17, item 3), against a
//! real MariaDB and the real binary: the checkpoint directory turned read-only mid-run,
//! fsync failing with EIO (an LD_PRELOAD shim compiled here with gcc; once caught up, or
//! in the middle of a catch-up with several group commits in flight), the open backup
//! segment truncated behind rowstream's back, and a crash before the first checkpoint
//! that covered anything.
//!
//! What every test holds rowstream to: it exits non-zero within a minute with a message
//! naming the cause, the checkpoint never covers a transaction whose END marker is not in
//! the backup, and (where the fault can be undone) a restart catches up with every
//! transaction in the backup exactly once.
//!
//! The read-only directory needs root (a read-only bind mount stacked on the directory:
//! root ignores file modes) or, without root, `chmod 0555`. The fsync shim fails calls
//! only in a process named `rowstream` and only while its trigger file exists, so the
//! test's own tools and servers are never affected.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    gtid_key, gtid_seqs, output_with_timeout, rowstream, Flavor, Service, ServiceConfig, Sink,
    TestServer,
};
use rowstream_file::encode::{parse_tx_end, LineKind};
use rowstream_file::reader::BackupReader;

const SCHEMA: &str = "CREATE DATABASE s; CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(100))";
const FLAVOR: Flavor = Flavor::MariaDb;
const EXIT_WITHIN: Duration = Duration::from_secs(60);
const CATCH_UP: Duration = Duration::from_secs(60);

/// `n` autocommit inserts (one transaction each) from id `from`.
fn insert(srv: &TestServer, from: i64, n: i64) {
    let sql: String = (from..from + n)
        .map(|i| format!("INSERT INTO s.t VALUES ({i}, 'row {i}');"))
        .collect();
    srv.exec(&sql);
}

/// `txs` transactions of `rows` rows each (ids from 1,000,000 up), about 100 bytes a row.
fn insert_bulk(srv: &TestServer, txs: i64, rows: i64) {
    let sql: String = (0..txs)
        .map(|t| {
            format!(
                "INSERT INTO s.t SELECT 1000000 + {t} * {rows} + seq, \
                 CONCAT('row ', seq, ' {pad}') FROM s.seq_1_to_{rows};",
                pad = "x".repeat(60)
            )
        })
        .collect();
    srv.exec(&sql);
}

/// Starts the service again, waits until it caught up, stops it and checks the backup
/// holds every transaction exactly once.
fn restart_caught_up(srv: &TestServer, svc: &mut Service) {
    svc.spawn();
    svc.wait_caught_up(srv, CATCH_UP);
    svc.stop(Duration::from_secs(10));
    assert_backup_complete(srv, svc);
}

/// A MariaDB with [`SCHEMA`] and 5 transactions, and a file-sink service caught up with it.
fn started(label: &str) -> Option<(TestServer, Service)> {
    let srv = TestServer::start(FLAVOR, &[])?;
    srv.exec(SCHEMA);
    insert(&srv, 1, 5);
    let mut svc = Service::new(label, ServiceConfig::for_server(&srv, Sink::file()));
    svc.spawn();
    svc.wait_caught_up(&srv, CATCH_UP);
    Some((srv, svc))
}

/// The transaction ids of the complete transactions in the backup, in order.
fn backup_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for e in BackupReader::open(dir).expect("open the backup") {
        let e = e.unwrap_or_else(|e| panic!("reading the backup {}: {e}", dir.display()));
        if e.kind == LineKind::TxEnd {
            ids.push(parse_tx_end(&e.line).expect("a complete marker").id);
        }
    }
    ids
}

/// The checkpoint covers only transactions whose END marker is in the backup.
fn assert_checkpoint_durable(svc: &Service, context: &str) {
    let Some(cp) = svc.checkpoint_gtid() else {
        return;
    };
    let have: BTreeSet<_> = backup_ids(&svc.backup)
        .iter()
        .map(|id| gtid_key(FLAVOR, id))
        .collect();
    let missing: Vec<_> = gtid_seqs(FLAVOR, &cp)
        .into_iter()
        .filter(|k| !have.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{context}: checkpoint {cp} covers transactions not in the backup: {missing:?}"
    );
}

/// Every transaction the server executed is in the backup exactly once, and
/// `rowstream backup verify` agrees.
fn assert_backup_complete(srv: &TestServer, svc: &Service) {
    let ids = backup_ids(&svc.backup);
    let keys: Vec<_> = ids.iter().map(|id| gtid_key(FLAVOR, id)).collect();
    let distinct: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), distinct.len(), "a transaction twice: {ids:?}");
    assert_eq!(
        distinct,
        gtid_seqs(FLAVOR, &srv.gtid_executed()),
        "the backup does not hold exactly the server's transactions"
    );
    let out = output_with_timeout(
        rowstream().args(["backup", "verify"]).arg(&svc.backup),
        None,
        Duration::from_secs(30),
    );
    assert!(
        out.success(),
        "backup verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for the service to exit, which must be non-zero with `needle` in its log.
fn assert_fails_naming(svc: &mut Service, needle: &str, what: &str) {
    let Some(st) = svc.wait_exit_within(EXIT_WITHIN) else {
        panic!(
            "{what}: rowstream still runs after {EXIT_WITHIN:?}\n{}",
            svc.log_tail()
        );
    };
    let log = svc.log_text();
    assert!(!st.success(), "{what}: rowstream exited 0\n{log}");
    let last = log.lines().rev().find(|l| l.contains(needle));
    assert!(
        last.is_some(),
        "{what}: the log does not name the cause ({needle:?})\n{}",
        svc.log_tail()
    );
    eprintln!("{what}: exit {st}; {}", last.unwrap_or_default().trim());
}

/// Skips (or, with servers required, fails) a test whose fault cannot be made here.
fn cannot(why: &str) {
    assert!(!common::require_servers(), "{why}");
    eprintln!("SKIP: {why}");
}

// ---------------------------------------------------------------------------------------
// The checkpoint directory becomes read-only

/// A directory made read-only until dropped: a read-only bind mount on itself (root),
/// else `chmod 0555`.
enum ReadOnly {
    Mount(PathBuf),
    Mode(PathBuf),
}

impl ReadOnly {
    fn make(dir: &Path) -> Option<ReadOnly> {
        let mounted = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(dir)
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        let ro = if mounted {
            ReadOnly::Mount(dir.to_path_buf())
        } else {
            set_mode(dir, 0o555);
            ReadOnly::Mode(dir.to_path_buf())
        };
        let probe = dir.join("probe");
        if std::fs::write(&probe, b"x").is_ok() {
            let _ = std::fs::remove_file(probe);
            return None;
        }
        Some(ro)
    }
}

fn set_mode(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        match self {
            ReadOnly::Mount(dir) => {
                let ok = Command::new("umount")
                    .arg(&*dir)
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    let _ = Command::new("umount").arg("-l").arg(&*dir).output();
                }
            }
            ReadOnly::Mode(dir) => set_mode(dir, 0o755),
        }
    }
}

#[test]
fn checkpoint_dir_read_only() {
    let Some((srv, mut svc)) = started("cp-ro") else {
        return;
    };
    let before = svc.checkpoint_gtid().expect("a checkpoint");
    let Some(ro) = ReadOnly::make(&svc.cp_dir) else {
        cannot("cannot make a directory read-only (root without mount?)");
        return;
    };
    insert(&srv, 100, 5);
    assert_fails_naming(&mut svc, "checkpoint", "read-only checkpoint dir");
    drop(ro);
    assert_eq!(svc.checkpoint_gtid().as_deref(), Some(&*before));
    assert_checkpoint_durable(&svc, "after the checkpoint dir became read-only");

    restart_caught_up(&srv, &mut svc);
}

// ---------------------------------------------------------------------------------------
// fsync fails with EIO

const SHIM_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char *program_invocation_short_name;

static long data_syncs;

/* With ROWSTREAM_TEST_FDATASYNC_PASS=N only fdatasync (the backup's
   segments) fails, after its first N calls; without it, both fail. */
static int failing(int data) {
    const char *t = getenv("ROWSTREAM_TEST_FSYNC_TRIGGER");
    if (!(t && strcmp(program_invocation_short_name, "rowstream") == 0 && access(t, F_OK) == 0))
        return 0;
    const char *pass = getenv("ROWSTREAM_TEST_FDATASYNC_PASS");
    if (!pass) return 1;
    return data && __atomic_add_fetch(&data_syncs, 1, __ATOMIC_SEQ_CST) > atol(pass);
}

int fsync(int fd) {
    if (failing(0)) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (failing(1)) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

/// Compiles the shim into `dir`; None when gcc is missing or fails.
fn build_shim(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("fsync_shim.c");
    let lib = dir.join("fsync_shim.so");
    std::fs::write(&src, SHIM_C).unwrap();
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("gcc: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(lib)
}

/// fsync fails in the file sink (it fsyncs its segments).
#[test]
fn fsync_failure() {
    fsync_fails("fsync-eio", "", "fsync");
}

/// fsync fails where only the checkpoint store fsyncs (the file sink's fsync is off).
#[test]
fn fsync_failure_checkpoint() {
    fsync_fails("fsync-eio-cp", "fsync = false", "checkpoint: cannot fsync");
}

/// Makes fsync fail with EIO once rowstream is caught up; `sink_extra`: lines of the
/// file sink's table; `names`: what the error must name besides EIO.
fn fsync_fails(label: &str, sink_extra: &str, names: &str) {
    let Some(srv) = TestServer::start(FLAVOR, &[]) else {
        return;
    };
    srv.exec(SCHEMA);
    insert(&srv, 1, 5);
    let sink = Sink::File(sink_extra.to_string());
    let mut svc = Service::new(label, ServiceConfig::for_server(&srv, sink));
    let Some(shim) = build_shim(&svc.tmp.0) else {
        cannot("cannot compile the LD_PRELOAD shim with gcc");
        return;
    };
    let trigger = svc.tmp.join("fsync-fails");
    // Only this service's process gets the shim (the other tests of this
    // binary run alongside); it acts only while the trigger file exists.
    svc.cfg.env = vec![
        ("LD_PRELOAD".into(), shim.display().to_string()),
        (
            "ROWSTREAM_TEST_FSYNC_TRIGGER".into(),
            trigger.display().to_string(),
        ),
    ];
    svc.spawn();
    svc.wait_caught_up(&srv, CATCH_UP);
    let before = svc.checkpoint_gtid().expect("a checkpoint");

    std::fs::write(&trigger, b"").unwrap();
    insert(&srv, 100, 5);
    assert_fails_naming(&mut svc, "Input/output error", "fsync EIO");
    assert!(
        svc.log_text().contains(names),
        "the error does not name {names:?}\n{}",
        svc.log_tail()
    );
    // The checkpoint never goes back, and covers only what the backup holds (it may
    // have moved once: the trigger can appear between a save's file and directory fsync).
    let after = gtid_seqs(FLAVOR, &svc.checkpoint_gtid().expect("a checkpoint"));
    assert!(
        gtid_seqs(FLAVOR, &before).is_subset(&after),
        "the checkpoint went back"
    );
    assert_checkpoint_durable(&svc, "after fsync failed");

    std::fs::remove_file(&trigger).unwrap();
    restart_caught_up(&srv, &mut svc);
}

/// fsync fails in the middle of a catch-up, while the file sink has several group
/// commits in flight (one fsyncing while the next compresses and appends): the job
/// whose fsync fails and every later one fail their acks, so the checkpoint stays at
/// the last durable job; a restart catches up with every transaction exactly once.
#[test]
fn fsync_failure_mid_catch_up() {
    let Some(srv) = TestServer::start(FLAVOR, &[]) else {
        return;
    };
    srv.exec(SCHEMA);
    // 200 transactions of 1,000 rows: tens of MB of backup lines, several of the
    // sink's 8 MB group commits.
    insert_bulk(&srv, 200, 1000);
    let mut svc = Service::new(
        "fsync-eio-mid",
        ServiceConfig::for_server(&srv, Sink::file()),
    );
    let Some(shim) = build_shim(&svc.tmp.0) else {
        cannot("cannot compile the LD_PRELOAD shim with gcc");
        return;
    };
    let trigger = svc.tmp.join("fsync-fails");
    std::fs::write(&trigger, b"").unwrap();
    // The first three of the segments' fsyncs succeed, the fourth fails.
    svc.cfg.env = vec![
        ("LD_PRELOAD".into(), shim.display().to_string()),
        (
            "ROWSTREAM_TEST_FSYNC_TRIGGER".into(),
            trigger.display().to_string(),
        ),
        ("ROWSTREAM_TEST_FDATASYNC_PASS".into(), "3".into()),
    ];
    svc.spawn();
    assert_fails_naming(&mut svc, "Input/output error", "fsync EIO mid catch-up");
    assert_checkpoint_durable(&svc, "after fsync failed mid catch-up");
    let executed = gtid_seqs(FLAVOR, &srv.gtid_executed());
    let covered = svc
        .checkpoint_gtid()
        .map(|cp| gtid_seqs(FLAVOR, &cp))
        .unwrap_or_default();
    assert!(
        covered.len() < executed.len(),
        "the checkpoint covers every transaction: the failure came after the catch-up"
    );

    std::fs::remove_file(&trigger).unwrap();
    restart_caught_up(&srv, &mut svc);
}

// ---------------------------------------------------------------------------------------
// A crash before the first checkpoint that covered anything

/// A first start writes an empty checkpoint before streaming; killed before the first
/// one covering a transaction, with small segments already rotated, it leaves closed
/// segments none of whose transactions the checkpoint covers. The restart must cut them
/// and catch up, not refuse the backup as another checkpoint's. Made here by putting the
/// first start's empty checkpoint back after a run (the `kill -9` loop hit the window
/// itself once).
#[test]
fn crash_before_the_first_covering_checkpoint() {
    let Some(srv) = TestServer::start(FLAVOR, &[]) else {
        return;
    };
    srv.exec(SCHEMA);
    insert_bulk(&srv, 30, 100);
    let sink = Sink::File("segment_max_bytes = 65536\n".to_string());
    let mut svc = Service::new("crash-first-tick", ServiceConfig::for_server(&srv, sink));
    svc.spawn();
    svc.wait_caught_up(&srv, CATCH_UP);
    svc.stop(Duration::from_secs(10));
    let closed = rowstream_file::segment::segments(&svc.backup)
        .unwrap()
        .iter()
        .filter(|s| s.is_closed_zst())
        .count();
    assert!(
        closed > 1,
        "the workload rotated no segment ({closed} closed)"
    );

    let path = svc.cp_dir.join("checkpoint.json");
    let mut cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cp["gtid_set"] = serde_json::Value::String(String::new());
    std::fs::write(&path, cp.to_string()).unwrap();

    insert(&srv, 10_000, 3);
    restart_caught_up(&srv, &mut svc);
}

// ---------------------------------------------------------------------------------------
// The open segment is truncated behind rowstream's back

#[test]
fn segment_truncated_while_running() {
    let Some((srv, mut svc)) = started("seg-trunc") else {
        return;
    };
    let open: Vec<PathBuf> = std::fs::read_dir(&svc.backup)
        .unwrap()
        .map(|e| e.unwrap().path())
        // The open segment: `N.ndjson.zst.open` (or `N.ndjson` with compress off).
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson" || e == "open"))
        .collect();
    let [seg] = &open[..] else {
        panic!("expected one open segment, found {open:?}");
    };
    let len = std::fs::metadata(seg).unwrap().len();
    let before = svc.checkpoint_gtid().expect("a checkpoint");
    std::fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    insert(&srv, 100, 5);
    assert_fails_naming(&mut svc, "behind rowstream's back", "truncated segment");
    // Nothing written after the truncation was acknowledged.
    assert_eq!(svc.checkpoint_gtid().as_deref(), Some(&*before));
    // No torn or foreign data is served: only complete transactions are read back, and
    // the new transactions were not appended after the hole.
    let ids = backup_ids(&svc.backup);
    assert!(
        ids.iter()
            .all(|id| gtid_seqs(FLAVOR, &before).contains(&gtid_key(FLAVOR, id))),
        "transactions written after the truncation are in the backup: {ids:?}"
    );
    eprintln!(
        "truncated segment: {} of the transactions the checkpoint covers are still in the backup",
        ids.len()
    );
}

/// After a truncation, a restart must not resume past the hole: the backup records the
/// source transactions it covers (filtered ones included), so the file sink sees that
/// the checkpoint covers transactions the backup lost and refuses to start, naming them
/// (before: backup 1-3 then 8-12, checkpoint 7, and `backup verify` said OK).
#[test]
fn segment_truncated_restart_refuses() {
    let Some((srv, mut svc)) = started("seg-trunc-restart") else {
        return;
    };
    // A second group commit, so that the segment holds frames with transactions before
    // the one cut: the open segment is a series of zstd frames, one per group commit,
    // and readers see whole frames only (a cut inside a fresh backup's only frame of
    // transactions leaves nothing that records where the backup stood).
    insert(&srv, 50, 5);
    svc.wait_caught_up(&srv, CATCH_UP);
    let seg = svc.backup.join("000000000001.ndjson.zst.open");
    let file = std::fs::File::open(&seg).unwrap();
    let walk = rowstream_file::segment::walk_frames(&file, u64::MAX).unwrap();
    let raw = walk.raw.expect("frames record their size");
    let (last_start, _) = rowstream_file::segment::walk_frames(&file, raw - 1)
        .unwrap()
        .boundary;
    assert!(walk.frames >= 3 && last_start > 0, "{walk:?}");
    // Half of the last frame goes.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(last_start + (walk.valid - last_start) / 2)
        .unwrap();
    insert(&srv, 100, 5);
    assert_fails_naming(&mut svc, "behind rowstream's back", "truncated segment");
    let before = svc.checkpoint_gtid().expect("a checkpoint");
    svc.spawn();
    if svc.wait_exit_within(Duration::from_secs(20)).is_none() {
        svc.stop(Duration::from_secs(10));
        let ids = backup_ids(&svc.backup);
        panic!(
            "the restart resumed past the hole: backup {ids:?}, server {}",
            srv.gtid_executed()
        );
    }
    let log = svc.log_text();
    assert!(
        log.contains("the checkpoint covers source transactions that backup dir"),
        "{log}"
    );
    assert!(log.contains("restore the segment from a copy"), "{log}");
    let refusal = log.lines().find(|l| l.contains("checkpoint covers source"));
    eprintln!("restart refused: {}", refusal.unwrap_or_default());
    // Nothing was cut or acknowledged past the hole.
    assert_eq!(svc.checkpoint_gtid().as_deref(), Some(&*before));
}
