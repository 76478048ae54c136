//! rowstream's Elasticsearch / OpenSearch sink: one index per table, one
//! document per row (`_id` = the primary key as a JSON array), written with
//! `_bulk` and `version_type=external` versions derived from the binlog
//! position, so the index converges to the table and never goes backwards
//! when events are replayed after a restart or a failover. A batch is acked
//! only once every action of it is applied, refused as older (409) or
//! dead-lettered.
//!
//! Modules: `config` (the `[[sinks]] type = "elasticsearch"` table),
//! `encode` (events -> bulk actions, ids, versions, mappings; pure),
//! `client` (the HTTP client and the answers' classification), `sink` (the
//! `Sink`: bulk batching, retries, dead letters, ordered acks), `read`
//! (reading an index back for `rowstream verify`; not used by the sink).

pub mod client;
pub mod config;
pub mod encode;
pub mod read;
pub mod sink;

pub use config::{DecimalMapping, ElasticsearchSinkConfig, OnError};
pub use rowstream_api::ConfigError;
pub use sink::ElasticsearchSink;
