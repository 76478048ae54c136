//! rowstream's HTTP sink: change events as JSON requests to a URL per
//! table (webhooks, CRMs such as Zoho), with a stable id per record and an
//! `Idempotency-Key` per request so retries and replays can be recognised,
//! Standard Webhooks signatures, bearer/basic/OAuth2 authentication, a
//! request budget, and dead letters. A batch is acked only once every
//! record of it was answered 2xx (or dead-lettered, fsync'd).
//!
//! Modules: `config` (the `[[sinks]] type = "http"` table), `encode`
//! (records, bodies, ids, keys, signatures; pure), `client` (reqwest,
//! authentication, budget, the retry loop), `journal` (request boundaries
//! remembered across restarts, so replays carry the same keys), `sink` (the
//! `Sink`: per-table requests, order, ordered acks, dead letters).

pub mod client;
pub mod config;
pub mod encode;
pub mod journal;
pub mod sink;

pub use config::{Format, HttpSinkConfig, OAuthConfig, OnDelete, OnError, TableMapping};
pub use rowstream_api::ConfigError;
pub use sink::HttpSink;
