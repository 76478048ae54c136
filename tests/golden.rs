//! Golden decoding test: "decode every row change exactly".
//!
//! For each flavour (MariaDB 10.11; MySQL 9.7 plain; MySQL 9.7 with binlog transaction
//! compression and `binlog_row_value_options=PARTIAL_JSON`) this creates one table with a
//! column of every supported type, inserts rows with edge values (extremes, negatives,
//! empty strings, NULLs, zero dates, 4-byte UTF-8, a ~100 KB nested JSON document),
//! updates every column of every row (the JSON document of row 1 through
//! JSON_SET/JSON_REPLACE/JSON_REMOVE on the column, so PARTIAL_JSON logs a diff), updates
//! row 1 again under `binlog_row_image=NOBLOB` and row 2 under `MINIMAL`, and deletes
//! everything. It then tails the binlog with `rowstream tail` from the GTID set taken
//! before the DML and compares every decoded cell (after image of inserts, both images of
//! updates, before image of deletes) with what the server itself returns for that row,
//! read back after each step with per-type SQL expressions that produce the JSON form
//! documented in `schemas/README.md`. Envelope fields are checked too.
//!
//! Invariants: every column of every full image is compared (a sanity assertion checks
//! the number of compared cells equals columns x images, plus the NOBLOB / MINIMAL cells);
//! all mismatches are collected and reported together as
//! `event image: column NAME (TYPE): expected X, got Y`.
//!
//! `golden_restored_*` takes the same table through a file backup and `rowstream restore`
//! and compares the restored rows with the source's, byte for byte.
//!
//! Tests: `golden_mariadb`, `golden_mysql`, `golden_mysql_with_vector` (the same table
//! plus VECTOR(3)), `golden_mysql_compressed_partial_json`,
//! `golden_mysql_compressed_partial_json_diffs` (without geometry, so `mysqlbinlog -v`
//! prints whole rows and the test proves the JSON column was logged as a diff), and
//! `compare_image_reports_mismatches` (the comparator, no server).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use base64::Engine as _;
use common::{Flavor, TestServer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const DB: &str = "golden";
const TABLE: &str = "t";

/// How the server's view of a column is read back and turned into the expected JSON value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Signed / unsigned integer types: the decimal text, as a JSON integer.
    Int,
    /// YEAR: `col + 0` (so `0000` is 0).
    Year,
    /// BIT(1): boolean.
    Bit1,
    /// BIT(n), n > 1: the bits as an unsigned integer.
    Bits,
    /// FLOAT: the exact 32-bit value (via CAST AS DOUBLE), as its shortest f32 form.
    F32,
    /// DOUBLE: shortest f64 form.
    F64,
    /// DECIMAL: string with exactly `scale` decimals, as the server prints it.
    Dec,
    /// Character strings, ENUM, SET, MariaDB JSON: UTF-8 text (read as base64 of utf8mb4).
    Text,
    /// Binary strings: base64.
    Bytes,
    /// DATE / TIME: the server's text.
    Plain,
    /// DATETIME: server text with a `T` separator.
    DateTime,
    /// TIMESTAMP: UTC text with `T` and `Z`.
    Timestamp,
    /// MySQL JSON: the document.
    Json,
    /// Geometry: {"srid":n,"wkb":base64}.
    Geo,
    /// MySQL VECTOR: array of shortest f32 numbers (raw bytes read via base64).
    Vector,
}

struct Col {
    name: &'static str,
    ddl: String,
    kind: Kind,
    /// A BLOB/TEXT-like column that `binlog_row_image=NOBLOB` may leave out of an image.
    blob: bool,
    /// SQL value of variant A and variant B (every column differs between A and B).
    a: String,
    b: String,
}

fn col(name: &'static str, ddl: &str, kind: Kind, a: &str, b: &str) -> Col {
    let blob = matches!(kind, Kind::Json | Kind::Geo | Kind::Vector)
        || ["TEXT", "BLOB", "JSON"]
            .iter()
            .any(|t| ddl.to_ascii_uppercase().contains(t));
    Col {
        name,
        ddl: ddl.to_string(),
        kind,
        blob,
        a: a.to_string(),
        b: b.to_string(),
    }
}

/// A SQL string literal (backslash escapes on; sql_mode='' in every session here).
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The ~100 KB nested JSON document of variant A.
fn big_json() -> Value {
    let items: Vec<Value> = (0..450)
        .map(|i| {
            json!({
                "id": i,
                "name": format!("item-{i}-ü😀"),
                "price": i as f64 * 1.25,
                "neg": -(i as i64) * 1_000_003,
                "tags": ["x", "y", i.to_string()],
                "ok": i % 2 == 0,
                "none": null,
                "sub": {"a": {"b": {"c": [i, i + 1, {"d": "deep"}]}}}
            })
        })
        .collect();
    // Nesting depth stays under MariaDB's JSON limit of 32.
    let mut deep = json!("bottom");
    for level in 0..24 {
        deep = if level % 2 == 0 {
            json!([level, deep])
        } else {
            json!({ "l": level, "v": deep })
        };
    }
    json!({
        "gone": "to be removed",
        "n": 1,
        "nested": {"deep": [0, "a"]},
        "items": items,
        "u64max": 18446744073709551615u64,
        "i64min": i64::MIN,
        "dbl": 1e300,
        "two": 2.0,
        "small": -2.5e-10,
        "esc": "quote \" backslash \\ ctrl \u{1} tab\t nl\n",
        "unicode": "日本語 𝄞 é€",
        "empty_obj": {},
        "empty_arr": [],
        "chain": deep
    })
}

/// The JSON update of variant B applied to `base` (a column or a literal): a sequence of
/// JSON_SET / JSON_REPLACE / JSON_REMOVE on the same document, which MySQL with
/// PARTIAL_JSON logs as a diff when `base` is the column itself.
fn json_b(base: &str) -> String {
    format!(
        "JSON_REMOVE(JSON_REPLACE(JSON_SET({base}, '$.added', JSON_ARRAY(1, 'two', 3.5), \
         '$.nested.deep[2]', 'x', '$.when', CAST('2024-01-02' AS DATE)), '$.n', 7, '$.items[3].name', 'renamed'), \
         '$.gone', '$.items[0]')"
    )
}

// The per-type column table: one entry per SQL type under test.
#[allow(clippy::too_many_lines)]
fn columns(flavor: Flavor) -> Vec<Col> {
    use Kind::*;
    let mysql = flavor == Flavor::MySql;
    let big = sql_str(&big_json().to_string());
    let u8 = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";
    let u3 = "CHARACTER SET utf8mb3";
    let l1 = "CHARACTER SET latin1";
    let asc = "CHARACTER SET ascii";
    let enum300 = (0..300)
        .map(|i| format!("'v{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let set64 = (0..64)
        .map(|i| format!("'s{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    let mut v = vec![
        col("ti", "TINYINT", Int, "-128", "127"),
        col("tiu", "TINYINT UNSIGNED", Int, "255", "0"),
        col("si", "SMALLINT", Int, "-32768", "32767"),
        col("siu", "SMALLINT UNSIGNED", Int, "65535", "1"),
        col("mi", "MEDIUMINT", Int, "-8388608", "8388607"),
        col("miu", "MEDIUMINT UNSIGNED", Int, "16777215", "0"),
        col("i", "INT", Int, "-2147483648", "2147483647"),
        col("iu", "INT UNSIGNED", Int, "4294967295", "0"),
        col(
            "bi",
            "BIGINT",
            Int,
            "-9223372036854775808",
            "9223372036854775807",
        ),
        col(
            "biu",
            "BIGINT UNSIGNED",
            Int,
            "18446744073709551615",
            "9223372036854775808",
        ),
        col("yr", "YEAR", Year, "'0000'", "2155"),
        col("yr2", "YEAR", Year, "1901", "2024"),
        // After the YEARs: SIGNEDNESS has a bit for each YEAR, and a reader
        // that skips them reads this column's flag from the one before it.
        col("si2", "SMALLINT", Int, "-5", "-32768"),
        col("b1", "BIT(1)", Bit1, "b'1'", "b'0'"),
        col("b10", "BIT(10)", Bits, "b'1010101010'", "b'1111111111'"),
        col(
            "b64",
            "BIT(64)",
            Bits,
            "18446744073709551615",
            "9223372036854775809",
        ),
        col("f", "FLOAT", F32, "1.1", "-3.40282e38"),
        col("f2", "FLOAT", F32, "1.17549435e-38", "0"),
        col(
            "d",
            "DOUBLE",
            F64,
            "0.1e0 + 0.2e0",
            "-1.7976931348623157e308",
        ),
        col("d2", "DOUBLE", F64, "1e-7", "2.0"),
        col("dec", "DECIMAL(10,2)", Dec, "-99999999.99", "12345678.90"),
        col(
            "dec65",
            "DECIMAL(65,30)",
            Dec,
            "99999999999999999999999999999999999.999999999999999999999999999999",
            "-99999999999999999999999999999999999.999999999999999999999999999999",
        ),
        col(
            "dec65s",
            "DECIMAL(65,30)",
            Dec,
            "-0.000000000000000000000000000001",
            "0",
        ),
        col(
            "dec0",
            "DECIMAL(20,0)",
            Dec,
            "-99999999999999999999",
            "12345678901234567890",
        ),
        col("dec4", "DECIMAL(9,4)", Dec, "-0.0001", "99999.9999"),
        col("dec55", "DECIMAL(5,5)", Dec, "-0.99999", "0.00001"),
        col("c_u8", &format!("CHAR(10) {u8}"), Text, "'😀𝄞 ab'", "''"),
        col(
            "vc_u8",
            &format!("VARCHAR(300) {u8}"),
            Text,
            "'ü中 😀 trailing  '",
            "''",
        ),
        col(
            "tx_u8",
            &format!("TEXT {u8}"),
            Text,
            "CONCAT('ctl', CHAR(1), '\\t\"q\"\\\\ 𝄞')",
            "''",
        ),
        col(
            "mt_u8",
            &format!("MEDIUMTEXT {u8}"),
            Text,
            "REPEAT('ü😀', 20000)",
            "'x'",
        ),
        col("c_u3", &format!("CHAR(10) {u3}"), Text, "'ü中€'", "''"),
        col("vc_u3", &format!("VARCHAR(300) {u3}"), Text, "''", "'ß∑'"),
        col("tx_u3", &format!("TEXT {u3}"), Text, "'utf8mb3 ü中'", "''"),
        col("c_l1", &format!("CHAR(10) {l1}"), Text, "'é€'", "''"),
        col("vc_l1", &format!("VARCHAR(300) {l1}"), Text, "'ÿé€ '", "''"),
        col("tx_l1", &format!("TEXT {l1}"), Text, "''", "'Ñandú €'"),
        col("c_as", &format!("CHAR(10) {asc}"), Text, "'ab  '", "''"),
        col(
            "vc_as",
            &format!("VARCHAR(300) {asc}"),
            Text,
            "''",
            "'plain ascii ~'",
        ),
        col("tx_as", &format!("TEXT {asc}"), Text, "'ascii text'", "''"),
        col("en", "ENUM('a','b','c')", Text, "'c'", "'bogus'"),
        col("st", "SET('x','y','z')", Text, "'x,z'", "''"),
        // 300 labels: a 2-byte ENUM; 64 members: an 8-byte SET (top bit included).
        col("en2", &format!("ENUM({enum300})"), Text, "'v299'", "'v0'"),
        col("st64", &format!("SET({set64})"), Text, "'s0,s63'", "'s31,s32'"),
        // CHAR(255) utf8mb4 can hold 1020 bytes: a 2-byte length prefix in the row image.
        col("c_big", &format!("CHAR(255) {u8}"), Text, "REPEAT('😀', 255)", "'x'"),
        // Up to 255 bytes: a 1-byte VARCHAR length prefix.
        col("vc_small", &format!("VARCHAR(20) {l1}"), Text, "'€uro'", "''"),
        col("ttx", &format!("TINYTEXT {u8}"), Text, "''", "'ü'"),
        col("ltx", &format!("LONGTEXT {u8}"), Text, "'long 😀'", "''"),
        col("tbl", "TINYBLOB", Bytes, "x'00'", "x'ff'"),
        col("mbl", "MEDIUMBLOB", Bytes, "''", "x'000102'"),
        col("bin", "BINARY(8)", Bytes, "x'0102030000'", "''"),
        col("vbin", "VARBINARY(300)", Bytes, "x'00ff00'", "''"),
        col("bl", "BLOB", Bytes, "x'deadbeef00'", "''"),
        col("lbl", "LONGBLOB", Bytes, "REPEAT(x'00ff', 40000)", "x'01'"),
        col("dt", "DATE", Plain, "'0000-00-00'", "'9999-12-31'"),
        col("dt2", "DATE", Plain, "'1000-01-01'", "'2024-02-00'"),
        col(
            "dtm0",
            "DATETIME",
            DateTime,
            "'0000-00-00 00:00:00'",
            "'2024-05-17 13:45:09'",
        ),
        col(
            "dtm3",
            "DATETIME(3)",
            DateTime,
            "'2024-05-17 13:45:09.123'",
            "'1000-01-01 00:00:00.000'",
        ),
        col(
            "dtm6",
            "DATETIME(6)",
            DateTime,
            "'9999-12-31 23:59:59.999999'",
            "'2024-00-00 00:00:00.000001'",
        ),
        col(
            "ts0",
            "TIMESTAMP NULL DEFAULT NULL",
            Timestamp,
            "'0000-00-00 00:00:00'",
            "'2038-01-19 03:14:07'",
        ),
        col(
            "ts6",
            "TIMESTAMP(6) NULL DEFAULT NULL",
            Timestamp,
            "'1970-01-01 00:00:01.000000'",
            "'2038-01-19 03:14:07.999999'",
        ),
        col("tm0", "TIME", Plain, "'-838:59:59'", "'00:00:00'"),
        col("tm3", "TIME(3)", Plain, "'-00:00:01.001'", "'12:34:56.789'"),
        col(
            "tm6",
            "TIME(6)",
            Plain,
            "'-838:59:59.000000'",
            "'838:59:59.000000'",
        ),
        col(
            "tm6b",
            "TIME(6)",
            Plain,
            "'-00:00:00.500000'",
            "'-01:02:03.000004'",
        ),
        // Odd fractional precisions (1-2, 3-4, 5-6 digits use 1, 2, 3 bytes), negative TIMEs
        // with a fraction (stored with a borrow from the seconds).
        col("dtm1", "DATETIME(1)", DateTime, "'2024-05-17 13:45:09.9'", "'0000-00-00 00:00:00.0'"),
        col("ts3", "TIMESTAMP(3) NULL DEFAULT NULL", Timestamp, "'2001-02-03 04:05:06.789'", "'0000-00-00 00:00:00.000'"),
        col("tm2", "TIME(2)", Plain, "'-00:00:00.01'", "'-838:59:58.99'"),
        col("tm5", "TIME(5)", Plain, "'-12:00:00.00001'", "'00:00:00.99999'"),
        col(
            "js",
            "JSON",
            if mysql { Json } else { Text },
            &big,
            &json_b(&big),
        ),
        col(
            "js2",
            "JSON",
            if mysql { Json } else { Text },
            "'[]'",
            "'{\"k\": [true, false, null, -1, 1.5, \"s\"]}'",
        ),
        // MySQL binary JSON opaque values (DECIMAL, DATETIME, TIME, DATE, binary) and a
        // big unsigned; the server prints them as JSON numbers / strings.
        col(
            "js3",
            "JSON",
            if mysql { Json } else { Text },
            "JSON_OBJECT('dec', CAST(1.50 AS DECIMAL(5,2)), 'dt', CAST('2024-01-02 03:04:05.123456' AS DATETIME(6)), \
             'tm', CAST('-01:02:03' AS TIME), 'd', CAST('2024-01-02' AS DATE), 'u', CAST(18446744073709551615 AS UNSIGNED), \
             'neg', -9223372036854775808, 'dbl', 1e-7, 'bin', CAST(x'00ff' AS BINARY), 'key with \\\"quote\\\"', 'é')",
            "JSON_ARRAY(CAST(-0.001 AS DECIMAL(10,3)), CAST('00:00:00.5' AS TIME(1)), 3.0e0, 'x')",
        ),
        col(
            "geo",
            "GEOMETRY",
            Geo,
            "ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 2))', 0)",
            "ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1,2 3))', 3857)",
        ),
        col(
            "pt",
            "POINT",
            Geo,
            "ST_GeomFromText('POINT(1.5 -2.25)', 3857)",
            "ST_GeomFromText('POINT(-123456.789 0)', 0)",
        ),
    ];
    if mysql {
        v.push(col(
            "vec",
            "VECTOR(3)",
            Vector,
            "STRING_TO_VECTOR('[1.1,2,-3.5]')",
            "STRING_TO_VECTOR('[0,-1e-7,3.4e38]')",
        ));
    }
    v
}

/// The SQL expression reading column `c` back as the text the expected value is made of.
fn read_expr(c: &Col) -> String {
    let n = c.name;
    match c.kind {
        Kind::Int | Kind::Dec | Kind::Plain | Kind::F64 => format!("CAST(`{n}` AS CHAR)"),
        Kind::Year => format!("CAST(`{n}` + 0 AS CHAR)"),
        Kind::Bit1 | Kind::Bits => format!("CAST(CAST(`{n}` AS UNSIGNED) AS CHAR)"),
        Kind::F32 => format!("CAST(CAST(`{n}` AS DOUBLE) AS CHAR)"),
        Kind::Text => format!("REPLACE(TO_BASE64(CONVERT(`{n}` USING utf8mb4)), '\\n', '')"),
        Kind::Bytes | Kind::Vector => format!("REPLACE(TO_BASE64(`{n}`), '\\n', '')"),
        Kind::DateTime | Kind::Timestamp => format!("REPLACE(CAST(`{n}` AS CHAR), ' ', 'T')"),
        Kind::Json => format!("CAST(`{n}` AS CHAR)"),
        Kind::Geo => format!(
            "CONCAT('{{\"srid\":', ST_SRID(`{n}`), ',\"wkb\":\"', REPLACE(TO_BASE64(ST_AsWKB(`{n}`)), '\\n', ''), '\"}}')"
        ),
    }
}

/// Shortest-form JSON number of a float, parsed the way the test parses rowstream's output.
fn json_number(shortest: String) -> Value {
    serde_json::from_str(&shortest).unwrap_or_else(|e| panic!("bad float text {shortest}: {e}"))
}

/// The expected JSON value of column `c` from the server's text (None = SQL NULL).
fn expected_value(c: &Col, text: Option<&str>) -> Value {
    let Some(t) = text else { return Value::Null };
    let b64 = base64::engine::general_purpose::STANDARD;
    match c.kind {
        Kind::Int | Kind::Year | Kind::Bits => serde_json::from_str::<Value>(t)
            .ok()
            .filter(Value::is_number)
            .unwrap_or_else(|| panic!("{}: not an integer: {t}", c.name)),
        Kind::Bit1 => Value::Bool(t == "1"),
        Kind::F32 => {
            let x: f64 = t
                .parse()
                .unwrap_or_else(|e| panic!("{}: bad double {t}: {e}", c.name));
            json_number(format!("{:?}", x as f32))
        }
        Kind::F64 => {
            let x: f64 = t
                .parse()
                .unwrap_or_else(|e| panic!("{}: bad double {t}: {e}", c.name));
            json_number(format!("{x:?}"))
        }
        Kind::Dec | Kind::Plain | Kind::DateTime | Kind::Bytes => Value::String(t.to_string()),
        Kind::Timestamp => Value::String(format!("{t}Z")),
        Kind::Text => {
            let bytes = b64
                .decode(t)
                .unwrap_or_else(|e| panic!("{}: bad base64 {t}: {e}", c.name));
            Value::String(
                String::from_utf8(bytes).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", c.name)),
            )
        }
        Kind::Json | Kind::Geo => {
            serde_json::from_str(t).unwrap_or_else(|e| panic!("{}: bad JSON {t}: {e}", c.name))
        }
        Kind::Vector => {
            let bytes = b64
                .decode(t)
                .unwrap_or_else(|e| panic!("{}: bad base64 {t}: {e}", c.name));
            assert_eq!(bytes.len() % 4, 0, "{}: vector bytes", c.name);
            Value::Array(
                bytes
                    .chunks(4)
                    .map(|ch| {
                        json_number(format!(
                            "{:?}",
                            f32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]])
                        ))
                    })
                    .collect(),
            )
        }
    }
}

/// Session settings for every statement batch: zero dates allowed, UTC timestamps.
const SESSION: &str = "SET SESSION sql_mode = ''; SET SESSION time_zone = '+00:00';";

/// The server's view of every row: id -> expected JSON value of each column.
fn snapshot(server: &TestServer, cols: &[Col]) -> BTreeMap<i64, Vec<Value>> {
    let exprs: Vec<String> = cols.iter().map(read_expr).collect();
    let sql = format!(
        "{SESSION} SELECT id, {} FROM {DB}.{TABLE} ORDER BY id",
        exprs.join(", ")
    );
    server
        .query(&sql)
        .into_iter()
        .map(|row| {
            let id: i64 = row[0].as_deref().expect("id").parse().expect("id");
            let vals = cols
                .iter()
                .zip(&row[1..])
                .map(|(c, t)| expected_value(c, t.as_deref()))
                .collect();
            (id, vals)
        })
        .collect()
}

/// Which columns an image must hold.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Image {
    /// Every column (binlog_row_image=FULL).
    Full,
    /// binlog_row_image=NOBLOB: every non-blob column, blob columns optional.
    NoBlob,
    /// binlog_row_image=MINIMAL: exactly the listed columns (`Expected::only_*`).
    Minimal,
}

struct Expected<'a> {
    op: &'static str,
    id: i64,
    before: Option<&'a [Value]>,
    after: Option<&'a [Value]>,
    image: Image,
    /// Columns that must be present in the after image even under NOBLOB (changed ones).
    must_after: &'static [&'static str],
    /// For [`Image::Minimal`]: the exact column sets of the before and after images.
    only_before: &'static [&'static str],
    only_after: &'static [&'static str],
    label: String,
}

/// Compares one decoded image with the server's view; returns the number of cells compared.
// Each call site names the image's own column rules inline; a struct for them
// would only move the same eight names one level down.
#[allow(clippy::too_many_arguments)]
fn compare_image(
    what: &str,
    got: &Value,
    exp: &[Value],
    cols: &[Col],
    image: Image,
    must: &[&str],
    only: &[&str],
    errors: &mut Vec<String>,
) -> usize {
    let Some(obj) = got.as_object() else {
        errors.push(format!("{what}: image is not an object: {}", short(got)));
        return 0;
    };
    let mut compared = 0;
    // id (the PK) first.
    for key in obj.keys() {
        if key != "id" && !cols.iter().any(|c| c.name == key) {
            errors.push(format!("{what}: unknown column {key:?} in image"));
        }
    }
    for (c, e) in std::iter::once(None)
        .chain(cols.iter().map(Some))
        .zip(std::iter::once(None).chain(exp.iter().map(Some)))
    {
        let name = c.map_or("id", |c| c.name);
        if image == Image::Minimal && !only.contains(&name) {
            if obj.contains_key(name) {
                errors.push(format!(
                    "{what}: column {name} must not be in a MINIMAL image (only {only:?})"
                ));
            }
            continue;
        }
        let Some(g) = obj.get(name) else {
            let optional =
                image == Image::NoBlob && c.is_some_and(|c| c.blob) && !must.contains(&name);
            if !optional {
                errors.push(format!("{what}: column {name} missing from the image"));
            }
            continue;
        };
        compared += 1;
        let Some(e) = e else {
            // id: checked by the caller (the event is matched by it).
            continue;
        };
        if g != e {
            let ty = c.map_or(String::new(), |c| c.ddl.clone());
            errors.push(format!(
                "{what}: column {name} ({ty}): expected {}, got {}",
                short(e),
                short(g)
            ));
        }
    }
    compared
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}... ({} chars)", &s[..cut], s.len())
    } else {
        s
    }
}

/// What mysqlbinlog shows about partial JSON in the server's binlogs.
struct PartialJsonEvidence {
    /// `Update_rows_partial` events (PARTIAL_UPDATE_ROWS_EVENT).
    events: usize,
    /// Row values logged as a diff, printed as `@N=JSON_...(@N, ...)`.
    diffs: usize,
    /// Those lines, abbreviated.
    diff_lines: Vec<String>,
}

/// Runs `mysqlbinlog -v` (deploy/dev/mysql-tool.sh) over every binlog of the server.
/// (mysqlbinlog 9.7 stops printing a row at a GEOMETRY column, so diffs only show for
/// tables whose JSON columns come before any geometry.)
fn mysqlbinlog_partial_json(server: &TestServer) -> PartialJsonEvidence {
    let base = server
        .query_value("SELECT @@log_bin_basename")
        .expect("log_bin_basename");
    let dir = std::path::Path::new(&base)
        .parent()
        .expect("binlog dir")
        .to_path_buf();
    let files: Vec<String> = server
        .query("SHOW BINARY LOGS")
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dev/mysql-tool.sh");
    let mut cmd = Command::new(tool);
    cmd.arg("mysqlbinlog")
        .arg("-v")
        .args(files.iter().map(|f| dir.join(f)));
    let out = common::output_with_timeout(&mut cmd, None, Duration::from_secs(120));
    assert!(out.success(), "mysqlbinlog failed: {}", out.stderr_text());
    let text = String::from_utf8_lossy(&out.stdout);
    let events = text
        .lines()
        .filter(|l| l.contains("Update_rows_partial"))
        .count();
    // A diff value starts `###   @56=JSON_REMOVE(` and continues on `###      ` lines.
    let mut diff_lines: Vec<String> = Vec::new();
    let mut in_diff = false;
    for l in text.lines() {
        if l.starts_with("###   @") && l.contains("=JSON_") {
            diff_lines.push(l.trim_start_matches("###").trim().to_string());
            in_diff = true;
        } else if in_diff && l.starts_with("###      ") {
            let last = diff_lines.last_mut().expect("diff");
            last.push(' ');
            last.push_str(l.trim_start_matches("###").trim());
        } else {
            in_diff = false;
        }
    }
    eprintln!(
        "mysqlbinlog: {events} Update_rows_partial event(s), {} JSON diff value(s)",
        diff_lines.len()
    );
    for l in text.lines().filter(|l| l.contains("Update_rows_partial")) {
        eprintln!("  {}", l.trim());
    }
    for l in &diff_lines {
        eprintln!("  {}", l.chars().take(400).collect::<String>());
    }
    PartialJsonEvidence {
        events,
        diffs: diff_lines.len(),
        diff_lines,
    }
}

/// Runs the DML of the test on the golden table (steps 1 to 4) and returns the server's
/// view of the rows after steps 1, 2, 3 and 3b (step 4 deletes everything).
fn run_steps(server: &TestServer, cols: &[Col]) -> [BTreeMap<i64, Vec<Value>>; 4] {
    // Step 1: rows A (1, 4), B (2), all NULL (3).
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let a_vals: Vec<&str> = cols.iter().map(|c| c.a.as_str()).collect();
    let b_vals: Vec<&str> = cols.iter().map(|c| c.b.as_str()).collect();
    server.exec(&format!(
        "{SESSION} INSERT INTO {DB}.{TABLE} (id, {n}) VALUES (1, {a}), (2, {b}), (3, {nulls}), (4, {a})",
        n = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
        a = a_vals.join(", "),
        b = b_vals.join(", "),
        nulls = vec!["NULL"; cols.len()].join(", "),
    ));
    let s1 = snapshot(server, cols);
    assert_eq!(s1.len(), 4, "rows after insert");
    assert!(s1[&3].iter().all(Value::is_null), "row 3 must be all NULL");
    assert_ne!(s1[&1], s1[&2], "A and B rows");
    for (i, c) in cols.iter().enumerate() {
        assert_ne!(
            s1[&1][i], s1[&2][i],
            "column {} must differ between A and B (fix the test values)",
            c.name
        );
        assert!(
            !s1[&1][i].is_null() && !s1[&2][i].is_null(),
            "column {}: A and B must not be NULL",
            c.name
        );
    }

    // Step 2: every column of every row changes: 1 A->B (JSON via JSON_SET on the column:
    // a partial JSON diff under PARTIAL_JSON), 2 B->A, 3 NULL->B, 4 A->NULL.
    let set = |vals: &dyn Fn(&Col) -> String| {
        cols.iter()
            .map(|c| format!("`{}` = {}", c.name, vals(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let set_1 = set(&|c| {
        if c.name == "js" {
            json_b("`js`")
        } else {
            c.b.clone()
        }
    });
    let set_2 = set(&|c| c.a.clone());
    let set_3 = set(&|c| c.b.clone());
    let set_4 = set(&|_| "NULL".to_string());
    server.exec(&format!(
        "{SESSION} BEGIN; UPDATE {DB}.{TABLE} SET {set_1} WHERE id = 1; UPDATE {DB}.{TABLE} SET {set_2} WHERE id = 2; \
         UPDATE {DB}.{TABLE} SET {set_3} WHERE id = 3; UPDATE {DB}.{TABLE} SET {set_4} WHERE id = 4; COMMIT"
    ));
    let s2 = snapshot(server, cols);
    for id in 1..=4 {
        for (i, c) in cols.iter().enumerate() {
            assert_ne!(
                s1[&id][i], s2[&id][i],
                "row {id} column {} must change in the update (fix the test values)",
                c.name
            );
        }
    }

    // Step 3: binlog_row_image=NOBLOB for this session: a partial JSON update (PARTIAL_JSON
    // keeps the JSON column in the before image) plus two non-blob columns.
    server.exec(&format!(
        "{SESSION} SET SESSION binlog_row_image = NOBLOB; UPDATE {DB}.{TABLE} SET \
         js = JSON_SET(js, '$.noblob', JSON_OBJECT('k', 'v'), '$.two', 3), `i` = `i` - 1, `dec` = 0.5 WHERE id = 1"
    ));
    let s3 = snapshot(server, cols);

    // Step 3b: binlog_row_image=MINIMAL: the before image holds the PK only, the after
    // image the columns the statement set.
    server.exec(&format!(
        "{SESSION} SET SESSION binlog_row_image = MINIMAL; UPDATE {DB}.{TABLE} SET \
         `i` = 7, `tx_u8` = 'minimal ü', `dtm6` = '2000-01-01 00:00:00.000001' WHERE id = 2"
    ));
    let s4 = snapshot(server, cols);

    // Step 4: delete everything.
    server.exec(&format!("{SESSION} DELETE FROM {DB}.{TABLE}"));
    assert!(snapshot(server, cols).is_empty());

    [s1, s2, s3, s4]
}

/// The row events the steps of [`run_steps`] must produce, in order, with the images
/// the server's views `s` say they hold.
fn expectations(s: &[BTreeMap<i64, Vec<Value>>; 4]) -> Vec<Expected<'_>> {
    let [s1, s2, s3, s4] = s;
    let mut expected: Vec<Expected> = Vec::new();
    for id in 1..=4 {
        expected.push(Expected {
            op: "c",
            id,
            before: None,
            after: Some(&s1[&id]),
            image: Image::Full,
            must_after: &[],
            only_before: &[],
            only_after: &[],
            label: format!("insert id={id}"),
        });
    }
    for id in 1..=4 {
        expected.push(Expected {
            op: "u",
            id,
            before: Some(&s1[&id]),
            after: Some(&s2[&id]),
            image: Image::Full,
            must_after: &[],
            only_before: &[],
            only_after: &[],
            label: format!("update id={id}"),
        });
    }
    expected.push(Expected {
        op: "u",
        id: 1,
        before: Some(&s2[&1]),
        after: Some(&s3[&1]),
        image: Image::NoBlob,
        must_after: &["js"],
        only_before: &[],
        only_after: &[],
        label: "NOBLOB update id=1".into(),
    });
    expected.push(Expected {
        op: "u",
        id: 2,
        before: Some(&s3[&2]),
        after: Some(&s4[&2]),
        image: Image::Minimal,
        must_after: &[],
        only_before: &["id"],
        only_after: &["i", "tx_u8", "dtm6"],
        label: "MINIMAL update id=2".into(),
    });
    for id in 1..=4 {
        expected.push(Expected {
            op: "d",
            id,
            before: Some(&s4[&id]),
            after: None,
            image: Image::Full,
            must_after: &[],
            only_before: &[],
            only_after: &[],
            label: format!("delete id={id}"),
        });
    }

    expected
}

/// The envelope checks of consecutive row events: source fields, a unique (file, pos,
/// row) per row change, transaction ids and 1-based orders per transaction, timestamps.
struct EnvelopeCheck {
    connector: &'static str,
    server_id: u32,
    seen_coords: std::collections::HashSet<(Value, Value, Value)>,
    last_gtid: String,
    order_in_tx: u64,
}

impl EnvelopeCheck {
    fn new(connector: &'static str, server_id: u32) -> EnvelopeCheck {
        EnvelopeCheck {
            connector,
            server_id,
            seen_coords: std::collections::HashSet::new(),
            last_gtid: String::new(),
            order_in_tx: 0,
        }
    }

    /// Checks the envelope of `ev`, the next event, against `exp`; pushes what differs.
    fn check(&mut self, what: &str, ev: &Value, exp: &Expected, errors: &mut Vec<String>) {
        let connector = self.connector;
        // Envelope.
        if ev["op"] != exp.op {
            errors.push(format!("{what}: op {} (expected {})", ev["op"], exp.op));
        }
        let src = &ev["source"];
        for (k, v) in [
            ("connector", connector),
            ("db", DB),
            ("table", TABLE),
            ("snapshot", "false"),
        ] {
            if src[k] != v {
                errors.push(format!("{what}: source.{k} = {} (expected {v:?})", src[k]));
            }
        }
        if src["server_id"] != json!(self.server_id) {
            errors.push(format!(
                "{what}: source.server_id = {} (expected {})",
                src["server_id"], self.server_id
            ));
        }
        let gtid = src["gtid"].as_str().unwrap_or("");
        if gtid.is_empty() {
            errors.push(format!("{what}: empty source.gtid"));
        }
        if ev["transaction"]["id"] != src["gtid"] {
            errors.push(format!(
                "{what}: transaction.id {} != source.gtid {}",
                ev["transaction"]["id"], src["gtid"]
            ));
        }
        if src["file"].as_str().unwrap_or("").is_empty() {
            errors.push(format!("{what}: empty source.file"));
        }
        if src["pos"].as_u64().is_none_or(|p| p == 0) {
            errors.push(format!("{what}: source.pos {} (expected > 0)", src["pos"]));
        }
        let coords = (src["file"].clone(), src["pos"].clone(), src["row"].clone());
        if !src["row"].is_u64() || !self.seen_coords.insert(coords.clone()) {
            errors.push(format!(
                "{what}: (file, pos, row) {coords:?} missing or not unique"
            ));
        }
        if gtid != self.last_gtid {
            self.last_gtid = gtid.to_string();
            self.order_in_tx = 0;
        }
        self.order_in_tx += 1;
        let order_in_tx = self.order_in_tx;
        // One table only: total order and per-table order coincide.
        for k in ["total_order", "data_collection_order"] {
            if ev["transaction"][k] != json!(order_in_tx) {
                errors.push(format!(
                    "{what}: transaction.{k} = {} (expected {order_in_tx})",
                    ev["transaction"][k]
                ));
            }
        }
        if ev["ts_ms"].as_u64().is_none_or(|t| t == 0)
            || src["ts_ms"].as_u64().is_none_or(|t| t == 0)
        {
            errors.push(format!(
                "{what}: ts_ms {} / source.ts_ms {} must be positive",
                ev["ts_ms"], src["ts_ms"]
            ));
        }
    }
}

/// The golden table with the columns `cols`.
fn create_table(server: &TestServer, cols: &[Col]) {
    let ddl: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "`{}` {} NULL",
                c.name,
                c.ddl.replace(" NULL DEFAULT NULL", "")
            )
        })
        .collect();
    server.exec(&format!(
        "{SESSION} CREATE DATABASE {DB}; CREATE TABLE {DB}.{TABLE} (id INT NOT NULL PRIMARY KEY, {}) \
         DEFAULT CHARSET=utf8mb4",
        ddl.join(", ")
    ));
}

fn golden(flavor: Flavor, extra_args: &[&str], keep: fn(&Col) -> bool) {
    let Some(server) = TestServer::start(flavor, extra_args) else {
        return;
    };
    let partial_json = extra_args.iter().any(|a| a.contains("PARTIAL_JSON"));
    let cols: Vec<Col> = columns(flavor).into_iter().filter(keep).collect();
    let has_geometry = cols.iter().any(|c| c.kind == Kind::Geo);
    let connector = flavor.name();

    create_table(&server, &cols);
    let from = server.gtid_executed();

    let snapshots = run_steps(&server, &cols);
    let expected = expectations(&snapshots);

    let lines = common::tail_with_timeout(
        &server.repl_url(),
        &from,
        expected.len(),
        &[],
        Duration::from_secs(180),
    );
    let events: Vec<&Value> = lines.iter().filter(|l| l.get("op").is_some()).collect();
    assert_eq!(
        events.len(),
        expected.len(),
        "row events: got {}, expected {}",
        events.len(),
        expected.len()
    );

    let mut errors: Vec<String> = Vec::new();
    let mut compared = 0usize;
    let mut full_images = 0usize;
    let mut minimal_cells = 0usize;
    let mut envelope = EnvelopeCheck::new(connector, server.server_id);
    let mut noblob_present = 0usize;
    for (ev, exp) in events.iter().zip(&expected) {
        let what = &exp.label;
        envelope.check(what, ev, exp, &mut errors);
        // Images.
        for (side, exp_img) in [("before", exp.before), ("after", exp.after)] {
            let got = &ev[side];
            match exp_img {
                None => {
                    if !got.is_null() {
                        errors.push(format!("{what}: {side} must be null, got {}", short(got)));
                    }
                }
                Some(vals) => {
                    let only: &[&str] = if side == "after" {
                        exp.only_after
                    } else {
                        exp.only_before
                    };
                    let has_id = exp.image != Image::Minimal || only.contains(&"id");
                    if has_id && got.get("id") != Some(&json!(exp.id)) {
                        errors.push(format!(
                            "{what}: {side}.id = {:?} (expected {})",
                            got.get("id"),
                            exp.id
                        ));
                    }
                    let must: &[&str] = if side == "after" { exp.must_after } else { &[] };
                    let n = compare_image(
                        &format!("{what} {side}"),
                        got,
                        vals,
                        &cols,
                        exp.image,
                        must,
                        only,
                        &mut errors,
                    );
                    compared += n;
                    match exp.image {
                        Image::Full => full_images += 1,
                        Image::NoBlob => noblob_present += n,
                        Image::Minimal => {
                            minimal_cells += n;
                            if n != only.len() {
                                errors.push(format!(
                                    "{what} {side}: {n} cells compared, expected {only:?}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    // Sanity: the comparison really looked at every cell (id + every column per image).
    let per_image = cols.len() + 1;
    let expected_full_images = 4 + 4 * 2 + 4;
    assert_eq!(full_images, expected_full_images, "full images compared");
    assert_eq!(
        compared,
        per_image * expected_full_images + noblob_present + minimal_cells,
        "cells compared: {} columns x {expected_full_images} full images + {noblob_present} NOBLOB cells (errors: {errors:#?})",
        per_image
    );
    let non_blob = cols.iter().filter(|c| !c.blob).count() + 1;
    assert!(
        noblob_present > 2 * non_blob,
        "NOBLOB images hold {noblob_present} cells, expected at least {}",
        2 * non_blob + 1
    );
    eprintln!(
        "{connector} {extra_args:?}: compared {compared} cells ({per_image} columns x {expected_full_images} full images + {noblob_present} NOBLOB cells + {minimal_cells} MINIMAL cells), {} mismatches",
        errors.len()
    );

    if partial_json {
        // The step-2 update of row 1 and the NOBLOB update change the JSON document with
        // JSON_SET/JSON_REPLACE/JSON_REMOVE on the column itself: MySQL logs them as
        // PARTIAL_UPDATE_ROWS events, and the decoded after images above were complete.
        let ev = mysqlbinlog_partial_json(&server);
        assert!(ev.events >= 2, "expected PARTIAL_UPDATE_ROWS events (Update_rows_partial) in the binlog, mysqlbinlog found {}", ev.events);
        if !has_geometry {
            // Rows are fully printed: the JSON column must really have been logged as a diff
            // in both updates (not as a whole document in a partial-capable event).
            assert!(
                ev.diffs >= 2,
                "expected the JSON column logged as a diff (@N=JSON_...(@N, ...)) in 2 updates, mysqlbinlog shows {}: {:#?}",
                ev.diffs,
                ev.diff_lines
            );
        }
    }

    assert!(
        errors.is_empty(),
        "{} decoding mismatches on {connector} {extra_args:?}:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

fn no_vector(c: &Col) -> bool {
    c.kind != Kind::Vector
}

#[test]
fn golden_mariadb() {
    golden(Flavor::MariaDb, &[], no_vector);
}

#[test]
fn golden_mysql() {
    golden(Flavor::MySql, &[], no_vector);
}

/// The full table including VECTOR(3) (MySQL 9). Kept apart from `golden_mysql` so a
/// VECTOR problem (e.g. its TABLE_MAP charset entry) does not hide the other types.
#[test]
fn golden_mysql_with_vector() {
    golden(Flavor::MySql, &[], |_| true);
}

/// Every column type through backup and restore: rows 10 and 11 come from
/// the initial snapshot, rows 1-3 are inserted and updated while
/// streaming; `rowstream restore` of the backup into an empty server gives
/// the source's `SELECT *` text byte for byte, and the same exact per-type
/// views the decoding test compares.
fn golden_restored(flavor: Flavor, keep: fn(&Col) -> bool) {
    let Some(server) = TestServer::start(flavor, &[]) else {
        return;
    };
    let cols: Vec<Col> = columns(flavor).into_iter().filter(keep).collect();
    create_table(&server, &cols);
    let names = cols
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let vals = |f: fn(&Col) -> &str| cols.iter().map(f).collect::<Vec<_>>().join(", ");
    let (a, b) = (vals(|c| c.a.as_str()), vals(|c| c.b.as_str()));
    let nulls = vec!["NULL"; cols.len()].join(", ");
    server.exec(&format!(
        "{SESSION} INSERT INTO {DB}.{TABLE} (id, {names}) VALUES (10, {a}), (11, {b})"
    ));
    let mut cfg = common::ServiceConfig::new(&[server.repl_url()], common::Sink::file());
    cfg.start = None;
    let mut svc = common::Service::new(&format!("golden-restore-{}", flavor.name()), cfg);
    svc.spawn();
    server.exec(&format!(
        "{SESSION} INSERT INTO {DB}.{TABLE} (id, {names}) VALUES (1, {a}), (2, {b}), (3, {nulls})"
    ));
    let set = |f: fn(&Col) -> &str| {
        cols.iter()
            .map(|c| format!("`{}` = {}", c.name, f(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    server.exec(&format!(
        "{SESSION} BEGIN; UPDATE {DB}.{TABLE} SET {} WHERE id = 1; UPDATE {DB}.{TABLE} SET {} WHERE id = 3; \
         UPDATE {DB}.{TABLE} SET {} WHERE id = 11; COMMIT",
        set(|c| c.b.as_str()),
        set(|c| c.a.as_str()),
        set(|_| "NULL"),
    ));
    svc.wait_caught_up(&server, Duration::from_secs(120));
    svc.stop(Duration::from_secs(10));
    let target = TestServer::start(flavor, &[]).expect("a target server");
    let out = common::output_with_timeout(
        common::rowstream()
            .args(["restore", "--backup"])
            .arg(&svc.backup)
            .args(["--url", &target.url()]),
        None,
        Duration::from_secs(120),
    );
    out.result("restore").unwrap();
    let select = format!("{SESSION} SELECT * FROM {DB}.{TABLE} ORDER BY id");
    let want = server.query(&select);
    assert_eq!(want.len(), 5);
    let got = target.query(&select);
    let names: Vec<&str> = std::iter::once("id")
        .chain(cols.iter().map(|c| c.name))
        .collect();
    let mut diffs = Vec::new();
    for (w, g) in want.iter().zip(&got) {
        for (i, (a, b)) in w.iter().zip(g).enumerate() {
            if a != b {
                diffs.push(format!(
                    "row {:?} column {}: source {}, restored {}",
                    w[0],
                    names[i],
                    short_text(a),
                    short_text(b)
                ));
            }
        }
    }
    assert_eq!(got.len(), want.len());
    assert!(diffs.is_empty(), "SELECT * differs:\n{}", diffs.join("\n"));
    assert_eq!(snapshot(&target, &cols), snapshot(&server, &cols));
}

fn short_text(v: &Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(s) if s.len() > 80 => format!(
            "{:?}... ({} bytes)",
            s.chars().take(80).collect::<String>(),
            s.len()
        ),
        Some(s) => format!("{s:?}"),
    }
}

#[test]
fn golden_restored_mariadb() {
    golden_restored(Flavor::MariaDb, no_vector);
}

/// Without `js3`: MySQL JSON's own scalar types (DECIMAL, DATETIME, TIME,
/// DATE, opaque binary) reach the envelope as JSON numbers and strings
/// (`schemas/README.md`), so they restore as those (`1.50` as `1.5`): a
/// documented limit of the JSON envelope, listed in the README.
#[test]
fn golden_restored_mysql() {
    golden_restored(Flavor::MySql, |c| c.name != "js3");
}

const COMPRESSED_PARTIAL_JSON: &[&str] = &[
    "--binlog-transaction-compression=ON",
    "--binlog-row-value-options=PARTIAL_JSON",
];

/// Compressed transaction payloads and PARTIAL_UPDATE_ROWS events, every type but VECTOR.
#[test]
fn golden_mysql_compressed_partial_json() {
    golden(Flavor::MySql, COMPRESSED_PARTIAL_JSON, no_vector);
}

/// Same without the geometry columns, so mysqlbinlog prints whole rows and the test can
/// prove the JSON column was logged as a diff (mysqlbinlog 9.7 cannot print GEOMETRY).
#[test]
fn golden_mysql_compressed_partial_json_diffs() {
    golden(Flavor::MySql, COMPRESSED_PARTIAL_JSON, |c| {
        c.kind != Kind::Vector && c.kind != Kind::Geo
    });
}

/// The comparison itself, without a server: a wrong value, a missing column and an
/// unknown column are each reported, and matching cells are counted.
#[test]
fn compare_image_reports_mismatches() {
    let cols = vec![
        col("a", "INT", Kind::Int, "1", "2"),
        col("t", "TEXT", Kind::Text, "'x'", "'y'"),
    ];
    let exp = vec![json!(1), json!("x")];
    let mut errors = Vec::new();
    assert_eq!(
        compare_image(
            "ok",
            &json!({"id": 1, "a": 1, "t": "x"}),
            &exp,
            &cols,
            Image::Full,
            &[],
            &[],
            &mut errors
        ),
        3
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        compare_image(
            "bad",
            &json!({"id": 1, "a": 2, "t": "x"}),
            &exp,
            &cols,
            Image::Full,
            &[],
            &[],
            &mut errors
        ),
        3
    );
    assert_eq!(
        errors,
        vec!["bad: column a (INT): expected 1, got 2".to_string()]
    );
    errors.clear();
    compare_image(
        "missing",
        &json!({"id": 1, "a": 1, "z": 0}),
        &exp,
        &cols,
        Image::Full,
        &[],
        &[],
        &mut errors,
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    errors.clear();
    // NOBLOB: a blob column may be absent unless it must be there.
    assert_eq!(
        compare_image(
            "noblob",
            &json!({"id": 1, "a": 1}),
            &exp,
            &cols,
            Image::NoBlob,
            &[],
            &[],
            &mut errors
        ),
        2
    );
    assert!(errors.is_empty(), "{errors:?}");
    compare_image(
        "noblob",
        &json!({"id": 1, "a": 1}),
        &exp,
        &cols,
        Image::NoBlob,
        &["t"],
        &[],
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.clear();
    // MINIMAL: exactly the listed columns; an extra one is an error.
    assert_eq!(
        compare_image(
            "minimal",
            &json!({"a": 1}),
            &exp,
            &cols,
            Image::Minimal,
            &[],
            &["a"],
            &mut errors
        ),
        1
    );
    assert!(errors.is_empty(), "{errors:?}");
    compare_image(
        "minimal",
        &json!({"id": 1, "a": 1}),
        &exp,
        &cols,
        Image::Minimal,
        &[],
        &["id"],
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    // Floats: FLOAT 1.1 is expected as the shortest f32 form, not the widened double.
    assert_eq!(
        expected_value(
            &col("f", "FLOAT", Kind::F32, "", ""),
            Some("1.100000023841858")
        ),
        json!(1.1)
    );
    assert_ne!(
        expected_value(
            &col("f", "FLOAT", Kind::F32, "", ""),
            Some("1.100000023841858")
        ),
        json!(1.100000023841858)
    );
}
