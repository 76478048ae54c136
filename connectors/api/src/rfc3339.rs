//! RFC 3339 UTC timestamps for humans: the checkpoint's `updated_at`,
//! commit times in `backup verify` and `restore`, and `restore
//! --until-time`. Milliseconds since the epoch on our side.
//!
//! Invariant: `parse_ms(&format_ms(t)) == Some(t)` for every `t` from
//! 1970 to 9999 (whole milliseconds).

use crate::json::civil_from_days;
use crate::parse::days_from_civil;

/// `2026-11-21T10:00:00Z`, or `...:00.123Z` when `ms` has a fraction.
pub fn format_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let frac = match ms % 1000 {
        0 => String::new(),
        f => format!(".{f:03}"),
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fff...](Z|+HH:MM|-HH:MM)` (a space may
/// replace the `T`); `None` when malformed or before 1970.
pub fn parse_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = s.split_at_checked(10)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => return None,
    };
    let offset_secs: i64 = match offset {
        "Z" | "z" => 0,
        o => {
            let (sign, hm) = o.split_at(1);
            let (h, m) = hm.split_once(':')?;
            let v = digits(h, 2)? * 3600 + digits(m, 2)? * 60;
            if sign == "-" {
                -v
            } else {
                v
            }
        }
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, se) = (t.next()?, t.next()?, t.next()?);
    let millis = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain("000".chars()).take(3).collect();
        digits(&f, 3)?
    };
    let (month, day) = (digits(mo, 2)?, digits(da, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(digits(y, 4)?, month, day);
    let secs =
        days * 86_400 + digits(h, 2)? * 3600 + digits(mi, 2)? * 60 + digits(se, 2)? - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

fn digits(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        for t in [0, 1_700_000_000_000, 1_700_000_000_123, 253_402_300_799_000] {
            assert_eq!(parse_ms(&format_ms(t)), Some(t), "{}", format_ms(t));
        }
        assert_eq!(format_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            parse_ms("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_ms("2023-11-14 22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_ms("2023-11-14T22:13:20"), None);
        assert_eq!(parse_ms("2023-13-14T22:13:20Z"), None);
    }
}
