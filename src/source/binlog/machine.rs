//! The binlog event state machine: event bytes in, change records and
//! batches out. It holds everything a stream must remember (format
//! description, binlog file, table maps, the open transaction, the GTID set
//! reached) and does no I/O, so it can be driven from captured events.
//!
//! Invariants:
//! - every event's CRC32 is verified before it is looked at;
//! - an event type we do not understand stops the stream with its name;
//!   nothing is skipped silently (only events the server flags as ignorable);
//! - a transaction compressed into a TRANSACTION_PAYLOAD is decompressed as
//!   a stream, one inner event at a time;
//! - after `prepare_resume` (a reconnect) the rows of a partly delivered
//!   transaction that were already handed out are not handed out again;
//! - `executed` only grows by whole transactions, at their commit.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{FormatDescriptionEvent, GtidEvent, TransactionPayloadEvent};
use mysql_common::binlog::BinlogCtx;
use mysql_common::io::ParseBuf;
use rowstream_api::{
    ChangeEvent, Commit, Flavor, Op, Record, SchemaChange, Shared, Snapshot, Source, Transaction,
    Value,
};

use super::ddl::{ddl_schema, first_word};
use super::decode::{self, RowsDecoder};
use super::event::{
    self as ev_type, event_name, le_u32, le_u64, HEADER_LEN, LOG_EVENT_ARTIFICIAL_F,
    LOG_EVENT_BINLOG_IN_USE_F, LOG_EVENT_IGNORABLE_F,
};
use super::schema::TableSchema;
use crate::gtid::{Gtid, GtidSet};
use crate::source::filter::TableFilter;
use crate::source::origin::OriginFilter;
use crate::source::{Batch, SourceError, VERSION};

/// The transaction being read.
struct Tx {
    gtid: Arc<str>,
    parsed: Gtid,
    ts_ms: u64,
    /// Row events seen so far (including those skipped on a resume).
    total: u64,
    per_table: HashMap<u64, u64>,
    /// Rows already delivered before a reconnect: do not deliver them again.
    skip: u64,
    /// Inside BEGIN ... COMMIT (else a single statement is the transaction).
    in_begin: bool,
    /// `Source::sequence` of the transaction: the sequence of `executed`
    /// with this transaction added.
    sequence: u64,
    /// Left out by the origin rules: nothing of it is handed out.
    dropped: bool,
    /// Table maps seen so far (the first one tells a rowstream-applied transaction).
    maps: u32,
    /// In the snapshot's views (`Processor::overlap`): its changes are marked.
    overlap: bool,
}

/// A table id's TABLE_MAP event body as last seen, and the schema built
/// from it (`None`: the table filter excludes the table).
struct Mapped {
    body: Box<[u8]>,
    schema: Option<Arc<TableSchema>>,
}

/// Decodes raw events into records; holds all per-stream state.
pub struct Processor {
    flavor: Flavor,
    name: Arc<str>,
    filter: TableFilter,
    origins: OriginFilter,
    executed: GtidSet,
    /// Transactions a snapshot's views may already hold; None once passed
    /// (or when there was no such snapshot).
    overlap: Option<GtidSet>,
    /// `executed.sequence()`, kept up to date per commit (see
    /// `Source::sequence`). It depends only on `executed`, so a resume after a
    /// reconnect numbers the next transactions exactly as before.
    sequence: u64,
    /// A transaction completed since the last batch was handed out.
    committed: bool,
    fde: FormatDescriptionEvent<'static>,
    post_header: Vec<u8>,
    file: Arc<str>,
    /// Per table id, its last TABLE_MAP and schema (`None`: filtered out).
    tables: HashMap<u64, Mapped>,
    tx: Option<Tx>,
    /// After a reconnect: (gtid, rows already delivered) of the interrupted transaction.
    resume_skip: Option<(Arc<str>, u64)>,
    before: Vec<Value>,
    after: Vec<Value>,
    payload_buf: Vec<u8>,
    events_seen: u64,
    /// Binlog position where the event being processed starts (for inner
    /// events of a TRANSACTION_PAYLOAD: where the payload starts).
    event_start: u64,
    /// Binlog bytes of the rows decoded into the current batch.
    batch_bytes: usize,
    /// Transactions completed since the last batch was handed out.
    commits: Vec<Commit>,
    /// Position of the last rows event and how many rows were numbered there.
    rows_at: u64,
    rows_done: u32,
}

impl Processor {
    /// A stream of server `name` (`source.name`) keeping the tables `filter`
    /// accepts, starting after the transactions in `start`.
    pub fn new(name: Arc<str>, filter: TableFilter, flavor: Flavor, start: GtidSet) -> Processor {
        Processor {
            flavor,
            name,
            filter,
            origins: OriginFilter::default(),
            sequence: start.sequence(),
            executed: start,
            overlap: None,
            committed: false,
            fde: FormatDescriptionEvent::new(BinlogVersion::Version4),
            post_header: Vec::new(),
            file: Arc::from(""),
            tables: HashMap::new(),
            tx: None,
            resume_skip: None,
            before: Vec::new(),
            after: Vec::new(),
            payload_buf: Vec::new(),
            events_seen: 0,
            event_start: 0,
            batch_bytes: 0,
            commits: Vec::new(),
            rows_at: u64::MAX,
            rows_done: 0,
        }
    }

    /// Marks the changes of transactions in `overlap` (see
    /// `ChangeEvent::overlap`).
    pub fn with_overlap(mut self, overlap: Option<GtidSet>) -> Processor {
        self.overlap = overlap;
        self
    }

    /// Leaves out transactions by origin (see `source::origin`).
    pub fn with_origins(mut self, origins: OriginFilter) -> Processor {
        self.origins = origins;
        self
    }

    /// True when a batch must be handed out: records, boundaries or progress.
    pub fn has_output(&self, batch: &[Record]) -> bool {
        !batch.is_empty() || !self.commits.is_empty() || self.committed
    }

    /// Turns the records decoded since the last call into a batch, with the
    /// transactions they complete and the GTID set reached.
    pub fn take_batch(&mut self, records: Vec<Record>) -> Batch {
        Batch {
            executed: std::mem::take(&mut self.committed).then(|| self.executed.clone()),
            bytes: std::mem::take(&mut self.batch_bytes),
            records,
            commits: std::mem::take(&mut self.commits),
            snapshot: None,
        }
    }

    /// The stream's flavour.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// `executed().sequence()`, kept per commit (semi-sync requests are
    /// matched to the checkpoint by it).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The binlog file being read (from the last ROTATE).
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Transactions complete so far: where a resume starts.
    pub fn executed(&self) -> &GtidSet {
        &self.executed
    }

    /// True inside a transaction (a stop waits for its end).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Events received so far (a reconnect that made progress resets backoff).
    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    /// Binlog bytes of the rows decoded since the last batch.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes
    }

    /// Forget connection-bound state; remember how far the open transaction got.
    pub fn prepare_resume(&mut self) {
        if let Some(tx) = self.tx.take() {
            let delivered = tx.total.max(tx.skip);
            if delivered > 0 {
                self.resume_skip = Some((tx.gtid, delivered));
            }
        }
        self.tables.clear();
    }

    /// One event as received: verify and strip the CRC32, then dispatch.
    pub fn on_wire_event(&mut self, ev: &[u8], out: &mut Vec<Record>) -> Result<(), SourceError> {
        self.events_seen += 1;
        if ev.len() < HEADER_LEN + 4 {
            return Err(SourceError::Fatal(format!(
                "truncated binlog event ({} bytes)",
                ev.len()
            )));
        }
        let size = le_u32(ev, 9) as usize;
        if size != ev.len() {
            return Err(SourceError::Fatal(format!(
                "binlog event size {size} does not match the {} bytes received",
                ev.len()
            )));
        }
        let (data, crc) = ev.split_at(ev.len() - 4);
        let want = le_u32(crc, 0);
        if crc32fast::hash(data) != want && !fde_checksum_matches(data, want) {
            return Err(SourceError::Fatal(format!(
                "CRC32 mismatch in a {} event at {}:{}: the binlog or the network corrupted it",
                event_name(data[4]),
                self.file,
                le_u32(data, 13)
            )));
        }
        let log_pos = u64::from(le_u32(data, 13));
        self.event_start = log_pos.saturating_sub(size as u64);
        self.on_event(data, out)
    }

    /// One event without checksum (header + body).
    fn on_event(&mut self, ev: &[u8], out: &mut Vec<Record>) -> Result<(), SourceError> {
        let ty = ev[4];
        let flags = u16::from_le_bytes([ev[17], ev[18]]);
        let log_pos = u64::from(le_u32(ev, 13));
        let ts = u64::from(le_u32(ev, 0));
        let origin_server = le_u32(ev, 5);
        let body = &ev[HEADER_LEN..];
        let at = |this: &Self| format!("{}:{}", this.file, this.event_start);
        match ty {
            // Post-header lengths for this binlog.
            ev_type::FORMAT_DESCRIPTION => {
                if body.len() < 2 + 50 + 4 + 1 {
                    return Err(SourceError::Fatal("truncated FORMAT_DESCRIPTION event".into()));
                }
                // The body carries the checksum algorithm byte and (already stripped) CRC;
                // a body of exactly 57 bytes has no lengths at all.
                let lens = &body[57..body.len().max(58) - 1];
                self.post_header = lens.to_vec();
                if flags & LOG_EVENT_ARTIFICIAL_F == 0 || log_pos != 0 {
                    // A real FDE at a binlog start: table ids start over.
                    self.tables.clear();
                }
            }
            // Next binlog file name.
            ev_type::ROTATE => {
                if body.len() < 8 {
                    return Err(SourceError::Fatal("truncated ROTATE event".into()));
                }
                let name = String::from_utf8_lossy(&body[8..]);
                self.file = Arc::from(name.as_ref());
            }
            // MySQL: a transaction starts.
            ev_type::GTID | ev_type::GTID_TAGGED => {
                let g: GtidEvent = ParseBuf(body)
                    .parse(BinlogCtx::new(ev.len(), &self.fde, ty))
                    .map_err(|e| SourceError::Fatal(format!("bad GTID event at {}: {e}", at(self))))?;
                let uuid = format_uuid(&g.sid());
                let text = match g.tag() {
                    Some(tag) => format!("{uuid}:{}:{}", tag.as_str().to_ascii_lowercase(), g.gno()),
                    None => format!("{uuid}:{}", g.gno()),
                };
                let ts_ms = match g.original_commit_timestamp() {
                    0 => ts * 1000,
                    us => us / 1000,
                };
                self.begin_tx(text, ts_ms, origin_server)?;
            }
            // The server is not in GTID mode; we cannot resume reliably.
            ev_type::ANONYMOUS_GTID => {
                return Err(SourceError::Fatal(format!(
                    "anonymous (non-GTID) transaction at {}: gtid_mode must be ON. Fix: SET GLOBAL gtid_mode=ON (via OFF_PERMISSIVE, ON_PERMISSIVE) and gtid_mode=ON in my.cnf",
                    at(self)
                )))
            }
            // MariaDB GTID: seq_no, domain, flags. Without FL_STANDALONE a BEGIN
            // follows; on_query tracks BEGIN either way.
            ev_type::MARIADB_GTID => {
                if body.len() < 13 {
                    return Err(SourceError::Fatal("truncated MariaDB GTID event".into()));
                }
                let seq = le_u64(body, 0);
                let domain = le_u32(body, 8);
                self.begin_tx(format!("{domain}-{origin_server}-{seq}"), ts * 1000, origin_server)?;
            }
            // BEGIN/COMMIT/DDL.
            ev_type::QUERY => self.on_query(body, ts, origin_server, out)?,
            ev_type::XID | ev_type::XA_PREPARE => self.commit(out.len())?,
            ev_type::TABLE_MAP => self.on_table_map(body, ty)?,
            // Rows events v1, v2, partial JSON update.
            ev_type::WRITE_ROWS_V1..=ev_type::DELETE_ROWS_V1
            | ev_type::WRITE_ROWS..=ev_type::DELETE_ROWS
            | ev_type::PARTIAL_UPDATE_ROWS => self.on_rows(ev, ty, origin_server, out)?,
            // A whole transaction, usually zstd-compressed.
            ev_type::TRANSACTION_PAYLOAD => self.on_payload(body, ev.len(), out)?,
            // Events that carry nothing for row-based CDC, each understood:
            // STOP, PREVIOUS_GTIDS, HEARTBEAT (v1, v2), ROWS_QUERY, INTVAR, RAND,
            // USER_VAR (statement-based helpers; a statement DML stops us in on_query),
            // TRANSACTION_CONTEXT and VIEW_CHANGE (group replication),
            // MariaDB ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_LIST.
            ev_type::STOP
            | ev_type::PREVIOUS_GTIDS
            | ev_type::HEARTBEAT
            | ev_type::HEARTBEAT_V2
            | ev_type::ROWS_QUERY
            | ev_type::INTVAR
            | ev_type::RAND
            | ev_type::USER_VAR
            | ev_type::TRANSACTION_CONTEXT
            | ev_type::VIEW_CHANGE
            | ev_type::ANNOTATE_ROWS
            | ev_type::BINLOG_CHECKPOINT
            | ev_type::GTID_LIST => {}
            // The server lost events; continuing would hide a gap.
            ev_type::INCIDENT => {
                return Err(SourceError::Fatal(format!(
                    "INCIDENT event at {}: the source server reports lost binlog events; re-snapshot the affected tables, then restart from --from latest",
                    at(self)
                )))
            }
            // MariaDB compressed events: refused (the check asks for log_bin_compress=OFF).
            ev_type::QUERY_COMPRESSED..=ev_type::DELETE_ROWS_COMPRESSED => {
                return Err(SourceError::Fatal(format!(
                    "{} at {}: MariaDB binlog compression is not supported. Fix: SET GLOBAL log_bin_compress=OFF and log_bin_compress=OFF in my.cnf",
                    event_name(ty),
                    at(self)
                )))
            }
            ev_type::START_ENCRYPTION => {
                return Err(SourceError::Fatal(format!(
                    "START_ENCRYPTION event at {}: encrypted binlogs are not supported",
                    at(self)
                )))
            }
            _ if flags & LOG_EVENT_IGNORABLE_F != 0 => {
                tracing::debug!(event_type = ty, at = %at(self), "skipping event the server flags as ignorable");
            }
            _ => {
                return Err(SourceError::Fatal(format!(
                    "unknown binlog event type {ty} ({}) at {}: rowstream cannot decode it and will not skip it; upgrade rowstream",
                    event_name(ty),
                    at(self)
                )))
            }
        }
        Ok(())
    }

    fn begin_tx(&mut self, gtid: String, ts_ms: u64, origin: u32) -> Result<(), SourceError> {
        let parsed = Gtid::parse(self.flavor, &gtid)
            .map_err(|e| SourceError::Fatal(format!("GTID `{gtid}`: {e}")))?;
        let sequence = self.executed.sequence_with(self.sequence, &parsed);
        let gtid: Arc<str> = Arc::from(gtid);
        let skip = match self.resume_skip.take() {
            Some((g, n)) if g == gtid => n,
            _ => 0,
        };
        if self
            .overlap
            .as_ref()
            .is_some_and(|o| o.is_subset(&self.executed))
        {
            self.overlap = None;
        }
        let overlap = self.overlap.as_ref().is_some_and(|o| o.contains(&parsed));
        self.tx = Some(Tx {
            gtid,
            parsed,
            ts_ms,
            total: 0,
            per_table: HashMap::new(),
            skip,
            in_begin: false,
            sequence,
            dropped: self.origins.drops_server(origin),
            maps: 0,
            overlap,
        });
        Ok(())
    }

    /// Ends the open transaction; `end` is the batch length after its last record.
    fn commit(&mut self, end: usize) -> Result<(), SourceError> {
        if let Some(tx) = self.tx.take() {
            self.executed
                .add(&tx.parsed)
                .map_err(|e| SourceError::Fatal(format!("GTID {}: {e}", tx.gtid)))?;
            self.sequence = tx.sequence;
            self.committed = true;
            // Transactions with nothing for us (filtered tables) need no boundary.
            if tx.total > 0 {
                self.commits.push(Commit {
                    end,
                    gtid: tx.gtid,
                    events: tx.total,
                });
            }
        }
        Ok(())
    }

    fn on_query(
        &mut self,
        body: &[u8],
        ts: u64,
        origin: u32,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let log_pos = self.event_start;
        let bad = || SourceError::Fatal("truncated QUERY event".into());
        let post = self.post_header.get(1).copied().unwrap_or(13) as usize;
        let db_len = *body.get(8).ok_or_else(bad)? as usize;
        let Some(&[s0, s1]) = body.get(11..13) else {
            return Err(bad());
        };
        let status_len = u16::from_le_bytes([s0, s1]) as usize;
        let db_start = post + status_len;
        let db = body.get(db_start..db_start + db_len).ok_or_else(bad)?;
        let query = body.get(db_start + db_len + 1..).ok_or_else(bad)?;
        let sql = String::from_utf8_lossy(query);
        let db = String::from_utf8_lossy(db).into_owned();
        let word = first_word(&sql);
        match word.as_str() {
            "BEGIN" => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.in_begin = true;
                }
                return Ok(());
            }
            "XA" => {
                let second = sql.split_whitespace().nth(1).unwrap_or("").to_ascii_uppercase();
                if second == "START" || second == "BEGIN" {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.in_begin = true;
                    }
                    return Ok(());
                }
                if second == "END" {
                    return Ok(());
                }
                return self.commit(out.len()); // XA COMMIT / XA ROLLBACK: a transaction of its own
            }
            "COMMIT" => return self.commit(out.len()),
            "ROLLBACK" => {
                // A transaction that touched a non-transactional table and rolled back is logged whole.
                return self.commit(out.len());
            }
            "SAVEPOINT" | "RELEASE" => return Ok(()),
            "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" => {
                return Err(SourceError::Fatal(format!(
                    "statement-based DML in the binlog at {}:{log_pos} (`{}`): its rows cannot be captured. \
                     Every session must use binlog_format=ROW: SET GLOBAL binlog_format=ROW, and find the client that sets SESSION binlog_format",
                    self.file,
                    truncate(&sql, 120)
                )))
            }
            _ => {}
        }
        // DDL (or another non-row statement): ends cached table maps, becomes a schema change record.
        self.tables.clear();
        // `ALTER TABLE b.t` run from `USE a` concerns schema b.
        let db = ddl_schema(&sql).unwrap_or(db);
        let dropped = self.tx.as_ref().is_some_and(|t| t.dropped) || self.origins.drops_ddl(&sql);
        if self.filter.matches_db(&db) && !dropped {
            let gtid = self
                .tx
                .as_ref()
                .map(|t| t.gtid.clone())
                .unwrap_or_else(|| Arc::from(""));
            let ts_ms = self.tx.as_ref().map(|t| t.ts_ms).unwrap_or(ts * 1000);
            let skip = self.tx.as_ref().map(|t| t.skip > 0).unwrap_or(false);
            if !skip {
                out.push(Record::SchemaChange(Box::new(SchemaChange {
                    source: Source {
                        version: VERSION,
                        connector: self.flavor,
                        name: self.name.clone(),
                        ts_ms,
                        snapshot: Snapshot::False,
                        db: Arc::from(db.as_str()),
                        table: Arc::from(""),
                        server_id: origin,
                        gtid,
                        file: self.file.clone(),
                        pos: self.event_start,
                        sequence: self.tx.as_ref().map_or(self.sequence, |t| t.sequence),
                    },
                    ts_ms: now_ms(),
                    database: Arc::from(db.as_str()),
                    ddl: sql.into_owned(),
                })));
            }
            if let Some(tx) = self.tx.as_mut() {
                tx.total += 1;
            }
        }
        if !self.tx.as_ref().map(|t| t.in_begin).unwrap_or(false) {
            self.commit(out.len())?;
        }
        Ok(())
    }

    fn on_table_map(&mut self, body: &[u8], ty: u8) -> Result<(), SourceError> {
        let post = self.post_header.get(ty as usize - 1).copied().unwrap_or(8) as usize;
        let id_len = if post == 6 { 4 } else { 6 };
        let bad = || SourceError::Fatal("truncated TABLE_MAP event".into());
        let mut id = [0u8; 8];
        id[..id_len].copy_from_slice(body.get(..id_len).ok_or_else(bad)?);
        let table_id = u64::from_le_bytes(id);
        let rest = body.get(post..).ok_or_else(bad)?;
        let db_len = *rest.first().ok_or_else(bad)? as usize;
        let db = rest.get(1..1 + db_len).ok_or_else(bad)?;
        let t = rest.get(2 + db_len..).ok_or_else(bad)?;
        let t_len = *t.first().ok_or_else(bad)? as usize;
        let table = t.get(1..1 + t_len).ok_or_else(bad)?;
        if let Some(tx) = self.tx.as_mut() {
            if tx.maps == 0 && self.origins.drops_first_table(db, table) {
                tx.dropped = true;
            }
            tx.maps += 1;
        }
        // Every transaction maps its tables again, mostly with the same
        // bytes: the schema (a function of them) is kept, so its column
        // names stay one allocation and the encoders' caches keyed by it
        // keep hitting.
        if self.tables.get(&table_id).is_some_and(|m| *m.body == *body) {
            return Ok(());
        }
        let included = self.filter.matches(
            &String::from_utf8_lossy(db),
            &String::from_utf8_lossy(table),
        );
        let schema = if included {
            let schema = TableSchema::from_table_map(body, post as u8, self.flavor)
                .map_err(|e| SourceError::Fatal(e.to_string()))?;
            Some(Arc::new(schema))
        } else {
            None
        };
        let body = body.into();
        self.tables.insert(table_id, Mapped { body, schema });
        Ok(())
    }

    fn on_rows(
        &mut self,
        ev: &[u8],
        ty: u8,
        origin: u32,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let log_pos = self.event_start;
        let body = &ev[HEADER_LEN..];
        let post = self.post_header.get(ty as usize - 1).copied().unwrap_or(10);
        let h = decode::parse_rows_header(ty, body, post)
            .map_err(|e| SourceError::Fatal(e.to_string()))?;
        let schema = match self.tables.get(&h.table_id).map(|m| &m.schema) {
            Some(Some(s)) => s.clone(),
            Some(None) => return Ok(()), // excluded by the table filter
            None => {
                return Err(SourceError::Fatal(format!(
                    "rows event for table id {} without a preceding TABLE_MAP at {}:{log_pos}",
                    h.table_id, self.file
                )))
            }
        };
        let Some(tx) = self.tx.as_mut() else {
            return Err(SourceError::Fatal(format!(
                "rows event outside a transaction at {}:{log_pos}",
                self.file
            )));
        };
        if tx.dropped {
            return Ok(());
        }
        let op = match h.kind {
            decode::RowsKind::Write => Op::Create,
            decode::RowsKind::Update | decode::RowsKind::PartialUpdate => Op::Update,
            decode::RowsKind::Delete => Op::Delete,
        };
        let pos = self.event_start;
        self.batch_bytes += body.len();
        // Inside a TRANSACTION_PAYLOAD every rows event shares the payload's
        // position: number rows across them so (file, pos, row) stays unique.
        if self.rows_at != pos {
            self.rows_at = pos;
            self.rows_done = 0;
        }
        let now = now_ms();
        let source = Source {
            version: VERSION,
            connector: self.flavor,
            name: self.name.clone(),
            ts_ms: tx.ts_ms,
            snapshot: Snapshot::False,
            db: schema.db.clone(),
            table: schema.table.clone(),
            server_id: origin,
            gtid: tx.gtid.clone(),
            file: self.file.clone(),
            pos,
            sequence: tx.sequence,
        };
        let mut dec = RowsDecoder::new(&h, &schema);
        let shared = Arc::new(Shared {
            before_columns: dec.columns_before().clone(),
            after_columns: dec.columns_after().clone(),
            ..Shared::typed(source, &schema.meta)
        });
        let mut row = self.rows_done;
        // The next row's images start at full size: no regrowth per value.
        let width = schema.columns.len();
        // Looked up once per rows event, not per row (a SipHash per row showed in profiles).
        let per_table = tx.per_table.entry(h.table_id).or_insert(0);
        loop {
            let more = dec
                .next_row(&mut self.before, &mut self.after)
                .map_err(|e| {
                    SourceError::Fatal(format!(
                        "{e} (at {}:{log_pos}, {}.{})",
                        self.file, schema.db, schema.table
                    ))
                })?;
            if !more {
                break;
            }
            tx.total += 1;
            *per_table += 1;
            let dco = *per_table;
            row += 1;
            if tx.total <= tx.skip {
                continue;
            }
            let before = matches!(op, Op::Update | Op::Delete)
                .then(|| std::mem::replace(&mut self.before, Vec::with_capacity(width)));
            let after = matches!(op, Op::Update | Op::Create)
                .then(|| std::mem::replace(&mut self.after, Vec::with_capacity(width)));
            let mut ev = ChangeEvent {
                op,
                before,
                after,
                ts_ms: now,
                shared: shared.clone(),
                row: row - 1,
                transaction: Some(Transaction {
                    total_order: tx.total,
                    data_collection_order: dco,
                }),
                overlap: tx.overlap,
            };
            self.filter
                .columns()
                .apply(&mut ev)
                .map_err(SourceError::Fatal)?;
            out.push(Record::Change(ev));
        }
        self.rows_done = row;
        Ok(())
    }

    fn on_payload(
        &mut self,
        body: &[u8],
        size: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), SourceError> {
        let fde = self.fde.clone();
        check_payload_header(body)
            .map_err(|e| SourceError::Fatal(format!("bad TRANSACTION_PAYLOAD event: {e}")))?;
        let tpe: TransactionPayloadEvent<'_> = ParseBuf(body)
            .parse(BinlogCtx::new(size, &fde, ev_type::TRANSACTION_PAYLOAD))
            .map_err(|e| SourceError::Fatal(format!("bad TRANSACTION_PAYLOAD event: {e}")))?;
        let mut reader = tpe.decompressed().map_err(|e| {
            SourceError::Fatal(format!("TRANSACTION_PAYLOAD: unsupported compression: {e}"))
        })?;
        let mut buf = std::mem::take(&mut self.payload_buf);
        let result = (|| {
            loop {
                let mut hdr = [0u8; HEADER_LEN];
                match read_full(&mut reader, &mut hdr)? {
                    0 => return Ok(()),
                    n if n < HEADER_LEN => {
                        return Err(SourceError::Fatal(
                            "TRANSACTION_PAYLOAD ends inside an event header".into(),
                        ))
                    }
                    _ => {}
                }
                let len = le_u32(&hdr, 9) as usize;
                if len < HEADER_LEN {
                    return Err(SourceError::Fatal(
                        "TRANSACTION_PAYLOAD holds an event with a bad size".into(),
                    ));
                }
                buf.clear();
                buf.extend_from_slice(&hdr);
                // Grows with the bytes actually there, so a bogus size cannot
                // allocate gigabytes up front (found by fuzzing).
                let want = (len - HEADER_LEN) as u64;
                let got = Read::by_ref(&mut reader)
                    .take(want)
                    .read_to_end(&mut buf)
                    .map_err(|e| {
                        SourceError::Fatal(format!("TRANSACTION_PAYLOAD decompression failed: {e}"))
                    })?;
                if got as u64 != want {
                    return Err(SourceError::Fatal(
                        "TRANSACTION_PAYLOAD ends inside an event".into(),
                    ));
                }
                // Inner events are not checksummed (WL#3549).
                self.on_event(&buf, out)?;
            }
        })();
        self.payload_buf = buf;
        result
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, SourceError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(SourceError::Fatal(format!(
                    "TRANSACTION_PAYLOAD decompression failed: {e}"
                )))
            }
        }
    }
    Ok(n)
}

/// MySQL computes a FORMAT_DESCRIPTION checksum with LOG_EVENT_BINLOG_IN_USE_F cleared.
fn fde_checksum_matches(data: &[u8], want: u32) -> bool {
    if data[4] != ev_type::FORMAT_DESCRIPTION || data[17] & LOG_EVENT_BINLOG_IN_USE_F == 0 {
        return false;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&data[..17]);
    h.update(&[data[17] & !LOG_EVENT_BINLOG_IN_USE_F]);
    h.update(&data[18..]);
    h.finalize() == want
}

fn format_uuid(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Walks the header fields of a TRANSACTION_PAYLOAD body as mysql_common's
/// parser does, with checked reads: that parser panics on an unknown field
/// longer than the body, on a field type above 255 and on an unknown
/// compression type (found by fuzzing), so such a header is refused here.
fn check_payload_header(body: &[u8]) -> Result<(), String> {
    let mut b = ParseBuf(body);
    let lenenc = |b: &mut ParseBuf<'_>| {
        b.checked_eat_lenenc_int()
            .ok_or_else(|| "truncated header".to_string())
    };
    while !b.is_empty() {
        match lenenc(&mut b)? {
            0 => return Ok(()),
            field @ 1..=3 => {
                lenenc(&mut b)?;
                let v = lenenc(&mut b)?;
                if field == 2 && v != 0 && v != 255 {
                    return Err(format!("unknown compression type {v}"));
                }
            }
            // mysql_common unwraps the field type into a u8.
            field if field > 255 => return Err(format!("unknown field type {field}")),
            field => {
                let len = lenenc(&mut b)?;
                if !usize::try_from(len).is_ok_and(|n| b.checked_skip(n)) {
                    return Err(format!("field {field} of {len} bytes overruns the event"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(flavor: Flavor) -> Processor {
        Processor::new(
            Arc::from("t"),
            TableFilter::default(),
            flavor,
            GtidSet::empty(flavor),
        )
    }

    /// A wire event: header, body, CRC32 (as the server sends with checksums on).
    fn wire_event(ty: u8, log_pos: u32, flags: u16, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + 4) as u32;
        let mut e = Vec::new();
        e.extend_from_slice(&0u32.to_le_bytes());
        e.push(ty);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&log_pos.to_le_bytes());
        e.extend_from_slice(&flags.to_le_bytes());
        e.extend_from_slice(body);
        let crc = crc32fast::hash(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        e
    }

    /// Runs transactions through a processor started at `start` and returns
    /// each one's `sequence`.
    fn sequences(flavor: Flavor, start: &str, gtids: &[&str]) -> Vec<u64> {
        let mut p = Processor::new(
            Arc::from("t"),
            TableFilter::default(),
            flavor,
            GtidSet::parse(flavor, start).unwrap(),
        );
        gtids
            .iter()
            .map(|g| {
                p.begin_tx(g.to_string(), 0, 1).unwrap();
                let s = p.tx.as_ref().unwrap().sequence;
                p.commit(0).unwrap();
                s
            })
            .collect()
    }

    /// A MariaDB transaction as the server sends it: GTID, BEGIN, TABLE_MAP of
    /// `db.t (id INT)`, one WRITE_ROWS with `ids`, XID.
    fn mariadb_transaction(seq: u64, ids: &[i32], pos: &mut u32) -> Vec<Vec<u8>> {
        let mut gtid = seq.to_le_bytes().to_vec();
        gtid.extend_from_slice(&0u32.to_le_bytes()); // domain
        gtid.push(0); // flags: a BEGIN follows
        let mut begin = vec![0u8; 13]; // thread, exec time, db len 0, error, status len 0
        begin.push(0); // empty db, NUL
        begin.extend_from_slice(b"BEGIN");
        let map =
            crate::source::binlog::schema::tests::table_map(42, "db", "t", &[(3, &[], "id")], &[]);
        let mut rows = 42u64.to_le_bytes()[..6].to_vec();
        rows.extend_from_slice(&1u16.to_le_bytes()); // flags: STMT_END
        rows.extend_from_slice(&2u16.to_le_bytes()); // no extra data
        rows.extend_from_slice(&[1, 0xff]); // 1 column, all present
        for id in ids {
            rows.push(0); // null bitmap
            rows.extend_from_slice(&id.to_le_bytes());
        }
        let bodies = [
            (ev_type::MARIADB_GTID, gtid),
            (ev_type::QUERY, begin),
            (ev_type::TABLE_MAP, map),
            (ev_type::WRITE_ROWS, rows),
            (ev_type::XID, 7u64.to_le_bytes().to_vec()),
        ];
        bodies
            .into_iter()
            .map(|(ty, body)| {
                *pos += (HEADER_LEN + body.len() + 4) as u32;
                wire_event(ty, *pos, 0, &body)
            })
            .collect()
    }

    fn ids(records: &[Record]) -> Vec<Value> {
        records
            .iter()
            .map(|r| match r {
                Record::Change(c) => c.after_row().unwrap().values[0].clone(),
                other => panic!("not a change: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn events_in_records_and_a_batch_out() {
        let mut p = processor(Flavor::MariaDb);
        let mut pos = 4;
        let mut out = Vec::new();
        for ev in mariadb_transaction(5, &[1, 2], &mut pos) {
            p.on_wire_event(&ev, &mut out).unwrap();
        }
        assert_eq!(ids(&out), [Value::Int(1), Value::Int(2)]);
        let Record::Change(c) = &out[1] else {
            unreachable!()
        };
        assert_eq!((c.op, &*c.source().gtid, c.row), (Op::Create, "0-1-5", 1));
        assert!(!p.in_transaction());
        let batch = p.take_batch(out);
        assert_eq!(batch.commits.len(), 1);
        assert_eq!((batch.commits[0].end, batch.commits[0].events), (2, 2));
        assert_eq!(batch.executed.unwrap().to_string(), "0-1-5");
        // Nothing new: the next batch carries no progress.
        assert!(!p.has_output(&[]));
    }

    /// A table mapped again with the same bytes keeps its schema (one
    /// column-name list, which the encoders' caches key by pointer); new
    /// bytes for the same id make a new one.
    #[test]
    fn a_table_mapped_again_keeps_its_schema_until_it_changes() {
        let mut p = processor(Flavor::MariaDb);
        let mut pos = 4;
        let mut out = Vec::new();
        for seq in [5, 6] {
            for ev in mariadb_transaction(seq, &[seq as i32], &mut pos) {
                p.on_wire_event(&ev, &mut out).unwrap();
            }
        }
        let mut evs = mariadb_transaction(7, &[7], &mut pos);
        let map =
            crate::source::binlog::schema::tests::table_map(42, "db", "t", &[(3, &[], "no")], &[]);
        evs[2] = wire_event(ev_type::TABLE_MAP, pos, 0, &map);
        for ev in evs {
            p.on_wire_event(&ev, &mut out).unwrap();
        }
        let cols: Vec<_> = out
            .iter()
            .map(|r| match r {
                Record::Change(c) => c.after_row().unwrap().columns.clone(),
                other => panic!("not a change: {other:?}"),
            })
            .collect();
        assert!(Arc::ptr_eq(&cols[0], &cols[1]));
        assert_eq!((&*cols[1][0], &*cols[2][0]), ("id", "no"));
        assert_eq!(ids(&out), [Value::Int(5), Value::Int(6), Value::Int(7)]);
    }

    #[test]
    fn a_resumed_transaction_skips_rows_already_handed_out() {
        let mut p = processor(Flavor::MariaDb);
        let mut pos = 4;
        let mut out = Vec::new();
        let first = mariadb_transaction(5, &[1, 2], &mut pos);
        // The connection drops after the rows event, before the XID.
        for ev in &first[..4] {
            p.on_wire_event(ev, &mut out).unwrap();
        }
        assert_eq!(
            ids(&p.take_batch(std::mem::take(&mut out)).records).len(),
            2
        );
        p.prepare_resume();
        assert_eq!(p.executed().to_string(), "");
        // The server sends the whole transaction again, now with a third row.
        let mut pos = 4;
        for ev in mariadb_transaction(5, &[1, 2, 3], &mut pos) {
            p.on_wire_event(&ev, &mut out).unwrap();
        }
        assert_eq!(ids(&out), [Value::Int(3)]);
        let batch = p.take_batch(out);
        assert_eq!(batch.commits[0].events, 3);
        assert_eq!(batch.executed.unwrap().to_string(), "0-1-5");
    }

    #[test]
    fn sequence_of_transactions() {
        const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        const V: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";
        let all: Vec<String> = (1..=4)
            .map(|n| format!("{U}:{n}"))
            .chain([format!("{V}:1")])
            .collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let from_scratch = sequences(Flavor::MySql, "", &all);
        assert_eq!(from_scratch, [1, 2, 3, 4, 5]);
        // Resumed from a checkpoint after the second: the same numbers for the rest.
        assert_eq!(
            sequences(Flavor::MySql, &format!("{U}:1-2"), &all[2..]),
            [3, 4, 5]
        );
        // A promoted replica with the same history under its own UUID keeps counting.
        assert_eq!(
            sequences(
                Flavor::MySql,
                &format!("{U}:1-4"),
                &[&format!("{V}:1"), &format!("{V}:2")]
            ),
            [5, 6]
        );
        let ma = ["0-1-1", "0-1-2", "1-5-1", "0-2-3"];
        assert_eq!(sequences(Flavor::MariaDb, "", &ma), [1, 2, 3, 4]);
        assert_eq!(sequences(Flavor::MariaDb, "0-1-2", &ma[2..]), [3, 4]);
        // Failover: the promoted server (another server id) continues the domain.
        assert_eq!(sequences(Flavor::MariaDb, "0-1-2,1-5-1", &["0-9-3"]), [4]);
    }

    #[test]
    fn sequence_survives_a_reconnect() {
        let mut p = processor(Flavor::MariaDb);
        p.begin_tx("0-1-1".into(), 0, 1).unwrap();
        p.commit(0).unwrap();
        p.begin_tx("0-1-2".into(), 0, 1).unwrap();
        p.prepare_resume(); // connection lost inside the second transaction
        p.begin_tx("0-1-2".into(), 0, 1).unwrap();
        assert_eq!(p.tx.as_ref().unwrap().sequence, 2);
        p.commit(0).unwrap();
        assert_eq!(p.sequence, p.executed.sequence());
    }

    #[test]
    fn unknown_event_is_fatal_and_named() {
        let mut p = processor(Flavor::MySql);
        let err = p
            .on_wire_event(&wire_event(99, 500, 0, b"xyz"), &mut Vec::new())
            .unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("unknown binlog event type 99"),
            "{err}"
        );
        // Only the server's own "ignorable" flag lets an unknown event pass.
        p.on_wire_event(
            &wire_event(99, 500, LOG_EVENT_IGNORABLE_F, b"xyz"),
            &mut Vec::new(),
        )
        .unwrap();
    }

    #[test]
    fn mariadb_compressed_events_are_refused() {
        let mut p = processor(Flavor::MariaDb);
        let err = p
            .on_wire_event(
                &wire_event(ev_type::WRITE_ROWS_COMPRESSED, 500, 0, &[0; 16]),
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("WRITE_ROWS_COMPRESSED")
                && err.to_string().contains("log_bin_compress=OFF"),
            "{err}"
        );
    }

    #[test]
    fn crc_mismatch_is_fatal() {
        let mut p = processor(Flavor::MySql);
        let mut e = wire_event(ev_type::XID, 500, 0, &7u64.to_le_bytes());
        e[HEADER_LEN] ^= 1;
        let err = p.on_wire_event(&e, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("CRC32 mismatch in a XID event"),
            "{err}"
        );
    }

    /// mysql_common reads the first (artificial) ROTATE before it has seen a
    /// FORMAT_DESCRIPTION, so it does not know the event carries a CRC and keeps
    /// the 4 checksum bytes in the file name. We strip the CRC of every event
    /// first (the checksum setting is known from the server before the dump).
    #[test]
    fn first_rotate_name_has_no_checksum_bytes() {
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"mysql-bin.000001");
        let ev = wire_event(ev_type::ROTATE, 0, LOG_EVENT_ARTIFICIAL_F, &body);

        let mut esr = mysql_common::binlog::EventStreamReader::new(BinlogVersion::Version4);
        let theirs = esr.read(&ev[..]).unwrap().unwrap();
        let rot: mysql_common::binlog::events::RotateEvent<'_> = theirs.read_event().unwrap();
        assert_eq!(
            rot.name_raw().len(),
            "mysql-bin.000001".len() + 4,
            "mysql_common keeps the CRC in the name"
        );

        let mut p = processor(Flavor::MySql);
        p.on_wire_event(&ev, &mut Vec::new()).unwrap();
        assert_eq!(&*p.file, "mysql-bin.000001");
    }

    #[test]
    fn uuid_format() {
        let b = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        assert_eq!(format_uuid(&b), "3e11fa47-71ca-11e1-9e33-c80aa9429562");
    }
}
