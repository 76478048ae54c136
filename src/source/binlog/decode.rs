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
//! Values are decoded by our own code, not mysql_common's: it does not
//! sign-extend MEDIUMINT (test `mysql_common_int24_not_sign_extended`) and
//! allocates a `Vec` per cell. Binary JSON goes through `json` and partial
//! JSON diffs through `jsondiff`; charsets through `text`, packed DECIMAL and
//! TIME through `packed`; the column plans come from `schema`.

use std::sync::Arc;

use rowstream_api::{Columns, Date, DateTime, Time, Value};

use super::event as ev;
use super::json::json_from_binary;
use super::packed::{be, decode_decimal, time_from_packed};
use super::schema::{ColumnSchema, Decode, TableSchema};
use super::text::{decode_text_prefix, Charset, TextError};

pub use super::error::DecodeError;

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
    DecodeError::Malformed {
        context: context.to_string(),
        detail: detail.into(),
    }
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
/// * `event_type`: WRITE/UPDATE/DELETE_ROWS_V1, WRITE/UPDATE/DELETE_ROWS (v2),
///   PARTIAL_UPDATE_ROWS.
///   MariaDB's compressed rows events (166..=171) are rejected with
///   [`DecodeError::UnsupportedEvent`]: the stream layer must decompress them.
/// * `post_header_len`: this event type's post-header length from the FDE
///   (6: 4-byte table id; otherwise 6-byte table id).
pub fn parse_rows_header(
    event_type: u8,
    body: &[u8],
    post_header_len: u8,
) -> Result<RowsHeader<'_>, DecodeError> {
    let (kind, v2) = match event_type {
        ev::WRITE_ROWS_V1 => (RowsKind::Write, false),
        ev::UPDATE_ROWS_V1 => (RowsKind::Update, false),
        ev::DELETE_ROWS_V1 => (RowsKind::Delete, false),
        ev::WRITE_ROWS => (RowsKind::Write, true),
        ev::UPDATE_ROWS => (RowsKind::Update, true),
        ev::DELETE_ROWS => (RowsKind::Delete, true),
        ev::PARTIAL_UPDATE_ROWS => (RowsKind::PartialUpdate, true),
        // MariaDB's compressed rows events (166..=171) and anything else.
        _ => {
            return Err(DecodeError::UnsupportedEvent {
                event_type,
                name: ev::event_name(event_type),
            })
        }
    };
    let ctx = "rows event header";
    let short = || mal(ctx, "truncated");
    let mut p = 0usize;
    let table_id = if post_header_len == 6 {
        let s = body.first_chunk().ok_or_else(short)?;
        p = 4;
        u64::from(u32::from_le_bytes(*s))
    } else {
        let s = body.get(0..6).ok_or_else(short)?;
        p += 6;
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(s);
        u64::from_le_bytes(b)
    };
    let u16_at = |p: usize| match body.get(p..p + 2) {
        Some(&[a, b]) => Ok(u16::from_le_bytes([a, b])),
        _ => Err(short()),
    };
    let flags = u16_at(p)?;
    p += 2;
    if v2 {
        let extra = u16_at(p)? as usize;
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
    Ok(RowsHeader {
        table_id,
        flags,
        column_count,
        before,
        after,
        rows: &body[p..],
        kind,
    })
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
    /// Mismatch found by `new`, returned by the first `next_row`.
    init_err: Option<DecodeError>,
}

fn names_for(schema: &TableSchema, cols: &[usize]) -> Columns {
    if cols.len() == schema.columns.len() {
        schema.names.clone()
    } else {
        cols.iter()
            .map(|&i| schema.names[i].clone())
            .collect::<Vec<_>>()
            .into()
    }
}

impl<'a> RowsDecoder<'a> {
    /// Prepares decoding of `h`'s rows with `schema` (the TABLE_MAP that
    /// preceded the event). A table id or column count mismatch is reported
    /// by the first [`RowsDecoder::next_row`] call (use [`RowsDecoder::try_new`]
    /// to get it here).
    pub fn new(h: &RowsHeader<'a>, schema: &'a TableSchema) -> Self {
        match Self::try_new(h, schema) {
            Ok(d) => d,
            Err(e) => RowsDecoder {
                schema,
                rows: &[],
                pos: 0,
                kind: h.kind,
                before_cols: Vec::new(),
                after_cols: Vec::new(),
                before_names: Arc::from(Vec::new()),
                after_names: Arc::from(Vec::new()),
                before_pos: Vec::new(),
                partial_bits: Vec::new(),
                init_err: Some(e),
            },
        }
    }

    /// Like [`RowsDecoder::new`], but reports a table id or column count mismatch at once.
    pub fn try_new(h: &RowsHeader<'a>, schema: &'a TableSchema) -> Result<Self, DecodeError> {
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
                format!(
                    "{} columns, TABLE_MAP has {}",
                    h.column_count,
                    schema.columns.len()
                ),
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
            init_err: None,
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
    pub fn next_row(
        &mut self,
        before: &mut Vec<Value>,
        after: &mut Vec<Value>,
    ) -> Result<bool, DecodeError> {
        before.clear();
        after.clear();
        if let Some(e) = self.init_err.take() {
            return Err(e);
        }
        if self.pos >= self.rows.len() {
            return Ok(false);
        }
        let start = self.pos;
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
        // A row of no bytes (no column present) would repeat forever; a
        // server never writes one (found by fuzzing: unbounded memory).
        if self.pos == start {
            return Err(self.malformed("a row of zero bytes"));
        }
        Ok(true)
    }

    fn malformed(&self, detail: impl Into<String>) -> DecodeError {
        mal(
            &format!("rows event of {}.{}", self.schema.db, self.schema.table),
            detail,
        )
    }

    fn shared_image(&mut self) -> Result<(), DecodeError> {
        let opts = read_lenenc(self.rows, &mut self.pos)
            .ok_or_else(|| self.malformed("truncated value_options"))?;
        self.partial_bits.clear();
        if opts & 1 != 0 {
            let n = self.schema.json_column_count;
            let nb = n.div_ceil(8);
            let bits = self
                .rows
                .get(self.pos..self.pos + nb)
                .ok_or_else(|| self.malformed("truncated partial_bits"))?;
            self.pos += nb;
            self.partial_bits
                .extend((0..n).map(|i| bits[i / 8] & (1 << (i % 8)) != 0));
        }
        Ok(())
    }

    fn image(
        &mut self,
        is_before: bool,
        out: &mut Vec<Value>,
        base: Option<&Vec<Value>>,
    ) -> Result<(), DecodeError> {
        let cols = if is_before {
            &self.before_cols
        } else {
            &self.after_cols
        };
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
            let partial = base.filter(|_| {
                col.json_ordinal
                    .is_some_and(|o| self.partial_bits.get(o as usize).copied().unwrap_or(false))
            });
            let r = if let Some(base) = partial {
                self.partial_json(col, ci, rows, &mut pos, base)
                    .map(|v| out.push(v))
            } else {
                decode_cell(col, rows, &mut pos, out)
            };
            if let Err(e) = r {
                return Err(cell_error(self.schema, col, e));
            }
        }
        self.pos = pos;
        Ok(())
    }

    fn partial_json(
        &self,
        col: &ColumnSchema,
        ci: usize,
        b: &[u8],
        pos: &mut usize,
        base: &[Value],
    ) -> Result<Value, CellErr> {
        let Decode::Json { pack } = col.decode else {
            return Err(CellErr::Bad("partial bit on a non-JSON column".into()));
        };
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
        super::jsondiff::apply_binlog_diffs(&mut doc, diff)
            .map_err(|e| CellErr::Bad(e.to_string()))?;
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
    // `take` returned exactly N bytes, so the conversion cannot fail.
    take(b, pos, N)?.try_into().map_err(|_| CellErr::Truncated)
}

/// A BLOB/TEXT/JSON length prefix of `pack` bytes (1..=4, checked by
/// `schema`), little-endian. Assembled in a register: copying it into a
/// zeroed array and loading that as a `u32` made the load wait for the
/// copy's narrower stores (no store forwarding), a tenth of `image`'s time.
#[inline(always)]
fn read_pack(b: &[u8], pos: &mut usize, pack: u8) -> Result<usize, CellErr> {
    let s = take(b, pos, pack as usize)?;
    Ok(match *s {
        [a] => usize::from(a),
        [a, b] => usize::from(u16::from_le_bytes([a, b])),
        [a, b, c] => usize::from(u16::from_le_bytes([a, b])) | usize::from(c) << 16,
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => return Err(CellErr::Bad(format!("length prefix of {pack} bytes"))),
    })
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

/// Appends the value `make` returns to an image, making room first: the
/// value is then built straight in its slot. With [`Vec::push`] (or room made
/// after the value), LLVM kept the value in a stack slot across the possible
/// reallocation and copied it from there, and that wide load of narrower
/// stores missed store-to-load forwarding on every cell.
#[inline(always)]
fn put(out: &mut Vec<Value>, make: impl FnOnce() -> Result<Value, CellErr>) -> Result<(), CellErr> {
    out.reserve(1);
    let v = make()?;
    // SAFETY: there is room for one more value (reserved above, and `make`
    // cannot reach `out`); the slot is written before the length covers it.
    unsafe {
        out.as_mut_ptr().add(out.len()).write(v);
        out.set_len(out.len() + 1);
    }
    Ok(())
}

/// Decodes one non-NULL cell into `out`. Each arm makes its value through
/// [`put`], which writes it straight into the image.
// One arm per column type, each a few lines: splitting the match would only
// scatter the type table.
#[allow(clippy::too_many_lines)]
#[inline]
fn decode_cell(
    col: &ColumnSchema,
    b: &[u8],
    pos: &mut usize,
    out: &mut Vec<Value>,
) -> Result<(), CellErr> {
    match col.decode {
        Decode::Tiny => put(out, || {
            let x = take_arr::<1>(b, pos)?[0];
            Ok(if col.unsigned {
                Value::UInt(x as u64)
            } else {
                Value::Int(x as i8 as i64)
            })
        }),
        Decode::Short => put(out, || {
            let x = take_arr::<2>(b, pos)?;
            Ok(if col.unsigned {
                Value::UInt(u16::from_le_bytes(x) as u64)
            } else {
                Value::Int(i16::from_le_bytes(x) as i64)
            })
        }),
        Decode::Int24 => put(out, || {
            let x = take_arr::<3>(b, pos)?;
            let u = x[0] as u32 | (x[1] as u32) << 8 | (x[2] as u32) << 16;
            Ok(if col.unsigned {
                Value::UInt(u as u64)
            } else {
                Value::Int(((u << 8) as i32 >> 8) as i64)
            })
        }),
        Decode::Long => put(out, || {
            let x = take_arr::<4>(b, pos)?;
            Ok(if col.unsigned {
                Value::UInt(u32::from_le_bytes(x) as u64)
            } else {
                Value::Int(i32::from_le_bytes(x) as i64)
            })
        }),
        Decode::LongLong => put(out, || {
            let x = take_arr::<8>(b, pos)?;
            Ok(if col.unsigned {
                Value::UInt(u64::from_le_bytes(x))
            } else {
                Value::Int(i64::from_le_bytes(x))
            })
        }),
        Decode::Year => put(out, || {
            let y = take_arr::<1>(b, pos)?[0];
            Ok(Value::Int(if y == 0 { 0 } else { 1900 + y as i64 }))
        }),
        Decode::Bit { bytes, single } => put(out, || {
            let v = be(take(b, pos, bytes as usize)?);
            Ok(if single {
                Value::Bool(v != 0)
            } else {
                Value::UInt(v)
            })
        }),
        Decode::Float => put(out, || {
            Ok(Value::Float(f32::from_le_bytes(take_arr::<4>(b, pos)?)))
        }),
        Decode::Double => put(out, || {
            Ok(Value::Double(f64::from_le_bytes(take_arr::<8>(b, pos)?)))
        }),
        Decode::Decimal {
            precision,
            scale,
            size,
        } => put(out, || {
            let s = take(b, pos, size as usize)?;
            Ok(Value::Decimal(
                decode_decimal(s, precision, scale)
                    .ok_or_else(|| CellErr::Bad("invalid DECIMAL digits".into()))?,
            ))
        }),
        Decode::VarLen { prefix, pad_to } => put(out, || {
            let n = if prefix == 1 {
                take(b, pos, 1)?[0] as usize
            } else {
                u16::from_le_bytes(take_arr::<2>(b, pos)?) as usize
            };
            let start = *pos;
            let s = take(b, pos, n)?;
            Ok(if col.charset == Charset::Binary {
                let mut v = Vec::with_capacity(s.len().max(pad_to as usize));
                v.extend_from_slice(s);
                if v.len() < pad_to as usize {
                    v.resize(pad_to as usize, 0);
                }
                Value::Bytes(v)
            } else {
                Value::String(text(&b[start..], n, col.charset)?)
            })
        }),
        Decode::Blob { pack } => put(out, || {
            let n = read_pack(b, pos, pack)?;
            let start = *pos;
            let s = take(b, pos, n)?;
            Ok(if col.charset == Charset::Binary {
                Value::Bytes(s.to_vec())
            } else {
                Value::String(text(&b[start..], n, col.charset)?)
            })
        }),
        Decode::Enum { pack } => put(out, || {
            let i = if pack == 1 {
                take(b, pos, 1)?[0] as usize
            } else {
                u16::from_le_bytes(take_arr::<2>(b, pos)?) as usize
            };
            let labels = col.labels.as_deref().unwrap_or(&[]);
            Ok(if i == 0 {
                Value::String(rowstream_api::Text::default())
            } else {
                match labels.get(i - 1) {
                    Some(l) => Value::String(rowstream_api::Text::from(&**l)),
                    None => {
                        return Err(CellErr::Bad(format!(
                            "ENUM index {i} beyond {} labels",
                            labels.len()
                        )))
                    }
                }
            })
        }),
        Decode::Set { bytes } => put(out, || {
            let s = take(b, pos, bytes as usize)?;
            let mut v = [0u8; 8];
            v[..s.len()].copy_from_slice(s);
            let mask = u64::from_le_bytes(v);
            let labels = col.labels.as_deref().unwrap_or(&[]);
            if labels.len() < 64 && mask >> labels.len() != 0 {
                return Err(CellErr::Bad(format!(
                    "SET bitmask {mask:#x} beyond {} labels",
                    labels.len()
                )));
            }
            let mut joined = String::new();
            for (i, l) in labels.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    if !joined.is_empty() {
                        joined.push(',');
                    }
                    joined.push_str(l);
                }
            }
            Ok(Value::String(joined.into()))
        }),
        Decode::Date => put(out, || {
            let x = take_arr::<3>(b, pos)?;
            let v = x[0] as u32 | (x[1] as u32) << 8 | (x[2] as u32) << 16;
            Ok(Value::Date(Date {
                year: (v >> 9) as u16,
                month: ((v >> 5) & 15) as u8,
                day: (v & 31) as u8,
            }))
        }),
        Decode::DateTime2 { fsp } => put(out, || {
            let raw = be(take(b, pos, 5)?) as i64 - 0x80_0000_0000;
            let micros = frac_micros(b, pos, fsp)?;
            if raw < 0 {
                return Err(CellErr::Bad("negative DATETIME".into()));
            }
            let ymd = raw >> 17;
            let hms = raw & ((1 << 17) - 1);
            let ym = ymd >> 5;
            Ok(Value::DateTime(DateTime {
                date: Date {
                    year: (ym / 13) as u16,
                    month: (ym % 13) as u8,
                    day: (ymd & 31) as u8,
                },
                hour: (hms >> 12) as u8,
                minute: ((hms >> 6) & 63) as u8,
                second: (hms & 63) as u8,
                micros,
                fsp,
            }))
        }),
        Decode::Timestamp2 { fsp } => put(out, || {
            let secs = u32::from_be_bytes(take_arr::<4>(b, pos)?) as i64;
            let micros = frac_micros(b, pos, fsp)?;
            Ok(Value::Timestamp { secs, micros, fsp })
        }),
        Decode::Time2 { fsp } => put(out, || {
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
            Ok(Value::Time(time_from_packed(packed, fsp)))
        }),
        Decode::DateTimeOld => put(out, || {
            let v = u64::from_le_bytes(take_arr::<8>(b, pos)?);
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Ok(Value::DateTime(DateTime {
                date: Date {
                    year: (d / 10_000) as u16,
                    month: (d / 100 % 100) as u8,
                    day: (d % 100) as u8,
                },
                hour: (t / 10_000) as u8,
                minute: (t / 100 % 100) as u8,
                second: (t % 100) as u8,
                micros: 0,
                fsp: 0,
            }))
        }),
        Decode::TimestampOld => put(out, || {
            Ok(Value::Timestamp {
                secs: u32::from_le_bytes(take_arr::<4>(b, pos)?) as i64,
                micros: 0,
                fsp: 0,
            })
        }),
        Decode::TimeOld => put(out, || {
            let x = take_arr::<3>(b, pos)?;
            let v = ((x[0] as u32 | (x[1] as u32) << 8 | (x[2] as u32) << 16) << 8) as i32 >> 8;
            let a = v.unsigned_abs();
            Ok(Value::Time(Time {
                negative: v < 0,
                hours: (a / 10_000) as u16,
                minute: (a / 100 % 100) as u8,
                second: (a % 100) as u8,
                micros: 0,
                fsp: 0,
            }))
        }),
        Decode::Json { pack } => put(out, || {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            Ok(Value::Json(json_from_binary(s).map_err(CellErr::Bad)?))
        }),
        Decode::Geometry { pack } => put(out, || {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            Ok(match s.split_first_chunk() {
                Some((srid, wkb)) => Value::Geometry {
                    srid: u32::from_le_bytes(*srid),
                    wkb: wkb.to_vec(),
                },
                None if s.is_empty() => Value::Geometry {
                    srid: 0,
                    wkb: Vec::new(),
                },
                None => return Err(CellErr::Bad(format!("GEOMETRY value of {} bytes", s.len()))),
            })
        }),
        Decode::Vector { pack } => put(out, || {
            let n = read_pack(b, pos, pack)?;
            let s = take(b, pos, n)?;
            if s.len() % 4 != 0 {
                return Err(CellErr::Bad(format!("VECTOR value of {} bytes", s.len())));
            }
            Ok(Value::Vector(
                s.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ))
        }),
    }
}

/// The text of the cell of `len` bytes at the start of `buf` (the rest of
/// the rows event: see `decode_text_prefix`).
#[inline]
fn text(buf: &[u8], len: usize, cs: Charset) -> Result<rowstream_api::Text, CellErr> {
    decode_text_prefix(buf, len, cs).map_err(|e| match e {
        TextError::Invalid(cs) => CellErr::Text(cs),
        TextError::UnknownCharset(id) => CellErr::UnknownCharset(id),
    })
}

/// Convenience for callers that want owned names of an image.
pub fn image_columns(schema: &TableSchema, present: &[usize]) -> Columns {
    names_for(schema, present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::binlog::json::decimal_json;
    use crate::source::binlog::packed::DIG2BYTES;
    use crate::source::binlog::schema::tests::table_map;
    use mysql_common::constants::ColumnType;
    use mysql_common::io::ParseBuf;
    use rowstream_api::Flavor;
    use serde_json::json;

    fn schema(cols: &[(u8, &[u8], &str)], opt: &[(u8, Vec<u8>)]) -> TableSchema {
        TableSchema::from_table_map(&table_map(42, "db", "t", cols, opt), 8, Flavor::MySql).unwrap()
    }

    /// A v2 rows event body with a full column bitmap.
    fn rows_body(kind: u8, ncols: usize, rows: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&42u64.to_le_bytes()[..6]);
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.push(ncols as u8);
        let images = if matches!(kind, ev::UPDATE_ROWS | ev::PARTIAL_UPDATE_ROWS) {
            2
        } else {
            1
        };
        for _ in 0..images {
            b.extend(std::iter::repeat_n(0xffu8, ncols.div_ceil(8)));
        }
        b.extend_from_slice(rows);
        b
    }

    /// Decodes all rows of a WRITE_ROWS v2 event (after images).
    fn write_rows(s: &TableSchema, rows: &[u8]) -> Result<Vec<Vec<Value>>, DecodeError> {
        let body = rows_body(ev::WRITE_ROWS, s.columns.len(), rows);
        let h = parse_rows_header(ev::WRITE_ROWS, &body, 10)?;
        let mut d = RowsDecoder::try_new(&h, s)?;
        let (mut b, mut a) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        while d.next_row(&mut b, &mut a)? {
            out.push(a.clone());
        }
        Ok(out)
    }

    /// One-column table, one row holding `cell` (null bitmap prepended).
    fn one(ty: u8, meta: &[u8], opt: &[(u8, Vec<u8>)], cell: &[u8]) -> Result<Value, DecodeError> {
        let s = schema(&[(ty, meta, "c")], opt);
        let mut r = vec![0u8];
        r.extend_from_slice(cell);
        Ok(write_rows(&s, &r)?.remove(0).remove(0))
    }

    fn unsigned() -> Vec<(u8, Vec<u8>)> {
        vec![(1, vec![0x80])]
    }

    #[test]
    fn integers() {
        assert_eq!(
            one(9, &[], &[], &[0, 0, 0x80]).unwrap(),
            Value::Int(-8388608)
        );
        assert_eq!(
            one(9, &[], &[], &[0xff, 0xff, 0x7f]).unwrap(),
            Value::Int(8388607)
        );
        assert_eq!(
            one(9, &[], &unsigned(), &[0xff, 0xff, 0xff]).unwrap(),
            Value::UInt(16777215)
        );
        assert_eq!(one(1, &[], &[], &[0x80]).unwrap(), Value::Int(-128));
        assert_eq!(one(1, &[], &unsigned(), &[0xff]).unwrap(), Value::UInt(255));
        assert_eq!(one(2, &[], &[], &[0, 0x80]).unwrap(), Value::Int(-32768));
        assert_eq!(
            one(3, &[], &[], &[0, 0, 0, 0x80]).unwrap(),
            Value::Int(i32::MIN as i64)
        );
        assert_eq!(
            one(3, &[], &unsigned(), &[0xff; 4]).unwrap(),
            Value::UInt(u32::MAX as u64)
        );
        assert_eq!(
            one(8, &[], &unsigned(), &[0xff; 8]).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            one(8, &[], &[], &i64::MIN.to_le_bytes()).unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(one(13, &[], &[], &[0]).unwrap(), Value::Int(0));
        assert_eq!(one(13, &[], &[], &[124]).unwrap(), Value::Int(2024));
        assert_eq!(one(16, &[1, 0], &[], &[1]).unwrap(), Value::Bool(true));
        assert_eq!(
            one(16, &[4, 1], &[], &[0x0a, 0xbc]).unwrap(),
            Value::UInt(0xabc)
        );
        assert_eq!(
            one(16, &[0, 8], &[], &[0xff; 8]).unwrap(),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            one(4, &[4], &[], &1.5f32.to_le_bytes()).unwrap(),
            Value::Float(1.5)
        );
        assert_eq!(
            one(5, &[8], &[], &(-2.25f64).to_le_bytes()).unwrap(),
            Value::Double(-2.25)
        );
    }

    /// mysql_common's BinlogValue reads a signed MEDIUMINT without sign extension.
    #[test]
    fn mysql_common_int24_not_sign_extended() {
        use mysql_common::binlog::value::BinlogValue;
        let v: BinlogValue = ParseBuf(&[0, 0, 0x80])
            .parse((ColumnType::MYSQL_TYPE_INT24, &[][..], false, false))
            .unwrap();
        assert_eq!(v, BinlogValue::Value(mysql_common::Value::Int(8388608)));
        assert_eq!(
            one(9, &[], &[], &[0, 0, 0x80]).unwrap(),
            Value::Int(-8388608)
        );
    }

    /// Test-only encoder of MySQL binary DECIMAL.
    fn enc_dec(text: &str, p: usize, s: usize) -> Vec<u8> {
        let neg = text.starts_with('-');
        let t = text.trim_start_matches('-');
        let (i, f) = t.split_once('.').unwrap_or((t, ""));
        let intg = p - s;
        let i = format!("{:0>w$}", i, w = intg);
        let f = format!("{:0<w$}", f, w = s);
        let mut out = Vec::new();
        let mut push = |digits: &str, nbytes: usize| {
            if nbytes == 0 {
                return;
            }
            let v: u64 = digits.parse().unwrap();
            out.extend_from_slice(&v.to_be_bytes()[8 - nbytes..]);
        };
        let lead = intg % 9;
        push(&i[..lead], DIG2BYTES[lead]);
        for k in 0..intg / 9 {
            push(&i[lead + 9 * k..lead + 9 * k + 9], 4);
        }
        for k in 0..s / 9 {
            push(&f[9 * k..9 * k + 9], 4);
        }
        push(&f[9 * (s / 9)..], DIG2BYTES[s % 9]);
        out[0] ^= 0x80;
        if neg {
            for b in &mut out {
                *b ^= 0xff;
            }
        }
        out
    }

    #[test]
    fn decimals() {
        for (text, p, s, want) in [
            ("0.50", 10, 2, "0.50"),
            ("1234.56", 10, 2, "1234.56"),
            ("-1234.56", 10, 2, "-1234.56"),
            ("0", 10, 2, "0.00"),
            ("-0", 10, 2, "0.00"),
            ("00012", 5, 0, "12"),
            ("-99999", 5, 0, "-99999"),
            ("0.000000001", 20, 10, "0.0000000010"),
            (
                "-12345678901234567890123456789012345.123456789012345678901234567890",
                65,
                30,
                "-12345678901234567890123456789012345.123456789012345678901234567890",
            ),
            (
                "99999999999999999999999999999999999.999999999999999999999999999999",
                65,
                30,
                "99999999999999999999999999999999999.999999999999999999999999999999",
            ),
        ] {
            let bytes = enc_dec(text, p, s);
            assert_eq!(
                decode_decimal(&bytes, p as u8, s as u8).as_deref(),
                Some(want),
                "{text}"
            );
            assert_eq!(
                one(246, &[p as u8, s as u8], &[], &bytes).unwrap(),
                Value::Decimal(want.to_string().into())
            );
        }
        // "-0.00" as the server would write it (negative zero bytes) prints 0.00
        let mut negzero = enc_dec("0.00", 10, 2);
        for b in &mut negzero {
            *b ^= 0xff;
        }
        assert_eq!(decode_decimal(&negzero, 10, 2).as_deref(), Some("0.00"));
    }

    fn dt2(y: u64, mo: u64, d: u64, h: u64, mi: u64, s: u64) -> Vec<u8> {
        let v = ((y * 13 + mo) << 22 | d << 17 | h << 12 | mi << 6 | s) + 0x80_0000_0000;
        v.to_be_bytes()[3..].to_vec()
    }

    #[test]
    fn temporals() {
        let mut b = dt2(9999, 12, 31, 23, 59, 59);
        b.extend_from_slice(&999_999u32.to_be_bytes()[1..]);
        assert_eq!(
            one(18, &[6], &[], &b).unwrap(),
            Value::DateTime(DateTime {
                date: Date {
                    year: 9999,
                    month: 12,
                    day: 31
                },
                hour: 23,
                minute: 59,
                second: 59,
                micros: 999_999,
                fsp: 6
            })
        );
        let b = dt2(0, 0, 0, 0, 0, 0);
        assert_eq!(
            one(18, &[0], &[], &b).unwrap(),
            Value::DateTime(DateTime {
                date: Date {
                    year: 0,
                    month: 0,
                    day: 0
                },
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0,
                fsp: 0
            })
        );
        // DATETIME(2) .57 -> 1 byte 57
        let mut b = dt2(2024, 2, 29, 1, 2, 3);
        b.push(57);
        assert!(matches!(
            one(18, &[2], &[], &b).unwrap(),
            Value::DateTime(DateTime {
                micros: 570_000,
                fsp: 2,
                ..
            })
        ));
        // DATE: zero and partial
        let date = |y: u32, m: u32, d: u32| {
            let v = y << 9 | m << 5 | d;
            v.to_le_bytes()[..3].to_vec()
        };
        assert_eq!(
            one(10, &[], &[], &date(0, 0, 0)).unwrap(),
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0
            })
        );
        assert_eq!(
            one(10, &[], &[], &date(2024, 0, 0)).unwrap(),
            Value::Date(Date {
                year: 2024,
                month: 0,
                day: 0
            })
        );
        // TIMESTAMP(3)
        let mut b = 1_700_000_000u32.to_be_bytes().to_vec();
        b.extend_from_slice(&1234u16.to_be_bytes());
        assert_eq!(
            one(17, &[3], &[], &b).unwrap(),
            Value::Timestamp {
                secs: 1_700_000_000,
                micros: 123_400,
                fsp: 3
            }
        );
        assert_eq!(
            one(17, &[0], &[], &[0, 0, 0, 0]).unwrap(),
            Value::Timestamp {
                secs: 0,
                micros: 0,
                fsp: 0
            }
        );
    }

    #[test]
    fn times() {
        // TIME(1) -01:02:03.5
        assert_eq!(
            one(19, &[1], &[], &[0x7F, 0xEF, 0x7C, 0xCE]).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 1,
                minute: 2,
                second: 3,
                micros: 500_000,
                fsp: 1
            })
        );
        // TIME(3) -00:00:00.001
        let int: i64 = -1; // floor(-0.001 s) in packed int part
        let mut b = ((int + 0x80_0000) as u64).to_be_bytes()[5..].to_vec();
        b.extend_from_slice(&((0x10000 - 10) as u16).to_be_bytes());
        assert_eq!(
            one(19, &[3], &[], &b).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 0,
                minute: 0,
                second: 0,
                micros: 1000,
                fsp: 3
            })
        );
        // TIME(6) -838:59:59.000000 and 838:59:59.999999
        let hms = |h: i64, m: i64, s: i64| (h << 12 | m << 6 | s) << 24;
        let t6 = |packed: i64| ((packed + 0x8000_0000_0000) as u64).to_be_bytes()[2..].to_vec();
        assert_eq!(
            one(19, &[6], &[], &t6(-hms(838, 59, 59))).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micros: 0,
                fsp: 6
            })
        );
        assert_eq!(
            one(19, &[6], &[], &t6(-(hms(1, 0, 0) + 250_000))).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 1,
                minute: 0,
                second: 0,
                micros: 250_000,
                fsp: 6
            })
        );
        assert_eq!(
            one(19, &[6], &[], &t6(hms(838, 59, 59) + 999_999)).unwrap(),
            Value::Time(Time {
                negative: false,
                hours: 838,
                minute: 59,
                second: 59,
                micros: 999_999,
                fsp: 6
            })
        );
        // TIME(0) -12:00:00
        let b = ((-(12i64 << 12) + 0x80_0000) as u64).to_be_bytes()[5..].to_vec();
        assert_eq!(
            one(19, &[0], &[], &b).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 12,
                minute: 0,
                second: 0,
                micros: 0,
                fsp: 0
            })
        );
    }

    #[test]
    fn old_temporals() {
        assert!(matches!(
            one(12, &[], &[], &20240229123456u64.to_le_bytes()).unwrap(),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 2,
                    day: 29
                },
                hour: 12,
                minute: 34,
                second: 56,
                ..
            })
        ));
        assert_eq!(
            one(11, &[], &[], &(-123456i32).to_le_bytes()[..3]).unwrap(),
            Value::Time(Time {
                negative: true,
                hours: 12,
                minute: 34,
                second: 56,
                micros: 0,
                fsp: 0
            })
        );
        assert_eq!(
            one(7, &[], &[], &5u32.to_le_bytes()).unwrap(),
            Value::Timestamp {
                secs: 5,
                micros: 0,
                fsp: 0
            }
        );
    }

    fn cs(id: u8) -> Vec<(u8, Vec<u8>)> {
        vec![(2, vec![id])]
    }

    #[test]
    fn strings_and_charsets() {
        // VARCHAR(10) latin1: "é€"
        assert_eq!(
            one(15, &[10, 0], &cs(8), &[2, 0xE9, 0x80]).unwrap(),
            Value::String("é€".into())
        );
        assert_eq!(
            one(15, &[10, 0], &cs(8), &[1, 0x81]).unwrap(),
            Value::String("\u{81}".into())
        );
        // VARCHAR(300) utf8mb4 (2-byte length): 4-byte UTF-8
        let s = "a😀";
        let mut b = (s.len() as u16).to_le_bytes().to_vec();
        b.extend_from_slice(s.as_bytes());
        assert_eq!(
            one(15, &[0x2c, 0x01], &cs(45), &b).unwrap(),
            Value::String(s.into())
        );
        // invalid UTF-8 is an error naming the column
        let e = one(15, &[10, 0], &cs(45), &[1, 0xff])
            .unwrap_err()
            .to_string();
        assert!(e.contains("db.t.c") && e.contains("Utf8"), "{e}");
        // ascii
        assert!(one(15, &[10, 0], &cs(11), &[1, 0xe9]).is_err());
        // ASCII text, short and long, the same in ascii, latin1 and utf8mb4
        for text in [
            "",
            "a",
            "abc",
            "name-1-815",
            "0123456789abcdefghijklmnopqrstuvwxyz\u{7f}",
        ] {
            let mut b = vec![text.len() as u8];
            b.extend_from_slice(text.as_bytes());
            for id in [11, 8, 45] {
                assert_eq!(
                    one(15, &[100, 0], &cs(id), &b).unwrap(),
                    Value::String(text.into()),
                    "collation {id}"
                );
            }
        }
        // a non-ASCII byte at the end of a long string is still decoded
        let mut b = vec![20];
        b.extend_from_slice(b"0123456789abcdefghi\xe9");
        assert_eq!(
            one(15, &[100, 0], &cs(8), &b).unwrap(),
            Value::String("0123456789abcdefghié".into())
        );
        assert!(one(15, &[100, 0], &cs(45), &b).is_err());
        assert!(one(15, &[100, 0], &cs(11), &b).is_err());
        // unknown charset (gbk 28): error naming the collation, empty ok
        let e = one(15, &[10, 0], &cs(28), &[2, 0xc4, 0xe3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("collation id 28"), "{e}");
        assert_eq!(
            one(15, &[10, 0], &cs(28), &[0]).unwrap(),
            Value::String(String::new().into())
        );
        // VARBINARY
        assert_eq!(
            one(15, &[10, 0], &cs(63), &[2, 0, 0xff]).unwrap(),
            Value::Bytes(vec![0, 0xff])
        );
        // CHAR(4) utf8mb4 = 16 bytes: meta [0xfe, 16]
        assert_eq!(
            one(254, &[0xfe, 16], &cs(45), &[2, b'h', b'i']).unwrap(),
            Value::String("hi".into())
        );
        // BINARY(4): padded back with zeros
        assert_eq!(
            one(254, &[0xfe, 4], &cs(63), &[2, 1, 2]).unwrap(),
            Value::Bytes(vec![1, 2, 0, 0])
        );
        // CHAR(255) utf8mb4 = 1020 bytes: long CHAR encoding, 2-byte length
        let meta = [0xfe ^ ((1020 & 0x300) >> 4) as u8, (1020 & 0xff) as u8];
        let s = schema(&[(254, &meta, "c")], &cs(45));
        assert_eq!(
            s.columns[0].decode,
            Decode::VarLen {
                prefix: 2,
                pad_to: 0
            }
        );
        // TEXT (pack 2) utf8 and BLOB (pack 2) binary, LONGBLOB (4)
        assert_eq!(
            one(252, &[2], &cs(45), &[3, 0, b'a', b'b', b'c']).unwrap(),
            Value::String("abc".into())
        );
        assert_eq!(
            one(252, &[2], &cs(63), &[1, 0, 7]).unwrap(),
            Value::Bytes(vec![7])
        );
        assert_eq!(
            one(252, &[4], &cs(63), &[1, 0, 0, 0, 9]).unwrap(),
            Value::Bytes(vec![9])
        );
        // truncated value
        let e = one(252, &[2], &cs(63), &[5, 0, 7]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn enum_and_set() {
        let opt = vec![
            (6u8, vec![3, 1, b'a', 1, b'b', 2, 0xc3, 0xa9]),
            (10, vec![45]),
        ];
        assert_eq!(
            one(254, &[247, 1], &opt, &[3]).unwrap(),
            Value::String("é".into())
        );
        assert_eq!(
            one(254, &[247, 1], &opt, &[0]).unwrap(),
            Value::String(String::new().into())
        );
        assert!(one(254, &[247, 1], &opt, &[4]).is_err());
        let opt = vec![(5u8, vec![3, 1, b'x', 1, b'y', 1, b'z']), (10, vec![45])];
        assert_eq!(
            one(254, &[248, 1], &opt, &[0b101]).unwrap(),
            Value::String("x,z".into())
        );
        assert_eq!(
            one(254, &[248, 1], &opt, &[0]).unwrap(),
            Value::String(String::new().into())
        );
        assert!(one(254, &[248, 1], &opt, &[0b1000]).is_err());
    }

    /// jsonb of {"a": 1}
    fn jsonb_obj_a1() -> Vec<u8> {
        vec![0x00, 1, 0, 12, 0, 11, 0, 1, 0, 0x05, 1, 0, b'a']
    }

    fn with_len4(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn json_values() {
        assert_eq!(
            one(245, &[4], &[], &with_len4(&jsonb_obj_a1())).unwrap(),
            Value::Json(json!({"a": 1}))
        );
        assert_eq!(
            one(245, &[4], &[], &with_len4(&[])).unwrap(),
            Value::Json(json!(null))
        );
        // uint64 max, int64 min, double, literals, string
        assert_eq!(
            json_from_binary(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            json!(u64::MAX)
        );
        let mut b = vec![0x09];
        b.extend_from_slice(&i64::MIN.to_le_bytes());
        assert_eq!(json_from_binary(&b).unwrap(), json!(i64::MIN));
        let mut b = vec![0x0b];
        b.extend_from_slice(&0.1f64.to_le_bytes());
        assert_eq!(json_from_binary(&b).unwrap(), json!(0.1));
        assert_eq!(json_from_binary(&[0x04, 2]).unwrap(), json!(false));
        assert_eq!(
            json_from_binary(&[0x0c, 2, b'h', b'i']).unwrap(),
            json!("hi")
        );
        // opaque DECIMAL(4,2) 12.50 -> number 12.5; large -> string
        let mut d = vec![4, 2];
        d.extend_from_slice(&enc_dec("12.50", 4, 2));
        let mut b = vec![0x0f, 246, d.len() as u8];
        b.extend_from_slice(&d);
        assert_eq!(json_from_binary(&b).unwrap(), json!(12.5));
        assert_eq!(
            decimal_json("12345678901234567890.5"),
            json!("12345678901234567890.5")
        );
        assert_eq!(decimal_json("-42"), json!(-42));
        // opaque DATETIME 2024-02-29 12:34:56.5 and TIME -01:00:00
        let ymd = (2024i64 * 13 + 2) << 5 | 29;
        let hms = 12i64 << 12 | 34 << 6 | 56;
        let packed = ((ymd << 17 | hms) << 24) + 500_000;
        let mut b = vec![0x0f, 12, 8];
        b.extend_from_slice(&packed.to_le_bytes());
        assert_eq!(
            json_from_binary(&b).unwrap(),
            json!("2024-02-29 12:34:56.500000")
        );
        let mut b = vec![0x0f, 11, 8];
        b.extend_from_slice(&(-(1i64 << 12 << 24)).to_le_bytes());
        assert_eq!(json_from_binary(&b).unwrap(), json!("-01:00:00.000000"));
        let mut b = vec![0x0f, 10, 8];
        b.extend_from_slice(&((ymd << 17) << 24).to_le_bytes());
        assert_eq!(json_from_binary(&b).unwrap(), json!("2024-02-29"));
        // other opaque -> base64:typeN:
        assert_eq!(
            json_from_binary(&[0x0f, 15, 2, b'h', b'i']).unwrap(),
            json!("base64:type15:aGk=")
        );
    }

    #[test]
    fn json_array() {
        // [1, "x"]: type 0x02; count=2, size=12; entries: (INT16 1) (STRING at off 10); data at 10: len 1 'x'
        let arr = [0x02, 2, 0, 12, 0, 0x05, 1, 0, 0x0c, 10, 0, 1, b'x'];
        assert_eq!(json_from_binary(&arr).unwrap(), json!([1, "x"]));
    }

    #[test]
    fn geometry_and_vector() {
        let mut g = 4326u32.to_le_bytes().to_vec();
        g.extend_from_slice(&[1, 1, 0, 0, 0]);
        assert_eq!(
            one(255, &[4], &[], &with_len4(&g)).unwrap(),
            Value::Geometry {
                srid: 4326,
                wkb: vec![1, 1, 0, 0, 0]
            }
        );
        let mut v = 1.0f32.to_le_bytes().to_vec();
        v.extend_from_slice(&(-2.5f32).to_le_bytes());
        assert_eq!(
            one(242, &[4], &[], &with_len4(&v)).unwrap(),
            Value::Vector(vec![1.0, -2.5])
        );
        assert!(one(242, &[4], &[], &with_len4(&[1, 2, 3])).is_err());
    }

    #[test]
    fn nulls_partial_images_and_update() {
        let s = schema(&[(3, &[], "id"), (15, &[10, 0], "name")], &cs(45));
        // UPDATE v1 with before bitmap {id} and after bitmap {id, name}
        let mut b = Vec::new();
        b.extend_from_slice(&42u64.to_le_bytes()[..6]);
        b.extend_from_slice(&1u16.to_le_bytes());
        b.push(2);
        b.push(0b01);
        b.push(0b11);
        b.extend_from_slice(&[0, 7, 0, 0, 0]); // before: id=7
        b.extend_from_slice(&[0b10, 8, 0, 0, 0]); // after: id=8, name NULL
        let h = parse_rows_header(0x18, &b, 8).unwrap();
        assert_eq!(h.flags & STMT_END_F, 1);
        let mut d = RowsDecoder::new(&h, &s);
        assert_eq!(d.present_before(), &[0]);
        assert_eq!(&*d.columns_before()[0], "id");
        assert!(Arc::ptr_eq(d.columns_after(), &s.names));
        let (mut bv, mut av) = (Vec::new(), Vec::new());
        assert!(d.next_row(&mut bv, &mut av).unwrap());
        assert_eq!(bv, vec![Value::Int(7)]);
        assert_eq!(av, vec![Value::Int(8), Value::Null]);
        assert!(!d.next_row(&mut bv, &mut av).unwrap());
        assert!(bv.is_empty() && av.is_empty());
    }

    #[test]
    fn rows_header_variants() {
        let body = rows_body(0x20, 3, &[]);
        let h = parse_rows_header(0x20, &body, 10).unwrap();
        assert_eq!(
            (h.kind, h.column_count, h.table_id),
            (RowsKind::Delete, 3, 42)
        );
        assert!(h.after.is_none() && h.before.unwrap().is_full());
        for t in 166..=171 {
            let e = parse_rows_header(t, &body, 10).unwrap_err().to_string();
            assert!(
                e.contains("COMPRESSED") && e.contains(&t.to_string()),
                "{e}"
            );
        }
        assert!(parse_rows_header(ev::WRITE_ROWS, &body[..5], 10).is_err());
        // schema mismatch
        let s = schema(&[(3, &[], "id")], &[]);
        let h = parse_rows_header(0x20, &body, 10).unwrap();
        assert!(RowsDecoder::try_new(&h, &s).is_err());
        let mut d = RowsDecoder::new(&h, &s);
        assert!(d.next_row(&mut Vec::new(), &mut Vec::new()).is_err());
    }

    #[test]
    fn partial_json_update_applies_diff() {
        let s = schema(&[(3, &[], "id"), (245, &[4], "doc")], &[]);
        let mut rows = Vec::new();
        rows.push(0); // before null bitmap
        rows.extend_from_slice(&1i32.to_le_bytes());
        rows.extend_from_slice(&with_len4(&jsonb_obj_a1()));
        rows.extend_from_slice(&[1, 0b1]); // value_options = PARTIAL_JSON, partial bits
        rows.push(0); // after null bitmap
        rows.extend_from_slice(&1i32.to_le_bytes());
        let mut diff = vec![0u8, 3];
        diff.extend_from_slice(b"$.a");
        diff.extend_from_slice(&[3, 0x05, 2, 0]);
        diff.extend_from_slice(&[1u8, 7]);
        diff.extend_from_slice(b"$.\"b c\"");
        diff.extend_from_slice(&[3, 0x0c, 1, b'z']);
        rows.extend_from_slice(&with_len4(&diff));
        // a second row without partial JSON (value_options 0): full document
        rows.extend_from_slice(&[0, 2, 0, 0, 0]);
        rows.extend_from_slice(&with_len4(&jsonb_obj_a1()));
        rows.push(0);
        rows.extend_from_slice(&[0, 2, 0, 0, 0]);
        rows.extend_from_slice(&with_len4(&[]));
        let body = rows_body(0x27, 2, &rows);
        let h = parse_rows_header(0x27, &body, 10).unwrap();
        let mut d = RowsDecoder::new(&h, &s);
        let (mut b, mut a) = (Vec::new(), Vec::new());
        assert!(d.next_row(&mut b, &mut a).unwrap());
        assert_eq!(b[1], Value::Json(json!({"a": 1})));
        assert_eq!(a[1], Value::Json(json!({"a": 2, "b c": "z"})));
        assert!(d.next_row(&mut b, &mut a).unwrap());
        assert_eq!(a, vec![Value::Int(2), Value::Json(json!(null))]);
        assert!(!d.next_row(&mut b, &mut a).unwrap());
    }

    #[test]
    fn multi_row_mixed_table() {
        let opt = vec![(1, vec![0b0100_0000]), (2, vec![45])];
        let s = schema(
            &[
                (3, &[], "id"),
                (8, &[], "big"),
                (15, &[0x90, 0x01], "name"),
                (18, &[0], "at"),
            ],
            &opt,
        );
        assert!(s.columns[1].unsigned && !s.columns[0].unsigned);
        let mut rows = Vec::new();
        for i in 0..3u8 {
            rows.push(if i == 1 { 0b0100 } else { 0 });
            rows.extend_from_slice(&(i as i32 - 1).to_le_bytes());
            rows.extend_from_slice(&u64::MAX.to_le_bytes());
            if i != 1 {
                rows.extend_from_slice(&[2, 0, b'n', b'0' + i]);
            }
            rows.extend_from_slice(&dt2(2024, 1, 1, 0, 0, i as u64));
        }
        let got = write_rows(&s, &rows).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0][0], Value::Int(-1));
        assert_eq!(got[1][2], Value::Null);
        assert_eq!(got[2][2], Value::String("n2".into()));
        assert_eq!(got[2][1], Value::UInt(u64::MAX));
    }
}
