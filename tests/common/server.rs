//! Throwaway MySQL / MariaDB servers for the integration tests: [`TestServer`] starts one
//! through `deploy/dev/start-*.sh` on a free loopback port with a fresh datadir, runs SQL
//! through the stock command-line client and kills and purges it on drop.
//!
//! Invariants: servers are started and stopped only through the scripts in `deploy/dev/`
//! (the code a developer runs by hand); a missing server binary is a printed `SKIP` or,
//! under `ROWSTREAM_TEST_REQUIRE_SERVERS`, a panic, never a silent pass; every client
//! call has a timeout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::cli::{abbreviate, output_with_timeout};
use super::{
    dev_script, drop_flags, fresh_server_dir, release_port, require_servers, start_on_a_free_port,
    sweep_stale_datadirs, QUERY_TIMEOUT, REQUIRE_SERVERS_ENV,
};

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
        let what = format!("a {} test server", flavor.name());
        Some(start_on_a_free_port(&what, |port| {
            let server = TestServer {
                flavor,
                port,
                datadir: fresh_server_dir(flavor.name()),
                server_id: port as u32,
                extra_args: extra.clone(),
            };
            server.run_start_script().map(|()| server)
        }))
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

    /// True when `SHOW REPLICAS` (MySQL) / `SHOW SLAVE HOSTS` (MariaDB) lists a replica
    /// registered with `server_id`.
    pub fn lists_replica(&self, server_id: u32) -> bool {
        let sql = match self.flavor {
            Flavor::MySql => "SHOW REPLICAS",
            Flavor::MariaDb => "SHOW SLAVE HOSTS",
        };
        self.query(sql)
            .iter()
            .any(|r| r.first().cloned().flatten() == Some(server_id.to_string()))
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
        let what = format!("{} {}", self.flavor.start_script(), self.port);
        output_with_timeout(&mut cmd, None, Duration::from_secs(300)).result(&what)
    }

    fn stop_script(&self, flags: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(dev_script("stop.sh"));
        cmd.args(flags).arg(&self.datadir);
        output_with_timeout(&mut cmd, None, Duration::from_secs(120)).result("stop.sh")
    }
}

impl Drop for TestServer {
    /// Kills the server and deletes its datadir; when the test is panicking (or
    /// ROWSTREAM_TEST_KEEP_SERVERS is set) the datadir is kept and its path printed.
    fn drop(&mut self) {
        let (keep, flags) = drop_flags();
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
        release_port(self.port);
    }
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
