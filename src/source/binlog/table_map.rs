//! TABLE_MAP event parsing: the event body and its optional metadata
//! (`binlog_row_metadata=FULL`) into a plain [`TableMap`], one entry per
//! column. Planning how to decode each column is `schema`'s job.
//!
//! Invariants:
//! - every per-column vector of a `TableMap` has one entry per column;
//! - a TABLE_MAP without column names is refused (`MissingColumnNames`);
//!   lists that must match the column count (names, charsets) are checked;
//! - ENUM/SET labels are decoded exactly in their column's charset or
//!   refused; primary key indices are in range.
//!
//! The body is parsed here rather than with mysql_common's
//! `TableMapEvent`/`OptionalMetaExtractor`, because the latter never counts
//! GEOMETRY as a character column, which MariaDB does.
//!
//! SIGNEDNESS has one bit per numeric column *as the server writes it*, and
//! both servers' writers count YEAR (a one-byte unsigned integer to them):
//! MySQL 9.7 logs `0x60` for `(INT, YEAR, INT UNSIGNED, SMALLINT)`. Readers
//! that skip YEAR (mariadb-binlog 10.11 does) give every later numeric
//! column its predecessor's flag, so a negative SMALLINT after a YEAR
//! decodes as a large unsigned number.

use std::sync::Arc;

use rowstream_api::Flavor;

use super::error::DecodeError;
use super::text::{decode_text, Charset};

/// A TABLE_MAP event, parsed: raw per-column facts, nothing planned yet.
#[derive(Debug, Clone)]
pub struct TableMap {
    pub table_id: u64,
    pub db: Arc<str>,
    pub table: Arc<str>,
    /// Type bytes as logged (STRING for CHAR, ENUM and SET).
    pub types: Vec<u8>,
    /// Real type bytes: STRING unwrapped to ENUM/SET/CHAR from its metadata.
    pub real: Vec<u8>,
    /// Column metadata (0..=2 bytes, little-endian).
    pub meta: Vec<u16>,
    pub nullable: Vec<bool>,
    pub names: Vec<Arc<str>>,
    /// UNSIGNED flags (false for non-numeric columns and when not logged).
    pub unsigned: Vec<bool>,
    /// Collation id of character, ENUM and SET columns (0: none logged).
    pub collation: Vec<u16>,
    /// ENUM and SET labels, decoded in the column's charset.
    pub labels: Vec<Option<Arc<[Arc<str>]>>>,
    /// Primary key column indices in key order (empty if none logged).
    pub primary_key: Vec<usize>,
}

/// The optional metadata fields rowstream reads (raw TLV values).
#[derive(Default)]
struct Optional<'a> {
    signedness: Option<&'a [u8]>,
    default_cs: Option<&'a [u8]>,
    column_cs: Option<&'a [u8]>,
    names: Option<&'a [u8]>,
    set_vals: Option<&'a [u8]>,
    enum_vals: Option<&'a [u8]>,
    pk_simple: Option<&'a [u8]>,
    pk_prefix: Option<&'a [u8]>,
    es_default_cs: Option<&'a [u8]>,
    es_column_cs: Option<&'a [u8]>,
}

/// A cursor over event bytes; every read is bounds-checked (None past the end).
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Cur<'a> {
        Cur { b, p: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn lenenc(&mut self) -> Option<u64> {
        let first = self.u8()?;
        Some(match first {
            0xfc => u16::from_le_bytes(self.take(2)?.try_into().ok()?) as u64,
            0xfd => {
                let s = self.take(3)?;
                s[0] as u64 | (s[1] as u64) << 8 | (s[2] as u64) << 16
            }
            0xfe => u64::from_le_bytes(self.take(8)?.try_into().ok()?),
            0xfb | 0xff => return None,
            x => x as u64,
        })
    }
    fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.take(usize::try_from(n).ok()?)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.p..];
        self.p = self.b.len();
        s
    }
    fn is_empty(&self) -> bool {
        self.p >= self.b.len()
    }
}

/// The columns that have a bit in the SIGNEDNESS field: the integers, YEAR
/// (13), DECIMAL, FLOAT and DOUBLE (see the module doc).
fn is_numeric(t: u8) -> bool {
    matches!(t, 1 | 2 | 9 | 3 | 8 | 13 | 246 | 4 | 5)
}

/// Columns that hold text in the charset of their collation, by real type.
pub fn is_character(t: u8) -> bool {
    matches!(t, 254 | 253 | 15 | 252 | 249 | 250 | 251)
}

/// Columns listed in DEFAULT_CHARSET/COLUMN_CHARSET metadata: the character
/// columns plus, per server, one more type: MySQL 9 counts VECTOR (242),
/// MariaDB counts GEOMETRY (255).
fn has_charset_metadata(t: u8, flavor: Flavor) -> bool {
    is_character(t)
        || match flavor {
            Flavor::MySql => t == 242,
            Flavor::MariaDb => t == 255,
        }
}

/// Metadata bytes a column of type byte `t` carries in the TABLE_MAP.
fn metadata_len(t: u8) -> usize {
    match t {
        4 | 5 | 252 | 249 | 250 | 251 | 255 | 245 | 242 | 17 | 18 | 19 | 140 => 1,
        15 | 253 | 246 | 247 | 248 | 254 | 16 | 141 => 2,
        _ => 0,
    }
}

impl TableMap {
    /// Parses a TABLE_MAP event body.
    ///
    /// * `body`: the event bytes after the 19-byte common header, CRC stripped.
    /// * `post_header_len`: the TABLE_MAP post-header length from the FDE
    ///   (6 means a 4-byte table id, anything else the usual 6-byte id).
    /// * `flavor`: which server family wrote it (collation ids and charset
    ///   column counting differ).
    ///
    /// Errors: truncated/malformed events, missing column names (the server
    /// must run with `binlog_row_metadata=FULL`), inconsistent metadata.
    pub fn parse(
        body: &[u8],
        post_header_len: u8,
        flavor: Flavor,
    ) -> Result<TableMap, DecodeError> {
        let mal = |what: &str| DecodeError::Malformed {
            context: "TABLE_MAP".into(),
            detail: what.to_string(),
        };
        let mut c = Cur::new(body);
        let table_id = if post_header_len == 6 {
            let s = c.take(4).ok_or_else(|| mal("truncated table id"))?;
            u64::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        } else {
            let s = c.take(6).ok_or_else(|| mal("truncated table id"))?;
            let mut b = [0u8; 8];
            b[..6].copy_from_slice(s);
            u64::from_le_bytes(b)
        };
        c.take(2).ok_or_else(|| mal("truncated flags"))?;
        let db_len = c.u8().ok_or_else(|| mal("truncated db name"))? as usize;
        let db = c.take(db_len).ok_or_else(|| mal("truncated db name"))?;
        c.take(1);
        let tb_len = c.u8().ok_or_else(|| mal("truncated table name"))? as usize;
        let tb = c.take(tb_len).ok_or_else(|| mal("truncated table name"))?;
        c.take(1);
        let mut map = TableMap {
            table_id,
            db: Arc::from(String::from_utf8_lossy(db).as_ref()),
            table: Arc::from(String::from_utf8_lossy(tb).as_ref()),
            types: Vec::new(),
            real: Vec::new(),
            meta: Vec::new(),
            nullable: Vec::new(),
            names: Vec::new(),
            unsigned: Vec::new(),
            collation: Vec::new(),
            labels: Vec::new(),
            primary_key: Vec::new(),
        };
        let ncols = c.lenenc().ok_or_else(|| map.mal("bad column count"))? as usize;
        if ncols > 4096 {
            return Err(map.mal("column count above 4096"));
        }
        map.types = c
            .take(ncols)
            .ok_or_else(|| map.mal("truncated column types"))?
            .to_vec();
        let metadata = c
            .lenenc_bytes()
            .ok_or_else(|| map.mal("truncated column metadata"))?;
        let nullbits = c
            .take(ncols.div_ceil(8))
            .ok_or_else(|| map.mal("truncated null bitmap"))?;
        map.nullable = (0..ncols)
            .map(|i| nullbits[i / 8] & (1 << (i % 8)) != 0)
            .collect();
        let optional = c.rest();
        map.column_metadata(metadata)?;
        let opt = map.optional(optional)?;
        map.column_names(opt.names)?;
        map.signedness(opt.signedness)?;
        map.collation = vec![0u16; ncols];
        let char_cols: Vec<usize> = (0..ncols)
            .filter(|&i| has_charset_metadata(map.real[i], flavor))
            .collect();
        map.collations(
            opt.default_cs,
            opt.column_cs,
            &char_cols,
            "charset metadata",
        )?;
        let es_cols: Vec<usize> = (0..ncols)
            .filter(|&i| matches!(map.real[i], 247 | 248))
            .collect();
        map.collations(
            opt.es_default_cs,
            opt.es_column_cs,
            &es_cols,
            "ENUM/SET charset metadata",
        )?;
        map.labels = vec![None; ncols];
        map.labels(opt.enum_vals, 247, "ENUM_STR_VALUE", flavor)?;
        map.labels(opt.set_vals, 248, "SET_STR_VALUE", flavor)?;
        map.primary_key(opt.pk_simple, opt.pk_prefix)?;
        Ok(map)
    }

    /// A malformed-event error naming this table.
    pub fn mal(&self, what: &str) -> DecodeError {
        DecodeError::Malformed {
            context: format!("TABLE_MAP of {}.{}", self.db, self.table),
            detail: what.to_string(),
        }
    }

    /// Raw metadata per column, and real types.
    fn column_metadata(&mut self, metadata: &[u8]) -> Result<(), DecodeError> {
        let mut m = Cur::new(metadata);
        for (i, &t) in self.types.iter().enumerate() {
            let n = metadata_len(t);
            let s = m
                .take(n)
                .ok_or_else(|| self.mal(&format!("truncated metadata for column {i}")))?;
            self.meta.push(match n {
                1 => s[0] as u16,
                2 => u16::from_le_bytes([s[0], s[1]]),
                _ => 0,
            });
            // STRING (254) carries the real type in the first metadata byte.
            self.real.push(if t == 254 && n == 2 && s[0] != 0 {
                s[0] | 0x30
            } else {
                t
            });
        }
        Ok(())
    }

    /// The optional metadata TLVs rowstream reads; others are skipped.
    fn optional<'a>(&self, optional: &'a [u8]) -> Result<Optional<'a>, DecodeError> {
        let mut opt = Optional::default();
        let mut o = Cur::new(optional);
        while !o.is_empty() {
            let t = o
                .u8()
                .ok_or_else(|| self.mal("truncated optional metadata"))?;
            let v = o
                .lenenc_bytes()
                .ok_or_else(|| self.mal("truncated optional metadata field"))?;
            match t {
                1 => opt.signedness = Some(v),
                2 => opt.default_cs = Some(v),
                3 => opt.column_cs = Some(v),
                4 => opt.names = Some(v),
                5 => opt.set_vals = Some(v),
                6 => opt.enum_vals = Some(v),
                8 => opt.pk_simple = Some(v),
                9 => opt.pk_prefix = Some(v),
                10 => opt.es_default_cs = Some(v),
                11 => opt.es_column_cs = Some(v),
                _ => {} // geometry type, visibility, vector dimensionality, future fields
            }
        }
        Ok(opt)
    }

    fn column_names(&mut self, names_raw: Option<&[u8]>) -> Result<(), DecodeError> {
        let names_raw = names_raw.ok_or_else(|| DecodeError::MissingColumnNames {
            db: self.db.to_string(),
            table: self.table.to_string(),
        })?;
        let ncols = self.types.len();
        let mut names: Vec<Arc<str>> = Vec::with_capacity(ncols);
        let mut nc = Cur::new(names_raw);
        while !nc.is_empty() {
            let n = nc
                .lenenc_bytes()
                .ok_or_else(|| self.mal("bad COLUMN_NAME field"))?;
            names.push(Arc::from(String::from_utf8_lossy(n).as_ref()));
        }
        if names.len() != ncols {
            return Err(self.mal(&format!(
                "COLUMN_NAME has {} names for {ncols} columns",
                names.len()
            )));
        }
        self.names = names;
        Ok(())
    }

    /// Signedness: one bit (MSB first) per numeric column.
    fn signedness(&mut self, signedness: Option<&[u8]>) -> Result<(), DecodeError> {
        let ncols = self.types.len();
        let mut unsigned = vec![false; ncols];
        if let Some(bits) = signedness {
            let mut k = 0usize;
            for (u, &t) in unsigned.iter_mut().zip(&self.types) {
                if is_numeric(t) {
                    let byte = bits
                        .get(k / 8)
                        .ok_or_else(|| self.mal("SIGNEDNESS shorter than numeric column count"))?;
                    *u = byte & (0x80 >> (k % 8)) != 0;
                    k += 1;
                }
            }
        }
        self.unsigned = unsigned;
        Ok(())
    }

    /// Collations of the columns `cols` from a per-column list, else from a
    /// default with exceptions.
    fn collations(
        &mut self,
        default: Option<&[u8]>,
        percol: Option<&[u8]>,
        cols: &[usize],
        what: &str,
    ) -> Result<(), DecodeError> {
        if let Some(v) = percol {
            let mut cc = Cur::new(v);
            let mut ids = Vec::new();
            while !cc.is_empty() {
                ids.push(cc.lenenc().ok_or_else(|| self.mal(what))? as u16);
            }
            if ids.len() != cols.len() {
                return Err(self.mal(&format!(
                    "{what}: {} charsets for {} character columns",
                    ids.len(),
                    cols.len()
                )));
            }
            for (k, &i) in cols.iter().enumerate() {
                self.collation[i] = ids[k];
            }
        } else if let Some(v) = default {
            let mut cc = Cur::new(v);
            let def = cc.lenenc().ok_or_else(|| self.mal(what))? as u16;
            for &i in cols {
                self.collation[i] = def;
            }
            while !cc.is_empty() {
                let idx = cc.lenenc().ok_or_else(|| self.mal(what))? as usize;
                let id = cc.lenenc().ok_or_else(|| self.mal(what))? as u16;
                let col = *cols.get(idx).ok_or_else(|| {
                    self.mal(&format!(
                        "{what}: character column index {idx} out of range"
                    ))
                })?;
                self.collation[col] = id;
            }
        }
        Ok(())
    }

    /// ENUM (`ty` 247) or SET (248) labels, decoded in each column's charset.
    fn labels(
        &mut self,
        field: Option<&[u8]>,
        ty: u8,
        what: &str,
        flavor: Flavor,
    ) -> Result<(), DecodeError> {
        let Some(v) = field else { return Ok(()) };
        let mut cc = Cur::new(v);
        for i in (0..self.types.len()).filter(|&i| self.real[i] == ty) {
            let n = cc.lenenc().ok_or_else(|| self.mal(what))? as usize;
            let cs = Charset::from_collation(self.collation[i], flavor);
            let mut ls = Vec::with_capacity(n.min(65536));
            for _ in 0..n {
                let raw = cc.lenenc_bytes().ok_or_else(|| self.mal(what))?;
                let s = decode_text(raw, cs).map_err(|_| DecodeError::InvalidText {
                    db: self.db.to_string(),
                    table: self.table.to_string(),
                    column: self.names[i].to_string(),
                    detail: format!(
                        "label not decodable as {cs:?} (collation {})",
                        self.collation[i]
                    ),
                })?;
                ls.push(Arc::from(s.as_str()));
            }
            self.labels[i] = Some(Arc::from(ls));
        }
        Ok(())
    }

    fn primary_key(
        &mut self,
        pk_simple: Option<&[u8]>,
        pk_prefix: Option<&[u8]>,
    ) -> Result<(), DecodeError> {
        let mut primary_key = Vec::new();
        if let Some(v) = pk_simple {
            let mut cc = Cur::new(v);
            while !cc.is_empty() {
                primary_key
                    .push(cc.lenenc().ok_or_else(|| self.mal("SIMPLE_PRIMARY_KEY"))? as usize);
            }
        }
        if let Some(v) = pk_prefix {
            let mut cc = Cur::new(v);
            while !cc.is_empty() {
                primary_key.push(
                    cc.lenenc()
                        .ok_or_else(|| self.mal("PRIMARY_KEY_WITH_PREFIX"))?
                        as usize,
                );
                cc.lenenc()
                    .ok_or_else(|| self.mal("PRIMARY_KEY_WITH_PREFIX"))?;
            }
        }
        if primary_key.iter().any(|&i| i >= self.types.len()) {
            return Err(self.mal("primary key column index out of range"));
        }
        self.primary_key = primary_key;
        Ok(())
    }
}
