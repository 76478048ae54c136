//! The sink contract (`rowstream_api::testing::conformance`) checked against
//! a real MariaDB target. The failure provoked is a batch the target
//! refuses: rows for a table it does not have (fatal, named in the error).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::sync::Arc;

use common::{Flavor, Target};
use rowstream_api::testing::conformance::{check, good_batch, Provoke};
use rowstream_api::testing::{batch_of, change};
use rowstream_api::{Record, Row, Value};
use rowstream_mysql::MysqlSinkConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_mariadb() {
    conformance(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_mariadb_parallel() {
    conformance(4).await;
}

async fn conformance(threads: usize) {
    let Some(t) = Target::start(Flavor::MariaDb) else {
        return;
    };
    t.exec("CREATE DATABASE shop;\nCREATE TABLE shop.orders (id BIGINT PRIMARY KEY, name VARCHAR(255))")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MysqlSinkConfig::new("conf", &t.url);
    cfg.threads = threads;
    cfg.conflict_log = Some(dir.path().join("conflicts.jsonl"));
    let refused = |n: u64| {
        batch_of(n, &[(n, 2)], |tx, i| {
            let row = Row {
                columns: vec![Arc::from("id")].into(),
                values: vec![Value::Int((tx * 1000 + i) as i64)],
            };
            Record::Change(change(tx, i, "shop", "missing", row))
        })
    };
    check(&cfg, &good_batch, Provoke::Batch(Box::new(refused))).await;
    // Every good batch the check wrote and acked is there exactly once.
    let n = t
        .rows("SELECT COUNT(*), COUNT(DISTINCT id) FROM shop.orders")
        .await;
    assert_eq!(n[0][0], n[0][1], "no duplicates");
    assert!(n[0][0].parse::<u64>().unwrap() >= 60, "{n:?}");
}
