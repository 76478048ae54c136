//! Typed column values, as decoded from the binlog and before any encoding.
//!
//! Invariants: a `Value` carries everything needed to print it exactly as the
//! server would (DECIMAL keeps its digits and scale, temporal values keep their
//! fractional-second precision, zero dates stay zero). Sinks choose the
//! encoding; this module holds no encoding logic.

pub use crate::text::Text;

/// One column value of a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// BIT(1).
    Bool(bool),
    /// Signed integers (TINYINT..BIGINT) and YEAR.
    Int(i64),
    /// UNSIGNED integers and BIT(n > 1).
    UInt(u64),
    /// FLOAT: kept as f32 so it prints in its shortest f32 form.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL / NUMERIC as exact text with the column's scale ("-12.50").
    Decimal(Text),
    /// Character data decoded with the column's charset: CHAR, VARCHAR, TEXT,
    /// ENUM label, SET labels joined by ",", and MariaDB JSON (stored as text).
    String(Text),
    /// Binary data: BINARY, VARBINARY, BLOB, binary-charset strings.
    Bytes(Vec<u8>),
    /// DATE, possibly zero or partial ("0000-00-00", "2024-00-00").
    Date(Date),
    /// DATETIME(fsp), wall-clock time without zone.
    DateTime(DateTime),
    /// TIMESTAMP(fsp): seconds since the Unix epoch plus microseconds, UTC.
    /// `secs == 0 && micros == 0` is the zero timestamp "0000-00-00 00:00:00".
    Timestamp { secs: i64, micros: u32, fsp: u8 },
    /// TIME(fsp), may be negative, hours up to 838.
    Time(Time),
    /// MySQL binary JSON, decoded to the JSON value itself.
    Json(serde_json::Value),
    /// GEOMETRY family: SRID and the WKB bytes.
    Geometry { srid: u32, wkb: Vec<u8> },
    /// MySQL 9 VECTOR: float32 elements.
    Vector(Vec<f32>),
}

/// A calendar date exactly as stored; fields may be zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A DATETIME value exactly as stored, with its column's fractional precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Microseconds (0..=999_999).
    pub micros: u32,
    /// Fractional seconds precision of the column (0..=6): how many digits to print.
    pub fsp: u8,
}

/// A TIME value: sign, hours (0..=838), minutes, seconds, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub negative: bool,
    pub hours: u16,
    pub minute: u8,
    pub second: u8,
    pub micros: u32,
    pub fsp: u8,
}
