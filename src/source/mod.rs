//! The sources of change records: the binlog replica (`binlog`) and the
//! initial / on-demand snapshot (`snapshot`), with what both share: the
//! connection (`conn`), server checks (`checks`), server queries (`query`),
//! the table filter (`filter`), the server's semi-sync state
//! (`semisync_state`), and here the source contract: the error
//! type and the `Batch` both hand to the pipeline.
//!
//! Errors are split in two: `Transient` ones (network, server restart,
//! timeouts) are retried from the last complete transaction; everything
//! else stops the stream with a message telling the operator what to do.
//!
//! Invariant: this file imports none of its children (they import it), so
//! the module graph of `source` has no cycle.

use rowstream_api::{Commit, Record};

use crate::checkpoint::SnapshotState;
use crate::gtid::GtidSet;

pub mod binlog;
pub mod checks;
pub mod conn;
pub use rowstream_api::kit::filter;
pub mod origin;
pub mod query;
pub mod semisync_state;
pub mod snapshot;

/// The rowstream version stamped into `source.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Batches in flight between the source and its consumer.
pub const CHANNEL_BATCHES: usize = 4;

/// A batch of records in source order, with the position reached.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Transactions completed in this batch (index after their last record).
    pub commits: Vec<Commit>,
    /// The set of transactions complete at the end of this batch, when at
    /// least one transaction completed in it.
    pub executed: Option<GtidSet>,
    /// Binlog bytes of the rows events decoded into `records`: a cheap
    /// measure of the batch's weight, used to bound work in flight.
    pub bytes: usize,
    /// Snapshot batches: the snapshot's progress once this batch is durable,
    /// when a chunk completed in it. Always `None` from the binlog stream.
    pub snapshot: Option<Box<SnapshotState>>,
}

/// What can go wrong while reading the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Worth a reconnect with backoff: network trouble, server restart, timeout.
    #[error("{0}")]
    Transient(String),
    /// The operator must act: bad setting, purged binlog, unknown event, corrupt data.
    #[error("{0}")]
    Fatal(String),
    /// This server cannot continue the stream (lacks delivered transactions,
    /// purged what we need, other flavour): another server may.
    #[error("{0}")]
    Refused(String),
    /// Our own configuration (URL, options) is invalid.
    #[error("configuration: {0}")]
    Config(String),
}

impl SourceError {
    /// True when reconnecting and resuming may fix it.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Transient(_))
    }
}

impl From<mysql_async::Error> for SourceError {
    fn from(e: mysql_async::Error) -> Self {
        use mysql_async::Error as E;
        match e {
            // mysql_async's Io error repeats its prefix ("Input/output error: Input/output error: ...").
            E::Io(ref io) => SourceError::Transient(format!("connection: {io}")),
            E::Driver(mysql_async::DriverError::ConnectionClosed) => {
                SourceError::Transient(e.to_string())
            }
            E::Server(ref s) if s.code == 1045 || s.code == 1227 || s.code == 1142 => {
                SourceError::Fatal(format!(
                    "{e}. Grant the rowstream user the privileges in deploy/grants.sql"
                ))
            }
            E::Server(ref s) if s.code == 1053 || s.code == 1040 => {
                SourceError::Transient(e.to_string())
            }
            _ => SourceError::Fatal(e.to_string()),
        }
    }
}
