//! `rowstream verify` between a source and the copy the `mysql` sink keeps
//! under `rowstream run`, both flavours, real servers:
//! - while a writer keeps changing the source, five runs in a row report
//!   nothing (the live recheck absorbs the copy's lag);
//! - one row changed, one deleted and one inserted directly on the target
//!   are reported as exactly those three keys (exit 1), as are one of two
//!   equal rows deleted and one row inserted in the table without a primary
//!   key, and applying the `--fix-sql` script makes the next run clean
//!   (exit 0).
//!
//! - `verify --config --sink` against an OpenSearch index kept by the
//!   elasticsearch sink: clean while writes continue, and a document
//!   deleted behind rowstream's back is reported as exactly that key.
//!
//! Besides the workload's `s.t` / `s.c`, `s.ty` holds the awkward types
//! (JSON, FLOAT, binary, TIME, TIMESTAMP, DATE, BIT) and `s.np` has no
//! primary key (one chunk, every column sorted).
//!
//! Skipped without server binaries unless `ROWSTREAM_TEST_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    output_with_timeout, rowstream, seed, server_with, Flavor, Service, ServiceConfig, Sink,
    TestSearch, TestServer, TimedOutput, Workload, MIXED, MIXED_SCHEMA,
};

const EXTRA_SCHEMA: &str = "CREATE TABLE s.ty (id INT PRIMARY KEY, j JSON NULL, f FLOAT NULL, \
      d DOUBLE NULL, b VARBINARY(20) NULL, tm TIME(6) NULL, ts TIMESTAMP(6) NULL, dt DATE NULL, \
      bt BIT(5) NULL, e ENUM('x','y') NULL) DEFAULT CHARSET=utf8mb4; \
    CREATE TABLE s.np (a INT NULL, b VARCHAR(10) NULL) DEFAULT CHARSET=utf8mb4";

const EXTRA_ROWS: &str = "INSERT INTO s.ty VALUES \
      (1, '{\"b\": [1, 2.5, \"x\"], \"a\": null}', 0.1, 1e300, X'00FF27', '-838:59:58.500001', \
       '2024-02-29 23:59:59.123456', '2024-02-29', b'10101', 'y'), \
      (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
      (3, '[]', -3.5, -0.0, '', '00:00:00', '1970-01-01 00:00:01', '1000-01-01', b'0', 'x'); \
    INSERT INTO s.np VALUES (1, 'a'), (1, 'a'), (NULL, 'b'), (2, NULL)";

fn verify(src: &TestServer, target: &TestServer, extra: &[&str]) -> TimedOutput {
    let out = output_with_timeout(
        rowstream()
            .args(["verify", "--source", &src.url(), "--target", &target.url()])
            .args(["--include", "s.*", "--chunk-rows", "40", "--threads", "3"])
            .args(["--lag-timeout", "30"])
            .args(extra),
        None,
        Duration::from_secs(120),
    );
    eprintln!(
        "verify ({}): {}{}",
        out.describe_status(),
        String::from_utf8_lossy(&out.stdout),
        out.stderr_text()
    );
    out
}

/// `(table, kind, key)` of every differing-row line.
fn reported(out: &TimedOutput) -> BTreeSet<(String, String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("table ") && !l.starts_with("verify:"))
        .map(|l| {
            let mut w = l.splitn(4, ' ');
            let table = w.next().unwrap_or_default().to_string();
            let kind = w.next().unwrap_or_default().to_string();
            let key = w.next().unwrap_or_default().to_string();
            (table, kind, key)
        })
        .collect()
}

/// Runs `f` while a writer thread runs 10 transactions of `w` on `src`
/// every 50 ms; stops the writer afterwards (also when `f` panics).
fn while_writing(src: &TestServer, w: &mut Workload, f: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let _guard = common::StopOnDrop(&stop);
        let writer = sc.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                src.exec(&w.script(10));
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        f();
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
    });
}

fn live_copy(flavor: Flavor) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    let target = TestServer::start(flavor, &[]).expect("a target server");
    src.exec(MIXED_SCHEMA);
    src.exec(EXTRA_SCHEMA);
    src.exec(EXTRA_ROWS);
    let mut w = Workload::new(seed(), MIXED);
    src.exec(&w.script(300));
    let dir = common::TmpDir::new("verify-conflicts");
    let sink = Sink::Other(format!(
        "type = \"mysql\"\nname = \"copy\"\nurl = {:?}\nthreads = 4\nconflict_log = {:?}\n",
        target.url(),
        dir.join("conflicts.jsonl").display().to_string()
    ));
    let mut cfg = ServiceConfig::for_server(&src, sink);
    cfg.start = None;
    let mut svc = Service::new(&format!("verify-{}", flavor.name()), cfg);
    svc.spawn();
    svc.wait_caught_up(&src, Duration::from_secs(120));

    while_writing(&src, &mut w, || {
        for run in 0..5 {
            // Odd runs skip the whole-table checksum (always chunks).
            let extra: &[&str] = if run % 2 == 1 {
                &["--table-checksum", "never"]
            } else {
                &[]
            };
            let out = verify(&src, &target, extra);
            assert_eq!(out.status.and_then(|s| s.code()), Some(0), "run {run}");
            assert_eq!(reported(&out), BTreeSet::new(), "run {run}");
        }
    });
    svc.wait_caught_up(&src, Duration::from_secs(120));

    let ids = src.query("SELECT id FROM s.t ORDER BY id LIMIT 2");
    let (a, b) = (ids[0][0].clone().unwrap(), ids[1][0].clone().unwrap());
    target.exec(&format!(
        "UPDATE s.t SET v = 'changed behind rowstream' WHERE id = {a}; \
         DELETE FROM s.t WHERE id = {b}; \
         INSERT INTO s.t VALUES (99999999, 'only on the target', NULL, 1.25, NULL); \
         DELETE FROM s.np WHERE a = 1 LIMIT 1; INSERT INTO s.np VALUES (3, 'c')"
    ));
    let fix = dir.join("fix.sql");
    let out = verify(&src, &target, &["--fix-sql", fix.to_str().unwrap()]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1));
    let want: BTreeSet<_> = [
        ("changed", a.as_str()),
        ("missing", b.as_str()),
        ("extra", "99999999"),
    ]
    .iter()
    .map(|(k, id)| {
        (
            "s.t".to_string(),
            k.to_string(),
            format!("key={{\"id\":{id}}}"),
        )
    })
    // Without a primary key a row is its own key: one of two equal rows is missing.
    .chain([
        (
            "s.np".into(),
            "missing".into(),
            "key={\"a\":1,\"b\":\"a\"}".into(),
        ),
        (
            "s.np".into(),
            "extra".into(),
            "key={\"a\":3,\"b\":\"c\"}".into(),
        ),
    ])
    .collect();
    assert_eq!(reported(&out), want);
    apply(&target, &fix);
    let out = verify(&src, &target, &[]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(0));
    assert_eq!(reported(&out), BTreeSet::new());
    svc.stop(Duration::from_secs(10));
}

fn apply(target: &TestServer, fix: &Path) {
    let sql = std::fs::read_to_string(fix).unwrap();
    eprintln!("--- fix ---\n{sql}");
    target.exec(&sql);
}

flavor_tests!(live_copy: live_copy_mariadb, live_copy_mysql);

fn verify_sink(svc: &Service) -> TimedOutput {
    let out = output_with_timeout(
        rowstream()
            .args([
                "verify",
                "--config",
                svc.config.to_str().unwrap(),
                "--sink",
                "es",
            ])
            .args(["--include", "s.*", "--lag-timeout", "60"]),
        None,
        Duration::from_secs(120),
    );
    eprintln!(
        "verify --sink ({}): {}{}",
        out.describe_status(),
        String::from_utf8_lossy(&out.stdout),
        out.stderr_text()
    );
    out
}

fn search_copy(flavor: Flavor) {
    let Some((src, search)) = server_with(flavor, MIXED_SCHEMA, TestSearch::shared) else {
        return;
    };
    let sink = Sink::elasticsearch(&search, &search.index_template());
    let mut svc = Service::new(
        &format!("verify-es-{}", flavor.name()),
        ServiceConfig::for_server(&src, sink),
    );
    let mut w = Workload::new(seed(), MIXED);
    src.exec(&w.script(200));
    svc.spawn();
    svc.wait_caught_up(&src, Duration::from_secs(120));
    while_writing(&src, &mut w, || {
        for run in 0..2 {
            let out = verify_sink(&svc);
            assert_eq!(out.status.and_then(|s| s.code()), Some(0), "run {run}");
            assert_eq!(reported(&out), BTreeSet::new(), "run {run}");
        }
    });
    svc.wait_caught_up(&src, Duration::from_secs(120));
    let id = src.query("SELECT id FROM s.t ORDER BY id LIMIT 1")[0][0]
        .clone()
        .unwrap();
    let index = search.index("s.t");
    let curl = |method: &str, path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-m", "30", "-X", method])
            .arg(format!("{}/{index}/{path}", search.url()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = curl("DELETE", &format!("_doc/%5B{id}%5D"));
    assert!(text.contains("\"deleted\""), "{text}");
    curl("POST", "_refresh");
    let out = verify_sink(&svc);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1));
    let want: BTreeSet<_> = [(
        "s.t".to_string(),
        "missing".to_string(),
        format!("key={{\"id\":{id}}}"),
    )]
    .into_iter()
    .collect();
    assert_eq!(reported(&out), want);
    svc.stop(Duration::from_secs(10));
}

flavor_tests!(search_copy: search_copy_mariadb, search_copy_mysql);
