//! A sink whose target goes away and comes back is restarted from the
//! checkpoint instead of stopping the service.
//!
//! `rowstream run` streams a MariaDB server into an Apache Kafka broker of the
//! test's own (it is stopped) whose producer gives up on a delivery after a short
//! `message.timeout.ms`. The broker is stopped while rows are written, for
//! longer than that timeout: the Kafka sink reports a transient failure, the
//! pipeline restarts it (with backoff, while the broker is still down), and
//! once the broker is back the stream resumes from the checkpoint. Checked:
//! the service never exits, logs the restarts, catches up, stops cleanly on
//! SIGTERM, and the topic holds every row of the table (replays allowed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::kafka::consume_topic;
use common::{server_with, Flavor, Service, ServiceConfig, Sink, TestKafka, TestServer};
use serde_json::Value;

/// What the Kafka producer waits for a delivery before failing it.
const MESSAGE_TIMEOUT_MS: u64 = 3000;

fn assert_running(svc: &mut Service, when: &str) {
    if let Some(st) = svc.exited() {
        panic!(
            "rowstream exited ({st}) {when}\n--- log ---\n{}",
            svc.log_tail()
        );
    }
}

/// Inserts rows `from..from + n`, ten per transaction.
fn insert(server: &TestServer, from: u64, n: u64) {
    let mut sql = String::new();
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(10) {
        let rows: Vec<String> = chunk.iter().map(|i| format!("({i}, 'v{i}')")).collect();
        sql.push_str(&format!("INSERT INTO s.t VALUES {};\n", rows.join(",")));
    }
    server.exec(&sql);
}

/// The `id`s of every record with a value in `topic`.
fn ids_in_topic(bootstrap: &str, topic: &str) -> BTreeSet<u64> {
    consume_topic(bootstrap, topic)
        .iter()
        .filter_map(|r| r.payload.as_ref())
        .map(|b| {
            let v: Value = serde_json::from_slice(b).expect("value is JSON");
            v["after"]["id"].as_u64().expect("after.id")
        })
        .collect()
}

#[test]
fn kafka_broker_away_longer_than_delivery_timeout() {
    let schema =
        "CREATE DATABASE s; CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(100) NOT NULL)";
    let Some((server, kafka)) = server_with(Flavor::MariaDb, schema, TestKafka::start) else {
        return;
    };
    let sink = Sink::kafka(
        &kafka,
        "partitions = 2",
        &format!("\"message.timeout.ms\" = \"{MESSAGE_TIMEOUT_MS}\""),
    );
    let mut svc = Service::new("sink-restart", ServiceConfig::for_server(&server, sink));
    svc.spawn();
    insert(&server, 1, 100);
    svc.wait_caught_up(&server, Duration::from_secs(120));

    kafka.stop();
    insert(&server, 101, 100); // written while the broker is down
                               // Long enough for deliveries to expire and for a few restarts to be refused.
    std::thread::sleep(Duration::from_millis(3 * MESSAGE_TIMEOUT_MS));
    assert_running(&mut svc, "while the broker was down");
    kafka.restart();
    insert(&server, 201, 100);
    svc.wait_caught_up(&server, Duration::from_secs(180));
    assert_running(&mut svc, "after catching up");
    let log = svc.log_text();
    for l in log.lines().filter(|l| l.contains("restarting the sinks")) {
        eprintln!("{l}");
    }
    assert!(
        log.contains("restarting the sinks from the checkpoint") && log.contains("sink=kafka"),
        "a restart of the kafka sink is logged\n{}",
        svc.log_tail()
    );
    let (st, _) = svc.sigterm(Duration::from_secs(60));
    assert!(st.success(), "exit {st} after SIGTERM\n{}", svc.log_tail());

    let ids = ids_in_topic(&kafka.bootstrap(), "svc.s.t");
    let want: BTreeSet<u64> = (1..=300).collect();
    let missing: Vec<_> = want.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "rows missing from the topic: {missing:?}"
    );
}
