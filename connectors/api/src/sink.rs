//! The sink contract: how change records reach a connector and how the
//! connector reports that they are durable.
//!
//! The pipeline hands every sink the same `Arc<Batch>`es in stream order,
//! each with an [`Ack`]. A sink acknowledges a batch only once its effect is
//! durable at the target (fsync'd file, broker-acknowledged record, bulk
//! response without failed items), and acknowledges batches in the order it
//! received them. An `Ack` dropped without `ack()` reports a failure, never
//! a success, so a sink that panics or forgets cannot advance the checkpoint.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::event::Record;
use crate::gtid::GtidSet;

/// A transaction that ends inside a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// `records[..end]` of the batch holds the last record of the transaction.
    pub end: usize,
    /// The transaction's GTID in the server's notation.
    pub gtid: Arc<str>,
    /// How many records (row changes and DDL) the transaction had in total,
    /// across batches.
    pub events: u64,
}

/// The comment an apply sink puts before every DDL statement it runs on a
/// target, so a source reading that target can recognize the statement as
/// applied by rowstream (`[source] skip_rowstream_applied`) and not send it
/// back: servers log DDL text as received, comments included.
pub const APPLIED_DDL_MARK: &str = "/* rowstream applied */ ";

/// The transaction id (`Commit::gtid`) of snapshot chunk `n` of snapshot
/// `id`: snapshot chunks are committed like transactions under this name.
pub fn chunk_marker(id: u64, n: u64) -> String {
    format!("snapshot:{id}:{n}")
}

/// `(id, n)` of a chunk marker; None for anything else (a GTID).
pub fn parse_marker(s: &str) -> Option<(u64, u64)> {
    let rest = s.strip_prefix("snapshot:")?;
    let (id, n) = rest.split_once(':')?;
    Some((id.parse().ok()?, n.parse().ok()?))
}

/// Records in stream (commit) order with the transaction boundaries inside them.
/// A transaction may span batches; records after the last commit belong to a
/// transaction that continues in the next batch.
#[derive(Debug, Default)]
pub struct Batch {
    /// 1-based, increasing by one per batch over the life of the process.
    pub seq: u64,
    pub records: Vec<Record>,
    /// Transactions completed in this batch, in order.
    pub commits: Vec<Commit>,
    /// The source's executed set at the end of this batch (every
    /// transaction the stream has completed, from before the stream
    /// started on), when a transaction completed in it; `None` otherwise
    /// (and for snapshot batches). Transactions in it that no commit of
    /// this or an earlier batch names reached no sink as records (every
    /// change filtered out, empty, heartbeat-only): a sink that accounts
    /// for the source's history (the file backup) records them from this.
    pub executed: Option<GtidSet>,
}

/// What the service has durably delivered to every sink: the checkpoint.
/// Sinks use it at start to drop what they hold beyond it (a replay follows).
pub trait Committed: Send + Sync {
    /// True when the transaction with this GTID is covered by the checkpoint.
    fn contains(&self, gtid: &str) -> bool;
    /// True when there is no checkpoint at all (first start).
    fn is_empty(&self) -> bool;
    /// True when `id` belongs to this checkpoint's history even if it is not
    /// covered yet (a chunk of the snapshot in progress): a backup whose
    /// newest transaction has such an id belongs to this checkpoint.
    fn recognizes(&self, id: &str) -> bool {
        self.contains(id)
    }
    /// The checkpoint's GTID set, when the implementation has one: a sink
    /// that records what it covers (the file backup) refuses to start when
    /// this set holds transactions it does not.
    fn executed(&self) -> Option<&GtidSet> {
        None
    }
}

/// The outcome reported for one batch: a transient failure lets the pipeline
/// restart the sink from the checkpoint, a fatal one stops the service.
pub type AckResult = Result<(), SinkError>;

/// The acknowledgement of one batch by one sink. Consumed by [`Ack::ack`] or
/// [`Ack::fail`]; dropping it unacknowledged reports a failure.
#[derive(Debug)]
pub struct Ack {
    tx: Option<oneshot::Sender<AckResult>>,
}

/// The pipeline's side of an [`Ack`].
pub type AckReceiver = oneshot::Receiver<AckResult>;

impl Ack {
    /// A new ack and the receiver the pipeline waits on.
    pub fn new() -> (Ack, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        (Ack { tx: Some(tx) }, rx)
    }

    /// The batch is durable at the target.
    pub fn ack(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Ok(()));
        }
    }

    /// The batch could not be made durable.
    pub fn fail(mut self, why: SinkError) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(why));
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(SinkError::Fatal(
                "batch dropped without acknowledgement".into(),
            )));
        }
    }
}

/// Why a sink stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying after a restart of the sink from the checkpoint
    /// (target unreachable, timeouts).
    #[error("{0}")]
    Transient(String),
    /// The operator must act (no permission, disk full, bad configuration).
    #[error("{0}")]
    Fatal(String),
}

impl SinkError {
    /// `Fatal(msg)` when `fatal`, else `Transient(msg)`: for sinks that
    /// classify a failure before wording it.
    pub fn new(fatal: bool, msg: impl Into<String>) -> SinkError {
        if fatal {
            SinkError::Fatal(msg.into())
        } else {
            SinkError::Transient(msg.into())
        }
    }

    /// True for [`SinkError::Fatal`].
    pub fn is_fatal(&self) -> bool {
        matches!(self, SinkError::Fatal(_))
    }
}

/// A configured sink that is not running yet. The pipeline keeps it for the
/// life of the process: it starts the sink once, and again from the
/// checkpoint after a transient failure, so `start` takes `&self`.
#[async_trait::async_trait]
pub trait SinkBuilder: Send + Sync {
    /// The configured name, for logs and metrics.
    fn name(&self) -> &str;
    /// Prepares the target, drops whatever it holds beyond `committed` and
    /// returns the running sink.
    async fn start(&self, committed: &dyn Committed) -> Result<Box<dyn Sink>, SinkError>;
}

/// Implements [`SinkBuilder`] for a sink's config type whose running sink
/// has `async fn start(&Config, &dyn Committed) -> Result<Sink, SinkError>`
/// and whose config has a `name` field:
/// `rowstream_api::sink_builder!(FileSinkConfig => FileSink);`
#[macro_export]
macro_rules! sink_builder {
    ($config:ty => $sink:ty) => {
        #[$crate::async_trait::async_trait]
        impl $crate::SinkBuilder for $config {
            fn name(&self) -> &str {
                &self.name
            }

            async fn start(
                &self,
                committed: &dyn $crate::Committed,
            ) -> Result<Box<dyn $crate::Sink>, $crate::SinkError> {
                Ok(Box::new(<$sink>::start(self, committed).await?))
            }
        }
    };
}

/// A running connector. The pipeline drives it from one task: `write` per
/// batch in order, `flush` whenever no batch is waiting (and before
/// shutdown). A sink may buffer in `write` and make many batches durable in
/// one `flush` (group commit); it must ack each batch only once durable and
/// in order.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Accepts one batch; acks it now or in a later `write`/`flush`.
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError>;
    /// Makes everything accepted so far durable and acks it.
    async fn flush(&mut self) -> Result<(), SinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_ack_is_a_failure() {
        let (ack, mut rx) = Ack::new();
        drop(ack);
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(SinkError::Fatal(
                "batch dropped without acknowledgement".to_string()
            ))
        );
        let (ack, mut rx) = Ack::new();
        ack.ack();
        assert_eq!(rx.try_recv().unwrap(), Ok(()));
    }
}
