//! Throughput of the JSON encoder on the reference row shape: an UPDATE with
//! before and after images of an 8-column table
//! (BIGINT, INT, VARCHAR, DECIMAL(12,2), DATETIME(6), DOUBLE, TEXT NULL,
//! TINYINT UNSIGNED). Reported as events/s (criterion "elem/s").

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rowstream_api::json::write_change_event;
use rowstream_api::{
    ChangeEvent, Date, DateTime, Flavor, Op, Row, Shared, Snapshot, Source, Transaction, Value,
};

fn row(
    columns: &rowstream_api::Columns,
    i: i64,
    name: &str,
    price: &str,
    ts_micros: u32,
    score: f64,
) -> Row {
    Row {
        columns: columns.clone(),
        values: vec![
            Value::Int(1_000_000 + i),
            Value::Int(42),
            Value::String(name.to_owned().into()),
            Value::Decimal(price.to_owned().into()),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 5,
                    day: 17,
                },
                hour: 13,
                minute: 45,
                second: 9,
                micros: ts_micros,
                fsp: 6,
            }),
            Value::Double(score),
            Value::Null,
            Value::UInt(3),
        ],
    }
}

fn event() -> ChangeEvent {
    let columns: rowstream_api::Columns = [
        "id",
        "customer_id",
        "email",
        "amount",
        "updated_at",
        "score",
        "notes",
        "status",
    ]
    .iter()
    .map(|c| Arc::from(*c))
    .collect::<Vec<_>>()
    .into();
    let gtid: Arc<str> = Arc::from("3e11fa47-71ca-11e1-9e33-c80aa9429562:1234567");
    let mut ev = ChangeEvent {
        op: Op::Update,
        before: None,
        after: None,
        ts_ms: 1_715_953_509_123,
        shared: Arc::new(Shared {
            source: Source {
                version: "0.1.0",
                connector: Flavor::MySql,
                name: Arc::from("prod"),
                ts_ms: 1_715_953_509_000,
                snapshot: Snapshot::False,
                db: Arc::from("shop"),
                table: Arc::from("orders"),
                server_id: 1,
                gtid: gtid.clone(),
                file: Arc::from("binlog.000042"),
                pos: 123_456_789,
                sequence: 0,
            },
            primary_key: Arc::from([0usize].as_slice()),
            table: None,
            before_columns: Default::default(),
            after_columns: Default::default(),
        }),
        row: 3,
        transaction: Some(Transaction {
            total_order: 4,
            data_collection_order: 4,
        }),
        overlap: false,
    };
    ev.set_rows(
        Some(row(
            &columns,
            7,
            "alice@example.com",
            "1234.50",
            123_456,
            0.75,
        )),
        Some(row(
            &columns,
            7,
            "alice.smith@example.com",
            "1299.99",
            654_321,
            0.8125,
        )),
    );
    ev
}

fn bench(c: &mut Criterion) {
    let ev = event();
    let mut out = Vec::with_capacity(64 * 1024);
    write_change_event(&mut out, &ev);
    let one_len = out.len();

    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("update_8col_event ({one_len} B)"), |b| {
        b.iter(|| {
            out.clear();
            write_change_event(&mut out, black_box(&ev));
            black_box(out.len())
        })
    });

    // A batch of 1000 events appended to one buffer, newline-framed, as a sink does.
    const BATCH: u64 = 1000;
    g.throughput(Throughput::Elements(BATCH));
    let mut batch = Vec::with_capacity((one_len + 1) * BATCH as usize);
    g.bench_function("update_8col_batch_1000", |b| {
        b.iter(|| {
            batch.clear();
            for _ in 0..BATCH {
                write_change_event(&mut batch, black_box(&ev));
                batch.push(b'\n');
            }
            black_box(batch.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
