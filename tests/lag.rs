//! Heartbeat lag per sink, `/health` and `/status`, against a real MariaDB source, a file
//! sink and an Elasticsearch-API sink (osmem-server, the cheapest real one to freeze).
//!
//! One sink frozen (SIGSTOP of its server) with a row to write, while the other keeps up
//! (within the sink queue's few batches: past them backpressure stops both): the frozen sink's
//! `rowstream_sink_lag_seconds` grows with the clock, the file sink's stays under a
//! second, `/health` turns 503 past `[health] max_sink_stall_ms`, and everything
//! recovers after SIGCONT; a source away past `max_source_down_ms` turns it 503 too.
//! With no writes on captured tables the checkpoint still
//! advances with the heartbeats, and the heartbeat rows are not in the backup.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::{
    output_with_timeout, rowstream, wait_until, Flavor, Service, ServiceConfig, Sink, TestDaemon,
    TestServer, OSMEM,
};
use serde_json::Value;

/// GET `path` on the metrics listener: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().expect("status code");
    let body = text[text.find("\r\n\r\n").expect("end of head") + 4..].to_string();
    (code, body)
}

/// `rowstream_sink_lag_seconds` per sink.
fn lags(port: u16) -> BTreeMap<String, f64> {
    let (_, body) = get(port, "/metrics");
    body.lines()
        .filter_map(|l| l.strip_prefix("rowstream_sink_lag_seconds{sink=\""))
        .map(|l| {
            let (name, rest) = l.split_once("\"}").unwrap();
            (name.to_string(), rest.trim().parse().unwrap())
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn frozen_sink_lags_and_recovers() {
    let Some(server) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let Some(search) = TestDaemon::start(&OSMEM) else {
        return;
    };
    server.exec("CREATE DATABASE s; CREATE TABLE s.t (id BIGINT PRIMARY KEY)");
    let port = free_port();
    let cfg = ServiceConfig::for_server(&server, Sink::file()).with_extra(&format!(
        "[[sinks]]\ntype = \"elasticsearch\"\nname = \"es\"\nurls = [\"http://127.0.0.1:{}\"]\n\
         flush_ms = 50\nretry_max_ms = 1000\ntimeout_ms = 120000\n\n\
         [metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [heartbeat]\ninterval_ms = 1000\nurl = {:?}\n\n\
         [health]\nmax_sink_stall_ms = 2500\nmax_source_down_ms = 1500\n",
        search.port,
        server.url()
    ));
    let mut svc = Service::new("lag", cfg);
    svc.spawn();
    server.exec("INSERT INTO s.t VALUES (1)");
    wait_until(
        "/health 200 with both sinks under 1 s",
        Duration::from_secs(60),
        || {
            let l = lags_or_empty(port);
            svc.checkpoint_gtid().is_some()
                && get_or(port, "/health") == 200
                && l.len() == 2
                && l.values().all(|v| *v < 1.0)
        },
    );

    // No writes on captured tables: the checkpoint moves with the heartbeats.
    let cp0 = svc.checkpoint_gtid().expect("checkpoint");
    wait_until(
        "the checkpoint to advance with heartbeats",
        Duration::from_secs(10),
        || svc.checkpoint_gtid().is_some_and(|c| c != cp0),
    );

    // A frozen sink with nothing to write acks the (empty for it) heartbeat
    // batches: give it a row to be stuck on.
    search.freeze(true);
    server.exec("INSERT INTO s.t VALUES (2)");
    std::thread::sleep(Duration::from_millis(1500));
    let a = lags(port);
    std::thread::sleep(Duration::from_millis(1500));
    let b = lags(port);
    let grew = b["es"] - a["es"];
    assert!(
        (1.2..=2.0).contains(&grew),
        "the frozen sink's lag grew by {grew:.2}s in 1.5s ({a:?} -> {b:?})"
    );
    assert!(b["backup"] < 1.0, "the file sink lags: {b:?}");
    let (code, body) = get(port, "/health");
    assert_eq!(code, 503, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["source"]["connected"], true, "{health}");
    eprintln!("frozen: lags {b:?}, /health {health}");

    search.freeze(false);
    wait_until("/health 200 again", Duration::from_secs(60), || {
        get_or(port, "/health") == 200 && lags_or_empty(port).values().all(|v| *v < 1.0)
    });
    let (code, status) = get(port, "/status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(status["checkpoint"].is_string(), "{status}");

    // Heartbeat rows are not delivered (deliver = false).
    let mut cmd = rowstream();
    cmd.args(["backup", "cat"]).arg(&svc.backup);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"table\":\"t\""), "{text}");
    assert!(
        !text.contains("\"table\":\"heartbeat\""),
        "heartbeat rows in the backup"
    );
    // The source away longer than max_source_down_ms: 503 naming it; back: 200.
    server.kill();
    wait_until(
        "/health 503 for the source",
        Duration::from_secs(30),
        || {
            let (code, body) = get(port, "/health");
            code == 503 && body.contains("source disconnected")
        },
    );
    server.restart();
    wait_until(
        "/health 200 after the source returned",
        Duration::from_secs(60),
        || get_or(port, "/health") == 200,
    );

    // `rowstream status`: from the endpoint while running, from checkpoint and server after.
    let live = status_json(&svc);
    assert_eq!(live["service"]["running"], true, "{live}");
    assert_eq!(live["sinks"].as_array().map(Vec::len), Some(2), "{live}");
    svc.stop(Duration::from_secs(30));
    let down = status_json(&svc);
    assert_eq!(down["service"]["running"], false, "{down}");
    assert_eq!(down["transactions_behind"], 0, "{down}");
    assert!(down["checkpoint"]["gtid_set"].is_string(), "{down}");
    let mut cmd = rowstream();
    cmd.args(["status", "--config"]).arg(&svc.config);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
    assert!(out.success(), "{}", out.stderr_text());
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

fn status_json(svc: &Service) -> Value {
    let mut cmd = rowstream();
    cmd.args(["status", "--json", "--config"]).arg(&svc.config);
    let out = output_with_timeout(&mut cmd, None, Duration::from_secs(60));
    assert!(out.success(), "status: {}", out.stderr_text());
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

fn get_or(port: u16, path: &str) -> u16 {
    std::panic::catch_unwind(|| get(port, path).0).unwrap_or(0)
}

fn lags_or_empty(port: u16) -> BTreeMap<String, f64> {
    std::panic::catch_unwind(|| lags(port)).unwrap_or_default()
}
