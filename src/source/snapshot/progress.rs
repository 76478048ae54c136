//! Snapshot progress for people and for Prometheus: rows done, rows/s and
//! ETA per table, as a one-line progress bar redrawn on stderr when stderr
//! is a terminal, else as an INFO log line every `LOG_EVERY`; the same
//! numbers as the `rowstream_snapshot_*` metrics. Both kinds of snapshot
//! use it: the initial one knows its tables up front ([`Progress::new`]),
//! an on-demand one adds each table when its first chunk is read
//! ([`Progress::on_demand`], [`Progress::add_table`]) and says how many
//! times it was resumed after a restart.
//!
//! Rows counted here are rows handed to the pipeline (not yet durable in
//! the sinks); the total is the server's estimate
//! (`information_schema.TABLES.TABLE_ROWS`, which can be off by tens of
//! percent on InnoDB), so the ETA is an estimate too.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rowstream_api::metrics::{
    Handle, SNAPSHOT_RESUMES, SNAPSHOT_ROWS, SNAPSHOT_ROWS_ESTIMATED, SNAPSHOT_ROWS_PER_SECOND,
    SNAPSHOT_RUNNING,
};

use super::rows::SnapTable;
use crate::checkpoint::SnapshotState;

/// Log line period when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Redraw period of the terminal bar.
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// Creates the table's metric series (estimate set, rows at zero).
pub fn register(t: &SnapTable) {
    SNAPSHOT_ROWS_ESTIMATED
        .with(&t.label())
        .set(t.estimated_rows as f64);
    SNAPSHOT_ROWS.with(&t.label()).add(0);
}

struct TableStat {
    label: String,
    estimated: u64,
    rows: u64,
    done: bool,
    handle: Handle,
}

/// Progress of the running snapshot (owned by the merger, or by the
/// on-demand snapshot's state machine).
pub struct Progress {
    /// "initial" or "on_demand" (the log lines' `kind`).
    kind: &'static str,
    /// Restarts this snapshot was resumed after, when counted (on-demand).
    resumes: u64,
    tables: Vec<TableStat>,
    current: usize,
    tty: bool,
    started: Instant,
    last_at: Instant,
    last_rows: u64,
    total_rows: u64,
    rate: f64,
    every: Duration,
}

impl Progress {
    pub fn new(tables: &[SnapTable], state: &SnapshotState) -> Progress {
        let mut p = Progress::empty("initial", 0);
        for (t, tp) in tables.iter().zip(&state.tables) {
            let i = p.add_table(t, tp.rows);
            p.tables[i].done = tp.done;
        }
        p.current = 0;
        p
    }

    /// An on-demand snapshot's, resumed `resumes` times; tables are added
    /// as they are reached.
    pub fn on_demand(resumes: u64) -> Progress {
        Progress::empty("on_demand", resumes)
    }

    fn empty(kind: &'static str, resumes: u64) -> Progress {
        SNAPSHOT_RUNNING.with("").set(1.0);
        SNAPSHOT_RESUMES.with("").set(resumes as f64);
        let tty = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            kind,
            resumes,
            tables: Vec::new(),
            current: 0,
            tty,
            started: now,
            last_at: now,
            last_rows: 0,
            total_rows: 0,
            rate: 0.0,
            every: if tty { DRAW_EVERY } else { LOG_EVERY },
        }
    }

    /// Adds table `t` (`rows` of it already durable, from before a
    /// restart), registers its metrics; returns its index.
    pub fn add_table(&mut self, t: &SnapTable, rows: u64) -> usize {
        register(t);
        self.tables.push(TableStat {
            label: t.label(),
            estimated: t.estimated_rows,
            rows,
            done: false,
            handle: SNAPSHOT_ROWS.with(&t.label()),
        });
        self.current = self.tables.len() - 1;
        self.current
    }

    /// The index of the table rows were last counted for (or last added).
    pub fn current(&self) -> usize {
        self.current
    }

    /// `n` more rows of table `i` handed to the pipeline.
    pub fn rows(&mut self, i: usize, n: u64) {
        let t = &mut self.tables[i];
        t.rows += n;
        t.handle.add(n);
        self.total_rows += n;
        self.current = i;
    }

    pub fn table_done(&mut self, i: usize) {
        self.tables[i].done = true;
        if !self.tty {
            let t = &self.tables[i];
            tracing::info!(kind = self.kind, table = %t.label, rows = t.rows, "snapshot: table read");
        }
    }

    /// Reports when the period is over.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at);
        if dt < self.every {
            return;
        }
        let rate = (self.total_rows - self.last_rows) as f64 / dt.as_secs_f64();
        // Smooth the terminal's fast redraws; log lines use the raw rate.
        self.rate = if self.tty && self.rate > 0.0 {
            0.8 * self.rate + 0.2 * rate
        } else {
            rate
        };
        self.last_at = now;
        self.last_rows = self.total_rows;
        SNAPSHOT_ROWS_PER_SECOND.with("").set(self.rate);
        let Some(t) = self.tables.get(self.current) else {
            return;
        };
        let left_here = t.estimated.saturating_sub(t.rows);
        let left_all: u64 = self
            .tables
            .iter()
            .filter(|t| !t.done)
            .map(|t| t.estimated.saturating_sub(t.rows))
            .sum();
        let eta = |left: u64| {
            if self.rate >= 1.0 {
                format!("{:.0}s", left as f64 / self.rate)
            } else {
                "?".into()
            }
        };
        let tables_done = self.tables.iter().filter(|t| t.done).count();
        if self.tty {
            let pct = if t.estimated > 0 {
                (t.rows as f64 / t.estimated as f64 * 100.0).min(100.0)
            } else {
                0.0
            };
            let filled = (pct / 5.0) as usize;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{} snapshot {} [{}{}] {:>3.0}% {}/~{} rows, {:.0} rows/s, ETA {} (all tables {}, {}/{} done{})",
                self.kind,
                t.label,
                "#".repeat(filled),
                ".".repeat(20 - filled.min(20)),
                pct,
                t.rows,
                t.estimated,
                self.rate,
                eta(left_here),
                eta(left_all),
                tables_done,
                self.tables.len(),
                if self.resumes > 0 {
                    format!(", resumed {}x", self.resumes)
                } else {
                    String::new()
                }
            );
            let _ = err.flush();
        } else {
            tracing::info!(
                kind = self.kind,
                table = %t.label,
                rows = t.rows,
                estimated_rows = t.estimated,
                rows_per_sec = self.rate as u64,
                eta_table = %eta(left_here),
                eta_all = %eta(left_all),
                tables_done,
                tables = self.tables.len(),
                resumes = self.resumes,
                "snapshot progress"
            );
        }
    }

    /// The snapshot ended (`complete`: every row handed over).
    pub fn finish(&mut self, complete: bool) {
        SNAPSHOT_RUNNING.with("").set(0.0);
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(
            kind = self.kind,
            complete,
            resumes = self.resumes,
            rows = self.total_rows,
            secs = format!("{secs:.1}"),
            rows_per_sec = (self.total_rows as f64 / secs.max(1e-3)) as u64,
            "snapshot: reading ended"
        );
    }
}
