//! Snapshots: the rows that already exist, read consistently with the GTID
//! set the stream then starts from, as `op = "r"` events through the same
//! pipeline and sinks as the stream. A source like the binlog one: it
//! hands the pipeline the same `source::Batch`es through the same channel.
//!
//! Shape: a consistent cut (`cut`) gives `threads` connections, each in a
//! consistent-snapshot transaction, and the GTID set `G`. A planner walks
//! each table's primary key and deals chunks (`chunk`) round-robin to the
//! workers; each worker streams its chunk's rows (`rows` converts them) in
//! pieces into its own bounded channel; the merger takes pieces in chunk
//! order (chunk n comes from worker n mod threads), so the sinks see the
//! tables in order and each table in key order, and ends every chunk with a
//! `Commit` whose id is the chunk marker `snapshot:<id>:<n>`.
//!
//! Invariants:
//! - every snapshot event reaches the pipeline before any stream event
//!   after `G` (the stream starts when the snapshot is complete), and every
//!   view contains `G` (see `cut`): applying the sinks' events in order,
//!   latest per primary key, gives the source table;
//! - progress is per chunk and a prefix (chunks are delivered in order):
//!   the batch that ends chunk n carries the snapshot state with
//!   `chunks_done = n`, which the pipeline checkpoints once every sink has
//!   acked it. A resumed snapshot re-plans from the last durable chunk's
//!   key with new views (each contains `G`, which the checkpoint keeps):
//!   nothing is lost, the rows of an interrupted chunk may be read twice;
//!   the new views may be newer than `G`, so `Running::views` reports a
//!   set `H` containing them and the checkpoint keeps it (`overlap`) until
//!   the stream has passed it;
//! - memory is bounded whatever the table size: one piece being built per
//!   worker, `WORKER_QUEUE` pieces queued per worker, the merger holds back
//!   only row-less batches (to mark the last event; an empty table's holds
//!   just its schema records), then the pipeline's own bounds;
//! - a table's first chunk opens with its schema records (`schema`): the
//!   database's CREATE DATABASE before the database's first table, the
//!   table's CREATE TABLE, read in the chunk's view; durable with the chunk;
//! - snapshot events have `source.snapshot` = "true" ("last" on the very
//!   last one), `source.gtid` = "" (like Debezium, a snapshot read belongs
//!   to no transaction), `source.file` = "", `pos` = 0, `source.ts_ms` = the
//!   cut time, no `transaction` block.

pub mod chunk;
pub mod cut;
mod progress;
pub mod rows;
mod schema;
pub mod signal;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use rowstream_api::{
    ChangeEvent, Commit, Flavor, Op, Record, SchemaChange, Shared, Snapshot, Source,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint::{chunk_marker, SnapshotState, TableProgress};
use crate::gtid::GtidSet;
use crate::source::conn::ConnOpts;
use crate::source::filter::TableFilter;
use crate::source::{Batch, SourceError, VERSION};
use chunk::{Chunk, Key};
use rows::SnapTable;

/// Records per piece (and so per pipeline batch), as the stream's batches.
const PIECE_RECORDS: usize = 1024;
/// Pieces queued per worker.
const WORKER_QUEUE: usize = 2;
/// Chunks planned ahead per worker.
const PLAN_AHEAD: usize = 2;

/// What a snapshot needs to know.
#[derive(Debug, Clone)]
pub struct Params {
    /// The server to read (the stream's first server).
    pub opts: ConnOpts,
    pub flavor: Flavor,
    /// `source.name`.
    pub name: Arc<str>,
    pub threads: usize,
    pub chunk_rows: u64,
    pub filter: TableFilter,
}

/// Which snapshot to run.
#[derive(Debug, Clone)]
pub enum Start {
    /// A new snapshot of every table the filter includes.
    Fresh,
    /// Continue the snapshot of the checkpoint, whose cut is `cut`.
    Resume { state: SnapshotState, cut: GtidSet },
}

/// How a snapshot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every row was handed to the pipeline.
    Complete,
    /// Stopped on request between two pieces; the checkpoint resumes it.
    Stopped,
}

/// A running snapshot.
pub struct Running {
    /// `G`: where the stream starts once the snapshot is complete.
    pub cut: GtidSet,
    /// `H`: contains every view this run reads in (see `cut`); the stream
    /// marks its transactions after `G` as `overlap`.
    pub views: GtidSet,
    /// The snapshot's progress before its first batch.
    pub state: SnapshotState,
    /// Resolves when the last batch has been handed to the pipeline.
    pub done: oneshot::Receiver<Result<Outcome, SourceError>>,
}

/// Makes the cut (or reopens views for a resume) and starts reading into
/// `tx` on a runtime of its own (`threads` OS threads, so converting rows
/// runs in parallel with the pipeline's thread). Returns once the cut is
/// made; batches may already be queued in `tx` then.
pub async fn start(
    params: Params,
    start: Start,
    tx: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
) -> Result<Running, SourceError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let threads = params.threads.max(1);
    std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("snapshot-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(SourceError::Fatal(format!(
                        "cannot start the snapshot runtime: {e}"
                    ))));
                    return;
                }
            };
            let r = rt.block_on(run(params, start, tx, stop, ready_tx));
            let _ = done_tx.send(r);
        })
        .map_err(|e| SourceError::Fatal(format!("cannot start the snapshot thread: {e}")))?;
    let (cut, views, state) = match ready_rx.await {
        Ok(r) => r?,
        Err(_) => match done_rx.await {
            Ok(Err(e)) => return Err(e),
            _ => return Err(SourceError::Fatal("the snapshot thread ended early".into())),
        },
    };
    Ok(Running {
        cut,
        views,
        state,
        done: done_rx,
    })
}

type Ready = oneshot::Sender<Result<(GtidSet, GtidSet, SnapshotState), SourceError>>;

async fn run(
    p: Params,
    start: Start,
    tx: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
    ready: Ready,
) -> Result<Outcome, SourceError> {
    let prepared = prepare(&p, start).await;
    let (tables, workers, (cut, views), state, server_id) = match prepared {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(SourceError::Fatal(e.to_string())));
            return Err(e);
        }
    };
    let cut_sequence = cut.sequence();
    if ready.send(Ok((cut, views, state.clone()))).is_err() {
        return Ok(Outcome::Stopped);
    }
    let tables = Arc::new(tables);
    let ctx = EventCtx {
        name: p.name.clone(),
        flavor: p.flavor,
        server_id,
        ts_ms: now_ms(),
        empty: Arc::from(""),
        sequence: cut_sequence,
        columns: p.filter.columns().clone(),
    };
    let n_workers = workers.len();
    let mut chunk_txs = Vec::with_capacity(n_workers);
    let mut piece_rxs = Vec::with_capacity(n_workers);
    for conn in workers {
        let (ctx_tx, ctx_rx) = mpsc::channel::<Chunk>(PLAN_AHEAD);
        let (piece_tx, piece_rx) = mpsc::channel(WORKER_QUEUE);
        tokio::spawn(work(conn, tables.clone(), ctx.clone(), ctx_rx, piece_tx));
        chunk_txs.push(ctx_tx);
        piece_rxs.push(piece_rx);
    }
    let planner_conn = cut::session(&p.opts).await?;
    let planner = tokio::spawn(plan(
        planner_conn,
        tables.clone(),
        state.clone(),
        p.chunk_rows,
        chunk_txs,
    ));
    let outcome = merge(&tables, state, piece_rxs, &tx, &stop).await;
    if outcome.is_err() || matches!(outcome, Ok(Outcome::Stopped)) {
        planner.abort();
        return outcome;
    }
    match planner.await {
        Ok(Ok(())) => outcome,
        Ok(Err(e)) => Err(e),
        Err(e) => Err(SourceError::Fatal(format!("snapshot planner failed: {e}"))),
    }
}

type Prepared = (
    Vec<SnapTable>,
    Vec<mysql_async::Conn>,
    (GtidSet, GtidSet),
    SnapshotState,
    u32,
);

async fn prepare(p: &Params, start: Start) -> Result<Prepared, SourceError> {
    let mut q = cut::session(&p.opts).await?;
    let server_id: u32 = q.query_first("SELECT @@server_id").await?.unwrap_or(0);
    let (names, resume) = match start {
        Start::Fresh => {
            let names: Vec<(String, String)> = rows::list_tables(&mut q)
                .await?
                .into_iter()
                .filter(|(db, t)| p.filter.matches(db, t))
                .collect();
            (names, None)
        }
        Start::Resume { state, cut } => (
            state
                .tables
                .iter()
                .map(|t| (t.db.clone(), t.table.clone()))
                .collect(),
            Some((state, cut)),
        ),
    };
    let mut tables = Vec::with_capacity(names.len());
    for (db, t) in &names {
        let table = rows::load_table(&mut q, db, t).await?;
        progress::register(&table);
        tables.push(table);
    }
    q.disconnect().await.ok();
    match resume {
        None => {
            let c = cut::cut(&p.opts, p.flavor, p.threads).await?;
            tracing::info!(
                method = c.method,
                lock_ms = ?c.lock_ms,
                gtid_set = %c.gtid,
                views = %c.views,
                tables = tables.len(),
                threads = p.threads,
                "snapshot: consistent cut made"
            );
            let state = SnapshotState {
                id: now_ms(),
                chunks_done: 0,
                tables: names
                    .into_iter()
                    .map(|(db, table)| TableProgress {
                        db,
                        table,
                        done: false,
                        after: None,
                        rows: 0,
                    })
                    .collect(),
            };
            Ok((tables, c.workers, (c.gtid, c.views), state, server_id))
        }
        Some((state, cut)) => {
            let (workers, views) = cut::open_views(&p.opts, p.flavor, p.threads).await?;
            tracing::info!(
                gtid_set = %cut,
                views = %views,
                chunks_done = state.chunks_done,
                "snapshot: resuming after the last durable chunk"
            );
            Ok((tables, workers, (cut, views), state, server_id))
        }
    }
}

/// What every event of the snapshot shares.
#[derive(Clone)]
pub(crate) struct EventCtx {
    pub(crate) name: Arc<str>,
    pub(crate) flavor: Flavor,
    pub(crate) server_id: u32,
    /// `source.ts_ms`: when the rows were read.
    pub(crate) ts_ms: u64,
    pub(crate) empty: Arc<str>,
    /// `source.sequence` of every row: the cut's position in the history, so
    /// a row read at the cut sorts before every change streamed after it
    /// (Elasticsearch external versions).
    pub(crate) sequence: u64,
    /// Column exclusion and masking, applied to every row read.
    pub(crate) columns: rowstream_api::kit::ColumnRules,
}

/// A worker's output: up to `PIECE_RECORDS` rows (after the table's
/// schema records in its first chunk's first piece), and the chunk's end.
struct Piece {
    table: usize,
    records: Vec<Record>,
    /// How many of `records` are schema records (they come first).
    ddl: usize,
    end: Option<ChunkEnd>,
}

struct ChunkEnd {
    n: u64,
    table: usize,
    hi: Option<Key>,
    rows: u64,
    /// Schema records of the chunk.
    ddl: u64,
}

/// Deals chunks round-robin: chunk `n` to worker `(n - first) % workers`.
async fn plan(
    mut conn: mysql_async::Conn,
    tables: Arc<Vec<SnapTable>>,
    state: SnapshotState,
    chunk_rows: u64,
    txs: Vec<mpsc::Sender<Chunk>>,
) -> Result<(), SourceError> {
    let first = state.chunks_done + 1;
    let mut n = first;
    for (ti, tp) in state.tables.iter().enumerate() {
        if tp.done {
            continue;
        }
        let t = &tables[ti];
        let mut lo = match &tp.after {
            None => None,
            Some(j) => Some(chunk::key_from_json(j).ok_or_else(|| {
                SourceError::Fatal(format!(
                    "checkpoint: snapshot key of {} is not readable: {j}",
                    t.label()
                ))
            })?),
        };
        loop {
            let hi = if t.primary_key.is_empty() {
                lo = None;
                None
            } else {
                chunk::next_boundary(&mut conn, t, lo.as_ref(), chunk_rows).await?
            };
            let last = hi.is_none();
            let w = ((n - first) % txs.len() as u64) as usize;
            let c = Chunk {
                n,
                table: ti,
                lo: lo.take(),
                hi: hi.clone(),
            };
            if txs[w].send(c).await.is_err() {
                return Ok(()); // the merger stopped
            }
            n += 1;
            if last {
                break;
            }
            lo = hi;
        }
    }
    conn.disconnect().await.ok();
    Ok(())
}

async fn work(
    mut conn: mysql_async::Conn,
    tables: Arc<Vec<SnapTable>>,
    ctx: EventCtx,
    mut chunks: mpsc::Receiver<Chunk>,
    out: mpsc::Sender<Result<Piece, SourceError>>,
) {
    while let Some(c) = chunks.recv().await {
        // Tables are listed grouped by database (and resumes keep the order).
        let first_of_db = c.table == 0 || tables[c.table - 1].db != tables[c.table].db;
        let t = &tables[c.table];
        match read_chunk(&mut conn, t, first_of_db, &ctx, &c, &out).await {
            Ok(true) => {}
            Ok(false) => return, // the merger stopped
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        }
    }
    let _ = conn.query_drop("COMMIT").await;
    conn.disconnect().await.ok();
}

/// Streams one chunk into `out`; false when the merger is gone.
/// `first_of_db`: the chunk's table is its database's first.
async fn read_chunk(
    conn: &mut mysql_async::Conn,
    t: &SnapTable,
    first_of_db: bool,
    ctx: &EventCtx,
    c: &Chunk,
    out: &mpsc::Sender<Result<Piece, SourceError>>,
) -> Result<bool, SourceError> {
    let mut buf = Vec::with_capacity(PIECE_RECORDS);
    // A table's first chunk is the one that starts at its beginning (one
    // chunk only for a table without a primary key).
    if c.lo.is_none() {
        for st in schema::table_statements(conn, t, first_of_db).await? {
            buf.push(schema_record(ctx, &t.db, &st));
        }
    }
    let ddl = buf.len();
    let (sql, params) = chunk::chunk_query(t, c);
    let mut res = conn.exec_iter(sql, params).await?;
    let mut piece_ddl = ddl;
    let mut rows = 0u64;
    // Processing time per piece, not per row: the clock is not free.
    let mut now = now_ms();
    let shared = read_shared(t, ctx);
    while let Some(row) = res.next().await? {
        let values = convert_row(t, row)?;
        let mut ev = read_event(&shared, values, rows as u32, now);
        ctx.columns.apply(&mut ev).map_err(SourceError::Fatal)?;
        buf.push(Record::Change(ev));
        rows += 1;
        if buf.len() >= PIECE_RECORDS {
            let records = std::mem::replace(&mut buf, Vec::with_capacity(PIECE_RECORDS));
            now = now_ms();
            let piece = Piece {
                table: c.table,
                records,
                ddl: std::mem::take(&mut piece_ddl),
                end: None,
            };
            if out.send(Ok(piece)).await.is_err() {
                return Ok(false);
            }
        }
    }
    drop(res);
    let end = ChunkEnd {
        n: c.n,
        table: c.table,
        hi: c.hi.clone(),
        rows,
        ddl: ddl as u64,
    };
    Ok(out
        .send(Ok(Piece {
            table: c.table,
            records: buf,
            ddl: piece_ddl,
            end: Some(end),
        }))
        .await
        .is_ok())
}

/// A result row as the table's values.
pub(crate) fn convert_row(
    t: &SnapTable,
    row: mysql_async::Row,
) -> Result<Vec<rowstream_api::Value>, SourceError> {
    let mut values = Vec::with_capacity(t.names.len());
    for (i, v) in row.unwrap().into_iter().enumerate() {
        values.push(rows::convert(t.conv[i], v).map_err(|e| {
            SourceError::Fatal(format!("snapshot: {}.{}: {e}", t.label(), t.names[i]))
        })?);
    }
    Ok(values)
}

/// The `op = "r"` event of one row (see the module docs for its fields);
/// `shared` is the table's [`read_shared`], shared by its rows.
pub(crate) fn read_event(
    shared: &Arc<Shared>,
    values: Vec<rowstream_api::Value>,
    row: u32,
    now: u64,
) -> ChangeEvent {
    ChangeEvent {
        op: Op::Read,
        before: None,
        after: Some(values),
        ts_ms: now,
        shared: shared.clone(),
        row,
        transaction: None,
        overlap: false,
    }
}

/// The source block, key, types and column names of a table's snapshot
/// rows (`t.meta.columns` are `t.names`).
pub(crate) fn read_shared(t: &SnapTable, ctx: &EventCtx) -> Arc<Shared> {
    let source = snapshot_source(ctx, &t.db, t.table.clone());
    Arc::new(Shared::typed(source, &t.meta))
}

/// The source block of a snapshot record: the cut's time and sequence, no
/// binlog position (see the module docs).
fn snapshot_source(ctx: &EventCtx, db: &Arc<str>, table: Arc<str>) -> Source {
    Source {
        version: VERSION,
        connector: ctx.flavor,
        name: ctx.name.clone(),
        ts_ms: ctx.ts_ms,
        snapshot: Snapshot::True,
        db: db.clone(),
        table,
        server_id: ctx.server_id,
        gtid: ctx.empty.clone(),
        sequence: ctx.sequence,
        file: ctx.empty.clone(),
        pos: 0,
    }
}

/// A schema record of the snapshot (its fields: see `schema`).
pub(crate) fn schema_record(ctx: &EventCtx, db: &Arc<str>, st: &schema::Statement) -> Record {
    Record::SchemaChange(Box::new(SchemaChange {
        source: snapshot_source(ctx, db, Arc::from(st.table.as_str())),
        ts_ms: now_ms(),
        database: db.clone(),
        ddl: st.ddl.clone(),
    }))
}

/// Hands pieces to the pipeline in chunk order, ending each chunk with its
/// marker and progress.
async fn merge(
    tables: &[SnapTable],
    mut state: SnapshotState,
    mut outs: Vec<mpsc::Receiver<Result<Piece, SourceError>>>,
    tx: &mpsc::Sender<Batch>,
    stop: &watch::Receiver<bool>,
) -> Result<Outcome, SourceError> {
    let first = state.chunks_done + 1;
    let mut n = first;
    let mut chunk_rows = 0u64;
    // Record-less batches after the newest batch with records: held until
    // the next records arrive, so the very last event can still be marked.
    let mut held: Vec<Batch> = Vec::new();
    let mut prog = progress::Progress::new(tables, &state);
    let send_held = |held: &mut Vec<Batch>| {
        let batches = std::mem::take(held);
        async move {
            for b in batches {
                if tx.send(b).await.is_err() {
                    return Err(());
                }
            }
            Ok(())
        }
    };
    loop {
        if *stop.borrow() {
            let _ = send_held(&mut held).await;
            prog.finish(false);
            return Ok(Outcome::Stopped);
        }
        let w = ((n - first) % outs.len() as u64) as usize;
        let piece = match outs[w].recv().await {
            None => break,
            Some(Err(e)) => {
                prog.finish(false);
                return Err(e);
            }
            Some(Ok(p)) => p,
        };
        let ti = piece.table;
        let piece_rows = (piece.records.len() - piece.ddl) as u64;
        chunk_rows += piece_rows;
        prog.rows(ti, piece_rows);
        let mut commits = Vec::new();
        let mut snap = None;
        if let Some(end) = piece.end {
            if end.n != n {
                return Err(SourceError::Fatal(format!(
                    "snapshot: chunk {} arrived while waiting for chunk {n}",
                    end.n
                )));
            }
            debug_assert_eq!(end.rows, chunk_rows);
            commits.push(Commit {
                end: piece.records.len(),
                gtid: Arc::from(chunk_marker(state.id, n)),
                events: end.rows + end.ddl,
            });
            state.chunks_done = n;
            let tp = &mut state.tables[end.table];
            tp.rows += end.rows;
            match end.hi {
                Some(hi) => tp.after = Some(chunk::key_to_json(&hi)),
                None => {
                    tp.done = true;
                    tp.after = None;
                    prog.table_done(end.table);
                }
            }
            snap = Some(Box::new(state.clone()));
            n += 1;
            chunk_rows = 0;
        }
        // Schema records alone (an empty table) are held like an empty
        // piece: the last row event must still be found to be marked.
        let has_records = piece.records.len() > piece.ddl;
        if has_records && send_held(&mut held).await.is_err() {
            return Ok(Outcome::Stopped);
        }
        held.push(Batch {
            records: piece.records,
            commits,
            executed: None,
            snapshot: snap,
            // No binlog bytes: snapshot pieces are bounded by rows (chunk_rows).
            bytes: 0,
        });
        prog.tick();
    }
    if !state.is_complete() {
        prog.finish(false);
        return Err(SourceError::Fatal(format!(
            "snapshot: the readers stopped after chunk {} with tables left",
            state.chunks_done
        )));
    }
    // The last batch with rows is the first held one.
    if let Some(b) = held.first_mut() {
        if let Some(Record::Change(ev)) = b.records.last_mut() {
            ev.shared_mut().source.snapshot = Snapshot::Last;
        }
    }
    held.push(Batch {
        records: Vec::new(),
        commits: Vec::new(),
        executed: None,
        snapshot: Some(Box::new(state.clone())),
        bytes: 0,
    });
    if send_held(&mut held).await.is_err() {
        return Ok(Outcome::Stopped);
    }
    prog.finish(true);
    Ok(Outcome::Complete)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
