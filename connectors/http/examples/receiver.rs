//! The receiver of `benches/http.sh`: an HTTP/1.1 server on 127.0.0.1 that
//! answers every request `200 {}` at once (keep-alive), counts requests
//! and the records in their bodies, and appends every body as one line to
//! SAVE_FILE (`/dev/null` to keep nothing), so the plain client can post
//! exactly the same bodies afterwards.
//!
//! ```text
//! receiver PORT SAVE_FILE
//! ```
//!
//! Prints `requests=N bytes=B` on stdout when it gets SIGTERM or SIGINT
//! (after flushing SAVE_FILE). Build:
//! `cargo build --release --example receiver -p rowstream-http`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
    save: Mutex<std::io::BufWriter<std::fs::File>>,
}

async fn serve(conn: TcpStream, c: Arc<Counts>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut len = 0usize;
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).await?;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(len as u64, Ordering::Relaxed);
        {
            let mut s = c.save.lock().unwrap_or_else(|e| e.into_inner());
            s.write_all(&body)?;
            s.write_all(b"\n")?;
        }
        w.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}",
        )
        .await?;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, save] = args.as_slice() else {
        eprintln!("usage: receiver PORT SAVE_FILE");
        std::process::exit(2)
    };
    let file = std::fs::File::create(save).unwrap_or_else(|e| panic!("{save}: {e}"));
    let c = Arc::new(Counts {
        requests: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        save: Mutex::new(std::io::BufWriter::with_capacity(1 << 20, file)),
    });
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>().expect("a port")))
        .await
        .expect("bind");
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    loop {
        tokio::select! {
            a = listener.accept() => {
                if let Ok((conn, _)) = a {
                    let c = c.clone();
                    tokio::spawn(async move { let _ = serve(conn, c).await; });
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    c.save
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .flush()
        .expect("flush");
    println!(
        "requests={} bytes={}",
        c.requests.load(Ordering::Relaxed),
        c.bytes.load(Ordering::Relaxed)
    );
}
