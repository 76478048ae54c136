//! The HTTP sink: per-table requests of JSON records (see `encode`), sent
//! by background tasks through the shared [`Client`], and batches acked in
//! order once every record of them is delivered or dead-lettered.
//!
//! Data path: `write` gives every change a global index (its position in
//! the stream), encodes it into its table's pending request and sends a
//! table's request when it holds `batch_records` records or `batch_bytes`
//! bytes or its oldest record waited `linger_ms`; `flush` sends everything.
//! A table has at most one request in flight (so one key's changes are
//! never reordered) and at most `concurrency` tables have one. A batch is
//! acked once every change before its end is settled: the durable position
//! is the lowest index still pending in any table (in flight or buffered).
//! Changes that send nothing (schema changes, skipped deletes) are settled
//! at once.
//!
//! An answer is settled when the client returns (it retries transient
//! failures itself, forever): delivered; refused with `on_error =
//! "dead_letter"`: one JSON line (record ids, records, URL, status,
//! answer, time) appended and fsync'd before the ack; refused with
//! `"stop"`, or fatal (credentials): the sink stops with the URL, status
//! and answer, nothing more acked.
//!
//! Poison: the first failure stops the sink for good; pending acks fail
//! with it, and every later `write`, ack and `flush` fails with it. Dropping
//! the sink aborts requests in flight (their acks fail).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rowstream_api::metrics::{self, Family, Handle};
use rowstream_api::{
    Ack, AckQueue, Batch, ChangeEvent, Committed, Poison, Record, Sink, SinkError,
};
use tokio::task::JoinSet;

use crate::client::{Answer, Client, Request};
use crate::config::{Format, HttpSinkConfig, OnError, TableMapping, UrlTemplate};
use crate::encode::{body, idempotency_key, old_key_delete, record_id, write_record, Shape};
use crate::journal::Journal;

pub static HTTP_REQUESTS: Family = Family::counter(
    "rowstream_http_requests_total",
    "Requests the receiver answered 2xx.",
    "sink",
);
pub static HTTP_RECORDS: Family = Family::counter(
    "rowstream_http_records_delivered_total",
    "Records in requests the receiver answered 2xx.",
    "sink",
);
pub static HTTP_RETRIES: Family = Family::counter(
    "rowstream_http_retries_total",
    "Attempts retried after a timeout, a connection error, 408, 429 or 5xx.",
    "sink",
);
pub static HTTP_DEAD_LETTERS: Family = Family::counter(
    "rowstream_http_dead_letters_total",
    "Records of refused requests written to the dead-letter file.",
    "sink",
);
pub static HTTP_BUDGET_LEFT: Family = Family::gauge(
    "rowstream_http_daily_budget_left",
    "Requests left in today's daily_budget (UTC); absent without a budget.",
    "sink",
);
/// This sink's metric families, registered on start.
pub static METRICS: &[&Family] = &[
    &HTTP_REQUESTS,
    &HTTP_RECORDS,
    &HTTP_RETRIES,
    &HTTP_DEAD_LETTERS,
    &HTTP_BUDGET_LEFT,
];

/// A table as `(db, table)`.
type DbTable = (Arc<str>, Arc<str>);

/// Records waiting for a table's next request.
#[derive(Default)]
struct Pending {
    /// Records' JSON joined by `,`.
    records: Vec<u8>,
    ids: Vec<String>,
    /// Global index of the first record.
    first: u64,
    since: Option<Instant>,
    /// The last record id of the earlier run's request that began with
    /// this one's first record: the request ends there, not by linger.
    until: Option<String>,
}

struct TableQueue {
    url: String,
    /// The table's `mapping`, looked up once.
    mapping: Option<TableMapping>,
    source: Arc<str>,
    pending: Pending,
    /// Global index of the first record of the request in flight.
    in_flight: Option<u64>,
}

/// What a request task hands back.
struct Sent {
    table: DbTable,
    req: Request,
    ids: Vec<String>,
    records: Vec<u8>,
    answer: Answer,
}

/// The running sink, made by [`HttpSink::start`] (or the config's
/// `SinkBuilder::start`), driven through [`Sink`].
pub struct HttpSink {
    cfg: Arc<HttpSinkConfig>,
    url: UrlTemplate,
    client: Arc<Client>,
    tables: HashMap<DbTable, TableQueue>,
    tasks: JoinSet<Sent>,
    /// Changes ever indexed.
    added: u64,
    acks: AckQueue,
    poison: Poison,
    dead: Option<std::fs::File>,
    journal: Option<Journal>,
    metrics: Metrics,
}

struct Metrics {
    requests: Handle,
    records: Handle,
    dead: Handle,
}

impl HttpSink {
    /// Validates the configuration, builds the client and opens the
    /// dead-letter file. Nothing to cut at the receiver: changes past the
    /// checkpoint are sent again with the same record ids.
    pub async fn start(
        cfg: &HttpSinkConfig,
        _committed: &dyn Committed,
    ) -> Result<HttpSink, SinkError> {
        let fatal = |m: String| {
            let m = format!("http sink {:?}: {m}", cfg.name);
            tracing::error!(sink = %cfg.name, fatal = true, "{m}");
            SinkError::Fatal(m)
        };
        cfg.validate()?;
        let url = UrlTemplate::parse(&cfg.url).map_err(|e| fatal(format!("url: {e}")))?;
        let name = cfg.name.as_str();
        let client = Client::new(cfg, HTTP_RETRIES.with(name), HTTP_BUDGET_LEFT.with(name))
            .map_err(fatal)?;
        let dead = match (&cfg.on_error, &cfg.dead_letter) {
            (OnError::DeadLetter, Some(p)) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        fatal(format!(
                            "cannot open the dead-letter file {}: {e}",
                            p.display()
                        ))
                    })?,
            ),
            _ => None,
        };
        let log = cfg.request_log_path();
        let journal = Journal::open(&log).map_err(|e| {
            fatal(format!(
                "cannot open the request log {} (request_log): {e}",
                log.display()
            ))
        })?;
        metrics::register(METRICS);
        if let Some(b) = cfg.daily_budget {
            HTTP_BUDGET_LEFT.with(name).set(b as f64);
        }
        tracing::info!(sink = %cfg.name, url = %cfg.url, format = ?cfg.format, "http sink started");
        Ok(HttpSink {
            cfg: Arc::new(cfg.clone()),
            url,
            client: Arc::new(client),
            tables: HashMap::new(),
            tasks: JoinSet::new(),
            added: 0,
            acks: AckQueue::new(),
            poison: Poison::new(),
            dead,
            journal: Some(journal),
            metrics: Metrics {
                requests: HTTP_REQUESTS.with(name),
                records: HTTP_RECORDS.with(name),
                dead: HTTP_DEAD_LETTERS.with(name),
            },
        })
    }

    fn fatal(&self, msg: impl std::fmt::Display) -> SinkError {
        let m = format!("http sink {:?}: {msg}", self.cfg.name);
        tracing::error!(sink = %self.cfg.name, fatal = true, "{m}");
        SinkError::Fatal(m)
    }

    /// The queue of the event's table, made on its first change.
    fn queue_for(&mut self, ev: &ChangeEvent) -> Result<&mut TableQueue, SinkError> {
        let k = (ev.source().db.clone(), ev.source().table.clone());
        if !self.tables.contains_key(&k) {
            let mapping = self.cfg.mapping_for(&k.0, &k.1).cloned();
            let module = mapping.as_ref().and_then(|m| m.module.as_deref());
            if self.url.needs_module() && module.is_none() {
                return Err(self.fatal(format_args!(
                    "url {:?} uses {{module}} but table {}.{} has no module: add [sinks.mapping.\"{}.{}\"] module = \"...\" \
                     (or leave the table out with [source] exclude)",
                    self.cfg.url, k.0, k.1, k.0, k.1
                )));
            }
            let url = self.url.render(&ev.source().name, &k.0, &k.1, module);
            let q = TableQueue {
                url,
                mapping,
                source: ev.source().name.clone(),
                pending: Pending::default(),
                in_flight: None,
            };
            self.tables.insert(k.clone(), q);
        }
        #[allow(clippy::expect_used)] // present, or inserted just above
        let q = self.tables.get_mut(&k).expect("inserted above");
        Ok(q)
    }

    /// Encodes every change of `batch` into its table's pending request,
    /// sending requests that are full.
    async fn add_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let cfg = self.cfg.clone();
        let shape = Shape {
            format: cfg.format,
            id_field: &cfg.id_field,
            op_field: &cfg.op_field,
        };
        for rec in &batch.records {
            let Record::Change(ev) = rec else {
                continue; // schema changes are not sent
            };
            let index = self.added;
            self.added += 1;
            let id = record_id(ev);
            let old = (cfg.format == Format::Rows)
                .then(|| old_key_delete(ev))
                .flatten();
            if let Some(del) = &old {
                self.add_record(shape, del, format!("{id}:old"), index)
                    .await?;
            }
            self.add_record(shape, ev, id, index).await?;
        }
        Ok(())
    }

    /// Appends one record (change number `index`) to its table's pending
    /// request; sends the request once full.
    async fn add_record(
        &mut self,
        shape: Shape<'_>,
        ev: &ChangeEvent,
        id: String,
        index: u64,
    ) -> Result<(), SinkError> {
        let (max_records, max_bytes) = (self.cfg.batch_records, self.cfg.batch_bytes);
        let (until, ended) = self.journal.as_ref().map_or((None, false), |j| {
            (j.earlier_end(&id).map(str::to_string), j.ended_at(&id))
        });
        let TableQueue {
            pending: p,
            mapping,
            ..
        } = self.queue_for(ev)?;
        let mark = p.records.len();
        if !p.ids.is_empty() {
            p.records.push(b',');
        }
        if !write_record(&mut p.records, shape, ev, &id, mapping.as_ref()) {
            p.records.truncate(mark);
            return Ok(());
        }
        if p.ids.is_empty() {
            p.first = index;
            p.since = Some(Instant::now());
            p.until = until;
        }
        let ends = ended || p.until.as_deref() == Some(id.as_str());
        p.ids.push(id);
        if ends || p.ids.len() >= max_records || p.records.len() >= max_bytes {
            let k = (ev.source().db.clone(), ev.source().table.clone());
            self.send_table(&k).await?;
        }
        Ok(())
    }

    /// Sends table `k`'s pending request, first waiting for its request in
    /// flight and for a free slot.
    async fn send_table(&mut self, k: &DbTable) -> Result<(), SinkError> {
        while self.tables[k].in_flight.is_some() || self.tasks.len() >= self.cfg.concurrency {
            self.settle_next().await?;
        }
        self.spawn(k);
        Ok(())
    }

    /// Starts the request of table `k`'s pending records (if any).
    fn spawn(&mut self, k: &DbTable) {
        #[allow(clippy::expect_used)] // `k` names a table queue_for created
        let q = self.tables.get_mut(k).expect("known table");
        if q.pending.ids.is_empty() {
            return;
        }
        let p = std::mem::take(&mut q.pending);
        q.in_flight = Some(p.first);
        let (Some(first), Some(last)) = (p.ids.first(), p.ids.last()) else {
            return; // checked non-empty above
        };
        if let Some(j) = &mut self.journal {
            if let Err(e) = j.note(first, last) {
                tracing::warn!(sink = %self.cfg.name, "cannot write the request log, replays after a crash may carry new idempotency keys: {e}");
                self.journal = None;
            }
        }
        let key = idempotency_key(&q.source, first, last);
        let req = Request {
            url: q.url.clone(),
            body: body(&p.records, self.cfg.wrap.as_deref(), &self.cfg.extra),
            key,
        };
        let client = self.client.clone();
        let table = k.clone();
        self.tasks.spawn(async move {
            let answer = client.deliver(&req).await;
            Sent {
                table,
                req,
                ids: p.ids,
                records: p.records,
                answer,
            }
        });
    }

    /// Starts requests for tables that may send now: all pending ones when
    /// `all`, else those full or lingering; as slots allow.
    fn start_ready(&mut self, all: bool) {
        let linger = Duration::from_millis(self.cfg.linger_ms);
        let mut ready: Vec<(Instant, DbTable)> = self
            .tables
            .iter()
            .filter(|(_, q)| q.in_flight.is_none() && !q.pending.ids.is_empty())
            // A replayed request waits for its earlier end (or a flush).
            .filter(|(_, q)| all || q.pending.until.is_none())
            .filter_map(|(k, q)| {
                let since = q.pending.since?;
                (all || since.elapsed() >= linger).then(|| (since, k.clone()))
            })
            .collect();
        ready.sort();
        for (_, k) in ready {
            if self.tasks.len() >= self.cfg.concurrency {
                break;
            }
            self.spawn(&k);
        }
    }

    /// Waits for one request to end and settles it.
    async fn settle_next(&mut self) -> Result<(), SinkError> {
        let Some(done) = self.tasks.join_next().await else {
            return Ok(());
        };
        let sent = done.map_err(|e| self.fatal(format_args!("request task failed: {e}")))?;
        self.settle(sent)
    }

    /// Settles requests that already ended, without waiting.
    fn settle_ended(&mut self) -> Result<(), SinkError> {
        while let Some(done) = self.tasks.try_join_next() {
            let sent = done.map_err(|e| self.fatal(format_args!("request task failed: {e}")))?;
            self.settle(sent)?;
        }
        Ok(())
    }

    fn settle(&mut self, sent: Sent) -> Result<(), SinkError> {
        match &sent.answer {
            Answer::Delivered => {
                self.metrics.requests.inc();
                self.metrics.records.add(sent.ids.len() as u64);
            }
            Answer::Refused { status, body } => self.refused(&sent, *status, body)?,
            Answer::Fatal(m) => return Err(self.fatal(m)),
        }
        if let Some(q) = self.tables.get_mut(&sent.table) {
            q.in_flight = None;
        }
        self.acks.settle(self.durable());
        Ok(())
    }

    /// Dead-letters a refused request (fsync'd) or stops, per `on_error`.
    fn refused(&mut self, sent: &Sent, status: u16, answer: &str) -> Result<(), SinkError> {
        #[allow(clippy::expect_used)] // a request is sent only with records in it
        let (first, last) = (&sent.ids[0], sent.ids.last().expect("not empty"));
        if self.cfg.on_error == OnError::Stop {
            return Err(self.fatal(format_args!(
                "{} {} answered HTTP {status}: {answer}; request {} with {} records ({first} .. {last}). \
                 Fix the receiver, the mapping or the data, or set on_error = \"dead_letter\" to set refused requests aside",
                self.cfg.method,
                sent.req.url,
                sent.req.key,
                sent.ids.len()
            )));
        }
        let mut records = Vec::with_capacity(sent.records.len() + 2);
        records.push(b'[');
        records.extend_from_slice(&sent.records);
        records.push(b']');
        let records: serde_json::Value = serde_json::from_slice(&records).unwrap_or_default();
        let line = serde_json::json!({
            "ts_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            "sink": self.cfg.name,
            "url": sent.req.url,
            "idempotency_key": sent.req.key,
            "status": status,
            "response": answer,
            "record_ids": sent.ids,
            "records": records,
        });
        // A Value prints as compact JSON (what to_vec wrote), infallibly.
        let mut out = line.to_string().into_bytes();
        out.push(b'\n');
        let path = self.cfg.dead_letter.clone().unwrap_or_default();
        let Some(f) = self.dead.as_mut() else {
            // Opened at start whenever on_error = dead_letter.
            return Err(self.fatal(format_args!(
                "the dead-letter file {} is not open",
                path.display()
            )));
        };
        if let Err(e) = f.write_all(&out).and_then(|_| f.sync_data()) {
            return Err(self.fatal(format_args!(
                "cannot write the dead-letter file {}: {e}",
                path.display()
            )));
        }
        self.metrics.dead.add(sent.ids.len() as u64);
        tracing::warn!(sink = %self.cfg.name, url = %sent.req.url, status, records = sent.ids.len(), first = %first,
            file = %path.display(), "request refused by the receiver written to the dead-letter file");
        Ok(())
    }

    /// Every change below this index is settled.
    fn durable(&self) -> u64 {
        self.tables
            .values()
            .flat_map(|q| {
                [
                    q.in_flight,
                    (!q.pending.ids.is_empty()).then_some(q.pending.first),
                ]
            })
            .flatten()
            .min()
            .unwrap_or(self.added)
    }

    /// Sends everything pending and waits until all of it is settled.
    async fn drain(&mut self) -> Result<(), SinkError> {
        loop {
            self.start_ready(true);
            if self.tasks.is_empty() {
                break;
            }
            self.settle_next().await?;
        }
        self.acks.settle(self.durable());
        Ok(())
    }

    /// Stops the sink for good with `why`; returns the first failure.
    fn stop(&mut self, why: SinkError) -> SinkError {
        self.tasks.abort_all();
        self.poison.fail(why, &mut self.acks)
    }
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        let ack = self.poison.admit(ack)?;
        if let Err(e) = self.add_batch(&batch).await {
            let first = self.stop(e);
            ack.fail(first.clone());
            return Err(first);
        }
        self.acks.push(self.added, ack);
        let r = self.settle_ended().map(|()| {
            self.start_ready(false);
            self.acks.settle(self.durable());
        });
        r.map_err(|e| self.stop(e))
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.poison.check()?;
        self.drain().await.map_err(|e| self.stop(e))
    }
}

rowstream_api::sink_builder!(HttpSinkConfig => HttpSink);
