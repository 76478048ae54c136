//! One chunk compared while both servers are live: checksums first, then,
//! if they differ, the rows, streamed from both sides and merged.
//!
//! The live recheck: the source's side of a chunk is read in a consistent
//! snapshot opened just before reading the source's executed GTID set `G`,
//! so the snapshot holds nothing past `G`. Before the target's side is read
//! again, the target must have applied `G` ([`Catchup`], [`caught_up`]). A difference that
//! is only lag then disappears; a chunk (and later a row) is reported only
//! when it differs in every round ([`CHUNK_ROUNDS`], [`ROW_ROUNDS`]),
//! because a row written again between the two reads may differ once more.
//!
//! Invariants:
//! - Memory: the rows of a chunk are streamed and merged one at a time;
//!   only differing rows are kept.
//! - The first checksum round reads the target without waiting (the fast
//!   path of an idle or caught-up copy); every later round waits for `G`
//!   up to `lag_timeout`, and a target that does not catch up is an error,
//!   never a silent pass.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as SqlValue};
use rowstream_api::Flavor;

use super::chunk::{rows_query, sum, Range, Sum, VTable};
use crate::gtid::GtidSet;
use crate::source::query::server_executed;
use crate::source::snapshot::rows::quote_ident;
use crate::source::SourceError;

/// Differing rows printed per table (the fix script holds all).
pub const SHOWN: usize = 1000;

/// Connects and sets the session the checksums rely on.
pub async fn connect(opts: &crate::source::conn::ConnOpts) -> Result<(Conn, Flavor), SourceError> {
    let (mut conn, flavor) = crate::source::query::query_conn(opts).await?;
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await?;
    Ok((conn, flavor))
}

/// Whether `CHECKSUM TABLE .. EXTENDED` gives the same value on both
/// sides (computed at once on both). The server's own whole-table checksum
/// reads stored values without turning them into text, several times
/// faster than the per-row hash; equal values mean equal tables (bar a
/// CRC collision), but a difference says nothing about where (or even
/// whether: column types or row formats that differ change it too).
pub async fn same_table_checksum(
    src: &mut Conn,
    tgt: &mut Conn,
    t: &VTable,
) -> Result<bool, SourceError> {
    let sql = format!("CHECKSUM TABLE {} EXTENDED", t.def.sql_name());
    let (a, b) = tokio::join!(
        src.query_first::<(String, Option<u64>), _>(sql.as_str()),
        tgt.query_first::<(String, Option<u64>), _>(sql.as_str())
    );
    Ok(matches!((a?, b?), (Some((_, Some(x))), Some((_, Some(y)))) if x == y))
}

/// Checksum rounds before a chunk is compared row by row.
pub const CHUNK_ROUNDS: usize = 3;
/// Row-by-row rounds; a row is reported when it differs in all of them.
pub const ROW_ROUNDS: usize = 3;

/// How to tell what the target has applied.
#[derive(Debug, Clone)]
pub enum Catchup {
    /// A rowstream `mysql` sink: `<schema>.progress`, the row of the
    /// highest `seq` of sink `name`.
    Progress { schema: String, name: String },
    /// A native replica: its own executed GTID set.
    Native,
}

impl Catchup {
    pub async fn applied(&self, conn: &mut Conn, flavor: Flavor) -> Result<GtidSet, SourceError> {
        match self {
            Catchup::Progress { schema, name } => {
                let s: Option<String> = conn
                    .exec_first(
                        format!(
                            "SELECT gtid_set FROM {}.progress WHERE name = ? ORDER BY seq DESC LIMIT 1",
                            quote_ident(schema)
                        ),
                        (name.as_str(),),
                    )
                    .await?;
                let s = s.unwrap_or_default();
                GtidSet::parse(flavor, &s)
                    .map_err(|e| SourceError::Fatal(format!("target progress GTID set `{s}`: {e}")))
            }
            Catchup::Native => server_executed(conn, flavor).await,
        }
    }
}

/// What one worker compares with.
pub struct Sides {
    pub src: Conn,
    pub tgt: Conn,
    pub flavor: Flavor,
    pub catchup: Catchup,
    pub lag_timeout: Duration,
}

/// A row that differs: the values read on each side (`None`: the side
/// lacks it).
#[derive(Debug, Clone)]
pub struct Diff {
    pub source: Option<Vec<SqlValue>>,
    pub target: Option<Vec<SqlValue>>,
}

/// The outcome of one chunk.
#[derive(Debug, Default)]
pub struct ChunkResult {
    pub source_rows: u64,
    pub target_rows: u64,
    pub diffs: Vec<Diff>,
    /// The first checksums differed: compared again after waiting for the copy.
    pub rechecked: bool,
}

type SortKey = Vec<Option<Vec<u8>>>;

/// Opens a consistent snapshot on the source and returns the executed set
/// it holds no more than: on MariaDB exactly the snapshot's position (the
/// server reports it, as for the initial snapshot's cut), so a copy is never
/// waited for past what the chunk saw; MySQL reports no such position, so
/// the set read just after opening is an upper bound (a copy that went
/// further may differ once and is rechecked).
async fn snapshot(src: &mut Conn, flavor: Flavor) -> Result<GtidSet, SourceError> {
    src.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await?;
    match flavor {
        Flavor::MariaDb => crate::source::snapshot::cut::mariadb_snapshot_gtid(src).await,
        Flavor::MySql => server_executed(src, flavor).await,
    }
}

async fn end_snapshot(src: &mut Conn) -> Result<(), SourceError> {
    src.query_drop("COMMIT").await?;
    Ok(())
}

/// A chunk's checksum on the source in a snapshot, with its position.
async fn source_sum(
    src: &mut Conn,
    flavor: Flavor,
    t: &VTable,
    r: &Range,
) -> Result<(GtidSet, Sum), SourceError> {
    let g = snapshot(src, flavor).await?;
    let s = sum(src, t, r).await;
    end_snapshot(src).await?;
    Ok((g, s?))
}

impl Sides {
    /// Compares one chunk: checksums, then rows if needed.
    pub async fn chunk(&mut self, t: &VTable, r: &Range) -> Result<ChunkResult, SourceError> {
        let mut last = (
            Sum {
                rows: 0,
                crc: String::new(),
            },
            None,
        );
        for round in 0..CHUNK_ROUNDS {
            let (s, d) = if round == 0 {
                // Both servers at once: no order is needed before a difference.
                let (a, b) = tokio::join!(
                    source_sum(&mut self.src, self.flavor, t, r),
                    sum(&mut self.tgt, t, r)
                );
                (a?.1, b?)
            } else {
                let (g, s) = source_sum(&mut self.src, self.flavor, t, r).await?;
                wait_for(
                    &mut self.tgt,
                    &self.catchup,
                    self.flavor,
                    self.lag_timeout,
                    &g,
                )
                .await?;
                (s, sum(&mut self.tgt, t, r).await?)
            };
            if s == d {
                return Ok(ChunkResult {
                    source_rows: s.rows,
                    target_rows: d.rows,
                    diffs: Vec::new(),
                    rechecked: round > 0,
                });
            }
            last = (s, Some(d));
        }
        let diffs = self.rows(t, r).await?;
        Ok(ChunkResult {
            source_rows: last.0.rows,
            target_rows: last.1.map_or(0, |d| d.rows),
            diffs,
            rechecked: true,
        })
    }

    /// Row rounds: the rows that differ in every round, with the values
    /// of the last.
    async fn rows(&mut self, t: &VTable, r: &Range) -> Result<Vec<Diff>, SourceError> {
        let mut kept: Option<BTreeMap<SortKey, Diff>> = None;
        for _ in 0..ROW_ROUNDS {
            let g = snapshot(&mut self.src, self.flavor).await?;
            let found = self.merge(t, r, &g).await;
            end_snapshot(&mut self.src).await?;
            let found = found?;
            kept = Some(match kept {
                None => found,
                Some(before) => found
                    .into_iter()
                    .filter(|(k, _)| before.contains_key(k))
                    .collect(),
            });
            if kept.as_ref().is_some_and(|k| k.is_empty()) {
                break;
            }
        }
        Ok(kept.unwrap_or_default().into_values().collect())
    }

    /// Streams the chunk from the source's open snapshot and, once the
    /// target has applied `g`, from the target; merges by sort key.
    async fn merge(
        &mut self,
        t: &VTable,
        r: &Range,
        g: &GtidSet,
    ) -> Result<BTreeMap<SortKey, Diff>, SourceError> {
        let (sql, params) = rows_query(t, r);
        let n = t.sort.len();
        let mut src = self.src.exec_iter(sql.as_str(), params.clone()).await?;
        // The source's rows wait on the wire while the target catches up.
        wait_for(
            &mut self.tgt,
            &self.catchup,
            self.flavor,
            self.lag_timeout,
            g,
        )
        .await?;
        let mut tgt = self.tgt.exec_iter(sql.as_str(), params).await?;
        let mut out = BTreeMap::new();
        let mut a = src.next().await?.map(|row| split(row, n));
        let mut b = tgt.next().await?.map(|row| split(row, n));
        loop {
            let ord = match (&a, &b) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            match ord {
                std::cmp::Ordering::Less => {
                    if let Some((k, v)) = a.take() {
                        out.insert(
                            k,
                            Diff {
                                source: Some(v),
                                target: None,
                            },
                        );
                    }
                    a = src.next().await?.map(|row| split(row, n));
                }
                std::cmp::Ordering::Greater => {
                    if let Some((k, v)) = b.take() {
                        out.insert(
                            k,
                            Diff {
                                source: None,
                                target: Some(v),
                            },
                        );
                    }
                    b = tgt.next().await?.map(|row| split(row, n));
                }
                std::cmp::Ordering::Equal => {
                    if let (Some((k, va)), Some((_, vb))) = (a.take(), b.take()) {
                        if va != vb {
                            out.insert(
                                k,
                                Diff {
                                    source: Some(va),
                                    target: Some(vb),
                                },
                            );
                        }
                    }
                    a = src.next().await?.map(|row| split(row, n));
                    b = tgt.next().await?.map(|row| split(row, n));
                }
            }
        }
        drop(tgt);
        drop(src);
        Ok(out)
    }
}

/// Waits until the target has applied `g`.
async fn wait_for(
    tgt: &mut Conn,
    catchup: &Catchup,
    flavor: Flavor,
    timeout: Duration,
    g: &GtidSet,
) -> Result<(), SourceError> {
    if timeout.is_zero() {
        return Ok(());
    }
    let t = Instant::now();
    loop {
        let applied = catchup.applied(tgt, flavor).await?;
        if caught_up(g, &applied, catchup) {
            return Ok(());
        }
        if t.elapsed() >= timeout {
            return Err(SourceError::Fatal(format!(
                "the target did not catch up with the source's {g} within {timeout:?} (it has {}); \
                 is the copy running? (--lag-timeout, --name, --progress-schema)",
                if applied.is_empty() {
                    "applied nothing of the stream since its snapshot yet".to_string()
                } else {
                    applied.to_string()
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a target that holds `applied` has applied everything of `g`.
///
/// A native replica's executed set holds the whole history: plain
/// inclusion. The mysql sink's progress set holds only what it applied
/// since it started (its snapshot's cut is not in it), in source order:
/// on MySQL the copy is caught up when, for every server UUID of `g`, its
/// last applied transaction is at or past `g`'s last (a UUID it never
/// applied anything of is history from before it started); on MariaDB
/// likewise per domain. A sink that has applied nothing of the stream yet
/// (right after its snapshot) is not caught up with anything: its empty set
/// cannot tell the history before its snapshot from the transactions it
/// has still to apply (seen: a verify started just as writes resumed
/// reported the first transactions after the snapshot as differences).
pub fn caught_up(g: &GtidSet, applied: &GtidSet, catchup: &Catchup) -> bool {
    if matches!(catchup, Catchup::Progress { .. }) && applied.is_empty() && !g.is_empty() {
        return false;
    }
    match (catchup, g, applied) {
        (Catchup::Progress { .. }, GtidSet::MySql(g), GtidSet::MySql(a)) => {
            g.iter().all(|(tsid, iv)| {
                let Some((_, have)) = a.iter().find(|(t, _)| *t == tsid) else {
                    return true;
                };
                let last = |iv: &[(u64, u64)]| iv.last().map_or(0, |x| x.1);
                last(iv) <= last(have)
            })
        }
        (Catchup::Progress { .. }, GtidSet::MariaDb(g), GtidSet::MariaDb(a)) => g.iter().all(|x| {
            a.get(x.domain_id)
                .is_none_or(|have| x.seq_no <= have.seq_no)
        }),
        _ => g.is_subset(applied),
    }
}

/// A row of [`rows_query`]: its sort key and its values.
fn split(row: Row, n: usize) -> (SortKey, Vec<SqlValue>) {
    let mut vals = row.unwrap();
    let rest = vals.split_off(n.min(vals.len()));
    let key = vals
        .into_iter()
        .map(|v| match v {
            SqlValue::Bytes(b) => Some(b),
            SqlValue::NULL => None,
            // CAST(.. AS BINARY) always yields bytes or NULL.
            other => Some(format!("{other:?}").into_bytes()),
        })
        .collect();
    (key, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_is_caught_up_by_its_last_transaction_per_uuid() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let v = "4e11fa47-71ca-11e1-9e33-c80aa9429562";
        let set = |s: &str| GtidSet::parse(Flavor::MySql, s).unwrap();
        let sink = Catchup::Progress {
            schema: "rowstream".into(),
            name: "copy".into(),
        };
        // The sink started after 1-305: its set lacks them.
        let applied = set(&format!("{u}:306-1815"));
        assert!(caught_up(&set(&format!("{u}:1-335")), &applied, &sink));
        assert!(caught_up(
            &set(&format!("{u}:1-1815,{v}:1-7")),
            &applied,
            &sink
        ));
        assert!(!caught_up(&set(&format!("{u}:1-1816")), &applied, &sink));
        // Nothing of the stream applied yet: not caught up with anything.
        assert!(!caught_up(&set(&format!("{u}:1-335")), &set(""), &sink));
        // A native replica holds the whole history.
        assert!(!caught_up(
            &set(&format!("{u}:1-335")),
            &applied,
            &Catchup::Native
        ));
        assert!(caught_up(
            &set(&format!("{u}:400-500")),
            &applied,
            &Catchup::Native
        ));
    }
}
