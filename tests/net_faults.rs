//! Network faults between rowstream and its servers (issue 17, items 2 and 5): a
//! [`FaultProxy`] sits between `rowstream run` and the source (both flavours), or between
//! it and a sink's server (the MySQL apply sink's target, an HTTP receiver, an
//! Elasticsearch-API server), and breaks the connection under a write workload: cuts
//! (some after a random number of bytes, so they land inside an event or a request),
//! stalls longer than the source's read timeout (3 heartbeat periods: 6 s here), trickles
//! and refused reconnects.
//!
//! What every test holds rowstream to (item 5): it rides through every fault (the
//! process never exits, a stall ends in a logged reconnect, never a silent hang, and no
//! panic), and nothing is lost: the file backup holds every transaction of the server's
//! GTID set exactly once in commit order and folds to the table; every other sink
//! converges to the table; the checkpoint never covers what is not durable (checked after
//! every fault for the file backup and the HTTP receiver).
//!
//! Fault counts: `ROWSTREAM_NET_FAULTS_SOURCE` (default 12) and `ROWSTREAM_NET_FAULTS_SINK`
//! (default 5); the `soak_*` tests (ignored) use 200 and 50 unless those are set, the
//! sink soaks once with each flavour as the source (the default sink tests read MariaDB).
//! Kafka clients connect to the address the broker advertises, not the one they were
//! given, so the Kafka test restarts its broker with one more listener, advertised as the
//! proxy's port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    gtid_key, gtid_seqs, seed, wait_until, FaultProxy, Flavor, Service, ServiceConfig, Sink,
    TestDaemon, TestKafka, TestServer, OSMEM,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rowstream_file::encode::{parse_tx_end, LineKind};
use rowstream_file::reader::BackupReader;
use serde_json::Value;

const SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(2000) NOT NULL, n INT NOT NULL)";
/// Longer than the source's read timeout (3 x `heartbeat_secs = 2`).
const SOURCE_STALL: Duration = Duration::from_secs(8);
/// Longer than the HTTP / Elasticsearch sinks' request timeouts set below (1 s).
const SINK_STALL: Duration = Duration::from_secs(3);
const CATCH_UP: Duration = Duration::from_secs(180);

/// `s.t` as the tests compare it: id -> (v, n).
type Table = BTreeMap<i64, (String, i64)>;
/// A transaction as a [`gtid_key`].
type TxKey = (String, u64);

fn fault_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn source_faults() -> usize {
    fault_count("ROWSTREAM_NET_FAULTS_SOURCE", 12)
}

fn sink_faults() -> usize {
    fault_count("ROWSTREAM_NET_FAULTS_SINK", 5)
}

// ---------------------------------------------------------------------------------------
// Workload and faults

/// Random transactions on `s.t` (1-4 statements each, rows of up to 1.5 KB so events
/// span several TCP segments) until `stop`; returns how many were committed.
fn write_until(server: &TestServer, seed: u64, stop: &AtomicBool) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ids: Vec<i64> = Vec::new();
    let mut next = 1i64;
    let mut txs = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut sql = String::new();
        for _ in 0..5 {
            sql.push_str("BEGIN;");
            for _ in 0..rng.gen_range(1..=4) {
                let v: String = (0..rng.gen_range(1..1500))
                    .map(|_| rng.gen_range(b'a'..=b'z') as char)
                    .collect();
                match rng.gen_range(0..10) {
                    0..=4 => {
                        ids.push(next);
                        sql.push_str(&format!("INSERT INTO s.t VALUES ({next}, '{v}', 0);"));
                        next += 1;
                    }
                    5..=7 if !ids.is_empty() => {
                        let id = ids[rng.gen_range(0..ids.len())];
                        sql.push_str(&format!(
                            "UPDATE s.t SET v = '{v}', n = n + 1 WHERE id = {id};"
                        ));
                    }
                    8..=9 if !ids.is_empty() => {
                        let id = ids.swap_remove(rng.gen_range(0..ids.len()));
                        sql.push_str(&format!("DELETE FROM s.t WHERE id = {id};"));
                    }
                    _ => sql.push_str("DO 0;"),
                }
            }
            sql.push_str("COMMIT;\n");
        }
        server.exec(&sql);
        txs += 5;
        std::thread::sleep(Duration::from_millis(30));
    }
    txs
}

/// `SELECT id, v, n FROM s.t`.
fn table(server: &TestServer) -> Table {
    server
        .query("SELECT id, v, n FROM s.t")
        .into_iter()
        .map(|r| {
            let text = |i: usize| r[i].clone().expect("NOT NULL column");
            (
                text(0).parse().unwrap(),
                (text(1), text(2).parse().unwrap()),
            )
        })
        .collect()
}

/// A row image of `s.t` as the tests compare it.
fn image(v: &Value) -> (i64, (String, i64)) {
    (
        v["id"].as_i64().expect("id"),
        (
            v["v"].as_str().expect("v").to_string(),
            v["n"].as_i64().expect("n"),
        ),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    /// Every connection closed now.
    Cut,
    /// Every connection closed after a random 1..6000 more bytes: inside an event.
    CutMidway,
    /// Nothing forwarded, nothing closed, for longer than the client's timeout.
    Stall,
    /// 2-20 KB/s for 3 s.
    Trickle,
    /// Connections cut, and new ones closed at once for 3 s.
    Refuse,
}

const KINDS: [Fault; 5] = [
    Fault::Cut,
    Fault::CutMidway,
    Fault::Stall,
    Fault::Trickle,
    Fault::Refuse,
];

/// Applies `f` through `proxy` and returns once it is over (the proxy healed).
fn inject(proxy: &FaultProxy, f: Fault, stall: Duration, rng: &mut StdRng) {
    match f {
        Fault::Cut => proxy.cut(),
        Fault::CutMidway => {
            proxy.cut_after(rng.gen_range(1..6000));
            let t = Instant::now();
            while proxy.cut_pending() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if proxy.cut_pending() {
                proxy.heal(); // no traffic came: cut now instead
                proxy.cut();
            }
        }
        Fault::Stall => {
            proxy.stall(true);
            std::thread::sleep(stall);
            proxy.stall(false);
        }
        Fault::Trickle => {
            proxy.trickle(rng.gen_range(2_000..20_000));
            std::thread::sleep(Duration::from_secs(3));
            proxy.trickle(0);
        }
        Fault::Refuse => {
            proxy.refuse_for(Duration::from_secs(3));
            proxy.cut();
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    proxy.heal();
}

/// What [`faults_under_writes`] did.
struct Run {
    faults: BTreeMap<Fault, usize>,
    txs: usize,
    took: Duration,
}

/// Starts `svc`, writes to `server` in a thread, and injects `n` faults through `proxy`
/// (each kind once first, then at random, 0.2-1.2 s apart). After each fault rowstream
/// must still run and `check` must hold. Returns once the writer stopped, every fault is
/// healed and the checkpoint caught up with the server.
fn faults_under_writes(
    svc: &mut Service,
    server: &TestServer,
    proxy: &FaultProxy,
    (n, stall): (usize, Duration),
    mut check: impl FnMut(&Service),
) -> Run {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
    let t = Instant::now();
    svc.spawn();
    let stop = AtomicBool::new(false);
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    let txs = std::thread::scope(|sc| {
        let _guard = common::StopOnDrop(&stop);
        let writer = sc.spawn(|| write_until(server, seed, &stop));
        for i in 0..n {
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..1200)));
            let f = KINDS
                .get(i)
                .copied()
                .unwrap_or_else(|| KINDS[rng.gen_range(0..KINDS.len())]);
            inject(proxy, f, stall, &mut rng);
            *faults.entry(f).or_default() += 1;
            if let Some(st) = svc.exited() {
                panic!(
                    "rowstream exited ({st}) after a {f:?}\n--- log ---\n{}",
                    svc.log_tail()
                );
            }
            check(svc);
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer")
    });
    proxy.heal();
    svc.wait_caught_up(server, CATCH_UP);
    check(svc);
    svc.stop(Duration::from_secs(60));
    Run {
        faults,
        txs,
        took: t.elapsed(),
    }
}

/// No panic in the log; returns how many lines contain `needle`.
fn log_count(svc: &Service, needle: &str) -> usize {
    let log = svc.log_text();
    assert!(
        !log.contains("panicked"),
        "rowstream panicked:\n{}",
        svc.log_tail()
    );
    log.lines().filter(|l| l.contains(needle)).count()
}

// ---------------------------------------------------------------------------------------
// Between rowstream and the source

/// The file backup's complete transactions in order: (GTID, change records).
fn read_backup(dir: &Path) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for e in BackupReader::open(dir).expect("open the backup") {
        let e = e.unwrap_or_else(|e| panic!("reading the backup {}: {e}", dir.display()));
        match e.kind {
            LineKind::Change => cur.push(serde_json::from_slice(&e.line).expect("JSON record")),
            LineKind::SchemaChange => {}
            LineKind::TxEnd => {
                let id = parse_tx_end(&e.line).expect("a complete marker").id;
                out.push((id, std::mem::take(&mut cur)));
            }
        }
    }
    out
}

/// The checkpoint covers only transactions whose END marker is in the backup (read
/// after the checkpoint, so a race can only make the backup hold more).
fn assert_checkpoint_durable(svc: &Service, flavor: Flavor) {
    let Some(cp) = svc.checkpoint_gtid() else {
        return;
    };
    let have: BTreeSet<_> = read_backup(&svc.backup)
        .iter()
        .map(|(id, _)| gtid_key(flavor, id))
        .collect();
    let missing: Vec<_> = gtid_seqs(flavor, &cp)
        .into_iter()
        .filter(|k| !have.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "checkpoint {cp} covers transactions not in the backup: {:?}",
        &missing[..missing.len().min(10)]
    );
}

/// Every transaction of the server exactly once in commit order, and the backup's row
/// changes fold to the table. Returns the number of transactions.
fn assert_backup_exact(server: &TestServer, backup: &Path) -> usize {
    let txs = read_backup(backup);
    let keys: Vec<_> = txs
        .iter()
        .map(|(id, _)| gtid_key(server.flavor, id))
        .collect();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (i, (src, n)) in keys.iter().enumerate() {
        if let Some(&p) = last.get(src.as_str()) {
            assert!(
                *n > p,
                "transaction #{i} {} after sequence {p}: twice or out of order",
                txs[i].0
            );
        }
        last.insert(src, *n);
    }
    let have: BTreeSet<_> = keys.iter().cloned().collect();
    let want = gtid_seqs(server.flavor, &server.gtid_executed());
    let missing: Vec<_> = want.difference(&have).take(10).collect();
    let extra: Vec<_> = have.difference(&want).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "backup vs server: missing {missing:?}, not on the server {extra:?}"
    );
    let mut folded = Table::new();
    for r in txs.iter().flat_map(|(_, recs)| recs) {
        if r["source"]["table"] == "t" {
            common::apply_change(&mut folded, r, image);
        }
    }
    assert_table(&folded, &table(server), "the folded backup");
    txs.len()
}

fn assert_table(got: &Table, want: &Table, what: &str) {
    let diff = common::differing_keys(got, want);
    assert!(
        diff.is_empty(),
        "{what}: {} rows, the table {}; {} ids differ, e.g. {:?}",
        got.len(),
        want.len(),
        diff.len(),
        &diff[..diff.len().min(10)]
    );
}

fn source_under_faults(flavor: Flavor, n: usize) {
    let Some(server) = TestServer::start(flavor, &[]) else {
        return;
    };
    server.exec(SCHEMA);
    let proxy = FaultProxy::start(server.port);
    let mut cfg = ServiceConfig::for_server(&server, Sink::file());
    cfg.urls = vec![format!("mysql://repl:repl@{}", proxy.addr())];
    let mut svc = Service::new(&format!("net-source-{}", flavor.name()), cfg);
    let run = faults_under_writes(&mut svc, &server, &proxy, (n, SOURCE_STALL), |s| {
        assert_checkpoint_durable(s, flavor)
    });
    let txs = assert_backup_exact(&server, &svc.backup);
    let reconnects = log_count(&svc, "source connection lost; reconnecting");
    let dead = log_count(&svc, "connection considered dead");
    let stalls = run.faults.get(&Fault::Stall).copied().unwrap_or(0);
    assert!(reconnects > 0, "no reconnect logged:\n{}", svc.log_tail());
    assert!(
        stalls == 0 || dead > 0,
        "{stalls} stalls of {SOURCE_STALL:?} and no dead connection logged:\n{}",
        svc.log_tail()
    );
    eprintln!(
        "{}: {n} faults {:?} under {} writer transactions in {:?}: {reconnects} reconnects \
         logged ({dead} after silence), {txs} transactions in the backup exactly once; proxy {:?}",
        flavor.name(),
        run.faults,
        run.txs,
        run.took,
        proxy.counts()
    );
}

fn source_default(flavor: Flavor) {
    source_under_faults(flavor, source_faults());
}

fn source_soak(flavor: Flavor) {
    source_under_faults(flavor, fault_count("ROWSTREAM_NET_FAULTS_SOURCE", 200));
}

flavor_tests!(source_default: source_faults_mariadb, source_faults_mysql);

mod soak {
    use super::*;

    #[test]
    #[ignore = "soak: 200 faults per flavour (minutes); ROWSTREAM_NET_FAULTS_SOURCE overrides"]
    fn soak_source_mariadb() {
        source_soak(Flavor::MariaDb);
    }

    #[test]
    #[ignore = "soak: 200 faults per flavour (minutes); ROWSTREAM_NET_FAULTS_SOURCE overrides"]
    fn soak_source_mysql() {
        source_soak(Flavor::MySql);
    }

    fn sinks_soak(source: Flavor) {
        let n = fault_count("ROWSTREAM_NET_FAULTS_SINK", 50);
        mysql_sink_under_faults(source, n);
        http_sink_under_faults(source, n);
        search_sink_under_faults(source, n);
        kafka_sink_under_faults(source, n);
    }

    #[test]
    #[ignore = "soak: 50 faults per sink (minutes); ROWSTREAM_NET_FAULTS_SINK overrides"]
    fn soak_sinks_mariadb() {
        sinks_soak(Flavor::MariaDb);
    }

    #[test]
    #[ignore = "soak: 50 faults per sink (minutes); ROWSTREAM_NET_FAULTS_SINK overrides"]
    fn soak_sinks_mysql() {
        sinks_soak(Flavor::MySql);
    }
}

// ---------------------------------------------------------------------------------------
// Between rowstream and a sink's server (the source is read directly)

/// A `source` server with [`SCHEMA`], and the service `label` reading it into `sink`.
fn sink_service(source: Flavor, label: &str, sink: Sink) -> Option<(TestServer, Service)> {
    let server = TestServer::start(source, &[])?;
    server.exec(SCHEMA);
    let svc = Service::new(label, ServiceConfig::for_server(&server, sink));
    Some((server, svc))
}

fn report(what: &str, run: &Run, proxy: &FaultProxy, warnings: usize) {
    eprintln!(
        "{what}: {} faults {:?} under {} writer transactions in {:?}, {warnings} warnings \
         logged; proxy {:?}",
        run.faults.values().sum::<usize>(),
        run.faults,
        run.txs,
        run.took,
        proxy.counts()
    );
}

/// The MySQL apply sink writing into a target behind the proxy.
fn mysql_sink_under_faults(source: Flavor, n: usize) {
    let target = TestServer::start(source, &[]);
    let Some(target) = target else { return };
    let proxy = FaultProxy::start(target.port);
    let dir = common::TmpDir::new("net-mysql-conflicts");
    let sink = Sink::Other(format!(
        "type = \"mysql\"\nname = \"copy\"\nurl = \"mysql://root:root@{}\"\nthreads = 4\n\
         conflict_log = {:?}\n",
        proxy.addr(),
        dir.join("conflicts.jsonl").display().to_string()
    ));
    let Some((server, mut svc)) = sink_service(source, "net-mysql-sink", sink) else {
        return;
    };
    // After each fault: the checkpoint (read first) covers only what the target's progress
    // table says it applied.
    let flavor = server.flavor;
    let run = faults_under_writes(&mut svc, &server, &proxy, (n, SINK_STALL), |s| {
        let Some(cp) = s.checkpoint_gtid() else {
            return;
        };
        let applied = target
            .query_value(
                "SELECT gtid_set FROM rowstream.progress WHERE name = 'copy' \
                 ORDER BY seq DESC LIMIT 1",
            )
            .unwrap_or_default();
        let applied = gtid_seqs(flavor, &applied.replace(['\n', ' '], ""));
        let ahead: Vec<_> = gtid_seqs(flavor, &cp)
            .difference(&applied)
            .take(5)
            .cloned()
            .collect();
        assert!(
            ahead.is_empty(),
            "the checkpoint {cp} is ahead of the target: {ahead:?}"
        );
    });
    assert_table(&table(&target), &table(&server), "the MySQL target");
    let conflicts = std::fs::read_to_string(dir.join("conflicts.jsonl")).unwrap_or_default();
    assert!(conflicts.is_empty(), "conflicts logged:\n{conflicts}");
    let warnings = log_count(&svc, " WARN ");
    report("mysql sink", &run, &proxy, warnings);
}

#[test]
fn mysql_sink_faults() {
    mysql_sink_under_faults(Flavor::MariaDb, sink_faults());
}

/// An HTTP receiver that answers every well-formed request 200 and keeps the record ids
/// it answered; `acked` is read by the test while it runs.
struct Receiver {
    port: u16,
    /// Record id (`{gtid}:{n}`) -> the record, for every record answered 200.
    acked: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("address").port();
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let a = acked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let a = a.clone();
                std::thread::spawn(move || serve(conn, &a));
            }
        });
        Receiver { port, acked }
    }

    fn ids(&self) -> BTreeSet<String> {
        self.acked.lock().unwrap().keys().cloned().collect()
    }
}

/// Serves HTTP/1.1 requests on `conn` until it closes or a request is torn.
fn serve(conn: TcpStream, acked: &Mutex<BTreeMap<String, Value>>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return; // torn by a cut: never acknowledged
        }
        let Ok(Value::Array(recs)) = serde_json::from_slice::<Value>(&body) else {
            let _ = w.write_all(b"HTTP/1.1 400 Bad\r\ncontent-length: 0\r\n\r\n");
            return;
        };
        {
            let mut a = acked.lock().unwrap();
            for rec in recs {
                let id = rec["id"].as_str().expect("record id").to_string();
                a.insert(id, rec);
            }
        }
        let ok =
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
        if w.write_all(ok).is_err() {
            return;
        }
    }
}

/// (GTID, n) of a record id `{gtid}:{n}`.
fn split_id(id: &str) -> (&str, u64) {
    let (g, n) = id.rsplit_once(':').expect("id {gtid}:{n}");
    (g, n.parse().expect("record number"))
}

/// The HTTP sink posting to a receiver behind the proxy.
fn http_sink_under_faults(source: Flavor, n: usize) {
    let rx = Receiver::start();
    let proxy = FaultProxy::start(rx.port);
    let sink = Sink::Other(format!(
        "type = \"http\"\nname = \"hook\"\nurl = \"http://{}/in\"\nbatch_records = 20\n\
         linger_ms = 20\ntimeout_ms = 1000\nretry_max_ms = 400\nconcurrency = 2\n",
        proxy.addr()
    ));
    let Some((server, mut svc)) = sink_service(source, "net-http-sink", sink) else {
        return;
    };
    let flavor = server.flavor;
    // After each fault: what the checkpoint covered, then what the receiver had.
    let mut seen: Vec<(BTreeSet<TxKey>, BTreeSet<String>)> = Vec::new();
    let run = faults_under_writes(&mut svc, &server, &proxy, (n, SINK_STALL), |s| {
        if let Some(cp) = s.checkpoint_gtid() {
            seen.push((gtid_seqs(flavor, &cp), rx.ids()));
        }
    });
    let all = rx.acked.lock().unwrap().clone();
    // The checkpoint never covered a transaction before all its records were answered.
    let mut by_tx: BTreeMap<(String, u64), Vec<&String>> = BTreeMap::new();
    for id in all.keys() {
        by_tx
            .entry(gtid_key(flavor, split_id(id).0))
            .or_default()
            .push(id);
    }
    for (i, (cp, had)) in seen.iter().enumerate() {
        for (tx, ids) in &by_tx {
            let lost: Vec<_> = ids.iter().filter(|id| !had.contains(**id)).collect();
            assert!(
                !cp.contains(tx) || lost.is_empty(),
                "after fault {i} the checkpoint covered {tx:?} but records {lost:?} were not acknowledged"
            );
        }
    }
    let mut folded = Table::new();
    let mut ordered: Vec<((TxKey, u64), &Value)> = all
        .iter()
        .map(|(id, r)| {
            let (g, k) = split_id(id);
            ((gtid_key(flavor, g), k), r)
        })
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, r) in ordered {
        common::apply_change(&mut folded, r, image);
    }
    assert_table(
        &folded,
        &table(&server),
        "the records the receiver acknowledged",
    );
    let warnings = log_count(&svc, " WARN ");
    report("http sink", &run, &proxy, warnings);
}

#[test]
fn http_sink_faults() {
    http_sink_under_faults(Flavor::MariaDb, sink_faults());
}

/// The Elasticsearch sink writing into osmem-server behind the proxy.
fn search_sink_under_faults(source: Flavor, n: usize) {
    let Some(search) = TestDaemon::start(&OSMEM) else {
        return;
    };
    let proxy = FaultProxy::start(search.port);
    let sink = Sink::Other(format!(
        "type = \"elasticsearch\"\nname = \"es\"\nurls = [\"http://{}\"]\nflush_ms = 50\n\
         retry_max_ms = 1000\ntimeout_ms = 1000\nindex = \"{{db}}.{{table}}\"\n",
        proxy.addr()
    ));
    let Some((server, mut svc)) = sink_service(source, "net-es-sink", sink) else {
        return;
    };
    let run = faults_under_writes(&mut svc, &server, &proxy, (n, SINK_STALL), |_| {});
    let url = format!("http://127.0.0.1:{}/s.t", search.port);
    let mut docs = Table::new();
    wait_until("the index to be readable", Duration::from_secs(30), || {
        let _ = curl("POST", &format!("{url}/_refresh"));
        let v = curl("GET", &format!("{url}/_search?size=10000"));
        let Some(hits) = v["hits"]["hits"].as_array() else {
            return false;
        };
        assert!(hits.len() < 10000, "too many documents for one page");
        docs = hits.iter().map(|h| image(&h["_source"])).collect();
        true
    });
    assert_table(&docs, &table(&server), "the index");
    let warnings = log_count(&svc, " WARN ");
    report("elasticsearch sink", &run, &proxy, warnings);
}

/// One call to the search server through curl; its body as JSON (Null when not JSON).
fn curl(method: &str, url: &str) -> Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "30", "-X", method, url])
        .output()
        .expect("run curl");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn search_sink_faults() {
    search_sink_under_faults(Flavor::MariaDb, sink_faults());
}

/// A target that stops answering without closing (a black hole, as behind a dead NAT
/// entry): the MySQL client has no timeout of its own, so rowstream waits, but it must say
/// so in its log while it lasts (`[health] max_sink_stall_ms`, 3 s here) and ride through
/// once it ends; a start against a black hole times out its connect and retries. Before
/// the warning and the connect timeout, both hung with no log line.
#[test]
fn mysql_sink_black_hole() {
    let Some(target) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let proxy = FaultProxy::start(target.port);
    let sink = Sink::Other(format!(
        "type = \"mysql\"\nname = \"copy\"\nurl = \"mysql://root:root@{}\"\nthreads = 4\n",
        proxy.addr()
    ));
    let Some((server, mut svc)) = sink_service(Flavor::MariaDb, "net-mysql-hole", sink) else {
        return;
    };
    svc.cfg.extra = "[health]\nmax_sink_stall_ms = 3000\n".into();
    svc.write_config();
    svc.spawn();
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let _guard = common::StopOnDrop(&stop);
        let writer = sc.spawn(|| write_until(&server, seed(), &stop));
        std::thread::sleep(Duration::from_secs(2));
        let before = svc.log_text().len();
        proxy.stall(true);
        std::thread::sleep(Duration::from_secs(12));
        let during = svc.log_text()[before..].to_string();
        proxy.stall(false);
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer");
        let warnings = during
            .lines()
            .filter(|l| l.contains("sink copy has not acknowledged a batch"))
            .count();
        assert!(
            warnings >= 2,
            "{warnings} warnings in 12 s of black hole (one per 3 s expected):\n{during}"
        );
    });
    svc.wait_caught_up(&server, CATCH_UP);
    // The stall watch runs once a second: a catch-up shorter than that is done
    // before the recovery is logged.
    wait_until("the recovery in the log", Duration::from_secs(10), || {
        log_count(&svc, "sink copy acknowledges again") >= 1
    });
    // A restart while the target is a black hole: the connect gives up (30 s), says so
    // and is retried; once the target answers the copy catches up.
    svc.kill9();
    proxy.stall(true);
    server.exec("INSERT INTO s.t VALUES (-1, 'during the black hole', 0)");
    svc.spawn();
    wait_until(
        "the connect timeout in the log",
        Duration::from_secs(60),
        || svc.log_text().contains("no answer within 30s"),
    );
    proxy.stall(false);
    svc.wait_caught_up(&server, CATCH_UP);
    svc.stop(Duration::from_secs(60));
    assert_table(&table(&target), &table(&server), "the MySQL target");
}

/// Restarts `kafka` (its own broker) with one more listener on `port`, advertised as
/// `127.0.0.1:advertised`.
fn add_proxied_listener(kafka: &TestKafka, port: u16, advertised: u16) {
    let path = kafka.datadir.join("server.properties");
    let props = std::fs::read_to_string(&path).expect("server.properties");
    let props: String = props
        .lines()
        .map(|l| {
            if l.starts_with("listeners=") {
                format!("{l},PROXIED://127.0.0.1:{port}\n")
            } else if l.starts_with("advertised.listeners=") {
                format!("{l},PROXIED://127.0.0.1:{advertised}\n")
            } else if l.starts_with("listener.security.protocol.map=") {
                format!("{l},PROXIED:PLAINTEXT\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    kafka.stop();
    std::fs::write(&path, props).expect("write server.properties");
    kafka.restart();
}

/// The Kafka sink producing through the proxy (bootstrap and every broker connection).
fn kafka_sink_under_faults(source: Flavor, n: usize) {
    let Some(kafka) = TestKafka::start() else {
        return;
    };
    let listener = common::pick_port();
    let proxy = FaultProxy::start(listener);
    add_proxied_listener(&kafka, listener, proxy.port);
    let sink = Sink::Other(format!(
        "type = \"kafka\"\nname = \"kafka\"\nbrokers = \"{}\"\n\
         [sinks.properties]\n\"linger.ms\" = \"2\"\n",
        proxy.addr()
    ));
    let Some((server, mut svc)) = sink_service(source, "net-kafka-sink", sink) else {
        return;
    };
    let run = faults_under_writes(&mut svc, &server, &proxy, (n, SINK_STALL), |_| {});
    let mut folded = Table::new();
    for r in common::kafka::consume_topic(&kafka.bootstrap(), "svc.s.t") {
        let Some(b) = r.payload else { continue }; // a tombstone follows a delete
        let v: Value = serde_json::from_slice(&b).expect("value is JSON");
        common::apply_change(&mut folded, &v, image);
    }
    assert_table(&folded, &table(&server), "the topic folded by key");
    let warnings = log_count(&svc, " WARN ");
    report("kafka sink", &run, &proxy, warnings);
}

#[test]
fn kafka_sink_faults() {
    kafka_sink_under_faults(Flavor::MariaDb, sink_faults());
}

/// A source that closes every connection while rowstream starts (a cut during the
/// start's checks, as the soak met): rowstream waits it out, says so, and streams once
/// the source answers. It used to exit with "source: connection: ... connection closed".
#[test]
fn source_unreachable_at_start() {
    let Some(server) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    server.exec(SCHEMA);
    let proxy = FaultProxy::start(server.port);
    let mut cfg = ServiceConfig::for_server(&server, Sink::file());
    cfg.urls = vec![format!("mysql://repl:repl@{}", proxy.addr())];
    let mut svc = Service::new("net-source-start", cfg);
    proxy.refuse_for(Duration::from_secs(4));
    svc.spawn();
    wait_until("the retry in the log", Duration::from_secs(30), || {
        svc.log_text()
            .contains("source unreachable while starting the stream")
    });
    server.exec("INSERT INTO s.t VALUES (1, 'after the refusals', 0)");
    svc.wait_caught_up(&server, CATCH_UP);
    svc.stop(Duration::from_secs(60));
    assert_backup_exact(&server, &svc.backup);
    eprintln!("proxy {:?}", proxy.counts());
}
