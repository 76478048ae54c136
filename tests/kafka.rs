//! `rowstream run` with a Kafka sink, against a real source server and a real Apache
//! Kafka 4.4 broker (KRaft, started by `deploy/dev/start-kafka.sh`): the test binary's
//! shared broker (topics prefixed per test) for ordinary tests, a broker of its own for a
//! test that kills or restarts it, and a three-node cluster for the leader-kill test.
//!
//! A random insert / update / delete workload (primary-key changes included, on a table
//! with a single-column key and one with a composite key) runs while rowstream streams
//! into Kafka. Once the checkpoint covers the server's GTID set, every topic is read from
//! the beginning and checked:
//! - replaying the records of each topic in offset order, keyed by the record key, gives
//!   exactly the source table (`SELECT *`): the latest record of each live key holds the
//!   row, and every deleted key ends in a tombstone;
//! - per key, records come in commit order (GTID sequence, then the event's order in its
//!   transaction);
//! - every record has the `gtid` and `op` headers, matching the envelope.
//!
//! Truth is the server: its final table contents and GTID set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use common::kafka::{consume_topic, consumer};
use common::{
    differing_keys, int_or_null, key_json, kill_and_freeze, seed, server_with, stream_workload,
    Flavor, Service, ServiceConfig, Sink, Tables, TestKafka, TestKafkaCluster, TestKafkaSasl,
    TestServer, Workload,
};
use rand::Rng;
use rdkafka::consumer::Consumer;
use serde_json::Value;

const SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(100) NOT NULL, n INT NULL) DEFAULT CHARSET=utf8mb4; \
    CREATE TABLE s.c (a INT NOT NULL, b VARCHAR(10) NOT NULL, x INT NOT NULL, PRIMARY KEY (b, a)) DEFAULT CHARSET=utf8mb4";

/// The workload's rows of `s.t` in [`SCHEMA`].
const TABLES: Tables = Tables {
    t_values: |rng| {
        let v: u32 = rng.gen();
        format!("'v{v}-\"q\"', {}", int_or_null(rng))
    },
    t_update: |rng| format!("v = 'u{}', n = n + 1", rng.gen::<u32>()),
};

/// `rowstream run` into `kafka` (two partitions per topic, topics behind the handle's
/// prefix) with extra keys in the sink's table and extra lines in `[sinks.properties]`.
fn kafka_service(server: &TestServer, kafka: &TestKafka, keys: &str, props: &str) -> Service {
    let keys = format!("partitions = 2\n{}\n{keys}", kafka.topic_template());
    Service::new(
        server.flavor.name(),
        ServiceConfig::for_server(server, Sink::kafka(kafka, &keys, props)),
    )
}

/// Commit order of a GTID: MariaDB `d-s-n` -> n (one domain here); MySQL `uuid:n` -> n.
fn gtid_seq(g: &str) -> u64 {
    let tail = g.rsplit(['-', ':']).next().unwrap();
    tail.parse()
        .unwrap_or_else(|_| panic!("unparsable GTID {g:?}"))
}

/// One consumed record.
#[derive(Debug)]
struct Rec {
    partition: i32,
    offset: i64,
    key: String,
    value: Option<Value>,
    gtid: String,
    op: String,
}

/// High watermark of every partition of the test topics (behind `prefix`) that exist.
fn high_watermarks(bootstrap: &str, prefix: &str) -> BTreeMap<(String, i32), i64> {
    let consumer = consumer(bootstrap, "rowstream-test-watermarks");
    let mut out = BTreeMap::new();
    for topic in [format!("{prefix}svc.s.t"), format!("{prefix}svc.s.c")] {
        let topic = topic.as_str();
        let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
            continue;
        };
        for p in md.topics()[0].partitions() {
            if let Ok((_, high)) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            {
                out.insert((topic.to_string(), p.id()), high);
            }
        }
    }
    out
}

/// Every record of `topic`; each must have a key and the `gtid` and `op` headers.
fn consume_all(bootstrap: &str, topic: &str) -> Vec<Rec> {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    consume_topic(bootstrap, topic)
        .into_iter()
        .map(|r| Rec {
            partition: r.partition,
            offset: r.offset,
            key: text(r.key.as_deref().expect("every record has a key")),
            value: r
                .payload
                .as_deref()
                .map(|b| serde_json::from_slice(b).expect("value is JSON")),
            gtid: text(r.header("gtid").expect("gtid header")),
            op: text(r.header("op").expect("op header")),
        })
        .collect()
}

/// Checks one topic against the table; returns (records, tombstones).
fn check_topic(
    server: &TestServer,
    bootstrap: &str,
    topic: &str,
    table: &str,
    cols: &[&str],
    key_cols: &[&str],
    replays: bool,
) -> (usize, usize) {
    let recs = consume_all(bootstrap, topic);
    // Per key: the records seen (gtid, order in tx, op; tombstones as "t") and the newest.
    let mut seen: HashMap<String, HashSet<(String, u64, String)>> = HashMap::new();
    let mut newest: HashMap<String, (u64, u64)> = HashMap::new();
    let mut duplicates = 0usize;
    // Per key: order and final state.
    let mut last: HashMap<String, &Rec> = HashMap::new();
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    let mut tombstones = 0;
    let mut by_part: BTreeMap<i32, Vec<&Rec>> = BTreeMap::new();
    for r in &recs {
        by_part.entry(r.partition).or_default().push(r);
    }
    for rs in by_part.values() {
        for r in rs {
            if let Some(p) = key_partition.insert(r.key.clone(), r.partition) {
                assert_eq!(p, r.partition, "key {} in two partitions", r.key);
            }
            let key: Value = serde_json::from_str(&r.key).expect("key is JSON");
            let key_names: Vec<&str> = key
                .as_object()
                .expect("key is an object")
                .keys()
                .map(|k| k.as_str())
                .collect();
            let mut want_names = key_cols.to_vec();
            want_names.sort();
            let mut got_names = key_names.clone();
            got_names.sort();
            assert_eq!(got_names, want_names, "key columns of {}", r.key);
            // Identity and commit position of this record.
            let prev_order = last
                .get(&r.key)
                .and_then(|p| p.value.as_ref())
                .and_then(|v| v["transaction"]["total_order"].as_u64())
                .unwrap_or(0);
            let (order, tag) = match &r.value {
                None => (prev_order, "t".to_string()),
                Some(v) => (
                    v["transaction"]["total_order"].as_u64().unwrap_or(0),
                    r.op.clone(),
                ),
            };
            let id = (r.gtid.clone(), order, tag);
            let pos = (gtid_seq(&r.gtid), order);
            if !seen.entry(r.key.clone()).or_default().insert(id.clone()) {
                assert!(
                    replays,
                    "key {}: duplicate record {id:?} at offset {} without a restart",
                    r.key, r.offset
                );
                duplicates += 1;
            } else if let Some(n) = newest.get(&r.key) {
                assert!(
                    *n <= pos,
                    "key {}: new record {id:?} (offset {}) older than one before it {n:?}: reordered; \
                     the key's records (partition, offset, gtid, op): {:?}",
                    r.key,
                    r.offset,
                    recs.iter()
                        .filter(|x| x.key == r.key)
                        .map(|x| (x.partition, x.offset, x.gtid.as_str(), x.op.as_str()))
                        .collect::<Vec<_>>()
                );
            }
            let n = newest.entry(r.key.clone()).or_insert(pos);
            *n = (*n).max(pos);
            match &r.value {
                None => {
                    tombstones += 1;
                    let prev = last.get(&r.key).expect("tombstone of an unseen key");
                    assert_eq!(prev.op, "d", "tombstone must follow a delete: {}", r.key);
                    assert_eq!(prev.gtid, r.gtid);
                }
                Some(v) => {
                    assert_eq!(v["op"].as_str(), Some(r.op.as_str()), "op header");
                    assert_eq!(v["source"]["gtid"].as_str(), Some(r.gtid.as_str()));
                    let image = if r.op == "d" {
                        &v["before"]
                    } else {
                        &v["after"]
                    };
                    for k in key_cols {
                        assert_eq!(image[*k], key[*k], "key {} vs image {image}", r.key);
                    }
                }
            }
            last.insert(r.key.clone(), r);
        }
    }
    check_replay(server, topic, table, cols, key_cols, &recs, &last);
    if duplicates > 0 {
        eprintln!("{topic}: {duplicates} replayed records (at-least-once after restarts)");
    }
    (recs.len(), tombstones)
}

/// Replaying `recs` (the newest record of each key is in `last`) gives exactly the rows
/// of `table`: every live key holds its row, every deleted key ends in a tombstone.
fn check_replay(
    server: &TestServer,
    topic: &str,
    table: &str,
    cols: &[&str],
    key_cols: &[&str],
    recs: &[Rec],
    last: &HashMap<String, &Rec>,
) {
    // Replay = table.
    let mut from_kafka: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for (k, r) in last {
        match (&r.value, r.op.as_str()) {
            (None, _) => {}
            (Some(_), "d") => panic!("deleted key {k} does not end in a tombstone"),
            (Some(v), _) => {
                let row = cols
                    .iter()
                    .map(|c| common::json_text(&v["after"][*c]))
                    .collect();
                from_kafka.insert(k.clone(), row);
            }
        }
    }
    let rows = server.query(&format!("SELECT {} FROM {table}", cols.join(", ")));
    let mut from_db: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for row in rows {
        let mut key = serde_json::Map::new();
        for k in key_cols {
            let i = cols.iter().position(|c| c == k).unwrap();
            key.insert(k.to_string(), key_json(k, row[i].clone().unwrap()));
        }
        // Keys are compared as parsed objects, not as strings (column order may differ).
        from_db.insert(Value::Object(key).to_string(), row);
    }
    let norm: BTreeMap<String, Vec<Option<String>>> = from_kafka
        .into_iter()
        .map(|(k, v)| {
            let o: Value = serde_json::from_str(&k).unwrap();
            (o.to_string(), v)
        })
        .collect();
    let diff = differing_keys(&norm, &from_db);
    if !diff.is_empty() {
        // Show every record of the differing keys.
        let mut detail = String::new();
        for k in &diff {
            detail.push_str(&format!(
                "key {k}: kafka {:?} / table {:?}\n",
                norm.get(k),
                from_db.get(k)
            ));
            for r in recs {
                let rk: Value = serde_json::from_str(&r.key).unwrap();
                if rk == serde_json::from_str::<Value>(k).unwrap() {
                    detail.push_str(&format!(
                        "  [{}]@{} gtid {} op {} {}\n",
                        r.partition,
                        r.offset,
                        r.gtid,
                        r.op,
                        r.value
                            .as_ref()
                            .map(|v| format!("before {} after {}", v["before"], v["after"]))
                            .unwrap_or("tombstone".into())
                    ));
                }
            }
        }
        panic!(
            "{topic}: {} live keys in Kafka, {} rows in {table}; differing keys:\n{detail}",
            norm.len(),
            from_db.len()
        );
    }
}

/// [`check_topic`] of both tables of the workload: `[(records, tombstones)]` of
/// `svc.s.t` and `svc.s.c` (behind `prefix`).
fn check_topics(
    server: &TestServer,
    bootstrap: &str,
    prefix: &str,
    replays: bool,
) -> [(usize, usize); 2] {
    [
        check_topic(
            server,
            bootstrap,
            &format!("{prefix}svc.s.t"),
            "s.t",
            &["id", "v", "n"],
            &["id"],
            replays,
        ),
        check_topic(
            server,
            bootstrap,
            &format!("{prefix}svc.s.c"),
            "s.c",
            &["a", "b", "x"],
            &["a", "b"],
            replays,
        ),
    ]
}

fn workload_into_kafka(flavor: Flavor) {
    let Some((server, kafka)) = server_with(flavor, SCHEMA, TestKafka::shared) else {
        return;
    };
    let mut svc = kafka_service(&server, &kafka, "", "");
    let mut w = Workload::new(seed(), TABLES);
    // Some history before rowstream starts, the rest while it streams.
    stream_workload(&mut svc, &server, &mut w, "", Duration::from_secs(120));
    let b = kafka.bootstrap();
    let [(n_t, tomb_t), (n_c, tomb_c)] = check_topics(&server, &b, kafka.prefix(), false);
    eprintln!(
        "{}: svc.s.t {n_t} records ({tomb_t} tombstones), svc.s.c {n_c} records ({tomb_c} tombstones)",
        flavor.name()
    );
    assert!(tomb_t > 0 && tomb_c > 0, "the workload deletes rows");
}

flavor_tests!(workload_into_kafka: mariadb_workload_into_kafka, mysql_workload_into_kafka);

/// Kills rowstream (SIGKILL) and, at other random moments, the broker: it is frozen
/// (SIGSTOP for up to 1.5 s, then SIGCONT), or every other time (the first) SIGKILLed
/// and started again on its data, while the workload runs. Afterwards nothing is lost or reordered per key
/// (replayed duplicates are allowed: delivery is at-least-once across a crash), no high
/// watermark went back (acks=all: what the broker acknowledged survives its SIGKILL), and
/// rowstream never had to exit: it rides out broker crashes.
fn kills_lose_nothing(flavor: Flavor) {
    let Some((server, kafka)) = server_with(flavor, SCHEMA, TestKafka::start) else {
        return;
    };
    let mut svc = kafka_service(&server, &kafka, "", "");
    let mut lost_by_broker = false;
    let mut round = 0u32;
    let chaos = kill_and_freeze(&mut svc, &server, &kafka, TABLES, (50, 0.5), |freeze| {
        let before = high_watermarks(&kafka.bootstrap(), "");
        round += 1;
        if round % 2 == 1 {
            kafka.kill();
            std::thread::sleep(Duration::from_millis(300));
            kafka.restart();
        } else {
            freeze();
        }
        let after = high_watermarks(&kafka.bootstrap(), "");
        for (tp, hw) in &before {
            let now = after.get(tp).copied().unwrap_or(0);
            if now < *hw {
                eprintln!(
                    "BROKER LOST DATA: {tp:?} high watermark {hw} before, {now} after (round {round})"
                );
                lost_by_broker = true;
            }
        }
    });
    assert!(
        !lost_by_broker,
        "the broker lost acknowledged records (see above)"
    );
    eprintln!("{}: {} broker SIGKILLs", flavor.name(), round.div_ceil(2));
    let b = kafka.bootstrap();
    let [(n_t, _), (n_c, _)] = check_topics(&server, &b, "", true);
    eprintln!("{}: {n_t} + {n_c} records checked", flavor.name());
    assert_eq!(
        chaos.restarts, 0,
        "rowstream must survive broker restarts without exiting"
    );
}

flavor_tests!(kills_lose_nothing: mariadb_kills_lose_nothing, mysql_kills_lose_nothing);

/// A record larger than the producer may send is a fatal error: rowstream exits non-zero
/// with a message naming the problem and the setting to change, and the checkpoint does
/// not cover the transaction.
#[test]
fn record_too_large_is_fatal() {
    let Some((server, kafka)) = server_with(Flavor::MariaDb, SCHEMA, TestKafka::shared) else {
        return;
    };
    let mut svc = kafka_service(&server, &kafka, "", "\"message.max.bytes\" = \"2000\"");
    server.exec("INSERT INTO s.t VALUES (1, 'small', 1)");
    svc.spawn();
    svc.wait_caught_up(&server, Duration::from_secs(60));
    let before = svc.checkpoint_gtid();
    server.exec(&format!(
        "INSERT INTO s.t VALUES (2, '{}', 2)",
        "x".repeat(100)
    ));
    // 100 bytes fit; now a row far above message.max.bytes.
    server.exec("CREATE TABLE s.big (id INT PRIMARY KEY, b TEXT); INSERT INTO s.big VALUES (1, REPEAT('b', 5000))");
    let status = svc.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&svc.log).unwrap();
    assert!(!status.success(), "exit status {status}\n{log}");
    assert!(
        log.contains("message.max.bytes") && log.contains("svc.s.big"),
        "the error names the topic and the setting:\n{}",
        svc.log_tail()
    );
    let fatal = log.lines().rev().find(|l| l.starts_with("rowstream:"));
    eprintln!("rowstream said: {}", fatal.unwrap_or("<nothing>"));
    let after = svc.checkpoint_gtid();
    assert_ne!(
        after.as_deref(),
        Some(server.gtid_executed().as_str()),
        "the checkpoint must not cover the failed transaction (was {before:?})"
    );
}

/// `transactions = true`: every transaction with changes has one BEGIN and one END record
/// on `svc.transaction` (BEGIN first, same partition), and the END's counts per table equal
/// the change events of that transaction found on the table topics.
#[test]
fn transaction_topic() {
    let Some((server, kafka)) = server_with(Flavor::MariaDb, SCHEMA, TestKafka::shared) else {
        return;
    };
    let mut svc = kafka_service(&server, &kafka, "transactions = true", "");
    let mut w = Workload::new(seed(), TABLES);
    server.exec(&w.script(100));
    svc.spawn();
    server.exec(&w.script(100));
    svc.wait_caught_up(&server, Duration::from_secs(120));
    svc.stop(Duration::from_secs(60));
    let b = kafka.bootstrap();
    // Change events per (gtid, table): distinct orders in the transaction (a key change
    // is one event sent as delete + create; tombstones have no value).
    let mut events: BTreeMap<String, BTreeMap<String, HashSet<u64>>> = BTreeMap::new();
    for (topic, table) in [("svc.s.t", "s.t"), ("svc.s.c", "s.c")] {
        for r in consume_all(&b, &kafka.topic(topic)) {
            let Some(v) = &r.value else { continue };
            assert_eq!(v["transaction"]["id"].as_str(), Some(r.gtid.as_str()));
            let order = v["transaction"]["total_order"]
                .as_u64()
                .expect("total_order");
            events
                .entry(r.gtid.clone())
                .or_default()
                .entry(table.to_string())
                .or_default()
                .insert(order);
        }
    }
    assert!(
        events.len() > 50,
        "the workload made {} transactions with changes",
        events.len()
    );
    let markers = consume_all(&b, "svc.transaction");
    // Per transaction: where its BEGIN is (partition, offset) and where its END is, with it.
    type Markers = (Option<(i32, i64)>, Option<(i32, i64, Value)>);
    let mut seen: HashMap<String, Markers> = HashMap::new();
    for r in markers {
        let v = r.value.expect("markers have values");
        assert_eq!(
            r.key,
            format!("{{\"id\":{}}}", serde_json::to_string(&r.gtid).unwrap())
        );
        assert_eq!(v["id"].as_str(), Some(r.gtid.as_str()));
        let e = seen.entry(r.gtid.clone()).or_default();
        match v["status"].as_str() {
            Some("BEGIN") => {
                assert!(
                    e.0.is_none() && e.1.is_none(),
                    "BEGIN twice or after END for {}",
                    r.gtid
                );
                assert!(v["event_count"].is_null());
                e.0 = Some((r.partition, r.offset));
            }
            Some("END") => {
                assert!(e.1.is_none(), "END twice for {}", r.gtid);
                e.1 = Some((r.partition, r.offset, v));
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        events.keys().cloned().collect::<BTreeSet<_>>(),
        "transactions with markers = transactions with changes"
    );
    for (gtid, per_table) in &events {
        let (begin, end) = &seen[gtid];
        let (bp, bo) = begin.unwrap_or_else(|| panic!("no BEGIN for {gtid}"));
        let (ep, eo, v) = end.as_ref().unwrap_or_else(|| panic!("no END for {gtid}"));
        assert!(
            bp == *ep && bo < *eo,
            "{gtid}: BEGIN at {bp}/{bo}, END at {ep}/{eo}"
        );
        let want: BTreeMap<String, u64> = per_table
            .iter()
            .map(|(t, o)| (t.clone(), o.len() as u64))
            .collect();
        let got: BTreeMap<String, u64> = v["data_collections"]
            .as_array()
            .expect("data_collections")
            .iter()
            .map(|d| {
                (
                    d["data_collection"].as_str().unwrap().to_string(),
                    d["event_count"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{gtid}: per-table counts");
        assert_eq!(
            v["event_count"].as_u64(),
            Some(want.values().sum::<u64>()),
            "{gtid}"
        );
    }
}

/// The broker stopped cleanly (SIGTERM) and started again, three times, while rowstream
/// streams, with rows written while it is down. Kafka keeps the idempotent producer's
/// state across a restart, so rowstream just resumes (an exit would be restarted here,
/// as systemd's `Restart=on-failure` would, and replay from the checkpoint, but none is
/// expected). Every key ends with the table's row, in commit order, nothing lost.
#[test]
fn broker_restarts_lose_nothing() {
    let Some((server, kafka)) = server_with(Flavor::MariaDb, SCHEMA, TestKafka::start) else {
        return;
    };
    let mut svc = kafka_service(&server, &kafka, "", "");
    let mut w = Workload::new(seed(), TABLES);
    svc.spawn();
    let mut exits = Vec::new();
    for round in 0..3 {
        server.exec(&w.script(60));
        std::thread::sleep(Duration::from_millis(300));
        let before = high_watermarks(&kafka.bootstrap(), "");
        kafka.stop();
        server.exec(&w.script(60)); // written while the broker is down
        std::thread::sleep(Duration::from_millis(1500));
        kafka.restart();
        let after = high_watermarks(&kafka.bootstrap(), "");
        for (tp, hw) in &before {
            let now = after.get(tp).copied().unwrap_or(0);
            assert!(
                now >= *hw,
                "round {round}: the broker lost acknowledged data across its restart: {tp:?} {hw} -> {now}"
            );
        }
        server.exec(&w.script(60));
        std::thread::sleep(Duration::from_millis(1500));
        if let Some(st) = svc.exited() {
            assert!(!st.success(), "rowstream exited 0 on its own");
            exits.push(st.to_string());
            svc.spawn();
        }
    }
    svc.wait_caught_up(&server, Duration::from_secs(180));
    svc.stop(Duration::from_secs(60));
    assert!(
        exits.is_empty(),
        "rowstream exited after clean broker restarts: {exits:?}\n{}",
        svc.log_tail()
    );
    let b = kafka.bootstrap();
    check_topics(&server, &b, "", true);
}

/// A three-node cluster (replication factor 3, `min.insync.replicas=2`): the leader of
/// a partition SIGKILLed mid-stream, twice (another node each time, the killed one
/// started again in between), loses nothing: every acknowledged record (acks=all) was on
/// two nodes, a follower takes over, and every key ends with the table's row in order.
#[test]
fn cluster_leader_kill_loses_nothing() {
    let Some((server, cluster)) = server_with(Flavor::MariaDb, SCHEMA, TestKafkaCluster::start)
    else {
        return;
    };
    let b = cluster.bootstrap();
    let sink = Sink::Other(format!(
        "type = \"kafka\"\nname = \"kafka\"\nbrokers = {b:?}\npartitions = 2\n\
         replication_factor = 3\n[sinks.properties]\n\"linger.ms\" = \"2\"\n"
    ));
    let mut svc = Service::new(
        server.flavor.name(),
        ServiceConfig::for_server(&server, sink),
    );
    let mut w = Workload::new(seed(), TABLES);
    svc.spawn();
    server.exec(&w.script(60));
    svc.wait_caught_up(&server, Duration::from_secs(120));
    for round in 0..2 {
        let leader = partition_leader(&b, "svc.s.t", 0);
        let writer_done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for _ in 0..6 {
                    server.exec(&w.script(20));
                    std::thread::sleep(Duration::from_millis(100));
                }
                writer_done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(250));
            let before = high_watermarks(&b, "");
            cluster.kill_node(leader as u16);
            eprintln!("round {round}: SIGKILLed node {leader}, the leader of svc.s.t/0");
            let after = watermarks_of(&b, &before);
            for (tp, hw) in &before {
                let now = after.get(tp).copied().unwrap_or(0);
                assert!(
                    now >= *hw,
                    "round {round}: {tp:?} high watermark {hw} -> {now}"
                );
            }
        });
        assert!(writer_done.into_inner());
        svc.wait_caught_up(&server, Duration::from_secs(120));
        cluster.restart_node(leader as u16);
    }
    svc.wait_caught_up(&server, Duration::from_secs(120));
    svc.stop(Duration::from_secs(60));
    check_topics(&server, &b, "", true);
}

/// High watermarks of the partitions of `before` once all of them answer again (a new
/// leader elected), or whatever answered after 60 s.
fn watermarks_of(
    bootstrap: &str,
    before: &BTreeMap<(String, i32), i64>,
) -> BTreeMap<(String, i32), i64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = high_watermarks(bootstrap, "");
        if before.keys().all(|tp| now.contains_key(tp)) || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node id of the leader of `topic`/`partition`.
fn partition_leader(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let c = consumer(bootstrap, "rowstream-test-leader");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let p = md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap_or_else(|| panic!("{topic} has no partition {partition}"));
    assert!(p.leader() > 0, "{topic}/{partition} has no leader");
    p.leader()
}

/// A Kafka sink through the broker's SASL_SSL listener with `mechanism`, `password` and
/// `ca_file` as the trusted CAs, as a librdkafka user writes it in `properties`.
fn sasl_ssl_sink(kafka: &TestKafkaSasl, mechanism: &str, password: &str, ca_file: &str) -> Sink {
    Sink::Other(format!(
        "type = \"kafka\"\nname = \"kafka\"\nbrokers = {:?}\npartitions = 2\n\
         [sinks.properties]\n\"linger.ms\" = \"2\"\n\"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = {mechanism:?}\n\"sasl.username\" = {:?}\n\
         \"sasl.password\" = {password:?}\n\"ssl.ca.location\" = {ca_file:?}\n",
        kafka.secure_bootstrap(),
        TestKafkaSasl::USER,
    ))
}

/// TLS (a CA made with openssl, the broker's certificate verified for 127.0.0.1) and SASL:
/// rowstream streams the workload through SCRAM-SHA-512, then a little more through
/// SCRAM-SHA-256 and PLAIN, and every topic equals its table; with a wrong password, or
/// CAs that did not sign the broker's certificate, it stops (no endless retry) with a
/// message naming the settings to fix.
#[test]
fn sasl_ssl_streams_and_wrong_credentials_stop() {
    let Some((server, kafka)) = server_with(Flavor::MariaDb, SCHEMA, TestKafkaSasl::start) else {
        return;
    };
    let ca = kafka.ca_file().display().to_string();
    let cfg = |mech: &str, pw: &str, ca: &str| {
        ServiceConfig::for_server(&server, sasl_ssl_sink(&kafka, mech, pw, ca))
    };
    let mut svc = Service::new(
        "mariadb",
        cfg("SCRAM-SHA-512", TestKafkaSasl::PASSWORD, &ca),
    );
    let mut w = Workload::new(seed(), TABLES);
    stream_workload(&mut svc, &server, &mut w, "", Duration::from_secs(120));
    for mech in ["SCRAM-SHA-256", "PLAIN"] {
        server.exec(&w.script(20));
        let mut svc = Service::new("mariadb", cfg(mech, TestKafkaSasl::PASSWORD, &ca));
        svc.spawn();
        svc.wait_caught_up(&server, Duration::from_secs(60));
        svc.stop(Duration::from_secs(60));
    }
    check_topics(&server, &kafka.bootstrap(), "", true);

    // Debian's public CAs: none of them signed the test CA's certificate.
    let public_cas = "/etc/ssl/certs/ca-certificates.crt";
    for (cfg, settings) in [
        (
            cfg("SCRAM-SHA-512", "not-the-password", &ca),
            ["sasl.password", "sasl.username"],
        ),
        (
            cfg("SCRAM-SHA-512", TestKafkaSasl::PASSWORD, public_cas),
            ["ssl.ca.location", "security.protocol"],
        ),
    ] {
        let mut svc = Service::new("mariadb", cfg);
        svc.spawn();
        let status = svc.wait_exit(Duration::from_secs(90));
        let log = svc.log_text();
        assert!(!status.success(), "exit status {status}\n{log}");
        let fatal = log.lines().rev().find(|l| l.starts_with("rowstream:"));
        eprintln!("rowstream said: {}", fatal.unwrap_or("<nothing>"));
        assert!(
            fatal.is_some_and(|l| settings.iter().all(|s| l.contains(s))),
            "the error names {settings:?}:\n{}",
            svc.log_tail()
        );
    }
}
