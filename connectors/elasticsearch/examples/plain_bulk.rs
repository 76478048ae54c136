//! The bulk-loading ceiling for `benches/elasticsearch.sh`: the same documents
//! rowstream indexes, sent by a plain loader with nothing else to do.
//!
//! ```text
//! plain_bulk URL MAPPING_FILE DST_INDEX BULK_DOCS < envelopes.ndjson
//! ```
//!
//! Reads change envelopes (as `rowstream tail` prints them) from stdin and
//! turns each into the action rowstream's sink sends for it: an `index` of
//! the after-image with `_id` = `[id]` and an external version (increasing
//! per line), or a `delete` of the before-image's id. All request bodies are
//! built before the clock starts. Creates DST_INDEX with the mapping in
//! MAPPING_FILE (the `mappings` object of the index rowstream created, as
//! `GET /<index>/_mapping` shows it), then sends the bodies of BULK_DOCS actions
//! one request at a time (as the sink does) through the sink's own HTTP
//! client, fails on any item error, and prints
//! `docs=N seconds=S docs_per_s=R` on stdout.
//!
//! Build: `cargo build --release --example plain_bulk -p rowstream-elasticsearch`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::BufRead;
use std::time::Instant;

use rowstream_elasticsearch::client::Client;
use rowstream_elasticsearch::ElasticsearchSinkConfig;
use serde_json::Value;

fn usage() -> ! {
    eprintln!("usage: plain_bulk URL MAPPING_FILE DST_INDEX BULK_DOCS < envelopes.ndjson");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, mapping, dst, bulk_docs] = args.as_slice() else {
        usage()
    };
    let bulk_docs: usize = bulk_docs.parse().unwrap_or_else(|_| usage());
    let client = Client::new(&ElasticsearchSinkConfig::new("plain", url.as_str()))
        .unwrap_or_else(|e| panic!("client: {e}"));

    let mut bodies: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut body = Vec::new();
    let mut in_body = 0usize;
    let mut docs = 0usize;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.expect("read stdin");
        let ev: Value = serde_json::from_str(&line).expect("an envelope per line");
        let version = n as u64 + 1;
        if ev["after"].is_object() {
            let id = format!("[{}]", ev["after"]["id"]);
            let action = serde_json::json!({"index": {"_index": dst, "_id": id, "version": version, "version_type": "external"}});
            serde_json::to_writer(&mut body, &action).unwrap();
            body.push(b'\n');
            serde_json::to_writer(&mut body, &ev["after"]).unwrap();
        } else {
            let id = format!("[{}]", ev["before"]["id"]);
            let action = serde_json::json!({"delete": {"_index": dst, "_id": id, "version": version, "version_type": "external"}});
            serde_json::to_writer(&mut body, &action).unwrap();
        }
        body.push(b'\n');
        in_body += 1;
        docs += 1;
        if in_body == bulk_docs {
            bodies.push((std::mem::take(&mut body), in_body));
            in_body = 0;
        }
    }
    if in_body > 0 {
        bodies.push((body, in_body));
    }

    let mapping: Value = serde_json::from_slice(
        &std::fs::read(mapping).unwrap_or_else(|e| panic!("{mapping}: {e}")),
    )
    .unwrap_or_else(|e| panic!("{mapping}: {e}"));
    client
        .create_index(dst, &serde_json::json!({ "mappings": mapping }))
        .await
        .unwrap_or_else(|e| panic!("create {dst}: {e}"));

    let t = Instant::now();
    for (body, n) in bodies {
        match client.bulk(body, n).await {
            Ok(None) => {}
            Ok(Some(items)) => {
                let bad = items.iter().find(|i| !(200..300).contains(&i.status));
                if let Some(b) = bad {
                    panic!("bulk item failed: {} {:?}", b.status, b.error);
                }
            }
            Err(e) => panic!("bulk: {e}"),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "docs={docs} seconds={secs:.2} docs_per_s={:.0}",
        docs as f64 / secs
    );
}
