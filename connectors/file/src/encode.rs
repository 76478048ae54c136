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
//!   `{"transaction":{"status":"END","id":"<gtid>","event_count":N}}`
//!
//! Invariants kept: every encoded line is valid JSON followed by exactly one
//! `\n`; the marker's layout is fixed (keys in this order, no spaces), so
//! [`classify`] needs only the first bytes of a line.

use rowstream_api::json::{write_record, write_str};
use rowstream_api::Record;
use serde::Deserialize;

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

/// Appends one record line: the record's JSON and `\n`.
#[inline]
pub fn encode_record(out: &mut Vec<u8>, rec: &Record) {
    write_record(out, rec);
    out.push(b'\n');
}

/// Appends one transaction-end marker line (with `\n`).
pub fn encode_tx_end(out: &mut Vec<u8>, gtid: &str, event_count: u64) {
    out.extend_from_slice(TX_END_PREFIX);
    write_str(out, gtid);
    out.extend_from_slice(b",\"event_count\":");
    out.extend_from_slice(event_count.to_string().as_bytes());
    out.extend_from_slice(b"}}\n");
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
}

#[derive(Deserialize)]
struct MarkerLine {
    transaction: MarkerBody,
}

#[derive(Deserialize)]
struct MarkerBody {
    status: String,
    id: String,
    event_count: u64,
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
    Some(TxEnd {
        id: m.transaction.id,
        event_count: m.transaction.event_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let mut out = Vec::new();
        encode_tx_end(&mut out, "3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:23", 7);
        assert_eq!(
            out,
            b"{\"transaction\":{\"status\":\"END\",\"id\":\"3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:23\",\"event_count\":7}}\n"
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("op").is_none());
        assert_eq!(classify(&out), Some(LineKind::TxEnd));
        assert_eq!(
            parse_tx_end(&out),
            Some(TxEnd {
                id: "3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:23".into(),
                event_count: 7
            })
        );
        // A torn marker is not a transaction end.
        assert_eq!(parse_tx_end(&out[..out.len() - 3]), None);
        assert_eq!(classify(b"{\"before\":null"), Some(LineKind::Change));
        assert_eq!(classify(b"{\"source\":{"), Some(LineKind::SchemaChange));
        assert_eq!(classify(b"\0\0\0"), None);
    }
}
