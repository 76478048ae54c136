//! The checkpoint writer: the position every sink has made durable, and
//! its debounced writes to the checkpoint store.
//!
//! Invariants:
//! - the position only moves on [`Checkpointer::acked`], which the session
//!   calls with batches the ack tracker settled (acked by every sink, in
//!   order): the file never covers a batch some sink has not acked;
//! - the file is written atomically (see `checkpoint.rs`), only when the
//!   position changed, at most every [`CHECKPOINT_EVERY`] while streaming
//!   (the session's tick) and once more at the end;
//! - on a first start (or a fresh snapshot) the start position is written
//!   before any batch, so a crash before the first periodic write leaves a
//!   checkpoint the sinks can cut back to;
//! - [`Checkpointer::durable_sequence`] only reports what a completed write
//!   (or the file found at start) covers: semi-sync ACKs are released by it;
//! - while streaming, writes run on the blocking pool
//!   ([`Checkpointer::start_save`], completed by [`Checkpointer::write_done`]),
//!   at most one at a time and in order, so the session keeps handing batches
//!   to the sinks during the two fsyncs of a write (on a loaded disk they took
//!   milliseconds, and every batch waiting behind them added that to its
//!   commit-to-durable latency); [`Checkpointer::save`] is the blocking form
//!   for a start and an end, when no write runs.

use std::sync::Arc;
use std::time::Duration;

use rowstream_api::metrics;
use tokio::task::JoinHandle;

use super::acks::Acked;
use super::error::ServiceError;
use crate::checkpoint::{
    Checkpoint, CheckpointError, CheckpointStore, OnDemandState, SnapshotState,
};
use crate::gtid::GtidSet;

/// At most this often the checkpoint file is rewritten while streaming.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The durable position and what was last written.
pub(crate) struct Checkpointer {
    store: Arc<CheckpointStore>,
    /// The GTID set complete in batches every sink acked, and the snapshot
    /// in progress there. None before the first session begins.
    position: Option<Position>,
    /// What the file holds: writes that change nothing are skipped.
    written: Option<Position>,
    /// `GtidSet::sequence` of the set on disk.
    written_seq: Option<u64>,
    /// The write running on the blocking pool, and what it writes.
    writing: Option<(Position, JoinHandle<Result<(), CheckpointError>>)>,
}

/// What a checkpoint says, but where it was read from and when.
#[derive(Clone, PartialEq)]
struct Position {
    set: GtidSet,
    /// The (initial) snapshot in progress at `set`.
    snapshot: Option<SnapshotState>,
    /// The on-demand snapshot in progress at `set`.
    on_demand: Option<OnDemandState>,
    /// A snapshot's views beyond `set` (see `Checkpoint::overlap`); None
    /// once `set` contains them.
    overlap: Option<GtidSet>,
}

impl Position {
    fn of(cp: Checkpoint) -> Position {
        Position {
            set: cp.gtid_set,
            snapshot: cp.snapshot,
            on_demand: cp.on_demand,
            overlap: cp.overlap,
        }
    }

    fn checkpoint(&self, server: &str) -> Checkpoint {
        Checkpoint::new(self.set.clone(), server)
            .with_snapshot(self.snapshot.clone())
            .with_on_demand(self.on_demand.clone())
            .with_overlap(self.overlap.clone())
    }
}

impl Checkpointer {
    pub fn new(store: CheckpointStore) -> Self {
        Checkpointer {
            store: Arc::new(store),
            position: None,
            written: None,
            written_seq: None,
            writing: None,
        }
    }

    /// The checkpoint on disk.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        self.store.load()
    }

    /// A source starts at `start` (with `snapshot` and `on_demand` in
    /// progress, and a snapshot's views `overlap`) continuing `saved`, the
    /// checkpoint on disk (None: first start or fresh snapshot). Writes the
    /// start position now when nothing on disk describes it.
    pub fn begin(
        &mut self,
        start: Checkpoint,
        saved: Option<Checkpoint>,
        server: &str,
    ) -> Result<(), ServiceError> {
        self.written_seq = saved.as_ref().map(|c| c.gtid_set.sequence());
        self.written = saved.map(Position::of);
        self.position = Some(Position::of(start));
        if self.written.is_none() {
            self.save(server)?;
        }
        Ok(())
    }

    /// A batch is durable in every sink.
    pub fn acked(&mut self, a: &mut Acked) {
        let Some(p) = self.position.as_mut() else {
            return;
        };
        if let Some(ex) = a.executed.take() {
            p.set = ex;
            if p.overlap.as_ref().is_some_and(|o| o.is_subset(&p.set)) {
                p.overlap = None;
            }
        }
        if let Some(s) = a.snapshot.take() {
            p.snapshot = (!s.is_complete()).then_some(*s);
        }
        if let Some(s) = a.on_demand.take() {
            p.on_demand = (!s.is_complete()).then_some(*s);
        }
    }

    /// The GTID set the checkpoint covers (or will once written).
    pub fn position(&self) -> Option<&GtidSet> {
        self.position.as_ref().map(|p| &p.set)
    }

    /// `GtidSet::sequence` of the position (durable in every sink, maybe not yet on disk).
    pub fn position_sequence(&self) -> Option<u64> {
        self.position().map(|s| s.sequence())
    }

    /// `GtidSet::sequence` of the checkpoint on disk.
    pub fn durable_sequence(&self) -> Option<u64> {
        self.written_seq
    }

    /// The position when it differs from what the file holds (or is being written with).
    fn unwritten(&self) -> Option<&Position> {
        let p = self.position.as_ref()?;
        let newest = self
            .writing
            .as_ref()
            .map(|(w, _)| w)
            .or(self.written.as_ref());
        (newest != Some(p)).then_some(p)
    }

    /// Writes the position now, on this thread, when it differs from what
    /// the file holds. Only when no write runs (a start, or after
    /// [`Checkpointer::finish`]).
    pub fn save(&mut self, server: &str) -> Result<(), ServiceError> {
        debug_assert!(self.writing.is_none(), "a checkpoint write still runs");
        let Some(p) = self.unwritten().cloned() else {
            return Ok(());
        };
        self.store.save(&p.checkpoint(server))?;
        self.mark_written(p);
        Ok(())
    }

    /// Starts writing the position on the blocking pool when it differs
    /// from what the file holds and no write runs (a newer position waits
    /// for the next call after [`Checkpointer::write_done`]).
    pub fn start_save(&mut self, server: &str) {
        if self.writing.is_some() {
            return;
        }
        let Some(p) = self.unwritten().cloned() else {
            return;
        };
        let (store, cp) = (self.store.clone(), p.checkpoint(server));
        let h = tokio::task::spawn_blocking(move || store.save(&cp));
        self.writing = Some((p, h));
    }

    /// True while a write started by [`Checkpointer::start_save`] runs.
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Completes the running write: the file then covers what it wrote.
    /// Pending for ever when none runs; cancel-safe (a `select!` may drop it).
    pub async fn write_done(&mut self) -> Result<(), ServiceError> {
        let Some((_, h)) = self.writing.as_mut() else {
            return std::future::pending().await;
        };
        let r = h.await;
        let Some((p, _)) = self.writing.take() else {
            return Ok(());
        };
        match r {
            Ok(Ok(())) => {
                self.mark_written(p);
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(CheckpointError::Io {
                what: "write (the writer task failed)",
                path: self.store.path(),
                source: std::io::Error::other(e.to_string()),
            }
            .into()),
        }
    }

    /// Waits for a running write, then writes what is left: the end of a session.
    pub async fn finish(&mut self, server: &str) -> Result<(), ServiceError> {
        if self.is_writing() {
            self.write_done().await?;
        }
        self.save(server)
    }

    fn mark_written(&mut self, p: Position) {
        self.written_seq = Some(p.set.sequence());
        self.written = Some(p);
        metrics::CHECKPOINT_WRITES.with("").inc();
        metrics::CHECKPOINT_AGE_SECONDS
            .with("")
            .set(super::meters::now_secs());
    }

    /// The GTID set the file on disk covers.
    pub fn written(&self) -> Option<&GtidSet> {
        self.written.as_ref().map(|p| &p.set)
    }
}
