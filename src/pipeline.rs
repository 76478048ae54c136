//! The service: source -> fan-out -> sinks; ordered acks -> checkpoint.
//!
//! Invariants:
//! - every sink gets every batch, in stream order, through a bounded channel;
//!   a slow sink slows the source (backpressure), memory does not grow;
//! - each sink runs on its own thread, so its I/O never stalls decoding;
//! - acks are consumed in batch order; the checkpoint advances only to the
//!   GTID set of transactions complete in batches every sink has acked;
//! - an ack that fails or is dropped stops the service without advancing the
//!   checkpoint past what is durable everywhere;
//! - the checkpoint is written atomically (see `checkpoint.rs`), at most a few
//!   times per second and once more at the end.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rowstream_api::metrics;
use rowstream_api::{Ack, Batch, Committed, Flavor, Record, Sink, SinkBuilder, SinkError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint::{self, Checkpoint, CheckpointStore, SnapshotState};
use crate::config::{Config, SinkConfig, SnapshotMode};
use crate::gtid::{Gtid, GtidSet};
use crate::source::binlog::dump::{self, DumpConn, StreamConfig};
use crate::source::checks::{self, CheckInput};
use crate::source::{query, snapshot, SourceError, CHANNEL_BATCHES};

/// Batches dispatched to the sinks and not yet acked by all of them. Sinks
/// that ack late (Kafka acks on delivery reports) need many batches in
/// flight to keep their pipes full. The decoded events are not held for
/// that: every sink hands each batch back once written (encoded into its own
/// bounded buffers), so what stays in flight is ack bookkeeping plus what the
/// sinks buffer. 64 batches keep librdkafka's batches full; 256 cost ~110 MB
/// more RSS (librdkafka's queue) without a gain we could measure.
const MAX_PENDING: usize = 64;
/// Binlog bytes of the batches in flight: bounds what a sink may buffer in
/// encoded form (librdkafka's queue, a group-commit buffer) whatever the row size.
const MAX_PENDING_BYTES: usize = 32 << 20;
/// Batches queued per sink.
const SINK_QUEUE: usize = 4;
/// A sink is flushed when no batch has arrived for this long.
const IDLE_FLUSH: Duration = Duration::from_millis(2);
/// At most this often the checkpoint file is rewritten while streaming.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Why `run` ended unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The server is not set up for us; each line says what to fix.
    #[error("{} check(s) failed:\n  - {}", .0.len(), .0.join("\n  - "))]
    Checks(Vec<String>),
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("sink {name}: {reason}")]
    Sink { name: String, reason: String },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// The checkpoint as sinks see it at start.
struct CheckpointCommitted {
    set: Option<GtidSet>,
    flavor: Flavor,
    /// A snapshot in progress: which of its chunk markers are durable.
    snapshot: Option<SnapshotState>,
}

impl Committed for CheckpointCommitted {
    fn contains(&self, gtid: &str) -> bool {
        if checkpoint::parse_marker(gtid).is_some() {
            // Chunk markers of a finished snapshot are all durable.
            return self.set.is_some()
                && self.snapshot.as_ref().is_none_or(|s| s.covers_marker(gtid));
        }
        match (&self.set, Gtid::parse(self.flavor, gtid)) {
            (Some(set), Ok(g)) => set.contains(&g),
            _ => false,
        }
    }
    fn is_empty(&self) -> bool {
        self.set.is_none()
    }
    fn recognizes(&self, id: &str) -> bool {
        match (checkpoint::parse_marker(id), &self.snapshot) {
            (Some((snap, _)), Some(s)) if snap == s.id => true,
            _ => self.contains(id),
        }
    }
}

/// The configured sink's builder.
fn build_sink(cfg: &SinkConfig) -> Result<Box<dyn SinkBuilder>, ServiceError> {
    let bad = |e: &dyn std::fmt::Display| ServiceError::Sink {
        name: cfg.name().into(),
        reason: e.to_string(),
    };
    Ok(match cfg {
        SinkConfig::File(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.clone())
        }
        SinkConfig::Kafka(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.clone())
        }
        SinkConfig::Elasticsearch(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.clone())
        }
    })
}

/// Runs the service until `stop` turns true (clean drain, Ok) or an error.
pub async fn run(cfg: Config, stop: watch::Receiver<bool>) -> Result<(), ServiceError> {
    let store = CheckpointStore::open(&cfg.checkpoint.dir)?;
    if let Some(addr) = cfg.metrics.listen {
        crate::metrics::serve(addr).await.map_err(|e| {
            ServiceError::Checks(vec![format!(
                "metrics.listen: cannot listen on {addr}: {e}; pick a free port or remove [metrics]"
            )])
        })?;
    }
    let saved = store.load()?;
    let servers = cfg.source.conn_opts()?;
    let filter = cfg.source.filter().map_err(SourceError::Config)?;

    // The first reachable server decides the flavour and is checked in full.
    let mut first = None;
    let mut last_err = None;
    for (i, s) in servers.iter().enumerate() {
        match query::query_conn(s).await {
            Ok((conn, flavor)) => {
                first = Some((i, conn, flavor));
                break;
            }
            Err(e) => {
                tracing::warn!(server = ?s, error = %e, "source server unreachable");
                last_err = Some(e);
            }
        }
    }
    let Some((idx, mut conn, flavor)) = first else {
        return Err(last_err.expect("at least one server").into());
    };
    let mode = cfg.snapshot.mode;
    // What to snapshot: continue the checkpoint's snapshot; or a new one on a
    // first start from "latest" (an explicit start position, or "earliest",
    // asks for the binlog, not for a snapshot), or always for initial_only.
    let mut snap_start: Option<snapshot::Start> = match &saved {
        Some(cp) => cp.snapshot.clone().map(|state| snapshot::Start::Resume {
            state,
            cut: cp.gtid_set.clone(),
        }),
        None if mode == SnapshotMode::InitialOnly
            || (mode != SnapshotMode::Never && cfg.source.start == "latest") =>
        {
            Some(snapshot::Start::Fresh)
        }
        None => None,
    };
    let mut saved = saved;
    if let (Some(cp), None, SnapshotMode::WhenNeeded) = (&saved, &snap_start, mode) {
        if cp.flavor() == flavor {
            let gone = checks::check_start_position(&mut conn, flavor, &cp.gtid_set)
                .await
                .map_err(SourceError::from)?;
            if !gone.is_empty() {
                tracing::warn!(
                    gtid_set = %cp.gtid_set,
                    reasons = %gone.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "),
                    "snapshot.mode = when_needed: the checkpoint cannot be resumed from the binlog; taking a new snapshot"
                );
                snap_start = Some(snapshot::Start::Fresh);
            }
        }
    }
    if mode == SnapshotMode::InitialOnly && snap_start.is_none() && saved.is_some() {
        tracing::info!("snapshot.mode = initial_only and the snapshot is complete: nothing to do");
        return Ok(());
    }
    let start = match &saved {
        Some(cp) if cp.flavor() != flavor => {
            return Err(ServiceError::Checks(vec![format!(
                "checkpoint: its GTID set is from {} but the source is {}; point source.url at the right server",
                cp.flavor().as_str(),
                flavor.as_str()
            )]))
        }
        Some(_) if matches!(snap_start, Some(snapshot::Start::Fresh)) => {
            query::server_executed(&mut conn, flavor).await?
        }
        Some(cp) => {
            tracing::info!(gtid_set = %cp.gtid_set, snapshot = cp.snapshot.is_some(), "resuming from checkpoint");
            cp.gtid_set.clone()
        }
        None => {
            let s = query::resolve_start(&mut conn, flavor, &cfg.source.start).await?;
            tracing::info!(start = %cfg.source.start, gtid_set = %s, "no checkpoint: starting from source.start");
            s
        }
    };
    // Only one process holds this checkpoint directory, so a registration
    // under this host and our id is our own previous run (killed).
    let report_host = format!("rowstream-{}", cfg.source.name);
    let failures = checks::run_checks(
        &mut conn,
        &CheckInput {
            flavor,
            server_id: cfg.source.server_id,
            start: Some(&start),
            own_report_host: Some(&report_host),
        },
    )
    .await
    .map_err(SourceError::from)?;
    conn.disconnect().await.ok();
    if !failures.is_empty() {
        return Err(ServiceError::Checks(
            failures.iter().map(|f| f.to_string()).collect(),
        ));
    }

    // Sinks: each drops what lies past the checkpoint, then runs on its own thread.
    let committed = CheckpointCommitted {
        set: saved.as_ref().map(|c| c.gtid_set.clone()),
        flavor,
        snapshot: saved.as_ref().and_then(|c| c.snapshot.clone()),
    };
    let mut sink_txs = Vec::new();
    let mut sink_done = Vec::new();
    // Written batches come back here to be freed on this thread: the
    // reference counts every event of a table shares (names, GTID, table
    // metadata) then never bounce between cores.
    let (free_tx, mut free_rx) = mpsc::unbounded_channel::<Arc<Batch>>();
    for sc in &cfg.sinks {
        let sink = build_sink(sc)?
            .start(&committed)
            .await
            .map_err(|e| ServiceError::Sink {
                name: sc.name().into(),
                reason: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel::<(Arc<Batch>, Ack)>(SINK_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        let name = sc.name().to_string();
        let free_tx = free_tx.clone();
        std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let r = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(drive_sink(sink, rx, free_tx)),
                    Err(e) => Err(SinkError::Fatal(format!(
                        "cannot start the sink runtime: {e}"
                    ))),
                };
                let _ = done_tx.send(r);
            })
            .map_err(|e| ServiceError::Sink {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        sink_txs.push((name.clone(), tx));
        sink_done.push((name, done_rx));
    }

    let mut servers_ordered = servers.clone();
    servers_ordered.rotate_left(idx);
    let stream_cfg = StreamConfig {
        servers: servers_ordered,
        server_id: cfg.source.server_id,
        name: Arc::from(cfg.source.name.as_str()),
        report_host,
        filter,
        heartbeat: Duration::from_secs(cfg.source.heartbeat_secs.max(1)),
    };
    let server_label = |i: usize| {
        let s = &stream_cfg.servers[i.min(stream_cfg.servers.len() - 1)];
        format!("{}:{}", s.host, s.port)
    };
    let (src_tx, mut src_rx) = mpsc::channel::<crate::source::Batch>(CHANNEL_BATCHES);
    let dump_conn = DumpConn::default();
    let (stop_src_tx, stop_src_rx) = watch::channel(false);

    // The snapshot (if any) fills the channel first; the stream follows from its cut.
    let mut start = start;
    let mut latest_snap: Option<SnapshotState> = None;
    let mut snap_done = None;
    if let Some(s) = snap_start.take() {
        let params = snapshot::Params {
            opts: stream_cfg.servers[0].clone(),
            flavor,
            name: stream_cfg.name.clone(),
            threads: cfg.snapshot.threads,
            chunk_rows: cfg.snapshot.chunk_rows,
            filter: stream_cfg.filter.clone(),
        };
        let running = snapshot::start(params, s, src_tx.clone(), stop_src_rx.clone()).await?;
        start = running.cut;
        latest_snap = Some(running.state);
        snap_done = Some(running.done);
        // A fresh snapshot replaces whatever the checkpoint said.
        saved = None;
    }
    let only_snapshot = mode == SnapshotMode::InitialOnly;
    let mut incremental = cfg.snapshot.signal_schema.as_ref().map(|schema| {
        if !stream_cfg.filter.matches(schema, snapshot::signal::SIGNAL_TABLE) {
            tracing::warn!(schema = %schema, "snapshot.signal_schema: {schema}.{} is not captured (source.include / exclude); on-demand snapshots will not see signals", snapshot::signal::SIGNAL_TABLE);
        }
        snapshot::signal::Incremental::new(snapshot::signal::SignalConfig {
            opts: stream_cfg.servers[0].clone(),
            flavor,
            name: stream_cfg.name.clone(),
            schema: schema.clone(),
            chunk_rows: cfg.snapshot.chunk_rows,
        })
    });
    let source = {
        let stream_cfg = &stream_cfg;
        let dump_conn = &dump_conn;
        let start = start.clone();
        let stop_src_rx = stop_src_rx.clone();
        async move {
            if let Some(done) = snap_done {
                let outcome = done.await.unwrap_or_else(|_| {
                    Err(SourceError::Fatal(
                        "the snapshot thread ended without a result".into(),
                    ))
                })?;
                if outcome == snapshot::Outcome::Stopped || only_snapshot || *stop_src_rx.borrow() {
                    return Ok(());
                }
            }
            dump::run(stream_cfg, start, flavor, src_tx, dump_conn, stop_src_rx).await
        }
    };
    tokio::pin!(source);

    let mut stop = stop;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut seq = 0u64;
    let mut latest = start;
    let mut saved_set = saved.map(|c| (c.gtid_set.to_string(), c.snapshot));
    let mut source_result: Option<Result<(), SourceError>> = None;
    let mut source_closed = false;
    let mut failure: Option<ServiceError> = None;
    let mut stopping = false;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sink_watch = Box::pin(first_sink_end(sink_done));
    let mut pending_bytes = 0usize;
    let m = Meters::new(&cfg);

    type Saved = Option<(String, Option<SnapshotState>)>;
    let save = |set: &GtidSet,
                snap: &Option<SnapshotState>,
                saved_set: &mut Saved|
     -> Result<(), ServiceError> {
        let text = set.to_string();
        if let Some((t, s)) = saved_set.as_ref() {
            if *t == text && s == snap {
                return Ok(());
            }
        }
        store.save(
            &Checkpoint::new(set.clone(), server_label(dump_conn.server()))
                .with_snapshot(snap.clone()),
        )?;
        *saved_set = Some((text, snap.clone()));
        metrics::CHECKPOINT_WRITES.with("").inc();
        metrics::CHECKPOINT_AGE_SECONDS.with("").set(now_secs());
        Ok(())
    };

    // First start: record the start position before any batch, so a crash
    // before the first periodic save leaves a checkpoint the sinks can cut back to.
    if saved_set.is_none() {
        save(&latest, &latest_snap, &mut saved_set)?;
    }
    loop {
        if source_closed && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            r = async { pending.front_mut().expect("guarded").done.as_mut().await }, if !pending.is_empty() => {
                let p = pending.pop_front().expect("front exists");
                pending_bytes -= p.bytes;
                match r {
                    Ok(()) => {
                        m.acked(p.records, pending.front().map(|n| n.oldest_ts_ms));
                        if let Some(ex) = p.executed {
                            latest = ex;
                        }
                        if let Some(s) = p.snapshot {
                            latest_snap = (!s.is_complete()).then_some(*s);
                        }
                    }
                    Err((name, reason)) => {
                        failure = Some(ServiceError::Sink { name, reason });
                        break;
                    }
                }
            }
            Some(b) = free_rx.recv() => drop(b),
            (name, r) = &mut sink_watch => {
                let reason = match r {
                    Ok(()) => "stopped unexpectedly".to_string(),
                    Err(e) => e.to_string(),
                };
                failure = Some(ServiceError::Sink { name, reason });
                break;
            }
            b = src_rx.recv(), if !source_closed && pending.len() < MAX_PENDING && pending_bytes < MAX_PENDING_BYTES => match b {
                Some(mut b) => {
                    if let Some(inc) = incremental.as_mut() {
                        inc.process(&mut b);
                    }
                    seq += 1;
                    pending_bytes += b.bytes;
                    m.events.add(b.records.len() as u64);
                    m.transactions.add(b.commits.len() as u64);
                    let batch = Arc::new(Batch { seq, records: b.records, commits: b.commits });
                    let mut acks = Vec::with_capacity(sink_txs.len());
                    for (name, tx) in &sink_txs {
                        let (ack, rx) = Ack::new();
                        if tx.send((batch.clone(), ack)).await.is_err() {
                            acks.push((name.clone(), None));
                        } else {
                            acks.push((name.clone(), Some(rx)));
                        }
                    }
                    let oldest_ts_ms = batch.records.iter().find_map(|r| match r {
                        Record::Change(ev) => Some(ev.source.ts_ms),
                        _ => None,
                    });
                    if pending.is_empty() {
                        m.lag_from(Some(oldest_ts_ms));
                    }
                    pending.push_back(Pending {
                        executed: b.executed,
                        snapshot: b.snapshot,
                        bytes: b.bytes,
                        records: batch.records.len() as u64,
                        oldest_ts_ms,
                        done: Box::pin(all_acked(acks)),
                    });
                    drop(batch);
                    m.in_flight.set(pending.len() as f64);
                }
                None => source_closed = true,
            },
            r = &mut source, if source_result.is_none() => {
                if let Err(e) = &r {
                    tracing::error!(error = %e, "source stopped");
                }
                source_result = Some(r);
            }
            _ = tick.tick() => {
                // Keeps the lag growing while a sink stalls.
                m.lag_from(pending.front().map(|p| p.oldest_ts_ms));
                save(&latest, &latest_snap, &mut saved_set)?
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                tracing::info!("stopping: finishing the current transaction, flushing sinks, writing the checkpoint");
                stopping = true;
                let _ = stop_src_tx.send(true);
            }
        }
    }

    // A failed sink: stop reading; the checkpoint stays at the last batch acked by all.
    let _ = stop_src_tx.send(true);
    if failure.is_none() && source_result.is_none() {
        source_result = Some((&mut source).await);
    }
    drop(sink_txs);
    dump_conn.release(&stream_cfg.servers).await;
    // `latest` only covers batches every sink acked, so it is safe to keep
    // even when a sink failed after them.
    let saved_now = save(&latest, &latest_snap, &mut saved_set);
    if let Some(f) = failure {
        return Err(f);
    }
    saved_now?;
    tracing::info!(gtid_set = %latest, "checkpoint written");
    match source_result {
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The pipeline's metric handles, looked up once.
struct Meters {
    events: metrics::Handle,
    transactions: metrics::Handle,
    in_flight: metrics::Handle,
    lag: metrics::Handle,
    sink_batches: Vec<metrics::Handle>,
    sink_events: Vec<metrics::Handle>,
}

impl Meters {
    fn new(cfg: &Config) -> Meters {
        let names = || cfg.sinks.iter().map(|s| s.name());
        Meters {
            events: metrics::SOURCE_RECORDS.with(""),
            transactions: metrics::SOURCE_TRANSACTIONS.with(""),
            in_flight: metrics::IN_FLIGHT_BATCHES.with(""),
            lag: metrics::LAG_SECONDS.with(""),
            sink_batches: names().map(|n| metrics::SINK_BATCHES.with(n)).collect(),
            sink_events: names().map(|n| metrics::SINK_RECORDS.with(n)).collect(),
        }
    }

    /// A batch of `records` is durable everywhere; `next` is the commit
    /// time of the oldest batch still in flight (outer None: none in flight).
    fn acked(&self, records: u64, next: Option<Option<u64>>) {
        for (b, e) in self.sink_batches.iter().zip(&self.sink_events) {
            b.inc();
            e.add(records);
        }
        self.lag_from(next);
    }

    /// Lag is the age of the oldest change not yet durable in every sink:
    /// honest while catching up, 0 once everything read is durable.
    fn lag_from(&self, oldest: Option<Option<u64>>) {
        let lag = match oldest.flatten() {
            Some(ms) => (now_secs() - ms as f64 / 1000.0).max(0.0),
            None => 0.0,
        };
        self.lag.set(lag);
    }
}

type AckFuture = Pin<Box<dyn Future<Output = Result<(), (String, String)>> + Send>>;

/// One dispatched batch waiting for every sink's ack.
struct Pending {
    executed: Option<GtidSet>,
    bytes: usize,
    records: u64,
    /// Commit time of the batch's first row change, if it has one.
    oldest_ts_ms: Option<u64>,
    /// Snapshot progress once this batch is durable (chunk completed in it).
    snapshot: Option<Box<SnapshotState>>,
    done: AckFuture,
}

async fn all_acked(
    acks: Vec<(String, Option<rowstream_api::AckReceiver>)>,
) -> Result<(), (String, String)> {
    for (name, rx) in acks {
        let Some(rx) = rx else {
            return Err((name, "the sink is gone".into()));
        };
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err((name, why.to_string())),
            Err(_) => return Err((name, "batch dropped without acknowledgement".into())),
        }
    }
    Ok(())
}

/// Resolves when the first sink thread ends (which, while streaming, is a failure).
async fn first_sink_end(
    mut done: Vec<(String, oneshot::Receiver<Result<(), SinkError>>)>,
) -> (String, Result<(), SinkError>) {
    std::future::poll_fn(move |cx| {
        for (name, rx) in done.iter_mut() {
            if let std::task::Poll::Ready(r) = Pin::new(rx).poll(cx) {
                let r =
                    r.unwrap_or_else(|_| Err(SinkError::Fatal("the sink thread panicked".into())));
                return std::task::Poll::Ready((name.clone(), r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Feeds one sink: write each batch; flush once no batch has come for
/// `IDLE_FLUSH` (and when the channel closes). While batches keep coming the
/// sink makes them durable on its own schedule (group commit) instead of
/// stalling on a flush between two batches.
async fn drive_sink(
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<(Arc<Batch>, Ack)>,
    free: mpsc::UnboundedSender<Arc<Batch>>,
) -> Result<(), SinkError> {
    loop {
        let next = match tokio::time::timeout(IDLE_FLUSH, rx.recv()).await {
            Ok(next) => next,
            Err(_idle) => {
                sink.flush().await?;
                rx.recv().await
            }
        };
        let Some((batch, ack)) = next else { break };
        let written = batch.clone();
        sink.write(batch, ack).await?;
        let _ = free.send(written);
    }
    sink.flush().await
}
