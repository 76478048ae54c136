//! Name globs shared by the table filter and the column rules: `*` matches
//! any run of bytes (none included), `?` exactly one, anything else itself;
//! case-sensitive, like table names on Linux.

/// True when `s` matches the glob `p`.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}
