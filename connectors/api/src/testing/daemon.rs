//! Throwaway test servers for sink crates' tests, started and stopped only
//! through the scripts in `deploy/dev/` (`start-<kind>.sh PORT DATADIR`,
//! `stop-<kind>.sh --kill [--purge] DATADIR`), the same ones the
//! service's integration tests and developers use.
//!
//! Invariants kept: a test never passes silently without its server: when
//! the server cannot be obtained, [`TestDaemon::start`] prints
//! `SKIP: <reason>` and returns `None`, or panics when
//! `ROWSTREAM_TEST_REQUIRE_SERVERS` is set; a server that exists but does
//! not start is always a panic. Dropping the daemon kills it and deletes
//! its datadir (kept when the test panics); the start scripts' watchdog
//! (`ROWSTREAM_OWNER_PID`, this process) kills it when the test process
//! exits without dropping it (a static, a panic that aborts).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running test server on `127.0.0.1:port`.
#[derive(Debug)]
pub struct TestDaemon {
    /// `kafka`, `opensearch`, `osmem`...: the scripts are `start-<kind>.sh`, `stop-<kind>.sh`.
    kind: &'static str,
    pub port: u16,
    pub datadir: PathBuf,
}

fn dev_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/dev")
        .join(name)
}

fn require_servers() -> bool {
    std::env::var("ROWSTREAM_TEST_REQUIRE_SERVERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestDaemon {
    /// Starts `deploy/dev/start-<kind>.sh` on a free port (see the module docs
    /// for when it returns `None`).
    pub fn start(kind: &'static str) -> Option<TestDaemon> {
        let start = dev_script(&format!("start-{kind}.sh"));
        if let Err(e) = run(Command::new(&start).arg("--fetch")) {
            let reason = format!(
                "cannot obtain the {kind} test server: {e} (run deploy/dev/install-test-deps.sh)"
            );
            assert!(
                !require_servers(),
                "{reason} and ROWSTREAM_TEST_REQUIRE_SERVERS is set"
            );
            eprintln!("SKIP: {reason}");
            return None;
        }
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-servers");
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let d = TestDaemon {
                kind,
                port,
                datadir: base.join(format!(
                    "{kind}-conn-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )),
            };
            let mut cmd = Command::new(&start);
            cmd.arg(port.to_string())
                .arg(&d.datadir)
                .env("ROWSTREAM_OWNER_PID", std::process::id().to_string());
            match run(&mut cmd) {
                Ok(()) => return Some(d),
                Err(e) if e.contains("in use") => last = e,
                Err(e) => panic!("cannot start the {kind} test server: {e}"),
            }
        }
        panic!("cannot start the {kind} test server: {last}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let mut cmd = Command::new(dev_script(&format!("stop-{}.sh", self.kind)));
        cmd.arg("--kill");
        if !std::thread::panicking() {
            cmd.arg("--purge");
        }
        if let Err(e) = run(cmd.arg(&self.datadir)) {
            eprintln!("warning: stopping the {} test server: {e}", self.kind);
        }
    }
}
