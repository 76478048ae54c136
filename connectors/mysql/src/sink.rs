//! The running MySQL / MariaDB apply sink: applies each transaction of the
//! stream as one target transaction whose first statement records the
//! sink's progress, so the target knows exactly what it holds.
//!
//! Invariants kept:
//! - exactly once: a transaction's rows and the progress row that names it
//!   commit in the same target transaction; on start the progress row with
//!   the highest `seq` says what is applied, and transactions it contains
//!   (GTIDs in its set, snapshot chunks up to `chunks_done` of its
//!   snapshot) are acked without being applied again;
//! - the progress UPDATE is the first statement of every applied
//!   transaction (loop prevention on the source side looks for it there);
//! - commits happen in stream order, one transaction at a time on one
//!   connection (this version applies serially whatever `threads` says);
//! - a batch is acked once every transaction committing in it is committed
//!   and the records of a transaction still open are written into the open
//!   target transaction (which rolls back if rowstream dies): a transaction
//!   of any size streams through, batch by batch, in bounded memory;
//! - the first failure poisons the sink (`Poison`): the failing and every
//!   later ack, write and flush fail with it; the open target transaction
//!   is abandoned (the server rolls it back when the connection closes).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use rowstream_api::gtid::{Gtid, GtidSet};
use rowstream_api::metrics::{self, Family, Handle};
use rowstream_api::sink::parse_marker;
use rowstream_api::{
    Ack, Batch, ChangeEvent, Commit, Committed, Flavor, Op, Poison, Record, SchemaChange, Sink,
    SinkError,
};
use tracing::{info, warn};

use crate::client::{self, classify, server_code, Progress, Server};
use crate::config::{MysqlSinkConfig, OnConflict};
use crate::encode::{self, Filter, Upsert};

pub static MYSQL_CONFLICTS: Family = Family::counter(
    "rowstream_mysql_conflicts_total",
    "Changes whose before image did not match the target's row (or inserts that found a different row), logged to conflict_log.",
    "sink",
);
pub static MYSQL_TRANSACTIONS: Family = Family::counter(
    "rowstream_mysql_transactions_total",
    "Transactions committed on the target (progress-only commits included).",
    "sink",
);
/// This sink's metric families, registered with the service's registry on start.
pub static METRICS: &[&Family] = &[&MYSQL_CONFLICTS, &MYSQL_TRANSACTIONS];

/// Errors of DDL that already took effect (DDL is not transactional: a crash
/// between the DDL and its progress commit replays it): database / table /
/// column / key exists, unknown table or key to drop, database to drop.
const DDL_ALREADY_APPLIED: &[u16] = &[1007, 1008, 1050, 1051, 1060, 1061, 1068, 1091, 1826];

/// The transaction being applied (it may span batches).
#[derive(Debug)]
struct OpenTx {
    /// Its id as known at its start (the commit's GTID when the commit is in
    /// the same batch, else the first record's).
    id: Arc<str>,
    /// Already applied before this start: acked without applying.
    skip: bool,
    /// The target transaction is open and its first statement wrote `written`.
    began: Option<Progress>,
    /// A DDL of it ran (autocommitted); its progress needs its own commit.
    ddl_ran: bool,
}

/// Consecutive inserts into one table, sent as one multi-row statement.
#[derive(Debug, Default)]
struct InsertBuf {
    table: String,
    upsert: Option<Upsert>,
    events: Vec<ChangeEvent>,
    bytes: usize,
}

/// The running sink, made by [`MysqlSink::start`].
pub struct MysqlSink {
    cfg: MysqlSinkConfig,
    conn: Conn,
    server: Server,
    filter: Filter,
    poison: Poison,
    /// What the target holds (committed), or will once the pending progress
    /// is written.
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
    buf: InsertBuf,
    conflict_log: Option<File>,
    conflicts: Handle,
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
        Record::Change(ev) => ev
            .transaction
            .as_ref()
            .map_or_else(|| ev.source.gtid.clone(), |t| t.id.clone()),
        Record::SchemaChange(sc) => sc.source.gtid.clone(),
    }
}

/// The single-row INSERT of `row` (an image of `ev`).
fn insert_one_sql(
    table: &str,
    ev: &ChangeEvent,
    row: &rowstream_api::Row,
    upsert: Upsert,
) -> String {
    let types = ev.table.as_ref().map(|t| t.types.as_slice());
    let ph = encode::set_placeholders(types, row.columns.len(), std::iter::once(row));
    encode::insert_sql(table, &row.columns, &ph, 1, upsert)
}

impl MysqlSink {
    /// Validates the config, connects, creates the progress table if
    /// missing and reads what the target holds. `committed` is not needed:
    /// the target's progress table is the truth (it may be ahead of the
    /// service's checkpoint; the replay is skipped).
    pub async fn start(
        cfg: &MysqlSinkConfig,
        _committed: &dyn Committed,
    ) -> Result<MysqlSink, SinkError> {
        cfg.validate()?;
        metrics::register(METRICS);
        let (mut conn, server) = client::connect(cfg).await?;
        client::ensure_progress(&mut conn, cfg, cfg.threads).await?;
        let progress = client::read_progress(&mut conn, cfg).await?;
        let applied = parse_set(&progress.gtid_set).map_err(|e| {
            SinkError::Fatal(format!(
                "mysql sink {:?}: the progress table {} holds an unreadable GTID set: {e}",
                cfg.name,
                client::progress_table(cfg)
            ))
        })?;
        info!(sink = %cfg.name, seq = progress.seq, gtid_set = %progress.gtid_set,
              snapshot = progress.snapshot_id, chunks = progress.chunks_done,
              "mysql sink: continuing after what the target holds");
        Ok(MysqlSink {
            filter: Filter {
                include: cfg.include.clone(),
                exclude: cfg.exclude.clone(),
                rename: cfg.rename.clone(),
            },
            conflicts: MYSQL_CONFLICTS.with(&cfg.name),
            commits: MYSQL_TRANSACTIONS.with(&cfg.name),
            cfg: cfg.clone(),
            conn,
            server,
            poison: Poison::new(),
            progress,
            applied,
            unwritten: false,
            fresh: true,
            tx: None,
            buf: InsertBuf::default(),
            conflict_log: None,
        })
    }

    fn fail(&self, what: &str, e: mysql_async::Error) -> SinkError {
        classify(&self.cfg.name, what, e)
    }

    /// Fails a statement on `table`, naming it; a missing table is fatal
    /// with what to do.
    fn table_err(&self, table: &str, e: mysql_async::Error) -> SinkError {
        match server_code(&e) {
            Some(1146 | 1049) => SinkError::Fatal(format!(
                "mysql sink {:?}: table {table} does not exist on the target: the backup/stream has no CREATE for it: restore a copy that has it first, or start from a snapshot",
                self.cfg.name
            )),
            _ => self.fail(&format!("apply to {table}"), e),
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
                Err(e) => {
                    warn!(sink = %self.cfg.name, id, "not a GTID, progress keeps its set: {e}")
                }
            }
        }
        (p, set)
    }

    async fn write_progress(&mut self, p: &Progress) -> Result<(), SinkError> {
        let params = client::progress_params(&self.cfg, p, 0);
        let sql = client::progress_update(&self.cfg);
        self.conn
            .exec_drop(sql, params)
            .await
            .map_err(|e| classify(&self.cfg.name, "write the progress table", e))
    }

    /// Starts the target transaction of the open transaction (if not yet):
    /// START TRANSACTION, then the progress UPDATE first.
    async fn begin(&mut self) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else { return Ok(()) };
        if tx.began.is_some() {
            return Ok(());
        }
        let (p, _) = self.progress_after(&tx.id.clone());
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| self.fail("start a transaction", e))?;
        self.write_progress(&p).await?;
        if let Some(tx) = &mut self.tx {
            tx.began = Some(p);
        }
        Ok(())
    }

    async fn apply_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut start = 0;
        for c in &batch.commits {
            self.apply_records(&batch.records[start..c.end], Some(c))
                .await?;
            start = c.end;
        }
        if start < batch.records.len() {
            self.apply_records(&batch.records[start..], None).await?;
            self.flush_inserts().await?;
        }
        if self.unwritten && self.tx.is_none() {
            self.commit_progress_only().await?;
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
                    Record::Change(ev) => self.apply_change(ev).await?,
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
        self.flush_inserts().await?;
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        if tx.skip {
            return Ok(());
        }
        let (p, set) = self.progress_after(&c.gtid);
        if let Some(written) = &tx.began {
            if *written != p {
                self.write_progress(&p).await?;
            }
            self.conn
                .query_drop("COMMIT")
                .await
                .map_err(|e| self.fail("commit", e))?;
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
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| self.fail("start a transaction", e))?;
        self.write_progress(p).await?;
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| self.fail("commit", e))?;
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
            db.is_empty() || self.filter.allows_db(db)
        } else {
            self.filter.allows(&sc.source.db, &sc.source.table)
        };
        if !allowed {
            return Ok(());
        }
        self.flush_inserts().await?;
        if let Some(tx) = &mut self.tx {
            if tx.began.take().is_some() {
                let p = self.progress.clone();
                self.write_progress(&p).await?;
                self.conn
                    .query_drop("COMMIT")
                    .await
                    .map_err(|e| classify(&self.cfg.name, "commit", e))?;
            }
        }
        if !db.is_empty() {
            let use_db = format!("USE {}", encode::ident(self.filter.target_db(db)));
            if let Err(e) = self.conn.query_drop(use_db).await {
                // A CREATE DATABASE runs without its database existing yet.
                if server_code(&e) != Some(1049) {
                    return Err(self.fail("USE the DDL's database", e));
                }
            }
        }
        match self.conn.query_drop(sc.ddl.as_str()).await {
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

    /// The target table of an event, or None when filtered out.
    fn target(&self, ev: &ChangeEvent) -> Option<String> {
        let (db, table) = (&*ev.source.db, &*ev.source.table);
        self.filter
            .allows(db, table)
            .then(|| encode::qualified(self.filter.target_db(db), table))
    }

    fn upsert(&self) -> Upsert {
        match self.server {
            Server::MySql => Upsert::Alias,
            Server::MariaDb => Upsert::Values,
        }
    }

    async fn apply_change(&mut self, ev: &ChangeEvent) -> Result<(), SinkError> {
        let Some(table) = self.target(ev) else {
            return Ok(());
        };
        self.begin().await?;
        match ev.op {
            Op::Create | Op::Read => {
                let upsert = if ev.op == Op::Read {
                    self.upsert()
                } else {
                    Upsert::No
                };
                self.buffer_insert(table, upsert, ev).await
            }
            Op::Update | Op::Delete => {
                self.flush_inserts().await?;
                self.update_or_delete(&table, ev).await
            }
        }
    }

    async fn buffer_insert(
        &mut self,
        table: String,
        upsert: Upsert,
        ev: &ChangeEvent,
    ) -> Result<(), SinkError> {
        let Some(after) = &ev.after else {
            return Ok(());
        };
        let same_shape = self.buf.table == table
            && self.buf.upsert == Some(upsert)
            && self
                .buf
                .events
                .first()
                .and_then(|e| e.after.as_ref())
                .is_some_and(|a| a.columns == after.columns);
        let cols = after.columns.len().max(1);
        if !same_shape
            || self.buf.events.len() >= encode::MAX_ROWS.min(encode::MAX_PARAMS / cols)
            || self.buf.bytes >= encode::MAX_BYTES
        {
            self.flush_inserts().await?;
        }
        let bytes: usize = after
            .values
            .iter()
            .map(|v| encode::param_len(&encode::param(v)))
            .sum();
        self.buf.table = table;
        self.buf.upsert = Some(upsert);
        self.buf.bytes += bytes;
        self.buf.events.push(ev.clone());
        Ok(())
    }

    /// Sends the buffered inserts as one statement; a duplicate key sends
    /// them one by one to find which rows conflict.
    async fn flush_inserts(&mut self) -> Result<(), SinkError> {
        let buf = std::mem::take(&mut self.buf);
        let (Some(upsert), Some(first)) = (buf.upsert, buf.events.first()) else {
            return Ok(());
        };
        let Some(cols) = first.after.as_ref().map(|a| a.columns.clone()) else {
            return Ok(());
        };
        let types = first.table.as_ref().map(|t| t.types.as_slice());
        let rows = buf.events.iter().filter_map(|e| e.after.as_ref());
        let ph = encode::set_placeholders(types, cols.len(), rows);
        let sql = encode::insert_sql(&buf.table, &cols, &ph, buf.events.len(), upsert);
        let params: Vec<_> = buf
            .events
            .iter()
            .flat_map(|e| {
                e.after
                    .iter()
                    .flat_map(|a| a.values.iter().map(encode::param))
            })
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
        let Some(after) = &ev.after else {
            return Ok(());
        };
        let sql = insert_one_sql(table, ev, after, Upsert::No);
        let params: Vec<_> = after.values.iter().map(encode::param).collect();
        match self.conn.exec_drop(sql, params).await {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(1062) => {
                let types = ev.table.as_ref().map(|t| t.types.as_slice());
                let (sql, params) = encode::select_exact_sql(table, after, types);
                let same: Option<u8> = self
                    .conn
                    .exec_first(sql, params)
                    .await
                    .map_err(|e| self.table_err(table, e))?;
                if same.is_some() {
                    return Ok(());
                }
                self.conflict(table, ev, after).await
            }
            Err(e) => Err(self.table_err(table, e)),
        }
    }

    async fn update_or_delete(&mut self, table: &str, ev: &ChangeEvent) -> Result<(), SinkError> {
        let Some(before) = &ev.before else {
            return Ok(());
        };
        let types = ev.table.as_ref().map(|t| t.types.as_slice());
        let has_pk = !ev.primary_key.is_empty();
        let (sql, params) = match (&ev.op, &ev.after) {
            (Op::Update, Some(after)) => encode::update_sql(table, before, after, types, has_pk),
            _ => encode::delete_sql(table, before, types, has_pk),
        };
        self.conn
            .exec_drop(sql, params)
            .await
            .map_err(|e| self.table_err(table, e))?;
        if self.conn.affected_rows() == 0 {
            self.conflict(table, ev, before).await?;
        }
        Ok(())
    }

    /// A change whose expected row (`expected`: the before image, or the
    /// after image of an insert) is not in the target.
    async fn conflict(
        &mut self,
        table: &str,
        ev: &ChangeEvent,
        expected: &rowstream_api::Row,
    ) -> Result<(), SinkError> {
        let pk = &ev.primary_key;
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
            "gtid": &*ev.source.gtid,
            "op": ev.op.as_str(),
            "expected": encode::row_json(Some(expected)),
            "found": encode::found_json(found),
            "applied": self.cfg.on_conflict == OnConflict::Log,
        });
        if self.cfg.on_conflict == OnConflict::Stop {
            return Err(SinkError::Fatal(format!(
                "mysql sink {:?}: conflict in {table}: key {}, GTID {}, op {}: expected {}, found {} (on_conflict = \"stop\"; fix the target row or use on_conflict = \"log\")",
                self.cfg.name, line["key"], ev.source.gtid, ev.op.as_str(), line["expected"], line["found"]
            )));
        }
        if self.cfg.on_conflict == OnConflict::Log {
            self.apply_after_image(table, ev).await?;
        }
        self.log_conflict(&line)?;
        self.conflicts.inc();
        Ok(())
    }

    /// Makes the target row the event's after image whatever it held:
    /// delete by the before key (update moving the key, or delete), upsert
    /// the after image.
    async fn apply_after_image(&mut self, table: &str, ev: &ChangeEvent) -> Result<(), SinkError> {
        let pk = &ev.primary_key;
        if let (Some(before), false) = (&ev.before, pk.is_empty()) {
            let (sql, params) = encode::delete_by_key_sql(table, before, pk);
            self.conn
                .exec_drop(sql, params)
                .await
                .map_err(|e| self.table_err(table, e))?;
        }
        if let (Some(after), true) = (&ev.after, ev.op != Op::Delete) {
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
        if self.conflict_log.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            self.conflict_log = Some(f);
        }
        let f = self.conflict_log.as_mut().expect("opened above");
        let mut text = line.to_string();
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

#[async_trait::async_trait]
impl Sink for MysqlSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        let ack = self.poison.admit(ack)?;
        match self.apply_batch(&batch).await {
            Ok(()) => {
                ack.ack();
                Ok(())
            }
            Err(e) => {
                let first = self.poison.set(e);
                ack.fail(first.clone());
                Err(first)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.poison.check()
    }
}

rowstream_api::sink_builder!(MysqlSinkConfig => MysqlSink);
