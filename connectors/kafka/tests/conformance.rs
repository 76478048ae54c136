//! The sink kit's conformance test (`rowstream_api::testing::conformance`)
//! against the Kafka sink and a throwaway Apache Kafka 4.4 broker
//! (`deploy/dev/start-kafka.sh`).
//! The failure is a record larger than `message.max.bytes`, which the
//! producer refuses: an operator-must-act (fatal) error.

use std::sync::Arc;

use rowstream_api::testing::conformance::{check, good_batch, Provoke};
use rowstream_api::testing::daemon::TestDaemon;
use rowstream_api::testing::{batch_of, change};
use rowstream_api::{Record, Row, Value};
use rowstream_kafka::KafkaSinkConfig;

/// Transaction `n`: one insert whose `name` is 2 MB.
fn too_large(n: u64) -> rowstream_api::Batch {
    batch_of(n, &[(n, 1)], |tx, i| {
        let row = Row {
            columns: vec![Arc::from("id"), Arc::from("name")].into(),
            values: vec![
                Value::Int(tx as i64),
                Value::String("x".repeat(2 << 20).into()),
            ],
        };
        Record::Change(change(tx, i, "shop", "orders", row))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_conforms() {
    let Some(broker) = TestDaemon::start("kafka") else {
        return;
    };
    let cfg = KafkaSinkConfig::new("kafka", broker.addr());
    check(&cfg, &good_batch, Provoke::Batch(Box::new(too_large))).await;
}
