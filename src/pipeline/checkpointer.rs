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
    /// What the file holds (its GTID set's text): writes that change
    /// nothing are skipped.
    written: Option<(String, Option<SnapshotState>, Option<OnDemandState>)>,
    /// `GtidSet::sequence` of the set on disk.
    written_seq: Option<u64>,
}

/// The GTID set, the (initial) snapshot in progress there, and the
/// on-demand snapshot in progress there.
type Position = (GtidSet, Option<SnapshotState>, Option<OnDemandState>);

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
    /// progress) continuing `saved`, the checkpoint on disk (None: first
    /// start or fresh snapshot). Writes the start position now when nothing
    /// on disk describes it.
    pub fn begin(
        &mut self,
        start: GtidSet,
        snapshot: Option<SnapshotState>,
        on_demand: Option<OnDemandState>,
        saved: Option<Checkpoint>,
        server: &str,
    ) -> Result<(), ServiceError> {
        self.written_seq = saved.as_ref().map(|c| c.gtid_set.sequence());
        self.written = saved.map(|c| (c.gtid_set.to_string(), c.snapshot, c.on_demand));
        self.position = Some((start, snapshot, on_demand));
        if self.written.is_none() {
            self.save(server)?;
        }
        Ok(())
    }

    /// A batch is durable in every sink.
    pub fn acked(&mut self, a: &mut Acked) {
        let Some((set, snap, on_demand)) = self.position.as_mut() else {
            return;
        };
        if let Some(ex) = a.executed.take() {
            *set = ex;
        }
        if let Some(s) = a.snapshot.take() {
            *snap = (!s.is_complete()).then_some(*s);
        }
        if let Some(s) = a.on_demand.take() {
            *on_demand = (!s.is_complete()).then_some(*s);
        }
    }

    /// The GTID set the checkpoint covers (or will once written).
    pub fn position(&self) -> Option<&GtidSet> {
        self.position.as_ref().map(|(s, _, _)| s)
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
        let Some((set, snap, on_demand)) = &self.position else {
            return Ok(());
        };
        let text = set.to_string();
        if let Some((t, s, o)) = self.written.as_ref() {
            if *t == text && s == snap && o == on_demand {
                return Ok(());
            }
        }
        self.store.save(
            &Checkpoint::new(set.clone(), server)
                .with_snapshot(snap.clone())
                .with_on_demand(on_demand.clone()),
        )?;
        self.written = Some((text, snap.clone(), on_demand.clone()));
        self.written_seq = Some(set.sequence());
        metrics::CHECKPOINT_WRITES.with("").inc();
        metrics::CHECKPOINT_AGE_SECONDS
            .with("")
            .set(super::meters::now_secs());
        Ok(())
    }
}
