//! Ordered acknowledgement and the poison state.
//!
//! Invariants kept:
//! - [`AckQueue`] gives acks in the order they were pushed, and an ack only
//!   once the sink has declared everything up to its position durable;
//!   positions are the sink's own counter (actions sent, bytes written...)
//!   and never decrease.
//! - [`Poison`] holds the first failure only: later failures (often
//!   consequences of the first) never replace it, so the operator sees the
//!   cause. Once set it never clears: a poisoned sink is restarted, not
//!   repaired.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::sink::{Ack, SinkError};

/// Acks of batches accepted but not yet durable, in batch order, each with
/// the position its batch ends at.
#[derive(Debug, Default)]
pub struct AckQueue {
    pending: VecDeque<(u64, Ack)>,
}

impl AckQueue {
    /// An empty queue.
    pub fn new() -> AckQueue {
        AckQueue::default()
    }

    /// Queues the ack of a batch whose last effect is at `end` (the sink's
    /// position counter after the batch). `end` must not be lower than the
    /// previous push's.
    pub fn push(&mut self, end: u64, ack: Ack) {
        debug_assert!(self.pending.back().is_none_or(|(e, _)| *e <= end));
        self.pending.push_back((end, ack));
    }

    /// Acks, in order, every batch whose end is at or before `durable`;
    /// returns how many.
    pub fn settle(&mut self, durable: u64) -> usize {
        let mut n = 0;
        while self.pending.front().is_some_and(|(end, _)| *end <= durable) {
            let Some((_, ack)) = self.pending.pop_front() else {
                break;
            };
            ack.ack();
            n += 1;
        }
        n
    }

    /// Acks every queued batch (the caller made all of them durable).
    pub fn settle_all(&mut self) {
        self.settle(u64::MAX);
    }

    /// Fails every queued ack with `why`.
    pub fn fail_all(&mut self, why: &SinkError) {
        for (_, ack) in self.pending.drain(..) {
            ack.fail(why.clone());
        }
    }

    /// Number of acks waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no ack waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The first failure of a sink, shared between the sink and its background
/// tasks (an acker, an I/O thread). Cloning shares the state.
#[derive(Debug, Clone, Default)]
pub struct Poison(Arc<Mutex<Option<SinkError>>>);

impl Poison {
    /// A healthy state.
    pub fn new() -> Poison {
        Poison::default()
    }

    /// Records `why` unless a failure is already recorded; returns the
    /// recorded (first) failure, which is what callers should report.
    pub fn set(&self, why: SinkError) -> SinkError {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.get_or_insert(why).clone()
    }

    /// The first failure, if any.
    pub fn get(&self) -> Option<SinkError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `Err(first failure)` once poisoned.
    pub fn check(&self) -> Result<(), SinkError> {
        match self.get() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Lets `ack` through while healthy; once poisoned fails it with the
    /// first failure and returns that failure (the start of every `write`).
    pub fn admit(&self, ack: Ack) -> Result<Ack, SinkError> {
        match self.get() {
            None => Ok(ack),
            Some(e) => {
                ack.fail(e.clone());
                Err(e)
            }
        }
    }

    /// Records `why` (if first), fails every ack in `queue` with the first
    /// failure and returns it: what a sink does when it stops.
    pub fn fail(&self, why: SinkError, queue: &mut AckQueue) -> SinkError {
        let first = self.set(why);
        queue.fail_all(&first);
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_in_order_up_to_a_position() {
        let mut q = AckQueue::new();
        let mut rxs = Vec::new();
        for end in [3, 3, 7, 10] {
            let (ack, rx) = Ack::new();
            q.push(end, ack);
            rxs.push(rx);
        }
        assert_eq!(q.settle(2), 0);
        assert_eq!(q.settle(6), 2);
        assert_eq!(rxs[0].try_recv().unwrap(), Ok(()));
        assert_eq!(rxs[1].try_recv().unwrap(), Ok(()));
        assert!(rxs[2].try_recv().is_err(), "not settled yet");
        let why = SinkError::Transient("gone".into());
        q.fail_all(&why);
        assert!(q.is_empty());
        assert_eq!(rxs[2].try_recv().unwrap(), Err(why.clone()));
        assert_eq!(rxs[3].try_recv().unwrap(), Err(why));
    }

    #[test]
    fn poison_keeps_the_first_failure() {
        let p = Poison::new();
        assert!(p.check().is_ok());
        let (ack, _rx) = Ack::new();
        let _ack = p.admit(ack).unwrap();
        let first = SinkError::Fatal("disk full".into());
        let mut q = AckQueue::new();
        let (ack, mut rx) = Ack::new();
        q.push(1, ack);
        assert_eq!(p.fail(first.clone(), &mut q), first);
        assert_eq!(rx.try_recv().unwrap(), Err(first.clone()));
        assert_eq!(p.set(SinkError::Transient("later".into())), first);
        let (ack, mut rx) = Ack::new();
        assert_eq!(p.clone().admit(ack).unwrap_err(), first);
        assert_eq!(rx.try_recv().unwrap(), Err(first));
    }
}
