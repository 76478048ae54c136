//! rowstream's MySQL / MariaDB apply sink: applies change events to a target
//! server, each source transaction as one target transaction whose first
//! statement records the sink's progress (`<progress_schema>.progress`), so
//! a restart resumes exactly after what the target holds (exactly once).
//! Used live (`[[sinks]] type = "mysql"`) and by `rowstream restore`.
//!
//! Modules: `config` (the `[[sinks]] type = "mysql"` table), `encode`
//! (events -> SQL and parameters, filters, conflict lines; pure), `client`
//! (connection, session, progress table, error classes), `sink` (the
//! engine: transactions, multi-row inserts, conflicts, ordered acks).

pub mod apply;
pub mod client;
pub mod config;
pub mod encode;
pub mod pool;
pub mod sink;

pub use client::Progress;
pub use config::{MysqlSinkConfig, OnConflict};
pub use rowstream_api::ConfigError;
pub use sink::{applied, MysqlSink};
