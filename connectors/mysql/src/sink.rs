//! The running MySQL / MariaDB apply sink: the scheduler. Each transaction
//! of the stream becomes one target transaction whose first statement
//! records the sink's progress, so the target knows exactly what it holds.
//!
//! Invariants kept:
//! - exactly once: a transaction's rows and the progress row that names it
//!   commit in the same target transaction; on start the progress row with
//!   the highest `seq` says what is applied, and transactions it contains
//!   (GTIDs in its set, snapshot chunks up to `chunks_done` of its
//!   snapshot) are acked without being applied again;
//! - the progress UPDATE is the first statement of every applied
//!   transaction (loop prevention on the source side looks for it there);
//! - commits happen in stream order: with `threads = 1` one transaction at
//!   a time on one connection; with more, complete transactions go to the
//!   `pool` (WRITESET, ordered commits), and a transaction that spans
//!   batches or holds DDL is a barrier: the pool drains, then it runs alone
//!   on the main connection (worker 0);
//! - a batch is acked once every transaction committing in it is committed
//!   and the records of a transaction still open are written into the open
//!   target transaction (which rolls back if rowstream dies): a transaction
//!   of any size streams through, batch by batch, in bounded memory;
//! - the first failure poisons the sink (`Poison`): the failing and every
//!   pending and later ack, write and flush fail with it; open target
//!   transactions are abandoned (the server rolls them back when the
//!   connections close).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rowstream_api::gtid::{Gtid, GtidSet};
use rowstream_api::metrics::{self, Family, Handle};
use rowstream_api::sink::{chunk_marker, parse_marker};
use rowstream_api::{
    Ack, AckQueue, Backoff, Batch, Commit, Committed, Flavor, Poison, Record, SchemaChange, Sink,
    SinkError,
};
use tracing::{info, warn};

use crate::apply::{Applier, Shared};
use crate::client::{self, classify, server_code, Progress};
use crate::config::MysqlSinkConfig;
use crate::encode::{self, Filter};
use crate::pool::{Pool, LOCK_RETRIES};

pub static MYSQL_CONFLICTS: Family = Family::counter(
    "rowstream_mysql_conflicts_total",
    "Changes whose before image did not match the target's row (or inserts that found a different row), logged to conflict_log.",
    "sink",
);
pub static MYSQL_TRANSACTIONS: Family = Family::counter(
    "rowstream_mysql_transactions_total",
    "Transactions committed on the target by the main connection (barriers, DDL, progress-only commits; threads = 1: all).",
    "sink",
);
pub static MYSQL_BULK_FALLBACKS: Family = Family::counter(
    "rowstream_mysql_bulk_fallbacks_total",
    "Bulk updates / deletes that did not match every row (a conflict, or an error) and were applied row by row instead.",
    "sink",
);
/// This sink's metric families, registered with the service's registry on start.
pub static METRICS: &[&Family] = &[&MYSQL_CONFLICTS, &MYSQL_TRANSACTIONS, &MYSQL_BULK_FALLBACKS];

/// Errors of DDL that already took effect (DDL is not transactional: a crash
/// between the DDL and its progress commit replays it): database / table /
/// column / key exists, unknown table or key to drop, database to drop.
const DDL_ALREADY_APPLIED: &[u16] = &[1007, 1008, 1050, 1051, 1060, 1061, 1068, 1091, 1826];

/// The transaction being applied on the main connection (it may span
/// batches).
#[derive(Debug)]
struct OpenTx {
    /// Its id as known at its start (the commit's GTID when the commit is in
    /// the same batch, else the first record's).
    id: Arc<str>,
    /// Already applied before this start: acked without applying.
    skip: bool,
    /// The target transaction is open and its first statement wrote this.
    began: Option<Progress>,
    /// A DDL of it ran (autocommitted); its progress needs its own commit.
    ddl_ran: bool,
}

/// The running sink, made by [`MysqlSink::start`].
pub struct MysqlSink {
    cfg: Arc<MysqlSinkConfig>,
    /// Worker 0: transactions when `threads = 1`, barriers, key lookups.
    main: Applier,
    /// Workers 1..=threads when `threads > 1`.
    pool: Option<Pool>,
    poison: Poison,
    /// Acks by pool order (0 without a pool: acked as written); shared
    /// with the acker task, which settles them as the pool commits.
    acks: Arc<Mutex<AckQueue>>,
    acker: Option<tokio::task::JoinHandle<()>>,
    /// What the target holds once everything dispatched has committed.
    progress: Progress,
    /// `progress.gtid_set` parsed; None while empty (flavour unknown).
    applied: Option<GtidSet>,
    /// Transactions advanced `progress` without a target commit (filtered
    /// out): written by a progress-only commit at the end of the batch.
    unwritten: bool,
    /// No transaction applied since start: a DDL failing as "already
    /// exists" here is the replay of one that ran before a crash.
    fresh: bool,
    tx: Option<OpenTx>,
    /// Unique keys (PRIMARY first) per target table, for WRITESET keys;
    /// cleared after every DDL.
    unique_keys: HashMap<String, Arc<Vec<Vec<Arc<str>>>>>,
    /// Bumped after every DDL (the appliers' temporary tables follow it).
    schema_epoch: Arc<AtomicU64>,
    commits: Handle,
}

/// What the target already holds for the sink `cfg` names (for `rowstream
/// restore` to print where it continues).
pub async fn applied(cfg: &MysqlSinkConfig) -> Result<Progress, SinkError> {
    cfg.validate()?;
    let (mut conn, _) = client::connect(cfg).await?;
    let p = client::read_progress(&mut conn, cfg).await;
    let _ = conn.disconnect().await;
    p
}

/// MySQL GTIDs are `uuid:n`, MariaDB's `domain-server-seq`.
fn flavor_of(gtid: &str) -> Flavor {
    if gtid.contains(':') {
        Flavor::MySql
    } else {
        Flavor::MariaDb
    }
}

fn parse_set(s: &str) -> Result<Option<GtidSet>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    GtidSet::parse(flavor_of(s), s)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The id of the transaction a record belongs to.
fn record_tx_id(r: &Record) -> Arc<str> {
    match r {
        Record::Change(ev) => ev.source().gtid.clone(),
        Record::SchemaChange(sc) => sc.source.gtid.clone(),
    }
}

/// Session setting of pool workers: a lock wait inside a hidden overlap
/// (a key the WRITESET does not know) ends well before the default 50 s;
/// the job is then run again alone.
const WORKER_LOCK_WAIT: &str = "SET SESSION innodb_lock_wait_timeout = 10";

/// How many chunks of snapshot `id` the sink may skip when they arrive
/// again: those the target holds (`done`) that the checkpoint covers too.
/// Chunks past the checkpoint are read again by a resumed snapshot with new
/// views and a new plan from the last durable chunk's key, so chunk `n` of
/// the new plan may end before or after the chunk `n` the target holds;
/// skipping by number would lose the rows between the two ends. Applying
/// them again is safe: snapshot rows are upserts. Without a checkpoint that
/// knows the snapshot (restore, another snapshot, a finished one) the
/// target's count stands.
fn chunks_held(id: u64, done: u64, committed: &dyn Committed) -> u64 {
    if done == 0 || !committed.recognizes(&chunk_marker(id, done)) {
        return done;
    }
    // The checkpoint covers a prefix of the chunks: the largest n covered.
    let (mut lo, mut hi) = (0, done);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if committed.contains(&chunk_marker(id, mid)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

impl MysqlSink {
    /// Validates the config, connects (`threads + 1` connections when
    /// `threads > 1`), creates the progress table if missing and reads what
    /// the target holds. The target's progress table is the truth (it may be
    /// ahead of the service's checkpoint `committed`: the replay is
    /// skipped); `committed` only serves a warning when the target holds
    /// nothing yet.
    pub async fn start(
        cfg: &MysqlSinkConfig,
        committed: &dyn Committed,
    ) -> Result<MysqlSink, SinkError> {
        cfg.validate()?;
        metrics::register(METRICS);
        let (mut conn, server) = client::connect(cfg).await?;
        client::ensure_progress(&mut conn, cfg, cfg.threads + 1).await?;
        let mut progress = client::read_progress(&mut conn, cfg).await?;
        let held = chunks_held(progress.snapshot_id, progress.chunks_done, committed);
        if held < progress.chunks_done {
            info!(sink = %cfg.name, snapshot = progress.snapshot_id, target = progress.chunks_done,
                  checkpoint = held, "mysql sink: snapshot chunks past the checkpoint are read again (maybe with other key ranges) and applied again");
            progress.chunks_done = held;
        }
        let applied = parse_set(&progress.gtid_set).map_err(|e| {
            SinkError::Fatal(format!(
                "mysql sink {:?}: the progress table {} holds an unreadable GTID set: {e}",
                cfg.name,
                client::progress_table(cfg)
            ))
        })?;
        if progress.seq == 0 && !committed.is_empty() {
            warn!(sink = %cfg.name,
                  "the target holds no progress for this sink but the service has a checkpoint: \
                   the target only gets changes after that checkpoint (seed it from a snapshot or a restore first)");
        }
        if progress.seq == 0 {
            info!(sink = %cfg.name, "mysql sink: the target holds nothing of this sink yet");
        } else {
            info!(sink = %cfg.name, seq = progress.seq, gtid_set = %progress.gtid_set,
                  snapshot = progress.snapshot_id, chunks = progress.chunks_done,
                  "mysql sink: continuing after what the target holds");
        }
        let shared = Arc::new(cfg.clone());
        let filter = Arc::new(Filter {
            include: cfg.include.clone(),
            exclude: cfg.exclude.clone(),
            rename: cfg.rename.clone(),
        });
        let epoch = Arc::new(AtomicU64::new(0));
        let common = Shared {
            cfg: shared.clone(),
            filter,
            conflict_log: Arc::new(Mutex::new(None)),
            conflicts: MYSQL_CONFLICTS.with(&cfg.name),
            bulk_fallbacks: MYSQL_BULK_FALLBACKS.with(&cfg.name),
            schema_epoch: epoch.clone(),
        };
        let applier = |conn, worker| Applier::new(conn, server, worker, common.clone());
        let pool = if cfg.threads > 1 {
            let mut appliers = Vec::new();
            for w in 1..=cfg.threads {
                let (mut c, _) = client::connect(cfg).await?;
                c.query_drop(WORKER_LOCK_WAIT)
                    .await
                    .map_err(|e| classify(&cfg.name, "connect", e))?;
                appliers.push(applier(c, w as u64));
            }
            Some(Pool::new(appliers))
        } else {
            None
        };
        let acks = Arc::new(Mutex::new(AckQueue::new()));
        let acker = pool
            .as_ref()
            .map(|p| tokio::spawn(acker(p.commits(), acks.clone())));
        Ok(MysqlSink {
            main: applier(conn, 0),
            pool,
            cfg: shared,
            poison: Poison::new(),
            acks,
            acker,
            progress,
            applied,
            unwritten: false,
            fresh: true,
            tx: None,
            unique_keys: HashMap::new(),
            schema_epoch: epoch,
            commits: MYSQL_TRANSACTIONS.with(&cfg.name),
        })
    }

    async fn apply_batch(&mut self, batch: &Arc<Batch>) -> Result<(), SinkError> {
        let mut start = 0;
        for c in &batch.commits {
            let recs = &batch.records[start..c.end];
            let ddl = recs.iter().any(|r| matches!(r, Record::SchemaChange(_)));
            if self.pool.is_some() && self.tx.is_none() && !ddl {
                self.dispatch(batch, start..c.end, c).await?;
            } else {
                self.drain().await?;
                self.apply_serial(recs, c).await?;
            }
            start = c.end;
        }
        if start < batch.records.len() {
            self.drain().await?;
            self.apply_records(&batch.records[start..], None).await?;
            self.main.flush_inserts().await?;
        }
        if self.unwritten && self.tx.is_none() {
            match &mut self.pool {
                // Keyless: runs beside anything, commits in its turn.
                Some(pool) => {
                    let p = self.progress.clone();
                    pool.submit(batch.clone(), 0..0, p, HashSet::new()).await?;
                    self.unwritten = false;
                }
                None => self.commit_progress_only().await?,
            }
        }
        Ok(())
    }

    /// Applies the end of a transaction on the main connection. One that
    /// started in this batch and hit a deadlock or lock wait timeout (before
    /// any DDL of it ran) is rolled back and run again, up to
    /// `LOCK_RETRIES` times with backoff.
    async fn apply_serial(&mut self, recs: &[Record], c: &Commit) -> Result<(), SinkError> {
        let whole = self.tx.is_none();
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut attempt = 0;
        loop {
            let err = match self.apply_records(recs, Some(c)).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let lock = self.main.take_lock_failure();
            let ddl_ran = self.tx.as_ref().is_some_and(|t| t.ddl_ran);
            attempt += 1;
            if !(lock && whole && !ddl_ran && attempt <= LOCK_RETRIES) {
                return Err(err);
            }
            warn!(sink = %self.cfg.name, gtid = %c.gtid, attempt, "rolled back, running it again: {err}");
            self.main.discard();
            self.main.query("roll back", "ROLLBACK").await?;
            self.tx = None;
            backoff.wait().await;
        }
    }

    /// Waits until the pool committed everything dispatched.
    async fn drain(&mut self) -> Result<(), SinkError> {
        match &mut self.pool {
            Some(p) => p.drain().await,
            None => Ok(()),
        }
    }

    /// Sends a complete transaction to the pool (or skips it: applied
    /// before, or every table filtered out).
    async fn dispatch(
        &mut self,
        batch: &Arc<Batch>,
        range: Range<usize>,
        c: &Commit,
    ) -> Result<(), SinkError> {
        if self.is_applied(&c.gtid) {
            return Ok(());
        }
        let recs = &batch.records[range.clone()];
        let any = recs
            .iter()
            .any(|r| matches!(r, Record::Change(ev) if self.main.target(ev).is_some()));
        let (p, set) = self.progress_after(&c.gtid);
        self.progress = p.clone();
        self.applied = set;
        self.fresh = false;
        if !any {
            self.unwritten = true;
            return Ok(());
        }
        // This job's progress covers the filtered-out ones before it.
        self.unwritten = false;
        let keys = self.keys(recs).await?;
        #[allow(clippy::expect_used)] // the pool is built before the first dispatch
        let pool = self.pool.as_mut().expect("dispatch runs with a pool");
        pool.submit(batch.clone(), range, p, keys).await
    }

    /// The WRITESET of a transaction: primary and unique key values of
    /// every before and after image (the target's unique keys, plus the
    /// source's primary key); one key for a whole table without any.
    async fn keys(&mut self, recs: &[Record]) -> Result<HashSet<u64>, SinkError> {
        let mut out = Vec::new();
        for r in recs {
            let Record::Change(ev) = r else { continue };
            let Some(table) = self.main.target(ev) else {
                continue;
            };
            let uks = match self.unique_keys.get(&table) {
                Some(k) => k.clone(),
                None => {
                    let db = self.main.filter.target_db(&ev.source().db).to_string();
                    let k = client::unique_keys(
                        &mut self.main.conn,
                        &self.cfg.name,
                        &db,
                        &ev.source().table,
                    )
                    .await?;
                    let k = Arc::new(k);
                    self.unique_keys.insert(table.clone(), k.clone());
                    k
                }
            };
            let mut keys: Vec<Vec<Arc<str>>> = uks.to_vec();
            if let Some(img) = ev.after_row().or(ev.before_row()) {
                let pk: Vec<Arc<str>> = ev
                    .primary_key()
                    .iter()
                    .filter_map(|&i| img.columns.get(i).cloned())
                    .collect();
                if !pk.is_empty() && !keys.contains(&pk) {
                    keys.push(pk);
                }
            }
            if keys.is_empty() {
                out.push(encode::table_key(&table));
                continue;
            }
            for img in [ev.before_row(), ev.after_row()].into_iter().flatten() {
                encode::row_keys(&table, img, &keys, &mut out);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Pool order of the last dispatched and of the last committed job.
    fn positions(&mut self) -> Result<(u64, u64), SinkError> {
        match &mut self.pool {
            Some(p) => {
                p.reap()?;
                Ok((p.dispatched(), p.committed()))
            }
            None => Ok((0, 0)),
        }
    }

    /// Whether the transaction `id` is already applied on the target.
    fn is_applied(&self, id: &str) -> bool {
        if let Some((sid, n)) = parse_marker(id) {
            return sid == self.progress.snapshot_id && n <= self.progress.chunks_done;
        }
        match (&self.applied, Gtid::parse(flavor_of(id), id)) {
            (Some(set), Ok(g)) => set.contains(&g),
            _ => false,
        }
    }

    /// The progress once `id` is applied too.
    fn progress_after(&self, id: &str) -> (Progress, Option<GtidSet>) {
        let mut p = self.progress.clone();
        let mut set = self.applied.clone();
        p.seq += 1;
        if let Some((sid, n)) = parse_marker(id) {
            if sid != p.snapshot_id {
                p.snapshot_id = sid;
                p.chunks_done = n;
            } else {
                p.chunks_done = p.chunks_done.max(n);
            }
        } else {
            let flavor = flavor_of(id);
            match Gtid::parse(flavor, id) {
                Ok(g) => {
                    let s = set.get_or_insert_with(|| GtidSet::empty(flavor));
                    if s.add(&g).is_ok() {
                        p.gtid_set = s.to_string();
                    }
                }
                // Snapshot rows carry no GTID: the chunk marker comes with the commit.
                Err(_) if id.is_empty() => {}
                Err(e) => {
                    warn!(sink = %self.cfg.name, id, "not a GTID, progress keeps its set: {e}")
                }
            }
        }
        (p, set)
    }

    /// Starts the target transaction of the open transaction (if not yet):
    /// START TRANSACTION, then the progress UPDATE first.
    async fn begin(&mut self) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        if tx.began.is_some() {
            return Ok(());
        }
        let (p, _) = self.progress_after(&tx.id.clone());
        self.main.begin(&p).await?;
        if let Some(tx) = &mut self.tx {
            tx.began = Some(p);
        }
        Ok(())
    }

    async fn apply_records(
        &mut self,
        records: &[Record],
        commit: Option<&Commit>,
    ) -> Result<(), SinkError> {
        if self.tx.is_none() {
            let id = match (commit, records.first()) {
                (Some(c), _) => c.gtid.clone(),
                (None, Some(r)) => record_tx_id(r),
                (None, None) => return Ok(()),
            };
            self.tx = Some(OpenTx {
                skip: self.is_applied(&id),
                id,
                began: None,
                ddl_ran: false,
            });
        }
        if !self.tx.as_ref().is_some_and(|t| t.skip) {
            for r in records {
                match r {
                    Record::Change(ev) => {
                        if self.main.target(ev).is_some() {
                            self.begin().await?;
                            self.main.apply_change(ev).await?;
                        }
                    }
                    Record::SchemaChange(sc) => self.apply_ddl(sc).await?,
                }
            }
        }
        if let Some(c) = commit {
            self.commit(c).await?;
        }
        Ok(())
    }

    /// Ends the open transaction `c` names: writes the final progress (if
    /// the id known at the start was not the commit's) and commits.
    async fn commit(&mut self, c: &Commit) -> Result<(), SinkError> {
        if self.tx.as_ref().is_some_and(|t| !t.skip) && self.is_applied(&c.gtid) {
            // A transaction that spans batches is known by its commit only
            // (a snapshot chunk's rows carry no id): the target had it
            // already (a replay after a restart), so what this replay
            // wrote is undone rather than committed over newer rows.
            #[allow(clippy::expect_used)] // checked Some in the condition above
            let tx = self.tx.take().expect("checked above");
            self.main.discard();
            if tx.began.is_some() {
                self.main
                    .query("roll back a replayed transaction", "ROLLBACK")
                    .await?;
            }
            return Ok(());
        }
        self.main.flush_inserts().await?;
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        if tx.skip {
            return Ok(());
        }
        let (p, set) = self.progress_after(&c.gtid);
        if let Some(written) = &tx.began {
            if *written != p {
                self.main.write_progress(&p).await?;
            }
            self.main.query("commit", "COMMIT").await?;
            self.commits.inc();
        } else if tx.ddl_ran {
            self.progress_commit(&p).await?;
        } else {
            self.unwritten = true;
        }
        self.progress = p;
        self.applied = set;
        self.fresh = false;
        Ok(())
    }

    async fn progress_commit(&mut self, p: &Progress) -> Result<(), SinkError> {
        self.main.begin(p).await?;
        self.main.query("commit", "COMMIT").await?;
        self.commits.inc();
        Ok(())
    }

    /// Records transactions that advanced the progress without a commit of
    /// their own (all their tables filtered out).
    async fn commit_progress_only(&mut self) -> Result<(), SinkError> {
        let p = self.progress.clone();
        self.progress_commit(&p).await?;
        self.unwritten = false;
        Ok(())
    }

    /// Runs a DDL statement alone: a target transaction open for the same
    /// source transaction is committed first with the progress it had
    /// before (DDL commits implicitly; the rows before it are upserts of a
    /// snapshot or replays), then the DDL, autocommitted.
    async fn apply_ddl(&mut self, sc: &SchemaChange) -> Result<(), SinkError> {
        let db = &*sc.database;
        let allowed = if sc.source.table.is_empty() {
            db.is_empty() || self.main.filter.allows_db(db)
        } else {
            self.main.filter.allows(&sc.source.db, &sc.source.table)
        };
        if !allowed {
            return Ok(());
        }
        self.main.flush_inserts().await?;
        if let Some(tx) = &mut self.tx {
            if tx.began.take().is_some() {
                let p = self.progress.clone();
                self.main.write_progress(&p).await?;
                self.main.query("commit", "COMMIT").await?;
            }
        }
        if !db.is_empty() {
            let use_db = format!("USE {}", encode::ident(self.main.filter.target_db(db)));
            if let Err(e) = self.main.conn.query_drop(use_db).await {
                // A CREATE DATABASE runs without its database existing yet.
                if server_code(&e) != Some(1049) {
                    return Err(classify(&self.cfg.name, "USE the DDL's database", e));
                }
            }
        }
        self.unique_keys.clear();
        self.schema_epoch.fetch_add(1, Ordering::Relaxed);
        // Marked so a source reading this target can leave it out (two-way sync).
        let ddl = format!("{}{}", rowstream_api::sink::APPLIED_DDL_MARK, sc.ddl);
        match self.main.conn.query_drop(ddl).await {
            Ok(()) => {}
            Err(e)
                if self.fresh
                    && server_code(&e).is_some_and(|c| DDL_ALREADY_APPLIED.contains(&c)) =>
            {
                warn!(sink = %self.cfg.name, ddl = %sc.ddl,
                      "DDL right after the recorded progress already took effect (replay after a crash): counted as applied: {e}");
            }
            Err(e) => {
                return Err(SinkError::Fatal(format!(
                    "mysql sink {:?}: DDL {:?} failed on the target: {e}: make the target's schema match the source's and restart",
                    self.cfg.name, sc.ddl
                )))
            }
        }
        if let Some(tx) = &mut self.tx {
            tx.ddl_ran = true;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for MysqlSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        let ack = self.poison.admit(ack)?;
        let r = match self.apply_batch(&batch).await {
            Ok(()) => self.positions(),
            Err(e) => Err(e),
        };
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok((end, durable)) => {
                acks.push(end, ack);
                acks.settle(durable);
                Ok(())
            }
            Err(e) => {
                acks.push(u64::MAX, ack);
                Err(self.poison.fail(e, &mut acks))
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.poison.check()?;
        let drained = self.drain().await;
        let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
        match drained {
            Ok(()) => {
                acks.settle_all();
                Ok(())
            }
            Err(e) => Err(self.poison.fail(e, &mut acks)),
        }
    }
}

impl Drop for MysqlSink {
    fn drop(&mut self) {
        // Its acks then drop with the queue: unacked batches fail.
        if let Some(a) = &self.acker {
            a.abort();
        }
    }
}

/// Acks batches as the pool commits their transactions, between writes.
async fn acker(mut commits: tokio::sync::watch::Receiver<u64>, acks: Arc<Mutex<AckQueue>>) {
    while commits.changed().await.is_ok() {
        let c = *commits.borrow_and_update();
        acks.lock().unwrap_or_else(|e| e.into_inner()).settle(c);
    }
}

rowstream_api::sink_builder!(MysqlSinkConfig => MysqlSink);

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint in the middle of snapshot 7: chunks up to `done` durable.
    struct Mid {
        done: u64,
    }

    impl Committed for Mid {
        fn contains(&self, id: &str) -> bool {
            parse_marker(id).is_some_and(|(s, n)| s == 7 && n <= self.done)
        }
        fn is_empty(&self) -> bool {
            false
        }
        fn recognizes(&self, id: &str) -> bool {
            parse_marker(id).is_some_and(|(s, _)| s == 7)
        }
    }

    /// Knows no snapshot (restore's view, or another snapshot's checkpoint).
    struct Nothing;

    impl Committed for Nothing {
        fn contains(&self, _: &str) -> bool {
            false
        }
        fn is_empty(&self) -> bool {
            true
        }
    }

    #[test]
    fn chunks_past_the_checkpoint_are_applied_again() {
        assert_eq!(chunks_held(7, 45, &Mid { done: 24 }), 24);
        assert_eq!(chunks_held(7, 45, &Mid { done: 0 }), 0);
        assert_eq!(chunks_held(7, 10, &Mid { done: 24 }), 10);
        assert_eq!(chunks_held(7, 1, &Mid { done: 1 }), 1);
        assert_eq!(
            chunks_held(8, 45, &Mid { done: 24 }),
            45,
            "another snapshot"
        );
        assert_eq!(
            chunks_held(7, 45, &Nothing),
            45,
            "no checkpoint: the target's count"
        );
        assert_eq!(chunks_held(7, 0, &Mid { done: 24 }), 0);
    }
}
