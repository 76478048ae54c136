//! Debezium-compatible encoding (pure, no I/O): record keys, values and
//! topics as Debezium's MySQL connector 3.6 writes them with Kafka Connect's
//! `JsonConverter` and `schemas.enable=false`, under Debezium's default
//! settings: `decimal.handling.mode=precise`,
//! `time.precision.mode=adaptive_time_microseconds`,
//! `binary.handling.mode=bytes`, `bigint.unsigned.handling.mode=long`,
//! `include.schema.changes=true`, `include.query=false`,
//! `tombstones.on.delete=true`, `provide.transaction.metadata=false` (the
//! sink's `transactions = true` is Debezium's `true`: the envelope's
//! `transaction` block is filled, numbered as Debezium numbers events: a
//! primary-key change counts as its delete and its create).
//!
//! Column values (see [`write_value`]): DECIMAL as base64 of the unscaled
//! value's minimal big-endian two's complement bytes; DATE as days since the
//! epoch; DATETIME(0..3) as epoch milliseconds, DATETIME(4..6) as epoch
//! microseconds (wall clock read as UTC); TIME as microseconds; TIMESTAMP as
//! an ISO-8601 string in UTC (`Z`) with exactly `fsp` fraction digits;
//! binary as base64; BIT(1) as a boolean, BIT(n) as base64 of its
//! little-endian bytes ((n+7)/8 of them); BIGINT UNSIGNED as a signed long
//! (values above 2^63-1 wrap, as in Debezium's `long` mode); FLOAT and
//! DOUBLE printed like Java's `Float.toString` / `Double.toString`; JSON as
//! a compact string (MySQL's key order); geometries as `{"wkb","srid"}`
//! (srid null when 0); VECTOR as an array of floats; zero or partial dates
//! and the zero TIMESTAMP as null; YEAR 0000 as 1900 (Debezium's binlog
//! client reads it so); JSON doubles that Java would print with an
//! exponent as their exact decimal expansion (the formatter's
//! `BigDecimal.toPlainString`).
//!
//! Strings are escaped like Jackson (`\"`, `\\`, `\b \t \n \f \r`, other
//! control characters `\u00XX` in upper case; nothing else).
//!
//! Invariants: the field order of every object is Debezium's (the schema
//! order of its Connect structs), so equal records are equal byte for byte;
//! `source.thread` is null and `source.version` is rowstream's (rowstream
//! does not track the session thread of a transaction); a schema-change
//! value's `tableChanges` is empty (rowstream keeps no parsed table model).
//! These are the documented differences (README, "Debezium compatibility").

use base64::Engine as _;
use rowstream_api::parse::days_from_civil;
use rowstream_api::{
    ChangeEvent, ColumnType, Date, DateTime, Record, RowRef, SchemaChange, Source, TableMeta, Value,
};

use crate::encode::{encode_change_with, Encoded, RecordWriter};

/// Writes keys and envelopes in Debezium's shape for [`encode_change_with`].
pub struct DebeziumWriter {
    /// With transaction metadata (Debezium's
    /// `provide.transaction.metadata=true`, the sink's `transactions`): the
    /// `(total_order, data_collection_order)` of the next record; each
    /// record written takes the next numbers (a primary-key change is two
    /// events, as in Debezium). None: the `transaction` block is null.
    pub order: Option<(u64, u64)>,
}

impl RecordWriter for DebeziumWriter {
    fn key(
        &mut self,
        out: &mut Vec<u8>,
        ev: &ChangeEvent,
        row: RowRef<'_>,
    ) -> Result<bool, String> {
        Ok(write_key(
            out,
            ev.primary_key(),
            row,
            ev.table().map(|t| &**t),
        ))
    }
    fn value(&mut self, out: &mut Vec<u8>, ev: &ChangeEvent) -> Result<(), String> {
        write_envelope(out, ev, self.order);
        if let Some((t, d)) = &mut self.order {
            *t += 1;
            *d += 1;
        }
        Ok(())
    }
    fn keyless_tombstones(&self) -> bool {
        true
    }
}

/// Encodes one change event into `enc` (cleared first) in Debezium's shape:
/// the change record, and after a delete a tombstone when `tombstones`; an
/// update of the primary key is a delete (+ tombstone) and a create, as
/// Debezium does. `order`: see [`DebeziumWriter::order`].
pub fn encode_change(
    ev: &ChangeEvent,
    tombstones: bool,
    order: Option<(u64, u64)>,
    enc: &mut Encoded,
) {
    // DebeziumWriter never fails.
    let _ = encode_change_with(ev, tombstones, enc, &mut DebeziumWriter { order });
}

/// The key object `{"col":value,...}` of `row`'s primary key columns; false
/// (nothing written) when there is no primary key.
pub fn write_key(
    out: &mut Vec<u8>,
    pk: &[usize],
    row: RowRef<'_>,
    meta: Option<&TableMeta>,
) -> bool {
    if pk.is_empty() || pk.iter().any(|&i| i >= row.values.len()) {
        return false;
    }
    out.push(b'{');
    for (n, &i) in pk.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_str(out, &row.columns[i]);
        out.push(b':');
        write_value(out, &row.values[i], meta.and_then(|m| m.types.get(i)));
    }
    out.push(b'}');
    true
}

/// One row image as an object in column order.
fn write_row(out: &mut Vec<u8>, row: Option<RowRef<'_>>, meta: Option<&TableMeta>) {
    let Some(row) = row else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    for (i, (c, v)) in row.columns.iter().zip(row.values).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, c);
        out.push(b':');
        write_value(out, v, meta.and_then(|m| m.types.get(i)));
    }
    out.push(b'}');
}

/// The change envelope: before, after, source, transaction, op, ts_ms,
/// ts_us, ts_ns; `transaction` (the GTID and `order`) is null without
/// `order`.
pub fn write_envelope(out: &mut Vec<u8>, ev: &ChangeEvent, order: Option<(u64, u64)>) {
    let meta = ev.table().map(|t| &**t);
    out.extend_from_slice(b"{\"before\":");
    write_row(out, ev.before_row(), meta);
    out.extend_from_slice(b",\"after\":");
    write_row(out, ev.after_row(), meta);
    out.extend_from_slice(b",\"source\":");
    write_source(out, ev.source(), ev.row, Some(&ev.source().table));
    out.extend_from_slice(b",\"transaction\":");
    match order {
        Some((total, table)) => {
            let mut b = itoa::Buffer::new();
            out.extend_from_slice(b"{\"id\":");
            write_str(out, &ev.source().gtid);
            out.extend_from_slice(b",\"total_order\":");
            out.extend_from_slice(b.format(total).as_bytes());
            out.extend_from_slice(b",\"data_collection_order\":");
            out.extend_from_slice(b.format(table).as_bytes());
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"op\":\"");
    out.extend_from_slice(ev.op.as_str().as_bytes());
    out.push(b'"');
    write_ts(out, ev.ts_ms);
    out.push(b'}');
}

/// `,"ts_ms":..,"ts_us":..,"ts_ns":..` from a millisecond time.
fn write_ts(out: &mut Vec<u8>, ms: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(b.format(ms).as_bytes());
    out.extend_from_slice(b",\"ts_us\":");
    out.extend_from_slice(b.format(u128::from(ms) * 1_000).as_bytes());
    out.extend_from_slice(b",\"ts_ns\":");
    out.extend_from_slice(b.format(u128::from(ms) * 1_000_000).as_bytes());
}

/// The `source` block of Debezium's MySQL connector
/// (`io.debezium.connector.mysql.Source`); `row` is the row's index within
/// its rows event (0 for a schema change).
pub fn write_source(out: &mut Vec<u8>, s: &Source, row: u32, table: Option<&str>) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b"{\"version\":");
    write_str(out, s.version);
    out.extend_from_slice(b",\"connector\":");
    write_str(out, s.connector.as_str());
    out.extend_from_slice(b",\"name\":");
    write_str(out, &s.name);
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(b.format(s.ts_ms).as_bytes());
    out.extend_from_slice(b",\"snapshot\":");
    write_str(out, s.snapshot.as_str());
    out.extend_from_slice(b",\"db\":");
    write_str(out, &s.db);
    out.extend_from_slice(b",\"sequence\":null,\"ts_us\":");
    out.extend_from_slice(b.format(u128::from(s.ts_ms) * 1_000).as_bytes());
    out.extend_from_slice(b",\"ts_ns\":");
    out.extend_from_slice(b.format(u128::from(s.ts_ms) * 1_000_000).as_bytes());
    out.extend_from_slice(b",\"table\":");
    match table.filter(|t| !t.is_empty()) {
        Some(t) => write_str(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"server_id\":");
    out.extend_from_slice(b.format(s.server_id).as_bytes());
    out.extend_from_slice(b",\"gtid\":");
    if s.gtid.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        write_str(out, &s.gtid);
    }
    out.extend_from_slice(b",\"file\":");
    write_str(out, &s.file);
    out.extend_from_slice(b",\"pos\":");
    out.extend_from_slice(b.format(s.pos).as_bytes());
    out.extend_from_slice(b",\"row\":");
    out.extend_from_slice(b.format(row).as_bytes());
    out.extend_from_slice(b",\"thread\":null,\"query\":null}");
}

/// The key of a schema-change record on the `{name}` topic: `{"databaseName":".."}`.
pub fn write_schema_change_key(out: &mut Vec<u8>, sc: &SchemaChange) {
    out.extend_from_slice(b"{\"databaseName\":");
    write_str(out, &sc.database);
    out.push(b'}');
}

/// The value of a schema-change record: source, ts_ms, databaseName,
/// schemaName (null), ddl, tableChanges (empty, see the module docs).
pub fn write_schema_change(out: &mut Vec<u8>, sc: &SchemaChange) {
    out.extend_from_slice(b"{\"source\":");
    let table = match &*sc.source.table {
        "" => ddl_table(&sc.ddl),
        t => Some(t),
    };
    write_source(out, &sc.source, 0, table);
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(itoa::Buffer::new().format(sc.ts_ms).as_bytes());
    out.extend_from_slice(b",\"databaseName\":");
    write_str(out, &sc.database);
    out.extend_from_slice(b",\"schemaName\":null,\"ddl\":");
    write_str(out, &sc.ddl);
    out.extend_from_slice(b",\"tableChanges\":[]}");
}

/// The table a DDL statement changes, as Debezium names it in
/// `source.table`: for CREATE / ALTER / DROP / TRUNCATE TABLE the table
/// (without its database), else None. A light look at the first words,
/// not a parser: enough for the statements that name one table.
pub fn ddl_table(ddl: &str) -> Option<&str> {
    let mut words = ddl.split_whitespace().peekable();
    let skip = |words: &mut std::iter::Peekable<std::str::SplitWhitespace<'_>>, w: &[&str]| {
        while words
            .peek()
            .is_some_and(|x| w.iter().any(|k| x.eq_ignore_ascii_case(k)))
        {
            words.next();
        }
    };
    let first = words.next()?;
    let verb = ["create", "alter", "drop", "truncate"]
        .into_iter()
        .find(|v| first.eq_ignore_ascii_case(v))?;
    skip(&mut words, &["temporary", "online", "ignore"]);
    match words.next() {
        Some(w) if w.eq_ignore_ascii_case("table") => {}
        Some(w) if verb == "truncate" => return Some(table_name(w)),
        _ => return None,
    }
    skip(&mut words, &["if", "not", "exists"]);
    words.next().map(table_name)
}

/// `db.t`, `` `db`.`t` ``, `t(` or `t,` -> `t`.
fn table_name(w: &str) -> &str {
    let w = w.split(['(', ',', ';']).next().unwrap_or(w);
    w.rsplit("`.`")
        .next()
        .unwrap_or(w)
        .rsplit('.')
        .next()
        .unwrap_or(w)
        .trim_matches('`')
}

/// The topic of a table's change records: `{name}.{db}.{table}`.
pub fn table_topic(s: &Source) -> String {
    format!("{}.{}.{}", s.name, s.db, s.table)
}

/// Appends `rec` as lines `{"topic":..,"key":..,"value":..}` (one per Kafka
/// record Debezium would write: tombstones have `"value":null`); for
/// `rowstream tail --format debezium`, and the same lines Debezium's own
/// runner prints in the compatibility test.
pub fn write_lines(out: &mut Vec<u8>, rec: &Record, enc: &mut Encoded) {
    let line = |out: &mut Vec<u8>, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>| {
        out.extend_from_slice(b"{\"topic\":");
        write_str(out, topic);
        out.extend_from_slice(b",\"key\":");
        out.extend_from_slice(key.unwrap_or(b"null"));
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(value.unwrap_or(b"null"));
        out.extend_from_slice(b"}\n");
    };
    match rec {
        Record::Change(ev) => {
            encode_change(ev, true, None, enc);
            let topic = table_topic(ev.source());
            for r in &enc.records {
                line(out, &topic, enc.bytes(&r.key), enc.bytes(&r.value));
            }
        }
        Record::SchemaChange(sc) => {
            let (mut k, mut v) = (Vec::new(), Vec::new());
            write_schema_change_key(&mut k, sc);
            write_schema_change(&mut v, sc);
            line(out, &sc.source.name, Some(&k), Some(&v));
        }
    }
}

/// A JSON string escaped as Jackson escapes it (characters beyond the
/// Basic Multilingual Plane as `\uD83D\uDE00` surrogate escapes, as Java
/// strings hold them).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    escape_str(out, s, true);
}

/// [`write_str`], or with `supplementary = false` the escaping of
/// mysql-binlog-connector's JSON formatter (the same, but characters beyond
/// the BMP as they are).
fn escape_str(out: &mut Vec<u8>, s: &str, supplementary: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let hex4 = |out: &mut Vec<u8>, u: u16| {
        out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[usize::from((u >> shift) & 0xf)]);
        }
    };
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings have nothing to escape: one copy instead of a look at every byte.
    if rowstream_api::json::is_clean(bytes)
        && !(supplementary && !bytes.is_ascii() && bytes.iter().any(|&b| b >= 0xf0))
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (j, &b) in bytes.iter().enumerate() {
        if b >= 0xf0 && supplementary {
            // The first byte of a 4-byte UTF-8 sequence: a supplementary character.
            out.extend_from_slice(&bytes[start..j]);
            start = j + 4;
            let c = s[j..].chars().next().unwrap_or_default();
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                hex4(out, *u);
            }
            continue;
        }
        if j < start {
            continue; // inside a sequence escaped above
        }
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            b'\t' => b't',
            b'\n' => b'n',
            0x0c => b'f',
            b'\r' => b'r',
            0..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..j]);
        start = j + 1;
        if short == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut s = String::new();
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut s);
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// One column value in Debezium's default mapping (see the module docs);
/// `ty` is the column's type when the event carries its table's metadata.
pub fn write_value(out: &mut Vec<u8>, v: &Value, ty: Option<&ColumnType>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // YEAR 0000: the binlog client Debezium uses reads 0 as 1900.
        Value::Int(0) if ty == Some(&ColumnType::Year) => write_int(out, 1900),
        Value::Int(i) => write_int(out, *i),
        Value::UInt(u) => match ty {
            Some(ColumnType::Bit { bits }) => {
                let n = (usize::from(*bits)).div_ceil(8);
                write_base64(out, &u.to_le_bytes()[..n.min(8)]);
            }
            // BIGINT UNSIGNED in `long` mode: the bits as a signed long.
            _ => write_int(out, *u as i64),
        },
        Value::Float(f) => {
            out.extend_from_slice(java_float(f64::from(*f), &format!("{f:e}")).as_bytes())
        }
        Value::Double(d) => out.extend_from_slice(java_float(*d, &format!("{d:e}")).as_bytes()),
        Value::Decimal(s) => write_base64(out, &decimal_bytes(s)),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_base64(out, b),
        Value::Date(d) => match epoch_days(d) {
            Some(days) => write_int(out, days),
            None => out.extend_from_slice(b"null"),
        },
        Value::DateTime(dt) => match datetime_micros(dt) {
            Some(us) if dt.fsp <= 3 => write_int(out, us.div_euclid(1_000)),
            Some(us) => write_int(out, us),
            None => out.extend_from_slice(b"null"),
        },
        // The zero timestamp is null (Debezium cannot convert it).
        Value::Timestamp {
            secs: 0, micros: 0, ..
        } => out.extend_from_slice(b"null"),
        Value::Timestamp { secs, micros, fsp } => write_timestamp(out, *secs, *micros, *fsp),
        Value::Time(t) => {
            let us = ((i64::from(t.hours) * 60 + i64::from(t.minute)) * 60 + i64::from(t.second))
                * 1_000_000
                + i64::from(t.micros);
            write_int(out, if t.negative { -us } else { us });
        }
        Value::Json(j) => {
            let mut s = Vec::new();
            write_mysql_json(&mut s, j);
            write_str(out, std::str::from_utf8(&s).unwrap_or_default());
        }
        Value::Geometry { srid, wkb } => {
            out.extend_from_slice(b"{\"wkb\":");
            write_base64(out, wkb);
            out.extend_from_slice(b",\"srid\":");
            if *srid == 0 {
                out.extend_from_slice(b"null");
            } else {
                out.extend_from_slice(itoa::Buffer::new().format(*srid).as_bytes());
            }
            out.push(b'}');
        }
        Value::Vector(xs) => {
            out.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(java_float(f64::from(*x), &format!("{x:e}")).as_bytes());
            }
            out.push(b']');
        }
    }
}

/// Days since 1970-01-01; None for zero or partial dates.
fn epoch_days(d: &Date) -> Option<i64> {
    if d.month == 0 || d.day == 0 {
        return None;
    }
    Some(days_from_civil(
        i64::from(d.year),
        i64::from(d.month),
        i64::from(d.day),
    ))
}

/// Microseconds since the epoch of a wall-clock DATETIME read as UTC.
fn datetime_micros(dt: &DateTime) -> Option<i64> {
    let days = epoch_days(&dt.date)?;
    let secs = days * 86_400
        + i64::from(dt.hour) * 3_600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second);
    Some(secs * 1_000_000 + i64::from(dt.micros))
}

/// `"2024-01-02T03:04:05.120Z"`: Debezium's ZonedTimestamp, exactly `fsp`
/// fraction digits (none for fsp 0).
fn write_timestamp(out: &mut Vec<u8>, secs: i64, micros: u32, fsp: u8) {
    let (y, m, d) = rowstream_api::json::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "\"{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if fsp > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(&frac[..usize::from(fsp.min(6))]);
    }
    s.push_str("Z\"");
    out.extend_from_slice(s.as_bytes());
}

/// Java's `Double.toString` / `Float.toString` of `x`, given Rust's shortest
/// scientific form `sci` (`"1.5e0"`, `"-1e-7"`): plain notation with at
/// least one fraction digit for 1e-3 <= |x| < 1e7, else `d.dddE<exp>`.
pub fn java_float(x: f64, sci: &str) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .into();
    }
    let (sign, sci) = match sci.strip_prefix('-') {
        Some(s) => ("-", s),
        None => ("", sci),
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let (first, rest) = digits.split_at(1);
    if (-3..7).contains(&exp) {
        if exp < 0 {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        } else {
            let e = exp as usize + 1;
            let padded = format!("{digits:0<e$}");
            let (int, frac) = padded.split_at(e);
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{sign}{int}.{frac}")
        }
    } else {
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exp}")
    }
}

/// The unscaled value of a decimal text ("-12.50" -> -1250) as Java's
/// `BigInteger.toByteArray`: minimal big-endian two's complement.
pub fn decimal_bytes(s: &str) -> Vec<u8> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    // Magnitude, big-endian base 256.
    let mut mag: Vec<u8> = Vec::new();
    for c in digits.bytes().filter(u8::is_ascii_digit) {
        let mut carry = u32::from(c - b'0');
        for b in mag.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    while mag.first() == Some(&0) {
        mag.remove(0);
    }
    if mag.is_empty() {
        return vec![0];
    }
    if !neg {
        if mag[0] & 0x80 != 0 {
            mag.insert(0, 0);
        }
        return mag;
    }
    // Two's complement: invert, add one.
    let mut out: Vec<u8> = mag.iter().map(|b| !b).collect();
    for b in out.iter_mut().rev() {
        let (v, overflow) = b.overflowing_add(1);
        *b = v;
        if !overflow {
            break;
        }
    }
    if out[0] & 0x80 == 0 {
        out.insert(0, 0xff);
    }
    // Minimal: drop leading 0xff bytes that the next byte's sign bit repeats.
    while out.len() > 1 && out[0] == 0xff && out[1] & 0x80 != 0 {
        out.remove(0);
    }
    out
}

/// The exact decimal value of a finite double, without exponent and
/// without trailing fraction zeros (`1e-7` ->
/// `0.000000099999999999999995474811182588625868561393872369080781936645507812500`
/// minus its trailing zeros; `1e23` -> `99999999999999991611392`).
pub fn exact_decimal(x: f64) -> String {
    let bits = x.to_bits();
    let neg = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (mut m, mut e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), exp - 1075)
    };
    if m == 0 {
        return "0".into();
    }
    while m % 2 == 0 {
        m /= 2;
        e += 1;
    }
    // Little-endian base-1e9 limbs of m * 2^e (e >= 0) or m * 5^-e (e < 0).
    let mut limbs: Vec<u64> = vec![m % 1_000_000_000, m / 1_000_000_000];
    let mul = |limbs: &mut Vec<u64>, k: u64| {
        let mut carry = 0;
        for l in limbs.iter_mut() {
            let v = *l * k + carry;
            *l = v % 1_000_000_000;
            carry = v / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push(carry % 1_000_000_000);
            carry /= 1_000_000_000;
        }
    };
    for _ in 0..e.unsigned_abs() {
        mul(&mut limbs, if e > 0 { 2 } else { 5 });
    }
    while limbs.len() > 1 && limbs.last() == Some(&0) {
        limbs.pop();
    }
    let mut digits = limbs.last().map(u64::to_string).unwrap_or_default();
    for l in limbs.iter().rev().skip(1) {
        digits.push_str(&format!("{l:09}"));
    }
    let sign = if neg { "-" } else { "" };
    if e >= 0 {
        return format!("{sign}{digits}");
    }
    // m * 5^k / 10^k: the point goes k digits from the right.
    let k = e.unsigned_abs() as usize;
    if digits.len() <= k {
        digits = format!("{}{digits}", "0".repeat(k - digits.len() + 1));
    }
    let (int, frac) = digits.split_at(digits.len() - k);
    format!("{sign}{int}.{frac}")
}

/// A MySQL JSON value as mysql-binlog-connector's formatter prints it:
/// compact, object keys in MySQL's storage order (shorter first, then
/// bytewise), numbers as Java prints them.
fn write_mysql_json(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value as J;
    match v {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => write_int(out, i),
            (_, Some(u), _) => out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes()),
            (_, _, Some(f)) => {
                let java = java_float(f, &format!("{f:e}"));
                if java.contains('E') {
                    // The formatter avoids exponents: Java's exact
                    // `new BigDecimal(double).toPlainString()`.
                    out.extend_from_slice(exact_decimal(f).as_bytes());
                } else {
                    out.extend_from_slice(java.as_bytes());
                }
            }
            _ => out.extend_from_slice(n.to_string().as_bytes()),
        },
        J::String(s) => escape_str(out, s, false),
        J::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_mysql_json(out, x);
            }
            out.push(b']');
        }
        J::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                escape_str(out, k, false);
                out.push(b':');
                write_mysql_json(out, &o[k]);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rowstream_api::{Flavor, Op, Row, Shared, Snapshot, Time};

    use super::*;

    fn v(v: &Value, ty: Option<&ColumnType>) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v, ty);
        String::from_utf8(out).unwrap()
    }

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    fn dt(d: Date, h: u8, mi: u8, s: u8, micros: u32, fsp: u8) -> Value {
        Value::DateTime(DateTime {
            date: d,
            hour: h,
            minute: mi,
            second: s,
            micros,
            fsp,
        })
    }

    #[test]
    fn numbers() {
        assert_eq!(v(&Value::Null, None), "null");
        assert_eq!(v(&Value::Bool(true), Some(&ColumnType::Bool)), "true");
        assert_eq!(v(&Value::Int(-128), None), "-128");
        assert_eq!(v(&Value::Int(0), Some(&ColumnType::Year)), "1900");
        assert_eq!(v(&Value::Int(0), None), "0");
        let bigu = ColumnType::Int {
            bits: 64,
            unsigned: true,
        };
        assert_eq!(v(&Value::UInt(u64::MAX), Some(&bigu)), "-1");
        assert_eq!(v(&Value::UInt(4294967295), None), "4294967295");
        let bit10 = ColumnType::Bit { bits: 10 };
        assert_eq!(v(&Value::UInt(0b10_1010_1010), Some(&bit10)), "\"qgI=\"");
        let bit64 = ColumnType::Bit { bits: 64 };
        assert_eq!(v(&Value::UInt(1), Some(&bit64)), "\"AQAAAAAAAAA=\"");
        assert_eq!(v(&Value::Float(1.1), None), "1.1");
        assert_eq!(v(&Value::Float(-3.40282e38), None), "-3.40282E38");
        assert_eq!(v(&Value::Float(0.0), None), "0.0");
        assert_eq!(v(&Value::Double(0.1 + 0.2), None), "0.30000000000000004");
        assert_eq!(v(&Value::Double(1e-7), None), "1.0E-7");
        assert_eq!(v(&Value::Double(2.0), None), "2.0");
        assert_eq!(v(&Value::Double(0.001), None), "0.001");
        assert_eq!(v(&Value::Double(1234567.5), None), "1234567.5");
        assert_eq!(v(&Value::Double(1e7), None), "1.0E7");
        assert_eq!(
            v(&Value::Double(-1.7976931348623157e308), None),
            "-1.7976931348623157E308"
        );
    }

    #[test]
    fn decimals_are_twos_complement_base64() {
        let b = |s: &str| decimal_bytes(s);
        assert_eq!(b("-12.50"), vec![0xfb, 0x1e]);
        assert_eq!(b("0.00"), vec![0]);
        assert_eq!(b("128"), vec![0, 0x80]);
        assert_eq!(b("-128"), vec![0x80]);
        assert_eq!(b("-129"), vec![0xff, 0x7f]);
        assert_eq!(b("-256"), vec![0xff, 0x00]);
        assert_eq!(b("-32768"), vec![0x80, 0x00]);
        assert_eq!(b("-0.000000000000000000000000000001"), vec![0xff]);
        // 10^65 - 1 needs 216 bits: a leading 0 byte keeps it positive.
        let big = b("99999999999999999999999999999999999.999999999999999999999999999999");
        assert_eq!((big.len(), big[0], big[1]), (28, 0, 0xf3));
        assert_eq!(v(&Value::Decimal("-12.50".into()), None), "\"+x4=\"");
    }

    #[test]
    fn temporal() {
        assert_eq!(v(&Value::Date(date(1970, 1, 2)), None), "1");
        assert_eq!(v(&Value::Date(date(1969, 12, 31)), None), "-1");
        assert_eq!(v(&Value::Date(date(0, 0, 0)), None), "null");
        assert_eq!(v(&Value::Date(date(2024, 2, 0)), None), "null");
        let d = date(2024, 5, 17);
        assert_eq!(v(&dt(d, 13, 45, 9, 123_000, 3), None), "1715953509123");
        assert_eq!(v(&dt(d, 13, 45, 9, 0, 0), None), "1715953509000");
        assert_eq!(v(&dt(d, 13, 45, 9, 123_456, 6), None), "1715953509123456");
        let ts = |secs, micros, fsp| {
            v(
                &Value::Timestamp { secs, micros, fsp },
                Some(&ColumnType::Timestamp { fsp }),
            )
        };
        assert_eq!(ts(0, 0, 0), "null");
        assert_eq!(ts(0, 1, 6), "\"1970-01-01T00:00:00.000001Z\"");
        assert_eq!(ts(2147483647, 0, 0), "\"2038-01-19T03:14:07Z\"");
        assert_eq!(ts(1, 120_000, 3), "\"1970-01-01T00:00:01.120Z\"");
        assert_eq!(ts(1, 0, 6), "\"1970-01-01T00:00:01.000000Z\"");
        let time = |negative, hours, minute, second, micros| {
            v(
                &Value::Time(Time {
                    negative,
                    hours,
                    minute,
                    second,
                    micros,
                    fsp: 6,
                }),
                None,
            )
        };
        assert_eq!(time(true, 838, 59, 59, 0), "-3020399000000");
        assert_eq!(time(false, 12, 34, 56, 789_000), "45296789000");
        assert_eq!(time(true, 0, 0, 0, 500_000), "-500000");
    }

    #[test]
    fn strings_bytes_json_geometry_vector() {
        assert_eq!(
            v(&Value::String("a\"b\\c\u{1}\t\u{7f}ü😀x".into()), None),
            "\"a\\\"b\\\\c\\u0001\\t\u{7f}ü\\uD83D\\uDE00x\""
        );
        assert_eq!(
            v(&Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]), None),
            "\"3q2+7w==\""
        );
        let j =
            serde_json::json!({"k": [true, null, -1, 1.5, "s"], "ab": {"zz": 1, "b": 2}, "c": 0.5});
        assert_eq!(
            v(&Value::Json(j), Some(&ColumnType::Json)),
            r#""{\"c\":0.5,\"k\":[true,null,-1,1.5,\"s\"],\"ab\":{\"b\":2,\"zz\":1}}""#
        );
        assert_eq!(
            exact_decimal(1e-7),
            "0.0000000999999999999999954748111825886258685613938723690807819366455078125"
        );
        assert_eq!(exact_decimal(1e23), "99999999999999991611392");
        assert_eq!(exact_decimal(-1.5e7), "-15000000");
        assert_eq!(exact_decimal(0.5), "0.5");
        assert_eq!(exact_decimal(5e-324).len(), 2 + 1074);
        assert_eq!(
            v(
                &Value::Geometry {
                    srid: 0,
                    wkb: vec![1, 2]
                },
                None
            ),
            r#"{"wkb":"AQI=","srid":null}"#
        );
        assert_eq!(
            v(
                &Value::Geometry {
                    srid: 3857,
                    wkb: vec![1]
                },
                None
            ),
            r#"{"wkb":"AQ==","srid":3857}"#
        );
        assert_eq!(
            v(&Value::Vector(vec![1.1, 2.0, -3.5]), None),
            "[1.1,2.0,-3.5]"
        );
    }

    fn source() -> Source {
        Source {
            version: "0.1.0",
            connector: Flavor::MySql,
            name: "srv".into(),
            ts_ms: 1_700_000_000_123,
            snapshot: Snapshot::False,
            db: "shop".into(),
            table: "t".into(),
            server_id: 7,
            gtid: "3e11fa47-71ca-11e1-9e33-c80aa9429562:23".into(),
            file: "binlog.000001".into(),
            pos: 1234,
            sequence: 9,
        }
    }

    #[test]
    fn envelope_key_tombstone_and_topic() {
        let columns: rowstream_api::Columns = Arc::from(vec![Arc::from("id"), Arc::from("d")]);
        let meta = TableMeta {
            columns: columns.clone(),
            types: vec![
                ColumnType::Int {
                    bits: 32,
                    unsigned: false,
                },
                ColumnType::Decimal {
                    precision: 5,
                    scale: 2,
                },
            ],
            nullable: vec![false, true],
            primary_key: Arc::from(vec![0usize]),
        };
        let row = Row {
            columns,
            values: vec![Value::Int(1), Value::Decimal("-12.50".into())],
        };
        let ev = {
            let mut ev = ChangeEvent {
                op: Op::Delete,
                before: None,
                after: None,
                ts_ms: 1_700_000_000_999,
                shared: Arc::new(Shared {
                    source: source(),
                    primary_key: Arc::from(vec![0usize]),
                    table: Some(Arc::new(meta)),
                    before_columns: Default::default(),
                    after_columns: Default::default(),
                }),
                row: 0,
                transaction: None,
                overlap: false,
            };
            ev.set_rows(Some(row), None);
            ev
        };
        let ev_copy = ev.clone();
        let mut out = Vec::new();
        write_lines(&mut out, &Record::Change(ev), &mut Encoded::default());
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let want = concat!(
            r#"{"topic":"srv.shop.t","key":{"id":1},"value":{"before":{"id":1,"d":"+x4="},"after":null,"#,
            r#""source":{"version":"0.1.0","connector":"mysql","name":"srv","ts_ms":1700000000123,"snapshot":"false","db":"shop","#,
            r#""sequence":null,"ts_us":1700000000123000,"ts_ns":1700000000123000000,"table":"t","server_id":7,"#,
            r#""gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","file":"binlog.000001","pos":1234,"row":0,"thread":null,"query":null},"#,
            r#""transaction":null,"op":"d","ts_ms":1700000000999,"ts_us":1700000000999000,"ts_ns":1700000000999000000}}"#
        );
        assert_eq!(lines[0], want);
        assert_eq!(
            lines[1],
            r#"{"topic":"srv.shop.t","key":{"id":1},"value":null}"#
        );
        // With transaction metadata, the block Debezium writes.
        let mut ev = ev_copy;
        ev.shared_mut().source.gtid = "g:1".into();
        let mut enc = Encoded::default();
        encode_change(&ev, false, Some((2, 1)), &mut enc);
        let v: serde_json::Value =
            serde_json::from_slice(enc.bytes(&enc.records[0].value).unwrap()).unwrap();
        assert_eq!(
            v["transaction"],
            serde_json::json!({"id":"g:1","total_order":2,"data_collection_order":1})
        );
    }

    #[test]
    fn schema_change() {
        let mut src = source();
        src.table = "".into();
        let sc = SchemaChange {
            source: src,
            ts_ms: 5,
            database: "shop".into(),
            ddl: "ALTER TABLE t ADD COLUMN x INT".into(),
        };
        let mut out = Vec::new();
        write_lines(
            &mut out,
            &Record::SchemaChange(Box::new(sc)),
            &mut Encoded::default(),
        );
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["topic"], "srv");
        assert_eq!(line["key"], serde_json::json!({"databaseName":"shop"}));
        let val = &line["value"];
        assert_eq!(val["ddl"], "ALTER TABLE t ADD COLUMN x INT");
        assert_eq!(val["databaseName"], "shop");
        assert!(val["schemaName"].is_null());
        assert_eq!(val["source"]["table"], "t");
        for (ddl, table) in [
            ("CREATE TABLE t (id INT)", Some("t")),
            (
                "create temporary table if not exists `d`.`t_x`(id int)",
                Some("t_x"),
            ),
            ("ALTER ONLINE TABLE d.t ADD c INT", Some("t")),
            ("DROP TABLE IF EXISTS `t`, u", Some("t")),
            ("TRUNCATE d.t", Some("t")),
            ("CREATE DATABASE d", None),
            ("CREATE INDEX i ON t (c)", None),
        ] {
            assert_eq!(ddl_table(ddl), table, "{ddl}");
        }
        assert_eq!(val["tableChanges"], serde_json::json!([]));
    }
}
