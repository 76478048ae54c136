//! Applying MySQL partial JSON updates (PARTIAL_UPDATE_ROWS_EVENT diffs).
//!
//! With `binlog_row_value_options=PARTIAL_JSON` MySQL logs, for a JSON column
//! changed by JSON_SET/JSON_REPLACE/JSON_REMOVE, a vector of diffs instead of
//! the whole new document. Each diff is (operation, path, value): REPLACE the
//! value at `path`, INSERT a member or array element at `path`, or REMOVE it.
//! mysql_common parses the vector (`binlog::jsondiff::JsonDiff`); this module
//! parses the path and applies the diff to the before-image document, so the
//! after image carries the complete document.
//!
//! Invariants: a diff that cannot be applied exactly (bad path, missing
//! target, wrong container type) is an error, never ignored.

use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use mysql_common::io::ParseBuf;
use serde_json::Value as J;

/// Why a diff could not be parsed or applied.
#[derive(thiserror::Error, Debug, PartialEq)]
pub enum JsonDiffError {
    #[error("malformed JSON diff: {0}")]
    Malformed(String),
    #[error("invalid JSON path {path:?}: {detail}")]
    BadPath { path: String, detail: String },
    #[error("JSON diff {op} at {path:?} cannot be applied: {detail}")]
    Apply {
        op: &'static str,
        path: String,
        detail: String,
    },
}

/// One leg of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leg {
    /// `.key` or `."quoted key"`.
    Key(String),
    /// `[n]`.
    Index(usize),
    /// `[last]` (0) or `[last-n]` (n).
    Last(usize),
}

/// Parses a MySQL JSON path as logged in diffs: `$`, then `.ident`,
/// `."json escaped"`, `[n]`, `[last]`, `[last-n]` legs. Wildcards are rejected.
pub fn parse_path(path: &str) -> Result<Vec<Leg>, JsonDiffError> {
    let bad = |d: &str| JsonDiffError::BadPath {
        path: path.to_string(),
        detail: d.to_string(),
    };
    let b = path.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'$') {
        return Err(bad("does not start with $"));
    }
    i += 1;
    let mut legs = Vec::new();
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        match b[i] {
            b'.' => {
                i += 1;
                skip_ws(&mut i);
                if b.get(i) == Some(&b'"') {
                    // find the closing quote, honouring backslash escapes
                    let start = i;
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        if b[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    if i >= b.len() {
                        return Err(bad("unterminated quoted key"));
                    }
                    i += 1;
                    let key: String = serde_json::from_str(&path[start..i])
                        .map_err(|_| bad("invalid quoted key"))?;
                    legs.push(Leg::Key(key));
                } else {
                    let start = i;
                    while i < b.len() && !matches!(b[i], b'.' | b'[') && !b[i].is_ascii_whitespace()
                    {
                        i += 1;
                    }
                    let key = &path[start..i];
                    if key.is_empty() || key == "*" {
                        return Err(bad("empty key or wildcard"));
                    }
                    legs.push(Leg::Key(key.to_string()));
                }
            }
            b'[' => {
                let end = path[i..].find(']').ok_or_else(|| bad("unterminated ["))? + i;
                let inner = path[i + 1..end].trim();
                i = end + 1;
                if let Some(rest) = inner.strip_prefix("last") {
                    let rest = rest.trim();
                    if rest.is_empty() {
                        legs.push(Leg::Last(0));
                    } else {
                        let n = rest
                            .strip_prefix('-')
                            .ok_or_else(|| bad("bad [last-n]"))?
                            .trim();
                        legs.push(Leg::Last(n.parse().map_err(|_| bad("bad [last-n]"))?));
                    }
                } else {
                    legs.push(Leg::Index(
                        inner.parse().map_err(|_| bad("bad array index"))?,
                    ));
                }
            }
            _ => return Err(bad("unexpected character")),
        }
    }
    Ok(legs)
}

fn op_name(op: JsonDiffOperation) -> &'static str {
    match op {
        JsonDiffOperation::REPLACE => "REPLACE",
        JsonDiffOperation::INSERT => "INSERT",
        JsonDiffOperation::REMOVE => "REMOVE",
    }
}

fn resolve_index(leg: &Leg, len: usize) -> Option<usize> {
    match leg {
        Leg::Index(n) => Some(*n),
        Leg::Last(n) => len.checked_sub(1 + n),
        Leg::Key(_) => None,
    }
}

/// Walks `legs` from `doc`; None when a leg does not exist.
fn seek<'d>(mut doc: &'d mut J, legs: &[Leg]) -> Option<&'d mut J> {
    for leg in legs {
        doc = match (leg, doc) {
            (Leg::Key(k), J::Object(m)) => m.get_mut(k)?,
            (Leg::Key(_), _) => return None,
            (leg, J::Array(a)) => {
                let i = resolve_index(leg, a.len())?;
                a.get_mut(i)?
            }
            // MySQL auto-wraps a non-array: $[0] / $[last] of a scalar is the scalar itself.
            (Leg::Index(0) | Leg::Last(0), d) => d,
            _ => return None,
        };
    }
    Some(doc)
}

/// Applies one diff to `doc`.
pub fn apply(
    doc: &mut J,
    op: JsonDiffOperation,
    path: &str,
    value: Option<J>,
) -> Result<(), JsonDiffError> {
    let legs = parse_path(path)?;
    let err = |d: &str| JsonDiffError::Apply {
        op: op_name(op),
        path: path.to_string(),
        detail: d.to_string(),
    };
    match op {
        JsonDiffOperation::REPLACE => {
            let v = value.ok_or_else(|| err("no value"))?;
            let target = seek(doc, &legs).ok_or_else(|| err("path does not exist"))?;
            *target = v;
        }
        JsonDiffOperation::INSERT => {
            let v = value.ok_or_else(|| err("no value"))?;
            let (last, parent_legs) = legs.split_last().ok_or_else(|| err("cannot insert at $"))?;
            let parent = seek(doc, parent_legs).ok_or_else(|| err("parent does not exist"))?;
            match (last, parent) {
                (Leg::Key(k), J::Object(m)) => {
                    m.insert(k.clone(), v);
                }
                (leg @ (Leg::Index(_) | Leg::Last(_)), J::Array(a)) => {
                    let i = match leg {
                        Leg::Index(n) => (*n).min(a.len()),
                        Leg::Last(n) => a.len().saturating_sub(*n),
                        Leg::Key(_) => unreachable!(),
                    };
                    a.insert(i, v);
                }
                _ => return Err(err("parent is not a container of the right kind")),
            }
        }
        JsonDiffOperation::REMOVE => {
            let (last, parent_legs) = legs.split_last().ok_or_else(|| err("cannot remove $"))?;
            let parent = seek(doc, parent_legs).ok_or_else(|| err("parent does not exist"))?;
            match (last, parent) {
                (Leg::Key(k), J::Object(m)) => {
                    m.remove(k).ok_or_else(|| err("member does not exist"))?;
                }
                (leg, J::Array(a)) if !matches!(leg, Leg::Key(_)) => {
                    let i = resolve_index(leg, a.len())
                        .filter(|&i| i < a.len())
                        .ok_or_else(|| err("index out of range"))?;
                    a.remove(i);
                }
                _ => return Err(err("parent is not a container of the right kind")),
            }
        }
    }
    Ok(())
}

/// Parses a binlog JSON diff vector (the bytes of a partial JSON column value,
/// after its length) with mysql_common and applies every diff in order.
pub fn apply_binlog_diffs(doc: &mut J, bytes: &[u8]) -> Result<(), JsonDiffError> {
    let mut buf = ParseBuf(bytes);
    while !buf.is_empty() {
        let d: JsonDiff<'_> = buf
            .parse(())
            .map_err(|e| JsonDiffError::Malformed(e.to_string()))?;
        let path = std::str::from_utf8(d.path())
            .map_err(|_| JsonDiffError::Malformed("path is not UTF-8".into()))?;
        let value = match d.value() {
            Some(v) => Some(super::json::jsonb_to_json(v).map_err(JsonDiffError::Malformed)?),
            None => None,
        };
        apply(doc, d.operation(), path, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(parse_path("$").unwrap(), vec![]);
        assert_eq!(
            parse_path("$.a[3].\"key with space\"[last-1].b").unwrap(),
            vec![
                Leg::Key("a".into()),
                Leg::Index(3),
                Leg::Key("key with space".into()),
                Leg::Last(1),
                Leg::Key("b".into())
            ]
        );
        assert_eq!(
            parse_path(r#"$."q\"uote""#).unwrap(),
            vec![Leg::Key("q\"uote".into())]
        );
        assert!(parse_path("$.*").is_err());
        assert!(parse_path("a").is_err());
    }

    #[test]
    fn replace_insert_remove_nested() {
        let mut d = json!({"a": {"b": [1, 2, 3]}, "key with space": 1});
        apply(
            &mut d,
            JsonDiffOperation::REPLACE,
            "$.a.b[1]",
            Some(json!("x")),
        )
        .unwrap();
        apply(
            &mut d,
            JsonDiffOperation::INSERT,
            "$.a.b[0]",
            Some(json!(0)),
        )
        .unwrap();
        apply(
            &mut d,
            JsonDiffOperation::INSERT,
            "$.a.b[99]",
            Some(json!(9)),
        )
        .unwrap();
        apply(
            &mut d,
            JsonDiffOperation::INSERT,
            "$.a.c",
            Some(json!({"n": null})),
        )
        .unwrap();
        apply(
            &mut d,
            JsonDiffOperation::REPLACE,
            "$.\"key with space\"",
            Some(json!(2)),
        )
        .unwrap();
        apply(&mut d, JsonDiffOperation::REMOVE, "$.a.b[last]", None).unwrap();
        assert_eq!(
            d,
            json!({"a": {"b": [0, 1, "x", 3], "c": {"n": null}}, "key with space": 2})
        );
        apply(&mut d, JsonDiffOperation::REMOVE, "$.a.c", None).unwrap();
        assert!(apply(&mut d, JsonDiffOperation::REMOVE, "$.a.c", None).is_err());
        assert!(apply(&mut d, JsonDiffOperation::REPLACE, "$.zz", Some(json!(1))).is_err());
        apply(&mut d, JsonDiffOperation::REPLACE, "$", Some(json!([1]))).unwrap();
        assert_eq!(d, json!([1]));
    }

    #[test]
    fn binlog_diff_vector() {
        // REPLACE $.a with int16 5; INSERT $.b with literal true; REMOVE $.c
        let mut v = Vec::new();
        v.push(0u8);
        v.push(3);
        v.extend_from_slice(b"$.a");
        v.extend_from_slice(&[3, 0x05, 5, 0]); // len 3, INT16 5
        v.push(1u8);
        v.push(3);
        v.extend_from_slice(b"$.b");
        v.extend_from_slice(&[2, 0x04, 1]); // literal true
        v.push(2u8);
        v.push(3);
        v.extend_from_slice(b"$.c");
        let mut d = json!({"a": 1, "c": 3});
        apply_binlog_diffs(&mut d, &v).unwrap();
        assert_eq!(d, json!({"a": 5, "b": true}));
    }
}
