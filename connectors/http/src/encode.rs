//! Events -> request pieces, all pure: record ids, the
//! JSON of one record (envelope or mapped row), the body around records,
//! the `Idempotency-Key`, the Standard Webhooks signature and `Retry-After`.
//!
//! Invariants kept:
//! - a record id depends only on the change: `{gtid}:{n}` with `n` the
//!   event's `transaction.total_order` (1-based, the number the file
//!   backup's envelope shows for it), or for a snapshot read
//!   `snapshot:{db}.{table}:{key}` (the key as a JSON array); a replay
//!   after a crash yields the same id for the same change;
//! - the idempotency key depends only on the source name and the first and
//!   last record ids of a request, so a retry carries the same key;
//! - every body is valid JSON: records are written by `rowstream_api::json`
//!   and joined here, never by string formatting of values.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rowstream_api::json::{write_change_event, write_str, write_value};
use rowstream_api::{ChangeEvent, Op, RowRef, Snapshot};
use sha2::{Digest, Sha256};

use crate::config::{Format, OnDelete, TableMapping};

/// The key columns' values of a row image as a JSON array (every column
/// when the table has no primary key).
fn key_json(out: &mut Vec<u8>, row: RowRef<'_>, pk: &[usize]) {
    out.push(b'[');
    let idx: Vec<usize> = if pk.is_empty() {
        (0..row.values.len()).collect()
    } else {
        pk.to_vec()
    };
    for (n, i) in idx.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_value(
            out,
            row.values.get(i).unwrap_or(&rowstream_api::Value::Null),
        );
    }
    out.push(b']');
}

/// The stable id of one change (see the module docs).
pub fn record_id(ev: &ChangeEvent) -> String {
    match &ev.transaction {
        Some(tx) if ev.source().snapshot == Snapshot::False => {
            format!("{}:{}", ev.source().gtid, tx.total_order)
        }
        _ => {
            let mut key = Vec::new();
            if let Some(row) = ev.after_row().or(ev.before_row()) {
                key_json(&mut key, row, ev.primary_key());
            }
            format!(
                "snapshot:{}.{}:{}",
                ev.source().db,
                ev.source().table,
                String::from_utf8_lossy(&key)
            )
        }
    }
}

/// With `format = "rows"`, an update that changes the primary key is sent
/// as two records: this delete of the old key (id `{id}:old`, subject to
/// `on_delete`), then the new row. A row cannot say which key it replaces,
/// and a receiver upserting by key would otherwise keep the old row.
pub fn old_key_delete(ev: &ChangeEvent) -> Option<ChangeEvent> {
    if ev.op != Op::Update || ev.primary_key().is_empty() {
        return None;
    }
    let (before, after) = (ev.before_row()?, ev.after_row()?);
    let moved = ev
        .primary_key()
        .iter()
        .any(|&i| before.values.get(i) != after.values.get(i));
    moved.then(|| ChangeEvent {
        op: Op::Delete,
        after: None,
        ..ev.clone()
    })
}

/// How records are written (the config's shaping keys).
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub format: Format,
    pub id_field: &'a str,
    pub op_field: &'a str,
}

/// Appends the JSON of one change with its id to `out`; false (nothing
/// written) when the mapping skips it (a delete with `on_delete = "skip"`).
pub fn write_record(
    out: &mut Vec<u8>,
    shape: Shape<'_>,
    ev: &ChangeEvent,
    id: &str,
    mapping: Option<&TableMapping>,
) -> bool {
    if shape.format == Format::Envelope {
        out.extend_from_slice(b"{\"id\":");
        write_str(out, id);
        out.push(b',');
        let start = out.len();
        write_change_event(out, ev);
        out.remove(start); // the envelope's own `{`
        return true;
    }
    let delete = ev.op == Op::Delete;
    if delete && mapping.is_some_and(|m| m.on_delete == OnDelete::Skip) {
        return false;
    }
    let Some(row) = ev.after_row().or(ev.before_row()) else {
        return false;
    };
    let fields = mapping.map(|m| &m.fields).filter(|f| !f.is_empty());
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
    };
    for (i, (col, v)) in row.columns.iter().zip(row.values).enumerate() {
        let is_key = ev.primary_key().contains(&i);
        if delete && !is_key && !ev.primary_key().is_empty() {
            continue;
        }
        let name = match fields {
            None => &**col,
            Some(f) => match f.get(&**col) {
                Some(n) => n.as_str(),
                // A delete must still say which row: unmapped key columns keep their names.
                None if delete => &**col,
                None => continue,
            },
        };
        member(out, name);
        write_value(out, v);
    }
    if let Some(m) = mapping {
        for (k, v) in &m.statics {
            member(out, k);
            #[allow(clippy::expect_used)] // a JSON value written to a Vec cannot fail
            serde_json::to_writer(&mut *out, v).expect("JSON to memory");
        }
    }
    if !shape.op_field.is_empty() {
        member(out, shape.op_field);
        write_str(out, ev.op.as_str());
    }
    if !shape.id_field.is_empty() {
        member(out, shape.id_field);
        write_str(out, id);
    }
    out.push(b'}');
    true
}

/// The request body around `records` (each a JSON value, joined by `,`
/// already): `[...]`, or `{"<wrap>":[...], <extra>}`.
pub fn body(
    records: &[u8],
    wrap: Option<&str>,
    extra: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() + 64);
    if let Some(w) = wrap {
        out.push(b'{');
        write_str(&mut out, w);
        out.push(b':');
    }
    out.push(b'[');
    out.extend_from_slice(records);
    out.push(b']');
    if wrap.is_some() {
        for (k, v) in extra {
            out.push(b',');
            write_str(&mut out, k);
            out.push(b':');
            #[allow(clippy::expect_used)] // a JSON value written to a Vec cannot fail
            serde_json::to_writer(&mut out, v).expect("JSON to memory");
        }
        out.push(b'}');
    }
    out
}

/// `Idempotency-Key` of a request: the first 32 hex digits of
/// SHA-256(source name, first record id, last record id), each followed by
/// a newline so the concatenation is unambiguous.
pub fn idempotency_key(source: &str, first: &str, last: &str) -> String {
    let mut h = Sha256::new();
    for part in [source, first, last] {
        h.update(part.as_bytes());
        h.update(b"\n");
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The HMAC key of a `secret`: Standard Webhooks' `whsec_<base64>`
/// convention, else the secret's bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("a whsec_ secret must be base64 after the prefix: {e}")),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, "{id}.{ts}.{body}")).
pub fn signature(key: &[u8], id: &str, ts: u64, body: &[u8]) -> String {
    #[allow(clippy::expect_used)] // HMAC takes a key of any length
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("v1,{sig}")
}

/// The wait a `Retry-After` value asks for: delay-seconds or an HTTP date
/// (a date in the past is no wait).
pub fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowstream_api::testing;

    fn shape(format: Format) -> Shape<'static> {
        Shape {
            format,
            id_field: "_id",
            op_field: "_op",
        }
    }

    fn change(op: Op) -> ChangeEvent {
        let rowstream_api::Record::Change(mut ev) = testing::event(3, 6) else {
            unreachable!()
        };
        ev.op = op;
        if op == Op::Delete {
            let row = ev.after_row().map(|r| r.to_row());
            ev.set_rows(row, None);
        }
        ev
    }

    #[test]
    fn records_ids_and_bodies() {
        let ev = change(Op::Update);
        let id = record_id(&ev);
        assert_eq!(id, "0-1-3:7");
        let mut out = Vec::new();
        assert!(write_record(
            &mut out,
            shape(Format::Envelope),
            &ev,
            &id,
            None
        ));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["op"], "u");
        assert!(v["source"].is_object());
        let mut m = TableMapping::default();
        m.fields.insert("name".into(), "Renamed".into());
        m.statics.insert("Lead_Source".into(), "shop".into());
        m.on_delete = OnDelete::Skip;
        let mut out = Vec::new();
        assert!(write_record(
            &mut out,
            shape(Format::Rows),
            &ev,
            &id,
            Some(&m)
        ));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
        assert_eq!(v["Lead_Source"], "shop");
        assert_eq!(v["_op"], "u");
        assert!(v.get("Renamed").is_some());
        let del = change(Op::Delete);
        assert!(!write_record(
            &mut Vec::new(),
            shape(Format::Rows),
            &del,
            "x",
            Some(&m)
        ));
        let b = body(
            b"{\"a\":1},{\"a\":2}",
            Some("data"),
            &[(
                "duplicate_check_fields".to_string(),
                serde_json::json!(["Email"]),
            )]
            .into(),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"data":[{"a":1},{"a":2}],"duplicate_check_fields":["Email"]})
        );
        assert_eq!(body(b"", None, &Default::default()), b"[]");
    }

    #[test]
    fn snapshot_reads_are_named_by_key() {
        let mut ev = change(Op::Read);
        ev.transaction = None;
        ev.shared_mut().source.snapshot = Snapshot::True;
        assert_eq!(record_id(&ev), "snapshot:shop.orders:[3006]");
        ev.shared_mut().primary_key = std::sync::Arc::from(Vec::new());
        assert_eq!(
            record_id(&ev),
            r#"snapshot:shop.orders:[3006,"row 3/6 \"é\""]"#
        );
    }

    #[test]
    fn key_changes_delete_the_old_key_first() {
        let mut ev = change(Op::Update);
        let row = ev.after_row().map(|r| r.to_row());
        ev.set_rows(row.clone(), row);
        assert!(old_key_delete(&ev).is_none(), "same key");
        ev.after.as_mut().unwrap()[0] = rowstream_api::Value::Int(99);
        let del = old_key_delete(&ev).unwrap();
        assert_eq!(del.op, Op::Delete);
        let mut out = Vec::new();
        assert!(write_record(
            &mut out,
            shape(Format::Rows),
            &del,
            "g:1:old",
            None
        ));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": 3006, "_op": "d", "_id": "g:1:old"})
        );
    }

    #[test]
    fn keys_signatures_retry_after() {
        let k = idempotency_key("src", "g:1", "g:9");
        assert_eq!(k.len(), 32);
        assert_eq!(k, idempotency_key("src", "g:1", "g:9"));
        assert_ne!(k, idempotency_key("src", "g:1", "g:8"));
        // The Standard Webhooks reference example.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signing_key("whsec_***").is_err());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
