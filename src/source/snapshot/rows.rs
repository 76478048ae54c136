//! Snapshot rows: table definitions from information_schema and SQL result
//! values (binary protocol) turned into the same [`Value`]s and
//! [`TableMeta`] the binlog path produces for the same columns.
//!
//! Invariants:
//! - for every column type the binlog decoder handles, a snapshot row and a
//!   streamed row image of the same stored row hold equal `Value`s, and the
//!   table's `TableMeta` is equal to the one built from its TABLE_MAP
//!   (checked by `tests/snapshot.rs`, both flavours);
//! - sessions reading rows run with `time_zone = '+00:00'` (TIMESTAMP values
//!   come back in UTC, which is what the binlog stores) and
//!   `character_set_results = utf8mb4` (text arrives as UTF-8 whatever the
//!   column's charset);
//! - a column type we cannot reproduce exactly is an error naming the
//!   table and column, never an approximation.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Value as SqlValue;
use rowstream_api::parse::days_from_civil;
use rowstream_api::{ColumnType, Columns, Date, DateTime, TableMeta, Time, Value};

use crate::source::SourceError;

/// How a result value of one column becomes a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    Int,
    UInt,
    Bool,
    /// BIT(n > 1): big-endian bytes.
    Bit,
    Float,
    Double,
    Decimal,
    String,
    Bytes,
    Date,
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Time {
        fsp: u8,
    },
    Json,
    Geometry,
    Vector,
}

/// One table to snapshot: its columns, conversions and primary key.
#[derive(Debug)]
pub struct SnapTable {
    pub db: Arc<str>,
    pub table: Arc<str>,
    pub names: Columns,
    pub conv: Vec<Conv>,
    /// Shared with every event (types, nullability, primary key).
    pub meta: Arc<TableMeta>,
    /// Primary key column indices in key order; empty: no primary key.
    pub primary_key: Arc<[usize]>,
    /// The server's row count estimate (for progress only).
    pub estimated_rows: u64,
}

impl SnapTable {
    /// `db.table`, for logs and metric labels.
    pub fn label(&self) -> String {
        format!("{}.{}", self.db, self.table)
    }

    /// `` `db`.`table` `` for SQL.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.db), quote_ident(&self.table))
    }

    /// The select list: every column, in table order.
    pub fn select_list(&self) -> String {
        self.names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The primary key columns, quoted, in key order.
    pub fn key_list(&self) -> String {
        self.primary_key
            .iter()
            .map(|&i| quote_ident(&self.names[i]))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `` `name` `` with backticks doubled.
pub fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The base tables of the server, in (schema, name) order.
pub async fn list_tables(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(String, String)>, SourceError> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await?;
    Ok(rows)
}

/// Reads one table's definition.
pub async fn load_table(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<SnapTable, SourceError> {
    type Col = (
        String,
        String,
        String,
        String,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<String>,
    );
    let cols: Vec<Col> = conn
        .exec(
            "SELECT COLUMN_NAME, LOWER(DATA_TYPE), COLUMN_TYPE, IS_NULLABLE, \
             NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_SET_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    if cols.is_empty() {
        return Err(SourceError::Fatal(format!(
            "snapshot: table {db}.{table} has no columns visible to the rowstream user (grant SELECT on it)"
        )));
    }
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    let estimated: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await?;
    let mut names = Vec::with_capacity(cols.len());
    let mut conv = Vec::with_capacity(cols.len());
    let mut types = Vec::with_capacity(cols.len());
    let mut nullable = Vec::with_capacity(cols.len());
    for (name, data_type, column_type, is_nullable, prec, scale, dt_prec, charset) in cols {
        let (c, t) = column_plan(&data_type, &column_type, prec, scale, dt_prec, charset.as_deref())
            .ok_or_else(|| {
                SourceError::Fatal(format!(
                    "snapshot: column {db}.{table}.{name} has type {column_type}, which rowstream cannot snapshot exactly; exclude the table (source.exclude) or use snapshot.mode = \"never\""
                ))
            })?;
        names.push(Arc::<str>::from(name.as_str()));
        conv.push(c);
        types.push(t);
        nullable.push(is_nullable == "YES");
    }
    let primary_key: Arc<[usize]> = pk
        .iter()
        .map(|k| {
            names.iter().position(|n| &**n == k).ok_or_else(|| {
                SourceError::Fatal(format!(
                    "snapshot: primary key column {k} of {db}.{table} not among its columns"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?
        .into();
    let names: Columns = Arc::from(names);
    let meta = Arc::new(TableMeta {
        columns: names.clone(),
        types,
        nullable,
        primary_key: primary_key.clone(),
    });
    Ok(SnapTable {
        db: Arc::from(db),
        table: Arc::from(table),
        names,
        conv,
        meta,
        primary_key,
        estimated_rows: estimated.flatten().unwrap_or(0),
    })
}

/// The conversion and sink type of a column, from information_schema.
/// `None` for a type the snapshot cannot reproduce as the binlog would.
fn column_plan(
    data_type: &str,
    column_type: &str,
    prec: Option<u64>,
    scale: Option<u64>,
    dt_prec: Option<u64>,
    charset: Option<&str>,
) -> Option<(Conv, ColumnType)> {
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let int = |bits: u8| {
        Some((
            if unsigned { Conv::UInt } else { Conv::Int },
            ColumnType::Int { bits, unsigned },
        ))
    };
    let fsp = dt_prec.unwrap_or(0).min(6) as u8;
    let binary = charset.is_none() || charset == Some("binary");
    match data_type {
        "tinyint" => int(8),
        "smallint" => int(16),
        "mediumint" => int(24),
        "int" | "integer" => int(32),
        "bigint" => int(64),
        "year" => Some((Conv::Int, ColumnType::Year)),
        "bit" => {
            let n = prec.unwrap_or(1);
            if n == 1 {
                Some((Conv::Bool, ColumnType::Bool))
            } else {
                // The binlog path only knows the byte width of BIT(n).
                Some((
                    Conv::Bit,
                    ColumnType::Bit {
                        bits: (n.div_ceil(8) * 8) as u16,
                    },
                ))
            }
        }
        "float" => Some((Conv::Float, ColumnType::Float)),
        "double" | "real" => Some((Conv::Double, ColumnType::Double)),
        "decimal" | "numeric" => Some((
            Conv::Decimal,
            ColumnType::Decimal {
                precision: prec? as u8,
                scale: scale.unwrap_or(0) as u8,
            },
        )),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            if binary {
                Some((Conv::Bytes, ColumnType::Bytes))
            } else {
                Some((Conv::String, ColumnType::String))
            }
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Some((Conv::Bytes, ColumnType::Bytes))
        }
        "enum" => Some((
            Conv::String,
            ColumnType::Enum {
                labels: parse_labels(column_type, "enum(")?,
            },
        )),
        "set" => Some((
            Conv::String,
            ColumnType::Set {
                labels: parse_labels(column_type, "set(")?,
            },
        )),
        "date" => Some((Conv::Date, ColumnType::Date)),
        "datetime" => Some((Conv::DateTime { fsp }, ColumnType::DateTime { fsp })),
        "timestamp" => Some((Conv::Timestamp { fsp }, ColumnType::Timestamp { fsp })),
        "time" => Some((Conv::Time { fsp }, ColumnType::Time { fsp })),
        "json" => Some((Conv::Json, ColumnType::Json)),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            Some((Conv::Geometry, ColumnType::Geometry))
        }
        "vector" => Some((Conv::Vector, ColumnType::Vector)),
        _ => None,
    }
}

/// ENUM/SET labels from `enum('a','b''c')`: quotes doubled inside labels.
fn parse_labels(column_type: &str, prefix: &str) -> Option<Arc<[Arc<str>]>> {
    if !column_type
        .get(..prefix.len())?
        .eq_ignore_ascii_case(prefix)
    {
        return None;
    }
    let body = &column_type[prefix.len()..];
    let mut out: Vec<Arc<str>> = Vec::new();
    let b: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '\'' => {
                let mut label = String::new();
                i += 1;
                loop {
                    match (b.get(i), b.get(i + 1)) {
                        (Some('\''), Some('\'')) => {
                            label.push('\'');
                            i += 2;
                        }
                        (Some('\''), _) => {
                            i += 1;
                            break;
                        }
                        (Some(c), _) => {
                            label.push(*c);
                            i += 1;
                        }
                        (None, _) => return None,
                    }
                }
                out.push(Arc::from(label));
            }
            ')' => break,
            _ => i += 1,
        }
    }
    Some(out.into())
}

/// Converts one result value of a column planned as `conv`.
pub fn convert(conv: Conv, v: SqlValue) -> Result<Value, String> {
    use SqlValue as S;
    Ok(match (conv, v) {
        (_, S::NULL) => Value::Null,
        (Conv::Int, S::Int(i)) => Value::Int(i),
        (Conv::Int, S::UInt(u)) => Value::Int(u as i64),
        (Conv::UInt, S::UInt(u)) => Value::UInt(u),
        (Conv::UInt, S::Int(i)) => Value::UInt(i as u64),
        (Conv::Bool, S::Bytes(b)) => Value::Bool(b.iter().any(|&x| x != 0)),
        (Conv::Bool, S::Int(i)) => Value::Bool(i != 0),
        (Conv::Bool, S::UInt(u)) => Value::Bool(u != 0),
        (Conv::Bit, S::Bytes(b)) => Value::UInt(b.iter().fold(0u64, |a, &x| a << 8 | x as u64)),
        (Conv::Bit, S::UInt(u)) => Value::UInt(u),
        (Conv::Bit, S::Int(i)) => Value::UInt(i as u64),
        (Conv::Float, S::Float(f)) => Value::Float(f),
        (Conv::Float, S::Double(d)) => Value::Float(d as f32),
        (Conv::Double, S::Double(d)) => Value::Double(d),
        (Conv::Double, S::Float(f)) => Value::Double(f as f64),
        (Conv::Decimal, S::Bytes(b)) => Value::Decimal(utf8(b)?.into()),
        (Conv::String, S::Bytes(b)) => Value::String(utf8(b)?.into()),
        (Conv::Bytes, S::Bytes(b)) => Value::Bytes(b),
        (Conv::Date, S::Date(y, m, d, ..)) => Value::Date(Date {
            year: y,
            month: m,
            day: d,
        }),
        (Conv::DateTime { fsp }, S::Date(y, mo, d, h, mi, s, us)) => Value::DateTime(DateTime {
            date: Date {
                year: y,
                month: mo,
                day: d,
            },
            hour: h,
            minute: mi,
            second: s,
            micros: us,
            fsp,
        }),
        (Conv::Timestamp { fsp }, S::Date(y, mo, d, h, mi, s, us)) => {
            if y == 0 && mo == 0 && d == 0 {
                Value::Timestamp {
                    secs: 0,
                    micros: 0,
                    fsp,
                }
            } else {
                let days = days_from_civil(y as i64, mo as i64, d as i64);
                Value::Timestamp {
                    secs: days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + s as i64,
                    micros: us,
                    fsp,
                }
            }
        }
        (Conv::Time { fsp }, S::Time(neg, days, h, mi, s, us)) => {
            let zero = days == 0 && h == 0 && mi == 0 && s == 0 && us == 0;
            Value::Time(Time {
                negative: neg && !zero,
                hours: (days * 24 + h as u32) as u16,
                minute: mi,
                second: s,
                micros: us,
                fsp,
            })
        }
        (Conv::Json, S::Bytes(b)) => {
            Value::Json(serde_json::from_slice(&b).map_err(|e| format!("JSON value: {e}"))?)
        }
        (Conv::Geometry, S::Bytes(b)) => match b.split_first_chunk() {
            Some((srid, wkb)) => Value::Geometry {
                srid: u32::from_le_bytes(*srid),
                wkb: wkb.to_vec(),
            },
            None if b.is_empty() => Value::Geometry {
                srid: 0,
                wkb: Vec::new(),
            },
            None => return Err(format!("GEOMETRY value of {} bytes", b.len())),
        },
        (Conv::Vector, S::Bytes(b)) => {
            if b.len() % 4 != 0 {
                return Err(format!("VECTOR value of {} bytes", b.len()));
            }
            Value::Vector(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        (c, v) => return Err(format!("unexpected {v:?} for a {c:?} column")),
    })
}

fn utf8(b: Vec<u8>) -> Result<String, String> {
    String::from_utf8(b).map_err(|e| format!("text is not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let l = parse_labels("enum('a','b''c','d,e')", "enum(").unwrap();
        assert_eq!(
            l.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            vec!["a", "b'c", "d,e"]
        );
        assert_eq!(parse_labels("set('')", "set(").unwrap().len(), 1);
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let v = convert(
            Conv::Timestamp { fsp: 3 },
            SqlValue::Date(2026, 11, 21, 9, 57, 26, 123_000),
        )
        .unwrap();
        assert_eq!(
            v,
            Value::Timestamp {
                secs: 1_795_255_046,
                micros: 123_000,
                fsp: 3
            }
        );
    }

    #[test]
    fn ints_and_bits() {
        assert_eq!(
            convert(Conv::UInt, SqlValue::Int(5)).unwrap(),
            Value::UInt(5)
        );
        assert_eq!(
            convert(Conv::Bit, SqlValue::Bytes(vec![1, 2])).unwrap(),
            Value::UInt(258)
        );
        assert_eq!(
            convert(Conv::Bool, SqlValue::Bytes(vec![1])).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            convert(Conv::Time { fsp: 0 }, SqlValue::Time(true, 1, 2, 3, 4, 0)).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 26,
                minute: 3,
                second: 4,
                micros: 0,
                fsp: 0
            })
        );
    }
}
