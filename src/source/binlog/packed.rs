//! MySQL's packed binary numbers shared by row values and binary JSON:
//! big-endian integers, DECIMAL digit groups, packed TIME.
//!
//! Invariants: pure functions of their bytes; a DECIMAL decodes to exact text
//! (exactly `scale` fractional digits, no leading zeros, no "-0") or None.

use rowstream_api::json::DIGIT_PAIRS;
use rowstream_api::{Text, Time};

/// Big-endian unsigned integer of up to 8 bytes.
pub fn be(s: &[u8]) -> u64 {
    s.iter().fold(0u64, |a, &x| a << 8 | x as u64)
}

/// A packed TIME (as in binary JSON and TIME2's integer part) with `fsp` digits.
pub fn time_from_packed(packed: i64, fsp: u8) -> Time {
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

/// Bytes that hold a group of 0..=9 decimal digits of a packed DECIMAL.
pub const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Decodes MySQL's binary DECIMAL(precision, scale) into exact text with
/// exactly `scale` fractional digits, no leading zeros, no "-0".
/// Returns None when the bytes hold an invalid digit group.
pub fn decode_decimal(s: &[u8], precision: u8, scale: u8) -> Option<Text> {
    let intg = precision.checked_sub(scale)? as usize;
    let scale = scale as usize;
    let (intg0, intg0x, frac0, frac0x) = (intg / 9, intg % 9, scale / 9, scale % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    if s.len() != size || size == 0 || size > 32 {
        return None;
    }
    if intg + scale <= 18 {
        return decode_u64(s, [intg0x, intg0, frac0, frac0x], scale);
    }
    if intg <= 18 && scale <= 18 {
        return decode_short(s, [intg0x, intg0, frac0, frac0x], scale);
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
    // The digit groups as numbers, checked, before any text: the sign
    // depends on whether any is non-zero ("-0" prints "0"). At most 32
    // bytes, so at most 16 groups; (value, digits).
    let mut groups = [(0u32, 0u8); 16];
    let mut n = 0;
    let mut p = 0;
    let mut nonzero = false;
    let widths = std::iter::once(intg0x)
        .chain(std::iter::repeat_n(9, intg0 + frac0))
        .chain(std::iter::once(frac0x));
    for ndig in widths {
        if ndig == 0 {
            continue;
        }
        let nbytes = DIG2BYTES[ndig];
        let v = be(&buf[p..p + nbytes]);
        p += nbytes;
        if v >= POW10[ndig] {
            return None;
        }
        nonzero |= v != 0;
        groups[n] = (v as u32, ndig as u8);
        n += 1;
    }
    let int_groups = usize::from(intg0x > 0) + intg0;
    // Built on the stack, then kept inline in the `Text` when short (most
    // DECIMALs are). 32 bytes hold at most 72 digits (9 per 4 bytes), plus
    // a sign, a leading "0" and a point.
    let mut out = Digits::default();
    if neg && nonzero {
        out.push(b'-');
    }
    let mut started = false;
    for (i, &(v, ndig)) in groups[..n].iter().enumerate() {
        if i == int_groups {
            if !started {
                out.push(b'0');
            }
            out.push(b'.');
            started = true;
        }
        if started {
            push_digits(&mut out, v, ndig);
        } else if v != 0 {
            // The first non-zero integer group: without its leading zeros.
            let digits = v.checked_ilog10().map_or(1, |d| d as u8 + 1);
            push_digits(&mut out, v, digits);
            started = true;
        }
    }
    if !started {
        out.push(b'0');
    }
    out.text()
}

/// [`decode_decimal`] for DECIMALs of at most 18 digits in all (most money
/// and quantity columns): the digit groups, most significant first, summed
/// into one unscaled `u64`, printed right to left two digits at a time with
/// the point `scale` digits from the end. A third fewer instructions than
/// [`decode_short`], which splits the integer and the fraction (callgrind,
/// `tail`: about 240 against 362 per DECIMAL(12,2)). `layout` is `[intg0x,
/// intg0, frac0, frac0x]`; `s` has the size they give.
#[inline]
fn decode_u64(s: &[u8], layout: [usize; 4], scale: usize) -> Option<Text> {
    let [intg0x, intg0, frac0, frac0x] = layout;
    // A negative value is stored with every bit inverted; the sign bit is
    // set for a non-negative one.
    let neg = s[0] & 0x80 == 0;
    let flip = if neg { 0xff } else { 0 };
    let mut bytes = s.iter().map(|&b| b ^ flip);
    let mut unscaled = 0u64;
    let mut first = true;
    let mut group = |ndig: usize| -> Option<()> {
        let mut g = 0u64;
        for _ in 0..DIG2BYTES[ndig] {
            let mut b = bytes.next()?;
            if first {
                b ^= 0x80;
                first = false;
            }
            g = g << 8 | u64::from(b);
        }
        if g >= POW10[ndig] {
            return None;
        }
        unscaled = unscaled * POW10[ndig] + g;
        Some(())
    };
    if intg0x > 0 {
        group(intg0x)?;
    }
    for _ in 0..intg0 + frac0 {
        group(9)?;
    }
    if frac0x > 0 {
        group(frac0x)?;
    }
    // At most 18 digits, a leading "0", a point and a sign, ending at 24:
    // the inline `Text`'s words are then read from `buf` in place.
    let mut buf = [0u8; 48];
    let end = 24;
    let mut at = end;
    let mut v = unscaled;
    let mut left = scale;
    while left >= 2 {
        v = pair_before(&mut buf, at, v);
        at -= 2;
        left -= 2;
    }
    if left == 1 {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    if scale > 0 {
        at -= 1;
        buf[at] = b'.';
    }
    // The integer part: at least one digit.
    loop {
        if v >= 10 {
            v = pair_before(&mut buf, at, v);
            at -= 2;
            if v == 0 {
                // v was 10..=99: the pair has no leading zero.
                break;
            }
        } else {
            at -= 1;
            buf[at] = b'0' + v as u8;
            break;
        }
    }
    if neg && unscaled != 0 {
        at -= 1;
        buf[at] = b'-';
    }
    let len = end - at;
    // SAFETY: sign, point and ASCII digits only.
    Some(unsafe { Text::from_prefix(&buf[at..], len) })
}

/// [`decode_decimal`] for the other DECIMALs of at most 18 integer and 18
/// fraction digits: at most 16 bytes, read as one number, each part summed
/// into a `u64`. The general
/// path's loops over byte and group arrays cost twice as many instructions.
/// `layout` is `[intg0x, intg0, frac0, frac0x]`; `s` has the size they give.
fn decode_short(s: &[u8], layout: [usize; 4], scale: usize) -> Option<Text> {
    let [intg0x, intg0, frac0, frac0x] = layout;
    let size = s.len();
    let bits = 8 * size as u32;
    // Byte by byte, not copied into a 16-byte array and loaded whole: that
    // load of the copy's narrower stores stalled (no store-to-load forwarding).
    let raw = s.iter().fold(0u128, |a, &x| a << 8 | u128::from(x));
    let sign = 1u128 << (bits - 1);
    let neg = raw & sign == 0;
    // A negative value is stored with every bit inverted; the sign bit is
    // set for a non-negative one.
    let all = u128::MAX >> (128 - bits);
    let mut x = if neg { raw ^ all } else { raw } ^ sign;
    // Groups from the last: the fraction's partial group, its full groups,
    // then the integer's full groups and its leading partial group.
    let mut take = |ndig: usize| -> Option<u64> {
        let nbits = 8 * DIG2BYTES[ndig] as u32;
        let v = (x & ((1u128 << nbits) - 1)) as u64;
        x = x.checked_shr(nbits).unwrap_or(0);
        (v < POW10[ndig]).then_some(v)
    };
    let mut frac = 0u64;
    let mut unit = 1u64;
    if frac0x > 0 {
        frac = take(frac0x)?;
        unit = POW10[frac0x];
    }
    for _ in 0..frac0 {
        frac += take(9)? * unit;
        unit *= POW10[9];
    }
    let mut int = 0u64;
    unit = 1;
    for _ in 0..intg0 {
        int += take(9)? * unit;
        unit *= POW10[9];
    }
    if intg0x > 0 {
        int += take(intg0x)? * unit;
    }
    let mut out = Digits::default();
    if neg && (int | frac) != 0 {
        out.push(b'-');
    }
    // The integer part without leading zeros ("0" when zero).
    let hi = int / POW10[9];
    let lo = (int % POW10[9]) as u32;
    if hi > 0 {
        let d = hi.ilog10() as u8 + 1;
        push_digits(&mut out, hi as u32, d);
        push_digits(&mut out, lo, 9);
    } else {
        let d = lo.checked_ilog10().map_or(1, |d| d as u8 + 1);
        push_digits(&mut out, lo, d);
    }
    if scale > 0 {
        out.push(b'.');
        if scale > 9 {
            let low = POW10[scale - 9];
            push_digits(&mut out, (frac / low) as u32, 9);
            push_digits(&mut out, (frac % low) as u32, (scale - 9) as u8);
        } else {
            push_digits(&mut out, frac as u32, scale as u8);
        }
    }
    out.text()
}

/// The text of a DECIMAL being built: ASCII digits, sign and point.
struct Digits {
    buf: [u8; 80],
    len: usize,
}

impl Default for Digits {
    fn default() -> Self {
        Digits {
            buf: [0; 80],
            len: 0,
        }
    }
}

impl Digits {
    #[inline]
    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn text(&self) -> Option<Text> {
        debug_assert!(self.buf[..self.len]
            .iter()
            .all(|&b| b == b'-' || b == b'.' || b.is_ascii_digit()));
        // SAFETY: only `push` (of b'-', b'.', b'0') and `push_digits` (ASCII
        // digits) write `buf[..len]`, so it is ASCII, hence UTF-8. Validating
        // it again was a fifth of a DECIMAL's decoding.
        Some(unsafe { Text::from_prefix(&self.buf, self.len) })
    }
}

/// 10^n for a digit group's `n` (0..=9).
const POW10: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Writes the last two decimal digits of `v` into `buf[at - 2..at]`;
/// returns `v / 100`.
#[inline(always)]
fn pair_before(buf: &mut [u8], at: usize, v: u64) -> u64 {
    let p = (v % 100) as usize * 2;
    buf[at - 2..at].copy_from_slice(&DIGIT_PAIRS[p..p + 2]);
    v / 100
}

/// Appends the last `ndig` decimal digits of `v`, zero-padded.
#[inline]
fn push_digits(out: &mut Digits, v: u32, ndig: u8) {
    let d = &mut out.buf[out.len..out.len + ndig as usize];
    let mut end = d.len();
    let mut v = u64::from(v);
    while end >= 2 {
        v = pair_before(d, end, v);
        end -= 2;
    }
    if end == 1 {
        d[0] = b'0' + (v % 10) as u8;
    }
    out.len += ndig as usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::all)]
    /// The first implementation (digits into a buffer, then scanned): the
    /// reference the faster one is checked against.
    fn decode_decimal_reference(s: &[u8], precision: u8, scale: u8) -> Option<String> {
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
        let group = |nbytes: usize,
                     ndig: usize,
                     p: &mut usize,
                     digits: &mut [u8; 96],
                     nd: &mut usize|
         -> Option<()> {
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
        let first_nz = int_digits
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(int_end);
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

    /// The decoder equals the reference on every precision and scale, for
    /// valid and invalid groups, zeros and negative zeros: random bytes plus
    /// the extremes of each byte.
    #[test]
    fn decimal_equals_reference() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for precision in 1..=65u8 {
            for scale in 0..=precision.min(30) {
                let intg = (precision - scale) as usize;
                let sc = scale as usize;
                let size = intg / 9 * 4 + DIG2BYTES[intg % 9] + sc / 9 * 4 + DIG2BYTES[sc % 9];
                for round in 0..200 {
                    let mut b: Vec<u8> = (0..size).map(|_| next() as u8).collect();
                    match round % 5 {
                        0 => b.iter_mut().for_each(|x| *x = 0x00),
                        1 => b.iter_mut().for_each(|x| *x = 0xff),
                        2 => b.iter_mut().skip(1).for_each(|x| *x = 0),
                        3 => b.iter_mut().for_each(|x| *x &= 0x1f),
                        _ => {}
                    }
                    if round % 2 == 0 {
                        if let Some(x) = b.first_mut() {
                            *x ^= 0x80;
                        }
                    }
                    assert_eq!(
                        decode_decimal(&b, precision, scale).as_deref(),
                        decode_decimal_reference(&b, precision, scale).as_deref(),
                        "DECIMAL({precision},{scale}) {b:02x?}"
                    );
                }
                // Valid encodings of both signs: random groups below their
                // limit, the sign bit set, every bit inverted when negative.
                let (i0, i0x, f0, f0x) = (intg / 9, intg % 9, sc / 9, sc % 9);
                let widths = std::iter::once(i0x)
                    .chain(std::iter::repeat_n(9, i0 + f0))
                    .chain(std::iter::once(f0x))
                    .filter(|&n| n > 0)
                    .collect::<Vec<_>>();
                for round in 0..40 {
                    let mut b = Vec::with_capacity(size);
                    for &n in &widths {
                        let v = match (round / 2) % 4 {
                            0 => 0,
                            1 => POW10[n] - 1,
                            _ => next() % POW10[n],
                        };
                        b.extend_from_slice(&v.to_be_bytes()[8 - DIG2BYTES[n]..]);
                    }
                    b[0] ^= 0x80;
                    if round % 2 == 1 {
                        b.iter_mut().for_each(|x| *x = !*x);
                    }
                    let got = decode_decimal(&b, precision, scale);
                    assert!(got.is_some(), "DECIMAL({precision},{scale}) {b:02x?}");
                    assert_eq!(
                        got.as_deref(),
                        decode_decimal_reference(&b, precision, scale).as_deref(),
                        "DECIMAL({precision},{scale}) {b:02x?}"
                    );
                }
                assert_eq!(
                    decode_decimal(&[0; 40][..size.saturating_sub(1)], precision, scale),
                    None
                );
            }
        }
    }
}
