//! The producer ceiling for `benches/e2e.sh`: a plain rdkafka `FutureProducer`
//! with the Kafka sink's producer settings, sending synthetic records of given
//! sizes, and a measuring mode that reads a topic back to get those sizes.
//!
//! ```text
//! plain_producer produce BROKERS TOPIC COUNT KEY_BYTES VALUE_BYTES [GTID_HEADER_BYTES] [-X key=value]...
//! plain_producer count BROKERS TOPIC
//! ```
//!
//! `produce` creates TOPIC (1 partition, replication factor 1, like the sink's
//! defaults) through the admin API, sends COUNT records with distinct keys of
//! KEY_BYTES and values of VALUE_BYTES, each with the sink's two headers
//! (`gtid` of GTID_HEADER_BYTES, `op` of one byte), awaits every delivery report
//! (in chunks of 1000 on a separate task, like the sink's acker), and prints
//! `records=N seconds=S records_per_s=R` on stdout.
//! Producer settings are the sink's (`enable.idempotence=true`, `acks=all`,
//! `message.timeout.ms=0`, `allow.auto.create.topics=false`, librdkafka's
//! defaults otherwise); `-X` adds properties as the sink's `properties` would.
//!
//! `count` prints `records=N`, the records of TOPIC from its watermarks.
//! (The record sizes are measured by `benches/e2e.sh` from `rowstream tail`,
//! which prints the same envelope: consuming a topic of ~1 GB from noida-db
//! 0.2.3 fails in librdkafka with "Bad message format".)
//!
//! Build: `cargo build --release --example plain_producer -p rowstream-kafka`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

const CHUNK: usize = 1000;
const TIMEOUT: Duration = Duration::from_secs(30);

fn usage() -> ! {
    eprintln!(
        "usage: plain_producer produce BROKERS TOPIC COUNT KEY_BYTES VALUE_BYTES [GTID_HEADER_BYTES] [-X key=value]...\n       plain_producer count BROKERS TOPIC"
    );
    std::process::exit(2)
}

fn num(s: &str) -> usize {
    s.parse().unwrap_or_else(|_| usage())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let mut props = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "-X" {
            let kv = it.next().unwrap_or_else(|| usage());
            let (k, v) = kv.split_once('=').unwrap_or_else(|| usage());
            props.push((k.to_string(), v.to_string()));
        } else {
            pos.push(a);
        }
    }
    match pos.first().map(String::as_str) {
        Some("count") if pos.len() == 3 => count(&pos[1], &pos[2]),
        Some("produce") if (6..=7).contains(&pos.len()) => {
            let gtid = pos.get(6).map_or(7, |s| num(s));
            produce(
                &pos[1],
                &pos[2],
                num(&pos[3]),
                num(&pos[4]),
                num(&pos[5]),
                gtid,
                &props,
            )
            .await
        }
        _ => usage(),
    }
}

/// The Kafka sink's `client_config` (connectors/kafka/src/sink.rs), with `props`
/// in place of the sink's `properties`.
fn sink_config(brokers: &str, props: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("message.timeout.ms", "0")
        .set("allow.auto.create.topics", "false");
    for (k, v) in props {
        c.set(k, v);
    }
    c.set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("client.id", "plain-producer");
    c
}

/// `width` bytes: `n` in decimal, left-padded with `fill`.
fn padded(out: &mut Vec<u8>, n: usize, width: usize, fill: u8) {
    out.clear();
    let digits = n.to_string();
    let pad = width.saturating_sub(digits.len());
    out.resize(pad, fill);
    out.extend_from_slice(&digits.as_bytes()[digits.len().saturating_sub(width)..]);
}

async fn produce(
    brokers: &str,
    topic: &str,
    count: usize,
    key_bytes: usize,
    value_bytes: usize,
    gtid_bytes: usize,
    props: &[(String, String)],
) {
    let cc = sink_config(brokers, props);
    let admin: AdminClient<DefaultClientContext> = cc.create().expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let res = admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create topic");
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("creating topic {t}: {code}"),
        }
    }
    let producer: FutureProducer = cc.create().expect("producer");

    // Like the sink's acker: delivery futures settled in order, chunk by chunk.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<DeliveryFuture>>();
    let acker = tokio::spawn(async move {
        let mut delivered = 0usize;
        while let Some(chunk) = rx.recv().await {
            for r in join_all(chunk).await {
                match r {
                    Ok(Ok(_)) => delivered += 1,
                    Ok(Err((e, _))) => panic!("delivery failed: {e}"),
                    Err(_) => panic!("delivery report dropped"),
                }
            }
        }
        delivered
    });

    let value = vec![b'x'; value_bytes];
    let (mut key, mut gtid) = (Vec::with_capacity(key_bytes), Vec::new());
    let t0 = Instant::now();
    let mut chunk = Vec::with_capacity(CHUNK);
    for i in 0..count {
        padded(&mut key, i, key_bytes, b' ');
        padded(&mut gtid, i, gtid_bytes, b'0');
        loop {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: "gtid",
                    value: Some(&gtid[..]),
                })
                .insert(Header {
                    key: "op",
                    value: Some(&b"c"[..]),
                });
            let fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .headers(headers)
                .key(&key[..])
                .payload(&value[..]);
            match producer.send_result(fr) {
                Ok(d) => {
                    chunk.push(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await
                }
                Err((e, _)) => panic!("send failed: {e}"),
            }
        }
        if chunk.len() == CHUNK {
            tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                .expect("acker");
        }
    }
    if !chunk.is_empty() {
        tx.send(chunk).expect("acker");
    }
    drop(tx);
    let delivered = acker.await.expect("acker");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(delivered, count);
    println!(
        "records={count} seconds={secs:.3} records_per_s={:.0}",
        count as f64 / secs
    );
}

fn count(brokers: &str, topic: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("client");
    let md = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    let mut n = 0i64;
    for p in md.topics()[0].partitions() {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p.id(), TIMEOUT)
            .expect("watermarks");
        n += hi - lo;
    }
    println!("records={n}");
}
