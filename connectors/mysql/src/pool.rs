//! Parallel apply (WRITESET): complete transactions run on `threads`
//! connections at once when their row keys do not overlap, and commit in
//! dispatch (source) order.
//!
//! Invariants kept:
//! - a job starts only when no earlier job still in flight shares one of its
//!   keys (the scheduler checks at [`Pool::submit`]);
//! - job `n` commits only after job `n - 1` committed (the `turn` counter),
//!   so the target only ever shows states the source had and the progress
//!   row with the highest `seq` covers everything before it;
//! - no wait is unbounded: a job that waits for its turn longer than
//!   [`TURN_WAIT`] rolls back (freeing locks an earlier job may need) and
//!   runs again once its turn has come, alone among the unfinished; a
//!   deadlock or lock wait timeout does the same;
//! - a job's result is reported after its commit (or failure), so "done"
//!   means committed.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rowstream_api::{Backoff, Batch, Record, SinkError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::apply::Applier;
use crate::client::Progress;

/// Longest a finished job waits for its commit turn before it rolls back.
pub const TURN_WAIT: Duration = Duration::from_secs(2);

/// Lock failures (deadlock victim, lock wait timeout) a job survives; the
/// next one fails the sink (transient: it restarts from the checkpoint).
pub const LOCK_RETRIES: u32 = 10;

/// One complete transaction for a worker.
#[derive(Debug)]
pub struct Job {
    /// Dispatch order, from 1, consecutive.
    pub order: u64,
    pub batch: Arc<Batch>,
    pub range: Range<usize>,
    /// What the target holds once this job committed (its first statement).
    pub progress: Progress,
    pub keys: HashSet<u64>,
}

struct Done {
    worker: usize,
    order: u64,
    result: Result<(), SinkError>,
}

/// The worker connections and what runs on them.
pub struct Pool {
    senders: Vec<mpsc::Sender<Job>>,
    free: Vec<usize>,
    done: mpsc::UnboundedReceiver<Done>,
    /// Jobs dispatched and not yet reported: (order, keys).
    inflight: Vec<(u64, HashSet<u64>)>,
    next_order: u64,
    /// Highest order committed (every lower one committed before it).
    committed: u64,
    turn: Arc<watch::Sender<u64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts one task per applier.
    pub fn new(appliers: Vec<Applier>) -> Pool {
        let (turn, _) = watch::channel(0u64);
        let turn = Arc::new(turn);
        let (done_tx, done) = mpsc::unbounded_channel();
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for (i, ap) in appliers.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(1);
            senders.push(tx);
            tasks.push(tokio::spawn(worker(
                i,
                ap,
                rx,
                turn.clone(),
                done_tx.clone(),
            )));
        }
        Pool {
            free: (0..senders.len()).rev().collect(),
            senders,
            done,
            inflight: Vec::new(),
            next_order: 1,
            committed: 0,
            turn,
            tasks,
        }
    }

    /// The order up to which jobs committed, as it changes.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.turn.subscribe()
    }

    /// Order of the last job dispatched (0: none yet).
    pub fn dispatched(&self) -> u64 {
        self.next_order - 1
    }

    /// Order up to which every job committed (the workers' own counter may
    /// be ahead of the reports received).
    pub fn committed(&self) -> u64 {
        self.committed.max(*self.turn.borrow())
    }

    fn record(&mut self, d: Done) -> Result<(), SinkError> {
        d.result?;
        self.free.push(d.worker);
        self.inflight.retain(|(o, _)| *o != d.order);
        self.committed = self.committed.max(d.order);
        Ok(())
    }

    /// Takes the reports that arrived, without waiting.
    pub fn reap(&mut self) -> Result<(), SinkError> {
        while let Ok(d) = self.done.try_recv() {
            self.record(d)?;
        }
        Ok(())
    }

    async fn reap_one(&mut self) -> Result<(), SinkError> {
        match self.done.recv().await {
            Some(d) => self.record(d),
            None => Err(SinkError::Transient(
                "mysql sink: the apply workers stopped".into(),
            )),
        }
    }

    /// Dispatches a transaction once a worker is free and no job in flight
    /// shares a key with it.
    pub async fn submit(
        &mut self,
        batch: Arc<Batch>,
        range: Range<usize>,
        progress: Progress,
        keys: HashSet<u64>,
    ) -> Result<(), SinkError> {
        loop {
            self.reap()?;
            let clash = self.inflight.iter().any(|(_, k)| !k.is_disjoint(&keys));
            if !clash {
                if let Some(w) = self.free.pop() {
                    let order = self.next_order;
                    self.next_order += 1;
                    self.inflight.push((order, keys.clone()));
                    let job = Job {
                        order,
                        batch,
                        range,
                        progress,
                        keys,
                    };
                    return self.senders[w].send(job).await.map_err(|_| {
                        SinkError::Transient("mysql sink: an apply worker stopped".into())
                    });
                }
            }
            self.reap_one().await?;
        }
    }

    /// Waits until every dispatched job committed.
    pub async fn drain(&mut self) -> Result<(), SinkError> {
        self.reap()?;
        while !self.inflight.is_empty() {
            self.reap_one().await?;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Their connections close and the server rolls back what is open.
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn worker(
    idx: usize,
    mut ap: Applier,
    mut jobs: mpsc::Receiver<Job>,
    turn: Arc<watch::Sender<u64>>,
    done: mpsc::UnboundedSender<Done>,
) {
    while let Some(job) = jobs.recv().await {
        let result = run(&mut ap, &job, &turn).await;
        let failed = result.is_err();
        let _ = done.send(Done {
            worker: idx,
            order: job.order,
            result,
        });
        if failed {
            break;
        }
    }
}

/// Waits until `order` may commit; false when `limit` passed first.
async fn wait_turn(rx: &mut watch::Receiver<u64>, order: u64, limit: Option<Duration>) -> bool {
    let wait = rx.wait_for(|c| *c + 1 >= order);
    match limit {
        None => wait.await.is_ok(),
        Some(l) => matches!(tokio::time::timeout(l, wait).await, Ok(Ok(_))),
    }
}

/// Runs a job to its commit, rolling back and running it again alone
/// after a turn timeout or a lock failure.
async fn run(ap: &mut Applier, job: &Job, turn: &watch::Sender<u64>) -> Result<(), SinkError> {
    let mut rx = turn.subscribe();
    let mut alone = false;
    // Lock failures of a job already running alone: another client holds
    // the rows; retry with capped backoff.
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let mut lock_failures = 0;
    loop {
        if alone && !wait_turn(&mut rx, job.order, None).await {
            return Err(SinkError::Transient("mysql sink: stopped".into()));
        }
        let pause = match attempt(ap, job, &mut rx, alone).await {
            Ok(true) => {
                turn.send_modify(|c| *c = (*c).max(job.order));
                return Ok(());
            }
            Ok(false) => false,
            Err(e) if ap.take_lock_failure() => {
                lock_failures += 1;
                if lock_failures > LOCK_RETRIES {
                    return Err(e);
                }
                alone
            }
            Err(e) => return Err(e),
        };
        ap.discard();
        ap.query("roll back", "ROLLBACK").await?;
        if pause {
            backoff.wait().await;
        }
        alone = true;
    }
}

/// One try: begin (progress first), apply, wait for the turn, commit.
/// `Ok(false)`: the turn did not come in time (rolled back by the caller).
async fn attempt(
    ap: &mut Applier,
    job: &Job,
    rx: &mut watch::Receiver<u64>,
    alone: bool,
) -> Result<bool, SinkError> {
    ap.begin(&job.progress).await?;
    for r in &job.batch.records[job.range.clone()] {
        if let Record::Change(ev) = r {
            ap.apply_change(ev).await?;
        }
    }
    ap.flush_inserts().await?;
    let limit = (!alone).then_some(TURN_WAIT);
    if !wait_turn(rx, job.order, limit).await {
        return Ok(false);
    }
    ap.query("commit", "COMMIT").await?;
    Ok(true)
}
