//! `rowstream run` with an Elasticsearch sink, against a real source server and a real
//! OpenSearch 2.19 node (`deploy/dev/start-opensearch.sh`): the test binary's shared node
//! (indices prefixed per test) for ordinary tests, a node of its own for the test that
//! kills it.
//!
//! A random insert / update / delete workload (primary-key changes included, on a table
//! with a single-column key and one with a composite key) runs while rowstream streams
//! into the indices. Once the checkpoint covers the server's GTID set, every index is
//! compared with its table (`SELECT`): the same ids (the key as a JSON array), the same
//! field values, nothing more. Then:
//! - replaying the whole binlog from the start (fresh checkpoint, `start = "earliest"`)
//!   leaves every document and its `_version` unchanged (external versions: 409s);
//! - killing rowstream (SIGKILL) and freezing or SIGKILLing the node at random moments
//!   loses nothing;
//! - a document the index refuses goes to the dead-letter file (`on_error =
//!   "dead_letter"`) or stops the service without advancing the checkpoint (`"stop"`);
//! - a table without a primary key stops the service with a message naming it;
//! - through a node with HTTPS (a CA made with openssl, the sink's `ca_file`) and basic
//!   authentication (`username` / `password`) the workload arrives the same, and a wrong
//!   password stops the service with a message naming those settings.
//!
//! Truth is the source server: its final table contents and GTID set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{
    differing_keys, int_or_null, json_text, key_json, kill_and_freeze, seed, server_with,
    stream_workload, Flavor, Service, ServiceConfig, Sink, Tables, TestSearch, TestServer,
    Workload,
};
use rand::Rng;
use serde_json::Value;

const SCHEMA: &str = "CREATE DATABASE s; \
    CREATE TABLE s.t (id BIGINT PRIMARY KEY, v VARCHAR(100) NOT NULL, n INT NULL, \
      p DECIMAL(10,2) NULL, at DATETIME(3) NULL) DEFAULT CHARSET=utf8mb4; \
    CREATE TABLE s.c (a INT NOT NULL, b VARCHAR(10) NOT NULL, x INT NOT NULL, PRIMARY KEY (b, a)) DEFAULT CHARSET=utf8mb4";

/// Columns compared, as SQL expressions giving the text of the JSON value.
const T_COLS: &[(&str, &str)] = &[
    ("id", "id"),
    ("v", "v"),
    ("n", "n"),
    ("p", "p"),
    ("at", "REPLACE(CAST(at AS CHAR), ' ', 'T')"),
];
const C_COLS: &[(&str, &str)] = &[("a", "a"), ("b", "b"), ("x", "x")];

/// The workload's rows of `s.t` in [`SCHEMA`].
const TABLES: Tables = Tables {
    t_values: |rng| {
        let v: u32 = rng.gen();
        let n = int_or_null(rng);
        let p = rng.gen_range(-99999..99999);
        let ms = rng.gen_range(0..86_400_000u64);
        format!(
            "'v{v}-\"q\" é', {n}, {p}/100, \
             TIMESTAMPADD(MICROSECOND, {ms}000, '2024-02-29 00:00:00.000')"
        )
    },
    t_update: |rng| format!("v = 'u{}', n = n + 1, p = NULL", rng.gen::<u32>()),
};

/// `rowstream run` into `search` (indices behind the handle's prefix) with extra lines
/// in the `[[sinks]]` table.
fn es_service(server: &TestServer, search: &TestSearch, extra: &str) -> Service {
    let extra = format!("{}\n{extra}", search.index_template());
    Service::new(
        server.flavor.name(),
        ServiceConfig::for_server(server, Sink::elasticsearch(search, &extra)),
    )
}

/// One HTTP call to the search server through curl (with its CA and credentials when it
/// is secure); returns (status, body as JSON).
fn http(search: &TestSearch, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(search.curl_args());
    cmd.args([
        "-s",
        "-m",
        "30",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        url,
    ]);
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Every document of `index` (behind the handle's prefix): id -> (`_version`, `_source`).
fn documents(search: &TestSearch, index: &str) -> BTreeMap<String, (u64, Value)> {
    let index = search.index(index);
    let (st, _) = http(
        search,
        "POST",
        &format!("{}/{index}/_refresh", search.url()),
        None,
    );
    assert_eq!(st, 200, "refresh {index}");
    let (st, v) = http(
        search,
        "GET",
        &format!("{}/{index}/_search?size=10000&version=true", search.url()),
        None,
    );
    assert_eq!(st, 200, "search {index}: {v}");
    let hits = v["hits"]["hits"].as_array().expect("hits");
    assert!(hits.len() < 10000, "index {index} too large for one page");
    hits.iter()
        .map(|h| {
            (
                h["_id"].as_str().unwrap().to_string(),
                (
                    h["_version"].as_u64().expect("_version"),
                    h["_source"].clone(),
                ),
            )
        })
        .collect()
}

/// Checks that `index` holds exactly the rows of `table`: same ids (the key columns as a
/// JSON array in key order), same values, no other document. Returns the document count.
fn check_index(
    server: &TestServer,
    search: &TestSearch,
    index: &str,
    table: &str,
    cols: &[(&str, &str)],
    key: &[&str],
) -> usize {
    let docs = documents(search, index);
    let exprs: Vec<&str> = cols.iter().map(|c| c.1).collect();
    let rows = server.query(&format!("SELECT {} FROM {table}", exprs.join(", ")));
    let mut want: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for row in rows {
        let id: Vec<Value> = key
            .iter()
            .map(|k| {
                let i = cols.iter().position(|c| c.0 == *k).unwrap();
                key_json(k, row[i].clone().unwrap())
            })
            .collect();
        want.insert(Value::Array(id).to_string(), row);
    }
    let got: BTreeMap<String, Vec<Option<String>>> = docs
        .iter()
        .map(|(id, (_, src))| {
            let canon = serde_json::from_str::<Value>(id)
                .unwrap_or_else(|e| panic!("{index}: _id {id:?} is not a JSON array: {e}"))
                .to_string();
            (canon, cols.iter().map(|c| json_text(&src[c.0])).collect())
        })
        .collect();
    let diff = differing_keys(&got, &want);
    if !diff.is_empty() {
        let detail: Vec<String> = diff
            .iter()
            .take(20)
            .map(|k| format!("  {k}: index {:?} / table {:?}", got.get(k), want.get(k)))
            .collect();
        panic!(
            "{index}: {} documents, {} rows in {table}; {} differ:\n{}",
            got.len(),
            want.len(),
            diff.len(),
            detail.join("\n")
        );
    }
    got.len()
}

/// The server's `Source::sequence` now: MariaDB, the sum of the domains' seq_no; MySQL,
/// the number of GTIDs in gtid_executed.
fn server_sequence(server: &TestServer) -> u64 {
    let set = server.gtid_executed();
    match server.flavor {
        Flavor::MariaDb => set
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|g| g.trim().rsplit('-').next().unwrap().parse::<u64>().unwrap())
            .sum(),
        Flavor::MySql => set
            .split(',')
            .flat_map(|uuid_set| uuid_set.trim().split(':').skip(1))
            .filter(|iv| iv.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .map(|iv| match iv.split_once('-') {
                Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
                None => 1,
            })
            .sum(),
    }
}

fn workload_into_index(flavor: Flavor) {
    let Some((server, search)) = server_with(flavor, SCHEMA, TestSearch::shared) else {
        return;
    };
    let mut svc = es_service(&server, &search, "bulk_docs = 200");
    let mut w = Workload::new(seed(), TABLES);
    // The last transaction changes one known row: its version names the transaction.
    let last = "INSERT INTO s.c VALUES (1000, 'last', 0)";
    stream_workload(&mut svc, &server, &mut w, last, Duration::from_secs(180));
    let n_t = check_index(&server, &search, "s.t", "s.t", T_COLS, &["id"]);
    let n_c = check_index(&server, &search, "s.c", "s.c", C_COLS, &["b", "a"]);
    eprintln!(
        "{}: s.t {n_t} documents, s.c {n_c} documents match",
        flavor.name()
    );
    assert!(n_t > 0 && n_c > 0);

    let before_t = documents(&search, "s.t");
    let before_c = documents(&search, "s.c");
    let (last_version, _) = &before_c[r#"["last",1000]"#];
    assert_eq!(
        (last_version >> 24, last_version & 0xff_ffff),
        (server_sequence(&server), 1),
        "the last transaction's version is (server sequence << 24 | order 1)"
    );
    let index = search.index("s.t");
    let mapping = http(
        &search,
        "GET",
        &format!("{}/{index}/_mapping", search.url()),
        None,
    )
    .1;
    let props = &mapping[&index]["mappings"]["properties"];
    assert_eq!(props["id"]["type"], "long", "{mapping}");
    assert_eq!(props["v"]["type"], "text", "{mapping}");
    assert_eq!(props["at"]["type"], "date", "{mapping}");
    assert_eq!(props["p"]["type"], "keyword", "{mapping}");

    // Replay everything from the start with a fresh checkpoint: nothing changes.
    let mut replay = es_service(&server, &search, "bulk_docs = 200");
    replay.spawn();
    replay.wait_caught_up(&server, Duration::from_secs(180));
    replay.stop(Duration::from_secs(60));
    let after_t = documents(&search, "s.t");
    let after_c = documents(&search, "s.c");
    assert!(before_t == after_t, "s.t changed by the replay");
    assert!(before_c == after_c, "s.c changed by the replay");
    eprintln!(
        "{}: replay from the start left {} + {} documents and their versions unchanged",
        flavor.name(),
        after_t.len(),
        after_c.len()
    );
}

flavor_tests!(workload_into_index: mariadb_workload_into_index, mysql_workload_into_index);

/// Kills rowstream (SIGKILL) and, at other random moments, the search node: frozen
/// (SIGSTOP for up to 1.5 s, then SIGCONT: requests time out and are retried), or every
/// other time (the first) SIGKILLed and started again on its data, while the workload runs;
/// afterwards every index equals its table.
fn kills_lose_nothing(flavor: Flavor) {
    let Some((server, search)) = server_with(flavor, SCHEMA, TestSearch::start) else {
        return;
    };
    let mut svc = es_service(&server, &search, "bulk_docs = 50\ntimeout_ms = 1000");
    let mut round = 0u32;
    let chaos = kill_and_freeze(&mut svc, &server, &search, TABLES, (40, 0.6), |freeze| {
        round += 1;
        if round % 2 == 1 {
            search.kill();
            search.restart();
        } else {
            freeze();
        }
    });
    let n_t = check_index(&server, &search, "s.t", "s.t", T_COLS, &["id"]);
    let n_c = check_index(&server, &search, "s.c", "s.c", C_COLS, &["b", "a"]);
    eprintln!(
        "{}: {n_t} + {n_c} documents match after {} node SIGKILLs",
        flavor.name(),
        round.div_ceil(2)
    );
    assert_eq!(
        chaos.restarts, 0,
        "rowstream must ride out an unresponsive or restarted server"
    );
}

flavor_tests!(kills_lose_nothing: mariadb_kills_lose_nothing, mysql_kills_lose_nothing);

/// An index whose mapping makes `v` a number: rows with a non-numeric `v` are refused
/// with a mapping error.
fn strict_index(search: &TestSearch) {
    let (st, v) = http(
        search,
        "PUT",
        &format!("{}/{}", search.url(), search.index("s.t")),
        Some(r#"{"mappings":{"properties":{"v":{"type":"long"}}}}"#),
    );
    assert_eq!(st, 200, "create s.t: {v}");
}

#[test]
fn refused_documents_go_to_the_dead_letter_file() {
    let Some((server, search)) = server_with(Flavor::MariaDb, SCHEMA, TestSearch::shared) else {
        return;
    };
    strict_index(&search);
    let dead =
        std::env::temp_dir().join(format!("rowstream-es-dead-{}.ndjson", std::process::id()));
    let _ = std::fs::remove_file(&dead);
    let mut svc = es_service(
        &server,
        &search,
        &format!(
            "on_error = \"dead_letter\"\ndead_letter_file = {:?}",
            dead.display().to_string()
        ),
    );
    server.exec(
        "INSERT INTO s.t (id, v) VALUES (1, '11'), (2, 'not a number'), (3, '33'); \
         INSERT INTO s.t (id, v) VALUES (4, 'nope')",
    );
    svc.spawn();
    svc.wait_caught_up(&server, Duration::from_secs(60));
    svc.stop(Duration::from_secs(60));
    let lines: Vec<Value> = std::fs::read_to_string(&dead)
        .expect("dead-letter file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    let _ = std::fs::remove_file(&dead);
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["[2]", "[4]"], "{lines:?}");
    for l in &lines {
        assert_eq!(l["index"], search.index("s.t").as_str());
        assert_eq!(l["op"], "c");
        assert_eq!(l["status"], 400);
        assert!(
            l["reason"]
                .as_str()
                .unwrap()
                .contains("mapper_parsing_exception"),
            "{l}"
        );
        assert!(l["gtid"].as_str().unwrap().starts_with("0-"), "{l}");
        assert_eq!(
            l["document"]["id"],
            l["id"].as_str().unwrap()[1..2].parse::<i64>().unwrap()
        );
    }
    let docs = documents(&search, "s.t");
    let got: Vec<&str> = docs.keys().map(String::as_str).collect();
    assert_eq!(got, ["[1]", "[3]"]);
}

#[test]
fn on_error_stop_exits_without_advancing_the_checkpoint() {
    let Some((server, search)) = server_with(Flavor::MariaDb, SCHEMA, TestSearch::shared) else {
        return;
    };
    strict_index(&search);
    let mut svc = es_service(&server, &search, "");
    server.exec("INSERT INTO s.t (id, v) VALUES (1, '11')");
    svc.spawn();
    svc.wait_caught_up(&server, Duration::from_secs(60));
    let before = svc.checkpoint_gtid();
    server.exec("INSERT INTO s.t (id, v) VALUES (2, 'not a number')");
    let status = svc.wait_exit(Duration::from_secs(60));
    let log = svc.log_text();
    assert!(!status.success(), "exit status {status}\n{log}");
    assert!(
        log.contains("refused document")
            && log.contains("mapper_parsing_exception")
            && log.contains("dead_letter"),
        "the error names the document, the reason and the option:\n{}",
        svc.log_tail()
    );
    let fatal = log.lines().rev().find(|l| l.starts_with("rowstream:"));
    eprintln!("rowstream said: {}", fatal.unwrap_or("<nothing>"));
    assert_eq!(
        svc.checkpoint_gtid(),
        before,
        "the checkpoint must not pass the refused row"
    );
    assert_ne!(before.as_deref(), Some(server.gtid_executed().as_str()));
}

#[test]
fn table_without_primary_key_is_refused() {
    let Some(server) = TestServer::start(Flavor::MariaDb, &[]) else {
        return;
    };
    let Some(search) = TestSearch::shared() else {
        return;
    };
    server.exec("CREATE DATABASE s; CREATE TABLE s.nokey (u VARCHAR(20) NOT NULL, x INT)");
    server.exec("INSERT INTO s.nokey VALUES ('a', 1)");
    let mut svc = es_service(&server, &search, "");
    svc.spawn();
    let status = svc.wait_exit(Duration::from_secs(60));
    let log = svc.log_text();
    assert!(!status.success(), "exit status {status}\n{log}");
    assert!(
        log.contains("s.nokey has no primary key") && log.contains("key_columns"),
        "the error names the table and the option:\n{}",
        svc.log_tail()
    );
    assert!(svc
        .checkpoint_gtid()
        .is_none_or(|g| g != server.gtid_executed()));
    // With key_columns it goes through.
    let mut svc = es_service(
        &server,
        &search,
        "[sinks.key_columns]\n\"s.nokey\" = [\"u\"]",
    );
    svc.spawn();
    svc.wait_caught_up(&server, Duration::from_secs(60));
    svc.stop(Duration::from_secs(60));
    let docs = documents(&search, "s.nokey");
    assert_eq!(docs.keys().collect::<Vec<_>>(), [r#"["a"]"#]);
}

/// A node with HTTPS and basic auth (`start-opensearch.sh --secure`: OpenSearch's own
/// secure HTTP transport with a certificate signed by a CA made with openssl, and 401 for
/// requests without the user's credentials): the workload streams through `ca_file` +
/// `username` / `password` and every index equals its table; a wrong password stops
/// rowstream (no endless retry) with a message naming `username` and `password`, and
/// does not show the password.
#[test]
fn tls_and_basic_auth_against_the_real_node() {
    let Some((server, search)) = server_with(Flavor::MySql, SCHEMA, TestSearch::start_secure)
    else {
        return;
    };
    assert!(search.url().starts_with("https://"));
    let auth = |password: &str| {
        format!(
            "username = {:?}\npassword = {password:?}\nca_file = {:?}",
            TestSearch::USER,
            search.ca_file()
        )
    };
    let mut svc = es_service(&server, &search, &auth(TestSearch::PASSWORD));
    let mut w = Workload::new(seed(), TABLES);
    // The random workload may leave s.c empty; one known row makes `n_c > 0` a check of
    // the sink, not of the seed.
    let last = "INSERT INTO s.c VALUES (1000, 'last', 0)";
    stream_workload(&mut svc, &server, &mut w, last, Duration::from_secs(180));
    let n_t = check_index(&server, &search, "s.t", "s.t", T_COLS, &["id"]);
    let n_c = check_index(&server, &search, "s.c", "s.c", C_COLS, &["b", "a"]);
    assert!(n_t > 0 && n_c > 0);
    eprintln!("https + basic auth: s.t {n_t} documents, s.c {n_c} documents match");

    let mut wrong = es_service(&server, &search, &auth("not-the-password"));
    wrong.spawn();
    let status = wrong.wait_exit(Duration::from_secs(90));
    let log = wrong.log_text();
    assert!(!status.success(), "exit status {status}\n{log}");
    let fatal = log.lines().rev().find(|l| l.starts_with("rowstream:"));
    eprintln!("rowstream said: {}", fatal.unwrap_or("<nothing>"));
    assert!(
        fatal
            .is_some_and(|l| l.contains("401") && l.contains("username") && l.contains("password")),
        "the error names username/password:\n{}",
        wrong.log_tail()
    );
    assert!(
        !log.contains("not-the-password") && !log.contains(TestSearch::PASSWORD),
        "the log shows a password:\n{log}"
    );
}
