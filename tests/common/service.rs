//! `rowstream run` as a service under test: [`Service`] writes a TOML config (a source,
//! one sink, a checkpoint dir in its own [`TmpDir`]), starts the binary in the background
//! with its stderr appended to a log, kills it (SIGKILL) or stops it (SIGTERM), waits
//! until its checkpoint covers what the server executed, and reads the checkpoint.
//!
//! Invariants: every wait has a timeout and panics with the log tail; a process still
//! running when the [`Service`] is dropped is killed; when the test panics, the log tail
//! is printed and the scratch dir kept. Checkpoints are compared as GTID sets
//! ([`gtid_seqs`]), never as strings.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::{next_replica_server_id, output_with_timeout, rowstream, TimedOutput};
use super::{gtid_seqs, TestKafka, TestSearch, TestServer, TmpDir};

/// The sink of a [`Service`]: the body of its `[[sinks]]` table.
#[derive(Clone, Debug)]
pub enum Sink {
    /// `type = "file"`, `name = "backup"`, `dir` = [`Service::backup`], then these lines.
    File(String),
    /// Any other sink: every line of its table (after `[[sinks]]`).
    Other(String),
}

impl Sink {
    /// A file sink with no other setting.
    pub fn file() -> Sink {
        Sink::File(String::new())
    }

    /// `type = "kafka"`, `name = "kafka"`, `linger.ms = 2`; `keys`: more lines of the
    /// sink's table, `properties`: more lines of `[sinks.properties]`.
    pub fn kafka(kafka: &TestKafka, keys: &str, properties: &str) -> Sink {
        Sink::Other(format!(
            "type = \"kafka\"\nname = \"kafka\"\nbrokers = {:?}\n{keys}\n\
             [sinks.properties]\n\"linger.ms\" = \"2\"\n{properties}\n",
            kafka.bootstrap()
        ))
    }

    /// `type = "elasticsearch"`, `name = "es"`, 50 ms flushes, retries capped at 1 s;
    /// `extra`: more lines of the sink's table.
    pub fn elasticsearch(search: &TestSearch, extra: &str) -> Sink {
        Sink::Other(format!(
            "type = \"elasticsearch\"\nname = \"es\"\nurls = [{:?}]\n\
             flush_ms = 50\nretry_max_ms = 1000\n{extra}\n",
            search.url()
        ))
    }
}

/// What goes into `rowstream.toml` (the checkpoint dir and the file sink's dir are the
/// [`Service`]'s).
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// `source.url` (one) or `source.urls` (primary first).
    pub urls: Vec<String>,
    /// `source.start` when there is no checkpoint (`None`: the default).
    pub start: Option<String>,
    pub sink: Sink,
    /// TOML after the sink: more tables such as `[snapshot]` or `[metrics]`.
    pub extra: String,
    /// More lines of the `[source]` table.
    pub source_extra: String,
    /// `RUST_LOG` of the process (`None`: inherited).
    pub rust_log: Option<String>,
    /// More environment variables of the process only (never set them on
    /// the test process: tests of one binary run in parallel).
    pub env: Vec<(String, String)>,
}

impl ServiceConfig {
    /// Reads `urls` from the earliest binlog into `sink`.
    pub fn new(urls: &[String], sink: Sink) -> ServiceConfig {
        ServiceConfig {
            urls: urls.to_vec(),
            start: Some("earliest".into()),
            sink,
            extra: String::new(),
            source_extra: String::new(),
            rust_log: None,
            env: Vec::new(),
        }
    }

    /// One server, read as `repl`, from the earliest binlog, with `RUST_LOG=info`.
    pub fn for_server(server: &TestServer, sink: Sink) -> ServiceConfig {
        let mut c = ServiceConfig::new(&[server.repl_url()], sink);
        c.rust_log = Some("info".into());
        c
    }

    /// With these tables after the sink.
    pub fn with_extra(mut self, toml: &str) -> ServiceConfig {
        self.extra = toml.to_string();
        self
    }
}

/// One `rowstream run` instance: its config, checkpoint dir, file-sink dir, log, process.
pub struct Service {
    pub tmp: TmpDir,
    pub cfg: ServiceConfig,
    /// `<tmp>/rowstream.toml`
    pub config: PathBuf,
    /// The file sink's dir (`<tmp>/backup` unless [`Service::set_backup`] moved it).
    pub backup: PathBuf,
    /// `<tmp>/cp`
    pub cp_dir: PathBuf,
    /// `<tmp>/rowstream.log`: the stderr of every run, each after a `===== run N =====`.
    pub log: PathBuf,
    pub server_id: u32,
    pub child: Option<Child>,
    runs: u32,
}

impl Service {
    /// Writes the config; does not start anything.
    pub fn new(label: &str, cfg: ServiceConfig) -> Service {
        let tmp = TmpDir::new(label);
        let s = Service {
            config: tmp.join("rowstream.toml"),
            backup: tmp.join("backup"),
            cp_dir: tmp.join("cp"),
            log: tmp.join("rowstream.log"),
            tmp,
            cfg,
            server_id: next_replica_server_id(),
            child: None,
            runs: 0,
        };
        s.write_config();
        s
    }

    /// Rewrites `rowstream.toml` from [`Service::cfg`] (the next run reads it).
    pub fn write_config(&self) {
        let c = &self.cfg;
        let mut toml = String::from("[source]\n");
        match &c.urls[..] {
            [one] => toml.push_str(&format!("url = {one:?}\n")),
            many => {
                let urls: Vec<String> = many.iter().map(|u| format!("{u:?}")).collect();
                toml.push_str(&format!("urls = [{}]\n", urls.join(", ")));
            }
        }
        toml.push_str(&format!(
            "server_id = {}\nname = \"svc\"\nheartbeat_secs = 2\n",
            self.server_id
        ));
        if let Some(start) = &c.start {
            toml.push_str(&format!("start = {start:?}\n"));
        }
        toml.push_str(&c.source_extra);
        toml.push('\n');
        toml.push_str(&format!(
            "\n[checkpoint]\ndir = {:?}\n\n[[sinks]]\n",
            self.cp_dir.display().to_string()
        ));
        match &c.sink {
            Sink::File(extra) => toml.push_str(&format!(
                "type = \"file\"\nname = \"backup\"\ndir = {:?}\n{extra}\n",
                self.backup.display().to_string()
            )),
            Sink::Other(table) => toml.push_str(table),
        }
        toml.push('\n');
        toml.push_str(&c.extra);
        toml.push('\n');
        std::fs::write(&self.config, toml).unwrap();
    }

    /// Points the file sink at `dir` and rewrites the config.
    pub fn set_backup(&mut self, dir: PathBuf) {
        self.backup = dir;
        self.write_config();
    }

    /// Reads from `urls` from the next run on.
    pub fn set_urls(&mut self, urls: &[String]) {
        self.cfg.urls = urls.to_vec();
        self.write_config();
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.cp_dir.join("checkpoint.json")
    }

    pub fn checkpoint_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.checkpoint_path()).ok()
    }

    /// The checkpoint as JSON (None when there is no checkpoint file; panics when it is
    /// not JSON: checkpoints are replaced atomically, a torn one is a bug).
    pub fn checkpoint(&self) -> Option<Value> {
        let b = self.checkpoint_bytes()?;
        Some(serde_json::from_slice(&b).unwrap_or_else(|e| {
            panic!(
                "checkpoint.json is not JSON ({e}): {}",
                String::from_utf8_lossy(&b)
            )
        }))
    }

    /// The checkpoint's gtid_set without white space (None when there is no checkpoint).
    pub fn checkpoint_gtid(&self) -> Option<String> {
        let v = self.checkpoint()?;
        let set = v["gtid_set"]
            .as_str()
            .expect("checkpoint gtid_set is a string");
        Some(set.replace(['\n', ' '], ""))
    }

    /// True once a checkpoint exists and holds no snapshot in progress.
    pub fn snapshot_complete(&self) -> bool {
        self.checkpoint()
            .is_some_and(|c| c.get("snapshot").is_none())
    }

    /// Starts `rowstream run` in the background, its stderr appended to the log.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "rowstream already running");
        self.runs += 1;
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(log, "===== run {} =====", self.runs).unwrap();
        let mut cmd = rowstream();
        cmd.args(["run", "--config"]).arg(&self.config);
        if let Some(level) = &self.cfg.rust_log {
            cmd.env("RUST_LOG", level);
        }
        cmd.envs(self.cfg.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rowstream run");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `Some(status)` (and no process any more) when the process has exited by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut().expect("running").try_wait().unwrap()?;
        self.child = None;
        Some(st)
    }

    /// SIGKILL. Returns `Some(status)` when it had already exited on its own.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("running");
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        let _ = child.kill();
        child.wait().unwrap();
        None
    }

    /// SIGTERM and wait up to `timeout`; returns the status and how long it took. Panics
    /// (after SIGKILL) when it does not exit in time.
    pub fn sigterm(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        wait_for_term_handler(child.id(), Duration::from_secs(5));
        let t = Instant::now();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return (st, t.elapsed());
            }
            if t.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rowstream did not exit within {timeout:?} of SIGTERM\n--- log ---\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Service::sigterm`] that must end with exit code 0 (a clean drain).
    pub fn stop(&mut self, timeout: Duration) {
        let (st, _) = self.sigterm(timeout);
        assert!(
            st.success(),
            "rowstream exited with {st} after SIGTERM\n--- log ---\n{}",
            self.log_tail()
        );
    }

    /// Waits up to `timeout` for the process to exit by itself; None (still running)
    /// when it does not.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            if t.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself; panics (after SIGKILL) when it runs
    /// longer than `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_exit_within(timeout).unwrap_or_else(|| {
            self.kill9();
            panic!(
                "rowstream did not exit within {timeout:?}; checkpoint {:?}\n--- log ---\n{}",
                self.checkpoint_gtid(),
                self.log_tail()
            )
        })
    }

    /// Runs `rowstream run` to completion (or `timeout`), capturing its output.
    pub fn run_once(&self, timeout: Duration) -> TimedOutput {
        let mut cmd = rowstream();
        cmd.args(["run", "--config"]).arg(&self.config);
        output_with_timeout(&mut cmd, None, timeout)
    }

    /// The whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 60 lines of the log.
    pub fn log_tail(&self) -> String {
        let s = self.log_text();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Polls `done` until it holds; panics when the process exits or `timeout` passes.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Service) -> bool,
    ) {
        let t = Instant::now();
        while !done(self) {
            if let Some(st) = self.exited() {
                panic!(
                    "rowstream exited ({st}) while waiting for {what}; checkpoint {:?}\n--- log ---\n{}",
                    self.checkpoint_gtid(),
                    self.log_tail()
                );
            }
            assert!(
                t.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; checkpoint {:?}\n--- log ---\n{}",
                self.checkpoint(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the checkpoint covers everything `server` has executed and holds no
    /// snapshot in progress; returns how long that took. Panics when rowstream exits or
    /// `timeout` passes first.
    pub fn wait_caught_up(&mut self, server: &TestServer, timeout: Duration) -> Duration {
        let t = Instant::now();
        let what = format!("the checkpoint to reach {}", server.gtid_executed());
        self.wait_for(&what, timeout, |s| {
            let want = gtid_seqs(server.flavor, &server.gtid_executed());
            s.checkpoint().is_some_and(|c| c.get("snapshot").is_none())
                && s.checkpoint_gtid()
                    .is_some_and(|cp| gtid_seqs(server.flavor, &cp) == want)
        });
        t.elapsed()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- rowstream log ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// Waits until process `pid` catches SIGTERM (its `SigCgt` mask in
/// /proc), at most `limit`: a SIGTERM sent in the first milliseconds after
/// exec, before any program can install a handler, kills it instead. A
/// process that never installs one is still sent the signal after `limit`,
/// and the caller sees how it ended.
fn wait_for_term_handler(pid: u32, limit: Duration) {
    let t = Instant::now();
    while t.elapsed() < limit {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        if status.lines().any(|l| l.starts_with("State:\tZ")) {
            return; // it has exited
        }
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0);
        if caught {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
