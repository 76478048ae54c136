//! The `mysql` sink under `rowstream run` against real servers, both
//! flavours:
//! - a copy follows its source through a snapshot and a write load while
//!   rowstream is SIGKILLed 20 times (the first ones during the initial
//!   snapshot, which resumes in views newer than its cut, so the stream
//!   replays changes the target already holds) and the target server
//!   restarted once: the copy equals the source, the conflict log is empty,
//!   and a file backup written by the same runs restores (`rowstream
//!   restore`, which applies the same marks) into a third server equal to
//!   the source;
//! - two servers synced both ways by two rowstream instances
//!   (`skip_rowstream_applied`): non-overlapping writes converge with every
//!   transaction applied exactly once on the other side (no loop), and the
//!   seed's 520 product (one side subtracts 50, the other adds 20% at the
//!   same moment) gives one logged conflict on each side with the before
//!   images.
//!
//! Skipped without server binaries unless `ROWSTREAM_TEST_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    gtid_seqs, seed, wait_until, Flavor, Service, ServiceConfig, Sink, TestServer, Workload, MIXED,
    MIXED_SCHEMA,
};
use rand::Rng;

type Rows = Vec<Vec<Option<String>>>;

fn tables(srv: &TestServer) -> Vec<Rows> {
    [
        "SELECT * FROM s.t ORDER BY id",
        "SELECT * FROM s.c ORDER BY b, a",
    ]
    .iter()
    .map(|q| srv.query(q))
    .collect()
}

/// `[[sinks]] type = "mysql"` into `target`, conflicts logged to `log`.
fn mysql_sink(target: &TestServer, log: &Path, extra: &str) -> Sink {
    Sink::Other(format!(
        "type = \"mysql\"\nname = \"copy\"\nurl = {:?}\nthreads = 4\nconflict_log = {:?}\n{extra}\n",
        target.url(),
        log.display().to_string()
    ))
}

fn conflicts(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `rows` workload statements before rowstream starts, and 100,000 rows
/// with negative ids that the snapshot reads first (so it lasts long
/// enough; 40,000 were read in 0.2 s once decoding got faster): the first
/// kill lands once a chunk is durable and before the last one, so the
/// snapshot resumes in new views, which hold changes the workload made
/// meanwhile, and the stream replays those changes (marked `overlap`) onto
/// rows the target already holds.
fn follows_through_kills(flavor: Flavor, rows: usize) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    let target = TestServer::start(flavor, &[]).expect("a target server");
    src.exec(MIXED_SCHEMA);
    let mut w = Workload::new(seed(), MIXED);
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed());
    src.exec(&w.script(rows));
    let digits = "(SELECT 0 i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                  UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
                  UNION ALL SELECT 8 UNION ALL SELECT 9)";
    src.exec(&format!(
        "INSERT INTO s.t (id, v, n) SELECT -1 - (a.i * 10000 + b.i * 1000 + c.i * 100 + d.i * 10 + e.i), \
         'bulk', a.i FROM {digits} a, {digits} b, {digits} c, {digits} d, {digits} e"
    ));
    let log_dir = common::TmpDir::new("mysql-sink-conflicts");
    let log = log_dir.join("conflicts.jsonl");
    let mut cfg = ServiceConfig::for_server(&src, mysql_sink(&target, &log, ""));
    cfg.start = None;
    let mut svc = Service::new(&format!("mysql-sink-{}", flavor.name()), cfg);
    svc.cfg.extra = format!(
        "[[sinks]]\ntype = \"file\"\nname = \"backup\"\ndir = {:?}\n\n[snapshot]\nchunk_rows = 1000\n",
        svc.backup.display().to_string()
    );
    svc.write_config();
    svc.spawn();
    src.exec(&w.script(40));
    let t = Instant::now();
    let chunk_durable = |svc: &Service| {
        svc.checkpoint()
            .is_some_and(|c| c.get("snapshot").is_none_or(|s| s["chunks_done"] != 0))
    };
    while !chunk_durable(&svc) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no snapshot chunk became durable"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !svc.snapshot_complete(),
        "the snapshot completed before the first kill: raise the row count"
    );
    for kill in 0..20 {
        if kill > 0 {
            src.exec(&w.script(40));
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        }
        svc.kill9();
        if kill == 10 {
            target.restart();
        }
        svc.spawn();
    }
    src.exec(&w.script(40));
    svc.wait_caught_up(&src, Duration::from_secs(180));
    assert_eq!(tables(&target), tables(&src), "{}", svc.log_tail());
    svc.stop(Duration::from_secs(10));
    assert_eq!(conflicts(&log), Vec::<serde_json::Value>::new());
    let resumes = svc
        .log_text()
        .matches("snapshot: resuming after the last durable chunk")
        .count();
    assert!(
        resumes >= 1,
        "the snapshot never resumed: {}",
        svc.log_tail()
    );
    let restored = TestServer::start(flavor, &[]).expect("a restore target");
    let out = common::output_with_timeout(
        common::rowstream()
            .args(["restore", "--backup"])
            .arg(&svc.backup)
            .args(["--url", &restored.url()]),
        None,
        Duration::from_secs(300),
    );
    out.result("restore").unwrap();
    assert_eq!(tables(&restored), tables(&src), "restored from the backup");
    eprintln!(
        "{}: the copy and the restored backup equal the source after 20 kills ({resumes} during the snapshot) and a target restart",
        flavor.name()
    );
}

flavor_tests!(follows_through_kills(6000): follows_through_kills_mariadb, follows_through_kills_mysql);

/// How many transactions `srv` has executed.
fn tx_count(srv: &TestServer) -> usize {
    gtid_seqs(srv.flavor, &srv.gtid_executed()).len()
}

/// The seed's two-way example: A -> B and B -> A.
fn both_ways(flavor: Flavor) {
    // Distinct MariaDB GTID domains: each server numbers its own writes.
    let Some(a) = TestServer::start(flavor, &domain(flavor, 1)) else {
        return;
    };
    let b = TestServer::start(flavor, &domain(flavor, 2)).expect("server B");
    let ddl = "SET sql_log_bin = 0; CREATE DATABASE shop; \
               CREATE TABLE shop.products (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, price DECIMAL(10,2) NOT NULL)";
    a.exec(ddl);
    b.exec(ddl);
    let dir = common::TmpDir::new("both-ways");
    let (log_ab, log_ba) = (dir.join("ab.jsonl"), dir.join("ba.jsonl"));
    let service = |from: &TestServer, to: &TestServer, log: &Path, label: &str| {
        let mut cfg = ServiceConfig::for_server(from, mysql_sink(to, log, ""));
        cfg.start = Some("latest".into());
        cfg.source_extra = "skip_rowstream_applied = true\n".into();
        cfg.extra = "[snapshot]\nmode = \"never\"\n".into();
        let mut s = Service::new(&format!("{label}-{}", flavor.name()), cfg);
        s.spawn();
        // "latest" is read when it starts: writes before that would never be
        // streamed (a loaded machine once made this test time out converging).
        s.wait_for("its start position", Duration::from_secs(60), |s| {
            s.checkpoint().is_some()
        });
        s
    };
    let mut ab = service(&a, &b, &log_ab, "a-to-b");
    let mut ba = service(&b, &a, &log_ba, "b-to-a");
    let (own_a, own_b) = (tx_count(&a), tx_count(&b));
    // Non-overlapping writes on both sides at once.
    for i in 0..50 {
        a.exec(&format!(
            "INSERT INTO shop.products VALUES ({i}, 'a{i}', {i}.50)"
        ));
        b.exec(&format!(
            "INSERT INTO shop.products VALUES ({}, 'b{i}', {i}.25)",
            1000 + i
        ));
        if i % 5 == 4 {
            a.exec(&format!(
                "UPDATE shop.products SET price = price + 1 WHERE id = {}",
                i - 2
            ));
            b.exec(&format!(
                "UPDATE shop.products SET price = price + 1 WHERE id = {}",
                1000 + i - 2
            ));
        }
    }
    a.exec("INSERT INTO shop.products VALUES (7777, 'product', 520)");
    let q = "SELECT * FROM shop.products ORDER BY id";
    wait_until("both servers to converge", Duration::from_secs(60), || {
        a.query(q) == b.query(q)
    });
    // Each side's writes were applied exactly once on the other, then nothing more.
    let (wrote_a, wrote_b) = (tx_count(&a) - own_a, tx_count(&b) - own_b);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        tx_count(&a) - own_a,
        wrote_a,
        "A kept receiving transactions: a loop"
    );
    assert_eq!(
        tx_count(&b) - own_b,
        wrote_b,
        "B kept receiving transactions: a loop"
    );
    // Each sink applied exactly the other side's own transactions: A wrote 61, B 60.
    let applied = |srv: &TestServer| {
        srv.query_value("SELECT MAX(seq) FROM rowstream.progress WHERE name = 'copy'")
    };
    assert_eq!(applied(&b).as_deref(), Some("61"), "transactions A -> B");
    assert_eq!(applied(&a).as_deref(), Some("60"), "transactions B -> A");
    assert_eq!(
        a.query("SELECT COUNT(*) FROM shop.products")[0][0].as_deref(),
        Some("101")
    );

    // The product that costs 520: sales subtracts 50 on A, management adds 20% on B,
    // while neither sync runs.
    ab.stop(Duration::from_secs(10));
    ba.stop(Duration::from_secs(10));
    a.exec("UPDATE shop.products SET price = price - 50 WHERE id = 7777");
    b.exec("UPDATE shop.products SET price = price * 1.2 WHERE id = 7777");
    ab.spawn();
    ba.spawn();
    wait_until(
        "a conflict logged on each side",
        Duration::from_secs(60),
        || !conflicts(&log_ab).is_empty() && !conflicts(&log_ba).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (c_ab, c_ba) = (conflicts(&log_ab), conflicts(&log_ba));
    assert_eq!((c_ab.len(), c_ba.len()), (1, 1), "{c_ab:?} {c_ba:?}");
    // A -> B: A's update expected 520 on B and found 624.
    assert_eq!(c_ab[0]["expected"]["price"], "520.00", "{}", c_ab[0]);
    assert_eq!(c_ab[0]["found"]["price"], "624.00", "{}", c_ab[0]);
    assert_eq!(c_ba[0]["expected"]["price"], "520.00", "{}", c_ba[0]);
    assert_eq!(c_ba[0]["found"]["price"], "470.00", "{}", c_ba[0]);
    eprintln!(
        "{}: conflicts logged: {} / {}",
        flavor.name(),
        c_ab[0],
        c_ba[0]
    );
    ab.stop(Duration::from_secs(10));
    ba.stop(Duration::from_secs(10));
}

fn domain(flavor: Flavor, d: u32) -> Vec<&'static str> {
    match (flavor, d) {
        (Flavor::MariaDb, 1) => vec!["--gtid-domain-id=1"],
        (Flavor::MariaDb, _) => vec!["--gtid-domain-id=2"],
        (Flavor::MySql, _) => vec![],
    }
}

flavor_tests!(both_ways: both_ways_mariadb, both_ways_mysql);
