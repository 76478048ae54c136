//! The sink kit's conformance test (`rowstream_api::testing::conformance`)
//! against the Elasticsearch sink and a throwaway OpenSearch 2.19 node
//! (`deploy/dev/start-opensearch.sh`). The failure is a document the index
//! refuses for its content (a mapping error) with `on_error = "stop"`.
//! Also checks that the sink's metric families are registered.

use std::sync::Arc;

use rowstream_api::testing::conformance::{check, good_batch, Provoke};
use rowstream_api::testing::daemon::TestDaemon;
use rowstream_api::testing::{batch_of, change};
use rowstream_api::{Record, Row, Value};
use rowstream_elasticsearch::client::Client;
use rowstream_elasticsearch::ElasticsearchSinkConfig;

/// Transaction `n`: one insert into `shop.strict`, whose `v` the index maps
/// as a number, with a `v` that is not one.
fn refused(n: u64) -> rowstream_api::Batch {
    batch_of(n, &[(n, 1)], |tx, i| {
        let row = Row {
            columns: vec![Arc::from("id"), Arc::from("v")].into(),
            values: vec![Value::Int(tx as i64), Value::String("not a number".into())],
        };
        Record::Change(change(tx, i, "shop", "strict", row))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_sink_conforms() {
    let Some(server) = TestDaemon::start("opensearch") else {
        return;
    };
    let cfg = ElasticsearchSinkConfig::new("search", format!("http://{}", server.addr()));
    let mapping = serde_json::json!({"mappings": {"properties": {"v": {"type": "long"}}}});
    let client = Client::new(&cfg).unwrap();
    assert!(client.create_index("shop.strict", &mapping).await.unwrap());
    check(&cfg, &good_batch, Provoke::Batch(Box::new(refused))).await;
    // The sink's own metric families reach the service's exposition.
    let exposed = rowstream_api::metrics::render();
    assert!(
        exposed.contains("rowstream_es_items_indexed_total{sink=\"search\"}"),
        "{exposed}"
    );
}
