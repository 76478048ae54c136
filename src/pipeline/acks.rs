//! The ack tracker: batches dispatched to the sinks and not yet acked by all
//! of them, settled strictly in batch order.
//!
//! Invariants:
//! - a batch leaves the tracker only once every sink acked it, and only
//!   after every earlier batch did: what [`AckTracker::next`] returns as
//!   acked is durable everywhere, so the checkpoint may cover it;
//! - the first failure (a failed, dropped or undeliverable ack) is reported
//!   as is; nothing after it is ever reported acked;
//! - in flight at most [`MAX_PENDING`] batches and [`MAX_PENDING_BYTES`]
//!   binlog bytes ([`AckTracker::has_room`]), so memory stays bounded
//!   whatever the sinks buffer;
//! - [`AckTracker::next`] is cancel-safe (it pops only a settled batch).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rowstream_api::{AckReceiver, SinkError};

use super::lag::LagBoard;
use crate::checkpoint::{OnDemandState, SnapshotState};
use crate::gtid::GtidSet;

/// Batches dispatched to the sinks and not yet acked by all of them. Sinks
/// that ack late (Kafka acks on delivery reports) need many batches in
/// flight to keep their pipes full. The decoded events are not held for
/// that: every sink hands each batch back once written (encoded into its own
/// bounded buffers), so what stays in flight is ack bookkeeping plus what the
/// sinks buffer. 64 batches keep librdkafka's batches full; 256 cost ~110 MB
/// more RSS (librdkafka's queue) without a gain we could measure.
pub(crate) const MAX_PENDING: usize = 64;
/// Binlog bytes of the batches in flight: bounds what a sink may buffer in
/// encoded form (librdkafka's queue, a group-commit buffer) whatever the row size.
pub(crate) const MAX_PENDING_BYTES: usize = 32 << 20;

/// A sink could not make a batch durable (or stopped).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SinkFailure {
    pub sink: String,
    pub error: SinkError,
}

/// Resolves once every sink acked one batch, or with the first failure.
pub(crate) type AckFuture = Pin<Box<dyn Future<Output = Result<(), SinkFailure>> + Send>>;

/// One dispatched batch: what its being durable everywhere means.
pub(crate) struct Pending {
    /// The set of transactions complete at the end of the batch, if any completed.
    pub executed: Option<GtidSet>,
    pub bytes: usize,
    pub records: u64,
    /// Commit time of the batch's first row change, if it has one.
    pub oldest_ts_ms: Option<u64>,
    /// Snapshot progress once this batch is durable (chunk completed in it).
    pub snapshot: Option<Box<SnapshotState>>,
    /// On-demand snapshot progress once this batch is durable (it changed
    /// in a transaction that completed in the batch).
    pub on_demand: Option<Box<OnDemandState>>,
    pub done: AckFuture,
    /// `done`'s outcome once it resolved (it is never polled again).
    pub settled: Option<Result<(), SinkFailure>>,
}

/// A batch every sink acked (its ack future spent).
pub(crate) struct Acked {
    pub executed: Option<GtidSet>,
    pub records: u64,
    pub snapshot: Option<Box<SnapshotState>>,
    pub on_demand: Option<Box<OnDemandState>>,
}

/// The batches in flight, oldest first.
#[derive(Default)]
pub(crate) struct AckTracker {
    queue: VecDeque<Pending>,
    bytes: usize,
}

impl AckTracker {
    /// True when another batch may be dispatched.
    pub fn has_room(&self) -> bool {
        self.queue.len() < MAX_PENDING && self.bytes < MAX_PENDING_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Commit time of the oldest batch in flight (outer None: none in flight).
    pub fn oldest_ts_ms(&self) -> Option<Option<u64>> {
        self.queue.front().map(|p| p.oldest_ts_ms)
    }

    /// A batch was dispatched to every sink.
    pub fn push(&mut self, p: Pending) {
        self.bytes += p.bytes;
        self.queue.push_back(p);
    }

    /// Waits for the oldest batch to settle. Must not be called while empty.
    /// Every batch in flight is polled, not just the oldest, so each sink's
    /// ack is noted (per-sink lag) when it comes, not when it reaches the front.
    // The wait below returns only once the front batch exists and is settled.
    #[allow(clippy::expect_used)]
    pub async fn next(&mut self) -> Result<Acked, SinkFailure> {
        assert!(!self.queue.is_empty(), "next() on an empty tracker");
        let queue = &mut self.queue;
        std::future::poll_fn(|cx| {
            for p in queue.iter_mut().filter(|p| p.settled.is_none()) {
                if let Poll::Ready(r) = p.done.as_mut().poll(cx) {
                    p.settled = Some(r);
                }
            }
            match queue.front().and_then(|p| p.settled.as_ref()) {
                Some(_) => Poll::Ready(()),
                None => Poll::Pending,
            }
        })
        .await;
        let settled = self.queue.front_mut().and_then(|p| p.settled.clone());
        settled.expect("front settled")?;
        let p = self.queue.pop_front().expect("front exists");
        self.bytes -= p.bytes;
        Ok(Acked {
            executed: p.executed,
            records: p.records,
            snapshot: p.snapshot,
            on_demand: p.on_demand,
        })
    }
}

/// Who hears of each sink's ack of one batch: the lag board, with the
/// batch's number and the newest heartbeat it holds.
pub(crate) struct AckNote {
    pub board: Arc<LagBoard>,
    pub seq: u64,
    pub heartbeat: Option<u64>,
}

/// The acks of one batch, one per sink in sink order (None: the batch could
/// not be handed to that sink), as one future. The sinks' acks are awaited
/// together, so `note` hears each one when it comes (a stuck sink does not
/// hide the others' progress); the first failure ends the wait.
pub(crate) fn all_acked(acks: Vec<(String, Option<AckReceiver>)>, note: AckNote) -> AckFuture {
    let mut waiting: Vec<(usize, String, AckReceiver)> = Vec::with_capacity(acks.len());
    let mut gone = None;
    for (i, (sink, rx)) in acks.into_iter().enumerate() {
        match rx {
            Some(rx) => waiting.push((i, sink, rx)),
            None => {
                gone.get_or_insert(sink);
            }
        }
    }
    Box::pin(async move {
        if let Some(sink) = gone {
            return Err(SinkFailure {
                sink,
                error: SinkError::Fatal("the sink is gone".into()),
            });
        }
        std::future::poll_fn(|cx| {
            let mut k = 0;
            while k < waiting.len() {
                let (i, sink, rx) = &mut waiting[k];
                let Poll::Ready(r) = Pin::new(rx).poll(cx) else {
                    k += 1;
                    continue;
                };
                let error = match r {
                    Ok(Ok(())) => {
                        note.board.sink_acked(*i, note.seq, note.heartbeat);
                        waiting.swap_remove(k);
                        continue;
                    }
                    Ok(Err(why)) => why,
                    Err(_) => SinkError::Fatal("batch dropped without acknowledgement".into()),
                };
                return Poll::Ready(Err(SinkFailure {
                    sink: sink.clone(),
                    error,
                }));
            }
            if waiting.is_empty() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await
    })
}
