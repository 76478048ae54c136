//! Change event -> Kafka records (pure, no I/O).
//!
//! One row change becomes one to three records, all for the same table topic:
//! - key: the primary key columns as a JSON object in key order,
//!   `{"id":1}` / `{"a":1,"b":"x"}` (Debezium style), values encoded exactly
//!   like in the envelope; no key (`None`) when the table has no primary key;
//! - value: the change envelope of `rowstream_api::json::write_change_event`;
//! - an update that changes the primary key becomes a delete under the old
//!   key (`op` "d", `before` = the old row) followed by a create under the
//!   new key (`op` "c", `after` = the new row), so a consumer keyed by primary
//!   key sees the old key disappear;
//! - after every delete (also the one of a key change), when tombstones are
//!   enabled and the record has a key, a tombstone: same key, null value, so
//!   log compaction can forget the key (the Debezium format sends one with a
//!   null key too, as Debezium does: `RecordWriter::keyless_tombstones`).
//!
//! Every record carries the headers `gtid` (the transaction's GTID) and `op`
//! (the envelope's op letter; "d" for tombstones). Invariant: the records of
//! one event come out in the order they must be produced in, and all bytes
//! go into one reusable buffer (no allocation per record once warm).

use std::ops::Range;

use rowstream_api::json::{write_change_event, write_str, write_value};
use rowstream_api::{ChangeEvent, Op, RowRef};

/// One Kafka record inside [`Encoded::buf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    /// The key bytes, or None (no primary key: no key).
    pub key: Option<Range<usize>>,
    /// The value bytes, or None for a tombstone.
    pub value: Option<Range<usize>>,
    /// The `op` header.
    pub op: Op,
}

/// The records of one change event; reused from event to event.
#[derive(Debug, Default)]
pub struct Encoded {
    pub buf: Vec<u8>,
    pub records: Vec<Out>,
}

impl Encoded {
    /// The bytes of a range of `buf`.
    pub fn bytes(&self, r: &Option<Range<usize>>) -> Option<&[u8]> {
        r.as_ref().map(|r| &self.buf[r.clone()])
    }
}

/// Appends the key object of `row` to `out`; false (nothing written) when
/// the table has no primary key or a key column is missing from the image.
pub fn write_key(out: &mut Vec<u8>, primary_key: &[usize], row: RowRef<'_>) -> bool {
    if primary_key.is_empty()
        || primary_key
            .iter()
            .any(|&i| i >= row.values.len() || i >= row.columns.len())
    {
        return false;
    }
    out.push(b'{');
    for (n, &i) in primary_key.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_str(out, &row.columns[i]);
        out.push(b':');
        write_value(out, &row.values[i]);
    }
    out.push(b'}');
    true
}

/// True when an update changes a primary key column.
pub fn key_changed(ev: &ChangeEvent) -> bool {
    match (ev.before_row(), ev.after_row()) {
        (Some(b), Some(a)) if ev.op == Op::Update => ev
            .primary_key()
            .iter()
            .any(|&i| b.values.get(i) != a.values.get(i)),
        _ => false,
    }
}

/// How the key and the value of a record are written (JSON or Avro).
pub trait RecordWriter {
    /// Appends the key of `row` to `out`; Ok(false) (nothing written) when
    /// the record has no key.
    fn key(&mut self, out: &mut Vec<u8>, ev: &ChangeEvent, row: RowRef<'_>)
        -> Result<bool, String>;
    /// Appends the value (envelope) of `ev` to `out`.
    fn value(&mut self, out: &mut Vec<u8>, ev: &ChangeEvent) -> Result<(), String>;
    /// Whether a delete without a key (no primary key) still gets a
    /// tombstone (Debezium sends one, with a null key).
    fn keyless_tombstones(&self) -> bool {
        false
    }
}

/// The JSON key object and envelope.
pub struct JsonWriter;

impl RecordWriter for JsonWriter {
    #[inline]
    fn key(
        &mut self,
        out: &mut Vec<u8>,
        ev: &ChangeEvent,
        row: RowRef<'_>,
    ) -> Result<bool, String> {
        Ok(write_key(out, ev.primary_key(), row))
    }
    #[inline]
    fn value(&mut self, out: &mut Vec<u8>, ev: &ChangeEvent) -> Result<(), String> {
        write_change_event(out, ev);
        Ok(())
    }
}

/// Encodes one change event into `enc` (cleared first) as JSON; see the
/// module docs.
pub fn encode_change(ev: &ChangeEvent, tombstones: bool, enc: &mut Encoded) {
    // JsonWriter never fails.
    let _ = encode_change_with(ev, tombstones, enc, &mut JsonWriter);
}

/// Encodes one change event into `enc` (cleared first) with `w`; see the
/// module docs. On error `enc` holds no complete set of records.
pub fn encode_change_with<W: RecordWriter>(
    ev: &ChangeEvent,
    tombstones: bool,
    enc: &mut Encoded,
    w: &mut W,
) -> Result<(), String> {
    enc.buf.clear();
    enc.records.clear();
    if key_changed(ev) {
        let mut del = ev.clone();
        del.op = Op::Delete;
        del.after = None;
        push(enc, &del, tombstones, w)?;
        let mut create = ev.clone();
        create.op = Op::Create;
        create.before = None;
        push(enc, &create, tombstones, w)
    } else {
        push(enc, ev, tombstones, w)
    }
}

fn push<W: RecordWriter>(
    enc: &mut Encoded,
    ev: &ChangeEvent,
    tombstones: bool,
    w: &mut W,
) -> Result<(), String> {
    let image = match ev.op {
        Op::Delete => ev.before_row(),
        _ => ev.after_row().or(ev.before_row()),
    };
    let start = enc.buf.len();
    let key = match image {
        Some(row) if w.key(&mut enc.buf, ev, row)? => Some(start..enc.buf.len()),
        _ => None,
    };
    let vstart = enc.buf.len();
    w.value(&mut enc.buf, ev)?;
    enc.records.push(Out {
        key: key.clone(),
        value: Some(vstart..enc.buf.len()),
        op: ev.op,
    });
    if ev.op == Op::Delete && tombstones && (key.is_some() || w.keyless_tombstones()) {
        enc.records.push(Out {
            key,
            value: None,
            op: Op::Delete,
        });
    }
    Ok(())
}

/// Per-table change counts of one transaction, in first-seen order
/// (`data_collection` = `db.table`). A transaction touches few tables, so a
/// vector beats a map.
pub type TableCounts = Vec<(String, u64)>;

/// The key of a transaction metadata record: `{"id":"<gtid>"}`.
pub fn write_tx_key(out: &mut Vec<u8>, id: &str) {
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id);
    out.push(b'}');
}

/// The value of a transaction metadata record, Debezium's shape and field
/// order: `{"status":"BEGIN","id":..,"event_count":null,"data_collections":null,"ts_ms":..}`
/// or, with `counts`, `"status":"END"` with the number of change events and
/// `[{"data_collection":"db.table","event_count":n},...]` in the order
/// Debezium's `HashMap` of them iterates (see [`java_hash_map_order`]).
pub fn write_tx_marker(out: &mut Vec<u8>, id: &str, ts_ms: u64, counts: Option<&TableCounts>) {
    out.extend_from_slice(if counts.is_some() {
        b"{\"status\":\"END\",\"id\":".as_slice()
    } else {
        b"{\"status\":\"BEGIN\",\"id\":".as_slice()
    });
    write_str(out, id);
    match counts {
        None => out.extend_from_slice(b",\"event_count\":null,\"data_collections\":null"),
        Some(c) => {
            let total: u64 = c.iter().map(|(_, n)| n).sum();
            out.extend_from_slice(b",\"event_count\":");
            out.extend_from_slice(itoa::Buffer::new().format(total).as_bytes());
            out.extend_from_slice(b",\"data_collections\":[");
            let names: Vec<&str> = c.iter().map(|(t, _)| t.as_str()).collect();
            for (i, k) in java_hash_map_order(&names).into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"data_collection\":");
                write_str(out, &c[k].0);
                out.extend_from_slice(b",\"event_count\":");
                out.extend_from_slice(itoa::Buffer::new().format(c[k].1).as_bytes());
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(itoa::Buffer::new().format(ts_ms).as_bytes());
    out.push(b'}');
}

/// The order in which a Java `HashMap<String, _>` filled with `keys` (in
/// this order, distinct) iterates them, as indices into `keys`: by bucket
/// (`String.hashCode` spread as `h ^ (h >>> 16)`, masked by the table size:
/// 16, doubled while more than 3/4 full), insertion order within a bucket
/// (resizing keeps it). Exact while no bucket holds 8 keys (a tree bin).
pub fn java_hash_map_order(keys: &[&str]) -> Vec<usize> {
    let mut size = 16usize;
    while keys.len() * 4 > size * 3 {
        size *= 2;
    }
    let bucket = |k: &str| {
        let h = k
            .encode_utf16()
            .fold(0u32, |h, u| h.wrapping_mul(31).wrapping_add(u32::from(u)));
        ((h ^ (h >> 16)) as usize) & (size - 1)
    };
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| bucket(keys[i]));
    order
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rowstream_api::{Flavor, Row, Shared, Snapshot, Source, Transaction, Value};

    use super::*;

    fn row(id: i64, name: &str) -> Row {
        Row {
            columns: Arc::from(vec![Arc::from("name"), Arc::from("id")]),
            values: vec![Value::String(name.into()), Value::Int(id)],
        }
    }

    fn event(op: Op, before: Option<Row>, after: Option<Row>, pk: &[usize]) -> ChangeEvent {
        let mut ev = ChangeEvent {
            op,
            before: None,
            after: None,
            ts_ms: 1,
            shared: Arc::new(Shared {
                source: Source {
                    version: "0",
                    connector: Flavor::MariaDb,
                    name: "srv".into(),
                    ts_ms: 1,
                    snapshot: Snapshot::False,
                    db: "d".into(),
                    table: "t".into(),
                    server_id: 1,
                    gtid: "0-1-5".into(),
                    file: "f".into(),
                    pos: 4,
                    sequence: 0,
                },
                primary_key: Arc::from(pk),
                table: None,
                before_columns: Default::default(),
                after_columns: Default::default(),
            }),
            row: 0,
            transaction: Some(Transaction {
                total_order: 1,
                data_collection_order: 1,
            }),
            overlap: false,
        };
        ev.set_rows(before, after);
        ev
    }

    fn texts(enc: &Encoded) -> Vec<(Option<String>, Option<serde_json::Value>, &'static str)> {
        enc.records
            .iter()
            .map(|r| {
                (
                    enc.bytes(&r.key)
                        .map(|b| String::from_utf8(b.to_vec()).unwrap()),
                    enc.bytes(&r.value)
                        .map(|b| serde_json::from_slice(b).unwrap()),
                    r.op.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn insert_update_delete() {
        let mut enc = Encoded::default();
        encode_change(
            &event(Op::Create, None, Some(row(1, "a")), &[1]),
            true,
            &mut enc,
        );
        let t = texts(&enc);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0.as_deref(), Some(r#"{"id":1}"#));
        assert_eq!(t[0].1.as_ref().unwrap()["after"]["name"], "a");
        assert_eq!(t[0].2, "c");

        let up = event(Op::Update, Some(row(1, "a")), Some(row(1, "b")), &[1]);
        assert!(!key_changed(&up));
        encode_change(&up, true, &mut enc);
        let t = texts(&enc);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1.as_ref().unwrap()["op"], "u");

        encode_change(
            &event(Op::Delete, Some(row(1, "b")), None, &[1]),
            true,
            &mut enc,
        );
        let t = texts(&enc);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].1.as_ref().unwrap()["op"], "d");
        assert_eq!(t[1], (Some(r#"{"id":1}"#.to_string()), None, "d"));

        encode_change(
            &event(Op::Delete, Some(row(1, "b")), None, &[1]),
            false,
            &mut enc,
        );
        assert_eq!(enc.records.len(), 1);
    }

    #[test]
    fn key_change_is_delete_then_create() {
        let mut enc = Encoded::default();
        let ev = event(Op::Update, Some(row(1, "a")), Some(row(2, "a")), &[1]);
        assert!(key_changed(&ev));
        encode_change(&ev, true, &mut enc);
        let t = texts(&enc);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].0.as_deref(), Some(r#"{"id":1}"#));
        let v = t[0].1.as_ref().unwrap();
        assert_eq!((v["op"].as_str(), v["after"].is_null()), (Some("d"), true));
        assert_eq!(v["before"]["id"], 1);
        assert_eq!(t[1], (Some(r#"{"id":1}"#.to_string()), None, "d"));
        assert_eq!(t[2].0.as_deref(), Some(r#"{"id":2}"#));
        let v = t[2].1.as_ref().unwrap();
        assert_eq!((v["op"].as_str(), v["before"].is_null()), (Some("c"), true));
        assert_eq!(v["after"]["id"], 2);
        assert_eq!(t[2].2, "c");
    }

    #[test]
    fn composite_and_missing_keys() {
        let mut out = Vec::new();
        assert!(write_key(&mut out, &[1, 0], row(7, "x\"y").as_row_ref()));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":7,"name":"x\"y"}"#
        );
        out.clear();
        assert!(!write_key(&mut out, &[], row(7, "x").as_row_ref()));
        assert!(!write_key(&mut out, &[5], row(7, "x").as_row_ref()));
        assert!(out.is_empty());
        // No primary key: no key, no tombstone.
        let mut enc = Encoded::default();
        encode_change(
            &event(Op::Delete, Some(row(1, "b")), None, &[]),
            true,
            &mut enc,
        );
        assert_eq!(enc.records.len(), 1);
        assert_eq!(enc.records[0].key, None);
    }

    #[test]
    fn transaction_markers() {
        let mut out = Vec::new();
        write_tx_key(&mut out, "0-1-7");
        assert_eq!(out, br#"{"id":"0-1-7"}"#);
        out.clear();
        write_tx_marker(&mut out, "0-1-7", 1700000000000, None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status":"BEGIN","id":"0-1-7","ts_ms":1700000000000u64,"event_count":null,"data_collections":null})
        );
        out.clear();
        let counts = vec![("s.t".to_string(), 3), ("s.\"c".to_string(), 1)];
        write_tx_marker(&mut out, "0-1-7", 5, Some(&counts));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status":"END","id":"0-1-7","ts_ms":5,"event_count":4,
                "data_collections":[{"data_collection":"s.t","event_count":3},{"data_collection":"s.\"c","event_count":1}]})
        );
        // Debezium's field order, and its HashMap's order of the tables.
        out.clear();
        let counts = vec![("dbz.t2".to_string(), 2), ("dbz.t3".to_string(), 1)];
        write_tx_marker(&mut out, "g:23", 7, Some(&counts));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"status":"END","id":"g:23","event_count":3,"data_collections":[{"data_collection":"dbz.t3","event_count":1},{"data_collection":"dbz.t2","event_count":2}],"ts_ms":7}"#
        );
        out.clear();
        write_tx_marker(&mut out, "g:23", 7, None);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"status":"BEGIN","id":"g:23","event_count":null,"data_collections":null,"ts_ms":7}"#
        );
    }
}
