//! Throwaway MySQL / MariaDB target servers for this crate's tests, started
//! and stopped only through `deploy/dev/start-{mariadb,mysql}.sh` and
//! `deploy/dev/stop.sh` (the scripts developers use), plus small SQL helpers.
//!
//! Invariants kept: a test never passes silently without its server: when
//! the server binary is missing, [`Target::start`] prints `SKIP: <reason>`
//! and returns `None`, or panics when `ROWSTREAM_TEST_REQUIRE_SERVERS` is
//! set; a server that exists but does not start is a panic. Dropping a
//! target kills it and deletes its datadir (kept when the test panics).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mysql_async::prelude::Queryable;

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

/// A running target server on 127.0.0.1:port, root/root.
pub struct Target {
    pub flavor: Flavor,
    pub port: u16,
    pub datadir: PathBuf,
    pub url: String,
}

fn dev(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/dev")
        .join(name)
}

fn require_servers() -> bool {
    std::env::var("ROWSTREAM_TEST_REQUIRE_SERVERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn skip(reason: &str) -> Option<Target> {
    assert!(
        !require_servers(),
        "{reason} and ROWSTREAM_TEST_REQUIRE_SERVERS is set"
    );
    eprintln!("SKIP: {reason}");
    None
}

impl Target {
    /// Starts a fresh server of `flavor` (see the module docs for `None`).
    pub fn start(flavor: Flavor) -> Option<Target> {
        match flavor {
            Flavor::MariaDb => {
                let found = Command::new("sh")
                    .args(["-c", "command -v mariadbd || test -x /usr/sbin/mariadbd"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !found {
                    return skip("mariadbd not found (run deploy/dev/install-test-deps.sh)");
                }
            }
            Flavor::MySql => {
                if std::env::var_os("ROWSTREAM_MYSQL_ROOT").is_none() {
                    return skip("ROWSTREAM_MYSQL_ROOT is not set (MySQL test server)");
                }
            }
        }
        let script = dev(match flavor {
            Flavor::MariaDb => "start-mariadb.sh",
            Flavor::MySql => "start-mysql.sh",
        });
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-servers");
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let datadir = base.join(format!(
                "mysql-sink-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let out = Command::new(&script)
                .arg(port.to_string())
                .arg(&datadir)
                .output()
                .expect("run the start script");
            if out.status.success() {
                return Some(Target {
                    flavor,
                    port,
                    datadir,
                    url: format!("mysql://root:root@127.0.0.1:{port}"),
                });
            }
            last = String::from_utf8_lossy(&out.stderr).to_string();
            if !last.contains("in use") {
                break;
            }
        }
        panic!("cannot start the {flavor:?} test server: {last}");
    }

    /// Starts the killed server again on its port with its data.
    pub fn restart(&self) {
        let script = dev(match self.flavor {
            Flavor::MariaDb => "start-mariadb.sh",
            Flavor::MySql => "start-mysql.sh",
        });
        let out = Command::new(&script)
            .arg(self.port.to_string())
            .arg(&self.datadir)
            .output()
            .expect("run the start script");
        assert!(
            out.status.success(),
            "restart: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the server (SIGKILL), keeping its data.
    pub fn kill(&self) {
        let _ = Command::new(dev("stop.sh"))
            .arg("--kill")
            .arg(&self.datadir)
            .output();
    }

    /// A connection as root (no session settings of the sink).
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(mysql_async::Opts::from_url(&self.url).unwrap())
            .await
            .expect("connect to the test server")
    }

    /// Runs statements separated by `;` (text protocol).
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        for s in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
            c.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let _ = c.disconnect().await;
    }

    /// Every row of the last statement of `sql` (statements separated by
    /// `;` and a newline) as the server prints it (text protocol; NULL =
    /// "NULL"), in a session with `time_zone = '+00:00'`.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let mut c = self.conn().await;
        c.query_drop("SET time_zone = '+00:00'").await.unwrap();
        let mut stmts: Vec<&str> = sql.split(";\n").collect();
        let last = stmts.pop().unwrap();
        for s in stmts {
            c.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let rows: Vec<mysql_async::Row> = c
            .query(last)
            .await
            .unwrap_or_else(|e| panic!("{last}: {e}"));
        let _ = c.disconnect().await;
        rows.into_iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match r.as_ref(i) {
                        Some(mysql_async::Value::Bytes(b)) => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        Some(mysql_async::Value::NULL) | None => "NULL".into(),
                        Some(v) => v.as_sql(true),
                    })
                    .collect()
            })
            .collect()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let mut cmd = Command::new(dev("stop.sh"));
        cmd.arg("--kill");
        if !std::thread::panicking() {
            cmd.arg("--purge");
        }
        let _ = cmd.arg(&self.datadir).output();
    }
}
