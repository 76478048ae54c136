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
//!   (or the file found at start) covers: semi-sync ACKs are released by it.

use std::time::Duration;

use rowstream_api::metrics;

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
    store: CheckpointStore,
    /// The GTID set complete in batches every sink acked, and the snapshot
    /// in progress there. None before the first session begins.
    position: Option<Position>,
    /// What the file holds: writes that change nothing are skipped.
    written: Option<Position>,
    /// `GtidSet::sequence` of the set on disk.
    written_seq: Option<u64>,
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
            store,
            position: None,
            written: None,
            written_seq: None,
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

    /// Writes the position when it differs from what the file holds.
    pub fn save(&mut self, server: &str) -> Result<(), ServiceError> {
        let Some(p) = &self.position else {
            return Ok(());
        };
        if self.written.as_ref() == Some(p) {
            return Ok(());
        }
        self.store.save(&p.checkpoint(server))?;
        self.written = Some(p.clone());
        self.written_seq = Some(p.set.sequence());
        metrics::CHECKPOINT_WRITES.with("").inc();
        metrics::CHECKPOINT_AGE_SECONDS
            .with("")
            .set(super::meters::now_secs());
        Ok(())
    }
}
