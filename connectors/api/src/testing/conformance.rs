//! The conformance test every sink runs against its real target: the sink
//! contract of `crate::sink` checked from the outside, the same way for
//! every sink.
//!
//! [`check`] starts the sink three times from a checkpoint that grows with
//! what was acked (so a sink that cuts back to the checkpoint on start, like
//! the file backup, sees a consistent history) and checks:
//! 1. acks arrive in order: sampled after every write, the resolved acks
//!    are always a prefix, and after `flush` every ack is resolved `Ok`;
//! 2. a dropped ack fails: dropping the sink with batches unflushed resolves
//!    every ack (none hangs), successes first, failures after;
//! 3. a failure poisons: once the sink fails (a batch its target refuses,
//!    or a target broken under it), the failing batch's ack, the pending
//!    ones and every later write and ack fail, all with the first error.
//!
//! Invariant kept: every wait is bounded ([`ACK_TIMEOUT`]); a sink that
//! never resolves an ack fails the test instead of hanging it.

use std::sync::Arc;
use std::time::Duration;

use crate::sink::{Ack, AckReceiver, AckResult, Batch, Sink, SinkBuilder, SinkError};

use super::FakeCommitted;

/// Longest wait for one ack.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Batches written in the ordering check.
const BATCHES: u64 = 20;

/// How the test makes the sink fail.
pub enum Provoke {
    /// A batch the target refuses for its content (a record too large, a
    /// document the index rejects), built for sequence / transaction `n`.
    Batch(Box<dyn Fn(u64) -> Batch + Send>),
    /// Breaks the target under the running sink; the next good batch must
    /// then fail.
    Break(Box<dyn FnOnce() + Send>),
}

/// The default good batch `n`: one transaction (`0-1-n`) of three inserts
/// into `shop.orders`.
pub fn good_batch(n: u64) -> Batch {
    super::batch(n, &[(n, 3)])
}

struct Run<'a> {
    builder: &'a dyn SinkBuilder,
    batch: &'a dyn Fn(u64) -> Batch,
    committed: FakeCommitted,
    next: u64,
}

impl Run<'_> {
    fn next_batch(&mut self) -> Batch {
        self.next += 1;
        (self.batch)(self.next)
    }

    async fn start(&self) -> Box<dyn Sink> {
        match self.builder.start(&self.committed).await {
            Ok(s) => s,
            Err(e) => panic!("sink {:?} did not start: {e}", self.builder.name()),
        }
    }

    /// Writes `batch`; the receiver of its ack and the batch's commits.
    async fn write(&self, sink: &mut dyn Sink, batch: Batch) -> (Result<(), SinkError>, Pending) {
        let batch = Arc::new(batch);
        let (ack, rx) = Ack::new();
        let r = sink.write(batch.clone(), ack).await;
        (r, Pending { batch, rx })
    }
}

/// A written batch whose ack is not read yet.
struct Pending {
    batch: Arc<Batch>,
    rx: AckReceiver,
}

async fn resolve(p: Pending) -> (Arc<Batch>, AckResult) {
    let seq = p.batch.seq;
    match tokio::time::timeout(ACK_TIMEOUT, p.rx).await {
        Ok(Ok(r)) => (p.batch, r),
        Ok(Err(_)) => unreachable!("an Ack reports when dropped"),
        Err(_) => panic!("the ack of batch {seq} did not resolve within {ACK_TIMEOUT:?}"),
    }
}

/// Runs the three checks of the module docs against the sink `builder`
/// starts. `batch(n)` is good batch `n` (sequence `n`, transactions no other
/// `n` uses; [`good_batch`] unless the target needs other tables).
pub async fn check(builder: &dyn SinkBuilder, batch: &dyn Fn(u64) -> Batch, provoke: Provoke) {
    let mut run = Run {
        builder,
        batch,
        committed: FakeCommitted::none(),
        next: 0,
    };
    acks_arrive_in_order(&mut run).await;
    dropped_acks_fail(&mut run).await;
    failure_poisons(&mut run, provoke).await;
}

async fn acks_arrive_in_order(run: &mut Run<'_>) {
    let mut sink = run.start().await;
    let mut pending: Vec<Pending> = Vec::new();
    let mut resolved: Vec<bool> = Vec::new();
    for _ in 0..BATCHES {
        let b = run.next_batch();
        let (r, p) = run.write(&mut *sink, b).await;
        r.expect("write of a good batch");
        pending.push(p);
        resolved.push(false);
        // Newest first: if a later ack was seen resolved, every earlier one
        // had resolved before that look, so a gap is a real reordering.
        for i in (0..pending.len()).rev() {
            if !resolved[i] {
                if let Ok(r) = pending[i].rx.try_recv() {
                    assert_eq!(r, Ok(()), "ack of batch {}", pending[i].batch.seq);
                    resolved[i] = true;
                }
            }
        }
        let first_open = resolved.iter().position(|r| !r).unwrap_or(resolved.len());
        assert!(
            resolved[first_open..].iter().all(|r| !r),
            "acks out of order: {resolved:?}"
        );
    }
    sink.flush().await.expect("flush after good batches");
    for (p, done) in pending.iter_mut().zip(&resolved) {
        if !done {
            assert_eq!(
                p.rx.try_recv(),
                Ok(Ok(())),
                "batch {} not acked by flush",
                p.batch.seq
            );
        }
        run.committed.add_batch(&p.batch);
    }
}

async fn dropped_acks_fail(run: &mut Run<'_>) {
    let mut sink = run.start().await;
    let mut pending = Vec::new();
    for _ in 0..5 {
        let b = run.next_batch();
        let (r, p) = run.write(&mut *sink, b).await;
        r.expect("write of a good batch");
        pending.push(p);
    }
    drop(sink);
    let mut failed = false;
    for p in pending {
        match resolve(p).await {
            (b, Ok(())) => {
                assert!(!failed, "batch {} acked after a failed one", b.seq);
                run.committed.add_batch(&b);
            }
            (_, Err(_)) => failed = true,
        }
    }
    // Whatever the dropped sink still ran in the background (an I/O job
    // holding a directory lock) ends right after its acks.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn failure_poisons(run: &mut Run<'_>, provoke: Provoke) {
    let mut sink = run.start().await;
    let b = run.next_batch();
    let (r, p) = run.write(&mut *sink, b).await;
    r.expect("write of a good batch");
    sink.flush().await.expect("flush of a good batch");
    let (b, r) = resolve(p).await;
    assert_eq!(r, Ok(()), "a good batch before the failure");
    run.committed.add_batch(&b);

    let bad = match provoke {
        Provoke::Batch(f) => {
            run.next += 1;
            f(run.next)
        }
        Provoke::Break(f) => {
            f();
            run.next_batch()
        }
    };
    let (w1, p1) = run.write(&mut *sink, bad).await;
    let b = run.next_batch();
    let (w2, p2) = run.write(&mut *sink, b).await;
    let f = sink.flush().await;
    let first = [&w1, &w2, &f]
        .into_iter()
        .find_map(|r| r.as_ref().err().cloned())
        .expect("the failure was reported by write or flush");
    for p in [p1, p2] {
        let (b, r) = resolve(p).await;
        assert_eq!(
            r,
            Err(first.clone()),
            "ack of batch {} after the failure",
            b.seq
        );
    }
    // Poisoned: a later good batch fails at once, with the first error.
    let b = run.next_batch();
    let (w3, p3) = run.write(&mut *sink, b).await;
    assert_eq!(w3, Err(first.clone()), "write after the failure");
    assert_eq!(
        resolve(p3).await.1,
        Err(first.clone()),
        "ack after the failure"
    );
    assert_eq!(sink.flush().await, Err(first), "flush after the failure");
}
