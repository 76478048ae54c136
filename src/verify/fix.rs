//! `--fix-sql`: the statements that bring the target back to the source,
//! and the SQL / JSON spelling of the values they and the report carry.
//!
//! Invariants:
//! - A literal reads back as exactly the value it was made from: integers
//!   and decimals as their digits, floats in their shortest round-trip
//!   form, date-times with every fractional digit, text as
//!   `CONVERT(X'..' USING utf8mb4)` (the session reads text as utf8mb4;
//!   hex makes any byte safe), binary values as `X'..'`.
//! - The script sets `time_zone = '+00:00'` (values were read in UTC) and
//!   `NAMES utf8mb4` before any statement.
//! - A row the source has is written with `REPLACE INTO` (all columns); a
//!   row only the target has is deleted by its primary key (without one,
//!   by every column, `LIMIT 1`: one copy per surplus duplicate).

use mysql_async::Value as SqlValue;

use super::chunk::VTable;
use crate::source::snapshot::rows::{quote_ident, Conv};

/// The first lines of a fix script.
pub const HEADER: &str = "-- written by rowstream verify: apply to the target\n\
                          SET NAMES utf8mb4;\nSET time_zone = '+00:00';\n";

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02X}"));
    }
    s
}

fn frac(us: u32) -> String {
    if us == 0 {
        String::new()
    } else {
        format!(".{us:06}")
    }
}

/// `v` (a value read for a column of type `conv`) as an SQL literal.
pub fn literal(v: &SqlValue, conv: Conv) -> String {
    match v {
        SqlValue::NULL => "NULL".into(),
        SqlValue::Int(i) => i.to_string(),
        SqlValue::UInt(u) => u.to_string(),
        SqlValue::Float(f) => float(f64::from(*f), f.to_string(), format!("{f:e}")),
        SqlValue::Double(d) => float(*d, d.to_string(), format!("{d:e}")),
        SqlValue::Bytes(b) => match conv {
            Conv::Decimal | Conv::Int | Conv::UInt => String::from_utf8_lossy(b).into_owned(),
            Conv::String | Conv::Json => format!("CONVERT(X'{}' USING utf8mb4)", hex(b)),
            _ if b.is_empty() => "''".into(),
            _ => format!("X'{}'", hex(b)),
        },
        SqlValue::Date(y, mo, d, h, mi, s, us) => {
            if conv == Conv::Date {
                format!("'{y:04}-{mo:02}-{d:02}'")
            } else {
                format!("'{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}'", frac(*us))
            }
        }
        SqlValue::Time(neg, d, h, mi, s, us) => format!(
            "'{}{}:{mi:02}:{s:02}{}'",
            if *neg { "-" } else { "" },
            u64::from(*d) * 24 + u64::from(*h),
            frac(*us)
        ),
    }
}

/// Rust prints the shortest text that reads back as the same float (in
/// exponent form when plain digits would be long).
fn float(x: f64, plain: String, exp: String) -> String {
    if !x.is_finite() {
        "NULL".into()
    } else if x == 0.0 || (1e-5..1e16).contains(&x.abs()) {
        plain
    } else {
        exp
    }
}

/// `v` as JSON for the report: numbers as numbers, text as text, binary as
/// `"0x.."`, date-times as their SQL text.
pub fn json(v: &SqlValue, conv: Conv) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        SqlValue::NULL => J::Null,
        SqlValue::Int(i) => J::from(*i),
        SqlValue::UInt(u) => J::from(*u),
        SqlValue::Float(f) => J::from(f64::from(*f)),
        SqlValue::Double(d) => J::from(*d),
        SqlValue::Bytes(b) => match conv {
            Conv::String | Conv::Json | Conv::Decimal | Conv::Int | Conv::UInt => {
                match std::str::from_utf8(b) {
                    Ok(s) => J::from(s),
                    Err(_) => J::from(format!("0x{}", hex(b))),
                }
            }
            _ => J::from(format!("0x{}", hex(b))),
        },
        SqlValue::Date(..) | SqlValue::Time(..) => {
            J::from(literal(v, conv).trim_matches('\'').to_string())
        }
    }
}

/// `REPLACE INTO` of the source's row.
pub fn replace(t: &VTable, row: &[SqlValue]) -> String {
    let cols: Vec<String> = t.def.names.iter().map(|n| quote_ident(n)).collect();
    let vals: Vec<String> = row
        .iter()
        .zip(&t.def.conv)
        .map(|(v, &c)| literal(v, c))
        .collect();
    format!(
        "REPLACE INTO {} ({}) VALUES ({});\n",
        t.def.sql_name(),
        cols.join(","),
        vals.join(",")
    )
}

/// `DELETE` of a row only the target has.
pub fn delete(t: &VTable, row: &[SqlValue]) -> String {
    let cols: Vec<usize> = if t.keyed() {
        t.def.primary_key.to_vec()
    } else {
        (0..row.len()).collect()
    };
    let conds: Vec<String> = cols
        .iter()
        .map(|&i| format!("{} <=> {}", t.canon[i], literal(&row[i], t.def.conv[i])))
        .collect();
    format!(
        "DELETE FROM {} WHERE {}{};\n",
        t.def.sql_name(),
        conds.join(" AND "),
        if t.keyed() { "" } else { " LIMIT 1" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_back_exactly() {
        assert_eq!(literal(&SqlValue::Int(-5), Conv::Int), "-5");
        assert_eq!(
            literal(&SqlValue::Bytes(b"-12.50".to_vec()), Conv::Decimal),
            "-12.50"
        );
        assert_eq!(
            literal(&SqlValue::Bytes("é'\\".as_bytes().to_vec()), Conv::String),
            "CONVERT(X'C3A9275C' USING utf8mb4)"
        );
        assert_eq!(
            literal(&SqlValue::Bytes(vec![0, 255]), Conv::Bytes),
            "X'00FF'"
        );
        assert_eq!(
            literal(
                &SqlValue::Date(2024, 2, 29, 1, 2, 3, 4000),
                Conv::DateTime { fsp: 3 }
            ),
            "'2024-02-29 01:02:03.004000'"
        );
        assert_eq!(
            literal(&SqlValue::Date(2024, 2, 29, 0, 0, 0, 0), Conv::Date),
            "'2024-02-29'"
        );
        assert_eq!(
            literal(&SqlValue::Time(true, 1, 2, 3, 4, 5), Conv::Time { fsp: 6 }),
            "'-26:03:04.000005'"
        );
        assert_eq!(literal(&SqlValue::Float(0.1), Conv::Float), "0.1");
        assert_eq!(literal(&SqlValue::Double(1e300), Conv::Double), "1e300");
    }
}
