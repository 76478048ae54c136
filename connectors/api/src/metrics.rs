//! The metrics registry and its Prometheus text exposition: the service's
//! own metric families (source, pipeline, snapshot) are declared here; each
//! sink declares its families next to its code and registers them with
//! [`register`] when it starts, so adding a sink never edits this module.
//!
//! A metric is a [`Family`]: a name, a help line, a kind and at most one
//! label. Updating a series is a relaxed atomic operation on a handle the
//! caller keeps (`Family::with` takes a lock, so call it once, not per row).
//!
//! Invariants:
//! - names follow Prometheus conventions (`rowstream_` prefix, `_total` for
//!   counters, base units: seconds, bytes);
//! - label values are low-cardinality (sink names, table names), never
//!   per-row or per-transaction values;
//! - [`render`] prints every family of [`ALL`], then every registered one,
//!   each once (registering twice is harmless), in registration order;
//! - names are unique across both lists (checked at registration).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counter (only grows) or gauge (set to any value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric name with its series, one per label value.
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    /// The label's name; empty for a metric without labels.
    label: &'static str,
    series: Mutex<Vec<(Box<str>, Handle)>>,
}

/// One series. Counters hold an integer, gauges the bits of an `f64`.
#[derive(Clone, Debug)]
pub struct Handle {
    kind: Kind,
    value: Arc<AtomicU64>,
}

impl Handle {
    /// Adds one to a counter.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` to a counter.
    pub fn add(&self, n: u64) {
        debug_assert_eq!(self.kind, Kind::Counter);
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(&self, v: f64) {
        debug_assert_eq!(self.kind, Kind::Gauge);
        self.value.store(v.to_bits(), Ordering::Relaxed);
    }

    /// The current value as a float (counters converted).
    pub fn get(&self) -> f64 {
        let raw = self.value.load(Ordering::Relaxed);
        match self.kind {
            Kind::Counter => raw as f64,
            Kind::Gauge => f64::from_bits(raw),
        }
    }
}

impl Family {
    /// A counter; `label` is the label's name or "" for none.
    pub const fn counter(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Family {
            name,
            help,
            kind: Kind::Counter,
            label,
            series: Mutex::new(Vec::new()),
        }
    }

    /// A gauge; `label` is the label's name or "" for none.
    pub const fn gauge(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Family {
            name,
            help,
            kind: Kind::Gauge,
            label,
            series: Mutex::new(Vec::new()),
        }
    }

    /// The series for `label_value` (use "" for a family without label),
    /// created at zero on first use.
    pub fn with(&self, label_value: &str) -> Handle {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = series.iter().find(|(v, _)| &**v == label_value) {
            return h.clone();
        }
        let h = Handle {
            kind: self.kind,
            value: Arc::new(AtomicU64::new(match self.kind {
                Kind::Counter => 0,
                Kind::Gauge => 0f64.to_bits(),
            })),
        };
        series.push((label_value.into(), h.clone()));
        h
    }

    /// The metric's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn render(&self, out: &mut String) {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if series.is_empty() {
            return;
        }
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        for (label_value, h) in series.iter() {
            out.push_str(self.name);
            if !self.label.is_empty() {
                let _ = write!(out, "{{{}=\"", self.label);
                for c in label_value.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
                out.push_str("\"}");
            }
            let _ = writeln!(out, " {}", h.get());
        }
    }
}

// source
pub static SOURCE_RECORDS: Family = Family::counter(
    "rowstream_source_records_total",
    "Records (row changes and DDL statements) read from the binlog.",
    "",
);
pub static SOURCE_TRANSACTIONS: Family = Family::counter(
    "rowstream_source_transactions_total",
    "Transactions read from the binlog.",
    "",
);
pub static SOURCE_RECONNECTS: Family = Family::counter(
    "rowstream_source_reconnects_total",
    "Times the binlog connection was re-established.",
    "",
);
pub static SOURCE_CONNECTED: Family = Family::gauge(
    "rowstream_source_connected",
    "1 while a binlog connection is streaming, else 0.",
    "",
);

// pipeline
pub static LAG_SECONDS: Family = Family::gauge(
    "rowstream_lag_seconds",
    "Now minus the commit time of the newest transaction every sink has made durable (0 when idle and caught up).",
    "",
);
pub static CHECKPOINT_WRITES: Family = Family::counter(
    "rowstream_checkpoint_writes_total",
    "Checkpoint files written.",
    "",
);
pub static CHECKPOINT_AGE_SECONDS: Family = Family::gauge(
    "rowstream_checkpoint_timestamp_seconds",
    "Unix time of the last checkpoint write.",
    "",
);
pub static SINK_BATCHES: Family = Family::counter(
    "rowstream_sink_batches_acked_total",
    "Batches a sink has made durable.",
    "sink",
);
pub static SINK_RECORDS: Family = Family::counter(
    "rowstream_sink_records_acked_total",
    "Records (row changes and DDL statements) a sink has made durable.",
    "sink",
);
pub static SINK_RESTARTS: Family = Family::counter(
    "rowstream_sink_restarts_total",
    "Times the sinks were restarted from the checkpoint after this sink failed with a transient error.",
    "sink",
);
pub static IN_FLIGHT_BATCHES: Family = Family::gauge(
    "rowstream_in_flight_batches",
    "Batches sent to sinks and not yet acknowledged by all.",
    "",
);

// snapshot
pub static SNAPSHOT_ROWS: Family = Family::counter(
    "rowstream_snapshot_rows_total",
    "Rows read by the snapshot and handed to the sinks, per table (`db.table`).",
    "table",
);
pub static SNAPSHOT_ROWS_ESTIMATED: Family = Family::gauge(
    "rowstream_snapshot_rows_estimated",
    "The server's row count estimate of each table being snapshotted (information_schema.TABLES.TABLE_ROWS).",
    "table",
);
pub static SNAPSHOT_ROWS_PER_SECOND: Family = Family::gauge(
    "rowstream_snapshot_rows_per_second",
    "Snapshot read rate over the last progress interval, all tables.",
    "",
);
pub static SNAPSHOT_RUNNING: Family = Family::gauge(
    "rowstream_snapshot_running",
    "1 while a snapshot is being read, else 0.",
    "",
);
pub static SNAPSHOT_RESUMES: Family = Family::gauge(
    "rowstream_snapshot_resumes",
    "Times the snapshot being read was resumed from the checkpoint after a restart (on-demand snapshots count them; 0 otherwise).",
    "",
);

/// The service's own families, in exposition order.
pub static ALL: &[&Family] = &[
    &SOURCE_RECORDS,
    &SOURCE_TRANSACTIONS,
    &SOURCE_RECONNECTS,
    &SOURCE_CONNECTED,
    &LAG_SECONDS,
    &CHECKPOINT_WRITES,
    &CHECKPOINT_AGE_SECONDS,
    &SINK_BATCHES,
    &SINK_RECORDS,
    &SINK_RESTARTS,
    &IN_FLIGHT_BATCHES,
    &SNAPSHOT_ROWS,
    &SNAPSHOT_ROWS_ESTIMATED,
    &SNAPSHOT_ROWS_PER_SECOND,
    &SNAPSHOT_RUNNING,
    &SNAPSHOT_RESUMES,
];

/// Families registered by sinks, in registration order.
static REGISTERED: Mutex<Vec<&'static Family>> = Mutex::new(Vec::new());

/// Adds a sink's families to the exposition. Call it before creating their
/// series (a sink's `start`); registering the same families again is a no-op.
///
/// Panics when a different family already uses one of the names: two
/// sinks declaring the same metric is a programming error.
pub fn register(families: &[&'static Family]) {
    let mut reg = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    for &f in families {
        if reg.iter().any(|r| std::ptr::eq(*r, f)) {
            continue;
        }
        assert!(
            ALL.iter().chain(reg.iter()).all(|r| r.name != f.name),
            "metric {} declared twice",
            f.name
        );
        reg.push(f);
    }
}

/// The Prometheus text exposition (format 0.0.4) of every series created so far.
pub fn render() -> String {
    let mut out = String::new();
    for f in ALL {
        f.render(&mut out);
    }
    let reg = REGISTERED.lock().unwrap_or_else(|p| p.into_inner());
    for f in reg.iter() {
        f.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static TEST_C: Family = Family::counter("rowstream_test_total", "A test counter.", "sink");
    static TEST_G: Family = Family::gauge("rowstream_test_gauge", "A test gauge.", "");

    #[test]
    fn renders_series_with_escaped_labels() {
        TEST_C.with("a\"b").add(3);
        TEST_C.with("a\"b").inc();
        TEST_G.with("").set(1.5);
        let mut out = String::new();
        TEST_C.render(&mut out);
        TEST_G.render(&mut out);
        assert_eq!(
            out,
            "# HELP rowstream_test_total A test counter.\n# TYPE rowstream_test_total counter\n\
             rowstream_test_total{sink=\"a\\\"b\"} 4\n\
             # HELP rowstream_test_gauge A test gauge.\n# TYPE rowstream_test_gauge gauge\n\
             rowstream_test_gauge 1.5\n"
        );
    }

    #[test]
    fn registered_families_render_once() {
        static SINK_C: Family = Family::counter("rowstream_testsink_total", "Sink.", "sink");
        register(&[&SINK_C]);
        register(&[&SINK_C]);
        SINK_C.with("s").inc();
        let out = render();
        assert_eq!(
            out.matches("# TYPE rowstream_testsink_total").count(),
            1,
            "{out}"
        );
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<_> = ALL.iter().map(|f| f.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("rowstream_")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }
}
