//! Running the `rowstream` binary and other programs from a test: [`output_with_timeout`]
//! (a program to completion, killed after a timeout) and [`tail`] (`rowstream tail`,
//! its JSON lines parsed).
//!
//! Invariants: nothing here blocks forever; a replica connection never reuses a test
//! server's id ([`next_replica_server_id`]).

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::TAIL_TIMEOUT;

static NEXT_REPLICA: AtomicU32 = AtomicU32::new(0);

/// `Command::new(env!("CARGO_BIN_EXE_rowstream"))`
pub fn rowstream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rowstream"))
}

/// Runs `rowstream tail --url URL --server-id ID --from FROM --max-events N [extra...]`
/// with the default timeout (120 s) and returns its stdout lines parsed as JSON (blank
/// lines skipped). ID is unique per call (1_000_000 + ...), never a test server's id.
/// Panics with stderr on a non-zero exit, a timeout or a line that is not JSON.
pub fn tail(url: &str, from: &str, max_events: usize, extra: &[&str]) -> Vec<serde_json::Value> {
    tail_with_timeout(url, from, max_events, extra, TAIL_TIMEOUT)
}

/// [`tail`] with an explicit timeout.
pub fn tail_with_timeout(
    url: &str,
    from: &str,
    max_events: usize,
    extra: &[&str],
    timeout: Duration,
) -> Vec<serde_json::Value> {
    let mut cmd = tail_command(url, next_replica_server_id(), from);
    cmd.args(["--max-events", &max_events.to_string()])
        .args(extra);
    let out = output_with_timeout(&mut cmd, None, timeout);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.success() {
        panic!(
            "rowstream tail --from {from} --max-events {max_events} {extra:?} failed ({}); \
             {} stdout lines\n--- stderr ---\n{}",
            out.describe_status(),
            stdout.lines().count(),
            abbreviate(&out.stderr_text(), 20_000)
        );
    }
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "rowstream tail printed a line that is not JSON ({e}): {}",
                    abbreviate(l, 2000)
                )
            })
        })
        .collect()
}

/// `rowstream tail --url URL --server-id ID --from FROM`: append the other arguments.
pub fn tail_command(url: &str, server_id: u32, from: &str) -> Command {
    let mut cmd = rowstream();
    cmd.args(["tail", "--url", url, "--server-id"])
        .arg(server_id.to_string())
        .args(["--from", from]);
    cmd
}

/// A server id for a replica connection (rowstream tail/run) that differs from every test
/// server's id (ports, < 65536) and from the other replicas this process registers.
pub fn next_replica_server_id() -> u32 {
    1_000_000
        + (std::process::id() % 1000) * 1000
        + NEXT_REPLICA.fetch_add(1, Ordering::Relaxed) % 1000
}

/// What [`output_with_timeout`] returns: exit status (None = killed by the timeout) and
/// the complete stdout / stderr.
pub struct TimedOutput {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl TimedOutput {
    /// Exited with code 0 before the timeout.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// `Ok` when it succeeded, else `Err("<what> (<status>): <stderr><stdout>")`.
    pub fn result(&self, what: &str) -> Result<(), String> {
        if self.success() {
            return Ok(());
        }
        Err(format!(
            "{what} ({}): {}{}",
            self.describe_status(),
            self.stderr_text(),
            String::from_utf8_lossy(&self.stdout)
        ))
    }

    /// "exit status: 1", "signal: 9 (SIGKILL)" or "timed out after 120 s".
    pub fn describe_status(&self) -> String {
        match self.status {
            Some(s) => s.to_string(),
            None => format!(
                "timed out after {:.0} s and killed",
                self.elapsed.as_secs_f64()
            ),
        }
    }
}

/// Runs `cmd` to completion with `stdin` as its input (or /dev/null), collecting stdout
/// and stderr concurrently; kills it (SIGKILL) when it runs longer than `timeout`.
/// Panics only when the program cannot be spawned.
pub fn output_with_timeout(
    cmd: &mut Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> TimedOutput {
    let start = Instant::now();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A broken pipe (the program exited early) shows in its status / stderr.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    // The readers report when their pipe hits EOF, i.e. (normally) when the program exits:
    // no polling latency on the fast path.
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<u8>)>();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for (i, pipe) in pipes.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send((i, buf));
        });
    }
    drop(tx);
    let mut bufs: [Option<Vec<u8>>; 2] = [None, None];
    let mut timed_out = false;
    while bufs.iter().any(Option::is_none) {
        // After a timeout, give the pipes a moment to close (a grandchild may hold them).
        let wait = if timed_out {
            Duration::from_secs(5)
        } else {
            timeout.saturating_sub(start.elapsed())
        };
        match rx.recv_timeout(wait) {
            Ok((i, buf)) => bufs[i] = Some(buf),
            Err(_) if !timed_out => {
                timed_out = true;
                let _ = child.kill();
            }
            Err(_) => break,
        }
    }
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for {cmd:?}: {e}"));
    let [stdout, stderr] = bufs.map(Option::unwrap_or_default);
    TimedOutput {
        status: (!timed_out).then_some(status),
        stdout,
        stderr,
        elapsed: start.elapsed(),
    }
}

pub(super) fn abbreviate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..cut], s.len())
}
