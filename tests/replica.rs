//! rowstream as a replica: the server lists it while it streams, and MySQL
//! tagged GTIDs are reported in the server's notation and resumed from.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{next_replica_server_id, tail, tail_command, Flavor, TestServer};

/// While `tail` runs, SHOW REPLICAS / SHOW SLAVE HOSTS lists our server id;
/// after it exits the registration is gone (it ends its dump connection).
#[test]
fn registers_as_replica_and_unregisters_on_exit() {
    for flavor in Flavor::ALL {
        let Some(s) = TestServer::start(flavor, &[]) else {
            return;
        };
        let id = next_replica_server_id();
        let mut child = tail_command(&s.repl_url(), id, "latest")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rowstream");
        let listed = |s: &TestServer| s.lists_replica(id);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !listed(&s) {
            assert!(
                Instant::now() < deadline,
                "{flavor:?}: server id {id} never listed as a replica"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{flavor:?}: rowstream tail exited early"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // SIGINT is a clean stop: the dump connection is ended on the server.
        unsafe_sigint(child.id());
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{flavor:?}: tail did not exit cleanly on SIGINT: {status}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(&s) {
            assert!(
                Instant::now() < deadline,
                "{flavor:?}: server id {id} still registered after a clean exit"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn unsafe_sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// MySQL 8.4+ tagged GTIDs (`uuid:tag:n`): printed as the server prints them,
/// and a start set containing tags (sent in the tagged wire format) resumes
/// exactly after it.
#[test]
fn mysql_tagged_gtids() {
    let Some(s) = TestServer::start(Flavor::MySql, &[]) else {
        return;
    };
    s.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)");
    let start = s.gtid_executed();
    s.exec("SET gtid_next = 'AUTOMATIC:batch_a'; INSERT INTO d.t VALUES (1); SET gtid_next = 'AUTOMATIC'");
    let mid = s.gtid_executed();
    assert!(mid.contains(":batch_a:1"), "server set: {mid}");
    s.exec("SET gtid_next = 'AUTOMATIC:batch_a'; INSERT INTO d.t VALUES (2); SET gtid_next = 'AUTOMATIC'; INSERT INTO d.t VALUES (3)");

    let rows = |evs: &[serde_json::Value]| -> Vec<(i64, String)> {
        evs.iter()
            .filter(|e| e["op"] == "c")
            .map(|e| {
                (
                    e["after"]["id"].as_i64().unwrap(),
                    e["source"]["gtid"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let all = rows(&tail(&s.repl_url(), &start, 3, &[]));
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].0, 1);
    assert!(all[0].1.ends_with(":batch_a:1"), "{all:?}");
    assert!(all[1].1.ends_with(":batch_a:2"), "{all:?}");
    assert!(!all[2].1.contains("batch_a"), "{all:?}");

    // Resume from a set that holds a tag: exactly the two later rows.
    let rest = rows(&tail(&s.repl_url(), &mid, 2, &[]));
    assert_eq!(
        rest.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![2, 3],
        "{rest:?}"
    );
}

/// A server that stops answering (SIGSTOP: the TCP connection stays open but
/// silent) is detected by the missing heartbeats; rowstream reconnects once
/// the server is back and delivers what was written meanwhile, once.
#[test]
fn half_dead_connection_is_detected() {
    for flavor in Flavor::ALL {
        let Some(s) = TestServer::start(flavor, &[]) else {
            return;
        };
        s.exec("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)");
        let from = s.gtid_executed();
        s.exec("INSERT INTO d.t VALUES (1)");
        let id = next_replica_server_id();
        let mut cmd = tail_command(&s.repl_url(), id, &from);
        cmd.args(["--max-events", "2", "--heartbeat-secs", "1"]);
        let child = std::thread::spawn(move || {
            common::output_with_timeout(&mut cmd, None, Duration::from_secs(60))
        });
        std::thread::sleep(Duration::from_secs(2));
        let pid = s.pid().expect("server pid").to_string();
        assert!(std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success());
        // Three missed heartbeats (3 s) make the connection dead; stay frozen a bit longer.
        std::thread::sleep(Duration::from_secs(5));
        assert!(std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success());
        s.exec("INSERT INTO d.t VALUES (2)");
        let out = child.join().unwrap();
        assert!(out.success(), "{flavor:?}: {}", out.describe_status());
        let stderr = out.stderr_text();
        assert!(
            stderr.contains("heartbeats missing"),
            "{flavor:?}: no dead-connection detection in:\n{stderr}"
        );
        let ids: Vec<i64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["op"] == "c")
            .map(|e| e["after"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![1, 2], "{flavor:?}");
    }
}
