//! Schema statements of a snapshot: each database's `SHOW CREATE DATABASE`
//! and each table's `SHOW CREATE TABLE`, which become `Record::SchemaChange`s
//! (`super::schema_record`) placed before the table's rows, so every sink
//! (and the file backup, which restore reads into an empty server) gets the
//! definitions the rows belong to.
//!
//! Invariants:
//! - the statements are read on the worker connection that reads the
//!   table's first chunk, inside its consistent-snapshot transaction, after
//!   that transaction has opened the table: the transaction then holds the
//!   table's metadata lock until it ends, so no DDL can change the table
//!   between the definition and the rows this worker reads;
//! - the records are part of the table's first chunk (its "transaction",
//!   ended by the chunk marker), so they are durable exactly when that chunk
//!   is: a resumed snapshot skips them with the chunk, or reads both again;
//! - they carry `source.snapshot` = "true" (like the rows of the snapshot:
//!   a reader tells a snapshot's definition from binlog DDL, which has
//!   "false"), `source.gtid` = "", `file` = "", `pos` = 0, `ts_ms` and
//!   `sequence` of the cut, `source.db` and `databaseName` = the database,
//!   and `source.table` = the table for a CREATE TABLE ("" for CREATE
//!   DATABASE, as for binlog DDL).

use mysql_async::prelude::Queryable;

use super::rows::{quote_ident, SnapTable};
use crate::source::SourceError;

/// A statement to emit: the table it defines ("" for a database) and its text.
pub(crate) struct Statement {
    pub(crate) table: String,
    pub(crate) ddl: String,
}

/// The statements that open table `t`'s first chunk: its database's CREATE
/// DATABASE when `with_db`, then its CREATE TABLE. `conn` is the
/// connection (and transaction) that reads the chunk's rows next.
pub(crate) async fn table_statements(
    conn: &mut mysql_async::Conn,
    t: &SnapTable,
    with_db: bool,
) -> Result<Vec<Statement>, SourceError> {
    // Opening the table takes its metadata lock for the rest of the
    // transaction; SHOW CREATE alone may not keep it.
    conn.query_drop(format!("SELECT 1 FROM {} LIMIT 0", t.sql_name()))
        .await?;
    let mut out = Vec::with_capacity(2);
    if with_db {
        let ddl = show_create(conn, "DATABASE", &quote_ident(&t.db), &t.label()).await?;
        out.push(Statement {
            table: String::new(),
            ddl,
        });
    }
    let ddl = show_create(conn, "TABLE", &t.sql_name(), &t.label()).await?;
    out.push(Statement {
        table: t.table.to_string(),
        ddl,
    });
    Ok(out)
}

/// The statement of `SHOW CREATE <kind> <name>` (its second column).
async fn show_create(
    conn: &mut mysql_async::Conn,
    kind: &str,
    name: &str,
    label: &str,
) -> Result<String, SourceError> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_first(format!("SHOW CREATE {kind} {name}"))
        .await?;
    let (_, ddl) = row.ok_or_else(|| {
        SourceError::Fatal(format!(
            "snapshot: SHOW CREATE {kind} returned nothing for {label}"
        ))
    })?;
    String::from_utf8(ddl).map_err(|_| {
        SourceError::Fatal(format!(
            "snapshot: SHOW CREATE {kind} of {label} is not UTF-8"
        ))
    })
}
