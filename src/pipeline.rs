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

use rowstream_api::{Ack, Batch, Committed, Flavor, Sink, SinkError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{Config, SinkConfig};
use crate::source::checks::{self, CheckInput};
use crate::source::gtid::{Gtid, GtidSet};
use crate::source::stream::{self, DumpConn, StreamConfig};
use crate::source::SourceError;

/// Batches dispatched to the sinks and not yet acked by all of them.
const MAX_PENDING: usize = 16;
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
}

impl Committed for CheckpointCommitted {
    fn contains(&self, gtid: &str) -> bool {
        match (&self.set, Gtid::parse(self.flavor, gtid)) {
            (Some(set), Ok(g)) => set.contains(&g),
            _ => false,
        }
    }
    fn is_empty(&self) -> bool {
        self.set.is_none()
    }
}

/// Builds the configured sink.
fn build_sink(cfg: &SinkConfig) -> Result<Box<dyn Sink>, ServiceError> {
    let bad = |e: &dyn std::fmt::Display| ServiceError::Sink {
        name: cfg.name().into(),
        reason: e.to_string(),
    };
    Ok(match cfg {
        SinkConfig::File(c) => {
            Box::new(rowstream_file::FileSink::new(c.clone()).map_err(|e| bad(&e))?)
        }
        SinkConfig::Kafka(c) => {
            Box::new(rowstream_kafka::KafkaSink::new(c.clone()).map_err(|e| bad(&e))?)
        }
        SinkConfig::Elasticsearch(c) => Box::new(
            rowstream_elasticsearch::ElasticsearchSink::new(c.clone()).map_err(|e| bad(&e))?,
        ),
    })
}

/// Runs the service until `stop` turns true (clean drain, Ok) or an error.
pub async fn run(cfg: Config, stop: watch::Receiver<bool>) -> Result<(), ServiceError> {
    let store = CheckpointStore::open(&cfg.checkpoint.dir)?;
    let saved = store.load()?;
    let servers = cfg.source.conn_opts()?;
    let filter = cfg.source.filter().map_err(SourceError::Config)?;

    // The first reachable server decides the flavour and is checked in full.
    let mut first = None;
    let mut last_err = None;
    for (i, s) in servers.iter().enumerate() {
        match stream::query_conn(s).await {
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
    let start = match &saved {
        Some(cp) if cp.flavor() != flavor => {
            return Err(ServiceError::Checks(vec![format!(
                "checkpoint: its GTID set is from {} but the source is {}; point source.url at the right server",
                cp.flavor().as_str(),
                flavor.as_str()
            )]))
        }
        Some(cp) => {
            tracing::info!(gtid_set = %cp.gtid_set, "resuming from checkpoint");
            cp.gtid_set.clone()
        }
        None => {
            let s = stream::resolve_start(&mut conn, flavor, &cfg.source.start).await?;
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
    };
    let mut sink_txs = Vec::new();
    let mut sink_done = Vec::new();
    for sc in &cfg.sinks {
        let mut sink = build_sink(sc)?;
        sink.start(&committed)
            .await
            .map_err(|e| ServiceError::Sink {
                name: sc.name().into(),
                reason: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel::<(Arc<Batch>, Ack)>(SINK_QUEUE);
        let (done_tx, done_rx) = oneshot::channel();
        let name = sc.name().to_string();
        std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let r = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(drive_sink(sink, rx)),
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
    let (src_tx, mut src_rx) = mpsc::channel::<stream::Batch>(stream::CHANNEL_BATCHES);
    let dump_conn = DumpConn::default();
    let (stop_src_tx, stop_src_rx) = watch::channel(false);
    let source = stream::run(
        &stream_cfg,
        start.clone(),
        flavor,
        src_tx,
        &dump_conn,
        stop_src_rx,
    );
    tokio::pin!(source);

    let mut stop = stop;
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut seq = 0u64;
    let mut latest = start;
    let mut saved_set = saved.map(|c| c.gtid_set.to_string());
    let mut source_result: Option<Result<(), SourceError>> = None;
    let mut source_closed = false;
    let mut failure: Option<ServiceError> = None;
    let mut stopping = false;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sink_watch = Box::pin(first_sink_end(sink_done));

    let save = |set: &GtidSet, saved_set: &mut Option<String>| -> Result<(), ServiceError> {
        let text = set.to_string();
        if saved_set.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        store.save(&Checkpoint::new(
            set.clone(),
            server_label(dump_conn.server()),
        ))?;
        *saved_set = Some(text);
        Ok(())
    };

    // First start: record the start position before any batch, so a crash
    // before the first periodic save leaves a checkpoint the sinks can cut back to.
    if saved_set.is_none() {
        save(&latest, &mut saved_set)?;
    }
    loop {
        if source_closed && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            r = async { pending.front_mut().expect("guarded").done.as_mut().await }, if !pending.is_empty() => {
                let p = pending.pop_front().expect("front exists");
                match r {
                    Ok(()) => {
                        if let Some(ex) = p.executed {
                            latest = ex;
                        }
                    }
                    Err((name, reason)) => {
                        failure = Some(ServiceError::Sink { name, reason });
                        break;
                    }
                }
            }
            (name, r) = &mut sink_watch => {
                let reason = match r {
                    Ok(()) => "stopped unexpectedly".to_string(),
                    Err(e) => e.to_string(),
                };
                failure = Some(ServiceError::Sink { name, reason });
                break;
            }
            b = src_rx.recv(), if !source_closed && pending.len() < MAX_PENDING => match b {
                Some(b) => {
                    seq += 1;
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
                    pending.push_back(Pending { executed: b.executed, done: Box::pin(all_acked(acks)), _batch: batch });
                }
                None => source_closed = true,
            },
            r = &mut source, if source_result.is_none() => {
                if let Err(e) = &r {
                    tracing::error!(error = %e, "source stopped");
                }
                source_result = Some(r);
            }
            _ = tick.tick() => save(&latest, &mut saved_set)?,
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
    let saved_now = save(&latest, &mut saved_set);
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

type AckFuture = Pin<Box<dyn Future<Output = Result<(), (String, String)>> + Send>>;

/// One dispatched batch waiting for every sink's ack.
struct Pending {
    executed: Option<GtidSet>,
    done: AckFuture,
    /// Kept until acked so the records are freed here, on the thread that
    /// built them: reference counts shared by every event of a table (names,
    /// GTID, table metadata) then never bounce between cores.
    _batch: Arc<Batch>,
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
            Ok(Err(why)) => return Err((name, why)),
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
        sink.write(batch, ack).await?;
    }
    sink.flush().await
}
