//! Semi-synchronous replication, replica side: the two-byte header the
//! server puts before every event once we declare ourselves a semi-sync
//! replica, the acknowledgement packet, and the path an acknowledgement
//! takes from "durable everywhere and in the checkpoint" back to the server.
//!
//! The dump reader records each request (the transaction that asked, the
//! binlog position to acknowledge) in an [`AckPath`]; the pipeline releases
//! requests once the checkpoint written to disk covers their transaction;
//! a writer task owning the write half of the dump socket sends the newest
//! released position (the server reads an ACK as covering everything
//! before it, so older ones are never needed).
//!
//! Invariants:
//! - a position is released only by [`AckPath::release`] with the sequence
//!   of a checkpoint already on disk, and only for requests whose
//!   transaction that sequence covers;
//! - the dump reader never waits on the ACK path: recording is a short
//!   lock, sending happens on the writer task (a `watch` keeps the newest);
//! - the pending requests are bounded: past [`MAX_PENDING`] the oldest is
//!   dropped, which is harmless since a later ACK covers it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use crate::source::conn::AckWriter;

/// Locks one of the ACK path's mutexes.
#[allow(clippy::expect_used)] // poisoned only if a holder panicked, which is already fatal
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("ack path lock")
}

/// First byte of the semi-sync header and of an ACK packet.
pub const MAGIC: u8 = 0xEF;
/// Header flag: the server waits for an ACK of this event.
pub const FLAG_ACK: u8 = 0x01;
/// Requests kept before the oldest are dropped (a newer ACK covers them).
pub const MAX_PENDING: usize = 65_536;

/// A binlog position to acknowledge: the file and the end of the event
/// that asked (its header's next-position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckPoint {
    pub file: Arc<str>,
    pub pos: u64,
}

impl AckPoint {
    /// The ACK packet: magic, 8-byte LE position, file name (no NUL).
    pub fn packet(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(9 + self.file.len());
        p.push(MAGIC);
        p.extend_from_slice(&self.pos.to_le_bytes());
        p.extend_from_slice(self.file.as_bytes());
        p
    }
}

/// Splits a semi-sync event payload (after the OK byte) into its
/// ack-wanted flag and the event, or None when the magic byte is missing.
pub fn strip_header(payload: &[u8]) -> Option<(bool, &[u8])> {
    match payload {
        [MAGIC, flag, ev @ ..] => Some((flag & FLAG_ACK != 0, ev)),
        _ => None,
    }
}

/// One request: `seq` is the GTID-set sequence (see `GtidSet::sequence`)
/// once the asking transaction is complete.
struct Request {
    seq: u64,
    point: AckPoint,
    received: Instant,
}

/// Requests from the dump, released by the checkpoint, sent by the writer.
pub struct AckPath {
    pending: Mutex<VecDeque<Request>>,
    tx: watch::Sender<Option<AckPoint>>,
    /// `host:port` the requests came from.
    server: Mutex<String>,
}

impl std::fmt::Debug for AckPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.pending.lock().map(|q| q.len()).unwrap_or(0);
        f.debug_struct("AckPath").field("pending", &n).finish()
    }
}

impl Default for AckPath {
    fn default() -> Self {
        AckPath {
            pending: Mutex::new(VecDeque::new()),
            tx: watch::channel(None).0,
            server: Mutex::new(String::new()),
        }
    }
}

impl AckPath {
    /// The process' one path: it outlives a run of the source, so the requests
    /// read before a sink restart are still answered once the restarted run has
    /// made their transactions durable (the server may not ask again for events
    /// it already sent).
    pub fn shared() -> Arc<AckPath> {
        static SHARED: std::sync::OnceLock<Arc<AckPath>> = std::sync::OnceLock::new();
        SHARED.get_or_init(Default::default).clone()
    }

    /// The server asked for an ACK of `point`, for the transaction that
    /// makes the stream's sequence `seq`.
    pub fn request(&self, seq: u64, point: AckPoint) {
        let mut q = lock(&self.pending);
        if q.len() >= MAX_PENDING {
            q.pop_front();
        }
        q.push_back(Request {
            seq,
            point,
            received: Instant::now(),
        });
    }

    /// True when a request is covered by `seq` (a checkpoint write would release it).
    pub fn due(&self, seq: u64) -> bool {
        let q = lock(&self.pending);
        q.front().is_some_and(|r| r.seq <= seq)
    }

    /// The checkpoint on disk covers the stream up to sequence `seq`:
    /// sends the newest position it covers. Returns how many requests it settled.
    pub fn release(&self, seq: u64) -> usize {
        let mut newest = None;
        let mut n = 0;
        {
            let mut q = lock(&self.pending);
            while q.front().is_some_and(|r| r.seq <= seq) {
                let Some(r) = q.pop_front() else { break };
                crate::metrics::SEMISYNC_ACK_LATENCY.observe(r.received.elapsed());
                newest = Some(r.point);
                n += 1;
            }
        }
        if let Some(p) = newest {
            self.tx.send_replace(Some(p));
        }
        n
    }

    /// A dump session starts on `server` (`host:port`): positions of
    /// another server mean nothing there, so a change of server forgets them.
    pub fn on_server(&self, server: &str) {
        let mut s = lock(&self.server);
        if *s != server {
            *s = server.to_string();
            drop(s);
            self.forget();
        }
    }

    /// Drops every request and the last released position.
    pub fn forget(&self) {
        lock(&self.pending).clear();
        self.tx.send_replace(None);
    }

    /// Sends every newly released position on `w` until it fails or the path is dropped.
    pub async fn write_loop(self: Arc<Self>, mut w: AckWriter) {
        let mut rx = self.tx.subscribe();
        // The newest position released while no connection was up is sent
        // first (repeating an ACK the server already has is harmless).
        rx.mark_changed();
        while rx.changed().await.is_ok() {
            let Some(p) = rx.borrow_and_update().clone() else {
                continue;
            };
            if let Err(e) = w.write(&p.packet()).await {
                tracing::warn!(error = %e, "cannot send a semi-sync ACK; the dump reconnects");
                return;
            }
            crate::metrics::SEMISYNC_ACKS.with("").inc();
            tracing::trace!(file = %p.file, pos = p.pos, "semi-sync ACK sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_packet() {
        assert_eq!(strip_header(&[0xEF, 1, 9, 9]), Some((true, &[9u8, 9][..])));
        assert_eq!(strip_header(&[0xEF, 0, 9]), Some((false, &[9u8][..])));
        assert_eq!(strip_header(&[0, 0, 9]), None);
        let p = AckPoint {
            file: Arc::from("bin.000002"),
            pos: 0x0102,
        };
        let pk = p.packet();
        assert_eq!(pk[0], 0xEF);
        assert_eq!(&pk[1..9], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&pk[9..], b"bin.000002");
    }

    #[test]
    fn release_sends_the_newest_covered() {
        let path = AckPath::default();
        let mut rx = path.tx.subscribe();
        let pt = |pos| AckPoint {
            file: Arc::from("b.1"),
            pos,
        };
        path.request(5, pt(100));
        path.request(6, pt(200));
        path.request(8, pt(300));
        assert!(!path.due(4));
        assert!(path.due(6));
        assert_eq!(path.release(7), 2);
        assert_eq!(rx.borrow_and_update().clone(), Some(pt(200)));
        assert_eq!(path.release(7), 0);
        assert!(!rx.has_changed().unwrap());
        assert_eq!(path.release(9), 1);
        assert_eq!(rx.borrow_and_update().clone(), Some(pt(300)));
    }
}
