//! Column text: which charset a collation means, and exact decoding of text
//! bytes in it (values, ENUM/SET labels).
//!
//! Invariants: decoding is exact or an error, never lossy: invalid UTF-8,
//! non-ASCII in ascii, text in a charset we do not know (non-empty) are
//! errors; latin1 is Windows-1252 as the server implements it.

use mysql_common::collations::{Collation, CollationId};
use rowstream_api::{Flavor, Text};

/// How text bytes of a column are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// utf8mb3 and utf8mb4: must be valid UTF-8.
    Utf8,
    /// MySQL/MariaDB latin1, which is Windows-1252 (0x80 is '€'); the five
    /// bytes cp1252 leaves undefined map to the C1 controls, as the server does.
    Latin1,
    /// ascii: bytes above 0x7F are an error.
    Ascii,
    /// binary: the value is bytes, not text.
    Binary,
    /// Any other charset, by collation id: a non-empty value is a decode error.
    Other(u16),
}

impl Charset {
    /// Maps a collation id (as found in TABLE_MAP optional metadata) to a charset.
    ///
    /// Covers every utf8mb3/utf8mb4/latin1/ascii/binary collation of MySQL 8/9
    /// (via mysql_common's collation table) and MariaDB 10.11+ (own table:
    /// the classic ids, the `_nopad_` ids = base + 1024, and the UCA-14.0.0
    /// ids 2048..=2303 (utf8mb3) and 2304..=2559 (utf8mb4)).
    pub fn from_collation(id: u16, flavor: Flavor) -> Charset {
        match flavor {
            Flavor::MariaDb => mariadb_charset(id),
            Flavor::MySql => mysql_charset(id),
        }
    }
}

fn mysql_charset(id: u16) -> Charset {
    if id == 63 {
        return Charset::Binary;
    }
    let cid = CollationId::from(id);
    if cid == CollationId::UNKNOWN_COLLATION_ID {
        return Charset::Other(id);
    }
    match Collation::resolve(cid).charset() {
        "utf8mb4" | "utf8mb3" | "utf8" => Charset::Utf8,
        "latin1" => Charset::Latin1,
        "ascii" => Charset::Ascii,
        "binary" => Charset::Binary,
        _ => Charset::Other(id),
    }
}

fn mariadb_charset(id: u16) -> Charset {
    let base = if (1024..2048).contains(&id) {
        id - 1024
    } else {
        id
    };
    match base {
        63 => Charset::Binary,
        // utf8mb3: general_ci, bin, unicode/uca collations, general_mysql500_ci,
        // croatian/myanmar/thai_520_w2 (576-578), UCA-14 (2048..=2303).
        33 | 83 | 192..=215 | 223 | 576..=578 | 2048..=2303 => Charset::Utf8,
        // utf8mb4: general_ci, bin, unicode/uca collations, 608-610, UCA-14.
        45 | 46 | 224..=247 | 608..=610 | 2304..=2559 => Charset::Utf8,
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Charset::Latin1,
        11 | 65 => Charset::Ascii,
        _ => Charset::Other(id),
    }
}

/// Why text bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// Not valid in its charset (or `binary`, which is not text).
    Invalid(Charset),
    /// A non-empty value in a charset we cannot decode (collation id).
    UnknownCharset(u16),
}

/// Decodes text bytes of a column charset (exact, never lossy). Short
/// text (up to `Text`'s 23 inline bytes) costs no allocation.
#[inline(always)]
pub fn decode_text(s: &[u8], cs: Charset) -> Result<Text, TextError> {
    decode_text_prefix(s, s.len(), cs)
}

/// [`decode_text`] of the first `len` bytes of `buf`: when `buf` goes on
/// past them (a cell inside a rows event), short ASCII text is read out of
/// it as whole words (see `Text::from_prefix`).
#[inline(always)]
pub fn decode_text_prefix(buf: &[u8], len: usize, cs: Charset) -> Result<Text, TextError> {
    let s = &buf[..len];
    // ASCII is the same text in all three charsets. Most text is ASCII,
    // and checking that is a word at a time where UTF-8 validation goes
    // byte by byte over short strings (a third of a text cell's decoding).
    if matches!(cs, Charset::Utf8 | Charset::Ascii | Charset::Latin1) && s.is_ascii() {
        // SAFETY: every byte is below 0x80 (checked just above), and ASCII
        // bytes are valid UTF-8.
        return Ok(unsafe { Text::from_prefix(buf, len) });
    }
    decode_non_ascii(s, cs)
}

/// [`decode_text`] of text that is not ASCII (or not in an ASCII-compatible charset).
fn decode_non_ascii(s: &[u8], cs: Charset) -> Result<Text, TextError> {
    match cs {
        Charset::Utf8 => match std::str::from_utf8(s) {
            Ok(x) => Ok(Text::from(x)),
            Err(_) => Err(TextError::Invalid(cs)),
        },
        Charset::Ascii => Err(TextError::Invalid(cs)),
        Charset::Latin1 => {
            let mut out = String::with_capacity(s.len() + 8);
            for &c in s {
                out.push(match c {
                    0x80..=0x9f => CP1252_80[(c - 0x80) as usize],
                    _ => c as char,
                });
            }
            Ok(Text::from(out))
        }
        Charset::Binary => Err(TextError::Invalid(cs)),
        Charset::Other(id) => {
            if s.is_empty() {
                Ok(Text::default())
            } else {
                Err(TextError::UnknownCharset(id))
            }
        }
    }
}

/// cp1252 0x80..=0x9F; undefined bytes map to the C1 control of the same value (as MySQL's latin1).
const CP1252_80: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];
