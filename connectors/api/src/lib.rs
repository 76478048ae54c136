//! The connector contract: change events, typed values and their JSON form,
//! the sink traits, and the kit every sink is built from (ordered acks,
//! poison, backoff, table-name templates, config errors; test helpers and
//! the conformance test behind the `testing` feature). Sinks depend on this
//! crate only; nothing here knows about MySQL wire formats.

pub mod config_error;
pub mod event;
pub mod gtid;
pub mod json;
pub mod kit;
pub mod metrics;
pub mod parse;
pub mod rfc3339;
pub mod sink;
pub mod table;
#[cfg(feature = "testing")]
#[allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
pub mod testing;
pub mod text;
pub mod value;

/// For [`sink_builder!`]'s expansion in sink crates.
#[doc(hidden)]
pub use async_trait;
pub use config_error::ConfigError;
pub use event::{
    ChangeEvent, Columns, Flavor, Op, Record, Row, RowRef, SchemaChange, Shared, Snapshot, Source,
    Transaction,
};
pub use kit::{AckQueue, Backoff, Poison, TableFilter, TableTemplate};
pub use sink::{
    Ack, AckReceiver, AckResult, Batch, Commit, Committed, Sink, SinkBuilder, SinkError,
};
pub use table::{ColumnType, TableMeta};
pub use text::Text;
pub use value::{Date, DateTime, Time, Value};
