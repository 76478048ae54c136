//! `rowstream run` with a Kafka sink in `format = "avro"`, against a real source server,
//! the real Apache Kafka broker (one per test binary, shared) and a small Schema Registry
//! implemented here. The registry speaks the REST calls rowstream and Confluent
//! deserializers use: `POST /subjects/{subject}/versions` (`{"schema": "..."}` ->
//! `{"id": N}`, the same id for the same schema) and `GET /schemas/ids/{id}` (->
//! `{"schema": "..."}`), over plain HTTP or over HTTPS (a CA made with openssl) with basic
//! authentication, as Confluent Cloud's registries want.
//!
//! A workload of inserts, updates (primary-key changes included) and deletes on a table
//! with many column types runs while rowstream streams; halfway an `ALTER TABLE` adds a
//! column. Then the topic is consumed like a Confluent consumer does: every key and value
//! is checked for the wire format (magic byte 0, schema id), its writer schema fetched by
//! id from the registry and the datum decoded with the `apache-avro` crate. Replaying the
//! decoded records per key gives exactly the source table; the DDL registered a second
//! value schema (schema evolution) that has the new column. Wrong registry credentials
//! and an untrusted registry certificate stop rowstream with a message naming the
//! settings. Confluent's own Java `KafkaAvroDeserializer` (`deploy/dev/confluent/run.sh`)
//! reads a topic of many column types and its values equal the table.
//!
//! Why not Apicurio Registry (tried, `io.apicurio:apicurio-registry-app` 3.3.3): Maven
//! Central has it only as a plain library jar (no `-runner` jar, no `quarkus-app`
//! layout). Its dependencies do not resolve from Central alone: its parent pom adds the
//! Eclipse repository (repo.eclipse.org), unreachable here, and with every repository
//! mirrored to Central the resolution stops at `io.quarkus:quarkus-smallrye-health`
//! 3.33.3.1, whose parent pom is not on Central (404). Even with a classpath, a Quarkus
//! application does not start from its plain jar: Quarkus generates the bootstrap at build
//! time (the quarkus-maven-plugin `build` goal), and the runnable distributions are the
//! container image and the release zip, not on Maven Central.
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
use common::{server_with, Flavor, Service, ServiceConfig, Sink, TestCerts, TestKafka, TestServer};

const TOPIC: &str = "svc.s.a";

const SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.a (id INT PRIMARY KEY, u BIGINT UNSIGNED NOT NULL, d DECIMAL(10,2), \
      v VARCHAR(50), b VARBINARY(10), dt DATETIME(3), dd DATE, f DOUBLE, e ENUM('x','y'), \
      j JSON) DEFAULT CHARSET=utf8mb4";

/// Registered schemas: id -> (subject, schema text).
type Store = Arc<Mutex<Vec<(String, String)>>>;

/// The in-test Schema Registry on 127.0.0.1:port (one thread, one request per
/// connection): plain HTTP, or HTTPS with a certificate from [`TestCerts`] and basic
/// authentication, as Confluent Cloud's registries are.
struct Registry {
    port: u16,
    store: Store,
    /// HTTPS: the certificates (kept until the registry is dropped).
    certs: Option<TestCerts>,
}

/// The registry's basic-auth user and password in the secure tests.
const REG_USER: &str = "SRKEY42";
const REG_PASSWORD: &str = "sr-secret/with+chars";

impl Registry {
    fn start() -> Registry {
        Registry::start_with(None, None)
    }

    /// HTTPS with a fresh CA, requiring `Authorization: Basic` of REG_USER/REG_PASSWORD.
    fn start_secure() -> Registry {
        Registry::start_with(
            Some(TestCerts::make("127.0.0.1")),
            Some((REG_USER, REG_PASSWORD)),
        )
    }

    fn start_with(certs: Option<TestCerts>, auth: Option<(&str, &str)>) -> Registry {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let store: Store = Arc::default();
        let st = store.clone();
        let tls = certs.as_ref().map(TestCerts::rustls_server);
        let auth = auth.map(|(u, p)| {
            let token = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{u}:{p}"),
            );
            format!("Basic {token}")
        });
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = match &tls {
                    None => serve(c, &st, auth.as_deref()),
                    Some(cfg) => {
                        let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
                            continue;
                        };
                        serve(rustls::StreamOwned::new(conn, c), &st, auth.as_deref())
                    }
                };
            }
        });
        Registry { port, store, certs }
    }

    fn url(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The sink keys that reach this registry, with `password` when it wants one.
    fn sink_keys(&self, password: &str) -> String {
        let mut keys = format!("schema_registry_url = {:?}\n", self.url());
        if let Some(c) = &self.certs {
            keys.push_str(&format!(
                "schema_registry_username = {REG_USER:?}\nschema_registry_password = {password:?}\n\
                 schema_registry_ca_file = {:?}\n",
                c.ca_file()
            ));
        }
        keys
    }

    /// The writer schema of `id`: over HTTP like a consumer's deserializer (`GET
    /// /schemas/ids/{id}`) from the plain registry, from the store of the HTTPS one.
    fn fetch(&self, id: u32) -> Schema {
        if self.certs.is_some() {
            let text = self.store.lock().unwrap()[id as usize - 1].1.clone();
            return Schema::parse_str(&text).unwrap();
        }
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

/// Answers one request on `c`; with `auth` (the expected `Authorization` value) a
/// request without it gets 401, as Confluent's registry answers.
fn serve<S: Read + Write>(mut c: S, store: &Store, auth: Option<&str>) -> std::io::Result<()> {
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
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
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
    // Confluent's client adds a query (`?fetchMaxId=false&subject=...`).
    let path = path.split('?').next().unwrap_or(path);
    let (status, answer) = if auth.is_some_and(|a| header("authorization").as_deref() != Some(a)) {
        (
            401,
            serde_json::json!({"error_code": 401, "message": "Unauthorized"}),
        )
    } else if let (Some(subject), "POST") = (
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

/// `rowstream run` into `kafka` with `format = "avro"` and `registry` (the secure
/// one with `password`).
fn avro_service(
    server: &TestServer,
    kafka: &TestKafka,
    registry: &Registry,
    password: &str,
) -> Service {
    let keys = format!(
        "format = \"avro\"\n{}\n{}",
        kafka.topic_template(),
        registry.sink_keys(password)
    );
    Service::new(
        &format!("kafka-avro-{}", server.flavor.name()),
        ServiceConfig::for_server(server, Sink::kafka(kafka, &keys, "")),
    )
}

/// Every record of the topic: (key bytes, value bytes or None for a tombstone), in
/// offset order per partition.
fn consume(kafka: &TestKafka) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    consume_topic(&kafka.bootstrap(), &kafka.topic(TOPIC))
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

/// The workload through `registry` into the shared broker; every record decodes and
/// the latest row per key equals the table.
fn avro_into_kafka(flavor: Flavor, registry: fn() -> Registry) {
    let Some((server, kafka)) = server_with(flavor, SCHEMA, TestKafka::shared) else {
        return;
    };
    let registry = registry();
    let topic = kafka.topic(TOPIC);
    let mut svc = avro_service(&server, &kafka, &registry, REG_PASSWORD);
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
    let recs = consume(&kafka);
    assert!(recs.len() > 60, "only {} records", recs.len());
    for (k, v) in &recs {
        let (kid, kdatum) = frame(k);
        assert_eq!(registry.subject_of(kid), format!("{topic}-key"));
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
        assert_eq!(registry.subject_of(vid), format!("{topic}-value"));
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
        "{} via {}: {} Avro records decoded, {} rows match, value schema ids {value_ids:?}",
        flavor.name(),
        registry.url(),
        recs.len(),
        want.len()
    );
}

flavor_tests!(avro_into_kafka(Registry::start): mariadb_avro_records_decode_with_registered_schemas, mysql_avro_records_decode_with_registered_schemas);

/// The same through a registry that wants HTTPS (a CA made with openssl, given as
/// `schema_registry_ca_file`) and basic auth (`schema_registry_username` / `_password`),
/// as Confluent Cloud's do.
#[test]
fn mysql_avro_through_https_registry_with_basic_auth() {
    avro_into_kafka(Flavor::MySql, Registry::start_secure);
}

/// A registry that refuses the credentials, or whose certificate no configured CA
/// signed, stops rowstream (no endless retry) with a message naming the settings to fix.
#[test]
fn avro_registry_wrong_credentials_or_untrusted_ca_stop() {
    let Some((server, kafka)) = server_with(Flavor::MariaDb, SCHEMA, TestKafka::shared) else {
        return;
    };
    let registry = Registry::start_secure();
    server.exec("INSERT INTO s.a (id, u) VALUES (1, 1)");
    let wrong = avro_service(&server, &kafka, &registry, "not-the-password");
    let mut untrusted = avro_service(&server, &kafka, &registry, REG_PASSWORD);
    // The registry's CA dropped: only the built-in web roots remain.
    let ca_line = format!(
        "schema_registry_ca_file = {:?}\n",
        registry.certs.as_ref().unwrap().ca_file()
    );
    if let Sink::Other(t) = &mut untrusted.cfg.sink {
        *t = t.replace(&ca_line, "");
    }
    untrusted.write_config();
    for (mut svc, settings) in [
        (
            wrong,
            &[
                "schema_registry_username",
                "schema_registry_password",
                "HTTP 401",
            ][..],
        ),
        (untrusted, &["schema_registry_ca_file", "certificate"][..]),
    ] {
        svc.spawn();
        let status = svc.wait_exit(Duration::from_secs(90));
        let log = svc.log_text();
        assert!(!status.success(), "exit status {status}\n{log}");
        let fatal = log.lines().rev().find(|l| l.starts_with("rowstream:"));
        eprintln!("rowstream said: {}", fatal.unwrap_or("<nothing>"));
        assert!(
            fatal.is_some_and(|l| settings.iter().all(|s| l.contains(s))),
            "the error names {settings:?}:\n{}",
            svc.log_tail()
        );
        assert!(
            !log.contains(REG_PASSWORD) && !log.contains("not-the-password"),
            "the log shows a password:\n{log}"
        );
    }
}

/// A table of the column types whose Avro form a Confluent consumer must read right.
const TYPES_SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.c (id INT PRIMARY KEY, d DECIMAL(12,4), big BIGINT UNSIGNED, \
      n BIGINT, ts TIMESTAMP(6) NULL, dt DATETIME(3), dd DATE, tm TIME(3), \
      v VARCHAR(40), t TEXT, b VARBINARY(8), f DOUBLE, e ENUM('red','green'), j JSON) \
      DEFAULT CHARSET=utf8mb4";
const TYPES_TOPIC: &str = "svc.s.c";
const TYPES_COLS: [&str; 14] = [
    "id", "d", "big", "n", "ts", "dt", "dd", "tm", "v", "t", "b", "f", "e", "j",
];

/// `deploy/dev/confluent/run.sh`: Confluent's KafkaAvroDeserializer in a JVM.
fn confluent_reader() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dev/confluent/run.sh")
}

/// A JSON value the Java reader printed as the text the server prints (None for null).
fn json_as_text(col: &str, v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::String(s) if col == "j" => serde_json::from_str::<J>(s).unwrap().to_string(),
        // rowstream's temporal strings: ISO 8601 with `T`, TIMESTAMP in UTC with `Z`.
        J::String(s) if col == "ts" || col == "dt" => s.trim_end_matches('Z').replace('T', " "),
        J::String(s) => s.clone(),
        J::Number(n) if col == "f" => n.as_f64().unwrap().to_string(),
        J::Number(n) => n.to_string(),
        other => panic!("column {col}: unexpected {other}"),
    })
}

/// Confluent's own Java deserializer (`kafka-avro-serializer` 7.0.16, through
/// `deploy/dev/confluent/run.sh`) reads every key and value rowstream wrote, fetching
/// the schemas from the registry by id as any Confluent consumer does; replayed per
/// key, its values equal the table (decimals, unsigned BIGINT, timestamps, dates,
/// times, NULLs, strings with quotes and non-ASCII, bytes, doubles, enums, JSON).
#[test]
fn confluent_java_deserializer_reads_our_avro() {
    let Some((server, kafka)) = server_with(Flavor::MySql, TYPES_SCHEMA, TestKafka::shared) else {
        return;
    };
    let fetch = std::process::Command::new(confluent_reader())
        .arg("--fetch")
        .output()
        .expect("run deploy/dev/confluent/run.sh --fetch");
    if !fetch.status.success() {
        let why = String::from_utf8_lossy(&fetch.stderr);
        assert!(
            !common::require_servers(),
            "Confluent's deserializer cannot run here: {why}"
        );
        eprintln!("SKIP: Confluent's deserializer cannot run here: {why}");
        return;
    }
    let registry = Registry::start();
    let topic = kafka.topic(TYPES_TOPIC);
    let mut svc = avro_service(&server, &kafka, &registry, "");
    svc.spawn();
    let mut sql = String::new();
    for i in 1..=40i64 {
        sql.push_str(&format!(
            "INSERT INTO s.c VALUES ({i}, {}.{:04}, {}, {}, '2024-03-{:02} 0{}:00:00.{:06}', \
             '1999-12-31 23:59:{:02}.{:03}', '2024-02-{:02}', '{}:0{}:00.{:03}', \
             'v{i} \"q\" \u{e9}\u{4e2d}', REPEAT('t', {i}), X'{:02X}00FF', {}, '{}', \
             '{{\"k\": [{i}, null, \"x\"]}}');\n",
            i * 1000 - 20_000,
            i * 37 % 10_000,
            u64::MAX - i as u64,
            -i * 1_000_000_007,
            i % 28 + 1,
            i % 10,
            i * 12_345 % 1_000_000,
            i % 60,
            i * 7 % 1000,
            i % 28 + 1,
            i * 3 - 60,
            i % 10,
            i * 11 % 1000,
            i,
            i as f64 / 16.0 - 1.0,
            if i % 2 == 0 { "red" } else { "green" },
        ));
    }
    sql.push_str("INSERT INTO s.c (id) VALUES (100);\n"); // NULLs everywhere
    sql.push_str(
        "BEGIN; UPDATE s.c SET d = NULL, v = 'upd', ts = NULL WHERE id % 5 = 0; \
         DELETE FROM s.c WHERE id % 7 = 0; COMMIT;\n\
         UPDATE s.c SET id = id + 1000 WHERE id IN (3, 4);\n",
    );
    server.exec(&sql);
    svc.wait_caught_up(&server, Duration::from_secs(120));
    drop(svc);

    let mut cmd = std::process::Command::new(confluent_reader());
    cmd.args([&kafka.bootstrap(), &topic, &registry.url(), "120"]);
    let out = common::output_with_timeout(&mut cmd, None, Duration::from_secs(240));
    out.result("Confluent's KafkaAvroDeserializer reading the topic")
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eprintln!("Confluent's reader, first record: {}", lines[0]);
    let in_topic = consume_topic(&kafka.bootstrap(), &topic).len();
    assert_eq!(lines.len(), in_topic, "every record of the topic decoded");

    let mut latest: BTreeMap<i64, Option<BTreeMap<String, Option<String>>>> = BTreeMap::new();
    for l in &lines {
        let id = l["key"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("key: {l}"));
        let v = &l["value"];
        if v.is_null() {
            latest.insert(id, None);
            continue;
        }
        // The namespace is `<source name>.<db>.<table>` (the topic's test prefix aside).
        assert_eq!(l["value_schema"], "svc.s.c.Envelope", "{l}");
        let op = v["op"].as_str().unwrap();
        let img = &v[if op == "d" { "before" } else { "after" }];
        assert!(img.is_object(), "{op}: {l}");
        let row: BTreeMap<String, Option<String>> = TYPES_COLS
            .iter()
            .map(|c| (c.to_string(), json_as_text(c, &img[*c])))
            .collect();
        latest.insert(id, (op != "d").then_some(row));
    }
    let rows = server.query(
        "SET time_zone = '+00:00'; SELECT id, d, big, n, \
         DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f'), \
         dd, tm, v, t, HEX(b), f, e, j FROM s.c ORDER BY id",
    );
    let mut want: BTreeMap<i64, BTreeMap<String, Option<String>>> = BTreeMap::new();
    for r in rows {
        let mut m = BTreeMap::new();
        for (c, v) in TYPES_COLS.iter().zip(r) {
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
    let live: BTreeMap<i64, BTreeMap<String, Option<String>>> = latest
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect();
    for (id, w) in &want {
        assert_eq!(
            live.get(id),
            Some(w),
            "row {id} as Confluent's deserializer read it"
        );
    }
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "live keys"
    );
    eprintln!(
        "Confluent's KafkaAvroDeserializer decoded {} records; {} rows match",
        lines.len(),
        want.len()
    );
}
