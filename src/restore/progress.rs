//! Restore progress for the operator: a progress bar on a terminal
//! (transactions, rows/s, ETA by how much of the backup is read), a log
//! line every ten seconds otherwise (systemd, CI, pipes).
//!
//! Counts are of what the target acknowledged (or, in a dry run, of what
//! would be applied), never of what was merely read.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(10);
const BAR_LEN: u64 = 10_000;

#[derive(Default)]
pub struct Progress {
    pub transactions: u64,
    pub rows: u64,
    pub ddl: u64,
    /// Transactions the target held already (not applied again).
    pub already: u64,
    /// The last transaction counted.
    pub last: Option<String>,
    /// Dry run: counted at the next commit.
    pub pending_rows: u64,
    pub pending_ddl: u64,
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    logged: Option<Instant>,
}

impl Progress {
    pub fn new(dry_run: bool) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(BAR_LEN);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {percent:>3}% ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(if dry_run { "verifying" } else { "applying" });
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            started: Some(now),
            logged: Some(now),
            ..Progress::default()
        }
    }

    /// One more transaction is on the target (or would be).
    pub fn committed(&mut self, id: String) {
        self.transactions += 1;
        self.rows += std::mem::take(&mut self.pending_rows);
        self.ddl += std::mem::take(&mut self.pending_ddl);
        self.last = Some(id);
    }

    /// A transaction the target already had (a rerun).
    pub fn skipped(&mut self, id: String) {
        self.already += 1;
        self.last = Some(id);
    }

    fn rate(&self) -> f64 {
        let secs = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        if secs > 0.0 {
            self.rows as f64 / secs
        } else {
            0.0
        }
    }

    /// Updates the display; `done` is how much of the backup is read (0..1).
    pub fn tick(&mut self, done: f64) {
        let msg = || {
            format!(
                "{} transactions, {} rows, {:.0} rows/s",
                self.transactions,
                self.rows,
                self.rate()
            )
        };
        if let Some(b) = &self.bar {
            b.set_position((done * BAR_LEN as f64) as u64);
            if self.transactions.is_multiple_of(64) {
                b.set_message(msg());
            }
        } else if self.logged.is_some_and(|l| l.elapsed() >= LOG_EVERY) {
            tracing::info!(progress = %format!("{:.1}%", done * 100.0), "restore: {}", msg());
            self.logged = Some(Instant::now());
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
