//! Change events -> SQL text and binary-protocol parameters; table filters
//! and renames; the conflict log line. Pure, unit-tested.
//!
//! Invariants kept: identifiers are always backquoted (backquotes doubled),
//! values always travel as parameters, never inside SQL text; a parameter
//! carries the exact value of its [`Value`] (see [`param`]); a WHERE clause
//! compares with `<=>` so NULL matches NULL; statements for one shape
//! (table, columns, row count) are byte-identical so the connection's
//! statement cache reuses them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use mysql_async::Value as P;
use rowstream_api::{ColumnType, Row, RowRef, Value};

/// Most rows in one multi-row INSERT.
pub const MAX_ROWS: usize = 1000;
/// A multi-row INSERT is sent once its parameters reach this many bytes.
pub const MAX_BYTES: usize = 4 << 20;
/// The binary protocol's limit on placeholders in one statement.
pub const MAX_PARAMS: usize = 65_535;

/// `name` quoted as an identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `db`.`table` ``.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", ident(db), ident(table))
}

/// `*` matches any run of characters (including none); everything else
/// matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Which source tables are applied, and under which target database.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub rename: BTreeMap<String, String>,
}

impl Filter {
    /// Whether changes of source table `db.table` are applied.
    pub fn allows(&self, db: &str, table: &str) -> bool {
        let name = format!("{db}.{table}");
        (self.include.is_empty() || self.include.iter().any(|g| glob_match(g, &name)))
            && !self.exclude.iter().any(|g| glob_match(g, &name))
    }

    /// Whether statements of source database `db` whose table is unknown
    /// (DDL from the binlog) may concern an applied table: some include
    /// glob's database part matches `db`, and no exclude glob takes the
    /// whole database.
    pub fn allows_db(&self, db: &str) -> bool {
        let db_part = |g: &String| g.split_once('.').map_or(g.clone(), |(d, _)| d.to_string());
        let whole = |g: &String| g.ends_with(".*") && glob_match(&db_part(g), db);
        (self.include.is_empty() || self.include.iter().any(|g| glob_match(&db_part(g), db)))
            && !self.exclude.iter().any(whole)
    }

    /// The target database of source database `db`.
    pub fn target_db<'a>(&'a self, db: &'a str) -> &'a str {
        self.rename.get(db).map_or(db, String::as_str)
    }
}

/// The binary-protocol parameter for `v`: integers as integers (UInt keeps
/// its full range), FLOAT as a 4-byte float (the server widens it exactly
/// and the FLOAT column rounds it back to the same f32), DECIMAL as its
/// exact text, temporal values as the server's text (zero and partial
/// dates, fsp digits and negative TIME survive; TIMESTAMP in UTC, which the
/// session's `time_zone` makes the server read as such), JSON as text,
/// GEOMETRY in the server's internal form (4-byte LE SRID + WKB), VECTOR as
/// little-endian f32 bytes.
pub fn param(v: &Value) -> P {
    match v {
        Value::Null => P::NULL,
        Value::Bool(b) => P::Int(i64::from(*b)),
        Value::Int(i) => P::Int(*i),
        Value::UInt(u) => P::UInt(*u),
        Value::Float(f) => P::Float(*f),
        Value::Double(d) => P::Double(*d),
        Value::Decimal(s) | Value::String(s) => P::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => P::Bytes(b.clone()),
        Value::Date(_) | Value::DateTime(_) | Value::Timestamp { .. } | Value::Time(_) => {
            P::Bytes(temporal_text(v).into_bytes())
        }
        Value::Json(j) => P::Bytes(j.to_string().into_bytes()),
        Value::Geometry { srid, wkb } => {
            let mut b = Vec::with_capacity(4 + wkb.len());
            b.extend_from_slice(&srid.to_le_bytes());
            b.extend_from_slice(wkb);
            P::Bytes(b)
        }
        Value::Vector(xs) => P::Bytes(xs.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

/// The server's text form of a temporal value: the envelope's JSON text
/// (one formatter for the whole project) without quotes, `T` and `Z`.
fn temporal_text(v: &Value) -> String {
    let mut out = Vec::with_capacity(32);
    rowstream_api::json::write_value(&mut out, v);
    let s = String::from_utf8_lossy(&out);
    let s = s.trim_matches('"').trim_end_matches('Z');
    s.replacen('T', " ", 1)
}

/// Approximate size of a value's parameter on the wire, to bound
/// statements (without building the parameter).
pub fn value_len(v: &Value) -> usize {
    9 + match v {
        Value::Decimal(s) | Value::String(s) => s.len(),
        Value::Bytes(b) | Value::Geometry { wkb: b, .. } => b.len() + 4,
        Value::Vector(x) => x.len() * 4,
        // Rare in bulk; an estimate without serializing.
        Value::Json(_) => 256,
        _ => 20,
    }
}

/// How a row image is compared with the target's row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compare<'a> {
    /// Column types of the image, when known.
    pub types: Option<&'a [ColumnType]>,
    /// JSON values compare as JSON (MySQL); else as text (MariaDB, whose
    /// JSON columns are text).
    pub json: bool,
}

/// The placeholder that compares a column of type `ty` with a parameter
/// exactly: MySQL JSON needs `CAST(? AS JSON)` (a string compares as a
/// string), DECIMAL `CAST(? AS DECIMAL(p,s))` (text vs DECIMAL would
/// compare as doubles).
pub fn cmp_placeholder(ty: Option<&ColumnType>, v: &Value, json: bool) -> String {
    match (ty, v) {
        (_, Value::Null) => "?".into(),
        (_, Value::Json(_)) if json => "CAST(? AS JSON)".into(),
        (Some(ColumnType::Decimal { precision, scale }), _) => {
            format!("CAST(? AS DECIMAL({},{}))", (*precision).max(1), scale)
        }
        _ => "?".into(),
    }
}

/// The placeholder that writes a value into a column of type `ty`: MySQL
/// refuses a character string for VECTOR, so its bytes go as BINARY.
pub fn set_placeholder(ty: Option<&ColumnType>, v: &Value) -> &'static str {
    match (ty, v) {
        (Some(ColumnType::Vector), _) | (None, Value::Vector(_)) => "CAST(? AS BINARY)",
        _ => "?",
    }
}

/// The [`set_placeholder`] of each column of rows `rows` (all of one
/// shape): from the column type when known, else from the first non-NULL
/// value of the column.
pub fn set_placeholders<'a>(
    types: Option<&[ColumnType]>,
    ncols: usize,
    rows: impl Iterator<Item = RowRef<'a>> + Clone,
) -> Vec<&'static str> {
    (0..ncols)
        .map(|i| {
            let ty = types.and_then(|t| t.get(i));
            let sample = rows
                .clone()
                .filter_map(|r| r.values.get(i))
                .find(|v| **v != Value::Null)
                .unwrap_or(&Value::Null);
            set_placeholder(ty, sample)
        })
        .collect()
}

/// Whether a column takes part in before-image comparisons: VECTOR values
/// cannot be compared by the server.
pub fn comparable(v: &Value) -> bool {
    !matches!(v, Value::Vector(_))
}

/// How an INSERT treats a row that already exists under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// Plain INSERT: a duplicate key is an error (then checked for conflict).
    No,
    /// `AS new ON DUPLICATE KEY UPDATE c = new.c` (MySQL 8.0.19+).
    Alias,
    /// `ON DUPLICATE KEY UPDATE c = VALUES(c)` (MariaDB).
    Values,
}

/// `INSERT INTO t (cols) VALUES (?,..),(?,..)` for `rows` rows, with the
/// column placeholders `ph` (see [`set_placeholders`]).
pub fn insert_sql(
    table: &str,
    cols: &[Arc<str>],
    ph: &[&str],
    rows: usize,
    upsert: Upsert,
) -> String {
    let mut sql = format!("INSERT INTO {table} (");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&ident(c));
    }
    sql.push_str(") VALUES ");
    let one = format!("({})", ph.join(","));
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    match upsert {
        Upsert::No => {}
        Upsert::Alias => {
            sql.push_str(" AS `rowstream_new` ON DUPLICATE KEY UPDATE ");
            push_assignments(&mut sql, cols, |c| format!("`rowstream_new`.{c}"));
        }
        Upsert::Values => {
            sql.push_str(" ON DUPLICATE KEY UPDATE ");
            push_assignments(&mut sql, cols, |c| format!("VALUES({c})"));
        }
    }
    sql
}

fn push_assignments(sql: &mut String, cols: &[Arc<str>], value: impl Fn(&str) -> String) {
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let c = ident(c);
        let _ = write!(sql, "{c} = {}", value(&c));
    }
}

/// A `WHERE` clause matching `row` on the columns `which` (indices), with
/// its parameters appended to `params`.
pub fn where_clause(row: RowRef<'_>, which: &[usize], cmp: Compare, params: &mut Vec<P>) -> String {
    let mut sql = String::from(" WHERE ");
    let mut first = true;
    for &i in which {
        let (Some(c), Some(v)) = (row.columns.get(i), row.values.get(i)) else {
            continue;
        };
        if !comparable(v) {
            continue;
        }
        if !first {
            sql.push_str(" AND ");
        }
        first = false;
        let ty = cmp.types.and_then(|t| t.get(i));
        let _ = write!(sql, "{} <=> {}", ident(c), cmp_placeholder(ty, v, cmp.json));
        params.push(param(v));
    }
    if first {
        sql.push_str("TRUE");
    }
    sql
}

/// Indices of every column of `row`.
pub fn all_columns(row: RowRef<'_>) -> Vec<usize> {
    (0..row.values.len().min(row.columns.len())).collect()
}

/// `UPDATE t SET every after column WHERE every before column matches`
/// (`LIMIT 1` for a table without primary key, as MySQL's replica does).
pub fn update_sql(
    table: &str,
    before: RowRef<'_>,
    after: RowRef<'_>,
    cmp: Compare,
    has_pk: bool,
) -> (String, Vec<P>) {
    let mut sql = format!("UPDATE {table} SET ");
    let mut params = Vec::with_capacity(after.values.len() + before.values.len());
    for (i, (c, v)) in after.columns.iter().zip(after.values).enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let ty = cmp.types.and_then(|t| t.get(i));
        let _ = write!(sql, "{} = {}", ident(c), set_placeholder(ty, v));
        params.push(param(v));
    }
    match_before(&mut sql, before, cmp, has_pk, &mut params);
    (sql, params)
}

/// `DELETE FROM t WHERE every before column matches` (`LIMIT 1` without
/// primary key).
pub fn delete_sql(table: &str, before: RowRef<'_>, cmp: Compare, has_pk: bool) -> (String, Vec<P>) {
    let mut params = Vec::with_capacity(before.values.len());
    let mut sql = format!("DELETE FROM {table}");
    match_before(&mut sql, before, cmp, has_pk, &mut params);
    (sql, params)
}

/// Appends the WHERE clause matching every column of `before` (`LIMIT 1`
/// without primary key: one of identical rows).
fn match_before(
    sql: &mut String,
    before: RowRef<'_>,
    cmp: Compare,
    has_pk: bool,
    params: &mut Vec<P>,
) {
    sql.push_str(&where_clause(before, &all_columns(before), cmp, params));
    if !has_pk {
        sql.push_str(" LIMIT 1");
    }
}

/// `DELETE FROM t WHERE pk matches` (the row under a key, whatever it holds).
pub fn delete_by_key_sql(table: &str, row: RowRef<'_>, pk: &[usize]) -> (String, Vec<P>) {
    keyed(&format!("DELETE FROM {table}"), "", row, pk)
}

/// `SELECT * FROM t WHERE pk matches LIMIT 1`: the target's row under a key.
pub fn select_by_key_sql(table: &str, row: RowRef<'_>, pk: &[usize]) -> (String, Vec<P>) {
    keyed(&format!("SELECT * FROM {table}"), " LIMIT 1", row, pk)
}

fn keyed(head: &str, tail: &str, row: RowRef<'_>, pk: &[usize]) -> (String, Vec<P>) {
    let mut params = Vec::with_capacity(pk.len());
    let sql = format!(
        "{head}{}{tail}",
        where_clause(row, pk, Compare::default(), &mut params)
    );
    (sql, params)
}

/// `SELECT 1 FROM t WHERE every column matches LIMIT 1`: is this exact row there.
pub fn select_exact_sql(table: &str, row: RowRef<'_>, cmp: Compare) -> (String, Vec<P>) {
    let mut params = Vec::with_capacity(row.values.len());
    let sql = format!(
        "SELECT 1 FROM {table}{} LIMIT 1",
        where_clause(row, &all_columns(row), cmp, &mut params)
    );
    (sql, params)
}

/// The WRITESET keys of one row image: for each key (a list of column
/// names: the primary key and every unique key) whose columns the image
/// has, a hash of the table, the key's position and the values. Two
/// transactions whose key sets are disjoint touch different rows.
pub fn row_keys(table: &str, row: RowRef<'_>, keys: &[Vec<Arc<str>>], out: &mut Vec<u64>) {
    use std::hash::{Hash, Hasher};
    for (k, cols) in keys.iter().enumerate() {
        let idx: Option<Vec<usize>> = cols
            .iter()
            .map(|c| row.columns.iter().position(|rc| rc == c))
            .collect();
        let Some(idx) = idx else { continue };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        table.hash(&mut h);
        k.hash(&mut h);
        let mut buf = Vec::new();
        for i in idx {
            buf.clear();
            if let Some(v) = row.values.get(i) {
                rowstream_api::json::write_value(&mut buf, v);
            }
            buf.hash(&mut h);
        }
        out.push(h.finish());
    }
}

/// The key of a whole table (tables without any key: every change of it
/// conflicts with every other).
pub fn table_key(table: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (table, "whole table").hash(&mut h);
    h.finish()
}

/// `UPDATE t JOIN b ON every column <=> JOIN a ON key = SET every column =
/// a's`: applies the after images in temporary table `a` to the target rows
/// that equal the before images in `b` (both made `LIKE t`).
/// `compared` lists the columns of `cols` the join compares (not VECTOR).
pub fn bulk_update_sql(
    table: &str,
    (tb, ta): (&str, &str),
    cols: &[Arc<str>],
    compared: &[Arc<str>],
    pk: &[Arc<str>],
) -> String {
    // The before images drive the join and reach the target by primary key
    // (eq_ref): with the target first, the optimizer may scan it whole for
    // every chunk (quadratic on a big table).
    let mut sql = format!("UPDATE {tb} AS b STRAIGHT_JOIN {table} AS t ON ");
    push_joined(&mut sql, pk, " AND ", |c| format!("t.{c} = b.{c}"));
    sql.push_str(" AND ");
    push_joined(&mut sql, compared, " AND ", |c| format!("t.{c} <=> b.{c}"));
    let _ = write!(sql, " STRAIGHT_JOIN {ta} AS a ON ");
    push_joined(&mut sql, pk, " AND ", |c| format!("a.{c} = b.{c}"));
    sql.push_str(" SET ");
    push_joined(&mut sql, cols, ", ", |c| format!("t.{c} = a.{c}"));
    sql
}

/// `DELETE t FROM t JOIN b ON every column <=>`: deletes the target rows
/// that equal the before images in temporary table `b`.
/// (The target is named in full: MariaDB does not resolve an alias there.)
pub fn bulk_delete_sql(table: &str, tb: &str, compared: &[Arc<str>]) -> String {
    let mut sql = format!("DELETE {table} FROM {table} JOIN {tb} AS b ON ");
    push_joined(&mut sql, compared, " AND ", |c| {
        format!("{table}.{c} <=> b.{c}")
    });
    sql
}

fn push_joined(sql: &mut String, cols: &[Arc<str>], sep: &str, f: impl Fn(&str) -> String) {
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push_str(sep);
        }
        sql.push_str(&f(&ident(c)));
    }
}

/// A row image as a JSON object, in the envelope's value encoding.
pub fn row_json(row: Option<RowRef<'_>>) -> serde_json::Value {
    let Some(row) = row else {
        return serde_json::Value::Null;
    };
    let mut out = Vec::new();
    rowstream_api::json::write_row(&mut out, row);
    serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
}

/// The primary key of `row` as a JSON object `{col: value}` (the whole row
/// when there is no primary key).
pub fn key_json(row: RowRef<'_>, pk: &[usize]) -> serde_json::Value {
    let which: Vec<usize> = if pk.is_empty() {
        all_columns(row)
    } else {
        pk.to_vec()
    };
    let key = Row {
        columns: which.iter().map(|&i| row.columns[i].clone()).collect(),
        values: which.iter().map(|&i| row.values[i].clone()).collect(),
    };
    row_json(Some(key.as_row_ref()))
}

/// A row read back from the target as a JSON object of the server's text
/// (what the operator compares with the expected image).
pub fn found_json(row: Option<mysql_async::Row>) -> serde_json::Value {
    let Some(row) = row else {
        return serde_json::Value::Null;
    };
    let cols = row.columns();
    let mut m = serde_json::Map::new();
    for (i, c) in cols.iter().enumerate() {
        let v = match row.as_ref(i) {
            None | Some(P::NULL) => serde_json::Value::Null,
            Some(P::Bytes(b)) => String::from_utf8(b.clone()).map_or_else(
                |e| serde_json::Value::String(format!("0x{}", hex(e.as_bytes()))),
                serde_json::Value::String,
            ),
            Some(v) => serde_json::Value::String(v.as_sql(true).trim_matches('\'').to_string()),
        };
        m.insert(c.name_str().into_owned(), v);
    }
    serde_json::Value::Object(m)
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::{Date, DateTime, Time};

    fn row(cols: &[&str], values: Vec<Value>) -> Row {
        Row {
            columns: cols.iter().map(|c| Arc::from(*c)).collect(),
            values,
        }
    }

    #[test]
    fn globs_filters_and_renames() {
        assert!(glob_match("shop.*", "shop.orders"));
        assert!(glob_match("*.orders", "x.orders"));
        assert!(glob_match("s*p.o*s", "shop.orders"));
        assert!(!glob_match("shop.*", "shopx.orders"));
        assert!(glob_match("shop.orders", "shop.orders"));
        let f = Filter {
            include: vec!["shop.*".into()],
            exclude: vec!["shop.audit_*".into(), "tmp.*".into()],
            rename: [("shop".to_string(), "copy".to_string())].into(),
        };
        assert!(f.allows("shop", "orders"));
        assert!(!f.allows("shop", "audit_1"));
        assert!(!f.allows("crm", "orders"));
        assert!(f.allows_db("shop"));
        assert!(!f.allows_db("tmp"));
        assert!(!f.allows_db("crm"));
        assert_eq!(f.target_db("shop"), "copy");
        assert_eq!(f.target_db("crm"), "crm");
    }

    #[test]
    fn values_become_exact_parameters() {
        assert_eq!(param(&Value::UInt(u64::MAX)), P::UInt(u64::MAX));
        assert_eq!(param(&Value::Float(1.1)), P::Float(1.1));
        assert_eq!(param(&Value::Bool(true)), P::Int(1));
        let d = Date {
            year: 2024,
            month: 0,
            day: 0,
        };
        assert_eq!(param(&Value::Date(d)), P::Bytes(b"2024-00-00".to_vec()));
        let dt = DateTime {
            date: Date {
                year: 2024,
                month: 2,
                day: 29,
            },
            hour: 23,
            minute: 5,
            second: 1,
            micros: 120_000,
            fsp: 3,
        };
        assert_eq!(
            param(&Value::DateTime(dt)),
            P::Bytes(b"2024-02-29 23:05:01.120".to_vec())
        );
        let ts = Value::Timestamp {
            secs: 0,
            micros: 0,
            fsp: 0,
        };
        assert_eq!(param(&ts), P::Bytes(b"0000-00-00 00:00:00".to_vec()));
        let ts = Value::Timestamp {
            secs: 1_700_000_000,
            micros: 5,
            fsp: 6,
        };
        assert_eq!(param(&ts), P::Bytes(b"2023-11-14 22:13:20.000005".to_vec()));
        let t = Time {
            negative: true,
            hours: 838,
            minute: 59,
            second: 59,
            micros: 0,
            fsp: 0,
        };
        assert_eq!(param(&Value::Time(t)), P::Bytes(b"-838:59:59".to_vec()));
        let g = Value::Geometry {
            srid: 4326,
            wkb: vec![1, 2],
        };
        assert_eq!(param(&g), P::Bytes(vec![0xe6, 0x10, 0, 0, 1, 2]));
        assert_eq!(
            param(&Value::Vector(vec![1.0])),
            P::Bytes(1f32.to_le_bytes().to_vec())
        );
    }

    #[test]
    fn bulk_statements() {
        let cols: Vec<Arc<str>> = vec!["id".into(), "v".into()];
        assert_eq!(
            bulk_update_sql("T", ("B", "A"), &cols, &cols, &cols[..1]),
            "UPDATE B AS b STRAIGHT_JOIN T AS t ON t.`id` = b.`id` AND t.`id` <=> b.`id` AND t.`v` <=> b.`v` STRAIGHT_JOIN A AS a ON a.`id` = b.`id` SET t.`id` = a.`id`, t.`v` = a.`v`"
        );
        assert_eq!(
            bulk_delete_sql("T", "B", &cols),
            "DELETE T FROM T JOIN B AS b ON T.`id` <=> b.`id` AND T.`v` <=> b.`v`"
        );
    }

    #[test]
    fn writeset_keys() {
        let keys = vec![vec![Arc::from("id")], vec![Arc::from("a"), Arc::from("b")]];
        let r = |id, a| {
            row(
                &["id", "a", "b"],
                vec![Value::Int(id), Value::Int(a), Value::Null],
            )
        };
        let mut k1 = Vec::new();
        row_keys("t", r(1, 5).as_row_ref(), &keys, &mut k1);
        assert_eq!(k1.len(), 2);
        let mut k2 = Vec::new();
        row_keys("t", r(2, 5).as_row_ref(), &keys, &mut k2);
        assert_ne!(k1[0], k2[0], "other primary key");
        assert_eq!(k1[1], k2[1], "same unique key");
        let mut k3 = Vec::new();
        row_keys("u", r(1, 5).as_row_ref(), &keys, &mut k3);
        assert!(k3.iter().all(|k| !k1.contains(k)), "other table");
        assert_ne!(table_key("t"), table_key("u"));
    }

    #[test]
    fn statements() {
        let cols: Vec<Arc<str>> = vec!["id".into(), "n`x".into()];
        assert_eq!(
            insert_sql("`d`.`t`", &cols, &["?", "?"], 2, Upsert::No),
            "INSERT INTO `d`.`t` (`id`, `n``x`) VALUES (?,?),(?,?)"
        );
        assert_eq!(
            insert_sql("`d`.`t`", &cols, &["?", "?"], 1, Upsert::Values),
            "INSERT INTO `d`.`t` (`id`, `n``x`) VALUES (?,?) ON DUPLICATE KEY UPDATE `id` = VALUES(`id`), `n``x` = VALUES(`n``x`)"
        );
        assert!(insert_sql("t", &cols, &["?", "CAST(? AS BINARY)"], 1, Upsert::Alias)
            .ends_with("AS `rowstream_new` ON DUPLICATE KEY UPDATE `id` = `rowstream_new`.`id`, `n``x` = `rowstream_new`.`n``x`"));
        let b = row(
            &["id", "j"],
            vec![Value::Int(1), Value::Json(serde_json::json!({"a":1}))],
        );
        let a = row(&["id", "j"], vec![Value::Int(2), Value::Null]);
        let mysql = Compare {
            types: None,
            json: true,
        };
        let (sql, p) = update_sql("t", b.as_row_ref(), a.as_row_ref(), mysql, false);
        assert_eq!(
            sql,
            "UPDATE t SET `id` = ?, `j` = ? WHERE `id` <=> ? AND `j` <=> CAST(? AS JSON) LIMIT 1"
        );
        assert_eq!(p.len(), 4);
        let (sql, _) = delete_sql("t", b.as_row_ref(), mysql, true);
        assert!(delete_sql("t", b.as_row_ref(), Compare::default(), true)
            .0
            .ends_with("`j` <=> ?"));
        assert_eq!(
            sql,
            "DELETE FROM t WHERE `id` <=> ? AND `j` <=> CAST(? AS JSON)"
        );
        let (sql, p) = select_by_key_sql("t", b.as_row_ref(), &[0]);
        assert_eq!(sql, "SELECT * FROM t WHERE `id` <=> ? LIMIT 1");
        assert_eq!(p, vec![P::Int(1)]);
        assert_eq!(key_json(b.as_row_ref(), &[0]), serde_json::json!({"id": 1}));
    }
}
