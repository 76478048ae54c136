//! The apply engine against real targets: every value kind round-trips
//! (written, read back as the server prints it), updates and deletes with
//! and without primary key, exactly once across a dropped sink, conflicts
//! under stop / log / skip, a transaction spanning 50 batches, and the
//! same result with 4 threads as with 1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;

use common::{Flavor, Target};
use rowstream_api::testing::{change, gtid, FakeCommitted};
use rowstream_api::{
    Ack, Batch, ColumnType, Commit, Date, DateTime, Op, Record, Row, Sink, SinkError, TableMeta,
    Time, Value,
};
use rowstream_mysql::{MysqlSink, MysqlSinkConfig, OnConflict};

fn row(cols: &[&str], values: Vec<Value>) -> Row {
    Row {
        columns: cols.iter().map(|c| Arc::from(*c)).collect(),
        values,
    }
}

/// Row change `i` of transaction `tx` on `db.table` (first column = key
/// unless `pk` is empty).
#[allow(clippy::too_many_arguments)]
fn ev(
    op: Op,
    table: &str,
    tx: u64,
    i: u64,
    before: Option<Row>,
    after: Option<Row>,
    pk: &[usize],
    meta: Option<Arc<TableMeta>>,
) -> Record {
    let img = after.clone().or(before.clone()).unwrap();
    let mut e = change(tx, i, "t", table, img);
    e.op = op;
    e.set_rows(before, after);
    e.shared_mut().primary_key = Arc::from(pk);
    e.shared_mut().table = meta;
    Record::Change(e)
}

/// A batch of whole transactions `(tx, records)`, then `open` records of a
/// transaction that continues in the next batch.
fn batch(seq: u64, txs: Vec<(u64, Vec<Record>)>, open: Vec<Record>) -> Batch {
    let mut b = Batch {
        seq,
        ..Default::default()
    };
    for (tx, recs) in txs {
        let n = recs.len() as u64;
        b.records.extend(recs);
        b.commits.push(Commit {
            end: b.records.len(),
            gtid: gtid(tx).into(),
            events: n,
        });
    }
    b.records.extend(open);
    b
}

fn cfg(t: &Target, dir: &tempfile::TempDir, on_conflict: OnConflict) -> MysqlSinkConfig {
    let mut c = MysqlSinkConfig::new("apply", &t.url);
    c.threads = 1;
    c.on_conflict = on_conflict;
    c.conflict_log = Some(dir.path().join("conflicts.jsonl"));
    c
}

/// A fresh target of `flavor` prepared with `sql`, a directory for the
/// conflict log and a `stop` sink config with `threads` (None: SKIP).
async fn fixture(
    flavor: Flavor,
    sql: &str,
    threads: usize,
) -> Option<(Target, tempfile::TempDir, MysqlSinkConfig)> {
    let t = Target::start(flavor)?;
    t.exec(sql).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(&t, &dir, OnConflict::Stop);
    c.threads = threads;
    Some((t, dir, c))
}

async fn start(cfg: &MysqlSinkConfig) -> MysqlSink {
    MysqlSink::start(cfg, &FakeCommitted::none())
        .await
        .expect("sink starts")
}

/// Writes the batches and flushes; the first failure.
async fn write_all(sink: &mut MysqlSink, batches: Vec<Batch>) -> Result<(), SinkError> {
    let mut rxs = Vec::new();
    for b in batches {
        let (ack, rx) = Ack::new();
        sink.write(Arc::new(b), ack).await?;
        rxs.push(rx);
    }
    sink.flush().await?;
    for rx in rxs {
        rx.await.expect("ack resolved")?;
    }
    Ok(())
}

async fn apply(cfg: &MysqlSinkConfig, batches: Vec<Batch>) -> Result<(), SinkError> {
    let mut s = start(cfg).await;
    write_all(&mut s, batches).await
}

fn conflicts(dir: &tempfile::TempDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.path().join("conflicts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Every value kind

struct Col {
    name: &'static str,
    ddl: &'static str,
    ty: ColumnType,
    value: Value,
    /// A second value for the update.
    value2: Value,
    select: &'static str,
    expect: &'static str,
    expect2: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn col(
    name: &'static str,
    ddl: &'static str,
    ty: ColumnType,
    value: Value,
    value2: Value,
    select: &'static str,
    expect: &'static str,
    expect2: &'static str,
) -> Col {
    Col {
        name,
        ddl,
        ty,
        value,
        value2,
        select,
        expect,
        expect2,
    }
}

#[allow(clippy::too_many_arguments)]
fn dt(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, micros: u32, fsp: u8) -> Value {
    Value::DateTime(DateTime {
        date: Date {
            year: y,
            month: mo,
            day: d,
        },
        hour: h,
        minute: mi,
        second: s,
        micros,
        fsp,
    })
}

fn point(x: f64, y: f64) -> Vec<u8> {
    let mut w = vec![1, 1, 0, 0, 0];
    w.extend_from_slice(&x.to_le_bytes());
    w.extend_from_slice(&y.to_le_bytes());
    w
}

const BLOB_SHA256: &str = "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880";
const C3_SHA256: &str = "ae3f4619b0413d70d3004b9131c3752153074e45725be13b9a148978895e359e";

/// One line per column: kept unformatted so the table stays readable.
#[rustfmt::skip]
fn type_columns(flavor: Flavor) -> Vec<Col> {
    let int = |bits, unsigned| ColumnType::Int { bits, unsigned };
    let date = |year, month, day| Value::Date(Date { year, month, day });
    let time = |negative, hours, minute, second, micros| Value::Time(Time { negative, hours, minute, second, micros, fsp: 2 });
    let labels = |l: &[&str]| -> Arc<[Arc<str>]> { l.iter().map(|s| Arc::from(*s)).collect() };
    let ts = |secs, micros| Value::Timestamp { secs, micros, fsp: 6 };
    let (blob, blob_sha, c3_sha) = ((0..=255).collect(), BLOB_SHA256, C3_SHA256);
    let mut cols = vec![
        col("u64", "BIGINT UNSIGNED", int(64, true), Value::UInt(u64::MAX), Value::UInt(0), "u64", "18446744073709551615", "0"),
        col("i64", "BIGINT", int(64, false), Value::Int(i64::MIN), Value::Int(i64::MAX), "i64", "-9223372036854775808", "9223372036854775807"),
        col("i8", "TINYINT", int(8, false), Value::Int(-128), Value::Int(0), "i8", "-128", "0"),
        col("f", "FLOAT", ColumnType::Float, Value::Float(1.1), Value::Float(-3.4e38), "f", "1.1", "-3.4e38"),
        col("d", "DOUBLE", ColumnType::Double, Value::Double(0.1), Value::Double(-1e308), "d", "0.1", "-1e308"),
        col("dec", "DECIMAL(30,4)", ColumnType::Decimal { precision: 30, scale: 4 }, Value::Decimal("-12345678901234567890123456.1234".into()), Value::Decimal("0.0001".into()), "`dec`", "-12345678901234567890123456.1234", "0.0001"),
        col("s", "VARCHAR(50) CHARACTER SET utf8mb4", ColumnType::String, Value::String("héllo 😀 'q' \\".into()), Value::String(String::new().into()), "s", "héllo 😀 'q' \\", ""),
        col("l1", "VARCHAR(20) CHARACTER SET latin1", ColumnType::String, Value::String("café ÿ".into()), Value::Null, "CONCAT(l1, ' ', HEX(l1))", "café ÿ 636166E920FF", "NULL"),
        col("vb", "VARBINARY(10)", ColumnType::Bytes, Value::Bytes(vec![0, 255, 128, 39, 92]), Value::Bytes(vec![]), "HEX(vb)", "00FF80275C", ""),
        col("bl", "BLOB", ColumnType::Bytes, Value::Bytes(blob), Value::Bytes(vec![0xc3]), "SHA2(bl, 256)", blob_sha, c3_sha),
        col("dz", "DATE", ColumnType::Date, date(0, 0, 0), date(2024, 0, 0), "dz", "0000-00-00", "2024-00-00"),
        col("dtm", "DATETIME(3)", ColumnType::DateTime { fsp: 3 }, dt(2024, 2, 29, 23, 5, 1, 120_000, 3), dt(0, 0, 0, 0, 0, 0, 0, 3), "dtm", "2024-02-29 23:05:01.120", "0000-00-00 00:00:00.000"),
        col("ts", "TIMESTAMP(6) NULL", ColumnType::Timestamp { fsp: 6 }, ts(1_700_000_000, 5), ts(0, 0), "ts", "2023-11-14 22:13:20.000005", "0000-00-00 00:00:00.000000"),
        col("tm", "TIME(2)", ColumnType::Time { fsp: 2 }, time(true, 838, 59, 59, 0), time(true, 0, 0, 1, 500_000), "tm", "-838:59:59.00", "-00:00:01.50"),
        col("b1", "BIT(1)", ColumnType::Bool, Value::Bool(true), Value::Bool(false), "b1+0", "1", "0"),
        col("b9", "BIT(9)", ColumnType::Bit { bits: 9 }, Value::UInt(511), Value::UInt(256), "b9+0", "511", "256"),
        col("e", "ENUM('a','b c')", ColumnType::Enum { labels: labels(&["a", "b c"]) }, Value::String("b c".into()), Value::String("a".into()), "e", "b c", "a"),
        col("st", "SET('x','y','z')", ColumnType::Set { labels: labels(&["x", "y", "z"]) }, Value::String("x,z".into()), Value::String(String::new().into()), "st", "x,z", ""),
        col("y", "YEAR", ColumnType::Year, Value::Int(2155), Value::Int(0), "y", "2155", "0000"),
        col("g", "GEOMETRY", ColumnType::Geometry, Value::Geometry { srid: 0, wkb: point(1.0, 2.5) }, Value::Geometry { srid: 0, wkb: point(-1.0, 0.0) }, "ST_AsText(g)", "POINT(1 2.5)", "POINT(-1 0)"),
        col("n", "VARCHAR(5) NULL", ColumnType::String, Value::Null, Value::String(String::new().into()), "COALESCE(n, 'NULL')", "NULL", ""),
    ];
    match flavor {
        Flavor::MySql => {
            cols.push(col("j", "JSON", ColumnType::Json, Value::Json(serde_json::json!({"a": [1, 2.5, "x"], "b": null})), Value::Json(serde_json::json!("s")), "j", "{\"a\": [1, 2.5, \"x\"], \"b\": null}", "\"s\""));
            cols.push(col("v", "VECTOR(2)", ColumnType::Vector, Value::Vector(vec![1.0, -2.5]), Value::Vector(vec![0.0, 3.0]), "VECTOR_TO_STRING(v)", "[1.00000e+00,-2.50000e+00]", "[0.00000e+00,3.00000e+00]"));
        }
        Flavor::MariaDb => {
            cols.push(col("j", "JSON", ColumnType::Json, Value::String("{\"a\": [1, 2.5]}".into()), Value::String("\"s\"".into()), "j", "{\"a\": [1, 2.5]}", "\"s\""));
        }
    }
    cols
}

async fn types_round_trip(flavor: Flavor) {
    let Some(t) = Target::start(flavor) else {
        return;
    };
    let cols = type_columns(flavor);
    let defs: Vec<String> = cols
        .iter()
        .map(|c| format!("`{}` {}", c.name, c.ddl))
        .collect();
    t.exec(&format!(
        "CREATE DATABASE t;\nCREATE TABLE t.types (id INT PRIMARY KEY, {}) DEFAULT CHARSET=utf8mb4",
        defs.join(", ")
    ))
    .await;
    let mut names = vec!["id"];
    names.extend(cols.iter().map(|c| c.name));
    let meta = Arc::new(TableMeta {
        columns: row(&names, vec![]).columns,
        types: std::iter::once(ColumnType::Int {
            bits: 32,
            unsigned: false,
        })
        .chain(cols.iter().map(|c| c.ty.clone()))
        .collect(),
        nullable: vec![true; names.len()],
        primary_key: Arc::from([0usize].as_slice()),
    });
    let image = |id: i64, second: bool| {
        let mut v = vec![Value::Int(id)];
        v.extend(cols.iter().map(|c| {
            if second {
                c.value2.clone()
            } else {
                c.value.clone()
            }
        }));
        row(&names, v)
    };
    let m = Some(meta);
    let dir = tempfile::tempdir().unwrap();
    // Row 1 inserted (c), row 2 a snapshot read (r, upsert), row 3 inserted
    // then updated to the second values and back: the updates find the row
    // by its full before image, so every type's comparison is exercised
    // (on_conflict = stop fails the test on any mismatch).
    let c = |tx, i, b: Option<(i64, bool)>, a: Option<(i64, bool)>| {
        let op = match (b, a) {
            (None, _) if tx == 2 => Op::Read,
            (None, _) => Op::Create,
            _ => Op::Update,
        };
        let (b, a) = (b.map(|(i, s)| image(i, s)), a.map(|(i, s)| image(i, s)));
        ev(op, "types", tx, i, b, a, &[0], m.clone())
    };
    let b = batch(
        1,
        vec![
            (1, vec![c(1, 0, None, Some((1, false)))]),
            (2, vec![c(2, 0, None, Some((2, true)))]),
            (
                3,
                vec![
                    c(3, 0, None, Some((3, false))),
                    c(3, 1, Some((3, false)), Some((3, true))),
                    c(3, 2, Some((3, true)), Some((4, false))),
                    c(3, 3, Some((4, false)), Some((4, true))),
                ],
            ),
            // Two updates keeping their keys: the bulk path, whose joined
            // comparison must match every type exactly (no fallback).
            (
                4,
                vec![
                    c(4, 0, Some((1, false)), Some((1, true))),
                    c(4, 1, Some((2, true)), Some((2, false))),
                ],
            ),
        ],
        vec![],
    );
    let mut c = cfg(&t, &dir, OnConflict::Stop);
    c.name = format!("types-{flavor:?}");
    let u0 = status(&t, "Com_update_multi").await;
    apply(&c, vec![b]).await.expect("applied");
    assert_eq!(
        status(&t, "Com_update_multi").await - u0,
        1,
        "the bulk path ran"
    );
    let m = rowstream_api::metrics::render();
    let fallbacks = format!(
        "rowstream_mysql_bulk_fallbacks_total{{sink=\"{}\"}} 0",
        c.name
    );
    assert!(m.contains(&fallbacks), "{fallbacks} in {m}");
    let sel: Vec<&str> = cols.iter().map(|c| c.select).collect();
    let got = t
        .rows(&format!(
            "USE t;\nSELECT id, {} FROM types ORDER BY id",
            sel.join(", ")
        ))
        .await;
    assert_eq!(got.len(), 3, "{got:?}");
    for (r, (id, second)) in got.iter().zip([(1, true), (2, false), (4, true)]) {
        assert_eq!(r[0], id.to_string());
        for (c, v) in cols.iter().zip(&r[1..]) {
            let want = if second { c.expect2 } else { c.expect };
            assert_eq!(v, want, "{flavor:?} column {} of row {id}", c.name);
        }
    }
    assert!(conflicts(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_round_trip_mariadb() {
    types_round_trip(Flavor::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_round_trip_mysql() {
    types_round_trip(Flavor::MySql).await;
}

// ---------------------------------------------------------------------------
// Row addressing, exactly once, conflicts, long transactions

const KV: &str = "CREATE DATABASE t;\nCREATE TABLE t.kv (id INT PRIMARY KEY, v VARCHAR(20));\nCREATE TABLE t.nopk (a INT, b VARCHAR(20))";

fn kv(id: i64, v: &str) -> Row {
    row(&["id", "v"], vec![Value::Int(id), Value::String(v.into())])
}

fn nopk(a: i64, b: &str) -> Row {
    row(&["a", "b"], vec![Value::Int(a), Value::String(b.into())])
}

fn ins(tx: u64, i: u64, r: Row) -> Record {
    ev(Op::Create, "kv", tx, i, None, Some(r), &[0], None)
}

fn upd(tx: u64, i: u64, b: Row, a: Row) -> Record {
    ev(Op::Update, "kv", tx, i, Some(b), Some(a), &[0], None)
}

fn del(tx: u64, i: u64, b: Row) -> Record {
    ev(Op::Delete, "kv", tx, i, Some(b), None, &[0], None)
}

async fn table(t: &Target, sql: &str) -> Vec<String> {
    t.rows(sql).await.into_iter().map(|r| r.join("|")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_delete_with_and_without_primary_key() {
    for flavor in [Flavor::MariaDb, Flavor::MySql] {
        let Some(t) = Target::start(flavor) else {
            continue;
        };
        t.exec(KV).await;
        let np = |op, i, b, a| ev(op, "nopk", 1, i, b, a, &[], None);
        let b1 = batch(
            1,
            vec![(
                1,
                vec![
                    ins(1, 0, kv(1, "a")),
                    ins(1, 1, kv(2, "b")),
                    ins(1, 2, kv(3, "c")),
                    np(Op::Create, 3, None, Some(nopk(1, "x"))),
                    np(Op::Create, 4, None, Some(nopk(1, "x"))),
                    np(Op::Create, 5, None, Some(nopk(2, "y"))),
                ],
            )],
            vec![],
        );
        let np = |op, i, b, a| ev(op, "nopk", 2, i, b, a, &[], None);
        let b2 = batch(
            2,
            vec![(
                2,
                vec![
                    upd(2, 0, kv(1, "a"), kv(1, "A")),
                    upd(2, 1, kv(2, "b"), kv(20, "b")),
                    del(2, 2, kv(3, "c")),
                    np(Op::Update, 3, Some(nopk(1, "x")), Some(nopk(1, "z"))),
                    np(Op::Delete, 4, Some(nopk(2, "y")), None),
                ],
            )],
            vec![],
        );
        let dir = tempfile::tempdir().unwrap();
        apply(&cfg(&t, &dir, OnConflict::Stop), vec![b1, b2])
            .await
            .expect("applied");
        assert_eq!(
            table(&t, "SELECT * FROM t.kv ORDER BY id").await,
            ["1|A", "20|b"]
        );
        assert_eq!(
            table(&t, "SELECT * FROM t.nopk ORDER BY a, b").await,
            ["1|x", "1|z"]
        );
        assert!(conflicts(&dir).is_empty());
    }
}

/// Transaction `k` of the exactly-once workload: inserts row k, changes
/// row k-1 (a replay of it would be a conflict), deletes row k-5.
fn workload_tx(k: u64) -> Vec<Record> {
    let k_ = k as i64;
    let mut r = vec![ins(k, 0, kv(k_, &format!("v{k}")))];
    if k > 1 {
        r.push(upd(
            k,
            1,
            kv(k_ - 1, &format!("v{}", k - 1)),
            kv(k_ - 1, &format!("w{}", k - 1)),
        ));
    }
    if k > 5 {
        r.push(del(k, 2, kv(k_ - 5, &format!("w{}", k - 5))));
    }
    r
}

/// 30 transactions in 12 batches; transaction 13 starts alone in batch 5
/// and ends in batch 6.
fn workload() -> Vec<Batch> {
    let mut out = Vec::new();
    let mut k = 1;
    for seq in 1..=12 {
        let mut txs = Vec::new();
        let mut open = Vec::new();
        if seq == 6 {
            // The rest of transaction 13, whose first record came in batch 5.
            let rest = workload_tx(13).split_off(1);
            let mut b = batch(seq, vec![], rest);
            b.commits.push(Commit {
                end: b.records.len(),
                gtid: gtid(13).into(),
                events: 3,
            });
            k = 14;
            let more = batch(
                seq,
                vec![(k, workload_tx(k)), (k + 1, workload_tx(k + 1))],
                vec![],
            );
            let base = b.records.len();
            b.records.extend(more.records);
            b.commits.extend(more.commits.into_iter().map(|c| Commit {
                end: c.end + base,
                ..c
            }));
            out.push(b);
            k += 2;
            continue;
        }
        while txs.len() < 3 && k <= 30 && seq != 5 {
            txs.push((k, workload_tx(k)));
            k += 1;
        }
        if seq == 5 {
            open = workload_tx(13)[..1].to_vec();
        }
        out.push(batch(seq, txs, open));
    }
    assert_eq!(k, 31);
    out
}

fn workload_result() -> Vec<String> {
    (26..=30)
        .map(|k| {
            if k < 30 {
                format!("{k}|w{k}")
            } else {
                format!("{k}|v{k}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_a_dropped_sink() {
    for (flavor, threads) in [
        (Flavor::MariaDb, 1),
        (Flavor::MariaDb, 4),
        (Flavor::MySql, 4),
    ] {
        exactly_once(flavor, threads).await;
    }
}

async fn exactly_once(flavor: Flavor, threads: usize) {
    let Some((t, dir, c)) = fixture(flavor, KV, threads).await else {
        return;
    };
    // First run: stops after batch 5 (transaction 13 open in the target).
    let mut s = start(&c).await;
    write_all(&mut s, workload().into_iter().take(5).collect())
        .await
        .unwrap();
    drop(s);
    let p = rowstream_mysql::applied(&c).await.unwrap();
    assert_eq!(p.gtid_set, "0-1-12");
    // Second run: dropped with batches written but not flushed (with a pool,
    // jobs in flight): whatever committed is recorded, the rest rolls back.
    let mut s = start(&c).await;
    for b in workload().into_iter().take(9) {
        let (ack, _rx) = Ack::new();
        s.write(Arc::new(b), ack).await.unwrap();
    }
    drop(s);
    // Third run from an empty checkpoint: the progress table skips what
    // the target holds.
    apply(&c, workload())
        .await
        .expect("replay without conflicts");
    assert_eq!(
        table(&t, "SELECT * FROM t.kv ORDER BY id").await,
        workload_result()
    );
    assert!(conflicts(&dir).is_empty());
    let p = rowstream_mysql::applied(&c).await.unwrap();
    assert_eq!(p.gtid_set, "0-1-30");
    // A fourth run applies nothing.
    apply(&c, workload()).await.expect("all skipped");
    assert_eq!(
        table(&t, "SELECT * FROM t.kv ORDER BY id").await,
        workload_result()
    );
    assert_eq!(rowstream_mysql::applied(&c).await.unwrap(), p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_stop_log_skip() {
    for flavor in [Flavor::MariaDb, Flavor::MySql] {
        conflicts_on(flavor).await;
    }
}

async fn conflicts_on(flavor: Flavor) {
    let Some(t) = Target::start(flavor) else {
        return;
    };
    t.exec(KV).await;
    let events = |tx| {
        vec![
            upd(tx, 0, kv(1, "x"), kv(1, "y")),   // target has 1|a
            del(tx, 1, kv(2, "b")),               // target has no 2
            ins(tx, 2, kv(3, "q")),               // target has 3|c
            ins(tx, 3, kv(4, "d")),               // the same row: a replay, no conflict
            upd(tx, 4, kv(5, "old"), kv(5, "e")), // already the after image: a replay
        ]
    };
    let reset = "DELETE FROM t.kv;\nINSERT INTO t.kv VALUES (1, 'a'), (3, 'c'), (4, 'd'), (5, 'e')";
    for (mode, want) in [
        (OnConflict::Stop, vec!["1|a", "3|c", "4|d", "5|e"]),
        (OnConflict::Log, vec!["1|y", "3|q", "4|d", "5|e"]),
        (OnConflict::Skip, vec!["1|a", "3|c", "4|d", "5|e"]),
    ] {
        t.exec(reset).await;
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(&t, &dir, mode);
        c.name = format!("{}-{flavor:?}", mode.as_str());
        let r = apply(&c, vec![batch(1, vec![(7, events(7))], vec![])]).await;
        assert_eq!(
            table(&t, "SELECT * FROM t.kv ORDER BY id").await,
            want,
            "{mode:?}"
        );
        let lines = conflicts(&dir);
        if mode == OnConflict::Stop {
            let e = r.unwrap_err();
            assert!(e.is_fatal());
            let msg = e.to_string();
            for part in ["`t`.`kv`", "0-1-7", "\"x\"", "\"a\""] {
                assert!(msg.contains(part), "{part} in {msg}");
            }
            assert!(lines.is_empty());
            continue;
        }
        r.unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let applied = mode == OnConflict::Log;
        assert_eq!(lines[0]["table"], "`t`.`kv`");
        assert_eq!(lines[0]["key"], serde_json::json!({"id": 1}));
        assert_eq!(lines[0]["gtid"], "0-1-7");
        assert_eq!(lines[0]["op"], "u");
        assert_eq!(lines[0]["expected"], serde_json::json!({"id": 1, "v": "x"}));
        assert_eq!(lines[0]["found"], serde_json::json!({"id": "1", "v": "a"}));
        assert_eq!(lines[0]["applied"], applied);
        assert_eq!(lines[1]["op"], "d");
        assert_eq!(lines[1]["found"], serde_json::Value::Null);
        assert_eq!(lines[2]["op"], "c");
        assert_eq!(lines[2]["found"], serde_json::json!({"id": "3", "v": "c"}));
        let m = rowstream_api::metrics::render();
        let want = format!("rowstream_mysql_conflicts_total{{sink=\"{}\"}} 3", c.name);
        assert!(m.contains(&want), "{want} in {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_spanning_50_batches() {
    for threads in [1, 4] {
        spanning(threads).await;
    }
}

async fn spanning(threads: usize) {
    let Some((t, _dir, c)) = fixture(Flavor::MariaDb, KV, threads).await else {
        return;
    };
    let mut s = start(&c).await;
    for seq in 1..=50u64 {
        let recs: Vec<Record> = (0..100)
            .map(|i| {
                let id = (seq * 100 + i) as i64;
                ins(1, seq * 100 + i, kv(id, "x"))
            })
            .collect();
        let mut b = batch(seq, vec![], recs);
        if seq == 50 {
            b.commits.push(Commit {
                end: b.records.len(),
                gtid: gtid(1).into(),
                events: 5000,
            });
        }
        let (ack, rx) = Ack::new();
        s.write(Arc::new(b), ack).await.unwrap();
        // Acked while the transaction is still open (the pipeline's
        // in-flight bound would otherwise deadlock on it) ...
        assert_eq!(rx.await.unwrap(), Ok(()), "batch {seq}");
        if seq == 25 {
            // ... and nothing is visible before its commit.
            assert_eq!(table(&t, "SELECT COUNT(*) FROM t.kv").await, ["0"]);
        }
    }
    assert_eq!(
        table(&t, "SELECT COUNT(*), COUNT(DISTINCT id) FROM t.kv").await,
        ["5000|5000"]
    );
}

// ---------------------------------------------------------------------------
// Parallel

/// A random workload on 30 keys of `t.kv` (inserts, updates, key moves,
/// deletes) and on `t.nopk`, with before images that follow the history:
/// `n` transactions of 1-4 changes, 10 transactions per batch.
fn random_workload(n: u64, seed: u64) -> Vec<Batch> {
    let mut state = seed;
    let mut rnd = move |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut model: std::collections::BTreeMap<i64, String> = Default::default();
    let mut nopk_rows = 0i64;
    let mut batches = Vec::new();
    let mut txs = Vec::new();
    for tx in 1..=n {
        let mut recs = Vec::new();
        for i in 0..=rnd(4) {
            let id = rnd(30) as i64;
            let v = format!("v{tx}.{i}");
            let rec = match model.get(&id).cloned() {
                None => {
                    model.insert(id, v.clone());
                    ins(tx, i, kv(id, &v))
                }
                Some(old) => match rnd(4) {
                    0 => {
                        model.remove(&id);
                        del(tx, i, kv(id, &old))
                    }
                    1 if !model.contains_key(&(id + 100)) => {
                        model.remove(&id);
                        model.insert(id + 100, old.clone());
                        upd(tx, i, kv(id, &old), kv(id + 100, &old))
                    }
                    2 => {
                        nopk_rows += 1;
                        ev(
                            Op::Create,
                            "nopk",
                            tx,
                            i,
                            None,
                            Some(nopk(nopk_rows, &v)),
                            &[],
                            None,
                        )
                    }
                    _ => {
                        model.insert(id, v.clone());
                        upd(tx, i, kv(id, &old), kv(id, &v))
                    }
                },
            };
            recs.push(rec);
        }
        txs.push((tx, recs));
        if txs.len() == 10 || tx == n {
            batches.push(batch(
                batches.len() as u64 + 1,
                std::mem::take(&mut txs),
                vec![],
            ));
        }
    }
    batches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_equals_serial() {
    for flavor in [Flavor::MariaDb, Flavor::MySql] {
        parallel_equals_serial_on(flavor).await;
    }
}

async fn parallel_equals_serial_on(flavor: Flavor) {
    let Some(t) = Target::start(flavor) else {
        return;
    };
    let mut ddl = String::new();
    for db in ["serial", "par"] {
        ddl += &format!("CREATE DATABASE {db};\nCREATE TABLE {db}.kv (id INT PRIMARY KEY, v VARCHAR(20), UNIQUE KEY (v));\nCREATE TABLE {db}.nopk (a INT, b VARCHAR(20));\n");
    }
    t.exec(&ddl).await;
    let dir = tempfile::tempdir().unwrap();
    for (db, threads) in [("serial", 1), ("par", 4)] {
        let mut c = cfg(&t, &dir, OnConflict::Stop);
        c.name = db.into();
        c.threads = threads;
        c.rename = [("t".to_string(), db.to_string())].into();
        apply(&c, random_workload(400, 7)).await.expect(db);
    }
    for table in ["kv ORDER BY id", "nopk ORDER BY a"] {
        let s = t.rows(&format!("SELECT * FROM serial.{table}")).await;
        let p = t.rows(&format!("SELECT * FROM par.{table}")).await;
        assert!(!s.is_empty());
        assert_eq!(s, p, "{table}");
    }
    assert!(conflicts(&dir).is_empty());
    let workers = t
        .rows("SELECT COUNT(*) FROM rowstream.progress WHERE name = 'par' AND seq > 0")
        .await;
    assert!(workers[0][0].parse::<u32>().unwrap() >= 2, "{workers:?}");
    let p = rowstream_mysql::applied(&cfg(&t, &dir, OnConflict::Stop))
        .await
        .unwrap();
    assert_eq!(p.gtid_set, "", "another sink name");
    let mut c = cfg(&t, &dir, OnConflict::Stop);
    c.name = "par".into();
    assert_eq!(
        rowstream_mysql::applied(&c).await.unwrap().gtid_set,
        "0-1-400"
    );
}

// ---------------------------------------------------------------------------
// DDL, filters

fn ddl(tx: u64, db: &str, table: &str, text: &str) -> Record {
    let Record::Change(e) = ins(tx, 0, kv(0, "")) else {
        unreachable!()
    };
    let mut source = e.source().clone();
    source.db = db.into();
    source.table = table.into();
    Record::SchemaChange(Box::new(rowstream_api::SchemaChange {
        source,
        ts_ms: 0,
        database: db.into(),
        ddl: text.into(),
    }))
}

/// A batch with one transaction named `id` (a chunk marker or a GTID).
fn named(seq: u64, id: &str, recs: Vec<Record>) -> Batch {
    let mut b = batch(seq, vec![], recs);
    b.commits.push(Commit {
        end: b.records.len(),
        gtid: id.into(),
        events: b.records.len() as u64,
    });
    b
}

fn snap(i: u64, r: Row) -> Record {
    ev(Op::Read, "kv", 0, i, None, Some(r), &[0], None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_schema_ddl_and_replayed_ddl() {
    for threads in [1, 4] {
        let Some(t) = Target::start(Flavor::MariaDb) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(&t, &dir, OnConflict::Stop);
        c.threads = threads;
        let chunk1 = named(
            1,
            "snapshot:9:1",
            vec![
                ddl(0, "t", "", "CREATE DATABASE `t`"),
                ddl(
                    0,
                    "t",
                    "kv",
                    "CREATE TABLE `kv` (`id` int PRIMARY KEY, `v` varchar(20))",
                ),
                snap(0, kv(1, "a")),
                snap(1, kv(2, "b")),
            ],
        );
        let chunk2 = named(2, "snapshot:9:2", vec![snap(2, kv(3, "c"))]);
        let alter = named(
            3,
            &gtid(2),
            vec![ddl(2, "t", "", "ALTER TABLE kv ADD COLUMN z INT")],
        );
        let wide = |id, z| {
            row(
                &["id", "v", "z"],
                vec![Value::Int(id), Value::String("w".into()), Value::Int(z)],
            )
        };
        let tx3 = batch(
            4,
            vec![(
                3,
                vec![ins(3, 0, wide(4, 1)), upd(3, 1, wide(4, 1), wide(4, 2))],
            )],
            vec![],
        );
        let mut s = start(&c).await;
        write_all(&mut s, vec![chunk1]).await.unwrap();
        drop(s);
        // Chunk 1 again (skipped: chunks_done = 1), then chunk 2.
        let chunk1 = named(1, "snapshot:9:1", vec![snap(0, kv(1, "changed"))]);
        apply(&c, vec![chunk1, chunk2]).await.unwrap();
        let p = rowstream_mysql::applied(&c).await.unwrap();
        assert_eq!((p.snapshot_id, p.chunks_done), (9, 2));
        // The ALTER ran but rowstream died before its progress commit: the
        // replay right after the recorded point fails as "duplicate column",
        // which counts as applied.
        t.exec("ALTER TABLE t.kv ADD COLUMN z INT").await;
        apply(&c, vec![alter, tx3])
            .await
            .expect("replayed DDL counts as applied");
        assert_eq!(
            table(&t, "SELECT * FROM t.kv ORDER BY id").await,
            ["1|a|NULL", "2|b|NULL", "3|c|NULL", "4|w|2"]
        );
        assert_eq!(
            rowstream_mysql::applied(&c).await.unwrap().gtid_set,
            "0-1-3"
        );
        // Not right after the recorded point: a failing DDL stops the sink.
        let tx4 = batch(5, vec![(4, vec![ins(4, 0, wide(5, 1))])], vec![]);
        let bad = named(
            6,
            &gtid(5),
            vec![ddl(5, "t", "", "ALTER TABLE kv ADD COLUMN z INT")],
        );
        let e = apply(&c, vec![tx4, bad]).await.unwrap_err();
        assert!(
            e.is_fatal() && e.to_string().contains("ALTER TABLE kv"),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_exclude_and_rename() {
    for threads in [1, 4] {
        filters(threads).await;
    }
}

async fn filters(threads: usize) {
    let Some((t, _dir, mut c)) = fixture(
        Flavor::MariaDb,
        "CREATE DATABASE copy;\nCREATE TABLE copy.kv (id INT PRIMARY KEY, v VARCHAR(20))",
        threads,
    )
    .await
    else {
        return;
    };
    c.include = vec!["t.k*".into()];
    c.exclude = vec!["t.kx".into()];
    c.rename = [("t".to_string(), "copy".to_string())].into();
    let other = |tx, table: &str| {
        ev(
            Op::Create,
            table,
            tx,
            1,
            None,
            Some(kv(tx as i64, "x")),
            &[0],
            None,
        )
    };
    let b = batch(
        1,
        vec![
            (
                1,
                vec![ins(1, 0, kv(1, "a")), other(1, "nopk"), other(1, "kx")],
            ),
            (2, vec![other(2, "kx")]), // filtered out: still advances the progress
        ],
        vec![],
    );
    apply(&c, vec![b]).await.unwrap();
    assert_eq!(table(&t, "SELECT * FROM copy.kv").await, ["1|a"]);
    assert_eq!(
        rowstream_mysql::applied(&c).await.unwrap().gtid_set,
        "0-1-2"
    );
    // A table the target lacks: fatal, saying what to do.
    c.include.clear();
    let e = apply(
        &c,
        vec![batch(2, vec![(3, vec![other(3, "nopk")])], vec![])],
    )
    .await
    .unwrap_err();
    assert!(e.is_fatal());
    assert!(
        e.to_string().contains(
            "`copy`.`nopk` does not exist on the target: the backup/stream has no CREATE for it"
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_is_transient_then_resumes() {
    let Some((t, dir, c)) = fixture(Flavor::MariaDb, KV, 4).await else {
        return;
    };
    let mut s = start(&c).await;
    let mut all = workload();
    let rest = all.split_off(7);
    write_all(&mut s, all).await.unwrap();
    t.kill();
    let e = write_all(&mut s, rest).await.unwrap_err();
    assert!(!e.is_fatal(), "a lost target is transient: {e}");
    drop(s);
    assert!(!MysqlSink::start(&c, &FakeCommitted::none())
        .await
        .err()
        .unwrap()
        .is_fatal());
    t.restart();
    apply(&c, workload())
        .await
        .expect("resumes after the restart");
    assert_eq!(
        table(&t, "SELECT * FROM t.kv ORDER BY id").await,
        workload_result()
    );
    assert!(conflicts(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_job_lets_later_ones_roll_back_and_wait() {
    let Some((t, _dir, c)) = fixture(
        Flavor::MariaDb,
        &format!("{KV};\nINSERT INTO t.kv VALUES (1, 'a')"),
        4,
    )
    .await
    else {
        return;
    };
    let mut s = start(&c).await;
    // Another client holds row 1: transaction 1 waits for the lock while 2
    // and 3 (other keys) finish first, wait for their turn, roll back after
    // TURN_WAIT and commit once 1 did.
    let mut holder = t.conn().await;
    use mysql_async::prelude::Queryable;
    holder.query_drop("START TRANSACTION").await.unwrap();
    holder
        .query_drop("SELECT * FROM t.kv WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let b = batch(
        1,
        vec![
            (1, vec![upd(1, 0, kv(1, "a"), kv(1, "b"))]),
            (2, vec![ins(2, 0, kv(2, "x"))]),
            (3, vec![ins(3, 0, kv(3, "y"))]),
        ],
        vec![],
    );
    let (ack, rx) = Ack::new();
    s.write(Arc::new(b), ack).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        table(&t, "SELECT COUNT(*) FROM t.kv").await,
        ["1"],
        "nothing commits before 1"
    );
    holder.query_drop("COMMIT").await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(rx.await.unwrap(), Ok(()));
    assert_eq!(
        table(&t, "SELECT * FROM t.kv ORDER BY id").await,
        ["1|b", "2|x", "3|y"]
    );
    assert_eq!(
        rowstream_mysql::applied(&c).await.unwrap().gtid_set,
        "0-1-3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_exactly_once_across_random_drops() {
    let Some(t) = Target::start(Flavor::MariaDb) else {
        return;
    };
    let mut ddl = String::new();
    for db in ["serial", "par"] {
        ddl += &format!("CREATE DATABASE {db};\nCREATE TABLE {db}.kv (id INT PRIMARY KEY, v VARCHAR(20), UNIQUE KEY (v));\nCREATE TABLE {db}.nopk (a INT, b VARCHAR(20));\n");
    }
    t.exec(&ddl).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = |db: &str, threads| {
        let mut c = cfg(&t, &dir, OnConflict::Stop);
        c.name = db.into();
        c.threads = threads;
        c.rename = [("t".to_string(), db.to_string())].into();
        c
    };
    let (serial, par) = (sink("serial", 1), sink("par", 4));
    apply(&serial, random_workload(300, 11)).await.unwrap();
    // Ten runs, each from an empty checkpoint, dropped after a number of
    // batches without a flush; then one to the end.
    for (i, n) in [3usize, 1, 7, 12, 2, 20, 15, 25, 9, 29]
        .into_iter()
        .enumerate()
    {
        let mut s = start(&par).await;
        for b in random_workload(300, 11).into_iter().take(n) {
            let (ack, _rx) = Ack::new();
            s.write(Arc::new(b), ack)
                .await
                .unwrap_or_else(|e| panic!("run {i}: {e}"));
        }
        drop(s);
    }
    apply(&par, random_workload(300, 11)).await.unwrap();
    for table in ["kv ORDER BY id", "nopk ORDER BY a"] {
        let s = t.rows(&format!("SELECT * FROM serial.{table}")).await;
        let p = t.rows(&format!("SELECT * FROM par.{table}")).await;
        assert_eq!(s, p, "{table}");
    }
    assert!(conflicts(&dir).is_empty());
}

async fn status(t: &Target, var: &str) -> u64 {
    let r = t.rows(&format!("SHOW GLOBAL STATUS LIKE '{var}'")).await;
    r[0][1].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_updates_and_deletes() {
    for flavor in [Flavor::MariaDb, Flavor::MySql] {
        let Some(t) = Target::start(flavor) else {
            continue;
        };
        t.exec(KV).await;
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(&t, &dir, OnConflict::Log);
        c.name = format!("bulk-{flavor:?}");
        let n = 2500i64;
        let v = |p: &str, i: i64| format!("{p}{i}");
        let inserts = (0..n)
            .map(|i| ins(1, i as u64, kv(i, &v("a", i))))
            .collect();
        let updates = (0..n)
            .map(|i| upd(2, i as u64, kv(i, &v("a", i)), kv(i, &v("b", i))))
            .collect();
        let updates2 = (0..n)
            .map(|i| upd(3, i as u64, kv(i, &v("b", i)), kv(i, &v("c", i))))
            .collect();
        let deletes = (0..n - 3)
            .map(|i| del(4, i as u64, kv(i, &v("c", i))))
            .collect();
        let (u0, d0) = (
            status(&t, "Com_update_multi").await,
            status(&t, "Com_delete_multi").await,
        );
        apply(&c, vec![batch(1, vec![(1, inserts), (2, updates)], vec![])])
            .await
            .unwrap();
        // Someone changed row 1500 on the target: its chunk falls back to
        // row by row and logs the conflict; the other chunks stay bulk.
        t.exec("UPDATE t.kv SET v = 'x' WHERE id = 1500").await;
        apply(
            &c,
            vec![batch(2, vec![(3, updates2), (4, deletes)], vec![])],
        )
        .await
        .unwrap();
        let rows = table(&t, "SELECT * FROM t.kv ORDER BY id").await;
        assert_eq!(
            rows,
            ["2497|c2497", "2498|c2498", "2499|c2499"],
            "{flavor:?}"
        );
        let lines = conflicts(&dir);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["found"]["v"], "x");
        assert!(
            status(&t, "Com_update_multi").await - u0 >= 6,
            "{flavor:?}: bulk updates"
        );
        let d1 = status(&t, "Com_delete_multi").await;
        assert!(d1 - d0 >= 3, "{flavor:?}: bulk deletes");
        let m = rowstream_api::metrics::render();
        let want = format!(
            "rowstream_mysql_bulk_fallbacks_total{{sink=\"{}\"}} 1",
            c.name
        );
        assert!(m.contains(&want), "{want} in {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_victim_runs_again() {
    use mysql_async::prelude::Queryable;
    for threads in [1, 4] {
        let Some((t, _dir, c)) = fixture(
            Flavor::MariaDb,
            &format!("{KV};\nINSERT INTO t.kv SELECT seq, CONCAT('v', seq) FROM t.seq_1_to_100"),
            threads,
        )
        .await
        else {
            return;
        };
        let mut s = start(&c).await;
        // Another client changes 500 rows elsewhere (heavier than the sink's
        // transaction, so InnoDB picks the sink's as the deadlock victim)
        // and locks row 50.
        let mut other = t.conn().await;
        other.query_drop("START TRANSACTION").await.unwrap();
        other
            .query_drop("INSERT INTO t.nopk SELECT seq, 'x' FROM t.seq_1_to_500")
            .await
            .unwrap();
        other
            .query_drop("SELECT * FROM t.kv WHERE id = 50 FOR UPDATE")
            .await
            .unwrap();
        let b = batch(
            1,
            vec![(
                1,
                vec![
                    upd(1, 0, kv(1, "v1"), kv(1, "w1")),
                    upd(1, 1, kv(50, "v50"), kv(50, "w50")), // waits for the other client
                ],
            )],
            vec![],
        );
        let task = tokio::spawn(async move {
            let r = write_all(&mut s, vec![b]).await;
            (s, r)
        });
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // Row 1 is the sink's: a deadlock, the sink's transaction rolls back.
        other
            .query_drop("SELECT * FROM t.kv WHERE id = 1 FOR UPDATE")
            .await
            .unwrap();
        other.query_drop("COMMIT").await.unwrap();
        let (_s, r) = task.await.unwrap();
        r.unwrap_or_else(|e| panic!("threads {threads}: {e}"));
        assert_eq!(
            table(&t, "SELECT * FROM t.kv WHERE v LIKE 'w%' ORDER BY id").await,
            ["1|w1", "50|w50"],
            "threads {threads}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_gtids_and_snapshot_markers_in_progress() {
    const UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let Some((t, _dir, c)) = fixture(Flavor::MariaDb, KV, 2).await else {
        return;
    };
    let named_tx = |seq, id: String, recs| named(seq, &id, recs);
    let batches = || {
        vec![
            named_tx(1, "snapshot:4:1".into(), vec![snap(0, kv(1, "a"))]),
            named_tx(2, format!("{UUID}:1"), vec![ins(1, 0, kv(2, "b"))]),
            named_tx(
                3,
                format!("{UUID}:2"),
                vec![upd(2, 0, kv(2, "b"), kv(2, "c"))],
            ),
            named_tx(4, format!("{UUID}:3"), vec![del(3, 0, kv(1, "a"))]),
        ]
    };
    apply(&c, batches()).await.unwrap();
    let p = rowstream_mysql::applied(&c).await.unwrap();
    assert_eq!(p.gtid_set, format!("{UUID}:1-3"));
    assert_eq!((p.snapshot_id, p.chunks_done), (4, 1));
    // Everything again: all skipped (a replay would conflict and stop).
    apply(&c, batches()).await.expect("skipped");
    assert_eq!(table(&t, "SELECT * FROM t.kv").await, ["2|c"]);
}
