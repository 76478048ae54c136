//! Column type metadata of one table version, shared by every change event
//! of that version (one `Arc` built per TABLE_MAP, held by each rows event's `Shared`).
//!
//! Sinks that need the SQL types (Avro schemas: nullability, DECIMAL
//! precision and scale, UNSIGNED, temporal precision, ENUM/SET labels) read
//! them here; the JSON envelope does not use them.
//!
//! Invariant: `columns`, `types` and `nullable` have the same length, in the
//! table's column order (the order of `Row::values`); `primary_key` holds
//! indices into that order.

use std::sync::Arc;

/// Column names of one table version, shared by every row of that table.
pub type Columns = Arc<[Arc<str>]>;

/// The SQL type of a column, reduced to what an encoder needs to choose a
/// schema type. Which [`crate::Value`] variant each produces:
///
/// | ColumnType | Value |
/// |---|---|
/// | Bool (BIT(1)) | Bool |
/// | Int | Int, or UInt when `unsigned` |
/// | Year | Int |
/// | Bit (BIT(n>1)) | UInt |
/// | Float / Double | Float / Double |
/// | Decimal | Decimal |
/// | String, Enum, Set | String |
/// | Bytes | Bytes |
/// | Json | Json (MySQL), String (MariaDB, JSON is LONGTEXT) |
/// | Date, DateTime, Timestamp, Time | Date, DateTime, Timestamp, Time |
/// | Geometry | Geometry |
/// | Vector | Vector |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Bool,
    /// TINYINT (8), SMALLINT (16), MEDIUMINT (24), INT (32), BIGINT (64).
    Int {
        bits: u8,
        unsigned: bool,
    },
    Year,
    /// BIT(n), n > 1.
    Bit {
        bits: u16,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// Character data (CHAR, VARCHAR, TEXT) in a non-binary charset.
    String,
    /// BINARY, VARBINARY, BLOB and binary-charset strings.
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
    Enum {
        labels: Arc<[Arc<str>]>,
    },
    Set {
        labels: Arc<[Arc<str>]>,
    },
}

/// One table version: names, types, nullability and primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableMeta {
    /// Column names (the same `Arc` as the rows' `columns`).
    pub columns: Columns,
    pub types: Vec<ColumnType>,
    pub nullable: Vec<bool>,
    /// Primary key column indices in key order (empty: no primary key).
    pub primary_key: Arc<[usize]>,
}
