//! Column exclusion and masking (`[source] columns_exclude`, `columns_mask`)
//! on both flavours: rows read by the initial snapshot and rows streamed
//! afterwards (insert, update, delete) reach the file backup and `tail`
//! without the excluded column, with the masked ones hashed (salted
//! SHA-256 of the value's JSON text) or redacted; no byte of a clear value
//! is in any backup file. Skipped without server binaries unless
//! `ROWSTREAM_TEST_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::time::Duration;

use common::{output_with_timeout, rowstream, Flavor, Service, ServiceConfig, Sink, TestServer};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SALT: &str = "pepper-7";
const SECRETS: [&str; 4] = [
    "ssn-111-22",
    "ssn-333-44",
    "alice@clear.example",
    "Alice Clear",
];

fn sha(value: &str) -> String {
    let json = serde_json::to_string(value).unwrap();
    let d = Sha256::new()
        .chain_update(SALT.as_bytes())
        .chain_update(json.as_bytes())
        .finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one change envelope of `shop.customers`; returns its op.
fn check_envelope(v: &Value) -> String {
    for image in ["before", "after"] {
        let Some(row) = v.get(image).filter(|r| !r.is_null()) else {
            continue;
        };
        let row = row.as_object().unwrap();
        assert!(!row.contains_key("ssn"), "excluded column present: {v}");
        let id = row["id"].as_i64().unwrap();
        let email = row["email"].as_str().unwrap();
        let alice = id == 1 && email == sha("alice@clear.example");
        assert!(
            alice || email == sha(&format!("user{id}@clear.example")),
            "{v}"
        );
        match id {
            3 => assert!(row["name"].is_null(), "NULL stays NULL: {v}"),
            _ => assert_eq!(row["name"], "****", "{v}"),
        }
        assert!(row["note"].as_str().unwrap().starts_with("note"), "{v}");
    }
    v["op"].as_str().unwrap().to_string()
}

fn masking(flavor: Flavor) {
    let Some(srv) = TestServer::start(flavor, &[]) else {
        return;
    };
    srv.exec(
        "CREATE DATABASE shop;
         CREATE TABLE shop.customers (id INT PRIMARY KEY, email VARCHAR(100), ssn VARCHAR(20),
           name VARCHAR(50), note TEXT);
         INSERT INTO shop.customers VALUES
           (1, 'user1@clear.example', 'ssn-111-22', 'Alice Clear', 'note 1'),
           (2, 'user2@clear.example', 'ssn-333-44', 'Bob Clear', 'note 2');",
    );
    let mut cfg = ServiceConfig::for_server(&srv, Sink::File(String::new()))
        .with_extra("[snapshot]\nmode = \"initial\"\n");
    cfg.start = None;
    cfg.source_extra = format!(
        "columns_exclude = [\"shop.customers.ssn\"]\nmask_salt = \"{SALT}\"\n\
         [source.columns_mask]\n\"shop.customers.email\" = \"sha256\"\n\"shop.*.nam?\" = \"redact\"\n"
    );
    let mut svc = Service::new("masking", cfg);
    svc.spawn();
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    srv.exec(
        "INSERT INTO shop.customers VALUES (3, 'user3@clear.example', 'ssn-555', NULL, 'note 3');
         UPDATE shop.customers SET email = 'user1@clear.example', ssn = 'ssn-999', note = 'note 1b'
           WHERE id = 1;
         UPDATE shop.customers SET email = 'alice@clear.example' WHERE id = 1;
         UPDATE shop.customers SET email = 'user1@clear.example' WHERE id = 1;
         DELETE FROM shop.customers WHERE id = 2;",
    );
    svc.wait_caught_up(&srv, Duration::from_secs(60));
    svc.stop(Duration::from_secs(10));

    // No clear value in any byte the backup holds (compressed segments decoded).
    for entry in std::fs::read_dir(&svc.backup).unwrap() {
        let path = entry.unwrap().path();
        let raw = std::fs::read(&path).unwrap();
        let bytes = if path.extension().is_some_and(|e| e == "zst" || e == "open") {
            zstd::decode_all(&raw[..]).unwrap()
        } else {
            raw
        };
        let text = String::from_utf8_lossy(&bytes);
        for s in SECRETS {
            assert!(!text.contains(s), "{} holds `{s}`", path.display());
        }
    }

    let cat = output_with_timeout(
        rowstream().arg("backup").arg("cat").arg(&svc.backup),
        None,
        Duration::from_secs(60),
    );
    assert!(cat.success(), "{}", cat.stderr_text());
    let ops: Vec<String> = String::from_utf8_lossy(&cat.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["source"]["table"] == "customers" && v.get("op").is_some())
        .map(|v| check_envelope(&v))
        .collect();
    assert_eq!(ops, ["r", "r", "c", "u", "u", "u", "d"], "backup");

    // `tail` with the same rules prints the same masked stream.
    let mut tail = rowstream();
    tail.args(["tail", "--url", &srv.url(), "--from", "earliest"])
        .args(["--server-id", &common::next_replica_server_id().to_string()])
        .args(["--max-events", "5", "--include", "shop.*"])
        .args(["--exclude-column", "shop.customers.ssn"])
        .args(["--mask-column", "shop.customers.email=sha256"])
        .args(["--mask-column", "shop.*.nam?=redact"])
        .env("ROWSTREAM_MASK_SALT", SALT);
    let out = output_with_timeout(&mut tail, None, Duration::from_secs(60));
    assert!(out.success(), "{}", out.stderr_text());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for s in SECRETS {
        assert!(!stdout.contains(s), "tail printed `{s}`:\n{stdout}");
    }
    // The binlog holds the two rows inserted before the snapshot too.
    let ops: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("op").is_some())
        .map(|v| check_envelope(&v))
        .collect();
    assert_eq!(ops, ["c", "c", "c", "u", "u"], "tail:\n{stdout}");
}

flavor_tests!(masking: masking_mariadb, masking_mysql);
