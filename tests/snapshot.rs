//! Initial snapshots against real servers (both flavours): a table with existing rows
//! (1,000,000 by default, `ROWSTREAM_SNAPSHOT_ROWS` to change) and a writer updating,
//! inserting, deleting and moving primary keys while the snapshot runs; once caught up,
//! applying the backup's events in order (latest per primary key, deletes removing, a key
//! update moving the row) must give exactly the source table. Once without interruption
//! (then the snapshot holds every key once), once with SIGKILL at random moments during
//! the snapshot (it must resume from its last durable chunk, not start over).
//!
//! Also: snapshot rows of every column type print exactly like the binlog's rows of the
//! same values, and the snapshot modes `never` / `initial_only`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{next_replica_server_id, rowstream, Flavor, TestServer};
use rand::rngs::StdRng;
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

fn seed() -> u64 {
    let s = std::env::var("ROWSTREAM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed: {s} (set ROWSTREAM_TEST_SEED={s} to repeat)");
    s
}

struct TmpDir(PathBuf);

impl TmpDir {
    fn new(label: &str) -> TmpDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "rowstream-snapshot-{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One `rowstream run` service with a file backup.
struct Service {
    _tmp: TmpDir,
    config: PathBuf,
    backup: PathBuf,
    cp_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    runs: u32,
}

impl Service {
    fn new(label: &str, url: &str, snapshot: &str) -> Service {
        let tmp = TmpDir::new(label);
        let s = Service {
            config: tmp.0.join("rowstream.toml"),
            backup: tmp.0.join("backup"),
            cp_dir: tmp.0.join("cp"),
            log: tmp.0.join("rowstream.log"),
            _tmp: tmp,
            child: None,
            runs: 0,
        };
        let toml = format!(
            "[source]\nurl = {url:?}\nserver_id = {}\nname = \"svc\"\nheartbeat_secs = 2\n\n\
             [snapshot]\n{snapshot}\n\n[checkpoint]\ndir = {:?}\n\n\
             [[sinks]]\ntype = \"file\"\nname = \"backup\"\ndir = {:?}\nsegment_max_bytes = 4000000\n",
            next_replica_server_id(),
            s.cp_dir.display().to_string(),
            s.backup.display().to_string(),
        );
        std::fs::write(&s.config, toml).unwrap();
        s
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none());
        self.runs += 1;
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        use std::io::Write;
        writeln!(log, "===== run {} =====", self.runs).unwrap();
        self.child = Some(
            rowstream()
                .args(["run", "--config"])
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn rowstream run"),
        );
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        let _ = c.kill();
        c.wait().unwrap();
    }

    fn sigterm(&mut self) {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let t = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "exit {st}\n{}", self.log_tail());
                return;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                panic!("no exit after SIGTERM\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let s = self.log_text();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn checkpoint(&self) -> Option<Value> {
        let b = std::fs::read(self.cp_dir.join("checkpoint.json")).ok()?;
        Some(serde_json::from_slice(&b).expect("checkpoint is JSON"))
    }

    /// True once a checkpoint exists and holds no snapshot in progress.
    fn snapshot_complete(&self) -> bool {
        self.checkpoint()
            .is_some_and(|c| c.get("snapshot").is_none())
    }

    fn assert_running(&mut self) {
        if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("rowstream exited ({st})\n{}", self.log_tail());
        }
    }

    fn wait_for(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&Service) -> bool) {
        let t = Instant::now();
        while !f(self) {
            self.assert_running();
            assert!(
                t.elapsed() < timeout,
                "timed out waiting for {what}; checkpoint {:?}\n{}",
                self.checkpoint(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the checkpoint holds everything the server executed.
    fn wait_caught_up(&mut self, srv: &TestServer, timeout: Duration) {
        let want = normalize(&srv.gtid_executed());
        self.wait_for("catch-up", timeout, |s| {
            s.checkpoint().is_some_and(|c| {
                c.get("snapshot").is_none()
                    && normalize(c["gtid_set"].as_str().unwrap_or("")) == want
            })
        });
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- rowstream log ---\n{}", self.log_tail());
        }
    }
}

fn normalize(set: &str) -> String {
    let mut parts: Vec<String> = set
        .split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    parts.sort();
    parts.join(",")
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
        match r["op"].as_str().unwrap() {
            "r" | "c" => {
                let (id, v) = row(&r["after"]);
                out.insert(id, v);
            }
            "u" => {
                out.remove(&row(&r["before"]).0);
                let (id, v) = row(&r["after"]);
                out.insert(id, v);
            }
            "d" => {
                out.remove(&row(&r["before"]).0);
            }
            op => panic!("op {op}"),
        }
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
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    let n = rows_wanted();
    fill(&srv, n);
    let seed = seed();
    let before_start = srv.gtid_executed();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let w = s.spawn(|| writer(&srv, n, seed, &stop));
        let guard = StopOnDrop(&stop);

        // 1. Uninterrupted, while the writer runs.
        let mut a = Service::new(
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
        let mut b = Service::new(
            &format!("kill-{}", flavor.name()),
            &srv.repl_url(),
            "threads = 2\nchunk_rows = 20000",
        );
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut kills = 0;
        let mut resumed_progress = 0u64;
        loop {
            b.spawn();
            let wait = Duration::from_millis(rng.gen_range(200..1500));
            let t = Instant::now();
            while t.elapsed() < wait && !b.snapshot_complete() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if b.snapshot_complete() || kills >= 12 {
                break;
            }
            b.kill9();
            kills += 1;
            if let Some(cp) = b.checkpoint() {
                resumed_progress =
                    resumed_progress.max(cp["snapshot"]["chunks_done"].as_u64().unwrap_or(0));
            }
        }
        eprintln!(
            "{kills} kills during the snapshot; most chunks durable at a kill: {resumed_progress}"
        );
        b.wait_for("snapshot completion", Duration::from_secs(600), |s| {
            s.snapshot_complete()
        });
        if kills > 0 && resumed_progress > 0 {
            assert!(
                b.log_text()
                    .contains("resuming after the last durable chunk"),
                "{}",
                b.log_tail()
            );
        }

        drop(guard);
        let txs = w.join().unwrap();
        eprintln!("writer committed {txs} transactions");
        a.wait_caught_up(&srv, Duration::from_secs(120));
        b.wait_caught_up(&srv, Duration::from_secs(120));
        a.sigterm();
        b.sigterm();
        check_backup(&a, &srv, true, &before_start);
        check_backup(&b, &srv, false, &before_start);
    });
}

struct StopOnDrop<'a>(&'a AtomicBool);
impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn snapshot_under_writes_mariadb() {
    snapshot_under_writes(Flavor::MariaDb);
}

#[test]
fn snapshot_under_writes_mysql() {
    snapshot_under_writes(Flavor::MySql);
}

/// Every column type: the snapshot's `after` of a row equals the binlog's `after` of
/// the same values (copied into an identical table after the snapshot).
fn types_match_binlog(flavor: Flavor) {
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    let json_col = match flavor {
        Flavor::MySql => "j JSON, g GEOMETRY, ",
        Flavor::MariaDb => "j JSON, g GEOMETRY, ",
    };
    srv.exec(&format!(
        "CREATE DATABASE s; CREATE TABLE s.a (id INT PRIMARY KEY, \
         ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, \
         mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, \
         b1 BIT(1), b10 BIT(10), y YEAR, f FLOAT, db DOUBLE, de DECIMAL(20,6), dz DECIMAL(5,0), \
         c CHAR(5), vc VARCHAR(20), l1 VARCHAR(20) CHARACTER SET latin1, bin BINARY(4), \
         vb VARBINARY(10), t TEXT, bl BLOB, e ENUM('x','Yy','z z'), st SET('a','B','c'), \
         dt DATE, dtt DATETIME, dt6 DATETIME(6), ts TIMESTAMP NULL, ts3 TIMESTAMP(3) NULL, \
         tm TIME, tm2 TIME(2), {json_col} nn INT NULL) DEFAULT CHARSET=utf8mb4; \
         SET time_zone = '+02:00'; \
         INSERT INTO s.a VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, \
         4294967295, -9223372036854775808, 18446744073709551615, b'1', b'1010101010', 2024, \
         3.14159, -2.718281828459045, -12345678901234.123456, 99999, 'ab', 'héllo €', 'ça€', \
         x'00ff', x'0001', 'text ✓', x'deadbeef', 'Yy', 'a,c', '2024-02-29', \
         '2024-02-29 23:59:59', '1999-12-31 23:59:59.123456', '2024-06-01 12:00:00', \
         '2038-01-19 03:14:07.999', '-838:59:59', '12:34:56.78', \
         '{{\"a\": [1, 2.5, \"x\", null, true], \"b\": {{\"c\": -3}}}}', ST_GeomFromText('POINT(1 2)'), NULL), \
         (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'0', b'0', 0, 0, 0, 0, 0, '', '', '', x'', x'', '', x'', \
         'x', '', '1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00', NULL, NULL, \
         '00:00:00', '-00:00:01.5', '[]', NULL, 5)"
    ));
    let mut svc = Service::new(&format!("types-{}", flavor.name()), &srv.repl_url(), "");
    svc.spawn();
    svc.wait_for("snapshot completion", Duration::from_secs(60), |s| {
        s.snapshot_complete()
    });
    srv.exec("CREATE TABLE s.b LIKE s.a; INSERT INTO s.b SELECT * FROM s.a");
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.sigterm();
    let (recs, _) = read_backup(&svc.backup);
    let by = |table: &str, op: &str| -> BTreeMap<i64, Value> {
        recs.iter()
            .filter(|r| r["source"]["table"] == table && r["op"] == op)
            .map(|r| (r["after"]["id"].as_i64().unwrap(), r["after"].clone()))
            .collect()
    };
    let snap = by("a", "r");
    let streamed = by("b", "c");
    assert_eq!(snap.len(), 2, "{recs:?}");
    for (id, s) in &snap {
        let b = &streamed[id];
        for (col, v) in s.as_object().unwrap() {
            assert_eq!(
                Some(v),
                b.get(col),
                "row {id} column {col}: snapshot {v} vs binlog {:?}",
                b.get(col)
            );
        }
        assert_eq!(s, b);
    }
}

#[test]
fn types_match_binlog_mariadb() {
    types_match_binlog(Flavor::MariaDb);
}

#[test]
fn types_match_binlog_mysql() {
    types_match_binlog(Flavor::MySql);
}

/// `never` streams only; `initial_only` exits 0 after the snapshot and a rerun does nothing.
#[test]
fn modes() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    fill(&srv, 1000);
    let mut never = Service::new("never", &srv.repl_url(), "mode = \"never\"");
    never.spawn();
    never.wait_caught_up(&srv, Duration::from_secs(30));
    srv.exec("INSERT INTO s.t VALUES (5000, 1, 'x', 1)");
    never.wait_caught_up(&srv, Duration::from_secs(30));
    never.sigterm();
    let (recs, _) = read_backup(&never.backup);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["op"], "c");

    let mut only = Service::new(
        "only",
        &srv.repl_url(),
        "mode = \"initial_only\"\nchunk_rows = 100",
    );
    only.spawn();
    let t = Instant::now();
    let st = loop {
        if let Some(st) = only.child.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{}", only.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    };
    only.child = None;
    assert!(st.success(), "{st}\n{}", only.log_tail());
    assert!(only.snapshot_complete());
    let (recs, markers) = read_backup(&only.backup);
    assert_eq!(recs.len(), 1001);
    assert!(recs.iter().all(|r| r["op"] == "r"));
    assert_eq!(markers.len(), 11, "{markers:?}");
    only.spawn();
    let t = Instant::now();
    while only.child.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(30), "{}", only.log_tail());
        std::thread::sleep(Duration::from_millis(50));
    }
    only.child = None;
    assert_eq!(read_backup(&only.backup).0.len(), 1001);
}

/// On-demand snapshot while streaming: mode "never", a writer running, then a signal row
/// asks for s.t; the backup (stream + chunks interleaved at their high watermarks) must
/// reproduce the table.
fn on_demand(flavor: Flavor) {
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    let n = rows_wanted();
    fill(&srv, n);
    srv.exec(
        "CREATE DATABASE rowstream; CREATE TABLE rowstream.rowstream_signal \
         (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT); \
         GRANT INSERT ON rowstream.* TO 'repl'@'%'",
    );
    let seed = seed();
    let stop = AtomicBool::new(false);
    let mut svc = Service::new(
        &format!("ondemand-{}", flavor.name()),
        &srv.repl_url(),
        "mode = \"never\"\nchunk_rows = 20000\nsignal_schema = \"rowstream\"",
    );
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
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
    svc.sigterm();
    let (recs, _) = read_backup(&svc.backup);
    let reads = recs.iter().filter(|r| r["op"] == "r").count();
    let lasts = recs
        .iter()
        .filter(|r| r["source"]["snapshot"] == "last")
        .count();
    assert_eq!(lasts, 1);
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

#[test]
fn on_demand_mariadb() {
    on_demand(Flavor::MariaDb);
}

#[test]
fn on_demand_mysql() {
    on_demand(Flavor::MySql);
}

/// `when_needed`: once the checkpoint's position is purged from the server, a restart takes
/// a new snapshot instead of refusing to start (`initial` refuses), and the backup converges
/// (the gap here has updates and inserts only: a delete inside a purged gap cannot reach
/// the backup, as with any snapshot-based recovery).
#[test]
fn when_needed_resnapshots_after_purge() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    fill(&srv, 5000);
    let mut svc = Service::new(
        "when-needed",
        &srv.repl_url(),
        "mode = \"when_needed\"\nchunk_rows = 1000",
    );
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.sigterm();
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
    svc.sigterm();
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
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    let n = rows_wanted().min(200_000);
    fill(&srv, n);
    srv.exec(
        "CREATE USER 'norel'@'%' IDENTIFIED BY 'norel'; \
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'norel'@'%'",
    );
    let url = format!("mysql://norel:norel@127.0.0.1:{}", srv.port);
    let before_start = srv.gtid_executed();
    let seed = seed();
    let stop = AtomicBool::new(false);
    let mut svc = Service::new(
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
    svc.sigterm();
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

#[test]
fn without_reload_mariadb() {
    without_reload(Flavor::MariaDb);
}

#[test]
fn without_reload_mysql() {
    without_reload(Flavor::MySql);
}
