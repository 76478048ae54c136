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
//! the sink: retrying cannot help, the operator must act.
//!
//! Keys: the table's primary key, or the `key_columns` configured for it;
//! a table with neither stops the sink when its first change arrives,
//! naming the table and the option (the sink learns about tables only from
//! their events).

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rowstream_api::metrics::{
    ES_BULK_RETRIES, ES_CONFLICTS_NEWER, ES_DEAD_LETTERS, ES_ITEMS_INDEXED,
};
use rowstream_api::{Ack, Batch, ChangeEvent, Columns, Committed, Record, Sink, SinkError};

use crate::client::{describe_error, Client, Failure};
use crate::config::{ElasticsearchSinkConfig, OnError};
use crate::encode::{index_body, index_name, Action, Bulk};

const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The sink. Build with [`ElasticsearchSink::new`], then drive through [`Sink`].
pub struct ElasticsearchSink {
    cfg: ElasticsearchSinkConfig,
    st: Option<Running>,
}

struct Running {
    client: Client,
    /// (db, table) -> index, for tables whose index is known to exist (or
    /// that the sink does not create).
    indices: HashMap<(Arc<str>, Arc<str>), Arc<str>>,
    /// (db, table) -> the column list the key was resolved for and the key.
    keys: HashMap<(Arc<str>, Arc<str>), (Columns, Arc<[usize]>)>,
    bulk: Bulk,
    /// When the first pending action was added.
    oldest: Option<Instant>,
    /// Actions ever added / ever settled; a batch is acked once settled
    /// reaches the count after its last action.
    added: u64,
    settled: u64,
    acks: VecDeque<(u64, Ack)>,
    dead: Option<std::fs::File>,
    metrics: Metrics,
}

struct Metrics {
    indexed: rowstream_api::metrics::Handle,
    conflicts: rowstream_api::metrics::Handle,
    retries: rowstream_api::metrics::Handle,
    dead: rowstream_api::metrics::Handle,
}

/// How one bulk action ended.
enum Outcome {
    Done,
    Conflict,
    Retry(String),
    Refused(u16, String),
}

impl ElasticsearchSink {
    /// Validates the configuration; connects in `start`.
    pub fn new(cfg: ElasticsearchSinkConfig) -> Result<ElasticsearchSink, crate::ConfigError> {
        cfg.validate()?;
        Ok(ElasticsearchSink { cfg, st: None })
    }

    fn err(&self, fatal: bool, msg: impl std::fmt::Display) -> SinkError {
        let m = format!("elasticsearch sink {:?}: {msg}", self.cfg.name);
        tracing::error!(sink = %self.cfg.name, fatal, "{m}");
        if fatal {
            SinkError::Fatal(m)
        } else {
            SinkError::Transient(m)
        }
    }

    fn backoff(&self, delay: &mut Duration) -> Duration {
        let wait = delay.mul_f64(rand::random::<f64>() * 0.5 + 0.75);
        *delay = (*delay * 2).min(Duration::from_millis(self.cfg.retry_max_ms));
        wait
    }

    /// The index of the event's table, created on first use when configured.
    async fn index_for(&mut self, ev: &ChangeEvent) -> Result<Arc<str>, SinkError> {
        let st = self.st.as_mut().expect("started");
        let k = (ev.source.db.clone(), ev.source.table.clone());
        if let Some(i) = st.indices.get(&k) {
            return Ok(i.clone());
        }
        let index: Arc<str> = index_name(
            &self.cfg.index,
            &ev.source.name,
            &ev.source.db,
            &ev.source.table,
        )
        .into();
        if self.cfg.create_indices {
            let body = match &ev.table {
                Some(meta) => index_body(meta, self.cfg.decimal),
                None => serde_json::json!({}),
            };
            let client = st.client.clone();
            let mut delay = FIRST_RETRY;
            loop {
                match client.create_index(&index, &body).await {
                    Ok(created) => {
                        if created {
                            tracing::info!(sink = %self.cfg.name, index = %index, table = %format_args!("{}.{}", k.0, k.1), "created index");
                        }
                        break;
                    }
                    Err(Failure::Transient(m)) => {
                        tracing::warn!(sink = %self.cfg.name, index = %index, error = %m, "creating the index failed; retrying");
                        tokio::time::sleep(self.backoff(&mut delay)).await;
                    }
                    Err(Failure::Rejected { status, reason }) => {
                        return Err(self.err(
                            true,
                            format_args!(
                                "cannot create index {index:?} for table {}.{}: HTTP {status}: {reason}; \
                                 create it yourself (and set create_indices = false) or fix the sink's permissions",
                                k.0, k.1
                            ),
                        ));
                    }
                }
            }
        }
        let st = self.st.as_mut().expect("started");
        st.indices.insert(k, index.clone());
        Ok(index)
    }

    /// The key columns of the event's table (cached per column list).
    fn key_for(&mut self, ev: &ChangeEvent) -> Result<Arc<[usize]>, SinkError> {
        let Some(row) = ev.after.as_ref().or(ev.before.as_ref()) else {
            return Ok(Arc::from(Vec::new()));
        };
        let st = self.st.as_mut().expect("started");
        let k = (ev.source.db.clone(), ev.source.table.clone());
        if let Some((cols, key)) = st.keys.get(&k) {
            if Arc::ptr_eq(cols, &row.columns) {
                return Ok(key.clone());
            }
        }
        let name = format!("{}.{}", ev.source.db, ev.source.table);
        let key: Arc<[usize]> = match self.cfg.key_columns.get(&name) {
            Some(names) => {
                let mut idx = Vec::with_capacity(names.len());
                for n in names {
                    match row.columns.iter().position(|c| &**c == n.as_str()) {
                        Some(i) => idx.push(i),
                        None => {
                            return Err(self.err(
                                true,
                                format_args!(
                                    "key_columns.{name:?} names column {n:?}, which table {name} does not have (columns: {})",
                                    row.columns.join(", ")
                                ),
                            ))
                        }
                    }
                }
                idx.into()
            }
            None if !ev.primary_key.is_empty() => ev.primary_key.clone(),
            None => {
                return Err(self.err(
                    true,
                    format_args!(
                        "table {name} has no primary key, so its rows have no document id. \
                         Add a primary key, or name columns that identify a row (a unique key of NOT NULL columns) \
                         in the sink's key_columns: [sinks.key_columns] \"{name}\" = [\"col\", ...]"
                    ),
                ))
            }
        };
        let st = self.st.as_mut().expect("started");
        st.keys.insert(k, (row.columns.clone(), key.clone()));
        Ok(key)
    }

    /// Sends the pending actions until every one is settled, then acks the
    /// batches they complete.
    async fn send(&mut self) -> Result<(), SinkError> {
        let st = self.st.as_mut().expect("started");
        if st.bulk.is_empty() {
            return self.ack_settled();
        }
        let client = st.client.clone();
        let n = st.bulk.items.len();
        let mut pending: Vec<usize> = (0..n).collect();
        let mut delay = FIRST_RETRY;
        let mut refused: Vec<(usize, u16, String)> = Vec::new();
        let started = Instant::now();
        loop {
            let st = self.st.as_ref().expect("started");
            let body = if pending.len() == n {
                st.bulk.body.clone()
            } else {
                let mut b = Vec::new();
                for &i in &pending {
                    let it = &st.bulk.items[i];
                    b.extend_from_slice(&st.bulk.body[it.start..it.end]);
                }
                b
            };
            let wait = match client.bulk(body, pending.len()).await {
                Ok(None) => {
                    st.metrics.indexed.add(pending.len() as u64);
                    break;
                }
                Ok(Some(results)) => {
                    let mut again = Vec::new();
                    let mut last_reason = String::new();
                    for (&i, r) in pending.iter().zip(&results) {
                        let action = st.bulk.items[i].action;
                        match outcome(action, r.status, r.error.as_ref()) {
                            Outcome::Done => st.metrics.indexed.inc(),
                            Outcome::Conflict => st.metrics.conflicts.inc(),
                            Outcome::Retry(m) => {
                                again.push(i);
                                last_reason = m;
                            }
                            Outcome::Refused(status, reason) => refused.push((i, status, reason)),
                        }
                    }
                    if again.is_empty() {
                        break;
                    }
                    tracing::warn!(sink = %self.cfg.name, items = again.len(), of = pending.len(), reason = %last_reason, "bulk items not applied; retrying them");
                    pending = again;
                    true
                }
                Err(Failure::Transient(m)) => {
                    tracing::warn!(sink = %self.cfg.name, error = %m, "bulk request failed; retrying");
                    true
                }
                Err(Failure::Rejected { status, reason }) => {
                    let hint = match status {
                        401 => "authentication failed: check the sink's username/password or api_key",
                        403 => "not authorized: grant the sink's user the index, create_index and write privileges on its indices",
                        413 => "the request is too large for the cluster: lower the sink's bulk_bytes (or raise http.max_content_length)",
                        _ => "the cluster refused the bulk request",
                    };
                    return Err(self.err(
                        true,
                        format_args!("POST /_bulk: HTTP {status}: {reason}: {hint}"),
                    ));
                }
            };
            if wait {
                let st = self.st.as_ref().expect("started");
                st.metrics.retries.inc();
                tokio::time::sleep(self.backoff(&mut delay)).await;
            }
        }
        tracing::debug!(sink = %self.cfg.name, actions = n, bytes = self.st.as_ref().map_or(0, |s| s.bulk.body.len()),
            ms = started.elapsed().as_millis() as u64, "bulk request settled");
        if !refused.is_empty() {
            refused.sort_by_key(|r| r.0);
            self.refused(&refused)?;
        }
        let st = self.st.as_mut().expect("started");
        st.settled += n as u64;
        st.bulk.clear();
        st.oldest = None;
        self.ack_settled()
    }

    /// Dead-letters the refused actions (fsync'd) or stops, per `on_error`.
    fn refused(&mut self, refused: &[(usize, u16, String)]) -> Result<(), SinkError> {
        let st = self.st.as_ref().expect("started");
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
                Err(self.err(
                    true,
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
                    serde_json::to_writer(&mut out, &describe(*i, *status, reason))
                        .expect("JSON to memory");
                    out.push(b'\n');
                }
                let path = self.cfg.dead_letter_file.clone().unwrap_or_default();
                let st = self.st.as_mut().expect("started");
                let f = st
                    .dead
                    .as_mut()
                    .expect("dead-letter file open with on_error = dead_letter");
                if let Err(e) = f.write_all(&out).and_then(|_| f.sync_data()) {
                    return Err(self.err(
                        true,
                        format_args!("cannot write the dead-letter file {}: {e}", path.display()),
                    ));
                }
                st.metrics.dead.add(refused.len() as u64);
                tracing::warn!(sink = %self.cfg.name, documents = refused.len(), file = %path.display(),
                    first_reason = %refused[0].2, "documents refused by the cluster written to the dead-letter file");
                Ok(())
            }
        }
    }

    fn ack_settled(&mut self) -> Result<(), SinkError> {
        let st = self.st.as_mut().expect("started");
        while st.acks.front().is_some_and(|(end, _)| *end <= st.settled) {
            let (_, ack) = st.acks.pop_front().expect("checked");
            ack.ack();
        }
        Ok(())
    }

    fn full(&self) -> bool {
        let st = self.st.as_ref().expect("started");
        st.bulk.items.len() >= self.cfg.bulk_docs
            || st.bulk.body.len() >= self.cfg.bulk_bytes
            || st
                .oldest
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(self.cfg.flush_ms))
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

impl ElasticsearchSink {
    /// Builds the client, waits until the cluster answers (retrying with
    /// backoff: a cluster that is down is an outage, not a configuration
    /// error) and opens the dead-letter file. Nothing to cut: actions past
    /// the checkpoint are replayed with the same versions and answer 409.
    pub async fn open_at(&mut self, _committed: &dyn Committed) -> Result<(), SinkError> {
        let client = Client::new(&self.cfg).map_err(|e| self.err(true, e))?;
        let mut delay = FIRST_RETRY;
        let info = loop {
            match client.info().await {
                Ok(i) => break i,
                Err(Failure::Rejected { status, reason }) => {
                    return Err(self.err(
                        true,
                        format_args!(
                            "GET / on {:?}: HTTP {status}: {reason}{}",
                            self.cfg.urls,
                            if status == 401 {
                                ": check the sink's username/password or api_key"
                            } else {
                                ""
                            }
                        ),
                    ))
                }
                Err(Failure::Transient(m)) => {
                    tracing::warn!(sink = %self.cfg.name, urls = ?self.cfg.urls, error = %m, "cluster not reachable; retrying");
                    tokio::time::sleep(self.backoff(&mut delay)).await;
                }
            }
        };
        let dead = match (&self.cfg.on_error, &self.cfg.dead_letter_file) {
            (OnError::DeadLetter, Some(p)) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| {
                        self.err(
                            true,
                            format_args!("cannot open the dead-letter file {}: {e}", p.display()),
                        )
                    })?,
            ),
            _ => None,
        };
        tracing::info!(sink = %self.cfg.name, urls = ?self.cfg.urls, cluster = %info, "elasticsearch sink started");
        let name = self.cfg.name.as_str();
        self.st = Some(Running {
            client,
            indices: HashMap::new(),
            keys: HashMap::new(),
            bulk: Bulk::default(),
            oldest: None,
            added: 0,
            settled: 0,
            acks: VecDeque::new(),
            dead,
            metrics: Metrics {
                indexed: ES_ITEMS_INDEXED.with(name),
                conflicts: ES_CONFLICTS_NEWER.with(name),
                retries: ES_BULK_RETRIES.with(name),
                dead: ES_DEAD_LETTERS.with(name),
            },
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for ElasticsearchSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        if self.st.is_none() {
            ack.fail(SinkError::Fatal("elasticsearch sink not started".into()));
            return Err(self.err(true, "write before start"));
        }
        // On an error the ack is dropped unacknowledged (a failure), as are
        // those of earlier batches still waiting.
        for rec in &batch.records {
            let Record::Change(ev) = rec else {
                continue; // DDL: the mapping of new columns is dynamic.
            };
            let index = self.index_for(ev).await?;
            let key = self.key_for(ev)?;
            let st = self.st.as_mut().expect("started");
            let before = st.bulk.items.len();
            st.bulk.push_change(ev, &index, &key);
            st.added += (st.bulk.items.len() - before) as u64;
            if st.oldest.is_none() && !st.bulk.is_empty() {
                st.oldest = Some(Instant::now());
            }
            if self.full() {
                self.send().await?;
            }
        }
        let st = self.st.as_mut().expect("started");
        st.acks.push_back((st.added, ack));
        if self.full() {
            self.send().await
        } else {
            self.ack_settled()
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.st.is_none() {
            return Ok(());
        }
        self.send().await
    }
}

impl std::fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("cfg", &self.cfg)
            .field("started", &self.st.is_some())
            .finish()
    }
}

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

#[async_trait::async_trait]
impl rowstream_api::SinkBuilder for ElasticsearchSinkConfig {
    fn name(&self) -> &str {
        &self.name
    }

    async fn start(&self, committed: &dyn Committed) -> Result<Box<dyn Sink>, SinkError> {
        let mut sink =
            ElasticsearchSink::new(self.clone()).map_err(|e| SinkError::Fatal(e.to_string()))?;
        sink.open_at(committed).await?;
        Ok(Box::new(sink))
    }
}
