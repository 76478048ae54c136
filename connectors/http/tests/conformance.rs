//! The sink kit's conformance test (`rowstream_api::testing::conformance`)
//! against the HTTP sink and a minimal receiver started here (answers 200,
//! except 400 to requests for table `shop.strict`), with `on_error =
//! "stop"`; two tables in flight at once (`concurrency = 2`). Also checks
//! that the sink's metric families are registered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use rowstream_api::testing::conformance::{check, good_batch, Provoke};
use rowstream_api::testing::{batch_of, change};
use rowstream_api::{Record, Row, Value};
use rowstream_http::HttpSinkConfig;

/// Serves one keep-alive connection: 400 for paths under `/shop/strict`.
fn serve(conn: TcpStream) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let (status, text) = if path.starts_with("/shop/strict") {
            (400, "{\"error\":\"strict refuses everything\"}")
        } else {
            (200, "{}")
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            std::thread::spawn(move || serve(c));
        }
    });
    let mut cfg = HttpSinkConfig::new("hook", format!("http://127.0.0.1:{port}/{{db}}/{{table}}"));
    cfg.batch_records = 2;
    cfg.concurrency = 2;
    check(&cfg, &good_batch, Provoke::Batch(Box::new(refused))).await;
    let exposed = rowstream_api::metrics::render();
    assert!(
        exposed.contains("rowstream_http_requests_total{sink=\"hook\"}"),
        "{exposed}"
    );
}
