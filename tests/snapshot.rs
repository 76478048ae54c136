//! Initial snapshots against real servers (both flavours): a table with existing rows
//! (1,000,000 by default, `ROWSTREAM_SNAPSHOT_ROWS` to change) and a writer updating,
//! inserting, deleting and moving primary keys while the snapshot runs; once caught up,
//! applying the backup's events in order (latest per primary key, deletes removing, a key
//! update moving the row) must give exactly the source table. Once without interruption
//! (then the snapshot holds every key once), once with SIGKILL at random moments during
//! the snapshot (it must resume from its last durable chunk, not start over).
//!
//! Also: snapshot rows of every column type print exactly like the binlog's rows of the
//! same values (with the columns in the declared order, reversed and shuffled), the
//! snapshot modes `never` / `initial_only`, and on-demand snapshots (signal table), also
//! with SIGKILLs during them (resumed, no key read twice).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{seed, Flavor, Service, ServiceConfig, Sink, StopOnDrop, TestServer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rowstream_file::encode::{parse_tx_end, LineKind};
use rowstream_file::reader::BackupReader;
use serde_json::Value;

fn rows_wanted() -> u64 {
    std::env::var("ROWSTREAM_SNAPSHOT_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Starts `svc` and SIGKILLs it after a random wait in `wait_ms` (seeded), again and
/// again, until the snapshot completes or `max_kills` kills; then lets it finish. When
/// a kill found chunks durable, the log must show the resume after them.
fn kill_during_snapshot(
    svc: &mut Service,
    seed: u64,
    wait_ms: std::ops::Range<u64>,
    max_kills: u32,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let mut resumed_progress = 0u64;
    loop {
        svc.spawn();
        let wait = Duration::from_millis(rng.gen_range(wait_ms.clone()));
        let t = Instant::now();
        while t.elapsed() < wait && !svc.snapshot_complete() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if svc.snapshot_complete() || kills >= max_kills {
            break;
        }
        svc.kill9();
        kills += 1;
        if let Some(cp) = svc.checkpoint() {
            resumed_progress =
                resumed_progress.max(cp["snapshot"]["chunks_done"].as_u64().unwrap_or(0));
        }
    }
    eprintln!(
        "{kills} kills during the snapshot; most chunks durable at a kill: {resumed_progress}"
    );
    svc.wait_for("snapshot completion", Duration::from_secs(600), |s| {
        s.snapshot_complete()
    });
    if kills > 0 && resumed_progress > 0 {
        assert!(
            svc.log_text()
                .contains("resuming after the last durable chunk"),
            "{}",
            svc.log_tail()
        );
    }
}

/// One `rowstream run` service with a file backup and these `[snapshot]` settings.
fn snapshot_service(label: &str, url: &str, snapshot: &str) -> Service {
    let mut cfg = ServiceConfig::new(
        &[url.to_string()],
        Sink::File("segment_max_bytes = 4000000".into()),
    )
    .with_extra(&format!("[snapshot]\n{snapshot}\n"));
    cfg.start = None;
    Service::new(label, cfg)
}

/// The backup's change records in order (only complete transactions / chunks), with the
/// ids of the END markers.
fn read_backup(dir: &Path) -> (Vec<Value>, Vec<String>) {
    let rd = BackupReader::open(dir).unwrap();
    let mut recs = Vec::new();
    let mut markers = Vec::new();
    for e in rd {
        let e = e.unwrap();
        match e.kind {
            LineKind::Change => recs.push(serde_json::from_slice(&e.line).unwrap()),
            LineKind::SchemaChange => {}
            LineKind::TxEnd => markers.push(parse_tx_end(&e.line).unwrap().id),
        }
    }
    (recs, markers)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// id -> "k|v|d" after applying the events of table `t` in order.
fn apply(recs: &[Value], table: &str) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for r in recs.iter().filter(|r| r["source"]["table"] == table) {
        let row = |img: &Value| {
            (
                img["id"].as_i64().expect("id"),
                format!(
                    "{}|{}|{}",
                    text(&img["k"]),
                    text(&img["v"]),
                    text(&img["d"])
                ),
            )
        };
        common::apply_change(&mut out, r, row);
    }
    out
}

fn source_table(srv: &TestServer) -> BTreeMap<i64, String> {
    srv.query("SELECT id, CONCAT_WS('|', k, v, d) FROM s.t ORDER BY id")
        .into_iter()
        .map(|r| {
            (
                r[0].as_ref().unwrap().parse().unwrap(),
                r[1].clone().unwrap(),
            )
        })
        .collect()
}

/// A server of `flavor` whose table `s.t` has `n` rows ([`fill`]).
fn filled_server(flavor: Flavor, n: u64) -> Option<TestServer> {
    let srv = TestServer::start(flavor, &[])?;
    fill(&srv, n);
    Some(srv)
}

fn fill(srv: &TestServer, n: u64) {
    let t = Instant::now();
    srv.exec(
        "CREATE DATABASE s; CREATE TABLE s.t (id BIGINT PRIMARY KEY, k INT NOT NULL, \
         v VARCHAR(100) NOT NULL, d DECIMAL(12,2) NOT NULL) DEFAULT CHARSET=utf8mb4",
    );
    let select = "SELECT n, n % 1000, CONCAT('row-', n, '-é'), n / 100";
    match srv.flavor {
        Flavor::MariaDb => srv.exec(&format!(
            "INSERT INTO s.t {} FROM (SELECT seq AS n FROM s.seq_1_to_{n}) x",
            select
        )),
        Flavor::MySql => srv.exec(&format!(
            "SET SESSION cte_max_recursion_depth = {}; INSERT INTO s.t \
             WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {n}) {} FROM c",
            n + 1,
            select
        )),
    }
    eprintln!("filled {n} rows in {:?}", t.elapsed());
}

/// Updates, inserts, deletes and key moves in small transactions until `stop`.
fn writer(srv: &TestServer, n: u64, seed: u64, stop: &AtomicBool) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next_id = n + 1;
    let mut txs = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..rng.gen_range(1..6) {
            let id = rng.gen_range(1..=next_id);
            match rng.gen_range(0..10) {
                0..=4 => sql.push_str(&format!(
                    "UPDATE s.t SET k = k + 1, v = 'upd-{}', d = d + 1 WHERE id = {id};",
                    rng.gen::<u32>()
                )),
                5..=6 => {
                    sql.push_str(&format!(
                        "INSERT INTO s.t VALUES ({next_id}, 7, 'new-{next_id}', 1.5);"
                    ));
                    next_id += 1;
                }
                7..=8 => sql.push_str(&format!("DELETE FROM s.t WHERE id = {id};")),
                _ => {
                    // Moves a row to a key the snapshot may not have reached yet.
                    sql.push_str(&format!(
                        "UPDATE IGNORE s.t SET id = {} WHERE id = {id};",
                        next_id + 5_000_000
                    ));
                    next_id += 1;
                }
            }
        }
        sql.push_str("COMMIT;");
        srv.exec(&sql);
        txs += 1;
    }
    txs
}

/// The trailing sequence number of a single-source GTID or GTID set (`0-1-42`,
/// `uuid:1-42`, `uuid:42`).
fn last_seq(g: &str) -> u64 {
    g.trim()
        .rsplit([':', '-'])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `before_start`: the server's GTID set before the service started; none of its
/// transactions may be streamed again (the cut contains them).
fn check_backup(svc: &Service, srv: &TestServer, expect_unique_reads: bool, before_start: &str) {
    let (recs, markers) = read_backup(&svc.backup);
    let old = last_seq(before_start);
    if let Some(r) = recs
        .iter()
        .find(|r| r["op"] != "r" && last_seq(r["source"]["gtid"].as_str().unwrap()) <= old)
    {
        panic!("streamed a transaction from before the snapshot's cut ({before_start}): {r}");
    }
    let reads: Vec<&Value> = recs.iter().filter(|r| r["op"] == "r").collect();
    let first_stream = recs
        .iter()
        .position(|r| r["op"] != "r")
        .unwrap_or(recs.len());
    assert_eq!(
        first_stream,
        reads.len(),
        "every snapshot read comes before the first streamed change"
    );
    let lasts: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r["source"]["snapshot"] == "last")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        lasts,
        vec![reads.len() - 1],
        "exactly the last read is marked \"last\""
    );
    for r in &reads {
        assert_eq!(
            r["source"]["snapshot"].as_str().map(|s| s != "false"),
            Some(true),
            "{r}"
        );
        assert!(r["transaction"].is_null(), "{r}");
        assert!(r["before"].is_null(), "{r}");
    }
    assert!(markers.iter().any(|m| m.starts_with("snapshot:")));
    if expect_unique_reads {
        let mut seen = HashMap::new();
        for r in &reads {
            let id = r["after"]["id"].as_i64().unwrap();
            assert!(seen.insert(id, ()).is_none(), "key {id} read twice");
        }
    }
    let got = apply(&recs, "t");
    let want = source_table(srv);
    if got != want {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(k))
            .take(5)
            .collect();
        let differ: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(k).is_some_and(|g| g != *v))
            .take(5)
            .collect();
        panic!(
            "backup does not reproduce s.t: {} rows vs {}; missing {missing:?}, extra {extra:?}, differ {differ:?}",
            got.len(),
            want.len()
        );
    }
    eprintln!(
        "backup ok: {} reads, {} streamed changes, {} rows",
        reads.len(),
        recs.len() - reads.len(),
        want.len()
    );
}

fn snapshot_under_writes(flavor: Flavor) {
    let n = rows_wanted();
    let Some(srv) = filled_server(flavor, n) else {
        return;
    };
    let seed = seed();
    let before_start = srv.gtid_executed();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let w = s.spawn(|| writer(&srv, n, seed, &stop));
        let guard = StopOnDrop(&stop);

        // 1. Uninterrupted, while the writer runs.
        let mut a = snapshot_service(
            &format!("plain-{}", flavor.name()),
            &srv.repl_url(),
            "threads = 2\nchunk_rows = 20000",
        );
        let t = Instant::now();
        a.spawn();
        a.wait_for("snapshot completion", Duration::from_secs(600), |s| {
            s.snapshot_complete()
        });
        eprintln!("snapshot of {n} rows complete in {:?}", t.elapsed());
        let log = a.log_text();
        assert!(log.contains("snapshot: consistent cut made"), "{log}");

        // 2. SIGKILL at random moments during the snapshot.
        let mut b = snapshot_service(
            &format!("kill-{}", flavor.name()),
            &srv.repl_url(),
            "threads = 2\nchunk_rows = 20000",
        );
        kill_during_snapshot(&mut b, seed ^ 0x5eed, 200..1500, 12);

        drop(guard);
        let txs = w.join().unwrap();
        eprintln!("writer committed {txs} transactions");
        a.wait_caught_up(&srv, Duration::from_secs(120));
        b.wait_caught_up(&srv, Duration::from_secs(120));
        a.stop(Duration::from_secs(30));
        b.stop(Duration::from_secs(30));
        check_backup(&a, &srv, true, &before_start);
        check_backup(&b, &srv, false, &before_start);
    });
}

flavor_tests!(snapshot_under_writes: snapshot_under_writes_mariadb, snapshot_under_writes_mysql);

/// The columns of `types_match_binlog`: name, type, row 1's value, row 2's value.
const TYPED_COLUMNS: &[(&str, &str, &str, &str)] = &[
    ("ti", "TINYINT", "-128", "0"),
    ("tu", "TINYINT UNSIGNED", "255", "0"),
    ("si", "SMALLINT", "-32768", "0"),
    ("su", "SMALLINT UNSIGNED", "65535", "0"),
    ("mi", "MEDIUMINT", "-8388608", "0"),
    ("mu", "MEDIUMINT UNSIGNED", "16777215", "0"),
    ("i", "INT", "-2147483648", "0"),
    ("iu", "INT UNSIGNED", "4294967295", "0"),
    ("bi", "BIGINT", "-9223372036854775808", "0"),
    ("bu", "BIGINT UNSIGNED", "18446744073709551615", "0"),
    ("b1", "BIT(1)", "b'1'", "b'0'"),
    ("b10", "BIT(10)", "b'1010101010'", "b'0'"),
    ("y", "YEAR", "2024", "0"),
    ("f", "FLOAT", "3.14159", "0"),
    ("db", "DOUBLE", "-2.718281828459045", "0"),
    ("de", "DECIMAL(20,6)", "-12345678901234.123456", "0"),
    ("dz", "DECIMAL(5,0)", "99999", "0"),
    ("c", "CHAR(5)", "'ab'", "''"),
    ("vc", "VARCHAR(20)", "'héllo €'", "''"),
    ("l1", "VARCHAR(20) CHARACTER SET latin1", "'ça€'", "''"),
    ("bin", "BINARY(4)", "x'00ff'", "x''"),
    ("vb", "VARBINARY(10)", "x'0001'", "x''"),
    ("t", "TEXT", "'text ✓'", "''"),
    ("bl", "BLOB", "x'deadbeef'", "x''"),
    ("e", "ENUM('x','Yy','z z')", "'Yy'", "'x'"),
    ("st", "SET('a','B','c')", "'a,c'", "''"),
    ("dt", "DATE", "'2024-02-29'", "'1000-01-01'"),
    (
        "dtt",
        "DATETIME",
        "'2024-02-29 23:59:59'",
        "'1000-01-01 00:00:00'",
    ),
    (
        "dt6",
        "DATETIME(6)",
        "'1999-12-31 23:59:59.123456'",
        "'1000-01-01 00:00:00'",
    ),
    ("ts", "TIMESTAMP NULL", "'2024-06-01 12:00:00'", "NULL"),
    (
        "ts3",
        "TIMESTAMP(3) NULL",
        "'2038-01-19 03:14:07.999'",
        "NULL",
    ),
    ("tm", "TIME", "'-838:59:59'", "'00:00:00'"),
    ("tm2", "TIME(2)", "'12:34:56.78'", "'-00:00:01.5'"),
    (
        "j",
        "JSON",
        r#"'{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}'"#,
        "'[]'",
    ),
    ("g", "GEOMETRY", "ST_GeomFromText('POINT(1 2)')", "NULL"),
    ("nn", "INT NULL", "NULL", "5"),
];

/// Every column type: the snapshot's `after` of a row equals the binlog's `after` of
/// the same values (copied into an identical table after the snapshot). In the
/// declared order, reversed, and in seeded shuffles: TABLE_MAP metadata that is listed
/// per kind of column (SIGNEDNESS per numeric column, charsets per character column,
/// ENUM/SET labels, geometry types) is only read right when every kind is counted; a
/// signed integer after a YEAR decoded as unsigned until YEAR was counted.
fn types_match_binlog(flavor: Flavor) {
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(seed());
    let mut orders: Vec<Vec<usize>> = vec![(0..TYPED_COLUMNS.len()).collect()];
    orders.push(orders[0].iter().rev().copied().collect());
    for _ in 0..6 {
        let mut o = orders[0].clone();
        o.shuffle(&mut rng);
        orders.push(o);
    }
    let mut sql = String::from("CREATE DATABASE s; SET time_zone = '+02:00'; ");
    for (k, order) in orders.iter().enumerate() {
        let (mut ddl, mut row1, mut row2) = (Vec::new(), Vec::new(), Vec::new());
        for &c in order {
            let (name, ty, v1, v2) = TYPED_COLUMNS[c];
            ddl.push(format!("{name} {ty}"));
            row1.push(v1);
            row2.push(v2);
        }
        sql += &format!(
            "CREATE TABLE s.a{k} (id INT PRIMARY KEY, {}) DEFAULT CHARSET=utf8mb4; \
             INSERT INTO s.a{k} VALUES (1, {}), (2, {}); ",
            ddl.join(", "),
            row1.join(", "),
            row2.join(", ")
        );
    }
    srv.exec(&sql);
    let mut svc = snapshot_service(&format!("types-{}", flavor.name()), &srv.repl_url(), "");
    svc.spawn();
    svc.wait_for("snapshot completion", Duration::from_secs(60), |s| {
        s.snapshot_complete()
    });
    let copies: String = (0..orders.len())
        .map(|k| {
            format!("CREATE TABLE s.b{k} LIKE s.a{k}; INSERT INTO s.b{k} SELECT * FROM s.a{k}; ")
        })
        .collect();
    srv.exec(&copies);
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(30));
    let (recs, _) = read_backup(&svc.backup);
    let by = |table: &str, op: &str| -> BTreeMap<i64, Value> {
        recs.iter()
            .filter(|r| r["source"]["table"] == table && r["op"] == op)
            .map(|r| (r["after"]["id"].as_i64().unwrap(), r["after"].clone()))
            .collect()
    };
    for (k, order) in orders.iter().enumerate() {
        let snap = by(&format!("a{k}"), "r");
        let streamed = by(&format!("b{k}"), "c");
        let names: Vec<&str> = order.iter().map(|&c| TYPED_COLUMNS[c].0).collect();
        assert_eq!(snap.len(), 2, "table a{k}: {recs:?}");
        for (id, s) in &snap {
            let b = &streamed[id];
            for (col, v) in s.as_object().unwrap() {
                assert_eq!(
                    Some(v),
                    b.get(col),
                    "column order {names:?}, row {id} column {col}: snapshot {v} vs binlog {:?}",
                    b.get(col)
                );
            }
            assert_eq!(s, b, "column order {names:?}");
        }
    }
}

flavor_tests!(types_match_binlog: types_match_binlog_mariadb, types_match_binlog_mysql);

/// `never` streams only; `initial_only` exits 0 after the snapshot and a rerun does nothing.
#[test]
fn modes() {
    let Some(srv) = filled_server(Flavor::MariaDb, 1000) else {
        return;
    };
    let mut never = snapshot_service("never", &srv.repl_url(), "mode = \"never\"");
    never.spawn();
    never.wait_caught_up(&srv, Duration::from_secs(30));
    srv.exec("INSERT INTO s.t VALUES (5000, 1, 'x', 1)");
    never.wait_caught_up(&srv, Duration::from_secs(30));
    never.stop(Duration::from_secs(30));
    let (recs, _) = read_backup(&never.backup);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["op"], "c");

    let mut only = snapshot_service(
        "only",
        &srv.repl_url(),
        "mode = \"initial_only\"\nchunk_rows = 100",
    );
    only.spawn();
    let st = only.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st}\n{}", only.log_tail());
    assert!(only.snapshot_complete());
    let (recs, markers) = read_backup(&only.backup);
    assert_eq!(recs.len(), 1001);
    assert!(recs.iter().all(|r| r["op"] == "r"));
    assert_eq!(markers.len(), 11, "{markers:?}");
    only.spawn();
    only.wait_exit(Duration::from_secs(30));
    assert_eq!(read_backup(&only.backup).0.len(), 1001);
}

/// A server with `n` rows in s.t and the signal table, and rowstream streaming it
/// (no initial snapshot, on-demand chunks of `chunk_rows`), caught up.
fn signal_service(
    flavor: Flavor,
    n: u64,
    label: &str,
    chunk_rows: u64,
) -> Option<(TestServer, Service)> {
    let srv = filled_server(flavor, n)?;
    srv.exec(
        "CREATE DATABASE rowstream; CREATE TABLE rowstream.rowstream_signal \
         (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT); \
         GRANT INSERT ON rowstream.* TO 'repl'@'%'",
    );
    let mut svc = snapshot_service(
        &format!("{label}-{}", flavor.name()),
        &srv.repl_url(),
        &format!("mode = \"never\"\nchunk_rows = {chunk_rows}\nsignal_schema = \"rowstream\""),
    );
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    Some((srv, svc))
}

/// On-demand snapshot while streaming: mode "never", a writer running, then a signal row
/// asks for s.t; the backup (stream + chunks interleaved at their high watermarks) must
/// reproduce the table.
fn on_demand(flavor: Flavor) {
    let n = rows_wanted();
    let Some((srv, mut svc)) = signal_service(flavor, n, "ondemand", 20000) else {
        return;
    };
    let seed = seed();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let w = s.spawn(|| writer(&srv, n, seed, &stop));
        let guard = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(500));
        srv.exec(
            "INSERT INTO rowstream.rowstream_signal VALUES ('req-1', 'execute-snapshot', '{\"tables\": [\"s.t\"]}')",
        );
        let t = Instant::now();
        svc.wait_for("the on-demand snapshot", Duration::from_secs(600), |s| {
            s.log_text().contains("on-demand snapshot: table read")
        });
        eprintln!("on-demand snapshot of {n} rows in {:?}", t.elapsed());
        drop(guard);
        eprintln!("writer committed {} transactions", w.join().unwrap());
    });
    svc.wait_caught_up(&srv, Duration::from_secs(120));
    svc.stop(Duration::from_secs(30));
    let (recs, _) = read_backup(&svc.backup);
    let reads = recs.iter().filter(|r| r["op"] == "r").count();
    let lasts = recs
        .iter()
        .filter(|r| r["source"]["snapshot"] == "last")
        .count();
    // When every row of the final chunk changed inside its window (under
    // writes, the newest keys), no row carries "last".
    assert!(lasts <= 1, "{lasts} rows marked last");
    let got = apply(&recs, "t");
    let want = source_table(&srv);
    assert_eq!(got.len(), want.len(), "row count; {reads} reads");
    assert!(got == want, "backup does not reproduce s.t");
    eprintln!(
        "on-demand ok: {reads} reads, {} records, {} rows",
        recs.len(),
        want.len()
    );
}

flavor_tests!(on_demand: on_demand_mariadb, on_demand_mysql);

/// On-demand snapshot with rowstream SIGKILLed `kills` times during it, a writer
/// running: each restart resumes the snapshot after its last durable chunk (new window,
/// new watermarks). The backup must reproduce the table, and no key may be read twice
/// (a snapshot started over would read every key before the kill again): the rows read
/// are the table's, not the table's plus what was read before each kill.
fn on_demand_killed(flavor: Flavor, n: u64, kills: u32, chunk_rows: u64) {
    let Some((srv, mut svc)) = signal_service(flavor, n, "ondemand-kill", chunk_rows) else {
        return;
    };
    let seed = seed();
    let stop = AtomicBool::new(false);
    // Rows of s.t the checkpoint says are durable (None: no on-demand snapshot in it).
    let durable = |s: &Service| {
        s.checkpoint()
            .and_then(|c| c["on_demand"]["tables"][0]["rows"].as_u64())
    };
    let t = Instant::now();
    let mut done_kills = 0;
    std::thread::scope(|s| {
        let w = s.spawn(|| writer(&srv, n, seed, &stop));
        let guard = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(300));
        srv.exec(
            "INSERT INTO rowstream.rowstream_signal VALUES ('req-kill', 'execute-snapshot', '{\"tables\": [\"s.t\"]}')",
        );
        // Kill at evenly spread points of durable progress, so each restart has
        // something to resume after.
        for k in 1..=kills {
            let at = n * u64::from(k) / u64::from(kills + 1);
            svc.wait_for(
                "on-demand snapshot progress",
                Duration::from_secs(300),
                |s| {
                    durable(s).is_some_and(|r| r >= at)
                        || s.log_text().contains("on-demand snapshot complete")
                },
            );
            if durable(&svc).is_none() {
                break; // complete: nothing left to interrupt
            }
            svc.kill9();
            done_kills += 1;
            let before = durable(&svc);
            eprintln!(
                "kill {done_kills} at {:?}: {before:?} rows durable",
                t.elapsed()
            );
            svc.spawn();
            // The next kill only once this run resumed and made progress durable
            // (with its resume count): in a release build several thresholds
            // can pass at once, and a kill before the resume proves nothing.
            let want = done_kills as usize;
            svc.wait_for("the restart to resume", Duration::from_secs(120), |s| {
                // A "complete" line is not enough: a run can finish reading and
                // be killed before its completion is durable.
                let now = durable(s);
                s.log_text()
                    .matches("on-demand snapshot: resuming after the last durable chunk")
                    .count()
                    >= want
                    && (now.is_none() || now > before)
            });
        }
        svc.wait_for("the on-demand snapshot", Duration::from_secs(600), |s| {
            s.log_text().contains("on-demand snapshot complete")
        });
        eprintln!(
            "on-demand snapshot of {n} rows with {done_kills} kills in {:?}",
            t.elapsed()
        );
        drop(guard);
        eprintln!("writer committed {} transactions", w.join().unwrap());
    });
    svc.wait_caught_up(&srv, Duration::from_secs(120));
    svc.stop(Duration::from_secs(30));
    // A release build reads 600,000 rows in about a second, and each restart
    // must resume and make progress before the next kill: two kills is what
    // the small table reliably gives, the full size at least three.
    let needed = if n >= 1_000_000 { kills.min(3) } else { 2 };
    assert!(
        done_kills >= needed,
        "only {done_kills} kills landed during the snapshot"
    );
    let log = svc.log_text();
    for l in log.lines().filter(|l| {
        l.contains("on-demand snapshot: resuming")
            || l.contains("on-demand snapshot complete")
            || l.contains("kind=\"on_demand\"")
            || l.contains("kind=on_demand")
    }) {
        eprintln!("{l}");
    }
    assert_eq!(
        log.matches("on-demand snapshot: resuming after the last durable chunk")
            .count(),
        done_kills as usize,
        "{}",
        svc.log_tail()
    );
    // The last run's progress says how often the snapshot was resumed.
    let last = log
        .lines()
        .rfind(|l| l.contains("on-demand snapshot complete"))
        .unwrap();
    assert!(last.contains(&format!("resumes={done_kills}")), "{last}");
    assert!(
        svc.checkpoint().unwrap().get("on_demand").is_none(),
        "a complete on-demand snapshot leaves the checkpoint"
    );

    let (recs, _) = read_backup(&svc.backup);
    let reads: Vec<&Value> = recs.iter().filter(|r| r["op"] == "r").collect();
    let mut seen = HashMap::new();
    for r in &reads {
        let id = r["after"]["id"].as_i64().unwrap();
        assert!(
            seen.insert(id, ()).is_none(),
            "key {id} read twice: restarted, not resumed"
        );
    }
    let lasts = recs
        .iter()
        .filter(|r| r["source"]["snapshot"] == "last")
        .count();
    // When every row of the final chunk changed inside its window (under
    // writes, the newest keys), no row carries "last".
    assert!(lasts <= 1, "{lasts} rows marked last");
    let got = apply(&recs, "t");
    let want = source_table(&srv);
    assert_eq!(got.len(), want.len(), "row count; {} reads", reads.len());
    assert!(got == want, "backup does not reproduce s.t");
    // Keys ever present: the table's, the rows inserted or moved in since (their
    // creates or key-changing updates are in the backup).
    let new_keys = recs
        .iter()
        .filter(|r| r["op"] == "c" || (r["op"] == "u" && r["before"]["id"] != r["after"]["id"]))
        .count() as u64;
    let bound = n + new_keys + u64::from(done_kills) * chunk_rows;
    assert!(
        reads.len() as u64 <= bound,
        "{} rows read > {bound}: the snapshot was restarted, not resumed",
        reads.len()
    );
    eprintln!(
        "on-demand with {done_kills} kills ok: {} rows read, table {} rows (started with {n}), {} records, {:?}",
        reads.len(),
        want.len(),
        recs.len(),
        t.elapsed()
    );
}

/// 600,000 rows: since issue 16's decoding work a release build reads 200,000 in
/// about 0.4 s, less than the checkpoint needs to show the first chunks durable, so
/// a restart finished the rest and only one kill landed.
fn on_demand_killed_small(flavor: Flavor) {
    on_demand_killed(flavor, 600_000, 4, 2_000);
}

flavor_tests!(on_demand_killed_small: on_demand_killed_mariadb, on_demand_killed_mysql);

/// The issue's size: 1,000,000 rows, 5 kills.
#[test]
#[ignore = "long (1,000,000 rows): run with --ignored"]
fn on_demand_killed_full_mariadb() {
    on_demand_killed(Flavor::MariaDb, 1_000_000, 5, 20_000);
}

#[test]
#[ignore = "long (1,000,000 rows): run with --ignored"]
fn on_demand_killed_full_mysql() {
    on_demand_killed(Flavor::MySql, 1_000_000, 5, 20_000);
}

/// `when_needed`: once the checkpoint's position is purged from the server, a restart takes
/// a new snapshot instead of refusing to start (`initial` refuses), and the backup converges
/// (the gap here has updates and inserts only: a delete inside a purged gap cannot reach
/// the backup, as with any snapshot-based recovery).
#[test]
fn when_needed_resnapshots_after_purge() {
    let Some(srv) = filled_server(Flavor::MariaDb, 5000) else {
        return;
    };
    let mut svc = snapshot_service(
        "when-needed",
        &srv.repl_url(),
        "mode = \"when_needed\"\nchunk_rows = 1000",
    );
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(30));
    srv.exec(
        "UPDATE s.t SET k = k + 100 WHERE id <= 10; INSERT INTO s.t VALUES (9000, 1, 'gap', 2); \
         FLUSH BINARY LOGS",
    );
    let file = srv.query("SHOW MASTER STATUS")[0][0].clone().unwrap();
    // MariaDB keeps a file until its binlog checkpoint moved on (a purge
    // before that silently keeps it): retry until only the current one is left.
    let t = Instant::now();
    loop {
        srv.exec(&format!("PURGE BINARY LOGS TO '{file}'"));
        if srv.query("SHOW BINARY LOGS").len() == 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "cannot purge the binlog"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    srv.exec("UPDATE s.t SET v = 'after' WHERE id = 3");
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(30));
    let log = svc.log_text();
    assert!(log.contains("taking a new snapshot"), "{log}");
    let (recs, _) = read_backup(&svc.backup);
    let reads = recs.iter().filter(|r| r["op"] == "r").count();
    assert_eq!(reads, 5000 + 5001, "two snapshots");
    assert!(
        apply(&recs, "t") == source_table(&srv),
        "backup does not reproduce s.t"
    );
}

/// Without RELOAD (no FLUSH TABLES WITH READ LOCK) the cut is lock-free on MySQL and still
/// converges under writes; MariaDB needs no lock when its views agree.
fn without_reload(flavor: Flavor) {
    let n = rows_wanted().min(200_000);
    let Some(srv) = filled_server(flavor, n) else {
        return;
    };
    srv.exec(
        "CREATE USER 'norel'@'%' IDENTIFIED BY 'norel'; \
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'norel'@'%'",
    );
    let url = format!("mysql://norel:norel@127.0.0.1:{}", srv.port);
    let before_start = srv.gtid_executed();
    let seed = seed();
    let stop = AtomicBool::new(false);
    let mut svc = snapshot_service(
        &format!("norel-{}", flavor.name()),
        &url,
        "chunk_rows = 5000",
    );
    std::thread::scope(|s| {
        let w = s.spawn(|| writer(&srv, n, seed, &stop));
        let guard = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(300));
        svc.spawn();
        svc.wait_for("snapshot completion", Duration::from_secs(300), |s| {
            s.snapshot_complete()
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(guard);
        w.join().unwrap();
    });
    svc.wait_caught_up(&srv, Duration::from_secs(120));
    svc.stop(Duration::from_secs(30));
    let log = svc.log_text();
    let method = match flavor {
        Flavor::MySql => "method=\"lock-free\"",
        Flavor::MariaDb => "method=\"mariadb-snapshot-gtid\"",
    };
    if flavor == Flavor::MySql || !log.contains("method=\"lock-free\"") {
        assert!(log.contains(method), "{log}");
    }
    check_backup(&svc, &srv, false, &before_start);
}

flavor_tests!(without_reload: without_reload_mariadb, without_reload_mysql);

/// Tables across two databases for the schema-record tests: `s.t` (`n` rows, [`fill`]),
/// `s.e` (empty), `s.nopk` (no primary key), and `s2.u` (a copy of `s.t`, in a latin1
/// database); returns their (db, table) names in snapshot order.
fn schema_server(flavor: Flavor, n: u64) -> Option<(TestServer, Vec<(String, String)>)> {
    let srv = filled_server(flavor, n)?;
    srv.exec(
        "CREATE TABLE s.e (id INT PRIMARY KEY, note TEXT COMMENT 'empty') ENGINE=InnoDB; \
         CREATE TABLE s.nopk (a INT, b VARCHAR(10) DEFAULT 'x'); \
         INSERT INTO s.nopk VALUES (1, 'a'), (2, NULL), (3, 'c'); \
         CREATE DATABASE s2 DEFAULT CHARACTER SET latin1; \
         CREATE TABLE s2.u (id BIGINT PRIMARY KEY, k INT NOT NULL, v VARCHAR(100), \
         KEY kk (k)) DEFAULT CHARSET=utf8mb4; \
         INSERT INTO s2.u SELECT id, k, v FROM s.t",
    );
    let names = [("s", "e"), ("s", "nopk"), ("s", "t"), ("s2", "u")];
    Some((
        srv,
        names
            .iter()
            .map(|(d, t)| (d.to_string(), t.to_string()))
            .collect(),
    ))
}

/// `rowstream backup cat DIR`, parsed.
fn backup_cat(dir: &Path) -> Vec<Value> {
    let out = common::rowstream()
        .args(["backup", "cat"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup cat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The backup holds, for each table, exactly one snapshot CREATE TABLE record equal to
/// the server's `SHOW CREATE TABLE`, before the table's first row, and each database's
/// `SHOW CREATE DATABASE` exactly once, before its first table's CREATE TABLE (no
/// CREATE DATABASE at all unless `with_dbs`: on-demand snapshots).
fn check_schema_records(
    recs: &[Value],
    srv: &TestServer,
    tables: &[(String, String)],
    with_dbs: bool,
) {
    let is_ddl = |r: &Value| r.get("ddl").is_some() && r["source"]["snapshot"] == "true";
    let mut dbs: Vec<&str> = tables.iter().map(|(d, _)| d.as_str()).collect();
    dbs.dedup();
    for db in dbs {
        let want = srv.query(&format!("SHOW CREATE DATABASE `{db}`"))[0][1]
            .clone()
            .unwrap();
        let at: Vec<usize> = (0..recs.len())
            .filter(|&i| {
                is_ddl(&recs[i])
                    && recs[i]["databaseName"] == db
                    && recs[i]["source"]["table"] == ""
            })
            .collect();
        if !with_dbs {
            assert!(at.is_empty(), "CREATE DATABASE records of {db}: {at:?}");
            continue;
        }
        assert_eq!(at.len(), 1, "CREATE DATABASE records of {db}: {at:?}");
        assert_eq!(recs[at[0]]["ddl"], want.as_str(), "CREATE DATABASE {db}");
        let first_table = recs
            .iter()
            .position(|r| is_ddl(r) && r["databaseName"] == db && r["source"]["table"] != "")
            .expect("a CREATE TABLE");
        assert!(at[0] < first_table, "CREATE DATABASE {db} after its tables");
    }
    for (db, t) in tables {
        let want = srv.query(&format!("SHOW CREATE TABLE `{db}`.`{t}`"))[0][1]
            .clone()
            .unwrap();
        let of_table =
            |r: &Value| r["source"]["db"] == db.as_str() && r["source"]["table"] == t.as_str();
        let at: Vec<usize> = (0..recs.len())
            .filter(|&i| is_ddl(&recs[i]) && of_table(&recs[i]))
            .collect();
        assert_eq!(at.len(), 1, "CREATE TABLE records of {db}.{t}: {at:?}");
        assert_eq!(recs[at[0]]["ddl"], want.as_str(), "CREATE TABLE {db}.{t}");
        assert_eq!(recs[at[0]]["databaseName"], db.as_str());
        if let Some(first_row) = recs
            .iter()
            .position(|r| r.get("op").is_some() && of_table(r))
        {
            assert!(
                at[0] < first_row,
                "CREATE TABLE {db}.{t} after its first row"
            );
        }
    }
}

/// An initial snapshot puts each table's schema into the backup before its rows, once.
fn schema_records(flavor: Flavor) {
    let Some((srv, tables)) = schema_server(flavor, 1000) else {
        return;
    };
    let mut svc = snapshot_service(
        &format!("schema-{}", flavor.name()),
        &srv.repl_url(),
        "mode = \"initial_only\"\nthreads = 2\nchunk_rows = 100",
    );
    svc.spawn();
    let st = svc.wait_exit(Duration::from_secs(60));
    assert!(st.success(), "{st}\n{}", svc.log_tail());
    let recs = backup_cat(&svc.backup);
    check_schema_records(&recs, &srv, &tables, true);
    // The rows are all there and the very last one is marked, the empty table's schema
    // records notwithstanding.
    let reads = recs.iter().filter(|r| r["op"] == "r").count();
    assert_eq!(reads, 1000 + 3 + 1000);
    let lasts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["source"]["snapshot"] == "last")
        .collect();
    assert_eq!(lasts.len(), 1, "{lasts:?}");
    assert_eq!(lasts[0]["op"], "r");
}

flavor_tests!(schema_records: schema_records_mariadb, schema_records_mysql);

/// SIGKILLed at random moments during the snapshot and resumed: each schema record is
/// still in the backup exactly once, before its table's rows.
fn schema_records_killed(flavor: Flavor) {
    let n = rows_wanted().min(200_000);
    let Some((srv, tables)) = schema_server(flavor, n) else {
        return;
    };
    let mut svc = snapshot_service(
        &format!("schema-kill-{}", flavor.name()),
        &srv.repl_url(),
        &format!("threads = 2\nchunk_rows = {}", (n / 40).max(10)),
    );
    kill_during_snapshot(&mut svc, seed() ^ 0x5c4e, 100..1000, 10);
    svc.wait_caught_up(&srv, Duration::from_secs(120));
    svc.stop(Duration::from_secs(30));
    let recs = backup_cat(&svc.backup);
    check_schema_records(&recs, &srv, &tables, true);
}

flavor_tests!(schema_records_killed: schema_records_killed_mariadb, schema_records_killed_mysql);

/// An on-demand snapshot puts the table's CREATE TABLE before its first row, once;
/// its last row is marked "last" also when the rows are an exact multiple of
/// chunk_rows (the chunk after the last full one would be empty).
#[test]
fn on_demand_schema() {
    let Some(srv) = filled_server(Flavor::MariaDb, 900) else {
        return;
    };
    srv.exec(
        "CREATE DATABASE rowstream; CREATE TABLE rowstream.rowstream_signal \
         (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT); \
         GRANT INSERT ON rowstream.* TO 'repl'@'%'",
    );
    let mut svc = snapshot_service(
        "ondemand-schema",
        &srv.repl_url(),
        "mode = \"never\"\nchunk_rows = 300\nsignal_schema = \"rowstream\"",
    );
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    srv.exec(
        "INSERT INTO rowstream.rowstream_signal VALUES ('req-1', 'execute-snapshot', '{\"tables\": [\"s.t\"]}')",
    );
    svc.wait_for("the on-demand snapshot", Duration::from_secs(120), |s| {
        s.log_text().contains("on-demand snapshot: table read")
    });
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(30));
    let recs = backup_cat(&svc.backup);
    check_schema_records(&recs, &srv, &[("s".into(), "t".into())], false);
    let reads: Vec<&Value> = recs.iter().filter(|r| r["op"] == "r").collect();
    assert_eq!(reads.len(), 900);
    let lasts: Vec<&&Value> = reads
        .iter()
        .filter(|r| r["source"]["snapshot"] == "last")
        .collect();
    assert_eq!(lasts.len(), 1, "one row marked last");
    let max_id = reads
        .iter()
        .map(|r| r["after"]["id"].as_i64().unwrap())
        .max();
    assert_eq!(
        lasts[0]["after"]["id"].as_i64(),
        max_id,
        "the last row read"
    );
}
