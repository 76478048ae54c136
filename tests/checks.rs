//! `rowstream check` and `rowstream tail` against real misconfigured servers: every
//! misconfiguration makes both commands exit 2 without streaming, with one stderr line per
//! failed check that names the setting, the required value, the actual value and a fix
//! (`setting: must be X, is Y. Fix: ...`). A well configured server passes (exit 0, "ok"),
//! also over TLS (MySQL's self-signed default certificate) and for a fresh
//! caching_sha2_password account over plain TCP (full authentication with the RSA key).
//!
//! Servers are shared between cases where a setting can be changed at runtime
//! (`SET GLOBAL`, then restored); settings that need a restart get their own server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Flavor, TestServer, TimedOutput};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One check failure the commands must report.
struct Want<'a> {
    /// `setting` as printed before `: must be`.
    setting: &'a str,
    /// Substring of the required value (after `must be `).
    expected: &'a str,
    /// Substring of the actual value (after `, is `).
    actual: &'a str,
}

fn want<'a>(setting: &'a str, expected: &'a str, actual: &'a str) -> Want<'a> {
    Want {
        setting,
        expected,
        actual,
    }
}

fn run_check(url: &str, server_id: Option<u32>, from: &str) -> TimedOutput {
    let mut cmd = common::rowstream();
    cmd.args(["check", "--url", url, "--from", from]);
    if let Some(id) = server_id {
        cmd.args(["--server-id", &id.to_string()]);
    }
    common::output_with_timeout(&mut cmd, None, RUN_TIMEOUT)
}

fn run_tail(url: &str, server_id: u32, from: &str, max_events: usize) -> TimedOutput {
    let mut cmd = common::tail_command(url, server_id, from);
    cmd.args(["--max-events", &max_events.to_string()])
        .args(["--heartbeat-secs", "1"]);
    common::output_with_timeout(&mut cmd, None, RUN_TIMEOUT)
}

fn describe(what: &str, out: &TimedOutput) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.describe_status(),
        String::from_utf8_lossy(&out.stdout),
        out.stderr_text()
    )
}

/// Asserts `out` is a refusal: exit code 2, nothing on stdout, and for every `want` a
/// stderr line `<setting>: must be <..expected..>, is <..actual..>. Fix: <something>`.
fn assert_refused(what: &str, out: &TimedOutput, wants: &[Want]) {
    let ctx = describe(what, out);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(2),
        "exit code must be 2 (failed checks); {ctx}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "a refused server must not produce output on stdout; {ctx}"
    );
    let stderr = out.stderr_text();
    for w in wants {
        let head = format!("{}: must be ", w.setting);
        let ok = stderr.lines().any(|l| {
            let Some(i) = l.find(&head) else { return false };
            let rest = &l[i + head.len()..];
            let Some(is) = rest.find(", is ") else {
                return false;
            };
            let (expected, actual) = (&rest[..is], &rest[is + ", is ".len()..]);
            let Some(fix) = actual.find(". Fix: ") else {
                return false;
            };
            expected.contains(w.expected)
                && actual[..fix].contains(w.actual)
                && actual[fix + ". Fix: ".len()..].trim().len() > 5
        });
        assert!(
            ok,
            "expected a line `{}: must be ..{}.., is ..{}... Fix: ...`; {ctx}",
            w.setting, w.expected, w.actual
        );
    }
}

/// Runs `check` and `tail` with the same arguments; both must refuse with `wants`.
fn expect_refused(url: &str, server_id: u32, from: &str, wants: &[Want]) {
    let out = run_check(url, Some(server_id), from);
    assert_refused(
        &format!("rowstream check --url {url} --server-id {server_id} --from {from}"),
        &out,
        wants,
    );
    let out = run_tail(url, server_id, from, 1);
    assert_refused(
        &format!("rowstream tail --url {url} --server-id {server_id} --from {from}"),
        &out,
        wants,
    );
}

/// `check` passes (exit 0, "ok") and `tail` streams the row `(id)` of `db.t` inserted now.
fn expect_good(server: &TestServer, url: &str, db: &str, id: u32) {
    let out = run_check(url, Some(common::next_replica_server_id()), "latest");
    let ctx = describe("rowstream check on a good server", &out);
    assert!(out.success(), "{ctx}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"), "{ctx}");
    assert!(!out.stderr_text().contains("must be"), "{ctx}");

    let from = server.gtid_executed();
    server.exec(&format!(
        "CREATE DATABASE IF NOT EXISTS {db}; CREATE TABLE IF NOT EXISTS {db}.t (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO {db}.t VALUES ({id}, 'good-{id}');"
    ));
    let events = common::tail(url, &from, 1, &["--heartbeat-secs", "1"]);
    let rows: Vec<_> = events.iter().filter(|e| e.get("op").is_some()).collect();
    assert_eq!(rows.len(), 1, "{events:#?}");
    assert_eq!(rows[0]["op"], "c");
    assert_eq!(rows[0]["source"]["table"], "t");
    assert_eq!(rows[0]["after"]["id"], id);
    assert_eq!(rows[0]["after"]["v"], format!("good-{id}"));
}

/// Starts `rowstream tail` with `server_id` in the background (no --max-events) and waits
/// until the server lists it as a registered replica.
fn background_replica(server: &TestServer, server_id: u32) -> Child {
    let mut child = common::tail_command(&server.url(), server_id, "latest")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rowstream tail");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server.lists_replica(server_id) {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("background rowstream tail exited ({status}) before registering: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "rowstream tail --server-id {server_id} never showed in the server's replica list"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Creates `user`/`pw` with only SELECT.
fn select_only_user(server: &TestServer, user: &str) -> String {
    server.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO '{user}'@'%';"
    ));
    format!("mysql://{user}:pw@127.0.0.1:{}", server.port)
}

/// Writes a few transactions, rotates and purges the old binlogs; returns the GTID set
/// of the first transaction (now purged).
fn purge_old_binlogs(server: &TestServer) -> String {
    server.exec(
        "CREATE DATABASE IF NOT EXISTS purge_db; CREATE TABLE purge_db.t (id INT PRIMARY KEY)",
    );
    let first = server.gtid_executed();
    server.exec("INSERT INTO purge_db.t VALUES (1); INSERT INTO purge_db.t VALUES (2);");
    server.exec("FLUSH BINARY LOGS");
    // MariaDB keeps a binlog until InnoDB has checkpointed its transactions: retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = server.query("SHOW BINARY LOGS");
        let last = logs
            .last()
            .and_then(|r| r[0].clone())
            .expect("SHOW BINARY LOGS");
        if logs.len() == 1 {
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "the old binlogs could not be purged: {logs:?}"
        );
        server.exec(&format!("PURGE BINARY LOGS TO '{last}'"));
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------

#[test]
fn mariadb_runtime_misconfigurations() {
    let Some(s) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let url = s.url();
    let id = common::next_replica_server_id();
    expect_good(&s, &url, "good", 1);
    expect_good(&s, &s.repl_url(), "good", 2);

    s.exec("SET GLOBAL binlog_format=STATEMENT");
    expect_refused(
        &url,
        id,
        "latest",
        &[want("binlog_format", "ROW", "STATEMENT")],
    );
    s.exec("SET GLOBAL binlog_format=ROW");

    s.exec("SET GLOBAL binlog_row_image=MINIMAL");
    expect_refused(
        &url,
        id,
        "latest",
        &[want("binlog_row_image", "FULL", "MINIMAL")],
    );
    s.exec("SET GLOBAL binlog_row_image=FULL");

    s.exec("SET GLOBAL binlog_row_metadata=NO_LOG");
    expect_refused(
        &url,
        id,
        "latest",
        &[want("binlog_row_metadata", "FULL", "NO_LOG")],
    );
    s.exec("SET GLOBAL binlog_row_metadata=FULL");

    s.exec("SET GLOBAL log_bin_compress=ON");
    expect_refused(&url, id, "latest", &[want("log_bin_compress", "OFF", "ON")]);
    s.exec("SET GLOBAL log_bin_compress=OFF");

    // All at once: one line each.
    s.exec("SET GLOBAL binlog_format=MIXED; SET GLOBAL binlog_row_image=NOBLOB; SET GLOBAL binlog_row_metadata=MINIMAL");
    expect_refused(
        &url,
        id,
        "latest",
        &[
            want("binlog_format", "ROW", "MIXED"),
            want("binlog_row_image", "FULL", "NOBLOB"),
            want("binlog_row_metadata", "FULL", "MINIMAL"),
        ],
    );
    s.exec("SET GLOBAL binlog_format=ROW; SET GLOBAL binlog_row_image=FULL; SET GLOBAL binlog_row_metadata=FULL");

    // server_id: the source's own, and zero.
    expect_refused(
        &url,
        s.server_id,
        "latest",
        &[want(
            "server_id (rowstream)",
            "different from the source",
            &s.server_id.to_string(),
        )],
    );
    expect_refused(
        &url,
        0,
        "latest",
        &[want("server_id (rowstream)", "non-zero", "0")],
    );

    expect_good(&s, &url, "good", 3);
}

#[test]
fn mariadb_missing_privileges() {
    let Some(s) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let url = select_only_user(&s, "onlyselect");
    let id = common::next_replica_server_id();
    expect_refused(
        &url,
        id,
        "latest",
        &[
            want(
                "privilege REPLICATION SLAVE",
                "granted ON *.*",
                "not granted to 'onlyselect'@'%'",
            ),
            want(
                "privilege BINLOG MONITOR",
                "granted ON *.*",
                "not granted to 'onlyselect'@'%'",
            ),
        ],
    );
    // No SELECT at all either.
    s.exec("CREATE USER 'nothing'@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE ON *.* TO 'nothing'@'%'");
    let url = format!("mysql://nothing:pw@127.0.0.1:{}", s.port);
    expect_refused(
        &url,
        id,
        "latest",
        &[
            want(
                "privilege SELECT",
                "granted on the captured tables",
                "not granted to 'nothing'@'%'",
            ),
            want(
                "privilege BINLOG MONITOR",
                "granted ON *.*",
                "not granted to 'nothing'@'%'",
            ),
        ],
    );
}

/// `--from earliest` needs SHOW BINARY LOGS; an account without BINLOG MONITOR must still
/// get the privilege check lines (exit 2), not a bare server error.
#[test]
fn mariadb_missing_privileges_from_earliest() {
    let Some(s) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let url = select_only_user(&s, "onlyselect");
    expect_refused(
        &url,
        common::next_replica_server_id(),
        "earliest",
        &[want(
            "privilege BINLOG MONITOR",
            "granted ON *.*",
            "not granted to 'onlyselect'@'%'",
        )],
    );
}

/// A second replica with the server id of a running `rowstream tail` is refused.
fn duplicate_server_id(flavor: Flavor) {
    let Some(s) = TestServer::start(flavor, &[]) else {
        return;
    };
    let id = common::next_replica_server_id();
    let child = background_replica(&s, id);
    let url = s.url();
    let actual = format!("{id}, also used by");
    let wants = [want(
        "server_id (rowstream)",
        "unique among the replicas",
        &actual,
    )];
    let out = run_check(&url, Some(id), "latest");
    let out_tail = run_tail(&url, id, "latest", 1);
    stop_child(child);
    assert_refused(
        "rowstream check with the server id of a running tail",
        &out,
        &wants,
    );
    assert_refused(
        "rowstream tail with the server id of a running tail",
        &out_tail,
        &wants,
    );
}

flavor_tests!(duplicate_server_id: mariadb_duplicate_server_id, mysql_duplicate_server_id);

#[test]
fn mariadb_purged_start_position() {
    let Some(s) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let old = purge_old_binlogs(&s);
    assert!(!old.is_empty());
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        &old,
        &[want("binlog (purged)", "still holding", "purged up to")],
    );
    // Ahead of the server: wrong server.
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        "0-1-999999",
        &[want("gtid_binlog_pos", "", "domain 0")],
    );
    // The current position is fine.
    let out = run_check(
        &s.url(),
        Some(common::next_replica_server_id()),
        &s.gtid_executed(),
    );
    assert!(out.success(), "{}", describe("check --from current", &out));
}

#[test]
fn mariadb_log_bin_off() {
    let Some(s) = TestServer::start(Flavor::MariaDb, &["--skip-log-bin"]) else {
        return;
    };
    assert_eq!(
        s.query_value("SELECT @@log_bin").as_deref(),
        Some("0"),
        "--skip-log-bin did not turn the binlog off"
    );
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        "latest",
        &[want("log_bin", "ON", "OFF")],
    );
}

#[test]
fn mariadb_log_bin_compress_at_startup() {
    let Some(s) = TestServer::start(Flavor::MariaDb, &["--log-bin-compress=ON"]) else {
        return;
    };
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        "latest",
        &[want("log_bin_compress", "OFF", "ON")],
    );
}

// ---------------------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------------------

#[test]
fn mysql_runtime_misconfigurations() {
    let Some(s) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    let url = s.url();
    let id = common::next_replica_server_id();
    expect_good(&s, &url, "good", 1);
    expect_good(&s, &s.repl_url(), "good", 2);

    s.exec("SET GLOBAL binlog_format=STATEMENT");
    expect_refused(
        &url,
        id,
        "latest",
        &[want("binlog_format", "ROW", "STATEMENT")],
    );
    s.exec("SET GLOBAL binlog_format=ROW");

    s.exec("SET GLOBAL binlog_row_image=MINIMAL");
    expect_refused(
        &url,
        id,
        "latest",
        &[want("binlog_row_image", "FULL", "MINIMAL")],
    );
    s.exec("SET GLOBAL binlog_row_image=FULL");

    s.exec("SET GLOBAL binlog_row_metadata=MINIMAL");
    expect_refused(
        &url,
        id,
        "latest",
        &[want("binlog_row_metadata", "FULL", "MINIMAL")],
    );
    s.exec("SET GLOBAL binlog_row_metadata=FULL");

    s.exec("SET GLOBAL binlog_format=MIXED; SET GLOBAL binlog_row_image=NOBLOB; SET GLOBAL binlog_row_metadata=MINIMAL");
    expect_refused(
        &url,
        id,
        "latest",
        &[
            want("binlog_format", "ROW", "MIXED"),
            want("binlog_row_image", "FULL", "NOBLOB"),
            want("binlog_row_metadata", "FULL", "MINIMAL"),
        ],
    );
    s.exec("SET GLOBAL binlog_format=ROW; SET GLOBAL binlog_row_image=FULL; SET GLOBAL binlog_row_metadata=FULL");

    expect_refused(
        &url,
        s.server_id,
        "latest",
        &[want(
            "server_id (rowstream)",
            "different from the source",
            &s.server_id.to_string(),
        )],
    );

    expect_good(&s, &url, "good", 3);
}

#[test]
fn mysql_missing_privileges() {
    let Some(s) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    let url = select_only_user(&s, "onlyselect");
    let id = common::next_replica_server_id();
    expect_refused(
        &url,
        id,
        "latest",
        &[
            want(
                "privilege REPLICATION SLAVE",
                "granted ON *.*",
                "not granted to 'onlyselect'@'%'",
            ),
            want(
                "privilege REPLICATION CLIENT",
                "granted ON *.*",
                "not granted to 'onlyselect'@'%'",
            ),
        ],
    );
    s.exec("CREATE USER 'nothing'@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'nothing'@'%'");
    let url = format!("mysql://nothing:pw@127.0.0.1:{}", s.port);
    expect_refused(
        &url,
        id,
        "latest",
        &[want(
            "privilege SELECT",
            "granted on the captured tables",
            "not granted to 'nothing'@'%'",
        )],
    );
}

/// A real MySQL replica registered with server_id N: rowstream with N is refused.
#[test]
fn mysql_server_id_of_a_real_replica() {
    let Some(primary) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    let Some(replica) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    replica.replicate_from(&primary);
    let id = replica.server_id;
    expect_refused(
        &primary.url(),
        id,
        "latest",
        &[want(
            "server_id (rowstream)",
            "unique among the replicas",
            &format!("{id}, also used by"),
        )],
    );
}

#[test]
fn mysql_purged_start_position() {
    let Some(s) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    let old = purge_old_binlogs(&s);
    assert!(!old.is_empty());
    let purged = s.query_value("SELECT @@gtid_purged").unwrap_or_default();
    assert!(
        !purged.is_empty(),
        "PURGE BINARY LOGS must have set gtid_purged"
    );
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        &old,
        &[want(
            "gtid_purged",
            "a subset of the start position",
            &purged.replace('\n', ""),
        )],
    );
    // Not of this server: wrong server.
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        &[want(
            "gtid_executed",
            "a superset of the start position",
            "lacks 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        )],
    );
    let out = run_check(
        &s.url(),
        Some(common::next_replica_server_id()),
        &s.gtid_executed(),
    );
    assert!(out.success(), "{}", describe("check --from current", &out));
}

#[test]
fn mysql_log_bin_off() {
    let Some(s) = TestServer::start(Flavor::MySql, &["--skip-log-bin"]) else {
        return;
    };
    assert_eq!(
        s.query_value("SELECT @@log_bin").as_deref(),
        Some("0"),
        "--skip-log-bin did not turn the binlog off"
    );
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        "latest",
        &[want("log_bin", "ON", "OFF")],
    );
}

#[test]
fn mysql_gtid_mode_off() {
    let Some(s) = TestServer::start(
        Flavor::MySql,
        &["--gtid-mode=OFF", "--enforce-gtid-consistency=OFF"],
    ) else {
        return;
    };
    assert_eq!(s.query_value("SELECT @@gtid_mode").as_deref(), Some("OFF"));
    expect_refused(
        &s.url(),
        common::next_replica_server_id(),
        "latest",
        &[
            want("gtid_mode", "ON", "OFF"),
            want("enforce_gtid_consistency", "ON", "OFF"),
        ],
    );
}

/// MySQL 9.7 has TLS on by default with a self-signed certificate: `?tls=required`
/// streams. And a fresh caching_sha2_password account whose cache was flushed
/// authenticates over plain TCP (full authentication with the server's RSA key) and streams.
#[test]
fn mysql_tls_and_caching_sha2_full_auth() {
    let Some(s) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    let tls_url = format!("{}?tls=required", s.url());
    let out = run_check(&tls_url, Some(common::next_replica_server_id()), "latest");
    assert!(out.success(), "{}", describe("check ?tls=required", &out));
    expect_good(&s, &tls_url, "tls", 1);

    s.exec(
        "CREATE USER 'fresh'@'%' IDENTIFIED WITH caching_sha2_password BY 'fresh-pw';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'fresh'@'%';
         FLUSH NO_WRITE_TO_BINLOG PRIVILEGES;",
    );
    let plain = format!("mysql://fresh:fresh-pw@127.0.0.1:{}?tls=disabled", s.port);
    expect_good(&s, &plain, "rsa", 2);
    // Again after another flush (check and tail each authenticated, the cache is warm now).
    s.exec("FLUSH NO_WRITE_TO_BINLOG PRIVILEGES");
    expect_good(&s, &plain, "rsa", 3);
    // A wrong password is a clean error, not a hang.
    let bad = format!("mysql://fresh:wrong@127.0.0.1:{}", s.port);
    let out = run_check(&bad, None, "latest");
    assert!(
        out.status.is_some() && !out.success(),
        "{}",
        describe("check with a wrong password", &out)
    );
}
