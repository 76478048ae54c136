//! Per-sink lag and health, on rowstream's own clock: the heartbeats issued
//! (sequence -> local instant), what each sink has made durable, the batches
//! each sink has not acked yet, and whether the source is connected. Read by
//! the metrics endpoint (`/metrics` gauges computed at scrape time,
//! `/health`, `/status`) through the `metrics::Probe` hook.
//!
//! Invariants:
//! - lag(S) is the age of the oldest heartbeat not yet durable in S, or the
//!   issue-to-durable time of the last one that became durable: it grows
//!   with the clock while S is stuck, whatever the other sinks do;
//! - every queue is bounded ([`MAX_TRACKED`]); dropping the oldest entry
//!   only makes a reported age smaller, never larger;
//! - heartbeat sequence numbers start at the process' start time in
//!   microseconds, so rows written by an earlier process (replayed after a
//!   restart) are older than every heartbeat of this one and never match.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rowstream_api::metrics;
use serde_json::{json, Value};

use crate::config::HealthConfig;
use crate::metrics::{COMMIT_TO_DURABLE, DISPATCH_TO_DURABLE, SINK_LAG};

/// Entries kept per queue.
const MAX_TRACKED: usize = 100_000;
/// How often the position read is refreshed for `/status`.
const READ_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct SinkState {
    /// Batches dispatched to the sink and not acked by it: (batch seq, when).
    unacked: VecDeque<(u64, Instant)>,
    last_ack: Option<Instant>,
    /// Newest heartbeat durable in the sink.
    durable_hb: u64,
    last_lag: Option<Duration>,
    /// When the last "has not acknowledged" warning was logged (None: not stalled).
    warned: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    issued: VecDeque<(u64, Instant)>,
    sinks: Vec<SinkState>,
    source_down_since: Option<Instant>,
    /// When the last "source disconnected" warning was logged.
    source_warned: Option<Instant>,
    checkpoint: Option<String>,
    read: Option<String>,
    read_at: Option<Instant>,
}

/// The shared per-sink state.
pub(crate) struct LagBoard {
    names: Vec<String>,
    health: HealthConfig,
    heartbeat: bool,
    first_seq: u64,
    started: Instant,
    inner: Mutex<Inner>,
}

impl LagBoard {
    pub fn new(names: Vec<String>, health: HealthConfig, heartbeat: bool) -> LagBoard {
        let first_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let inner = Inner {
            sinks: names.iter().map(|_| SinkState::default()).collect(),
            source_down_since: Some(Instant::now()),
            ..Inner::default()
        };
        LagBoard {
            names,
            health,
            heartbeat,
            first_seq,
            started: Instant::now(),
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sequence number of the `n`-th heartbeat of this process.
    pub fn heartbeat_seq(&self, n: u64) -> u64 {
        self.first_seq + n
    }

    /// A heartbeat with `seq` is about to be written on the source.
    pub fn issued(&self, seq: u64) {
        let mut g = self.lock();
        if g.issued.len() >= MAX_TRACKED {
            g.issued.pop_front();
        }
        g.issued.push_back((seq, Instant::now()));
    }

    /// A new run of the sinks begins: batches of the last one will never be acked.
    pub fn session_started(&self) {
        for s in self.lock().sinks.iter_mut() {
            s.unacked.clear();
        }
    }

    /// Batch `seq` went to every sink; `read` gives the GTID set reached, if
    /// it moved (called at most every [`READ_EVERY`]: formatting a set costs).
    pub fn dispatched(&self, seq: u64, read: impl FnOnce() -> Option<String>) {
        let now = Instant::now();
        let mut g = self.lock();
        for s in g.sinks.iter_mut() {
            if s.unacked.len() >= MAX_TRACKED {
                s.unacked.pop_front();
            }
            s.unacked.push_back((seq, now));
        }
        if g.read_at
            .is_none_or(|t| now.duration_since(t) >= READ_EVERY)
        {
            if let Some(r) = read() {
                g.read = Some(r);
                g.read_at = Some(now);
            }
        }
    }

    /// Sink `i` acked batch `seq`, which held heartbeat `hb` (newest), if any.
    pub fn sink_acked(&self, i: usize, seq: u64, hb: Option<u64>) {
        let now = Instant::now();
        let mut g = self.lock();
        let Inner { issued, sinks, .. } = &mut *g;
        let Some(s) = sinks.get_mut(i) else {
            return;
        };
        let mut dispatched = None;
        while s.unacked.front().is_some_and(|(b, _)| *b <= seq) {
            dispatched = s.unacked.pop_front().filter(|(b, _)| *b == seq);
        }
        s.last_ack = Some(now);
        let Some(hb) = hb.filter(|h| *h > s.durable_hb && *h >= self.first_seq) else {
            return;
        };
        s.durable_hb = hb;
        if let Some((_, at)) = issued.iter().find(|(q, _)| *q == hb) {
            let d = now.duration_since(*at);
            s.last_lag = Some(d);
            COMMIT_TO_DURABLE.observe_with(&self.names[i], d);
            if let Some((_, at)) = dispatched {
                DISPATCH_TO_DURABLE.observe_with(&self.names[i], now.duration_since(at));
            }
        }
        let min = sinks.iter().map(|s| s.durable_hb).min().unwrap_or(0);
        while issued.front().is_some_and(|(q, _)| *q <= min) {
            issued.pop_front();
        }
    }

    /// The checkpoint on disk now covers `set`.
    pub fn checkpointed(&self, set: String) {
        self.lock().checkpoint = Some(set);
    }

    /// Notes whether the source is connected (called on the session's tick).
    pub fn tick(&self) {
        // A snapshot reads the source too (the binlog connects after it).
        let up = metrics::SOURCE_CONNECTED.with("").get() >= 1.0
            || metrics::SNAPSHOT_RUNNING.with("").get() >= 1.0;
        let mut g = self.lock();
        match (up, g.source_down_since) {
            (true, _) => g.source_down_since = None,
            (false, None) => g.source_down_since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// Logs the sinks that stall (see [`Self::warn_stalled`]) and a source
    /// disconnected for longer than `[health] max_source_down_ms` (every such
    /// period while it lasts: a reconnect that hangs is never silent).
    pub fn watch_stalls(&self) {
        self.tick();
        let now = Instant::now();
        let mut g = self.lock();
        self.warn_stalled(&mut g, now);
        let bound = Duration::from_millis(self.health.max_source_down_ms);
        let down = g.source_down_since.map(|t| now.duration_since(t));
        match (down.filter(|d| *d > bound), g.source_warned) {
            (Some(d), w) if w.is_none_or(|w| now.duration_since(w) >= bound) => {
                tracing::warn!(
                    "the source has not been connected for {:.0}s; still trying",
                    d.as_secs_f64()
                );
                g.source_warned = Some(now);
            }
            (None, Some(_)) => g.source_warned = None,
            _ => {}
        }
    }

    /// A sink whose oldest unacked batch is older than `[health]
    /// max_sink_stall_ms` is named in a warning, again every such period
    /// while it lasts, and once when it acknowledges again: a sink blocked
    /// on a server that stopped answering (a black-holed connection has no
    /// timeout of its own in some clients) is never a silent hang.
    fn warn_stalled(&self, g: &mut Inner, now: Instant) {
        let bound = Duration::from_millis(self.health.max_sink_stall_ms);
        for (name, s) in self.names.iter().zip(g.sinks.iter_mut()) {
            let stall = s.unacked.front().map(|(_, t)| now.duration_since(*t));
            match (stall.filter(|d| *d > bound), s.warned) {
                (Some(d), w) if w.is_none_or(|w| now.duration_since(w) >= bound) => {
                    tracing::warn!(
                        sink = %name,
                        unacked_batches = s.unacked.len(),
                        "sink {name} has not acknowledged a batch for {:.0}s \
                         (its server may be unreachable or not answering); still waiting",
                        d.as_secs_f64()
                    );
                    s.warned = Some(now);
                }
                (None, Some(_)) => {
                    tracing::info!(sink = %name, "sink {name} acknowledges again");
                    s.warned = None;
                }
                _ => {}
            }
        }
    }

    fn sink_lag(&self, g: &Inner, i: usize, now: Instant) -> Option<f64> {
        if !self.heartbeat {
            return None;
        }
        let s = &g.sinks[i];
        let pending = g
            .issued
            .iter()
            .find(|(q, _)| *q > s.durable_hb)
            .map(|(_, at)| now.duration_since(*at));
        let lag = match (pending, s.last_lag) {
            (Some(p), Some(l)) => p.max(l),
            // Nothing durable yet: behind by at least our whole life.
            (_, None) => now.duration_since(self.started),
            (None, Some(l)) => l,
        };
        Some(lag.as_secs_f64())
    }

    /// Sets the lag gauges (before a scrape).
    pub fn refresh_gauges(&self) {
        let now = Instant::now();
        let g = self.lock();
        for (i, name) in self.names.iter().enumerate() {
            if let Some(l) = self.sink_lag(&g, i, now) {
                SINK_LAG.with(name).set(l);
            }
        }
    }

    /// `/health`: healthy or not, and the JSON body.
    pub fn health(&self) -> (bool, Value) {
        let now = Instant::now();
        let g = self.lock();
        let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        let down = g.source_down_since.map(|t| now.duration_since(t));
        let mut problems = Vec::new();
        if let Some(d) = down.filter(|d| d.as_millis() as u64 > self.health.max_source_down_ms) {
            problems.push(format!("source disconnected for {:.1}s", d.as_secs_f64()));
        }
        let mut sinks = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            let s = &g.sinks[i];
            let stall = s
                .unacked
                .front()
                .map(|(_, t)| now.duration_since(*t))
                .unwrap_or_default();
            let lag = self.sink_lag(&g, i, now);
            let worst = lag.unwrap_or(0.0).max(stall.as_secs_f64());
            if worst * 1000.0 > self.health.max_sink_stall_ms as f64 {
                problems.push(format!(
                    "sink {name} has not made changes durable for {worst:.1}s"
                ));
            }
            sinks.push(json!({
                "name": name,
                "last_ack_age_seconds": s.last_ack.map(|t| secs(now.duration_since(t))),
                "unacked_batches": s.unacked.len(),
                "oldest_unacked_seconds": secs(stall),
                "lag_seconds": lag.map(|l| (l * 1000.0).round() / 1000.0),
            }));
        }
        let ok = problems.is_empty();
        let body = json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "problems": problems,
            "source": {
                "connected": down.is_none(),
                "disconnected_seconds": down.map(secs),
            },
            "snapshot_running": metrics::SNAPSHOT_RUNNING.with("").get() >= 1.0,
            "sinks": sinks,
        });
        (ok, body)
    }

    /// `/status`: `/health`'s body plus positions.
    pub fn status(&self) -> Value {
        let (_, mut v) = self.health();
        let g = self.lock();
        v["checkpoint"] = json!(g.checkpoint);
        v["read_position"] = json!(g.read);
        v["semi_sync"] = json!({
            "acks_sent": crate::metrics::SEMISYNC_ACKS.with("").get(),
            "requested": crate::metrics::SEMISYNC_ASKED.with("").get() >= 1.0,
        });
        v
    }
}

impl crate::metrics::Probe for LagBoard {
    fn before_scrape(&self) {
        self.refresh_gauges();
    }
    fn health(&self) -> (bool, Value) {
        LagBoard::health(self)
    }
    fn status(&self) -> Value {
        LagBoard::status(self)
    }
}

/// Calls [`LagBoard::watch_stalls`] every second, for ever (abort the task to
/// stop). A task of its own: the session's loop may itself be blocked on the
/// stalled sink (backpressure), so its tick cannot be the one to notice.
pub(crate) async fn watch_stalls(board: std::sync::Arc<LagBoard>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        board.watch_stalls();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_sink_lags_with_the_clock_the_other_does_not() {
        let fresh = LagBoard::new(vec!["a".into()], HealthConfig::default(), true);
        std::thread::sleep(Duration::from_millis(20));
        assert!(fresh.sink_lag(&fresh.lock(), 0, Instant::now()).unwrap() >= 0.02);
        let b = LagBoard::new(
            vec!["a".into(), "b".into()],
            HealthConfig {
                max_sink_stall_ms: 50,
                max_source_down_ms: 1_000_000,
            },
            true,
        );
        let hb = b.heartbeat_seq(1);
        b.issued(hb);
        b.dispatched(1, || None);
        b.sink_acked(1, 1, Some(hb));
        std::thread::sleep(Duration::from_millis(80));
        let g = b.lock();
        let now = Instant::now();
        assert!(b.sink_lag(&g, 0, now).unwrap() >= 0.08);
        assert!(b.sink_lag(&g, 1, now).unwrap() < 0.05);
        drop(g);
        let (ok, body) = b.health();
        assert!(!ok, "{body}");
        b.sink_acked(0, 1, Some(hb));
        let (ok, body) = b.health();
        assert!(!ok, "the last lag was over the bound: {body}");
        let hb2 = b.heartbeat_seq(2);
        b.issued(hb2);
        b.dispatched(2, || None);
        b.sink_acked(0, 2, Some(hb2));
        b.sink_acked(1, 2, Some(hb2));
        let (ok, body) = b.health();
        assert!(ok, "{body}");
        // A row from an earlier process never matches.
        b.sink_acked(0, 2, Some(5));
        assert!(b.health().0);
    }

    #[test]
    fn a_stalled_sink_is_warned_about_until_it_acks() {
        let health = HealthConfig {
            max_sink_stall_ms: 50,
            max_source_down_ms: 1_000_000,
        };
        let b = LagBoard::new(vec!["a".into(), "b".into()], health, false);
        b.dispatched(1, || None);
        b.sink_acked(1, 1, None);
        b.watch_stalls();
        assert!(b.lock().sinks.iter().all(|s| s.warned.is_none()));
        std::thread::sleep(Duration::from_millis(80));
        b.watch_stalls();
        let warned = b.lock().sinks[0].warned;
        assert!(warned.is_some() && b.lock().sinks[1].warned.is_none());
        // Not again within the period, again after it.
        b.watch_stalls();
        assert_eq!(b.lock().sinks[0].warned, warned);
        std::thread::sleep(Duration::from_millis(60));
        b.watch_stalls();
        assert!(b.lock().sinks[0].warned > warned);
        b.sink_acked(0, 1, None);
        b.watch_stalls();
        assert!(b.lock().sinks[0].warned.is_none());
    }
}
