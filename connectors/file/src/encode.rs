//! The backup's line format: pure encoding and classification, no I/O.
//!
//! A segment is NDJSON: one JSON object per line, each line ending in `\n`.
//! Three kinds of line, told apart by their first key:
//!
//! - a change event, exactly as [`rowstream_api::json::write_record`]
//!   encodes it: `{"before":...,"after":...,"op":"c",...}`
//! - a schema change (DDL) record, likewise: `{"source":{...},"ts_ms":...,"databaseName":...,"ddl":...}`
//! - a transaction-end marker after the last record of every transaction
//!   (Debezium's transaction-metadata style, wrapped in a top-level
//!   `transaction` key and without `op`):
//!   `{"transaction":{"status":"END","id":"<gtid>","event_count":N,"crc32c":"1a2b3c4d"}}`
//!
//! The marker's `crc32c` (CRC32C, Castagnoli, [`crc32c_append`], hardware
//! accelerated) is the checksum of the transaction's bytes as written: every
//! line of the transaction before its marker (`\n` included), then the
//! marker's own bytes up to and excluding `,"crc32c":` (so a flipped bit in
//! the GTID or the count is caught too). Writers compute it incrementally as
//! they encode ([`TxCrc`]); a transaction is never held whole. Markers
//! written before checksums existed have no `crc32c` (`TxEnd::crc32c` is
//! `None`): readers accept them and warn that the backup has no checksums.
//!
//! A marker may carry `"skipped":[[a,b],...]` between `event_count` and
//! `crc32c` (so the checksum covers it): transactions of the marker's own
//! server key (MySQL `uuid[:tag]`, MariaDB domain) with those sequence
//! numbers completed on the source just before this one and wrote no lines
//! (every change filtered out, empty, heartbeat-only). It is written only
//! when the marker's number does not follow the key's last covered one,
//! so it costs nothing in the common case.
//!
//! Besides these, each segment opens with a start line and, once closed,
//! ends with an end line (after its last marker). Both hold the set of
//! source transactions the backup covers at that point ([`Coverage`]: per
//! server key the covered sequence numbers, filtered-out transactions and
//! the history before the backup began included), the end line also the
//! segment's number of transactions:
//! `{"segment":{"start_covered":{"<key>":[[1,41]],...}},"crc32c":"…"}`,
//! `{"segment":{"end_covered":{"<key>":[[1,57]],...},"transactions":N},"crc32c":"…"}`.
//! A third segment line, `{"segment":{"skipped":{"<key>":[[a,b]],...}},"crc32c":"…"}`,
//! records transactions that wrote no lines and that no later marker of the
//! same batch accounts for (other keys', or those after the batch's last
//! written transaction); it sits between transactions, never inside one.
//! So a segment's start set, plus its markers (with their `skipped`), plus
//! its skipped lines, equals its end set, which equals the next segment's
//! start set: `backup verify` checks both and names what is missing.
//!
//! Backups written before coverage existed have start / end lines with
//! per-key last sequence numbers instead (`{"segment":{"start":{"<key>":n}}}`,
//! `{"segment":{"end":{...},"transactions":N}}`) or none at all; they are
//! still read ([`SegmentLine`]'s `covered` is `None`) and checked by those
//! positions only.
//! Segment lines are not records: readers skip them ([`is_segment_line`]).
//! Their `crc32c` is the CRC32C of the line's bytes before `,"crc32c":`
//! (the marker's rule); lines written before it existed have none and are
//! accepted. With the markers' checksums this covers every byte of a
//! segment, so the zstd frames the writer appends carry no checksum of
//! their own (it was 4.6% of `run`'s instructions).
//!
//! Invariants kept: every encoded line is valid JSON followed by exactly one
//! `\n`; the marker's layout is fixed (keys in this order, no spaces), so
//! [`classify`] needs only the first bytes of a line; a marker with a key
//! it does not know is malformed (a flipped byte in `crc32c`'s name must not
//! turn a checksummed marker into an old one).

use rowstream_api::json::{write_record, write_str};
use rowstream_api::Record;
use serde::Deserialize;

pub use crate::coverage::{Coverage, Positions};

/// What a backup line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A row change event (`{"before":...`).
    Change,
    /// A schema change (DDL) record (`{"source":...`).
    SchemaChange,
    /// A transaction-end marker (`{"transaction":{"status":"END",...`).
    TxEnd,
}

const CHANGE_PREFIX: &[u8] = b"{\"before\":";
const SCHEMA_PREFIX: &[u8] = b"{\"source\":";
/// Every marker line starts with exactly these bytes.
pub const TX_END_PREFIX: &[u8] = b"{\"transaction\":{\"status\":\"END\",\"id\":";

/// Every segment line starts with exactly these bytes.
pub const SEGMENT_PREFIX: &[u8] = b"{\"segment\":{";

/// Whether a line is a segment line (start, end or skipped; not a record).
#[inline]
pub fn is_segment_line(line: &[u8]) -> bool {
    line.starts_with(SEGMENT_PREFIX)
}

/// The server key and sequence number of a GTID or chunk marker: MySQL
/// `uuid[:tag]:n`, MariaDB `domain-server-n`, `snapshot:<id>:<n>`.
pub fn id_key(id: &str) -> Option<(String, u64)> {
    if let Some((k, n)) = id.rsplit_once(':') {
        return Some((k.to_string(), n.parse().ok()?));
    }
    let mut parts = id.split('-');
    let (d, _s, n) = (parts.next()?, parts.next()?, parts.next()?);
    Some((d.to_string(), n.parse().ok()?))
}

/// Records transaction `id` in `pos` (a later sequence number replaces an
/// earlier one).
pub fn advance(pos: &mut Positions, id: &str) {
    if let Some((k, n)) = id_key(id) {
        let e = pos.entry(k).or_insert(0);
        *e = (*e).max(n);
    }
}

/// Appends a segment start line: what the backup covers before it.
pub fn encode_segment_start(out: &mut Vec<u8>, covered: &Coverage) {
    encode_segment(out, serde_json::json!({ "start_covered": covered }));
}

/// Appends a segment end line: what the backup covers up to here.
pub fn encode_segment_end(out: &mut Vec<u8>, covered: &Coverage, transactions: u64) {
    encode_segment(
        out,
        serde_json::json!({ "end_covered": covered, "transactions": transactions }),
    );
}

/// Appends a skipped line: transactions without lines (see the module docs).
pub fn encode_skipped(out: &mut Vec<u8>, skipped: &Coverage) {
    encode_segment(out, serde_json::json!({ "skipped": skipped }));
}

/// `{"segment":<body>,"crc32c":"…"}` and `\n`, the checksum over the bytes
/// before `,"crc32c":` (the marker's rule, see the module docs).
fn encode_segment(out: &mut Vec<u8>, body: serde_json::Value) {
    let start = out.len();
    out.extend_from_slice(b"{\"segment\":");
    out.extend_from_slice(body.to_string().as_bytes());
    let crc = crc32c_append(0, &out[start..]);
    out.extend_from_slice(CRC_KEY);
    out.extend_from_slice(format!("{crc:08x}").as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// A parsed segment line. `pos` is per key the last sequence number
/// (derived from `covered` in current backups); `covered` is `None` in
/// backups written before coverage existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentLine {
    Start {
        pos: Positions,
        covered: Option<Coverage>,
    },
    End {
        end: Positions,
        covered: Option<Coverage>,
        transactions: u64,
    },
    Skipped(Coverage),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentWrap {
    segment: SegmentBody,
    /// Absent in backups written before segment lines had checksums.
    #[serde(default)]
    crc32c: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentBody {
    #[serde(default)]
    start: Option<Positions>,
    #[serde(default)]
    end: Option<Positions>,
    #[serde(default)]
    start_covered: Option<Coverage>,
    #[serde(default)]
    end_covered: Option<Coverage>,
    #[serde(default)]
    skipped: Option<Coverage>,
    #[serde(default)]
    transactions: Option<u64>,
}

/// Parses a segment line (with or without its `\n`): `Ok(None)` when the
/// line is not one (it does not start like one), `Err` naming the damage
/// when it starts like one but is malformed or fails its checksum. Lines
/// without a checksum (written before segment lines had one) are accepted.
pub fn parse_segment_line(line: &[u8]) -> Result<Option<SegmentLine>, String> {
    if !is_segment_line(line) {
        return Ok(None);
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let w: SegmentWrap =
        serde_json::from_slice(line).map_err(|e| format!("malformed segment line: {e}"))?;
    if let Some(hex) = &w.crc32c {
        match marker_crc(line, TxCrc::default()).filter(|_| hex.len() == 8) {
            Some((claimed, got)) if claimed == got => {}
            Some((claimed, got)) => {
                return Err(format!(
                    "segment line fails its checksum (line says {claimed:08x}, its bytes give {got:08x})"
                ))
            }
            None => return Err("segment line with a malformed checksum".into()),
        }
    }
    segment_body(w.segment)
        .map(Some)
        .ok_or_else(|| "malformed segment line: not one start, end or skipped set".into())
}

fn segment_body(mut b: SegmentBody) -> Option<SegmentLine> {
    // A damaged file must not break the sets' invariants.
    b.start_covered = b.start_covered.map(Coverage::normalized);
    b.end_covered = b.end_covered.map(Coverage::normalized);
    b.skipped = b.skipped.map(Coverage::normalized);
    let given = [
        b.start.is_some(),
        b.end.is_some(),
        b.start_covered.is_some(),
        b.end_covered.is_some(),
        b.skipped.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() != 1 {
        return None;
    }
    let ends = b.end.is_some() || b.end_covered.is_some();
    if ends != b.transactions.is_some() {
        return None;
    }
    Some(if let Some(pos) = b.start {
        SegmentLine::Start { pos, covered: None }
    } else if let Some(c) = b.start_covered {
        SegmentLine::Start {
            pos: c.positions(),
            covered: Some(c),
        }
    } else if let Some(end) = b.end {
        SegmentLine::End {
            end,
            covered: None,
            transactions: b.transactions?,
        }
    } else if let Some(c) = b.end_covered {
        SegmentLine::End {
            end: c.positions(),
            covered: Some(c),
            transactions: b.transactions?,
        }
    } else {
        SegmentLine::Skipped(b.skipped?)
    })
}

/// Appends one record line: the record's JSON and `\n`.
#[inline]
pub fn encode_record(out: &mut Vec<u8>, rec: &Record) {
    write_record(out, rec);
    out.push(b'\n');
}

const CRC_KEY: &[u8] = b",\"crc32c\":\"";

/// The running checksum of one transaction's bytes (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCrc(pub u32);

impl TxCrc {
    /// Adds bytes as written: the sink passes each run of the transaction's
    /// lines (with their `\n`) once, at the transaction's end or before its
    /// buffer goes to an I/O job; any split of the bytes gives the same sum.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = crc32c_append(self.0, bytes);
    }
}

/// The CRC32C of some bytes followed by `bytes`, given `crc`, the CRC32C
/// of the bytes before (0 for none). `crc_fast` folds with carry-less
/// multiplication: on the file sink's ~1 GB of lines per 2,000,000 row
/// changes it took half the time of the `crc32c` crate's loop of CRC
/// instructions (which was 9% of the sink thread's instructions in `run`).
#[inline]
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    use crc_fast::{CrcAlgorithm, Digest};
    // The digest's state is the register before the final inversion.
    let mut d = Digest::new_with_init_state(CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    d.update(bytes);
    d.finalize() as u32
}

/// Appends one transaction-end marker line (with `\n`), completing `crc`
/// (the checksum of the transaction's lines so far) with the marker's own
/// covered bytes. `skipped`: the intervals of the marker's key that wrote
/// no lines just before it (usually none).
pub fn encode_tx_end(
    out: &mut Vec<u8>,
    gtid: &str,
    event_count: u64,
    skipped: &[(u64, u64)],
    mut crc: TxCrc,
) {
    let start = out.len();
    out.extend_from_slice(TX_END_PREFIX);
    write_str(out, gtid);
    out.extend_from_slice(b",\"event_count\":");
    out.extend_from_slice(event_count.to_string().as_bytes());
    if !skipped.is_empty() {
        out.extend_from_slice(b",\"skipped\":[");
        for (i, &(a, b)) in skipped.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("[{a},{b}]").as_bytes());
        }
        out.push(b']');
    }
    crc.update(&out[start..]);
    out.extend_from_slice(CRC_KEY);
    out.extend_from_slice(format!("{:08x}", crc.0).as_bytes());
    out.extend_from_slice(b"\"}}\n");
}

/// The checksum a marker line claims against the one its bytes give:
/// `crc` (the transaction's lines) completed with the marker's covered
/// prefix. `None` when the marker carries no checksum (an old backup).
pub fn marker_crc(line: &[u8], mut crc: TxCrc) -> Option<(u32, u32)> {
    let at = line.windows(CRC_KEY.len()).rposition(|w| w == CRC_KEY)?;
    crc.update(&line[..at]);
    let hex = line.get(at + CRC_KEY.len()..at + CRC_KEY.len() + 8)?;
    // An unreadable claim never matches.
    Some((crc_hex(hex).unwrap_or(!crc.0), crc.0))
}

/// A checksum as written: exactly 8 lowercase hex digits. Anything else
/// (uppercase included) is damage: a flipped bit that only changes a
/// digit's case must not read as the same checksum.
fn crc_hex(h: &[u8]) -> Option<u32> {
    if h.len() != 8 || !h.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

/// The kind of a line (with or without its `\n`), from its first bytes only;
/// `None` when it is none of the three (a torn or foreign line).
#[inline]
pub fn classify(line: &[u8]) -> Option<LineKind> {
    if line.starts_with(CHANGE_PREFIX) {
        Some(LineKind::Change)
    } else if line.starts_with(SCHEMA_PREFIX) {
        Some(LineKind::SchemaChange)
    } else if line.starts_with(TX_END_PREFIX) {
        Some(LineKind::TxEnd)
    } else {
        None
    }
}

/// A parsed transaction-end marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEnd {
    /// The transaction's GTID in the server's notation.
    pub id: String,
    /// How many record lines of the transaction precede the marker.
    pub event_count: u64,
    /// The checksum (see the module docs); `None` in old backups.
    pub crc32c: Option<u32>,
    /// Transactions of the same key without lines just before this one.
    pub skipped: Vec<(u64, u64)>,
}

#[derive(Deserialize)]
struct MarkerLine {
    transaction: MarkerBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkerBody {
    status: String,
    id: String,
    event_count: u64,
    #[serde(default)]
    skipped: Vec<(u64, u64)>,
    #[serde(default)]
    crc32c: Option<String>,
}

/// Parses a marker line (with or without its `\n`). `None` unless it is a
/// complete, well-formed marker: a torn marker at the end of a crashed
/// segment does not count as a transaction end.
pub fn parse_tx_end(line: &[u8]) -> Option<TxEnd> {
    if !line.starts_with(TX_END_PREFIX) {
        return None;
    }
    let m: MarkerLine = serde_json::from_slice(line).ok()?;
    if m.transaction.status != "END" {
        return None;
    }
    let crc32c = match m.transaction.crc32c {
        None => None,
        Some(h) => Some(crc_hex(h.as_bytes())?),
    };
    Some(TxEnd {
        id: m.transaction.id,
        event_count: m.transaction.event_count,
        crc32c,
        skipped: m.transaction.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC32C's check value and RFC 3720's (iSCSI) test vectors, and any
    /// split of the bytes giving the same sum as one pass: what every
    /// backup written so far was checksummed with.
    #[test]
    fn crc32c_matches_the_standard_vectors_in_any_split() {
        assert_eq!(crc32c_append(0, b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_append(0, &[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c_append(0, &[0xffu8; 32]), 0x62a8_ab43);
        let up: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c_append(0, &up), 0x46dd_794e);
        let down: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c_append(0, &down), 0x113f_db5c);
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let whole = crc32c_append(0, &data);
        for step in [1, 7, 64, 550, 4096, 65_537] {
            let mut crc = TxCrc::default();
            data.chunks(step).for_each(|c| crc.update(c));
            assert_eq!(crc.0, whole, "chunks of {step}");
        }
    }

    #[test]
    fn marker_round_trip() {
        let mut out = Vec::new();
        let mut crc = TxCrc::default();
        crc.update(b"{\"before\":null}\n");
        encode_tx_end(
            &mut out,
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:23",
            7,
            &[],
            crc,
        );
        let covered = b"{\"transaction\":{\"status\":\"END\",\"id\":\"3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:23\",\"event_count\":7";
        let mut want = crc;
        want.update(covered);
        let mut expect = covered.to_vec();
        expect.extend_from_slice(format!(",\"crc32c\":\"{:08x}\"}}}}\n", want.0).as_bytes());
        assert_eq!(out, expect);
        assert_eq!(marker_crc(&out, crc), Some((want.0, want.0)));
        let (claimed, got) = marker_crc(&out, TxCrc::default()).unwrap();
        assert_ne!(claimed, got);
        // A flip that only changes a hex digit's case is damage too.
        let mut upper = out.clone();
        let at = upper.len() - 4 - 8;
        let digit = upper[at..at + 8]
            .iter()
            .position(|b| b.is_ascii_lowercase())
            .map_or(at, |i| at + i);
        upper[digit] = upper[digit].to_ascii_uppercase();
        if upper != out {
            let (claimed, got) = marker_crc(&upper, crc).unwrap();
            assert_ne!(claimed, got, "{}", String::from_utf8_lossy(&upper));
            assert_eq!(parse_tx_end(&upper).and_then(|e| e.crc32c), None);
        }
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("op").is_none());
        assert_eq!(classify(&out), Some(LineKind::TxEnd));
        assert_eq!(
            parse_tx_end(&out),
            Some(TxEnd {
                id: "3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:23".into(),
                event_count: 7,
                crc32c: Some(want.0),
                skipped: vec![],
            })
        );
        // Old markers carry no checksum; unknown keys are malformed.
        let old = b"{\"transaction\":{\"status\":\"END\",\"id\":\"a:1\",\"event_count\":0}}\n";
        assert_eq!(parse_tx_end(old).unwrap().crc32c, None);
        assert_eq!(marker_crc(old, crc), None);
        let renamed = String::from_utf8(out.clone())
            .unwrap()
            .replace("crc32c", "crc32d");
        assert_eq!(parse_tx_end(renamed.as_bytes()), None);
        // A torn marker is not a transaction end.
        assert_eq!(parse_tx_end(&out[..out.len() - 3]), None);
        assert_eq!(classify(b"{\"before\":null"), Some(LineKind::Change));
        assert_eq!(classify(b"{\"source\":{"), Some(LineKind::SchemaChange));
        assert_eq!(classify(b"\0\0\0"), None);
    }

    #[test]
    fn marker_with_skipped() {
        let mut out = Vec::new();
        encode_tx_end(&mut out, "0-1-9", 2, &[(5, 6), (8, 8)], TxCrc::default());
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("{\"transaction\":{\"status\":\"END\",\"id\":\"0-1-9\",\"event_count\":2,\"skipped\":[[5,6],[8,8]],\"crc32c\":"),
            "{text}"
        );
        let m = parse_tx_end(&out).unwrap();
        assert_eq!(m.skipped, vec![(5, 6), (8, 8)]);
        let (claimed, got) = marker_crc(&out, TxCrc::default()).unwrap();
        assert_eq!(claimed, got);
    }

    #[test]
    fn segment_lines_round_trip() {
        let mut cov = Coverage::default();
        cov.insert("3e11:tag", 1, 23);
        cov.insert("0", 1, 42);
        cov.insert("snapshot:7", 1, 3);
        let pos = cov.positions();
        let mut out = Vec::new();
        encode_segment_start(&mut out, &cov);
        assert!(is_segment_line(&out));
        assert_eq!(classify(&out), None);
        assert_eq!(
            parse_segment_line(&out),
            Ok(Some(SegmentLine::Start {
                pos: pos.clone(),
                covered: Some(cov.clone())
            }))
        );
        out.clear();
        encode_segment_end(&mut out, &cov, 5);
        let covered = "{\"segment\":{\"end_covered\":{\"0\":[[1,42]],\"3e11:tag\":[[1,23]],\"snapshot:7\":[[1,3]]},\"transactions\":5}";
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                "{covered},\"crc32c\":\"{:08x}\"}}\n",
                crc32c_append(0, covered.as_bytes())
            )
        );
        let end = Ok(Some(SegmentLine::End {
            end: pos.clone(),
            covered: Some(cov.clone()),
            transactions: 5,
        }));
        assert_eq!(parse_segment_line(&out), end);
        assert_eq!(parse_segment_line(&out[..out.len() - 1]), end);
        // Every single flipped bit, anywhere in the line, is refused; none
        // reads as a different set.
        for i in 0..out.len() - 1 {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                let got = parse_segment_line(&bad);
                assert!(
                    got.is_err() || (got == Ok(None) && i < SEGMENT_PREFIX.len()),
                    "byte {i} bit {bit}: {got:?}"
                );
            }
        }
        let renamed = String::from_utf8(out.clone())
            .unwrap()
            .replace("crc32c", "crc32d");
        assert!(parse_segment_line(renamed.as_bytes()).is_err());
        let long = String::from_utf8(out.clone())
            .unwrap()
            .replace("\"}\n", "0\"}\n");
        assert!(parse_segment_line(long.as_bytes()).is_err());
        out.clear();
        encode_skipped(&mut out, &cov);
        assert_eq!(
            parse_segment_line(&out),
            Ok(Some(SegmentLine::Skipped(cov)))
        );
        // Lines of backups written before coverage existed.
        assert_eq!(
            parse_segment_line(b"{\"segment\":{\"start\":{\"0\":42}}}"),
            Ok(Some(SegmentLine::Start {
                pos: [("0".to_string(), 42)].into(),
                covered: None
            }))
        );
        assert_eq!(
            parse_segment_line(b"{\"segment\":{\"end\":{\"0\":42},\"transactions\":5}}"),
            Ok(Some(SegmentLine::End {
                end: [("0".to_string(), 42)].into(),
                covered: None,
                transactions: 5
            }))
        );
        assert!(parse_segment_line(b"{\"segment\":{\"start\":{},\"x\":1}}").is_err());
        assert!(
            parse_segment_line(b"{\"segment\":{\"start_covered\":{},\"transactions\":1}}").is_err()
        );
        assert_eq!(parse_segment_line(b"{\"before\":null}"), Ok(None));
    }
}
