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
//! One JVM for the test binary (one test). Debezium's snapshot records
//! (`source.snapshot` not "false": the schema-only snapshot at its start)
//! are left out: rowstream tails from a GTID set instead of snapshotting.
//! Needs java 17+ and mvn (Debezium is fetched from Maven Central once, into
//! `~/.cache/rowstream/debezium-3.6.1`); without them the test is skipped,
//! or fails under `ROWSTREAM_TEST_REQUIRE_SERVERS`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    next_replica_server_id, output_with_timeout, require_servers, tail_command, Flavor, TestServer,
};
use serde_json::Value;

const WORKLOAD: &str = include_str!("debezium/workload.sql");
/// Row change events of WORKLOAD (t: 7, t2: 4, t3: 2, t4: 2).
const CHANGES: usize = 15;
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

    let started = Instant::now();
    let mut child = Command::new(run_sh())
        .args([
            "127.0.0.1",
            &server.port.to_string(),
            "root",
            "root",
            "dbz",
            PREFIX,
        ])
        .args(["100000", "600"])
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
    let wait = |what: &str, until: Duration| -> (String, Value) {
        rx.recv_timeout(until)
            .unwrap_or_else(|_| panic!("Debezium: no {what} within {}s", until.as_secs()))
    };
    // Snapshot records may come first.
    loop {
        let (_, rec) = wait("ready line", Duration::from_secs(300));
        if rec == serde_json::json!({"ready": true}) {
            break;
        }
        assert!(is_snapshot(&rec), "a record before ready: {rec}");
    }
    eprintln!(
        "Debezium streaming after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    server.exec(WORKLOAD);
    let mut cmd = tail_command(&server.repl_url(), next_replica_server_id(), &from);
    cmd.args(["--max-events", &CHANGES.to_string()])
        .args(["--name", PREFIX, "--format", "debezium"]);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
    assert!(out.success(), "rowstream tail: {}", out.stderr_text());
    let our_lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    let ours: Vec<Value> = our_lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("rowstream prints JSON"))
        .collect();
    // 6 DDL, 15 changes (the key change is a delete and a create), 4
    // tombstones (one keyless: Debezium sends those too).
    assert_eq!(ours.len(), 6 + 16 + 4, "rowstream records: {ours:?}");
    let (mut theirs, mut their_lines) = (Vec::new(), Vec::new());
    while theirs.len() < ours.len() {
        let (line, rec) = wait("record", Duration::from_secs(120));
        if !is_snapshot(&rec) {
            theirs.push(rec);
            their_lines.push(line);
        }
    }
    // Anything more within a moment is a record rowstream did not write.
    if let Ok((extra, _)) = rx.recv_timeout(Duration::from_secs(2)) {
        panic!("Debezium wrote more records than rowstream, next: {extra}");
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();

    let mut errors = Vec::new();
    for (i, (d, r)) in theirs.into_iter().zip(ours).enumerate() {
        let (d, r) = (normalize(d), normalize(r));
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
        "{} records differ:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // Equal values; now equal bytes too (field order, number and string
    // formatting, escapes).
    for (d, r) in their_lines.iter().zip(&our_lines) {
        assert_eq!(canonical(d), canonical(r), "bytes differ:\n{d}\n{r}");
    }
}
