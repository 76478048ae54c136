//! The binlog dump: register as a replica, request the binlog from a GTID
//! set, verify and decode every event, and hand out change records in
//! bounded batches.
//!
//! Invariants:
//! - every event's CRC32 is verified before it is looked at;
//! - an event type we do not understand stops the stream with its name;
//!   nothing is skipped silently (only events the server flags as ignorable);
//! - a transaction compressed into a TRANSACTION_PAYLOAD is decompressed as
//!   a stream, one inner event at a time;
//! - after a transient error the dump resumes after the last complete
//!   transaction, and the rows of a partly delivered transaction that were
//!   already handed out are not handed out again.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{FormatDescriptionEvent, GtidEvent, TransactionPayloadEvent};
use mysql_common::binlog::BinlogCtx;
use mysql_common::io::ParseBuf;
use rowstream_api::metrics;
use rowstream_api::{
    ChangeEvent, Commit, Flavor, Op, Record, Row, SchemaChange, Snapshot, Source, Transaction,
    Value,
};
use tokio::sync::{mpsc, watch};

use super::checks;
use super::conn::{server_error, ConnOpts, PacketConn};
use super::decode::{self, RowsDecoder};
use super::filter::TableFilter;
use super::gtid::{Gtid, GtidSet};
use super::schema::TableSchema;
use super::SourceError;

/// The rowstream version stamped into `source.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Records per batch handed to the consumer.
const BATCH_RECORDS: usize = 1024;
/// Binlog bytes behind one batch: with the record count, bounds a batch's memory
/// (a batch of 20 MB rows holds one row).
const BATCH_BYTES: usize = 4 << 20;
/// Batches in flight between the source and its consumer.
pub const CHANNEL_BATCHES: usize = 4;

const HEADER_LEN: usize = 19;
const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;
const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

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
    /// Heartbeat period asked from the server; reads time out after 3 periods.
    pub heartbeat: Duration,
}

/// A batch of records in binlog order, with the position reached.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Transactions completed in this batch (index after their last record).
    pub commits: Vec<Commit>,
    /// The set of transactions complete at the end of this batch, when at
    /// least one transaction completed in it.
    pub executed: Option<GtidSet>,
    /// Binlog bytes of the rows events decoded into `records`: a cheap
    /// measure of the batch's weight, used to bound work in flight.
    pub bytes: usize,
    /// Snapshot batches: the snapshot's progress once this batch is durable,
    /// when a chunk completed in it. Always `None` from the binlog stream.
    pub snapshot: Option<Box<crate::checkpoint::SnapshotState>>,
}

/// Connects a query connection and tells the flavour.
pub async fn query_conn(opts: &ConnOpts) -> Result<(mysql_async::Conn, Flavor), SourceError> {
    let conn = tokio::time::timeout(
        opts.read_timeout,
        mysql_async::Conn::new(opts.mysql_async_opts()),
    )
    .await
    .map_err(|_| {
        SourceError::Transient(format!("connect to {}:{}: timed out", opts.host, opts.port))
    })??;
    let (major, _, _) = conn.server_version();
    // mysql_async reports MariaDB's real version (10.x/11.x); MySQL is 5.x, 8.x, 9.x.
    let flavor = if major == 10 || major == 11 {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok((conn, flavor))
}

/// The server's executed set: `@@gtid_executed` (MySQL) or `@@gtid_binlog_pos` (MariaDB).
pub async fn server_executed(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<GtidSet, SourceError> {
    let sql = match flavor {
        Flavor::MySql => "SELECT @@global.gtid_executed",
        Flavor::MariaDb => "SELECT @@global.gtid_binlog_pos",
    };
    let s: Option<String> = conn.query_first(sql).await?;
    parse_set(flavor, &s.unwrap_or_default())
}

/// Resolves `--from`: "latest", "earliest" or a GTID set in the server's notation.
pub async fn resolve_start(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    from: &str,
) -> Result<GtidSet, SourceError> {
    match from {
        "latest" => server_executed(conn, flavor).await,
        "earliest" => match flavor {
            // Everything not purged is still in the binlog.
            Flavor::MySql => {
                let s: Option<String> = conn.query_first("SELECT @@global.gtid_purged").await?;
                parse_set(flavor, &s.unwrap_or_default())
            }
            Flavor::MariaDb => {
                let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
                let first: Option<String> = logs.first().and_then(|r| r.get(0));
                let Some(first) = first else {
                    return parse_set(flavor, "");
                };
                let pos: Option<String> = conn
                    .exec_first("SELECT BINLOG_GTID_POS(?, 4)", (first,))
                    .await?;
                parse_set(flavor, &pos.unwrap_or_default())
            }
        },
        set => parse_set(flavor, set),
    }
}

fn parse_set(flavor: Flavor, s: &str) -> Result<GtidSet, SourceError> {
    GtidSet::parse(flavor, s).map_err(|e| SourceError::Config(format!("GTID set `{s}`: {e}")))
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
    start: GtidSet,
    flavor: Flavor,
    tx: mpsc::Sender<Batch>,
    dump_conn: &DumpConn,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let mut proc = Processor::new(cfg, flavor, start);
    let mut delay = Duration::from_millis(100);
    let mut current = 0usize;
    let mut refusals: Vec<String> = Vec::new();
    loop {
        let before = proc.events_seen;
        let server = &cfg.servers[current];
        dump_conn.server.store(current, Ordering::Relaxed);
        let r = session(cfg, server, &mut proc, &tx, dump_conn, &mut stop).await;
        metrics::SOURCE_CONNECTED.with("").set(0.0);
        let e = match r {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        metrics::SOURCE_RECONNECTS.with("").inc();
        if proc.events_seen > before + 1 {
            delay = Duration::from_millis(100);
            refusals.clear();
        }
        match e {
            SourceError::Refused(why) => {
                tracing::error!(server = ?server, reason = %why, "server refused as a source");
                refusals.push(format!("{server:?}: {why}"));
                if refusals.len() >= cfg.servers.len() {
                    return Err(SourceError::Fatal(format!(
                        "no configured server can continue the stream from {}:\n  {}",
                        proc.executed,
                        refusals.join("\n  ")
                    )));
                }
            }
            e if e.is_transient() => {
                tracing::warn!(server = ?server, error = %e, resume_from = %proc.executed, "source connection lost; reconnecting");
            }
            e => return Err(e),
        }
        proc.prepare_resume();
        if cfg.servers.len() > 1 {
            current = (current + 1) % cfg.servers.len();
        }
        let wait = delay.mul_f64(rand::random::<f64>() * 0.5 + 0.75);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
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
    if flavor != proc.flavor {
        return Err(SourceError::Refused(format!(
            "it is {} but the stream is from {}",
            flavor.as_str(),
            proc.flavor.as_str()
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
    let failures = checks::check_start_position(&mut q, flavor, &proc.executed).await?;
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
        conn.query_drop(&format!("SET @slave_connect_state = '{}'", proc.executed))
            .await?;
        conn.query_drop("SET @slave_gtid_strict_mode = 1").await?;
        conn.query_drop("SET @slave_gtid_ignore_duplicates = 0")
            .await?;
    }
    register_replica(&mut conn, cfg.server_id, &cfg.report_host).await?;
    match flavor {
        Flavor::MariaDb => {
            let mut b = Vec::new();
            b.extend_from_slice(&4u32.to_le_bytes());
            b.extend_from_slice(&2u16.to_le_bytes()); // BINLOG_SEND_ANNOTATE_ROWS_EVENT
            b.extend_from_slice(&cfg.server_id.to_le_bytes());
            conn.command(0x12, &b).await?;
        }
        Flavor::MySql => {
            let sids = proc.executed.encode_sid_block();
            let mut b = Vec::with_capacity(sids.len() + 32);
            b.extend_from_slice(&4u16.to_le_bytes()); // BINLOG_THROUGH_GTID
            b.extend_from_slice(&cfg.server_id.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&4u64.to_le_bytes());
            b.extend_from_slice(&(sids.len() as u32).to_le_bytes());
            b.extend_from_slice(&sids);
            conn.command(0x1e, &b).await?;
        }
    }
    tracing::info!(server = ?server, flavor = flavor.as_str(), from = %proc.executed, "binlog dump started");
    metrics::SOURCE_CONNECTED.with("").set(1.0);

    let mut pkt = Vec::with_capacity(64 * 1024);
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH_RECORDS);
    let mut stop_by: Option<tokio::time::Instant> = None;
    let result = loop {
        if *stop.borrow() {
            let deadline = *stop_by.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            if proc.tx.is_none() || tokio::time::Instant::now() >= deadline {
                break Ok(());
            }
        }
        let read = if proc.tx.is_none() && stop_by.is_none() {
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
        if let Err(e) = proc.on_wire_event(&pkt[1..], &mut batch) {
            break Err(e);
        }
        // Hand out when full, or when no more data is waiting (keeps `tail` live).
        let full = batch.len() >= BATCH_RECORDS || proc.batch_bytes >= BATCH_BYTES;
        if full || (proc.has_output(&batch) && conn.buffered() == 0) {
            if send(tx, &mut batch, proc).await.is_err() {
                return Ok(());
            }
        }
    };
    // Whatever was decoded completely is valid; deliver it before reconnecting.
    if proc.has_output(&batch) && send(tx, &mut batch, proc).await.is_err() {
        return Ok(());
    }
    result
}

async fn send(
    tx: &mpsc::Sender<Batch>,
    batch: &mut Vec<Record>,
    proc: &mut Processor,
) -> Result<(), ()> {
    let executed = std::mem::take(&mut proc.committed).then(|| proc.executed.clone());
    let bytes = std::mem::take(&mut proc.batch_bytes);
    let records = std::mem::replace(batch, Vec::with_capacity(BATCH_RECORDS));
    let commits = std::mem::take(&mut proc.commits);
    tx.send(Batch {
        records,
        commits,
        executed,
        bytes,
        snapshot: None,
    })
    .await
    .map_err(|_| ())
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
    conn.command(0x15, &b).await?;
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

/// The transaction being read.
struct Tx {
    gtid: Arc<str>,
    parsed: Gtid,
    ts_ms: u64,
    /// Row events seen so far (including those skipped on a resume).
    total: u64,
    per_table: HashMap<u64, u64>,
    /// Rows already delivered before a reconnect: do not deliver them again.
    skip: u64,
    /// Inside BEGIN ... COMMIT (else a single statement is the transaction).
    in_begin: bool,
    /// `Source::sequence` of the transaction: the sequence of `executed`
    /// with this transaction added.
    sequence: u64,
}

/// Decodes raw events into records; holds all per-stream state.
struct Processor {
    flavor: Flavor,
    name: Arc<str>,
    filter: TableFilter,
    executed: GtidSet,
    /// `executed.sequence()`, kept up to date per commit (see
    /// `Source::sequence`). It depends only on `executed`, so a resume after a
    /// reconnect numbers the next transactions exactly as before.
    sequence: u64,
    /// A transaction completed since the last batch was handed out.
    committed: bool,
    fde: FormatDescriptionEvent<'static>,
    post_header: Vec<u8>,
    file: Arc<str>,
    tables: HashMap<u64, Option<Arc<TableSchema>>>,
    tx: Option<Tx>,
    /// After a reconnect: (gtid, rows already delivered) of the interrupted transaction.
    resume_skip: Option<(Arc<str>, u64)>,
    before: Vec<Value>,
    after: Vec<Value>,
    payload_buf: Vec<u8>,
    events_seen: u64,
    /// Binlog position where the event being processed starts (for inner
    /// events of a TRANSACTION_PAYLOAD: where the payload starts).
    event_start: u64,
    /// Binlog bytes of the rows decoded into the current batch.
    batch_bytes: usize,
    /// Transactions completed since the last batch was handed out.
    commits: Vec<Commit>,
    /// Position of the last rows event and how many rows were numbered there.
    rows_at: u64,
    rows_done: u32,
}

impl Processor {
    fn new(cfg: &StreamConfig, flavor: Flavor, start: GtidSet) -> Processor {
        Processor {
            flavor,
            name: cfg.name.clone(),
            filter: cfg.filter.clone(),
            sequence: start.sequence(),
            executed: start,
            committed: false,
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            post_header: Vec::new(),
            file: Arc::from(""),
            tables: HashMap::new(),
            tx: None,
            resume_skip: None,
            before: Vec::new(),
            after: Vec::new(),
            payload_buf: Vec::new(),
            events_seen: 0,
            event_start: 0,
            batch_bytes: 0,
            commits: Vec::new(),
            rows_at: u64::MAX,
            rows_done: 0,
        }
    }

    /// True when a batch must be handed out: records, boundaries or progress.
    fn has_output(&self, batch: &[Record]) -> bool {
        !batch.is_empty() || !self.commits.is_empty() || self.committed
    }

    /// Forget connection-bound state; remember how far the open transaction got.
    fn prepare_resume(&mut self) {
        if let Some(tx) = self.tx.take() {
            let delivered = tx.total.max(tx.skip);
            if delivered > 0 {
                self.resume_skip = Some((tx.gtid, delivered));
            }
        }
        self.tables.clear();
    }

    /// One event as received: verify and strip the CRC32, then dispatch.
    fn on_wire_event(&mut self, ev: &[u8], out: &mut Vec<Record>) -> Result<(), SourceError> {
        self.events_seen += 1;
        if ev.len() < HEADER_LEN + 4 {
            return Err(SourceError::Fatal(format!(
                "truncated binlog event ({} bytes)",
                ev.len()
            )));
        }
        let size = u32::from_le_bytes(ev[9..13].try_into().unwrap()) as usize;
        if size != ev.len() {
            return Err(SourceError::Fatal(format!(
                "binlog event size {size} does not match the {} bytes received",
                ev.len()
            )));
        }
        let (data, crc) = ev.split_at(ev.len() - 4);
        let want = u32::from_le_bytes(crc.try_into().unwrap());
        if crc32fast::hash(data) != want && !fde_checksum_matches(data, want) {
            return Err(SourceError::Fatal(format!(
                "CRC32 mismatch in a {} event at {}:{}: the binlog or the network corrupted it",
                event_name(data[4]),
                self.file,
                u32::from_le_bytes(data[13..17].try_into().unwrap())
            )));
        }
        let log_pos = u32::from_le_bytes(data[13..17].try_into().unwrap()) as u64;
        self.event_start = log_pos.saturating_sub(size as u64);
        self.on_event(data, out)
    }

    /// One event without checksum (header + body).
    fn on_event(&mut self, ev: &[u8], out: &mut Vec<Record>) -> Result<(), SourceError> {
        let ty = ev[4];
        let flags = u16::from_le_bytes([ev[17], ev[18]]);
        let log_pos = u32::from_le_bytes(ev[13..17].try_into().unwrap()) as u64;
        let ts = u32::from_le_bytes(ev[0..4].try_into().unwrap()) as u64;
        let origin_server = u32::from_le_bytes(ev[5..9].try_into().unwrap());
        let body = &ev[HEADER_LEN..];
        let at = |this: &Self| format!("{}:{}", this.file, this.event_start);
        match ty {
            // FORMAT_DESCRIPTION: post-header lengths for this binlog.
            15 => {
                if body.len() < 2 + 50 + 4 + 1 {
                    return Err(SourceError::Fatal("truncated FORMAT_DESCRIPTION event".into()));
                }
                // The body carries the checksum algorithm byte and (already stripped) CRC.
                let lens = &body[57..body.len().saturating_sub(1)];
                self.post_header = lens.to_vec();
                if flags & LOG_EVENT_ARTIFICIAL_F == 0 || log_pos != 0 {
                    // A real FDE at a binlog start: table ids start over.
                    self.tables.clear();
                }
            }
            // ROTATE: next binlog file name.
            4 => {
                if body.len() < 8 {
                    return Err(SourceError::Fatal("truncated ROTATE event".into()));
                }
                let name = String::from_utf8_lossy(&body[8..]);
                self.file = Arc::from(name.as_ref());
            }
            // MySQL GTID / GTID_TAGGED: a transaction starts.
            33 | 42 => {
                let g: GtidEvent = ParseBuf(body)
                    .parse(BinlogCtx::new(ev.len(), &self.fde, ty))
                    .map_err(|e| SourceError::Fatal(format!("bad GTID event at {}: {e}", at(self))))?;
                let uuid = format_uuid(&g.sid());
                let text = match g.tag() {
                    Some(tag) => format!("{uuid}:{}:{}", tag.as_str().to_ascii_lowercase(), g.gno()),
                    None => format!("{uuid}:{}", g.gno()),
                };
                let ts_ms = match g.original_commit_timestamp() {
                    0 => ts * 1000,
                    us => us / 1000,
                };
                self.begin_tx(text, ts_ms)?;
            }
            // ANONYMOUS_GTID: the server is not in GTID mode; we cannot resume reliably.
            34 => {
                return Err(SourceError::Fatal(format!(
                    "anonymous (non-GTID) transaction at {}: gtid_mode must be ON. Fix: SET GLOBAL gtid_mode=ON (via OFF_PERMISSIVE, ON_PERMISSIVE) and gtid_mode=ON in my.cnf",
                    at(self)
                )))
            }
            // MariaDB GTID: seq_no, domain, flags. Without FL_STANDALONE a BEGIN
            // follows; on_query tracks BEGIN either way.
            162 => {
                if body.len() < 13 {
                    return Err(SourceError::Fatal("truncated MariaDB GTID event".into()));
                }
                let seq = u64::from_le_bytes(body[0..8].try_into().unwrap());
                let domain = u32::from_le_bytes(body[8..12].try_into().unwrap());
                self.begin_tx(format!("{domain}-{origin_server}-{seq}"), ts * 1000)?;
            }
            // QUERY: BEGIN/COMMIT/DDL.
            2 => self.on_query(body, ts, origin_server, out)?,
            // XID / XA_PREPARE: commit.
            16 | 38 => self.commit(out.len())?,
            // TABLE_MAP.
            19 => self.on_table_map(body, ty)?,
            // Rows events v1, v2, partial JSON update.
            23..=25 | 30..=32 | 39 => self.on_rows(ev, ty, origin_server, out)?,
            // TRANSACTION_PAYLOAD: a whole transaction, usually zstd-compressed.
            40 => self.on_payload(body, ev.len(), out)?,
            // Events that carry nothing for row-based CDC, each understood:
            // STOP, PREVIOUS_GTIDS, HEARTBEAT (v1, v2), ROWS_QUERY, INTVAR, RAND,
            // USER_VAR (statement-based helpers; a statement DML stops us in on_query),
            // TRANSACTION_CONTEXT and VIEW_CHANGE (group replication),
            // MariaDB ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_LIST.
            3 | 35 | 27 | 41 | 29 | 5 | 13 | 14 | 36 | 37 | 160 | 161 | 163 => {}
            // INCIDENT: the server lost events; continuing would hide a gap.
            26 => {
                return Err(SourceError::Fatal(format!(
                    "INCIDENT event at {}: the source server reports lost binlog events; re-snapshot the affected tables, then restart from --from latest",
                    at(self)
                )))
            }
            // MariaDB compressed events: refused (the check asks for log_bin_compress=OFF).
            165..=171 => {
                return Err(SourceError::Fatal(format!(
                    "{} at {}: MariaDB binlog compression is not supported. Fix: SET GLOBAL log_bin_compress=OFF and log_bin_compress=OFF in my.cnf",
                    event_name(ty),
                    at(self)
                )))
            }
            164 => {
                return Err(SourceError::Fatal(format!(
                    "START_ENCRYPTION event at {}: encrypted binlogs are not supported",
                    at(self)
                )))
            }
            _ if flags & LOG_EVENT_IGNORABLE_F != 0 => {
                tracing::debug!(event_type = ty, at = %at(self), "skipping event the server flags as ignorable");
            }
            _ => {
                return Err(SourceError::Fatal(format!(
                    "unknown binlog event type {ty} ({}) at {}: rowstream cannot decode it and will not skip it; upgrade rowstream",
                    event_name(ty),
                    at(self)
                )))
            }
        }
        Ok(())
    }

    fn begin_tx(&mut self, gtid: String, ts_ms: u64) -> Result<(), SourceError> {
        let parsed = Gtid::parse(self.flavor, &gtid)
            .map_err(|e| SourceError::Fatal(format!("GTID `{gtid}`: {e}")))?;
        let sequence = self.executed.sequence_with(self.sequence, &parsed);
        let gtid: Arc<str> = Arc::from(gtid);
        let skip = match self.resume_skip.take() {
            Some((g, n)) if g == gtid => n,
            _ => 0,
        };
        self.tx = Some(Tx {
            gtid,
            parsed,
            ts_ms,
            total: 0,
            per_table: HashMap::new(),
            skip,
            in_begin: false,
            sequence,
        });
        Ok(())
    }

    /// Ends the open transaction; `end` is the batch length after its last record.
    fn commit(&mut self, end: usize) -> Result<(), SourceError> {
        if let Some(tx) = self.tx.take() {
            self.executed
                .add(&tx.parsed)
                .map_err(|e| SourceError::Fatal(format!("GTID {}: {e}", tx.gtid)))?;
            self.sequence = tx.sequence;
            self.committed = true;
            // Transactions with nothing for us (filtered tables) need no boundary.
            if tx.total > 0 {
                self.commits.push(Commit {
                    end,
                    gtid: tx.gtid,
                    events: tx.total,
                });
            }
        }
        Ok(())
    }

    fn on_query(
        &mut self,
        body: &[u8],
        ts: u64,
        origin: u32,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let log_pos = self.event_start;
        let bad = || SourceError::Fatal("truncated QUERY event".into());
        let post = self.post_header.get(1).copied().unwrap_or(13) as usize;
        let db_len = *body.get(8).ok_or_else(bad)? as usize;
        let status_len =
            u16::from_le_bytes(body.get(11..13).ok_or_else(bad)?.try_into().unwrap()) as usize;
        let db_start = post + status_len;
        let db = body.get(db_start..db_start + db_len).ok_or_else(bad)?;
        let query = body.get(db_start + db_len + 1..).ok_or_else(bad)?;
        let sql = String::from_utf8_lossy(query);
        let db = String::from_utf8_lossy(db).into_owned();
        let word = first_word(&sql);
        match word.as_str() {
            "BEGIN" => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.in_begin = true;
                }
                return Ok(());
            }
            "XA" => {
                let second = sql.split_whitespace().nth(1).unwrap_or("").to_ascii_uppercase();
                if second == "START" || second == "BEGIN" {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.in_begin = true;
                    }
                    return Ok(());
                }
                if second == "END" {
                    return Ok(());
                }
                return self.commit(out.len()); // XA COMMIT / XA ROLLBACK: a transaction of its own
            }
            "COMMIT" => return self.commit(out.len()),
            "ROLLBACK" => {
                // A transaction that touched a non-transactional table and rolled back is logged whole.
                return self.commit(out.len());
            }
            "SAVEPOINT" | "RELEASE" => return Ok(()),
            "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" => {
                return Err(SourceError::Fatal(format!(
                    "statement-based DML in the binlog at {}:{log_pos} (`{}`): its rows cannot be captured. \
                     Every session must use binlog_format=ROW: SET GLOBAL binlog_format=ROW, and find the client that sets SESSION binlog_format",
                    self.file,
                    truncate(&sql, 120)
                )))
            }
            _ => {}
        }
        // DDL (or another non-row statement): ends cached table maps, becomes a schema change record.
        self.tables.clear();
        // `ALTER TABLE b.t` run from `USE a` concerns schema b.
        let db = ddl_schema(&sql).unwrap_or(db);
        if self.filter.matches_db(&db) {
            let gtid = self
                .tx
                .as_ref()
                .map(|t| t.gtid.clone())
                .unwrap_or_else(|| Arc::from(""));
            let ts_ms = self.tx.as_ref().map(|t| t.ts_ms).unwrap_or(ts * 1000);
            let skip = self.tx.as_ref().map(|t| t.skip > 0).unwrap_or(false);
            if !skip {
                out.push(Record::SchemaChange(SchemaChange {
                    source: Source {
                        version: VERSION,
                        connector: self.flavor,
                        name: self.name.clone(),
                        ts_ms,
                        snapshot: Snapshot::False,
                        db: Arc::from(db.as_str()),
                        table: Arc::from(""),
                        server_id: origin,
                        gtid,
                        file: self.file.clone(),
                        pos: self.event_start,
                        row: 0,
                        sequence: self.tx.as_ref().map_or(self.sequence, |t| t.sequence),
                    },
                    ts_ms: now_ms(),
                    database: Arc::from(db.as_str()),
                    ddl: sql.into_owned(),
                }));
            }
            if let Some(tx) = self.tx.as_mut() {
                tx.total += 1;
            }
        }
        if !self.tx.as_ref().map(|t| t.in_begin).unwrap_or(false) {
            self.commit(out.len())?;
        }
        Ok(())
    }

    fn on_table_map(&mut self, body: &[u8], ty: u8) -> Result<(), SourceError> {
        let post = self.post_header.get(ty as usize - 1).copied().unwrap_or(8) as usize;
        let id_len = if post == 6 { 4 } else { 6 };
        let bad = || SourceError::Fatal("truncated TABLE_MAP event".into());
        let mut id = [0u8; 8];
        id[..id_len].copy_from_slice(body.get(..id_len).ok_or_else(bad)?);
        let table_id = u64::from_le_bytes(id);
        let rest = body.get(post..).ok_or_else(bad)?;
        let db_len = *rest.first().ok_or_else(bad)? as usize;
        let db = rest.get(1..1 + db_len).ok_or_else(bad)?;
        let t = rest.get(2 + db_len..).ok_or_else(bad)?;
        let t_len = *t.first().ok_or_else(bad)? as usize;
        let table = t.get(1..1 + t_len).ok_or_else(bad)?;
        let included = self.filter.matches(
            &String::from_utf8_lossy(db),
            &String::from_utf8_lossy(table),
        );
        let entry = if included {
            let schema = TableSchema::from_table_map(body, post as u8, self.flavor)
                .map_err(|e| SourceError::Fatal(e.to_string()))?;
            Some(Arc::new(schema))
        } else {
            None
        };
        self.tables.insert(table_id, entry);
        Ok(())
    }

    fn on_rows(
        &mut self,
        ev: &[u8],
        ty: u8,
        origin: u32,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let log_pos = self.event_start;
        let body = &ev[HEADER_LEN..];
        let post = self.post_header.get(ty as usize - 1).copied().unwrap_or(10);
        let h = decode::parse_rows_header(ty, body, post)
            .map_err(|e| SourceError::Fatal(e.to_string()))?;
        let schema = match self.tables.get(&h.table_id) {
            Some(Some(s)) => s.clone(),
            Some(None) => return Ok(()), // excluded by the table filter
            None => {
                return Err(SourceError::Fatal(format!(
                    "rows event for table id {} without a preceding TABLE_MAP at {}:{log_pos}",
                    h.table_id, self.file
                )))
            }
        };
        let Some(tx) = self.tx.as_mut() else {
            return Err(SourceError::Fatal(format!(
                "rows event outside a transaction at {}:{log_pos}",
                self.file
            )));
        };
        let op = match h.kind {
            decode::RowsKind::Write => Op::Create,
            decode::RowsKind::Update | decode::RowsKind::PartialUpdate => Op::Update,
            decode::RowsKind::Delete => Op::Delete,
        };
        let pos = self.event_start;
        self.batch_bytes += body.len();
        // Inside a TRANSACTION_PAYLOAD every rows event shares the payload's
        // position: number rows across them so (file, pos, row) stays unique.
        if self.rows_at != pos {
            self.rows_at = pos;
            self.rows_done = 0;
        }
        let now = now_ms();
        let mut dec = RowsDecoder::new(&h, &schema);
        let before_cols = dec.columns_before().clone();
        let after_cols = dec.columns_after().clone();
        let mut row = self.rows_done;
        // The next row's images start at full size: no regrowth per value.
        let width = schema.columns.len();
        loop {
            let more = dec
                .next_row(&mut self.before, &mut self.after)
                .map_err(|e| {
                    SourceError::Fatal(format!(
                        "{e} (at {}:{log_pos}, {}.{})",
                        self.file, schema.db, schema.table
                    ))
                })?;
            if !more {
                break;
            }
            tx.total += 1;
            let per_table = tx.per_table.entry(h.table_id).or_insert(0);
            *per_table += 1;
            let dco = *per_table;
            row += 1;
            if tx.total <= tx.skip {
                continue;
            }
            let before = matches!(op, Op::Update | Op::Delete).then(|| Row {
                columns: before_cols.clone(),
                values: std::mem::replace(&mut self.before, Vec::with_capacity(width)),
            });
            let after = matches!(op, Op::Update | Op::Create).then(|| Row {
                columns: after_cols.clone(),
                values: std::mem::replace(&mut self.after, Vec::with_capacity(width)),
            });
            out.push(Record::Change(ChangeEvent {
                op,
                before,
                after,
                ts_ms: now,
                source: Source {
                    version: VERSION,
                    connector: self.flavor,
                    name: self.name.clone(),
                    ts_ms: tx.ts_ms,
                    snapshot: Snapshot::False,
                    db: schema.db.clone(),
                    table: schema.table.clone(),
                    server_id: origin,
                    gtid: tx.gtid.clone(),
                    file: self.file.clone(),
                    pos,
                    row: row - 1,
                    sequence: tx.sequence,
                },
                transaction: Some(Transaction {
                    id: tx.gtid.clone(),
                    total_order: tx.total,
                    data_collection_order: dco,
                }),
                primary_key: schema.primary_key.clone(),
                table: Some(schema.meta.clone()),
            }));
        }
        self.rows_done = row;
        Ok(())
    }

    fn on_payload(
        &mut self,
        body: &[u8],
        size: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let fde = self.fde.clone();
        let tpe: TransactionPayloadEvent<'_> = ParseBuf(body)
            .parse(BinlogCtx::new(size, &fde, 40))
            .map_err(|e| SourceError::Fatal(format!("bad TRANSACTION_PAYLOAD event: {e}")))?;
        let mut reader = tpe.decompressed().map_err(|e| {
            SourceError::Fatal(format!("TRANSACTION_PAYLOAD: unsupported compression: {e}"))
        })?;
        let mut buf = std::mem::take(&mut self.payload_buf);
        let result = (|| {
            loop {
                let mut hdr = [0u8; HEADER_LEN];
                match read_full(&mut reader, &mut hdr)? {
                    0 => return Ok(()),
                    n if n < HEADER_LEN => {
                        return Err(SourceError::Fatal(
                            "TRANSACTION_PAYLOAD ends inside an event header".into(),
                        ))
                    }
                    _ => {}
                }
                let len = u32::from_le_bytes(hdr[9..13].try_into().unwrap()) as usize;
                if len < HEADER_LEN {
                    return Err(SourceError::Fatal(
                        "TRANSACTION_PAYLOAD holds an event with a bad size".into(),
                    ));
                }
                buf.clear();
                buf.extend_from_slice(&hdr);
                buf.resize(len, 0);
                if read_full(&mut reader, &mut buf[HEADER_LEN..])? != len - HEADER_LEN {
                    return Err(SourceError::Fatal(
                        "TRANSACTION_PAYLOAD ends inside an event".into(),
                    ));
                }
                // Inner events are not checksummed (WL#3549).
                self.on_event(&buf, out)?;
            }
        })();
        self.payload_buf = buf;
        result
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, SourceError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(SourceError::Fatal(format!(
                    "TRANSACTION_PAYLOAD decompression failed: {e}"
                )))
            }
        }
    }
    Ok(n)
}

/// MySQL computes a FORMAT_DESCRIPTION checksum with LOG_EVENT_BINLOG_IN_USE_F cleared.
fn fde_checksum_matches(data: &[u8], want: u32) -> bool {
    if data[4] != 15 || data[17] & 1 == 0 {
        return false;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&data[..17]);
    h.update(&[data[17] & !1]);
    h.update(&data[18..]);
    h.finalize() == want
}

fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// First SQL keyword, skipping whitespace and comments, upper-cased.
fn first_word(sql: &str) -> String {
    let mut s = sql.trim_start();
    loop {
        if let Some(r) = s.strip_prefix("/*") {
            // Executable comments (/*!40101 ...*/) still hide the keyword in practice only for SET; skip them.
            s = r.find("*/").map(|i| r[i + 2..].trim_start()).unwrap_or("");
        } else if s.starts_with("--") || s.starts_with('#') {
            s = s.find('\n').map(|i| s[i + 1..].trim_start()).unwrap_or("");
        } else {
            break;
        }
    }
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// The schema a DDL statement names explicitly: `db` of `CREATE TABLE db.t`,
/// `ALTER TABLE db.t`, `DROP TABLE db.t`, `RENAME TABLE db.t TO ...`,
/// `TRUNCATE db.t`, `CREATE INDEX i ON db.t`, `CREATE/DROP DATABASE db`.
/// None when the object is unqualified (the default database applies).
fn ddl_schema(sql: &str) -> Option<String> {
    let mut toks = SqlTokens { s: sql };
    let mut prev_kw = String::new();
    for _ in 0..12 {
        let t = toks.next()?;
        let kw = t.to_ascii_uppercase();
        match kw.as_str() {
            "DATABASE" | "SCHEMA" if matches!(prev_kw.as_str(), "CREATE" | "DROP" | "ALTER") => {
                let mut name = toks.next()?;
                while matches!(name.to_ascii_uppercase().as_str(), "IF" | "NOT" | "EXISTS") {
                    name = toks.next()?;
                }
                return Some(unquote(&name));
            }
            "TABLE" | "ON" | "TRUNCATE" => {
                let mut name = toks.next()?;
                while matches!(
                    name.to_ascii_uppercase().as_str(),
                    "IF" | "NOT" | "EXISTS" | "TABLE"
                ) {
                    name = toks.next()?;
                }
                return (toks.peek_dot()).then(|| unquote(&name));
            }
            _ => prev_kw = kw,
        }
    }
    None
}

/// Minimal SQL word splitter: identifiers, `quoted` names, single punctuation.
struct SqlTokens<'a> {
    s: &'a str,
}

impl SqlTokens<'_> {
    fn skip_space(&mut self) {
        loop {
            self.s = self.s.trim_start();
            if let Some(r) = self.s.strip_prefix("/*") {
                self.s = r.find("*/").map(|i| &r[i + 2..]).unwrap_or("");
            } else if self.s.starts_with("--") || self.s.starts_with('#') {
                self.s = self.s.find('\n').map(|i| &self.s[i + 1..]).unwrap_or("");
            } else {
                return;
            }
        }
    }

    fn next(&mut self) -> Option<String> {
        self.skip_space();
        let c = self.s.chars().next()?;
        let end = if c == '`' || c == '"' {
            // Quoted identifier; a doubled quote is part of the name.
            let b = self.s.as_bytes();
            let mut i = 1;
            while i < b.len() {
                if b[i] == c as u8 {
                    if b.get(i + 1) == Some(&(c as u8)) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            (i + 1).min(b.len())
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            self.s
                .find(|x: char| !(x.is_alphanumeric() || x == '_' || x == '$'))
                .unwrap_or(self.s.len())
        } else {
            c.len_utf8()
        };
        let (t, rest) = self.s.split_at(end);
        self.s = rest;
        Some(t.to_string())
    }

    /// True when the next character is a `.` (the previous token was a qualifier).
    fn peek_dot(&mut self) -> bool {
        self.skip_space();
        self.s.starts_with('.')
    }
}

fn unquote(name: &str) -> String {
    for q in ['`', '"'] {
        if name.len() >= 2 && name.starts_with(q) && name.ends_with(q) {
            let inner = &name[1..name.len() - 1];
            return inner.replace(&format!("{q}{q}"), &q.to_string());
        }
    }
    name.to_string()
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Human name of a binlog event type code, for error messages.
pub fn event_name(ty: u8) -> &'static str {
    match ty {
        1 => "START_EVENT_V3",
        2 => "QUERY",
        3 => "STOP",
        4 => "ROTATE",
        5 => "INTVAR",
        6 => "LOAD",
        7 => "SLAVE",
        8 => "CREATE_FILE",
        9 => "APPEND_BLOCK",
        10 => "EXEC_LOAD",
        11 => "DELETE_FILE",
        12 => "NEW_LOAD",
        13 => "RAND",
        14 => "USER_VAR",
        15 => "FORMAT_DESCRIPTION",
        16 => "XID",
        17 => "BEGIN_LOAD_QUERY",
        18 => "EXECUTE_LOAD_QUERY",
        19 => "TABLE_MAP",
        20..=22 => "PRE_GA_ROWS",
        23 => "WRITE_ROWS_V1",
        24 => "UPDATE_ROWS_V1",
        25 => "DELETE_ROWS_V1",
        26 => "INCIDENT",
        27 => "HEARTBEAT",
        28 => "IGNORABLE",
        29 => "ROWS_QUERY",
        30 => "WRITE_ROWS",
        31 => "UPDATE_ROWS",
        32 => "DELETE_ROWS",
        33 => "GTID",
        34 => "ANONYMOUS_GTID",
        35 => "PREVIOUS_GTIDS",
        36 => "TRANSACTION_CONTEXT",
        37 => "VIEW_CHANGE",
        38 => "XA_PREPARE",
        39 => "PARTIAL_UPDATE_ROWS",
        40 => "TRANSACTION_PAYLOAD",
        41 => "HEARTBEAT_V2",
        42 => "GTID_TAGGED",
        160 => "ANNOTATE_ROWS",
        161 => "BINLOG_CHECKPOINT",
        162 => "MARIADB_GTID",
        163 => "GTID_LIST",
        164 => "START_ENCRYPTION",
        165 => "QUERY_COMPRESSED",
        166 => "WRITE_ROWS_COMPRESSED_V1",
        167 => "UPDATE_ROWS_COMPRESSED_V1",
        168 => "DELETE_ROWS_COMPRESSED_V1",
        169 => "WRITE_ROWS_COMPRESSED",
        170 => "UPDATE_ROWS_COMPRESSED",
        171 => "DELETE_ROWS_COMPRESSED",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(flavor: Flavor) -> Processor {
        let cfg = StreamConfig {
            servers: vec![ConnOpts::from_url("mysql://u@127.0.0.1:1").unwrap()],
            server_id: 1,
            name: Arc::from("t"),
            report_host: "rowstream".into(),
            filter: TableFilter::default(),
            heartbeat: Duration::from_secs(1),
        };
        Processor::new(&cfg, flavor, GtidSet::empty(flavor))
    }

    /// A wire event: header, body, CRC32 (as the server sends with checksums on).
    fn wire_event(ty: u8, log_pos: u32, flags: u16, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + 4) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&0u32.to_le_bytes());
        e.push(ty);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&log_pos.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        let crc = crc32fast::hash(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        e
    }

    /// Runs transactions through a processor started at `start` and returns
    /// each one's `sequence`.
    fn sequences(flavor: Flavor, start: &str, gtids: &[&str]) -> Vec<u64> {
        let cfg = processor(flavor);
        let mut p = Processor::new(
            &StreamConfig {
                servers: vec![ConnOpts::from_url("mysql://u@127.0.0.1:1").unwrap()],
                server_id: 1,
                name: cfg.name.clone(),
                report_host: "rowstream".into(),
                filter: TableFilter::default(),
                heartbeat: Duration::from_secs(1),
            },
            flavor,
            GtidSet::parse(flavor, start).unwrap(),
        );
        gtids
            .iter()
            .map(|g| {
                p.begin_tx(g.to_string(), 0).unwrap();
                let s = p.tx.as_ref().unwrap().sequence;
                p.commit(0).unwrap();
                s
            })
            .collect()
    }

    #[test]
    fn sequence_of_transactions() {
        const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        const V: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";
        let all: Vec<String> = (1..=4)
            .map(|n| format!("{U}:{n}"))
            .chain([format!("{V}:1")])
            .collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let from_scratch = sequences(Flavor::MySql, "", &all);
        assert_eq!(from_scratch, [1, 2, 3, 4, 5]);
        // Resumed from a checkpoint after the second: the same numbers for the rest.
        assert_eq!(
            sequences(Flavor::MySql, &format!("{U}:1-2"), &all[2..]),
            [3, 4, 5]
        );
        // A promoted replica with the same history under its own UUID keeps counting.
        assert_eq!(
            sequences(
                Flavor::MySql,
                &format!("{U}:1-4"),
                &[&format!("{V}:1"), &format!("{V}:2")]
            ),
            [5, 6]
        );
        let ma = ["0-1-1", "0-1-2", "1-5-1", "0-2-3"];
        assert_eq!(sequences(Flavor::MariaDb, "", &ma), [1, 2, 3, 4]);
        assert_eq!(sequences(Flavor::MariaDb, "0-1-2", &ma[2..]), [3, 4]);
        // Failover: the promoted server (another server id) continues the domain.
        assert_eq!(sequences(Flavor::MariaDb, "0-1-2,1-5-1", &["0-9-3"]), [4]);
    }

    #[test]
    fn sequence_survives_a_reconnect() {
        let mut p = processor(Flavor::MariaDb);
        p.begin_tx("0-1-1".into(), 0).unwrap();
        p.commit(0).unwrap();
        p.begin_tx("0-1-2".into(), 0).unwrap();
        p.prepare_resume(); // connection lost inside the second transaction
        p.begin_tx("0-1-2".into(), 0).unwrap();
        assert_eq!(p.tx.as_ref().unwrap().sequence, 2);
        p.commit(0).unwrap();
        assert_eq!(p.sequence, p.executed.sequence());
    }

    #[test]
    fn unknown_event_is_fatal_and_named() {
        let mut p = processor(Flavor::MySql);
        let err = p
            .on_wire_event(&wire_event(99, 500, 0, b"xyz"), &mut Vec::new())
            .unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("unknown binlog event type 99"),
            "{err}"
        );
        // Only the server's own "ignorable" flag lets an unknown event pass.
        p.on_wire_event(
            &wire_event(99, 500, LOG_EVENT_IGNORABLE_F, b"xyz"),
            &mut Vec::new(),
        )
        .unwrap();
    }

    #[test]
    fn mariadb_compressed_events_are_refused() {
        let mut p = processor(Flavor::MariaDb);
        let err = p
            .on_wire_event(&wire_event(169, 500, 0, &[0; 16]), &mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string().contains("WRITE_ROWS_COMPRESSED")
                && err.to_string().contains("log_bin_compress=OFF"),
            "{err}"
        );
    }

    #[test]
    fn crc_mismatch_is_fatal() {
        let mut p = processor(Flavor::MySql);
        let mut e = wire_event(16, 500, 0, &7u64.to_le_bytes());
        e[HEADER_LEN] ^= 1;
        let err = p.on_wire_event(&e, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("CRC32 mismatch in a XID event"),
            "{err}"
        );
    }

    /// mysql_common reads the first (artificial) ROTATE before it has seen a
    /// FORMAT_DESCRIPTION, so it does not know the event carries a CRC and keeps
    /// the 4 checksum bytes in the file name. We strip the CRC of every event
    /// first (the checksum setting is known from the server before the dump).
    #[test]
    fn first_rotate_name_has_no_checksum_bytes() {
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"mysql-bin.000001");
        let ev = wire_event(4, 0, LOG_EVENT_ARTIFICIAL_F, &body);

        let mut esr = mysql_common::binlog::EventStreamReader::new(BinlogVersion::Version4);
        let theirs = esr.read(&ev[..]).unwrap().unwrap();
        let rot: mysql_common::binlog::events::RotateEvent<'_> = theirs.read_event().unwrap();
        assert_eq!(
            rot.name_raw().len(),
            "mysql-bin.000001".len() + 4,
            "mysql_common keeps the CRC in the name"
        );

        let mut p = processor(Flavor::MySql);
        p.on_wire_event(&ev, &mut Vec::new()).unwrap();
        assert_eq!(&*p.file, "mysql-bin.000001");
    }

    #[test]
    fn first_word_skips_comments() {
        assert_eq!(first_word("  /* x */ create table t (a int)"), "CREATE");
        assert_eq!(first_word("-- c\nBEGIN"), "BEGIN");
        assert_eq!(first_word("insert into t values (1)"), "INSERT");
    }

    #[test]
    fn ddl_schema_names() {
        assert_eq!(
            ddl_schema("ALTER TABLE b.keep ADD COLUMN x INT").as_deref(),
            Some("b")
        );
        assert_eq!(
            ddl_schema("create table if not exists `my db`.`t` (a int)").as_deref(),
            Some("my db")
        );
        assert_eq!(ddl_schema("CREATE TABLE t (a int)"), None);
        assert_eq!(
            ddl_schema("DROP TABLE IF EXISTS x.t1, x.t2").as_deref(),
            Some("x")
        );
        assert_eq!(
            ddl_schema("CREATE DATABASE IF NOT EXISTS shop").as_deref(),
            Some("shop")
        );
        assert_eq!(ddl_schema("DROP SCHEMA `a``b`").as_deref(), Some("a`b"));
        assert_eq!(
            ddl_schema("CREATE UNIQUE INDEX i ON s.t (a)").as_deref(),
            Some("s")
        );
        assert_eq!(ddl_schema("TRUNCATE TABLE s.t").as_deref(), Some("s"));
        assert_eq!(ddl_schema("TRUNCATE s.t").as_deref(), Some("s"));
        assert_eq!(
            ddl_schema("/* c */ RENAME TABLE a.t TO b.t").as_deref(),
            Some("a")
        );
        assert_eq!(ddl_schema("CREATE USER 'u'@'%'"), None);
    }

    #[test]
    fn uuid_format() {
        let b = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        assert_eq!(format_uuid(&b), "3e11fa47-71ca-11e1-9e33-c80aa9429562");
    }
}
