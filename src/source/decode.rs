//! Row events -> typed values.
//!
//! [`parse_rows_header`] splits a WRITE/UPDATE/DELETE_ROWS (v1 and v2) or
//! PARTIAL_UPDATE_ROWS event body into its header and row data;
//! [`RowsDecoder`] then decodes one row change at a time into caller-owned
//! `Vec<Value>`s (no per-cell allocation except the value's own payload).
//!
//! Invariants:
//! - every byte of the row data is accounted for: a value that cannot be
//!   decoded exactly (unknown type, invalid text in its charset, charset we
//!   cannot decode, malformed JSON, truncated image) is a [`DecodeError`]
//!   naming `db.table.column`; nothing is skipped or guessed;
//! - an image holds one value per column *present* in that image (bitmap bit
//!   set), in column order; SQL NULL is `Value::Null`. Which columns are
//!   present is given by [`RowsDecoder::present_before`] /
//!   [`RowsDecoder::present_after`] (column indices) and the matching names by
//!   [`RowsDecoder::columns_before`] / [`RowsDecoder::columns_after`]
//!   (the table's shared `names` when the image is full);
//! - PARTIAL_UPDATE_ROWS JSON diffs are applied to the same column's value of
//!   the before image, so the after image always holds complete documents.
//!
//! mysql_common is used for binary JSON (`binlog::jsonb`) and JSON diff
//! (`binlog::jsondiff`) parsing. Values are decoded by our own code: mysql_common
//! does not sign-extend MEDIUMINT (test `mysql_common_int24_not_sign_extended`),
//! and allocates a `Vec` per cell.

use std::fmt::Write as _;
use mysql_common::binlog::jsonb;
use mysql_common::constants::ColumnType;
use mysql_common::io::ParseBuf;
use rowstream_api::{Columns, Date, DateTime, Time, Value};

use super::schema::{Charset, ColumnSchema, Decode, TableSchema};

/// Why an event could not be decoded. Every variant names where it happened.
#[derive(thiserror::Error, Debug)]
pub enum DecodeError {
    #[error("table {db}.{table} has no column names in its TABLE_MAP event: set binlog_row_metadata=FULL on the source server (SET PERSIST binlog_row_metadata=FULL) and restart rowstream")]
    MissingColumnNames { db: String, table: String },
    #[error("column {db}.{table}.{column} has type {type_name}, which rowstream cannot decode")]
    UnsupportedType { db: String, table: String, column: String, type_name: String },
    #[error("column {db}.{table}.{column}: {detail}")]
    InvalidText { db: String, table: String, column: String, detail: String },
    #[error("column {db}.{table}.{column}: value cannot be decoded: {detail}")]
    Value { db: String, table: String, column: String, detail: String },
    #[error("malformed {context}: {detail}")]
    Malformed { context: String, detail: String },
    #[error("binlog event type {event_type} ({name}) is not a row event this decoder handles")]
    UnsupportedEvent { event_type: u8, name: &'static str },
    #[error("rows event for table id {rows_table_id} decoded with the schema of table id {schema_table_id} ({db}.{table})")]
    TableIdMismatch { rows_table_id: u64, schema_table_id: u64, db: String, table: String },
}

/// A column bitmap of a rows event (bit i = column i, least significant bit first).
#[derive(Debug, Clone, Copy)]
pub struct Bitmap<'a> {
    bytes: &'a [u8],
    len: usize,
}

impl<'a> Bitmap<'a> {
    /// Wraps `bytes` as a bitmap of `len` bits.
    pub fn new(bytes: &'a [u8], len: usize) -> Self {
        Bitmap { bytes, len }
    }
    /// Number of bits (columns).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bit `i`; false when out of range.
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & (1 << (i % 8)) != 0
    }
    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        (0..self.len).filter(|&i| self.get(i)).count()
    }
    /// Indices of set bits, ascending.
    pub fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
    /// True when every bit is set.
    pub fn is_full(&self) -> bool {
        self.count_ones() == self.len
    }
}

/// Kind of a rows event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
    /// MySQL PARTIAL_UPDATE_ROWS_EVENT (binlog_row_value_options=PARTIAL_JSON).
    PartialUpdate,
}

/// Header of a rows event; `rows` is the row data that follows it.
#[derive(Debug, Clone)]
pub struct RowsHeader<'a> {
    pub table_id: u64,
    /// Event flags (bit 0: STMT_END_F, the last rows event of the statement).
    pub flags: u16,
    pub column_count: usize,
    /// Columns present in before images (UPDATE, DELETE, PARTIAL_UPDATE).
    pub before: Option<Bitmap<'a>>,
    /// Columns present in after images (WRITE, UPDATE, PARTIAL_UPDATE).
    pub after: Option<Bitmap<'a>>,
    pub rows: &'a [u8],
    pub kind: RowsKind,
}

/// `flags` bit: last rows event of a statement.
pub const STMT_END_F: u16 = 1;

fn mal(context: &str, detail: impl Into<String>) -> DecodeError {
    DecodeError::Malformed { context: context.to_string(), detail: detail.into() }
}

fn read_lenenc(b: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *b.get(*pos)?;
    *pos += 1;
    let n = match first {
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        0xfb | 0xff => return None,
        x => return Some(x as u64),
    };
    let s = b.get(*pos..*pos + n)?;
    *pos += n;
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(s);
    Some(u64::from_le_bytes(v))
}

/// Parses the header of a rows event body (bytes after the 19-byte common
/// header, checksum stripped).
///
/// * `event_type`: 0x17..=0x19 (v1), 0x1e..=0x20 (v2), 0x27 (PARTIAL_UPDATE_ROWS).
///   MariaDB's compressed rows events (166..=171) are rejected with
///   [`DecodeError::UnsupportedEvent`]: the stream layer must decompress them.
/// * `post_header_len`: this event type's post-header length from the FDE
///   (6: 4-byte table id; otherwise 6-byte table id).
pub fn parse_rows_header(event_type: u8, body: &[u8], post_header_len: u8) -> Result<RowsHeader<'_>, DecodeError> {
    let (kind, v2) = match event_type {
        0x17 => (RowsKind::Write, false),
        0x18 => (RowsKind::Update, false),
        0x19 => (RowsKind::Delete, false),
        0x1e => (RowsKind::Write, true),
        0x1f => (RowsKind::Update, true),
        0x20 => (RowsKind::Delete, true),
        0x27 => (RowsKind::PartialUpdate, true),
        166 => return Err(DecodeError::UnsupportedEvent { event_type, name: "MariaDB WRITE_ROWS_COMPRESSED_EVENT" }),
        167 => return Err(DecodeError::UnsupportedEvent { event_type, name: "MariaDB UPDATE_ROWS_COMPRESSED_EVENT" }),
        168 => return Err(DecodeError::UnsupportedEvent { event_type, name: "MariaDB DELETE_ROWS_COMPRESSED_EVENT" }),
        169 => return Err(DecodeError::UnsupportedEvent { event_type, name: "MariaDB WRITE_ROWS_COMPRESSED_EVENT_V1" }),
        170 => return Err(DecodeError::UnsupportedEvent { event_type, name: "MariaDB UPDATE_ROWS_COMPRESSED_EVENT_V1" }),
        171 => return Err(DecodeError::UnsupportedEvent { event_type, name: "MariaDB DELETE_ROWS_COMPRESSED_EVENT_V1" }),
        _ => return Err(DecodeError::UnsupportedEvent { event_type, name: "not a rows event" }),
    };
    let ctx = "rows event header";
    let short = || mal(ctx, "truncated");
    let mut p = 0usize;
    let table_id = if post_header_len == 6 {
        let s = body.get(0..4).ok_or_else(short)?;
        p = 4;
        u32::from_le_bytes(s.try_into().unwrap()) as u64
    } else {
        let s = body.get(0..6).ok_or_else(short)?;
        p += 6;
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(s);
        u64::from_le_bytes(b)
    };
    let flags = u16::from_le_bytes(body.get(p..p + 2).ok_or_else(short)?.try_into().unwrap());
    p += 2;
    if v2 {
        let extra = u16::from_le_bytes(body.get(p..p + 2).ok_or_else(short)?.try_into().unwrap()) as usize;
        if extra < 2 {
            return Err(mal(ctx, format!("extra data length {extra}")));
        }
        p += extra;
        if p > body.len() {
            return Err(short());
        }
    }
    let column_count = read_lenenc(body, &mut p).ok_or_else(short)? as usize;
    let nb = column_count.div_ceil(8);
    let first = Bitmap::new(body.get(p..p + nb).ok_or_else(short)?, column_count);
    p += nb;
    let (before, after) = match kind {
        RowsKind::Write => (None, Some(first)),
        RowsKind::Delete => (Some(first), None),
        RowsKind::Update | RowsKind::PartialUpdate => {
            let second = Bitmap::new(body.get(p..p + nb).ok_or_else(short)?, column_count);
            p += nb;
            (Some(first), Some(second))
        }
    };
    Ok(RowsHeader { table_id, flags, column_count, before, after, rows: &body[p..], kind })
}

/// Why one cell failed; turned into a [`DecodeError`] with names by the caller.
enum CellErr {
    Truncated,
    Text(Charset),
    UnknownCharset(u16),
    Bad(String),
}

/// Decodes row images of one rows event.
pub struct RowsDecoder<'a> {
    schema: &'a TableSchema,
    rows: &'a [u8],
    pos: usize,
    kind: RowsKind,
    before_cols: Vec<usize>,
    after_cols: Vec<usize>,
    before_names: Columns,
    after_names: Columns,
    /// column index -> position in the before image (PARTIAL_UPDATE only).
    before_pos: Vec<u32>,
    partial_bits: Vec<bool>,
}

fn names_for(schema: &TableSchema, cols: &[usize]) -> Columns {
    if cols.len() == schema.columns.len() {
        schema.names.clone()
    } else {
        cols.iter().map(|&i| schema.names[i].clone()).collect::<Vec<_>>().into()
    }
}

impl<'a> RowsDecoder<'a> {
    /// Prepares decoding of `h`'s rows with `schema` (the TABLE_MAP that
    /// preceded the event). Errors when the table id or column count do not match.
    pub fn new(h: &RowsHeader<'a>, schema: &'a TableSchema) -> Result<Self, DecodeError> {
        if h.table_id != schema.table_id {
            return Err(DecodeError::TableIdMismatch {
                rows_table_id: h.table_id,
                schema_table_id: schema.table_id,
                db: schema.db.to_string(),
                table: schema.table.to_string(),
            });
        }
        if h.column_count != schema.columns.len() {
            return Err(mal(
                &format!("rows event of {}.{}", schema.db, schema.table),
                format!("{} columns, TABLE_MAP has {}", h.column_count, schema.columns.len()),
            ));
        }
        let before_cols: Vec<usize> = h.before.map(|b| b.ones().collect()).unwrap_or_default();
        let after_cols: Vec<usize> = h.after.map(|b| b.ones().collect()).unwrap_or_default();
        let mut before_pos = Vec::new();
        if h.kind == RowsKind::PartialUpdate {
            before_pos = vec![u32::MAX; schema.columns.len()];
            for (k, &c) in before_cols.iter().enumerate() {
                before_pos[c] = k as u32;
            }
        }
        Ok(RowsDecoder {
            schema,
            rows: h.rows,
            pos: 0,
            kind: h.kind,
            before_names: names_for(schema, &before_cols),
            after_names: names_for(schema, &after_cols),
            before_cols,
            after_cols,
            before_pos,
            partial_bits: Vec::new(),
        })
    }

    /// Column indices of the values in each before image.
    pub fn present_before(&self) -> &[usize] {
        &self.before_cols
    }
    /// Column indices of the values in each after image.
    pub fn present_after(&self) -> &[usize] {
        &self.after_cols
    }
    /// Names matching the before image values (empty for WRITE).
    pub fn columns_before(&self) -> &Columns {
        &self.before_names
    }
    /// Names matching the after image values (empty for DELETE).
    pub fn columns_after(&self) -> &Columns {
        &self.after_names
    }
    /// The event kind.
    pub fn kind(&self) -> RowsKind {
        self.kind
    }

    /// Decodes the next row change into `before`/`after` (both cleared first;
    /// the one the event kind lacks stays empty). Returns `Ok(false)` when all
    /// rows have been read.
    pub fn next_row(&mut self, before: &mut Vec<Value>, after: &mut Vec<Value>) -> Result<bool, DecodeError> {
        before.clear();
        after.clear();
        if self.pos >= self.rows.len() {
            return Ok(false);
        }
        match self.kind {
            RowsKind::Write => self.image(false, after, None)?,
            RowsKind::Delete => self.image(true, before, None)?,
            RowsKind::Update => {
                self.image(true, before, None)?;
                self.image(false, after, None)?;
            }
            RowsKind::PartialUpdate => {
                self.image(true, before, None)?;
                self.shared_image()?;
                self.image(false, after, Some(before))?;
            }
        }
        Ok(true)
    }

    fn malformed(&self, detail: impl Into<String>) -> DecodeError {
        mal(&format!("rows event of {}.{}", self.schema.db, self.schema.table), detail)
    }

    fn shared_image(&mut self) -> Result<(), DecodeError> {
        let opts = read_lenenc(self.rows, &mut self.pos).ok_or_else(|| self.malformed("truncated value_options"))?;
        self.partial_bits.clear();
        if opts & 1 != 0 {
            let n = self.schema.json_column_count;
            let nb = n.div_ceil(8);
            let bits = self.rows.get(self.pos..self.pos + nb).ok_or_else(|| self.malformed("truncated partial_bits"))?;
            self.pos += nb;
            self.partial_bits.extend((0..n).map(|i| bits[i / 8] & (1 << (i % 8)) != 0));
        }
        Ok(())
    }

    fn image(&mut self, is_before: bool, out: &mut Vec<Value>, base: Option<&Vec<Value>>) -> Result<(), DecodeError> {
        let cols = if is_before { &self.before_cols } else { &self.after_cols };
        let n = cols.len();
        let nb = n.div_ceil(8);
        let rows = self.rows;
        let nulls = match rows.get(self.pos..self.pos + nb) {
            Some(s) => s,
            None => return Err(self.malformed("truncated null bitmap")),
        };
        let mut pos = self.pos + nb;
        out.reserve(n);
        for (k, &ci) in cols.iter().enumerate() {
            if nulls[k >> 3] & (1 << (k & 7)) != 0 {
                out.push(Value::Null);
                continue;
            }
            let col = &self.schema.columns[ci];
            let partial = base.is_some()
                && col.json_ordinal.is_some_and(|o| self.partial_bits.get(o as usize).copied().unwrap_or(false));
            let r = if partial {
                self.partial_json(col, ci, rows, &mut pos, base.unwrap())
            } else {
                decode_cell(col, rows, &mut pos)
            };
            match r {
                Ok(v) => out.push(v),
                Err(e) => return Err(cell_error(self.schema, col, e)),
            }
        }
        self.pos = pos;
        Ok(())
    }

    fn partial_json(&self, col: &ColumnSchema, ci: usize, b: &[u8], pos: &mut usize, base: &[Value]) -> Result<Value, CellErr> {
        let Decode::Json { pack } = col.decode else { return Err(CellErr::Bad("partial bit on a non-JSON column".into())) };
        let len = read_pack(b, pos, pack)?;
        let diff = take(b, pos, len)?;
        let bp = self.before_pos[ci];
        let mut doc = match base.get(bp as usize) {
            Some(Value::Json(j)) => j.clone(),
            Some(Value::Null) => return Err(CellErr::Bad("JSON diff on a NULL before value".into())),
            Some(_) => return Err(CellErr::Bad("JSON diff on a non-JSON before value".into())),
            None => {
                return Err(CellErr::Bad(
                    "partial JSON update without the column in the before image (use binlog_row_image=FULL)".into(),
                ))
            }
        };
        super::jsondiff::apply_binlog_diffs(&mut doc, diff).map_err(|e| CellErr::Bad(e.to_string()))?;
        Ok(Value::Json(doc))
    }
}

#[cold]
fn cell_error(s: &TableSchema, col: &ColumnSchema, e: CellErr) -> DecodeError {
    let (db, table, column) = (s.db.to_string(), s.table.to_string(), col.name.to_string());
    match e {
        CellErr::Truncated => DecodeError::Value { db, table, column, detail: "row image truncated".into() },
        CellErr::Text(cs) => DecodeError::InvalidText {
            db,
            table,
            column,
            detail: format!("bytes are not valid {cs:?} text (collation id {})", col.collation),
        },
        CellErr::UnknownCharset(id) => DecodeError::InvalidText {
            db,
            table,
            column,
            detail: format!("collation id {id} has a character set rowstream cannot decode; convert the column to utf8mb4"),
        },
        CellErr::Bad(detail) => DecodeError::Value { db, table, column, detail },
    }
}

#[inline(always)]
fn take<'b>(b: &'b [u8], pos: &mut usize, n: usize) -> Result<&'b [u8], CellErr> {
    let end = pos.checked_add(n).ok_or(CellErr::Truncated)?;
    match b.get(*pos..end) {
        Some(s) => {
            *pos = end;
            Ok(s)
        }
        None => Err(CellErr::Truncated),
    }
}

#[inline(always)]
fn take_arr<const N: usize>(b: &[u8], pos: &mut usize) -> Result<[u8; N], CellErr> {
    Ok(take(b, pos, N)?.try_into().unwrap())
}

#[inline(always)]
fn read_pack(b: &[u8], pos: &mut usize, pack: u8) -> Result<usize, CellErr> {
    let s = take(b, pos, pack as usize)?;
    let mut v = [0u8; 4];
    v[..s.len()].copy_from_slice(s);
    Ok(u32::from_le_bytes(v) as usize)
}

fn be(s: &[u8]) -> u64 {
    s.iter().fold(0u64, |a, &x| a << 8 | x as u64)
}

/// Reads the fractional part of a temporal value (fsp digits) as microseconds.
#[inline]
fn frac_micros(b: &[u8], pos: &mut usize, fsp: u8) -> Result<u32, CellErr> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => take(b, pos, 1)?[0] as u32 * 10_000,
        3 | 4 => be(take(b, pos, 2)?) as u32 * 100,
        _ => be(take(b, pos, 3)?) as u32,
    })
}

/// Decodes one non-NULL cell.
#[inline]
fn decode_cell(col: &ColumnSchema, b: &[u8], pos: &mut usize) -> Result<Value, CellErr> {
    Ok(match col.decode {
        Decode::Tiny => {
            let x = take_arr::<1>(b, pos)?[0];
            if col.unsigned { Value::UInt(x as u64) } else { Value::Int(x as i8 as i64) }
        }
        Decode::Short => {
            let x = take_arr::<2>(b, pos)?;
            if col.unsigned { Value::UInt(u16::from_le_bytes(x) as u64) } else { Value::Int(i16::from_le_bytes(x) as i64) }
        }
        Decode::Int24 => {
            let x = take_arr::<3>(b, pos)?;
            let u = x[0] as u32 | (x[1] as u32) << 8 | (x[2] as u32) << 16;
            if col.unsigned { Value::UInt(u as u64) } else { Value::Int(((u << 8) as i32 >> 8) as i64) }
        }
        Decode::Long => {
            let x = take_arr::<4>(b, pos)?;
            if col.unsigned { Value::UInt(u32::from_le_bytes(x) as u64) } else { Value::Int(i32::from_le_bytes(x) as i64) }
        }
        Decode::LongLong => {
            let x = take_arr::<8>(b, pos)?;
            if col.unsigned { Value::UInt(u64::from_le_bytes(x)) } else { Value::Int(i64::from_le_bytes(x)) }
        }
        Decode::Year => {
            let y = take_arr::<1>(b, pos)?[0];
            Value::Int(if y == 0 { 0 } else { 1900 + y as i64 })
        }
        Decode::Bit { bytes, single } => {
            let v = be(take(b, pos, bytes as usize)?);
            if single { Value::Bool(v != 0) } else { Value::UInt(v) }
        }
        Decode::Float => Value::Float(f32::from_le_bytes(take_arr::<4>(b, pos)?)),
        Decode::Double => Value::Double(f64::from_le_bytes(take_arr::<8>(b, pos)?)),
        Decode::Decimal { precision, scale, size } => {
            let s = take(b, pos, size as usize)?;
            Value::Decimal(decode_decimal(s, precision, scale).ok_or_else(|| CellErr::Bad("invalid DECIMAL digits".into()))?)
        }
        Decode::VarLen { prefix, pad_to } => {
            let n = if prefix == 1 { take(b, pos, 1)?[0] as usize } else { u16::from_le_bytes(take_arr::<2>(b, pos)?) as usize };
            let s = take(b, pos, n)?;
            if col.charset == Charset::Binary {
                let mut v = Vec::with_capacity(s.len().max(pad_to as usize));
                v.extend_from_slice(s);
                if v.len() < pad_to as usize {
                    v.resize(pad_to as usize, 0);
                }
                Value::Bytes(v)
            } else {
                Value::String(text(s, col.charset)?)
            }
        }
        Decode::Blob { pack } => {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            if col.charset == Charset::Binary { Value::Bytes(s.to_vec()) } else { Value::String(text(s, col.charset)?) }
        }
        Decode::Enum { pack } => {
            let i = if pack == 1 { take(b, pos, 1)?[0] as usize } else { u16::from_le_bytes(take_arr::<2>(b, pos)?) as usize };
            let labels = col.labels.as_deref().unwrap_or(&[]);
            if i == 0 {
                Value::String(String::new())
            } else {
                match labels.get(i - 1) {
                    Some(l) => Value::String(l.to_string()),
                    None => return Err(CellErr::Bad(format!("ENUM index {i} beyond {} labels", labels.len()))),
                }
            }
        }
        Decode::Set { bytes } => {
            let s = take(b, pos, bytes as usize)?;
            let mut v = [0u8; 8];
            v[..s.len()].copy_from_slice(s);
            let mask = u64::from_le_bytes(v);
            let labels = col.labels.as_deref().unwrap_or(&[]);
            if labels.len() < 64 && mask >> labels.len() != 0 {
                return Err(CellErr::Bad(format!("SET bitmask {mask:#x} beyond {} labels", labels.len())));
            }
            let mut out = String::new();
            for (i, l) in labels.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    if !out.is_empty() {
                        out.push(',');
                    }
                    out.push_str(l);
                }
            }
            Value::String(out)
        }
        Decode::Date => {
            let x = take_arr::<3>(b, pos)?;
            let v = x[0] as u32 | (x[1] as u32) << 8 | (x[2] as u32) << 16;
            Value::Date(Date { year: (v >> 9) as u16, month: ((v >> 5) & 15) as u8, day: (v & 31) as u8 })
        }
        Decode::DateTime2 { fsp } => {
            let raw = be(take(b, pos, 5)?) as i64 - 0x80_0000_0000;
            let micros = frac_micros(b, pos, fsp)?;
            if raw < 0 {
                return Err(CellErr::Bad("negative DATETIME".into()));
            }
            let ymd = raw >> 17;
            let hms = raw & ((1 << 17) - 1);
            let ym = ymd >> 5;
            Value::DateTime(DateTime {
                date: Date { year: (ym / 13) as u16, month: (ym % 13) as u8, day: (ymd & 31) as u8 },
                hour: (hms >> 12) as u8,
                minute: ((hms >> 6) & 63) as u8,
                second: (hms & 63) as u8,
                micros,
                fsp,
            })
        }
        Decode::Timestamp2 { fsp } => {
            let secs = u32::from_be_bytes(take_arr::<4>(b, pos)?) as i64;
            let micros = frac_micros(b, pos, fsp)?;
            Value::Timestamp { secs, micros, fsp }
        }
        Decode::Time2 { fsp } => {
            let packed: i64 = match fsp {
                0 => (be(take(b, pos, 3)?) as i64 - 0x80_0000) << 24,
                1 | 2 => {
                    let mut int = be(take(b, pos, 3)?) as i64 - 0x80_0000;
                    let mut frac = take(b, pos, 1)?[0] as i64;
                    if int < 0 && frac != 0 {
                        int += 1;
                        frac -= 0x100;
                    }
                    (int << 24) + frac * 10_000
                }
                3 | 4 => {
                    let mut int = be(take(b, pos, 3)?) as i64 - 0x80_0000;
                    let mut frac = be(take(b, pos, 2)?) as i64;
                    if int < 0 && frac != 0 {
                        int += 1;
                        frac -= 0x10000;
                    }
                    (int << 24) + frac * 100
                }
                _ => be(take(b, pos, 6)?) as i64 - 0x8000_0000_0000,
            };
            Value::Time(time_from_packed(packed, fsp))
        }
        Decode::DateTimeOld => {
            let v = u64::from_le_bytes(take_arr::<8>(b, pos)?);
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Value::DateTime(DateTime {
                date: Date { year: (d / 10_000) as u16, month: (d / 100 % 100) as u8, day: (d % 100) as u8 },
                hour: (t / 10_000) as u8,
                minute: (t / 100 % 100) as u8,
                second: (t % 100) as u8,
                micros: 0,
                fsp: 0,
            })
        }
        Decode::TimestampOld => Value::Timestamp { secs: u32::from_le_bytes(take_arr::<4>(b, pos)?) as i64, micros: 0, fsp: 0 },
        Decode::TimeOld => {
            let x = take_arr::<3>(b, pos)?;
            let v = ((x[0] as u32 | (x[1] as u32) << 8 | (x[2] as u32) << 16) << 8) as i32 >> 8;
            let a = v.unsigned_abs();
            Value::Time(Time {
                negative: v < 0,
                hours: (a / 10_000) as u16,
                minute: (a / 100 % 100) as u8,
                second: (a % 100) as u8,
                micros: 0,
                fsp: 0,
            })
        }
        Decode::Json { pack } => {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            Value::Json(json_from_binary(s).map_err(CellErr::Bad)?)
        }
        Decode::Geometry { pack } => {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            match s.len() {
                0 => Value::Geometry { srid: 0, wkb: Vec::new() },
                1..=3 => return Err(CellErr::Bad(format!("GEOMETRY value of {} bytes", s.len()))),
                _ => Value::Geometry { srid: u32::from_le_bytes(s[..4].try_into().unwrap()), wkb: s[4..].to_vec() },
            }
        }
        Decode::Vector { pack } => {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            if s.len() % 4 != 0 {
                return Err(CellErr::Bad(format!("VECTOR value of {} bytes", s.len())));
            }
            Value::Vector(s.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        }
    })
}

fn time_from_packed(packed: i64, fsp: u8) -> Time {
    let negative = packed < 0;
    let a = packed.unsigned_abs();
    let hms = a >> 24;
    Time {
        negative,
        hours: ((hms >> 12) & 1023) as u16,
        minute: ((hms >> 6) & 63) as u8,
        second: (hms & 63) as u8,
        micros: (a & 0xff_ffff) as u32,
        fsp,
    }
}

#[inline]
fn text(s: &[u8], cs: Charset) -> Result<String, CellErr> {
    decode_text(s, cs)
}

/// Decodes text bytes of a column charset (exact, never lossy).
fn decode_text(s: &[u8], cs: Charset) -> Result<String, CellErr> {
    match cs {
        Charset::Utf8 => match std::str::from_utf8(s) {
            Ok(x) => Ok(x.to_owned()),
            Err(_) => Err(CellErr::Text(cs)),
        },
        Charset::Ascii => {
            if s.is_ascii() {
                Ok(unsafe_ascii(s))
            } else {
                Err(CellErr::Text(cs))
            }
        }
        Charset::Latin1 => {
            if s.is_ascii() {
                return Ok(unsafe_ascii(s));
            }
            let mut out = String::with_capacity(s.len() + 8);
            for &c in s {
                out.push(match c {
                    0x80..=0x9f => CP1252_80[(c - 0x80) as usize],
                    _ => c as char,
                });
            }
            Ok(out)
        }
        Charset::Binary => Err(CellErr::Text(cs)),
        Charset::Other(id) => {
            if s.is_empty() {
                Ok(String::new())
            } else {
                Err(CellErr::UnknownCharset(id))
            }
        }
    }
}

fn unsafe_ascii(s: &[u8]) -> String {
    // ASCII is valid UTF-8.
    String::from_utf8(s.to_vec()).expect("ascii")
}

/// Decodes ENUM/SET labels (used by `schema`); `Err` when not decodable exactly.
pub(crate) fn decode_label(s: &[u8], cs: Charset) -> Result<String, ()> {
    decode_text(s, cs).map_err(|_| ())
}

/// cp1252 0x80..=0x9F; undefined bytes map to the C1 control of the same value (as MySQL's latin1).
const CP1252_80: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}', '\u{2030}',
    '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}',
    '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}',
    '\u{017E}', '\u{0178}',
];

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Decodes MySQL's binary DECIMAL(precision, scale) into exact text with
/// exactly `scale` fractional digits, no leading zeros, no "-0".
/// Returns None when the bytes hold an invalid digit group.
pub fn decode_decimal(s: &[u8], precision: u8, scale: u8) -> Option<String> {
    let intg = precision.checked_sub(scale)? as usize;
    let scale = scale as usize;
    let (intg0, intg0x, frac0, frac0x) = (intg / 9, intg % 9, scale / 9, scale % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    if s.len() != size || size == 0 || size > 32 {
        return None;
    }
    let mut buf = [0u8; 32];
    buf[..size].copy_from_slice(s);
    let neg = buf[0] & 0x80 == 0;
    buf[0] ^= 0x80;
    if neg {
        for x in &mut buf[..size] {
            *x ^= 0xff;
        }
    }
    let mut digits = [0u8; 96];
    let mut nd = 0usize;
    let mut p = 0usize;
    let group = |nbytes: usize, ndig: usize, p: &mut usize, digits: &mut [u8; 96], nd: &mut usize| -> Option<()> {
        if ndig == 0 {
            return Some(());
        }
        let v = be(&buf[*p..*p + nbytes]);
        *p += nbytes;
        if v >= 10u64.pow(ndig as u32) {
            return None;
        }
        let mut v = v;
        for i in (0..ndig).rev() {
            digits[*nd + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        *nd += ndig;
        Some(())
    };
    group(DIG2BYTES[intg0x], intg0x, &mut p, &mut digits, &mut nd)?;
    for _ in 0..intg0 {
        group(4, 9, &mut p, &mut digits, &mut nd)?;
    }
    let int_end = nd;
    for _ in 0..frac0 {
        group(4, 9, &mut p, &mut digits, &mut nd)?;
    }
    group(DIG2BYTES[frac0x], frac0x, &mut p, &mut digits, &mut nd)?;
    let int_digits = &digits[..int_end];
    let first_nz = int_digits.iter().position(|&d| d != b'0').unwrap_or(int_end);
    let is_zero = digits[..nd].iter().all(|&d| d == b'0');
    let mut out = String::with_capacity(nd + 3);
    if neg && !is_zero {
        out.push('-');
    }
    if first_nz == int_end {
        out.push('0');
    } else {
        out.push_str(std::str::from_utf8(&int_digits[first_nz..]).ok()?);
    }
    if scale > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(&digits[int_end..nd]).ok()?);
    }
    Some(out)
}

/// Decodes a MySQL binary JSON document; empty input is JSON null (as MySQL).
pub fn json_from_binary(s: &[u8]) -> Result<serde_json::Value, String> {
    if s.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    let v: jsonb::Value<'_> = ParseBuf(s).parse(()).map_err(|e| format!("invalid binary JSON: {e}"))?;
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
        jsonb::Value::F64(x) => J::Number(serde_json::Number::from_f64(*x).ok_or_else(|| format!("JSON double {x} is not finite"))?),
        jsonb::Value::String(s) => J::String(std::str::from_utf8(s.str_raw()).map_err(|_| "JSON string is not UTF-8".to_string())?.to_owned()),
        jsonb::Value::SmallArray(a) => J::Array(a.iter().map(|x| x.map_err(|e| e.to_string()).and_then(|x| jsonb_to_json(&x))).collect::<Result<_, _>>()?),
        jsonb::Value::LargeArray(a) => J::Array(a.iter().map(|x| x.map_err(|e| e.to_string()).and_then(|x| jsonb_to_json(&x))).collect::<Result<_, _>>()?),
        jsonb::Value::SmallObject(o) => {
            let mut m = serde_json::Map::new();
            for kv in o.iter() {
                let (k, v) = kv.map_err(|e| e.to_string())?;
                let k = std::str::from_utf8(k.value_raw()).map_err(|_| "JSON key is not UTF-8".to_string())?.to_owned();
                m.insert(k, jsonb_to_json(&v)?);
            }
            J::Object(m)
        }
        jsonb::Value::LargeObject(o) => {
            let mut m = serde_json::Map::new();
            for kv in o.iter() {
                let (k, v) = kv.map_err(|e| e.to_string())?;
                let k = std::str::from_utf8(k.value_raw()).map_err(|_| "JSON key is not UTF-8".to_string())?.to_owned();
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
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIME => {
            let packed = i64::from_le_bytes(d.get(..8).ok_or("truncated JSON temporal")?.try_into().unwrap());
            let mut s = String::with_capacity(26);
            if ty == ColumnType::MYSQL_TYPE_TIME {
                let t = time_from_packed(packed, 6);
                let _ = write!(s, "{}{:02}:{:02}:{:02}.{:06}", if t.negative { "-" } else { "" }, t.hours, t.minute, t.second, t.micros);
            } else {
                let a = packed.unsigned_abs();
                let micros = a & 0xff_ffff;
                let ymdhms = a >> 24;
                let ymd = ymdhms >> 17;
                let hms = ymdhms & ((1 << 17) - 1);
                let ym = ymd >> 5;
                let _ = write!(s, "{:04}-{:02}-{:02}", ym / 13, ym % 13, ymd & 31);
                if ty != ColumnType::MYSQL_TYPE_DATE {
                    let _ = write!(s, " {:02}:{:02}:{:02}.{:06}", hms >> 12, (hms >> 6) & 63, hms & 63, micros);
                }
            }
            Ok(J::String(s))
        }
        _ => Ok(J::String(format!("base64:type{}:{}", ty as u8, base64(d)))),
    }
}

/// A DECIMAL as a JSON number when that is exact, else as a string.
fn decimal_json(text: &str) -> serde_json::Value {
    if !text.contains('.') {
        if let Ok(i) = text.parse::<i64>() {
            return serde_json::Value::from(i);
        }
        if let Ok(u) = text.parse::<u64>() {
            return serde_json::Value::from(u);
        }
    }
    let trimmed = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text };
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
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Convenience for callers that want owned names of an image.
pub fn image_columns(schema: &TableSchema, present: &[usize]) -> Columns {
    names_for(schema, present)
}
