//! `rowstream run` with a Kafka sink in `format = "avro"`, against a real source server,
//! a real Kafka-protocol broker (noida-db) and a small Schema Registry implemented here
//! (no real Schema Registry can be installed on these machines: it needs a JVM). The
//! registry speaks the REST calls rowstream and Confluent deserializers use:
//! `POST /subjects/{subject}/versions` (`{"schema": "..."}` -> `{"id": N}`, the same id
//! for the same schema) and `GET /schemas/ids/{id}` (-> `{"schema": "..."}`).
//!
//! A workload of inserts, updates (primary-key changes included) and deletes on a table
//! with many column types runs while rowstream streams; halfway an `ALTER TABLE` adds a
//! column. Then the topic is consumed like a Confluent consumer does: every key and value
//! is checked for the wire format (magic byte 0, schema id), its writer schema fetched by
//! id from the registry and the datum decoded with the `apache-avro` crate. Replaying the
//! decoded records per key gives exactly the source table; the DDL registered a second
//! value schema (schema evolution) that has the new column.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::types::Value as A;
use apache_avro::{from_avro_datum, Schema};
use common::kafka::consume_topic;
use common::{server_with, Flavor, Service, ServiceConfig, Sink, TestKafka, TestServer};

const TOPIC: &str = "svc.s.a";

const SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.a (id INT PRIMARY KEY, u BIGINT UNSIGNED NOT NULL, d DECIMAL(10,2), \
      v VARCHAR(50), b VARBINARY(10), dt DATETIME(3), dd DATE, f DOUBLE, e ENUM('x','y'), \
      j JSON) DEFAULT CHARSET=utf8mb4";

/// Registered schemas: id -> (subject, schema text).
type Store = Arc<Mutex<Vec<(String, String)>>>;

/// The in-test Schema Registry on 127.0.0.1:port (one thread, one request per connection).
struct Registry {
    port: u16,
    store: Store,
}

impl Registry {
    fn start() -> Registry {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let store: Store = Arc::default();
        let st = store.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = serve(&mut c, &st);
            }
        });
        Registry { port, store }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET /schemas/ids/{id}` over HTTP, like a consumer's deserializer.
    fn fetch(&self, id: u32) -> Schema {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            c,
            "GET /schemas/ids/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = Vec::new();
        c.read_to_end(&mut resp).unwrap();
        let resp = String::from_utf8(resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "schema {id}: {resp}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        Schema::parse_str(v["schema"].as_str().unwrap()).unwrap()
    }

    fn subject_of(&self, id: u32) -> String {
        self.store.lock().unwrap()[id as usize - 1].0.clone()
    }
}

fn serve(c: &mut TcpStream, store: &Store) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = c.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + len {
        let n = c.read(&mut tmp)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body = &buf[head_end + 4..];
    let mut parts = head.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, answer) = if let (Some(subject), "POST") = (
        path.strip_prefix("/subjects/")
            .and_then(|s| s.strip_suffix("/versions")),
        method,
    ) {
        let req: serde_json::Value = serde_json::from_slice(body).unwrap();
        let schema = req["schema"].as_str().unwrap().to_string();
        // Reject what a registry would reject: the schema must parse.
        match Schema::parse_str(&schema) {
            Err(e) => (
                422,
                serde_json::json!({"error_code": 42201, "message": e.to_string()}),
            ),
            Ok(_) => {
                let mut st = store.lock().unwrap();
                let id = match st.iter().position(|(s, x)| s == subject && *x == schema) {
                    Some(i) => i + 1,
                    None => {
                        st.push((subject.to_string(), schema));
                        st.len()
                    }
                };
                (200, serde_json::json!({ "id": id }))
            }
        }
    } else if let (Some(id), "GET") = (path.strip_prefix("/schemas/ids/"), method) {
        let st = store.lock().unwrap();
        match id
            .parse::<usize>()
            .ok()
            .and_then(|i| st.get(i.wrapping_sub(1)))
        {
            Some((_, s)) => (200, serde_json::json!({ "schema": s })),
            None => (404, serde_json::json!({"error_code": 40403})),
        }
    } else {
        (404, serde_json::json!({"error_code": 404}))
    };
    let body = answer.to_string();
    write!(
        c,
        "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    c.flush()
}

/// `rowstream run` into `kafka` with `format = "avro"` and `registry`.
fn avro_service(server: &TestServer, kafka: &TestKafka, registry: &Registry) -> Service {
    let keys = format!(
        "format = \"avro\"\nschema_registry_url = {:?}",
        registry.url()
    );
    Service::new(
        &format!("kafka-avro-{}", server.flavor.name()),
        ServiceConfig::for_server(server, Sink::kafka(kafka, &keys, "")),
    )
}

/// Every record of the topic: (key bytes, value bytes or None for a tombstone), in
/// offset order per partition.
fn consume(bootstrap: &str) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    consume_topic(bootstrap, TOPIC)
        .into_iter()
        .map(|r| (r.key.expect("every record has a key"), r.payload))
        .collect()
}

/// Splits the Confluent framing: magic byte 0, 4-byte big-endian schema id, datum.
fn frame(b: &[u8]) -> (u32, &[u8]) {
    assert!(
        b.len() >= 5 && b[0] == 0,
        "not Confluent wire format: {b:?}"
    );
    (u32::from_be_bytes(b[1..5].try_into().unwrap()), &b[5..])
}

fn field<'a>(v: &'a A, name: &str) -> Option<&'a A> {
    match v {
        A::Record(fs) => fs.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        A::Union(_, b) => field(b, name),
        _ => panic!("not a record: {v:?}"),
    }
}

fn twos(b: &[u8]) -> i128 {
    let mut v: i128 = if b.first().is_some_and(|x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for x in b {
        v = (v << 8) | i128::from(*x);
    }
    v
}

/// A decoded column as the text the server prints (`None` for NULL), given the column.
fn text(col: &str, v: &A) -> Option<String> {
    Some(match v {
        A::Null => return None,
        A::Union(_, b) => return text(col, b),
        A::Int(i) => i.to_string(),
        A::Long(i) => i.to_string(),
        A::Double(d) => d.to_string(),
        A::String(s) if col == "j" => serde_json::from_str::<serde_json::Value>(s)
            .unwrap()
            .to_string(),
        A::String(s) if col == "dt" => s.replace('T', " "),
        A::String(s) => s.clone(),
        A::Bytes(b) => b.iter().map(|x| format!("{x:02X}")).collect(),
        A::Decimal(d) => {
            let n = twos(&<Vec<u8>>::try_from(d).unwrap());
            if col == "d" {
                let sign = if n < 0 { "-" } else { "" };
                format!("{sign}{}.{:02}", n.abs() / 100, n.abs() % 100)
            } else {
                n.to_string()
            }
        }
        other => panic!("column {col}: unexpected {other:?}"),
    })
}

fn avro_into_kafka(flavor: Flavor) {
    let Some((server, kafka)) = server_with(flavor, SCHEMA, TestKafka::start) else {
        return;
    };
    let registry = Registry::start();
    let mut svc = avro_service(&server, &kafka, &registry);
    svc.spawn();
    let mut sql = String::new();
    let row = |i: i64| {
        format!(
            "({i}, {}, {}, 'v{i} \"q\"', X'{:02X}FF00', '2024-01-{:02} 10:00:0{}.{:03}', '2024-02-{:02}', {}, '{}', '{{\"k\": {i}}}')",
            u64::MAX - i as u64,
            (i * 37 - 500) as f64 / 4.0,
            i % 256,
            i % 28 + 1,
            i % 10,
            i * 7 % 1000,
            i % 28 + 1,
            i as f64 / 8.0,
            if i % 2 == 0 { "x" } else { "y" },
        )
    };
    const COLS: &str = "(id, u, d, v, b, dt, dd, f, e, j)";
    for i in 1..=60i64 {
        sql.push_str(&format!("INSERT INTO s.a {COLS} VALUES {};\n", row(i)));
    }
    sql.push_str("INSERT INTO s.a (id, u) VALUES (100, 0);\n"); // NULLs
    sql.push_str("BEGIN; UPDATE s.a SET v = 'upd', d = NULL WHERE id % 5 = 0; DELETE FROM s.a WHERE id % 7 = 0; COMMIT;\n");
    sql.push_str("UPDATE s.a SET id = id + 1000 WHERE id IN (3, 4);\n"); // key changes
    server.exec(&sql);
    std::thread::sleep(Duration::from_millis(500));
    // Schema evolution: a new column, then changes that use it.
    server.exec(
        "ALTER TABLE s.a ADD COLUMN extra INT NULL; \
         UPDATE s.a SET extra = id * 2 WHERE id % 3 = 0; \
         DELETE FROM s.a WHERE id % 11 = 0; \
         INSERT INTO s.a (id, u, extra) VALUES (200, 5, -1);",
    );
    svc.wait_caught_up(&server, Duration::from_secs(120));
    drop(svc);

    let cols = ["id", "u", "d", "v", "b", "dt", "dd", "f", "e", "j", "extra"];
    let mut schemas: HashMap<u32, Schema> = HashMap::new();
    let mut value_ids = Vec::new();
    // Per key (the id): the latest decoded row, None after a tombstone.
    let mut latest: BTreeMap<i32, Option<BTreeMap<String, Option<String>>>> = BTreeMap::new();
    let recs = consume(&kafka.bootstrap());
    assert!(recs.len() > 60, "only {} records", recs.len());
    for (k, v) in &recs {
        let (kid, kdatum) = frame(k);
        assert_eq!(registry.subject_of(kid), format!("{TOPIC}-key"));
        let ks = schemas.entry(kid).or_insert_with(|| registry.fetch(kid));
        let mut r = kdatum;
        let key = from_avro_datum(ks, &mut r, None).expect("key decodes");
        assert!(r.is_empty(), "trailing key bytes");
        let Some(A::Int(id)) = field(&key, "id") else {
            panic!("key {key:?}")
        };
        let id = *id;
        let Some(v) = v else {
            latest.insert(id, None);
            continue;
        };
        let (vid, vdatum) = frame(v);
        assert_eq!(registry.subject_of(vid), format!("{TOPIC}-value"));
        if !value_ids.contains(&vid) {
            value_ids.push(vid);
        }
        let vs = schemas.entry(vid).or_insert_with(|| registry.fetch(vid));
        let mut r = vdatum;
        let env = from_avro_datum(vs, &mut r, None).expect("value decodes");
        assert!(r.is_empty(), "trailing value bytes");
        let op = match field(&env, "op") {
            Some(A::String(s)) => s.clone(),
            o => panic!("op {o:?}"),
        };
        assert!(matches!(field(&env, "source"), Some(A::Record(_))));
        let image = if op == "d" { "before" } else { "after" };
        let img = field(&env, image).unwrap();
        assert!(matches!(img, A::Union(1, _)), "{image} of {op}: {img:?}");
        let mut row = BTreeMap::new();
        for c in cols {
            row.insert(c.to_string(), field(img, c).and_then(|x| text(c, x)));
        }
        assert_eq!(row["id"].as_deref(), Some(id.to_string().as_str()));
        latest.insert(id, (op != "d").then_some(row));
    }
    assert!(
        value_ids.len() >= 2,
        "the ALTER TABLE must register a new value schema: {value_ids:?}"
    );
    let last = &schemas[value_ids.last().unwrap()];
    assert!(
        format!("{last:?}").contains("extra"),
        "new value schema lacks the new column"
    );

    let rows = server.query(
        "SELECT id, u, d, v, HEX(b), DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f'), dd, f, e, j, extra \
         FROM s.a ORDER BY id",
    );
    let mut want: BTreeMap<i32, BTreeMap<String, Option<String>>> = BTreeMap::new();
    for r in rows {
        let mut m = BTreeMap::new();
        for (c, v) in cols.iter().zip(r) {
            let v = match (*c, v) {
                // DATETIME(3): %f prints 6 digits.
                ("dt", Some(s)) => Some(s[..s.len() - 3].to_string()),
                ("f", Some(s)) => Some(s.parse::<f64>().unwrap().to_string()),
                ("j", Some(s)) => Some(
                    serde_json::from_str::<serde_json::Value>(&s)
                        .unwrap()
                        .to_string(),
                ),
                (_, v) => v,
            };
            m.insert(c.to_string(), v);
        }
        want.insert(m["id"].as_ref().unwrap().parse().unwrap(), m);
    }
    let live: BTreeMap<i32, BTreeMap<String, Option<String>>> = latest
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect();
    for (id, w) in &want {
        assert_eq!(live.get(id), Some(w), "row {id}");
    }
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "live keys"
    );
    assert!(
        latest.values().any(|v| v.is_none()),
        "deletes end in tombstones"
    );
    eprintln!(
        "{}: {} Avro records decoded, {} rows match, value schema ids {value_ids:?}",
        flavor.name(),
        recs.len(),
        want.len()
    );
}

flavor_tests!(avro_into_kafka: mariadb_avro_records_decode_with_registered_schemas, mysql_avro_records_decode_with_registered_schemas);
