//! The sink set: every configured sink running as a task, fed the same
//! batches in stream order.
//!
//! Invariants:
//! - each sink runs as one task, on its own thread (a current-thread
//!   runtime, [`Placement::OwnThreads`]) or on the pipeline's
//!   ([`Placement::PipelineThread`]); either way its I/O is asynchronous and
//!   never stalls decoding (on the pipeline's thread, its encoding takes
//!   turns with decoding);
//! - every sink gets every batch, in order, through a bounded channel of
//!   [`SINK_QUEUE`] batches: a slow sink slows the source (backpressure);
//! - written batches go back through the free channel, to be dropped on the
//!   pipeline's thread (see `session`);
//! - a sink task that ends while batches may still come is a failure;
//!   [`SinkSet::close`] ends every task (flush, then stop) and reports how
//!   each ended, so a restart never runs two instances of one sink at once;
//! - on the pipeline's thread a sink must not block it: sinks do blocking
//!   I/O on tokio's blocking pool or threads of their own (all do).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rowstream_api::{Ack, Batch, Committed, Sink, SinkBuilder, SinkError};
use tokio::sync::{mpsc, oneshot};

use super::acks::{all_acked, AckFuture, AckNote, SinkFailure};

/// Batches queued per sink. With 4, a sink waiting on its own I/O (the
/// file sink's group commit) stopped decoding within a few milliseconds,
/// and the threads went on in lockstep, one batch per wake-up; on a loaded
/// host every wake-up is late. 16 let `run` catch up 11-20% sooner while
/// the host was busy (1-2% when quiet), for a higher peak RSS (`peers.sh`:
/// 63 -> 74 MB from MariaDB, 62 -> 95 MB from MySQL); 32 gained nothing
/// more. What all queues hold together stays bounded by the ack tracker's
/// `MAX_PENDING` and `MAX_PENDING_BYTES`.
const SINK_QUEUE: usize = 16;
/// A sink is flushed when no batch has arrived for this long.
const IDLE_FLUSH: Duration = Duration::from_millis(2);

type SinkEnd = oneshot::Receiver<Result<(), SinkError>>;

struct Running {
    name: String,
    tx: mpsc::Sender<(Arc<Batch>, Ack)>,
    /// None once its end was reported.
    done: Option<SinkEnd>,
    /// How it ended, once reported by [`SinkSet::first_end`].
    ended: Option<Result<(), SinkError>>,
}

/// Where the sink tasks run (`[pipeline] sink_threads`, resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A thread per sink: encoding in parallel with decoding.
    OwnThreads,
    /// On the runtime of the pipeline's thread: fewer handoffs between
    /// cores, for machines with one or two.
    PipelineThread,
}

/// The running sinks, in configuration order.
pub(crate) struct SinkSet {
    sinks: Vec<Running>,
}

/// How each sink ended after [`SinkSet::close`]: None when it did not end in time.
pub(crate) type Ends = Vec<(String, Option<Result<(), SinkError>>)>;

impl SinkSet {
    /// Starts every sink from `committed` and spawns its thread. When one
    /// fails to start, those already started are closed first.
    pub async fn start(
        builders: &[Box<dyn SinkBuilder>],
        committed: &dyn Committed,
        free: mpsc::UnboundedSender<Arc<Batch>>,
        placement: Placement,
    ) -> Result<SinkSet, SinkFailure> {
        let mut set = SinkSet { sinks: Vec::new() };
        for b in builders {
            let fail = |error| SinkFailure {
                sink: b.name().to_string(),
                error,
            };
            let started = match b.start(committed).await {
                Ok(sink) => spawn(b.name(), sink, free.clone(), placement).map_err(fail),
                Err(e) => Err(fail(e)),
            };
            match started {
                Ok(r) => set.sinks.push(r),
                Err(f) => {
                    set.close(CLOSE_TIMEOUT).await;
                    return Err(f);
                }
            }
        }
        Ok(set)
    }

    /// Hands `batch` to every sink; the future resolves once all acked it.
    pub async fn dispatch(&self, batch: &Arc<Batch>, note: AckNote) -> AckFuture {
        let mut acks = Vec::with_capacity(self.sinks.len());
        for s in &self.sinks {
            let (ack, rx) = Ack::new();
            let rx = s.tx.send((batch.clone(), ack)).await.ok().map(|()| rx);
            acks.push((s.name.clone(), rx));
        }
        all_acked(acks, note)
    }

    /// Resolves when the first sink task ends (which, while streaming, is
    /// a failure). Cancel-safe.
    pub async fn first_end(&mut self) -> SinkFailure {
        std::future::poll_fn(|cx| {
            for s in self.sinks.iter_mut() {
                let Some(done) = s.done.as_mut() else {
                    continue;
                };
                if let Poll::Ready(r) = Pin::new(done).poll(cx) {
                    s.done = None;
                    let r = r.unwrap_or_else(|_| Err(panicked()));
                    s.ended = Some(r.clone());
                    let error = match r {
                        Ok(()) => SinkError::Fatal("stopped unexpectedly".into()),
                        Err(e) => e,
                    };
                    return Poll::Ready(SinkFailure {
                        sink: s.name.clone(),
                        error,
                    });
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Closes every sink's channel (each flushes what it holds, then its
    /// task ends) and waits at most `timeout` for the tasks.
    pub async fn close(self, timeout: Duration) -> Ends {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ends = Vec::with_capacity(self.sinks.len());
        let waiting: Vec<_> = self
            .sinks
            .into_iter()
            .map(|s| (s.name, s.done, s.ended))
            .collect();
        for (name, done, ended) in waiting {
            let end = match done {
                None => ended,
                Some(rx) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(r) => Some(r.unwrap_or_else(|_| Err(panicked()))),
                    Err(_late) => None,
                },
            };
            ends.push((name, end));
        }
        ends
    }
}

/// How long [`SinkSet::start`] waits for the sinks it started when a later one fails.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Spawns the task that drives one started sink, on a thread of its own or
/// on the current runtime (which must be the pipeline's).
fn spawn(
    name: &str,
    sink: Box<dyn Sink>,
    free: mpsc::UnboundedSender<Arc<Batch>>,
    placement: Placement,
) -> Result<Running, SinkError> {
    let (tx, rx) = mpsc::channel::<(Arc<Batch>, Ack)>(SINK_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let running = Running {
        name: name.to_string(),
        tx,
        done: Some(done_rx),
        ended: None,
    };
    if placement == Placement::PipelineThread {
        // A panic ends the task and drops `done_tx`: reported as a panic.
        tokio::spawn(async move {
            let _ = done_tx.send(drive_sink(sink, rx, free).await);
        });
        return Ok(running);
    }
    std::thread::Builder::new()
        .name(format!("sink-{name}"))
        .spawn(move || {
            let r = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(drive_sink(sink, rx, free)),
                Err(e) => Err(SinkError::Fatal(format!(
                    "cannot start the sink runtime: {e}"
                ))),
            };
            let _ = done_tx.send(r);
        })
        .map_err(|e| SinkError::Fatal(format!("cannot start the sink thread: {e}")))?;
    Ok(running)
}

fn panicked() -> SinkError {
    SinkError::Fatal("the sink panicked".into())
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
