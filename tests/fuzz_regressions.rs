//! Regression tests for the fuzz targets of `fuzz/`: every committed seed of
//! `fuzz/corpus/` and every input that once crashed, hung or over-allocated
//! goes through the same entry points (`rowstream::fuzzing`) the fuzzers
//! call, in a plain `cargo test` (no nightly, no sanitizer). Each fixed bug
//! has its own test naming the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;

use rowstream::fuzzing;

/// Runs `f` on every file of `fuzz/corpus/<target>`.
fn corpus(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        f(&std::fs::read(&path).unwrap());
    }
}

#[test]
fn seed_corpora() {
    corpus("binlog_events", fuzzing::binlog_events);
    corpus("binlog_json", fuzzing::binlog_json);
    corpus("json_diff", fuzzing::json_diff);
    corpus("gtid_set", fuzzing::gtid_set);
    corpus("backup_segment", fuzzing::backup_segment);
    corpus("checkpoint", fuzzing::checkpoint);
    corpus("config", fuzzing::config);
    corpus("packets", fuzzing::packets);
}

/// A wire event (header, body, CRC32 rewritten by the harness) of type `ty`.
fn event(ty: u8, body: &[u8]) -> Vec<u8> {
    let size = (19 + body.len() + 4) as u32;
    let mut e = vec![0; 4];
    e.push(ty);
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&size.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(body);
    e.extend_from_slice(&[0; 4]);
    e
}

/// machine.rs: a FORMAT_DESCRIPTION body of exactly 57 bytes sliced
/// `body[57..56]` (the post-header lengths) and panicked.
#[test]
fn format_description_of_57_bytes() {
    let mut input = vec![0];
    input.extend(event(15, &[0; 57]));
    fuzzing::binlog_events(&input);
}

/// machine.rs: mysql_common's TRANSACTION_PAYLOAD parser panics on an unknown
/// header field longer than the event (`ParseBuf::skip`), on a field type
/// above 255 and on an unknown compression type (`unwrap`); the header is now walked with checked reads
/// first (found by fuzzing binlog_events).
#[test]
fn transaction_payload_header_overrun() {
    for body in [
        &[7u8, 200, 1, 2, 3][..],
        &[7, 0xfc, 0xff][..],
        &[1, 1, 4, 2, 1, 7, 0, 1, 2, 3, 4][..],
        &[0xfc, 0x00, 0x01, 0, 0][..],
    ] {
        let mut input = vec![0];
        input.extend(event(40, body));
        fuzzing::binlog_events(&input);
    }
}

/// machine.rs: an event inside a TRANSACTION_PAYLOAD claiming 1 GB made the
/// decoder allocate it before reading; the buffer now grows with the bytes
/// actually decompressed (found by fuzzing binlog_events: a 6 KB input
/// allocated 1.1 GB).
#[test]
fn transaction_payload_inner_size_bounded() {
    let mut inner = vec![0u8; 19];
    inner[4] = 2; // QUERY
    inner[9..13].copy_from_slice(&(1u32 << 30).to_le_bytes());
    inner.extend_from_slice(b"short");
    // Header: payload size, compression NONE (255), end mark; then the payload.
    let mut body = vec![1, 1, inner.len() as u8, 2, 1, 0xfc, 255, 0, 0];
    body.extend_from_slice(&inner);
    let mut input = vec![0];
    input.extend(event(40, &body));
    fuzzing::binlog_events(&input);
}

/// decode.rs: a rows event whose rows take no bytes (no column present)
/// produced rows forever, until memory ran out; a zero-byte row is now
/// malformed (found by fuzzing binlog_events; the input is the fuzzer's).
#[test]
fn rows_of_zero_bytes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_inputs/binlog_events-zero-byte-rows");
    let input = std::fs::read(path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        fuzzing::binlog_events(&input);
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the decoder loops on zero-byte rows");
}
