//! Serves `GET /metrics` (Prometheus text format) on `[metrics] listen`.
//! The service's metric names are declared in `rowstream_api::metrics`; each
//! sink declares its own and registers them there when it starts. The
//! semi-sync and per-sink lag families are declared here (they belong to
//! the service, not to the sink kit), with [`Histogram`], a fixed-bucket
//! histogram rendered after the registry's families.
//!
//! `GET /health` answers 200 or 503 with a small JSON and `GET /status` the
//! JSON `rowstream status` shows, both from the [`Probe`] the pipeline
//! installs (without one: 503 "starting").
//!
//! Deliberately tiny: one request per connection, any other path answers
//! with the metrics, reads are bounded (8 KiB, 5 s) so a stuck scraper
//! cannot pin a task. A failure to bind is a configuration error reported
//! at start.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rowstream_api::metrics::Family;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Binds `addr` and serves metrics in the background until the runtime ends.
pub async fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    register();
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let mut n = 0;
                // Read until the end of the request head; the body (if any) is ignored.
                while n < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..]))
                        .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                        Ok(Ok(k)) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let (code, ctype, body) = respond(&buf[..n]);
                let reason = if code == 200 {
                    "OK"
                } else {
                    "Service Unavailable"
                };
                let head = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(bound)
}

/// What the pipeline shows through the endpoint (see `pipeline::lag`).
pub trait Probe: Send + Sync {
    /// Updates gauges computed at scrape time.
    fn before_scrape(&self);
    /// Healthy or not, and the `/health` body.
    fn health(&self) -> (bool, serde_json::Value);
    /// The `/status` body.
    fn status(&self) -> serde_json::Value;
}

static PROBE: Mutex<Option<std::sync::Arc<dyn Probe>>> = Mutex::new(None);

/// Installs the probe the endpoint reads (the last one wins).
pub fn install(probe: std::sync::Arc<dyn Probe>) {
    *PROBE.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
}

fn probe() -> Option<std::sync::Arc<dyn Probe>> {
    PROBE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// (status code, content type, body) for a request head.
fn respond(req: &[u8]) -> (u16, &'static str, String) {
    let line = req.split(|b| *b == b'\r').next().unwrap_or_default();
    let path = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    const JSON: &str = "application/json";
    match (path, probe()) {
        (b"/health", Some(p)) => {
            let (ok, body) = p.health();
            (if ok { 200 } else { 503 }, JSON, body.to_string() + "\n")
        }
        (b"/status", Some(p)) => (200, JSON, p.status().to_string() + "\n"),
        (b"/health" | b"/status", None) => (503, JSON, "{\"status\":\"starting\"}\n".into()),
        (_, p) => {
            if let Some(p) = p {
                p.before_scrape();
            }
            (200, "text/plain; version=0.0.4", render())
        }
    }
}

/// Semi-sync ACK packets sent to the source.
pub static SEMISYNC_ACKS: Family = Family::counter(
    "rowstream_semisync_acks_total",
    "Semi-sync acknowledgements sent to the source.",
    "",
);
/// 1 while the source asks us for acknowledgements (its semi-sync is on).
pub static SEMISYNC_ASKED: Family = Family::gauge(
    "rowstream_semisync_requested",
    "1 when the last transaction read asked for a semi-sync acknowledgement.",
    "",
);

/// Time from reading an event that asked for an ACK to the ACK's release.
pub static SEMISYNC_ACK_LATENCY: Histogram = Histogram::new(
    "rowstream_semisync_ack_latency_seconds",
    "From receipt of an event asking for a semi-sync ACK to its release (sinks durable, checkpoint fsynced).",
    "",
);

/// How long a heartbeat took from issue to durable in a sink, per sink.
pub static COMMIT_TO_DURABLE: Histogram = Histogram::new(
    "rowstream_sink_commit_to_durable_seconds",
    "From issuing a heartbeat write on the source to the change being durable in the sink (rowstream's clock).",
    "sink",
);

/// The sink's part of [`COMMIT_TO_DURABLE`], for the same heartbeats: from handing the
/// batch that holds the heartbeat to the sinks to this sink's ack (its write and fsync).
pub static DISPATCH_TO_DURABLE: Histogram = Histogram::new(
    "rowstream_sink_dispatch_to_durable_seconds",
    "From handing the batch holding a heartbeat to the sinks to the sink's acknowledgement (the sink's share of commit_to_durable).",
    "sink",
);

/// The source's part: a heartbeat upsert from issue to the server's OK (its commit).
pub static HEARTBEAT_WRITE: Histogram = Histogram::new(
    "rowstream_heartbeat_write_seconds",
    "From issuing a heartbeat upsert on the source to its OK (the source's commit latency as rowstream sees it).",
    "",
);

/// Seconds since the oldest heartbeat not yet durable in the sink (computed at scrape time).
pub static SINK_LAG: Family = Family::gauge(
    "rowstream_sink_lag_seconds",
    "Heartbeat lag of the sink: age of the oldest heartbeat not yet durable there, on rowstream's clock.",
    "sink",
);

/// Registers this module's counter and gauge families with the sink kit's registry.
pub fn register() {
    rowstream_api::metrics::register(&[&SEMISYNC_ACKS, &SEMISYNC_ASKED, &SINK_LAG]);
}

/// The registry's exposition followed by this module's histograms.
pub fn render() -> String {
    let mut out = rowstream_api::metrics::render();
    SEMISYNC_ACK_LATENCY.render(&mut out);
    COMMIT_TO_DURABLE.render(&mut out);
    DISPATCH_TO_DURABLE.render(&mut out);
    HEARTBEAT_WRITE.render(&mut out);
    out
}

/// Bucket upper bounds in seconds (1 ms .. 60 s); dense below 50 ms, where a
/// commit-to-durable p99 target lies.
const BUCKETS: [f64; 18] = [
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
    5.0, 10.0, 60.0,
];

/// Counts per bucket (not cumulative), then the +Inf overflow, sum (µs) and count.
#[derive(Default)]
struct Series {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// A Prometheus histogram with one optional label and fixed buckets.
/// Series are few (one per sink), so a lookup walks a short list.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    series: Mutex<Vec<(Box<str>, std::sync::Arc<Series>)>>,
}

impl Histogram {
    pub const fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Histogram {
            name,
            help,
            label,
            series: Mutex::new(Vec::new()),
        }
    }

    /// Records `d` in the series without label.
    pub fn observe(&self, d: Duration) {
        self.observe_with("", d);
    }

    /// Records `d` in the series `label_value`.
    pub fn observe_with(&self, label_value: &str, d: Duration) {
        let s = {
            let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
            match all.iter().find(|(v, _)| &**v == label_value) {
                Some((_, s)) => s.clone(),
                None => {
                    let s = std::sync::Arc::new(Series::default());
                    all.push((label_value.into(), s.clone()));
                    s
                }
            }
        };
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[i].fetch_add(1, Ordering::Relaxed);
        s.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        s.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (v, s) in all.iter() {
            let lbl = if self.label.is_empty() {
                String::new()
            } else {
                format!(
                    "{}=\"{}\",",
                    self.label,
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                )
            };
            let mut cum = 0;
            for (i, b) in s.buckets.iter().enumerate() {
                cum += b.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(out, "{}_bucket{{{lbl}le=\"{le}\"}} {cum}", self.name);
            }
            let lbl = lbl.trim_end_matches(',');
            let braces = if lbl.is_empty() {
                String::new()
            } else {
                format!("{{{lbl}}}")
            };
            let sum = s.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{}_sum{braces} {sum}", self.name);
            let _ = writeln!(
                out,
                "{}_count{braces} {}",
                self.name,
                s.count.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        static H: Histogram = Histogram::new("rowstream_test_seconds", "Test.", "sink");
        H.observe_with("a", Duration::from_millis(3));
        H.observe_with("a", Duration::from_secs(100));
        let mut out = String::new();
        H.render(&mut out);
        assert!(out.contains("rowstream_test_seconds_bucket{sink=\"a\",le=\"0.002\"} 0\n"));
        assert!(out.contains("rowstream_test_seconds_bucket{sink=\"a\",le=\"0.005\"} 1\n"));
        assert!(out.contains("rowstream_test_seconds_bucket{sink=\"a\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("rowstream_test_seconds_count{sink=\"a\"} 2\n"));
    }
}
