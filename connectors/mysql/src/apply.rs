//! Applying row changes on one target connection: the statements of one
//! transaction (multi-row inserts, upserts, updates and deletes that match
//! the full before image) and the conflicts they reveal. The scheduler
//! (`sink`) decides which transaction runs where and when it commits.
//!
//! Invariants kept: at most one buffer (inserts, or bulk updates / deletes)
//! holds changes, and it is sent before any other kind of statement of the
//! connection and before its commit ([`Applier::flush_inserts`]), so the
//! changes of a row apply in record order (a buffer never holds one key
//! twice where order would matter); a conflict is logged (fsync'd) before
//! the statement after it runs, and with `stop` nothing of the transaction
//! commits; the bulk path only ever commits what row-by-row application
//! would (it matches every row or is rolled back to its savepoint); a
//! change marked `overlap` (a snapshot may already hold it) is made to hold
//! by key, never checked, so replaying it over a newer row cannot fail.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowstream_api::metrics::Handle;
use rowstream_api::{ChangeEvent, ColumnType, Op, RowRef, SinkError, Value};

use crate::client::{self, classify, server_code, Progress, Server};
use crate::config::{MysqlSinkConfig, OnConflict};
use crate::encode::{self, Compare, Filter, Upsert};

/// Consecutive inserts into one table, sent as one multi-row statement.
#[derive(Debug, Default)]
struct InsertBuf {
    table: String,
    upsert: Option<Upsert>,
    events: Vec<ChangeEvent>,
    bytes: usize,
}

/// Consecutive updates that keep their primary key, or deletes, of one
/// table with a primary key: applied in bulk (see [`Applier::flush_bulk`]).
#[derive(Debug, Default)]
struct BulkBuf {
    /// Target database and table.
    db: String,
    name: String,
    op: Option<Op>,
    events: Vec<ChangeEvent>,
    /// Primary key values held (a key twice would make the join ambiguous).
    keys: HashSet<Vec<u8>>,
    bytes: usize,
}

/// The conflict log, shared by the connections of one sink.
pub type ConflictLog = Arc<Mutex<Option<File>>>;

/// What the connections of one sink share.
#[derive(Clone)]
pub struct Shared {
    pub cfg: Arc<MysqlSinkConfig>,
    pub filter: Arc<Filter>,
    pub conflict_log: ConflictLog,
    pub conflicts: Handle,
    pub bulk_fallbacks: Handle,
    /// Bumped after every DDL: temporary tables made `LIKE` a table before
    /// it are dropped and made again.
    pub schema_epoch: Arc<AtomicU64>,
}

/// One target connection applying changes.
pub struct Applier {
    pub conn: Conn,
    pub server: Server,
    pub cfg: Arc<MysqlSinkConfig>,
    pub filter: Arc<Filter>,
    /// This connection's row in the progress table.
    pub worker: u64,
    shared: Shared,
    buf: InsertBuf,
    bulk: BulkBuf,
    /// Temporary tables (before, after images) per target table, made at
    /// `temps_epoch`; None when the user may not create them (no bulk).
    temps: Option<HashMap<String, (String, String)>>,
    temps_epoch: u64,
    /// The last failure was 1205 / 1213.
    lock_failure: Cell<bool>,
}

/// The single-row INSERT of `row` (an image of `ev`).
fn insert_one_sql(table: &str, ev: &ChangeEvent, row: RowRef<'_>, upsert: Upsert) -> String {
    let types = ev.table().as_ref().map(|t| t.types.as_slice());
    let ph = encode::set_placeholders(types, row.columns.len(), std::iter::once(row));
    encode::insert_sql(table, row.columns, &ph, 1, upsert)
}

impl Applier {
    /// An applier on a connected `conn`, writing progress row `worker`.
    pub fn new(conn: Conn, server: Server, worker: u64, shared: Shared) -> Applier {
        Applier {
            conn,
            server,
            cfg: shared.cfg.clone(),
            filter: shared.filter.clone(),
            worker,
            temps_epoch: shared.schema_epoch.load(Ordering::Relaxed),
            shared,
            buf: InsertBuf::default(),
            bulk: BulkBuf::default(),
            temps: Some(HashMap::new()),
            lock_failure: Cell::new(false),
        }
    }

    /// Runs a statement without parameters.
    pub async fn query(&mut self, what: &str, sql: &str) -> Result<(), SinkError> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(what, e)),
        }
    }

    /// START TRANSACTION, then the progress UPDATE as its first statement.
    pub async fn begin(&mut self, p: &Progress) -> Result<(), SinkError> {
        self.query("start a transaction", "START TRANSACTION")
            .await?;
        self.write_progress(p).await
    }

    pub async fn apply_change(&mut self, ev: &ChangeEvent) -> Result<(), SinkError> {
        let Some(table) = self.target(ev) else {
            return Ok(());
        };
        // A change a snapshot may already hold (its before image may be
        // older than the row): make its after image hold, as a snapshot
        // row does. Without a primary key there is no key to do that by:
        // such a change is applied (and checked) as any other.
        let overlap = ev.overlap && !ev.primary_key().is_empty();
        if overlap && matches!(ev.op, Op::Update | Op::Delete) {
            self.flush_inserts().await?;
            return self.apply_after_image(&table, ev).await;
        }
        match ev.op {
            Op::Create | Op::Read => {
                let upsert = if ev.op == Op::Read || overlap {
                    self.upsert()
                } else {
                    Upsert::No
                };
                self.flush_bulk().await?;
                self.buffer_insert(table, upsert, ev).await
            }
            Op::Update | Op::Delete => {
                self.flush_insert_buf().await?;
                if bulk_eligible(ev) && self.temps.is_some() {
                    self.buffer_bulk(ev).await
                } else {
                    self.flush_bulk().await?;
                    self.update_or_delete(&table, ev).await
                }
            }
        }
    }

    fn fail(&self, what: &str, e: mysql_async::Error) -> SinkError {
        self.note(&e);
        classify(&self.cfg.name, what, e)
    }

    fn note(&self, e: &mysql_async::Error) {
        if matches!(server_code(e), Some(1205 | 1213)) {
            self.lock_failure.set(true);
        }
    }

    /// True (once) when the last failure was a deadlock or a lock wait
    /// timeout: the transaction can be rolled back and run again.
    pub fn take_lock_failure(&self) -> bool {
        self.lock_failure.replace(false)
    }

    /// Drops buffered changes (after a rollback).
    pub fn discard(&mut self) {
        self.buf = InsertBuf::default();
        self.bulk = BulkBuf::default();
    }

    /// Fails a statement on `table`, naming it; a missing table is fatal
    /// with what to do.
    fn table_err(&self, table: &str, e: mysql_async::Error) -> SinkError {
        self.note(&e);
        match server_code(&e) {
            Some(1146 | 1049) => SinkError::Fatal(format!(
                "mysql sink {:?}: table {table} does not exist on the target: the backup/stream has no CREATE for it: restore a copy that has it first, or start from a snapshot",
                self.cfg.name
            )),
            _ => self.fail(&format!("apply to {table}"), e),
        }
    }

    pub async fn write_progress(&mut self, p: &Progress) -> Result<(), SinkError> {
        let params = client::progress_params(&self.cfg, p, self.worker);
        let sql = client::progress_update(&self.cfg);
        self.conn
            .exec_drop(sql, params)
            .await
            .map_err(|e| self.fail("write the progress table", e))
    }

    /// How `ev`'s images compare with the target's rows.
    fn compare<'a>(&self, ev: &'a ChangeEvent) -> Compare<'a> {
        Compare {
            types: ev.table().as_ref().map(|t| t.types.as_slice()),
            json: self.server == Server::MySql,
        }
    }

    /// The target table of an event, or None when filtered out.
    pub fn target(&self, ev: &ChangeEvent) -> Option<String> {
        let (db, table) = (&*ev.source().db, &*ev.source().table);
        self.filter
            .allows(db, table)
            .then(|| encode::qualified(self.filter.target_db(db), table))
    }

    pub fn upsert(&self) -> Upsert {
        match self.server {
            Server::MySql => Upsert::Alias,
            Server::MariaDb => Upsert::Values,
        }
    }

    async fn buffer_insert(
        &mut self,
        table: String,
        upsert: Upsert,
        ev: &ChangeEvent,
    ) -> Result<(), SinkError> {
        let Some(after) = ev.after_row() else {
            return Ok(());
        };
        let same_shape = self.buf.table == table
            && self.buf.upsert == Some(upsert)
            && self
                .buf
                .events
                .first()
                .and_then(|e| e.after_row())
                .is_some_and(|a| a.columns == after.columns);
        let cols = after.columns.len().max(1);
        if !same_shape
            || self.buf.events.len() >= encode::MAX_ROWS.min(encode::MAX_PARAMS / cols)
            || self.buf.bytes >= encode::MAX_BYTES
        {
            self.flush_insert_buf().await?;
        }
        let bytes: usize = after.values.iter().map(encode::value_len).sum();
        self.buf.table = table;
        self.buf.upsert = Some(upsert);
        self.buf.bytes += bytes;
        self.buf.events.push(ev.clone());
        Ok(())
    }

    /// Sends everything buffered (before any other statement and before
    /// the commit).
    pub async fn flush_inserts(&mut self) -> Result<(), SinkError> {
        self.flush_insert_buf().await?;
        self.flush_bulk().await
    }

    /// Sends the buffered inserts as one statement; a duplicate key sends
    /// them one by one to find which rows conflict.
    async fn flush_insert_buf(&mut self) -> Result<(), SinkError> {
        let buf = std::mem::take(&mut self.buf);
        let (Some(upsert), Some(first)) = (buf.upsert, buf.events.first()) else {
            return Ok(());
        };
        let Some(cols) = first.after_row().map(|a| a.columns.clone()) else {
            return Ok(());
        };
        let types = first.table().as_ref().map(|t| t.types.as_slice());
        let rows = buf.events.iter().filter_map(|e| e.after_row());
        let ph = encode::set_placeholders(types, cols.len(), rows);
        let sql = encode::insert_sql(&buf.table, &cols, &ph, buf.events.len(), upsert);
        let params: Vec<_> = buf
            .events
            .iter()
            .flat_map(|e| e.after.iter().flat_map(|a| a.iter().map(encode::param)))
            .collect();
        match self.conn.exec_drop(sql, params).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(1062) && upsert == Upsert::No => {
                for ev in &buf.events {
                    self.insert_one(&buf.table, ev).await?;
                }
                Ok(())
            }
            Err(e) => Err(self.table_err(&buf.table, e)),
        }
    }

    /// One insert; a duplicate key is a replay when the same row is there,
    /// else a conflict.
    async fn insert_one(&mut self, table: &str, ev: &ChangeEvent) -> Result<(), SinkError> {
        let Some(after) = ev.after_row() else {
            return Ok(());
        };
        let sql = insert_one_sql(table, ev, after, Upsert::No);
        let params: Vec<_> = after.values.iter().map(encode::param).collect();
        match self.conn.exec_drop(sql, params).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(1062) => {
                if self.exists(table, ev, after).await? {
                    return Ok(());
                }
                self.conflict(table, ev, after).await
            }
            Err(e) => Err(self.table_err(table, e)),
        }
    }

    async fn update_or_delete(&mut self, table: &str, ev: &ChangeEvent) -> Result<(), SinkError> {
        let Some(before) = ev.before_row() else {
            return Ok(());
        };
        let has_pk = !ev.primary_key().is_empty();
        let (sql, params) = match (&ev.op, ev.after_row()) {
            (Op::Update, Some(after)) => {
                encode::update_sql(table, before, after, self.compare(ev), has_pk)
            }
            _ => encode::delete_sql(table, before, self.compare(ev), has_pk),
        };
        self.conn
            .exec_drop(sql, params)
            .await
            .map_err(|e| self.table_err(table, e))?;
        if self.conn.affected_rows() == 0 {
            if let (Op::Update, Some(after)) = (ev.op, ev.after_row()) {
                // The row already is the after image: a change that arrives
                // twice (a snapshot row read after it), not a conflict.
                if self.exists(table, ev, after).await? {
                    return Ok(());
                }
            }
            self.conflict(table, ev, before).await?;
        }
        Ok(())
    }

    /// Whether the target holds a row equal to `row` in every column.
    async fn exists(
        &mut self,
        table: &str,
        ev: &ChangeEvent,
        row: RowRef<'_>,
    ) -> Result<bool, SinkError> {
        let (sql, params) = encode::select_exact_sql(table, row, self.compare(ev));
        let found: Option<u8> = self
            .conn
            .exec_first(sql, params)
            .await
            .map_err(|e| self.table_err(table, e))?;
        Ok(found.is_some())
    }

    /// A change whose expected row (`expected`: the before image, or the
    /// after image of an insert) is not in the target.
    async fn conflict(
        &mut self,
        table: &str,
        ev: &ChangeEvent,
        expected: RowRef<'_>,
    ) -> Result<(), SinkError> {
        let pk = ev.primary_key();
        let found = if pk.is_empty() {
            None
        } else {
            let (sql, params) = encode::select_by_key_sql(table, expected, pk);
            self.conn
                .exec_first::<mysql_async::Row, _, _>(sql, params)
                .await
                .map_err(|e| self.table_err(table, e))?
        };
        let line = serde_json::json!({
            "table": table,
            "key": encode::key_json(expected, pk),
            "gtid": &*ev.source().gtid,
            "op": ev.op.as_str(),
            "expected": encode::row_json(Some(expected)),
            "found": encode::found_json(found),
            "applied": self.cfg.on_conflict == OnConflict::Log,
        });
        if self.cfg.on_conflict == OnConflict::Stop {
            return Err(SinkError::Fatal(format!(
                "mysql sink {:?}: conflict in {table}: key {}, GTID {}, op {}: expected {}, found {} (on_conflict = \"stop\"; fix the target row or use on_conflict = \"log\")",
                self.cfg.name, line["key"], ev.source().gtid, ev.op.as_str(), line["expected"], line["found"]
            )));
        }
        if self.cfg.on_conflict == OnConflict::Log {
            self.apply_after_image(table, ev).await?;
        }
        self.log_conflict(&line)?;
        self.shared.conflicts.inc();
        Ok(())
    }

    /// Makes the target row the event's after image whatever it held:
    /// delete by the before key (update moving the key, or delete), upsert
    /// the after image.
    async fn apply_after_image(&mut self, table: &str, ev: &ChangeEvent) -> Result<(), SinkError> {
        let pk = ev.primary_key();
        if let (Some(before), false) = (ev.before_row(), pk.is_empty()) {
            let (sql, params) = encode::delete_by_key_sql(table, before, pk);
            self.conn
                .exec_drop(sql, params)
                .await
                .map_err(|e| self.table_err(table, e))?;
        }
        if let (Some(after), true) = (ev.after_row(), ev.op != Op::Delete) {
            let sql = insert_one_sql(table, ev, after, self.upsert());
            let params: Vec<_> = after.values.iter().map(encode::param).collect();
            self.conn
                .exec_drop(sql, params)
                .await
                .map_err(|e| self.table_err(table, e))?;
        }
        Ok(())
    }

    /// Appends one line to the conflict log and fsyncs it (before the ack).
    fn log_conflict(&mut self, line: &serde_json::Value) -> Result<(), SinkError> {
        let path = self.cfg.conflict_log_path();
        let io = |e: std::io::Error| {
            SinkError::Fatal(format!(
                "mysql sink {:?}: conflict log {}: {e}",
                self.cfg.name,
                path.display()
            ))
        };
        let mut log = self
            .shared
            .conflict_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if log.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            *log = Some(f);
        }
        #[allow(clippy::expect_used)] // set just above when it was None
        let f = log.as_mut().expect("opened above");
        let mut text = line.to_string();
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

/// Whether a change can go through the bulk path: an update that keeps its
/// primary key, or a delete, on a table with a primary key.
fn bulk_eligible(ev: &ChangeEvent) -> bool {
    let Some(before) = ev.before_row() else {
        return false;
    };
    if ev.primary_key().is_empty() {
        return false;
    }
    match (ev.op, ev.after_row()) {
        (Op::Delete, _) => true,
        (Op::Update, Some(after)) => {
            after.columns == before.columns
                && ev
                    .primary_key()
                    .iter()
                    .all(|&i| before.values.get(i) == after.values.get(i))
        }
        _ => false,
    }
}

/// The primary key values of `row`, as comparable bytes.
fn key_bytes(row: RowRef<'_>, pk: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for &i in pk {
        if let Some(v) = row.values.get(i) {
            rowstream_api::json::write_value(&mut out, v);
        }
        out.push(0);
    }
    out
}

/// The bulk path: consecutive updates (key unchanged) or deletes of one
/// table go, 1000 at a time, into temporary tables made `LIKE` the target
/// table (not binlogged in ROW format), then one joined UPDATE / DELETE
/// matches every before image against the target (same column types on
/// both sides: exact comparisons). When it matched every row, done; else
/// (a conflict, or any error but a lock failure) it is rolled back to a
/// savepoint and the rows run one by one, which finds and handles the
/// conflicts exactly as without the bulk path.
impl Applier {
    async fn buffer_bulk(&mut self, ev: &ChangeEvent) -> Result<(), SinkError> {
        let Some(before) = ev.before_row() else {
            return Ok(());
        };
        let key = key_bytes(before, ev.primary_key());
        let db = self.filter.target_db(&ev.source().db);
        let same = self.bulk.op == Some(ev.op)
            && self.bulk.db == db
            && self.bulk.name == *ev.source().table
            && self
                .bulk
                .events
                .first()
                .is_some_and(|f| f.before_row().is_some_and(|b| b.columns == before.columns))
            && !self.bulk.keys.contains(&key);
        let cols = before.columns.len().max(1);
        if !same
            || self.bulk.events.len() >= encode::MAX_ROWS.min(encode::MAX_PARAMS / cols)
            || self.bulk.bytes >= encode::MAX_BYTES
        {
            self.flush_bulk().await?;
        }
        let images = [Some(before), ev.after_row()];
        let bytes: usize = images
            .iter()
            .flatten()
            .flat_map(|r| r.values.iter().map(encode::value_len))
            .sum();
        self.bulk.db = self.filter.target_db(&ev.source().db).to_string();
        self.bulk.name = ev.source().table.to_string();
        self.bulk.op = Some(ev.op);
        self.bulk.keys.insert(key);
        self.bulk.bytes += bytes;
        self.bulk.events.push(ev.clone());
        Ok(())
    }

    /// Applies the buffered updates or deletes (see the impl docs).
    async fn flush_bulk(&mut self) -> Result<(), SinkError> {
        let buf = std::mem::take(&mut self.bulk);
        let table = encode::qualified(&buf.db, &buf.name);
        if buf.events.len() > 1 {
            if let Some((tb, ta)) = self.temp_tables(&buf.db, &buf.name).await? {
                self.query("set a savepoint", "SAVEPOINT rowstream_bulk")
                    .await?;
                match self.bulk_apply(&buf, &table, &tb, &ta).await {
                    Ok(n) if n == buf.events.len() as u64 => {
                        return self
                            .query("release a savepoint", "RELEASE SAVEPOINT rowstream_bulk")
                            .await;
                    }
                    Err(e) if self.lock_failure.get() => return Err(e),
                    _ => {}
                }
                self.query(
                    "roll back to a savepoint",
                    "ROLLBACK TO SAVEPOINT rowstream_bulk",
                )
                .await?;
                self.shared.bulk_fallbacks.inc();
            }
        }
        for ev in &buf.events {
            self.update_or_delete(&table, ev).await?;
        }
        Ok(())
    }

    /// Loads the images into the temporary tables and runs the joined
    /// statement; the number of target rows it matched.
    async fn bulk_apply(
        &mut self,
        buf: &BulkBuf,
        table: &str,
        tb: &str,
        ta: &str,
    ) -> Result<u64, SinkError> {
        let first = &buf.events[0];
        let Some(cols) = first.before_row().map(|b| b.columns.clone()) else {
            return Ok(0);
        };
        let types = first.table().as_ref().map(|t| t.types.as_slice());
        let update = buf.op == Some(Op::Update);
        for (tmp, after) in [(tb, false), (ta, true)] {
            if after && !update {
                continue;
            }
            let rows =
                buf.events.iter().filter_map(
                    |e| {
                        if after {
                            e.after_row()
                        } else {
                            e.before_row()
                        }
                    },
                );
            let ph = encode::set_placeholders(types, cols.len(), rows.clone());
            let sql = encode::insert_sql(tmp, &cols, &ph, buf.events.len(), Upsert::No);
            let params: Vec<_> = rows
                .flat_map(|r| r.values.iter().map(encode::param))
                .collect();
            self.conn
                .exec_drop(sql, params)
                .await
                .map_err(|e| self.table_err(tmp, e))?;
        }
        let pk: Vec<Arc<str>> = first
            .primary_key()
            .iter()
            .map(|&i| cols[i].clone())
            .collect();
        // VECTOR columns cannot be compared (a VECTOR value the type does not
        // announce makes the join fail: row by row then).
        let vector = |i: usize| {
            matches!(types.and_then(|t| t.get(i)), Some(ColumnType::Vector))
                || buf.events.iter().any(|e| {
                    e.before
                        .as_ref()
                        .is_some_and(|b| matches!(b.get(i), Some(Value::Vector(_))))
                })
        };
        let compared: Vec<Arc<str>> = (0..cols.len())
            .filter(|&i| !vector(i))
            .map(|i| cols[i].clone())
            .collect();
        let sql = if update {
            encode::bulk_update_sql(table, (tb, ta), &cols, &compared, &pk)
        } else {
            encode::bulk_delete_sql(table, tb, &compared)
        };
        self.query_on(table, &sql).await?;
        let matched = self.conn.affected_rows();
        // Emptied by a new table, not DELETE: inside one big transaction
        // deleted rows stay in the temporary table until it commits, and
        // every later chunk would scan them (quadratic: a 1,000,000-row
        // UPDATE took 10x longer). Neither statement commits.
        for t in if update { vec![tb, ta] } else { vec![tb] } {
            self.query_on(
                t,
                &format!("DROP TEMPORARY TABLE {t}; CREATE TEMPORARY TABLE {t} LIKE {table}"),
            )
            .await?;
        }
        Ok(matched)
    }

    async fn query_on(&mut self, table: &str, sql: &str) -> Result<(), SinkError> {
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.table_err(table, e)),
        }
    }

    /// The temporary tables for `db.name`, made on first use (and again
    /// after a DDL); None when they cannot be made (the bulk path is then
    /// off for this connection).
    async fn temp_tables(
        &mut self,
        db: &str,
        name: &str,
    ) -> Result<Option<(String, String)>, SinkError> {
        let epoch = self.shared.schema_epoch.load(Ordering::Relaxed);
        if epoch != self.temps_epoch {
            let old: Vec<_> = self.temps.iter_mut().flat_map(|t| t.drain()).collect();
            for (_, (b, a)) in old {
                self.query(
                    "drop a temporary table",
                    &format!("DROP TEMPORARY TABLE IF EXISTS {b}, {a}"),
                )
                .await?;
            }
            self.temps_epoch = epoch;
        }
        let table = encode::qualified(db, name);
        let Some(temps) = &self.temps else {
            return Ok(None);
        };
        if let Some(t) = temps.get(&table) {
            return Ok(Some(t.clone()));
        }
        let n = temps.len();
        let tb = encode::qualified(db, &format!("rowstream_tmp_{}_{n}_b", self.worker));
        let ta = encode::qualified(db, &format!("rowstream_tmp_{}_{n}_a", self.worker));
        for t in [&tb, &ta] {
            let sql = format!("CREATE TEMPORARY TABLE {t} LIKE {table}");
            if let Err(e) = self.conn.query_drop(sql).await {
                if self.lock_failure.get() || matches!(server_code(&e), Some(1146 | 1049)) {
                    return Err(self.table_err(&table, e));
                }
                tracing::warn!(sink = %self.cfg.name, %table,
                    "cannot create temporary tables, updates and deletes go row by row: {e}");
                self.temps = None;
                return Ok(None);
            }
        }
        let pair = (tb, ta);
        if let Some(t) = &mut self.temps {
            t.insert(table, pair.clone());
        }
        Ok(Some(pair))
    }
}
