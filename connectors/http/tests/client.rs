//! The client's answer classification against a scripted local server:
//! `Retry-After` is waited out, a 400 is refused with the answer, OAuth
//! refreshes once on a 401 and a second 401 is fatal, and the request rate
//! holds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rowstream_api::metrics::Family;
use rowstream_http::client::{Answer, Client, Request};
use rowstream_http::{HttpSinkConfig, OAuthConfig};

static TEST_COUNTER: Family = Family::counter("rowstream_http_test_total", "test", "sink");

/// (path, n-th request to that path) -> (status, extra header, body).
type Script = dyn Fn(&str, usize) -> (u16, Option<(&'static str, String)>, String) + Send + Sync;

struct Server {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
}

fn serve(conn: TcpStream, script: &Script, paths: &Mutex<Vec<String>>) {
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
            r.read_line(&mut h).unwrap();
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
        let n = {
            let mut p = paths.lock().unwrap();
            p.push(path.clone());
            p.iter().filter(|q| **q == path).count() - 1
        };
        let (status, header, text) = script(&path, n);
        let extra = header.map_or(String::new(), |(k, v)| format!("{k}: {v}\r\n"));
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}\r\n{text}",
            text.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn server(script: Box<Script>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let (p, script) = (paths.clone(), Arc::<Script>::from(script));
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            let (p, s) = (p.clone(), script.clone());
            std::thread::spawn(move || serve(c, &*s, &p));
        }
    });
    Server { port, paths }
}

fn client(cfg: &HttpSinkConfig) -> Client {
    Client::new(cfg, TEST_COUNTER.with("r"), TEST_COUNTER.with("b")).unwrap()
}

fn request(s: &Server) -> Request {
    Request {
        url: format!("http://127.0.0.1:{}/in", s.port),
        body: b"[]".to_vec(),
        key: "k".into(),
    }
}

#[tokio::test]
async fn retry_after_refusal_and_rate() {
    let s = server(Box::new(|_, n| match n {
        0 => (429, Some(("retry-after", "1".into())), "slow".into()),
        1 => (503, None, "down".into()),
        2 => (400, None, "{\"error\":\"bad Email\"}".into()),
        _ => (200, None, "{}".into()),
    }));
    let mut cfg = HttpSinkConfig::new("c", "http://x/{table}");
    cfg.retry_max_ms = 50;
    cfg.rate_per_second = Some(20.0);
    let c = client(&cfg);
    let t = Instant::now();
    assert_eq!(
        c.deliver(&request(&s)).await,
        Answer::Refused {
            status: 400,
            body: "{\"error\":\"bad Email\"}".into()
        }
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured: {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    for _ in 0..10 {
        assert_eq!(c.deliver(&request(&s)).await, Answer::Delivered);
    }
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "20/s: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn oauth_refreshes_once_then_stops() {
    let s = server(Box::new(|path, n| match path {
        "/token" => (
            200,
            None,
            format!("{{\"access_token\":\"t{n}\",\"expires_in\":3600}}"),
        ),
        _ => (401, None, "{\"code\":\"INVALID_TOKEN\"}".into()),
    }));
    let mut cfg = HttpSinkConfig::new("c", "http://x/{table}");
    cfg.oauth = Some(OAuthConfig {
        token_url: format!("http://127.0.0.1:{}/token", s.port),
        client_id: "i".into(),
        client_secret: "cs".into(),
        refresh_token: "rt".into(),
        refresh_margin_ms: 0,
    });
    let c = client(&cfg);
    match c.deliver(&request(&s)).await {
        Answer::Fatal(m) => assert!(m.contains("HTTP 401") && m.contains("credentials"), "{m}"),
        a => panic!("{a:?}"),
    }
    let paths = s.paths.lock().unwrap().clone();
    assert_eq!(paths, ["/token", "/in", "/token", "/in"]);
}
