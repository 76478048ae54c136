//! `rowstream restore` against real servers, both flavours: a random workload
//! (inserts, updates, deletes, primary-key changes, a table without a primary key
//! that gets an `ALTER TABLE ... ADD COLUMN`, a mass DELETE) is captured with an
//! initial snapshot into a file backup; restoring `--until G` into an empty
//! server gives exactly the source's tables as they were at G, for several G
//! recorded during the workload; `--before` the mass DELETE gets the deleted
//! rows back; a restore killed with SIGKILL and rerun ends equal too.
//! Skipped without server binaries unless `ROWSTREAM_TEST_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::time::Duration;

use common::{
    output_with_timeout, rowstream, seed, Flavor, Service, ServiceConfig, Sink, TestServer,
    TimedOutput, Workload, MIXED, MIXED_SCHEMA,
};
use rand::Rng;

/// The shared `s.t`/`s.c` plus a latin1 table without a primary key.
fn schema() -> String {
    format!("{MIXED_SCHEMA}; CREATE TABLE s.nokey (u VARCHAR(20) NOT NULL, x INT) DEFAULT CHARSET=latin1")
}

/// Every table of `s` as text rows in a fixed order.
fn tables(srv: &TestServer) -> Vec<Vec<Vec<Option<String>>>> {
    [
        "SELECT * FROM s.t ORDER BY id",
        "SELECT * FROM s.c ORDER BY b, a",
        "SELECT * FROM s.nokey ORDER BY u, x",
    ]
    .iter()
    .map(|q| srv.query(q))
    .collect()
}

/// The GTID of the server's last transaction (one writer, one domain / uuid).
fn last_gtid(srv: &TestServer) -> String {
    let set = srv.gtid_executed();
    match srv.flavor {
        Flavor::MariaDb => set.trim().to_string(),
        Flavor::MySql => {
            let (uuid, rest) = set.trim().split_once(':').expect("uuid:1-N");
            let last = rest.rsplit(['-', ':']).next().expect("a number");
            format!("{uuid}:{last}")
        }
    }
}

fn nokey_sql(rng: &mut rand::rngs::StdRng) -> String {
    let u = rng.gen_range(0..8);
    match rng.gen_range(0..3) {
        0 => format!(
            "INSERT INTO s.nokey (u, x) VALUES ('k{u}', {})",
            rng.gen_range(0..5)
        ),
        1 => format!("UPDATE s.nokey SET x = x + 1 WHERE u = 'k{u}' LIMIT 1"),
        _ => format!("DELETE FROM s.nokey WHERE u = 'k{u}' LIMIT 1"),
    }
}

fn restore(args: &[&str]) -> TimedOutput {
    output_with_timeout(
        rowstream().arg("restore").args(args),
        None,
        Duration::from_secs(300),
    )
}

/// A point to restore to: the GTID and the source's tables right after it.
struct Point {
    gtid: String,
    tables: Vec<Vec<Vec<Option<String>>>>,
}

fn point_in_time(flavor: Flavor) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    src.exec(&schema());
    let mut w = Workload::new(seed(), MIXED);
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed());
    src.exec(&w.script(40));
    src.exec("INSERT INTO s.nokey VALUES ('k1', 1), ('k1', 1), ('k2', NULL)");
    let mut cfg = ServiceConfig::new(
        &[src.repl_url()],
        Sink::File("segment_max_bytes = 65536".into()),
    );
    cfg.start = None;
    let mut svc = Service::new(&format!("restore-{}", flavor.name()), cfg);
    svc.spawn();
    let mut points = Vec::new();
    let mut time = String::new();
    for round in 0..4 {
        src.exec(&w.script(30));
        for _ in 0..5 {
            src.exec(&nokey_sql(&mut rng));
        }
        if round == 1 {
            src.exec("ALTER TABLE s.nokey ADD COLUMN extra INT NOT NULL DEFAULT 7");
            src.exec(&w.script(10));
        }
        points.push(Point {
            gtid: last_gtid(&src),
            tables: tables(&src),
        });
        if round == 2 {
            // Commit times are whole seconds in the binlog: the next
            // transaction commits at least a second after `time`.
            time = src
                .query_value("SELECT DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%fZ')")
                .unwrap();
            std::thread::sleep(Duration::from_millis(1200));
        }
    }
    let before_delete = tables(&src);
    src.exec("DELETE FROM s.t WHERE id % 2 = 0");
    let delete = last_gtid(&src);
    src.exec(&w.script(10));
    let end = Point {
        gtid: last_gtid(&src),
        tables: tables(&src),
    };
    svc.wait_caught_up(&src, Duration::from_secs(120));
    svc.stop(Duration::from_secs(10));
    let backup = svc.backup.to_str().unwrap().to_string();

    let check = |args: &[&str], want: &Vec<Vec<Vec<Option<String>>>>, what: &str| {
        let target = TestServer::start(flavor, &[]).expect("a target server");
        let url = target.url();
        let mut all = vec!["--backup", &backup, "--url", &url];
        all.extend_from_slice(args);
        let out = restore(&all);
        out.result(&format!("restore {what}")).unwrap();
        assert_eq!(
            &tables(&target),
            want,
            "{}: {what}\n{}",
            flavor.name(),
            out.stderr_text()
        );
        eprintln!(
            "{}: {what}: equal ({})",
            flavor.name(),
            out.stderr_text().trim()
        );
    };
    for (i, p) in points.iter().enumerate() {
        check(
            &["--until", &p.gtid],
            &p.tables,
            &format!("--until point {i} {}", p.gtid),
        );
    }
    check(
        &["--before", &delete],
        &before_delete,
        "--before the mass DELETE",
    );
    check(
        &["--until-time", &time],
        &points[2].tables,
        &format!("--until-time {time}"),
    );
    check(&[], &end.tables, "the whole backup");
    check(
        &["--until", &end.gtid, "--threads", "1"],
        &end.tables,
        "serial, --until the end",
    );
}

flavor_tests!(point_in_time: point_in_time_mariadb, point_in_time_mysql);

/// A restore killed with SIGKILL at 10 random moments and rerun each time
/// ends with the target equal to the source: nothing applied twice (the
/// table without a key would show duplicates), nothing skipped.
fn killed_and_rerun(flavor: Flavor) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    src.exec(&schema());
    let mut w = Workload::new(seed(), MIXED);
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(seed());
    src.exec(&w.script(200));
    let mut cfg = ServiceConfig::new(&[src.repl_url()], Sink::File(String::new()));
    cfg.start = None;
    let mut svc = Service::new(&format!("restore-kill-{}", flavor.name()), cfg);
    svc.spawn();
    for _ in 0..10 {
        src.exec(&w.script(300));
        let nokey: Vec<String> = (0..20).map(|_| nokey_sql(&mut rng)).collect();
        src.exec(&nokey.join(";"));
    }
    svc.wait_caught_up(&src, Duration::from_secs(180));
    svc.stop(Duration::from_secs(10));
    let want = tables(&src);
    let target = TestServer::start(flavor, &[]).expect("a target server");
    let backup = svc.backup.to_str().unwrap().to_string();
    let url = target.url();
    let args = ["restore", "--backup", &backup, "--url", &url];
    let mut finished_early = 0;
    for _ in 0..10 {
        let mut child = rowstream()
            .args(args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..700)));
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = restore(&args[1..]);
    out.result("the last restore").unwrap();
    assert_eq!(tables(&target), want, "{}", out.stderr_text());
    eprintln!(
        "{}: equal after 10 kills ({finished_early} runs had finished before their kill)",
        flavor.name()
    );
}

flavor_tests!(killed_and_rerun: killed_and_rerun_mariadb, killed_and_rerun_mysql);

/// `--dry-run` verifies and counts without a target; a flipped byte in a
/// transaction makes it (and a real restore) fail naming the transaction,
/// with nothing of that transaction applied.
#[test]
fn dry_run_and_corruption() {
    let Some(src) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    src.exec(&schema());
    src.exec("INSERT INTO s.nokey (u, x) VALUES ('a', 1)");
    let mut cfg = ServiceConfig::new(&[src.repl_url()], Sink::File(String::new()));
    cfg.start = None;
    let mut svc = Service::new("restore-dry", cfg);
    svc.spawn();
    svc.wait_caught_up(&src, Duration::from_secs(60));
    src.exec(
        "INSERT INTO s.nokey (u, x) VALUES ('b', 2); INSERT INTO s.nokey (u, x) VALUES ('zzzz', 3)",
    );
    svc.wait_caught_up(&src, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));
    let backup = svc.backup.to_str().unwrap().to_string();
    let out = restore(&["--backup", &backup, "--dry-run"]);
    out.result("dry run").unwrap();
    assert!(
        out.stderr_text()
            .contains("would apply 5 transactions (3 row changes, 4 schema changes"),
        "{}",
        out.stderr_text()
    );
    // Flip a byte of the last row's value: its transaction fails its checksum.
    let seg = std::fs::read_dir(&svc.backup)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "open"))
        .expect("an open segment (N.ndjson.zst.open)");
    let text = zstd::decode_all(&std::fs::read(&seg).unwrap()[..]).unwrap();
    let text = String::from_utf8(text).unwrap().replace("zzzz", "zzzy");
    std::fs::write(&seg, zstd::encode_all(text.as_bytes(), 1).unwrap()).unwrap();
    let out = restore(&["--backup", &backup, "--dry-run"]);
    assert!(
        !out.success() && out.stderr_text().contains("checksum mismatch"),
        "{}",
        out.stderr_text()
    );
    let target = TestServer::start(Flavor::MariaDb, &[]).expect("a target server");
    let out = restore(&["--backup", &backup, "--url", &target.url()]);
    assert!(
        !out.success() && out.stderr_text().contains("checksum mismatch"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(
        target.query("SELECT u, x FROM s.nokey ORDER BY u"),
        vec![
            vec![Some("a".into()), Some("1".into())],
            vec![Some("b".into()), Some("2".into())]
        ]
    );
}
