//! `rowstream run` as a service, against real servers: kill -9 at random moments under
//! load (exactly once, commit order, identical rows), failover to a promoted replica,
//! refusal of an unrelated server, corrupt checkpoint, unwritable backup dir, full disk,
//! and a 1 GB transaction in bounded memory.
//!
//! Every test drives the real binary (`rowstream run --config`) with a generated TOML and
//! checks the file backup three ways: through `rowstream_file::reader::BackupReader`
//! (transactions grouped by their END markers), through `rowstream backup cat` (must print
//! the same record lines) and by scanning the raw segment files (`N.ndjson`,
//! `N.ndjson.zst`) for END markers.
//!
//! Truth is the server: the GTIDs a writer got back from its own commits, the server's GTID
//! set, and its final table contents. Applying the backup's row events in order must give
//! exactly `SELECT * FROM s.t`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    gtid_key, gtid_seqs, output_with_timeout, rowstream, seed, Flavor, Service, ServiceConfig,
    Sink, StopOnDrop, TestServer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rowstream_file::encode::{classify, parse_tx_end, LineKind, TxEnd};
use rowstream_file::reader::BackupReader;
use serde_json::{json, Value};

const SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.t (id BIGINT PRIMARY KEY, d DECIMAL(12,2) NOT NULL, v VARCHAR(200) NOT NULL) \
    DEFAULT CHARSET=utf8mb4";

/// A primary with [`SCHEMA`] and a replica of it (None: skipped).
fn primary_and_replica(flavor: Flavor) -> Option<(TestServer, TestServer)> {
    let primary = TestServer::start(flavor, &[])?;
    primary.exec(SCHEMA);
    let replica = TestServer::start(flavor, &[]).expect("second server");
    replica.replicate_from(&primary);
    Some((primary, replica))
}

/// A service reading `urls` (first = primary), starting at `start` when there is no
/// checkpoint, into a file sink at `<tmp>/backup` with `sink_extra` TOML lines.
fn file_service(label: &str, urls: &[String], start: &str, sink_extra: &str) -> Service {
    let mut cfg = ServiceConfig::new(urls, Sink::File(sink_extra.to_string()));
    cfg.start = Some(start.to_string());
    Service::new(label, cfg)
}

// ---------------------------------------------------------------------------------------
// Workload: transactions of 1..200 row changes on s.t, with a model of the table

#[derive(Clone, Debug, PartialEq)]
struct Row {
    d: String,
    v: String,
}

#[derive(Clone, Debug)]
enum Op {
    Ins(i64, Row),
    Upd(i64, Row, Row),
    Del(i64, Row),
}

/// A committed transaction: the GTID its commit got and the row changes it made, in order.
#[derive(Clone, Debug)]
struct WTx {
    gtid: String,
    ops: Vec<Op>,
}

struct Workload {
    rng: StdRng,
    rows: BTreeMap<i64, Row>,
    next_id: i64,
    counter: u64,
}

fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        cents.unsigned_abs() / 100,
        cents.unsigned_abs() % 100
    )
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            rows: BTreeMap::new(),
            next_id: 1,
            counter: 0,
        }
    }

    fn row(&mut self) -> Row {
        self.counter += 1;
        let cents = match self.rng.gen_range(0..4) {
            0 => self.rng.gen_range(-99..=99),
            _ => self.rng.gen_range(-9_999_999_999i64..=9_999_999_999),
        };
        let len = self.rng.gen_range(0..120);
        let tail: String = (0..len)
            .map(|_| {
                const CH: &[char] = &[
                    'a', 'b', 'Z', '0', '9', ' ', 'é', 'ü', '€', '\'', '"', '日', '-', '_',
                ];
                CH[self.rng.gen_range(0..CH.len())]
            })
            .collect();
        Row {
            d: decimal(cents),
            v: format!("#{} {tail}", self.counter),
        }
    }

    /// The SQL of the next transaction (without BEGIN/COMMIT), its row changes and the
    /// table after it.
    fn gen(&mut self, max_rows: usize) -> (String, Vec<Op>, BTreeMap<i64, Row>) {
        let n = if self.rng.gen_bool(0.6) {
            self.rng.gen_range(1..=10)
        } else {
            self.rng.gen_range(1..=max_rows)
        };
        let mut rows = self.rows.clone();
        let mut ops = Vec::with_capacity(n);
        let mut sql = String::new();
        let mut inserts: Vec<String> = Vec::new();
        let flush = |sql: &mut String, inserts: &mut Vec<String>| {
            if !inserts.is_empty() {
                sql.push_str(&format!(
                    "INSERT INTO s.t (id, d, v) VALUES {};\n",
                    inserts.join(",")
                ));
                inserts.clear();
            }
        };
        for _ in 0..n {
            let p: f64 = self.rng.gen();
            let pick = |rng: &mut StdRng, rows: &BTreeMap<i64, Row>| -> i64 {
                let lo = *rows.keys().next().unwrap();
                let hi = *rows.keys().next_back().unwrap();
                let k = rng.gen_range(lo..=hi);
                *rows.range(k..).next().unwrap().0
            };
            if !rows.is_empty() && p < 0.25 {
                let id = pick(&mut self.rng, &rows);
                let new = self.row();
                let old = rows.insert(id, new.clone()).unwrap();
                flush(&mut sql, &mut inserts);
                sql.push_str(&format!(
                    "UPDATE s.t SET d = {}, v = {} WHERE id = {id};\n",
                    new.d,
                    sql_str(&new.v)
                ));
                ops.push(Op::Upd(id, old, new));
            } else if !rows.is_empty() && p < 0.42 {
                let id = pick(&mut self.rng, &rows);
                let old = rows.remove(&id).unwrap();
                flush(&mut sql, &mut inserts);
                sql.push_str(&format!("DELETE FROM s.t WHERE id = {id};\n"));
                ops.push(Op::Del(id, old));
            } else {
                let id = self.next_id;
                self.next_id += 1;
                let r = self.row();
                inserts.push(format!("({id}, {}, {})", r.d, sql_str(&r.v)));
                rows.insert(id, r.clone());
                ops.push(Op::Ins(id, r));
            }
        }
        flush(&mut sql, &mut inserts);
        (sql, ops, rows)
    }
}

/// Runs SQL through the server's CLI (batch, no column names); Err with stderr on failure.
fn try_sql(server: &TestServer, sql: &str) -> Result<String, String> {
    let mut cmd = server.client_command();
    cmd.args(["--batch", "--skip-column-names"]);
    let out = output_with_timeout(
        &mut cmd,
        Some(sql.as_bytes().to_vec()),
        Duration::from_secs(120),
    );
    if out.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            out.describe_status(),
            out.stderr_text().trim()
        ))
    }
}

/// Commits the next workload transaction on `server` and returns it with its GTID.
/// On error returns the error and the row changes that may or may not have committed.
fn write_tx(
    server: &TestServer,
    w: &mut Workload,
    max_rows: usize,
) -> Result<WTx, (String, Vec<Op>)> {
    let (body, ops, rows) = w.gen(max_rows);
    let gtid_q = match server.flavor {
        Flavor::MariaDb => "SELECT @@last_gtid;",
        Flavor::MySql => "SELECT @@server_uuid, REPLACE(@@GLOBAL.gtid_executed, '\\n', '');",
    };
    let sql = format!("START TRANSACTION;\n{body}COMMIT;\n{gtid_q}\n");
    let out = match try_sql(server, &sql) {
        Ok(o) => o,
        Err(e) => return Err((e, ops)),
    };
    let line = out.lines().last().unwrap_or("").trim().to_string();
    let gtid = match server.flavor {
        Flavor::MariaDb => line,
        Flavor::MySql => {
            let (uuid, set) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("unexpected gtid output {line:?}"));
            let uuid = uuid.to_lowercase();
            let last = gtid_seqs(Flavor::MySql, set)
                .into_iter()
                .filter(|(s, _)| *s == uuid)
                .map(|(_, n)| n)
                .max()
                .unwrap_or_else(|| panic!("own uuid {uuid} not in gtid_executed {set}"));
            format!("{uuid}:{last}")
        }
    };
    assert!(!gtid.is_empty(), "no GTID returned for a commit");
    w.rows = rows;
    Ok(WTx { gtid, ops })
}

/// `SELECT id, d, v FROM s.t` as a map.
fn table(server: &TestServer) -> BTreeMap<i64, Row> {
    server
        .query("SELECT id, d, v FROM s.t ORDER BY id")
        .into_iter()
        .map(|r| {
            let id = r[0].as_deref().unwrap().parse().unwrap();
            (
                id,
                Row {
                    d: r[1].clone().unwrap(),
                    v: r[2].clone().unwrap(),
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Reading the backup

/// One transaction of the backup: its END marker and the records before it.
#[derive(Debug)]
struct BTx {
    gtid: String,
    records: Vec<Value>,
}

/// The backup through `BackupReader`, grouped by END markers; checks every marker's
/// event_count and that every record carries the marker's GTID.
fn read_backup(dir: &Path) -> Vec<BTx> {
    let rd =
        BackupReader::open(dir).unwrap_or_else(|e| panic!("open backup {}: {e}", dir.display()));
    let mut out = Vec::new();
    let mut cur: Vec<Value> = Vec::new();
    for e in rd {
        let e = e.unwrap_or_else(|e| panic!("reading backup {}: {e}", dir.display()));
        match e.kind {
            LineKind::Change | LineKind::SchemaChange => {
                cur.push(serde_json::from_slice(&e.line).unwrap_or_else(|err| {
                    panic!(
                        "backup line is not JSON ({err}): {}",
                        String::from_utf8_lossy(&e.line)
                    )
                }));
            }
            LineKind::TxEnd => {
                let m = parse_tx_end(&e.line).expect("well-formed END marker");
                assert_eq!(
                    m.event_count as usize,
                    cur.len(),
                    "END marker {} says {} events, {} precede it",
                    m.id,
                    m.event_count,
                    cur.len()
                );
                for r in &cur {
                    assert_eq!(
                        r["source"]["gtid"].as_str(),
                        Some(m.id.as_str()),
                        "record of another GTID before END {}: {r}",
                        m.id
                    );
                    if r.get("op").is_some() {
                        assert_eq!(
                            r["transaction"]["id"].as_str(),
                            Some(m.id.as_str()),
                            "transaction.id of {r}"
                        );
                    }
                }
                out.push(BTx {
                    gtid: m.id,
                    records: std::mem::take(&mut cur),
                });
            }
        }
    }
    assert!(
        cur.is_empty(),
        "the reader returned {} records without an END marker",
        cur.len()
    );
    out
}

/// The stdout lines of `rowstream backup cat DIR`.
fn backup_cat(dir: &Path) -> Vec<String> {
    let mut cmd = rowstream();
    cmd.args(["backup", "cat"]).arg(dir);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(300));
    assert!(
        out.success(),
        "rowstream backup cat failed ({}): {}",
        out.describe_status(),
        out.stderr_text()
    );
    String::from_utf8(out.stdout)
        .expect("cat prints UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The segment files of a backup dir in order: (number, path, compressed). When
/// several forms exist the `.zst` is the authoritative one, then the `.zst.open` (the
/// open segment written compressed, one frame per append).
fn segment_files(dir: &Path) -> Vec<(u64, PathBuf, bool)> {
    let mut m: BTreeMap<u64, (PathBuf, u8)> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let (num, rank) = if let Some(n) = name.strip_suffix(".ndjson.zst") {
            (n, 2)
        } else if let Some(n) = name.strip_suffix(".ndjson.zst.open") {
            (n, 1)
        } else if let Some(n) = name.strip_suffix(".ndjson") {
            (n, 0)
        } else {
            continue;
        };
        let Ok(num) = num.parse::<u64>() else {
            continue;
        };
        if m.get(&num).is_none_or(|(_, r)| *r < rank) {
            m.insert(num, (e.path(), rank));
        }
    }
    m.into_iter().map(|(n, (p, r))| (n, p, r > 0)).collect()
}

/// What the raw segment files hold: every complete END marker in order, the number of
/// record lines, and the bytes after the last complete marker of the last segment.
struct Raw {
    markers: Vec<TxEnd>,
    records: usize,
    trailing: usize,
    /// Closed segments that do not end with a marker (must be none).
    bad_closed: Vec<String>,
}

/// The complete frames of an open compressed segment, decoded as a stream.
fn open_frames(path: &Path) -> std::io::Result<Box<dyn std::io::Read>> {
    let f = std::fs::File::open(path)?;
    let valid = rowstream_file::segment::walk_frames(&f, 0)?.valid;
    if valid == 0 {
        return Ok(Box::new(std::io::empty()));
    }
    let f = std::fs::File::open(path)?;
    Ok(Box::new(zstd::stream::read::Decoder::new(
        std::io::Read::take(f, valid),
    )?))
}

fn raw_segments(dir: &Path) -> Raw {
    let files = segment_files(dir);
    let mut raw = Raw {
        markers: Vec::new(),
        records: 0,
        trailing: 0,
        bad_closed: Vec::new(),
    };
    let last = files.len();
    for (i, (_, path, z)) in files.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let data = if path.extension().is_some_and(|x| x == "open") {
            // Only its complete frames: a kill may have torn the last one.
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut open_frames(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
                &mut out,
            )
            .unwrap_or_else(|e| panic!("zstd {}: {e}", path.display()));
            out
        } else if *z {
            zstd::stream::decode_all(&bytes[..])
                .unwrap_or_else(|e| panic!("zstd {}: {e}", path.display()))
        } else {
            bytes
        };
        let mut end_of_last_marker = 0;
        let mut pos = 0;
        for line in data.split_inclusive(|&b| b == b'\n') {
            pos += line.len();
            if line.last() != Some(&b'\n') {
                break; // torn tail
            }
            match classify(line) {
                Some(LineKind::TxEnd) => {
                    if let Some(m) = parse_tx_end(line) {
                        raw.markers.push(m);
                        end_of_last_marker = pos;
                    }
                }
                Some(_) => raw.records += 1,
                // Segment start / end lines belong to the segment, not to a transaction.
                None if rowstream_file::encode::is_segment_line(line) => end_of_last_marker = pos,
                None => {}
            }
        }
        if i + 1 == last {
            raw.trailing = data.len() - end_of_last_marker;
        } else if end_of_last_marker != data.len() {
            raw.bad_closed.push(path.display().to_string());
        }
    }
    raw
}

/// Every transaction the checkpoint covers must have its END marker in the segment files.
fn assert_checkpoint_durable(svc: &Service, flavor: Flavor, context: &str) {
    let Some(cp) = svc.checkpoint_gtid() else {
        return;
    };
    let raw = raw_segments(&svc.backup);
    let have: BTreeSet<(String, u64)> = raw
        .markers
        .iter()
        .map(|m| gtid_key(flavor, &m.id))
        .collect();
    let missing: Vec<_> = gtid_seqs(flavor, &cp)
        .into_iter()
        .filter(|k| !have.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "{context}: checkpoint {cp} covers {} transaction(s) that have no END marker in the backup, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

fn row_json(id: i64, r: &Row) -> Value {
    json!({"id": id, "d": r.d, "v": r.v})
}

/// The full verification after a clean stop. `server_set`: the server's GTID set (every
/// transaction must be in the backup exactly once, in order); `txs`: what the writer
/// committed, in commit order; `final_table`: the server's table.
fn verify_backup(
    flavor: Flavor,
    backup: &Path,
    server_set: &str,
    txs: &[WTx],
    final_table: &BTreeMap<i64, Row>,
) -> usize {
    let btxs = read_backup(backup);
    check_cat_and_segments(backup, &btxs);
    let keys = check_exactly_once(flavor, &btxs, server_set);
    check_writer_transactions(flavor, &btxs, &keys, txs, final_table);
    btxs.len()
}

/// `backup cat` and the raw segment files agree with what the reader returned.
fn check_cat_and_segments(backup: &Path, btxs: &[BTx]) {
    // `backup cat` prints exactly the records the reader returns, in the same order.
    let cat = backup_cat(backup);
    let n_records: usize = btxs.iter().map(|t| t.records.len()).sum();
    assert_eq!(
        cat.len(),
        n_records,
        "backup cat printed {} lines, the reader has {n_records} records",
        cat.len()
    );
    let mut i = 0;
    for t in btxs {
        for r in &t.records {
            let c: Value = serde_json::from_str(&cat[i])
                .unwrap_or_else(|e| panic!("cat line not JSON ({e}): {}", cat[i]));
            assert_eq!(&c, r, "backup cat line {i} differs from the reader");
            i += 1;
        }
    }

    // The raw segment files hold the same markers, closed segments end at a marker and a
    // cleanly stopped backup has nothing after its last marker.
    let raw = raw_segments(backup);
    let raw_ids: Vec<&str> = raw.markers.iter().map(|m| m.id.as_str()).collect();
    let rd_ids: Vec<&str> = btxs.iter().map(|t| t.gtid.as_str()).collect();
    assert_eq!(
        raw_ids, rd_ids,
        "END markers in the raw segment files differ from what the reader returns"
    );
    assert_eq!(
        raw.records, n_records,
        "record lines in the raw segments vs reader"
    );
    assert!(
        raw.bad_closed.is_empty(),
        "closed segments not ending at a transaction end: {:?}",
        raw.bad_closed
    );
    assert_eq!(
        raw.trailing, 0,
        "bytes after the last END marker of a cleanly stopped backup"
    );
}

/// Every transaction of `server_set` is in the backup exactly once, in commit order, and
/// nothing else is; returns the backup's transactions as [`gtid_key`]s.
fn check_exactly_once(flavor: Flavor, btxs: &[BTx], server_set: &str) -> Vec<(String, u64)> {
    // Exactly once, in commit order, nothing missing.
    let keys: Vec<(String, u64)> = btxs.iter().map(|t| gtid_key(flavor, &t.gtid)).collect();
    let mut seen: HashMap<&(String, u64), usize> = HashMap::new();
    let mut dups = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(prev) = seen.insert(k, i) {
            dups.push(format!("{} at transactions #{prev} and #{i}", btxs[i].gtid));
        }
    }
    assert!(
        dups.is_empty(),
        "{} transaction(s) in the backup more than once: {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (i, (src, n)) in keys.iter().enumerate() {
        if let Some(&p) = last.get(src.as_str()) {
            assert!(
                *n > p,
                "backup out of commit order: transaction #{i} {} after sequence {p}",
                btxs[i].gtid
            );
        }
        last.insert(src, *n);
    }
    let want = gtid_seqs(flavor, server_set);
    let have: BTreeSet<(String, u64)> = keys.iter().cloned().collect();
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "backup vs server GTID set {server_set}: {} missing (e.g. {:?}), {} not on the server (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        extra.len(),
        &extra[..extra.len().min(10)]
    );

    keys
}

/// The writer's transactions are in the backup in commit order with exactly the row
/// changes it made, and applying the backup's row events gives `final_table`.
fn check_writer_transactions(
    flavor: Flavor,
    btxs: &[BTx],
    keys: &[(String, u64)],
    txs: &[WTx],
    final_table: &BTreeMap<i64, Row>,
) {
    // The writer's transactions: same order, same row changes.
    let by_key: HashMap<(String, u64), &WTx> =
        txs.iter().map(|t| (gtid_key(flavor, &t.gtid), t)).collect();
    let order: Vec<&(String, u64)> = keys.iter().filter(|k| by_key.contains_key(*k)).collect();
    let want_order: Vec<(String, u64)> = txs.iter().map(|t| gtid_key(flavor, &t.gtid)).collect();
    assert_eq!(
        order.len(),
        want_order.len(),
        "writer transactions found in the backup"
    );
    for (a, b) in order.iter().zip(&want_order) {
        assert_eq!(*a, b, "writer transactions out of order in the backup");
    }
    let mut table_state: BTreeMap<i64, Row> = BTreeMap::new();
    for (t, k) in btxs.iter().zip(keys) {
        let rows: Vec<&Value> = t
            .records
            .iter()
            .filter(|r| {
                r["source"]["db"] == "s" && r["source"]["table"] == "t" && r.get("op").is_some()
            })
            .collect();
        match by_key.get(k) {
            Some(w) => {
                assert_eq!(
                    rows.len(),
                    w.ops.len(),
                    "transaction {}: {} row events, the writer made {} changes",
                    t.gtid,
                    rows.len(),
                    w.ops.len()
                );
                for (j, (r, op)) in rows.iter().zip(&w.ops).enumerate() {
                    let (o, before, after) = match op {
                        Op::Ins(id, a) => ("c", Value::Null, row_json(*id, a)),
                        Op::Upd(id, b, a) => ("u", row_json(*id, b), row_json(*id, a)),
                        Op::Del(id, b) => ("d", row_json(*id, b), Value::Null),
                    };
                    let got = json!({"op": r["op"], "before": r["before"], "after": r["after"]});
                    let exp = json!({"op": o, "before": before, "after": after});
                    assert_eq!(
                        got, exp,
                        "transaction {} row {j}: backup event differs from what was written",
                        t.gtid
                    );
                }
            }
            None => assert!(
                rows.is_empty(),
                "transaction {} changes s.t but was not written by the writer: {:?}",
                t.gtid,
                rows.first()
            ),
        }
        for r in rows {
            let img = |v: &Value| -> (i64, Row) {
                (
                    v["id"].as_i64().unwrap(),
                    Row {
                        d: v["d"].as_str().unwrap().to_string(),
                        v: v["v"].as_str().unwrap().to_string(),
                    },
                )
            };
            common::apply_change(&mut table_state, r, img);
        }
    }
    if &table_state != final_table {
        let diff: Vec<String> = final_table
            .iter()
            .filter(|(k, v)| table_state.get(k) != Some(v))
            .map(|(k, v)| format!("id {k}: server {v:?}, backup {:?}", table_state.get(k)))
            .chain(
                table_state
                    .keys()
                    .filter(|k| !final_table.contains_key(k))
                    .map(|k| format!("id {k}: only in the backup")),
            )
            .take(10)
            .collect();
        panic!(
            "applying the backup does not give the server's table ({} vs {} rows): {diff:#?}",
            table_state.len(),
            final_table.len()
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 loop

const KILLS: usize = 22;

fn kill9_loop(flavor: Flavor) {
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    let t0 = Instant::now();
    srv.exec(SCHEMA);
    let seed = seed();
    // Small segments: rotation, zstd compression and cuts inside compressed segments all
    // happen under the kills.
    let mut cfg = ServiceConfig::new(
        &[srv.repl_url()],
        Sink::File("segment_max_bytes = 65536\n".into()),
    );
    // Both sink placements under the kills, whatever the machine: MariaDB's sink on the
    // decoding thread (the default with two CPUs), MySQL's on a thread of its own.
    let threads = match flavor {
        Flavor::MariaDb => "none",
        Flavor::MySql => "per_sink",
    };
    cfg.extra = format!("[pipeline]\nsink_threads = \"{threads}\"\n");
    let mut svc = Service::new(&format!("kill9-{}", flavor.name()), cfg);
    let stop = AtomicBool::new(false);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut early = Vec::new();
    let mut prev_cp: BTreeSet<(String, u64)> = BTreeSet::new();
    let (txs, model) = std::thread::scope(|s| {
        let _guard = StopOnDrop(&stop);
        let writer = s.spawn(|| {
            let mut w = Workload::new(seed);
            let mut txs = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match write_tx(&srv, &mut w, 200) {
                    Ok(t) => txs.push(t),
                    Err((e, _)) => panic!("writer failed: {e}"),
                }
            }
            (txs, w.rows)
        });
        // Count only kills of a process that was still running: a run that ended by
        // itself is recorded (and fails the test at the end) and retried.
        let mut kills = 0;
        let mut runs = 0;
        while kills < KILLS && runs < 3 * KILLS {
            runs += 1;
            svc.spawn();
            std::thread::sleep(Duration::from_millis(rng.gen_range(200..=2000)));
            match svc.kill9() {
                Some(st) => early.push(format!(
                    "run {runs} exited on its own before the kill: {st}"
                )),
                None => kills += 1,
            }
            assert_checkpoint_durable(&svc, flavor, &format!("after run {runs}"));
            // The checkpoint never goes back.
            let cp = svc
                .checkpoint_gtid()
                .map(|c| gtid_seqs(flavor, &c))
                .unwrap_or_default();
            assert!(
                prev_cp.is_subset(&cp),
                "after run {runs}: the checkpoint went back"
            );
            prev_cp = cp;
        }
        assert_eq!(
            kills, KILLS,
            "could not kill a running rowstream {KILLS} times in {runs} runs: {early:#?}"
        );
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer thread")
    });
    let load_secs = t0.elapsed();
    // Catch up; a run refused at start (see the early exits) is retried like systemd would.
    let t = Instant::now();
    let catch_up = loop {
        svc.spawn();
        std::thread::sleep(Duration::from_millis(300));
        if let Some(st) = svc.exited() {
            early.push(format!("catch-up run exited on its own: {st}"));
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "no catch-up run got going in 120 s: {early:#?}"
            );
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        break svc.wait_caught_up(&srv, Duration::from_secs(120));
    };
    let (st, stop_took) = svc.sigterm(Duration::from_secs(10));
    assert!(
        st.success(),
        "rowstream run exited with {st} after SIGTERM\n{}",
        svc.log_tail()
    );
    assert!(stop_took < Duration::from_secs(10));

    let final_table = table(&srv);
    assert_eq!(
        model, final_table,
        "the writer's model differs from the server's table (test bug)"
    );
    let n = verify_backup(
        flavor,
        &svc.backup,
        &srv.gtid_executed(),
        &txs,
        &final_table,
    );
    let rows: usize = txs.iter().map(|t| t.ops.len()).sum();
    let segs = segment_files(&svc.backup);
    eprintln!(
        "kill9 {}: {KILLS} kills ({} runs ended by themselves) in {:.1} s, {} writer transactions ({rows} row changes), {n} backup transactions, \
         {} segments ({} compressed), catch-up {:.1} s, SIGTERM exit in {:.2} s",
        flavor.name(),
        early.len(),
        load_secs.as_secs_f64(),
        txs.len(),
        segs.len(),
        segs.iter().filter(|s| s.2).count(),
        catch_up.as_secs_f64(),
        stop_took.as_secs_f64()
    );
    let log = std::fs::read_to_string(&svc.log).unwrap();
    let count = |pat: &str| log.matches(pat).count();
    eprintln!(
        "kill9 {}: recovery on restart: {} open-segment cuts, {} segments removed past the checkpoint, \
         {} compressed segments reopened, {} leftovers removed; {} ERROR lines",
        flavor.name(),
        count("cutting the open segment"),
        count("removing segment past the checkpoint"),
        count("reopening its covered prefix"),
        count("removing leftover"),
        count(" ERROR ")
    );
    assert!(
        txs.len() >= 50,
        "too few transactions written ({})",
        txs.len()
    );
    assert!(
        early.is_empty(),
        "rowstream runs ended by themselves:\n{}\n--- log ---\n{}",
        early.join("\n"),
        svc.log_tail()
    );
}

flavor_tests!(kill9_loop: kill9_loop_mariadb, kill9_loop_mysql);

// ---------------------------------------------------------------------------------------
// 2. failover to a promoted replica

fn failover(flavor: Flavor) {
    let Some((primary, replica)) = primary_and_replica(flavor) else {
        return;
    };
    let primary_tag = match flavor {
        Flavor::MariaDb => format!("-{}-", primary.server_id),
        Flavor::MySql => primary
            .query_value("SELECT @@server_uuid")
            .unwrap()
            .to_lowercase(),
    };
    let seed = seed();
    let mut svc = file_service(
        &format!("failover-{}", flavor.name()),
        &[primary.repl_url(), replica.repl_url()],
        "earliest",
        "segment_max_bytes = 65536\n",
    );
    svc.spawn();
    let stop = AtomicBool::new(false);
    let promoted: Mutex<Option<String>> = Mutex::new(None);
    let (txs, lost, uncertain) = std::thread::scope(|s| {
        let _guard = StopOnDrop(&stop);
        let writer = s.spawn(|| {
            let mut w = Workload::new(seed);
            let mut txs: Vec<WTx> = Vec::new();
            let mut server = &primary;
            let mut lost = 0;
            let mut uncertain = "none".to_string();
            while !stop.load(Ordering::SeqCst) {
                match write_tx(server, &mut w, 100) {
                    Ok(t) => txs.push(t),
                    Err((e, ops)) => {
                        assert!(std::ptr::eq(server, &primary), "writer failed on the new primary: {e}");
                        // The primary is gone: wait for the promotion, then find out what
                        // the new primary has.
                        let pos = loop {
                            if let Some(p) = promoted.lock().unwrap().clone() {
                                break p;
                            }
                            if stop.load(Ordering::SeqCst) {
                                return (txs, lost, uncertain);
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        };
                        let has = gtid_seqs(flavor, &pos);
                        let before = txs.len();
                        let next = txs.last().map(|t| {
                            let (src, n) = gtid_key(flavor, &t.gtid);
                            (src, n + 1)
                        });
                        txs.retain(|t| has.contains(&gtid_key(flavor, &t.gtid)));
                        lost = before - txs.len();
                        // The transaction in flight when the primary died: committed and
                        // replicated iff the replica has the next GTID.
                        uncertain = match next {
                            Some(k) if lost == 0 && has.contains(&k) => {
                                let gtid = match flavor {
                                    Flavor::MariaDb => format!("{}-{}-{}", k.0, primary.server_id, k.1),
                                    Flavor::MySql => format!("{}:{}", k.0, k.1),
                                };
                                txs.push(WTx { gtid: gtid.clone(), ops });
                                format!("committed and replicated as {gtid}")
                            }
                            _ => "not on the replica".to_string(),
                        };
                        eprintln!("writer: primary lost ({e}); replica at {pos}; {lost} committed transaction(s) not replicated; in-flight one {uncertain}");
                        w.rows = table(&replica);
                        server = &replica;
                    }
                }
            }
            (txs, lost, uncertain)
        });
        std::thread::sleep(Duration::from_secs(3));
        primary.kill();
        eprintln!("primary killed; checkpoint {:?}", svc.checkpoint_gtid());
        let pos = replica.promote();
        eprintln!("replica promoted at {pos}");
        *promoted.lock().unwrap() = Some(pos);
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer thread")
    });
    let catch_up = svc.wait_caught_up(&replica, Duration::from_secs(90));
    let (st, took) = svc.sigterm(Duration::from_secs(10));
    assert!(
        st.success(),
        "rowstream run exited with {st} after SIGTERM\n{}",
        svc.log_tail()
    );
    let final_table = table(&replica);
    let set = replica.gtid_executed();
    let n = verify_backup(flavor, &svc.backup, &set, &txs, &final_table);
    let pre = txs.iter().filter(|t| t.gtid.contains(&primary_tag)).count();
    eprintln!(
        "failover {}: {} writer transactions in the backup ({pre} on the old primary, {} on the new), {lost} lost by the database, \
         in-flight one: {uncertain}; {n} backup transactions; caught up {:.1} s after the load, SIGTERM exit in {:.2} s",
        flavor.name(),
        txs.len(),
        txs.len() - pre,
        catch_up.as_secs_f64(),
        took.as_secs_f64()
    );
    assert!(
        pre > 0 && txs.len() > pre,
        "no writes on one side of the failover"
    );
    let log = std::fs::read_to_string(&svc.log).unwrap();
    assert!(
        log.contains(&format!("127.0.0.1:{}", replica.port)),
        "the log does not show rowstream reading the replica :{}",
        replica.port
    );
}

flavor_tests!(failover: failover_mariadb, failover_mysql);

// ---------------------------------------------------------------------------------------
// 3. a server that lacks our transactions is refused

/// Names and contents of a backup dir (without the lock file).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name() != ".lock")
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A server with a few transactions of the workload, streamed into a backup by a clean
/// run; returns the service stopped with a checkpoint.
fn streamed_once(label: &str, srv: &TestServer, seed: u64, n_tx: usize) -> (Service, Vec<WTx>) {
    srv.exec(SCHEMA);
    let mut w = Workload::new(seed);
    let txs: Vec<WTx> = (0..n_tx)
        .map(|_| write_tx(srv, &mut w, 20).unwrap_or_else(|(e, _)| panic!("{e}")))
        .collect();
    let mut svc = file_service(label, &[srv.repl_url()], "earliest", "");
    svc.spawn();
    svc.wait_caught_up(srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));
    (svc, txs)
}

fn refused_server(flavor: Flavor) {
    let Some(a) = TestServer::start(flavor, &[]) else {
        return;
    };
    let (mut svc, _) = streamed_once(&format!("refused-{}", flavor.name()), &a, seed(), 5);
    let cp = svc
        .checkpoint_bytes()
        .expect("checkpoint after a clean run");
    let cp_set = svc.checkpoint_gtid().unwrap();
    let backup = snapshot(&svc.backup);
    let dead = a.repl_url();
    a.kill();
    let b = TestServer::start(flavor, &[]).expect("second server");
    // What the error must name: the checkpoint's transactions the server lacks.
    let missing_name = match flavor {
        Flavor::MariaDb => cp_set.clone(),
        Flavor::MySql => gtid_key(flavor, &format!("{}:1", cp_set.split(':').next().unwrap())).0,
    };
    svc.set_urls(&[dead, b.repl_url()]);
    for (case, setup) in [
        ("an empty server", ""),
        // More transactions than ours: a MariaDB sequence number past the checkpoint.
        (
            "a server with more transactions than ours",
            "CREATE DATABASE other; CREATE TABLE other.x (i INT PRIMARY KEY); \
             INSERT INTO other.x VALUES (1); INSERT INTO other.x VALUES (2); INSERT INTO other.x VALUES (3); \
             INSERT INTO other.x VALUES (4); INSERT INTO other.x VALUES (5); INSERT INTO other.x VALUES (6); \
             INSERT INTO other.x VALUES (7); INSERT INTO other.x VALUES (8); INSERT INTO other.x VALUES (9);",
        ),
    ] {
        if !setup.is_empty() {
            b.exec(setup);
        }
        let out = svc.run_once(Duration::from_secs(60));
        let err = out.stderr_text();
        eprintln!("refused {} ({case}): {}; stderr:\n{}", flavor.name(), out.describe_status(), err.trim());
        assert!(out.status.is_some(), "{case}: rowstream did not exit within 60 s\n{err}");
        assert!(!out.success(), "{case}: rowstream exited 0 on a server that lacks our transactions\n{err}");
        assert!(
            err.contains(&missing_name),
            "{case}: the error does not name the missing transactions ({missing_name})\n{err}"
        );
        assert_eq!(svc.checkpoint_bytes().as_deref(), Some(&cp[..]), "{case}: the checkpoint changed");
        assert_eq!(snapshot(&svc.backup), backup, "{case}: the backup changed");
        assert!(
            !backup_cat(&svc.backup).join("\n").contains("\"db\":\"other\""),
            "{case}: rows of the unrelated server in the backup"
        );
    }
}

flavor_tests!(refused_server: refused_unrelated_server_mariadb, refused_unrelated_server_mysql);

/// Failover to a replica that lags behind what rowstream already delivered (its receiver
/// was stopped, then it was promoted and took new writes): rowstream must not stream from
/// it, must say which transactions it lacks, and must not move the checkpoint.
fn lagging_replica_refused(flavor: Flavor) {
    let Some((primary, replica)) = primary_and_replica(flavor) else {
        return;
    };
    let mut svc = file_service(
        &format!("lagging-{}", flavor.name()),
        &[primary.repl_url(), replica.repl_url()],
        "earliest",
        "",
    );
    let mut w = Workload::new(seed());
    svc.spawn();
    for _ in 0..3 {
        write_tx(&primary, &mut w, 5).unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    svc.wait_caught_up(&primary, Duration::from_secs(60));
    replica.exec(match flavor {
        Flavor::MariaDb => "STOP SLAVE IO_THREAD",
        Flavor::MySql => "STOP REPLICA IO_THREAD",
    });
    for _ in 0..5 {
        write_tx(&primary, &mut w, 5).unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    svc.wait_caught_up(&primary, Duration::from_secs(60));
    let delivered = svc.checkpoint_gtid().unwrap();
    primary.kill();
    let pos = replica.promote();
    // New writes on the promoted replica: with MariaDB its sequence numbers pass ours.
    w.rows = table(&replica);
    for _ in 0..12 {
        write_tx(&replica, &mut w, 5).unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    eprintln!(
        "lagging {}: delivered {delivered}, replica promoted at {pos}, now at {}",
        flavor.name(),
        replica.gtid_executed()
    );
    let t = Instant::now();
    let exited = svc.wait_exit_within(Duration::from_secs(15));
    let outcome = match exited {
        Some(st) => format!(
            "exited by itself after {:.1} s: {st}",
            t.elapsed().as_secs_f64()
        ),
        None => {
            let (st, took) = svc.sigterm(Duration::from_secs(10));
            format!(
                "still running after 15 s (retrying); SIGTERM: {st} in {:.2} s",
                took.as_secs_f64()
            )
        }
    };
    let log = std::fs::read_to_string(&svc.log).unwrap();
    eprintln!(
        "lagging {}: rowstream {outcome}; last log line: {}",
        flavor.name(),
        log.trim().lines().last().unwrap_or("")
    );
    assert!(
        exited.is_none_or(|st| !st.success()),
        "rowstream exited 0 after failing over to a server that lacks delivered transactions"
    );
    let cp = svc.checkpoint_gtid().unwrap();
    assert_eq!(
        gtid_seqs(flavor, &cp),
        gtid_seqs(flavor, &delivered),
        "the checkpoint moved: {delivered} -> {cp}"
    );
    let replica_tag = match flavor {
        Flavor::MariaDb => format!("-{}-", replica.server_id),
        Flavor::MySql => replica
            .query_value("SELECT @@server_uuid")
            .unwrap()
            .to_lowercase(),
    };
    let from_replica: Vec<String> = read_backup(&svc.backup)
        .into_iter()
        .map(|t| t.gtid)
        .filter(|g| g.contains(&replica_tag))
        .collect();
    assert!(
        from_replica.is_empty(),
        "transactions of the diverged replica in the backup: {from_replica:?}"
    );
    let missing_name = match flavor {
        Flavor::MariaDb => delivered.clone(),
        Flavor::MySql => delivered.split(':').next().unwrap().to_string(),
    };
    let after_kill = log.rsplit("binlog dump started").next().unwrap_or("");
    assert!(
        log.lines().any(|l| (l.contains("ERROR")
            || l.contains("WARN")
            || l.starts_with("rowstream:"))
            && l.contains(&format!("{}", replica.port))
            && l.contains(&missing_name))
            || after_kill.contains(&missing_name),
        "no error naming the missing transactions ({missing_name}) of the replica :{}\n{}",
        replica.port,
        svc.log_tail()
    );
}

flavor_tests!(lagging_replica_refused: lagging_replica_refused_mariadb, lagging_replica_refused_mysql);

// ---------------------------------------------------------------------------------------
// 4. corrupt checkpoint

#[test]
fn corrupt_checkpoint() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let (svc, _) = streamed_once("corrupt", &srv, seed(), 5);
    let good = svc.checkpoint_bytes().unwrap();
    // More changes, so a run that ignored the checkpoint would have something to write.
    srv.exec("INSERT INTO s.t VALUES (1000000, 1.00, 'after the checkpoint')");
    let backup = snapshot(&svc.backup);
    let half = good[..good.len() / 2].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\xffgarbage{{{\n".to_vec()),
        ("empty", Vec::new()),
        ("truncated", half),
        ("unknown version", br#"{"version":99,"flavor":"mariadb","gtid_set":"0-1-5","server":"x","updated_at":"y"}"#.to_vec()),
        ("bad gtid", br#"{"version":1,"flavor":"mariadb","gtid_set":"zzz","server":"x","updated_at":"y"}"#.to_vec()),
        ("bad flavor", br#"{"version":1,"flavor":"oracle","gtid_set":"0-1-5","server":"x","updated_at":"y"}"#.to_vec()),
    ];
    for (case, bytes) in cases {
        std::fs::write(svc.checkpoint_path(), &bytes).unwrap();
        let out = svc.run_once(Duration::from_secs(30));
        let err = out.stderr_text();
        assert!(
            out.status.is_some() && !out.success(),
            "{case}: expected a non-zero exit, got {}\n{err}",
            out.describe_status()
        );
        assert!(
            err.contains("corrupt"),
            "{case}: the error does not say the checkpoint is corrupt:\n{err}"
        );
        assert!(
            err.contains(&svc.checkpoint_path().display().to_string()),
            "{case}: the error does not name the file:\n{err}"
        );
        assert_eq!(
            svc.checkpoint_bytes().unwrap(),
            bytes,
            "{case}: the checkpoint was rewritten"
        );
        assert!(
            !svc.cp_dir.join("checkpoint.json.tmp").exists(),
            "{case}: a checkpoint.json.tmp was written"
        );
        assert_eq!(snapshot(&svc.backup), backup, "{case}: the backup changed");
        eprintln!(
            "corrupt checkpoint ({case}): {}: {}",
            out.describe_status(),
            err.trim().lines().last().unwrap_or("")
        );
    }
    // A directory where the file should be: unreadable, not "no checkpoint".
    std::fs::remove_file(svc.checkpoint_path()).unwrap();
    std::fs::create_dir(svc.checkpoint_path()).unwrap();
    let out = svc.run_once(Duration::from_secs(30));
    assert!(
        out.status.is_some() && !out.success(),
        "checkpoint.json is a directory: expected a non-zero exit, got {}\n{}",
        out.describe_status(),
        out.stderr_text()
    );
    assert_eq!(snapshot(&svc.backup), backup, "the backup changed");
}

// ---------------------------------------------------------------------------------------
// 5. unwritable backup dir

#[test]
fn unwritable_backup_dir() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    srv.exec(SCHEMA);
    srv.exec("INSERT INTO s.t VALUES (1, 1.50, 'a'), (2, -2.25, 'b')");
    // Fresh start: nothing may be checkpointed.
    let mut svc = file_service("unwritable", &[srv.repl_url()], "earliest", "");
    let file = svc.tmp.0.join("file.txt");
    std::fs::write(&file, "a regular file").unwrap();
    let bad = file.join("backup");
    svc.set_backup(bad.clone());
    let out = svc.run_once(Duration::from_secs(30));
    let err = out.stderr_text();
    eprintln!(
        "unwritable backup dir: {}: {}",
        out.describe_status(),
        err.trim().lines().last().unwrap_or("")
    );
    assert!(
        out.status.is_some() && !out.success(),
        "expected a non-zero exit, got {}\n{err}",
        out.describe_status()
    );
    assert!(
        err.contains(&bad.display().to_string()),
        "the error does not name the backup dir:\n{err}"
    );
    assert!(
        err.contains("Not a directory") || err.contains("not a directory"),
        "the error does not say what is wrong:\n{err}"
    );
    assert!(
        !svc.checkpoint_path().exists(),
        "a checkpoint was written although nothing is in the backup"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "a regular file");

    // With a checkpoint: it does not advance.
    let good = svc.tmp.0.join("backup");
    svc.set_backup(good);
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));
    let cp = svc.checkpoint_bytes().unwrap();
    srv.exec("INSERT INTO s.t VALUES (3, 3.00, 'c')");
    svc.set_backup(bad);
    let out = svc.run_once(Duration::from_secs(30));
    assert!(
        out.status.is_some() && !out.success(),
        "expected a non-zero exit, got {}\n{}",
        out.describe_status(),
        out.stderr_text()
    );
    assert_eq!(
        svc.checkpoint_bytes().unwrap(),
        cp,
        "the checkpoint changed"
    );
}

// ---------------------------------------------------------------------------------------
// 6. full disk

/// A tmpfs mounted at a directory, unmounted on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let out = std::process::Command::new("umount").arg(&self.0).output();
        if !out.is_ok_and(|o| o.status.success()) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .output();
        }
    }
}

#[test]
fn full_disk() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let mut svc = file_service("fulldisk", &[srv.repl_url()], "earliest", "");
    std::fs::create_dir_all(&svc.backup).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&svc.backup)
        .output()
        .expect("run mount");
    if !out.status.success() {
        let why = format!(
            "cannot mount a tmpfs (root needed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if common::require_servers() {
            panic!("{why}");
        }
        eprintln!("SKIP: {why}");
        return;
    }
    let _mount = Mount(svc.backup.clone());
    srv.exec(SCHEMA);
    // A few small transactions first, so the checkpoint has advanced before the disk fills.
    let mut txs = Vec::new();
    let mut w = Workload::new(seed());
    for _ in 0..5 {
        txs.push(write_tx(&srv, &mut w, 3).unwrap_or_else(|(e, _)| panic!("{e}")));
    }
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    let cp_before = gtid_seqs(Flavor::MariaDb, &svc.checkpoint_gtid().unwrap());
    // Then about 4 MB of change events, in autocommit transactions of 100 rows. The
    // backup is written zstd-compressed: the values are random (6 bits per character),
    // so that they still fill the 1 MB filesystem (~1.8 MB compressed).
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rnd = seed() | 1;
    let mut random_v = || -> String {
        (0..190)
            .map(|_| {
                rnd ^= rnd << 13;
                rnd ^= rnd >> 7;
                rnd ^= rnd << 17;
                char::from(ALPHABET[(rnd >> 58) as usize])
            })
            .collect()
    };
    let mut next_id = 1_000_000;
    for _ in 0..100 {
        let ops: Vec<Op> = (0..100)
            .map(|i| {
                next_id += 1;
                Op::Ins(
                    next_id,
                    Row {
                        d: format!("{i}.25"),
                        v: random_v(),
                    },
                )
            })
            .collect();
        let vals: Vec<String> = ops
            .iter()
            .map(|op| match op {
                Op::Ins(id, r) => format!("({id}, {}, '{}')", r.d, r.v),
                _ => unreachable!(),
            })
            .collect();
        srv.exec(&format!(
            "INSERT INTO s.t (id, d, v) VALUES {}",
            vals.join(",")
        ));
        txs.push(WTx {
            gtid: srv.query_value("SELECT @@gtid_binlog_pos").unwrap(),
            ops,
        });
    }
    let t = Instant::now();
    // Must exit within 60 s of the backup filesystem filling up.
    let st = svc.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&svc.log).unwrap();
    eprintln!(
        "full disk: exit {st} after {:.1} s; checkpoint {:?}; last log line: {}",
        t.elapsed().as_secs_f64(),
        svc.checkpoint_gtid(),
        log.trim().lines().last().unwrap_or("")
    );
    assert!(
        !st.success(),
        "rowstream exited 0 with a full backup filesystem\n{log}"
    );
    assert!(
        log.contains("No space left") || log.contains("ENOSPC"),
        "the error does not name ENOSPC / No space left on device:\n{}",
        svc.log_tail()
    );
    assert_checkpoint_durable(&svc, Flavor::MariaDb, "after the disk filled up");
    let cp = svc
        .checkpoint_gtid()
        .map(|c| gtid_seqs(Flavor::MariaDb, &c))
        .unwrap_or_default();
    let all = gtid_seqs(Flavor::MariaDb, &srv.gtid_executed());
    assert!(cp_before.is_subset(&cp), "the checkpoint went back");
    assert!(
        cp.len() < all.len(),
        "the checkpoint covers everything ({} transactions) although the disk is full",
        all.len()
    );
    let raw = raw_segments(&svc.backup);
    eprintln!(
        "full disk: checkpoint covers {} of {} transactions; {} complete in the backup files",
        cp.len(),
        all.len(),
        raw.markers.len()
    );

    // Space again: the restart cuts what lies past the checkpoint and catches up, exactly once.
    let out = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&svc.backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));
    let n = verify_backup(
        Flavor::MariaDb,
        &svc.backup,
        &srv.gtid_executed(),
        &txs,
        &table(&srv),
    );
    eprintln!("full disk: after freeing space the backup holds all {n} transactions exactly once");
}

// ---------------------------------------------------------------------------------------
// 7. a 1 GB transaction

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn one_gb_transaction() {
    const ROWS: u64 = 1_000_000;
    let Some(srv) = TestServer::start(Flavor::MariaDb, &["--innodb-buffer-pool-size=512M"]) else {
        return;
    };
    srv.exec("CREATE DATABASE s; CREATE TABLE s.big (id INT PRIMARY KEY, v VARCHAR(1100) NOT NULL) DEFAULT CHARSET=latin1");
    let mut svc = file_service("onegb", &[srv.repl_url()], "earliest", "");
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(30));
    let t = Instant::now();
    srv.exec(&format!(
        "USE s; INSERT INTO s.big SELECT seq, CONCAT(LPAD(seq, 10, '0'), REPEAT('x', 1000)) FROM seq_1_to_{ROWS}"
    ));
    let insert = t.elapsed();
    let gtid = srv.gtid_executed();
    let binlog: u64 = srv
        .query("SHOW BINARY LOGS")
        .iter()
        .map(|r| r[1].as_deref().unwrap_or("0").parse::<u64>().unwrap_or(0))
        .sum();
    let t = Instant::now();
    svc.wait_caught_up(&srv, Duration::from_secs(600));
    let stream = t.elapsed();
    let hwm = vm_hwm_kib(svc.pid());
    let (st, took) = svc.sigterm(Duration::from_secs(10));
    assert!(st.success(), "{st}\n{}", svc.log_tail());
    eprintln!(
        "1 GB transaction: PEAK RSS (VmHWM) of rowstream run = {:.1} MiB; {ROWS} rows, binlog {:.0} MiB, \
         INSERT {:.1} s, streamed into the backup {:.1} s after the commit, SIGTERM exit {:.2} s",
        hwm as f64 / 1024.0,
        binlog as f64 / 1048576.0,
        insert.as_secs_f64(),
        stream.as_secs_f64(),
        took.as_secs_f64()
    );

    // Exactly once: one END marker for the GTID with event_count = ROWS, and every id once.
    let t = Instant::now();
    let mut rd = BackupReader::open(&svc.backup).unwrap();
    let mut line = Vec::new();
    let mut seen = vec![false; ROWS as usize + 1];
    let (mut events, mut markers, mut dup) = (0u64, Vec::new(), 0u64);
    let gtid_field = format!("\"gtid\":\"{gtid}\"");
    while let Some(kind) = rd.read_line(&mut line).unwrap() {
        match kind {
            LineKind::TxEnd => markers.push(parse_tx_end(&line).unwrap()),
            LineKind::Change => {
                let s = std::str::from_utf8(&line).unwrap();
                if !s.contains(&gtid_field) {
                    continue;
                }
                events += 1;
                let id: usize = s
                    .strip_prefix("{\"before\":null,\"after\":{\"id\":")
                    .and_then(|r| r.split(',').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected event: {}", &s[..s.len().min(200)]));
                if std::mem::replace(&mut seen[id], true) {
                    dup += 1;
                }
            }
            LineKind::SchemaChange => {}
        }
    }
    let ours: Vec<&TxEnd> = markers.iter().filter(|m| m.id == gtid).collect();
    assert_eq!(ours.len(), 1, "END markers of {gtid}: {ours:?}");
    assert_eq!(ours[0].event_count, ROWS);
    assert_eq!(events, ROWS, "row events of {gtid}");
    assert_eq!(dup, 0, "duplicated rows");
    assert!(seen[1..].iter().all(|&b| b), "missing rows");
    eprintln!(
        "1 GB transaction: backup verified in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        hwm < 256 * 1024,
        "peak RSS {} KiB >= 256 MiB for a 1 GB transaction",
        hwm
    );
}

/// Scrapes `GET /metrics` on `port` and returns the value of each unlabelled series
/// (labelled ones keyed as `name{labels}`).
fn scrape(port: u16) -> BTreeMap<String, f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").expect("end of head") + 4..];
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (
                k.to_string(),
                v.parse().unwrap_or_else(|_| panic!("not a number: {l}")),
            )
        })
        .collect()
}

/// The Prometheus endpoint reports what the backup holds: every record read was made
/// durable by the sink, the checkpoint was written, the stream is connected and not behind.
#[test]
fn metrics_endpoint() {
    let Some(srv) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    srv.exec(SCHEMA);
    let mut w = Workload::new(seed());
    for _ in 0..20 {
        write_tx(&srv, &mut w, 20).unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let mut svc = file_service("metrics", &[srv.repl_url()], "earliest", &extra);
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    let backup_records = backup_cat(&svc.backup)
        .iter()
        .filter(|l| !l.starts_with("{\"transaction\":{\"status\":\"END\""))
        .count() as f64;
    // The ack that moved the checkpoint may be counted a moment after the file is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(port);
        if m.get("rowstream_sink_records_acked_total{sink=\"backup\"}") == Some(&backup_records)
            || Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        m.get("rowstream_source_records_total"),
        Some(&backup_records),
        "{m:?}"
    );
    assert_eq!(
        m.get("rowstream_sink_records_acked_total{sink=\"backup\"}"),
        Some(&backup_records),
        "{m:?}"
    );
    assert_eq!(m.get("rowstream_source_connected"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("rowstream_lag_seconds"), Some(&0.0), "{m:?}");
    assert!(m["rowstream_checkpoint_writes_total"] >= 1.0, "{m:?}");
    assert!(m["rowstream_source_transactions_total"] >= 20.0, "{m:?}");
    svc.stop(Duration::from_secs(10));
}
