//! `rowstream backup verify` and `backup cat` against a backup written by
//! `rowstream run` from a real server: an untouched backup verifies clean;
//! one byte flipped anywhere (100 tries over open and zstd-compressed
//! segments) makes `verify` exit non-zero naming a segment (and transaction
//! when known) and `cat` never print a damaged line; a deleted middle
//! segment is reported as a gap naming the transactions it held.
//! Coverage: with transactions that touch only an excluded table (they
//! write no lines), the backup still covers exactly the server's executed
//! set and verifies clean; one transaction's lines removed from a segment
//! are named as missing (segment, line, GTID). Skipped without server
//! binaries unless `ROWSTREAM_TEST_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{output_with_timeout, rowstream, seed, Flavor, Service, ServiceConfig, Sink};
use common::{TestServer, TimedOutput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rowstream::gtid::GtidSet;
use rowstream_file::coverage::{split_id, Coverage};
use rowstream_file::segment::{open_segment, segment_name, segments, Form};

fn backup_cmd(sub: &str, dir: &Path) -> TimedOutput {
    output_with_timeout(
        rowstream().arg("backup").arg(sub).arg(dir),
        None,
        Duration::from_secs(60),
    )
}

/// A server with 200 transactions of 1..20 rows streamed by `rowstream run`
/// into a backup of small segments, at least one of them compressed, the
/// service stopped.
fn streamed_backup(flavor: Flavor) -> Option<(TestServer, Service)> {
    let srv = TestServer::start(flavor, &[])?;
    srv.exec("CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL)");
    let mut sql = String::new();
    let mut id = 0;
    for tx in 0..200 {
        sql.push_str("BEGIN;");
        for _ in 0..=(tx % 20) {
            id += 1;
            sql.push_str(&format!(
                "INSERT INTO s.t VALUES ({id}, REPEAT('x{tx}', 20));"
            ));
        }
        sql.push_str("COMMIT;");
    }
    srv.exec(&sql);
    let sink = Sink::File("segment_max_bytes = 32768\n".into());
    let mut svc = Service::new("backup_verify", ServiceConfig::for_server(&srv, sink));
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !segments(&svc.backup)
        .unwrap()
        .iter()
        .any(|s| s.form == Form::Zst)
    {
        assert!(Instant::now() < deadline, "no segment was compressed");
        std::thread::sleep(Duration::from_millis(50));
    }
    svc.stop(Duration::from_secs(10));
    Some((srv, svc))
}

fn stdout_lines(out: &TimedOutput) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn flips_and_gap(flavor: Flavor) {
    let Some((_srv, svc)) = streamed_backup(flavor) else {
        return;
    };
    let dir = &svc.backup;
    let clean = backup_cmd("verify", dir);
    assert_eq!(
        clean.status.and_then(|s| s.code()),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&clean.stdout),
        clean.stderr_text()
    );
    let summary = String::from_utf8_lossy(&clean.stdout).to_string();
    let txs: u64 = summary
        .split("transactions: ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(txs >= 200, "{summary}");
    assert!(summary.ends_with("OK\n"), "{summary}");
    let full = backup_cmd("cat", dir);
    assert!(full.success(), "{}", full.stderr_text());
    let want = stdout_lines(&full);
    assert!(want.len() >= 2100, "{} lines", want.len());

    let segs = segments(dir).unwrap();
    assert!(segs.len() >= 3, "{segs:?}");
    let seed = seed();
    eprintln!("flip seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..100 {
        // Even tries in a compressed segment, odd ones in the open one.
        let seg = if i % 2 == 0 {
            segs[0]
        } else {
            *segs.last().unwrap()
        };
        let path = seg.path(dir);
        let orig = std::fs::read(&path).unwrap();
        let at = rng.gen_range(0..orig.len());
        let mut bad = orig.clone();
        bad[at] ^= 1 << rng.gen_range(0..8);
        // A flip zstd decodes to the same bytes (a padding bit, a larger
        // window size) damages nothing: verify rightly passes it.
        if seg.form != Form::Plain
            && zstd::decode_all(&bad[..]).is_ok_and(|d| d == zstd::decode_all(&orig[..]).unwrap())
        {
            continue;
        }
        std::fs::write(&path, &bad).unwrap();
        let v = backup_cmd("verify", dir);
        let text = String::from_utf8_lossy(&v.stdout).to_string();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            v.status.and_then(|s| s.code()),
            Some(1),
            "flip at {at} of {name} (seed {seed}): {text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with(&name)),
            "flip at {at} of {name} not named: {text}"
        );
        let c = backup_cmd("cat", dir);
        let lines = stdout_lines(&c);
        assert!(
            lines.len() <= want.len() && lines[..] == want[..lines.len()],
            "flip at {at} of {name} (seed {seed}): cat printed a damaged line"
        );
        if text.contains("checksum mismatch") {
            // Decoded bytes are damaged, so cat reaches the damage and
            // refuses, naming it. A flip in a frame (the appended ones carry
            // no zstd checksum) can damage several places of its output, so
            // the first one cat meets may be another kind of damage.
            let err = c.stderr_text();
            assert!(!c.success(), "flip at {at} of {name}: cat exited 0");
            assert!(
                [
                    "checksum mismatch",
                    "not a backup record",
                    "malformed transaction-end marker",
                    "truncated line",
                    "marker without checksum",
                ]
                .iter()
                .any(|w| err.contains(w)),
                "flip at {at} of {name} (seed {seed}): {err}"
            );
        }
        std::fs::write(&path, &orig).unwrap();
    }

    std::fs::remove_file(segs[1].path(dir)).unwrap();
    let v = backup_cmd("verify", dir);
    let text = String::from_utf8_lossy(&v.stdout).to_string();
    assert_eq!(v.status.and_then(|s| s.code()), Some(1), "{text}");
    assert!(text.contains("gap: segments 2..2 are missing"), "{text}");
    // The next segment's start line names what the missing one held.
    assert!(
        text.contains("does not join the previous segment's end: transactions "),
        "{text}"
    );

    let usage = backup_cmd("verify", &dir.join("nope"));
    assert_eq!(usage.status.and_then(|s| s.code()), Some(2));
}

#[test]
fn verify_catches_flips_and_gaps_mariadb() {
    flips_and_gap(Flavor::MariaDb);
}

#[test]
fn verify_catches_flips_and_gaps_mysql() {
    flips_and_gap(Flavor::MySql);
}

/// A backup holding snapshot chunks (their markers numbered 1, 2, ...)
/// between streamed transactions verifies clean.
#[test]
fn snapshot_chunks_verify_clean() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let mut sql = String::from(
        "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL);",
    );
    for id in 1..=2000 {
        sql.push_str(&format!("INSERT INTO s.t VALUES ({id}, 'row {id}');"));
    }
    srv.exec(&sql);
    let mut cfg = ServiceConfig::for_server(&srv, Sink::File("segment_max_bytes = 20000\n".into()))
        .with_extra("[snapshot]\nmode = \"initial\"\nchunk_rows = 100\n");
    cfg.start = None;
    let mut svc = Service::new("backup_verify_snapshot", cfg);
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    srv.exec("INSERT INTO s.t VALUES (5000, 'after')");
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));
    assert!(svc.snapshot_complete());
    let v = backup_cmd("verify", &svc.backup);
    let text = String::from_utf8_lossy(&v.stdout).to_string();
    assert_eq!(
        v.status.and_then(|s| s.code()),
        Some(0),
        "{text}\n{}",
        v.stderr_text()
    );
    assert!(text.contains("snapshot:"), "{text}");
    assert!(text.contains("rows: 2001"), "{text}");
}

/// Transactions that touch only an excluded table write no lines but are
/// covered; a transaction's lines removed from a segment are named.
fn filtered_coverage(flavor: Flavor) {
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    srv.exec(
        "CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL);\
         CREATE TABLE s.x (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL)",
    );
    // Every third transaction touches only the excluded s.x, every fifth both.
    let mut sql = String::new();
    for tx in 0..300 {
        sql.push_str("BEGIN;");
        if tx % 3 != 0 {
            sql.push_str(&format!("INSERT INTO s.t VALUES ({tx}, REPEAT('t', 100));"));
        }
        if tx % 3 == 0 || tx % 5 == 0 {
            sql.push_str(&format!("INSERT INTO s.x VALUES ({tx}, 'x');"));
        }
        sql.push_str("COMMIT;");
    }
    srv.exec(&sql);
    let sink = Sink::File("segment_max_bytes = 16384\ncompress = false\n".into());
    let mut cfg = ServiceConfig::for_server(&srv, sink);
    cfg.source_extra = "exclude = [\"s.x\"]\n".into();
    let mut svc = Service::new("backup_verify_filtered", cfg);
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));
    let dir = &svc.backup;
    let clean = backup_cmd("verify", dir);
    let text = String::from_utf8_lossy(&clean.stdout).to_string();
    assert_eq!(clean.status.and_then(|s| s.code()), Some(0), "{text}");
    // The backup covers exactly what the server executed, filtered
    // transactions included, though only the others have markers.
    let executed = srv.gtid_executed();
    let api_flavor = match flavor {
        Flavor::MariaDb => rowstream_api::Flavor::MariaDb,
        Flavor::MySql => rowstream_api::Flavor::MySql,
    };
    let want = Coverage::of_set(&GtidSet::parse(api_flavor, &executed).unwrap());
    assert!(
        text.contains(&format!("covered: {want}\n")),
        "{text}\nserver: {executed}"
    );
    let markers = text
        .split("transactions: ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap();
    let total: u64 = want.0.values().flatten().map(|&(a, b)| b - a + 1).sum();
    assert!(
        markers + 100 <= total,
        "{markers} markers of {total} transactions"
    );

    // A hole: the lines of the third transaction of segment 2 removed.
    let segs = segments(dir).unwrap();
    assert!(segs.len() >= 3, "{segs:?}");
    let seg = segs[1];
    assert_eq!(seg.form, Form::Plain);
    let mut body = String::new();
    std::io::Read::read_to_string(&mut open_segment(dir, seg).unwrap(), &mut body).unwrap();
    let marker = body
        .lines()
        .filter(|l| l.starts_with("{\"transaction\":"))
        .nth(2)
        .unwrap();
    let id = marker
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let needle = format!("\"{id}\"");
    let kept: String = body
        .split_inclusive('\n')
        .filter(|l| !l.contains(&needle))
        .collect();
    std::fs::write(seg.path(dir), kept).unwrap();
    let v = backup_cmd("verify", dir);
    let text = String::from_utf8_lossy(&v.stdout).to_string();
    assert_eq!(v.status.and_then(|s| s.code()), Some(1), "{text}");
    let (k, n) = split_id(id).unwrap();
    let name = segment_name(seg.num, false);
    // Named at the next transaction's line; the range ends at the removed
    // one (and starts earlier when its marker recorded filtered ones).
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{name} line "))
            && (l.contains(&format!("transactions {k}:{n} are missing"))
                || (l.contains(&format!("transactions {k}:"))
                    && l.contains(&format!("-{n} are missing"))))),
        "removed {id} from {name}: {text}"
    );
}

#[test]
fn filtered_transactions_are_covered_mariadb() {
    filtered_coverage(Flavor::MariaDb);
}

#[test]
fn filtered_transactions_are_covered_mysql() {
    filtered_coverage(Flavor::MySql);
}
