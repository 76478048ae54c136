//! The sink kit's conformance test (`rowstream_api::testing::conformance`)
//! against the HTTP sink and a minimal receiver started here (answers 200,
//! except 400 to requests for table `shop.strict`), with `on_error =
//! "stop"`; two tables in flight at once (`concurrency = 2`). Also checks
//! that the sink's metric families are registered.

mod scripted;

use std::sync::Arc;

use rowstream_api::testing::conformance::{check, good_batch, Provoke};
use rowstream_api::testing::{batch_of, change};
use rowstream_api::{Record, Row, Value};
use rowstream_http::HttpSinkConfig;

/// Transaction `n`: one insert into `shop.strict`.
fn refused(n: u64) -> rowstream_api::Batch {
    batch_of(n, &[(n, 1)], |tx, i| {
        let row = Row {
            columns: vec![Arc::from("id")].into(),
            values: vec![Value::Int(tx as i64)],
        };
        Record::Change(change(tx, i, "shop", "strict", row))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_conforms() {
    let port = scripted::server(Box::new(|path, _| match path.starts_with("/shop/strict") {
        true => (
            400,
            None,
            "{\"error\":\"strict refuses everything\"}".into(),
        ),
        false => (200, None, "{}".into()),
    }))
    .port;
    let mut cfg = HttpSinkConfig::new("hook", format!("http://127.0.0.1:{port}/{{db}}/{{table}}"));
    cfg.batch_records = 2;
    let dir = tempfile::tempdir().unwrap();
    cfg.request_log = Some(dir.path().join("requests.log"));
    cfg.concurrency = 2;
    check(&cfg, &good_batch, Provoke::Batch(Box::new(refused))).await;
    let exposed = rowstream_api::metrics::render();
    assert!(
        exposed.contains("rowstream_http_requests_total{sink=\"hook\"}"),
        "{exposed}"
    );
}
