//! The integration-test harness every test file shares (`mod common;`): throwaway
//! servers ([`TestServer`]), external daemons a sink writes into ([`TestKafka`] (Apache Kafka),
//! [`TestSearch`], both a [`TestDaemon`]), the `rowstream` binary ([`rowstream`],
//! [`tail`], [`output_with_timeout`]), `rowstream run` as a service ([`Service`]), scratch
//! dirs ([`TmpDir`]), openssl-made test certificates ([`TestCerts`]), a TCP proxy that
//! breaks connections on command ([`FaultProxy`]), the random seed ([`seed`]), GTID sets
//! as sets ([`gtid_seqs`]), polling until a condition holds ([`wait_until`]) and a
//! random workload over a keyed and a composite-key table ([`Workload`]).
//!
//! A sink test reads like this (see `tests/kafka.rs`):
//!
//! ```ignore
//! let Some((server, kafka)) = server_with(flavor, SCHEMA, TestKafka::start) else {
//!     return; // skipped (printed), or a panic under ROWSTREAM_TEST_REQUIRE_SERVERS
//! };
//! let cfg = ServiceConfig::for_server(&server, Sink::kafka(&kafka, "", ""));
//! let mut svc = Service::new("label", cfg);
//! stream_workload(&mut svc, &server, &mut Workload::new(seed(), TABLES), "", timeout);
//! // ... compare what the sink holds with `server.query(...)`
//! ```
//!
//! Invariants:
//! - Servers and daemons are started and stopped only through the scripts in
//!   `deploy/dev/`, the same code a developer runs by hand. Each owns a fresh dir under
//!   `target/test-servers/` and a free loopback port; dropping it kills it and deletes the
//!   dir (kept, with a message, when the test is panicking, so a failure can be inspected
//!   until the next run).
//! - A test never passes silently without a server: when the binaries are missing,
//!   `start` prints `SKIP: <reason>` and returns `None`, or panics when
//!   `ROWSTREAM_TEST_REQUIRE_SERVERS` is set (as `deploy/test.sh` / CI do). One whose
//!   binaries exist but which fails to start is always a panic.
//! - What a test process that died (SIGKILL, timeout) left behind (servers, daemons,
//!   scratch dirs) is killed and purged by the next test process.
//! - Nothing here blocks forever: client calls, `rowstream` runs and waits have timeouts.
//!
//! Environment: `ROWSTREAM_TEST_REQUIRE_SERVERS` (non-empty, not `0`: fail instead of
//! skip), `ROWSTREAM_MYSQL_ROOT` (extracted MySQL tree, default
//! `${ROWSTREAM_CACHE:-$HOME/.cache/rowstream}/mysql-sid/root`, made by
//! `deploy/dev/install-test-deps.sh`), `ROWSTREAM_TEST_KEEP_SERVERS` (non-empty: keep every
//! datadir), `ROWSTREAM_TEST_SEED` (repeat a random run).
//!
//! Each test binary compiles this module on its own and uses a part of it, hence
//! `allow(dead_code)` (and `unused_imports` on the re-exports, `unused_macros`).
#![allow(dead_code, unused_macros)]

mod cli;
mod daemons;
mod gtid;
pub mod kafka;
mod proxy;
mod server;
mod service;
mod tls;
mod tmp;
mod workload;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[allow(unused_imports)]
pub use cli::{
    next_replica_server_id, output_with_timeout, rowstream, tail, tail_command, tail_with_timeout,
    TimedOutput,
};
#[allow(unused_imports)]
pub use daemons::{
    server_with, DaemonKind, TestDaemon, TestKafka, TestKafkaCluster, TestKafkaSasl, TestSearch,
    KAFKA, KAFKA3, KAFKA_SASL, OPENSEARCH, OPENSEARCH_SECURE, OSMEM,
};
#[allow(unused_imports)]
pub use gtid::{gtid_key, gtid_seqs};
#[allow(unused_imports)]
pub use proxy::{FaultProxy, ProxyCounts};
#[allow(unused_imports)]
pub use server::{parse_last_resultset, Flavor, TestServer};
#[allow(unused_imports)]
pub use service::{Service, ServiceConfig, Sink};
#[allow(unused_imports)]
pub use tls::TestCerts;
#[allow(unused_imports)]
pub use tmp::{seed, TmpDir};
#[allow(unused_imports)]
pub use workload::{
    differing_keys, int_or_null, key_json, kill_and_freeze, stream_workload, Chaos, Tables,
    Workload, MIXED, MIXED_SCHEMA,
};

/// Set (non-empty, not `0`) to make a missing server binary a test failure instead of a skip.
pub const REQUIRE_SERVERS_ENV: &str = "ROWSTREAM_TEST_REQUIRE_SERVERS";
/// How long one `query` / `exec` call may take before it is killed and the test panics.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(600);
/// Default timeout of [`tail`].
pub const TAIL_TIMEOUT: Duration = Duration::from_secs(120);

/// One `#[test]` per flavour, each calling `scenario(flavor, args...)`, under the names
/// given: `flavor_tests!(scenario: name_mariadb, name_mysql);` or
/// `flavor_tests!(scenario(arg, ...): name_mariadb, name_mysql);`.
macro_rules! flavor_tests {
    ($scenario:ident $(($($arg:expr),*))?: $mariadb:ident, $mysql:ident) => {
        #[test]
        fn $mariadb() {
            $scenario(common::Flavor::MariaDb $($(, $arg)*)?);
        }

        #[test]
        fn $mysql() {
            $scenario(common::Flavor::MySql $($(, $arg)*)?);
        }
    };
}

/// True when a missing server binary must fail the test (`ROWSTREAM_TEST_REQUIRE_SERVERS`).
pub fn require_servers() -> bool {
    std::env::var(REQUIRE_SERVERS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Polls `done` every 100 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sets the flag when dropped (also while unwinding), so a scoped writer thread stops.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A JSON column value as the server's client prints it (`None` for NULL).
pub fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Applies one row change event (`op` c, r, u or d) to a model of its table keyed by
/// primary key: `image` turns a before / after image into (key, row). An update removes
/// the row under its old key first (key changes move the row).
pub fn apply_change<R>(
    table: &mut std::collections::BTreeMap<i64, R>,
    event: &serde_json::Value,
    image: impl Fn(&serde_json::Value) -> (i64, R),
) {
    match event["op"].as_str().unwrap() {
        "c" | "r" => {}
        "u" | "d" => {
            table.remove(&image(&event["before"]).0);
        }
        op => panic!("unknown op {op}: {event}"),
    }
    if event["op"] != "d" {
        let (id, row) = image(&event["after"]);
        table.insert(id, row);
    }
}

// ---------------------------------------------------------------------------------------

static NEXT_SERVER: AtomicU32 = AtomicU32::new(0);
static USED_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dev_script(name: &str) -> PathBuf {
    repo_root().join("deploy").join("dev").join(name)
}

fn servers_dir() -> PathBuf {
    repo_root().join("target").join("test-servers")
}

/// How a dropped server or daemon is stopped: whether its dir is kept (the test is
/// panicking or `ROWSTREAM_TEST_KEEP_SERVERS` is set) and the stop script's flags
/// (`--kill`, plus `--purge` unless kept).
fn drop_flags() -> (bool, &'static [&'static str]) {
    let keep = std::thread::panicking()
        || std::env::var_os("ROWSTREAM_TEST_KEEP_SERVERS").is_some_and(|v| !v.is_empty());
    (
        keep,
        if keep {
            &["--kill"]
        } else {
            &["--kill", "--purge"]
        },
    )
}

/// A fresh dir for a server or daemon: `target/test-servers/<name>-<pid>-<n>` (the
/// pid lets [`sweep_stale_datadirs`] find those of dead test processes).
fn fresh_server_dir(name: &str) -> PathBuf {
    servers_dir().join(format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Up to five tries of `start` on a free port; another try only when the port was taken
/// meanwhile (an error mentioning "in use"). What a failed try returns in `Err` has been
/// dropped, i.e. killed and purged. Panics with the last error.
fn start_on_a_free_port<T>(what: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut last_err = String::new();
    for _attempt in 0..5 {
        match start(pick_port()) {
            Ok(t) => return t,
            Err(e) => {
                let port_taken = e.contains("in use");
                last_err = e;
                if !port_taken {
                    break;
                }
            }
        }
    }
    panic!("cannot start {what}: {last_err}");
}

/// Gives a port taken by [`pick_port`] back.
fn release_port(port: u16) {
    USED_PORTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|&p| p != port);
}

/// A port in 20000..32000 (below Linux's ephemeral range, so outgoing connections never
/// take it while a server restarts) that nothing listens on and no other server of this
/// process uses. A race with another process is caught by the start script ("already in
/// use") and retried with another port.
pub(crate) fn pick_port() -> u16 {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = (u64::from(std::process::id()) << 32) ^ u64::from(nanos) ^ 0x9E37_79B9_7F4A_7C15;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12000) as u16;
        if used.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.push(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// Once per process: kill and purge servers whose test process is gone
/// (datadir names are `<flavor>-<pid>-<n>`).
pub(crate) fn sweep_stale_datadirs() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        let Ok(entries) = std::fs::read_dir(servers_dir()) else {
            return;
        };
        let stale: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let owner = name.split('-').nth(1).and_then(|s| s.parse::<u32>().ok());
                owner.is_some_and(|pid| {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                })
            })
            .collect();
        // Each kind of server has its own stop script; its dirs are named after it.
        let mut by_script: Vec<(&str, Vec<PathBuf>)> = Vec::new();
        for dir in stale {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let script = daemons::KINDS
                .iter()
                .find(|k| name.starts_with(&format!("{}-", k.name)))
                .map_or("stop.sh", |k| k.stop_script);
            match by_script.iter_mut().find(|(s, _)| *s == script) {
                Some((_, dirs)) => dirs.push(dir),
                None => by_script.push((script, vec![dir])),
            }
        }
        for (script, dirs) in by_script {
            let mut cmd = Command::new(dev_script(script));
            cmd.args(["--kill", "--purge"]).args(&dirs);
            let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
            if !out.success() {
                eprintln!(
                    "warning: purging stale test servers failed: {}",
                    out.stderr_text()
                );
            }
        }
    });
}
