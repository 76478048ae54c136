//! `rowstream verify --config FILE --sink NAME` for an Elasticsearch /
//! OpenSearch sink: each captured table against its index, document by
//! document, the row encoded exactly as the sink encodes it (`_id` = the
//! key as a JSON array, `_source` = the row as JSON).
//!
//! One table at a time: the index is scrolled into memory (at most
//! `--max-docs` documents: the limit of this comparison), then the table
//! is streamed in key order and each row looked up and removed; what is
//! left was only in the index. Differences are rechecked live: in a
//! consistent snapshot of the source, at its GTID position `G`, the rows
//! are read again, then, once the service's checkpoint covers `G` (so the
//! sink has acknowledged everything up to it), the documents are fetched
//! again by id (a realtime get); a document is reported only when it
//! differs in [`super::compare::ROW_ROUNDS`] rounds in which its row did
//! not change on the source meanwhile (a hot row gets up to `MAX_ROUNDS`:
//! the index may already hold a change made after `G`).
//!
//! Invariants: read-only on the source and the cluster; memory is one
//! index (bounded by `--max-docs`) plus the differing documents.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as SqlValue};
use rowstream_api::{Flavor, Row, TableFilter};
use rowstream_elasticsearch::client::Client;
use rowstream_elasticsearch::encode::{index_name, write_id};
use rowstream_elasticsearch::read::{get_doc, scroll_all};
use serde_json::Value as Json;

use super::compare::{connect, ROW_ROUNDS, SHOWN};

/// Most recheck rounds for rows that keep changing on the source.
const MAX_ROUNDS: usize = 20;
use crate::config::SinkConfig;
use crate::gtid::GtidSet;
use crate::source::conn::ConnOpts;
use crate::source::query::server_executed;
use crate::source::snapshot::rows::{convert, list_tables, load_table, quote_ident, SnapTable};
use crate::source::SourceError;

/// What this mode takes from the command line.
pub struct Options<'a> {
    /// The source URL; default the config's first source server.
    pub source: Option<&'a str>,
    pub include: &'a [String],
    pub exclude: &'a [String],
    /// 0: do not wait for the checkpoint.
    pub lag_timeout: Duration,
    /// The most documents of one index held in memory.
    pub max_docs: usize,
}

/// A document that differs: its id, the source's document and the index's.
#[derive(Debug, Clone)]
struct Doc {
    id: String,
    source: Option<Json>,
    target: Option<Json>,
}

/// The row as the sink indexes it: its `_id` and its document.
fn encode(t: &SnapTable, vals: Vec<SqlValue>) -> Result<(String, Json), String> {
    let values = vals
        .into_iter()
        .zip(&t.conv)
        .map(|(v, &c)| convert(c, v))
        .collect::<Result<Vec<_>, _>>()?;
    let row = Row {
        columns: t.names.clone(),
        values,
    };
    let mut id = Vec::new();
    write_id(&mut id, row.as_row_ref(), &t.primary_key);
    let mut doc = Vec::new();
    rowstream_api::json::write_row(&mut doc, row.as_row_ref());
    let doc = serde_json::from_slice(&doc).map_err(|e| e.to_string())?;
    Ok((String::from_utf8_lossy(&id).into_owned(), doc))
}

/// A key value of an `_id` array, as a query parameter.
fn param(v: &Json) -> SqlValue {
    match v {
        Json::Null => SqlValue::NULL,
        Json::Bool(b) => SqlValue::Int(i64::from(*b)),
        Json::Number(n) => n
            .as_i64()
            .map(SqlValue::Int)
            .or_else(|| n.as_u64().map(SqlValue::UInt))
            .unwrap_or_else(|| SqlValue::Double(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => SqlValue::Bytes(s.clone().into_bytes()),
        other => SqlValue::Bytes(other.to_string().into_bytes()),
    }
}

/// The source's document of `_id` `id` (`None`: no such row).
async fn source_doc(src: &mut Conn, t: &SnapTable, id: &str) -> Result<Option<Json>, String> {
    let key: Vec<Json> = serde_json::from_str(id).map_err(|e| format!("_id {id}: {e}"))?;
    if key.len() != t.primary_key.len() {
        return Ok(None);
    }
    let conds: Vec<String> = t
        .primary_key
        .iter()
        .map(|&i| format!("{} = ?", quote_ident(&t.names[i])))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        t.select_list(),
        t.sql_name(),
        conds.join(" AND ")
    );
    let row: Option<mysql_async::Row> = src
        .exec_first(sql, key.iter().map(param).collect::<Vec<_>>())
        .await
        .map_err(|e| e.to_string())?;
    match row {
        Some(r) => Ok(Some(encode(t, r.unwrap())?.1)),
        None => Ok(None),
    }
}

/// The service's checkpoint position (`None`: no checkpoint yet).
fn checkpoint(path: &Path, flavor: Flavor) -> Option<GtidSet> {
    let bytes = std::fs::read(path).ok()?;
    let v: Json = serde_json::from_slice(&bytes).ok()?;
    GtidSet::parse(flavor, v["gtid_set"].as_str()?).ok()
}

/// What one table's comparison needs.
struct Ctx<'a> {
    client: &'a Client,
    flavor: Flavor,
    checkpoint: std::path::PathBuf,
    lag_timeout: Duration,
    max_docs: usize,
}

impl Ctx<'_> {
    /// Waits until the checkpoint covers `g`.
    async fn wait_for(&self, g: &GtidSet) -> Result<(), String> {
        if self.lag_timeout.is_zero() {
            return Ok(());
        }
        let t = Instant::now();
        loop {
            if checkpoint(&self.checkpoint, self.flavor).is_some_and(|c| g.is_subset(&c)) {
                return Ok(());
            }
            if t.elapsed() >= self.lag_timeout {
                return Err(format!(
                    "the checkpoint {} did not reach the source's {g} within {:?}; is rowstream running?",
                    self.checkpoint.display(),
                    self.lag_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One table against its index: the documents that differ.
    async fn table(
        &self,
        src: &mut Conn,
        t: &SnapTable,
        index: &str,
    ) -> Result<(u64, u64, Vec<Doc>), String> {
        let mut docs: HashMap<String, Json> = HashMap::new();
        let max = self.max_docs;
        let indexed = scroll_all(self.client, index, 1000, |id, doc| {
            if docs.len() >= max {
                return Err(format!(
                    "index {index} holds more than --max-docs {max} documents"
                ));
            }
            docs.insert(id, doc);
            Ok(())
        })
        .await
        .map_err(|e| format!("index {index}: {e}"))?
        .unwrap_or(0);
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            t.select_list(),
            t.sql_name(),
            t.key_list()
        );
        let mut rows = src.exec_iter(sql, ()).await.map_err(|e| e.to_string())?;
        let mut diffs = Vec::new();
        let mut n = 0u64;
        while let Some(r) = rows.next().await.map_err(|e| e.to_string())? {
            n += 1;
            let (id, doc) = encode(t, r.unwrap())?;
            match docs.remove(&id) {
                Some(d) if d == doc => {}
                target => diffs.push(Doc {
                    id,
                    source: Some(doc),
                    target,
                }),
            }
        }
        drop(rows);
        diffs.extend(docs.into_iter().map(|(id, d)| Doc {
            id,
            source: None,
            target: Some(d),
        }));
        // A row written again during a round proves nothing either way: it
        // gets more rounds (up to MAX_ROUNDS), so a hot row under a live
        // writer is not reported, while a difference that stays put is.
        let mut rounds = 0;
        let mut stable = 0;
        while !diffs.is_empty() && stable < ROW_ROUNDS && rounds < MAX_ROUNDS {
            let (still, moving) = self.recheck(src, t, index, diffs).await?;
            diffs = still;
            rounds += 1;
            if moving {
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else {
                stable += 1;
            }
        }
        Ok((n, indexed, diffs))
    }

    /// One recheck round over `diffs`: those that still differ, and
    /// whether one of their rows changed on the source during the round.
    async fn recheck(
        &self,
        src: &mut Conn,
        t: &SnapTable,
        index: &str,
        diffs: Vec<Doc>,
    ) -> Result<(Vec<Doc>, bool), String> {
        let e = |e: mysql_async::Error| e.to_string();
        src.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(e)?;
        let g = server_executed(src, self.flavor).await;
        let mut fresh = Vec::with_capacity(diffs.len());
        for d in &diffs {
            fresh.push(source_doc(src, t, &d.id).await);
        }
        src.query_drop("COMMIT").await.map_err(e)?;
        let g = g.map_err(|e| e.to_string())?;
        self.wait_for(&g).await?;
        let mut out = Vec::new();
        let mut moving = false;
        for (d, s) in diffs.into_iter().zip(fresh) {
            let source = s?;
            let target = get_doc(self.client, index, &d.id)
                .await
                .map_err(|e| format!("index {index}: {e}"))?;
            if source != target {
                // The document may already hold a change made after `g`.
                moving |= source_doc(src, t, &d.id).await? != source;
                out.push(Doc {
                    id: d.id,
                    source,
                    target,
                });
            }
        }
        Ok((out, moving))
    }
}

/// The report line of a differing document.
fn line(t: &SnapTable, d: &Doc) -> String {
    let kind = match (&d.source, &d.target) {
        (Some(_), Some(_)) => "changed",
        (Some(_), None) => "missing",
        _ => "extra",
    };
    let key: Vec<Json> = serde_json::from_str(&d.id).unwrap_or_default();
    let key: serde_json::Map<String, Json> = t
        .primary_key
        .iter()
        .zip(key)
        .map(|(&i, v)| (t.names[i].to_string(), v))
        .collect();
    let show = |v: &Option<Json>| v.clone().unwrap_or(Json::Null);
    format!(
        "{} {kind} key={} source={} target={}",
        t.label(),
        Json::Object(key),
        show(&d.source),
        show(&d.target)
    )
}

/// `rowstream verify --config FILE --sink NAME`: returns the exit code.
pub async fn run(a: &Options<'_>, config: &Path, sink: &str) -> Result<i32, SourceError> {
    let cfg = crate::config::load(config).map_err(|e| SourceError::Config(e.to_string()))?;
    let es = cfg
        .sinks
        .iter()
        .find_map(|s| match s {
            SinkConfig::Elasticsearch(c) if c.name == sink => Some(c.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            SourceError::Config(format!(
                "{} has no elasticsearch sink named {sink:?}",
                config.display()
            ))
        })?;
    let opts = match a.source {
        Some(u) => ConnOpts::from_url(u)?,
        None => cfg
            .source
            .conn_opts()?
            .into_iter()
            .next()
            .ok_or_else(|| SourceError::Config("the config names no source server".into()))?,
    };
    let (mut src, flavor) = connect(&opts).await?;
    let client = Client::new(&es).map_err(SourceError::Config)?;
    let template = es
        .index_template()
        .map_err(|e| SourceError::Config(e.to_string()))?;
    let captured = cfg.source.filter().map_err(SourceError::Config)?;
    let chosen = TableFilter::new(a.include, a.exclude).map_err(SourceError::Config)?;
    let ctx = Ctx {
        client: &client,
        flavor,
        checkpoint: cfg.checkpoint.dir.join("checkpoint.json"),
        lag_timeout: a.lag_timeout,
        max_docs: a.max_docs,
    };
    let (mut differing, mut tables, mut errors) = (0u64, 0u64, 0u64);
    for (db, table) in list_tables(&mut src).await? {
        if !captured.matches(&db, &table) || !chosen.matches(&db, &table) {
            continue;
        }
        tables += 1;
        let t = load_table(&mut src, &db, &table).await?;
        if t.primary_key.is_empty() {
            println!(
                "table {}: no primary key, not compared (the sink keys documents by it)",
                t.label()
            );
            continue;
        }
        let index = index_name(&template, &cfg.source.name, &db, &table);
        match ctx.table(&mut src, &t, &index).await {
            Ok((rows, docs, diffs)) => {
                for d in diffs.iter().take(SHOWN) {
                    println!("{}", line(&t, d));
                }
                differing += diffs.len() as u64;
                println!(
                    "table {}: {rows} rows, index {index}: {docs} documents, {} differing: {}",
                    t.label(),
                    diffs.len(),
                    if diffs.is_empty() { "ok" } else { "DIFFERS" }
                );
            }
            Err(e) => {
                errors += 1;
                eprintln!("rowstream: verify: {}: {e}", t.label());
            }
        }
    }
    println!("verify: {tables} tables, {differing} differing documents, {errors} errors");
    Ok(if errors > 0 {
        2
    } else if differing > 0 {
        1
    } else {
        0
    })
}
