//! Integration-test harness: private throwaway MySQL / MariaDB servers, SQL over the
//! stock command-line clients, and the `rowstream` binary under a timeout.
//!
//! Every integration test file does `mod common;` and uses this module. [`TestKafka`] is a
//! throwaway Kafka-protocol broker (`deploy/dev/start-kafka.sh`, `stop-kafka.sh`) with the
//! same skip / fail rule and cleanup as [`TestServer`]; [`TestSearch`] is a throwaway
//! server speaking the Elasticsearch / OpenSearch REST API (osmem-server,
//! `deploy/dev/start-osmem.sh`, `stop-osmem.sh`), likewise.
//!
//! Invariants:
//! - Servers are started and stopped only through the scripts in `deploy/dev/`
//!   (`start-mariadb.sh`, `start-mysql.sh`, `stop.sh`), the same code a developer runs by
//!   hand. Each [`TestServer`] owns a fresh datadir under `target/test-servers/` and a free
//!   loopback port; dropping it kills the server and deletes the datadir (kept, with a
//!   message, when the test is panicking, so a failure can be inspected until the next run).
//! - A test never passes silently without a server: when the server binaries are missing
//!   [`TestServer::start`] prints `SKIP: <reason>` and returns `None`, or panics when
//!   `ROWSTREAM_TEST_REQUIRE_SERVERS` is set (as `deploy/test.sh` / CI do). A server whose
//!   binaries exist but which fails to start is always a panic.
//! - Servers left behind by a test process that died (SIGKILL, timeout) are killed and
//!   purged by the next test process that starts a server.
//! - Nothing here blocks forever: client calls and `rowstream` runs have timeouts.
//!
//! Environment: `ROWSTREAM_TEST_REQUIRE_SERVERS` (non-empty, not `0`: fail instead of
//! skip), `ROWSTREAM_MYSQL_ROOT` (extracted MySQL tree, default
//! `${ROWSTREAM_CACHE:-$HOME/.cache/rowstream}/mysql-sid/root`, made by
//! `deploy/dev/install-test-deps.sh`), `ROWSTREAM_TEST_KEEP_SERVERS` (non-empty: keep every
//! datadir).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set (non-empty, not `0`) to make a missing server binary a test failure instead of a skip.
pub const REQUIRE_SERVERS_ENV: &str = "ROWSTREAM_TEST_REQUIRE_SERVERS";
/// How long one `query` / `exec` call may take before it is killed and the test panics.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(600);
/// Default timeout of [`tail`].
pub const TAIL_TIMEOUT: Duration = Duration::from_secs(120);

/// Which server implementation a [`TestServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavor {
    /// The host's MariaDB (Debian 12: 10.11).
    MariaDb,
    /// Oracle MySQL 9.7 from Debian sid, extracted by `deploy/dev/setup-mysql.sh`.
    MySql,
}

impl Flavor {
    /// Both flavours, for tests that run against each.
    pub const ALL: [Flavor; 2] = [Flavor::MariaDb, Flavor::MySql];

    /// Lower-case name as the deploy scripts print it (`FLAVOR=`): `mariadb` / `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MariaDb => "mariadb",
            Flavor::MySql => "mysql",
        }
    }

    fn start_script(self) -> &'static str {
        match self {
            Flavor::MariaDb => "start-mariadb.sh",
            Flavor::MySql => "start-mysql.sh",
        }
    }
}

/// A private throwaway server on `127.0.0.1:port`: binlog on, ROW / FULL image / FULL row
/// metadata, GTIDs on, log_slave_updates, accounts `root`/`root` and `repl`/`repl` (see
/// `deploy/dev/start-*.sh`). Killed and purged on drop.
pub struct TestServer {
    pub flavor: Flavor,
    pub port: u16,
    pub datadir: PathBuf,
    /// The server's `server_id` (equal to the port).
    pub server_id: u32,
    /// Extra mysqld / mariadbd arguments it was started with (reused by [`TestServer::restart`]).
    pub extra_args: Vec<String>,
}

impl TestServer {
    /// Starts a private throwaway server on a free loopback port (fresh datadir under
    /// target/test-servers/<unique>), with extra mysqld args.
    /// Returns None (after printing "SKIP: <reason>" to stderr) when the server binaries
    /// are missing and ROWSTREAM_TEST_REQUIRE_SERVERS is unset; panics with the reason when
    /// it is set. Panics when the binaries exist but the server does not start.
    pub fn start(flavor: Flavor, extra_args: &[&str]) -> Option<TestServer> {
        if let Some(reason) = missing_binaries(flavor) {
            if require_servers() {
                panic!(
                    "{} server binaries missing and {REQUIRE_SERVERS_ENV} is set: {reason}",
                    flavor.name()
                );
            }
            eprintln!("SKIP: {reason}");
            return None;
        }
        sweep_stale_datadirs();
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = pick_port();
            let datadir = servers_dir().join(format!(
                "{}-{}-{}",
                flavor.name(),
                std::process::id(),
                NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
            ));
            let server = TestServer {
                flavor,
                port,
                datadir,
                server_id: port as u32,
                extra_args: extra.clone(),
            };
            match server.run_start_script() {
                Ok(()) => return Some(server),
                Err(e) => {
                    // Drop kills and purges what the failed attempt left behind.
                    let port_taken = e.contains("in use");
                    last_err = e;
                    drop(server);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        panic!("cannot start a {} test server: {last_err}", flavor.name());
    }

    /// `mysql://root:root@127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mysql://root:root@127.0.0.1:{}", self.port)
    }

    /// `mysql://repl:repl@127.0.0.1:PORT` (REPLICATION SLAVE / CLIENT, SELECT, RELOAD,
    /// SHOW DATABASES; on MariaDB also REPLICA MONITOR and REPLICATION MASTER ADMIN).
    pub fn repl_url(&self) -> String {
        format!("mysql://repl:repl@127.0.0.1:{}", self.port)
    }

    /// The command-line client of this server, connected as root over TCP
    /// (`--defaults-file` must stay its first argument; append yours).
    /// MySQL: `deploy/dev/mysql-tool.sh mysql ... --get-server-public-key --ssl-mode=DISABLED`;
    /// MariaDB: `mariadb`.
    pub fn client_command(&self) -> Command {
        let cnf = format!(
            "--defaults-file={}",
            self.datadir.join("client.cnf").display()
        );
        match self.flavor {
            Flavor::MariaDb => {
                let mut c = Command::new("mariadb");
                c.arg(cnf);
                c
            }
            Flavor::MySql => {
                let mut c = Command::new(dev_script("mysql-tool.sh"));
                // No TLS: 10 ms less per call; the RSA key exchange covers caching_sha2.
                c.arg("mysql")
                    .arg(cnf)
                    .args(["--get-server-public-key", "--ssl-mode=DISABLED"]);
                c
            }
        }
    }

    /// Runs one or more `;`-separated statements as root (blocking, through the CLI, SQL on
    /// stdin, so its size is not limited by the command line) and returns the rows of the
    /// last result set as text, `None` for SQL NULL (an empty Vec when no statement
    /// returned rows). Panics with the server's error on failure or after [`QUERY_TIMEOUT`].
    /// Not binary-safe: non-UTF-8 bytes are replaced.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        // --xml instead of --batch: it separates result sets, tells NULL from 'NULL' and
        // keeps values with tabs and newlines intact.
        let mut cmd = self.client_command();
        cmd.arg("--xml");
        let out = output_with_timeout(&mut cmd, Some(sql.as_bytes().to_vec()), QUERY_TIMEOUT);
        if !out.success() {
            panic!(
                "SQL failed on {} :{} ({}): {}\n--- SQL ---\n{}",
                self.flavor.name(),
                self.port,
                out.describe_status(),
                out.stderr_text().trim(),
                abbreviate(sql, 2000)
            );
        }
        parse_last_resultset(&String::from_utf8_lossy(&out.stdout))
    }

    /// Like [`TestServer::query`], ignoring any rows.
    pub fn exec(&self, sql: &str) {
        self.query(sql);
    }

    /// The first column of the first row of the last result set (`None` for NULL or when
    /// there are no rows).
    pub fn query_value(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .flatten()
    }

    /// The server's executed GTID set: MySQL `@@gtid_executed` (newlines removed),
    /// MariaDB `@@gtid_binlog_pos`. Empty on a fresh server.
    pub fn gtid_executed(&self) -> String {
        let sql = match self.flavor {
            Flavor::MySql => "SELECT REPLACE(@@GLOBAL.gtid_executed, '\\n', '')",
            Flavor::MariaDb => "SELECT @@GLOBAL.gtid_binlog_pos",
        };
        self.query_value(sql)
            .unwrap_or_default()
            .replace(['\n', '\r'], "")
    }

    /// The PID of the running server process, if it runs.
    pub fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.datadir.join("server.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Clean stop (SIGTERM, wait) + start on the same port and datadir with the same args.
    /// Also brings a killed server back (crash recovery).
    pub fn restart(&self) {
        self.stop_script(&[]).unwrap_or_else(|e| {
            panic!("stopping {} :{} failed: {e}", self.flavor.name(), self.port)
        });
        self.start_again();
    }

    /// Starts the (stopped) server on its port; waits up to 10 s for the port when the
    /// kernel has not released it yet.
    fn start_again(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.run_start_script() {
                Ok(()) => return,
                Err(e) if e.contains("already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "restarting {} :{} failed: {e}",
                    self.flavor.name(),
                    self.port
                ),
            }
        }
    }

    /// SIGKILL the server (crash simulation); returns once the process is gone.
    /// [`TestServer::restart`] starts it again.
    pub fn kill(&self) {
        self.stop_script(&["--kill"]).unwrap_or_else(|e| {
            panic!("killing {} :{} failed: {e}", self.flavor.name(), self.port)
        });
    }

    /// Makes this server a GTID-auto-positioned replica of `primary` (same flavour) as user
    /// repl, and waits until it has applied everything `primary` had (deploy/dev/make-replica.sh).
    /// Also demotes an ex-primary. Panics on failure.
    pub fn replicate_from(&self, primary: &TestServer) {
        assert_eq!(
            self.flavor, primary.flavor,
            "replication across flavours is not supported"
        );
        let mut cmd = Command::new(dev_script("make-replica.sh"));
        cmd.arg(&self.datadir).arg(primary.port.to_string());
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
        assert!(
            out.success(),
            "make-replica.sh :{} -> :{} failed ({}): {}",
            self.port,
            primary.port,
            out.describe_status(),
            out.stderr_text()
        );
    }

    /// Promotes this replica to a standalone writable primary after it applied all it
    /// received (deploy/dev/promote.sh); returns its GTID position afterwards (as
    /// [`TestServer::gtid_executed`]). Panics on failure.
    pub fn promote(&self) -> String {
        let mut cmd = Command::new(dev_script("promote.sh"));
        cmd.arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
        assert!(
            out.success(),
            "promote.sh :{} failed ({}): {}",
            self.port,
            out.describe_status(),
            out.stderr_text()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn run_start_script(&self) -> Result<(), String> {
        let mut cmd = Command::new(dev_script(self.flavor.start_script()));
        cmd.arg(self.port.to_string())
            .arg(&self.datadir)
            .arg(self.server_id.to_string())
            .arg("--")
            .args(&self.extra_args);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(300));
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {} ({}):\n{}{}",
                self.flavor.start_script(),
                self.port,
                out.describe_status(),
                out.stderr_text(),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    fn stop_script(&self, flags: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(dev_script("stop.sh"));
        cmd.args(flags).arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "stop.sh ({}): {}",
                out.describe_status(),
                out.stderr_text()
            ))
        }
    }
}

impl Drop for TestServer {
    /// Kills the server and deletes its datadir; when the test is panicking (or
    /// ROWSTREAM_TEST_KEEP_SERVERS is set) the datadir is kept and its path printed.
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var_os("ROWSTREAM_TEST_KEEP_SERVERS").is_some_and(|v| !v.is_empty());
        let flags: &[&str] = if keep {
            &["--kill"]
        } else {
            &["--kill", "--purge"]
        };
        if let Err(e) = self.stop_script(flags) {
            eprintln!(
                "warning: cleaning up {} :{} failed: {e}",
                self.flavor.name(),
                self.port
            );
        }
        if keep && self.datadir.exists() {
            eprintln!(
                "kept datadir of {} :{} for inspection (error log: {}); purged by the next test run",
                self.flavor.name(),
                self.port,
                self.datadir.join("error.log").display()
            );
        }
        USED_PORTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.port);
    }
}

/// A private throwaway Kafka-protocol broker (noida-db, see `deploy/dev/start-kafka.sh`)
/// on `127.0.0.1:port`, data under target/test-servers/kafka-<pid>-<n>. Killed and purged
/// on drop (kept when the test panics, like [`TestServer`]).
pub struct TestKafka {
    pub port: u16,
    pub datadir: PathBuf,
}

impl TestKafka {
    /// Starts a broker on a free port. The broker binary is downloaded into the cache on
    /// first use (`start-kafka.sh --fetch`, pip). Returns None after printing
    /// "SKIP: <reason>" when it cannot be obtained and ROWSTREAM_TEST_REQUIRE_SERVERS is
    /// unset; panics when it is set. Panics when the binary exists but does not start.
    pub fn start() -> Option<TestKafka> {
        let mut fetch = Command::new(dev_script("start-kafka.sh"));
        fetch.arg("--fetch");
        let out = output_with_timeout(&mut fetch, None, Duration::from_secs(300));
        if !out.success() {
            let reason = format!(
                "cannot obtain the noida-db Kafka broker ({}): {} (run deploy/dev/install-test-deps.sh)",
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
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = pick_port();
            let kafka = TestKafka {
                port,
                datadir: servers_dir().join(format!(
                    "kafka-{}-{}",
                    std::process::id(),
                    NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
                )),
            };
            let mut cmd = Command::new(dev_script("start-kafka.sh"));
            cmd.arg(port.to_string()).arg(&kafka.datadir);
            let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
            if out.success() {
                return Some(kafka);
            }
            last_err = format!(
                "start-kafka.sh {port} ({}): {}",
                out.describe_status(),
                out.stderr_text()
            );
            let port_taken = last_err.contains("in use");
            drop(kafka);
            if !port_taken {
                break;
            }
        }
        panic!("cannot start a kafka test broker: {last_err}");
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the broker (its data stays; [`TestKafka::restart`] brings it back).
    pub fn kill(&self) {
        let mut cmd = Command::new(dev_script("stop-kafka.sh"));
        cmd.arg("--kill").arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
        assert!(out.success(), "stop-kafka.sh: {}", out.stderr_text());
    }

    /// Stops the broker cleanly (SIGTERM; its data stays).
    pub fn stop(&self) {
        let mut cmd = Command::new(dev_script("stop-kafka.sh"));
        cmd.arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
        assert!(out.success(), "stop-kafka.sh: {}", out.stderr_text());
    }

    /// Freezes (`true`: SIGSTOP) or thaws (`false`: SIGCONT) the broker process: an
    /// unresponsive broker, without a restart.
    pub fn freeze(&self, frozen: bool) {
        let pid: i32 = std::fs::read_to_string(self.datadir.join("broker.pid"))
            .expect("broker.pid")
            .trim()
            .parse()
            .expect("pid");
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal broker {pid}");
    }

    /// Starts the broker again on the same port and data.
    pub fn restart(&self) {
        let mut cmd = Command::new(dev_script("start-kafka.sh"));
        cmd.arg(self.port.to_string()).arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
        assert!(out.success(), "start-kafka.sh: {}", out.stderr_text());
    }
}

/// A private throwaway server speaking the Elasticsearch / OpenSearch REST API
/// (osmem-server, see `deploy/dev/start-osmem.sh`) on `127.0.0.1:port`, pid file and log
/// under target/test-servers/osmem-<pid>-<n>. In memory only. Killed and purged on drop
/// (the log kept when the test panics, like [`TestServer`]).
pub struct TestSearch {
    pub port: u16,
    pub datadir: PathBuf,
}

impl TestSearch {
    /// Starts a server on a free port. The binary is downloaded into the cache on first
    /// use (`start-osmem.sh --fetch`, pip). Returns None after printing "SKIP: <reason>"
    /// when it cannot be obtained and ROWSTREAM_TEST_REQUIRE_SERVERS is unset; panics when
    /// it is set. Panics when the binary exists but does not start.
    pub fn start() -> Option<TestSearch> {
        let mut fetch = Command::new(dev_script("start-osmem.sh"));
        fetch.arg("--fetch");
        let out = output_with_timeout(&mut fetch, None, Duration::from_secs(300));
        if !out.success() {
            let reason = format!(
                "cannot obtain osmem-server ({}): {} (run deploy/dev/install-test-deps.sh)",
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
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = pick_port();
            let search = TestSearch {
                port,
                datadir: servers_dir().join(format!(
                    "osmem-{}-{}",
                    std::process::id(),
                    NEXT_SERVER.fetch_add(1, Ordering::Relaxed)
                )),
            };
            let mut cmd = Command::new(dev_script("start-osmem.sh"));
            cmd.arg(port.to_string()).arg(&search.datadir);
            let out = output_with_timeout(&mut cmd, None, Duration::from_secs(120));
            if out.success() {
                return Some(search);
            }
            last_err = format!(
                "start-osmem.sh {port} ({}): {}",
                out.describe_status(),
                out.stderr_text()
            );
            let port_taken = last_err.contains("in use");
            drop(search);
            if !port_taken {
                break;
            }
        }
        panic!("cannot start an osmem-server test server: {last_err}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Freezes (`true`: SIGSTOP) or thaws (`false`: SIGCONT) the server: an unresponsive
    /// node, without losing its (in-memory) data.
    pub fn freeze(&self, frozen: bool) {
        let pid: i32 = std::fs::read_to_string(self.datadir.join("osmem.pid"))
            .expect("osmem.pid")
            .trim()
            .parse()
            .expect("pid");
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "signal osmem {pid}");
    }
}

impl Drop for TestSearch {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var_os("ROWSTREAM_TEST_KEEP_SERVERS").is_some_and(|v| !v.is_empty());
        let mut cmd = Command::new(dev_script("stop-osmem.sh"));
        cmd.arg("--kill");
        if !keep {
            cmd.arg("--purge");
        }
        cmd.arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
        if !out.success() {
            eprintln!(
                "warning: cleaning up osmem :{} failed: {}",
                self.port,
                out.stderr_text()
            );
        }
        if keep && self.datadir.exists() {
            eprintln!(
                "kept osmem log of :{} (log: {})",
                self.port,
                self.datadir.join("osmem.log").display()
            );
        }
        USED_PORTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.port);
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        let keep = std::thread::panicking()
            || std::env::var_os("ROWSTREAM_TEST_KEEP_SERVERS").is_some_and(|v| !v.is_empty());
        let mut cmd = Command::new(dev_script("stop-kafka.sh"));
        cmd.arg("--kill");
        if !keep {
            cmd.arg("--purge");
        }
        cmd.arg(&self.datadir);
        let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
        if !out.success() {
            eprintln!(
                "warning: cleaning up kafka :{} failed: {}",
                self.port,
                out.stderr_text()
            );
        }
        if keep && self.datadir.exists() {
            eprintln!(
                "kept kafka data of :{} for inspection (log: {})",
                self.port,
                self.datadir.join("broker.log").display()
            );
        }
        USED_PORTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.port);
    }
}

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
    let server_id = next_replica_server_id();
    let mut cmd = rowstream();
    cmd.args([
        "tail",
        "--url",
        url,
        "--server-id",
        &server_id.to_string(),
        "--from",
        from,
    ])
    .args(["--max-events", &max_events.to_string()])
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

// ---------------------------------------------------------------------------------------

static NEXT_SERVER: AtomicU32 = AtomicU32::new(0);
static NEXT_REPLICA: AtomicU32 = AtomicU32::new(0);
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

fn require_servers() -> bool {
    std::env::var(REQUIRE_SERVERS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where the extracted MySQL tree is, as deploy/dev/lib.sh computes it.
fn mysql_root() -> PathBuf {
    if let Some(p) = std::env::var_os("ROWSTREAM_MYSQL_ROOT").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("ROWSTREAM_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rowstream")
        });
    cache.join("mysql-sid").join("root")
}

fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why servers of `flavor` cannot be started here, or None when the binaries are present.
fn missing_binaries(flavor: Flavor) -> Option<String> {
    const FIX: &str = "run deploy/dev/install-test-deps.sh (or deploy/test.sh)";
    match flavor {
        Flavor::MariaDb => {
            if find_program("mariadbd", &["/usr/sbin", "/usr/local/sbin"]).is_none() {
                return Some(format!("mariadbd not found: {FIX}"));
            }
            for tool in ["mariadb", "mariadb-install-db", "mariadb-admin"] {
                if find_program(tool, &[]).is_none() {
                    return Some(format!("{tool} not found in PATH: {FIX}"));
                }
            }
            None
        }
        Flavor::MySql => {
            let root = mysql_root();
            if root.join(".rowstream-ready").is_file() && root.join("usr/sbin/mysqld").is_file() {
                None
            } else {
                Some(format!(
                    "MySQL 9.7 tree not found at {}: {FIX}",
                    root.display()
                ))
            }
        }
    }
}

/// A port in 20000..32000 (below Linux's ephemeral range, so outgoing connections never
/// take it while a server restarts) that nothing listens on and no other server of this
/// process uses. A race with another process is caught by the start script ("already in
/// use") and retried with another port.
fn pick_port() -> u16 {
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
fn sweep_stale_datadirs() {
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
        let named = |p: &PathBuf, prefix: &str| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        };
        let (brokers, rest): (Vec<PathBuf>, Vec<PathBuf>) =
            stale.into_iter().partition(|p| named(p, "kafka-"));
        let (search, dbs): (Vec<PathBuf>, Vec<PathBuf>) =
            rest.into_iter().partition(|p| named(p, "osmem-"));
        for (script, dirs) in [
            ("stop.sh", dbs),
            ("stop-kafka.sh", brokers),
            ("stop-osmem.sh", search),
        ] {
            if dirs.is_empty() {
                continue;
            }
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

/// Rows of the last `<resultset>` in the `--xml` output of the mysql / mariadb CLI
/// (what [`TestServer::query`] returns). Public for the harness's own test.
pub fn parse_last_resultset(xml: &str) -> Vec<Vec<Option<String>>> {
    // '<' inside values and the statement attribute is escaped, so tags are unambiguous.
    let Some(start) = xml.rfind("<resultset") else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let mut rest = &xml[start..];
    while let Some(i) = rest.find("<row>") {
        rest = &rest[i + "<row>".len()..];
        let end = rest.find("</row>").unwrap_or(rest.len());
        let mut row_xml = &rest[..end];
        let mut row = Vec::new();
        while let Some(f) = row_xml.find("<field") {
            row_xml = &row_xml[f..];
            let tag_end = row_xml
                .find('>')
                .expect("unterminated <field> tag in client XML");
            let tag = &row_xml[..tag_end];
            if tag.ends_with('/') {
                // <field name="x" xsi:nil="true" />
                row.push(if tag.contains("xsi:nil=\"true\"") {
                    None
                } else {
                    Some(String::new())
                });
                row_xml = &row_xml[tag_end + 1..];
            } else {
                let body = &row_xml[tag_end + 1..];
                let close = body
                    .find("</field>")
                    .expect("unterminated <field> in client XML");
                row.push(Some(xml_unescape(&body[..close])));
                row_xml = &body[close + "</field>".len()..];
            }
        }
        rows.push(row);
        rest = &rest[end..];
    }
    rows
}

fn xml_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&j| j <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if entity.starts_with("#x") => u32::from_str_radix(&entity[2..], 16)
                .ok()
                .and_then(char::from_u32),
            _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn abbreviate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..cut], s.len())
}
