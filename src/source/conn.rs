//! The replication connection: our own client side of the MySQL wire
//! protocol, just enough to authenticate and read a binlog dump.
//!
//! We do not use mysql_async for the dump because its binlog stream
//! decompresses whole transaction payloads into memory, hides the raw events
//! (so we cannot verify CRC32 ourselves) and has no read timeout. Queries for
//! checks go through mysql_async (`ConnOpts::mysql_async_opts`).
//!
//! Invariants: packets are reassembled across the 16 MB wire limit, so the
//! caller always sees one whole payload; sequence ids are checked; every read
//! is bounded by `read_timeout` so a half-dead peer becomes an error.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::SourceError;

const MAX_PAYLOAD: usize = 0xFF_FFFF;

// Capability flags (MySQL protocol, "Capabilities Flags").
const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_LONG_FLAG: u32 = 0x4;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;

/// How the connection uses TLS (`?tls=` in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP (default). On MySQL 9 caching_sha2_password then fetches the
    /// server's RSA key to send the password encrypted.
    Disabled,
    /// TLS without verifying the server certificate (self-signed servers).
    Required,
    /// TLS, certificate verified against `tls-ca` (or the system roots) and host name.
    Verify,
}

/// Where and how to connect, parsed from `mysql://user:pass@host:port[?tls=...&tls-ca=...]`.
#[derive(Clone)]
pub struct ConnOpts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub tls: TlsMode,
    pub tls_ca: Option<std::path::PathBuf>,
    /// Bound on connect and on every read; heartbeats keep a healthy stream under it.
    pub read_timeout: Duration,
}

impl std::fmt::Debug for ConnOpts {
    // The password never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mysql://{}@{}:{} (tls {:?})",
            self.user, self.host, self.port, self.tls
        )
    }
}

impl ConnOpts {
    /// Parses a `mysql://` URL. Errors name the part that is wrong.
    pub fn from_url(s: &str) -> Result<ConnOpts, SourceError> {
        let bad = |why: &str| {
            SourceError::Config(format!(
                "bad source URL ({why}); expected mysql://user:password@host:port"
            ))
        };
        let u = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        if u.scheme() != "mysql" && u.scheme() != "mariadb" {
            return Err(bad("scheme must be mysql://"));
        }
        let host = u
            .host_str()
            .ok_or_else(|| bad("no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let decode = |x: &str| {
            percent_encoding::percent_decode_str(x)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = decode(u.username());
        if user.is_empty() {
            return Err(bad("no user"));
        }
        let mut opts = ConnOpts {
            host,
            port: u.port().unwrap_or(3306),
            user,
            password: u.password().map(decode).unwrap_or_default(),
            tls: TlsMode::Disabled,
            tls_ca: None,
            read_timeout: Duration::from_secs(30),
        };
        for (k, v) in u.query_pairs() {
            match &*k {
                "tls" | "ssl-mode" => {
                    opts.tls = match v.to_ascii_lowercase().as_str() {
                        "disabled" | "false" | "off" => TlsMode::Disabled,
                        "required" | "true" | "on" => TlsMode::Required,
                        "verify" | "verify_ca" | "verify-ca" | "verify_identity" => TlsMode::Verify,
                        other => {
                            return Err(bad(&format!(
                                "tls={other}: use disabled, required or verify"
                            )))
                        }
                    }
                }
                "tls-ca" | "ssl-ca" => opts.tls_ca = Some(v.into_owned().into()),
                other => return Err(bad(&format!("unknown parameter {other}"))),
            }
        }
        Ok(opts)
    }

    /// The same target for mysql_async (used for queries: checks, positions).
    pub fn mysql_async_opts(&self) -> mysql_async::Opts {
        let mut b = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false);
        match self.tls {
            TlsMode::Disabled => {}
            TlsMode::Required => {
                b = b.ssl_opts(
                    mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true),
                );
            }
            TlsMode::Verify => {
                let mut s = mysql_async::SslOpts::default();
                if let Some(ca) = &self.tls_ca {
                    s = s.with_root_certs(vec![ca.clone().into()]);
                }
                b = b.ssl_opts(s);
            }
        }
        b.into()
    }
}

/// The most a packet read allocates ahead of the bytes received.
const READ_STEP: usize = 1 << 20;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An authenticated protocol connection that reads whole packets.
pub struct PacketConn {
    io: BufReader<Box<dyn Io>>,
    seq: u8,
    /// Accept any sequence id at a packet's first chunk: after a semi-sync
    /// ACK the server numbers its packets from the ACK's sequence on.
    loose_seq: bool,
    read_timeout: Duration,
    /// Server version string from the handshake ("9.7.4", "10.11.6-MariaDB-0+deb12u1-log").
    pub server_version: String,
    /// Connection id on the server (for KILL / diagnostics).
    pub connection_id: u32,
}

impl PacketConn {
    /// A connection over `io` past the handshake, as the dump reads it: for
    /// the packet layer's fuzz target (`crate::fuzzing::packets`).
    pub(crate) fn over(
        io: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
        loose_seq: bool,
    ) -> PacketConn {
        PacketConn {
            io: BufReader::new(Box::new(io) as Box<dyn Io>),
            seq: 0,
            loose_seq,
            read_timeout: Duration::from_secs(5),
            server_version: String::new(),
            connection_id: 0,
        }
    }

    /// Connects, optionally upgrades to TLS, and authenticates.
    pub async fn connect(opts: &ConnOpts) -> Result<PacketConn, SourceError> {
        let addr = format!("{}:{}", opts.host, opts.port);
        let tcp = tokio::time::timeout(opts.read_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| SourceError::Transient(format!("connect to {addr}: timed out")))?
            .map_err(|e| SourceError::Transient(format!("connect to {addr}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let mut conn = PacketConn {
            io: BufReader::with_capacity(256 * 1024, Box::new(tcp) as Box<dyn Io>),
            seq: 0,
            loose_seq: false,
            read_timeout: opts.read_timeout,
            server_version: String::new(),
            connection_id: 0,
        };
        let mut pkt = Vec::new();
        conn.read_packet(&mut pkt).await?;
        let hs = Handshake::parse(&pkt)?;
        conn.server_version = hs.server_version.clone();
        conn.connection_id = hs.connection_id;

        let mut caps = CLIENT_LONG_PASSWORD
            | CLIENT_LONG_FLAG
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_MULTI_RESULTS
            | CLIENT_PLUGIN_AUTH
            | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
        let tls = opts.tls != TlsMode::Disabled;
        if tls {
            if hs.capabilities & CLIENT_SSL == 0 {
                return Err(SourceError::Fatal(format!(
                    "TLS was requested (tls={:?}) but the server at {addr} does not offer TLS; configure ssl on the server or use ?tls=disabled",
                    opts.tls
                )));
            }
            caps |= CLIENT_SSL;
            let mut req = Vec::with_capacity(32);
            req.extend_from_slice(&caps.to_le_bytes());
            req.extend_from_slice(&(1u32 << 30).to_le_bytes());
            req.push(45);
            req.extend_from_slice(&[0; 23]);
            conn.write_packet(&req).await?;
            conn.upgrade_tls(opts).await?;
        }

        let plugin = hs.auth_plugin.as_str();
        let first = auth_response(plugin, &hs.nonce, opts.password.as_bytes())?;
        let mut resp = Vec::with_capacity(128);
        resp.extend_from_slice(&caps.to_le_bytes());
        resp.extend_from_slice(&(1u32 << 30).to_le_bytes());
        resp.push(45); // utf8mb4_general_ci
        resp.extend_from_slice(&[0; 23]);
        resp.extend_from_slice(opts.user.as_bytes());
        resp.push(0);
        put_lenenc_int(&mut resp, first.len() as u64);
        resp.extend_from_slice(&first);
        resp.extend_from_slice(plugin.as_bytes());
        resp.push(0);
        conn.write_packet(&resp).await?;
        conn.finish_auth(opts, plugin.to_string(), hs.nonce, tls)
            .await?;
        Ok(conn)
    }

    async fn upgrade_tls(&mut self, opts: &ConnOpts) -> Result<(), SourceError> {
        let config = tls_config(opts)?;
        let name = rustls::pki_types::ServerName::try_from(opts.host.clone())
            .map_err(|e| SourceError::Config(format!("TLS server name {}: {e}", opts.host)))?;
        // Nothing is buffered past the handshake packet: the server waits for our SSL request.
        let inner = std::mem::replace(
            &mut self.io,
            BufReader::new(Box::new(tokio::io::duplex(1).0) as Box<dyn Io>),
        );
        let raw = inner.into_inner();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = tokio::time::timeout(opts.read_timeout, connector.connect(name, raw))
            .await
            .map_err(|_| SourceError::Transient("TLS handshake timed out".into()))?
            .map_err(|e| {
                SourceError::Fatal(format!(
                    "TLS handshake with {}:{} failed: {e}",
                    opts.host, opts.port
                ))
            })?;
        self.io = BufReader::with_capacity(256 * 1024, Box::new(stream) as Box<dyn Io>);
        Ok(())
    }

    async fn finish_auth(
        &mut self,
        opts: &ConnOpts,
        mut plugin: String,
        mut nonce: Vec<u8>,
        tls: bool,
    ) -> Result<(), SourceError> {
        let mut pkt = Vec::new();
        loop {
            self.read_packet(&mut pkt).await?;
            match pkt.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(server_error(&pkt, "authentication")),
                Some(0xFE) => {
                    // Auth switch: plugin name, NUL, new nonce (often NUL-terminated).
                    let rest = &pkt[1..];
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    plugin = String::from_utf8_lossy(&rest[..end]).into_owned();
                    let mut n = rest.get(end + 1..).unwrap_or(&[]).to_vec();
                    if n.last() == Some(&0) {
                        n.pop();
                    }
                    nonce = n;
                    let r = auth_response(&plugin, &nonce, opts.password.as_bytes())?;
                    self.write_packet(&r).await?;
                }
                Some(0x01) if plugin == "caching_sha2_password" || plugin == "sha256_password" => {
                    match pkt.get(1) {
                        Some(3) => {} // fast auth succeeded; OK follows
                        Some(4) => {
                            // Full authentication: cleartext over TLS, else RSA-encrypted.
                            if tls {
                                let mut p = opts.password.as_bytes().to_vec();
                                p.push(0);
                                self.write_packet(&p).await?;
                            } else {
                                self.write_packet(&[2]).await?;
                                self.read_packet(&mut pkt).await?;
                                if pkt.first() != Some(&1) {
                                    return Err(SourceError::Fatal(
                                        "server did not send its RSA public key".into(),
                                    ));
                                }
                                let pem = pkt[1..].to_vec();
                                let mut p = opts.password.as_bytes().to_vec();
                                p.push(0);
                                for (i, b) in p.iter_mut().enumerate() {
                                    *b ^= nonce[i % nonce.len()];
                                }
                                let enc = std::panic::catch_unwind(|| {
                                    mysql_common::crypto::encrypt(&p, &pem)
                                })
                                .map_err(|_| {
                                    SourceError::Fatal(
                                        "server sent an unreadable RSA public key".into(),
                                    )
                                })?;
                                self.write_packet(&enc).await?;
                            }
                        }
                        other => {
                            return Err(SourceError::Fatal(format!(
                                "unexpected caching_sha2_password state {other:?}"
                            )));
                        }
                    }
                }
                other => {
                    return Err(SourceError::Fatal(format!(
                        "unexpected packet {other:?} during authentication with plugin {plugin}"
                    )));
                }
            }
        }
    }

    /// Reads one logical packet (reassembled) into `buf`, bounded by the read timeout.
    pub async fn read_packet(&mut self, buf: &mut Vec<u8>) -> Result<(), SourceError> {
        buf.clear();
        let t = self.read_timeout;
        match tokio::time::timeout(t, self.read_packet_inner(buf)).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Transient(format!(
                "no data from the server for {}s (heartbeats missing): connection considered dead",
                t.as_secs()
            ))),
        }
    }

    async fn read_packet_inner(&mut self, buf: &mut Vec<u8>) -> Result<(), SourceError> {
        let mut first = true;
        loop {
            let mut hdr = [0u8; 4];
            self.io.read_exact(&mut hdr).await.map_err(io_err)?;
            let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], 0]) as usize;
            if first && self.loose_seq {
                self.seq = hdr[3];
            }
            first = false;
            if hdr[3] != self.seq {
                return Err(SourceError::Transient(format!(
                    "packet out of order: got seq {}, expected {}",
                    hdr[3], self.seq
                )));
            }
            self.seq = self.seq.wrapping_add(1);
            // The buffer grows with the bytes that arrive, not by the length
            // the header claims: a cut or hostile stream costs at most one
            // step beyond what it sent. Read into the spare capacity, not
            // into zeroed bytes: zeroing every packet first was a pass over
            // the whole binlog on the decoding thread.
            let end = buf.len() + len;
            while buf.len() < end {
                let step = (end - buf.len()).min(READ_STEP);
                if buf.len() == buf.capacity() {
                    buf.reserve(step);
                }
                let n = (&mut self.io)
                    .take(step as u64)
                    .read_buf(buf)
                    .await
                    .map_err(io_err)?;
                if n == 0 {
                    return Err(io_err(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            if len < MAX_PAYLOAD {
                return Ok(());
            }
        }
    }

    /// Writes one logical packet, splitting at the wire limit.
    pub async fn write_packet(&mut self, payload: &[u8]) -> Result<(), SourceError> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        let mut chunks = payload.chunks(MAX_PAYLOAD).peekable();
        if payload.is_empty() {
            out.extend_from_slice(&[0, 0, 0, self.seq]);
            self.seq = self.seq.wrapping_add(1);
        }
        while let Some(c) = chunks.next() {
            let l = (c.len() as u32).to_le_bytes();
            out.extend_from_slice(&[l[0], l[1], l[2], self.seq]);
            self.seq = self.seq.wrapping_add(1);
            out.extend_from_slice(c);
            if chunks.peek().is_none() && c.len() == MAX_PAYLOAD {
                out.extend_from_slice(&[0, 0, 0, self.seq]);
                self.seq = self.seq.wrapping_add(1);
            }
        }
        let io = self.io.get_mut();
        io.write_all(&out).await.map_err(io_err)?;
        io.flush().await.map_err(io_err)
    }

    /// Sends a command (resets the sequence id).
    pub async fn command(&mut self, cmd: u8, body: &[u8]) -> Result<(), SourceError> {
        self.seq = 0;
        let mut p = Vec::with_capacity(body.len() + 1);
        p.push(cmd);
        p.extend_from_slice(body);
        self.write_packet(&p).await
    }

    /// Splits off the write side for semi-sync ACKs: the returned
    /// connection keeps reading packets, the writer sends whole packets
    /// (sequence id 0, each its own command as the server expects) without
    /// ever waiting for a read. Call it between exchanges (nothing buffered).
    pub fn split_acks(self) -> Result<(PacketConn, AckWriter), SourceError> {
        if !self.io.buffer().is_empty() {
            return Err(SourceError::Fatal(
                "internal: connection split with unread data".into(),
            ));
        }
        let (r, w) = tokio::io::split(self.io.into_inner());
        let conn = PacketConn {
            io: BufReader::with_capacity(256 * 1024, Box::new(ReadOnly(r)) as Box<dyn Io>),
            seq: self.seq,
            loose_seq: true,
            read_timeout: self.read_timeout,
            server_version: self.server_version,
            connection_id: self.connection_id,
        };
        Ok((conn, AckWriter(w)))
    }

    /// Bytes already received and not yet consumed: 0 means the next read waits on the network.
    pub fn buffered(&self) -> usize {
        self.io.buffer().len()
    }

    /// Runs a statement that returns no rows (SET ...) and expects OK.
    pub async fn query_drop(&mut self, sql: &str) -> Result<(), SourceError> {
        self.command(0x03, sql.as_bytes()).await?;
        let mut pkt = Vec::new();
        self.read_packet(&mut pkt).await?;
        match pkt.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(server_error(&pkt, sql)),
            _ => Err(SourceError::Fatal(format!(
                "`{sql}` returned rows; expected OK"
            ))),
        }
    }
}

/// The write half of a split dump connection (see [`PacketConn::split_acks`]).
pub struct AckWriter(tokio::io::WriteHalf<Box<dyn Io>>);

impl AckWriter {
    /// Writes `payload` as one packet with sequence id 0 (it must fit one frame).
    pub async fn write(&mut self, payload: &[u8]) -> Result<(), SourceError> {
        debug_assert!(payload.len() < MAX_PAYLOAD);
        let l = (payload.len() as u32).to_le_bytes();
        let mut out = Vec::with_capacity(payload.len() + 4);
        out.extend_from_slice(&[l[0], l[1], l[2], 0]);
        out.extend_from_slice(payload);
        self.0.write_all(&out).await.map_err(io_err)?;
        self.0.flush().await.map_err(io_err)
    }
}

/// The read half of a split connection; writes go through [`AckWriter`].
struct ReadOnly(tokio::io::ReadHalf<Box<dyn Io>>);

impl AsyncRead for ReadOnly {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadOnly {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::Error::other(
            "the dump connection writes only through its AckWriter",
        )))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn tls_config(opts: &ConnOpts) -> Result<rustls::ClientConfig, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Config(format!("TLS setup: {e}")))?;
    Ok(match opts.tls {
        TlsMode::Verify => {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(ca) = &opts.tls_ca {
                let pem = std::fs::read(ca)
                    .map_err(|e| SourceError::Config(format!("tls-ca {}: {e}", ca.display())))?;
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    let cert = cert.map_err(|e| {
                        SourceError::Config(format!("tls-ca {}: {e}", ca.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        SourceError::Config(format!("tls-ca {}: {e}", ca.display()))
                    })?;
                }
            } else {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    })
}

/// `tls=required`: encrypt, but accept the server's (usually self-signed) certificate.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Parses a server greeting, for the packet layer's fuzz target.
pub(crate) fn parse_greeting(p: &[u8]) -> Result<(), SourceError> {
    Handshake::parse(p).map(|_| ())
}

struct Handshake {
    server_version: String,
    connection_id: u32,
    capabilities: u32,
    nonce: Vec<u8>,
    auth_plugin: String,
}

impl Handshake {
    fn parse(p: &[u8]) -> Result<Handshake, SourceError> {
        let bad = || SourceError::Fatal("malformed handshake from server".into());
        if p.first() == Some(&0xFF) {
            return Err(server_error(p, "connect"));
        }
        if p.first() != Some(&10) {
            return Err(SourceError::Fatal(format!(
                "unsupported protocol version {:?}",
                p.first()
            )));
        }
        let mut i = 1;
        let end = i + p[i..].iter().position(|&b| b == 0).ok_or_else(bad)?;
        let server_version = String::from_utf8_lossy(&p[i..end]).into_owned();
        i = end + 1;
        let get = |from: usize, n: usize| p.get(from..from + n).ok_or_else(bad);
        let u16_at = |from: usize| match p.get(from..from + 2) {
            Some(&[a, b]) => Ok(u16::from_le_bytes([a, b])),
            _ => Err(bad()),
        };
        let connection_id = match get(i, 4)? {
            &[a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
            _ => return Err(bad()),
        };
        i += 4;
        let mut nonce = get(i, 8)?.to_vec();
        i += 9; // 8 bytes + filler
        let cap_lo = u32::from(u16_at(i)?);
        i += 2 + 1 + 2; // charset, status
        let cap_hi = u32::from(u16_at(i)?);
        i += 2;
        let auth_len = *p.get(i).ok_or_else(bad)? as usize;
        i += 1 + 10;
        let capabilities = cap_lo | (cap_hi << 16);
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let n = auth_len.saturating_sub(8).max(13);
            // saturating: `i` may already be past the end of a short greeting.
            let part = get(i, n.min(p.len().saturating_sub(i)))?;
            let part = part.strip_suffix(&[0]).unwrap_or(part);
            nonce.extend_from_slice(part);
            i += n;
        }
        let auth_plugin = if capabilities & CLIENT_PLUGIN_AUTH != 0 && i < p.len() {
            let rest = &p[i..];
            let e = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..e]).into_owned()
        } else {
            "mysql_native_password".into()
        };
        Ok(Handshake {
            server_version,
            connection_id,
            capabilities,
            nonce,
            auth_plugin,
        })
    }
}

fn auth_response(plugin: &str, nonce: &[u8], password: &[u8]) -> Result<Vec<u8>, SourceError> {
    if password.is_empty() {
        return Ok(Vec::new());
    }
    match plugin {
        "mysql_native_password" => Ok(mysql_common::scramble::scramble_native(nonce, password).map(|s| s.to_vec()).unwrap_or_default()),
        "caching_sha2_password" => Ok(mysql_common::scramble::scramble_sha256(nonce, password).map(|s| s.to_vec()).unwrap_or_default()),
        // sha256_password starts by asking for full authentication.
        "sha256_password" => Ok(vec![1]),
        "mysql_clear_password" => {
            let mut p = password.to_vec();
            p.push(0);
            Ok(p)
        }
        other => Err(SourceError::Fatal(format!(
            "the server asks for authentication plugin {other}, which rowstream does not support; \
             create the user IDENTIFIED WITH caching_sha2_password (MySQL) or mysql_native_password (MariaDB)"
        ))),
    }
}

/// Turns an ERR packet into an error; codes that mean "try again later" are transient.
pub fn server_error(p: &[u8], what: &str) -> SourceError {
    let code = p
        .get(1..3)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .unwrap_or(0);
    let mut msg = p.get(3..).unwrap_or(&[]);
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    let msg = String::from_utf8_lossy(msg);
    let text = format!("{what}: server error {code}: {msg}");
    match code {
        // Shutdown in progress, connection killed, too many connections, lock/network trouble.
        1053 | 1077 | 1040 | 1152 | 1158 | 1159 | 1160 | 1161 | 1927 | 2013 => SourceError::Transient(text),
        // The server cannot serve our position: purged, or it diverged from
        // the server we read before. Another configured server may.
        1236 => SourceError::Refused(format!(
            "{text}. This server does not hold the binlog from our position (purged, or it diverged from the server we read before). \
             Fix: point rowstream at a server that has it; or start over (a new snapshot / delete the checkpoint so source.start applies; for tail: --from latest)"
        )),
        1045 | 1044 | 1227 | 1142 => SourceError::Fatal(format!("{text}. Grant the rowstream user the privileges in deploy/grants.sql")),
        _ => SourceError::Fatal(text),
    }
}

fn io_err(e: std::io::Error) -> SourceError {
    SourceError::Transient(format!("connection lost: {e}"))
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=250 => out.push(v as u8),
        251..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let o = ConnOpts::from_url("mysql://repl:p%40ss@127.0.0.1:3307?tls=required").unwrap();
        assert_eq!(
            (o.user.as_str(), o.password.as_str(), o.port, o.tls),
            ("repl", "p@ss", 3307, TlsMode::Required)
        );
        assert!(!format!("{o:?}").contains("p@ss"));
        assert!(ConnOpts::from_url("postgres://a@b").is_err());
        assert!(ConnOpts::from_url("mysql://a@b?bogus=1").is_err());
        assert_eq!(ConnOpts::from_url("mysql://a@h").unwrap().port, 3306);
    }

    /// A split dump connection: the first chunk of a packet may carry any
    /// sequence id (the server renumbers after a semi-sync ACK), the chunks of
    /// a packet over 16 MB still follow each other, the ACK goes out as one
    /// packet with sequence id 0, and the reassembled event keeps its
    /// semi-sync header at the front only.
    #[tokio::test]
    async fn split_connection_reads_renumbered_and_large_packets() {
        let (ours, mut server) = tokio::io::duplex(1 << 20);
        let conn = PacketConn {
            io: BufReader::new(Box::new(ours) as Box<dyn Io>),
            seq: 3,
            loose_seq: false,
            read_timeout: Duration::from_secs(5),
            server_version: String::new(),
            connection_id: 1,
        };
        let (mut conn, mut acks) = conn.split_acks().unwrap();
        let big = MAX_PAYLOAD + 10;
        let mut payload = vec![0x00, 0xEF, 0x01];
        payload.resize(big, 7);
        let writer = tokio::spawn(async move {
            let mut wire = vec![0xFF, 0xFF, 0xFF, 1];
            wire.extend_from_slice(&payload[..MAX_PAYLOAD]);
            wire.extend_from_slice(&[10, 0, 0, 2]);
            wire.extend_from_slice(&payload[MAX_PAYLOAD..]);
            // The next packet restarts at 1.
            wire.extend_from_slice(&[2, 0, 0, 1, 0x00, 0xAA]);
            server.write_all(&wire).await.unwrap();
            let mut ack = [0u8; 4 + 9 + 3];
            server.read_exact(&mut ack).await.unwrap();
            ack
        });
        let mut buf = Vec::new();
        conn.read_packet(&mut buf).await.unwrap();
        assert_eq!(buf.len(), big);
        // The header once, at the front (0xEF, flag 1); the rest is the event.
        assert_eq!(&buf[..3], &[0x00, 0xEF, 0x01]);
        assert!(buf[3..].iter().all(|b| *b == 7));
        conn.read_packet(&mut buf).await.unwrap();
        assert_eq!(buf, [0x00, 0xAA]);
        let mut ack_packet = vec![0xEF, 4, 0, 0, 0, 0, 0, 0, 0];
        ack_packet.extend_from_slice(b"b.1");
        acks.write(&ack_packet).await.unwrap();
        let ack = writer.await.unwrap();
        assert_eq!(&ack[..4], &[12, 0, 0, 0]);
        assert_eq!(ack[4], 0xEF);
        assert_eq!(&ack[13..], b"b.1");
    }

    /// A stream cut inside a packet whose header claims nearly 16 MB: the
    /// read fails as a lost connection, and the buffer grew by at most one
    /// step beyond the bytes that arrived, not by the claimed length.
    #[tokio::test]
    async fn cut_packet_fails_and_allocates_one_step_at_most() {
        let (ours, mut server) = tokio::io::duplex(1 << 16);
        let mut conn = PacketConn {
            io: BufReader::new(Box::new(ours) as Box<dyn Io>),
            seq: 0,
            loose_seq: false,
            read_timeout: Duration::from_secs(5),
            server_version: String::new(),
            connection_id: 1,
        };
        let mut wire = vec![0xFE, 0xFF, 0xFF, 0];
        wire.extend_from_slice(&[0x00; 100]);
        server.write_all(&wire).await.unwrap();
        drop(server);
        let mut buf = Vec::new();
        let err = conn.read_packet(&mut buf).await.unwrap_err();
        assert!(
            matches!(&err, SourceError::Transient(m) if m.starts_with("connection lost")),
            "{err:?}"
        );
        assert_eq!(buf.len(), 100);
        assert!(buf.capacity() <= 100 + READ_STEP, "{}", buf.capacity());
    }

    #[test]
    fn lenenc() {
        let mut v = Vec::new();
        put_lenenc_int(&mut v, 250);
        put_lenenc_int(&mut v, 251);
        put_lenenc_int(&mut v, 70000);
        assert_eq!(v, [250, 0xFC, 251, 0, 0xFD, 0x70, 0x11, 0x01]);
    }
}
