//! Chunks: primary-key ranges of a table, planned by walking the key index
//! and read by keyset queries.
//!
//! A table with a primary key is cut into chunks `(lo, hi]` (the first has
//! no `lo`, the last no `hi`), where each `hi` is the key `chunk_rows` rows
//! after `lo` at planning time. Together the chunks cover the whole key
//! space whatever view reads them, so planning needs no consistent view and
//! rows inserted after planning land in some chunk. A table without a
//! primary key is one chunk read in one pass (streamed, so memory stays
//! bounded; after a crash it is read again from its start).
//!
//! Keys are kept as SQL values and saved in the checkpoint as tagged JSON
//! (`[{"i":5},{"s":"6162"}]`: `i` signed, `u` unsigned, `f` float, `s`
//! bytes in hex, `d` date-time parts, `t` time parts).

use mysql_async::prelude::Queryable;
use mysql_async::Value as SqlValue;
use serde_json::json;

use super::rows::SnapTable;
use crate::source::SourceError;

/// A primary key value, in key column order.
pub type Key = Vec<SqlValue>;

/// One unit of work: rows of `table` with key in `(lo, hi]`.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// 1-based over the whole snapshot; also the chunk marker's number.
    pub n: u64,
    /// Index into the snapshot's table list.
    pub table: usize,
    pub lo: Option<Key>,
    /// `None`: to the end of the table (the table's last chunk).
    pub hi: Option<Key>,
}

/// Tagged JSON of a key (see the module docs).
pub fn key_to_json(k: &[SqlValue]) -> serde_json::Value {
    serde_json::Value::Array(
        k.iter()
            .map(|v| match v {
                SqlValue::NULL => json!(null),
                SqlValue::Int(i) => json!({ "i": i }),
                SqlValue::UInt(u) => json!({ "u": u }),
                SqlValue::Float(f) => json!({ "f": f }),
                SqlValue::Double(d) => json!({ "f": d }),
                SqlValue::Bytes(b) => json!({ "s": hex(b) }),
                SqlValue::Date(y, mo, d, h, mi, s, us) => json!({ "d": [y, mo, d, h, mi, s, us] }),
                SqlValue::Time(neg, d, h, mi, s, us) => json!({ "t": [neg, d, h, mi, s, us] }),
            })
            .collect(),
    )
}

/// The key of [`key_to_json`]; `None` when the JSON is not one.
pub fn key_from_json(v: &serde_json::Value) -> Option<Key> {
    v.as_array()?
        .iter()
        .map(|x| {
            if x.is_null() {
                return Some(SqlValue::NULL);
            }
            let (tag, v) = x.as_object()?.iter().next()?;
            let n = |i: usize| v.get(i).and_then(|x| x.as_u64());
            Some(match tag.as_str() {
                "i" => SqlValue::Int(v.as_i64()?),
                "u" => SqlValue::UInt(v.as_u64()?),
                "f" => SqlValue::Double(v.as_f64()?),
                "s" => SqlValue::Bytes(unhex(v.as_str()?)?),
                "d" => SqlValue::Date(
                    n(0)? as u16,
                    n(1)? as u8,
                    n(2)? as u8,
                    n(3)? as u8,
                    n(4)? as u8,
                    n(5)? as u8,
                    n(6)? as u32,
                ),
                "t" => SqlValue::Time(
                    v.get(0)?.as_bool()?,
                    n(1)? as u32,
                    n(2)? as u8,
                    n(3)? as u8,
                    n(4)? as u8,
                    n(5)? as u32,
                ),
                _ => return None,
            })
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A row comparison of the key columns with `k`, spelled out so both
/// servers' range optimizers use the primary key: with `op` ">" and
/// `last_op` ">", `(k1,..,kn) > (v1,..,vn)` is
/// `(k1 > ?) OR (k1 = ? AND k2 > ?) OR ...`; with "<" and "<=" it is
/// `(k1,..,kn) <= (v1,..,vn)`. Pushes the parameters in placeholder order.
pub fn key_cmp(
    cols: &[String],
    k: &[SqlValue],
    op: &str,
    last_op: &str,
    params: &mut Vec<SqlValue>,
) -> String {
    let mut terms = Vec::with_capacity(cols.len());
    for i in 0..cols.len() {
        let mut t = Vec::with_capacity(i + 1);
        for j in 0..i {
            t.push(format!("{} = ?", cols[j]));
            params.push(k[j].clone());
        }
        let o = if i + 1 == cols.len() { last_op } else { op };
        t.push(format!("{} {o} ?", cols[i]));
        params.push(k[i].clone());
        terms.push(format!("({})", t.join(" AND ")));
    }
    format!("({})", terms.join(" OR "))
}

fn key_cols(t: &SnapTable) -> Vec<String> {
    t.primary_key
        .iter()
        .map(|&i| super::rows::quote_ident(&t.names[i]))
        .collect()
}

/// The query reading one chunk, and its parameters.
pub fn chunk_query(t: &SnapTable, c: &Chunk) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {} FROM {}", t.select_list(), t.sql_name());
    let mut params = Vec::new();
    if t.primary_key.is_empty() {
        return (sql, params);
    }
    let cols = key_cols(t);
    let mut conds = Vec::new();
    if let Some(lo) = &c.lo {
        conds.push(key_cmp(&cols, lo, ">", ">", &mut params));
    }
    if let Some(hi) = &c.hi {
        conds.push(key_cmp(&cols, hi, "<", "<=", &mut params));
    }
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&t.key_list());
    (sql, params)
}

/// The key `chunk_rows` rows after `after` (or from the start): the `hi`
/// of the next chunk; `None` when fewer rows are left (the last chunk).
pub async fn next_boundary(
    conn: &mut mysql_async::Conn,
    t: &SnapTable,
    after: Option<&Key>,
    chunk_rows: u64,
) -> Result<Option<Key>, SourceError> {
    let cols = key_cols(t);
    let mut params = Vec::new();
    let mut sql = format!("SELECT {} FROM {}", t.key_list(), t.sql_name());
    if let Some(a) = after {
        sql.push_str(" WHERE ");
        sql.push_str(&key_cmp(&cols, a, ">", ">", &mut params));
    }
    sql.push_str(&format!(
        " ORDER BY {} LIMIT 1 OFFSET {}",
        t.key_list(),
        chunk_rows.saturating_sub(1)
    ));
    let row: Option<mysql_async::Row> = conn.exec_first(sql, params).await?;
    Ok(row.map(|r| r.unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_json_round_trip() {
        let k = vec![
            SqlValue::Int(-5),
            SqlValue::UInt(u64::MAX),
            SqlValue::Bytes(b"a`b\x00".to_vec()),
            SqlValue::Date(2024, 2, 29, 1, 2, 3, 456),
            SqlValue::Time(true, 1, 2, 3, 4, 5),
            SqlValue::Double(1.5),
        ];
        let j = key_to_json(&k);
        let text = serde_json::to_string(&j).unwrap();
        let back = key_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, k);
        assert_eq!(key_from_json(&json!([{"x": 1}])), None);
    }

    #[test]
    fn composite_key_ranges() {
        let cols = vec!["`a`".to_string(), "`b`".to_string()];
        let mut p = Vec::new();
        let s = key_cmp(
            &cols,
            &[SqlValue::Int(1), SqlValue::Int(2)],
            "<",
            "<=",
            &mut p,
        );
        assert_eq!(s, "((`a` < ?) OR (`a` = ? AND `b` <= ?))");
        assert_eq!(
            p,
            vec![SqlValue::Int(1), SqlValue::Int(1), SqlValue::Int(2)]
        );
    }
}
