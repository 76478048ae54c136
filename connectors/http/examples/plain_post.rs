//! The plain-client ceiling of `benches/http.sh`: posts the bodies the
//! sink sent (one per line of stdin, as `receiver` saved them) to URL, one
//! request at a time (as the sink does for one table), through a `reqwest`
//! client built like the sink's, failing on any non-2xx answer. All bodies
//! are read before the clock starts. Prints
//! `requests=N seconds=S requests_per_s=R` on stdout.
//!
//! ```text
//! plain_post URL < bodies.ndjson
//! ```
//!
//! Build: `cargo build --release --example plain_post -p rowstream-http`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::BufRead;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: plain_post URL < bodies.ndjson");
        std::process::exit(2)
    };
    let bodies: Vec<Vec<u8>> = std::io::stdin()
        .lock()
        .split(b'\n')
        .map(|l| l.expect("read stdin"))
        .filter(|l| !l.is_empty())
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("client");
    let t = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let resp = client
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("{i:032x}"))
            .body(b.clone())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        resp.bytes().await.expect("answer");
        assert!(status.is_success(), "request {i}: HTTP {status}");
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "requests={} seconds={s:.3} requests_per_s={:.0}",
        bodies.len(),
        bodies.len() as f64 / s
    );
}
