//! `rowstream tail` end to end against real servers of both flavours: a 20 MB row, a
//! server restart in the middle of the stream (every row exactly once, in order), MariaDB
//! compressed binlog events (refused, never decoded into rows), `--include` filtering of
//! rows and DDL, and `--from earliest` on a fresh server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Flavor, TestServer};
use serde_json::Value;

/// Row change events (records with an `op`) of a tail output.
fn rows(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e.get("op").is_some()).collect()
}

/// Schema-change records (with a `ddl`).
fn ddls(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e.get("ddl").is_some()).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("sha256sum");
    w.join().unwrap().expect("writing to sha256sum");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The GTID of the `k`-th transaction (1-based) committed after `executed` on a server
/// with a single writer: MySQL `uuid:N`, MariaDB `domain-server-N`.
fn gtid_after(flavor: Flavor, executed: &str, k: u64) -> String {
    match flavor {
        Flavor::MySql => {
            // One uuid (this server's own), one interval: uuid:1-N.
            let (uuid, range) = executed.rsplit_once(':').expect("uuid:interval");
            let last: u64 = range
                .rsplit('-')
                .next()
                .unwrap()
                .parse()
                .expect("interval end");
            format!("{uuid}:{}", last + k)
        }
        Flavor::MariaDb => {
            let mut parts = executed.rsplitn(2, '-');
            let seq: u64 = parts.next().unwrap().parse().expect("seq_no");
            format!("{}-{}", parts.next().unwrap(), seq + k)
        }
    }
}

// ---------------------------------------------------------------------------------------
// 20 MB row
// ---------------------------------------------------------------------------------------

fn big_row(flavor: Flavor) {
    let Some(s) = TestServer::start(flavor, &["--max-allowed-packet=256M"]) else {
        return;
    };
    s.exec("CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT) CHARACTER SET utf8mb4");
    let from = s.gtid_executed();
    let cte_limit = match flavor {
        Flavor::MySql => "SET SESSION cte_max_recursion_depth = 10000000;",
        Flavor::MariaDb => "SET SESSION max_recursive_iterations = 10000000;",
    };
    // 20,000,000 bytes of non-repeating binary (SHA-256 of 1..625000) and a 20 MB text
    // with multi-byte characters at both ends.
    s.exec(&format!(
        "{cte_limit} SET SESSION group_concat_max_len = 100000000;
         SET @h = (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 625000)
                   SELECT GROUP_CONCAT(SHA2(n, 256) ORDER BY n SEPARATOR '') FROM s);
         INSERT INTO big.t VALUES (1, UNHEX(@h), CONCAT('héllo😀', LEFT(@h, 19999990), '€😀'));"
    ));
    let srv = s.query("SELECT LENGTH(b), LOWER(SHA2(b, 256)), LENGTH(t), LOWER(SHA2(t, 256)), CHAR_LENGTH(t) FROM big.t WHERE id = 1");
    let srv: Vec<String> = srv[0].iter().map(|v| v.clone().unwrap()).collect();
    assert_eq!(srv[0], "20000000");

    let t0 = Instant::now();
    let events = common::tail(&s.url(), &from, 1, &["--heartbeat-secs", "1"]);
    let took = t0.elapsed();
    let rows = rows(&events);
    assert_eq!(rows.len(), 1);
    let row = rows[0];
    assert_eq!(row["op"], "c");
    assert_eq!(row["after"]["id"], 1);
    let b = base64::engine::general_purpose::STANDARD
        .decode(
            row["after"]["b"]
                .as_str()
                .expect("LONGBLOB as a base64 string"),
        )
        .expect("valid base64");
    assert_eq!(b.len().to_string(), srv[0], "blob length");
    assert_eq!(sha256_hex(&b), srv[1], "blob SHA-256");
    let t = row["after"]["t"].as_str().expect("LONGTEXT as a string");
    assert_eq!(t.len().to_string(), srv[2], "text length in bytes");
    assert_eq!(
        t.chars().count().to_string(),
        srv[4],
        "text length in characters"
    );
    assert!(t.starts_with("héllo😀") && t.ends_with("€😀"));
    assert_eq!(sha256_hex(t.as_bytes()), srv[3], "text SHA-256");
    eprintln!("{flavor:?}: 40 MB row streamed in {took:?}");
}

flavor_tests!(big_row: mariadb_20mb_row, mysql_20mb_row);

// ---------------------------------------------------------------------------------------
// Server restart mid-stream
// ---------------------------------------------------------------------------------------

const TXNS_PER_PHASE: u64 = 100;
const ROWS_PER_TXN: u64 = 5;
/// Padding per row: a phase writes ~20 MB of binlog, more than the pipe, the channel and
/// the socket buffers hold, so the server restarts while rowstream is inside the stream.
const PAD: u64 = 40_000;

/// Transactions of the last phase, written after rowstream caught up and the server was
/// down for a while (it reconnects with backoff until the server is back).
const TXNS_LAST_PHASE: u64 = 20;

/// SQL committing transactions `first..first+count` (1-based), one INSERT per row.
fn phase_sql(first: u64, count: u64) -> String {
    let mut sql = String::new();
    for txn in first..first + count {
        sql.push_str("BEGIN;");
        for k in 0..ROWS_PER_TXN {
            let id = txn * 10 + k;
            sql.push_str(&format!(
                "INSERT INTO r.t VALUES ({id}, {txn}, {k}, REPEAT(CHAR(65 + {id} % 26), {PAD}));"
            ));
        }
        sql.push_str("COMMIT;\n");
    }
    sql
}

/// Reads `child`'s stdout lines on a thread (started when this is called).
fn line_reader(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::with_capacity(1 << 20, stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The rows of `events` are exactly those `txns` transactions of [`phase_sql`] committed
/// after `from`: each once, in commit order, with their values. `err`: rowstream's stderr.
fn check_committed_rows(flavor: Flavor, from: &str, txns: u64, events: &[Value], err: &str) {
    let expected: Vec<(String, u64)> = (1..=txns)
        .flat_map(|txn| (0..ROWS_PER_TXN).map(move |k| (txn, k)))
        .map(|(txn, k)| (gtid_after(flavor, from, txn), txn * 10 + k))
        .collect();
    let rows = rows(events);
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["source"]["gtid"].as_str().unwrap().to_string(),
                r["after"]["id"].as_u64().unwrap(),
            )
        })
        .collect();
    if got != expected {
        let mut seen = std::collections::HashMap::new();
        for g in &got {
            *seen.entry(g.1).or_insert(0) += 1;
        }
        let dups: Vec<_> = seen
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(id, _)| *id)
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !seen.contains_key(&e.1))
            .map(|e| e.1)
            .collect();
        let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "rows differ from what was committed: {} rows, expected {}; first difference at index {first_diff:?} \
             (got {:?}, expected {:?}); duplicated ids {dups:?}; missing ids {missing:?}\n--- stderr ---\n{err}",
            got.len(),
            expected.len(),
            first_diff.map(|i| &got[i]),
            first_diff.map(|i| &expected[i]),
        );
    }
    for r in &rows {
        let id = r["after"]["id"].as_u64().unwrap();
        assert_eq!(r["op"], "c");
        assert_eq!(r["after"]["txn"].as_u64().unwrap(), id / 10);
        assert_eq!(r["after"]["k"].as_u64().unwrap(), id % 10);
        assert_eq!(
            r["transaction"]["total_order"].as_u64().unwrap(),
            id % 10 + 1,
            "{id}"
        );
        let pad = r["after"]["pad"].as_str().unwrap();
        assert_eq!(pad.len() as u64, PAD);
        assert!(pad.bytes().all(|c| c == b'A' + (id % 26) as u8));
    }
}

fn restart_mid_stream(flavor: Flavor, crash: bool) {
    // A clean MariaDB shutdown waits for a dump thread blocked in a network write (our
    // unread pipe) up to net_write_timeout (default 60 s).
    let Some(s) = TestServer::start(flavor, &["--net-write-timeout=5"]) else {
        return;
    };
    s.exec(
        "CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY, txn INT, k INT, pad LONGTEXT)",
    );
    let from = s.gtid_executed();
    let txns = 2 * TXNS_PER_PHASE + TXNS_LAST_PHASE;
    let total = txns * ROWS_PER_TXN;

    let server_id = common::next_replica_server_id();
    let mut child = common::tail_command(&s.url(), server_id, &from)
        .args(["--max-events", &total.to_string()])
        .args(["--heartbeat-secs", "1", "--include", "r.t"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rowstream tail");
    // Drain stderr continuously (it must not block rowstream); keep it for messages.
    let stderr = child.stderr.take().unwrap();
    let stderr_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });

    // Phase 1 while nobody reads rowstream's stdout: it backs up into the binlog dump.
    s.exec(&phase_sql(1, TXNS_PER_PHASE));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "rowstream tail exited early"
    );
    let t0 = Instant::now();
    if crash {
        s.kill();
    }
    s.restart();
    let restart_took = t0.elapsed();
    // Now read, and write phase 2.
    let lines = line_reader(&mut child);
    s.exec(&phase_sql(1 + TXNS_PER_PHASE, TXNS_PER_PHASE));

    let deadline = Instant::now() + Duration::from_secs(180);
    let mut events: Vec<Value> = Vec::new();
    let mut got_rows = 0u64;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {:.300}", line));
                let is_row = v.get("op").is_some();
                got_rows += u64::from(is_row);
                events.push(v);
                if is_row && got_rows == 2 * TXNS_PER_PHASE * ROWS_PER_TXN {
                    // Caught up and idle: the server goes away for 3 s (more than the
                    // 3 x 1 s read timeout), comes back, and gets the last phase.
                    s.kill();
                    std::thread::sleep(Duration::from_secs(3));
                    s.restart();
                    s.exec(&phase_sql(1 + 2 * TXNS_PER_PHASE, TXNS_LAST_PHASE));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "timed out with {got_rows}/{total} rows\n--- stderr ---\n{}",
                    stderr_thread.join().unwrap_or_default()
                );
            }
        }
    }
    let status = child.wait().unwrap();
    let err = stderr_thread.join().unwrap_or_default();
    assert!(
        status.success(),
        "rowstream tail failed ({status}) after {got_rows}/{total} rows\n--- stderr ---\n{err}"
    );
    assert!(
        err.contains("reconnecting"),
        "the restart must have cut the stream (no reconnect logged)\n--- stderr ---\n{err}"
    );

    check_committed_rows(flavor, &from, txns, &events, &err);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("reconnecting")).collect();
    // Test design check: the connection was cut while phase 1 was still being read.
    let resumed_at: u64 = warnings[0]
        .split("resume_from=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.rsplit(['-', ':']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume_from in {:?}", warnings[0]));
    let phase1_end: u64 = gtid_after(flavor, &from, TXNS_PER_PHASE)
        .rsplit(['-', ':'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        resumed_at < phase1_end,
        "the stream was not interrupted inside phase 1 (resumed at {resumed_at}, phase 1 ends at {phase1_end}): \
         the test no longer exercises a mid-stream cut; make the phase bigger"
    );
    eprintln!(
        "{flavor:?}: restart took {restart_took:?}; phase 1 ends at {}; {warnings:#?}",
        gtid_after(flavor, &from, TXNS_PER_PHASE)
    );
}

flavor_tests!(restart_mid_stream(false): mariadb_restart_mid_stream, mysql_restart_mid_stream);

// Same with a crashed server (SIGKILL) instead of a clean stop.
flavor_tests!(restart_mid_stream(true): mariadb_crash_mid_stream, mysql_crash_mid_stream);

// ---------------------------------------------------------------------------------------
// MariaDB compressed binlog events
// ---------------------------------------------------------------------------------------

/// MariaDB compresses the binlog events of every statement longer than 10 bytes.
const COMPRESSED_BINLOG: &[&str] = &["--log-bin-compress=ON", "--log-bin-compress-min-len=10"];

#[test]
fn mariadb_compressed_events_are_refused_never_decoded() {
    let Some(s) = TestServer::start(Flavor::MariaDb, COMPRESSED_BINLOG) else {
        return;
    };
    let id = common::next_replica_server_id().to_string();
    let url = s.url();
    // While compression is on, tail refuses before streaming anything.
    let mut cmd = common::rowstream();
    cmd.args([
        "tail",
        "--url",
        &url,
        "--server-id",
        &id,
        "--from",
        "earliest",
        "--max-events",
        "1",
    ]);
    let out = common::output_with_timeout(&mut cmd, None, Duration::from_secs(60));
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "{}",
        out.stderr_text()
    );
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr_text()
            .contains("log_bin_compress: must be OFF, is ON. Fix:"),
        "{}",
        out.stderr_text()
    );

    // A binlog with an uncompressed transaction, compressed ones, then uncompressed ones.
    s.exec("SET GLOBAL log_bin_compress=OFF");
    s.exec("CREATE DATABASE z; CREATE TABLE z.t (id INT PRIMARY KEY, v VARCHAR(100)); INSERT INTO z.t VALUES (1, 'plain-before');");
    let before_compressed = s.gtid_executed();
    s.exec("SET GLOBAL log_bin_compress=ON");
    s.exec(
        "INSERT INTO z.t VALUES (2, 'compressed-compressed-compressed-compressed');
         INSERT INTO z.t VALUES (3, 'compressed-compressed-compressed-compressed');
         UPDATE z.t SET v = 'compressed-update-compressed-update' WHERE id = 1;",
    );
    let after_compressed = s.gtid_executed();
    s.exec("SET GLOBAL log_bin_compress=OFF");
    s.exec("INSERT INTO z.t VALUES (4, 'plain-after'); INSERT INTO z.t VALUES (5, 'plain-after');");

    // Check passes now; streaming across the compressed events stops with a clear error
    // and prints no row of them (nor any after them).
    for from in ["earliest", before_compressed.as_str()] {
        let mut cmd = common::rowstream();
        cmd.args([
            "tail",
            "--url",
            &url,
            "--server-id",
            &id,
            "--from",
            from,
            "--max-events",
            "10",
            "--heartbeat-secs",
            "1",
        ]);
        let out = common::output_with_timeout(&mut cmd, None, Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ctx = format!(
            "tail --from {from}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.describe_status(),
            out.stderr_text()
        );
        assert!(out.status.is_some(), "must stop by itself, not wait: {ctx}");
        assert!(!out.success(), "must fail on compressed events: {ctx}");
        assert!(
            out.stderr_text().to_lowercase().contains("compress"),
            "the error must name the compression: {ctx}"
        );
        assert!(
            !stdout.contains("compressed"),
            "a row of a compressed event was printed: {ctx}"
        );
        assert!(
            !stdout.contains("plain-after"),
            "rows after the compressed events were printed (skipped?): {ctx}"
        );
        let events: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let ids: Vec<_> = rows(&events)
            .iter()
            .map(|r| r["after"]["id"].as_u64().unwrap())
            .collect();
        if from == "earliest" {
            assert_eq!(ids, [1], "{ctx}");
        } else {
            assert!(ids.is_empty(), "{ctx}");
        }
    }
    // From after them: fine.
    let events = common::tail(&url, &after_compressed, 2, &["--heartbeat-secs", "1"]);
    let ids: Vec<_> = rows(&events)
        .iter()
        .map(|r| r["after"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [4, 5]);
}

// ---------------------------------------------------------------------------------------
// --include
// ---------------------------------------------------------------------------------------

fn include_filter(flavor: Flavor) {
    let Some(s) = TestServer::start(flavor, &[]) else {
        return;
    };
    let from = s.gtid_executed();
    // DDL with a default database here (schema of qualified names without one:
    // include_keeps_qualified_ddl).
    s.exec(
        "CREATE DATABASE a; CREATE DATABASE b;
         USE a; CREATE TABLE keep (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE other (id INT PRIMARY KEY, v VARCHAR(20));
         USE b; CREATE TABLE keep (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO a.keep VALUES (1, 'k1');
         INSERT INTO a.other VALUES (1, 'o1');
         INSERT INTO b.keep VALUES (1, 'b1');
         BEGIN; INSERT INTO b.keep VALUES (2, 'b2'); INSERT INTO a.keep VALUES (2, 'k2'); INSERT INTO a.other VALUES (2, 'o2'); COMMIT;
         USE b; ALTER TABLE keep ADD COLUMN bz INT; CREATE TABLE bnew (id INT PRIMARY KEY);
         INSERT INTO bnew VALUES (1);
         USE a; ALTER TABLE keep ADD COLUMN az INT;
         UPDATE a.keep SET v = 'k2u' WHERE id = 2; UPDATE b.keep SET v = 'b2u';
         DELETE FROM a.other; DELETE FROM a.keep WHERE id = 1;
         INSERT INTO a.keep VALUES (3, 'k3', 3);",
    );
    // 2 inserts, 1 update, 1 delete, 1 insert of a.keep.
    let events = common::tail(
        &s.url(),
        &from,
        5,
        &["--include", "a.keep", "--heartbeat-secs", "1"],
    );
    let r = rows(&events);
    let got: Vec<(String, String, String)> = r
        .iter()
        .map(|e| {
            let img = if e["op"] == "d" {
                &e["before"]
            } else {
                &e["after"]
            };
            (
                format!(
                    "{}.{}",
                    e["source"]["db"].as_str().unwrap(),
                    e["source"]["table"].as_str().unwrap()
                ),
                e["op"].as_str().unwrap().to_string(),
                img["v"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |op: &str, v: &str| ("a.keep".to_string(), op.to_string(), v.to_string());
    assert_eq!(
        got,
        [
            want("c", "k1"),
            want("c", "k2"),
            want("u", "k2u"),
            want("d", "k1"),
            want("c", "k3")
        ],
        "{events:#?}"
    );
    // In the mixed transaction, a.keep's row is the 2nd of 3; its per-table order is 1.
    assert_eq!(r[1]["transaction"]["data_collection_order"], 1);
    for d in ddls(&events) {
        let text = d["ddl"].as_str().unwrap();
        assert_ne!(d["databaseName"], "b", "DDL of another schema: {d}");
        assert!(
            !text.contains("bz") && !text.contains("bnew") && !text.contains("b.keep"),
            "DDL of another schema: {d}"
        );
    }
    assert!(
        ddls(&events)
            .iter()
            .any(|d| d["ddl"].as_str().unwrap().contains("ADD COLUMN az")),
        "the ALTER TABLE of the included table (default database a) is missing: {events:#?}"
    );
}

flavor_tests!(include_filter: mariadb_include_filter, mysql_include_filter);

/// DDL of an included table written with a qualified name and no default database
/// (`ALTER TABLE a.keep ...` from a session without `USE`) is the included table's DDL.
fn include_keeps_qualified_ddl(flavor: Flavor) {
    let Some(s) = TestServer::start(flavor, &[]) else {
        return;
    };
    s.exec("CREATE DATABASE a; CREATE DATABASE b; CREATE TABLE a.keep (id INT PRIMARY KEY); CREATE TABLE b.keep (id INT PRIMARY KEY)");
    let from = s.gtid_executed();
    s.exec(
        "ALTER TABLE b.keep ADD COLUMN bq INT;
         ALTER TABLE a.keep ADD COLUMN aq INT;
         INSERT INTO a.keep VALUES (1, 1);",
    );
    let events = common::tail(
        &s.url(),
        &from,
        1,
        &["--include", "a.keep", "--heartbeat-secs", "1"],
    );
    let d: Vec<&str> = ddls(&events)
        .iter()
        .map(|d| d["ddl"].as_str().unwrap())
        .collect();
    assert!(
        !d.iter().any(|t| t.contains("bq")),
        "DDL of another schema: {d:?}"
    );
    assert!(
        d.iter().any(|t| t.contains("ADD COLUMN aq")),
        "ALTER TABLE a.keep (no default database) missing: {events:#?}"
    );
}

flavor_tests!(include_keeps_qualified_ddl: mariadb_include_keeps_qualified_ddl, mysql_include_keeps_qualified_ddl);

// ---------------------------------------------------------------------------------------
// --from earliest
// ---------------------------------------------------------------------------------------

fn from_earliest_on_fresh_server(flavor: Flavor) {
    let Some(s) = TestServer::start(flavor, &[]) else {
        return;
    };
    assert_eq!(s.gtid_executed(), "");
    s.exec("CREATE DATABASE e");
    let first = s.gtid_executed();
    s.exec("CREATE TABLE e.t (id INT PRIMARY KEY); INSERT INTO e.t VALUES (1); INSERT INTO e.t VALUES (2);");
    let events = common::tail(&s.url(), "earliest", 1, &["--heartbeat-secs", "1"]);
    let first_gtid = first.clone();
    assert!(!events.is_empty());
    // The very first record is the first transaction: CREATE DATABASE.
    assert_eq!(
        events[0]["source"]["gtid"],
        first_gtid.as_str(),
        "{events:#?}"
    );
    assert!(
        events[0]["ddl"]
            .as_str()
            .unwrap_or("")
            .contains("CREATE DATABASE e"),
        "{events:#?}"
    );
    let r = rows(&events);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["after"]["id"], 1);
    assert_eq!(
        r[0]["source"]["gtid"],
        gtid_after(flavor, &first, 2).as_str()
    );
}

flavor_tests!(from_earliest_on_fresh_server: mariadb_from_earliest_on_fresh_server, mysql_from_earliest_on_fresh_server);
