//! The client's answer classification against a scripted local server:
//! `Retry-After` is waited out, a 400 is refused with the answer, OAuth
//! refreshes once on a 401 and a second 401 is fatal, and the request rate
//! holds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod scripted;

use std::time::{Duration, Instant};

use rowstream_api::metrics::Family;
use rowstream_http::client::{Answer, Client, Request};
use rowstream_http::{HttpSinkConfig, OAuthConfig};
use scripted::{server, Server};

static TEST_COUNTER: Family = Family::counter("rowstream_http_test_total", "test", "sink");

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
