//! Verify progress for the operator: a bar on a terminal (rows compared
//! out of the source's estimate, chunks, differing rows), a log line every
//! ten seconds otherwise (systemd, CI, pipes). Same look as restore's.
//!
//! Counts are of chunks whose comparison finished, never of chunks merely
//! planned.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: Option<ProgressBar>,
    rows: u64,
    chunks: u64,
    differing: u64,
    estimate: u64,
    logged: Instant,
}

impl Progress {
    /// `estimate`: the source's row estimate over every table (only the
    /// bar's length; rows counted may pass it).
    pub fn new(estimate: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(estimate.max(1));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {percent:>3}% ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            bar,
            rows: 0,
            chunks: 0,
            differing: 0,
            estimate,
            logged: Instant::now(),
        }
    }

    /// One more chunk compared: `rows` source rows, `differing` rows differ.
    pub fn chunk(&mut self, rows: u64, differing: u64) {
        self.rows += rows;
        self.chunks += 1;
        self.differing += differing;
        let msg = format!(
            "{} rows, {} chunks, {} differing",
            self.rows, self.chunks, self.differing
        );
        if let Some(b) = &self.bar {
            if self.rows > b.length().unwrap_or(0) {
                b.set_length(self.rows);
            }
            b.set_position(self.rows);
            b.set_message(msg);
        } else if self.logged.elapsed() >= LOG_EVERY {
            tracing::info!(estimate = self.estimate, "verify: {msg}");
            self.logged = Instant::now();
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
