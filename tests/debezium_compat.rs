//! Compatibility proven against Debezium itself: Debezium 3.6.1's MySQL
//! connector (embedded engine, `deploy/dev/debezium/run.sh`, JsonConverter
//! with `schemas.enable=false`, default settings) and `rowstream tail
//! --format debezium` read the same MySQL 9.7 binlog: a table of every
//! column type, a composite-key table and a keyless one, with inserts,
//! updates (one changing the primary key), deletes and DDL
//! (`tests/debezium/workload.sql`). Every record must have the same topic,
//! key and value once only these are removed: the timing fields (`ts_ms`,
//! `ts_us`, `ts_ns` of the envelope and of `source`) and the differences
//! the README lists on purpose (`source.version`, `source.thread`, a
//! schema change's `tableChanges`, the `x`/`y` of POINT columns).
//!
//! The same records then go through the Kafka sink (`format = "debezium"`)
//! into a real Apache Kafka broker; every topic must hold Debezium's records
//! in order (the schema-change topic included).
//!
//! One Debezium JVM for the test binary (one test). Debezium's snapshot records
//! (`source.snapshot` not "false": the schema-only snapshot at its start)
//! are left out: rowstream tails from a GTID set instead of snapshotting.
//! Needs java 17+ and mvn (Debezium is fetched from Maven Central once, into
//! `~/.cache/rowstream/debezium-3.6.1`); without them the test is skipped,
//! or fails under `ROWSTREAM_TEST_REQUIRE_SERVERS`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::kafka::consume_topic;
use common::{
    next_replica_server_id, output_with_timeout, require_servers, tail_command, Flavor, Service,
    ServiceConfig, Sink, TestKafka, TestServer,
};
use serde_json::Value;

const WORKLOAD: &str = include_str!("debezium/workload.sql");
/// Row change events of WORKLOAD (t: 8, t2: 5, t3: 3, t4: 3; the last
/// transaction touches four tables and changes a primary key).
const CHANGES: usize = 19;
const PREFIX: &str = "srv";

fn run_sh() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dev/debezium/run.sh")
}

/// None (printed SKIP) when Debezium cannot be fetched or compiled here.
fn fetch_debezium() -> Option<()> {
    let out = Command::new(run_sh()).arg("--fetch").output();
    match out {
        Ok(o) if o.status.success() => Some(()),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(!require_servers(), "Debezium cannot run here: {why}");
            eprintln!("SKIP: Debezium cannot run here: {why}");
            None
        }
    }
}

/// Removes what the comparison ignores (see the module docs).
fn normalize(mut rec: Value) -> Value {
    if let Some(v) = rec.get_mut("value").and_then(Value::as_object_mut) {
        for k in ["ts_ms", "ts_us", "ts_ns"] {
            v.remove(k);
        }
        if let Some(s) = v.get_mut("source").and_then(Value::as_object_mut) {
            for k in ["ts_ms", "ts_us", "ts_ns", "version", "thread"] {
                s.remove(k);
            }
        }
        if v.contains_key("tableChanges") {
            v.insert("tableChanges".into(), Value::Array(Vec::new()));
        }
        for image in ["before", "after"] {
            if let Some(row) = v.get_mut(image).and_then(Value::as_object_mut) {
                for col in row.values_mut().filter_map(Value::as_object_mut) {
                    if col.contains_key("wkb") {
                        col.remove("x");
                        col.remove("y");
                    }
                }
            }
        }
    }
    rec
}

/// The same removals on the raw line, for the byte-for-byte comparison:
/// timing fields become 0, `version` "V", `thread` null, `tableChanges`
/// empty, and a POINT's `"x":..,"y":..,` goes.
fn canonical(line: &str) -> String {
    let mut s = line.to_string();
    for field in ["\"ts_ms\":", "\"ts_us\":", "\"ts_ns\":", "\"thread\":"] {
        let mut from = 0;
        while let Some(at) = s[from..].find(field).map(|i| from + i + field.len()) {
            let end = at + s[at..].find([',', '}']).expect("a field ends");
            s.replace_range(at..end, if field == "\"thread\":" { "null" } else { "0" });
            from = at;
        }
    }
    if let Some(at) = s.find("\"version\":\"").map(|i| i + 11) {
        let end = at + s[at..].find('"').expect("a string ends");
        s.replace_range(at..end, "V");
    }
    if let Some(at) = s.find("\"tableChanges\":") {
        s.replace_range(at.., "\"tableChanges\":[]}}");
    }
    let mut from = 0;
    while let Some(at) = s[from..].find("{\"x\":").map(|i| from + i) {
        from = at + 1;
        let rest = &s[at..];
        match (rest.find("\"wkb\""), rest.find('}')) {
            (Some(w), Some(close)) if w < close => s.replace_range(at + 1..at + w, ""),
            _ => {} // a column named x, not a point
        }
    }
    s
}

/// A record of the transaction topic `{prefix}.transaction`.
fn is_tx(rec: &Value) -> bool {
    rec["topic"]
        .as_str()
        .is_some_and(|t| t.ends_with(".transaction"))
}

/// `"transaction":{..}` -> `"transaction":null`: `tail` has no transaction
/// metadata (the Kafka sink's `transactions = true` has).
fn without_tx_block(line: &str) -> String {
    let mut s = line.to_string();
    if let Some(at) = s.find("\"transaction\":{").map(|i| i + 14) {
        let end = at + s[at..].find('}').expect("a block ends") + 1;
        s.replace_range(at..end, "null");
    }
    s
}

fn is_snapshot(rec: &Value) -> bool {
    let snap = &rec["value"]["source"]["snapshot"];
    !snap.is_null() && snap != "false"
}

/// Field-by-field differences of two records, for the failure message.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let n = Value::Null;
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&n),
                    y.get(k).unwrap_or(&n),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: debezium {a} / rowstream {b}")),
        _ => {}
    }
}

/// Debezium's runner on `server`, streaming (its `{"ready":true}` seen).
struct Debezium {
    child: std::process::Child,
    rx: mpsc::Receiver<(String, Value)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Debezium {
    /// Stops the JVM (also when the test panics) and its reader.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Debezium {
    fn start(server: &TestServer) -> Debezium {
        let started = Instant::now();
        let mut child = Command::new(run_sh())
            .args(["127.0.0.1", &server.port.to_string(), "root", "root"])
            .args(["dbz", PREFIX, "100000", "600"])
            .arg("provide.transaction.metadata=true")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run deploy/dev/debezium/run.sh");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel::<(String, Value)>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("Debezium runner printed non-JSON ({e}): {line}"));
                if tx.send((line, v)).is_err() {
                    break;
                }
            }
        });
        let dbz = Debezium {
            child,
            rx,
            reader: Some(reader),
        };
        // Snapshot records may come first.
        loop {
            let (_, rec) = dbz.next("ready line", Duration::from_secs(300));
            if rec == serde_json::json!({"ready": true}) {
                break;
            }
            assert!(is_snapshot(&rec), "a record before ready: {rec}");
        }
        eprintln!(
            "Debezium streaming after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        dbz
    }

    fn next(&self, what: &str, until: Duration) -> (String, Value) {
        self.rx
            .recv_timeout(until)
            .unwrap_or_else(|_| panic!("Debezium: no {what} within {}s", until.as_secs()))
    }

    /// The streamed records (raw lines) until `n` change and schema-change
    /// records came, with the transaction records among and after them;
    /// then checks that no more come (and dropping stops the JVM).
    fn records(self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut changes = 0;
        while changes < n {
            let (line, rec) = self.next("record", Duration::from_secs(120));
            if !is_snapshot(&rec) {
                changes += usize::from(!is_tx(&rec));
                out.push(line);
            }
        }
        // The last END, then nothing: anything else is a record rowstream
        // did not write.
        while let Ok((line, rec)) = self.rx.recv_timeout(Duration::from_secs(3)) {
            assert!(
                is_tx(&rec),
                "Debezium wrote more records than rowstream: {line}"
            );
            out.push(line);
        }
        out
    }
}

/// `rowstream tail --format debezium` from `from`: the raw lines.
fn tail_debezium(server: &TestServer, from: &str) -> Vec<String> {
    let mut cmd = tail_command(&server.repl_url(), next_replica_server_id(), from);
    cmd.args(["--max-events", &CHANGES.to_string()])
        .args(["--name", PREFIX, "--format", "debezium"]);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
    assert!(out.success(), "rowstream tail: {}", out.stderr_text());
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Debezium's and rowstream's lines agree: equal values field by field (a
/// readable failure), then equal bytes (field order, number and string
/// formatting, escapes), after the removals of the module docs.
fn assert_same(what: &str, theirs: &[String], ours: &[String]) {
    assert_eq!(theirs.len(), ours.len(), "{what}: record counts");
    let mut errors = Vec::new();
    for (i, (d, r)) in theirs.iter().zip(ours).enumerate() {
        let parse = |l: &str| normalize(serde_json::from_str(l).expect("a JSON line"));
        let (d, r) = (parse(d), parse(r));
        if d != r {
            let mut fields = Vec::new();
            diff("", &d, &r, &mut fields);
            errors.push(format!(
                "record {i} ({} {}):\n  {}",
                d["topic"],
                d["key"],
                fields.join("\n  ")
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "{what}: {} records differ:\n{}",
        errors.len(),
        errors.join("\n")
    );
    for (d, r) in theirs.iter().zip(ours) {
        assert_eq!(
            canonical(d),
            canonical(r),
            "{what}: bytes differ:\n{d}\n{r}"
        );
    }
}

/// The Kafka sink with `format = "debezium"` and `transactions = true`
/// writes, topic by topic, the records Debezium wrote with
/// `provide.transaction.metadata=true` (`theirs`, renamed to the service's
/// source name "svc"; the transaction topic included), against a real
/// Apache Kafka broker.
fn kafka_sink_writes_the_same(server: &TestServer, from: &str, theirs: &[String]) {
    let Some(kafka) = TestKafka::start() else {
        return;
    };
    let keys = "format = \"debezium\"\ntransactions = true";
    let mut cfg = ServiceConfig::for_server(server, Sink::kafka(&kafka, keys, ""));
    cfg.start = Some(from.to_string());
    let mut svc = Service::new("debezium-kafka", cfg);
    svc.spawn();
    svc.wait_caught_up(server, Duration::from_secs(180));
    svc.stop(Duration::from_secs(30));

    let rename = |l: &str| {
        l.replace("{\"topic\":\"srv", "{\"topic\":\"svc")
            .replace("\"name\":\"srv\"", "\"name\":\"svc\"")
    };
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in theirs.iter().map(|l| rename(l)) {
        let v: Value = serde_json::from_str(&line).expect("JSON");
        let topic = v["topic"].as_str().expect("a topic").to_string();
        want.entry(topic).or_default().push(line);
    }
    for (topic, lines) in &want {
        let got: Vec<String> = consume_topic(&kafka.bootstrap(), topic)
            .into_iter()
            .map(|r| {
                let text = |b: &Option<Vec<u8>>| {
                    b.as_deref().map_or("null".into(), |b| {
                        String::from_utf8(b.to_vec()).expect("UTF-8")
                    })
                };
                format!(
                    "{{\"topic\":\"{topic}\",\"key\":{},\"value\":{}}}",
                    text(&r.key),
                    text(&r.payload)
                )
            })
            .collect();
        assert_same(&format!("Kafka topic {topic}"), lines, &got);
        eprintln!("Kafka topic {topic}: {} records, as Debezium's", got.len());
    }
}

#[test]
fn debezium_and_rowstream_write_the_same_records() {
    let Some(server) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    if fetch_debezium().is_none() {
        return;
    }
    // Debezium 3.6 fails on a server whose gtid_executed is empty (an NPE
    // in the binlog client), so the server gets one transaction first.
    server.exec("CREATE DATABASE warmup; DROP DATABASE warmup");
    let from = server.gtid_executed();
    let dbz = Debezium::start(&server);
    server.exec(WORKLOAD);

    let ours = tail_debezium(&server, &from);
    // 6 DDL, 19 changes (each key change is a delete and a create), 5
    // tombstones (one keyless: Debezium sends those too).
    assert_eq!(ours.len(), 6 + 21 + 5, "rowstream records: {ours:?}");
    let theirs = dbz.records(ours.len());
    let without_tx: Vec<String> = theirs
        .iter()
        .filter(|l| !is_tx(&serde_json::from_str(l).expect("JSON")))
        .map(|l| without_tx_block(l))
        .collect();
    assert_same("rowstream tail --format debezium", &without_tx, &ours);

    kafka_sink_writes_the_same(&server, &from, &theirs);
}
