//! One run of an opened source into a started sink set, until the source
//! ends, a stop is asked (a drain) or a sink fails.
//!
//! Invariants:
//! - batches are read only while the ack tracker has room (backpressure);
//!   each goes to every sink, then to the tracker, in stream order;
//! - the checkpoint moves only with batches the tracker settled as acked
//!   by every sink; after a failure it stays at the last such batch;
//! - written batches come back through the free channel and are dropped on
//!   this thread: the reference counts every event of a table shares
//!   (names, GTID, table metadata) then never bounce between cores;
//! - whatever the end, the source is stopped, the sinks are closed and the
//!   checkpoint is written once more before returning;
//! - semi-sync: an ACK is released only after a checkpoint write covering
//!   its transaction completed; when acked batches cover a request, the
//!   checkpoint is written as soon as every batch already settled is
//!   consumed and no write runs (one write for the group), not at the next
//!   tick;
//! - checkpoint writes run beside the loop (one at a time), never inside it:
//!   batches keep flowing to the sinks during their fsyncs.

use std::sync::Arc;
use std::time::Duration;

use rowstream_api::{Batch, Record, SinkError};
use tokio::sync::{mpsc, watch};

use super::acks::{AckNote, AckTracker, Pending, SinkFailure};
use super::checkpointer::{Checkpointer, CHECKPOINT_EVERY};
use super::error::ServiceError;
use super::heartbeat::Observe;
use super::meters::Meters;
use super::plan::Opened;
use super::restart;
use super::sinks::SinkSet;
use crate::checkpoint::Checkpoint;
use crate::source::binlog::semisync::AckPath;
use crate::source::snapshot::signal::Incremental;
use crate::source::SourceError;

/// How long a failed run waits for the source to stop at a transaction boundary.
const SOURCE_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a failed run waits for the sinks to flush and stop.
const SINK_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How a run ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The source ended (a drain after a stop, or initial_only done).
    Done(Result<(), SourceError>),
    /// A sink failed; `progressed`: some batch was acked everywhere first.
    Failed {
        failure: SinkFailure,
        progressed: bool,
    },
}

/// What a run shares with the runs before and after it.
pub(crate) struct Shared<'a> {
    pub checkpoint: &'a mut Checkpointer,
    pub meters: &'a Meters,
    /// The last batch number handed out (1-based over the process' life).
    pub seq: &'a mut u64,
    pub stop: &'a mut watch::Receiver<bool>,
    pub observe: &'a Observe,
}

/// Streams `src` into `sinks` (whose written batches come back on `free`).
pub(crate) async fn run(
    mut src: Opened,
    mut sinks: SinkSet,
    mut free: mpsc::UnboundedReceiver<Arc<Batch>>,
    sh: Shared<'_>,
) -> Result<End, ServiceError> {
    let server = &src.server;
    let start = Checkpoint::new(src.start.clone(), server())
        .with_snapshot(src.snapshot.take())
        .with_on_demand(src.on_demand.take())
        .with_overlap(src.overlap.clone());
    sh.checkpoint.begin(start, src.saved.take(), &server())?;
    let acks = src.acks.clone();
    let mut ack_due = false;
    *sh.observe.carry.lock().unwrap_or_else(|p| p.into_inner()) = Default::default();
    sh.observe.board.session_started();
    let mut tracker = AckTracker::default();
    let mut source_result: Option<Result<(), SourceError>> = None;
    let mut source_closed = false;
    let mut stopping = false;
    let mut progressed = false;
    let mut failure: Option<SinkFailure> = None;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let m = sh.meters;
    while !(source_closed && tracker.is_empty()) {
        tokio::select! {
            biased;
            r = tracker.next(), if !tracker.is_empty() => match r {
                Ok(mut a) => {
                    progressed = true;
                    m.acked(a.records, tracker.oldest_ts_ms());
                    sh.checkpoint.acked(&mut a);
                    ack_due |= acks_due(acks.as_deref(), sh.checkpoint);
                }
                Err(f) => {
                    failure = Some(f);
                    break;
                }
            },
            // A checkpoint write finished: release what it covers, and write
            // again at once when ACK requests wait beyond it.
            r = sh.checkpoint.write_done(), if sh.checkpoint.is_writing() => {
                r?;
                release_acks(acks.as_deref(), sh.checkpoint);
                ack_due |= acks_due(acks.as_deref(), sh.checkpoint);
            }
            // After every settled batch was consumed (biased): one write for
            // the group (a running write is completed first, then this again).
            _ = std::future::ready(()), if ack_due && !sh.checkpoint.is_writing() => {
                ack_due = false;
                sh.checkpoint.start_save(&server());
            }
            Some(b) = free.recv() => drop(b),
            f = sinks.first_end() => {
                failure = Some(f);
                break;
            }
            b = src.rx.recv(), if !source_closed && tracker.has_room() => match b {
                Some(b) => dispatch(b, &mut src.incremental, &sinks, &mut tracker, m, sh.seq, sh.observe).await,
                None => source_closed = true,
            },
            r = src.source.as_mut(), if source_result.is_none() => {
                if let Err(e) = &r {
                    tracing::error!(error = %e, "source stopped");
                }
                source_result = Some(r);
            }
            _ = tick.tick() => {
                // Keeps the lag growing while a sink stalls.
                m.lag_from(tracker.oldest_ts_ms());
                sh.checkpoint.start_save(&server());
                sh.observe.board.tick();
                if let Some(w) = sh.checkpoint.written() {
                    sh.observe.board.checkpointed(w.to_string());
                }
            }
            _ = sh.stop.wait_for(|s| *s), if !stopping => {
                tracing::info!("stopping: finishing the current transaction, flushing sinks, writing the checkpoint");
                stopping = true;
                let _ = src.stop.send(true);
            }
        }
    }
    let _ = src.stop.send(true);
    drop(tracker);
    let Some(first) = failure else {
        if source_result.is_none() {
            source_result = Some(src.source.as_mut().await);
        }
        sinks.close(SINK_STOP_TIMEOUT).await;
        src.release.await;
        sh.checkpoint.finish(&server()).await?;
        release_acks(acks.as_deref(), sh.checkpoint);
        if let Some(at) = sh.checkpoint.position() {
            tracing::info!(gtid_set = %at, "checkpoint written");
        }
        return Ok(End::Done(source_result.unwrap_or(Ok(()))));
    };
    // A failed sink: stop reading (a source blocked on a full channel
    // ends once the channel is gone); the checkpoint stays at the last
    // batch acked by all.
    drop(src.rx);
    if source_result.is_none() {
        let _ = tokio::time::timeout(SOURCE_STOP_TIMEOUT, src.source.as_mut()).await;
    }
    drop(src.source);
    let ends = sinks.close(SINK_STOP_TIMEOUT).await;
    src.release.await;
    let failure = restart::classify(first, &ends);
    let transient = matches!(failure.error, SinkError::Transient(_));
    // `position` only covers batches every sink acked, so it is safe to
    // keep even when a sink failed after them.
    if let Err(e) = sh.checkpoint.finish(&server()).await {
        if transient {
            return Err(e);
        }
        tracing::error!(error = %e, "cannot write the checkpoint");
    }
    if let Some((name, _)) = ends.iter().find(|(_, e)| e.is_none()) {
        if transient {
            return Err(ServiceError::Sink {
                name: name.clone(),
                reason: format!(
                    "did not stop within {SINK_STOP_TIMEOUT:?} after sink {:?} failed ({}); cannot restart it safely",
                    failure.sink, failure.error
                ),
            });
        }
    }
    Ok(End::Failed {
        failure,
        progressed,
    })
}

/// True when the position (durable in every sink) covers a semi-sync request.
fn acks_due(acks: Option<&AckPath>, cp: &Checkpointer) -> bool {
    let Some(a) = acks else { return false };
    cp.position_sequence().is_some_and(|seq| a.due(seq))
}

/// Releases the semi-sync requests the checkpoint on disk covers.
fn release_acks(acks: Option<&AckPath>, cp: &Checkpointer) {
    if let (Some(a), Some(seq)) = (acks, cp.durable_sequence()) {
        a.release(seq);
    }
}

/// Hands one source batch to every sink and to the tracker.
async fn dispatch(
    mut b: crate::source::Batch,
    incremental: &mut Option<Incremental>,
    sinks: &SinkSet,
    tracker: &mut AckTracker,
    m: &Meters,
    seq: &mut u64,
    observe: &Observe,
) {
    // On-demand snapshot progress, durable with this batch's last commit.
    let on_demand = incremental
        .as_mut()
        .and_then(|inc| inc.process(&mut b))
        .map(Box::new);
    // Heartbeat rows: noted for the lag, taken out before any sink encodes them.
    let heartbeat = observe.heartbeat.as_ref().and_then(|h| {
        let mut carry = observe.carry.lock().unwrap_or_else(|p| p.into_inner());
        h.scan(&mut b.records, &mut b.commits, &mut carry)
    });
    *seq += 1;
    observe
        .board
        .dispatched(*seq, || b.executed.as_ref().map(|e| e.to_string()));
    m.events.add(b.records.len() as u64);
    m.transactions.add(b.commits.len() as u64);
    let batch = Arc::new(Batch {
        seq: *seq,
        records: b.records,
        commits: b.commits,
        // One set per batch (not per transaction), for the file backup's coverage.
        executed: b.executed.clone(),
    });
    let note = AckNote {
        board: observe.board.clone(),
        seq: *seq,
        heartbeat,
    };
    let done = sinks.dispatch(&batch, note).await;
    let oldest_ts_ms = batch.records.iter().find_map(|r| match r {
        Record::Change(ev) => Some(ev.source().ts_ms),
        _ => None,
    });
    if tracker.is_empty() {
        m.lag_from(Some(oldest_ts_ms));
    }
    tracker.push(Pending {
        executed: b.executed,
        snapshot: b.snapshot,
        on_demand,
        bytes: b.bytes,
        records: batch.records.len() as u64,
        oldest_ts_ms,
        done,
        settled: None,
    });
    m.in_flight.set(tracker.len() as f64);
}
