//! JSON encoding of change events, schema changes and values.
//!
//! Every writer appends to a caller-owned `Vec<u8>` and never allocates on its
//! own (the only growth is of `out`; the rare `Value::Json` goes through
//! `serde_json::to_writer` straight into `out`). No trailing newline is
//! written: framing is the caller's business.
//!
//! Invariants kept:
//! - Output is always valid JSON (RFC 8259) and valid UTF-8 when the input
//!   strings are (they are Rust `str`s, so they are).
//! - Strings escape exactly `"`, `\` and the control characters U+0000..U+001F
//!   (as `\u00XX`); everything else, including non-ASCII, is copied as is.
//! - Integers are exact over the whole `i64`/`u64` range. FLOAT prints the
//!   shortest form of the `f32` (1.1 stays 1.1), DOUBLE the shortest `f64`
//!   form; NaN and infinities print `null`.
//! - Temporal values print exactly what the server stores, zero dates
//!   included, with exactly `fsp` fractional digits.
//!
//! The envelope is Debezium-shaped; the exact layout and the value mapping
//! are documented in `schemas/change-event.schema.json` and
//! `schemas/README.md`, which tests in this module keep honest.

use base64::Engine as _;

use crate::event::{ChangeEvent, Columns, Record, RowRef, SchemaChange, Source, Transaction};
use crate::value::{Date, DateTime, Time, Value};

/// Appends the JSON form of any record: a change event envelope or a schema
/// change record (see [`write_change_event`], [`write_schema_change`]).
pub fn write_record(out: &mut Vec<u8>, rec: &Record) {
    match rec {
        Record::Change(ev) => write_change_event(out, ev),
        Record::SchemaChange(sc) => write_schema_change(out, sc),
    }
}

/// Appends the Debezium-style envelope of one row change:
///
/// `{"before":{..}|null,"after":{..}|null,"op":"c","ts_ms":N,"source":{..},"transaction":{..}|null}`
///
/// Keys always appear, in this order; a missing image or transaction is
/// `null`. A change a snapshot may already hold ends with `,"overlap":true`
/// (see [`ChangeEvent::overlap`]); no other change has the key.
pub fn write_change_event(out: &mut Vec<u8>, ev: &ChangeEvent) {
    out.reserve(256);
    out.extend_from_slice(b"{\"before\":");
    write_opt_row(out, ev.before_row());
    out.extend_from_slice(b",\"after\":");
    write_opt_row(out, ev.after_row());
    HEADS.with(|h| h.borrow_mut().write(out, ev));
    if ev.overlap {
        out.extend_from_slice(b",\"overlap\":true");
    }
    out.push(b'}');
}

thread_local! {
    static HEADS: std::cell::RefCell<HeadCache> = const { std::cell::RefCell::new(HeadCache { head: None, tx: None }) };
}

/// The envelope's parts that every row of a rows event shares, encoded once:
/// `,"op":..,"ts_ms":..,"source":{..,"pos":N,"row":` and the transaction's
/// `{"id":"..","total_order":`. A row then costs one copy of each plus its
/// own numbers. The key holds the `Arc`s it compares by pointer, so a
/// pointer cannot be reused by another string while it is cached; the
/// bytes are written by the same code as an uncached envelope
/// ([`write_source_head`]), so both forms are the same.
struct HeadCache {
    head: Option<(HeadKey, Vec<u8>)>,
    tx: Option<(std::sync::Arc<str>, Vec<u8>)>,
}

/// What `HeadCache::head`'s bytes depend on. The rows of one rows event
/// share their `Source`, so the common hit is a pointer comparison.
struct HeadKey {
    op: crate::event::Op,
    ts_ms: u64,
    shared: std::sync::Arc<crate::event::Shared>,
}

impl HeadKey {
    fn matches(&self, ev: &ChangeEvent) -> bool {
        self.op == ev.op
            && self.ts_ms == ev.ts_ms
            && std::sync::Arc::ptr_eq(&self.shared, &ev.shared)
    }
}

impl HeadCache {
    fn write(&mut self, out: &mut Vec<u8>, ev: &ChangeEvent) {
        let hit = self.head.as_ref().is_some_and(|(k, _)| k.matches(ev));
        if !hit {
            let mut bytes = self.head.take().map(|(_, b)| b).unwrap_or_default();
            bytes.clear();
            bytes.extend_from_slice(b",\"op\":\"");
            bytes.extend_from_slice(ev.op.as_str().as_bytes());
            bytes.extend_from_slice(b"\",\"ts_ms\":");
            write_u64(&mut bytes, ev.ts_ms);
            bytes.extend_from_slice(b",\"source\":");
            write_source_head(&mut bytes, ev.source());
            let key = HeadKey {
                op: ev.op,
                ts_ms: ev.ts_ms,
                shared: ev.shared.clone(),
            };
            self.head = Some((key, bytes));
        }
        if let Some((_, bytes)) = &self.head {
            out.extend_from_slice(bytes);
        }
        write_u64(out, u64::from(ev.row));
        out.extend_from_slice(b"},\"transaction\":");
        let Some(tx) = &ev.transaction else {
            out.extend_from_slice(b"null");
            return;
        };
        let id = &ev.source().gtid;
        if !self
            .tx
            .as_ref()
            .is_some_and(|(cached, _)| std::sync::Arc::ptr_eq(cached, id))
        {
            let mut bytes = self.tx.take().map(|(_, b)| b).unwrap_or_default();
            bytes.clear();
            write_transaction_head(&mut bytes, id);
            self.tx = Some((id.clone(), bytes));
        }
        if let Some((_, bytes)) = &self.tx {
            out.extend_from_slice(bytes);
        }
        write_transaction_tail(out, tx);
    }
}

/// Appends a schema-change record (Debezium schema-change topic style):
///
/// `{"source":{..},"ts_ms":N,"databaseName":"..","ddl":".."}`
pub fn write_schema_change(out: &mut Vec<u8>, sc: &SchemaChange) {
    out.reserve(192 + sc.ddl.len());
    out.extend_from_slice(b"{\"source\":");
    write_source(out, &sc.source, 0);
    out.extend_from_slice(b",\"ts_ms\":");
    write_u64(out, sc.ts_ms);
    out.extend_from_slice(b",\"databaseName\":");
    write_str(out, &sc.database);
    out.extend_from_slice(b",\"ddl\":");
    write_str(out, &sc.ddl);
    out.push(b'}');
}

/// Appends one row image as a JSON object `{"col":value,...}` in column
/// order. Names are paired with values positionally; if the lengths differ,
/// the extra entries of the longer side are ignored.
pub fn write_row(out: &mut Vec<u8>, row: RowRef<'_>) {
    KEYS.with(|k| {
        let mut cache = k.borrow_mut();
        let keys = cache.keys_for(row.columns);
        out.push(b'{');
        for (i, value) in row.values.iter().enumerate().take(keys.len()) {
            keys.put(out, i);
            write_value(out, value);
        }
        out.push(b'}');
    });
}

thread_local! {
    static KEYS: std::cell::RefCell<KeyCache> = const { std::cell::RefCell::new(KeyCache { tables: Vec::new() }) };
}

/// Encoded `"name":` keys per column list. Every row of a table shares one
/// `Columns` allocation, so rows find their keys by pointer and do not
/// escape the same names again. Holding the `Arc` keeps the pointer from
/// being reused by another list while it is cached.
struct KeyCache {
    tables: Vec<(Columns, EncodedKeys)>,
}

/// Bytes of a key slot: keys up to this long are copied with [`put_fixed`].
const SLOT: usize = 32;

/// Column `i`'s key with its separator (`"id":`, then `,"name":`), each in
/// a [`SLOT`]-byte slot; longer keys are kept whole in `long`.
struct EncodedKeys {
    slots: Vec<([u8; SLOT], usize)>,
    /// Keys longer than a slot, by column; empty for the others.
    long: Vec<Vec<u8>>,
}

impl EncodedKeys {
    fn new(columns: &Columns) -> Self {
        let mut slots = Vec::with_capacity(columns.len());
        let mut long = Vec::with_capacity(columns.len());
        let mut key = Vec::new();
        for (i, name) in columns.iter().enumerate() {
            key.clear();
            if i > 0 {
                key.push(b',');
            }
            write_str(&mut key, name);
            key.push(b':');
            let mut slot = [0u8; SLOT];
            if key.len() <= SLOT {
                slot[..key.len()].copy_from_slice(&key);
                long.push(Vec::new());
            } else {
                long.push(key.clone());
            }
            slots.push((slot, key.len()));
        }
        EncodedKeys { slots, long }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    /// Appends column `i`'s key.
    #[inline]
    fn put(&self, out: &mut Vec<u8>, i: usize) {
        let (slot, len) = &self.slots[i];
        if *len <= SLOT {
            put_fixed(out, slot, *len);
        } else {
            out.extend_from_slice(&self.long[i]);
        }
    }
}

impl KeyCache {
    /// At most this many column lists are kept (per thread).
    const MAX: usize = 64;

    fn keys_for(&mut self, columns: &Columns) -> &EncodedKeys {
        // Newest first: a stream that maps its tables again (new column
        // lists) finds the current one without walking the stale ones.
        if let Some(i) = self
            .tables
            .iter()
            .rposition(|(c, _)| std::sync::Arc::ptr_eq(c, columns))
        {
            return &self.tables[i].1;
        }
        if self.tables.len() >= Self::MAX {
            self.tables.remove(0);
        }
        let i = self.tables.len();
        self.tables
            .push((columns.clone(), EncodedKeys::new(columns)));
        &self.tables[i].1
    }
}

/// Appends the `source` block shared by change events and schema changes;
/// `row` is the row's index within its rows event (0 for a schema change).
pub fn write_source(out: &mut Vec<u8>, s: &Source, row: u32) {
    write_source_head(out, s);
    write_u64(out, u64::from(row));
    out.push(b'}');
}

/// The `source` block up to its last value: `{"version":..,..,"pos":N,"row":`.
fn write_source_head(out: &mut Vec<u8>, s: &Source) {
    out.extend_from_slice(b"{\"version\":");
    write_str(out, s.version);
    out.extend_from_slice(b",\"connector\":\"");
    out.extend_from_slice(s.connector.as_str().as_bytes());
    out.extend_from_slice(b"\",\"name\":");
    write_str(out, &s.name);
    out.extend_from_slice(b",\"ts_ms\":");
    write_u64(out, s.ts_ms);
    out.extend_from_slice(b",\"snapshot\":\"");
    out.extend_from_slice(s.snapshot.as_str().as_bytes());
    out.extend_from_slice(b"\",\"db\":");
    write_str(out, &s.db);
    out.extend_from_slice(b",\"table\":");
    write_str(out, &s.table);
    out.extend_from_slice(b",\"server_id\":");
    write_u64(out, u64::from(s.server_id));
    out.extend_from_slice(b",\"gtid\":");
    write_str(out, &s.gtid);
    out.extend_from_slice(b",\"file\":");
    write_str(out, &s.file);
    out.extend_from_slice(b",\"pos\":");
    write_u64(out, s.pos);
    out.extend_from_slice(b",\"row\":");
}

/// `{"id":"..","total_order":`: the part of the transaction block every
/// event of the transaction shares; `id` is the GTID.
fn write_transaction_head(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.extend_from_slice(b",\"total_order\":");
}

fn write_transaction_tail(out: &mut Vec<u8>, tx: &Transaction) {
    write_u64(out, tx.total_order);
    out.extend_from_slice(b",\"data_collection_order\":");
    write_u64(out, tx.data_collection_order);
    out.push(b'}');
}

#[inline]
fn write_opt_row(out: &mut Vec<u8>, row: Option<RowRef<'_>>) {
    match row {
        Some(r) => write_row(out, r),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends the JSON form of one value (mapping documented in
/// `schemas/README.md`):
///
/// | Value | JSON |
/// |---|---|
/// | Null | `null` |
/// | Bool | `true` / `false` |
/// | Int, UInt | integer, exact |
/// | Float (f32), Double (f64) | shortest round-trip number; non-finite -> `null` |
/// | Decimal | string, the digits as given (`"-12.50"`) |
/// | String | string |
/// | Bytes | string, standard base64 with padding |
/// | Date | `"YYYY-MM-DD"` (zeros kept) |
/// | DateTime | `"YYYY-MM-DDTHH:MM:SS[.f]"`, `fsp` fractional digits |
/// | Timestamp | UTC, `"YYYY-MM-DDTHH:MM:SS[.f]Z"`; zero timestamp `"0000-00-00T00:00:00[.0]Z"` |
/// | Time | `"[-]HH:MM:SS[.f]"`, hours 2 or 3 digits |
/// | Json | the JSON value itself |
/// | Geometry | `{"srid":n,"wkb":"base64"}` |
/// | Vector | array of numbers (f32 shortest form) |
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(out, *i),
        Value::UInt(u) => write_u64(out, *u),
        Value::Float(f) => write_f32(out, *f),
        Value::Double(d) => write_f64(out, *d),
        Value::Decimal(s) => write_str(out, s),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_base64_str(out, b),
        Value::Date(d) => {
            out.push(b'"');
            write_date(out, d);
            out.push(b'"');
        }
        Value::DateTime(dt) => write_datetime(out, dt, b"\""),
        Value::Timestamp { secs, micros, fsp } => write_timestamp(out, *secs, *micros, *fsp),
        Value::Time(t) => write_time(out, t),
        Value::Json(j) => {
            // Writing into a Vec<u8> cannot fail and serde_json::Value always serializes.
            let _ = serde_json::to_writer(&mut *out, j);
        }
        Value::Geometry { srid, wkb } => {
            out.extend_from_slice(b"{\"srid\":");
            write_u64(out, u64::from(*srid));
            out.extend_from_slice(b",\"wkb\":");
            write_base64_str(out, wkb);
            out.push(b'}');
        }
        Value::Vector(xs) => {
            out.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_f32(out, *x);
            }
            out.push(b']');
        }
    }
}

// ---------------------------------------------------------------------------
// Strings

/// Escape class per byte: 0 = copy, b'u' = `\u00XX`, otherwise the letter
/// after the backslash (`"` and `\`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    // The short forms JSON readers and humans expect for common control characters.
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal, quotes included, escaping per
/// RFC 8259: `"` -> `\"`, `\` -> `\\`, U+0000..U+001F -> `\u00XX`;
/// all other characters (non-ASCII included) are copied as UTF-8.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_clean(bytes) {
        // The common case: one copy, no per-byte work.
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for j in 0..bytes.len() {
            start = escape_byte(out, bytes, start, j);
        }
        out.extend_from_slice(&bytes[start..]);
    }
    out.push(b'"');
}

/// True if no byte of `bytes` needs escaping in a JSON string (none is a
/// control character, `"` or `\\`), so the string can be copied as is.
/// Looks at eight bytes at a time (overlapping reads cover the tail), so
/// short strings cost a few loads.
#[inline(always)]
pub fn is_clean(bytes: &[u8]) -> bool {
    let n = bytes.len();
    let load = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if needs_escape(load(i)) {
                return false;
            }
            i += 8;
        }
        i == n || !needs_escape(load(n - 8))
    } else if n >= 4 {
        let load4 = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        !needs_escape(load4(0) | (load4(n - 4) << 32))
    } else if n > 0 {
        // Bytes 0, n/2 and n-1 cover every position of a 1..=3 byte string;
        // the rest of the word is padded with a harmless 'a'.
        let w = u64::from_le_bytes([
            bytes[0],
            bytes[n / 2],
            bytes[n - 1],
            b'a',
            b'a',
            b'a',
            b'a',
            b'a',
        ]);
        !needs_escape(w)
    } else {
        true
    }
}

/// True if any byte of `w` is < 0x20, `"` or `\` (exact: no false negatives;
/// a false positive only costs a byte-wise look at the word).
#[inline(always)]
fn needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let below_space = w.wrapping_sub(LO * 0x20) & !w & HI;
    (below_space | has_zero(w ^ (LO * u64::from(b'"'))) | has_zero(w ^ (LO * u64::from(b'\\'))))
        != 0
}

/// If `bytes[j]` needs escaping, flushes `bytes[start..j]`, writes the escape
/// and returns `j + 1`; otherwise returns `start` unchanged.
#[inline(always)]
fn escape_byte(out: &mut Vec<u8>, bytes: &[u8], start: usize, j: usize) -> usize {
    let b = bytes[j];
    let esc = ESCAPE[b as usize];
    if esc == 0 {
        return start;
    }
    out.extend_from_slice(&bytes[start..j]);
    if esc == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', esc]);
    }
    j + 1
}

/// Appends `bytes` as a JSON string of standard, padded base64, encoding in
/// place inside `out` (no temporary buffer).
// Cannot fail: bytes held in memory have a base64 length (4/3 of theirs) that
// fits in usize, and the buffer is sized by `encoded_len`.
#[allow(clippy::expect_used)]
fn write_base64_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = base64::encoded_len(bytes.len(), true).expect("base64 length overflows usize");
    out.push(b'"');
    let start = out.len();
    out.resize(start + n, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start..])
        .expect("buffer sized by encoded_len");
    debug_assert_eq!(written, n);
    out.push(b'"');
}

// ---------------------------------------------------------------------------
// Numbers

#[inline]
fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

#[inline]
fn write_i64(out: &mut Vec<u8>, n: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

/// Appends `bytes[..len]` by copying the whole array, then cutting the
/// buffer back: a copy of a size known at compile time is a few inline
/// moves, where a slice of varying length costs a `memcpy` call (12 calls
/// a row, 9% of `tail`'s instructions, before keys went this way).
#[inline(always)]
fn put_fixed<const N: usize>(out: &mut Vec<u8>, bytes: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    let end = out.len() + len;
    out.extend_from_slice(bytes);
    out.truncate(end);
}

// Shortest round-trip text of floats: zmij prints what ryu printed (test
// `floats_print_as_ryu_did`) at about half its cost, except for a `+` in
// positive exponents ("1e+16"), which `push_float` drops. DOUBLE columns
// made ryu 7% of `tail`'s CPU.
#[inline]
fn write_f32(out: &mut Vec<u8>, f: f32) {
    if f.is_finite() {
        push_float(out, zmij::Buffer::new().format_finite(f));
    } else {
        out.extend_from_slice(b"null");
    }
}

#[inline]
fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        push_float(out, zmij::Buffer::new().format_finite(f));
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends zmij's text in ryu's form: "1e+16" becomes "1e16".
#[inline]
fn push_float(out: &mut Vec<u8>, text: &str) {
    let b = text.as_bytes();
    // A `+` only ever follows the `e` of an exponent of at most three
    // digits, so only the last four bytes need a look.
    let tail = b.len().saturating_sub(4);
    match b[tail..].iter().position(|&c| c == b'+') {
        Some(i) => {
            out.extend_from_slice(&b[..tail + i]);
            out.extend_from_slice(&b[tail + i + 1..]);
        }
        None => out.extend_from_slice(b),
    }
}

// ---------------------------------------------------------------------------
// Temporal values

/// "00" to "99", for printing numbers two digits per step.
pub const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Two ASCII digits of `n` (0..=99; the last two digits of a larger `n`).
#[inline]
fn two(n: u32) -> [u8; 2] {
    let i = (n % 100) as usize * 2;
    [DIGIT_PAIRS[i], DIGIT_PAIRS[i + 1]]
}

/// Appends `n` with at least two digits (hours of TIME, or a corrupt field).
#[inline]
fn push_2(out: &mut Vec<u8>, n: u32) {
    if n < 100 {
        out.extend_from_slice(&two(n));
    } else {
        write_u64(out, u64::from(n));
    }
}

/// Appends `n` with at least four digits.
#[inline]
fn push_4(out: &mut Vec<u8>, n: u32) {
    if n < 10_000 {
        let hi = two(n / 100);
        let lo = two(n % 100);
        out.extend_from_slice(&[hi[0], hi[1], lo[0], lo[1]]);
    } else {
        write_u64(out, u64::from(n));
    }
}

/// Appends `.` and the first `fsp` (clamped to 6) digits of `micros`
/// zero-padded to six digits; nothing when `fsp == 0`.
#[inline]
fn push_fraction(out: &mut Vec<u8>, micros: u32, fsp: u8) {
    let fsp = usize::from(fsp.min(6));
    if fsp == 0 {
        return;
    }
    put_fixed(out, &fraction(micros), fsp + 1);
}

/// `.` and the six digits of `micros`; a precision of `fsp` keeps the
/// first `fsp` of them.
#[inline]
fn fraction(micros: u32) -> [u8; 7] {
    let m = micros % 1_000_000;
    let (a, b, c) = (two(m / 10_000), two(m / 100), two(m));
    [b'.', a[0], a[1], b[0], b[1], c[0], c[1]]
}

fn write_date(out: &mut Vec<u8>, d: &Date) {
    push_4(out, u32::from(d.year));
    out.push(b'-');
    push_2(out, u32::from(d.month));
    out.push(b'-');
    push_2(out, u32::from(d.day));
}

/// `"YYYY-MM-DDTHH:MM:SS[.f]` then `close` (`"`, or `Z"` for a TIMESTAMP).
fn write_datetime(out: &mut Vec<u8>, dt: &DateTime, close: &[u8]) {
    let (year, month, day) = (
        u32::from(dt.date.year),
        u32::from(dt.date.month),
        u32::from(dt.date.day),
    );
    let (h, mi, s) = (
        u32::from(dt.hour),
        u32::from(dt.minute),
        u32::from(dt.second),
    );
    if year < 10_000
        && month < 100
        && day < 100
        && h < 100
        && mi < 100
        && s < 100
        && close.len() <= 2
    {
        // Fast path: the whole value in one fixed-size copy (a DATETIME(6)
        // with its quotes is 28 bytes).
        let (y1, y2) = (two(year / 100), two(year % 100));
        let (mo, da, hh, mm, ss) = (two(month), two(day), two(h), two(mi), two(s));
        let f = fraction(dt.micros);
        let mut buf: [u8; 32] = [
            b'"', y1[0], y1[1], y2[0], y2[1], b'-', mo[0], mo[1], b'-', da[0], da[1], b'T', hh[0],
            hh[1], b':', mm[0], mm[1], b':', ss[0], ss[1], f[0], f[1], f[2], f[3], f[4], f[5],
            f[6], 0, 0, 0, 0, 0,
        ];
        let fsp = usize::from(dt.fsp.min(6));
        let mut len = if fsp == 0 { 20 } else { 21 + fsp };
        for &c in close {
            buf[len] = c;
            len += 1;
        }
        put_fixed(out, &buf, len);
        return;
    }
    out.push(b'"');
    push_4(out, year);
    out.push(b'-');
    push_2(out, month);
    out.push(b'-');
    push_2(out, day);
    out.push(b'T');
    push_2(out, h);
    out.push(b':');
    push_2(out, mi);
    out.push(b':');
    push_2(out, s);
    push_fraction(out, dt.micros, dt.fsp);
    out.extend_from_slice(close);
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month,
/// day). Howard Hinnant's `civil_from_days`; exact for any `i64` day count
/// whose year fits in `i64` (rowstream needs 1970..=2106).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn write_timestamp(out: &mut Vec<u8>, secs: i64, micros: u32, fsp: u8) {
    let zero = Date {
        year: 0,
        month: 0,
        day: 0,
    };
    // The zero TIMESTAMP prints as zeros, not as 1970-01-01.
    let (date, sod) = if secs == 0 && micros == 0 {
        (zero, 0)
    } else {
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            // Outside any TIMESTAMP range; print something valid rather than panic.
            out.push(b'"');
            write_i64(out, y);
            out.push(b'-');
            out.extend_from_slice(&two(m));
            out.push(b'-');
            out.extend_from_slice(&two(d));
            out.push(b'T');
            out.extend_from_slice(&two(sod / 3600));
            out.push(b':');
            out.extend_from_slice(&two(sod / 60 % 60));
            out.push(b':');
            out.extend_from_slice(&two(sod % 60));
            push_fraction(out, micros, fsp);
            out.extend_from_slice(b"Z\"");
            return;
        }
        let date = Date {
            year: y as u16,
            month: m as u8,
            day: d as u8,
        };
        (date, sod)
    };
    let dt = DateTime {
        date,
        hour: (sod / 3600) as u8,
        minute: (sod / 60 % 60) as u8,
        second: (sod % 60) as u8,
        micros,
        fsp,
    };
    write_datetime(out, &dt, b"Z\"");
}

fn write_time(out: &mut Vec<u8>, t: &Time) {
    out.push(b'"');
    if t.negative {
        out.push(b'-');
    }
    push_2(out, u32::from(t.hours));
    out.push(b':');
    push_2(out, u32::from(t.minute));
    out.push(b':');
    push_2(out, u32::from(t.second));
    push_fraction(out, t.micros, t.fsp);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Flavor, Op, Row, Shared, Snapshot};
    use std::sync::Arc;

    /// zmij replaced ryu: the same text for random bit patterns of every
    /// exponent, integers, halves and thirds, and the edges.
    #[test]
    fn floats_print_as_ryu_did() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut doubles: Vec<f64> = (0..400_000).map(|_| f64::from_bits(next())).collect();
        doubles.extend((0..20_000).flat_map(|i| {
            [
                f64::from(i),
                f64::from(i) / 3.0,
                f64::from(i) * 1.25,
                -f64::from(i) / 7.0,
            ]
        }));
        doubles.extend([
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            1e-7,
            1e16,
            1e21,
            1e22,
            5e-324,
            0.1,
            0.3,
        ]);
        for f in doubles.into_iter().filter(|f| f.is_finite()) {
            let mut out = Vec::new();
            write_f64(&mut out, f);
            assert_eq!(out, ryu::Buffer::new().format_finite(f).as_bytes(), "{f:e}");
        }
        let mut floats: Vec<f32> = (0..400_000)
            .map(|_| f32::from_bits(next() as u32))
            .collect();
        floats.extend((0..20_000u16).map(|i| f32::from(i) / 3.0));
        floats.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            1e-7,
            1e16,
            0.1,
            3.4e38,
        ]);
        for f in floats.into_iter().filter(|f| f.is_finite()) {
            let mut out = Vec::new();
            write_f32(&mut out, f);
            assert_eq!(out, ryu::Buffer::new().format_finite(f).as_bytes(), "{f:e}");
        }
    }

    fn val(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, v);
        String::from_utf8(out).expect("utf8")
    }

    #[allow(clippy::too_many_arguments)]
    fn dt(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, micros: u32, fsp: u8) -> Value {
        Value::DateTime(DateTime {
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
        })
    }

    fn time(negative: bool, hours: u16, minute: u8, second: u8, micros: u32, fsp: u8) -> Value {
        Value::Time(Time {
            negative,
            hours,
            minute,
            second,
            micros,
            fsp,
        })
    }

    fn ts(secs: i64, micros: u32, fsp: u8) -> Value {
        Value::Timestamp { secs, micros, fsp }
    }

    #[test]
    fn scalars() {
        assert_eq!(val(&Value::Null), "null");
        assert_eq!(val(&Value::Bool(true)), "true");
        assert_eq!(val(&Value::Bool(false)), "false");
        assert_eq!(val(&Value::Int(0)), "0");
        assert_eq!(val(&Value::Int(-42)), "-42");
        assert_eq!(val(&Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(val(&Value::Int(i64::MAX)), "9223372036854775807");
        assert_eq!(val(&Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(val(&Value::Decimal("-12.50".into())), "\"-12.50\"");
        assert_eq!(val(&Value::Decimal("0.000".into())), "\"0.000\"");
    }

    /// Every power of ten and its neighbours, and random values of every
    /// width, print as Rust's `to_string` does.
    #[test]
    fn integers_print_as_to_string() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut cases = vec![0u64, u64::MAX, u64::MAX - 1];
        for d in 0..20 {
            let p = 10u64.pow(d);
            cases.extend([p - 1, p, p + 1]);
        }
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            cases.push(seed >> (seed % 64));
        }
        let mut out = Vec::new();
        for n in cases {
            out.clear();
            write_u64(&mut out, n);
            assert_eq!(std::str::from_utf8(&out).unwrap(), n.to_string());
            for i in [n as i64, (n as i64).wrapping_neg()] {
                out.clear();
                write_i64(&mut out, i);
                assert_eq!(std::str::from_utf8(&out).unwrap(), i.to_string());
            }
        }
    }

    #[test]
    fn big_integers_round_trip_exactly() {
        let v: serde_json::Value = serde_json::from_str(&val(&Value::UInt(u64::MAX))).unwrap();
        assert_eq!(v.as_u64(), Some(u64::MAX));
        let v: serde_json::Value = serde_json::from_str(&val(&Value::Int(i64::MIN))).unwrap();
        assert_eq!(v.as_i64(), Some(i64::MIN));
    }

    #[test]
    fn floats() {
        assert_eq!(val(&Value::Float(1.1)), "1.1");
        assert_eq!(val(&Value::Float(0.1)), "0.1");
        assert_eq!(val(&Value::Float(-3.4028235e38)), "-3.4028235e38");
        assert_eq!(val(&Value::Float(2.0)), "2.0");
        assert_eq!(val(&Value::Double(1.1)), "1.1");
        assert_eq!(
            val(&Value::Double(0.30000000000000004)),
            "0.30000000000000004"
        );
        assert_eq!(val(&Value::Double(1e-7)), "1e-7");
        assert_eq!(val(&Value::Double(-0.0)), "-0.0");
        assert_eq!(val(&Value::Float(f32::NAN)), "null");
        assert_eq!(val(&Value::Float(f32::INFINITY)), "null");
        assert_eq!(val(&Value::Double(f64::NEG_INFINITY)), "null");
        assert_eq!(val(&Value::Double(f64::NAN)), "null");
        // Every finite output is a JSON number that reads back to the same value
        // (std parsing: serde_json's default float parser is not always exact).
        for x in [1.1f32, 1e-45, 3.4028235e38, 123456.79, -0.5, 3e-5] {
            let s = val(&Value::Float(x));
            assert!(serde_json::from_str::<serde_json::Value>(&s)
                .unwrap()
                .is_f64());
            assert_eq!(s.parse::<f32>().unwrap(), x);
        }
        for x in [1.1f64, 5e-324, f64::MAX, -123456789.12345679] {
            let s = val(&Value::Double(x));
            assert!(serde_json::from_str::<serde_json::Value>(&s)
                .unwrap()
                .is_f64());
            assert_eq!(s.parse::<f64>().unwrap(), x);
        }
    }

    #[test]
    fn strings_escaping() {
        assert_eq!(val(&Value::String("".into())), r#""""#);
        assert_eq!(val(&Value::String("plain".into())), r#""plain""#);
        assert_eq!(val(&Value::String("\u{1}".into())), r#""\u0001""#);
        assert_eq!(val(&Value::String("a\"b\\c".into())), r#""a\"b\\c""#);
        assert_eq!(
            val(&Value::String("\n\r\t\u{8}\u{c}\u{0}\u{1f}".into())),
            r#""\n\r\t\b\f\u0000\u001f""#
        );
        // DEL and non-ASCII are not escaped.
        assert_eq!(val(&Value::String("\u{7f}".into())), "\"\u{7f}\"");
        assert_eq!(val(&Value::String("é€😀".into())), "\"é€😀\"");
        assert_eq!(val(&Value::String("😀".into())).len(), 6); // 4-byte UTF-8 kept as is
                                                               // `/` is not escaped.
        assert_eq!(val(&Value::String("a/b".into())), r#""a/b""#);
        // Round trip of every control char and mixed content.
        let mut s = String::new();
        for c in 0u32..0x80 {
            s.push(char::from_u32(c).unwrap());
        }
        s.push_str("ü中😀\"\\");
        let back: String = serde_json::from_str(&val(&Value::String(s.clone().into()))).unwrap();
        assert_eq!(back, s);
        // Clean strings of every length: `is_clean` reads them as 4- and
        // 8-byte words that overlap at the end.
        let text = "0123456789abcdefghijklmnopqrstuvwxyzé";
        for n in 0..=text.len() {
            if let Some(t) = text.get(..n) {
                assert_eq!(val(&Value::String(t.into())), format!("\"{t}\""));
            }
        }
    }

    #[test]
    fn word_scan_is_exact() {
        let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for fill in [b'a', 0x80, 0xff, 0x21, b'~', 0x7f] {
            for pos in 0..8 {
                for b in 0..=255u8 {
                    let mut w = [fill; 8];
                    w[pos] = b;
                    assert_eq!(
                        needs_escape(u64::from_le_bytes(w)),
                        special(b),
                        "fill {fill:#x} pos {pos} byte {b:#x}"
                    );
                }
            }
        }
        // Escapes at every position of strings of every length around the word size.
        for len in 0..40 {
            for pos in 0..len {
                for c in ['"', '\\', '\u{0}', '\u{1f}', 'é', '😀'] {
                    let mut s: String = "x".repeat(len);
                    s.replace_range(pos..pos + 1, &c.to_string());
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
                }
            }
        }
    }

    #[test]
    fn bytes_base64() {
        assert_eq!(val(&Value::Bytes(vec![])), r#""""#);
        assert_eq!(val(&Value::Bytes(b"f".to_vec())), r#""Zg==""#);
        assert_eq!(val(&Value::Bytes(b"fo".to_vec())), r#""Zm8=""#);
        assert_eq!(val(&Value::Bytes(b"foo".to_vec())), r#""Zm9v""#);
        assert_eq!(val(&Value::Bytes(vec![0xff, 0xfe, 0x00])), r#""//4A""#);
        assert_eq!(val(&Value::Bytes(vec![0xfb, 0xff])), r#""+/8=""#);
    }

    #[test]
    fn dates() {
        assert_eq!(
            val(&Value::Date(Date {
                year: 2024,
                month: 2,
                day: 29
            })),
            r#""2024-02-29""#
        );
        assert_eq!(
            val(&Value::Date(Date {
                year: 0,
                month: 0,
                day: 0
            })),
            r#""0000-00-00""#
        );
        assert_eq!(
            val(&Value::Date(Date {
                year: 2024,
                month: 0,
                day: 0
            })),
            r#""2024-00-00""#
        );
        assert_eq!(
            val(&Value::Date(Date {
                year: 1,
                month: 1,
                day: 1
            })),
            r#""0001-01-01""#
        );
        assert_eq!(
            val(&Value::Date(Date {
                year: 9999,
                month: 12,
                day: 31
            })),
            r#""9999-12-31""#
        );
    }

    #[test]
    fn datetimes() {
        assert_eq!(
            val(&dt(9999, 12, 31, 23, 59, 59, 999_999, 6)),
            r#""9999-12-31T23:59:59.999999""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 123_000, 3)),
            r#""2024-01-02T03:04:05.123""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 0, 0)),
            r#""2024-01-02T03:04:05""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 50_000, 2)),
            r#""2024-01-02T03:04:05.05""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 0, 6)),
            r#""2024-01-02T03:04:05.000000""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 7, 6)),
            r#""2024-01-02T03:04:05.000007""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 100_000, 1)),
            r#""2024-01-02T03:04:05.1""#
        );
        assert_eq!(val(&dt(0, 0, 0, 0, 0, 0, 0, 0)), r#""0000-00-00T00:00:00""#);
        assert_eq!(
            val(&dt(0, 0, 0, 0, 0, 0, 0, 4)),
            r#""0000-00-00T00:00:00.0000""#
        );
        assert_eq!(
            val(&dt(1000, 1, 1, 0, 0, 0, 0, 0)),
            r#""1000-01-01T00:00:00""#
        );
        // A precision above 6 prints 6 digits; a field too wide for its
        // place (only a corrupt value has one) takes the slow path.
        assert_eq!(
            val(&dt(2024, 1, 2, 3, 4, 5, 7, 9)),
            r#""2024-01-02T03:04:05.000007""#
        );
        assert_eq!(
            val(&dt(2024, 1, 2, 123, 4, 5, 120_000, 2)),
            r#""2024-01-02T123:04:05.12""#
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(val(&ts(0, 0, 0)), r#""0000-00-00T00:00:00Z""#);
        assert_eq!(val(&ts(0, 0, 3)), r#""0000-00-00T00:00:00.000Z""#);
        assert_eq!(val(&ts(0, 1, 6)), r#""1970-01-01T00:00:00.000001Z""#);
        assert_eq!(val(&ts(1, 0, 0)), r#""1970-01-01T00:00:01Z""#);
        assert_eq!(val(&ts(951_782_400, 0, 0)), r#""2000-02-29T00:00:00Z""#);
        assert_eq!(
            val(&ts(1_700_000_000, 123_456, 3)),
            r#""2023-11-14T22:13:20.123Z""#
        );
        // MySQL TIMESTAMP max and past 2038.
        assert_eq!(
            val(&ts(2_147_483_647, 999_999, 6)),
            r#""2038-01-19T03:14:07.999999Z""#
        );
        assert_eq!(val(&ts(2_147_483_648, 0, 0)), r#""2038-01-19T03:14:08Z""#);
        assert_eq!(val(&ts(4_102_444_800, 0, 0)), r#""2100-01-01T00:00:00Z""#);
        // MariaDB 11.5+ unsigned 32-bit range end.
        assert_eq!(val(&ts(4_294_967_295, 0, 0)), r#""2106-02-07T06:28:15Z""#);
        assert_eq!(val(&ts(-1, 0, 0)), r#""1969-12-31T23:59:59Z""#);
    }

    /// Our civil conversion agrees with a naive day-by-day walk for every day
    /// from 1970 to past 2106.
    #[test]
    fn civil_from_days_exhaustive() {
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in 0..=((4_294_967_295i64 / 86_400) + 400) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let mdays = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ if leap(y) => 29,
                _ => 28,
            };
            d += 1;
            if d > mdays {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            val(&time(true, 838, 59, 59, 0, 6)),
            r#""-838:59:59.000000""#
        );
        assert_eq!(val(&time(false, 838, 59, 59, 0, 0)), r#""838:59:59""#);
        assert_eq!(val(&time(false, 0, 0, 0, 0, 0)), r#""00:00:00""#);
        assert_eq!(val(&time(false, 1, 2, 3, 400_000, 1)), r#""01:02:03.4""#);
        assert_eq!(val(&time(true, 0, 0, 1, 500_000, 2)), r#""-00:00:01.50""#);
        assert_eq!(val(&time(false, 99, 0, 0, 0, 0)), r#""99:00:00""#);
        assert_eq!(val(&time(false, 100, 0, 0, 0, 0)), r#""100:00:00""#);
    }

    #[test]
    fn json_geometry_vector() {
        let j = serde_json::json!({"a":[1,2.5,"x\n"],"b":null,"c":{"d":true}});
        let s = val(&Value::Json(j.clone()));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), j);
        assert_eq!(val(&Value::Json(serde_json::json!("s"))), r#""s""#);
        assert_eq!(val(&Value::Json(serde_json::Value::Null)), "null");

        let wkb = vec![
            1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40,
        ];
        assert_eq!(
            val(&Value::Geometry { srid: 4326, wkb }),
            r#"{"srid":4326,"wkb":"AQEAAAAAAAAAAADwPwAAAAAAAABA"}"#
        );
        assert_eq!(val(&Value::Vector(vec![])), "[]");
        assert_eq!(
            val(&Value::Vector(vec![1.1, -2.0, f32::NAN, 3e-5, 1e-7])),
            "[1.1,-2.0,null,0.00003,1e-7]"
        );
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = b"prefix ".to_vec();
        write_value(&mut out, &Value::Int(1));
        write_value(&mut out, &Value::Bytes(b"foo".to_vec()));
        assert_eq!(out, b"prefix 1\"Zm9v\"");
    }

    /// Keys of every length around a slot's size, escaped ones and a long
    /// one: the row reads back as the names and values it was given.
    #[test]
    fn row_keys_of_every_length() {
        let mut names: Vec<String> = (1..=SLOT + 3).map(|n| "k".repeat(n)).collect();
        names.push("q\"\\é\u{1}".into());
        names.push("x".repeat(300));
        let columns: Columns = names.iter().map(|n| Arc::from(n.as_str())).collect();
        let values: Vec<Value> = (0..names.len() as i64).map(Value::Int).collect();
        for skip in [0, 1] {
            let row = Row {
                columns: columns.clone(),
                values: values[..values.len() - skip].to_vec(),
            };
            let mut out = b"[".to_vec();
            write_row(&mut out, row.as_row_ref());
            out.push(b',');
            write_row(&mut out, row.as_row_ref());
            out.push(b']');
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            for img in v.as_array().unwrap() {
                let m = img.as_object().unwrap();
                assert_eq!(m.len(), row.values.len());
                for (i, n) in names.iter().take(row.values.len()).enumerate() {
                    assert_eq!(m[n.as_str()], i as i64, "{n:?}");
                }
            }
        }
    }

    pub(crate) fn sample_source() -> Source {
        Source {
            version: "0.1.0",
            connector: Flavor::MySql,
            name: Arc::from("prod"),
            ts_ms: 1_700_000_000_000,
            snapshot: Snapshot::False,
            db: Arc::from("shop"),
            table: Arc::from("orders"),
            server_id: 1,
            gtid: Arc::from("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"),
            file: Arc::from("binlog.000003"),
            pos: 4_567,
            sequence: 0,
        }
    }

    fn sample_event() -> ChangeEvent {
        let columns: Columns = vec![
            Arc::from("id"),
            Arc::from("name"),
            Arc::from("price"),
            Arc::from("note"),
        ]
        .into();
        ChangeEvent {
            op: Op::Update,
            before: Some(vec![
                Value::Int(7),
                Value::String("a\"b".into()),
                Value::Decimal("9.99".into()),
                Value::Null,
            ]),
            after: Some(vec![
                Value::Int(7),
                Value::String("é😀".into()),
                Value::Decimal("10.00".into()),
                Value::Null,
            ]),
            ts_ms: 1_700_000_000_123,
            shared: Arc::new(Shared {
                source: sample_source(),
                primary_key: Arc::from([0usize].as_slice()),
                table: None,
                before_columns: columns.clone(),
                after_columns: columns,
            }),
            row: 0,
            transaction: Some(Transaction {
                total_order: 2,
                data_collection_order: 1,
            }),
            overlap: false,
        }
    }

    const SAMPLE_SOURCE_JSON: &str = concat!(
        r#"{"version":"0.1.0","connector":"mysql","name":"prod","ts_ms":1700000000000,"snapshot":"false","#,
        r#""db":"shop","table":"orders","server_id":1,"gtid":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","#,
        r#""file":"binlog.000003","pos":4567,"row":0}"#
    );

    /// The cached envelope head and transaction block: a run of events that
    /// share everything, then events that differ in one field each (strings
    /// equal by content but not by pointer included), encoded on one thread
    /// one after another, equal what a fresh thread (empty cache) writes.
    #[test]
    fn cached_envelope_parts_equal_fresh_encoding() {
        let base = sample_event();
        let mut evs = vec![base.clone(), base.clone()];
        let mut push = |f: &dyn Fn(&mut ChangeEvent)| {
            let mut e = base.clone();
            f(&mut e);
            evs.push(e.clone());
            evs.push(e);
            evs.push(base.clone());
        };
        push(&|e| e.op = Op::Create);
        push(&|e| e.ts_ms += 1);
        push(&|e| e.row = 5);
        push(&|e| e.shared_mut().source.pos += 1);
        push(&|e| e.shared_mut().source.ts_ms += 1);
        push(&|e| e.shared_mut().source.server_id = 2);
        push(&|e| e.shared_mut().source.snapshot = Snapshot::Last);
        push(&|e| e.shared_mut().source.connector = Flavor::MariaDb);
        push(&|e| e.shared_mut().source.name = Arc::from("other"));
        push(&|e| e.shared_mut().source.name = Arc::from(&*e.source().name));
        push(&|e| e.shared_mut().source.db = Arc::from("db2"));
        push(&|e| e.shared_mut().source.table = Arc::from("t2"));
        push(&|e| e.shared_mut().source.gtid = Arc::from("0-1-2"));
        push(&|e| e.shared_mut().source.file = Arc::from("binlog.000004"));
        push(&|e| e.transaction = None);
        push(&|e| e.overlap = true);
        push(&|e| e.shared_mut().source.gtid = Arc::from(&*e.source().gtid));
        push(&|e| {
            if let Some(t) = e.transaction.as_mut() {
                t.total_order = 9;
                t.data_collection_order = 3;
            }
        });
        let mut cached = Vec::new();
        for e in &evs {
            let mut one = Vec::new();
            write_change_event(&mut one, e);
            cached.push(one);
        }
        let fresh: Vec<Vec<u8>> = std::thread::spawn(move || {
            evs.iter()
                .map(|e| {
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            let mut one = Vec::new();
                            write_change_event(&mut one, e);
                            one
                        })
                        .join()
                        .unwrap()
                    })
                })
                .collect()
        })
        .join()
        .unwrap();
        assert_eq!(cached.len(), fresh.len());
        for (c, f) in cached.iter().zip(&fresh) {
            assert_eq!(String::from_utf8_lossy(c), String::from_utf8_lossy(f));
        }
    }

    #[test]
    fn envelope_byte_for_byte() {
        let mut out = Vec::new();
        write_change_event(&mut out, &sample_event());
        let expected = format!(
            concat!(
                r#"{{"before":{{"id":7,"name":"a\"b","price":"9.99","note":null}},"#,
                r#""after":{{"id":7,"name":"é😀","price":"10.00","note":null}},"#,
                r#""op":"u","ts_ms":1700000000123,"source":{},"#,
                r#""transaction":{{"id":"3e11fa47-71ca-11e1-9e33-c80aa9429562:23","total_order":2,"data_collection_order":1}}}}"#
            ),
            SAMPLE_SOURCE_JSON
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn envelope_nulls_and_flavors() {
        let mut ev = sample_event();
        ev.op = Op::Create;
        ev.before = None;
        ev.transaction = None;
        ev.shared_mut().source.connector = Flavor::MariaDb;
        ev.shared_mut().source.snapshot = Snapshot::Last;
        ev.shared_mut().source.gtid = Arc::from("0-1-42");
        let mut out = Vec::new();
        write_record(&mut out, &Record::Change(ev));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["before"].is_null());
        assert_eq!(v["after"]["id"], 7);
        assert_eq!(v["op"], "c");
        assert!(v["transaction"].is_null());
        assert_eq!(v["source"]["connector"], "mariadb");
        assert_eq!(v["source"]["snapshot"], "last");
        assert_eq!(v["source"]["gtid"], "0-1-42");
        assert!(out.starts_with(b"{\"before\":null,\"after\":{"));
        assert!(out.ends_with(b",\"transaction\":null}"));
    }

    #[test]
    fn schema_change_byte_for_byte() {
        let mut src = sample_source();
        src.table = Arc::from("");
        let sc = SchemaChange {
            source: src,
            ts_ms: 1_700_000_000_999,
            database: Arc::from("shop"),
            ddl: "ALTER TABLE `orders` ADD COLUMN note TEXT COMMENT 'say \"hi\"'".into(),
        };
        let mut out = Vec::new();
        write_record(&mut out, &Record::SchemaChange(Box::new(sc)));
        let expected = format!(
            r#"{{"source":{},"ts_ms":1700000000999,"databaseName":"shop","ddl":"ALTER TABLE `orders` ADD COLUMN note TEXT COMMENT 'say \"hi\"'"}}"#,
            SAMPLE_SOURCE_JSON.replace(r#""table":"orders""#, r#""table":"""#)
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    /// Every value kind inside a full envelope parses back through serde_json
    /// to the expected JSON values.
    #[test]
    fn round_trip_all_kinds() {
        let cols = [
            "null",
            "bool",
            "int",
            "uint",
            "float",
            "double",
            "decimal",
            "string",
            "bytes",
            "date",
            "datetime",
            "timestamp",
            "time",
            "json",
            "geometry",
            "vector",
        ];
        let values = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(1.1),
            Value::Double(-2.5e300),
            Value::Decimal("-12345678901234567890.12".into()),
            Value::String("tab\there \u{1} \"q\" \\ 😀".into()),
            Value::Bytes(vec![0, 1, 2, 255]),
            Value::Date(Date {
                year: 2024,
                month: 2,
                day: 29,
            }),
            dt(9999, 12, 31, 23, 59, 59, 999_999, 6),
            ts(2_147_483_648, 5_000, 3),
            time(true, 838, 59, 59, 0, 6),
            Value::Json(serde_json::json!({"k":[1,"two",{"three":3}]})),
            Value::Geometry {
                srid: 0,
                wkb: vec![1, 2, 3],
            },
            Value::Vector(vec![1.1, 2.0]),
        ];
        let mut ev = sample_event();
        ev.op = Op::Create;
        let columns = cols.iter().map(|c| Arc::from(*c)).collect::<Vec<_>>();
        ev.set_rows(
            None,
            Some(Row {
                columns: columns.into(),
                values,
            }),
        );
        let mut out = Vec::new();
        write_change_event(&mut out, &ev);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let expected = serde_json::json!({
            "null": null,
            "bool": true,
            "int": i64::MIN,
            "uint": u64::MAX,
            "float": 1.1,
            "double": -2.5e300,
            "decimal": "-12345678901234567890.12",
            "string": "tab\there \u{1} \"q\" \\ 😀",
            "bytes": "AAEC/w==",
            "date": "2024-02-29",
            "datetime": "9999-12-31T23:59:59.999999",
            "timestamp": "2038-01-19T03:14:08.005Z",
            "time": "-838:59:59.000000",
            "json": {"k":[1,"two",{"three":3}]},
            "geometry": {"srid":0,"wkb":"AQID"},
            "vector": [1.1, 2.0],
        });
        assert_eq!(v["after"], expected);
        // Column order is preserved.
        let text = String::from_utf8(out).unwrap();
        let mut last = 0;
        for c in cols {
            let at = text.find(&format!("\"{c}\":")).unwrap();
            assert!(at > last, "column {c} out of order");
            last = at;
        }
    }

    /// A buffer reused across events needs no reallocation once warm.
    #[test]
    fn no_growth_when_reused() {
        let ev = sample_event();
        let mut out = Vec::with_capacity(4096);
        write_change_event(&mut out, &ev);
        let cap = out.capacity();
        for _ in 0..100 {
            out.clear();
            write_change_event(&mut out, &ev);
        }
        assert_eq!(out.capacity(), cap);
    }
}
