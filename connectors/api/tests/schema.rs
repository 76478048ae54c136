//! Encoded records validate against the published JSON Schemas in `schemas/`.
//!
//! A deliberately small validator for the draft 2020-12 subset those files
//! use. It rejects any keyword it does not know, so a schema that grows a
//! keyword must grow its check here too (nothing is silently ignored).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;

use regex::Regex;
use rowstream_api::json::{write_change_event, write_schema_change, write_value};
use rowstream_api::{
    ChangeEvent, Columns, Date, DateTime, Flavor, Op, Row, SchemaChange, Shared, Snapshot, Source,
    Time, Transaction, Value,
};
use serde_json::Value as J;

const CHANGE_EVENT: &str = include_str!("../../../schemas/change-event.schema.json");
const SCHEMA_CHANGE: &str = include_str!("../../../schemas/schema-change.schema.json");

fn schema(text: &str) -> J {
    serde_json::from_str(text).expect("schema file is valid JSON")
}

/// Validates `v` against `s` (`root` resolves `#/$defs/..` refs); returns the
/// path of every violation.
fn validate(root: &J, s: &J, v: &J, path: &str, errs: &mut Vec<String>) {
    let obj = match s {
        J::Bool(true) => return,
        J::Bool(false) => return errs.push(format!("{path}: false schema")),
        J::Object(o) => o,
        _ => panic!("schema at {path} is not an object"),
    };
    for (k, kv) in obj {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "$ref" => {
                let r = kv.as_str().unwrap();
                let name = r
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("unsupported $ref {r}"));
                let target = root["$defs"]
                    .get(name)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
                validate(root, target, v, path, errs);
            }
            "type" => {
                let ok = match kv.as_str().unwrap() {
                    "null" => v.is_null(),
                    "boolean" => v.is_boolean(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    "string" => v.is_string(),
                    "array" => v.is_array(),
                    "object" => v.is_object(),
                    t => panic!("unknown type {t}"),
                };
                if !ok {
                    errs.push(format!("{path}: expected {kv}, got {v}"));
                }
            }
            "enum" => {
                if !kv.as_array().unwrap().contains(v) {
                    errs.push(format!("{path}: {v} not in {kv}"));
                }
            }
            "pattern" => {
                if let Some(s) = v.as_str() {
                    if !Regex::new(kv.as_str().unwrap()).unwrap().is_match(s) {
                        errs.push(format!("{path}: {s:?} does not match {kv}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if v.is_number() {
                    let num = |x: &J| -> i128 {
                        x.as_i64()
                            .map(i128::from)
                            .or(x.as_u64().map(i128::from))
                            .unwrap_or_else(|| panic!("only integer bounds are supported ({x})"))
                    };
                    if v.is_f64() {
                        errs.push(format!("{path}: {v} is not an integer"));
                    } else if (k == "minimum" && num(v) < num(kv))
                        || (k == "maximum" && num(v) > num(kv))
                    {
                        errs.push(format!("{path}: {v} out of {k} {kv}"));
                    }
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for key in kv.as_array().unwrap() {
                        if !o.contains_key(key.as_str().unwrap()) {
                            errs.push(format!("{path}: missing {key}"));
                        }
                    }
                }
            }
            "properties" | "additionalProperties" => {
                if let Some(o) = v.as_object() {
                    let props = obj.get("properties").and_then(J::as_object);
                    for (name, val) in o {
                        let p = format!("{path}/{name}");
                        match props.and_then(|ps| ps.get(name)) {
                            Some(ps) if k == "properties" => validate(root, ps, val, &p, errs),
                            None if k == "additionalProperties" => {
                                validate(root, kv, val, &p, errs)
                            }
                            _ => {}
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, x) in a.iter().enumerate() {
                        validate(root, kv, x, &format!("{path}/{i}"), errs);
                    }
                }
            }
            "anyOf" => {
                let any = kv.as_array().unwrap().iter().any(|sub| {
                    let mut e = Vec::new();
                    validate(root, sub, v, path, &mut e);
                    e.is_empty()
                });
                if !any {
                    errs.push(format!("{path}: {v} matches no anyOf branch"));
                }
            }
            other => panic!(
                "schema keyword {other:?} at {path} is not supported by this test's validator"
            ),
        }
    }
}

fn errors(root: &J, v: &J) -> Vec<String> {
    let mut errs = Vec::new();
    validate(root, root, v, "", &mut errs);
    errs
}

fn source() -> Source {
    Source {
        version: "0.1.0",
        connector: Flavor::MySql,
        name: Arc::from("prod"),
        ts_ms: 1_715_953_509_000,
        snapshot: Snapshot::False,
        db: Arc::from("shop"),
        table: Arc::from("orders"),
        server_id: 4_294_967_295,
        gtid: Arc::from("3e11fa47-71ca-11e1-9e33-c80aa9429562:23"),
        file: Arc::from("binlog.000042"),
        pos: 123_456_789,
        sequence: 0,
    }
}

/// One value of every kind, named after its `$defs` entry.
fn kinds() -> Vec<(&'static str, Value)> {
    let dt = |micros, fsp| DateTime {
        date: Date {
            year: 2024,
            month: 5,
            day: 17,
        },
        hour: 13,
        minute: 45,
        second: 9,
        micros,
        fsp,
    };
    vec![
        ("null", Value::Null),
        ("boolean", Value::Bool(true)),
        ("integer", Value::Int(i64::MIN)),
        ("integer", Value::Int(i64::MAX)),
        ("unsigned", Value::UInt(u64::MAX)),
        ("bit", Value::UInt(5)),
        ("float", Value::Float(1.1)),
        ("float", Value::Double(-2.5e-300)),
        ("float", Value::Double(2.0)),
        ("decimal", Value::Decimal("-1234567890.50".into())),
        ("decimal", Value::Decimal("12".into())),
        ("string", Value::String("x\u{1}\"😀".into())),
        ("bytes", Value::Bytes(vec![])),
        ("bytes", Value::Bytes(vec![1])),
        ("bytes", Value::Bytes(vec![1, 2])),
        ("bytes", Value::Bytes(vec![0xff, 0xfe, 0xfd])),
        (
            "date",
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
        ),
        (
            "date",
            Value::Date(Date {
                year: 2024,
                month: 2,
                day: 29,
            }),
        ),
        ("datetime", Value::DateTime(dt(0, 0))),
        ("datetime", Value::DateTime(dt(123_456, 6))),
        ("datetime", Value::DateTime(dt(100_000, 1))),
        (
            "timestamp",
            Value::Timestamp {
                secs: 0,
                micros: 0,
                fsp: 3,
            },
        ),
        (
            "timestamp",
            Value::Timestamp {
                secs: 4_294_967_295,
                micros: 999_999,
                fsp: 6,
            },
        ),
        (
            "time",
            Value::Time(Time {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micros: 0,
                fsp: 6,
            }),
        ),
        (
            "time",
            Value::Time(Time {
                negative: false,
                hours: 1,
                minute: 2,
                second: 3,
                micros: 0,
                fsp: 0,
            }),
        ),
        (
            "json",
            Value::Json(serde_json::json!({"a": [1, "b", null]})),
        ),
        (
            "geometry",
            Value::Geometry {
                srid: 4326,
                wkb: vec![1, 1, 0, 0, 0],
            },
        ),
        ("vector", Value::Vector(vec![1.1, -0.5, 3e-5])),
    ]
}

fn encode_value(v: &Value) -> J {
    let mut out = Vec::new();
    write_value(&mut out, v);
    serde_json::from_slice(&out).expect("value encodes to valid JSON")
}

/// Each kind's encoding validates against its own `$defs` entry, and the
/// temporal/decimal/bytes patterns reject what they should.
#[test]
fn every_value_kind_matches_its_def() {
    let root = schema(CHANGE_EVENT);
    for (kind, v) in kinds() {
        let def = &root["$defs"][kind];
        assert!(def.is_object(), "no $defs/{kind}");
        let j = encode_value(&v);
        let mut errs = Vec::new();
        validate(&root, def, &j, kind, &mut errs);
        assert!(errs.is_empty(), "{kind} {v:?} -> {j}: {errs:?}");
    }
    let bad = [
        ("decimal", J::from("1.")),
        ("decimal", J::from(1.5)),
        ("bytes", J::from("abc")),
        ("date", J::from("2024-5-17")),
        ("datetime", J::from("2024-05-17 13:45:09")),
        ("datetime", J::from("2024-05-17T13:45:09.1234567")),
        ("timestamp", J::from("2024-05-17T13:45:09")),
        ("time", J::from("1:02:03")),
        ("unsigned", J::from(-1)),
        ("integer", J::from(1.5)),
        ("geometry", serde_json::json!({"srid": 0})),
    ];
    for (kind, j) in bad {
        let mut errs = Vec::new();
        validate(&root, &root["$defs"][kind], &j, kind, &mut errs);
        assert!(!errs.is_empty(), "{kind} accepted {j}");
    }
}

fn event(op: Op, before: Option<Row>, after: Option<Row>, tx: bool) -> ChangeEvent {
    let mut ev = ChangeEvent {
        op,
        before: None,
        after: None,
        ts_ms: 1_715_953_509_123,
        shared: Arc::new(Shared {
            source: source(),
            primary_key: Arc::from([0usize].as_slice()),
            table: None,
            before_columns: Default::default(),
            after_columns: Default::default(),
        }),
        row: 3,
        transaction: tx.then_some(Transaction {
            total_order: 1,
            data_collection_order: 1,
        }),
        overlap: false,
    };
    ev.set_rows(before, after);
    ev
}

fn encode_event(ev: &ChangeEvent) -> J {
    let mut out = Vec::new();
    write_change_event(&mut out, ev);
    serde_json::from_slice(&out).expect("event encodes to valid JSON")
}

#[test]
fn change_events_validate() {
    let root = schema(CHANGE_EVENT);
    let all = kinds();
    let columns: Columns = all
        .iter()
        .enumerate()
        .map(|(i, (k, _))| Arc::from(format!("{k}_{i}")))
        .collect::<Vec<_>>()
        .into();
    let row = Row {
        columns,
        values: all.into_iter().map(|(_, v)| v).collect(),
    };

    let mut mariadb = event(Op::Read, None, Some(row.clone()), false);
    mariadb.shared_mut().source.connector = Flavor::MariaDb;
    mariadb.shared_mut().source.snapshot = Snapshot::Last;
    mariadb.shared_mut().source.gtid = Arc::from("0-1-42");
    let cases = [
        event(Op::Create, None, Some(row.clone()), true),
        event(Op::Update, Some(row.clone()), Some(row.clone()), true),
        event(Op::Delete, Some(row.clone()), None, true),
        mariadb,
    ];
    for ev in &cases {
        let j = encode_event(ev);
        assert_eq!(errors(&root, &j), Vec::<String>::new(), "{j}");
        // Structural expectations beyond the schema: key order and op/image pairing.
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(
            j["before"].is_null(),
            matches!(ev.op, Op::Create | Op::Read)
        );
        assert_eq!(j["after"].is_null(), ev.op == Op::Delete);
    }

    // The validator is not vacuous: broken envelopes are rejected.
    let good = encode_event(&cases[0]);
    let mutate = |f: &dyn Fn(&mut J)| {
        let mut j = good.clone();
        f(&mut j);
        errors(&root, &j)
    };
    assert!(!mutate(&|j| {
        j.as_object_mut().unwrap().remove("transaction");
    })
    .is_empty());
    assert!(!mutate(&|j| j["op"] = J::from("x")).is_empty());
    assert!(!mutate(&|j| j["source"]["snapshot"] = J::from(false)).is_empty());
    assert!(!mutate(&|j| j["source"]["connector"] = J::from("postgres")).is_empty());
    assert!(!mutate(&|j| j["source"]["extra"] = J::from(1)).is_empty());
    assert!(!mutate(&|j| j["transaction"]["total_order"] = J::from(0)).is_empty());
    assert!(!mutate(&|j| j["after"] = J::from("row")).is_empty());
    assert!(!mutate(&|j| j["ts_ms"] = J::from(-1)).is_empty());
}

#[test]
fn schema_changes_validate() {
    let root = schema(SCHEMA_CHANGE);
    let mut src = source();
    src.table = Arc::from("");
    let sc = SchemaChange {
        source: src,
        ts_ms: 1_715_953_509_999,
        database: Arc::from("shop"),
        ddl: "ALTER TABLE orders ADD COLUMN note TEXT".into(),
    };
    let mut out = Vec::new();
    write_schema_change(&mut out, &sc);
    let j: J = serde_json::from_slice(&out).unwrap();
    assert_eq!(errors(&root, &j), Vec::<String>::new(), "{j}");
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4);
    let mut broken = j.clone();
    broken.as_object_mut().unwrap().remove("ddl");
    assert!(!errors(&root, &broken).is_empty());

    // Both files describe the same source block.
    assert_eq!(
        root["$defs"]["source"],
        schema(CHANGE_EVENT)["$defs"]["source"]
    );
    assert_eq!(
        root["$defs"]["millis"],
        schema(CHANGE_EVENT)["$defs"]["millis"]
    );
}

/// Every `$defs` entry of the change-event schema is reachable from `value`
/// or the envelope, and every value kind is listed in `value.anyOf`.
#[test]
fn value_def_lists_every_kind() {
    let root = schema(CHANGE_EVENT);
    let refs: Vec<String> = root["$defs"]["value"]["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/$defs/")
                .to_owned()
        })
        .collect();
    for (kind, _) in kinds() {
        assert!(refs.iter().any(|r| r == kind), "value.anyOf lacks {kind}");
    }
    for (name, _) in root["$defs"].as_object().unwrap() {
        let structural = ["millis", "source", "transaction", "row", "value"];
        assert!(
            structural.contains(&name.as_str()) || refs.contains(name),
            "$defs/{name} is unused"
        );
    }
}

const README: &str = include_str!("../../../schemas/README.md");

/// The `json` code blocks of schemas/README.md, in order.
fn readme_json_blocks() -> Vec<&'static str> {
    README
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect()
}

/// The README's example event is exactly what the encoder writes for it.
#[test]
fn readme_example_is_encoder_output() {
    let columns: Columns = [
        "id",
        "customer_id",
        "email",
        "amount",
        "updated_at",
        "score",
        "notes",
        "status",
    ]
    .iter()
    .map(|c| Arc::from(*c))
    .collect::<Vec<_>>()
    .into();
    let row = |email: &str, amount: &str, micros, score| Row {
        columns: columns.clone(),
        values: vec![
            Value::Int(1_000_007),
            Value::Int(42),
            Value::String(email.into()),
            Value::Decimal(amount.into()),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 5,
                    day: 17,
                },
                hour: 13,
                minute: 45,
                second: 9,
                micros,
                fsp: 6,
            }),
            Value::Double(score),
            Value::Null,
            Value::UInt(3),
        ],
    };
    let gtid: Arc<str> = Arc::from("3e11fa47-71ca-11e1-9e33-c80aa9429562:1234567");
    let mut src = source();
    src.server_id = 1;
    src.gtid = gtid.clone();
    let ev = {
        let mut ev = ChangeEvent {
            op: Op::Update,
            before: None,
            after: None,
            ts_ms: 1_715_953_509_123,
            shared: Arc::new(Shared {
                source: src.clone(),
                primary_key: Arc::from([0usize].as_slice()),
                table: None,
                before_columns: Default::default(),
                after_columns: Default::default(),
            }),
            row: 3,
            transaction: Some(Transaction {
                total_order: 4,
                data_collection_order: 4,
            }),
            overlap: false,
        };
        ev.set_rows(
            Some(row("alice@example.com", "1234.50", 123_456, 0.75)),
            Some(row("alice.smith@example.com", "1299.99", 654_321, 0.8125)),
        );
        ev
    };
    let mut out = Vec::new();
    write_change_event(&mut out, &ev);
    let blocks = readme_json_blocks();
    assert_eq!(std::str::from_utf8(&out).unwrap(), blocks[0]);

    src.table = Arc::from("");
    src.pos = 123_460_000;
    src.gtid = Arc::from("3e11fa47-71ca-11e1-9e33-c80aa9429562:1234568");
    let sc = SchemaChange {
        source: src,
        ts_ms: 1_715_953_509_999,
        database: Arc::from("shop"),
        ddl: "ALTER TABLE orders ADD COLUMN note TEXT".into(),
    };
    out.clear();
    write_schema_change(&mut out, &sc);
    assert_eq!(std::str::from_utf8(&out).unwrap(), blocks[1]);
}
