//! Unit tests of the pipeline pieces with fake sinks and a fake source (no
//! servers): the ack tracker and the checkpoint writer (out-of-order
//! completion across sinks, dropped and failed acks), the sink set (slow,
//! failing and group-committing sinks, shutdown drains), and the restart of
//! sinks whose target goes away and comes back.
//!
//! The invariant every test checks: the checkpoint never covers a batch
//! some sink has not acked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rowstream_api::{
    metrics, Ack, AckReceiver, Batch, Commit, Committed, Flavor, Sink, SinkBuilder, SinkError,
};
use tokio::sync::{mpsc, watch};

use super::acks::{all_acked, AckTracker, Pending, SinkFailure, MAX_PENDING};
use super::checkpointer::Checkpointer;
use super::plan::{CheckpointCommitted, Opened};
use super::sinks::{Placement, SinkSet};

/// Every sink-set and restart test runs with the sinks on threads of their
/// own and on the test's thread: CI's two CPUs pick the second by default.
const PLACEMENTS: [Placement; 2] = [Placement::OwnThreads, Placement::PipelineThread];
use super::{supervise, Origin, ServiceError};

fn note() -> super::acks::AckNote {
    super::acks::AckNote {
        board: observe(4).board,
        seq: 0,
        heartbeat: None,
    }
}

fn observe(n: usize) -> super::heartbeat::Observe {
    super::heartbeat::Observe::none((0..n).map(|i| format!("s{i}")).collect())
}
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::gtid::GtidSet;
use rowstream_api::Backoff;

// ---- helpers ---------------------------------------------------------------

/// MariaDB transactions `0-1-1 ..= 0-1-n`.
fn set(n: u64) -> GtidSet {
    if n == 0 {
        return GtidSet::empty(Flavor::MariaDb);
    }
    GtidSet::parse(Flavor::MariaDb, &format!("0-1-{n}")).unwrap()
}

/// The sequence number of a `0-1-n` set or GTID (0 when empty).
fn seq_of(s: &str) -> u64 {
    s.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A pending batch completing transaction `n`, settled by `acks`.
fn pending(n: u64, acks: Receivers) -> Pending {
    Pending {
        executed: Some(set(n)),
        bytes: 1,
        records: 1,
        oldest_ts_ms: None,
        snapshot: None,
        on_demand: None,
        done: all_acked(acks, note()),
        settled: None,
    }
}

/// Each sink's receiver of one batch's ack.
type Receivers = Vec<(String, Option<AckReceiver>)>;

/// Two sinks' acks for one batch.
fn two_acks() -> ((Ack, Ack), Receivers) {
    let (a, ra) = Ack::new();
    let (b, rb) = Ack::new();
    (
        (a, b),
        vec![("a".to_string(), Some(ra)), ("b".to_string(), Some(rb))],
    )
}

/// A checkpoint writer on a fresh directory, begun at `0-1-0`.
fn checkpointer(dir: &tempfile::TempDir) -> Checkpointer {
    let mut c = Checkpointer::new(CheckpointStore::open(dir.path()).unwrap());
    c.begin(Checkpoint::new(set(0), "test:1"), None, "test:1")
        .unwrap();
    c
}

fn on_disk(c: &Checkpointer) -> u64 {
    c.load()
        .unwrap()
        .map(|cp| seq_of(&cp.gtid_set.to_string()))
        .unwrap_or(0)
}

/// Settles every batch the tracker can settle within a short wait.
async fn settle(t: &mut AckTracker, c: &mut Checkpointer) -> Result<(), SinkFailure> {
    while !t.is_empty() {
        match tokio::time::timeout(Duration::from_millis(30), t.next()).await {
            Err(_pending) => break,
            Ok(r) => c.acked(&mut r?),
        }
    }
    c.save("test:1").unwrap();
    Ok(())
}

// ---- ack tracker and checkpoint writer --------------------------------------

#[tokio::test]
async fn out_of_order_completion_across_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = checkpointer(&dir);
    let mut t = AckTracker::default();
    let mut held = Vec::new();
    for n in 1..=3 {
        let (acks, rx) = two_acks();
        t.push(pending(n, rx));
        held.push(acks);
    }
    let (b1, b2, b3) = {
        let mut it = held.into_iter();
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    // Sink a is ahead on every batch; sink b acks batches 2 and 3 first.
    b1.0.ack();
    b2.0.ack();
    b3.0.ack();
    b3.1.ack();
    b2.1.ack();
    settle(&mut t, &mut c).await.unwrap();
    assert_eq!(on_disk(&c), 0, "batch 1 is not acked by sink b");
    assert_eq!(t.len(), 3);
    b1.1.ack();
    settle(&mut t, &mut c).await.unwrap();
    assert_eq!(on_disk(&c), 3);
    assert!(t.is_empty());
}

/// A write beside the loop: the file (and the sequence semi-sync releases
/// by) moves only once it completed; one write runs at a time and a newer
/// position waits for the next start.
#[tokio::test]
async fn checkpoint_write_beside_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = checkpointer(&dir);
    let mut t = AckTracker::default();
    for n in 1..=2 {
        let (acks, rx) = two_acks();
        t.push(pending(n, rx));
        acks.0.ack();
        acks.1.ack();
        c.acked(&mut t.next().await.unwrap());
        if n == 1 {
            c.start_save("test:1");
            assert!(c.is_writing());
            assert_eq!(
                c.durable_sequence(),
                Some(set(0).sequence()),
                "not before it completed"
            );
        } else {
            c.start_save("test:1"); // batch 1's write still runs: nothing starts
        }
    }
    c.write_done().await.unwrap();
    assert!(!c.is_writing());
    assert_eq!(on_disk(&c), 1);
    assert_eq!(c.durable_sequence(), Some(set(1).sequence()));
    c.start_save("test:1");
    c.write_done().await.unwrap();
    assert_eq!(on_disk(&c), 2);
    c.start_save("test:1");
    assert!(!c.is_writing(), "nothing new to write");
    c.finish("test:1").await.unwrap();
    assert_eq!(on_disk(&c), 2);
}

#[tokio::test]
async fn dropped_ack_stops_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = checkpointer(&dir);
    let mut t = AckTracker::default();
    let (a1, r1) = two_acks();
    let (a2, r2) = two_acks();
    let (a3, r3) = two_acks();
    t.push(pending(1, r1));
    t.push(pending(2, r2));
    t.push(pending(3, r3));
    a1.0.ack();
    a1.1.ack();
    a2.0.ack();
    drop(a2.1); // sink b forgets batch 2
    a3.0.ack();
    a3.1.ack();
    let f = settle(&mut t, &mut c).await.unwrap_err();
    assert_eq!(f.sink, "b");
    assert!(matches!(f.error, SinkError::Fatal(ref m) if m.contains("dropped")));
    c.save("test:1").unwrap();
    assert_eq!(on_disk(&c), 1, "the checkpoint covers only batch 1");
}

#[tokio::test]
async fn failed_ack_and_gone_sink_are_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = checkpointer(&dir);
    let mut t = AckTracker::default();
    let (a1, r1) = two_acks();
    t.push(pending(1, r1));
    a1.0.fail(SinkError::Transient("target unreachable".into()));
    a1.1.ack();
    let f = settle(&mut t, &mut c).await.unwrap_err();
    assert_eq!(
        f,
        SinkFailure {
            sink: "a".into(),
            error: SinkError::Transient("target unreachable".into())
        }
    );
    let mut t = AckTracker::default();
    t.push(pending(2, vec![("gone".to_string(), None)]));
    assert_eq!(settle(&mut t, &mut c).await.unwrap_err().sink, "gone");
    assert_eq!(on_disk(&c), 0);
}

#[test]
fn tracker_bounds_batches_in_flight() {
    let mut t = AckTracker::default();
    let mut keep = Vec::new();
    for n in 0..MAX_PENDING as u64 {
        assert!(t.has_room());
        let (a, rx) = two_acks();
        keep.push(a);
        t.push(pending(n + 1, rx));
    }
    assert!(!t.has_room());
}

// ---- fake sinks ---------------------------------------------------------------

/// What a fake sink's target holds and how it behaves.
#[derive(Default)]
struct Target {
    /// GTIDs received and acked, in order (replays included).
    acked: Vec<u64>,
    /// Down: writes fail (Transient) and starts fail until `down_starts` is spent.
    down: bool,
    down_starts: u32,
    /// Go down once this GTID is written (0: never).
    down_after: u64,
    starts: u32,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Acks each batch in `write`.
    Ack,
    /// Acks in `flush` (group commit).
    GroupCommit,
    /// Sleeps this long per write, then acks.
    Slow(u64),
    /// Fails every write with a fatal error.
    Fatal,
}

struct FakeBuilder {
    name: String,
    mode: Mode,
    target: Arc<Mutex<Target>>,
}

struct FakeSink {
    mode: Mode,
    target: Arc<Mutex<Target>>,
    held: Vec<(Arc<Batch>, Ack)>,
}

fn fake(name: &str, mode: Mode) -> (Box<dyn SinkBuilder>, Arc<Mutex<Target>>) {
    let target = Arc::new(Mutex::new(Target::default()));
    let b = FakeBuilder {
        name: name.into(),
        mode,
        target: target.clone(),
    };
    (Box::new(b), target)
}

#[async_trait::async_trait]
impl SinkBuilder for FakeBuilder {
    fn name(&self) -> &str {
        &self.name
    }
    async fn start(&self, _committed: &dyn Committed) -> Result<Box<dyn Sink>, SinkError> {
        let mut t = self.target.lock().unwrap();
        t.starts += 1;
        if t.down {
            if t.down_starts > 0 {
                t.down_starts -= 1;
                return Err(SinkError::Transient("connection refused".into()));
            }
            t.down = false; // the target is back
        }
        Ok(Box::new(FakeSink {
            mode: self.mode,
            target: self.target.clone(),
            held: Vec::new(),
        }))
    }
}

impl FakeSink {
    fn settle(&mut self, batch: &Batch, ack: Ack) -> Result<(), SinkError> {
        let mut t = self.target.lock().unwrap();
        if t.down {
            let e = SinkError::Transient("target went away".into());
            ack.fail(e.clone());
            return Err(e);
        }
        for c in &batch.commits {
            let n = seq_of(&c.gtid);
            t.acked.push(n);
            if n == t.down_after && t.down_starts == 0 && !t.down {
                t.down = true;
                t.down_starts = 2;
                t.down_after = 0;
            }
        }
        ack.ack();
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for FakeSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        match self.mode {
            Mode::Ack => self.settle(&batch, ack),
            Mode::Slow(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.settle(&batch, ack)
            }
            Mode::GroupCommit => {
                self.held.push((batch, ack));
                Ok(())
            }
            Mode::Fatal => {
                let e = SinkError::Fatal("disk full".into());
                ack.fail(e.clone());
                Err(e)
            }
        }
    }
    async fn flush(&mut self) -> Result<(), SinkError> {
        for (b, a) in std::mem::take(&mut self.held) {
            self.settle(&b, a)?;
        }
        Ok(())
    }
}

fn batch(seq: u64) -> Arc<Batch> {
    Arc::new(Batch {
        seq,
        records: Vec::new(),
        commits: vec![Commit {
            end: 0,
            gtid: format!("0-1-{seq}").into(),
            events: 0,
        }],
        executed: None,
    })
}

fn committed(n: u64) -> CheckpointCommitted {
    CheckpointCommitted {
        set: Some(set(n)),
        flavor: Flavor::MariaDb,
        snapshot: None,
    }
}

// ---- sink set ------------------------------------------------------------------

#[tokio::test]
async fn slow_and_fast_sinks_settle_in_order() {
    for placement in PLACEMENTS {
        let dir = tempfile::tempdir().unwrap();
        let mut c = checkpointer(&dir);
        let (fast, ft) = fake("fast", Mode::Ack);
        let (slow, st) = fake("slow", Mode::Slow(15));
        let (gc, gt) = fake("gc", Mode::GroupCommit);
        let (free_tx, mut free_rx) = mpsc::unbounded_channel();
        let sinks = SinkSet::start(&[fast, slow, gc], &committed(0), free_tx, placement)
            .await
            .unwrap();
        let mut t = AckTracker::default();
        for n in 1..=8 {
            let done = sinks.dispatch(&batch(n), note()).await;
            t.push(Pending {
                executed: Some(set(n)),
                bytes: 1,
                records: 0,
                oldest_ts_ms: None,
                snapshot: None,
                on_demand: None,
                done,
                settled: None,
            });
            // Whatever is settled now is acked by all three.
            settle(&mut t, &mut c).await.unwrap();
            let at = on_disk(&c);
            for target in [&ft, &st, &gt] {
                assert!(
                    target
                        .lock()
                        .unwrap()
                        .acked
                        .iter()
                        .filter(|&&g| g <= at)
                        .count() as u64
                        == at
                );
            }
        }
        while !t.is_empty() {
            c.acked(&mut t.next().await.unwrap());
        }
        c.save("test:1").unwrap();
        assert_eq!(on_disk(&c), 8);
        for target in [&ft, &st, &gt] {
            assert_eq!(target.lock().unwrap().acked, (1..=8).collect::<Vec<_>>());
        }
        let ends = sinks.close(Duration::from_secs(5)).await;
        assert!(
            ends.iter().all(|(_, e)| matches!(e, Some(Ok(())))),
            "{ends:?}"
        );
        // Every written batch came back to be freed here.
        let mut freed = 0;
        while free_rx.try_recv().is_ok() {
            freed += 1;
        }
        assert_eq!(freed, 24);
    }
}

#[tokio::test]
async fn shutdown_drains_group_commit() {
    for placement in PLACEMENTS {
        let (gc, gt) = fake("gc", Mode::GroupCommit);
        let (free_tx, _free_rx) = mpsc::unbounded_channel();
        let mut sinks = SinkSet::start(&[gc], &committed(0), free_tx, placement)
            .await
            .unwrap();
        // Flushed only when idle: hold it busy by closing right after dispatch.
        let mut dones = Vec::new();
        for n in 1..=3 {
            dones.push(sinks.dispatch(&batch(n), note()).await);
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sinks.first_end())
                .await
                .is_err(),
            "a healthy sink keeps running"
        );
        let ends = sinks.close(Duration::from_secs(5)).await;
        assert!(matches!(ends[0].1, Some(Ok(()))));
        for d in dones {
            d.await.unwrap();
        }
        assert_eq!(gt.lock().unwrap().acked, vec![1, 2, 3]);
    }
}

#[tokio::test]
async fn failing_sink_ends_and_fails_its_ack() {
    for placement in PLACEMENTS {
        let (ok, _) = fake("ok", Mode::Ack);
        let (bad, _) = fake("bad", Mode::Fatal);
        let (free_tx, _free_rx) = mpsc::unbounded_channel();
        let mut sinks = SinkSet::start(&[ok, bad], &committed(0), free_tx, placement)
            .await
            .unwrap();
        let done = sinks.dispatch(&batch(1), note()).await;
        let f = done.await.unwrap_err();
        assert_eq!(f.sink, "bad");
        assert_eq!(f.error, SinkError::Fatal("disk full".into()));
        let end = sinks.first_end().await;
        assert_eq!(end.sink, "bad");
        sinks.close(Duration::from_secs(5)).await;
    }
}

// ---- restart -------------------------------------------------------------------

/// Transactions `0-1-1 ..= 0-1-last`, one per batch, replayed from the checkpoint.
struct FakeOrigin {
    last: u64,
    opened_from: Vec<u64>,
}

impl Origin for FakeOrigin {
    type Plan = (u64, Option<Checkpoint>);
    async fn plan(
        &mut self,
        saved: Option<Checkpoint>,
    ) -> Result<Option<(CheckpointCommitted, Self::Plan)>, ServiceError> {
        let from = saved
            .as_ref()
            .map(|c| seq_of(&c.gtid_set.to_string()))
            .unwrap_or(0);
        let committed = CheckpointCommitted::new(saved.as_ref(), Flavor::MariaDb);
        Ok(Some((committed, (from, saved))))
    }
    async fn open(&mut self, (from, saved): Self::Plan) -> Result<Opened, ServiceError> {
        self.opened_from.push(from);
        let (tx, rx) = mpsc::channel(crate::source::CHANNEL_BATCHES);
        let (stop, _stop_rx) = watch::channel(false);
        let last = self.last;
        let source = async move {
            for n in from + 1..=last {
                let b = crate::source::Batch {
                    records: Vec::new(),
                    commits: batch(n).commits.clone(),
                    executed: Some(set(n)),
                    bytes: 1,
                    snapshot: None,
                };
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            Ok(())
        };
        Ok(Opened {
            rx,
            source: Box::pin(source),
            stop,
            incremental: None,
            on_demand: None,
            start: set(from),
            snapshot: None,
            overlap: None,
            saved,
            server: Box::new(|| "fake:1".to_string()),
            release: Box::pin(async {}),
            acks: None,
        })
    }
}

fn quick_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_millis(40))
}

#[tokio::test]
async fn target_goes_away_and_comes_back() {
    for placement in PLACEMENTS {
        let restarts = metrics::SINK_RESTARTS.with("flaky-restart-test").get();
        let dir = tempfile::tempdir().unwrap();
        let (flaky, ft) = fake("flaky-restart-test", Mode::Ack);
        let (steady, stt) = fake("steady", Mode::GroupCommit);
        ft.lock().unwrap().down_after = 7;
        let mut origin = FakeOrigin {
            last: 20,
            opened_from: Vec::new(),
        };
        let (_stop_tx, stop) = watch::channel(false);
        let store = Checkpointer::new(CheckpointStore::open(dir.path()).unwrap());
        supervise(
            &mut origin,
            &[flaky, steady],
            placement,
            store,
            quick_backoff(),
            stop,
            observe(2),
        )
        .await
        .unwrap();
        let cp = CheckpointStore::open(dir.path())
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(seq_of(&cp.gtid_set.to_string()), 20);
        let t = ft.lock().unwrap();
        // Went down after 7, two refused starts, then a start that worked.
        assert_eq!(t.starts, 4, "{:?}", origin.opened_from);
        for target in [&t.acked, &stt.lock().unwrap().acked] {
            for n in 1..=20 {
                assert!(target.contains(&n), "GTID {n} missing: {target:?}");
            }
        }
        // Each restart replayed from the checkpoint, never from past it.
        assert_eq!(origin.opened_from.len(), 2);
        assert!(origin.opened_from[1] <= 7);
        assert_eq!(
            metrics::SINK_RESTARTS.with("flaky-restart-test").get() - restarts,
            3.0,
            "one restart after the failed write, two after refused starts"
        );
    }
}

#[tokio::test]
async fn fatal_sink_error_stops_the_service() {
    for placement in PLACEMENTS {
        let dir = tempfile::tempdir().unwrap();
        let (bad, bt) = fake("bad", Mode::Fatal);
        let mut origin = FakeOrigin {
            last: 5,
            opened_from: Vec::new(),
        };
        let (_stop_tx, stop) = watch::channel(false);
        let store = Checkpointer::new(CheckpointStore::open(dir.path()).unwrap());
        let e = supervise(
            &mut origin,
            &[bad],
            placement,
            store,
            quick_backoff(),
            stop,
            observe(1),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "sink bad: disk full");
        assert_eq!(bt.lock().unwrap().starts, 1, "a fatal error is not retried");
        let cp = CheckpointStore::open(dir.path())
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(seq_of(&cp.gtid_set.to_string()), 0);
    }
}

#[tokio::test]
async fn stop_while_waiting_for_a_restart_is_clean() {
    for placement in PLACEMENTS {
        let dir = tempfile::tempdir().unwrap();
        let (flaky, ft) = fake("flaky-stop-test", Mode::Ack);
        {
            let mut t = ft.lock().unwrap();
            t.down = true;
            t.down_starts = u32::MAX;
        }
        let mut origin = FakeOrigin {
            last: 5,
            opened_from: Vec::new(),
        };
        let (stop_tx, stop) = watch::channel(false);
        let store = Checkpointer::new(CheckpointStore::open(dir.path()).unwrap());
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = stop_tx.send(true);
        };
        let sinks = [flaky];
        let (r, ()) = tokio::join!(
            supervise(
                &mut origin,
                &sinks,
                placement,
                store,
                quick_backoff(),
                stop,
                observe(sinks.len())
            ),
            stopper
        );
        r.unwrap();
        assert!(ft.lock().unwrap().starts > 2);
        assert!(origin.opened_from.is_empty(), "no source without sinks");
    }
}

#[test]
fn dropped_ack_of_a_transiently_failed_sink_is_transient() {
    let dropped = SinkFailure {
        sink: "k".into(),
        error: SinkError::Fatal("batch dropped without acknowledgement".into()),
    };
    let gone = SinkError::Transient("broker unreachable".into());
    let ends = vec![("k".to_string(), Some(Err(gone.clone())))];
    assert_eq!(super::restart::classify(dropped.clone(), &ends).error, gone);
    let ends = vec![("k".to_string(), Some(Err(SinkError::Fatal("no".into()))))];
    assert_eq!(super::restart::classify(dropped.clone(), &ends), dropped);
    assert_eq!(super::restart::classify(dropped.clone(), &vec![]), dropped);
}
