//! A scripted HTTP/1.1 server on 127.0.0.1 for the crate's tests: a thread
//! per connection, keep-alive, every request's path recorded, answers
//! chosen by the test's script from the path and how many requests that
//! path had before. Each test binary uses a part of it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// (path, n-th request to that path) -> (status, extra header, body).
pub type Script =
    dyn Fn(&str, usize) -> (u16, Option<(&'static str, String)>, String) + Send + Sync;

/// A running server: its port and the paths requested, in order.
pub struct Server {
    pub port: u16,
    pub paths: Arc<Mutex<Vec<String>>>,
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

/// Starts a server answering by `script`.
pub fn server(script: Box<Script>) -> Server {
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
