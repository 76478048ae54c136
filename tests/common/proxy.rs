//! [`FaultProxy`]: a TCP proxy on a loopback port in front of one server, which a test
//! uses to break the network between rowstream and that server on command: cut every
//! connection now ([`FaultProxy::cut`]) or after N more bytes, so the cut lands inside an
//! event or a request ([`FaultProxy::cut_after`]), stop forwarding without closing
//! ([`FaultProxy::stall`]), forward slowly ([`FaultProxy::trickle`]), and close new
//! connections at once for a while ([`FaultProxy::refuse_for`]). It counts connections
//! and bytes each way.
//!
//! Invariants: plain std threads (two pumps per connection, one acceptor); every socket
//! read has a short timeout so a pump sees a command within ~50 ms, and nothing blocks
//! forever; a pump that ends shuts both sockets of its connection (a half-open pair would
//! look like a stall); dropping the proxy closes every connection and stops its threads.
//! Faults never alter bytes: what arrives is a prefix of what was sent.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a blocked pump or the acceptor looks at the commands.
const POLL: Duration = Duration::from_millis(50);

/// What the proxy has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProxyCounts {
    /// Connections accepted and forwarded to the server.
    pub accepted: u64,
    /// Connections closed at once by [`FaultProxy::refuse_for`].
    pub refused: u64,
    /// Bytes forwarded client -> server.
    pub up: u64,
    /// Bytes forwarded server -> client.
    pub down: u64,
    /// Cuts done ([`FaultProxy::cut`] and fired [`FaultProxy::cut_after`]).
    pub cuts: u64,
}

/// The commands and counters, shared by the test and the proxy's threads.
#[derive(Default)]
struct Shared {
    closed: AtomicBool,
    stalled: AtomicBool,
    /// Bytes per second each way; 0: as fast as possible.
    trickle: AtomicU64,
    /// Bytes (either way) still forwarded before every connection is cut; -1: no cut armed.
    cut_budget: AtomicI64,
    refuse_until: Mutex<Option<Instant>>,
    /// Both sockets of every open connection, so a cut can close them from outside.
    conns: Mutex<Vec<(TcpStream, TcpStream)>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    cuts: AtomicU64,
}

impl Shared {
    fn cut_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for (a, b) in conns {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// How many of `want` bytes may pass before an armed cut fires (all when none is
    /// armed); takes them from the budget.
    fn take_budget(&self, want: usize) -> usize {
        let mut granted = want;
        let _ = self
            .cut_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                if b < 0 {
                    granted = want;
                    None
                } else {
                    granted = want.min(b as usize);
                    Some(b - granted as i64)
                }
            });
        granted
    }
}

/// A TCP proxy `127.0.0.1:port` -> `upstream`; see the module comment.
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts forwarding new connections on a fresh loopback port to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared::default());
        shared.cut_budget.store(-1, Ordering::SeqCst);
        let sh = shared.clone();
        let target: SocketAddr = ([127, 0, 0, 1], upstream).into();
        let acceptor = std::thread::spawn(move || accept_loop(listener, target, sh));
        FaultProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Closes both sides of every open connection now (new ones are still accepted).
    pub fn cut(&self) {
        self.shared.cut_all();
    }

    /// Forwards `bytes` more (counting both ways), then cuts every connection: with data
    /// flowing, the cut lands in the middle of a packet, event or request.
    pub fn cut_after(&self, bytes: u64) {
        self.shared
            .cut_budget
            .store(bytes.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    /// True while a [`FaultProxy::cut_after`] has not fired yet.
    pub fn cut_pending(&self) -> bool {
        self.shared.cut_budget.load(Ordering::SeqCst) >= 0
    }

    /// Stops (true) or resumes (false) forwarding on every connection, without closing.
    pub fn stall(&self, on: bool) {
        self.shared.stalled.store(on, Ordering::SeqCst);
    }

    /// Forwards at most `bytes_per_sec` each way per connection (0: full speed again).
    pub fn trickle(&self, bytes_per_sec: u64) {
        self.shared.trickle.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// For `d` from now, new connections are accepted and closed at once.
    pub fn refuse_for(&self, d: Duration) {
        *self
            .shared
            .refuse_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + d);
    }

    /// Lifts every fault: no stall, no trickle, no armed cut, no refusal.
    pub fn heal(&self) {
        self.stall(false);
        self.trickle(0);
        self.shared.cut_budget.store(-1, Ordering::SeqCst);
        *self
            .shared
            .refuse_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn counts(&self) -> ProxyCounts {
        let s = &self.shared;
        ProxyCounts {
            accepted: s.accepted.load(Ordering::SeqCst),
            refused: s.refused.load(Ordering::SeqCst),
            up: s.up.load(Ordering::SeqCst),
            down: s.down.load(Ordering::SeqCst),
            cuts: s.cuts.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, sh: Arc<Shared>) {
    while !sh.closed.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => continue,
        };
        let refusing = sh
            .refuse_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|until| Instant::now() < until);
        if refusing {
            sh.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            let _ = client.shutdown(Shutdown::Both); // the server itself is down
            continue;
        };
        sh.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nonblocking(false);
        for s in [&client, &server] {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(POLL));
        }
        let pair = |a: &TcpStream, b: &TcpStream| Some((a.try_clone().ok()?, b.try_clone().ok()?));
        let (Some(up), Some(down), Some(kept)) = (
            pair(&client, &server),
            pair(&server, &client),
            pair(&client, &server),
        ) else {
            continue;
        };
        sh.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(kept);
        let (s1, s2) = (sh.clone(), sh.clone());
        std::thread::spawn(move || pump(up, &s1, &s1.up));
        std::thread::spawn(move || pump(down, &s2, &s2.down));
    }
}

/// Copies `from` -> `to` under the commands until either side ends, then shuts both.
fn pump((mut from, mut to): (TcpStream, TcpStream), sh: &Shared, count: &AtomicU64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if sh.closed.load(Ordering::SeqCst) {
            break;
        }
        if sh.stalled.load(Ordering::SeqCst) {
            // Not reading: the sender's socket buffers fill and it blocks, as on a dead link.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let rate = sh.trickle.load(Ordering::SeqCst);
        // Trickle in ~20 steps a second.
        let max = if rate == 0 {
            buf.len()
        } else {
            (rate as usize / 20).clamp(1, buf.len())
        };
        let n = match from.read(&mut buf[..max]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        let pass = sh.take_budget(n);
        if to.write_all(&buf[..pass]).is_err() {
            break;
        }
        count.fetch_add(pass as u64, Ordering::SeqCst);
        if pass < n || sh.cut_budget.load(Ordering::SeqCst) == 0 {
            // The armed cut fires here, mid-stream; disarm it first so it fires once.
            if sh
                .cut_budget
                .compare_exchange(0, -1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                sh.cut_all();
            }
            break;
        }
        if rate > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
