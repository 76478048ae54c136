//! Change events -> `_bulk` actions, index names, document ids, external
//! versions and index mappings. Pure: no I/O, unit-tested here.
//!
//! **Documents.** One document per row: the after-image as a JSON object
//! `{"column": value, ...}`, values encoded exactly as in the change
//! envelope (`rowstream_api::json::write_value`: DECIMAL as a string of its
//! digits, temporal values as ISO-8601 text, binary as base64).
//!
//! **Ids.** `_id` is the JSON array of the key values in key order
//! (`[42]`, `[7,"k1"]`), written with the same value encoder: JSON escaping
//! makes the join unambiguous whatever the values contain (no separator
//! can be forged), and a reader can parse the id back.
//!
//! **External versions.** Every action carries `version_type=external` and
//! `version = sequence << 24 | min(total_order, 2^24 - 1)`, where
//! `sequence` is the position of the event's transaction in the server's
//! linear history (`rowstream_api::Source::sequence`) and `total_order` the
//! event's 1-based order in its transaction. So:
//! - a replayed event carries the same version as the first time, and the
//!   cluster answers 409 (the index holds this or something newer): the sink
//!   counts that as success, the index does not change;
//! - every later change of the same row carries a larger version, also
//!   after a failover to a promoted replica with the same history (the
//!   sequence counts transactions, not server UUIDs or binlog files);
//! - events of one transaction are ordered by `total_order`. A transaction
//!   with more than 2^24 - 1 (16.7 million) row events gives its tail events
//!   the same clamped order: a row changed twice past that point keeps its
//!   first version of the tail (the later change answers 409). The clamp
//!   keeps versions of later transactions larger, which matters more.
//! - `sequence` must stay below 2^39 (5.5 * 10^11 transactions) for the
//!   version to fit Elasticsearch's signed 64-bit range.
//!
//! Snapshot reads (`op = "r"`) carry the sequence of their consistent cut
//! with order 0: they sort before every streamed change after the cut.
//!
//! Invariants: `Bulk::body` is always a sequence of complete NDJSON action
//! (+ document) lines, and `Bulk::items[i]` describes the i-th action.

use std::io::Write as _;
use std::sync::Arc;

use rowstream_api::json::{write_row, write_str, write_value};
use rowstream_api::{ChangeEvent, ColumnType, Op, RowRef, TableMeta, TableTemplate};
use serde_json::{json, Map, Value as Json};

use crate::config::DecimalMapping;

/// Bits of the version below the transaction sequence.
pub const ORDER_BITS: u32 = 24;
/// Largest order kept in the version; later events of a transaction share it.
pub const MAX_ORDER: u64 = (1 << ORDER_BITS) - 1;

/// The external version of an event (see the module docs).
pub fn version(sequence: u64, total_order: u64) -> u64 {
    (sequence << ORDER_BITS) | total_order.min(MAX_ORDER)
}

/// The version of a change event.
pub fn event_version(ev: &ChangeEvent) -> u64 {
    let order = match ev.op {
        Op::Read => 0,
        _ => ev.transaction.as_ref().map_or(0, |t| t.total_order),
    };
    version(ev.source().sequence, order)
}

/// The index of a table: the template with `{name}`, `{db}`, `{table}`
/// substituted, lowercased, and characters Elasticsearch refuses in index
/// names replaced by `_`.
pub fn index_name(template: &TableTemplate, name: &str, db: &str, table: &str) -> String {
    template
        .render(name, db, table)
        .chars()
        .map(|c| match c {
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' => '_',
            c if c.is_whitespace() => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect::<String>()
        .to_lowercase()
}

/// The `_id` of a row: the JSON array of the values at `key` (indices into
/// the row's values), e.g. `[7,"k1"]`.
pub fn write_id(out: &mut Vec<u8>, row: RowRef<'_>, key: &[usize]) {
    out.push(b'[');
    for (i, k) in key.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match row.values.get(*k) {
            Some(v) => write_value(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b']');
}

/// The bulk action kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Index (create or replace) the document.
    Index,
    /// Delete the document.
    Delete,
}

/// One action of a bulk body and where it lies.
#[derive(Debug, Clone)]
pub struct Item {
    /// `body[start..end]` is the action line and, for `Index`, the document line.
    pub start: usize,
    /// Where the document line starts (`== end` for deletes).
    pub doc: usize,
    pub end: usize,
    /// What the action does.
    pub action: Action,
    /// The change that produced it (a primary-key change produces a delete
    /// and an index action).
    pub op: Op,
    /// The GTID of the change's transaction.
    pub gtid: Arc<str>,
    /// The external version sent.
    pub version: u64,
}

/// A `_bulk` request body being built, with its items.
#[derive(Debug, Default)]
pub struct Bulk {
    /// NDJSON: complete action (and document) lines.
    pub body: Vec<u8>,
    /// One per action, in body order.
    pub items: Vec<Item>,
    /// Scratch buffers for the ids, kept to reuse their allocations.
    id: Vec<u8>,
    id2: Vec<u8>,
}

impl Bulk {
    /// True when no action is pending.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Forgets every action, keeping the allocations.
    pub fn clear(&mut self) {
        self.body.clear();
        self.items.clear();
    }

    /// Appends the actions of one change event to index `index`, keyed by
    /// the columns at `key`: an index action of the after-image for inserts,
    /// updates and snapshot reads; a delete for deletes; for an update that
    /// changes the key, a delete of the old id first. All with the event's
    /// external version.
    pub fn push_change(&mut self, ev: &ChangeEvent, index: &str, key: &[usize]) {
        let version = event_version(ev);
        let mut id = std::mem::take(&mut self.id);
        let mut id2 = std::mem::take(&mut self.id2);
        id.clear();
        id2.clear();
        if let (Some(b), Some(a)) = (ev.before_row(), ev.after_row()) {
            write_id(&mut id2, b, key);
            write_id(&mut id, a, key);
            if id != id2 {
                self.push(Action::Delete, ev, index, &id2, version, None);
            }
            self.push(Action::Index, ev, index, &id, version, Some(a));
        } else if let Some(a) = ev.after_row() {
            write_id(&mut id, a, key);
            self.push(Action::Index, ev, index, &id, version, Some(a));
        } else if let Some(b) = ev.before_row() {
            write_id(&mut id, b, key);
            self.push(Action::Delete, ev, index, &id, version, None);
        }
        self.id = id;
        self.id2 = id2;
    }

    fn push(
        &mut self,
        action: Action,
        ev: &ChangeEvent,
        index: &str,
        id: &[u8],
        version: u64,
        doc: Option<RowRef<'_>>,
    ) {
        let start = self.body.len();
        let out = &mut self.body;
        out.extend_from_slice(match action {
            Action::Index => b"{\"index\":{\"_index\":",
            Action::Delete => b"{\"delete\":{\"_index\":",
        });
        write_str(out, index);
        out.extend_from_slice(b",\"_id\":");
        // Ids are written by write_value, which only emits UTF-8.
        write_str(out, std::str::from_utf8(id).unwrap_or_default());
        out.extend_from_slice(b",\"version\":");
        let _ = write!(out, "{version}");
        out.extend_from_slice(b",\"version_type\":\"external\"}}\n");
        let doc_at = out.len();
        if let Some(row) = doc {
            write_row(out, row);
            out.push(b'\n');
        }
        self.items.push(Item {
            start,
            doc: doc_at,
            end: self.body.len(),
            action,
            op: ev.op,
            gtid: ev.source().gtid.clone(),
            version,
        });
    }
}

/// The body of the create-index request for a table version: one mapped
/// property per column (see the README for the table), dynamic mapping
/// left on so columns added later still index.
pub fn index_body(meta: &TableMeta, decimal: DecimalMapping) -> Json {
    let mut props = Map::new();
    for (name, ty) in meta.columns.iter().zip(&meta.types) {
        props.insert(name.to_string(), field_mapping(ty, decimal));
    }
    json!({ "mappings": { "properties": props } })
}

/// The mapping of one column type.
pub fn field_mapping(ty: &ColumnType, decimal: DecimalMapping) -> Json {
    // Zero and partial dates ("0000-00-00") are legal in MySQL and not in
    // Elasticsearch: such a value stays in `_source` without failing the document.
    let date = json!({ "type": "date", "ignore_malformed": true });
    match ty {
        ColumnType::Bool => json!({ "type": "boolean" }),
        ColumnType::Int {
            bits: 64,
            unsigned: true,
        } => json!({ "type": "unsigned_long" }),
        ColumnType::Bit { bits } if *bits > 63 => json!({ "type": "unsigned_long" }),
        ColumnType::Int { .. } | ColumnType::Bit { .. } | ColumnType::Year => {
            json!({ "type": "long" })
        }
        ColumnType::Float => json!({ "type": "float" }),
        ColumnType::Double => json!({ "type": "double" }),
        ColumnType::Decimal { scale, .. } => match decimal {
            DecimalMapping::Keyword => json!({ "type": "keyword" }),
            DecimalMapping::Double => json!({ "type": "double" }),
            DecimalMapping::ScaledFloat => {
                json!({ "type": "scaled_float", "scaling_factor": 10f64.powi(i32::from(*scale)) })
            }
        },
        ColumnType::String => json!({
            "type": "text",
            "fields": { "keyword": { "type": "keyword", "ignore_above": 256 } }
        }),
        ColumnType::Enum { .. } | ColumnType::Set { .. } | ColumnType::Time { .. } => {
            json!({ "type": "keyword" })
        }
        ColumnType::Bytes => json!({ "type": "binary" }),
        ColumnType::Date | ColumnType::DateTime { .. } | ColumnType::Timestamp { .. } => date,
        // Arbitrary JSON and geometry: kept in `_source`, not indexed (their
        // shapes vary from row to row and would conflict in a mapping).
        ColumnType::Json | ColumnType::Geometry => json!({ "type": "object", "enabled": false }),
        ColumnType::Vector => json!({ "type": "float" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::{Flavor, Row, Shared, Snapshot, Source, Transaction, Value};

    fn cols(names: &[&str]) -> rowstream_api::Columns {
        names
            .iter()
            .map(|n| Arc::from(*n))
            .collect::<Vec<_>>()
            .into()
    }

    fn ev(
        op: Op,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        seq: u64,
        order: u64,
    ) -> ChangeEvent {
        let c = cols(&["a", "b", "x"]);
        let row = |v: Vec<Value>| Row {
            columns: c.clone(),
            values: v,
        };
        let mut ev = ChangeEvent {
            op,
            before: None,
            after: None,
            ts_ms: 0,
            shared: Arc::new(Shared {
                source: Source {
                    version: "t",
                    connector: Flavor::MariaDb,
                    name: Arc::from("srv"),
                    ts_ms: 0,
                    snapshot: Snapshot::False,
                    db: Arc::from("s"),
                    table: Arc::from("c"),
                    server_id: 1,
                    gtid: Arc::from("0-1-9"),
                    file: Arc::from("f"),
                    pos: 4,
                    sequence: seq,
                },
                primary_key: Arc::from(vec![1usize, 0]),
                table: None,
                before_columns: Default::default(),
                after_columns: Default::default(),
            }),
            row: 0,
            transaction: Some(Transaction {
                total_order: order,
                data_collection_order: order,
            }),
            overlap: false,
        };
        ev.set_rows(before.map(row), after.map(row));
        ev
    }

    #[test]
    fn versions_order_transactions_then_events() {
        assert_eq!(version(1, 1), (1 << 24) | 1);
        assert!(version(2, 1) > version(1, MAX_ORDER));
        assert!(version(5, 2) > version(5, 1));
        // The clamp keeps the next transaction larger.
        assert_eq!(version(5, u64::MAX), version(5, MAX_ORDER));
        assert!(version(6, 0) > version(5, u64::MAX));
        let mut r = ev(Op::Read, None, Some(vec![Value::Int(1)]), 7, 99);
        assert_eq!(event_version(&r), version(7, 0));
        r.op = Op::Create;
        assert_eq!(event_version(&r), version(7, 99));
        assert!(version((1 << 39) - 1, MAX_ORDER) <= i64::MAX as u64);
    }

    #[test]
    fn index_names() {
        let tpl = |t: &str| TableTemplate::parse(t, "").unwrap();
        assert_eq!(
            index_name(&tpl("{db}.{table}"), "n", "Shop", "Orders"),
            "shop.orders"
        );
        assert_eq!(
            index_name(&tpl("{name}-{db}.{table}"), "Srv", "a b", "t*?"),
            "srv-a_b.t__"
        );
    }

    #[test]
    fn ids_are_unambiguous_json_arrays() {
        let c = cols(&["a", "b"]);
        let id = |v: Vec<Value>, key: &[usize]| {
            let mut out = Vec::new();
            write_id(
                &mut out,
                Row {
                    columns: c.clone(),
                    values: v,
                }
                .as_row_ref(),
                key,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            id(vec![Value::Int(7), Value::String("k1".into())], &[1, 0]),
            r#"["k1",7]"#
        );
        // A separator inside a value cannot collide with two values.
        let one = id(vec![Value::String("a\",\"b".into()), Value::Null], &[0]);
        let two = id(
            vec![Value::String("a".into()), Value::String("b".into())],
            &[0, 1],
        );
        assert_ne!(one, two);
        let parsed: Json = serde_json::from_str(&one).unwrap();
        assert_eq!(parsed, json!(["a\",\"b"]));
    }

    #[test]
    fn bulk_actions() {
        let mut b = Bulk::default();
        let v =
            |a: i64, s: &str, x: i64| vec![Value::Int(a), Value::String(s.into()), Value::Int(x)];
        b.push_change(
            &ev(Op::Create, None, Some(v(1, "k", 0)), 3, 1),
            "s.c",
            &[1, 0],
        );
        b.push_change(
            &ev(Op::Update, Some(v(1, "k", 0)), Some(v(1, "k", 5)), 3, 2),
            "s.c",
            &[1, 0],
        );
        b.push_change(
            &ev(Op::Update, Some(v(1, "k", 5)), Some(v(2, "k", 5)), 4, 1),
            "s.c",
            &[1, 0],
        );
        b.push_change(
            &ev(Op::Delete, Some(v(2, "k", 5)), None, 5, 1),
            "s.c",
            &[1, 0],
        );
        let text = String::from_utf8(b.body.clone()).unwrap();
        let lines: Vec<Json> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let v3 = version(3, 1);
        assert_eq!(
            lines[0],
            json!({"index":{"_index":"s.c","_id":"[\"k\",1]","version":v3,"version_type":"external"}})
        );
        assert_eq!(lines[1], json!({"a":1,"b":"k","x":0}));
        assert_eq!(lines[3], json!({"a":1,"b":"k","x":5}));
        // Key change: delete the old id, index the new one, same version.
        assert_eq!(lines[4]["delete"]["_id"], "[\"k\",1]");
        assert_eq!(lines[5]["index"]["_id"], "[\"k\",2]");
        assert_eq!(lines[4]["delete"]["version"], lines[5]["index"]["version"]);
        assert_eq!(lines[7]["delete"]["_id"], "[\"k\",2]");
        assert_eq!(lines.len(), 8);
        let actions: Vec<Action> = b.items.iter().map(|i| i.action).collect();
        use Action::*;
        assert_eq!(actions, [Index, Index, Delete, Index, Delete]);
        for it in &b.items {
            let s = std::str::from_utf8(&b.body[it.start..it.end]).unwrap();
            assert!(
                s.ends_with('\n') && s.lines().count() == if it.action == Index { 2 } else { 1 }
            );
        }
    }

    #[test]
    fn mappings() {
        let meta = TableMeta {
            columns: cols(&["id", "price", "name", "at", "big", "doc"]),
            types: vec![
                ColumnType::Int {
                    bits: 32,
                    unsigned: false,
                },
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                ColumnType::String,
                ColumnType::DateTime { fsp: 3 },
                ColumnType::Int {
                    bits: 64,
                    unsigned: true,
                },
                ColumnType::Json,
            ],
            nullable: vec![false; 6],
            primary_key: Arc::from(vec![0usize]),
        };
        let b = index_body(&meta, DecimalMapping::ScaledFloat);
        let p = &b["mappings"]["properties"];
        assert_eq!(p["id"]["type"], "long");
        assert_eq!(
            p["price"],
            json!({"type":"scaled_float","scaling_factor":100.0})
        );
        assert_eq!(p["name"]["type"], "text");
        assert_eq!(p["name"]["fields"]["keyword"]["type"], "keyword");
        assert_eq!(p["at"]["type"], "date");
        assert_eq!(p["big"]["type"], "unsigned_long");
        assert_eq!(p["doc"]["enabled"], false);
        let k = index_body(&meta, DecimalMapping::Keyword);
        assert_eq!(k["mappings"]["properties"]["price"]["type"], "keyword");
    }
}
