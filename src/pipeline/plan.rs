//! Start planning: given the config, the saved checkpoint and the source
//! server, decide where the stream starts and whether a snapshot runs first
//! ([`plan`]); then open that source ([`open`]): the snapshot (if any) fills
//! the channel first and the binlog stream follows from its cut.
//!
//! Invariants:
//! - the first reachable server decides the flavour and is checked in full
//!   before anything is read; a checkpoint of the other flavour is refused;
//! - a checkpoint with a snapshot in progress resumes that snapshot; a fresh
//!   snapshot runs only on a first start from "latest" (or always for
//!   `initial_only`, or `when_needed` once the checkpoint is purged);
//! - planning has no effect on the server but our own checks, so the
//!   pipeline can re-plan from the saved checkpoint after a sink restart.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rowstream_api::{Committed, Flavor, SinkBuilder};
use tokio::sync::{mpsc, watch};

use super::error::ServiceError;
use crate::checkpoint::{self, Checkpoint, OnDemandState, SnapshotState};
use crate::config::{Config, SinkConfig, SnapshotMode};
use crate::gtid::{Gtid, GtidSet};
use crate::source::binlog::dump::{self, DumpConn, StreamConfig};
use crate::source::binlog::semisync::AckPath;
use crate::source::checks::{self, CheckInput};
use crate::source::conn::ConnOpts;
use crate::source::snapshot;
use crate::source::snapshot::signal::{Incremental, SignalConfig, SIGNAL_TABLE};
use crate::source::SourceError;
use crate::source::{query, Batch, CHANNEL_BATCHES};

/// The checkpoint as sinks see it at start.
pub(crate) struct CheckpointCommitted {
    pub set: Option<GtidSet>,
    pub flavor: Flavor,
    /// A snapshot in progress: which of its chunk markers are durable.
    pub snapshot: Option<SnapshotState>,
}

impl CheckpointCommitted {
    /// What `saved` (None: no checkpoint) makes durable, read with `flavor`.
    pub fn new(saved: Option<&Checkpoint>, flavor: Flavor) -> Self {
        CheckpointCommitted {
            set: saved.map(|c| c.gtid_set.clone()),
            flavor,
            snapshot: saved.and_then(|c| c.snapshot.clone()),
        }
    }
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
    fn executed(&self) -> Option<&GtidSet> {
        self.set.as_ref()
    }
    fn recognizes(&self, id: &str) -> bool {
        match (checkpoint::parse_marker(id), &self.snapshot) {
            (Some((snap, _)), Some(s)) if snap == s.id => true,
            _ => self.contains(id),
        }
    }
}

/// The configured sinks' builders, each validated. A sink type this build
/// does not include was already refused by `Config::validate`.
pub(crate) fn build_sinks(cfg: &Config) -> Result<Vec<Box<dyn SinkBuilder>>, ServiceError> {
    cfg.sinks.iter().map(build_sink).collect()
}

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
        SinkConfig::Mysql(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.clone())
        }
        SinkConfig::Http(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.as_ref().clone())
        }
        #[cfg(feature = "kafka")]
        SinkConfig::Kafka(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.clone())
        }
        #[cfg(feature = "elasticsearch")]
        SinkConfig::Elasticsearch(c) => {
            c.validate().map_err(|e| bad(&e))?;
            Box::new(c.clone())
        }
        #[allow(unreachable_patterns)]
        other => {
            return Err(bad(&format_args!(
                "sink type {:?} is not built into this rowstream",
                other.kind()
            )))
        }
    })
}

/// Where to read from, decided against the server.
pub(crate) struct Plan {
    flavor: Flavor,
    /// The configured servers, the one checked first.
    servers: Vec<ConnOpts>,
    report_host: String,
    /// Where the binlog stream starts (before a snapshot moves it to its cut).
    start: GtidSet,
    snapshot: Option<snapshot::Start>,
    /// The checkpoint resumed; None when there is none or a fresh snapshot
    /// replaces it.
    saved: Option<Checkpoint>,
}

/// Decides where to start from `saved` (the checkpoint on disk) and the
/// first reachable server, and runs the server checks. `Ok(None)`: nothing
/// to do (`initial_only` with its snapshot complete).
pub(crate) async fn plan(
    cfg: &Config,
    saved: Option<Checkpoint>,
) -> Result<Option<(CheckpointCommitted, Plan)>, ServiceError> {
    let servers = cfg.source.conn_opts()?;
    let (idx, mut conn, flavor) = connect_first(&servers).await?;
    let mode = cfg.snapshot.mode;
    let snap = snapshot_start(cfg, saved.as_ref(), &mut conn, flavor).await?;
    if mode == SnapshotMode::InitialOnly && snap.is_none() && saved.is_some() {
        tracing::info!("snapshot.mode = initial_only and the snapshot is complete: nothing to do");
        return Ok(None);
    }
    if let Some(cp) = saved.as_ref().filter(|cp| cp.flavor() != flavor) {
        return Err(ServiceError::Checks(vec![format!(
            "checkpoint: its GTID set is from {} but the source is {}; point source.url at the right server",
            cp.flavor().as_str(),
            flavor.as_str()
        )]));
    }
    let start = match &saved {
        Some(_) if matches!(snap, Some(snapshot::Start::Fresh)) => {
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
    let failures = check_server(
        &mut conn,
        &CheckInput {
            flavor,
            server_id: cfg.source.server_id,
            start: Some(&start),
            own_report_host: Some(&report_host),
        },
    )
    .await?;
    conn.disconnect().await.ok();
    if !failures.is_empty() {
        return Err(ServiceError::Checks(failures));
    }
    let committed = CheckpointCommitted::new(saved.as_ref(), flavor);
    let mut servers = servers;
    servers.rotate_left(idx);
    let fresh = matches!(snap, Some(snapshot::Start::Fresh));
    Ok(Some((
        committed,
        Plan {
            flavor,
            servers,
            report_host,
            start,
            snapshot: snap,
            // A fresh snapshot replaces whatever the checkpoint said.
            saved: if fresh { None } else { saved },
        },
    )))
}

/// Runs every server check; each failure says what to fix. Shared with
/// `rowstream check`.
pub(crate) async fn check_server(
    conn: &mut mysql_async::Conn,
    input: &CheckInput<'_>,
) -> Result<Vec<String>, SourceError> {
    let failures = checks::run_checks(conn, input)
        .await
        .map_err(SourceError::from)?;
    Ok(failures.iter().map(|f| f.to_string()).collect())
}

/// The first reachable server (its index), a query connection and its flavour.
async fn connect_first(
    servers: &[ConnOpts],
) -> Result<(usize, mysql_async::Conn, Flavor), ServiceError> {
    let mut last_err = None;
    for (i, s) in servers.iter().enumerate() {
        match query::query_conn(s).await {
            Ok((conn, flavor)) => return Ok((i, conn, flavor)),
            Err(e) => {
                tracing::warn!(server = ?s, error = %e, "source server unreachable");
                last_err = Some(e);
            }
        }
    }
    let err = last_err.unwrap_or_else(|| SourceError::Config("no source server given".into()));
    Err(err.into())
}

/// What to snapshot: continue the checkpoint's snapshot; or a new one on a
/// first start from "latest" (an explicit start position, or "earliest",
/// asks for the binlog, not for a snapshot), or always for initial_only; or
/// with `when_needed`, when the checkpoint can no longer be resumed.
async fn snapshot_start(
    cfg: &Config,
    saved: Option<&Checkpoint>,
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<Option<snapshot::Start>, ServiceError> {
    let mode = cfg.snapshot.mode;
    let Some(cp) = saved else {
        let fresh = mode == SnapshotMode::InitialOnly
            || (mode != SnapshotMode::Never && cfg.source.start == "latest");
        return Ok(fresh.then_some(snapshot::Start::Fresh));
    };
    if let Some(state) = cp.snapshot.clone() {
        return Ok(Some(snapshot::Start::Resume {
            state,
            cut: cp.gtid_set.clone(),
        }));
    }
    if mode != SnapshotMode::WhenNeeded || cp.flavor() != flavor {
        return Ok(None);
    }
    let gone = checks::check_start_position(conn, flavor, &cp.gtid_set)
        .await
        .map_err(SourceError::from)?;
    if gone.is_empty() {
        return Ok(None);
    }
    tracing::warn!(
        gtid_set = %cp.gtid_set,
        reasons = %gone.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "),
        "snapshot.mode = when_needed: the checkpoint cannot be resumed from the binlog; taking a new snapshot"
    );
    Ok(Some(snapshot::Start::Fresh))
}

/// A source that is running: batches arrive on `rx` until it ends.
pub(crate) struct Opened {
    pub rx: mpsc::Receiver<Batch>,
    /// Reads (the snapshot, then the binlog) until stopped or the receiver
    /// is gone.
    pub source: Pin<Box<dyn Future<Output = Result<(), SourceError>>>>,
    /// Set to true: stop at the next transaction boundary.
    pub stop: watch::Sender<bool>,
    /// The on-demand snapshot hook, fed every batch.
    pub incremental: Option<Incremental>,
    /// The position of the first batch: every transaction before it is done.
    pub start: GtidSet,
    /// The snapshot in progress at `start`.
    pub snapshot: Option<SnapshotState>,
    /// A set containing the snapshot's views, when they may hold
    /// transactions after `start` (see `Checkpoint::overlap`).
    pub overlap: Option<GtidSet>,
    /// The on-demand snapshot in progress at `start` (resumed by `incremental`).
    pub on_demand: Option<OnDemandState>,
    /// The checkpoint on disk this run continues (None: write one first).
    pub saved: Option<Checkpoint>,
    /// The `server` field of the checkpoint: the server streamed from now.
    pub server: Box<dyn Fn() -> String>,
    /// Ends the dump connection on its server (call once the source is stopped).
    pub release: Pin<Box<dyn Future<Output = ()>>>,
    /// Semi-sync ACK requests, released as the checkpoint covers them.
    pub acks: Option<Arc<AckPath>>,
}

/// Starts reading as `plan` says.
pub(crate) async fn open(cfg: &Config, plan: Plan) -> Result<Opened, ServiceError> {
    let filter = cfg.source.filter().map_err(SourceError::Config)?;
    let stream_cfg = Arc::new(StreamConfig {
        servers: plan.servers,
        server_id: cfg.source.server_id,
        name: Arc::from(cfg.source.name.as_str()),
        report_host: plan.report_host,
        filter,
        origins: cfg.source.origins(),
        heartbeat: Duration::from_secs(cfg.source.heartbeat_secs.max(1)),
        semi_sync: cfg.source.semi_sync.then(AckPath::shared),
    });
    let flavor = plan.flavor;
    let (src_tx, rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let dump_conn = Arc::new(DumpConn::default());
    let (stop, stop_rx) = watch::channel(false);

    // The snapshot (if any) fills the channel first; the stream follows from
    // its cut, marking what the snapshot's views (these and earlier runs')
    // may already hold.
    let (mut start, mut latest_snap, mut snap_done) = (plan.start, None, None);
    let mut overlap = plan.saved.as_ref().and_then(|c| c.overlap.clone());
    if let Some(s) = plan.snapshot {
        let params = snapshot::Params {
            opts: stream_cfg.servers[0].clone(),
            flavor,
            name: stream_cfg.name.clone(),
            threads: cfg.snapshot.threads,
            chunk_rows: cfg.snapshot.chunk_rows,
            filter: stream_cfg.filter.clone(),
        };
        let running = snapshot::start(params, s, src_tx.clone(), stop_rx.clone()).await?;
        start = running.cut;
        match overlap.as_mut() {
            Some(o) => o.union_with(&running.views),
            None => overlap = Some(running.views),
        }
        latest_snap = Some(running.state);
        snap_done = Some(running.done);
    }
    let only_snapshot = cfg.snapshot.mode == SnapshotMode::InitialOnly;
    let overlap = overlap.filter(|o| !o.is_subset(&start));
    let source = {
        let (stream_cfg, dump_conn, start) = (stream_cfg.clone(), dump_conn.clone(), start.clone());
        let overlap = overlap.clone();
        async move {
            if let Some(done) = snap_done {
                let outcome = done.await.unwrap_or_else(|_| {
                    Err(SourceError::Fatal(
                        "the snapshot thread ended without a result".into(),
                    ))
                })?;
                if outcome == snapshot::Outcome::Stopped || only_snapshot || *stop_rx.borrow() {
                    return Ok(());
                }
            }
            let start = dump::Start {
                executed: start,
                overlap,
            };
            dump::run(&stream_cfg, start, flavor, src_tx, &dump_conn, stop_rx).await
        }
    };
    // The checkpoint's on-demand snapshot resumes; it is dropped (next
    // checkpoint) when on-demand snapshots are no longer configured.
    let on_demand = plan.saved.as_ref().and_then(|c| c.on_demand.clone());
    let incremental = incremental(cfg, &stream_cfg, flavor, on_demand.clone())?;
    let on_demand = on_demand.filter(|_| incremental.is_some());
    let server = {
        let (stream_cfg, dump_conn) = (stream_cfg.clone(), dump_conn.clone());
        move || {
            let s = &stream_cfg.servers[dump_conn.server().min(stream_cfg.servers.len() - 1)];
            format!("{}:{}", s.host, s.port)
        }
    };
    Ok(Opened {
        rx,
        source: Box::pin(source),
        stop,
        incremental,
        on_demand,
        acks: stream_cfg.semi_sync.clone(),
        start,
        overlap,
        snapshot: latest_snap,
        saved: plan.saved,
        server: Box::new(server),
        release: Box::pin(async move { dump_conn.release(&stream_cfg.servers).await }),
    })
}

/// The on-demand snapshot hook, when `snapshot.signal_schema` is set,
/// resuming `saved` (the checkpoint's on-demand snapshot).
fn incremental(
    cfg: &Config,
    stream_cfg: &StreamConfig,
    flavor: Flavor,
    saved: Option<OnDemandState>,
) -> Result<Option<Incremental>, SourceError> {
    let Some(schema) = cfg.snapshot.signal_schema.as_ref() else {
        if let Some(s) = saved.filter(|s| !s.is_complete()) {
            tracing::warn!(signal = %s.signal, "the checkpoint holds an on-demand snapshot in progress but snapshot.signal_schema is not set: it is abandoned");
        }
        return Ok(None);
    };
    if !stream_cfg.filter.matches(schema, SIGNAL_TABLE) {
        tracing::warn!(schema = %schema, "snapshot.signal_schema: {schema}.{SIGNAL_TABLE} is not captured (source.include / exclude); on-demand snapshots will not see signals");
    }
    let signal = SignalConfig {
        opts: stream_cfg.servers[0].clone(),
        flavor,
        name: stream_cfg.name.clone(),
        schema: schema.clone(),
        chunk_rows: cfg.snapshot.chunk_rows,
        columns: stream_cfg.filter.columns().clone(),
    };
    Incremental::new(signal, saved).map(Some)
}
