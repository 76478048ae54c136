//! Entry points for the fuzz targets of `fuzz/` and for their regression
//! tests (`tests/fuzz_regressions.rs`): each takes arbitrary bytes and runs
//! one parser that reads bytes from outside (server, file, user) the way
//! rowstream runs it. Not an API: hidden from the docs, kept here so the
//! fuzz crate needs no private module made public.
//!
//! Invariant: every function here returns normally on any input; a panic,
//! a hang or an allocation far beyond the input's size is a bug in the
//! parser, never in the harness (the harness only fixes what a real stream
//! would never get wrong: event sizes and CRC32s, so the fuzzer gets past
//! the checksum to the decoders).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rowstream_api::kit::filter::TableFilter;
use rowstream_api::{Committed, Flavor};

use crate::gtid::{Gtid, GtidSet};
use crate::source::binlog::event::HEADER_LEN;
use crate::source::binlog::machine::Processor;

/// The magic at the start of a binlog file (seeds are whole binlog files).
const BINLOG_MAGIC: &[u8] = b"\xfebin";

/// Feeds a stream of binlog events to a fresh [`Processor`]. Byte 0 picks
/// the flavour (bit 0) and whether an error is followed by a resume, as a
/// reconnect does (bit 1); the rest is events as in a binlog file (the magic
/// is optional), each cut at its header's size; sizes and CRC32s are
/// rewritten so every event reaches the decoders.
pub fn binlog_events(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let flavor = if sel & 1 == 0 {
        Flavor::MySql
    } else {
        Flavor::MariaDb
    };
    rest = rest.strip_prefix(BINLOG_MAGIC).unwrap_or(rest);
    let mut p = Processor::new(
        Arc::from("fuzz"),
        TableFilter::default(),
        flavor,
        GtidSet::empty(flavor),
    );
    let mut out = Vec::new();
    let mut ev = Vec::new();
    while rest.len() >= HEADER_LEN + 4 {
        let size = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
        let size = size.clamp(HEADER_LEN + 4, rest.len());
        ev.clear();
        ev.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        ev[9..13].copy_from_slice(&(size as u32).to_le_bytes());
        let crc = crc32fast::hash(&ev[..size - 4]);
        ev[size - 4..].copy_from_slice(&crc.to_le_bytes());
        if p.on_wire_event(&ev, &mut out).is_err() {
            if sel & 2 == 0 {
                return;
            }
            p.prepare_resume();
        }
        if p.has_output(&out) {
            let _ = p.take_batch(std::mem::take(&mut out));
        }
    }
}

/// The replication packet layer, as the dump reads a server: byte 0 picks
/// loose sequence ids at a packet's start (bit 0, as after a semi-sync ACK)
/// and whether semi-sync was asked for (bit 1); the rest is the bytes the
/// server sends. The first packet is also parsed as the server's greeting;
/// every packet is reassembled from its chunks (sequence ids checked) and
/// an event packet (0x00 first) is split into semi-sync header and event,
/// until the bytes end.
pub fn packets(data: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let Some((&sel, wire)) = data.split_first() else {
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        // Room for every byte: the server side is written in full, then
        // closed, so reading past the end is an end of stream, not a wait.
        let (ours, mut server) = tokio::io::duplex(wire.len() + 1);
        if server.write_all(wire).await.is_err() {
            return;
        }
        drop(server);
        let mut conn = crate::source::conn::PacketConn::over(ours, sel & 1 != 0);
        let (mut buf, mut semi, mut first) = (Vec::new(), None, true);
        while conn.read_packet(&mut buf).await.is_ok() {
            if std::mem::take(&mut first) {
                let _ = crate::source::conn::parse_greeting(&buf);
            }
            if let [0, payload @ ..] = buf.as_slice() {
                let _ = crate::source::binlog::dump::semi_event(payload, &mut semi, sel & 2 != 0);
            }
        }
    });
}

/// MySQL binary JSON (a JSON column's value) to a JSON document.
pub fn binlog_json(data: &[u8]) {
    if let Ok(v) = crate::source::binlog::json::json_from_binary(data) {
        let _ = v.to_string();
    }
}

/// A partial JSON update applied to a document: bytes 0..2 (little-endian)
/// are the length of the document (MySQL binary JSON, else JSON text, else
/// `{}`), the rest is the binlog diff vector.
pub fn json_diff(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (doc, diffs) = data[2..].split_at(n);
    let mut doc = crate::source::binlog::json::json_from_binary(doc)
        .ok()
        .or_else(|| serde_json::from_slice(doc).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let _ = crate::source::binlog::jsondiff::apply_binlog_diffs(&mut doc, diffs);
}

/// GTID sets and GTIDs of both flavours as text, and the binary sid block
/// of PREVIOUS_GTIDS: whatever parses prints back to text (or bytes) that
/// parses to the same set.
pub fn gtid_set(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for flavor in [Flavor::MySql, Flavor::MariaDb] {
        if let Ok(set) = GtidSet::parse(flavor, &text) {
            let printed = set.to_string();
            let again = GtidSet::parse(flavor, &printed)
                .unwrap_or_else(|e| panic!("{printed:?} (printed from {text:?}) fails: {e}"));
            assert_eq!(printed, again.to_string(), "printing is not stable");
            let _ = set.sequence();
        }
        if let Ok(g) = Gtid::parse(flavor, &text) {
            let mut set = GtidSet::empty(flavor);
            if set.add(&g).is_ok() {
                assert!(set.contains(&g), "{text:?} added but not contained");
            }
        }
    }
    if let Ok(set) = rowstream_api::gtid::MySqlGtidSet::decode_sid_block(data) {
        let again = rowstream_api::gtid::MySqlGtidSet::decode_sid_block(&set.encode_sid_block())
            .expect("an encoded sid block decodes");
        assert_eq!(set.to_string(), again.to_string(), "sid block round trip");
    }
}

/// The checkpoint file parser.
pub fn checkpoint(data: &[u8]) {
    let _ = crate::checkpoint::parse(data);
}

/// The configuration parser with environment overrides: the text up to the
/// first NUL is the TOML file, each line after it a `KEY=VALUE` variable
/// (`ROWSTREAM_` is prefixed when missing).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (toml, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = if k.starts_with("ROWSTREAM_") {
                k.to_string()
            } else {
                format!("ROWSTREAM_{k}")
            };
            (k, v.to_string())
        })
        .collect();
    let _ = crate::config::parse_with_env(toml, Path::new("fuzz.toml"), env);
}

/// A checkpoint for [`backup_segment`]'s recovery: covers the GTIDs whose
/// CRC32 has bit 0 equal to `bit`.
struct HashCommitted {
    bit: u32,
    empty: bool,
}

impl Committed for HashCommitted {
    fn contains(&self, gtid: &str) -> bool {
        crc32fast::hash(gtid.as_bytes()) & 1 == self.bit
    }
    fn is_empty(&self) -> bool {
        self.empty
    }
}

/// A backup directory made of the input, read, verified and recovered. Byte
/// 0 picks the layout: bit 0, segment 1 is zstd-compressed; bits 1-2, the
/// checkpoint recovery sees; bit 3, segment 2 is an open compressed segment
/// (`.zst.open`, one zstd frame per 100 input bytes) and bit 4 tears its last
/// 3 bytes off; bit 5 (with bit 3) takes segment 2's bytes as they are for
/// the `.zst.open` (arbitrary frame headers for the frame walk). Bytes 1..3
/// (little-endian) are the length of segment 1; the rest is segment 2, the
/// open one. The directory is `$TMPDIR/rowstream-fuzz-<pid>`, emptied on
/// every run.
pub fn backup_segment(data: &[u8]) {
    use rowstream_file::segment::{form_name, segment_name, Form};
    if data.len() < 3 {
        return;
    }
    let sel = data[0];
    let n = (u16::from_le_bytes([data[1], data[2]]) as usize).min(data.len() - 3);
    let (first, second) = data[3..].split_at(n);
    let dir = fuzz_dir();
    let compressed = sel & 1 == 1;
    let first_bytes = if compressed {
        zstd::encode_all(first, 1).expect("compressing in memory")
    } else {
        first.to_vec()
    };
    std::fs::write(dir.join(segment_name(1, compressed)), first_bytes)
        .expect("writing the segment");
    if !second.is_empty() && sel & 8 == 0 {
        std::fs::write(dir.join(segment_name(2, false)), second).expect("writing the segment");
    } else if !second.is_empty() {
        let mut bytes = Vec::new();
        if sel & 32 != 0 {
            bytes.extend_from_slice(second);
        } else {
            for piece in second.chunks(100) {
                bytes.extend(zstd::encode_all(piece, 1).expect("compressing in memory"));
            }
        }
        if sel & 16 != 0 {
            bytes.truncate(bytes.len().saturating_sub(3));
        }
        std::fs::write(dir.join(form_name(2, Form::ZstOpen)), bytes).expect("writing the segment");
    }
    if let Ok(rd) = rowstream_file::BackupReader::open(&dir) {
        for e in rd {
            if e.is_err() {
                break;
            }
        }
    }
    let _ = rowstream_file::reader::cat_bounded(&dir, &mut std::io::sink(), 256);
    let _ = rowstream_file::verify(&dir, &mut |_| {});
    let committed = HashCommitted {
        bit: u32::from(sel >> 1 & 1),
        empty: sel & 4 != 0,
    };
    let _ = rowstream_file::recover::recover(&dir, &committed, false);
}

/// This process's scratch directory, created empty.
fn fuzz_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rowstream-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}
