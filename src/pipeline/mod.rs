//! The service: source -> fan-out -> sinks; ordered acks -> checkpoint.
//!
//! The pieces: `plan` (where to start, snapshot or not, server checks, then
//! opening the source), `sinks` (each sink as a task, on its own thread or
//! on the pipeline's; dispatch a batch to all), `acks` (the ack tracker: batches settled in order),
//! `checkpointer` (the durable position, debounced writes), `session` (one
//! run of a source into the sinks), `restart` (what a sink failure leads to),
//! `heartbeat` (the heartbeat writer and its rows), `lag` (per-sink lag and
//! health, read by the metrics endpoint), `meters` and `error`. [`run`] is the loop over them; the pieces import
//! each other, never this module (no import cycles).
//!
//! Invariants:
//! - every sink gets every batch, in stream order, through a bounded channel;
//!   a slow sink slows the source (backpressure), memory does not grow;
//! - a sink's I/O never stalls decoding: each sink is one task, on a thread
//!   of its own or (one or two CPUs, `[pipeline] sink_threads`) on the
//!   pipeline's thread, and its I/O is asynchronous;
//! - acks are consumed in batch order; the checkpoint advances only to the
//!   GTID set of transactions complete in batches every sink has acked;
//! - an ack that fails or is dropped stops the run without advancing the
//!   checkpoint past what is durable everywhere; a transient failure then
//!   restarts the sinks and the source from the checkpoint after a backoff,
//!   a fatal one stops the service;
//! - the checkpoint is written atomically (see `checkpoint.rs`), at most a few
//!   times per second and once more at the end.

mod acks;
mod checkpointer;
mod error;
mod heartbeat;
mod lag;
mod meters;
mod plan;
mod restart;
mod session;
mod sinks;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rowstream_api::{Batch, SinkBuilder, SinkError};
use tokio::sync::{mpsc, watch};

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::Config;
use acks::SinkFailure;
use checkpointer::Checkpointer;
use heartbeat::Observe;
use lag::LagBoard;
use meters::Meters;
use plan::CheckpointCommitted;
use restart::{RESTART_BASE, RESTART_CAP};
use rowstream_api::Backoff;
use session::{End, Shared};
use sinks::{Placement, SinkSet};

pub use error::ServiceError;
pub(crate) use plan::check_server;

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
    let builders = plan::build_sinks(&cfg)?;
    let backoff = Backoff::new(RESTART_BASE, RESTART_CAP);
    let (observe, _tasks) = observe(&cfg, &builders, &stop)?;
    supervise(
        &mut Live(&cfg),
        &builders,
        placement(&cfg),
        Checkpointer::new(store),
        backoff,
        stop,
        observe,
    )
    .await
}

/// Resolves `[pipeline] sink_threads` against the CPUs this process may use
/// (its affinity and cgroup quota), and says what it chose.
fn placement(cfg: &Config) -> Placement {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setting = cfg.pipeline.sink_threads;
    let placement = if setting.per_sink(cpus) {
        Placement::OwnThreads
    } else {
        Placement::PipelineThread
    };
    tracing::info!(
        cpus,
        sink_threads = setting.as_str(),
        "sinks run {}",
        match placement {
            Placement::OwnThreads => "on a thread each",
            Placement::PipelineThread => "on the decoding thread",
        }
    );
    placement
}

/// The lag board (installed as the metrics endpoint's probe), the task that
/// logs stalled sinks and, with `[heartbeat]`, the heartbeat writer (the
/// tasks stop when their handles are dropped; the writer already when `stop`
/// turns true).
fn observe(
    cfg: &Config,
    builders: &[Box<dyn SinkBuilder>],
    stop: &watch::Receiver<bool>,
) -> Result<(Observe, Vec<AbortOnDrop>), ServiceError> {
    let names = builders.iter().map(|b| b.name().to_string()).collect();
    let board = Arc::new(LagBoard::new(
        names,
        cfg.health.clone(),
        cfg.heartbeat.is_some(),
    ));
    crate::metrics::install(board.clone());
    crate::metrics::register();
    let mut tasks = vec![AbortOnDrop(tokio::spawn(lag::watch_stalls(board.clone())))];
    let Some(hb) = cfg.heartbeat.clone() else {
        return Ok((
            Observe {
                board,
                heartbeat: None,
                carry: Default::default(),
            },
            tasks,
        ));
    };
    let opts = match &hb.url {
        Some(u) => crate::source::conn::ConnOpts::from_url(u)?,
        None => cfg.source.conn_opts()?.remove(0),
    };
    let rows = heartbeat::HeartbeatRows::new(&hb);
    let filter = cfg
        .source
        .filter()
        .map_err(crate::source::SourceError::Config)?;
    if let Some(r) = &rows {
        if !filter.matches(&r.db, &r.table) {
            tracing::warn!(table = %hb.table, "heartbeat.table is not captured (source.include / exclude): sink lag cannot be measured");
        }
    }
    let task = tokio::spawn(heartbeat::write_loop(
        hb,
        opts,
        cfg.source.name.clone(),
        board.clone(),
        stop.clone(),
    ));
    Ok((
        Observe {
            board,
            heartbeat: rows,
            carry: Default::default(),
        },
        {
            tasks.push(AbortOnDrop(task));
            tasks
        },
    ))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where batches come from: planned against the saved checkpoint, then
/// opened. The live source is the server; tests use fakes.
pub(crate) trait Origin {
    type Plan;
    /// Decides where to start from `saved`; None: nothing to do.
    async fn plan(
        &mut self,
        saved: Option<Checkpoint>,
    ) -> Result<Option<(CheckpointCommitted, Self::Plan)>, ServiceError>;
    /// Starts reading as planned.
    async fn open(&mut self, plan: Self::Plan) -> Result<plan::Opened, ServiceError>;
}

/// The configured source server.
struct Live<'a>(&'a Config);

impl Origin for Live<'_> {
    type Plan = plan::Plan;
    async fn plan(
        &mut self,
        saved: Option<Checkpoint>,
    ) -> Result<Option<(CheckpointCommitted, plan::Plan)>, ServiceError> {
        plan::plan(self.0, saved).await
    }
    async fn open(&mut self, plan: plan::Plan) -> Result<plan::Opened, ServiceError> {
        plan::open(self.0, plan).await
    }
}

/// How long the sinks may take to close before the source is tried again.
const SOURCE_RETRY_CLOSE: std::time::Duration = std::time::Duration::from_secs(30);

/// Plans, starts the sinks, opens the source and streams; after a transient
/// sink failure, or a transient source error while planning or opening,
/// does it all again from the saved checkpoint, after a backoff.
pub(crate) async fn supervise<O: Origin>(
    origin: &mut O,
    builders: &[Box<dyn SinkBuilder>],
    placement: Placement,
    mut checkpoint: Checkpointer,
    mut backoff: Backoff,
    mut stop: watch::Receiver<bool>,
    observe: Observe,
) -> Result<(), ServiceError> {
    let meters = Meters::new(builders.iter().map(|b| b.name()));
    let mut seq = 0u64;
    let mut restarting = false;
    loop {
        let planned = match origin.plan(checkpoint.load()?).await {
            Err(ServiceError::Source(e)) if e.is_transient() => {
                match restart::wait_for_source(&e, backoff.next_wait(), &mut stop).await {
                    true => continue,
                    false => return Ok(()),
                }
            }
            r => r?,
        };
        let Some((committed, plan)) = planned else {
            return Ok(());
        };
        // Written batches come back here to be freed on this thread.
        let (free_tx, free_rx) = mpsc::unbounded_channel::<Arc<Batch>>();
        let started = tokio::select! {
            r = SinkSet::start(builders, &committed, free_tx, placement) => r,
            // A restart may wait long on a target still away (a first start
            // keeps its old behaviour: the stop is seen once streaming).
            _ = stop.wait_for(|s| *s), if restarting => {
                tracing::info!("stopping while the sinks restart; the checkpoint is written");
                return Ok(());
            }
        };
        restarting = true;
        let failure = match started {
            Err(f) => f,
            Ok(sinks) => {
                let src = match origin.open(plan).await {
                    Err(ServiceError::Source(e)) if e.is_transient() => {
                        sinks.close(SOURCE_RETRY_CLOSE).await;
                        match restart::wait_for_source(&e, backoff.next_wait(), &mut stop).await {
                            true => continue,
                            false => return Ok(()),
                        }
                    }
                    r => r?,
                };
                let shared = Shared {
                    checkpoint: &mut checkpoint,
                    meters: &meters,
                    seq: &mut seq,
                    stop: &mut stop,
                    observe: &observe,
                };
                match session::run(src, sinks, free_rx, shared).await? {
                    End::Done(r) => return r.map_err(Into::into),
                    End::Failed {
                        failure,
                        progressed,
                    } => {
                        if progressed {
                            backoff.reset();
                        }
                        failure
                    }
                }
            }
        };
        let SinkFailure {
            sink,
            error: SinkError::Transient(_),
        } = &failure
        else {
            return Err(ServiceError::Sink {
                name: failure.sink,
                reason: failure.error.to_string(),
            });
        };
        let delay = backoff.next_wait();
        restart::note_restart(&failure, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => {
                tracing::info!(sink = %sink, "stopping while the sinks wait for a restart; the checkpoint is written");
                return Ok(());
            }
        }
    }
}
