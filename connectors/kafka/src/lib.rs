//! rowstream's Kafka sink: every row change as a Kafka record, one topic per
//! table, keyed by primary key (Debezium-style JSON key and envelope),
//! written by an idempotent producer with `acks=all`; a batch is acked only
//! once every record of it has a successful delivery report, in order.
//!
//! Modules: `config` (the `[[sinks]] type = "kafka"` table), `encode`
//! (event -> key, value, headers; pure), `avro` (Avro schemas and binary
//! encoding in the Confluent wire format; pure), `debezium` (keys, values
//! and topics exactly as Debezium's MySQL connector writes them; pure), `registry` (minimal Schema
//! Registry client), `client` (librdkafka configuration, context, produce
//! and error classification), `sink` (the `Sink`: topic creation, schema
//! registration, ordered acks).

pub mod avro;
pub mod client;
pub mod config;
pub mod debezium;
pub mod encode;
pub mod registry;
pub mod sink;

pub use config::{Format, KafkaSinkConfig};
pub use rowstream_api::ConfigError;
pub use sink::KafkaSink;
