//! The Elasticsearch / OpenSearch sink: turns each change into `_bulk`
//! actions (see `encode`), sends them in bounded requests, and acks a batch
//! once every action of it is settled.
//!
//! Data path: `write` resolves each event's index (creating it with a
//! mapping from the column types the first time, if `create_indices`) and
//! document key, appends its actions to the pending bulk body, and sends
//! the body when it holds `bulk_docs` actions or `bulk_bytes` bytes, or its
//! oldest action waited `flush_ms`. `flush` sends whatever is pending. One
//! request is in flight at a time, so acks follow request order: after a
//! request settles, every batch whose last action was in it (or before) is
//! acked, in order.
//!
//! An action is settled when the cluster answers:
//! - 2xx: applied; a delete of a missing document (404) too;
//! - 409 version conflict: the index already holds this version or a newer
//!   one (a replay after a restart): success, counted in
//!   `rowstream_es_conflicts_newer_total`;
//! - 429 or 5xx (or no answer at all): not settled; the failed actions alone
//!   are sent again after a capped exponential backoff with jitter, forever
//!   (the checkpoint does not advance meanwhile);
//! - anything else (mapping error, `_id` too long): refused for its content.
//!   `on_error = "dead_letter"` appends it to the dead-letter file (fsync'd
//!   before the ack) and counts it; `on_error = "stop"` stops the sink with
//!   the cluster's reason, the batch unacknowledged.
//!
//! A whole request refused with 401/403 (credentials) or another 4xx stops
//! the sink: retrying cannot help, the operator must act. Every stop is
//! `SinkError::Fatal`: the transient cases are waited out here (the one
//! retry loop is `client::until_answered`), never reported.
//!
//! Poison: the first failure stops the sink for good: the acks pending at
//! that moment fail with it, and every later `write`, ack and `flush` fails
//! with the same error (the pipeline restarts or exits; nothing is acked
//! past a failure, so the checkpoint stays before it).
//!
//! Keys: the table's primary key, or the `key_columns` configured for it;
//! a table with neither stops the sink when its first change arrives,
//! naming the table and the option (the sink learns about tables only from
//! their events).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rowstream_api::metrics::{self, Family, Handle};
use rowstream_api::{
    Ack, AckQueue, Backoff, Batch, ChangeEvent, Columns, Committed, Poison, Record, Sink,
    SinkError, TableTemplate,
};

use crate::client::{describe_error, until_answered, Client, Failure};
use crate::config::{ElasticsearchSinkConfig, OnError};
use crate::encode::{index_body, index_name, Action, Bulk};

const FIRST_RETRY: Duration = Duration::from_millis(100);

pub static ES_ITEMS_INDEXED: Family = Family::counter(
    "rowstream_es_items_indexed_total",
    "Bulk actions (index or delete) the cluster applied.",
    "sink",
);
pub static ES_CONFLICTS_NEWER: Family = Family::counter(
    "rowstream_es_conflicts_newer_total",
    "Bulk actions answered 409 because the index already holds this or a newer version (replays); counted as success.",
    "sink",
);
pub static ES_BULK_RETRIES: Family = Family::counter(
    "rowstream_es_bulk_retries_total",
    "Bulk requests (or their failed items) retried after an unreachable node, 429 or 5xx.",
    "sink",
);
pub static ES_DEAD_LETTERS: Family = Family::counter(
    "rowstream_es_dead_letters_total",
    "Documents the cluster refused for their content, written to the dead-letter file.",
    "sink",
);
/// This sink's metric families, registered with the service's registry on start.
pub static METRICS: &[&Family] = &[
    &ES_ITEMS_INDEXED,
    &ES_CONFLICTS_NEWER,
    &ES_BULK_RETRIES,
    &ES_DEAD_LETTERS,
];

/// A table as `(db, table)`.
type DbTable = (Arc<str>, Arc<str>);

/// The running sink, made by [`ElasticsearchSink::start`] (or the config's
/// `SinkBuilder::start`), driven through [`Sink`].
pub struct ElasticsearchSink {
    cfg: ElasticsearchSinkConfig,
    index: TableTemplate,
    client: Client,
    /// (db, table) -> index, for tables whose index is known to exist (or
    /// that the sink does not create).
    indices: HashMap<DbTable, Arc<str>>,
    /// (db, table) -> the column list the key was resolved for and the key.
    keys: HashMap<DbTable, (Columns, Arc<[usize]>)>,
    bulk: Bulk,
    /// When the first pending action was added.
    oldest: Option<Instant>,
    /// Actions ever added / ever settled; a batch is acked once settled
    /// reaches the count after its last action.
    added: u64,
    settled: u64,
    acks: AckQueue,
    poison: Poison,
    dead: Option<std::fs::File>,
    metrics: Metrics,
}

struct Metrics {
    indexed: Handle,
    conflicts: Handle,
    retries: Handle,
    dead: Handle,
}

/// How one bulk action ended.
enum Outcome {
    Done,
    Conflict,
    Retry(String),
    Refused(u16, String),
}

impl ElasticsearchSink {
    /// Validates the configuration, builds the client, waits until the
    /// cluster answers (retrying with backoff: a cluster that is down is an
    /// outage, not a configuration error) and opens the dead-letter file.
    /// Nothing to cut: actions past the checkpoint are replayed with the
    /// same versions and answer 409.
    pub async fn start(
        cfg: &ElasticsearchSinkConfig,
        _committed: &dyn Committed,
    ) -> Result<ElasticsearchSink, SinkError> {
        let fatal = |m: String| {
            let m = format!("elasticsearch sink {:?}: {m}", cfg.name);
            tracing::error!(sink = %cfg.name, fatal = true, "{m}");
            SinkError::Fatal(m)
        };
        cfg.validate()?;
        let index = cfg.index_template().map_err(|e| fatal(e.to_string()))?;
        let client = Client::new(cfg).map_err(fatal)?;
        let mut backoff = Backoff::new(FIRST_RETRY, Duration::from_millis(cfg.retry_max_ms));
        let what = format!("GET / on {:?} (cluster not reachable)", cfg.urls);
        let info = until_answered(&cfg.name, &what, &mut backoff, None, || client.info())
            .await
            .map_err(|(status, reason)| {
                fatal(format!(
                    "GET / on {:?}: HTTP {status}: {reason}{}",
                    cfg.urls,
                    if status == 401 {
                        ": check the sink's username/password or api_key"
                    } else {
                        ""
                    }
                ))
            })?;
        let dead = match (&cfg.on_error, &cfg.dead_letter_file) {
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
        tracing::info!(sink = %cfg.name, urls = ?cfg.urls, cluster = %info, "elasticsearch sink started");
        metrics::register(METRICS);
        let name = cfg.name.as_str();
        Ok(ElasticsearchSink {
            cfg: cfg.clone(),
            index,
            client,
            indices: HashMap::new(),
            keys: HashMap::new(),
            bulk: Bulk::default(),
            oldest: None,
            added: 0,
            settled: 0,
            acks: AckQueue::new(),
            poison: Poison::new(),
            dead,
            metrics: Metrics {
                indexed: ES_ITEMS_INDEXED.with(name),
                conflicts: ES_CONFLICTS_NEWER.with(name),
                retries: ES_BULK_RETRIES.with(name),
                dead: ES_DEAD_LETTERS.with(name),
            },
        })
    }

    fn fatal(&self, msg: impl std::fmt::Display) -> SinkError {
        let m = format!("elasticsearch sink {:?}: {msg}", self.cfg.name);
        tracing::error!(sink = %self.cfg.name, fatal = true, "{m}");
        SinkError::Fatal(m)
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(FIRST_RETRY, Duration::from_millis(self.cfg.retry_max_ms))
    }

    /// The index of the event's table, created on first use when configured.
    async fn index_for(&mut self, ev: &ChangeEvent) -> Result<Arc<str>, SinkError> {
        let k = (ev.source().db.clone(), ev.source().table.clone());
        if let Some(i) = self.indices.get(&k) {
            return Ok(i.clone());
        }
        let index: Arc<str> = index_name(
            &self.index,
            &ev.source().name,
            &ev.source().db,
            &ev.source().table,
        )
        .into();
        if self.cfg.create_indices {
            let body = match &ev.table() {
                Some(meta) => index_body(meta, self.cfg.decimal),
                None => serde_json::json!({}),
            };
            let what = format!("creating the index {index:?}");
            let client = &self.client;
            let created = until_answered(&self.cfg.name, &what, &mut self.backoff(), None, || client.create_index(&index, &body))
            .await
            .map_err(|(status, reason)| {
                self.fatal(format_args!(
                    "cannot create index {index:?} for table {}.{}: HTTP {status}: {reason}; \
                     create it yourself (and set create_indices = false) or fix the sink's permissions",
                    k.0, k.1
                ))
            })?;
            if created {
                tracing::info!(sink = %self.cfg.name, index = %index, table = %format_args!("{}.{}", k.0, k.1), "created index");
            }
        }
        self.indices.insert(k, index.clone());
        Ok(index)
    }

    /// The key columns of the event's table (cached per column list).
    fn key_for(&mut self, ev: &ChangeEvent) -> Result<Arc<[usize]>, SinkError> {
        let Some(row) = ev.after_row().or(ev.before_row()) else {
            return Ok(Arc::from(Vec::new()));
        };
        let k = (ev.source().db.clone(), ev.source().table.clone());
        if let Some((cols, key)) = self.keys.get(&k) {
            if Arc::ptr_eq(cols, row.columns) {
                return Ok(key.clone());
            }
        }
        let name = format!("{}.{}", ev.source().db, ev.source().table);
        let key: Arc<[usize]> = match self.cfg.key_columns.get(&name) {
            Some(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for n in names {
                    match row.columns.iter().position(|c| &**c == n.as_str()) {
                        Some(i) => idx.push(i),
                        None => {
                            return Err(self.fatal(format_args!(
                                "key_columns.{name:?} names column {n:?}, which table {name} does not have (columns: {})",
                                row.columns.join(", ")
                            )))
                        }
                    }
                }
                idx.into()
            }
            None if !ev.primary_key().is_empty() => ev.shared.primary_key.clone(),
            None => {
                return Err(self.fatal(format_args!(
                    "table {name} has no primary key, so its rows have no document id. \
                     Add a primary key, or name columns that identify a row (a unique key of NOT NULL columns) \
                     in the sink's key_columns: [sinks.key_columns] \"{name}\" = [\"col\", ...]"
                )))
            }
        };
        self.keys.insert(k, (row.columns.clone(), key.clone()));
        Ok(key)
    }

    /// Appends the actions of every change of `batch`, sending whenever the
    /// pending bulk is full.
    async fn add_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for rec in &batch.records {
            let Record::Change(ev) = rec else {
                continue; // DDL: the mapping of new columns is dynamic.
            };
            let index = self.index_for(ev).await?;
            let key = self.key_for(ev)?;
            let before = self.bulk.items.len();
            self.bulk.push_change(ev, &index, &key);
            self.added += (self.bulk.items.len() - before) as u64;
            if self.oldest.is_none() && !self.bulk.is_empty() {
                self.oldest = Some(Instant::now());
            }
            if self.full() {
                self.send().await?;
            }
        }
        Ok(())
    }

    /// Sends the pending actions until every one is settled, then acks the
    /// batches they complete.
    async fn send(&mut self) -> Result<(), SinkError> {
        if self.bulk.is_empty() {
            self.acks.settle(self.settled);
            return Ok(());
        }
        let n = self.bulk.items.len();
        let started = Instant::now();
        let refused = self.send_until_settled().await?;
        tracing::debug!(sink = %self.cfg.name, actions = n, bytes = self.bulk.body.len(),
            ms = started.elapsed().as_millis() as u64, "bulk request settled");
        if !refused.is_empty() {
            self.refused(&refused)?;
        }
        self.settled += n as u64;
        self.bulk.clear();
        self.oldest = None;
        self.acks.settle(self.settled);
        Ok(())
    }

    /// Sends the pending bulk, then again only its actions that were not
    /// applied (429, 5xx), until none is left; returns the actions refused
    /// for their content, in request order.
    async fn send_until_settled(&mut self) -> Result<Vec<(usize, u16, String)>, SinkError> {
        let (bulk, m) = (&self.bulk, &self.metrics);
        let n = bulk.items.len();
        // (actions still to send, actions refused for their content); a
        // lock only because each attempt is a fresh future borrowing it.
        let state = Mutex::new(((0..n).collect::<Vec<usize>>(), Vec::new()));
        let client = &self.client;
        let attempt = || async {
            let body = {
                let st = state.lock().unwrap_or_else(|e| e.into_inner());
                let pending = &st.0;
                if pending.len() == n {
                    bulk.body.clone()
                } else {
                    let mut b = Vec::new();
                    for &i in pending {
                        let it = &bulk.items[i];
                        b.extend_from_slice(&bulk.body[it.start..it.end]);
                    }
                    b
                }
            };
            let sent = state.lock().unwrap_or_else(|e| e.into_inner()).0.len();
            let results = client.bulk(body, sent).await?;
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let (pending, refused) = &mut *st;
            let Some(results) = results else {
                m.indexed.add(pending.len() as u64);
                return Ok(());
            };
            let mut again = Vec::new();
            let mut last_reason = String::new();
            for (&i, r) in pending.iter().zip(&results) {
                match outcome(bulk.items[i].action, r.status, r.error.as_ref()) {
                    Outcome::Done => m.indexed.inc(),
                    Outcome::Conflict => m.conflicts.inc(),
                    Outcome::Retry(m) => {
                        again.push(i);
                        last_reason = m;
                    }
                    Outcome::Refused(status, reason) => refused.push((i, status, reason)),
                }
            }
            if again.is_empty() {
                return Ok(());
            }
            let of = std::mem::replace(pending, again).len();
            Err(Failure::Transient(format!(
                "{} of {of} bulk items not applied: {last_reason}",
                pending.len()
            )))
        };
        let mut backoff = self.backoff();
        let r = until_answered(
            &self.cfg.name,
            "bulk request",
            &mut backoff,
            Some(&m.retries),
            attempt,
        )
        .await;
        let mut refused = state.into_inner().unwrap_or_else(|e| e.into_inner()).1;
        if let Err((status, reason)) = r {
            let hint = match status {
                401 => "authentication failed: check the sink's username/password or api_key",
                403 => "not authorized: grant the sink's user the index, create_index and write privileges on its indices",
                413 => "the request is too large for the cluster: lower the sink's bulk_bytes (or raise http.max_content_length)",
                _ => "the cluster refused the bulk request",
            };
            return Err(self.fatal(format_args!("POST /_bulk: HTTP {status}: {reason}: {hint}")));
        }
        refused.sort_by_key(|r| r.0);
        Ok(refused)
    }

    /// Dead-letters the refused actions (fsync'd) or stops, per `on_error`.
    fn refused(&mut self, refused: &[(usize, u16, String)]) -> Result<(), SinkError> {
        let st = &*self;
        let describe = |i: usize, status: u16, reason: &str| {
            let it = &st.bulk.items[i];
            let action_line = &st.bulk.body[it.start..it.doc];
            let meta: serde_json::Value = serde_json::from_slice(action_line).unwrap_or_default();
            let meta = &meta[match it.action {
                Action::Index => "index",
                Action::Delete => "delete",
            }];
            let doc: serde_json::Value = if it.doc < it.end {
                serde_json::from_slice(&st.bulk.body[it.doc..it.end]).unwrap_or_default()
            } else {
                serde_json::Value::Null
            };
            serde_json::json!({
                "ts_ms": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                "sink": self.cfg.name,
                "index": meta["_index"],
                "id": meta["_id"],
                "action": match it.action { Action::Index => "index", Action::Delete => "delete" },
                "op": it.op.as_str(),
                "version": it.version,
                "gtid": &*it.gtid,
                "status": status,
                "reason": reason,
                "document": doc,
            })
        };
        match self.cfg.on_error {
            OnError::Stop => {
                let (i, status, reason) = &refused[0];
                let d = describe(*i, *status, reason);
                Err(self.fatal(
                    format_args!(
                        "index {} refused document {} (op {}, GTID {}): HTTP {status}: {reason}; {} refused in this request. \
                         Fix the index mapping (or the data), or set on_error = \"dead_letter\" to set such documents aside",
                        d["index"], d["id"], d["op"], d["gtid"], refused.len()
                    ),
                ))
            }
            OnError::DeadLetter => {
                let mut out = Vec::new();
                for (i, status, reason) in refused {
                    // A Value prints as compact JSON (what to_writer wrote), infallibly.
                    out.extend_from_slice(describe(*i, *status, reason).to_string().as_bytes());
                    out.push(b'\n');
                }
                let path = self.cfg.dead_letter_file.clone().unwrap_or_default();
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
                self.metrics.dead.add(refused.len() as u64);
                tracing::warn!(sink = %self.cfg.name, documents = refused.len(), file = %path.display(),
                    first_reason = %refused[0].2, "documents refused by the cluster written to the dead-letter file");
                Ok(())
            }
        }
    }

    fn full(&self) -> bool {
        self.bulk.items.len() >= self.cfg.bulk_docs
            || self.bulk.body.len() >= self.cfg.bulk_bytes
            || self
                .oldest
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(self.cfg.flush_ms))
    }

    /// Stops the sink for good with `why` (see Poison in the module docs);
    /// returns the first failure.
    fn stop(&mut self, why: SinkError) -> SinkError {
        self.poison.fail(why, &mut self.acks)
    }
}

/// Classifies one bulk item result.
fn outcome(action: Action, status: u16, error: Option<&serde_json::Value>) -> Outcome {
    let reason = || {
        error
            .and_then(describe_error)
            .unwrap_or_else(|| format!("HTTP {status}"))
    };
    match status {
        200..=299 => Outcome::Done,
        404 if action == Action::Delete => Outcome::Done,
        409 => Outcome::Conflict,
        429 | 500..=599 | 0 => Outcome::Retry(reason()),
        _ => Outcome::Refused(status, reason()),
    }
}

#[async_trait::async_trait]
impl Sink for ElasticsearchSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        let ack = self.poison.admit(ack)?;
        let r = match self.add_batch(&batch).await {
            Ok(()) => {
                self.acks.push(self.added, ack);
                if self.full() {
                    self.send().await
                } else {
                    self.acks.settle(self.settled);
                    Ok(())
                }
            }
            Err(e) => {
                let first = self.stop(e);
                ack.fail(first.clone());
                return Err(first);
            }
        };
        r.map_err(|e| self.stop(e))
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.poison.check()?;
        self.send().await.map_err(|e| self.stop(e))
    }
}

rowstream_api::sink_builder!(ElasticsearchSinkConfig => ElasticsearchSink);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_outcomes() {
        let e = json!({"type":"mapper_parsing_exception","reason":"failed to parse field [n]"});
        assert!(matches!(outcome(Action::Index, 201, None), Outcome::Done));
        assert!(matches!(outcome(Action::Delete, 404, None), Outcome::Done));
        assert!(matches!(
            outcome(Action::Index, 409, None),
            Outcome::Conflict
        ));
        assert!(matches!(
            outcome(Action::Index, 429, None),
            Outcome::Retry(_)
        ));
        assert!(matches!(
            outcome(Action::Index, 503, None),
            Outcome::Retry(_)
        ));
        match outcome(Action::Index, 400, Some(&e)) {
            Outcome::Refused(400, r) => {
                assert!(r.starts_with("mapper_parsing_exception: failed"), "{r}")
            }
            _ => panic!("a mapping error is a content error"),
        }
        assert!(matches!(
            outcome(Action::Index, 404, None),
            Outcome::Refused(404, _)
        ));
    }
}
