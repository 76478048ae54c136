//! The heartbeat: a task that upserts rowstream's row `(name, seq, ts)` in
//! the heartbeat table on the source every interval (noting the local
//! instant of each sequence number in the [`LagBoard`]), and the scan that
//! finds those rows in the stream ([`HeartbeatRows::scan`]): the newest
//! sequence of a batch goes with its acks, and unless `deliver` is set the
//! rows are taken out of the batch before the sinks see it (that is where
//! they are filtered: in `session::dispatch`, before any sink encodes).
//!
//! Invariants:
//! - a heartbeat transaction still passes through the pipeline (its GTID is
//!   in the batch's executed set), so the checkpoint advances while the
//!   captured tables are idle;
//! - a batch the sinks see stays consistent: removing rows shifts every
//!   commit boundary after them, and a transaction left with no rows loses
//!   its commit entry (like a transaction of a table not captured);
//! - the writer never stops the service: errors are logged (with the grant
//!   to add when it is one) and retried;
//! - it stops writing as soon as the service is asked to stop: a heartbeat
//!   committed while the pipeline drains would be a transaction the final
//!   checkpoint does not cover (`status` one behind after a clean stop).

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use rowstream_api::{Commit, Record, Value};
use tokio::sync::watch;

use super::lag::LagBoard;
use crate::config::HeartbeatConfig;
use crate::source::conn::ConnOpts;

/// Which rows are heartbeats, and whether sinks get them.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatRows {
    pub db: String,
    pub table: String,
    pub deliver: bool,
}

/// What the pipeline observes besides acks: the lag board, the heartbeat rows.
pub(crate) struct Observe {
    pub board: Arc<LagBoard>,
    pub heartbeat: Option<HeartbeatRows>,
    /// The open transaction's rows between batches (reset per session).
    pub carry: std::sync::Mutex<Carry>,
}

impl Observe {
    /// No heartbeat; a board for `names` with the default health bounds.
    #[cfg(test)]
    pub fn none(names: Vec<String>) -> Observe {
        Observe {
            board: Arc::new(LagBoard::new(names, Default::default(), false)),
            heartbeat: None,
            carry: Default::default(),
        }
    }
}

impl HeartbeatRows {
    pub fn new(cfg: &HeartbeatConfig) -> Option<HeartbeatRows> {
        let (db, table) = cfg.db_table()?;
        Some(HeartbeatRows {
            db: db.to_string(),
            table: table.to_string(),
            deliver: cfg.deliver,
        })
    }

    /// The newest heartbeat sequence among `records`; removes the heartbeat
    /// rows (fixing `commits`) unless `deliver`. `carry` holds the rows of
    /// the transaction still open at the end of the previous batch (a
    /// transaction's rows and its commit may come in different batches).
    pub fn scan(
        &self,
        records: &mut Vec<Record>,
        commits: &mut Vec<Commit>,
        carry: &mut Carry,
    ) -> Option<u64> {
        let is_hb = |r: &Record| match r {
            Record::Change(ev) => {
                &*ev.source().table == self.table.as_str() && &*ev.source().db == self.db.as_str()
            }
            _ => false,
        };
        let mut newest = None;
        for r in records.iter().filter(|r| is_hb(r)) {
            if let Record::Change(ev) = r {
                newest = newest.max(seq_of(ev.after_row()));
            }
        }
        if self.deliver {
            return newest;
        }
        if newest.is_none() && carry.hb == 0 {
            // Nothing to take out; only track the open transaction's rows.
            let last = commits.last().map_or(0, |c| c.end.min(records.len()));
            if commits.is_empty() {
                carry.rows += records.len() as u64;
            } else {
                *carry = Carry {
                    rows: (records.len() - last) as u64,
                    hb: 0,
                };
            }
            return None;
        }
        // removed_before[i]: heartbeat rows among records[..i].
        let mut removed_before = Vec::with_capacity(records.len() + 1);
        let mut n = 0;
        removed_before.push(0);
        for r in records.iter() {
            n += usize::from(is_hb(r));
            removed_before.push(n);
        }
        let mut start = 0;
        commits.retain_mut(|c| {
            let end = c.end.min(records.len());
            let rows = carry.rows + (end - start.min(end)) as u64;
            let hb = carry.hb + (removed_before[end] - removed_before[start.min(end)]) as u64;
            *carry = Carry::default();
            start = end;
            c.end = end - removed_before[end];
            // A transaction of heartbeat rows only: nothing of it reaches the sinks.
            !(hb > 0 && hb == rows && c.events == rows)
        });
        let tail = records.len() - start.min(records.len());
        carry.rows += tail as u64;
        carry.hb +=
            (removed_before[records.len()] - removed_before[start.min(records.len())]) as u64;
        records.retain(|r| !is_hb(r));
        newest
    }
}

/// The rows of the transaction open at the end of the last batch scanned.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Carry {
    rows: u64,
    hb: u64,
}

/// The `seq` column of a heartbeat row image.
fn seq_of(row: Option<rowstream_api::RowRef<'_>>) -> Option<u64> {
    let row = row?;
    let i = row.columns.iter().position(|c| &**c == "seq")?;
    match row.values.get(i)? {
        Value::UInt(v) => Some(*v),
        Value::Int(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Writes the heartbeat row every interval until `stop` turns true (or the
/// task is aborted).
pub(crate) async fn write_loop(
    cfg: HeartbeatConfig,
    opts: ConnOpts,
    name: String,
    board: Arc<LagBoard>,
    mut stop: watch::Receiver<bool>,
) {
    // Config validation refuses anything else; should it not, no heartbeat beats the panic.
    let Some((db, table)) = cfg.db_table() else {
        tracing::error!(table = %cfg.table, "heartbeat: table is not `db.table`; no heartbeats");
        return;
    };
    let (db, table) = (db.to_string(), table.to_string());
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut conn: Option<mysql_async::Conn> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if conn.is_none() {
            match connect(&opts, &db, &table).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "heartbeat: cannot connect to the source; lag keeps growing until it can");
                    }
                    failing = true;
                    continue;
                }
            }
        }
        n += 1;
        let seq = board.heartbeat_seq(n);
        board.issued(seq);
        let Some(c) = conn.as_mut() else { continue };
        let sql = format!(
            "INSERT INTO `{db}`.`{table}` (name, seq, ts) VALUES (?, ?, NOW(6)) \
             ON DUPLICATE KEY UPDATE seq = ?, ts = NOW(6)"
        );
        let t = std::time::Instant::now();
        match c.exec_drop(sql, (name.as_str(), seq, seq)).await {
            Ok(()) => {
                crate::metrics::HEARTBEAT_WRITE.observe(t.elapsed());
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, table = %cfg.table, "heartbeat write failed{}", grant_hint(&e, &db, &table));
                }
                failing = true;
                if !matches!(e, mysql_async::Error::Server(_)) {
                    conn = None;
                }
            }
        }
    }
}

/// Connects and creates the table when missing (a failure to create is
/// only logged: the table may exist and the account lack CREATE).
async fn connect(
    opts: &ConnOpts,
    db: &str,
    table: &str,
) -> Result<mysql_async::Conn, mysql_async::Error> {
    let mut c = mysql_async::Conn::new(opts.mysql_async_opts()).await?;
    let ddl = [
        format!("CREATE DATABASE IF NOT EXISTS `{db}`"),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`{table}` (name VARCHAR(64) NOT NULL PRIMARY KEY, \
             seq BIGINT UNSIGNED NOT NULL, ts TIMESTAMP(6) NOT NULL)"
        ),
    ];
    for sql in &ddl {
        if let Err(e) = c.query_drop(sql).await {
            tracing::warn!(error = %e, "heartbeat: `{sql}` failed; create the table yourself or GRANT CREATE ON `{db}`.* to the heartbeat account");
            break;
        }
    }
    Ok(c)
}

fn grant_hint(e: &mysql_async::Error, db: &str, table: &str) -> String {
    match e {
        // ER_TABLEACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR
        mysql_async::Error::Server(s) if s.code == 1142 || s.code == 1044 => format!(
            ": GRANT INSERT, UPDATE ON `{db}`.`{table}` TO the heartbeat account ([heartbeat] url)"
        ),
        // ER_NO_SUCH_TABLE
        mysql_async::Error::Server(s) if s.code == 1146 => format!(
            ": the table is missing; GRANT CREATE ON `{db}`.* or create `{db}`.`{table}` (name VARCHAR(64) PRIMARY KEY, seq BIGINT UNSIGNED, ts TIMESTAMP(6))"
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::{ChangeEvent, Flavor, Op, Shared, Snapshot, Source};

    fn ev(db: &str, table: &str, seq: u64) -> Record {
        Record::Change(ChangeEvent {
            op: Op::Update,
            before: None,
            after: Some(vec![Value::String("x".into()), Value::UInt(seq)]),
            ts_ms: 0,
            shared: Arc::new(Shared {
                source: Source {
                    version: "t",
                    connector: Flavor::MySql,
                    name: Arc::from("n"),
                    ts_ms: 0,
                    snapshot: Snapshot::False,
                    db: Arc::from(db),
                    table: Arc::from(table),
                    server_id: 1,
                    gtid: Arc::from("g"),
                    file: Arc::from("f"),
                    pos: 0,
                    sequence: 0,
                },
                primary_key: Arc::from(Vec::new()),
                table: None,
                before_columns: Default::default(),
                after_columns: vec![Arc::from("name"), Arc::from("seq")].into(),
            }),
            row: 0,
            transaction: None,
            overlap: false,
        })
    }

    fn commit(end: usize, events: u64) -> Commit {
        Commit {
            end,
            gtid: Arc::from("g"),
            events,
        }
    }

    #[test]
    fn heartbeat_rows_are_found_and_taken_out() {
        let rows = HeartbeatRows {
            db: "rowstream".into(),
            table: "heartbeat".into(),
            deliver: false,
        };
        // user tx (2 rows), heartbeat tx, user tx (1 row), heartbeat tx.
        let mut records = vec![
            ev("s", "t", 0),
            ev("s", "t", 0),
            ev("rowstream", "heartbeat", 7),
            ev("s", "t", 0),
            ev("rowstream", "heartbeat", 9),
        ];
        let mut commits = vec![commit(2, 2), commit(3, 1), commit(4, 1), commit(5, 1)];
        let mut carry = Carry::default();
        assert_eq!(rows.scan(&mut records, &mut commits, &mut carry), Some(9));
        assert_eq!(records.len(), 3);
        let ends: Vec<(usize, u64)> = commits.iter().map(|c| (c.end, c.events)).collect();
        assert_eq!(ends, vec![(2, 2), (3, 1)]);

        let deliver = HeartbeatRows {
            deliver: true,
            ..rows.clone()
        };
        let mut records = vec![ev("rowstream", "heartbeat", 3)];
        let mut commits = vec![commit(1, 1)];
        assert_eq!(
            deliver.scan(&mut records, &mut commits, &mut carry),
            Some(3)
        );
        assert_eq!((records.len(), commits.len()), (1, 1));
        let mut none = vec![ev("s", "t", 0)];
        assert_eq!(rows.scan(&mut none, &mut commits, &mut carry), None);

        // A heartbeat row in one batch, its commit in the next.
        let mut carry = Carry::default();
        let mut records = vec![ev("s", "t", 0), ev("rowstream", "heartbeat", 11)];
        let mut commits = vec![commit(1, 1)];
        assert_eq!(rows.scan(&mut records, &mut commits, &mut carry), Some(11));
        assert_eq!((records.len(), commits.len()), (1, 1));
        let mut records = vec![ev("s", "t", 0)];
        let mut commits = vec![commit(0, 1), commit(1, 1)];
        assert_eq!(rows.scan(&mut records, &mut commits, &mut carry), None);
        let ends: Vec<(usize, u64)> = commits.iter().map(|c| (c.end, c.events)).collect();
        assert_eq!(
            ends,
            vec![(1, 1)],
            "the heartbeat's commit is gone, the user one kept"
        );
        // A user row split the same way keeps its commit.
        let mut records = vec![ev("s", "t", 0)];
        let mut commits = vec![];
        assert_eq!(rows.scan(&mut records, &mut commits, &mut carry), None);
        let mut records = vec![];
        let mut commits = vec![commit(0, 1)];
        rows.scan(&mut records, &mut commits, &mut carry);
        assert_eq!(commits.len(), 1);
    }
}
