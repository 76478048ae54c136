//! The dump session: connect to a server, check it can continue the stream,
//! register as a replica (COM_REGISTER_SLAVE), request the binlog from the
//! GTID set reached (COM_BINLOG_DUMP_GTID / MariaDB's slave_connect_state),
//! read events into the state machine and hand out its batches; reconnect
//! with backoff and fail over between servers.
//!
//! Invariants:
//! - after a transient error the dump resumes after the last complete
//!   transaction (the state machine skips rows it already handed out);
//! - a batch is bounded in records and binlog bytes, and at most
//!   `CHANNEL_BATCHES` wait for the consumer;
//! - a stop ends the stream at a transaction boundary (or after `STOP_GRACE`);
//! - with semi-sync, the header of every event is checked and stripped
//!   before decoding, requests for an ACK are recorded in the `AckPath`
//!   (never answered here) and a writer task sends the released ACKs on the
//!   connection's write half, so reading never waits on an ACK.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rowstream_api::metrics;
use rowstream_api::{Backoff, Flavor, Record};
use tokio::sync::{mpsc, watch};

use super::machine::Processor;
use super::semisync::{self, AckPath, AckPoint};
use crate::gtid::GtidSet;
use crate::source::checks;
use crate::source::conn::{server_error, ConnOpts, PacketConn};
use crate::source::filter::TableFilter;
use crate::source::origin::OriginFilter;
use crate::source::query::query_conn;
use crate::source::{Batch, SourceError};

/// Records per batch handed to the consumer.
const BATCH_RECORDS: usize = 1024;
/// Room allocated per batch: a batch is handed out after the event that
/// fills it, and one rows event can add hundreds of rows (a thousand
/// 8-column rows fit in two 8 KiB events), so room for twice the count
/// keeps the batch from growing (a realloc copied every record once more).
const BATCH_ROOM: usize = 2 * BATCH_RECORDS;
/// Binlog bytes behind one batch: with the record count, bounds a batch's memory
/// (a batch of 20 MB rows holds one row).
const BATCH_BYTES: usize = 4 << 20;

/// MySQL command: COM_BINLOG_DUMP (MariaDB's GTID dump is this plus session variables).
const COM_BINLOG_DUMP: u8 = 0x12;
/// MySQL command: COM_REGISTER_SLAVE.
const COM_REGISTER_SLAVE: u8 = 0x15;
/// MySQL command: COM_BINLOG_DUMP_GTID.
const COM_BINLOG_DUMP_GTID: u8 = 0x1e;

/// What the stream needs to know.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Servers to read from, the primary first; the others are tried in turn
    /// when the current one fails (replicas to fail over to).
    pub servers: Vec<ConnOpts>,
    /// Our replica server id (must be unique among the server's replicas).
    pub server_id: u32,
    /// Logical server name (`source.name`).
    pub name: Arc<str>,
    /// Host name we register with (shown by SHOW REPLICAS / SHOW SLAVE HOSTS).
    pub report_host: String,
    pub filter: TableFilter,
    /// Transactions left out by origin (two-way sync).
    pub origins: OriginFilter,
    /// Heartbeat period asked from the server; reads time out after 3 periods.
    pub heartbeat: Duration,
    /// `[source] semi_sync`: declare ourselves a semi-sync replica and
    /// record the server's ACK requests here.
    pub semi_sync: Option<Arc<AckPath>>,
}

/// Where a stream starts.
pub struct Start {
    /// Transactions already delivered: the stream begins after them.
    pub executed: GtidSet,
    /// Transactions a snapshot's views may already hold (see
    /// `Checkpoint::overlap`): their changes go out marked `overlap`.
    pub overlap: Option<GtidSet>,
}

impl From<GtidSet> for Start {
    fn from(executed: GtidSet) -> Start {
        Start {
            executed,
            overlap: None,
        }
    }
}

/// Streams from `start` into `tx` until the consumer goes away or `stop`
/// turns true (Ok), or a fatal error.
///
/// Transient errors reconnect with capped, jittered backoff; with several
/// servers (`cfg.servers`, primary first) each reconnect tries the next one.
/// Every (re)connect re-checks that the server holds everything already
/// delivered and has not purged what comes next; a server that fails that is
/// refused and the next one tried; when every server refuses, the stream stops
/// with the reasons.
///
/// On `stop` the stream ends at a transaction boundary (waiting at most
/// `STOP_GRACE` for the open transaction to complete).
///
/// `dump_conn` tracks the current dump connection, so whoever stops the
/// stream can end it on the server (`DumpConn::release`).
pub async fn run(
    cfg: &StreamConfig,
    start: Start,
    flavor: Flavor,
    tx: mpsc::Sender<Batch>,
    dump_conn: &DumpConn,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let mut proc = Processor::new(cfg.name.clone(), cfg.filter.clone(), flavor, start.executed)
        .with_origins(cfg.origins.clone())
        .with_overlap(start.overlap);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut current = 0usize;
    let mut refusals: Vec<String> = Vec::new();
    loop {
        let before = proc.events_seen();
        let server = &cfg.servers[current];
        if let Some(path) = cfg.semi_sync.as_ref() {
            path.on_server(&format!("{}:{}", server.host, server.port));
        }
        dump_conn.server.store(current, Ordering::Relaxed);
        let r = session(cfg, server, &mut proc, &tx, dump_conn, &mut stop).await;
        metrics::SOURCE_CONNECTED.with("").set(0.0);
        let e = match r {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        metrics::SOURCE_RECONNECTS.with("").inc();
        if proc.events_seen() > before + 1 {
            backoff.reset();
            refusals.clear();
        }
        match e {
            SourceError::Refused(why) => {
                tracing::error!(server = ?server, reason = %why, "server refused as a source");
                refusals.push(format!("{server:?}: {why}"));
                if refusals.len() >= cfg.servers.len() {
                    return Err(SourceError::Fatal(format!(
                        "no configured server can continue the stream from {}:\n  {}",
                        proc.executed(),
                        refusals.join("\n  ")
                    )));
                }
            }
            e if e.is_transient() => {
                tracing::warn!(server = ?server, error = %e, resume_from = %proc.executed(), "source connection lost; reconnecting");
            }
            e => return Err(e),
        }
        proc.prepare_resume();
        if cfg.servers.len() > 1 {
            current = (current + 1) % cfg.servers.len();
        }
        let wait = backoff.next_wait();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
    }
}

/// How long a stop waits for the open transaction to complete.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Which server and connection id the current dump runs on (id 0: none).
#[derive(Debug, Default)]
pub struct DumpConn {
    id: AtomicU32,
    server: AtomicUsize,
}

impl DumpConn {
    /// Index (in `StreamConfig::servers`) of the server the dump runs on.
    pub fn server(&self) -> usize {
        self.server.load(Ordering::Relaxed)
    }

    /// Ends the current dump connection on its server, so the server forgets
    /// our replica registration now rather than at its next write to a dead
    /// socket (which would make a quick restart fail the server_id check).
    pub async fn release(&self, servers: &[ConnOpts]) {
        let id = self.id.swap(0, Ordering::Relaxed);
        let Some(opts) = servers.get(self.server.load(Ordering::Relaxed)) else {
            return;
        };
        if id == 0 {
            return;
        }
        if let Ok((mut q, _)) = query_conn(opts).await {
            // Error 1094 (unknown thread) means it is already gone.
            let _ = q.query_drop(format!("KILL CONNECTION {id}")).await;
            q.disconnect().await.ok();
        }
    }
}

async fn session(
    cfg: &StreamConfig,
    server: &ConnOpts,
    proc: &mut Processor,
    tx: &mpsc::Sender<Batch>,
    dump_conn: &DumpConn,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let (mut q, flavor) = query_conn(server).await?;
    if flavor != proc.flavor() {
        return Err(SourceError::Refused(format!(
            "it is {} but the stream is from {}",
            flavor.as_str(),
            proc.flavor().as_str()
        )));
    }
    let checksum: Option<String> = q.query_first("SELECT @@global.binlog_checksum").await?;
    if !checksum
        .as_deref()
        .unwrap_or("")
        .eq_ignore_ascii_case("CRC32")
    {
        return Err(SourceError::Refused(format!(
            "binlog_checksum: must be CRC32, is {}. Fix: SET GLOBAL binlog_checksum=CRC32 and binlog_checksum=CRC32 in my.cnf",
            checksum.unwrap_or_default()
        )));
    }
    let failures = checks::check_start_position(&mut q, flavor, proc.executed()).await?;
    if !failures.is_empty() {
        let all: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
        return Err(SourceError::Refused(all.join("; ")));
    }
    q.disconnect().await.ok();

    let mut opts = server.clone();
    opts.read_timeout = cfg.heartbeat * 3;
    let mut conn = PacketConn::connect(&opts).await?;
    dump_conn.id.store(conn.connection_id, Ordering::Relaxed);
    conn.query_drop("SET @master_binlog_checksum = @@global.binlog_checksum")
        .await?;
    conn.query_drop(&format!(
        "SET @master_heartbeat_period = {}",
        cfg.heartbeat.as_nanos()
    ))
    .await?;
    if flavor == Flavor::MariaDb {
        // 4 = MARIA_SLAVE_CAPABILITY_GTID: GTID events, GTID-based start.
        conn.query_drop("SET @mariadb_slave_capability = 4").await?;
        conn.query_drop(&format!("SET @slave_connect_state = '{}'", proc.executed()))
            .await?;
        conn.query_drop("SET @slave_gtid_strict_mode = 1").await?;
        conn.query_drop("SET @slave_gtid_ignore_duplicates = 0")
            .await?;
    }
    if cfg.semi_sync.is_some() {
        // MySQL 8.4+ checks the first name, MariaDB (and older MySQL) the second.
        conn.query_drop("SET @rpl_semi_sync_replica = 1, @rpl_semi_sync_slave = 1")
            .await?;
    }
    register_replica(&mut conn, cfg.server_id, &cfg.report_host).await?;
    match flavor {
        Flavor::MariaDb => {
            let mut b = Vec::new();
            b.extend_from_slice(&4u32.to_le_bytes());
            b.extend_from_slice(&2u16.to_le_bytes()); // BINLOG_SEND_ANNOTATE_ROWS_EVENT
            b.extend_from_slice(&cfg.server_id.to_le_bytes());
            conn.command(COM_BINLOG_DUMP, &b).await?;
        }
        Flavor::MySql => {
            let sids = proc.executed().encode_sid_block();
            let mut b = Vec::with_capacity(sids.len() + 32);
            b.extend_from_slice(&4u16.to_le_bytes()); // BINLOG_THROUGH_GTID
            b.extend_from_slice(&cfg.server_id.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&4u64.to_le_bytes());
            b.extend_from_slice(&(sids.len() as u32).to_le_bytes());
            b.extend_from_slice(&sids);
            conn.command(COM_BINLOG_DUMP_GTID, &b).await?;
        }
    }
    tracing::info!(server = ?server, flavor = flavor.as_str(), from = %proc.executed(), "binlog dump started");
    metrics::SOURCE_CONNECTED.with("").set(1.0);
    let (mut conn, _writer) = match cfg.semi_sync.as_ref() {
        Some(path) => {
            let (c, w) = conn.split_acks()?;
            (
                c,
                Some(AbortOnDrop(tokio::spawn(path.clone().write_loop(w)))),
            )
        }
        None => (conn, None),
    };
    // Decided on the first event (the artificial ROTATE, timestamp 0):
    // the server adds the semi-sync header only when its side is active.
    let mut semi: Option<bool> = None;

    let mut pkt = Vec::with_capacity(64 * 1024);
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH_ROOM);
    let mut stop_by: Option<tokio::time::Instant> = None;
    let result = loop {
        if *stop.borrow() {
            let deadline = *stop_by.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            if !proc.in_transaction() || tokio::time::Instant::now() >= deadline {
                break Ok(());
            }
        }
        let read = if !proc.in_transaction() && stop_by.is_none() {
            // Between transactions a stop may cut the wait for the next event.
            tokio::select! {
                r = conn.read_packet(&mut pkt) => r,
                _ = stop.wait_for(|s| *s) => continue,
            }
        } else {
            conn.read_packet(&mut pkt).await
        };
        if let Err(e) = read {
            break Err(e);
        }
        match pkt.first() {
            Some(0x00) => {}
            Some(0xFF) => break Err(server_error(&pkt, "binlog dump")),
            Some(0xFE) if pkt.len() < 9 => {
                break Err(SourceError::Transient(
                    "the server ended the binlog dump".into(),
                ))
            }
            _ => {
                break Err(SourceError::Fatal(format!(
                    "unexpected packet in binlog dump (first byte {:?})",
                    pkt.first()
                )))
            }
        }
        let (ask, ev) = match semi_event(&pkt[1..], &mut semi, cfg.semi_sync.is_some()) {
            Ok(x) => x,
            Err(e) => break Err(e),
        };
        let seq_before = proc.sequence();
        if let Err(e) = proc.on_wire_event(ev, &mut batch) {
            break Err(e);
        }
        if let Some(path) = cfg.semi_sync.as_ref() {
            note_request(path, proc, ask, seq_before, ev);
        }
        // Hand out when full, or when no more data is waiting (keeps `tail` live).
        let full = batch.len() >= BATCH_RECORDS || proc.batch_bytes() >= BATCH_BYTES;
        if (full || (proc.has_output(&batch) && conn.buffered() == 0))
            && send(tx, &mut batch, proc).await.is_err()
        {
            return Ok(());
        }
    };
    // Whatever was decoded completely is valid; deliver it before reconnecting.
    if proc.has_output(&batch) && send(tx, &mut batch, proc).await.is_err() {
        return Ok(());
    }
    result
}

/// Aborts a spawned task when dropped (the ACK writer lives as long as its session).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Splits an event payload into (ACK wanted, event), checking the semi-sync
/// header when `semi` says the server sends it (decided on the first event).
pub(crate) fn semi_event<'a>(
    payload: &'a [u8],
    semi: &mut Option<bool>,
    wanted: bool,
) -> Result<(bool, &'a [u8]), SourceError> {
    let on = *semi.get_or_insert_with(|| {
        let on = wanted && payload.first() == Some(&semisync::MAGIC);
        if wanted && !on {
            tracing::warn!("source.semi_sync: the server does not run semi-sync for us (plugin not loaded or rpl_semi_sync_source_enabled / rpl_semi_sync_master_enabled off): streaming asynchronously");
        }
        on
    });
    if !on {
        return Ok((false, payload));
    }
    semisync::strip_header(payload).ok_or_else(|| {
        SourceError::Fatal(format!(
            "semi-sync event without its header (first byte {:?})",
            payload.first()
        ))
    })
}

/// After an event: records an ACK request and whether the server asks.
fn note_request(path: &AckPath, proc: &Processor, ask: bool, seq_before: u64, ev: &[u8]) {
    let committed = proc.sequence() != seq_before;
    if committed || ask {
        crate::metrics::SEMISYNC_ASKED
            .with("")
            .set(if ask { 1.0 } else { 0.0 });
    }
    if !ask || ev.len() < 17 {
        return;
    }
    let pos = u64::from(super::event::le_u32(ev, 13));
    // Asked inside a transaction (not at its end): cover that transaction too.
    let seq = proc.sequence() + u64::from(proc.in_transaction());
    path.request(
        seq,
        AckPoint {
            file: proc.file().clone(),
            pos,
        },
    );
}

async fn send(
    tx: &mpsc::Sender<Batch>,
    batch: &mut Vec<Record>,
    proc: &mut Processor,
) -> Result<(), ()> {
    let records = std::mem::replace(batch, Vec::with_capacity(BATCH_ROOM));
    tx.send(proc.take_batch(records)).await.map_err(|_| ())
}

async fn register_replica(
    conn: &mut PacketConn,
    server_id: u32,
    host: &str,
) -> Result<(), SourceError> {
    let host = &host.as_bytes()[..host.len().min(60)];
    let mut b = Vec::new();
    b.extend_from_slice(&server_id.to_le_bytes());
    b.push(host.len() as u8);
    b.extend_from_slice(host);
    b.push(0); // user
    b.push(0); // password
    b.extend_from_slice(&0u16.to_le_bytes()); // port
    b.extend_from_slice(&0u32.to_le_bytes()); // rank
    b.extend_from_slice(&0u32.to_le_bytes()); // master id
    conn.command(COM_REGISTER_SLAVE, &b).await?;
    let mut p = Vec::new();
    conn.read_packet(&mut p).await?;
    match p.first() {
        Some(0x00) => Ok(()),
        Some(0xFF) => Err(server_error(&p, "register as replica (COM_REGISTER_SLAVE)")),
        _ => Err(SourceError::Fatal(
            "unexpected answer to COM_REGISTER_SLAVE".into(),
        )),
    }
}
