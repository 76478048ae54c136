//! A sink whose target goes away and comes back is restarted from the
//! checkpoint instead of stopping the service.
//!
//! `rowstream run` streams a MariaDB server into a Kafka-protocol broker
//! (noida-db) whose producer gives up on a delivery after a short
//! `message.timeout.ms`. The broker is stopped while rows are written, for
//! longer than that timeout: the Kafka sink reports a transient failure, the
//! pipeline restarts it (with backoff, while the broker is still down), and
//! once the broker is back the stream resumes from the checkpoint. Checked:
//! the service never exits, logs the restarts, catches up, stops cleanly on
//! SIGTERM, and the topic holds every row of the table (replays allowed).

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{next_replica_server_id, rowstream, Flavor, TestKafka, TestServer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// What the Kafka producer waits for a delivery before failing it.
const MESSAGE_TIMEOUT_MS: u64 = 3000;

/// `rowstream run` with one Kafka sink, its config and log in a scratch dir.
struct Service {
    dir: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn spawn(server: &TestServer, kafka: &TestKafka) -> Service {
        let dir =
            std::env::temp_dir().join(format!("rowstream-sink-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("rowstream.toml");
        let toml = format!(
            "[source]\nurl = {:?}\nserver_id = {}\nname = \"svc\"\nstart = \"earliest\"\nheartbeat_secs = 2\n\n\
             [checkpoint]\ndir = {:?}\n\n[[sinks]]\ntype = \"kafka\"\nname = \"kafka\"\nbrokers = {:?}\n\
             partitions = 2\n\n[sinks.properties]\n\"linger.ms\" = \"2\"\n\
             \"message.timeout.ms\" = \"{MESSAGE_TIMEOUT_MS}\"\n",
            server.repl_url(),
            next_replica_server_id(),
            dir.join("cp").display().to_string(),
            kafka.bootstrap(),
        );
        std::fs::write(&config, toml).unwrap();
        let log = File::create(dir.join("rowstream.log")).unwrap();
        let child = rowstream()
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rowstream run");
        Service {
            dir,
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rowstream.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let s = self.log();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn assert_running(&mut self, when: &str) {
        if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "rowstream exited ({st}) {when}\n--- log ---\n{}",
                self.log_tail()
            );
        }
    }

    fn checkpoint_gtid(&self) -> Option<String> {
        let b = std::fs::read(self.dir.join("cp").join("checkpoint.json")).ok()?;
        let v: Value = serde_json::from_slice(&b).ok()?;
        v["gtid_set"].as_str().map(|s| s.replace(['\n', ' '], ""))
    }

    fn wait_caught_up(&mut self, server: &TestServer, timeout: Duration) {
        let t = Instant::now();
        loop {
            self.assert_running("before catching up");
            let want = server.gtid_executed().replace(' ', "");
            if self.checkpoint_gtid().as_deref() == Some(want.as_str()) {
                return;
            }
            assert!(
                t.elapsed() < timeout,
                "not caught up in {timeout:?}: server {want:?}, checkpoint {:?}\n--- log ---\n{}",
                self.checkpoint_gtid(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sigterm(&mut self) {
        let mut child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let t = Instant::now();
        let st = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("no exit within 60 s of SIGTERM\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(st.success(), "exit {st} after SIGTERM\n{}", self.log_tail());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
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

/// The `id`s of every record with a value in `topic`, read from the beginning.
fn ids_in_topic(bootstrap: &str, topic: &str) -> BTreeSet<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rowstream-sink-restart-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut ids = BTreeSet::new();
    for p in md.topics()[0].partitions().iter().map(|p| p.id()) {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).expect("assign");
        let (t, mut next) = (Instant::now(), 0i64);
        while next < high {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{topic}[{p}] read timed out"
            );
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m.expect("consume");
            next = m.offset() + 1;
            if let Some(b) = m.payload() {
                let v: Value = serde_json::from_slice(b).expect("value is JSON");
                ids.insert(v["after"]["id"].as_u64().expect("after.id"));
            }
        }
    }
    ids
}

#[test]
fn kafka_broker_away_longer_than_delivery_timeout() {
    let Some(server) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let Some(kafka) = TestKafka::start() else {
        return;
    };
    server.exec(
        "CREATE DATABASE s; CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(100) NOT NULL)",
    );
    let mut svc = Service::spawn(&server, &kafka);
    insert(&server, 1, 100);
    svc.wait_caught_up(&server, Duration::from_secs(120));

    kafka.stop();
    insert(&server, 101, 100); // written while the broker is down
                               // Long enough for deliveries to expire and for a few restarts to be refused.
    std::thread::sleep(Duration::from_millis(3 * MESSAGE_TIMEOUT_MS));
    svc.assert_running("while the broker was down");
    kafka.restart();
    insert(&server, 201, 100);
    svc.wait_caught_up(&server, Duration::from_secs(180));
    svc.assert_running("after catching up");
    let log = svc.log();
    for l in log.lines().filter(|l| l.contains("restarting the sinks")) {
        eprintln!("{l}");
    }
    assert!(
        log.contains("restarting the sinks from the checkpoint") && log.contains("sink=kafka"),
        "a restart of the kafka sink is logged\n{}",
        svc.log_tail()
    );
    svc.sigterm();

    let ids = ids_in_topic(&kafka.bootstrap(), "svc.s.t");
    let want: BTreeSet<u64> = (1..=300).collect();
    let missing: Vec<_> = want.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "rows missing from the topic: {missing:?}"
    );
}
