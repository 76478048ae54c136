//! Smoke test of the integration-test harness (tests/common): starts one throwaway server
//! of each flavour through deploy/dev, checks the server configuration rowstream relies
//! on, runs SQL through `query` / `exec` and checks the GTID position moves. No rowstream
//! calls: when this fails, the harness or the dev servers are broken, not rowstream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use common::{Flavor, TestServer};

#[test]
fn parses_the_last_result_set_with_nulls_and_escapes() {
    let xml = "<?xml version=\"1.0\"?>\n\n<resultset statement=\"select 1 &lt; 2\" xmlns:xsi=\"x\">\n  <row>\n\t<field name=\"a\">1</field>\n  </row>\n</resultset>\n\
               <?xml version=\"1.0\"?>\n\n<resultset statement=\"select * from t\" xmlns:xsi=\"x\">\n  <row>\n\t<field name=\"id\">1</field>\n\t<field name=\"s\">x&lt;y&amp;&quot;z'</field>\n\t<field name=\"n\" xsi:nil=\"true\" />\n  </row>\n\n  <row>\n\t<field name=\"id\">2</field>\n\t<field name=\"s\">multi\nline</field>\n\t<field name=\"n\"></field>\n  </row>\n</resultset>\n";
    assert_eq!(
        common::parse_last_resultset(xml),
        vec![
            vec![Some("1".into()), Some("x<y&\"z'".into()), None],
            vec![
                Some("2".into()),
                Some("multi\nline".into()),
                Some(String::new())
            ],
        ]
    );
    assert!(common::parse_last_resultset("").is_empty());
    assert!(common::parse_last_resultset(
        "<resultset statement=\"s\" xmlns:xsi=\"x\"></resultset>"
    )
    .is_empty());
}

fn smoke(flavor: Flavor) {
    let Some(server) = TestServer::start(flavor, &[]) else {
        return;
    };
    assert_eq!(server.flavor, flavor);
    assert_eq!(
        server.url(),
        format!("mysql://root:root@127.0.0.1:{}", server.port)
    );
    assert_eq!(
        server.repl_url(),
        format!("mysql://repl:repl@127.0.0.1:{}", server.port)
    );

    // Fresh server: users were created without binlogging.
    assert_eq!(
        server.gtid_executed(),
        "",
        "a fresh {flavor:?} server must have an empty GTID set"
    );

    // The settings a CDC source needs.
    let settings = server.query(
        "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id",
    );
    assert_eq!(
        settings,
        vec![vec![
            Some("1".to_string()),
            Some("ROW".to_string()),
            Some("FULL".to_string()),
            Some("FULL".to_string()),
            Some(server.server_id.to_string()),
        ]]
    );
    match flavor {
        Flavor::MySql => {
            assert_eq!(
                server.query_value("SELECT @@gtid_mode").as_deref(),
                Some("ON")
            );
            // Off by default; tests opt in with extra args.
            assert_eq!(
                server
                    .query_value("SELECT @@binlog_transaction_compression")
                    .as_deref(),
                Some("0")
            );
            assert_eq!(
                server
                    .query_value("SELECT @@binlog_row_value_options")
                    .as_deref(),
                Some("")
            );
        }
        Flavor::MariaDb => {
            assert_eq!(
                server.query_value("SELECT @@gtid_strict_mode").as_deref(),
                Some("1")
            );
        }
    }

    // Several statements in one call; the rows of the last result set come back, NULL as
    // None, text with tabs / newlines / markup intact.
    server.exec(
        "CREATE DATABASE smoke;
         CREATE TABLE smoke.t (id INT PRIMARY KEY, name VARCHAR(50), note TEXT);
         INSERT INTO smoke.t VALUES (1, 'one', NULL), (2, 'two', 'a\\tb\\nc <&> \"q\"');",
    );
    let rows = server
        .query("SELECT COUNT(*) FROM smoke.t; SELECT id, name, note FROM smoke.t ORDER BY id");
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("one".into()), None],
            vec![
                Some("2".into()),
                Some("two".into()),
                Some("a\tb\nc <&> \"q\"".into())
            ],
        ]
    );
    assert!(server
        .query("SELECT * FROM smoke.t WHERE id = 3")
        .is_empty());

    let gtid = server.gtid_executed();
    assert!(!gtid.is_empty(), "GTID set must be non-empty after writes");
    assert!(!gtid.contains('\n'));

    // SQL errors panic with the server's message.
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.exec("SELECT * FROM smoke.nope")
    }))
    .expect_err("a failing statement must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("nope"),
        "panic message should carry the server error, got: {msg}"
    );

    // The repl account exists with its password.
    let mut cli = server.client_command();
    cli.args([
        "--user=repl",
        "--password=repl",
        "-N",
        "-e",
        "SELECT CURRENT_USER()",
    ]);
    let out = common::output_with_timeout(&mut cli, None, std::time::Duration::from_secs(30));
    assert!(out.success(), "repl login failed: {}", out.stderr_text());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "repl@%");

    // Crash + restart keeps the data; a clean restart too.
    let datadir = server.datadir.clone();
    server.kill();
    assert!(server.pid().is_none());
    server.restart();
    assert_eq!(
        server
            .query_value("SELECT COUNT(*) FROM smoke.t")
            .as_deref(),
        Some("2")
    );
    server.restart();
    assert_eq!(server.gtid_executed(), gtid);

    drop(server);
    assert!(!datadir.exists(), "drop must purge the datadir");
}

flavor_tests!(smoke: mariadb_server_smoke, mysql_server_smoke);

#[test]
fn mysql_server_with_compressed_partial_json_binlog() {
    let Some(server) = TestServer::start(
        Flavor::MySql,
        &[
            "--binlog-transaction-compression=ON",
            "--binlog-row-value-options=PARTIAL_JSON",
        ],
    ) else {
        return;
    };
    assert_eq!(
        server
            .query_value("SELECT @@binlog_transaction_compression")
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        server
            .query_value("SELECT @@binlog_row_value_options")
            .as_deref(),
        Some("PARTIAL_JSON")
    );
    server.restart();
    assert_eq!(
        server
            .query_value("SELECT @@binlog_row_value_options")
            .as_deref(),
        Some("PARTIAL_JSON")
    );
}

fn replica_and_promote(flavor: Flavor) {
    let Some(primary) = TestServer::start(flavor, &[]) else {
        return;
    };
    let Some(replica) = TestServer::start(flavor, &[]) else {
        return;
    };
    primary.exec("CREATE DATABASE r; CREATE TABLE r.t (id INT PRIMARY KEY); INSERT INTO r.t VALUES (1), (2);");
    replica.replicate_from(&primary);
    assert_eq!(
        replica.query_value("SELECT COUNT(*) FROM r.t").as_deref(),
        Some("2")
    );
    assert_eq!(
        replica.gtid_executed(),
        primary.gtid_executed(),
        "log_slave_updates: same GTID set"
    );

    primary.exec("INSERT INTO r.t VALUES (3)");
    let primary_pos = primary.gtid_executed();
    let promoted_pos = replica.promote();
    assert_eq!(
        promoted_pos, primary_pos,
        "the promoted replica has everything the primary had"
    );
    replica.exec("INSERT INTO r.t VALUES (4)");
    assert_eq!(
        replica.query_value("SELECT COUNT(*) FROM r.t").as_deref(),
        Some("4")
    );

    // The old primary follows the new one.
    primary.replicate_from(&replica);
    assert_eq!(
        primary.query_value("SELECT COUNT(*) FROM r.t").as_deref(),
        Some("4")
    );
}

flavor_tests!(replica_and_promote: mariadb_replica_and_promote, mysql_replica_and_promote);
