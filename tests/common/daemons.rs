//! External daemons a sink test writes into, each run through its `deploy/dev` scripts:
//! one generic [`TestDaemon`] (start script, stop script, data dir, pid file, log, drop)
//! and thin wrappers for a Kafka-protocol broker ([`TestKafka`], noida-db) and an
//! Elasticsearch / OpenSearch REST server ([`TestSearch`], osmem-server).
//!
//! Invariants: the same skip / fail rule as [`super::TestServer`] (a daemon that cannot
//! be obtained is a printed `SKIP`, or a panic under `ROWSTREAM_TEST_REQUIRE_SERVERS`; one
//! that is there but does not start is always a panic); dropping a daemon kills it and
//! purges its data dir (kept, with a message, when the test panics); data dirs are named
//! `<name>-<pid>-<n>` so the next test process purges those of a dead one.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::cli::{output_with_timeout, TimedOutput};
use super::{
    dev_script, drop_flags, fresh_server_dir, release_port, require_servers, start_on_a_free_port,
    sweep_stale_datadirs, REQUIRE_SERVERS_ENV,
};

/// One kind of daemon: its scripts in `deploy/dev/` and the files it keeps in its dir.
pub struct DaemonKind {
    /// Short name: the prefix of its data dirs and its name in messages.
    pub name: &'static str,
    /// What it is, for the skip / failure messages.
    pub what: &'static str,
    /// `start-*.sh PORT DIR` (and `--fetch` to download the binary).
    pub start_script: &'static str,
    /// `stop-*.sh [--kill] [--purge] DIR...`
    pub stop_script: &'static str,
    pub pid_file: &'static str,
    pub log_file: &'static str,
}

/// noida-db, a Kafka-protocol broker (`deploy/dev/start-kafka.sh`).
pub const KAFKA: DaemonKind = DaemonKind {
    name: "kafka",
    what: "the noida-db Kafka broker",
    start_script: "start-kafka.sh",
    stop_script: "stop-kafka.sh",
    pid_file: "broker.pid",
    log_file: "broker.log",
};

/// osmem-server, an in-memory Elasticsearch / OpenSearch REST API (`start-osmem.sh`).
pub const OSMEM: DaemonKind = DaemonKind {
    name: "osmem",
    what: "osmem-server",
    start_script: "start-osmem.sh",
    stop_script: "stop-osmem.sh",
    pid_file: "osmem.pid",
    log_file: "osmem.log",
};

/// Every daemon kind, for the sweep of data dirs left by dead test processes.
pub(super) const KINDS: [&DaemonKind; 2] = [&KAFKA, &OSMEM];

/// A private throwaway daemon on `127.0.0.1:port`, its files under
/// `target/test-servers/<name>-<pid>-<n>`. Killed and purged on drop.
pub struct TestDaemon {
    pub kind: &'static DaemonKind,
    pub port: u16,
    pub datadir: PathBuf,
}

impl TestDaemon {
    /// Starts one on a free port; the binary is downloaded into the cache on first use
    /// (`--fetch`). Returns None after printing "SKIP: <reason>" when it cannot be obtained
    /// and ROWSTREAM_TEST_REQUIRE_SERVERS is unset; panics when it is set. Panics when the
    /// binary exists but does not start.
    pub fn start(kind: &'static DaemonKind) -> Option<TestDaemon> {
        let mut fetch = Command::new(dev_script(kind.start_script));
        fetch.arg("--fetch");
        let out = output_with_timeout(&mut fetch, None, Duration::from_secs(300));
        if !out.success() {
            let reason = format!(
                "cannot obtain {} ({}): {} (run deploy/dev/install-test-deps.sh)",
                kind.what,
                out.describe_status(),
                out.stderr_text().trim()
            );
            if require_servers() {
                panic!("{reason} and {REQUIRE_SERVERS_ENV} is set");
            }
            eprintln!("SKIP: {reason}");
            return None;
        }
        sweep_stale_datadirs();
        Some(start_on_a_free_port(kind.what, |port| {
            let daemon = TestDaemon {
                kind,
                port,
                datadir: fresh_server_dir(kind.name),
            };
            daemon.start_script().map(|()| daemon)
        }))
    }

    fn start_script(&self) -> Result<(), String> {
        let mut cmd = Command::new(dev_script(self.kind.start_script));
        cmd.arg(self.port.to_string()).arg(&self.datadir);
        let what = format!("{} {}", self.kind.start_script, self.port);
        output_with_timeout(&mut cmd, None, Duration::from_secs(120)).result(&what)
    }

    fn stop_script(&self, flags: &[&str]) -> TimedOutput {
        let mut cmd = Command::new(dev_script(self.kind.stop_script));
        cmd.args(flags).arg(&self.datadir);
        output_with_timeout(&mut cmd, None, Duration::from_secs(60))
    }

    /// SIGKILLs the daemon (its data stays; [`TestDaemon::restart`] brings it back).
    pub fn kill(&self) {
        let out = self.stop_script(&["--kill"]);
        assert!(
            out.success(),
            "{}: {}",
            self.kind.stop_script,
            out.stderr_text()
        );
    }

    /// Stops the daemon cleanly (SIGTERM; its data stays).
    pub fn stop(&self) {
        let out = self.stop_script(&[]);
        assert!(
            out.success(),
            "{}: {}",
            self.kind.stop_script,
            out.stderr_text()
        );
    }

    /// Starts the daemon again on the same port and data.
    pub fn restart(&self) {
        self.start_script().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Freezes (`true`: SIGSTOP) or thaws (`false`: SIGCONT) the daemon process: an
    /// unresponsive server that keeps its (possibly in-memory) data.
    pub fn freeze(&self, frozen: bool) {
        let pid: i32 = std::fs::read_to_string(self.datadir.join(self.kind.pid_file))
            .unwrap_or_else(|e| panic!("{}: {e}", self.kind.pid_file))
            .trim()
            .parse()
            .expect("pid");
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        assert_eq!(
            unsafe { libc::kill(pid, sig) },
            0,
            "signal {} {pid}",
            self.kind.name
        );
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let (keep, flags) = drop_flags();
        let out = self.stop_script(flags);
        if !out.success() {
            eprintln!(
                "warning: cleaning up {} :{} failed: {}",
                self.kind.name,
                self.port,
                out.stderr_text()
            );
        }
        if keep && self.datadir.exists() {
            eprintln!(
                "kept {} data of :{} for inspection (log: {})",
                self.kind.name,
                self.port,
                self.datadir.join(self.kind.log_file).display()
            );
        }
        release_port(self.port);
    }
}

/// A named [`TestDaemon`] of one kind: `start()` and `Deref` to the daemon.
macro_rules! daemon_type {
    ($(#[$doc:meta])* $name:ident = $kind:ident) => {
        $(#[$doc])*
        pub struct $name(TestDaemon);

        impl $name {
            #[doc = concat!("[`TestDaemon::start`] of [`", stringify!($kind), "`].")]
            pub fn start() -> Option<$name> {
                TestDaemon::start(&$kind).map($name)
            }
        }

        impl Deref for $name {
            type Target = TestDaemon;
            fn deref(&self) -> &TestDaemon {
                &self.0
            }
        }
    };
}

daemon_type!(
    /// A throwaway Kafka-protocol broker (noida-db).
    TestKafka = KAFKA
);

daemon_type!(
    /// A throwaway server speaking the Elasticsearch / OpenSearch REST API (osmem-server,
    /// in memory only: freeze it rather than restart it).
    TestSearch = OSMEM
);

impl TestKafka {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl TestSearch {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A server of `flavor` with `schema` run on it, and a daemon from `start_daemon` (e.g.
/// [`TestKafka::start`]); None when either is skipped (see their `start`).
pub fn server_with<D>(
    flavor: super::Flavor,
    schema: &str,
    start_daemon: fn() -> Option<D>,
) -> Option<(super::TestServer, D)> {
    let server = super::TestServer::start(flavor, &[])?;
    let daemon = start_daemon()?;
    server.exec(schema);
    Some((server, daemon))
}
