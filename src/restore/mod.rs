//! `rowstream restore`: replays a file backup into a MySQL or MariaDB
//! server up to a point in time, through the same apply engine as the
//! `mysql` sink (`connectors/mysql`), exactly once.
//!
//! The walk over the backup (`replay`) verifies every transaction's
//! checksum and decides where to stop; records are typed with the target's
//! own column definitions (`target`) and handed to the apply sink in
//! batches; progress is what the sink has acknowledged.
//!
//! Invariants kept:
//! - Nothing that failed its checksum is committed on the target: a small
//!   transaction is verified before any of it is applied, a big one is
//!   rolled back (its commit is never sent).
//! - Exactly once: the sink records each applied transaction in the
//!   target's progress table inside the same database transaction, and
//!   skips what that table already holds, so a rerun after a crash or a
//!   kill continues where the last one stopped.
//! - Exit 0 only when every transaction up to the chosen point is
//!   committed on the target.
//! - Memory is bounded: at most [`IN_FLIGHT`] batches of at most
//!   [`MAX_BATCH_RECORDS`] records and one held transaction
//!   (`replay::HOLD_BYTES`).

mod progress;
pub mod replay;
mod target;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rowstream_api::parse::Line;
use rowstream_api::{
    Ack, AckReceiver, Batch, Commit, Committed, Record, Sink, SinkBuilder, TableFilter,
};

use progress::Progress;
use replay::{Replay, Step, StopAt, Stopped, Walk};
use target::Target;

/// A batch is handed to the apply sink at the first commit after this many
/// records (whole transactions in a batch can be applied in parallel; one
/// that spans batches runs alone)...
pub const BATCH_RECORDS: usize = 1024;
/// ...or, inside a big transaction, at this many.
pub const MAX_BATCH_RECORDS: usize = 16 * 1024;
/// Batches handed to the sink and not yet acknowledged.
pub const IN_FLIGHT: usize = 4;

/// `rowstream restore` arguments.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Replay a file backup into a MySQL or MariaDB server, up to a point in time.

The backup's transactions are applied in commit order on --threads
connections (transactions that touch different rows run in parallel; commits
stay in source order), each one checked against its checksum first. A backup
that began with a snapshot holds every table's CREATE TABLE and restores into
an empty server; one without a snapshot is a change log to apply on top of a
copy that already has the tables.

Choose the point with one of:
  --until GTID        up to and including that transaction
  --before GTID       up to just before it (\"before the bad DELETE\")
  --until-time TIME   every transaction committed at or before TIME (RFC 3339,
                      e.g. 2026-12-03T10:42:00Z or 2026-12-03T11:42:00+01:00)
Without one, the whole backup is applied.

Exactly once: the target records what it has applied in
<progress schema>.progress (default rowstream.progress) in the same database
transaction as the changes, so rerunning the same command after a crash, a
kill or a target restart continues where it stopped, and a later restore with
a later point continues from there.

The target user needs ALL on the restored databases and on the progress
schema (CREATE, ALTER, DROP, INSERT, UPDATE, DELETE, SELECT).

Exit status: 0 the target holds the backup's state at the chosen point;
1 an error (the message says what and where; nothing after the last
committed transaction is applied); 2 usage error."
)]
pub struct RestoreArgs {
    /// The file sink's directory.
    #[arg(long)]
    pub backup: PathBuf,
    /// Target server: mysql://user:password@host:port[?tls=...]
    #[arg(
        long,
        env = "ROWSTREAM_TARGET_URL",
        required_unless_present = "dry_run"
    )]
    pub url: Option<String>,
    /// Stop after this transaction (GTID in the source's notation).
    #[arg(long, group = "point")]
    pub until: Option<String>,
    /// Stop just before this transaction.
    #[arg(long, group = "point")]
    pub before: Option<String>,
    /// Stop before the first transaction committed after this RFC 3339 time.
    #[arg(long, group = "point")]
    pub until_time: Option<String>,
    /// Only tables matching db.table globs (repeatable); default: all.
    #[arg(long)]
    pub include: Vec<String>,
    /// Tables to leave out (db.table globs, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Connections applying transactions in parallel.
    #[arg(long, default_value_t = 4)]
    pub threads: u32,
    /// Name under which the target's progress table records this restore.
    #[arg(long, default_value = "restore")]
    pub name: String,
    /// Schema of the progress table on the target.
    #[arg(long, default_value = "rowstream")]
    pub progress_schema: String,
    /// Read and verify the backup and report what would be applied; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl RestoreArgs {
    fn stop_at(&self) -> anyhow::Result<StopAt> {
        Ok(match (&self.until, &self.before, &self.until_time) {
            (Some(g), _, _) => StopAt::Until(g.trim().to_string()),
            (_, Some(g), _) => StopAt::Before(g.trim().to_string()),
            (_, _, Some(t)) => {
                StopAt::Time(rowstream_api::rfc3339::parse_ms(t).with_context(|| {
                    format!("--until-time {t:?} is not an RFC 3339 time like 2026-12-03T10:42:00Z")
                })?)
            }
            _ => StopAt::End,
        })
    }
}

/// Runs `rowstream restore`; returns the exit code.
pub async fn run(a: &RestoreArgs) -> anyhow::Result<i32> {
    let stop = match a.stop_at() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rowstream restore: {e:#}");
            return Ok(2);
        }
    };
    let filter = match TableFilter::new(&a.include, &a.exclude) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rowstream restore: {e}");
            return Ok(2);
        }
    };
    let replay = Replay::open(&a.backup, stop.clone())
        .with_context(|| format!("cannot read the backup {}", a.backup.display()))?;
    let mut replay = Walk::spawn(replay)?;
    let mut progress = Progress::new(a.dry_run);
    let outcome = match &a.url {
        Some(url) if !a.dry_run => apply(a, url, &filter, &mut replay, &mut progress).await,
        _ => dry_run(&filter, &mut replay, &mut progress).await,
    };
    progress.finish();
    let stopped = outcome?;
    Ok(report(a, &stop, &stopped, &progress))
}

/// Prints the outcome; the exit code.
fn report(a: &RestoreArgs, stop: &StopAt, stopped: &Stopped, p: &Progress) -> i32 {
    let verb = if a.dry_run { "would apply" } else { "applied" };
    let totals = format!(
        "{verb} {} transactions ({} row changes, {} schema changes){}; last: {}",
        p.transactions,
        p.rows,
        p.ddl,
        match p.already {
            0 => String::new(),
            n => format!(", {n} more were on the target already"),
        },
        p.last.as_deref().unwrap_or("none")
    );
    match (stopped, stop) {
        (Stopped::End, StopAt::Until(g) | StopAt::Before(g)) => {
            eprintln!("rowstream restore: {totals}");
            eprintln!(
                "rowstream restore: the backup ends before {g}: the target holds the backup's last state, not the one asked for"
            );
            1
        }
        (Stopped::NotInBackup { next }, StopAt::Until(g) | StopAt::Before(g)) => {
            eprintln!("rowstream restore: {totals}");
            eprintln!(
                "rowstream restore: {g} is not in the backup (it changed no captured table, or the backup misses it); stopped before {next}, the first transaction after it"
            );
            0
        }
        (Stopped::Before { next }, _) => {
            eprintln!("rowstream restore: {totals}; stopped before {next}");
            0
        }
        _ => {
            eprintln!("rowstream restore: {totals}");
            0
        }
    }
}

/// A check of the backup that applies nothing.
async fn dry_run(
    filter: &TableFilter,
    replay: &mut Walk,
    p: &mut Progress,
) -> anyhow::Result<Stopped> {
    loop {
        match replay.next_step().await? {
            Step::Record(Line::Change(c)) => {
                if filter.matches(&c.source.db, &c.source.table) {
                    p.pending_rows += 1;
                }
            }
            Step::Record(Line::SchemaChange(_)) => p.pending_ddl += 1,
            Step::Begin { .. } => {}
            Step::Commit { id, .. } => {
                p.committed(id);
                p.tick(replay.done_fraction());
            }
            Step::Stop(s) => return Ok(s),
        }
    }
}

/// Nothing is committed yet as far as the service's checkpoint goes: the
/// sink's own progress table says what the target holds.
struct NoCheckpoint;

impl Committed for NoCheckpoint {
    fn contains(&self, _: &str) -> bool {
        false
    }
    fn is_empty(&self) -> bool {
        true
    }
}

/// What the target held when this restore started (its progress table):
/// held transactions it covers are not fed again. The sink skips covered
/// transactions too, but only once it sees their id, which for a snapshot
/// chunk is at its end: its schema records would run again.
struct Held {
    gtids: Option<rowstream_api::gtid::GtidSet>,
    snapshot_id: u64,
    chunks_done: u64,
}

impl Held {
    async fn read(cfg: &rowstream_mysql::MysqlSinkConfig) -> anyhow::Result<Held> {
        let p = rowstream_mysql::applied(cfg).await?;
        let gtids = [rowstream_api::Flavor::MySql, rowstream_api::Flavor::MariaDb]
            .into_iter()
            .find_map(|f| rowstream_api::gtid::GtidSet::parse(f, &p.gtid_set).ok())
            .filter(|s| !s.is_empty());
        if !p.gtid_set.is_empty() || p.chunks_done > 0 {
            tracing::info!(gtid_set = %p.gtid_set, snapshot_chunks = p.chunks_done, "restore: the target already holds these; continuing after them");
        }
        Ok(Held {
            gtids,
            snapshot_id: p.snapshot_id,
            chunks_done: p.chunks_done,
        })
    }

    fn covers(&self, id: &str) -> bool {
        if let Some((sid, n)) = rowstream_api::sink::parse_marker(id) {
            return sid == self.snapshot_id && n <= self.chunks_done;
        }
        self.gtids.as_ref().is_some_and(|set| {
            rowstream_api::gtid::Gtid::parse(set.flavor(), id).is_ok_and(|g| set.contains(&g))
        })
    }
}

/// Batches on their way to the apply sink.
struct Feeder {
    sink: Box<dyn Sink>,
    batch: Batch,
    /// Rows of the transactions committed in `batch` (progress once acked).
    rows: u64,
    /// Rows of the open transaction, counted at its commit.
    tx_rows: u64,
    acks: VecDeque<(AckReceiver, u64, Vec<Arc<str>>)>,
}

impl Feeder {
    async fn push(&mut self, rec: Record, p: &mut Progress) -> anyhow::Result<()> {
        if matches!(rec, Record::Change(_)) {
            self.tx_rows += 1;
        }
        self.batch.records.push(rec);
        if self.batch.records.len() >= MAX_BATCH_RECORDS {
            self.send(p).await?;
        }
        Ok(())
    }

    async fn commit(&mut self, id: String, events: u64, p: &mut Progress) -> anyhow::Result<()> {
        self.rows += std::mem::take(&mut self.tx_rows);
        self.batch.commits.push(Commit {
            end: self.batch.records.len(),
            gtid: Arc::from(id),
            events,
        });
        if self.batch.records.len() >= BATCH_RECORDS || self.batch.commits.len() >= BATCH_RECORDS {
            self.send(p).await?;
        }
        Ok(())
    }

    async fn send(&mut self, p: &mut Progress) -> anyhow::Result<()> {
        if self.batch.records.is_empty() && self.batch.commits.is_empty() {
            return Ok(());
        }
        let seq = self.batch.seq;
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                seq: seq + 1,
                ..Batch::default()
            },
        );
        let ids = batch.commits.iter().map(|c| c.gtid.clone()).collect();
        let (ack, rx) = Ack::new();
        self.sink.write(Arc::new(batch), ack).await?;
        self.acks
            .push_back((rx, std::mem::take(&mut self.rows), ids));
        while self.acks.len() > IN_FLIGHT {
            self.settle_one(p).await?;
        }
        Ok(())
    }

    async fn settle_one(&mut self, p: &mut Progress) -> anyhow::Result<()> {
        let Some((rx, rows, ids)) = self.acks.pop_front() else {
            return Ok(());
        };
        match rx.await {
            Ok(Ok(())) => {
                p.rows += rows;
                for id in ids {
                    p.committed(id.to_string());
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => anyhow::bail!("the apply engine stopped without answering"),
        }
    }

    /// Sends what is pending and waits until the target has all of it.
    async fn settle(&mut self, p: &mut Progress) -> anyhow::Result<()> {
        self.send(p).await?;
        self.sink.flush().await?;
        while !self.acks.is_empty() {
            self.settle_one(p).await?;
        }
        Ok(())
    }

    /// Drops records after the last commit of the pending batch: a
    /// transaction the walk decided not to apply.
    fn cut_open_transaction(&mut self) {
        let end = self.batch.commits.last().map_or(0, |c| c.end);
        self.batch.records.truncate(end);
        self.tx_rows = 0;
    }
}

/// The mysql sink configured for a restore: stop at the first conflict.
fn sink_config(a: &RestoreArgs, url: &str) -> anyhow::Result<rowstream_mysql::MysqlSinkConfig> {
    let cfg: rowstream_mysql::MysqlSinkConfig = serde_json::from_value(serde_json::json!({
        "name": a.name,
        "url": url,
        "threads": a.threads,
        "on_conflict": "stop",
        "progress_schema": a.progress_schema,
    }))?;
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cfg)
}

async fn apply(
    a: &RestoreArgs,
    url: &str,
    filter: &TableFilter,
    replay: &mut Walk,
    p: &mut Progress,
) -> anyhow::Result<Stopped> {
    let cfg = sink_config(a, url)?;
    let mut target = Target::connect(url).await?;
    let held = Held::read(&cfg).await?;
    let sink = cfg.start(&NoCheckpoint).await?;
    let mut skipping = false;
    let mut f = Feeder {
        sink,
        batch: Batch {
            seq: 1,
            ..Batch::default()
        },
        rows: 0,
        tx_rows: 0,
        acks: VecDeque::new(),
    };
    let mut ddl_unsettled = false;
    loop {
        let step = match replay.next_step().await {
            Ok(s) => s,
            Err(e) => {
                // What was verified before the bad transaction still goes in.
                f.cut_open_transaction();
                f.settle(p).await?;
                f.sink.flush().await?;
                anyhow::bail!(
                    "{e}\nthe target holds every transaction before it (last: {})",
                    p.last.as_deref().unwrap_or("none")
                );
            }
        };
        match step {
            Step::Begin { id } => skipping = held.covers(&id),
            Step::Record(_) if skipping => {}
            Step::Commit { id, .. } if skipping => {
                skipping = false;
                p.skipped(id);
            }
            Step::Record(Line::Change(c)) => {
                if !filter.matches(&c.source.db, &c.source.table) {
                    continue;
                }
                if ddl_unsettled {
                    f.settle(p).await?;
                    target.forget();
                    ddl_unsettled = false;
                }
                let meta = target.table(&c.source.db, &c.source.table).await?;
                let at = format!("{}.{} in {}", c.source.db, c.source.table, c.source.gtid);
                let ev = c
                    .into_event(&meta)
                    .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                f.push(Record::Change(ev), p).await?;
            }
            Step::Record(Line::SchemaChange(sc)) => {
                let wanted = if sc.source.table.is_empty() {
                    filter.matches_db(&sc.database)
                } else {
                    filter.matches(&sc.source.db, &sc.source.table)
                };
                if wanted {
                    p.ddl += 1;
                    f.push(Record::SchemaChange(Box::new(sc)), p).await?;
                    ddl_unsettled = true;
                }
            }
            Step::Commit { id, events } => {
                f.commit(id, events, p).await?;
                p.tick(replay.done_fraction());
            }
            Step::Stop(s) => {
                f.cut_open_transaction();
                f.settle(p).await?;
                f.sink.flush().await?;
                return Ok(s);
            }
        }
    }
}
