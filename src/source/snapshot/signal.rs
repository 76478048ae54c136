//! On-demand snapshots while streaming continues, through a signal table,
//! with the DBLog watermark method (as Debezium's incremental snapshots).
//!
//! The operator inserts a row into `<signal_schema>.rowstream_signal`
//! (`id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT`):
//! `type = 'execute-snapshot'`, `data = '{"tables": ["shop.orders"]}'`
//! (Debezium's `"data-collections"` is accepted too). When the stream
//! reaches that row, the tables are read chunk by chunk (`chunk_rows` rows
//! in primary-key order) on a separate connection:
//!
//! 1. insert a low watermark row (`snapshot-window-open`, data = window id);
//! 2. `SELECT` the chunk (`pk > last key ORDER BY pk LIMIT chunk_rows + 1`;
//!    the extra row, not emitted, tells whether the table goes on);
//! 3. insert a high watermark row (`snapshot-window-close`).
//!
//! In the stream, between the two watermarks, every change of the chunk's
//! table marks its key; at the high watermark the chunk's rows whose key was
//! not marked are emitted as `op = "r"` events, right after the watermark
//! row, inside the watermark's transaction. Invariant: a chunk row is
//! emitted only when no change to its key lies in the window, so the
//! sinks, applying events in order, end with each row's latest state: a
//! change in the window is at least as new as the row the SELECT saw, and
//! every later change follows the emitted row.
//!
//! A table's first chunk is preceded by its CREATE TABLE (a snapshot
//! schema record, see `schema`), emitted with the chunk. The SELECT, the
//! SHOW CREATE TABLE and the high watermark run in one transaction that
//! has opened the table first: its metadata lock keeps DDL on the table
//! out of the window, so the definition matches the rows and no DDL of the
//! table lies between it and the high watermark in the stream.
//!
//! Memory: one chunk (at most `chunk_rows` rows) and the keys changed in
//! one window. The chunk rows travel inside the high watermark's
//! transaction, so they are durable and checkpointed with it (exactly once
//! in the file backup).
//!
//! Resumable: the progress ([`OnDemandState`]: the signal, the tables with
//! the current one's last emitted key and rows, rows read, resumes) goes
//! into the checkpoint's `on_demand`. Invariant: a state change (a request,
//! a chunk emitted, a table done) is handed to the pipeline with the batch
//! that holds the commit of the transaction it happened in (`process`
//! returns it; a transaction continued in a later batch carries it there),
//! so the pipeline checkpoints it exactly when that transaction (the high
//! watermark's, with the chunk rows) is durable in every sink: the
//! checkpoint never claims rows the sinks lack, and never leaves out rows
//! it covers. After a restart [`Incremental::new`] continues after the
//! durable key with a new window (new id, new watermarks): rows already
//! durable are not read again; the chunk in flight at the crash is, and
//! its watermark rows, replayed from the binlog, match no window and are
//! ignored (as those of any abandoned window). A request whose signal row
//! lies after the checkpoint is replayed and starts the snapshot anew.

use std::collections::HashSet;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use rowstream_api::{ChangeEvent, Flavor, Op, Record, Shared, Snapshot, Value};
use tokio::sync::oneshot;

use super::chunk::{self, Key};
use super::progress::Progress;
use super::rows::{self, SnapTable};
use super::{cut, now_ms, schema, EventCtx};
use crate::checkpoint::{OnDemandState, TableProgress};
use crate::source::conn::ConnOpts;
use crate::source::{Batch, SourceError};

/// The signal table's name inside the configured schema.
pub const SIGNAL_TABLE: &str = "rowstream_signal";

/// What an on-demand snapshot needs.
#[derive(Debug, Clone)]
pub struct SignalConfig {
    pub opts: ConnOpts,
    pub flavor: Flavor,
    pub name: Arc<str>,
    /// The schema holding `rowstream_signal`.
    pub schema: String,
    pub chunk_rows: u64,
    /// The source's column exclusion and masking.
    pub columns: rowstream_api::kit::ColumnRules,
}

struct ChunkRead {
    table: Arc<SnapTable>,
    /// The table's CREATE TABLE, with its first chunk.
    schema: Option<Record>,
    rows: Vec<ChangeEvent>,
    last_key: Option<Key>,
    /// The table has rows after this chunk (one more was selected than
    /// the chunk holds): the chunk that ends a table is never empty unless
    /// the table is, so the snapshot's last event can be marked "last".
    more: bool,
}

/// The window of the chunk being read.
struct Window {
    db: String,
    table: String,
    id: String,
    open: bool,
    /// Debug text of the primary key values changed inside the window.
    changed: HashSet<String>,
    read: oneshot::Receiver<Result<ChunkRead, SourceError>>,
}

/// The on-demand snapshot state machine, fed with every stream batch.
pub struct Incremental {
    cfg: SignalConfig,
    /// The snapshot as far as the stream has got (ahead of what is durable
    /// until the batches that carry it are acked); kept once complete until
    /// a new request replaces it.
    state: Option<OnDemandState>,
    /// The current table's definition, once its first chunk was read.
    meta: Option<Arc<SnapTable>>,
    /// The current table's last key read (None: read from its start).
    after: Option<Key>,
    window: Option<Window>,
    seq: u64,
    /// `state` changed in a transaction whose commit the stream has not
    /// reached yet: it goes to the batch holding that commit.
    unsettled: bool,
    /// Progress line and metrics while a snapshot runs.
    progress: Option<Progress>,
}

impl Incremental {
    /// The hook; `saved` is the checkpoint's on-demand snapshot, resumed
    /// after its last durable chunk (a new window is started now).
    pub fn new(
        cfg: SignalConfig,
        saved: Option<OnDemandState>,
    ) -> Result<Incremental, SourceError> {
        let mut inc = Incremental {
            cfg,
            state: None,
            meta: None,
            after: None,
            window: None,
            seq: 0,
            unsettled: false,
            progress: None,
        };
        let Some(mut state) = saved.filter(|s| !s.is_complete()) else {
            return Ok(inc);
        };
        let i = current(&state).unwrap_or(0);
        let tp = &state.tables[i];
        if let Some(j) = &tp.after {
            inc.after = Some(chunk::key_from_json(j).ok_or_else(|| {
                SourceError::Fatal(format!(
                    "checkpoint: the on-demand snapshot's key of {}.{} is not readable: {j}",
                    tp.db, tp.table
                ))
            })?);
        }
        state.resumes += 1;
        tracing::info!(
            signal = %state.signal,
            table = %format!("{}.{}", tp.db, tp.table),
            after = %tp.after.as_ref().map(|j| j.to_string()).unwrap_or_default(),
            rows = state.rows(),
            read = state.read,
            resumes = state.resumes,
            "on-demand snapshot: resuming after the last durable chunk"
        );
        inc.progress = Some(Progress::on_demand(state.resumes));
        inc.state = Some(state);
        // The new resume count is checkpointed with the next transaction.
        inc.unsettled = true;
        inc.read_chunk();
        Ok(inc)
    }

    /// Looks at a stream batch: signals start snapshots, watermarks close
    /// windows (the chunk's rows are inserted into the batch there).
    /// Returns the progress to checkpoint with the batch: the state as of
    /// the batch's last commit, when it changed since the last one returned
    /// (so it becomes durable exactly with the transaction that carries it).
    pub fn process(&mut self, b: &mut Batch) -> Option<OnDemandState> {
        let mut durable = None;
        let mut ci = 0;
        let mut i = 0;
        loop {
            // Commits at or before record i close transactions that carry
            // every state change so far.
            while b.commits.get(ci).is_some_and(|c| c.end <= i) {
                if std::mem::take(&mut self.unsettled) {
                    durable = self.state.clone();
                }
                ci += 1;
            }
            if i >= b.records.len() {
                break;
            }
            let Record::Change(ev) = &b.records[i] else {
                i += 1;
                continue;
            };
            if *ev.source().db == self.cfg.schema && &*ev.source().table == SIGNAL_TABLE {
                if ev.op == Op::Create {
                    let (id, ty, data) = (col(ev, "id"), col(ev, "type"), col(ev, "data"));
                    let sequence = ev.source().sequence;
                    let mut inserted =
                        self.on_signal(id.as_deref(), ty.as_deref(), data.as_deref());
                    // Emitted in the high watermark's transaction: newer than
                    // every change before it, older than every change after.
                    // The rows share their source: re-point them to one copy.
                    let mut moved: Option<(Arc<Shared>, Arc<Shared>)> = None;
                    for r in &mut inserted {
                        match r {
                            Record::Change(e) => match &moved {
                                Some((old, new)) if Arc::ptr_eq(old, &e.shared) => {
                                    e.shared = new.clone();
                                }
                                _ => {
                                    let old = e.shared.clone();
                                    e.shared_mut().source.sequence = sequence;
                                    moved = Some((old, e.shared.clone()));
                                }
                            },
                            Record::SchemaChange(sc) => sc.source.sequence = sequence,
                        }
                    }
                    if !inserted.is_empty() {
                        let n = inserted.len();
                        let at = i + 1;
                        b.records.splice(at..at, inserted);
                        for c in b.commits.iter_mut() {
                            if c.end >= at {
                                c.end += n;
                            }
                        }
                        i += n;
                    }
                }
            } else if let Some(w) = self.window.as_mut() {
                if w.open && *ev.source().db == *w.db && *ev.source().table == *w.table {
                    for img in [ev.before_row(), ev.after_row()].into_iter().flatten() {
                        w.changed.insert(key_text(img.values, ev.primary_key()));
                    }
                }
            }
            i += 1;
        }
        durable
    }

    /// One signal row; returns the records to insert after it.
    fn on_signal(&mut self, id: Option<&str>, ty: Option<&str>, data: Option<&str>) -> Vec<Record> {
        match ty {
            Some("execute-snapshot") => {
                self.on_request(id.unwrap_or(""), data);
                Vec::new()
            }
            Some("snapshot-window-open") => {
                if let Some(w) = self.window.as_mut() {
                    if data == Some(w.id.as_str()) {
                        w.open = true;
                    }
                }
                Vec::new()
            }
            Some("snapshot-window-close") => {
                let ours = self
                    .window
                    .as_ref()
                    .is_some_and(|w| data == Some(w.id.as_str()));
                match self.window.take() {
                    Some(w) if ours => self.on_close(w),
                    other => {
                        self.window = other;
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        }
    }

    /// An `execute-snapshot` request: starts a snapshot, or appends its
    /// tables to the one running.
    fn on_request(&mut self, id: &str, data: Option<&str>) {
        let tables = parse_request(data.unwrap_or(""));
        if tables.is_empty() {
            tracing::warn!(data = ?data, "signal execute-snapshot without tables (data = '{{\"tables\": [\"db.table\"]}}')");
            return;
        }
        tracing::info!(signal = %id, tables = ?tables, "on-demand snapshot requested");
        let new = tables.into_iter().map(|(db, table)| TableProgress {
            db,
            table,
            done: false,
            after: None,
            rows: 0,
        });
        self.unsettled = true;
        match self.state.as_mut().filter(|s| !s.is_complete()) {
            Some(s) => s.tables.extend(new),
            None => {
                self.state = Some(OnDemandState {
                    signal: id.to_string(),
                    tables: new.collect(),
                    read: 0,
                    resumes: 0,
                });
                self.progress = Some(Progress::on_demand(0));
                self.meta = None;
                self.after = None;
                self.read_chunk();
            }
        }
    }

    /// Our window's high watermark: the chunk's rows not changed inside the
    /// window, and the next window (or the next table, or the end).
    fn on_close(&mut self, mut w: Window) -> Vec<Record> {
        let changed = std::mem::take(&mut w.changed);
        let Some(state) = self.state.as_mut() else {
            return Vec::new();
        };
        let Some(ti) = current(state) else {
            return Vec::new();
        };
        self.unsettled = true;
        // The chunk was handed over before the high watermark was written.
        let read = match w.read.try_recv() {
            Ok(Ok(r)) => r,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the chunk was missing at its high watermark".into(),
                };
                tracing::error!(table = %format!("{}.{}", w.db, w.table), error = %why, "on-demand snapshot failed; table abandoned (signal it again)");
                state.tables[ti].done = true;
                self.next_table();
                return Vec::new();
            }
        };
        let selected = read.rows.len() as u64;
        let full = read.more;
        let mut out: Vec<ChangeEvent> = read
            .rows
            .into_iter()
            .filter(|r| {
                r.after
                    .as_ref()
                    .is_some_and(|a| !changed.contains(&key_text(a, r.primary_key())))
            })
            .collect();
        tracing::debug!(
            emitted = out.len(),
            changed_in_window = changed.len(),
            "on-demand snapshot chunk"
        );
        state.read += selected;
        let tp = &mut state.tables[ti];
        let rows_before = tp.rows;
        tp.rows += out.len() as u64;
        if let Some(k) = &read.last_key {
            tp.after = Some(chunk::key_to_json(k));
        }
        if self.meta.is_none() {
            let p = self.progress.get_or_insert_with(|| Progress::on_demand(0));
            p.add_table(&read.table, rows_before);
        }
        if let Some(p) = self.progress.as_mut() {
            p.rows(p.current(), out.len() as u64);
        }
        self.meta = Some(read.table.clone());
        if read.last_key.is_some() {
            self.after = read.last_key;
        }
        if full {
            if let Some(p) = self.progress.as_mut() {
                p.tick();
            }
            self.read_chunk();
        } else {
            tracing::info!(table = %read.table.label(), rows = tp.rows, "on-demand snapshot: table read");
            tp.done = true;
            tp.after = None;
            if let Some(p) = self.progress.as_mut() {
                p.table_done(p.current());
            }
            if !self.next_table() {
                if let Some(last) = out.last_mut() {
                    last.shared_mut().source.snapshot = Snapshot::Last;
                }
            }
        }
        read.schema
            .into_iter()
            .chain(out.into_iter().map(Record::Change))
            .collect()
    }

    /// Starts the next table not done; false when the snapshot is complete.
    fn next_table(&mut self) -> bool {
        self.meta = None;
        self.after = None;
        if self.state.as_ref().and_then(current).is_some() {
            self.read_chunk();
            return true;
        }
        if let Some(s) = &self.state {
            tracing::info!(
                signal = %s.signal,
                tables = s.tables.len(),
                rows = s.rows(),
                read = s.read,
                resumes = s.resumes,
                "on-demand snapshot complete"
            );
        }
        if let Some(mut p) = self.progress.take() {
            p.finish(true);
        }
        false
    }

    /// Starts the low watermark / SELECT / high watermark of the next chunk
    /// of the current table.
    fn read_chunk(&mut self) {
        let Some((db, table)) = self
            .state
            .as_ref()
            .and_then(|s| current(s).map(|i| (s.tables[i].db.clone(), s.tables[i].table.clone())))
        else {
            return;
        };
        let (meta, after) = (self.meta.clone(), self.after.clone());
        self.seq += 1;
        let id = format!("rowstream-{}-{}", now_ms(), self.seq);
        let (tx, rx) = oneshot::channel();
        self.window = Some(Window {
            db: db.clone(),
            table: table.clone(),
            id: id.clone(),
            open: false,
            changed: HashSet::new(),
            read: rx,
        });
        let cfg = self.cfg.clone();
        tokio::spawn(async move {
            if let Err(e) = window(cfg, db, table, meta, after, id, tx).await {
                tracing::error!(error = %e, "on-demand snapshot: watermark or read failed");
            }
        });
    }
}

impl Drop for Incremental {
    /// A session that ends mid-snapshot (stop, restart): the progress line
    /// and `rowstream_snapshot_running` say so; the checkpoint resumes it.
    fn drop(&mut self) {
        if let Some(mut p) = self.progress.take() {
            p.finish(false);
        }
    }
}

/// The index of the first table not done (the one being read).
fn current(s: &OnDemandState) -> Option<usize> {
    s.tables.iter().position(|t| !t.done)
}

/// Low watermark, chunk, high watermark (the chunk is handed to the stream
/// side before the high watermark exists, so it is there when the stream
/// reaches it).
async fn window(
    cfg: SignalConfig,
    db: String,
    table: String,
    meta: Option<Arc<SnapTable>>,
    after: Option<Key>,
    id: String,
    tx: oneshot::Sender<Result<ChunkRead, SourceError>>,
) -> Result<(), SourceError> {
    let mut conn = cut::session(&cfg.opts).await?;
    let signal = format!(
        "{}.{}",
        rows::quote_ident(&cfg.schema),
        rows::quote_ident(SIGNAL_TABLE)
    );
    let insert = format!("INSERT INTO {signal} (id, type, data) VALUES (?, ?, ?)");
    let read = async {
        let t = match meta {
            Some(t) => t,
            None => Arc::new(rows::load_table(&mut conn, &db, &table).await?),
        };
        if t.primary_key.is_empty() {
            return Err(SourceError::Fatal(format!(
                "on-demand snapshot of {}: the table has no primary key",
                t.label()
            )));
        }
        conn.exec_drop(&insert, (format!("{id}-open"), "snapshot-window-open", &id))
            .await?;
        // Ended after the high watermark (see the module docs).
        conn.query_drop("START TRANSACTION").await?;
        let ctx = EventCtx {
            name: cfg.name.clone(),
            flavor: cfg.flavor,
            server_id: 0,
            ts_ms: now_ms(),
            empty: Arc::from(""),
            sequence: 0, // set to the high watermark's when emitted (`process`)
            columns: cfg.columns.clone(),
        };
        let schema = match after {
            None => schema::table_statements(&mut conn, &t, false)
                .await?
                .first()
                .map(|st| super::schema_record(&ctx, &t.db, st)),
            Some(_) => None,
        };
        let c = chunk::Chunk {
            n: 0,
            table: 0,
            lo: after,
            hi: None,
        };
        let (mut sql, params) = chunk::chunk_query(&t, &c);
        sql.push_str(&format!(" LIMIT {}", cfg.chunk_rows.saturating_add(1)));
        let mut result: Vec<mysql_async::Row> = conn.exec(sql, params).await?;
        let more = result.len() as u64 > cfg.chunk_rows;
        result.truncate(cfg.chunk_rows as usize);
        let mut out = Vec::with_capacity(result.len());
        let now = now_ms();
        let shared = super::read_shared(&t, &ctx);
        for (i, r) in result.into_iter().enumerate() {
            let values = super::convert_row(&t, r)?;
            out.push(super::read_event(&shared, values, i as u32, now));
        }
        #[allow(clippy::expect_used)] // read_event always builds an after image
        let last_key = out.last().map(|e| {
            let v = &e.after_row().expect("after").values;
            t.primary_key.iter().map(|&k| to_sql(&v[k])).collect()
        });
        // After the resume key is taken: it needs the clear key values.
        for e in &mut out {
            ctx.columns.apply(e).map_err(SourceError::Fatal)?;
        }
        Ok(ChunkRead {
            table: t,
            schema,
            rows: out,
            last_key,
            more,
        })
    }
    .await;
    let failed = read.is_err();
    let _ = tx.send(read);
    // The high watermark also when the read failed: it ends the window.
    conn.exec_drop(
        &insert,
        (format!("{id}-close"), "snapshot-window-close", &id),
    )
    .await?;
    // A no-op when the read failed before its transaction began.
    conn.query_drop("COMMIT").await?;
    conn.disconnect().await.ok();
    if failed {
        return Err(SourceError::Fatal("chunk read failed".into()));
    }
    Ok(())
}

/// A primary key value back as a query parameter.
fn to_sql(v: &Value) -> mysql_async::Value {
    use mysql_async::Value as S;
    match v {
        Value::Null => S::NULL,
        Value::Bool(b) => S::Int(*b as i64),
        Value::Int(i) => S::Int(*i),
        Value::UInt(u) => S::UInt(*u),
        Value::Float(f) => S::Float(*f),
        Value::Double(d) => S::Double(*d),
        Value::Decimal(s) | Value::String(s) => S::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => S::Bytes(b.clone()),
        Value::Date(d) => S::Date(d.year, d.month, d.day, 0, 0, 0, 0),
        Value::DateTime(d) => S::Date(
            d.date.year,
            d.date.month,
            d.date.day,
            d.hour,
            d.minute,
            d.second,
            d.micros,
        ),
        Value::Time(t) => S::Time(
            t.negative,
            t.hours as u32 / 24,
            (t.hours % 24) as u8,
            t.minute,
            t.second,
            t.micros,
        ),
        Value::Timestamp { secs, micros, .. } => {
            // Sessions run in UTC: back to the calendar form.
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            S::Date(
                y as u16,
                m as u8,
                d as u8,
                (rem / 3600) as u8,
                (rem % 3600 / 60) as u8,
                (rem % 60) as u8,
                *micros,
            )
        }
        other => S::Bytes(format!("{other:?}").into_bytes()),
    }
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The text of a column of the event's after image.
fn col(ev: &ChangeEvent, name: &str) -> Option<String> {
    let after = ev.after_row()?;
    let i = after.columns.iter().position(|c| &**c == name)?;
    match after.values.get(i)? {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Equal primary key values give equal text (both paths build equal `Value`s).
fn key_text(values: &[Value], pk: &[usize]) -> String {
    let k: Vec<&Value> = pk.iter().filter_map(|&i| values.get(i)).collect();
    format!("{k:?}")
}

/// `{"tables": ["db.t", ...]}` or Debezium's `{"data-collections": [...]}`.
fn parse_request(data: &str) -> Vec<(String, String)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let list = v
        .get("tables")
        .or_else(|| v.get("data-collections"))
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter_map(|t| t.as_str()?.split_once('.'))
        .map(|(d, t)| (d.to_string(), t.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::Source;

    #[test]
    fn requests() {
        assert_eq!(
            parse_request(r#"{"tables": ["s.t", "a.b"]}"#),
            vec![("s".into(), "t".into()), ("a".into(), "b".into())]
        );
        assert_eq!(
            parse_request(r#"{"data-collections": ["s.t"]}"#),
            vec![("s".into(), "t".into())]
        );
        assert!(parse_request("x").is_empty());
    }

    fn cfg() -> SignalConfig {
        SignalConfig {
            // Nothing listens there: the windows' tasks fail, the stream side
            // is what is tested.
            opts: ConnOpts::from_url("mysql://u:p@127.0.0.1:1").unwrap(),
            flavor: Flavor::MariaDb,
            name: Arc::from("test"),
            schema: "ops".into(),
            chunk_rows: 10,
            columns: Default::default(),
        }
    }

    /// An insert into `db.table` of `(name, text)` columns, the first the key.
    fn insert(db: &str, table: &str, cols: &[(&str, &str)]) -> Record {
        let text = Arc::<str>::from("");
        Record::Change(ChangeEvent {
            op: Op::Create,
            before: None,
            after: Some(
                cols.iter()
                    .map(|(_, v)| Value::String(v.to_string().into()))
                    .collect(),
            ),
            ts_ms: 0,
            shared: Arc::new(Shared {
                source: Source {
                    version: "0",
                    connector: Flavor::MariaDb,
                    name: text.clone(),
                    ts_ms: 0,
                    snapshot: Snapshot::False,
                    db: Arc::from(db),
                    table: Arc::from(table),
                    server_id: 1,
                    gtid: text.clone(),
                    file: text,
                    pos: 0,
                    sequence: 0,
                },
                primary_key: Arc::from([0usize].as_slice()),
                table: None,
                before_columns: Default::default(),
                after_columns: cols.iter().map(|(c, _)| Arc::from(*c)).collect(),
            }),
            row: 0,
            transaction: None,
            overlap: false,
        })
    }

    fn signal_row(id: &str, ty: &str, data: &str) -> Record {
        insert(
            "ops",
            SIGNAL_TABLE,
            &[("id", id), ("type", ty), ("data", data)],
        )
    }

    fn other_row() -> Record {
        insert("s", "x", &[("id", "1")])
    }

    fn commit(end: usize) -> rowstream_api::Commit {
        rowstream_api::Commit {
            end,
            gtid: Arc::from("0-1-1"),
            events: 1,
        }
    }

    fn batch(records: Vec<Record>, commits: Vec<rowstream_api::Commit>) -> Batch {
        Batch {
            records,
            commits,
            executed: None,
            bytes: 0,
            snapshot: None,
        }
    }

    /// The progress goes out with the batch holding the commit of the
    /// transaction it changed in, never before.
    #[tokio::test]
    async fn progress_travels_with_the_commit() {
        let req = r#"{"tables": ["s.t", "s.u"]}"#;
        let mut inc = Incremental::new(cfg(), None).unwrap();
        // Committed in the same batch.
        let mut b = batch(
            vec![signal_row("r1", "execute-snapshot", req)],
            vec![commit(1)],
        );
        let st = inc.process(&mut b).expect("state with the commit");
        assert_eq!(st.signal, "r1");
        assert_eq!(st.tables.len(), 2);
        assert!(!st.is_complete());
        // Nothing changed since: nothing to checkpoint.
        let mut b = batch(vec![other_row()], vec![commit(1)]);
        assert!(inc.process(&mut b).is_none());
        // A second request whose transaction commits in the next batch (at 0).
        let mut b = batch(
            vec![signal_row(
                "r2",
                "execute-snapshot",
                r#"{"tables": ["s.v"]}"#,
            )],
            vec![],
        );
        assert!(inc.process(&mut b).is_none());
        let mut b = batch(vec![], vec![commit(0)]);
        let st = inc.process(&mut b).expect("state at the later commit");
        assert_eq!(st.signal, "r1", "a request while one runs appends");
        assert_eq!(st.tables.len(), 3);
        // A change after the batch's last commit waits for its own commit.
        let mut b = batch(
            vec![
                other_row(),
                signal_row("r3", "execute-snapshot", r#"{"tables": ["s.w"]}"#),
            ],
            vec![commit(1)],
        );
        assert!(inc.process(&mut b).is_none());
        let mut b = batch(vec![other_row()], vec![commit(1)]);
        assert_eq!(inc.process(&mut b).expect("carried").tables.len(), 4);
    }

    /// A checkpointed snapshot resumes after its key with the count bumped
    /// (checkpointed with the next commit); a bad key is a clear error.
    #[tokio::test]
    async fn resumes_from_the_checkpoint() {
        let tp = |table: &str, done: bool, after: Option<serde_json::Value>| TableProgress {
            db: "s".into(),
            table: table.into(),
            done,
            after,
            rows: if done { 5 } else { 20 },
        };
        let saved = OnDemandState {
            signal: "r1".into(),
            tables: vec![
                tp("a", true, None),
                tp("b", false, Some(serde_json::json!([{"i": 20}]))),
            ],
            read: 25,
            resumes: 1,
        };
        let mut inc = Incremental::new(cfg(), Some(saved.clone())).unwrap();
        assert!(inc.window.is_some(), "a new window is started");
        assert!(inc.after.is_some());
        let mut b = batch(vec![], vec![commit(0)]);
        let st = inc.process(&mut b).unwrap();
        assert_eq!(st.resumes, 2);
        assert_eq!(st.tables, saved.tables);

        let mut bad = saved;
        bad.tables[1].after = Some(serde_json::json!("x"));
        let e = Incremental::new(cfg(), Some(bad)).err().unwrap();
        assert!(e.to_string().contains("not readable"), "{e}");
    }

    #[test]
    fn timestamp_keys_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    }
}
