//! GTID sets for both server flavours.
//!
//! * **MySQL** ([`MySqlGtidSet`]): a set of transactions, each named by a
//!   transaction source id (`uuid`, optionally with a MySQL 8.4+ `tag`) and a
//!   transaction number. Text form as printed by `@@gtid_executed`:
//!   `uuid:1-5:7:tag_a:1-3,uuid2:1-9`. Intervals are kept closed, sorted,
//!   disjoint and non-adjacent (`1-3:4-5` is stored and printed as `1-5`),
//!   UUIDs and tags are lowercase, UUIDs print in ascending order and, within
//!   a UUID, the untagged intervals first and then the tags in ascending
//!   order. The empty set is `""`.
//! * **MariaDB** ([`MariaDbGtidSet`]): a *position*, one GTID
//!   `domain-server-seq` per replication domain, e.g. `0-1-100,1-2-5`, printed
//!   in ascending domain order. In a domain, sequence numbers only grow (the
//!   server enforces it with `gtid_strict_mode`), so "contains" and "subset"
//!   compare sequence numbers per domain and ignore the server id.
//!
//! The MySQL set also produces and reads the binary "sid block" that
//! `COM_BINLOG_DUMP_GTID` carries and that `PREVIOUS_GTIDS_LOG_EVENT` holds
//! (see [`MySqlGtidSet::encode_sid_block`]).
//!
//! Invariants kept by every value of this module: a GTID number is in
//! `1..=MAX_GNO`; an interval set never holds an empty, overlapping or
//! adjacent interval; a tsid present in a set has at least one interval; a
//! tag is 1 to 32 characters of `[a-z_][a-z0-9_]*`. Parsing and `Display` are
//! inverse: `parse(x.to_string()) == x`.
//!
//! This module sits at the bottom of the api crate and imports only `Flavor`:
//! the source, the snapshot, the checkpoint, the config, the pipeline and
//! the apply sink all use GTID sets, and none depends on another for them.

use std::collections::BTreeMap;
use std::fmt;

use crate::event::Flavor;

/// Largest MySQL transaction number (`GNO_END - 1` in the server: 2^63 - 2).
pub const MAX_GNO: u64 = i64::MAX as u64 - 1;

/// Longest MySQL GTID tag, in characters.
pub const MAX_TAG_LEN: usize = 32;

/// Why a GTID, a GTID set or a sid block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    /// Text that is not a GTID / GTID set of the expected flavour.
    #[error("invalid {what} {input:?}: {reason}")]
    Parse {
        what: &'static str,
        input: String,
        reason: String,
    },
    /// A binary sid block that is truncated or malformed.
    #[error("malformed GTID set encoding: {0}")]
    Encoding(String),
    /// A MySQL GTID was applied to a MariaDB set or the other way round.
    #[error("cannot combine a {0} GTID with a {1} GTID set")]
    FlavorMismatch(&'static str, &'static str),
}

fn perr(what: &'static str, input: &str, reason: impl Into<String>) -> GtidError {
    GtidError::Parse {
        what,
        input: input.to_owned(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// Building blocks: UUID, tag, tsid
// ---------------------------------------------------------------------------

/// A server UUID (16 bytes). Text form: 36 characters, lowercase hex with
/// dashes (`3e11fa47-71ca-11e1-9e33-c80aa9429562`); parsing accepts either
/// case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// Parses the 36-character dashed form (surrounding whitespace allowed).
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() != 36 {
            return Err(perr(
                "UUID",
                s,
                "expected 36 characters like 3e11fa47-71ca-11e1-9e33-c80aa9429562",
            ));
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(perr("UUID", s, format!("expected '-' at position {i}")));
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    return Err(perr(
                        "UUID",
                        s,
                        format!("non-hex character at position {i}"),
                    ))
                }
            };
            out[nibbles / 2] |= if nibbles & 1 == 0 { v << 4 } else { v };
            nibbles += 1;
        }
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A MySQL 8.4+ GTID tag: 1..=32 characters, `[a-z_][a-z0-9_]*`, stored
/// lowercase (the server compares tags case-insensitively and normalizes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// Validates and lowercases a tag (surrounding whitespace allowed).
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(perr("GTID tag", s, "empty tag"));
        }
        if t.len() > MAX_TAG_LEN {
            return Err(perr(
                "GTID tag",
                s,
                format!("longer than {MAX_TAG_LEN} characters"),
            ));
        }
        for (i, c) in t.chars().enumerate() {
            let ok = c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit());
            if !ok {
                return Err(perr(
                    "GTID tag",
                    s,
                    format!("character {c:?} at position {i} (allowed: [a-z_][a-z0-9_]*)"),
                ));
            }
        }
        Ok(Tag(t.to_ascii_lowercase()))
    }

    /// The normalized (lowercase) tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Transaction source id: a UUID and an optional tag. Orders by UUID, then
/// untagged before tagged, then by tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tsid {
    pub uuid: Uuid,
    pub tag: Option<Tag>,
}

impl Tsid {
    /// An untagged tsid.
    pub fn new(uuid: Uuid) -> Self {
        Tsid { uuid, tag: None }
    }
}

impl fmt::Display for Tsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            None => write!(f, "{}", self.uuid),
            Some(t) => write!(f, "{}:{}", self.uuid, t),
        }
    }
}

fn parse_gno(s: &str, input: &str, what: &'static str) -> Result<u64, GtidError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(perr(
            what,
            input,
            format!("expected a transaction number, found {t:?}"),
        ));
    }
    let n: u64 = t
        .parse()
        .map_err(|_| perr(what, input, format!("number {t} out of range")))?;
    if n == 0 || n > MAX_GNO {
        return Err(perr(
            what,
            input,
            format!("transaction number {n} not in 1..={MAX_GNO}"),
        ));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// Single GTIDs
// ---------------------------------------------------------------------------

/// One MySQL transaction: `uuid[:tag]:gno`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MySqlGtid {
    pub tsid: Tsid,
    /// Transaction number, `1..=MAX_GNO`.
    pub gno: u64,
}

impl MySqlGtid {
    /// Parses `uuid:n` or `uuid:tag:n`.
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        const W: &str = "MySQL GTID";
        let parts: Vec<&str> = s.split(':').collect();
        let (uuid, tag, n) = match parts.as_slice() {
            [u, n] => (u, None, n),
            [u, t, n] => (u, Some(Tag::parse(t).map_err(|e| rewrap(e, W, s))?), n),
            _ => return Err(perr(W, s, "expected uuid:number or uuid:tag:number")),
        };
        let uuid = Uuid::parse(uuid).map_err(|e| rewrap(e, W, s))?;
        let gno = parse_gno(n, s, W)?;
        Ok(MySqlGtid {
            tsid: Tsid { uuid, tag },
            gno,
        })
    }
}

impl fmt::Display for MySqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tsid, self.gno)
    }
}

/// One MariaDB transaction: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariaDbGtid {
    pub domain_id: u32,
    pub server_id: u32,
    pub seq_no: u64,
}

impl MariaDbGtid {
    /// Parses `domain-server-seq` (each part decimal; whitespace allowed).
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        const W: &str = "MariaDB GTID";
        let parts: Vec<&str> = s.split('-').map(str::trim).collect();
        let [d, sv, n] = parts.as_slice() else {
            return Err(perr(W, s, "expected domain-server-seq, e.g. 0-1-100"));
        };
        let num = |x: &str| -> Result<u64, GtidError> {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(perr(W, s, format!("expected a number, found {x:?}")));
            }
            x.parse()
                .map_err(|_| perr(W, s, format!("number {x} out of range")))
        };
        let domain_id = u32::try_from(num(d)?).map_err(|_| perr(W, s, "domain id out of range"))?;
        let server_id =
            u32::try_from(num(sv)?).map_err(|_| perr(W, s, "server id out of range"))?;
        let seq_no = num(n)?;
        Ok(MariaDbGtid {
            domain_id,
            server_id,
            seq_no,
        })
    }
}

impl fmt::Display for MariaDbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain_id, self.server_id, self.seq_no)
    }
}

/// A single GTID of either flavour.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Gtid {
    MySql(MySqlGtid),
    MariaDb(MariaDbGtid),
}

impl Gtid {
    /// Parses a GTID in the notation of `flavor`.
    pub fn parse(flavor: Flavor, s: &str) -> Result<Self, GtidError> {
        match flavor {
            Flavor::MySql => MySqlGtid::parse(s).map(Gtid::MySql),
            Flavor::MariaDb => MariaDbGtid::parse(s).map(Gtid::MariaDb),
        }
    }

    pub fn flavor(&self) -> Flavor {
        match self {
            Gtid::MySql(_) => Flavor::MySql,
            Gtid::MariaDb(_) => Flavor::MariaDb,
        }
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MySql(g) => g.fmt(f),
            Gtid::MariaDb(g) => g.fmt(f),
        }
    }
}

fn rewrap(e: GtidError, what: &'static str, input: &str) -> GtidError {
    match e {
        GtidError::Parse { reason, .. } => perr(what, input, reason),
        other => other,
    }
}

// ---------------------------------------------------------------------------
// MySQL interval sets
// ---------------------------------------------------------------------------

/// Closed intervals `[start, end]`, sorted, disjoint and non-adjacent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Intervals(Vec<(u64, u64)>);

impl Intervals {
    /// Adds `[start, end]` (requires `1 <= start <= end <= MAX_GNO`),
    /// merging with overlapping and adjacent intervals. Returns whether
    /// anything new was added.
    fn insert(&mut self, start: u64, end: u64) -> bool {
        debug_assert!(1 <= start && start <= end && end <= MAX_GNO);
        let v = &mut self.0;
        // First interval that overlaps or touches [start, end] from the left.
        let i = v.partition_point(|&(_, e)| e + 1 < start);
        // Intervals from i up to j overlap or touch.
        let j = i + v[i..].iter().take_while(|&&(s, _)| s <= end + 1).count();
        if i == j {
            v.insert(i, (start, end));
            return true;
        }
        if j == i + 1 && v[i].0 <= start && end <= v[i].1 {
            return false;
        }
        let merged = (start.min(v[i].0), end.max(v[j - 1].1));
        v.splice(i..j, std::iter::once(merged));
        true
    }

    fn contains(&self, n: u64) -> bool {
        let i = self.0.partition_point(|&(_, e)| e < n);
        i < self.0.len() && self.0[i].0 <= n
    }

    /// Every interval of `self` lies inside one interval of `other` (the
    /// intervals of `other` are non-adjacent, so one is enough).
    fn is_subset(&self, other: &Intervals) -> bool {
        let mut j = 0;
        for &(s, e) in &self.0 {
            while j < other.0.len() && other.0[j].1 < s {
                j += 1;
            }
            match other.0.get(j) {
                Some(&(os, oe)) if os <= s && e <= oe => {}
                _ => return false,
            }
        }
        true
    }

    fn subtract(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        let mut j = 0;
        for &(s, e) in &self.0 {
            let mut cur = s;
            while j < other.0.len() && other.0[j].1 < cur {
                j += 1;
            }
            let mut k = j;
            while cur <= e {
                match other.0.get(k) {
                    Some(&(os, oe)) if os <= e => {
                        if os > cur {
                            out.push((cur, os - 1));
                        }
                        if oe >= e {
                            break;
                        }
                        cur = oe + 1;
                        k += 1;
                    }
                    _ => {
                        out.push((cur, e));
                        cur = e + 1;
                    }
                }
            }
        }
        Intervals(out)
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|&(s, e)| e - s + 1).sum()
    }
}

// ---------------------------------------------------------------------------
// MySQL GTID set
// ---------------------------------------------------------------------------

/// A MySQL GTID set (see the module docs for the text form and invariants).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MySqlGtidSet {
    sets: BTreeMap<Tsid, Intervals>,
}

impl MySqlGtidSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text form: comma-separated entries
    /// `uuid(:interval)*(:tag(:interval)+)*`, an interval being `n` or
    /// `a-b` (closed, `a <= b`). Whitespace (including the newlines of
    /// `@@gtid_executed`) is allowed around every token, redundant commas are
    /// ignored, entries may repeat and overlap (they are merged), UUIDs and
    /// tags in any case. Stricter than the server on two points: an entry or
    /// tag with no interval after it and an interval `a-b` with `b < a` are
    /// errors (the server ignores them silently).
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        const W: &str = "MySQL GTID set";
        let mut set = MySqlGtidSet::new();
        for entry in s.split(',') {
            if entry.trim().is_empty() {
                continue;
            }
            let mut parts = entry.split(':');
            let uuid = Uuid::parse(parts.next().unwrap_or("")).map_err(|e| rewrap(e, W, s))?;
            let mut tsid = Tsid::new(uuid);
            let mut intervals_for_tsid = 0usize;
            let mut first = true;
            for part in parts {
                let p = part.trim();
                if p.is_empty() {
                    return Err(perr(W, s, format!("empty element after {uuid}")));
                }
                if p.as_bytes()[0].is_ascii_digit() {
                    let (a, b) = match p.split_once('-') {
                        Some((a, b)) => (parse_gno(a, s, W)?, parse_gno(b, s, W)?),
                        None => {
                            let n = parse_gno(p, s, W)?;
                            (n, n)
                        }
                    };
                    if b < a {
                        return Err(perr(
                            W,
                            s,
                            format!("interval {a}-{b} ends before it starts"),
                        ));
                    }
                    set.sets.entry(tsid.clone()).or_default().insert(a, b);
                    intervals_for_tsid += 1;
                } else {
                    if !first && intervals_for_tsid == 0 {
                        return Err(perr(W, s, format!("{tsid} has no interval")));
                    }
                    tsid = Tsid {
                        uuid,
                        tag: Some(Tag::parse(p).map_err(|e| rewrap(e, W, s))?),
                    };
                    intervals_for_tsid = 0;
                }
                first = false;
            }
            if intervals_for_tsid == 0 {
                return Err(perr(W, s, format!("{tsid} has no interval")));
            }
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Whether any tsid carries a tag (then the sid block uses the tagged
    /// format).
    pub fn has_tags(&self) -> bool {
        self.sets.keys().any(|t| t.tag.is_some())
    }

    /// Adds one transaction. Returns `false` if it was already present.
    /// Panics if `gtid.gno` is outside `1..=MAX_GNO` (a parsed or decoded
    /// GTID never is).
    pub fn add(&mut self, gtid: &MySqlGtid) -> bool {
        self.add_interval(&gtid.tsid, gtid.gno, gtid.gno)
    }

    /// Adds the closed interval `[start, end]` for `tsid`. Returns `false`
    /// if all of it was already present. Panics unless
    /// `1 <= start <= end <= MAX_GNO`.
    pub fn add_interval(&mut self, tsid: &Tsid, start: u64, end: u64) -> bool {
        assert!(
            1 <= start && start <= end && end <= MAX_GNO,
            "bad GTID interval {start}-{end}"
        );
        match self.sets.get_mut(tsid) {
            Some(iv) => iv.insert(start, end),
            None => {
                self.sets
                    .insert(tsid.clone(), Intervals(vec![(start, end)]));
                true
            }
        }
    }

    pub fn contains(&self, gtid: &MySqlGtid) -> bool {
        self.sets
            .get(&gtid.tsid)
            .is_some_and(|iv| iv.contains(gtid.gno))
    }

    /// Whether every transaction of `self` is in `other`.
    pub fn is_subset(&self, other: &MySqlGtidSet) -> bool {
        self.sets
            .iter()
            .all(|(tsid, iv)| other.sets.get(tsid).is_some_and(|o| iv.is_subset(o)))
    }

    /// Adds every transaction of `other`.
    pub fn union_with(&mut self, other: &MySqlGtidSet) {
        for (tsid, iv) in &other.sets {
            for &(s, e) in &iv.0 {
                self.add_interval(tsid, s, e);
            }
        }
    }

    /// The transactions of `self` that are not in `other`.
    pub fn subtract(&self, other: &MySqlGtidSet) -> MySqlGtidSet {
        let mut out = MySqlGtidSet::new();
        for (tsid, iv) in &self.sets {
            let rest = match other.sets.get(tsid) {
                Some(o) => iv.subtract(o),
                None => iv.clone(),
            };
            if !rest.0.is_empty() {
                out.sets.insert(tsid.clone(), rest);
            }
        }
        out
    }

    /// Number of transactions in the set.
    pub fn count(&self) -> u64 {
        self.sets.values().map(Intervals::count).sum()
    }

    /// The tsids with their closed intervals `(start, end)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Tsid, &[(u64, u64)])> {
        self.sets.iter().map(|(t, iv)| (t, iv.0.as_slice()))
    }

    /// The sid block of `COM_BINLOG_DUMP_GTID` (the bytes after its
    /// `data_size` field), in the encoding MySQL's `Gtid_set::encode` uses:
    ///
    /// * untagged format (no tag in the set; every MySQL version):
    ///   `n_sids: u64 LE`, then per tsid `uuid: [u8; 16]`,
    ///   `n_intervals: u64 LE`, and per interval `start: u64 LE`,
    ///   `end: u64 LE` with **end exclusive** (text `1-5` is sent as `[1, 6)`).
    /// * tagged format (any tag present; MySQL 8.3+, "Binary v1"): the first
    ///   u64 is `1 << 56 | n_sids << 8 | 1` (format byte 1 in the top and the
    ///   bottom byte, count in the 6 bytes between), and each tsid is
    ///   `uuid`, then the tag as a mysql::serialization string (varlen length,
    ///   which for `len <= 32` is the single byte `len << 1`, then the
    ///   bytes; an untagged tsid has length 0), then the intervals as above.
    ///
    /// Tsids are written in [`Tsid`] order.
    pub fn encode_sid_block(&self) -> Vec<u8> {
        let tagged = self.has_tags();
        let n = self.sets.len() as u64;
        let mut buf = Vec::with_capacity(8 + self.sets.len() * 48);
        let header = if tagged {
            (1u64 << 56) | (n << 8) | 1
        } else {
            n
        };
        buf.extend_from_slice(&header.to_le_bytes());
        for (tsid, iv) in &self.sets {
            buf.extend_from_slice(&tsid.uuid.0);
            if tagged {
                let tag = tsid.tag.as_ref().map(Tag::as_str).unwrap_or("");
                write_varlen(&mut buf, tag.len() as u64);
                buf.extend_from_slice(tag.as_bytes());
            }
            buf.extend_from_slice(&(iv.0.len() as u64).to_le_bytes());
            for &(s, e) in &iv.0 {
                buf.extend_from_slice(&s.to_le_bytes());
                buf.extend_from_slice(&(e + 1).to_le_bytes());
            }
        }
        buf
    }

    /// Reads a sid block in either format of [`Self::encode_sid_block`]
    /// (also the body of `PREVIOUS_GTIDS_LOG_EVENT`). The whole buffer must
    /// be consumed. The tagged header is accepted with any bottom byte
    /// (MySQL's own `rpl_gtid_set.cc` decoder checks only the top one).
    pub fn decode_sid_block(buf: &[u8]) -> Result<Self, GtidError> {
        let mut r = Reader { buf, pos: 0 };
        let header = r.u64()?;
        let format = (header >> 56) as u8;
        let (tagged, n_sids) = match format {
            0 => (false, header & 0x00ff_ffff_ffff_ffff),
            1 => (true, (header >> 8) & 0x0000_ffff_ffff_ffff),
            f => return Err(GtidError::Encoding(format!("unknown GTID set format {f}"))),
        };
        let mut set = MySqlGtidSet::new();
        for _ in 0..n_sids {
            let uuid = Uuid(r.array()?);
            let tag = if tagged {
                let len = r.varlen()?;
                if len > MAX_TAG_LEN as u64 {
                    return Err(GtidError::Encoding(format!(
                        "tag length {len} > {MAX_TAG_LEN}"
                    )));
                }
                let bytes = r.take(len as usize)?;
                if bytes.is_empty() {
                    None
                } else {
                    let s = std::str::from_utf8(bytes)
                        .map_err(|_| GtidError::Encoding("tag is not ASCII".into()))?;
                    Some(Tag::parse(s).map_err(|e| GtidError::Encoding(e.to_string()))?)
                }
            } else {
                None
            };
            let tsid = Tsid { uuid, tag };
            let n_intervals = r.u64()?;
            if n_intervals > (r.buf.len() - r.pos) as u64 / 16 {
                return Err(GtidError::Encoding(format!(
                    "{n_intervals} intervals do not fit"
                )));
            }
            for _ in 0..n_intervals {
                let (s, e) = (r.u64()?, r.u64()?);
                if s == 0 || e <= s || e - 1 > MAX_GNO {
                    return Err(GtidError::Encoding(format!("bad interval [{s}, {e})")));
                }
                set.add_interval(&tsid, s, e - 1);
            }
        }
        if r.pos != buf.len() {
            return Err(GtidError::Encoding(format!(
                "{} trailing bytes",
                buf.len() - r.pos
            )));
        }
        Ok(set)
    }
}

/// mysql::serialization unsigned varlen integer: the number of trailing one
/// bits of the first byte, plus one, is the byte count; the value follows
/// those bits, little-endian.
fn write_varlen(buf: &mut Vec<u8>, v: u64) {
    let bits = 64 - v.leading_zeros() as usize;
    let n = ((bits * 575) >> 12) + 1; // 1..=9, as MySQL computes it
    if n == 9 {
        buf.push(0xff);
        buf.extend_from_slice(&v.to_le_bytes());
        return;
    }
    let encoded = (v << n) | ((1u64 << (n - 1)) - 1);
    buf.extend_from_slice(&encoded.to_le_bytes()[..n]);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GtidError> {
        if self.buf.len() - self.pos < n {
            return Err(GtidError::Encoding(format!(
                "truncated: need {n} bytes at offset {}, have {}",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64, GtidError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next `N` bytes as an array (`take` checked the length).
    fn array<const N: usize>(&mut self) -> Result<[u8; N], GtidError> {
        let s = self.take(N)?;
        s.try_into()
            .map_err(|_| GtidError::Encoding(format!("expected {N} bytes, got {}", s.len())))
    }

    fn varlen(&mut self) -> Result<u64, GtidError> {
        let first = self.take(1)?[0];
        let n = first.trailing_ones() as usize + 1;
        if n == 9 {
            return self.u64();
        }
        let rest = self.take(n - 1)?;
        let mut le = [0u8; 8];
        le[0] = first;
        le[1..n].copy_from_slice(rest);
        Ok(u64::from_le_bytes(le) >> n)
    }
}

impl fmt::Display for MySqlGtidSet {
    /// Compact form `uuid:1-5:tag:3,uuid2:7`. The alternate form (`{:#}`)
    /// separates UUIDs with `",\n"` exactly as `@@gtid_executed` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if f.alternate() { ",\n" } else { "," };
        let mut last: Option<Uuid> = None;
        for (tsid, iv) in &self.sets {
            if last != Some(tsid.uuid) {
                if last.is_some() {
                    f.write_str(sep)?;
                }
                write!(f, "{}", tsid.uuid)?;
                last = Some(tsid.uuid);
            }
            if let Some(tag) = &tsid.tag {
                write!(f, ":{tag}")?;
            }
            for &(s, e) in &iv.0 {
                if s == e {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{e}")?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// MariaDB GTID position
// ---------------------------------------------------------------------------

/// A MariaDB GTID position: at most one GTID per replication domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariaDbGtidSet {
    domains: BTreeMap<u32, MariaDbGtid>,
}

impl MariaDbGtidSet {
    /// The empty position (replicate from the start of the binlog history).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `d-s-n(,d-s-n)*` (whitespace around entries allowed, empty
    /// string = empty position). Two entries for one domain are an error, as
    /// in the server.
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        const W: &str = "MariaDB GTID position";
        let mut set = MariaDbGtidSet::new();
        if s.trim().is_empty() {
            return Ok(set);
        }
        for entry in s.split(',') {
            if entry.trim().is_empty() {
                return Err(perr(W, s, "empty entry"));
            }
            let g = MariaDbGtid::parse(entry).map_err(|e| rewrap(e, W, s))?;
            if set.domains.insert(g.domain_id, g).is_some() {
                return Err(perr(W, s, format!("domain {} appears twice", g.domain_id)));
            }
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Sets the position of `gtid`'s domain to `gtid` (whatever it was).
    pub fn add(&mut self, gtid: &MariaDbGtid) {
        self.domains.insert(gtid.domain_id, *gtid);
    }

    /// The position of one domain.
    pub fn get(&self, domain_id: u32) -> Option<&MariaDbGtid> {
        self.domains.get(&domain_id)
    }

    /// Whether the position is at or past `gtid`: its domain is present with
    /// a `seq_no >= gtid.seq_no` (server ids are not compared).
    pub fn contains(&self, gtid: &MariaDbGtid) -> bool {
        self.domains
            .get(&gtid.domain_id)
            .is_some_and(|g| g.seq_no >= gtid.seq_no)
    }

    /// Whether `other` is at or past `self` in every domain of `self`.
    pub fn is_subset(&self, other: &MariaDbGtidSet) -> bool {
        self.domains.values().all(|g| other.contains(g))
    }

    /// The per-domain GTIDs in ascending domain order.
    pub fn iter(&self) -> impl Iterator<Item = &MariaDbGtid> {
        self.domains.values()
    }
}

impl fmt::Display for MariaDbGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Either flavour
// ---------------------------------------------------------------------------

/// A GTID set of either flavour, in the server's own notation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GtidSet {
    MySql(MySqlGtidSet),
    MariaDb(MariaDbGtidSet),
}

impl GtidSet {
    /// The empty set of `flavor`.
    pub fn empty(flavor: Flavor) -> Self {
        match flavor {
            Flavor::MySql => GtidSet::MySql(MySqlGtidSet::new()),
            Flavor::MariaDb => GtidSet::MariaDb(MariaDbGtidSet::new()),
        }
    }

    /// Parses `s` in the notation of `flavor`.
    pub fn parse(flavor: Flavor, s: &str) -> Result<Self, GtidError> {
        match flavor {
            Flavor::MySql => MySqlGtidSet::parse(s).map(GtidSet::MySql),
            Flavor::MariaDb => MariaDbGtidSet::parse(s).map(GtidSet::MariaDb),
        }
    }

    pub fn flavor(&self) -> Flavor {
        match self {
            GtidSet::MySql(_) => Flavor::MySql,
            GtidSet::MariaDb(_) => Flavor::MariaDb,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MySql(s) => s.is_empty(),
            GtidSet::MariaDb(s) => s.is_empty(),
        }
    }

    /// The `COM_BINLOG_DUMP_GTID` sid block of a MySQL set (see
    /// [`MySqlGtidSet::encode_sid_block`]). A MariaDB position has none
    /// (MariaDB takes `SET @slave_connect_state = '<position>'`): for it this
    /// returns the block of the empty set, 8 zero bytes.
    pub fn encode_sid_block(&self) -> Vec<u8> {
        match self {
            GtidSet::MySql(s) => s.encode_sid_block(),
            GtidSet::MariaDb(_) => MySqlGtidSet::new().encode_sid_block(),
        }
    }

    /// MySQL: adds the transaction; MariaDB: sets the domain's position.
    /// Errors only when the flavours differ.
    pub fn add(&mut self, gtid: &Gtid) -> Result<(), GtidError> {
        match (self, gtid) {
            (GtidSet::MySql(s), Gtid::MySql(g)) => {
                s.add(g);
                Ok(())
            }
            (GtidSet::MariaDb(s), Gtid::MariaDb(g)) => {
                s.add(g);
                Ok(())
            }
            (set, g) => Err(GtidError::FlavorMismatch(
                g.flavor().as_str(),
                set.flavor().as_str(),
            )),
        }
    }

    /// Whether the set contains `gtid` (see the flavour's `contains`);
    /// `false` when the flavours differ.
    pub fn contains(&self, gtid: &Gtid) -> bool {
        match (self, gtid) {
            (GtidSet::MySql(s), Gtid::MySql(g)) => s.contains(g),
            (GtidSet::MariaDb(s), Gtid::MariaDb(g)) => s.contains(g),
            _ => false,
        }
    }

    /// The position of this set in the server's linear history (see
    /// `rowstream_api::Source::sequence`): MySQL, the number of transactions
    /// in the set; MariaDB, the sum of the domains' sequence numbers.
    /// Saturates instead of overflowing.
    pub fn sequence(&self) -> u64 {
        match self {
            GtidSet::MySql(s) => s.count(),
            GtidSet::MariaDb(s) => s.iter().fold(0u64, |a, g| a.saturating_add(g.seq_no)),
        }
    }

    /// [`GtidSet::sequence`] of this set with `gtid` added, computed from
    /// `current` (this set's own sequence) without touching the set: one
    /// lookup per transaction instead of a walk over every interval or domain.
    pub fn sequence_with(&self, current: u64, gtid: &Gtid) -> u64 {
        match (self, gtid) {
            (GtidSet::MySql(s), Gtid::MySql(g)) => current + u64::from(!s.contains(g)),
            (GtidSet::MariaDb(s), Gtid::MariaDb(g)) => {
                let old = s.get(g.domain_id).map_or(0, |o| o.seq_no);
                current.saturating_sub(old).saturating_add(g.seq_no)
            }
            _ => current,
        }
    }

    /// MySQL: set inclusion; MariaDB: `other` is at or past `self` in every
    /// domain of `self`. `false` when the flavours differ.
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        match (self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => a.is_subset(b),
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => a.is_subset(b),
            _ => false,
        }
    }

    /// The smallest set containing both: MySQL, every transaction of
    /// either; MariaDB, per domain the later position (a position contains
    /// everything before it in its domain). Unchanged when the flavours
    /// differ.
    pub fn union_with(&mut self, other: &GtidSet) {
        match (self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => a.union_with(b),
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                for g in b.iter() {
                    if !a.contains(g) {
                        a.add(g);
                    }
                }
            }
            _ => {}
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MySql(s) => s.fmt(f),
            GtidSet::MariaDb(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_counts_the_linear_history() {
        // MySQL: the size of the set, whichever UUIDs (a promoted replica has others).
        let mut s = GtidSet::parse(Flavor::MySql, &format!("{U1}:1-5,{U2}:1-2")).unwrap();
        assert_eq!(s.sequence(), 7);
        let g = Gtid::parse(Flavor::MySql, &format!("{U2}:3")).unwrap();
        assert_eq!(s.sequence_with(7, &g), 8);
        s.add(&g).unwrap();
        assert_eq!(s.sequence(), 8);
        // Already in the set: a replay keeps its number.
        let old = Gtid::parse(Flavor::MySql, &format!("{U1}:4")).unwrap();
        assert_eq!(s.sequence_with(8, &old), 8);
        // MariaDB: the sum over domains of the last seq_no; the server id does not count.
        let mut m = GtidSet::parse(Flavor::MariaDb, "0-1-100,1-2-5").unwrap();
        assert_eq!(m.sequence(), 105);
        let g = Gtid::parse(Flavor::MariaDb, "0-3-101").unwrap();
        assert_eq!(m.sequence_with(105, &g), 106);
        m.add(&g).unwrap();
        assert_eq!(m.sequence(), 106);
        let new_domain = Gtid::parse(Flavor::MariaDb, "7-1-1").unwrap();
        assert_eq!(m.sequence_with(106, &new_domain), 107);
        assert_eq!(GtidSet::empty(Flavor::MariaDb).sequence(), 0);
    }

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";

    fn my(s: &str) -> MySqlGtidSet {
        MySqlGtidSet::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn ma(s: &str) -> MariaDbGtidSet {
        MariaDbGtidSet::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn uuid_bytes(s: &str) -> [u8; 16] {
        Uuid::parse(s).unwrap().0
    }

    #[test]
    fn uuid_round_trip_and_case() {
        let u = Uuid::parse("3E11FA47-71CA-11E1-9E33-C80AA9429562").unwrap();
        assert_eq!(u.to_string(), U1);
        assert_eq!(u.0[0], 0x3e);
        assert_eq!(u.0[15], 0x62);
        for bad in [
            "",
            "3e11fa47",
            "3e11fa4771ca11e19e33c80aa9429562",
            "3e11fa47-71ca-11e1-9e33-c80aa942956g",
            "3e11fa47_71ca-11e1-9e33-c80aa9429562",
        ] {
            assert!(Uuid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_validate_and_lowercase() {
        assert_eq!(Tag::parse("Tag_1").unwrap().as_str(), "tag_1");
        assert_eq!(Tag::parse("_x").unwrap().as_str(), "_x");
        assert!(Tag::parse("1abc").is_err());
        assert!(Tag::parse("a-b").is_err());
        assert!(Tag::parse("").is_err());
        assert!(Tag::parse(&"a".repeat(32)).is_ok());
        assert!(Tag::parse(&"a".repeat(33)).is_err());
        assert!(Tag::parse("é").is_err());
    }

    #[test]
    fn empty_set() {
        let s = my("");
        assert!(s.is_empty());
        assert_eq!(s.to_string(), "");
        assert_eq!(my("  \n ").to_string(), "");
        assert_eq!(my(",,").to_string(), "");
        assert_eq!(ma("").to_string(), "");
        assert_eq!(GtidSet::empty(Flavor::MySql).to_string(), "");
    }

    #[test]
    fn parse_format_round_trips() {
        for s in [
            format!("{U1}:1"),
            format!("{U1}:1-5"),
            format!("{U1}:1-5:7:9-12"),
            format!("{U1}:1-5,{U2}:3"),
            format!("{U1}:tag:1-5"),
            format!("{U1}:1-3:alpha:1:beta:2-4,{U2}:9"),
            format!("{U1}:{}", MAX_GNO),
        ] {
            let set = my(&s);
            assert_eq!(set.to_string(), s);
            assert_eq!(my(&set.to_string()), set);
        }
    }

    #[test]
    fn merges_sorts_and_normalizes() {
        // adjacent, overlapping, unordered, duplicated, mixed case, whitespace
        let s = my(&format!(
            " {}: 7 :1-3:4 - 5 ,\n{U2}:2,\n{U1}:6:20-30:25-40 ",
            U1.to_uppercase()
        ));
        assert_eq!(s.to_string(), format!("{U1}:1-7:20-40,{U2}:2"));
        // UUIDs are sorted, tags sorted after the untagged intervals
        let s = my(&format!("{U2}:1,{U1}:Zeta:1:alpha:3-4:5,{U1}:2"));
        assert_eq!(s.to_string(), format!("{U1}:2:alpha:3-5:zeta:1,{U2}:1"));
        // alternate form matches @@gtid_executed
        assert_eq!(
            format!("{s:#}"),
            format!("{U1}:2:alpha:3-5:zeta:1,\n{U2}:1")
        );
        assert_eq!(s.count(), 6);
    }

    #[test]
    fn real_gtid_executed_with_newlines() {
        let text = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-23,\n8a94f357-aab4-11df-86ab-c80aa9429562:1-5:11-18";
        let s = my(text);
        assert_eq!(format!("{s:#}"), text);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            U1.to_string(),
            format!("{U1}:"),
            format!("{U1}:0"),
            format!("{U1}:5-3"),
            format!("{U1}:1-"),
            format!("{U1}:-1"),
            format!("{U1}:tag"),
            format!("{U1}:tag:1:other"),
            format!("{U1}:1:tag:other:2"),
            format!("{U1}:1a"),
            format!("{U1}:1:9tag:2"),
            format!("{U1}:{}", MAX_GNO + 1),
            format!("{U1}:99999999999999999999999"),
            "nonsense:1".to_string(),
            format!("{U1}:1;{U2}:1"),
        ] {
            assert!(MySqlGtidSet::parse(&bad).is_err(), "{bad:?} should fail");
        }
        let e = MySqlGtidSet::parse(&format!("{U1}:0")).unwrap_err();
        assert!(e.to_string().contains("MySQL GTID set"), "{e}");
    }

    #[test]
    fn add_contains_and_merge_adjacent() {
        let mut s = MySqlGtidSet::new();
        let g = |n| MySqlGtid::parse(&format!("{U1}:{n}")).unwrap();
        assert!(s.add(&g(3)));
        assert!(s.add(&g(1)));
        assert_eq!(s.to_string(), format!("{U1}:1:3"));
        assert!(s.add(&g(2)));
        assert_eq!(s.to_string(), format!("{U1}:1-3"));
        assert!(!s.add(&g(2)));
        assert!(s.add(&g(4)));
        assert!(s.add(&g(6)));
        assert_eq!(s.to_string(), format!("{U1}:1-4:6"));
        assert!(s.contains(&g(4)));
        assert!(!s.contains(&g(5)));
        assert!(!s.contains(&g(7)));
        let tagged = MySqlGtid::parse(&format!("{U1}:T:4")).unwrap();
        assert_eq!(tagged.tsid.tag.as_ref().unwrap().as_str(), "t");
        assert!(!s.contains(&tagged));
        assert!(s.add(&tagged));
        assert!(s.contains(&tagged));
        assert_eq!(s.to_string(), format!("{U1}:1-4:6:t:4"));
        // bridging interval merges three
        let mut s = my(&format!("{U1}:1-2:5-6:9-10"));
        s.add_interval(&Tsid::new(Uuid::parse(U1).unwrap()), 3, 8);
        assert_eq!(s.to_string(), format!("{U1}:1-10"));
    }

    #[test]
    fn single_gtid_parse_and_display() {
        let g = MySqlGtid::parse(&format!("{}:Tag:42", U1.to_uppercase())).unwrap();
        assert_eq!(g.to_string(), format!("{U1}:tag:42"));
        assert_eq!(
            MySqlGtid::parse(&format!("{U1}:42")).unwrap().to_string(),
            format!("{U1}:42")
        );
        assert!(MySqlGtid::parse(&format!("{U1}:1-2")).is_err());
        assert!(MySqlGtid::parse(&format!("{U1}:0")).is_err());
        assert!(MySqlGtid::parse(U1).is_err());
        let m = MariaDbGtid::parse("0-1-100").unwrap();
        assert_eq!((m.domain_id, m.server_id, m.seq_no), (0, 1, 100));
        assert_eq!(m.to_string(), "0-1-100");
        assert!(MariaDbGtid::parse("0-1").is_err());
        assert!(MariaDbGtid::parse("0-1-2-3").is_err());
        assert!(MariaDbGtid::parse("4294967296-1-2").is_err());
        assert!(MariaDbGtid::parse("a-1-2").is_err());
        assert_eq!(
            Gtid::parse(Flavor::MariaDb, "1-2-3").unwrap().to_string(),
            "1-2-3"
        );
        assert_eq!(
            Gtid::parse(Flavor::MySql, &format!("{U1}:5"))
                .unwrap()
                .flavor(),
            Flavor::MySql
        );
        assert!(Gtid::parse(Flavor::MySql, "1-2-3").is_err());
    }

    #[test]
    fn subset_and_subtract() {
        let a = my(&format!("{U1}:1-5:t:1"));
        let b = my(&format!("{U1}:1-10:t:1-2,{U2}:1"));
        assert!(a.is_subset(&b));
        assert!(!b.is_subset(&a));
        assert!(a.is_subset(&a));
        assert!(MySqlGtidSet::new().is_subset(&a));
        assert!(!a.is_subset(&MySqlGtidSet::new()));
        assert!(!my(&format!("{U1}:1-5")).is_subset(&my(&format!("{U1}:1-4:6"))));
        assert!(!my(&format!("{U1}:4-6")).is_subset(&my(&format!("{U1}:1-5:7-9"))));
        assert!(my(&format!("{U1}:2:8")).is_subset(&my(&format!("{U1}:1-5:7-9"))));
        // tagged and untagged are different tsids
        assert!(!my(&format!("{U1}:t:1")).is_subset(&my(&format!("{U1}:1"))));

        assert_eq!(b.subtract(&a).to_string(), format!("{U1}:6-10:t:2,{U2}:1"));
        assert_eq!(a.subtract(&b).to_string(), "");
        let x = my(&format!("{U1}:1-20"));
        let y = my(&format!("{U1}:1-2:5:7-9:20-30"));
        assert_eq!(x.subtract(&y).to_string(), format!("{U1}:3-4:6:10-19"));
        assert_eq!(y.subtract(&x).to_string(), format!("{U1}:21-30"));
        let mut u = x.clone();
        u.union_with(&y);
        assert_eq!(u.to_string(), format!("{U1}:1-30"));
    }

    /// Interval arithmetic against a brute-force model on small numbers.
    #[test]
    fn intervals_match_a_naive_model() {
        use std::collections::BTreeSet;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let tsid = Tsid::new(Uuid::parse(U1).unwrap());
        for _ in 0..500 {
            let mut sets = [
                (MySqlGtidSet::new(), BTreeSet::new()),
                (MySqlGtidSet::new(), BTreeSet::new()),
            ];
            for (set, model) in sets.iter_mut() {
                for _ in 0..next(6) {
                    let a = 1 + next(40);
                    let b = a + next(5);
                    let added = set.add_interval(&tsid, a, b);
                    let before = model.len();
                    model.extend(a..=b);
                    assert_eq!(added, model.len() > before);
                }
                let ivs = set
                    .iter()
                    .next()
                    .map(|(_, iv)| iv.to_vec())
                    .unwrap_or_default();
                // sorted, disjoint, non-adjacent
                assert!(ivs.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{ivs:?}");
                assert_eq!(set.count(), model.len() as u64);
                for n in 0..50 {
                    let g = MySqlGtid {
                        tsid: tsid.clone(),
                        gno: n.max(1),
                    };
                    assert_eq!(set.contains(&g), model.contains(&n.max(1)));
                }
                assert_eq!(MySqlGtidSet::parse(&set.to_string()).unwrap(), *set);
                assert_eq!(
                    MySqlGtidSet::decode_sid_block(&set.encode_sid_block()).unwrap(),
                    *set
                );
            }
            let [(a, ma_), (b, mb)] = &sets;
            assert_eq!(a.is_subset(b), ma_.is_subset(mb));
            let diff = a.subtract(b);
            let want: BTreeSet<u64> = ma_.difference(mb).copied().collect();
            let got: BTreeSet<u64> = diff
                .iter()
                .flat_map(|(_, iv)| iv.iter().flat_map(|&(s, e)| s..=e))
                .collect();
            assert_eq!(got, want);
            let mut u = a.clone();
            u.union_with(b);
            assert_eq!(u.count(), ma_.union(mb).count() as u64);
        }
    }

    #[test]
    fn sid_block_untagged_byte_exact() {
        let s = my(&format!("{U1}:1-5:7"));
        let mut want = Vec::new();
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&uuid_bytes(U1));
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&6u64.to_le_bytes()); // end exclusive
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(&8u64.to_le_bytes());
        let got = s.encode_sid_block();
        assert_eq!(got, want);
        assert_eq!(got.len(), 8 + 16 + 8 + 2 * 16);
        // literal bytes of the head, so a LE/BE slip cannot hide
        assert_eq!(&got[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&got[8..12], &[0x3e, 0x11, 0xfa, 0x47]);
        assert_eq!(
            &got[32..48],
            &[1, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(MySqlGtidSet::decode_sid_block(&got).unwrap(), s);
    }

    #[test]
    fn sid_block_empty() {
        let got = MySqlGtidSet::new().encode_sid_block();
        assert_eq!(got, vec![0u8; 8]);
        assert!(MySqlGtidSet::decode_sid_block(&got).unwrap().is_empty());
    }

    #[test]
    fn sid_block_two_uuids_sorted() {
        let s = my(&format!("{U2}:3,{U1}:1"));
        let got = s.encode_sid_block();
        assert_eq!(&got[..8], &2u64.to_le_bytes());
        assert_eq!(&got[8..24], &uuid_bytes(U1));
        assert_eq!(&got[24 + 8 + 16..24 + 8 + 16 + 16], &uuid_bytes(U2));
        assert_eq!(MySqlGtidSet::decode_sid_block(&got).unwrap(), s);
    }

    #[test]
    fn sid_block_tagged_byte_exact() {
        let s = my(&format!("{U1}:1-3:tag:5"));
        let got = s.encode_sid_block();
        let mut want = Vec::new();
        // format 1 in the top and bottom byte, n_sids = 2 in bytes 1..7
        want.extend_from_slice(&[0x01, 0x02, 0, 0, 0, 0, 0, 0x01]);
        // untagged tsid first: uuid, empty tag (varlen 0), intervals
        want.extend_from_slice(&uuid_bytes(U1));
        want.push(0x00);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&4u64.to_le_bytes());
        // tagged tsid: uuid, varlen(3) = 3 << 1 = 0x06, "tag", intervals
        want.extend_from_slice(&uuid_bytes(U1));
        want.extend_from_slice(&[0x06, b't', b'a', b'g']);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(&6u64.to_le_bytes());
        assert_eq!(got, want);
        assert_eq!(MySqlGtidSet::decode_sid_block(&got).unwrap(), s);
    }

    #[test]
    fn sid_block_tagged_max_len_tag() {
        let tag = "a".repeat(32);
        let s = my(&format!("{U1}:{tag}:1"));
        let got = s.encode_sid_block();
        assert_eq!(&got[..8], &[0x01, 0x01, 0, 0, 0, 0, 0, 0x01]);
        assert_eq!(got[24], 64); // 32 << 1
        assert_eq!(&got[25..57], tag.as_bytes());
        assert_eq!(MySqlGtidSet::decode_sid_block(&got).unwrap(), s);
    }

    #[test]
    fn varlen_matches_mysql() {
        let enc = |v: u64| {
            let mut b = Vec::new();
            write_varlen(&mut b, v);
            b
        };
        assert_eq!(enc(0), vec![0x00]);
        assert_eq!(enc(3), vec![0x06]);
        assert_eq!(enc(127), vec![0xfe]);
        assert_eq!(enc(128), vec![0x01, 0x02]); // (128 << 2 | 1) LE
        assert_eq!(enc(u64::MAX), [vec![0xff], vec![0xff; 8]].concat());
        for v in [
            0,
            1,
            63,
            64,
            127,
            128,
            300,
            1 << 20,
            1 << 40,
            (1 << 56) - 1,
            1 << 56,
            u64::MAX,
        ] {
            let b = enc(v);
            let mut r = Reader { buf: &b, pos: 0 };
            assert_eq!(r.varlen().unwrap(), v);
            assert_eq!(r.pos, b.len());
        }
    }

    #[test]
    fn sid_block_decode_rejects_garbage() {
        let good = my(&format!("{U1}:1-5")).encode_sid_block();
        assert!(MySqlGtidSet::decode_sid_block(&good[..good.len() - 1]).is_err());
        assert!(MySqlGtidSet::decode_sid_block(&[good.clone(), vec![0]].concat()).is_err());
        let mut bad = good.clone();
        bad[7] = 7; // unknown format
        assert!(MySqlGtidSet::decode_sid_block(&bad).is_err());
        let mut bad = good.clone();
        bad[40..48].copy_from_slice(&1u64.to_le_bytes()); // end <= start
        assert!(MySqlGtidSet::decode_sid_block(&bad).is_err());
        let mut bad = good;
        bad[24..32].copy_from_slice(&u64::MAX.to_le_bytes()); // absurd n_intervals
        assert!(MySqlGtidSet::decode_sid_block(&bad).is_err());
        assert!(MySqlGtidSet::decode_sid_block(&[]).is_err());
    }

    #[test]
    fn sid_block_decode_tolerates_tagged_header_without_low_byte() {
        let s = my(&format!("{U1}:x:1"));
        let mut b = s.encode_sid_block();
        b[0] = 0; // as mysql_common 0.37 writes it
        assert_eq!(MySqlGtidSet::decode_sid_block(&b).unwrap(), s);
    }

    #[test]
    fn mariadb_parse_format() {
        let s = ma(" 1-2-5 , 0-1-100 ");
        assert_eq!(s.to_string(), "0-1-100,1-2-5");
        assert_eq!(ma(&s.to_string()), s);
        assert_eq!(s.get(1).unwrap().seq_no, 5);
        assert!(s.get(7).is_none());
        assert_eq!(s.iter().count(), 2);
        assert!(MariaDbGtidSet::parse("0-1-1,0-2-2").is_err());
        assert!(MariaDbGtidSet::parse("0-1-1,").is_err());
        assert!(MariaDbGtidSet::parse("0-1").is_err());
        assert!(MariaDbGtidSet::parse(&format!("{U1}:1")).is_err());
    }

    #[test]
    fn mariadb_add_contains_subset() {
        let mut s = ma("0-1-100,1-2-5");
        s.add(&MariaDbGtid::parse("1-3-6").unwrap());
        s.add(&MariaDbGtid::parse("2-1-1").unwrap());
        assert_eq!(s.to_string(), "0-1-100,1-3-6,2-1-1");
        // add sets the position, even backwards
        s.add(&MariaDbGtid::parse("0-1-50").unwrap());
        assert_eq!(s.to_string(), "0-1-50,1-3-6,2-1-1");
        assert!(s.contains(&MariaDbGtid::parse("0-9-50").unwrap()));
        assert!(s.contains(&MariaDbGtid::parse("0-1-3").unwrap()));
        assert!(!s.contains(&MariaDbGtid::parse("0-1-51").unwrap()));
        assert!(!s.contains(&MariaDbGtid::parse("5-1-1").unwrap()));

        assert!(ma("0-1-10").is_subset(&ma("0-1-10,1-1-1")));
        assert!(ma("0-1-10").is_subset(&ma("0-2-11")));
        assert!(!ma("0-1-10").is_subset(&ma("0-1-9")));
        assert!(!ma("0-1-10,1-1-1").is_subset(&ma("0-1-10")));
        assert!(ma("").is_subset(&ma("0-1-1")));
    }

    #[test]
    fn enum_dispatch() {
        let mut s = GtidSet::parse(Flavor::MySql, &format!("{U1}:1-3")).unwrap();
        assert_eq!(s.flavor(), Flavor::MySql);
        let g4 = Gtid::parse(Flavor::MySql, &format!("{U1}:4")).unwrap();
        assert!(!s.contains(&g4));
        s.add(&g4).unwrap();
        assert!(s.contains(&g4));
        assert_eq!(s.to_string(), format!("{U1}:1-4"));
        let m = Gtid::parse(Flavor::MariaDb, "0-1-1").unwrap();
        assert!(matches!(
            s.add(&m),
            Err(GtidError::FlavorMismatch("mariadb", "mysql"))
        ));
        assert!(!s.contains(&m));

        let mut p = GtidSet::parse(Flavor::MariaDb, "0-1-1").unwrap();
        p.add(&Gtid::parse(Flavor::MariaDb, "0-1-2").unwrap())
            .unwrap();
        assert_eq!(p.to_string(), "0-1-2");
        assert!(!p.is_subset(&s));
        assert!(p.is_subset(&GtidSet::parse(Flavor::MariaDb, "0-1-3").unwrap()));
        assert!(!GtidSet::empty(Flavor::MariaDb).is_subset(&GtidSet::empty(Flavor::MySql)));
        assert!(GtidSet::empty(Flavor::MariaDb).is_empty());
    }

    #[test]
    fn union_both_flavours() {
        let my = |t: &str| GtidSet::parse(Flavor::MySql, t).unwrap();
        let mut a = my(&format!("{U1}:1-3"));
        a.union_with(&my(&format!("{U1}:5-7")));
        assert_eq!(a.to_string(), format!("{U1}:1-3:5-7"));
        let md = |t: &str| GtidSet::parse(Flavor::MariaDb, t).unwrap();
        let mut b = md("0-1-10,1-1-4");
        b.union_with(&md("0-2-8,1-2-9,2-1-1"));
        assert_eq!(b.to_string(), "0-1-10,1-2-9,2-1-1");
        let before = b.clone();
        b.union_with(&a);
        assert_eq!(b, before, "flavours differ: unchanged");
    }
}
