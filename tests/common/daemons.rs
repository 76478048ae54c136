//! External daemons a sink test writes into, each run through its `deploy/dev` scripts:
//! one generic [`TestDaemon`] (start script, stop script, data dir, pid file, log, drop)
//! and wrappers for Apache Kafka ([`TestKafka`]: one broker, or a three-node cluster) and
//! OpenSearch ([`TestSearch`]), both real JVM servers fetched from Maven Central.
//!
//! A JVM server takes seconds and hundreds of MB to start, so ordinary tests share one per
//! test binary (`TestKafka::shared`, `TestSearch::shared`) and keep apart by names: each
//! handle has its own prefix for the topics / indices it writes (`topic`, `index`). Tests
//! that kill, freeze or restart the server start their own (`start`).
//!
//! Invariants: the same skip / fail rule as [`super::TestServer`] (a daemon that cannot
//! be obtained is a printed `SKIP`, or a panic under `ROWSTREAM_TEST_REQUIRE_SERVERS`; one
//! that is there but does not start is always a panic); dropping a daemon kills it and
//! purges its data dir (kept, with a message, when the test panics); a shared daemon lives
//! in a static, never dropped: the start scripts' watchdog (`ROWSTREAM_OWNER_PID`, this
//! process) kills it when the test process exits, however it exits; data dirs are named
//! `<name>-<pid>-<n>` so the next test process purges those of a dead one.

use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
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
    /// `start-*.sh [ARGS] PORT DIR` (and `--fetch` to download the binary).
    pub start_script: &'static str,
    /// The ARGS before PORT (e.g. `--nodes 3`).
    pub start_args: &'static [&'static str],
    /// `stop-*.sh [--kill] [--purge] DIR...`
    pub stop_script: &'static str,
    pub pid_file: &'static str,
    pub log_file: &'static str,
}

/// Apache Kafka 4.4, one KRaft broker (`deploy/dev/start-kafka.sh`).
pub const KAFKA: DaemonKind = DaemonKind {
    name: "kafka",
    what: "the Apache Kafka broker",
    start_script: "start-kafka.sh",
    start_args: &[],
    stop_script: "stop-kafka.sh",
    pid_file: "broker.pid",
    log_file: "broker.log",
};

/// Apache Kafka 4.4, three KRaft nodes on PORT..PORT+2 in `node-1`..`node-3` of the data
/// dir (replication factor 3, `min.insync.replicas=2`).
pub const KAFKA3: DaemonKind = DaemonKind {
    name: "kafka3",
    what: "the three-node Apache Kafka cluster",
    start_script: "start-kafka.sh",
    start_args: &["--nodes", "3"],
    stop_script: "stop-kafka.sh",
    pid_file: "node-1/broker.pid",
    log_file: "node-1/broker.log",
};

/// Apache Kafka 4.4, one KRaft broker with a SASL_SSL listener on PORT+1 beside the
/// PLAINTEXT one (`start-kafka.sh --sasl-ssl`): TLS with a CA made by the script with
/// openssl (`tls/ca.pem` in the data dir), SCRAM-SHA-256/512 and PLAIN for one user.
pub const KAFKA_SASL: DaemonKind = DaemonKind {
    name: "kafkasasl",
    what: "the Apache Kafka broker with a SASL_SSL listener",
    start_script: "start-kafka.sh",
    start_args: &["--sasl-ssl"],
    stop_script: "stop-kafka.sh",
    pid_file: "broker.pid",
    log_file: "broker.log",
};

/// OpenSearch 2.19, one node (`deploy/dev/start-opensearch.sh`).
pub const OPENSEARCH: DaemonKind = DaemonKind {
    name: "opensearch",
    what: "the OpenSearch node",
    start_script: "start-opensearch.sh",
    start_args: &[],
    stop_script: "stop-opensearch.sh",
    pid_file: "opensearch.pid",
    log_file: "opensearch.log",
};

/// OpenSearch 2.19, one node with HTTPS and basic authentication on its HTTP port
/// (`start-opensearch.sh --secure`: a CA made by the script with openssl, `tls/ca.pem` in
/// the data dir; user `rowstream` / `rowstream-secret`).
pub const OPENSEARCH_SECURE: DaemonKind = DaemonKind {
    name: "securesearch",
    what: "the OpenSearch node with TLS and basic auth",
    start_script: "start-opensearch.sh",
    start_args: &["--secure"],
    stop_script: "stop-opensearch.sh",
    pid_file: "opensearch.pid",
    log_file: "opensearch.log",
};

/// osmem-server, an in-memory Elasticsearch / OpenSearch REST API (`start-osmem.sh`).
pub const OSMEM: DaemonKind = DaemonKind {
    name: "osmem",
    what: "osmem-server",
    start_script: "start-osmem.sh",
    start_args: &[],
    stop_script: "stop-osmem.sh",
    pid_file: "osmem.pid",
    log_file: "osmem.log",
};

/// Every daemon kind, for the sweep of data dirs left by dead test processes (`kafka3`
/// before `kafka`: the sweep takes the first kind whose name prefixes the dir's).
pub(super) const KINDS: [&DaemonKind; 6] = [
    &KAFKA3,
    &KAFKA_SASL,
    &KAFKA,
    &OPENSEARCH_SECURE,
    &OPENSEARCH,
    &OSMEM,
];

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
        cmd.args(self.kind.start_args)
            .arg(self.port.to_string())
            .arg(&self.datadir)
            .env("ROWSTREAM_OWNER_PID", std::process::id().to_string());
        let what = format!("{} {}", self.kind.start_script, self.port);
        output_with_timeout(&mut cmd, None, Duration::from_secs(180)).result(&what)
    }

    /// The pid in the daemon's pid file (node 1's for a cluster).
    pub fn pid(&self) -> i32 {
        std::fs::read_to_string(self.datadir.join(self.kind.pid_file))
            .unwrap_or_else(|e| panic!("{}: {e}", self.kind.pid_file))
            .trim()
            .parse()
            .expect("pid")
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
        let pid = self.pid();
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

/// A daemon of its own (killed on drop) or the test binary's shared one.
enum Handle {
    Own(TestDaemon),
    Shared(&'static TestDaemon),
}

/// Names of the shared daemons' per-handle prefixes: `t<n>-`.
static NEXT_PREFIX: AtomicU32 = AtomicU32::new(0);

impl Handle {
    /// The shared daemon of `kind` in `cell`, started on first use; None (skip) when it
    /// cannot be obtained (see [`TestDaemon::start`]), asked again by the next test.
    fn shared(
        cell: &'static OnceLock<TestDaemon>,
        kind: &'static DaemonKind,
    ) -> Option<(Handle, String)> {
        let daemon = match cell.get() {
            Some(d) => d,
            None => {
                let d = TestDaemon::start(kind)?;
                // A concurrent first use may have won: its daemon is kept, ours dropped.
                let _ = cell.set(d);
                cell.get().expect("set above")
            }
        };
        let n = NEXT_PREFIX.fetch_add(1, Ordering::Relaxed);
        Some((Handle::Shared(daemon), format!("t{n}-")))
    }
}

impl Deref for Handle {
    type Target = TestDaemon;
    fn deref(&self) -> &TestDaemon {
        match self {
            Handle::Own(d) => d,
            Handle::Shared(d) => d,
        }
    }
}

/// A named handle on a daemon of one kind: `start()` (its own), `shared()` (the test
/// binary's, with a name prefix of its own), `Deref` to the daemon.
macro_rules! daemon_type {
    ($(#[$doc:meta])* $name:ident = $kind:ident) => {
        $(#[$doc])*
        pub struct $name {
            daemon: Handle,
            prefix: String,
        }

        impl $name {
            #[doc = concat!("[`TestDaemon::start`] of [`", stringify!($kind), "`]: a daemon of this test's own, which it may kill, freeze or restart; no name prefix.")]
            pub fn start() -> Option<$name> {
                TestDaemon::start(&$kind).map(|d| $name { daemon: Handle::Own(d), prefix: String::new() })
            }

            /// The test binary's shared daemon of this kind, started on first use and
            /// killed when the process exits; never stop, kill or freeze it. Names this
            /// test writes must carry [`Self::prefix`].
            pub fn shared() -> Option<$name> {
                static SHARED: OnceLock<TestDaemon> = OnceLock::new();
                Handle::shared(&SHARED, &$kind).map(|(daemon, prefix)| $name { daemon, prefix })
            }

            /// This handle's name prefix (`t<n>-` on a shared daemon, empty on its own).
            pub fn prefix(&self) -> &str {
                &self.prefix
            }
        }

        impl Deref for $name {
            type Target = TestDaemon;
            fn deref(&self) -> &TestDaemon {
                &self.daemon
            }
        }
    };
}

daemon_type!(
    /// An Apache Kafka broker.
    TestKafka = KAFKA
);

daemon_type!(
    /// A three-node Apache Kafka cluster (node `i` on `port + i - 1`).
    TestKafkaCluster = KAFKA3
);

daemon_type!(
    /// An Apache Kafka broker with a SASL_SSL listener (see [`KAFKA_SASL`]).
    TestKafkaSasl = KAFKA_SASL
);

daemon_type!(
    /// An OpenSearch node (its data survives a SIGKILL and restart).
    TestSearch = OPENSEARCH
);

impl TestKafka {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The topic `name` of this handle: [`Self::prefix`] + `name`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The sink's `topic` template for this handle (Debezium's default behind the prefix).
    pub fn topic_template(&self) -> String {
        format!("topic = \"{}{{name}}.{{db}}.{{table}}\"", self.prefix)
    }
}

impl TestKafkaSasl {
    /// The SASL user (SCRAM credentials and PLAIN).
    pub const USER: &'static str = "rowstream";
    /// The SASL user's password.
    pub const PASSWORD: &'static str = "rowstream-secret";

    /// The PLAINTEXT listener, for the test's own consumers.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The SASL_SSL listener.
    pub fn secure_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port + 1)
    }

    /// The CA certificate that signed the broker's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.datadir.join("tls/ca.pem")
    }
}

impl TestKafkaCluster {
    /// Every node's `127.0.0.1:PORT`, comma-separated.
    pub fn bootstrap(&self) -> String {
        (0..3)
            .map(|i| format!("127.0.0.1:{}", self.port + i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The data dir of node `id` (1..=3), for `stop-kafka.sh` / `start-kafka.sh` of it.
    pub fn node_dir(&self, id: u16) -> PathBuf {
        self.datadir.join(format!("node-{id}"))
    }

    /// SIGKILLs node `id` (1..=3); its data stays.
    pub fn kill_node(&self, id: u16) {
        let mut cmd = Command::new(dev_script("stop-kafka.sh"));
        cmd.arg("--kill").arg(self.node_dir(id));
        output_with_timeout(&mut cmd, None, Duration::from_secs(60))
            .result("stop-kafka.sh --kill")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts node `id` (1..=3) again on its port and data.
    pub fn restart_node(&self, id: u16) {
        let mut cmd = Command::new(dev_script("start-kafka.sh"));
        cmd.arg((self.port + id - 1).to_string())
            .arg(self.node_dir(id))
            .env("ROWSTREAM_OWNER_PID", std::process::id().to_string());
        output_with_timeout(&mut cmd, None, Duration::from_secs(180))
            .result("start-kafka.sh (one node)")
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl TestSearch {
    /// The basic-auth user of a node from [`TestSearch::start_secure`].
    pub const USER: &'static str = "rowstream";
    /// Its password.
    pub const PASSWORD: &'static str = "rowstream-secret";

    /// A node of this test's own with HTTPS and basic auth ([`OPENSEARCH_SECURE`]).
    pub fn start_secure() -> Option<TestSearch> {
        TestDaemon::start(&OPENSEARCH_SECURE).map(|d| TestSearch {
            daemon: Handle::Own(d),
            prefix: String::new(),
        })
    }

    /// True for a node from [`TestSearch::start_secure`].
    pub fn secure(&self) -> bool {
        std::ptr::eq(self.kind, &OPENSEARCH_SECURE)
    }

    /// `http://127.0.0.1:PORT` (`https://` when [`Self::secure`]).
    pub fn url(&self) -> String {
        let scheme = if self.secure() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate that signed a secure node's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.datadir.join("tls/ca.pem")
    }

    /// The curl arguments that reach this node (CA and credentials when secure).
    pub fn curl_args(&self) -> Vec<String> {
        if !self.secure() {
            return Vec::new();
        }
        vec![
            "--cacert".into(),
            self.ca_file().display().to_string(),
            "-u".into(),
            format!("{}:{}", Self::USER, Self::PASSWORD),
        ]
    }

    /// The index `name` of this handle: [`Self::prefix`] + `name`.
    pub fn index(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The sink's `index` template for this handle (the default behind the prefix).
    pub fn index_template(&self) -> String {
        format!("index = \"{}{{db}}.{{table}}\"", self.prefix)
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
