//! What `rowstream verify` asks the servers: a table's chunks (primary-key
//! ranges planned by walking the source's key, as the snapshot does), one
//! checksum per chunk computed by the server, and the rows of a chunk in an
//! order both sides agree on.
//!
//! Invariants:
//! - The per-row hash is deterministic for the same stored row on both
//!   sides of the same flavour: text columns go in as their bytes
//!   (`CAST(.. AS BINARY)`, so no collation or charset conversion takes
//!   part; other types are turned into text by `CONCAT_WS`), NULLs are
//!   told apart from empty strings by an `ISNULL` marker per nullable
//!   column, and the length of every variable-length value is hashed
//!   too (so `'a#','b'` and `'a','#b'` differ). Sessions run with
//!   `time_zone = '+00:00'`, so TIMESTAMPs hash the same whatever the
//!   servers' zones. MySQL JSON is hashed as its normalised text.
//! - The chunk checksum is the row count and the SUM of the per-row CRC32s:
//!   order independent, and (unlike BIT_XOR) two equal rows do not cancel.
//! - Chunks `(lo, hi]` cover the whole key space (the first has no `lo`,
//!   the last no `hi`), so a row only the target has lands in some chunk.
//! - Rows of a chunk are ordered by the binary form of the key (every
//!   column for a table without a primary key), which the client compares
//!   as bytes: the merge never depends on a collation.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value as SqlValue};
use rowstream_api::Flavor;

use crate::source::snapshot::chunk::{key_cmp, next_boundary, Key};
use crate::source::snapshot::rows::{quote_ident, Conv, SnapTable};
use crate::source::SourceError;

/// A table to verify: its source definition and the SQL built from it.
#[derive(Debug)]
pub struct VTable {
    pub def: SnapTable,
    /// Per column: the expression read for it (the column itself, or its
    /// normalised form).
    pub canon: Vec<String>,
    /// The ORDER BY of a chunk's rows: binary forms of the key columns
    /// (of every column without a primary key).
    pub sort: Vec<String>,
    /// The per-row hash.
    pub hash: String,
}

impl VTable {
    pub fn new(def: SnapTable, flavor: Flavor) -> VTable {
        let canon: Vec<String> = def
            .names
            .iter()
            .zip(&def.conv)
            .map(|(n, &c)| canonical(flavor, &quote_ident(n), c))
            .collect();
        let binary = |i: usize| format!("CAST({} AS BINARY)", canon[i]);
        let sort_cols: Vec<usize> = if def.primary_key.is_empty() {
            (0..canon.len()).collect()
        } else {
            def.primary_key.to_vec()
        };
        let sort = sort_cols.iter().map(|&i| binary(i)).collect();
        // NULL markers only where NULL can be (each costs per row).
        let mut marks: Vec<String> = canon
            .iter()
            .zip(&def.meta.nullable)
            .filter(|(_, &null)| null)
            .map(|(c, _)| format!("ISNULL({c})"))
            .collect();
        for (i, c) in canon.iter().enumerate() {
            if variable_length(def.conv[i]) {
                marks.push(format!("LENGTH({c})"));
            }
        }
        // Text goes in as its bytes; other types are converted to text by
        // CONCAT_WS itself, and one binary argument makes the result binary.
        let mut parts: Vec<String> = (0..canon.len())
            .map(|i| match def.conv[i] {
                Conv::String | Conv::Json => binary(i),
                _ => canon[i].clone(),
            })
            .collect();
        if !marks.is_empty() {
            parts.push(format!("CONCAT_WS(',',{})", marks.join(",")));
        }
        let hash = format!("CRC32(CONCAT_WS('#',{}))", parts.join(","));
        VTable {
            def,
            canon,
            sort,
            hash,
        }
    }

    pub fn label(&self) -> String {
        self.def.label()
    }

    /// Whether the table has a primary key (else: one chunk, rows ordered
    /// by every column).
    pub fn keyed(&self) -> bool {
        !self.def.primary_key.is_empty()
    }
}

/// The expression read for a column: JSON as normalised text on MySQL
/// (MariaDB keeps JSON as text and the copy holds the same text), every
/// other column as itself.
fn canonical(flavor: Flavor, col: &str, conv: Conv) -> String {
    match (conv, flavor) {
        (Conv::Json, Flavor::MySql) => format!("CAST({col} AS CHAR CHARACTER SET utf8mb4)"),
        _ => col.to_string(),
    }
}

fn variable_length(conv: Conv) -> bool {
    matches!(
        conv,
        Conv::String | Conv::Bytes | Conv::Json | Conv::Geometry | Conv::Vector | Conv::Decimal
    )
}

/// Rows with key in `(lo, hi]`: a primary-key range.
#[derive(Debug, Clone)]
pub struct Range {
    pub lo: Option<Key>,
    pub hi: Option<Key>,
}

/// ` WHERE <range>` (empty for the whole table) and its parameters.
fn range_where(t: &VTable, r: &Range) -> (String, Vec<SqlValue>) {
    let mut params = Vec::new();
    if !t.keyed() {
        return (String::new(), params);
    }
    let cols: Vec<String> = t
        .def
        .primary_key
        .iter()
        .map(|&i| quote_ident(&t.def.names[i]))
        .collect();
    let mut conds = Vec::new();
    if let Some(lo) = &r.lo {
        conds.push(key_cmp(&cols, lo, ">", ">", &mut params));
    }
    if let Some(hi) = &r.hi {
        conds.push(key_cmp(&cols, hi, "<", "<=", &mut params));
    }
    if conds.is_empty() {
        return (String::new(), params);
    }
    (format!(" WHERE {}", conds.join(" AND ")), params)
}

/// A chunk's row count and checksum, as one server computed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub rows: u64,
    pub crc: String,
}

/// The checksum query of a chunk.
pub fn sum_query(t: &VTable, r: &Range) -> (String, Vec<SqlValue>) {
    let (cond, params) = range_where(t, r);
    (
        format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM({}), 0) AS CHAR) FROM {}{cond}",
            t.hash,
            t.def.sql_name()
        ),
        params,
    )
}

/// Computes a chunk's checksum on `conn`.
pub async fn sum(conn: &mut Conn, t: &VTable, r: &Range) -> Result<Sum, SourceError> {
    let (sql, params) = sum_query(t, r);
    let row: Option<(u64, String)> = conn.exec_first(sql, params).await?;
    let (rows, crc) = row.unwrap_or((0, "0".into()));
    Ok(Sum { rows, crc })
}

/// The query streaming a chunk's rows: the sort-key columns (binary), then
/// every column, ordered by the sort key.
pub fn rows_query(t: &VTable, r: &Range) -> (String, Vec<SqlValue>) {
    let (cond, params) = range_where(t, r);
    let order: Vec<String> = (1..=t.sort.len()).map(|i| i.to_string()).collect();
    (
        format!(
            "SELECT {},{} FROM {}{cond} ORDER BY {}",
            t.sort.join(","),
            t.canon.join(","),
            t.def.sql_name(),
            order.join(",")
        ),
        params,
    )
}

/// The next chunk of `t` after `after` (`None`: from the start): its range,
/// and whether it is the table's last.
pub async fn next_chunk(
    conn: &mut Conn,
    t: &VTable,
    after: Option<Key>,
    chunk_rows: u64,
) -> Result<(Range, bool), SourceError> {
    if !t.keyed() {
        return Ok((Range { lo: None, hi: None }, true));
    }
    let hi = next_boundary(conn, &t.def, after.as_ref(), chunk_rows).await?;
    let last = hi.is_none();
    Ok((Range { lo: after, hi }, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_normalised_on_mysql_only() {
        assert_eq!(
            canonical(Flavor::MySql, "`j`", Conv::Json),
            "CAST(`j` AS CHAR CHARACTER SET utf8mb4)"
        );
        assert_eq!(canonical(Flavor::MariaDb, "`j`", Conv::Json), "`j`");
        assert_eq!(canonical(Flavor::MySql, "`n`", Conv::Int), "`n`");
    }
}
