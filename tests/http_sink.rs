//! The `http` sink under `rowstream run` against a real source server (both
//! flavours) and a receiver started by the test ([`Receiver`]: a small
//! HTTP/1.1 server that records every request and answers 500, 429 with
//! `Retry-After`, hangs past the sink's timeout, resets the connection, or
//! 400 for chosen records):
//! - through a random workload, random receiver faults and 10 SIGKILLs of
//!   rowstream: folding the delivered and dead-lettered records by key
//!   (latest wins, duplicates dropped by record id) gives the tables; every
//!   duplicate delivery carries the same record content, and requests with
//!   the same first and last record the same idempotency key; the request
//!   rate stays under `rate_per_second`; every refused record is in the
//!   dead-letter file with the answer; every signature verifies;
//! - a Zoho-style mapping (`customers` -> `Leads`, renamed fields, static
//!   field, `duplicate_check_fields`) with OAuth tokens that expire before
//!   the sink thinks they do: bodies of at most 100 records in `{"data":
//!   [...]}` that fold to the table, tokens refreshed on 401, nothing lost;
//! - `on_error = "stop"`: a 400 stops rowstream with exit status 1 naming
//!   the URL, the status and the answer; the checkpoint stays before it.
//!
//! Skipped without server binaries unless `ROWSTREAM_TEST_REQUIRE_SERVERS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    gtid_key, json_text, seed, Flavor, Service, ServiceConfig, Sink, TestServer, Workload, MIXED,
    MIXED_SCHEMA,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// ---------------------------------------------------------------------------------------
// The receiver

/// One request as the receiver saw it, with its answer (0: none, hung or reset).
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    status: u16,
}

/// What the receiver does besides answering 200.
#[derive(Default)]
struct Rules {
    /// Probability of a fault (500, 429 + Retry-After: 1, hang, reset) per data request.
    fault_p: f64,
    /// How long a hang lasts before the connection is closed unanswered.
    hang: Duration,
    /// Records refused with 400 (the whole request).
    bad: Option<fn(&str) -> bool>,
    /// With OAuth: the life of a token at the receiver (the token endpoint
    /// announces `announce` seconds).
    token_life: Option<(Duration, u64)>,
}

struct State {
    seen: Vec<Seen>,
    rules: Rules,
    rng: StdRng,
    tokens: HashMap<String, Instant>,
    /// Data requests so far.
    data: u64,
}

/// The test's HTTP server on 127.0.0.1: a thread per connection, keep-alive.
struct Receiver {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    fn start(rules: Rules) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            seen: Vec::new(),
            rules,
            rng: StdRng::seed_from_u64(seed() ^ 0x4777),
            tokens: HashMap::new(),
            data: 0,
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Receiver { port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

enum Reply {
    Answer(u16, Vec<(String, String)>, String),
    Hang(Duration),
    Reset,
}

fn read_request(
    r: &mut BufReader<TcpStream>,
) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((path, headers, body))
}

fn serve(conn: TcpStream, st: &Mutex<State>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some((path, headers, body)) = read_request(&mut r) {
        let reply = decide(st, &path, &headers, &body);
        let status = match &reply {
            Reply::Answer(s, ..) => *s,
            _ => 0,
        };
        st.lock().unwrap().seen.push(Seen {
            at: Instant::now(),
            path,
            headers,
            body,
            status,
        });
        match reply {
            Reply::Answer(status, extra, text) => {
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\n", text.len());
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if w.write_all(head.as_bytes())
                    .and_then(|_| w.write_all(text.as_bytes()))
                    .is_err()
                {
                    return;
                }
            }
            Reply::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
            Reply::Reset => {
                reset(&w);
                return;
            }
        }
    }
}

/// Closes with RST (SO_LINGER 0).
fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn decide(st: &Mutex<State>, path: &str, headers: &HashMap<String, String>, body: &[u8]) -> Reply {
    let mut st = st.lock().unwrap();
    let ok = |s: u16, text: String| Reply::Answer(s, Vec::new(), text);
    if path == "/token" {
        let (life, announce) = st.rules.token_life.expect("OAuth rules");
        let form = String::from_utf8_lossy(body).to_string();
        if !form.contains("grant_type=refresh_token") || !form.contains("refresh_token=rt-1") {
            return ok(400, r#"{"error":"invalid_grant"}"#.into());
        }
        let token = format!("tok-{}", st.tokens.len() + 1);
        st.tokens.insert(token.clone(), Instant::now() + life);
        return ok(
            200,
            json!({"access_token": token, "expires_in": announce}).to_string(),
        );
    }
    if st.rules.token_life.is_some() {
        let valid = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| st.tokens.get(t))
            .is_some_and(|until| Instant::now() < *until);
        if !valid {
            return ok(401, r#"{"code":"INVALID_TOKEN"}"#.into());
        }
    }
    // With faults on, data requests 3, 6, 9 and 12 get one fault of each
    // kind, then faults come at random.
    st.data += 1;
    let p = st.rules.fault_p;
    let scripted = (st.data.is_multiple_of(3) && st.data <= 12).then(|| st.data / 3 - 1);
    if p > 0.0 && (scripted.is_some() || st.rng.gen_bool(p)) {
        let kind = match scripted {
            Some(k) => k,
            None => st.rng.gen_range(0..4),
        };
        return match kind {
            0 => ok(500, "oops".into()),
            1 => Reply::Answer(
                429,
                vec![("retry-after".into(), "1".into())],
                "slow down".into(),
            ),
            2 => Reply::Hang(st.rules.hang),
            _ => Reply::Reset,
        };
    }
    if let Some(bad) = st.rules.bad {
        if let Some(id) = records(body).iter().map(record_id).find(|id| bad(id)) {
            return ok(
                400,
                json!({"error": format!("record {id} refused")}).to_string(),
            );
        }
    }
    ok(200, r#"{"ok":true}"#.into())
}

/// The records of a body: a JSON array, or the `data` member's.
fn records(body: &[u8]) -> Vec<Value> {
    match serde_json::from_slice(body).unwrap_or(Value::Null) {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("data") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn record_id(r: &Value) -> String {
    r.get("id")
        .or(r.get("_id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// (GTID, n) of a record id `{gtid}:{n}`.
fn split_id(id: &str) -> (&str, u64) {
    let (g, n) = id.rsplit_once(':').unwrap();
    (g, n.parse().unwrap())
}

// ---------------------------------------------------------------------------------------
// Checks shared by the scenarios

/// Every data request carries a verifying Standard Webhooks signature, with
/// `webhook-id` = `Idempotency-Key`.
fn check_signatures(seen: &[Seen]) {
    let key = rowstream_http::encode::signing_key(SECRET).unwrap();
    for s in seen.iter().filter(|s| s.path != "/token") {
        let id = &s.headers["idempotency-key"];
        assert_eq!(&s.headers["webhook-id"], id);
        let ts: u64 = s.headers["webhook-timestamp"].parse().unwrap();
        let want = rowstream_http::encode::signature(&key, id, ts, &s.body);
        assert_eq!(
            s.headers["webhook-signature"], want,
            "request {id}: signature does not verify"
        );
    }
}

/// No more than `rate` data requests began in any second (+1 for a restart
/// of rowstream, whose new process starts its own budget).
fn check_rate(seen: &[Seen], rate: usize) {
    let at: Vec<Instant> = seen
        .iter()
        .filter(|s| s.path != "/token")
        .map(|s| s.at)
        .collect();
    for (i, t) in at.iter().enumerate() {
        let n = at[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_millis(950))
            .count();
        assert!(
            n <= rate + 1,
            "{n} requests within a second at request {i} (rate {rate})"
        );
    }
}

/// Requests with the same first and last record carry the same key, and
/// every record id always comes with the same content (`ts_ms`, the
/// processing time, aside).
/// Checks that requests with the same first and last record carry the same
/// key and a record delivered twice has the same content; returns the
/// duplicate deliveries and the requests that carried an already delivered
/// record under another key than its first delivery (regrouped).
fn check_duplicates(seen: &[Seen]) -> (usize, usize) {
    let mut keys: HashMap<(String, String), String> = HashMap::new();
    let mut content: HashMap<String, Value> = HashMap::new();
    let mut first_key: HashMap<String, String> = HashMap::new();
    let mut regrouped = std::collections::HashSet::new();
    let mut dups = 0;
    for s in seen
        .iter()
        .filter(|s| s.path != "/token" && !s.body.is_empty())
    {
        let recs = records(&s.body);
        let ends = (record_id(&recs[0]), record_id(recs.last().unwrap()));
        let key = keys
            .entry(ends.clone())
            .or_insert_with(|| s.headers["idempotency-key"].clone());
        assert_eq!(
            key, &s.headers["idempotency-key"],
            "requests {ends:?} with different keys"
        );
        let key = &s.headers["idempotency-key"];
        for mut r in recs {
            let k = first_key
                .entry(record_id(&r))
                .or_insert_with(|| key.clone());
            if k != key {
                regrouped.insert(key.clone());
            }
            r.as_object_mut().unwrap().remove("ts_ms");
            match content.get(&record_id(&r)) {
                Some(first) => {
                    dups += 1;
                    assert_eq!(
                        first,
                        &r,
                        "record {} delivered twice with different content",
                        record_id(&r)
                    );
                }
                None => {
                    content.insert(record_id(&r), r);
                }
            }
        }
    }
    (dups, regrouped.len())
}

fn dead_letters(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Random workload, faults and SIGKILLs

type Model = BTreeMap<String, Vec<Option<String>>>;

/// The model key and row of an `s.t` / `s.c` image.
fn image(table: &str, v: &Value) -> (String, Vec<Option<String>>) {
    match table {
        "t" => (
            v["id"].to_string(),
            vec![json_text(&v["id"]), json_text(&v["v"]), json_text(&v["n"])],
        ),
        _ => (
            format!("{}/{}", v["b"], v["a"]),
            vec![json_text(&v["a"]), json_text(&v["b"]), json_text(&v["x"])],
        ),
    }
}

fn server_model(srv: &TestServer, sql: &str) -> Model {
    srv.query(sql)
        .into_iter()
        .map(|r| {
            let key = if sql.contains("s.t") {
                r[0].clone().unwrap()
            } else {
                format!("{:?}/{}", r[1].clone().unwrap(), r[0].clone().unwrap())
            };
            (key, r)
        })
        .collect()
}

/// Folds envelopes by key in stream order, each record id once.
fn fold(flavor: Flavor, recs: Vec<Value>) -> HashMap<String, Model> {
    let mut by_id: BTreeMap<((String, u64), u64), Value> = BTreeMap::new();
    for r in recs {
        let id = record_id(&r);
        let (g, n) = split_id(&id);
        by_id.entry((gtid_key(flavor, g), n)).or_insert(r);
    }
    let mut out: HashMap<String, Model> = HashMap::new();
    for ev in by_id.into_values() {
        let table = ev["source"]["table"].as_str().unwrap().to_string();
        let m = out.entry(table.clone()).or_default();
        if ev["op"] != "c" {
            m.remove(&image(&table, &ev["before"]).0);
        }
        if ev["op"] != "d" {
            let (k, row) = image(&table, &ev["after"]);
            m.insert(k, row);
        }
    }
    out
}

fn bad_record(id: &str) -> bool {
    // Every 61st transaction (by its sequence number), first row.
    let (g, n) = split_id(id);
    let seq: u64 = g.rsplit([':', '-']).next().unwrap().parse().unwrap();
    seq.is_multiple_of(61) && n == 1
}

fn through_kills(flavor: Flavor) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    src.exec(MIXED_SCHEMA);
    let mut w = Workload::new(seed(), MIXED);
    src.exec(&w.script(60));
    let rx = Receiver::start(Rules {
        fault_p: 0.08,
        hang: Duration::from_millis(1300),
        bad: Some(bad_record),
        token_life: None,
    });
    let dir = common::TmpDir::new("http-dead");
    let dead = dir.join("dead.jsonl");
    let rate = 40;
    let sink = Sink::Other(format!(
        "type = \"http\"\nname = \"hook\"\nurl = {:?}\nsecret = {SECRET:?}\nbatch_records = 20\nlinger_ms = 20\n\
         timeout_ms = 1000\nretry_max_ms = 400\nrate_per_second = {rate}\nconcurrency = 2\n\
         on_error = \"dead_letter\"\ndead_letter = {:?}\nrequest_log = {:?}\n",
        rx.url("/in/{db}/{table}"),
        dead.display().to_string(),
        dir.join("requests.log").display().to_string()
    ));
    let mut svc = Service::new(
        &format!("http-kills-{}", flavor.name()),
        ServiceConfig::for_server(&src, sink),
    );
    let mut rng = StdRng::seed_from_u64(seed() ^ 0x6b11);
    svc.spawn();
    for _ in 0..10 {
        src.exec(&w.script(25));
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1200)));
        assert!(
            svc.kill9().is_none(),
            "rowstream exited by itself:\n{}",
            svc.log_tail()
        );
        svc.spawn();
    }
    src.exec(&w.script(25));
    svc.wait_caught_up(&src, Duration::from_secs(120));
    svc.stop(Duration::from_secs(30));

    let seen = rx.seen();
    check_signatures(&seen);
    check_rate(&seen, rate);
    let (dups, regrouped) = check_duplicates(&seen);
    // The request log regroups a replay as before. Only a replay whose
    // checkpoint fell inside an earlier request (a batch boundary inside a
    // settled request, see connectors/http journal) sends that request's
    // tail under a new key: at most one request per restart. Seen: 0 to 2
    // with the log; 3 with it disabled, so this bound guards the promise
    // but does not tell the two apart on a run this short.
    assert!(
        regrouped <= 10,
        "{regrouped} requests re-sent records under a new idempotency key after 10 restarts"
    );
    let faults = seen
        .iter()
        .filter(|s| s.status != 200 && s.status != 400)
        .count();
    let mut recs: Vec<Value> = seen
        .iter()
        .filter(|s| s.status == 200)
        .flat_map(|s| records(&s.body))
        .collect();
    let dl = dead_letters(&dead);
    let refused = seen.iter().filter(|s| s.status == 400).count();
    assert!(
        refused > 0 && !dl.is_empty(),
        "the workload must hit refused records ({refused} 400s)"
    );
    for d in &dl {
        assert_eq!(d["status"], 400);
        assert!(d["response"].as_str().unwrap().contains("refused"), "{d}");
        assert!(d["url"].as_str().unwrap().contains("/in/s/"), "{d}");
        let ids: Vec<String> = d["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(record_id)
            .collect();
        assert_eq!(json!(ids), d["record_ids"]);
        assert!(ids.iter().any(|i| bad_record(i)), "{d}");
        recs.extend(d["records"].as_array().unwrap().iter().cloned());
    }
    eprintln!(
        "{}: {} requests, {faults} faults, {refused} refused (400), {} dead letters, {dups} duplicate deliveries, {regrouped} regrouped",
        flavor.name(),
        seen.len(),
        dl.len()
    );
    let got = fold(flavor, recs);
    for (table, sql) in [
        ("t", "SELECT id, v, n FROM s.t"),
        ("c", "SELECT a, b, x FROM s.c"),
    ] {
        let want = server_model(&src, sql);
        let have = got.get(table).cloned().unwrap_or_default();
        let diff = common::differing_keys(&want, &have);
        assert!(
            diff.is_empty(),
            "s.{table}: {} keys differ, first {:?}: server {:?}, received {:?}",
            diff.len(),
            diff[0],
            want.get(&diff[0]),
            have.get(&diff[0])
        );
    }
}

flavor_tests!(through_kills: through_kills_mariadb, through_kills_mysql);

// ---------------------------------------------------------------------------------------
// 2. Zoho-style mapping with OAuth

const CUSTOMERS: &str = "CREATE DATABASE shop; CREATE TABLE shop.customers (id INT PRIMARY KEY, \
    email VARCHAR(100) NOT NULL, name VARCHAR(100) NOT NULL, ssn VARCHAR(20)) DEFAULT CHARSET=utf8mb4";

fn zoho(flavor: Flavor) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    src.exec(CUSTOMERS);
    // Tokens die after 1.5 s but are announced for 3 s: the sink meets 401s and refreshes.
    let rx = Receiver::start(Rules {
        token_life: Some((Duration::from_millis(1500), 3)),
        ..Rules::default()
    });
    let sink = Sink::Other(format!(
        "type = \"http\"\nname = \"crm\"\nurl = {:?}\nformat = \"rows\"\nwrap = \"data\"\nrate_per_second = 20\n\
         extra = {{ duplicate_check_fields = [\"Email\"] }}\n\
         [sinks.oauth]\ntoken_url = {:?}\nclient_id = \"cid\"\nclient_secret = \"cs\"\nrefresh_token = \"rt-1\"\nrefresh_margin_ms = 0\n\
         [sinks.mapping.\"shop.customers\"]\nmodule = \"Leads\"\nfields = {{ email = \"Email\", name = \"Last_Name\" }}\n\
         static = {{ Lead_Source = \"shop\" }}\non_delete = \"skip\"\n",
        rx.url("/crm/v8/{module}/upsert"),
        rx.url("/token"),
    ));
    let mut svc = Service::new(
        &format!("http-zoho-{}", flavor.name()),
        ServiceConfig::for_server(&src, sink),
    );
    svc.spawn();
    let mut next = 1;
    for round in 0..12 {
        let mut sql = String::from("BEGIN;");
        for _ in 0..40 {
            sql.push_str(&format!("INSERT INTO shop.customers VALUES ({next}, 'c{next}@example.com', 'Name {next}', 'ssn-{next}');"));
            next += 1;
        }
        sql.push_str(&format!(
            "UPDATE shop.customers SET name = CONCAT(name, ' r{round}') WHERE id % 7 = {};",
            round % 7
        ));
        sql.push_str(&format!(
            "DELETE FROM shop.customers WHERE id = {};COMMIT;",
            next - 3
        ));
        src.exec(&sql);
        std::thread::sleep(Duration::from_millis(300));
    }
    svc.wait_caught_up(&src, Duration::from_secs(120));
    svc.stop(Duration::from_secs(30));

    let seen = rx.seen();
    let tokens = seen.iter().filter(|s| s.path == "/token").count();
    let unauthorized = seen.iter().filter(|s| s.status == 401).count();
    assert!(
        tokens >= 2 && unauthorized >= 1,
        "{tokens} token requests, {unauthorized} 401s"
    );
    let mut folded: BTreeMap<String, (u64, (String, u64), Value)> = BTreeMap::new();
    for s in seen
        .iter()
        .filter(|s| s.status == 200 && s.path != "/token")
    {
        assert_eq!(s.path, "/crm/v8/Leads/upsert");
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["duplicate_check_fields"], json!(["Email"]), "{body}");
        let data = body["data"].as_array().unwrap();
        assert!(
            !data.is_empty() && data.len() <= 100,
            "{} records in one body",
            data.len()
        );
        for r in data {
            let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 5, "{r}");
            assert_eq!(r["Lead_Source"], "shop");
            assert_ne!(r["_op"], "d", "deletes are skipped");
            let (g, n) = split_id(r["_id"].as_str().unwrap());
            let order = (n, gtid_key(flavor, g));
            let email = r["Email"].as_str().unwrap().to_string();
            let e = folded
                .entry(email)
                .or_insert((0, (String::new(), 0), Value::Null));
            if (order.1.clone(), order.0) >= (e.1.clone(), e.0) {
                *e = (order.0, order.1, r.clone());
            }
        }
    }
    let rows = src.query("SELECT email, name FROM shop.customers");
    assert!(rows.len() > 400);
    for r in rows {
        let email = r[0].clone().unwrap();
        let got = folded
            .get(&email)
            .unwrap_or_else(|| panic!("{email} never sent"));
        assert_eq!(got.2["Last_Name"].as_str(), r[1].as_deref(), "{email}");
    }
    eprintln!(
        "{}: {} requests, {tokens} token requests, {unauthorized} 401s",
        flavor.name(),
        seen.len()
    );
}

flavor_tests!(zoho: zoho_mapping_mariadb, zoho_mapping_mysql);

// ---------------------------------------------------------------------------------------
// 3. on_error = "stop"

fn stops_on_refusal(flavor: Flavor) {
    let Some(src) = TestServer::start(flavor, &[]) else {
        return;
    };
    src.exec(MIXED_SCHEMA);
    src.exec(&Workload::new(seed(), MIXED).script(10));
    let rx = Receiver::start(Rules {
        bad: Some(|_| true),
        ..Rules::default()
    });
    let sink = Sink::Other(format!(
        "type = \"http\"\nname = \"hook\"\nurl = {:?}\n",
        rx.url("/hook/{table}")
    ));
    let mut svc = Service::new(
        &format!("http-stop-{}", flavor.name()),
        ServiceConfig::for_server(&src, sink),
    );
    svc.spawn();
    let st = svc
        .wait_exit_within(Duration::from_secs(60))
        .expect("rowstream stops");
    assert_eq!(st.code(), Some(1), "{}", svc.log_tail());
    let log = svc.log_text();
    assert!(
        log.contains("HTTP 400") && log.contains("/hook/") && log.contains("refused"),
        "{}",
        svc.log_tail()
    );
    let line = log.lines().rfind(|l| l.contains("HTTP 400")).unwrap();
    eprintln!("{}: {line}", flavor.name());
    assert!(svc
        .checkpoint_gtid()
        .is_none_or(|g| g.is_empty() || g != src.gtid_executed()));
}

flavor_tests!(stops_on_refusal: stops_on_refusal_mariadb, stops_on_refusal_mysql);
