//! rowstream as a semi-sync replica (`[source] semi_sync = true`), against real servers
//! with semi-sync on (MySQL: the `rpl_semi_sync_source` plugin; MariaDB: built in),
//! `AFTER_SYNC`, rowstream the only acknowledging replica.
//!
//! Zero loss: a writer commits single-row transactions and records each commit that
//! returned; the source is SIGKILLed at random moments (10 times) and rowstream right
//! after it; every recorded commit must then be in the file backup (`backup cat`) and
//! covered by `checkpoint.json`, before anything restarts. Fallback: while rowstream is
//! stopped a commit waits for the timeout, later ones go through asynchronously; when
//! rowstream returns the server is semi-sync again and its commits are acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    gtid_key, gtid_seqs, output_with_timeout, rowstream, seed, Flavor, Service, ServiceConfig,
    Sink, TestServer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Kills of the source per flavour.
const KILLS: usize = 10;

/// Server options: semi-sync on at boot, AFTER_SYNC, a timeout long enough not to fall
/// back while rowstream reconnects after a kill.
fn semi_sync_args(flavor: Flavor) -> Vec<&'static str> {
    match flavor {
        Flavor::MySql => vec![
            "--plugin-load-add=semisync_source.so",
            "--rpl-semi-sync-source-enabled=ON",
            "--rpl-semi-sync-source-wait-point=AFTER_SYNC",
            "--rpl-semi-sync-source-timeout=60000",
            "--max-allowed-packet=256M",
        ],
        Flavor::MariaDb => vec![
            "--rpl-semi-sync-master-enabled=ON",
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
            "--rpl-semi-sync-master-timeout=60000",
            "--max-allowed-packet=256M",
        ],
    }
}

/// The name of a semi-sync status or system variable (`source` / `master` spelling).
fn var(flavor: Flavor, suffix: &str) -> String {
    match flavor {
        Flavor::MySql => format!("rpl_semi_sync_source_{suffix}"),
        Flavor::MariaDb => format!("rpl_semi_sync_master_{suffix}"),
    }
}

fn status(server: &TestServer, name: &str) -> String {
    server
        .query(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .unwrap_or_default()
}

/// `INSERT INTO s.z` through the CLI; Ok once the commit returned.
fn insert(server: &TestServer, id: i64) -> Result<(), String> {
    let mut cmd = server.client_command();
    let sql = format!("INSERT INTO s.z (id) VALUES ({id})");
    let out = output_with_timeout(&mut cmd, Some(sql.into_bytes()), Duration::from_secs(120));
    out.result("insert")
}

/// A writer thread: inserts ids from `next` on, records each that returned.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(
        server: Arc<TestServer>,
        next: Arc<AtomicI64>,
        returned: Arc<Mutex<BTreeSet<i64>>>,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let id = next.fetch_add(1, Ordering::Relaxed);
                match insert(&server, id) {
                    Ok(()) => {
                        returned.lock().unwrap().insert(id);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
    }
}

/// `rowstream backup cat DIR`, parsed.
fn backup_cat(dir: &Path) -> Vec<Value> {
    let mut cmd = rowstream();
    cmd.args(["backup", "cat"]).arg(dir);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
    assert!(out.success(), "backup cat: {}", out.stderr_text());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// id -> GTID of the rows of `s.z` in the backup.
fn backed_up(dir: &Path) -> BTreeMap<i64, String> {
    backup_cat(dir)
        .iter()
        .filter(|r| r["source"]["table"] == "z")
        .filter_map(|r| {
            let id = r["after"]["id"].as_i64()?;
            Some((id, r["source"]["gtid"].as_str()?.to_string()))
        })
        .collect()
}

/// Every returned commit is in the backup and covered by the checkpoint on disk.
fn check_zero_loss(svc: &Service, flavor: Flavor, returned: &BTreeSet<i64>, context: &str) {
    let have = backed_up(&svc.backup);
    let missing: Vec<_> = returned
        .iter()
        .filter(|id| !have.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{context}: {} returned commit(s) missing from the backup, e.g. {:?}\n--- log ---\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        svc.log_tail()
    );
    let cp = svc.checkpoint_gtid().expect("a checkpoint");
    let covered = gtid_seqs(flavor, &cp);
    let uncovered: Vec<_> = returned
        .iter()
        .filter(|id| !covered.contains(&gtid_key(flavor, &have[id])))
        .collect();
    assert!(
        uncovered.is_empty(),
        "{context}: checkpoint {cp} does not cover {} returned commit(s), e.g. {:?}",
        uncovered.len(),
        &uncovered[..uncovered.len().min(10)]
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The metrics text of the running service.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn zero_loss(flavor: Flavor) {
    let Some(server) = TestServer::start(flavor, &semi_sync_args(flavor)) else {
        return;
    };
    let server = Arc::new(server);
    let metrics_port = free_port();
    let mut cfg = ServiceConfig::for_server(&server, Sink::file()).with_extra(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    ));
    cfg.source_extra = "semi_sync = true\n".into();
    let mut svc = Service::new(&format!("semisync-{}", flavor.name()), cfg);
    // `check` reports the server's semi-sync state and the fallback.
    let mut cmd = rowstream();
    cmd.args(["check", "--config"]).arg(&svc.config);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("ok: semi-sync enabled") && text.contains("AFTER_SYNC"),
        "{text}{}",
        out.stderr_text()
    );
    assert!(text.contains("falls back to asynchronous"), "{text}");
    svc.spawn();
    // The schema is the first thing rowstream acknowledges.
    let t = Instant::now();
    server.exec("CREATE DATABASE s; CREATE TABLE s.z (id BIGINT PRIMARY KEY)");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the first commits waited {:?}: not acknowledged",
        t.elapsed()
    );
    assert_eq!(status(&server, &var(flavor, "status")), "ON");
    let t = Instant::now();
    let mut m = scrape(metrics_port);
    while !m.contains("rowstream_semisync_acks_total ")
        || m.contains("rowstream_semisync_acks_total 0\n")
    {
        assert!(t.elapsed() < Duration::from_secs(5), "no ACK counted: {m}");
        std::thread::sleep(Duration::from_millis(100));
        m = scrape(metrics_port);
    }
    assert!(m.contains("rowstream_semisync_requested 1\n"), "{m}");
    assert!(
        m.contains("rowstream_semisync_ack_latency_seconds_count "),
        "{m}"
    );

    let mut rng = StdRng::seed_from_u64(seed());
    let next = Arc::new(AtomicI64::new(1));
    let returned = Arc::new(Mutex::new(BTreeSet::new()));
    for round in 0..KILLS {
        let w = Writer::start(server.clone(), next.clone(), returned.clone());
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        server.kill();
        if rng.gen_bool(0.5) {
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
        }
        svc.kill9();
        w.stop();
        let returned_now = returned.lock().unwrap().clone();
        check_zero_loss(&svc, flavor, &returned_now, &format!("kill {round}"));
        eprintln!(
            "kill {round}: {} commits returned so far, all in the backup and the checkpoint",
            returned_now.len()
        );
        server.restart();
        svc.spawn();
    }
    let n = returned.lock().unwrap().len();
    assert!(
        n >= KILLS * 5,
        "only {n} commits returned in {KILLS} rounds"
    );
    svc.wait_caught_up(&server, Duration::from_secs(60));
    check_zero_loss(&svc, flavor, &returned.lock().unwrap(), "end");

    // An event over the 16 MB packet limit arrives in several packets with the
    // semi-sync header once: it is acknowledged like any other.
    let no_tx = status(&server, &var(flavor, "no_tx"));
    let t = Instant::now();
    server.exec("CREATE TABLE s.big (id INT PRIMARY KEY, b LONGBLOB); INSERT INTO s.big VALUES (1, REPEAT('x', 20000000))");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the 20 MB commit waited {:?}",
        t.elapsed()
    );
    assert_eq!(
        status(&server, &var(flavor, "no_tx")),
        no_tx,
        "a commit went unacknowledged"
    );
    svc.wait_caught_up(&server, Duration::from_secs(60));

    // Fallback: rowstream away, a commit waits for the timeout, the next goes through.
    server.exec(&format!("SET GLOBAL {} = 1500", var(flavor, "timeout")));
    svc.stop(Duration::from_secs(30));
    let id = next.fetch_add(1, Ordering::Relaxed);
    let t = Instant::now();
    insert(&server, id).unwrap();
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "a commit without rowstream returned after {waited:?}, before the timeout"
    );
    let t = Instant::now();
    insert(&server, next.fetch_add(1, Ordering::Relaxed)).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "after the fallback a commit still waited {:?}",
        t.elapsed()
    );
    assert_eq!(status(&server, &var(flavor, "status")), "OFF");
    // Back: acknowledgements resume.
    svc.spawn();
    let (status_name, yes_name) = (var(flavor, "status"), var(flavor, "yes_tx"));
    let t = Instant::now();
    let mut yes_before = status(&server, &yes_name).parse::<u64>().unwrap_or(0);
    loop {
        // The server turns semi-sync back on once we caught up and acknowledge.
        insert(&server, next.fetch_add(1, Ordering::Relaxed)).unwrap();
        if status(&server, &status_name) == "ON" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "semi-sync did not come back after rowstream returned\n--- log ---\n{}",
            svc.log_tail()
        );
        yes_before = status(&server, &yes_name).parse::<u64>().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(200));
    }
    let t = Instant::now();
    insert(&server, next.fetch_add(1, Ordering::Relaxed)).unwrap();
    assert!(t.elapsed() < Duration::from_millis(1000));
    let yes_after = status(&server, &yes_name).parse::<u64>().unwrap_or(0);
    assert!(
        yes_after > yes_before,
        "no acknowledged commit after rowstream returned ({yes_before} -> {yes_after})"
    );
    svc.stop(Duration::from_secs(30));
}

flavor_tests!(zero_loss: zero_loss_mariadb, zero_loss_mysql);
