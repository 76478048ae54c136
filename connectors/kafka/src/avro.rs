//! Avro encoding of change events (pure, no I/O): schemas derived from the
//! table's [`TableMeta`] and the Avro binary encoding of keys and envelopes,
//! framed in the Confluent wire format (byte 0, the schema id as 4 bytes
//! big-endian, the Avro binary datum).
//!
//! Schemas (record names follow Debezium; the namespace is the topic prefix
//! `<name>.<db>.<table>` with every part sanitized to an Avro name):
//! - key: record `Key` with the primary key columns in key order;
//! - value: record `Envelope` with `before`/`after` (`["null", Value]`,
//!   `Value` being the row record of all columns in table order), `op`
//!   (string), `ts_ms` (long), `source` (record `io.rowstream.Source`,
//!   `schemas/source.avsc`) and `transaction` (`["null",
//!   io.rowstream.Transaction]`); the template is `schemas/change-event.avsc`.
//!
//! Column type mapping (a nullable column is `["null", T]` with default null):
//!
//! | SQL type | Avro |
//! |---|---|
//! | BIT(1) | boolean |
//! | TINYINT, SMALLINT, MEDIUMINT, INT (signed), the first three UNSIGNED, YEAR | int |
//! | INT UNSIGNED, BIGINT | long |
//! | BIGINT UNSIGNED | bytes, logicalType decimal, precision 20, scale 0 |
//! | BIT(n > 1) | bytes, big-endian, n/8 rounded up bytes |
//! | FLOAT / DOUBLE | float / double |
//! | DECIMAL(p,s) | bytes, logicalType decimal, precision p, scale s |
//! | CHAR, VARCHAR, TEXT, ENUM, SET, JSON | string (ENUM: the label, SET: labels joined by ","; JSON: its text) |
//! | BINARY, VARBINARY, BLOB | bytes |
//! | DATE, DATETIME, TIMESTAMP, TIME | string, exactly the text of the JSON mapping (`"2024-01-31"`, `"2024-01-31T10:00:00.250"`, `"...Z"`, `"-838:59:59"`): zero and partial dates stay faithful, which Avro's date/timestamp logical types cannot carry |
//! | GEOMETRY family | record `io.rowstream.Geometry` {srid: long, wkb: bytes} |
//! | VECTOR | array of float |
//!
//! Column names are sanitized to Avro names: characters other than
//! `[A-Za-z0-9_]` become `_`, a leading digit gets a `_` prefix, and a name
//! that collides with an earlier one gets `_<column index>` appended.

use std::sync::Arc;

use rowstream_api::json::write_value;
use rowstream_api::{ChangeEvent, ColumnType, RowRef, Source, TableMeta, Transaction, Value};
use serde_json::{json, Value as Json};

/// Namespace of the shared records (`Source`, `Transaction`, `Geometry`).
pub const NAMESPACE: &str = "io.rowstream";

/// Turns any string into a valid Avro name (see the module docs).
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

/// The record namespace of a table: `<name>.<db>.<table>`, each part sanitized.
pub fn namespace(name: &str, db: &str, table: &str) -> String {
    format!("{}.{}.{}", sanitize(name), sanitize(db), sanitize(table))
}

/// Sanitized, unique field names of the table's columns.
pub fn field_names(meta: &TableMeta) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(meta.columns.len());
    for (i, c) in meta.columns.iter().enumerate() {
        let mut n = sanitize(c);
        if out.contains(&n) {
            n = format!("{n}_{i}");
        }
        out.push(n);
    }
    out
}

/// The Avro type of a column type (not nullable). `geometry_defined`: whether
/// the `Geometry` record was already defined in this schema (then it is
/// referenced by name).
fn column_type(t: &ColumnType, geometry_defined: &mut bool) -> Json {
    match t {
        ColumnType::Bool => json!("boolean"),
        ColumnType::Int {
            bits: 64,
            unsigned: true,
        } => json!({"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0}),
        ColumnType::Int { bits, unsigned } if *bits < 32 || (*bits == 32 && !unsigned) => {
            json!("int")
        }
        ColumnType::Int { .. } => json!("long"),
        ColumnType::Year => json!("int"),
        ColumnType::Bit { .. } => json!("bytes"),
        ColumnType::Float => json!("float"),
        ColumnType::Double => json!("double"),
        ColumnType::Decimal { precision, scale } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        ColumnType::String
        | ColumnType::Enum { .. }
        | ColumnType::Set { .. }
        | ColumnType::Json
        | ColumnType::Date
        | ColumnType::DateTime { .. }
        | ColumnType::Timestamp { .. }
        | ColumnType::Time { .. } => json!("string"),
        ColumnType::Bytes => json!("bytes"),
        ColumnType::Geometry => {
            if *geometry_defined {
                json!(format!("{NAMESPACE}.Geometry"))
            } else {
                *geometry_defined = true;
                json!({"type": "record", "name": "Geometry", "namespace": NAMESPACE, "fields": [
                    {"name": "srid", "type": "long"},
                    {"name": "wkb", "type": "bytes"},
                ]})
            }
        }
        ColumnType::Vector => json!({"type": "array", "items": "float"}),
    }
}

fn record(meta: &TableMeta, name: &str, ns: &str, cols: &[usize], geo: &mut bool) -> Json {
    let names = field_names(meta);
    let fields: Vec<Json> = cols
        .iter()
        .map(|&i| {
            let t = column_type(&meta.types[i], geo);
            if meta.nullable[i] {
                json!({"name": names[i], "type": ["null", t], "default": null})
            } else {
                json!({"name": names[i], "type": t})
            }
        })
        .collect();
    json!({"type": "record", "name": name, "namespace": ns, "fields": fields})
}

/// The key schema: record `Key` of the primary key columns; None when the
/// table has no primary key (records have no key).
pub fn key_schema(meta: &TableMeta, ns: &str) -> Option<Json> {
    if meta.primary_key.is_empty() {
        return None;
    }
    Some(record(meta, "Key", ns, &meta.primary_key, &mut false))
}

/// The `io.rowstream.Source` record (`schemas/source.avsc`).
pub fn source_schema() -> Json {
    json!({"type": "record", "name": "Source", "namespace": NAMESPACE, "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": "string"},
        {"name": "db", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "server_id", "type": "long"},
        {"name": "gtid", "type": "string"},
        {"name": "file", "type": "string"},
        {"name": "pos", "type": "long"},
        {"name": "row", "type": "long"},
    ]})
}

/// The `io.rowstream.Transaction` record.
pub fn transaction_schema() -> Json {
    json!({"type": "record", "name": "Transaction", "namespace": NAMESPACE, "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"},
    ]})
}

/// The value schema: record `Envelope` (see the module docs).
pub fn value_schema(meta: &TableMeta, ns: &str) -> Json {
    let all: Vec<usize> = (0..meta.columns.len()).collect();
    let row = record(meta, "Value", ns, &all, &mut false);
    json!({"type": "record", "name": "Envelope", "namespace": ns, "fields": [
        {"name": "before", "type": ["null", row], "default": null},
        {"name": "after", "type": ["null", format!("{ns}.Value")], "default": null},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "source", "type": source_schema()},
        {"name": "transaction", "type": ["null", transaction_schema()], "default": null},
    ]})
}

// ---------------------------------------------------------------------------
// Avro binary encoding

/// Appends a long (or int) as a zigzag varint.
pub fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends bytes (or a string): length, then the bytes.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Appends the Confluent wire format header: magic byte 0 and the schema id.
pub fn write_header(out: &mut Vec<u8>, schema_id: u32) {
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// The two's complement big-endian bytes of the unscaled decimal `s`
/// (`"-12.50"`) at `scale` fraction digits (Avro's decimal logical type).
pub fn decimal_bytes(s: &str, scale: u8) -> Result<Vec<u8>, String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > scale as usize {
        return Err(format!(
            "decimal {s:?} has more than {scale} fraction digits"
        ));
    }
    let mut mag: Vec<u8> = Vec::with_capacity(32);
    let pad = scale as usize - frac.len();
    for c in int
        .bytes()
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', pad))
    {
        if !c.is_ascii_digit() {
            return Err(format!("invalid decimal {s:?}"));
        }
        let mut carry = u32::from(c - b'0');
        for b in mag.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    if mag.first().is_none_or(|b| b & 0x80 != 0) {
        mag.insert(0, 0);
    }
    if neg {
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, o) = b.overflowing_add(1);
            *b = v;
            if !o {
                break;
            }
        }
    }
    Ok(mag)
}

fn mismatch(t: &ColumnType, v: &Value) -> String {
    format!("value {v:?} does not fit the column type {t:?}")
}

/// Appends one column value of type `t` (the union branch when `nullable`).
pub fn write_column(
    out: &mut Vec<u8>,
    t: &ColumnType,
    nullable: bool,
    v: &Value,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    if nullable {
        if matches!(v, Value::Null) {
            out.push(0); // union branch 0: null
            return Ok(());
        }
        out.push(2); // union branch 1 (zigzag 1 = 2)
    } else if matches!(v, Value::Null) {
        return Err(format!("NULL in a NOT NULL column of type {t:?}"));
    }
    match (t, v) {
        (ColumnType::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
        (
            ColumnType::Int {
                bits: 64,
                unsigned: true,
            },
            Value::UInt(u),
        ) => {
            let mut b = Vec::with_capacity(9);
            b.push(0);
            b.extend_from_slice(&u.to_be_bytes());
            write_bytes(out, &b);
        }
        (ColumnType::Int { .. } | ColumnType::Year, Value::Int(i)) => write_long(out, *i),
        (ColumnType::Int { .. }, Value::UInt(u)) if *u <= i64::MAX as u64 => {
            write_long(out, *u as i64)
        }
        (ColumnType::Bit { bits }, Value::UInt(u)) => {
            let n = usize::from(bits.div_ceil(8)).clamp(1, 8);
            write_bytes(out, &u.to_be_bytes()[8 - n..]);
        }
        (ColumnType::Float, Value::Float(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (ColumnType::Double, Value::Double(d)) => out.extend_from_slice(&d.to_le_bytes()),
        (ColumnType::Decimal { scale, .. }, Value::Decimal(s)) => {
            write_bytes(out, &decimal_bytes(s, *scale)?)
        }
        (
            ColumnType::String
            | ColumnType::Enum { .. }
            | ColumnType::Set { .. }
            | ColumnType::Json,
            Value::String(s),
        ) => write_bytes(out, s.as_bytes()),
        (ColumnType::Json, Value::Json(j)) => {
            scratch.clear();
            serde_json::to_writer(&mut *scratch, j).map_err(|e| e.to_string())?;
            write_bytes(out, scratch);
        }
        (ColumnType::Bytes, Value::Bytes(b)) => write_bytes(out, b),
        (ColumnType::Date, Value::Date(_))
        | (ColumnType::DateTime { .. }, Value::DateTime(_))
        | (ColumnType::Timestamp { .. }, Value::Timestamp { .. })
        | (ColumnType::Time { .. }, Value::Time(_)) => {
            scratch.clear();
            write_value(scratch, v);
            // The JSON text of a temporal value is a quoted string without escapes.
            let text = scratch
                .strip_prefix(b"\"")
                .and_then(|s| s.strip_suffix(b"\""))
                .unwrap_or(scratch);
            write_bytes(out, text);
        }
        (ColumnType::Geometry, Value::Geometry { srid, wkb }) => {
            write_long(out, i64::from(*srid));
            write_bytes(out, wkb);
        }
        (ColumnType::Vector, Value::Vector(xs)) => {
            if !xs.is_empty() {
                write_long(out, xs.len() as i64);
                for x in xs {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            out.push(0);
        }
        _ => return Err(mismatch(t, v)),
    }
    Ok(())
}

fn check_row(meta: &TableMeta, row: RowRef<'_>) -> Result<(), String> {
    if row.values.len() != meta.types.len() {
        return Err(format!(
            "row image has {} values, the table has {} columns (full row images are required)",
            row.values.len(),
            meta.types.len()
        ));
    }
    Ok(())
}

/// Appends the key record of `row` (Avro binary, no header).
pub fn write_key(
    out: &mut Vec<u8>,
    meta: &TableMeta,
    row: RowRef<'_>,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    check_row(meta, row)?;
    for &i in meta.primary_key.iter() {
        write_column(
            out,
            &meta.types[i],
            meta.nullable[i],
            &row.values[i],
            scratch,
        )
        .map_err(|e| format!("column {:?}: {e}", meta.columns[i]))?;
    }
    Ok(())
}

fn write_row(
    out: &mut Vec<u8>,
    meta: &TableMeta,
    row: RowRef<'_>,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    check_row(meta, row)?;
    for (i, v) in row.values.iter().enumerate() {
        write_column(out, &meta.types[i], meta.nullable[i], v, scratch)
            .map_err(|e| format!("column {:?}: {e}", meta.columns[i]))?;
    }
    Ok(())
}

fn write_opt_row(
    out: &mut Vec<u8>,
    meta: &TableMeta,
    row: Option<RowRef<'_>>,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    match row {
        None => out.push(0),
        Some(r) => {
            out.push(2);
            write_row(out, meta, r, scratch)?;
        }
    }
    Ok(())
}

fn write_source(out: &mut Vec<u8>, s: &Source, row: u32) {
    write_bytes(out, s.version.as_bytes());
    write_bytes(out, s.connector.as_str().as_bytes());
    write_bytes(out, s.name.as_bytes());
    write_long(out, s.ts_ms as i64);
    write_bytes(out, s.snapshot.as_str().as_bytes());
    write_bytes(out, s.db.as_bytes());
    write_bytes(out, s.table.as_bytes());
    write_long(out, i64::from(s.server_id));
    write_bytes(out, s.gtid.as_bytes());
    write_bytes(out, s.file.as_bytes());
    write_long(out, s.pos as i64);
    write_long(out, i64::from(row));
}

/// The transaction block; its id is the GTID.
fn write_transaction(out: &mut Vec<u8>, tx: Option<&Transaction>, gtid: &str) {
    match tx {
        None => out.push(0),
        Some(tx) => {
            out.push(2);
            write_bytes(out, gtid.as_bytes());
            write_long(out, tx.total_order as i64);
            write_long(out, tx.data_collection_order as i64);
        }
    }
}

/// Appends the envelope of `ev` (Avro binary, no header) per [`value_schema`].
pub fn write_envelope(
    out: &mut Vec<u8>,
    meta: &TableMeta,
    ev: &ChangeEvent,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    write_opt_row(out, meta, ev.before_row(), scratch)?;
    write_opt_row(out, meta, ev.after_row(), scratch)?;
    write_bytes(out, ev.op.as_str().as_bytes());
    write_long(out, ev.ts_ms as i64);
    write_source(out, ev.source(), ev.row);
    write_transaction(out, ev.transaction.as_ref(), &ev.source().gtid);
    Ok(())
}

/// The registered schema ids of one table version.
#[derive(Debug, Clone)]
pub struct AvroTable {
    pub meta: Arc<TableMeta>,
    /// None when the table has no primary key.
    pub key_id: Option<u32>,
    pub value_id: u32,
}

/// [`crate::encode::RecordWriter`] for Avro in the Confluent wire format.
pub struct AvroWriter<'a> {
    pub table: &'a AvroTable,
    pub scratch: Vec<u8>,
}

impl crate::encode::RecordWriter for AvroWriter<'_> {
    fn key(
        &mut self,
        out: &mut Vec<u8>,
        _ev: &ChangeEvent,
        row: RowRef<'_>,
    ) -> Result<bool, String> {
        let Some(id) = self.table.key_id else {
            return Ok(false);
        };
        write_header(out, id);
        write_key(out, &self.table.meta, row, &mut self.scratch)?;
        Ok(true)
    }

    fn value(&mut self, out: &mut Vec<u8>, ev: &ChangeEvent) -> Result<(), String> {
        write_header(out, self.table.value_id);
        write_envelope(out, &self.table.meta, ev, &mut self.scratch)
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value as A;
    use apache_avro::{from_avro_datum, Schema};
    use rowstream_api::{Date, DateTime, Flavor, Op, Row, Snapshot, Time};

    use super::*;
    use rowstream_api::Shared;

    fn meta() -> TableMeta {
        let cols = [
            (
                "id",
                ColumnType::Int {
                    bits: 32,
                    unsigned: false,
                },
                false,
            ),
            (
                "big u",
                ColumnType::Int {
                    bits: 64,
                    unsigned: true,
                },
                false,
            ),
            (
                "i64",
                ColumnType::Int {
                    bits: 64,
                    unsigned: false,
                },
                true,
            ),
            (
                "u32",
                ColumnType::Int {
                    bits: 32,
                    unsigned: true,
                },
                true,
            ),
            ("flag", ColumnType::Bool, true),
            ("bits", ColumnType::Bit { bits: 16 }, true),
            ("f", ColumnType::Float, true),
            ("d", ColumnType::Double, true),
            (
                "price",
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                true,
            ),
            ("name", ColumnType::String, true),
            ("blob", ColumnType::Bytes, true),
            ("day", ColumnType::Date, true),
            ("at", ColumnType::DateTime { fsp: 3 }, true),
            ("ts", ColumnType::Timestamp { fsp: 0 }, true),
            ("t", ColumnType::Time { fsp: 0 }, true),
            ("doc", ColumnType::Json, true),
            ("geo", ColumnType::Geometry, true),
            ("vec", ColumnType::Vector, true),
            (
                "color",
                ColumnType::Enum {
                    labels: Arc::from(vec![Arc::from("red")]),
                },
                true,
            ),
            ("1st", ColumnType::Year, true),
            ("1st", ColumnType::Year, true),
        ];
        TableMeta {
            columns: cols
                .iter()
                .map(|c| Arc::from(c.0))
                .collect::<Vec<_>>()
                .into(),
            types: cols.iter().map(|c| c.1.clone()).collect(),
            nullable: cols.iter().map(|c| c.2).collect(),
            primary_key: Arc::from(vec![1usize, 0]),
        }
    }

    fn values() -> Vec<Value> {
        vec![
            Value::Int(-7),
            Value::UInt(u64::MAX),
            Value::Int(i64::MIN),
            Value::UInt(u64::from(u32::MAX)),
            Value::Bool(true),
            Value::UInt(0x0102),
            Value::Float(1.5),
            Value::Double(-2.25),
            Value::Decimal("-12.50".into()),
            Value::String("héllo".into()),
            Value::Bytes(vec![0, 255]),
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 1,
                    day: 31,
                },
                hour: 10,
                minute: 0,
                second: 0,
                micros: 250_000,
                fsp: 3,
            }),
            Value::Timestamp {
                secs: 0,
                micros: 0,
                fsp: 0,
            },
            Value::Time(Time {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micros: 0,
                fsp: 0,
            }),
            Value::Json(serde_json::json!({"a": [1, 2]})),
            Value::Geometry {
                srid: 4326,
                wkb: vec![1, 2, 3],
            },
            Value::Vector(vec![0.5, -1.0]),
            Value::String("red".into()),
            Value::Int(2024),
            Value::Null,
        ]
    }

    fn event(m: &TableMeta, op: Op) -> ChangeEvent {
        let row = Row {
            columns: m.columns.clone(),
            values: values(),
        };
        let mut ev = ChangeEvent {
            op,
            before: None,
            after: None,
            ts_ms: 1_700_000_000_123,
            shared: Arc::new(Shared {
                source: Source {
                    version: "0.1.0",
                    connector: Flavor::MariaDb,
                    name: "srv".into(),
                    ts_ms: 1_700_000_000_000,
                    snapshot: Snapshot::False,
                    db: "shop".into(),
                    table: "orders".into(),
                    server_id: 1,
                    gtid: "0-1-5".into(),
                    file: "bin.000001".into(),
                    pos: 1234,
                    sequence: 0,
                },
                primary_key: m.primary_key.clone(),
                table: None,
                before_columns: Default::default(),
                after_columns: Default::default(),
            }),
            row: 0,
            transaction: Some(Transaction {
                total_order: 3,
                data_collection_order: 2,
            }),
            overlap: false,
        };
        ev.set_rows(
            (op != Op::Create).then(|| row.clone()),
            (op != Op::Delete).then_some(row),
        );
        ev
    }

    fn field<'a>(v: &'a A, name: &str) -> &'a A {
        match v {
            A::Record(fs) => {
                &fs.iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("no {name}"))
                    .1
            }
            _ => panic!("not a record: {v:?}"),
        }
    }

    fn unwrap_union(v: &A) -> &A {
        match v {
            A::Union(_, b) => b,
            v => v,
        }
    }

    fn twos(b: &[u8]) -> i128 {
        let mut v: i128 = if b.first().is_some_and(|x| x & 0x80 != 0) {
            -1
        } else {
            0
        };
        for x in b {
            v = (v << 8) | i128::from(*x);
        }
        v
    }

    fn dec(v: &A) -> i128 {
        match unwrap_union(v) {
            A::Decimal(d) => twos(&<Vec<u8>>::try_from(d).unwrap()),
            v => panic!("not a decimal: {v:?}"),
        }
    }

    #[test]
    fn schemas_parse_and_values_round_trip() {
        let m = meta();
        let ns = namespace("srv", "shop", "or-ders");
        assert_eq!(ns, "srv.shop.or_ders");
        assert_eq!(
            field_names(&m)[19..],
            ["_1st".to_string(), "_1st_20".to_string()]
        );
        let ks = Schema::parse_str(&key_schema(&m, &ns).unwrap().to_string()).unwrap();
        let vs = Schema::parse_str(&value_schema(&m, &ns).to_string()).unwrap();

        for op in [Op::Create, Op::Update, Op::Delete] {
            let ev = event(&m, op);
            let mut out = Vec::new();
            let mut scratch = Vec::new();
            write_envelope(&mut out, &m, &ev, &mut scratch).unwrap();
            let mut r = &out[..];
            let v = from_avro_datum(&vs, &mut r, None).unwrap();
            assert!(r.is_empty(), "trailing bytes");
            assert_eq!(field(&v, "op"), &A::String(op.as_str().into()));
            assert_eq!(field(&v, "ts_ms"), &A::Long(1_700_000_000_123));
            let src = field(&v, "source");
            assert_eq!(field(src, "connector"), &A::String("mariadb".into()));
            assert_eq!(field(src, "pos"), &A::Long(1234));
            let tx = unwrap_union(field(&v, "transaction"));
            assert_eq!(field(tx, "data_collection_order"), &A::Long(2));
            let before = field(&v, "before");
            assert_eq!(matches!(before, A::Union(0, _)), op == Op::Create);
            let row = unwrap_union(if op == Op::Delete {
                before
            } else {
                field(&v, "after")
            });
            let f = |n: &str| unwrap_union(field(row, n)).clone();
            assert_eq!(f("id"), A::Int(-7));
            assert_eq!(dec(&f("big_u")), i128::from(u64::MAX));
            assert_eq!(f("i64"), A::Long(i64::MIN));
            assert_eq!(f("u32"), A::Long(i64::from(u32::MAX)));
            assert_eq!(f("flag"), A::Boolean(true));
            assert_eq!(f("bits"), A::Bytes(vec![1, 2]));
            assert_eq!(f("f"), A::Float(1.5));
            assert_eq!(f("d"), A::Double(-2.25));
            assert_eq!(dec(&f("price")), -1250);
            assert_eq!(f("name"), A::String("héllo".into()));
            assert_eq!(f("blob"), A::Bytes(vec![0, 255]));
            assert_eq!(f("day"), A::String("0000-00-00".into()));
            assert_eq!(f("at"), A::String("2024-01-31T10:00:00.250".into()));
            assert_eq!(f("ts"), A::String("0000-00-00T00:00:00Z".into()));
            assert_eq!(f("t"), A::String("-838:59:59".into()));
            assert_eq!(f("doc"), A::String(r#"{"a":[1,2]}"#.into()));
            let g = f("geo");
            assert_eq!(field(&g, "srid"), &A::Long(4326));
            assert_eq!(field(&g, "wkb"), &A::Bytes(vec![1, 2, 3]));
            assert_eq!(f("vec"), A::Array(vec![A::Float(0.5), A::Float(-1.0)]));
            assert_eq!(f("color"), A::String("red".into()));
            assert_eq!(f("_1st"), A::Int(2024));
            assert_eq!(field(row, "_1st_20"), &A::Union(0, Box::new(A::Null)));
        }

        let ev = event(&m, Op::Create);
        let mut out = Vec::new();
        write_key(&mut out, &m, ev.after_row().unwrap(), &mut Vec::new()).unwrap();
        let k = from_avro_datum(&ks, &mut &out[..], None).unwrap();
        match &k {
            A::Record(fs) => {
                assert_eq!(fs.len(), 2);
                assert_eq!(fs[0].0, "big_u");
                assert_eq!(fs[1], ("id".to_string(), A::Int(-7)));
            }
            _ => panic!("{k:?}"),
        }
    }

    #[test]
    fn decimals_and_varints() {
        for (s, scale, want) in [
            ("0", 0, 0i128),
            ("-0.00", 2, 0),
            ("127", 0, 127),
            ("128", 0, 128),
            ("-128", 0, -128),
            ("-129", 0, -129),
            ("1.5", 3, 1500),
            (
                "99999999999999999999999999999999999.999",
                3,
                99999999999999999999999999999999999999,
            ),
            (
                "-99999999999999999999999999999999999.999",
                3,
                -99999999999999999999999999999999999999,
            ),
        ] {
            assert_eq!(twos(&decimal_bytes(s, scale).unwrap()), want, "{s}");
        }
        // DECIMAL(65,0): longer than i128, still exact.
        let b = decimal_bytes(&"9".repeat(65), 0).unwrap();
        assert!(b.len() == 28 && b[0] & 0x80 == 0, "{b:?}");
        assert!(decimal_bytes("1.234", 2).is_err());
        assert!(decimal_bytes("1x", 0).is_err());
        let mut out = Vec::new();
        for v in [0i64, -1, 1, -64, 64, i64::MAX, i64::MIN] {
            out.clear();
            write_long(&mut out, v);
            let mut r = &out[..];
            let got = from_avro_datum(&Schema::Long, &mut r, None).unwrap();
            assert_eq!(got, A::Long(v));
        }
    }

    #[test]
    fn mismatches_are_errors() {
        let mut out = Vec::new();
        let t = ColumnType::Int {
            bits: 32,
            unsigned: false,
        };
        assert!(write_column(&mut out, &t, false, &Value::Null, &mut Vec::new()).is_err());
        assert!(write_column(
            &mut out,
            &t,
            false,
            &Value::String("x".into()),
            &mut Vec::new()
        )
        .is_err());
        let m = TableMeta {
            primary_key: Arc::from(Vec::new()),
            ..meta()
        };
        assert!(key_schema(&m, "a.b.c").is_none());
    }

    /// `schemas/source.avsc` and `schemas/change-event.avsc` are what the
    /// code generates (docs aside).
    #[test]
    fn schema_files_match() {
        fn strip_doc(v: &mut Json) {
            match v {
                Json::Object(m) => {
                    m.remove("doc");
                    m.values_mut().for_each(strip_doc);
                }
                Json::Array(a) => a.iter_mut().for_each(strip_doc),
                _ => {}
            }
        }
        let mut source: Json =
            serde_json::from_str(include_str!("../../../schemas/source.avsc")).unwrap();
        strip_doc(&mut source);
        assert_eq!(source, source_schema());
        let mut env: Json =
            serde_json::from_str(include_str!("../../../schemas/change-event.avsc")).unwrap();
        strip_doc(&mut env);
        env["fields"][4]["type"] = source;
        let empty = TableMeta {
            columns: Arc::from(Vec::<Arc<str>>::new()),
            types: vec![],
            nullable: vec![],
            primary_key: Arc::from(Vec::new()),
        };
        assert_eq!(env, value_schema(&empty, "server.db.table"));
        Schema::parse_str(&env.to_string()).unwrap();
    }
}
