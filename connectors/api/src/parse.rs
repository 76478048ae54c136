//! Reading the JSON envelope back into records: the inverse of
//! [`crate::json`], for `rowstream restore` (a backup line into a typed
//! [`Record`] that the apply sink writes with the column's exact semantics).
//!
//! The envelope carries no types (a DECIMAL and a VARCHAR are both JSON
//! strings, BLOBs are base64 strings), so a change line is read in two
//! steps: [`read_line`] gives the header (table, op, source) and the raw
//! images, then [`ChangeLine::into_event`] types the images with the
//! column types of the table it is written into.
//!
//! Invariants kept: for every value `v` of a column of type `t`,
//! `read_value(json(write_value(v)), t) == v`, including unsigned and
//! signed extremes, DECIMAL digits, fractional seconds with their precision,
//! zero dates and timestamps, negative TIME, FLOAT's shortest f32 form,
//! JSON, GEOMETRY and VECTOR (tests below write, read back and compare). A
//! value that does not fit its column type is an error naming the column,
//! never a silently changed value.

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value as Json};

use crate::event::{
    ChangeEvent, Flavor, Op, Row, SchemaChange, Shared, Snapshot, Source, Transaction,
};
use crate::table::{ColumnType, TableMeta};
use crate::value::{Date, DateTime, Time, Value};

/// A backup change line with its images still untyped.
#[derive(Debug, Clone)]
pub struct ChangeLine {
    pub op: Op,
    pub before: Option<Map<String, Json>>,
    pub after: Option<Map<String, Json>>,
    pub ts_ms: u64,
    pub source: Source,
    /// `source.row` (see [`ChangeEvent::row`]).
    pub row: u32,
    pub transaction: Option<Transaction>,
    /// `"overlap":true` (see [`ChangeEvent::overlap`]).
    pub overlap: bool,
}

/// One record line of a backup, read back.
#[derive(Debug, Clone)]
pub enum Line {
    Change(ChangeLine),
    SchemaChange(SchemaChange),
}

/// Reads a change or schema-change line (as [`crate::json::write_record`]
/// wrote it, without the trailing newline).
pub fn read_line(line: &[u8]) -> Result<Line, String> {
    let v: Json = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Json::Object(mut o) = v else {
        return Err("not a JSON object".into());
    };
    let (source, row) = read_source(o.get("source").ok_or("no source")?)?;
    let ts_ms = u64_of(&o, "ts_ms")?;
    if let Some(ddl) = o.get("ddl") {
        return Ok(Line::SchemaChange(SchemaChange {
            source,
            ts_ms,
            database: Arc::from(str_of(&o, "databaseName")?),
            ddl: ddl.as_str().ok_or("ddl is not a string")?.to_string(),
        }));
    }
    let op = match str_of(&o, "op")? {
        "c" => Op::Create,
        "u" => Op::Update,
        "d" => Op::Delete,
        "r" => Op::Read,
        other => return Err(format!("unknown op {other:?}")),
    };
    let image = |v: Option<Json>| match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(m)) => Ok(Some(m)),
        Some(_) => Err("row image is not an object".to_string()),
    };
    let transaction = match o.get("transaction") {
        None | Some(Json::Null) => None,
        Some(Json::Object(t)) if str_of(t, "id")? != &*source.gtid => {
            return Err(format!(
                "transaction.id {:?} is not source.gtid {:?}",
                str_of(t, "id")?,
                source.gtid
            ))
        }
        Some(Json::Object(t)) => Some(Transaction {
            total_order: u64_of(t, "total_order")?,
            data_collection_order: u64_of(t, "data_collection_order")?,
        }),
        Some(_) => return Err("transaction is not an object".into()),
    };
    let overlap = match o.get("overlap") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err("overlap is not a boolean".into()),
    };
    Ok(Line::Change(ChangeLine {
        overlap,
        op,
        before: image(o.remove("before"))?,
        after: image(o.remove("after"))?,
        ts_ms,
        source,
        row,
        transaction,
    }))
}

fn str_of<'a>(o: &'a Map<String, Json>, key: &str) -> Result<&'a str, String> {
    o.get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("{key} missing or not a string"))
}

fn u64_of(o: &Map<String, Json>, key: &str) -> Result<u64, String> {
    o.get(key)
        .and_then(Json::as_u64)
        .ok_or_else(|| format!("{key} missing or not an unsigned integer"))
}

/// The `source` block and its `row`.
fn read_source(v: &Json) -> Result<(Source, u32), String> {
    let o = v.as_object().ok_or("source is not an object")?;
    let arc = |k: &str| str_of(o, k).map(Arc::from);
    let row = u32::try_from(u64_of(o, "row")?).map_err(|_| "row too big")?;
    let source = Source {
        version: env!("CARGO_PKG_VERSION"),
        connector: match str_of(o, "connector")? {
            "mysql" => Flavor::MySql,
            "mariadb" => Flavor::MariaDb,
            other => return Err(format!("unknown connector {other:?}")),
        },
        name: arc("name")?,
        ts_ms: u64_of(o, "ts_ms")?,
        snapshot: match str_of(o, "snapshot")? {
            "true" => Snapshot::True,
            "last" => Snapshot::Last,
            _ => Snapshot::False,
        },
        db: arc("db")?,
        table: arc("table")?,
        server_id: u32::try_from(u64_of(o, "server_id")?).map_err(|_| "server_id too big")?,
        gtid: arc("gtid")?,
        file: arc("file")?,
        pos: u64_of(o, "pos")?,
        sequence: 0,
    };
    Ok((source, row))
}

impl ChangeLine {
    /// Types the images with `table`'s columns (matched by name). A column
    /// of the image that the table lacks is an error.
    pub fn into_event(self, table: &Arc<TableMeta>) -> Result<ChangeEvent, String> {
        let row = |img: Option<Map<String, Json>>| img.map(|m| read_row(m, table)).transpose();
        let (before, after) = (row(self.before)?, row(self.after)?);
        let mut ev = ChangeEvent {
            op: self.op,
            before: None,
            after: None,
            ts_ms: self.ts_ms,
            shared: Arc::new(Shared::typed(self.source, table)),
            row: self.row,
            transaction: self.transaction,
            overlap: self.overlap,
        };
        // The `Shared` is this event's alone: naming the images copies nothing.
        ev.set_rows(before, after);
        Ok(ev)
    }
}

fn read_row(mut m: Map<String, Json>, table: &TableMeta) -> Result<Row, String> {
    let all = m.len() == table.columns.len();
    let mut names = Vec::new();
    let mut values = Vec::with_capacity(m.len());
    for (i, name) in table.columns.iter().enumerate() {
        let Some(v) = m.remove(&**name) else {
            continue;
        };
        values.push(read_value(&v, &table.types[i]).map_err(|e| format!("column {name}: {e}"))?);
        if !all {
            names.push(name.clone());
        }
    }
    if let Some(extra) = m.keys().next() {
        return Err(format!("the table has no column {extra}"));
    }
    let columns = if all {
        table.columns.clone()
    } else {
        names.into()
    };
    Ok(Row { columns, values })
}

/// One JSON value (as [`crate::json::write_value`] wrote it) read as a
/// value of a column of type `ty`.
pub fn read_value(v: &Json, ty: &ColumnType) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = || format!("{v} is not a valid {ty:?} value");
    let s = || v.as_str().ok_or_else(bad);
    Ok(match ty {
        ColumnType::Bool => Value::Bool(v.as_bool().ok_or_else(bad)?),
        ColumnType::Int { unsigned: true, .. } | ColumnType::Bit { .. } => {
            Value::UInt(v.as_u64().ok_or_else(bad)?)
        }
        ColumnType::Int { .. } | ColumnType::Year => Value::Int(v.as_i64().ok_or_else(bad)?),
        ColumnType::Float => Value::Float(v.as_f64().ok_or_else(bad)? as f32),
        ColumnType::Double => Value::Double(v.as_f64().ok_or_else(bad)?),
        ColumnType::Decimal { .. } => Value::Decimal(s()?.to_string().into()),
        ColumnType::String | ColumnType::Enum { .. } | ColumnType::Set { .. } => {
            Value::String(s()?.to_string().into())
        }
        ColumnType::Bytes => Value::Bytes(base64(s()?).ok_or_else(bad)?),
        ColumnType::Date => Value::Date(read_date(s()?).ok_or_else(bad)?),
        ColumnType::DateTime { fsp } => Value::DateTime(read_datetime(s()?, *fsp).ok_or_else(bad)?),
        ColumnType::Timestamp { fsp } => read_timestamp(s()?, *fsp).ok_or_else(bad)?,
        ColumnType::Time { fsp } => Value::Time(read_time(s()?, *fsp).ok_or_else(bad)?),
        ColumnType::Json => Value::Json(v.clone()),
        ColumnType::Geometry => {
            let o = v.as_object().ok_or_else(bad)?;
            let srid = o.get("srid").and_then(Json::as_u64).ok_or_else(bad)?;
            let wkb = o.get("wkb").and_then(Json::as_str).and_then(base64);
            Value::Geometry {
                srid: u32::try_from(srid).map_err(|_| bad())?,
                wkb: wkb.ok_or_else(bad)?,
            }
        }
        ColumnType::Vector => Value::Vector(
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<_>>()
                .ok_or_else(bad)?,
        ),
    })
}

fn base64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn num<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn read_date(s: &str) -> Option<Date> {
    let (y, rest) = s.split_once('-')?;
    let (m, d) = rest.split_once('-')?;
    Some(Date {
        year: num(y, 4)?,
        month: num(m, 2)?,
        day: num(d, 2)?,
    })
}

/// `SS[.ffffff]` with exactly `fsp` fraction digits: (seconds, micros).
fn read_seconds(s: &str, fsp: u8) -> Option<(u8, u32)> {
    let (sec, frac) = match s.split_once('.') {
        Some((a, f)) if f.len() == usize::from(fsp) && fsp > 0 => (a, f),
        None if fsp == 0 => (s, ""),
        _ => return None,
    };
    let micros = if frac.is_empty() {
        0
    } else {
        num::<u32>(frac, frac.len())? * 10u32.pow(6 - u32::from(fsp))
    };
    Some((num(sec, 2)?, micros))
}

fn read_datetime(s: &str, fsp: u8) -> Option<DateTime> {
    let (d, t) = s.split_once('T')?;
    let mut parts = t.splitn(3, ':');
    let (h, mi, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (second, micros) = read_seconds(rest, fsp)?;
    Some(DateTime {
        date: read_date(d)?,
        hour: num(h, 2)?,
        minute: num(mi, 2)?,
        second,
        micros,
        fsp,
    })
}

fn read_timestamp(s: &str, fsp: u8) -> Option<Value> {
    let dt = read_datetime(s.strip_suffix('Z')?, fsp)?;
    let secs = if dt.date
        == (Date {
            year: 0,
            month: 0,
            day: 0,
        })
        && dt.micros == 0
    {
        0
    } else {
        let days = days_from_civil(
            i64::from(dt.date.year),
            i64::from(dt.date.month),
            i64::from(dt.date.day),
        );
        days * 86_400 + i64::from(dt.hour) * 3600 + i64::from(dt.minute) * 60 + i64::from(dt.second)
    };
    Some(Value::Timestamp {
        secs,
        micros: dt.micros,
        fsp,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant; the
/// inverse of `json::civil_from_days`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn read_time(s: &str, fsp: u8) -> Option<Time> {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut parts = s.splitn(3, ':');
    let (h, mi, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (second, micros) = read_seconds(rest, fsp)?;
    Some(Time {
        negative,
        hours: if h.len() == 3 { num(h, 3)? } else { num(h, 2)? },
        minute: num(mi, 2)?,
        second,
        micros,
        fsp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;
    use crate::json::{write_record, write_value};

    fn round_trip(v: Value, ty: ColumnType) {
        let mut out = Vec::new();
        write_value(&mut out, &v);
        let j: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            read_value(&j, &ty).unwrap(),
            v,
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    fn dt((y, mo, d): (u16, u8, u8), (h, mi, s): (u8, u8, u8), micros: u32, fsp: u8) -> DateTime {
        DateTime {
            date: Date {
                year: y,
                month: mo,
                day: d,
            },
            hour: h,
            minute: mi,
            second: s,
            micros,
            fsp,
        }
    }

    #[test]
    fn every_type_round_trips() {
        let int = |bits, unsigned| ColumnType::Int { bits, unsigned };
        round_trip(Value::Int(i64::MIN), int(64, false));
        round_trip(Value::UInt(u64::MAX), int(64, true));
        round_trip(Value::Bool(true), ColumnType::Bool);
        round_trip(Value::UInt(0b1010_1010), ColumnType::Bit { bits: 8 });
        round_trip(Value::Int(2155), ColumnType::Year);
        round_trip(Value::Float(1.1), ColumnType::Float);
        round_trip(Value::Float(f32::MAX), ColumnType::Float);
        round_trip(Value::Double(-2.2250738585072014e-308), ColumnType::Double);
        let dec = ColumnType::Decimal {
            precision: 65,
            scale: 30,
        };
        round_trip(
            Value::Decimal(
                "-12345678901234567890123456789012345.123456789012345678901234567890".into(),
            ),
            dec,
        );
        round_trip(Value::String("é\u{0}\"\\\n😀".into()), ColumnType::String);
        round_trip(Value::Bytes(vec![0, 255, 10, 13]), ColumnType::Bytes);
        round_trip(Value::Bytes(vec![]), ColumnType::Bytes);
        round_trip(Value::String(String::new().into()), ColumnType::String);
        round_trip(Value::Null, ColumnType::String);
        round_trip(
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
            ColumnType::Date,
        );
        round_trip(
            Value::Date(Date {
                year: 2024,
                month: 0,
                day: 0,
            }),
            ColumnType::Date,
        );
        for fsp in 0..=6 {
            let micros =
                [0, 100_000, 120_000, 123_000, 123_400, 123_450, 123_456][usize::from(fsp)];
            round_trip(
                Value::DateTime(dt((9999, 12, 31), (23, 59, 59), micros, fsp)),
                ColumnType::DateTime { fsp },
            );
            round_trip(
                Value::Timestamp {
                    secs: 2_147_483_647,
                    micros,
                    fsp,
                },
                ColumnType::Timestamp { fsp },
            );
            round_trip(
                Value::Timestamp {
                    secs: 0,
                    micros: 0,
                    fsp,
                },
                ColumnType::Timestamp { fsp },
            );
            let t = Time {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micros,
                fsp,
            };
            round_trip(Value::Time(t), ColumnType::Time { fsp });
        }
        round_trip(
            Value::DateTime(dt((0, 0, 0), (0, 0, 0), 0, 0)),
            ColumnType::DateTime { fsp: 0 },
        );
        round_trip(
            Value::Timestamp {
                secs: 1,
                micros: 0,
                fsp: 0,
            },
            ColumnType::Timestamp { fsp: 0 },
        );
        let t = Time {
            negative: false,
            hours: 5,
            minute: 0,
            second: 1,
            micros: 0,
            fsp: 0,
        };
        round_trip(Value::Time(t), ColumnType::Time { fsp: 0 });
        round_trip(
            Value::Json(serde_json::json!({"a":[1,2.5,"x",null,true]})),
            ColumnType::Json,
        );
        round_trip(
            Value::Geometry {
                srid: 4326,
                wkb: vec![1, 1, 0, 0, 0],
            },
            ColumnType::Geometry,
        );
        round_trip(
            Value::Vector(vec![1.1, -0.0, f32::MIN_POSITIVE]),
            ColumnType::Vector,
        );
        let labels: Arc<[Arc<str>]> = Arc::from(vec![Arc::from("a")]);
        round_trip(Value::String("a,b".into()), ColumnType::Set { labels });
    }

    #[test]
    fn wrong_values_are_errors() {
        let bad = |j: Json, ty: ColumnType| assert!(read_value(&j, &ty).is_err(), "{j} as {ty:?}");
        bad(
            serde_json::json!(-1),
            ColumnType::Int {
                bits: 8,
                unsigned: true,
            },
        );
        bad(serde_json::json!("!!"), ColumnType::Bytes);
        bad(
            serde_json::json!("2024-01-01T00:00:00.1"),
            ColumnType::DateTime { fsp: 2 },
        );
        bad(
            serde_json::json!("2024-01-01T00:00:00"),
            ColumnType::Timestamp { fsp: 0 },
        );
        bad(
            serde_json::json!(1.5),
            ColumnType::Int {
                bits: 32,
                unsigned: false,
            },
        );
    }

    #[test]
    fn lines_round_trip() {
        let table = Arc::new(TableMeta {
            columns: Arc::from(vec![Arc::from("id"), Arc::from("b")]),
            types: vec![
                ColumnType::Int {
                    bits: 32,
                    unsigned: false,
                },
                ColumnType::Bytes,
            ],
            nullable: vec![false, true],
            primary_key: Arc::from(vec![0]),
        });
        let g: Arc<str> = Arc::from("0-1-7");
        let mut ev = ChangeEvent {
            op: Op::Update,
            before: None,
            after: None,
            ts_ms: 1_700_000_000_001,
            shared: Arc::new(Shared {
                source: Source {
                    version: "0.1.0",
                    connector: Flavor::MariaDb,
                    name: "test".into(),
                    ts_ms: 1_700_000_000_000,
                    snapshot: Snapshot::False,
                    db: "shop".into(),
                    table: "t".into(),
                    server_id: 1,
                    gtid: g.clone(),
                    file: "mysql-bin.000001".into(),
                    pos: 4,
                    sequence: 0,
                },
                primary_key: table.primary_key.clone(),
                table: Some(table.clone()),
                before_columns: Default::default(),
                after_columns: Default::default(),
            }),
            row: 2,
            transaction: Some(Transaction {
                total_order: 3,
                data_collection_order: 1,
            }),
            overlap: false,
        };
        ev.set_rows(
            Some(Row {
                columns: table.columns.clone(),
                values: vec![Value::Int(1), Value::Null],
            }),
            Some(Row {
                columns: table.columns.clone(),
                values: vec![Value::Int(1), Value::Bytes(vec![7])],
            }),
        );
        let mut out = Vec::new();
        write_record(&mut out, &Record::Change(ev.clone()));
        let Line::Change(c) = read_line(&out).unwrap() else {
            panic!()
        };
        let mut back = c.into_event(&table).unwrap();
        back.shared_mut().source.version = ev.source().version;
        back.shared_mut().source.sequence = ev.source().sequence;
        assert_eq!(back, ev);
        assert!(!out.windows(9).any(|w| w == b"\"overlap\""));
        // The overlap mark: written only when set, read back.
        let marked = ChangeEvent {
            overlap: true,
            ..ev.clone()
        };
        out.clear();
        write_record(&mut out, &Record::Change(marked.clone()));
        assert!(out.ends_with(b",\"overlap\":true}"));
        let Line::Change(c) = read_line(&out).unwrap() else {
            panic!()
        };
        let mut back = c.into_event(&table).unwrap();
        back.shared_mut().source.version = ev.source().version;
        back.shared_mut().source.sequence = ev.source().sequence;
        assert_eq!(back, marked);
        let sc = SchemaChange {
            source: ev.source().clone(),
            ts_ms: 5,
            database: Arc::from("shop"),
            ddl: "CREATE TABLE t (id INT)".into(),
        };
        out.clear();
        write_record(&mut out, &Record::SchemaChange(Box::new(sc.clone())));
        let Line::SchemaChange(mut back) = read_line(&out).unwrap() else {
            panic!()
        };
        back.source.version = sc.source.version;
        back.source.sequence = sc.source.sequence;
        assert_eq!(back, sc);
        let narrow = Arc::new(TableMeta {
            columns: Arc::from(vec![Arc::from("id")]),
            types: vec![table.types[0].clone()],
            nullable: vec![false],
            primary_key: Arc::from(vec![0]),
        });
        out.clear();
        write_record(&mut out, &Record::Change(ev));
        let Line::Change(c) = read_line(&out).unwrap() else {
            panic!()
        };
        assert!(c.into_event(&narrow).unwrap_err().contains("no column b"));
        // The transaction's id is the GTID: a line where they differ is not ours.
        let text = String::from_utf8(out).unwrap();
        let gtid = format!("\"id\":\"{g}\"");
        let other = text.replacen(&gtid, "\"id\":\"0-1-999\"", 1);
        assert_ne!(other, text);
        let err = read_line(other.as_bytes()).unwrap_err();
        assert!(err.contains("is not source.gtid"), "{err}");
    }
}
