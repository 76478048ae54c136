//! Queries a source server answers on an ordinary connection: which flavour
//! it is, its executed GTID set, where `--from` points.
//!
//! Invariants: read-only (these never change server state); a GTID set the
//! server returns that does not parse is a `Config` error naming the text.

use mysql_async::prelude::Queryable;
use rowstream_api::Flavor;

use super::conn::ConnOpts;
use super::SourceError;
use crate::gtid::GtidSet;

/// Connects a query connection and tells the flavour.
pub async fn query_conn(opts: &ConnOpts) -> Result<(mysql_async::Conn, Flavor), SourceError> {
    let conn = tokio::time::timeout(
        opts.read_timeout,
        mysql_async::Conn::new(opts.mysql_async_opts()),
    )
    .await
    .map_err(|_| {
        SourceError::Transient(format!("connect to {}:{}: timed out", opts.host, opts.port))
    })??;
    let (major, _, _) = conn.server_version();
    // mysql_async reports MariaDB's real version (10.x/11.x); MySQL is 5.x, 8.x, 9.x.
    let flavor = if major == 10 || major == 11 {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    };
    Ok((conn, flavor))
}

/// The server's executed set: `@@gtid_executed` (MySQL) or `@@gtid_binlog_pos` (MariaDB).
pub async fn server_executed(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
) -> Result<GtidSet, SourceError> {
    let sql = match flavor {
        Flavor::MySql => "SELECT @@global.gtid_executed",
        Flavor::MariaDb => "SELECT @@global.gtid_binlog_pos",
    };
    let s: Option<String> = conn.query_first(sql).await?;
    parse_set(flavor, &s.unwrap_or_default())
}

/// Resolves `--from`: "latest", "earliest" or a GTID set in the server's notation.
pub async fn resolve_start(
    conn: &mut mysql_async::Conn,
    flavor: Flavor,
    from: &str,
) -> Result<GtidSet, SourceError> {
    match from {
        "latest" => server_executed(conn, flavor).await,
        "earliest" => match flavor {
            // Everything not purged is still in the binlog.
            Flavor::MySql => {
                let s: Option<String> = conn.query_first("SELECT @@global.gtid_purged").await?;
                parse_set(flavor, &s.unwrap_or_default())
            }
            Flavor::MariaDb => {
                let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
                let first: Option<String> = logs.first().and_then(|r| r.get(0));
                let Some(first) = first else {
                    return parse_set(flavor, "");
                };
                let pos: Option<String> = conn
                    .exec_first("SELECT BINLOG_GTID_POS(?, 4)", (first,))
                    .await?;
                parse_set(flavor, &pos.unwrap_or_default())
            }
        },
        set => parse_set(flavor, set),
    }
}

fn parse_set(flavor: Flavor, s: &str) -> Result<GtidSet, SourceError> {
    GtidSet::parse(flavor, s).map_err(|e| SourceError::Config(format!("GTID set `{s}`: {e}")))
}
