//! Reading what a Kafka sink wrote: every record of a topic from the beginning, like a
//! consumer that starts fresh ([`consume_topic`]).
//!
//! Invariants: each partition is read up to the high watermark it had when reading
//! began, in offset order, and offsets must be dense (a gap is a panic); a partition that
//! takes longer than 60 s is a panic.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// One consumed record.
#[derive(Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// None for a tombstone.
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &v[..])
    }
}

/// A consumer of `bootstrap` in consumer group `group` that commits nothing.
pub fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("receive.message.max.bytes", "200000000")
        .create()
        .expect("consumer")
}

/// Every record of every partition of `topic`, partition by partition, in offset order.
pub fn consume_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer = consumer(bootstrap, "rowstream-test");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!parts.is_empty(), "topic {topic} has no partitions");
    let mut out = Vec::new();
    for p in parts {
        let (_low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high == 0 {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).expect("assign");
        let t = Instant::now();
        let mut next = 0i64;
        while next < high {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{topic}[{p}]: read up to offset {next} of {high} in 60 s"
            );
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m.expect("consume");
            assert_eq!(m.offset(), next, "{topic}[{p}]: offsets must be dense");
            next = m.offset() + 1;
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: p,
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}
