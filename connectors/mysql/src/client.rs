//! The target connection: session settings, the progress table, and the
//! classification of the server's errors into transient and fatal.
//!
//! Invariants kept: every connection runs with the session of [`SESSION`]
//! (set on connect, and again by mysql_async on every reconnect through
//! `init`) and with CLIENT_FOUND_ROWS, so an UPDATE reports the rows it
//! matched, not the rows it changed; the progress table has one row per
//! (sink name, worker), created before any transaction uses it, so every
//! applied transaction's first statement is an UPDATE of an existing row.

use rowstream_api::sink::APPLIED_DDL_MARK;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use rowstream_api::SinkError;

use crate::config::{mask_url, MysqlSinkConfig};
use crate::encode::{ident, qualified};

/// Session settings of every target connection: zero dates and id 0 kept,
/// TIMESTAMP values given in UTC, no foreign key checks (the source already
/// checked them, and parallel or filtered apply would trip them), utf8mb4
/// on the wire (latin1 columns convert on the server), read-committed.
pub const SESSION: &[&str] = &[
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION foreign_key_checks = 0",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
];

/// Which server the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    MySql,
    MariaDb,
}

/// What the target already holds for one sink name: the row of the
/// progress table with the highest `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Dispatch counter of the last applied transaction (0: nothing yet).
    pub seq: u64,
    /// GTID set of every transaction applied (or skipped as filtered out),
    /// in the source's notation; empty when none.
    pub gtid_set: String,
    /// Snapshot whose chunks were applied (0: none).
    pub snapshot_id: u64,
    /// Chunks of `snapshot_id` applied: 1..=chunks_done.
    pub chunks_done: u64,
}

/// How long a connect (TCP, handshake, the first query) may take: the
/// client has no timeout of its own, and a target that accepts but never
/// answers (a black-holed connection) would otherwise hang the sink's start
/// with no log line. Past it the start fails as transient and is retried.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects to the target of `cfg` with the session settings.
pub async fn connect(cfg: &MysqlSinkConfig) -> Result<(Conn, Server), SinkError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_now(cfg))
        .await
        .unwrap_or_else(|_| {
            Err(SinkError::Transient(format!(
                "mysql sink {:?}: connect to {}: no answer within {}s (retrying)",
                cfg.name,
                mask_url(&cfg.url),
                CONNECT_TIMEOUT.as_secs()
            )))
        })
}

async fn connect_now(cfg: &MysqlSinkConfig) -> Result<(Conn, Server), SinkError> {
    let opts = Opts::from_url(&cfg.url).map_err(|e| {
        SinkError::Fatal(format!(
            "mysql sink {:?}: url {}: {e}",
            cfg.name,
            mask_url(&cfg.url)
        ))
    })?;
    let opts = OptsBuilder::from_opts(opts)
        .client_found_rows(true)
        .prefer_socket(false)
        .init(SESSION.to_vec())
        .stmt_cache_size(256);
    let mut conn = Conn::new(opts)
        .await
        .map_err(|e| classify(&cfg.name, "connect", e))?;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(|e| classify(&cfg.name, "connect", e))?;
    let server = match version {
        Some(v) if v.contains("MariaDB") => Server::MariaDb,
        _ => Server::MySql,
    };
    Ok((conn, server))
}

/// `<schema>.progress`.
pub fn progress_table(cfg: &MysqlSinkConfig) -> String {
    qualified(&cfg.progress_schema, "progress")
}

/// Creates the progress schema and table if missing, and this sink's rows
/// for workers `0..workers`.
pub async fn ensure_progress(
    conn: &mut Conn,
    cfg: &MysqlSinkConfig,
    workers: usize,
) -> Result<(), SinkError> {
    let t = progress_table(cfg);
    let fail = |e| classify(&cfg.name, "create the progress table", e);
    conn.query_drop(format!(
        "{APPLIED_DDL_MARK}CREATE DATABASE IF NOT EXISTS {}",
        ident(&cfg.progress_schema)
    ))
    .await
    .map_err(fail)?;
    conn.query_drop(format!(
        "{APPLIED_DDL_MARK}CREATE TABLE IF NOT EXISTS {t} (
           name VARCHAR(255) NOT NULL,
           worker INT NOT NULL,
           seq BIGINT UNSIGNED NOT NULL,
           gtid_set LONGTEXT NOT NULL,
           snapshot_id BIGINT UNSIGNED NOT NULL,
           chunks_done BIGINT UNSIGNED NOT NULL,
           updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
           PRIMARY KEY (name, worker)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    ))
    .await
    .map_err(fail)?;
    for w in 0..workers {
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO {t} (name, worker, seq, gtid_set, snapshot_id, chunks_done)
                 VALUES (?, ?, 0, '', 0, 0)"
            ),
            (cfg.name.as_str(), w as u64),
        )
        .await
        .map_err(fail)?;
    }
    Ok(())
}

/// The progress row with the highest `seq` for this sink (default when the
/// table or the rows do not exist yet).
pub async fn read_progress(conn: &mut Conn, cfg: &MysqlSinkConfig) -> Result<Progress, SinkError> {
    let t = progress_table(cfg);
    let r: Result<Option<(u64, String, u64, u64)>, _> = conn
        .exec_first(
            format!(
                "SELECT seq, gtid_set, snapshot_id, chunks_done FROM {t}
                 WHERE name = ? ORDER BY seq DESC LIMIT 1"
            ),
            (cfg.name.as_str(),),
        )
        .await;
    match r {
        Ok(Some((seq, gtid_set, snapshot_id, chunks_done))) => Ok(Progress {
            seq,
            gtid_set,
            snapshot_id,
            chunks_done,
        }),
        Ok(None) => Ok(Progress::default()),
        // No progress schema or table yet: nothing applied.
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1049 | 1146) => {
            Ok(Progress::default())
        }
        Err(e) => Err(classify(&cfg.name, "read the progress table", e)),
    }
}

/// The statement that records `p` as worker `worker`'s progress: the first
/// statement of every applied transaction.
pub fn progress_update(cfg: &MysqlSinkConfig) -> String {
    format!(
        "UPDATE {} SET seq = ?, gtid_set = ?, snapshot_id = ?, chunks_done = ? \
         WHERE name = ? AND worker = ?",
        progress_table(cfg)
    )
}

/// The parameters of [`progress_update`].
pub fn progress_params(
    cfg: &MysqlSinkConfig,
    p: &Progress,
    worker: u64,
) -> Vec<mysql_async::Value> {
    vec![
        p.seq.into(),
        p.gtid_set.as_str().into(),
        p.snapshot_id.into(),
        p.chunks_done.into(),
        cfg.name.as_str().into(),
        worker.into(),
    ]
}

/// The unique keys (PRIMARY first) of target table `db.table`, as lists of
/// column names in key order; empty when the table has none.
pub async fn unique_keys(
    conn: &mut Conn,
    sink: &str,
    db: &str,
    table: &str,
) -> Result<Vec<Vec<Arc<str>>>, SinkError> {
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
             ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX",
            (db, table),
        )
        .await
        .map_err(|e| classify(sink, "read the target's unique keys", e))?;
    let mut out: Vec<(String, Vec<Arc<str>>)> = Vec::new();
    for (index, column) in rows {
        match out.last_mut() {
            Some((i, cols)) if *i == index => cols.push(column.into()),
            _ => out.push((index, vec![column.into()])),
        }
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Server error code of `e`, if it is one.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Server errors a retry from the checkpoint can get past: deadlock, lock
/// wait timeout, the server shutting down or killing the connection,
/// read-only during a failover.
fn transient_code(code: u16) -> bool {
    matches!(
        code,
        1205 | 1213 | 1053 | 1077 | 1078 | 1079 | 1152 | 1158
            ..=1161 | 1317 | 1927 | 3169 | 1040 | 1203 | 1226 | 2006 | 2013
    )
}

/// The sink error for a failed target operation: connection problems and
/// [`transient_code`]s are transient (the pipeline restarts the sink from
/// the checkpoint, which reads the progress table again); everything else
/// (access denied, unknown table, data the server refuses) is fatal, with
/// the server's message and what to do.
pub fn classify(sink: &str, what: &str, e: mysql_async::Error) -> SinkError {
    match &e {
        mysql_async::Error::Server(s) if transient_code(s.code) => SinkError::Transient(format!(
            "mysql sink {sink:?}: {what}: {} (retrying from the checkpoint)",
            s.message
        )),
        mysql_async::Error::Server(s) => {
            let hint = match s.code {
                1044 | 1045 | 1142 | 1143 | 1227 | 1370 => {
                    ": grant the sink's user the privileges in the README (SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX on the applied databases and the progress schema)"
                }
                1290 | 1792 => ": the target is read-only (read_only / super_read_only): make it writable for this user",
                1153 => ": a row is larger than the target's max_allowed_packet: raise it on the target",
                _ => ": the target refuses this change; fix the target (or the table's definition) and restart",
            };
            SinkError::Fatal(format!(
                "mysql sink {sink:?}: {what}: error {} ({}): {}{hint}",
                s.code, s.state, s.message
            ))
        }
        mysql_async::Error::Url(_) => SinkError::Fatal(format!("mysql sink {sink:?}: {what}: {e}")),
        _ => SinkError::Transient(format!("mysql sink {sink:?}: {what}: {e}")),
    }
}
