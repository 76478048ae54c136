//! MySQL binary JSON (JSONB) -> serde_json, exactly.
//!
//! Invariants: integers stay integers (i64/u64); a DECIMAL becomes a number
//! only when that is exact, else a string; opaque temporal values print as
//! MySQL prints them; nothing is dropped (other opaque values are base64).

use std::fmt::Write as _;

use mysql_common::binlog::jsonb;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;

use super::packed::{decode_decimal, time_from_packed};

/// Decodes a MySQL binary JSON document; empty input is JSON null (as MySQL).
pub fn json_from_binary(s: &[u8]) -> Result<serde_json::Value, String> {
    if s.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    let v: jsonb::Value<'_> = ParseBuf(s)
        .parse(())
        .map_err(|e| format!("invalid binary JSON: {e}"))?;
    jsonb_to_json(&v)
}

/// Converts a mysql_common jsonb value to serde_json exactly: integers stay
/// integers (i64/u64), opaque DECIMAL becomes a number when the f64 prints
/// back to the same decimal, else a string; opaque DATE/TIME/DATETIME print
/// as MySQL prints them; other opaque values as "base64:type<N>:<data>".
pub fn jsonb_to_json(v: &jsonb::Value<'_>) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        jsonb::Value::Null => J::Null,
        jsonb::Value::Bool(b) => J::Bool(*b),
        jsonb::Value::I16(x) => J::from(*x as i64),
        jsonb::Value::I32(x) => J::from(*x as i64),
        jsonb::Value::I64(x) => J::from(*x),
        jsonb::Value::U16(x) => J::from(*x as u64),
        jsonb::Value::U32(x) => J::from(*x as u64),
        jsonb::Value::U64(x) => J::from(*x),
        jsonb::Value::F64(x) => J::Number(
            serde_json::Number::from_f64(*x)
                .ok_or_else(|| format!("JSON double {x} is not finite"))?,
        ),
        jsonb::Value::String(s) => J::String(
            std::str::from_utf8(s.str_raw())
                .map_err(|_| "JSON string is not UTF-8".to_string())?
                .to_owned(),
        ),
        jsonb::Value::SmallArray(a) => J::Array(
            a.iter()
                .map(|x| x.map_err(|e| e.to_string()).and_then(|x| jsonb_to_json(&x)))
                .collect::<Result<_, _>>()?,
        ),
        jsonb::Value::LargeArray(a) => J::Array(
            a.iter()
                .map(|x| x.map_err(|e| e.to_string()).and_then(|x| jsonb_to_json(&x)))
                .collect::<Result<_, _>>()?,
        ),
        jsonb::Value::SmallObject(o) => {
            let mut m = serde_json::Map::new();
            for kv in o.iter() {
                let (k, v) = kv.map_err(|e| e.to_string())?;
                let k = std::str::from_utf8(k.value_raw())
                    .map_err(|_| "JSON key is not UTF-8".to_string())?
                    .to_owned();
                m.insert(k, jsonb_to_json(&v)?);
            }
            J::Object(m)
        }
        jsonb::Value::LargeObject(o) => {
            let mut m = serde_json::Map::new();
            for kv in o.iter() {
                let (k, v) = kv.map_err(|e| e.to_string())?;
                let k = std::str::from_utf8(k.value_raw())
                    .map_err(|_| "JSON key is not UTF-8".to_string())?
                    .to_owned();
                m.insert(k, jsonb_to_json(&v)?);
            }
            J::Object(m)
        }
        jsonb::Value::Opaque(o) => opaque_to_json(o.value_type(), o.data_raw())?,
    })
}

fn opaque_to_json(ty: ColumnType, d: &[u8]) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    match ty {
        ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            if d.len() < 2 {
                return Err("truncated JSON DECIMAL".into());
            }
            let text = decode_decimal(&d[2..], d[0], d[1]).ok_or("invalid JSON DECIMAL")?;
            Ok(decimal_json(&text))
        }
        ColumnType::MYSQL_TYPE_DATE
        | ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIME => {
            let packed = i64::from_le_bytes(*d.first_chunk().ok_or("truncated JSON temporal")?);
            let mut s = String::with_capacity(26);
            if ty == ColumnType::MYSQL_TYPE_TIME {
                let t = time_from_packed(packed, 6);
                let _ = write!(
                    s,
                    "{}{:02}:{:02}:{:02}.{:06}",
                    if t.negative { "-" } else { "" },
                    t.hours,
                    t.minute,
                    t.second,
                    t.micros
                );
            } else {
                let a = packed.unsigned_abs();
                let micros = a & 0xff_ffff;
                let ymdhms = a >> 24;
                let ymd = ymdhms >> 17;
                let hms = ymdhms & ((1 << 17) - 1);
                let ym = ymd >> 5;
                let _ = write!(s, "{:04}-{:02}-{:02}", ym / 13, ym % 13, ymd & 31);
                if ty != ColumnType::MYSQL_TYPE_DATE {
                    let _ = write!(
                        s,
                        " {:02}:{:02}:{:02}.{:06}",
                        hms >> 12,
                        (hms >> 6) & 63,
                        hms & 63,
                        micros
                    );
                }
            }
            Ok(J::String(s))
        }
        _ => Ok(J::String(format!("base64:type{}:{}", ty as u8, base64(d)))),
    }
}

/// A DECIMAL as a JSON number when that is exact, else as a string.
pub fn decimal_json(text: &str) -> serde_json::Value {
    if !text.contains('.') {
        if let Ok(i) = text.parse::<i64>() {
            return serde_json::Value::from(i);
        }
        if let Ok(u) = text.parse::<u64>() {
            return serde_json::Value::from(u);
        }
    }
    let trimmed = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    };
    if let Ok(f) = trimmed.parse::<f64>() {
        if f.is_finite() && format!("{f}") == trimmed {
            if let Some(n) = serde_json::Number::from_f64(f) {
                return serde_json::Value::Number(n);
            }
        }
    }
    serde_json::Value::String(text.to_string())
}

fn base64(d: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(d.len().div_ceil(3) * 4);
    for c in d.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
