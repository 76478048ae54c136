//! The consistent cut: one read view per worker and the GTID set `G` the
//! stream starts from after the snapshot, and `H`, a set that contains
//! every view.
//!
//! Invariant (what makes snapshot + stream converge): every worker's view
//! contains every transaction of `G`. Then a row not changed after `G` has
//! the same state in every view, and a row changed after `G` ends with its
//! last streamed change, because all snapshot events reach the sinks before
//! the stream events after `G`. When every view is exactly `G` (the locked
//! cut, or MariaDB's matching snapshot positions) `H = G` and no row is
//! delivered twice; otherwise rows changed between `G` and a view are
//! delivered as a snapshot read and again as the change events. Latest
//! wins for sinks that keep the last image; for sinks that check before
//! images (the apply sink) the stream marks the changes of `H` after `G`
//! (`ChangeEvent::overlap`), so `H` must contain every view: exact on
//! MariaDB (each view's reported position), on MySQL `gtid_executed` read
//! after the views are open.
//!
//! Methods, in order of preference:
//! - MariaDB: open the views without a lock; each reports its exact binlog
//!   position (`Binlog_snapshot_file/position`, as a GTID position through
//!   `BINLOG_GTID_POS`). If they agree, that is `G` (no lock
//!   at all). Else `FLUSH TABLES WITH READ LOCK` (RELOAD privilege) just
//!   while opening the views. Without RELOAD: `G` = the smallest reported
//!   position (each view contains it).
//! - MySQL: `FLUSH TABLES WITH READ LOCK` (RELOAD), open the views, read
//!   `@@global.gtid_executed`, `UNLOCK TABLES`: exact. Without RELOAD, or
//!   when the lock cannot be had within `LOCK_WAIT_SECS`: read
//!   `gtid_executed` first, then open the views (MySQL adds a GTID to
//!   `gtid_executed` only after the storage engine commit, so a view opened
//!   later contains it).

use std::time::Instant;

use mysql_async::prelude::Queryable;
use rowstream_api::Flavor;

use crate::gtid::GtidSet;
use crate::source::conn::ConnOpts;
use crate::source::query;
use crate::source::SourceError;

/// How long the cut waits for the global read lock before going lock-free.
const LOCK_WAIT_SECS: u32 = 10;
/// How long a commit may take from the engine commit to its GTID in
/// `gtid_executed` (MySQL), with a wide margin; paid once per cut or resume.
const GTID_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);
/// Lock-free attempts on MariaDB before taking the lock.
const MARIADB_ATTEMPTS: usize = 3;

/// Worker connections in open consistent-snapshot transactions, and `G`.
pub struct Cut {
    pub gtid: GtidSet,
    /// `H`: contains every view (equal to `gtid` when the views are exact).
    pub views: GtidSet,
    pub workers: Vec<mysql_async::Conn>,
    /// How the cut was made, for the log: "mariadb-snapshot-gtid",
    /// "global-read-lock", "lock-free".
    pub method: &'static str,
    /// How long writes were blocked, when a lock was taken.
    pub lock_ms: Option<u64>,
}

/// A connection set up for reading snapshot rows (see `rows` for why).
pub async fn session(opts: &ConnOpts) -> Result<mysql_async::Conn, SourceError> {
    let (mut c, _) = query::query_conn(opts).await?;
    // A worker blocked by backpressure leaves the server waiting to write
    // the rest of its result; it must not time out on that.
    c.query_drop(
        "SET NAMES utf8mb4, time_zone = '+00:00', net_write_timeout = 3600, \
         net_read_timeout = 3600, wait_timeout = 86400",
    )
    .await?;
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await?;
    Ok(c)
}

async fn begin(c: &mut mysql_async::Conn) -> Result<(), SourceError> {
    c.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await?;
    Ok(())
}

/// The exact position of this session's consistent snapshot: MariaDB 10.11
/// reports its binlog file and offset (`Binlog_snapshot_file/position`),
/// which `BINLOG_GTID_POS` turns into the GTID position.
pub(crate) async fn mariadb_snapshot_gtid(
    c: &mut mysql_async::Conn,
) -> Result<GtidSet, SourceError> {
    let rows: Vec<(String, String)> = c.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
    let get = |name: &str| {
        rows.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("Binlog_snapshot_file"), get("Binlog_snapshot_position"))
    else {
        return Err(SourceError::Fatal(
            "snapshot: the server reports no Binlog_snapshot_file/position (is log_bin on?)".into(),
        ));
    };
    let offset: u64 = pos.parse().map_err(|_| {
        SourceError::Fatal(format!(
            "snapshot: the server reports Binlog_snapshot_position `{pos}`, not a number"
        ))
    })?;
    let gtid: Option<Option<String>> = c
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, offset))
        .await?;
    let Some(s) = gtid.flatten() else {
        return Err(SourceError::Fatal(format!(
            "snapshot: BINLOG_GTID_POS({file}, {pos}) is NULL"
        )));
    };
    GtidSet::parse(Flavor::MariaDb, &s)
        .map_err(|e| SourceError::Fatal(format!("BINLOG_GTID_POS({file}, {pos}) = `{s}`: {e}")))
}

/// Opens `threads` views without a lock and no particular position: for a
/// snapshot resumed after a crash (any view now contains the original cut,
/// which the server still holds: checked before). Also returns a set that
/// contains every view (`H`).
pub async fn open_views(
    opts: &ConnOpts,
    flavor: Flavor,
    threads: usize,
) -> Result<(Vec<mysql_async::Conn>, GtidSet), SourceError> {
    let mut out = Vec::with_capacity(threads);
    let mut views = GtidSet::empty(flavor);
    for _ in 0..threads {
        let mut c = session(opts).await?;
        begin(&mut c).await?;
        if flavor == Flavor::MariaDb {
            views.union_with(&mariadb_snapshot_gtid(&mut c).await?);
        }
        out.push(c);
    }
    if flavor == Flavor::MySql {
        views = views_bound(opts, flavor).await?;
    }
    Ok((out, views))
}

/// A set containing every view opened before the call: MySQL adds a GTID
/// to `gtid_executed` just after the engine commit that a view may already
/// see, so the read waits [`GTID_SETTLE`] for such commits to finish.
async fn views_bound(opts: &ConnOpts, flavor: Flavor) -> Result<GtidSet, SourceError> {
    tokio::time::sleep(GTID_SETTLE).await;
    executed_now(opts, flavor).await
}

/// The server's executed set, read on a connection of its own.
async fn executed_now(opts: &ConnOpts, flavor: Flavor) -> Result<GtidSet, SourceError> {
    let mut q = session(opts).await?;
    let g = query::server_executed(&mut q, flavor).await?;
    q.disconnect().await.ok();
    Ok(g)
}

/// Makes the cut (see the module docs for the method per flavour).
pub async fn cut(opts: &ConnOpts, flavor: Flavor, threads: usize) -> Result<Cut, SourceError> {
    let mut workers = Vec::with_capacity(threads);
    for _ in 0..threads {
        workers.push(session(opts).await?);
    }
    if flavor == Flavor::MariaDb {
        for _ in 0..MARIADB_ATTEMPTS {
            let mut positions = Vec::with_capacity(threads);
            for w in workers.iter_mut() {
                begin(w).await?;
                positions.push(mariadb_snapshot_gtid(w).await?);
            }
            if positions.windows(2).all(|p| p[0] == p[1]) {
                let gtid = positions.swap_remove(0);
                return Ok(Cut {
                    views: gtid.clone(),
                    gtid,
                    workers,
                    method: "mariadb-snapshot-gtid",
                    lock_ms: None,
                });
            }
            for w in workers.iter_mut() {
                w.query_drop("ROLLBACK").await?;
            }
        }
    }
    match locked_cut(opts, flavor, &mut workers).await? {
        Some((gtid, lock_ms)) => Ok(Cut {
            views: gtid.clone(),
            gtid,
            workers,
            method: "global-read-lock",
            lock_ms: Some(lock_ms),
        }),
        None => {
            let (gtid, views) = match flavor {
                Flavor::MySql => {
                    let g = executed_now(opts, flavor).await?;
                    for w in workers.iter_mut() {
                        begin(w).await?;
                    }
                    (g, views_bound(opts, flavor).await?)
                }
                Flavor::MariaDb => {
                    let mut positions = Vec::with_capacity(threads);
                    for w in workers.iter_mut() {
                        begin(w).await?;
                        positions.push(mariadb_snapshot_gtid(w).await?);
                    }
                    let mut views = GtidSet::empty(flavor);
                    for p in &positions {
                        views.union_with(p);
                    }
                    (smallest(positions)?, views)
                }
            };
            Ok(Cut {
                gtid,
                views,
                workers,
                method: "lock-free",
                lock_ms: None,
            })
        }
    }
}

/// The position every other one contains.
fn smallest(positions: Vec<GtidSet>) -> Result<GtidSet, SourceError> {
    positions
        .iter()
        .find(|p| positions.iter().all(|o| p.is_subset(o)))
        .cloned()
        .ok_or_else(|| {
            SourceError::Fatal(
                "snapshot: the workers' snapshot positions are not ordered (several GTID domains written concurrently); grant RELOAD so rowstream can take a short global read lock"
                    .into(),
            )
        })
}

/// The locked cut; `None` when the lock is not allowed or not available.
async fn locked_cut(
    opts: &ConnOpts,
    flavor: Flavor,
    workers: &mut [mysql_async::Conn],
) -> Result<Option<(GtidSet, u64)>, SourceError> {
    let mut lock = session(opts).await?;
    lock.query_drop(format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECS}"))
        .await?;
    let t0 = Instant::now();
    if let Err(e) = lock.query_drop("FLUSH TABLES WITH READ LOCK").await {
        match &e {
            // Access denied (no RELOAD) / lock wait timeout.
            mysql_async::Error::Server(s) if matches!(s.code, 1227 | 1045 | 1205) => {
                tracing::warn!(error = %e, "snapshot: no global read lock; using the lock-free cut (rows changed during the cut may be delivered twice)");
                lock.disconnect().await.ok();
                return Ok(None);
            }
            _ => return Err(e.into()),
        }
    }
    let result = async {
        for w in workers.iter_mut() {
            begin(w).await?;
        }
        match flavor {
            Flavor::MySql => query::server_executed(&mut lock, flavor).await,
            Flavor::MariaDb => mariadb_snapshot_gtid(&mut workers[0]).await,
        }
    }
    .await;
    // Unlock whatever happened: writers are blocked until then.
    let unlocked = lock.query_drop("UNLOCK TABLES").await;
    let lock_ms = t0.elapsed().as_millis() as u64;
    lock.disconnect().await.ok();
    let gtid = result?;
    unlocked?;
    Ok(Some((gtid, lock_ms)))
}
