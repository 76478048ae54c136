//! [`Text`]: the string of a `Value::String` or `Value::Decimal`.
//!
//! Up to [`INLINE`] bytes are kept inline, so most cells (names, codes,
//! DECIMALs) cost the decoding thread no allocation and the encoding thread
//! no free. The inline form is three machine words, written as whole words:
//! `compact_str`, used before, copied a cell's bytes in with variable-length
//! stores and then moved the string as words, and each such load waited for
//! the narrower stores under it (no store-to-load forwarding): half of the
//! row decoder's samples. [`Text::from_prefix`] reads the words straight out
//! of the caller's buffer when it has room.
//!
//! Invariants: the inline words' bytes `0..len` are valid UTF-8, and `len`
//! (at most [`INLINE`]) is the byte at index [`INLINE`] of the words as they
//! lie in memory; the bytes between are unspecified and never read. Equality
//! is that of the `str`.

use std::fmt;
use std::ops::Deref;

/// The longest text kept inline.
const INLINE: usize = 23;
const WORDS: usize = 3;
const BYTES: usize = WORDS * 8;

/// An immutable string, inline up to [`INLINE`] bytes (see the module docs).
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Inline([u64; WORDS]),
    Heap(Box<str>),
}

impl Text {
    /// The text of `len` bytes at the start of `buf`; those bytes must be
    /// UTF-8. When `buf` holds a whole inline form past them, the words are
    /// read from it directly (the bytes after `len` ride along unread).
    ///
    /// # Safety
    /// `buf[..len]` is valid UTF-8 (and `len <= buf.len()`, checked).
    #[inline]
    pub unsafe fn from_prefix(buf: &[u8], len: usize) -> Text {
        let s = &buf[..len];
        if len > INLINE {
            // SAFETY: the caller guarantees `s` is UTF-8.
            return Text(Repr::Heap(
                unsafe { std::str::from_utf8_unchecked(s) }.into(),
            ));
        }
        let w = match buf.get(..BYTES) {
            Some(b) => [word(&b[0..8]), word(&b[8..16]), word(&b[16..24])],
            None => {
                let mut b = [0u8; BYTES];
                b[..len].copy_from_slice(s);
                [word(&b[0..8]), word(&b[8..16]), word(&b[16..24])]
            }
        };
        Text(Repr::Inline(with_len(w, len)))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(w) => {
                let b = bytes(w);
                let len = usize::from(b[INLINE]);
                // SAFETY: the constructors store `len <= INLINE` at index
                // INLINE and valid UTF-8 in `0..len` (module invariant).
                unsafe { std::str::from_utf8_unchecked(b.get_unchecked(..len)) }
            }
            Repr::Heap(s) => s,
        }
    }
}

/// A word of 8 bytes in memory order.
#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_ne_bytes(a)
}

/// `w` with `len` as the byte at index [`INLINE`] in memory.
#[inline(always)]
fn with_len(mut w: [u64; WORDS], len: usize) -> [u64; WORDS] {
    // Byte INLINE is the last byte of the last word in memory: its most
    // significant byte on little-endian targets, its least on big-endian.
    let shift = if cfg!(target_endian = "little") {
        56
    } else {
        0
    };
    w[WORDS - 1] = (w[WORDS - 1] & !(0xff << shift)) | (len as u64) << shift;
    w
}

/// The inline words as the bytes they are in memory.
#[inline(always)]
fn bytes(w: &[u64; WORDS]) -> &[u8; BYTES] {
    // SAFETY: same size, `u8` has no alignment requirement, and every bit
    // pattern is a valid `u8`.
    unsafe { &*(w as *const [u64; WORDS] as *const [u8; BYTES]) }
}

impl Default for Text {
    fn default() -> Self {
        Text(Repr::Inline([0; WORDS]))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        // SAFETY: a `str` is UTF-8.
        unsafe { Text::from_prefix(s.as_bytes(), s.len()) }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        if s.len() > INLINE {
            Text(Repr::Heap(s.into_boxed_str()))
        } else {
            Text::from(s.as_str())
        }
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_round_trips_from_a_str_and_from_a_longer_buffer() {
        let all: String = ('a'..='z').chain('A'..='Z').collect();
        for len in 0..=all.len() {
            let s = &all[..len];
            assert_eq!(Text::from(s).as_str(), s);
            assert_eq!(Text::from(s.to_string()).as_str(), s);
            // The words come straight from the buffer, with bytes after `len`.
            let t = unsafe { Text::from_prefix(all.as_bytes(), len) };
            assert_eq!(t.as_str(), s, "len {len}");
            assert_eq!(t.len(), len);
            assert_eq!(matches!(t.0, Repr::Inline(_)), len <= INLINE);
        }
    }

    #[test]
    fn multibyte_text_and_equality_ignore_the_bytes_after_the_text() {
        let a = unsafe { Text::from_prefix("héllo wörld, ça va? 😀 tail".as_bytes(), 7) };
        assert_eq!(a, "héllo ");
        assert_eq!(a, Text::from("héllo "));
        assert_ne!(a, Text::from("héllo"));
        assert_eq!(Text::default().as_str(), "");
        assert_eq!(format!("{a:?}"), "\"héllo \"");
        assert_eq!(Text::from("x".repeat(30)), "x".repeat(30).as_str());
    }
}
