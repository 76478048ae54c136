//! Table schemas: the decode plan of a table version, planned from a parsed
//! TABLE_MAP (`table_map`, with `binlog_row_metadata=FULL`).
//!
//! [`TableSchema::from_table_map`] parses a TABLE_MAP event body and plans
//! everything the row decoder needs: column names, real types (CHAR/ENUM/SET
//! unwrapped from `MYSQL_TYPE_STRING`), signedness, charsets, ENUM/SET
//! labels, nullability, primary key and a per-column [`Decode`] plan, so
//! decoding a row does no per-cell lookups or allocation beyond the value's
//! own payload.
//!
//! Invariants:
//! - a `TableSchema` is only built when every column has a name (the operator
//!   must set `binlog_row_metadata=FULL`) and every column type is one the
//!   decoder handles; otherwise an error names the table, column and type;
//! - every text column carries a [`Charset`] the decoder can decode exactly;
//!   a collation whose charset we cannot decode is kept as `Charset::Other`
//!   and any non-empty value of it is a decode error naming the collation id
//!   (never lossy UTF-8).

use std::sync::Arc;

use mysql_common::constants::ColumnType;
use rowstream_api::{Columns, Flavor, TableMeta};

use super::error::DecodeError;
use super::packed::DIG2BYTES;
use super::table_map::{is_character, TableMap};
use super::text::Charset;

/// Per-column decode plan, computed once per TABLE_MAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Tiny,
    Short,
    Int24,
    Long,
    LongLong,
    /// YEAR: 1 byte, 0 stays 0, else 1900 + n.
    Year,
    /// BIT(n): `bytes` big-endian bytes; BIT(1) decodes to Bool.
    Bit {
        bytes: u8,
        single: bool,
    },
    Float,
    Double,
    /// NEWDECIMAL(precision, scale): binary size precomputed.
    Decimal {
        precision: u8,
        scale: u8,
        size: u8,
    },
    /// VARCHAR/VAR_STRING/CHAR: length prefix of 1 or 2 bytes.
    /// `pad_to` > 0 for BINARY(n): the value is right-padded with 0x00 to n bytes.
    VarLen {
        prefix: u8,
        pad_to: u16,
    },
    /// BLOB/TEXT family: length prefix of `pack` (1..=4) bytes.
    Blob {
        pack: u8,
    },
    Enum {
        pack: u8,
    },
    Set {
        bytes: u8,
    },
    /// DATE / NEWDATE: 3 bytes.
    Date,
    /// Old DATETIME: 8 bytes LE YYYYMMDDhhmmss.
    DateTimeOld,
    /// Old TIMESTAMP: 4 bytes LE seconds.
    TimestampOld,
    /// Old TIME: 3 bytes LE signed HHMMSS.
    TimeOld,
    DateTime2 {
        fsp: u8,
    },
    Timestamp2 {
        fsp: u8,
    },
    Time2 {
        fsp: u8,
    },
    /// MySQL binary JSON with a `pack`-byte length.
    Json {
        pack: u8,
    },
    Geometry {
        pack: u8,
    },
    Vector {
        pack: u8,
    },
}

/// One column of a table version.
#[derive(Debug, Clone)]
pub struct ColumnSchema {
    pub name: Arc<str>,
    /// Real type (STRING unwrapped to ENUM/SET; DATE reported as-is).
    pub ty: ColumnType,
    /// Raw type byte as found in the TABLE_MAP.
    pub raw_type: u8,
    /// Raw column metadata from the TABLE_MAP (0..=2 bytes, little-endian).
    pub meta: u16,
    /// UNSIGNED (numeric columns only).
    pub unsigned: bool,
    /// Charset of text, ENUM and SET columns; `Binary` for everything else.
    pub charset: Charset,
    /// Collation id the charset came from (0 if none was logged).
    pub collation: u16,
    /// ENUM or SET labels in definition order.
    pub labels: Option<Arc<[Arc<str>]>>,
    pub nullable: bool,
    /// Ordinal among the table's JSON columns (for PARTIAL_UPDATE_ROWS partial bits).
    pub json_ordinal: Option<u16>,
    /// The decode plan.
    pub decode: Decode,
}

/// A table version as described by one TABLE_MAP event.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub table_id: u64,
    pub db: Arc<str>,
    pub table: Arc<str>,
    pub columns: Vec<ColumnSchema>,
    /// Column names in order, shared with every row of this table version.
    pub names: Columns,
    /// Column indices of the primary key, in key order (empty if none logged).
    /// Shared with every change event of this table version.
    pub primary_key: Arc<[usize]>,
    /// Number of JSON columns (length of PARTIAL_UPDATE_ROWS partial bits).
    pub json_column_count: usize,
    pub flavor: Flavor,
    /// Types, nullability and primary key for sinks (built once here, one
    /// `Arc` clone per change event).
    pub meta: Arc<TableMeta>,
}

/// Binary size of a NEWDECIMAL(precision, scale).
pub(crate) fn decimal_size(precision: u8, scale: u8) -> usize {
    let intg = precision.saturating_sub(scale) as usize;
    let scale = scale as usize;
    (intg / 9) * 4 + DIG2BYTES[intg % 9] + (scale / 9) * 4 + DIG2BYTES[scale % 9]
}

fn type_name(t: u8) -> String {
    match ColumnType::try_from(t) {
        Ok(ct) => format!("{ct:?} ({t})"),
        Err(_) => match t {
            140 => "MYSQL_TYPE_BLOB_COMPRESSED (MariaDB compressed column, 140)".into(),
            141 => "MYSQL_TYPE_VARCHAR_COMPRESSED (MariaDB compressed column, 141)".into(),
            _ => format!("unknown type code {t}"),
        },
    }
}

impl TableSchema {
    /// Parses a TABLE_MAP event body (see [`TableMap::parse`]) and plans the
    /// decoding of each column.
    ///
    /// Errors: those of [`TableMap::parse`], plus column types the decoder
    /// does not handle and column metadata out of range for its type.
    pub fn from_table_map(
        body: &[u8],
        post_header_len: u8,
        flavor: Flavor,
    ) -> Result<TableSchema, DecodeError> {
        let map = TableMap::parse(body, post_header_len, flavor)?;
        TableSchema::plan(map, flavor)
    }

    /// Plans the decoding of every column of a parsed TABLE_MAP.
    pub fn plan(mut map: TableMap, flavor: Flavor) -> Result<TableSchema, DecodeError> {
        let ncols = map.types.len();
        let mut columns = Vec::with_capacity(ncols);
        let mut json_count = 0usize;
        for i in 0..ncols {
            let t = map.types[i];
            let rt = map.real[i];
            let meta = map.meta[i];
            let name = map.names[i].clone();
            let unsupported = || DecodeError::UnsupportedType {
                db: map.db.to_string(),
                table: map.table.to_string(),
                column: name.to_string(),
                type_name: type_name(rt),
            };
            let mut charset = Charset::Binary;
            let textual = is_character(rt) || matches!(rt, 247 | 248);
            if textual {
                charset = Charset::from_collation(map.collation[i], flavor);
                if map.collation[i] == 0 {
                    // No charset metadata at all (should not happen with FULL):
                    // refuse to guess.
                    return Err(map.mal(&format!("no charset logged for column {name}")));
                }
            }
            let decode = plan_column(t, rt, meta, charset, &name, &map)?.ok_or_else(unsupported)?;
            let json_ordinal = if rt == 245 {
                json_count += 1;
                Some((json_count - 1) as u16)
            } else {
                None
            };
            let ty = ColumnType::try_from(rt).map_err(|_| unsupported())?;
            if (ty == ColumnType::MYSQL_TYPE_ENUM || ty == ColumnType::MYSQL_TYPE_SET)
                && map.labels[i].is_none()
            {
                return Err(map.mal(&format!("no ENUM/SET labels logged for column {name} (binlog_row_metadata=FULL required)")));
            }
            columns.push(ColumnSchema {
                name,
                ty,
                raw_type: t,
                meta,
                unsigned: map.unsigned[i],
                charset,
                collation: map.collation[i],
                labels: map.labels[i].take(),
                nullable: map.nullable[i],
                json_ordinal,
                decode,
            });
        }
        let names: Columns = Arc::from(std::mem::take(&mut map.names));
        let primary_key: Arc<[usize]> = std::mem::take(&mut map.primary_key).into();
        let meta = Arc::new(TableMeta {
            columns: names.clone(),
            types: columns.iter().map(api_type).collect(),
            nullable: columns.iter().map(|c| c.nullable).collect(),
            primary_key: primary_key.clone(),
        });
        Ok(TableSchema {
            table_id: map.table_id,
            db: map.db,
            table: map.table,
            columns,
            names,
            primary_key,
            json_column_count: json_count,
            flavor,
            meta,
        })
    }
}

/// The decode plan of one column: `t` the logged type byte, `rt` the real
/// type, `meta` its metadata. `Ok(None)`: a type the decoder does not handle;
/// `Err`: metadata out of range for the type.
fn plan_column(
    t: u8,
    rt: u8,
    meta: u16,
    charset: Charset,
    name: &str,
    map: &TableMap,
) -> Result<Option<Decode>, DecodeError> {
    let mal = |what: &str| map.mal(what);
    let lo = (meta & 0xff) as u8;
    let hi = (meta >> 8) as u8;
    Ok(Some(match rt {
        1 => Decode::Tiny,
        2 => Decode::Short,
        9 => Decode::Int24,
        3 => Decode::Long,
        8 => Decode::LongLong,
        13 => Decode::Year,
        4 => Decode::Float,
        5 => Decode::Double,
        16 => {
            let bits = hi as u16 * 8 + lo as u16;
            let bytes = bits.div_ceil(8);
            if bytes == 0 || bytes > 8 {
                return Err(mal(&format!("BIT column {name} with {bits} bits")));
            }
            Decode::Bit {
                bytes: bytes as u8,
                single: bits == 1,
            }
        }
        246 => {
            let (precision, scale) = (lo, hi);
            if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                return Err(mal(&format!(
                    "DECIMAL({precision},{scale}) for column {name}"
                )));
            }
            Decode::Decimal {
                precision,
                scale,
                size: decimal_size(precision, scale) as u8,
            }
        }
        15 | 253 => Decode::VarLen {
            prefix: if meta < 256 { 1 } else { 2 },
            pad_to: 0,
        },
        254 => {
            let max_len: u16 = if t == 254 && lo != 0 {
                if lo & 0x30 != 0x30 {
                    hi as u16 | ((((lo & 0x30) ^ 0x30) as u16) << 4)
                } else {
                    hi as u16
                }
            } else {
                meta
            };
            let pad_to = if charset == Charset::Binary {
                max_len
            } else {
                0
            };
            Decode::VarLen {
                prefix: if max_len < 256 { 1 } else { 2 },
                pad_to,
            }
        }
        247 => {
            let pack = if t == 254 { hi } else { lo };
            if !matches!(pack, 1 | 2) {
                return Err(mal(&format!("ENUM column {name} with pack length {pack}")));
            }
            Decode::Enum { pack }
        }
        248 => {
            let bytes = if t == 254 { hi } else { lo };
            if !(1..=8).contains(&bytes) {
                return Err(mal(&format!("SET column {name} with {bytes} bytes")));
            }
            Decode::Set { bytes }
        }
        249..=252 => {
            let pack = match rt {
                249 => 1,
                250 => 3,
                251 => 4,
                _ => lo,
            };
            if !(1..=4).contains(&pack) {
                return Err(mal(&format!("BLOB column {name} with pack length {pack}")));
            }
            Decode::Blob { pack }
        }
        10 | 14 => Decode::Date,
        12 => Decode::DateTimeOld,
        7 => Decode::TimestampOld,
        11 => Decode::TimeOld,
        17..=19 => {
            if lo > 6 {
                return Err(mal(&format!("fractional precision {lo} for column {name}")));
            }
            match rt {
                17 => Decode::Timestamp2 { fsp: lo },
                18 => Decode::DateTime2 { fsp: lo },
                _ => Decode::Time2 { fsp: lo },
            }
        }
        245 | 255 | 242 => {
            if !(1..=4).contains(&lo) {
                return Err(mal(&format!("column {name} with pack length {lo}")));
            }
            match rt {
                245 => Decode::Json { pack: lo },
                255 => Decode::Geometry { pack: lo },
                _ => Decode::Vector { pack: lo },
            }
        }
        _ => return Ok(None),
    }))
}

/// The sink-level type of a column (see `rowstream_api::ColumnType` for the
/// `Value` variant each produces).
fn api_type(c: &ColumnSchema) -> rowstream_api::ColumnType {
    use rowstream_api::ColumnType as T;
    let int = |bits: u8| T::Int {
        bits,
        unsigned: c.unsigned,
    };
    let labels = || c.labels.clone().unwrap_or_else(|| Arc::from(Vec::new()));
    match c.decode {
        Decode::Tiny => int(8),
        Decode::Short => int(16),
        Decode::Int24 => int(24),
        Decode::Long => int(32),
        Decode::LongLong => int(64),
        Decode::Year => T::Year,
        Decode::Bit { single: true, .. } => T::Bool,
        Decode::Bit { bytes, .. } => T::Bit {
            bits: u16::from(bytes) * 8,
        },
        Decode::Float => T::Float,
        Decode::Double => T::Double,
        Decode::Decimal {
            precision, scale, ..
        } => T::Decimal { precision, scale },
        Decode::VarLen { .. } | Decode::Blob { .. } => {
            if c.charset == Charset::Binary {
                T::Bytes
            } else {
                T::String
            }
        }
        Decode::Enum { .. } => T::Enum { labels: labels() },
        Decode::Set { .. } => T::Set { labels: labels() },
        Decode::Date => T::Date,
        Decode::DateTimeOld => T::DateTime { fsp: 0 },
        Decode::TimestampOld => T::Timestamp { fsp: 0 },
        Decode::TimeOld => T::Time { fsp: 0 },
        Decode::DateTime2 { fsp } => T::DateTime { fsp },
        Decode::Timestamp2 { fsp } => T::Timestamp { fsp },
        Decode::Time2 { fsp } => T::Time { fsp },
        Decode::Json { .. } => T::Json,
        Decode::Geometry { .. } => T::Geometry,
        Decode::Vector { .. } => T::Vector,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a TABLE_MAP body. `cols`: (type byte, metadata bytes, name).
    /// `opt`: extra optional metadata TLVs (type, value) appended after COLUMN_NAME.
    pub(crate) fn table_map(
        table_id: u64,
        db: &str,
        table: &str,
        cols: &[(u8, &[u8], &str)],
        opt: &[(u8, Vec<u8>)],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&table_id.to_le_bytes()[..6]);
        b.extend_from_slice(&[1, 0]);
        b.push(db.len() as u8);
        b.extend_from_slice(db.as_bytes());
        b.push(0);
        b.push(table.len() as u8);
        b.extend_from_slice(table.as_bytes());
        b.push(0);
        b.push(cols.len() as u8);
        for c in cols {
            b.push(c.0);
        }
        let meta: Vec<u8> = cols.iter().flat_map(|c| c.1.iter().copied()).collect();
        b.push(meta.len() as u8);
        b.extend_from_slice(&meta);
        b.extend(std::iter::repeat_n(0xffu8, cols.len().div_ceil(8)));
        let mut names = Vec::new();
        for c in cols {
            names.push(c.2.len() as u8);
            names.extend_from_slice(c.2.as_bytes());
        }
        tlv(&mut b, 4, &names);
        for (t, v) in opt {
            tlv(&mut b, *t, v);
        }
        b
    }

    pub(crate) fn tlv(b: &mut Vec<u8>, t: u8, v: &[u8]) {
        b.push(t);
        assert!(v.len() < 251);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }

    #[test]
    fn missing_column_names_is_an_error() {
        let mut b = table_map(1, "d", "t", &[(3, &[], "a")], &[]);
        // drop the COLUMN_NAME TLV (last 4 bytes: type, len, 1, 'a')
        b.truncate(b.len() - 4);
        let e = TableSchema::from_table_map(&b, 8, Flavor::MySql).unwrap_err();
        assert!(e.to_string().contains("binlog_row_metadata=FULL"), "{e}");
    }

    #[test]
    fn signedness_counts_year_and_string_unwrapping() {
        // y YEAR, a INT UNSIGNED, s CHAR(10) utf8mb4, e ENUM('x','y'), t SET('p','q'), b INT
        // signed: YEAR has a bit (set, as servers log it), the strings have none
        let cols: &[(u8, &[u8], &str)] = &[
            (13, &[], "y"),
            (3, &[], "a"),
            (254, &[254, 40], "s"),
            (254, &[247, 1], "e"),
            (254, &[248, 1], "t"),
            (3, &[], "b"),
        ];
        let b = table_map(
            7,
            "db",
            "tb",
            cols,
            &[
                (1, vec![0b1100_0000]),
                (2, vec![0xfc, 255, 0]),
                (6, vec![2, 1, b'x', 1, b'y']),
                (5, vec![2, 1, b'p', 1, b'q']),
                (10, vec![45]),
                (8, vec![1, 5]),
            ],
        );
        let s = TableSchema::from_table_map(&b, 8, Flavor::MySql).unwrap();
        assert_eq!(s.table_id, 7);
        assert_eq!(&*s.db, "db");
        assert!(s.columns[0].unsigned && s.columns[1].unsigned);
        assert!(!s.columns[5].unsigned);
        assert_eq!(s.columns[2].ty, ColumnType::MYSQL_TYPE_STRING);
        assert_eq!(s.columns[2].charset, Charset::Utf8);
        assert_eq!(s.columns[3].ty, ColumnType::MYSQL_TYPE_ENUM);
        assert_eq!(s.columns[4].ty, ColumnType::MYSQL_TYPE_SET);
        assert_eq!(s.columns[3].labels.as_ref().unwrap().len(), 2);
        assert_eq!(&*s.columns[4].labels.as_ref().unwrap()[1], "q");
        assert_eq!(&*s.primary_key, &[1, 5]);
        assert_eq!(&*s.names[5], "b");
    }

    /// SIGNEDNESS counts YEAR: the bits MySQL 9.7 logged for
    /// `(id INT, y YEAR, u INT UNSIGNED, a SMALLINT)` are `0x60` (YEAR's bit
    /// set, as MariaDB 10.11 sets it). Skipping YEAR, as an earlier version
    /// of this parser did, gave `a` the bit of `u`: a negative SMALLINT
    /// decoded as 65531. mysql_common reads it the same way.
    #[test]
    fn signedness_counts_year() {
        use mysql_common::binlog::consts::BinlogVersion;
        use mysql_common::binlog::events::{
            FormatDescriptionEvent, OptionalMetaExtractor, TableMapEvent,
        };
        use mysql_common::binlog::BinlogCtx;
        use mysql_common::io::ParseBuf;
        let cols: &[(u8, &[u8], &str)] =
            &[(3, &[], "id"), (13, &[], "y"), (3, &[], "u"), (2, &[], "a")];
        let b = table_map(7, "db", "tb", cols, &[(1, vec![0x60])]);
        for flavor in [Flavor::MySql, Flavor::MariaDb] {
            let ours = TableSchema::from_table_map(&b, 8, flavor).unwrap();
            let unsigned: Vec<bool> = ours.columns.iter().map(|c| c.unsigned).collect();
            assert_eq!(unsigned, [false, true, true, false], "{flavor:?}");
        }
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        let ctx = BinlogCtx::new(b.len() + 19, &fde, 19);
        let tme: TableMapEvent = ParseBuf(&b).parse(ctx).unwrap();
        let ome = OptionalMetaExtractor::new(tme.iter_optional_meta()).unwrap();
        let flags: Vec<bool> = ome.iter_signedness().collect();
        assert_eq!(flags, [false, true, true, false]);
    }

    #[test]
    fn collations_map_to_charsets() {
        use Charset::*;
        for (id, cs) in [
            (33, Utf8),
            (45, Utf8),
            (46, Utf8),
            (76, Utf8),
            (83, Utf8),
            (192, Utf8),
            (223, Utf8),
            (224, Utf8),
            (247, Utf8),
            (255, Utf8),
            (309, Utf8),
            (323, Utf8),
            (8, Latin1),
            (5, Latin1),
            (47, Latin1),
            (94, Latin1),
            (11, Ascii),
            (65, Ascii),
            (63, Binary),
            (28, Other(28)),
        ] {
            assert_eq!(Charset::from_collation(id, Flavor::MySql), cs, "mysql {id}");
        }
        for (id, cs) in [
            (33, Utf8),
            (45, Utf8),
            (224, Utf8),
            (246, Utf8),
            (1057, Utf8),
            (1069, Utf8),
            (1070, Utf8),
            (1248, Utf8),
            (1270, Utf8),
            (2048, Utf8),
            (2304, Utf8),
            (2305, Utf8),
            (2559, Utf8),
            (609, Utf8),
            (8, Latin1),
            (1032, Latin1),
            (1071, Latin1),
            (11, Ascii),
            (1035, Ascii),
            (1089, Ascii),
            (63, Binary),
            (2560, Other(2560)),
            (28, Other(28)),
        ] {
            assert_eq!(
                Charset::from_collation(id, Flavor::MariaDb),
                cs,
                "mariadb {id}"
            );
        }
    }

    #[test]
    fn mariadb_counts_geometry_as_character_column() {
        // g GEOMETRY, s VARCHAR(10): COLUMN_CHARSET lists 2 collations on MariaDB.
        let cols: &[(u8, &[u8], &str)] = &[(255, &[4], "g"), (15, &[40, 0], "s")];
        let b = table_map(1, "d", "t", cols, &[(3, vec![63, 8])]);
        let s = TableSchema::from_table_map(&b, 8, Flavor::MariaDb).unwrap();
        assert_eq!(s.columns[1].charset, Charset::Latin1);
        // and MySQL lists only the VARCHAR.
        let b = table_map(1, "d", "t", cols, &[(3, vec![8])]);
        let s = TableSchema::from_table_map(&b, 8, Flavor::MySql).unwrap();
        assert_eq!(s.columns[1].charset, Charset::Latin1);
    }

    #[test]
    fn unsupported_type_names_column() {
        let b = table_map(1, "d", "t", &[(0, &[], "old")], &[]);
        let e = TableSchema::from_table_map(&b, 8, Flavor::MySql)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("d.t.old") && e.contains("MYSQL_TYPE_DECIMAL"),
            "{e}"
        );
        let b = table_map(1, "d", "t", &[(140, &[4], "z")], &[]);
        let e = TableSchema::from_table_map(&b, 8, Flavor::MariaDb)
            .unwrap_err()
            .to_string();
        assert!(e.contains("140"), "{e}");
    }
}
