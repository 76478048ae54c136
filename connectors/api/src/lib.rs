//! The connector contract: change events, typed values and their JSON form.
//! Sinks depend on this crate only; nothing here knows about MySQL wire formats.

pub mod event;
pub mod json;
pub mod metrics;
pub mod sink;
pub mod table;
pub mod value;

pub use event::{
    ChangeEvent, Columns, Flavor, Op, Record, Row, SchemaChange, Snapshot, Source, Transaction,
};
pub use sink::{
    Ack, AckReceiver, AckResult, Batch, Commit, Committed, Sink, SinkBuilder, SinkError,
};
pub use table::{ColumnType, TableMeta};
pub use value::{Date, DateTime, Time, Value};
