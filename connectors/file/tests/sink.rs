//! The file sink end to end on temporary directories: acks after flush,
//! poisoned sink on I/O errors, rotation into .zst, recovery to the
//! checkpoint in every place a cut can fall, refusals, and `cat`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::fs;
use std::io::Read;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rowstream_api::json::write_record;
use rowstream_api::testing::{batch_of, event, gtid, FakeCommitted};
use rowstream_api::{Ack, AckReceiver, Batch, Commit, Record, SchemaChange, Sink, SinkError};
use rowstream_file::encode::{encode_segment_start, encode_tx_end};
use rowstream_file::reader::cat_bounded;
use rowstream_file::segment::{form_name, open_segment, segment_name, segments, Form, Segment};
use rowstream_file::{cat, verify, BackupReader, FileSink, FileSinkConfig, LineKind, TxCrc};

fn ddl(tx: u64) -> Record {
    let Record::Change(ev) = event(tx, 0) else {
        unreachable!()
    };
    Record::SchemaChange(Box::new(SchemaChange {
        source: ev.source().clone(),
        ts_ms: 1,
        database: "shop".into(),
        ddl: format!("ALTER TABLE t{tx} ADD c INT"),
    }))
}

fn line(rec: &Record) -> Vec<u8> {
    let mut v = Vec::new();
    write_record(&mut v, rec);
    v
}

/// Builds batches out of whole transactions `(tx number, records)`, with a
/// DDL record first in every seventh transaction.
fn batch(seq: u64, txs: &[(u64, u64)]) -> Batch {
    batch_of(seq, txs, |tx, i| {
        if i == 0 && tx % 7 == 3 {
            ddl(tx)
        } else {
            event(tx, i)
        }
    })
}

/// The records of the given transactions, as `cat` must print them.
fn expected(txs: &[(u64, u64)]) -> Vec<Vec<u8>> {
    let b = batch(0, txs);
    b.records.iter().map(line).collect()
}

fn cfg(dir: &Path) -> FileSinkConfig {
    FileSinkConfig::new("backup", dir)
}

async fn started(cfg: FileSinkConfig, ck: &dyn rowstream_api::Committed) -> FileSink {
    FileSink::start(&cfg, ck).await.unwrap()
}

async fn write(s: &mut FileSink, b: Batch) -> AckReceiver {
    let (ack, rx) = Ack::new();
    s.write(Arc::new(b), ack).await.unwrap();
    rx
}

fn cat_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = cat(dir, &mut out).unwrap();
    let lines: Vec<Vec<u8>> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len() as u64, n);
    lines
}

fn markers(dir: &Path) -> Vec<String> {
    BackupReader::open(dir)
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.kind == LineKind::TxEnd)
        .map(|e| rowstream_file::encode::parse_tx_end(&e.line).unwrap().id)
        .collect()
}

/// The (uncompressed) contents of segment `num` in the form it has.
fn seg_text(dir: &Path, num: u64) -> Vec<u8> {
    let seg = *segments(dir)
        .unwrap()
        .iter()
        .find(|s| s.num == num)
        .unwrap();
    let mut out = Vec::new();
    open_segment(dir, seg)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn zst_open(num: u64) -> Segment {
    Segment {
        num,
        form: Form::ZstOpen,
    }
}

fn txs(range: std::ops::Range<u64>, n: u64) -> Vec<(u64, u64)> {
    range.map(|t| (t, n + t % 3)).collect()
}

#[tokio::test]
async fn acks_after_data_is_written_and_format() {
    let d = tempfile::tempdir().unwrap();
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    let rx1 = write(&mut s, batch(1, &[(1, 2), (2, 1)])).await;
    // No flush: the I/O job started by `write` acks once the data is in the
    // file (and fsync'd).
    assert_eq!(rx1.await, Ok(Ok(())));
    // Every segment opens with its start line (nothing before it here).
    let mut want1 = Vec::new();
    encode_segment_start(&mut want1, &Default::default());
    assert!(want1.starts_with(b"{\"segment\":{\"start_covered\":{}},\"crc32c\":\""));
    for l in expected(&[(1, 2)]) {
        want1.extend(l);
        want1.push(b'\n');
    }
    assert!(seg_text(d.path(), 1).starts_with(&want1));
    assert_eq!(segments(d.path()).unwrap(), vec![zst_open(1)]);
    // A transaction spanning two batches.
    let mut b = batch(2, &[(3, 2)]);
    b.commits.clear();
    let mut rx2 = write(&mut s, b).await;
    s.flush().await.unwrap();
    assert_eq!(rx2.try_recv(), Ok(Ok(())));
    let b = Batch {
        seq: 3,
        records: vec![event(3, 2)],
        commits: vec![Commit {
            end: 1,
            gtid: gtid(3).into(),
            events: 3,
        }],
        executed: None,
    };
    let mut rx3 = write(&mut s, b).await;
    s.flush().await.unwrap();
    assert_eq!(rx3.try_recv(), Ok(Ok(())));

    let raw = seg_text(d.path(), 1);
    // Each marker carries the CRC32C of its transaction's lines (the third
    // transaction spans two batches), after the segment's start line.
    let mut want = Vec::new();
    encode_segment_start(&mut want, &Default::default());
    let mut crc = TxCrc::default();
    for (rec, m) in [
        (event(1, 0), None),
        (event(1, 1), Some(("0-1-1", 2))),
        (event(2, 0), Some(("0-1-2", 1))),
        (ddl(3), None),
        (event(3, 1), None),
        (event(3, 2), Some(("0-1-3", 3))),
    ] {
        let mut l = line(&rec);
        l.push(b'\n');
        crc.update(&l);
        want.extend(l);
        if let Some((id, n)) = m {
            encode_tx_end(&mut want, id, n, &[], crc);
            crc = TxCrc::default();
        }
    }
    assert!(String::from_utf8(want.clone()).unwrap().contains(
        "{\"transaction\":{\"status\":\"END\",\"id\":\"0-1-1\",\"event_count\":2,\"crc32c\":\""
    ));
    assert_eq!(
        String::from_utf8(raw).unwrap(),
        String::from_utf8(want).unwrap()
    );
    assert_eq!(markers(d.path()), vec![gtid(1), gtid(2), gtid(3)]);
}

#[tokio::test]
async fn write_error_fails_acks_and_poisons() {
    let d = tempfile::tempdir().unwrap();
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    // The open segment does not exist yet (created on the first write):
    // make it a full disk.
    std::os::unix::fs::symlink("/dev/full", d.path().join("000000000001.ndjson.zst.open")).unwrap();
    let mut rx = write(&mut s, batch(1, &[(1, 3)])).await;
    let e = s.flush().await.unwrap_err();
    let SinkError::Fatal(msg) = e else {
        panic!("not fatal: {e}")
    };
    assert!(
        msg.contains("000000000001.ndjson") && msg.contains("No space left"),
        "{msg}"
    );
    assert!(matches!(rx.try_recv(), Ok(Err(m)) if m.to_string().contains("No space left")));
    // Poisoned: later writes fail their acks too.
    let (ack, mut rx) = Ack::new();
    assert!(matches!(
        s.write(Arc::new(batch(2, &[(2, 1)])), ack).await,
        Err(SinkError::Fatal(_))
    ));
    assert!(matches!(rx.try_recv(), Ok(Err(_))));
    assert!(s.flush().await.is_err());
}

#[tokio::test]
async fn dropped_sink_acks_written_prefix_and_fails_the_rest() {
    let d = tempfile::tempdir().unwrap();
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    let mut rxs = Vec::new();
    for i in 0..50 {
        rxs.push(write(&mut s, batch(i + 1, &[(i + 1, 50)])).await);
    }
    drop(s);
    // Every ack resolves: the batches of the job under way when the sink was
    // dropped are acked once written, the buffered rest reports failure.
    let (mut ok, mut failed) = (0, 0);
    for rx in rxs {
        match rx.await.unwrap() {
            Ok(()) => {
                assert_eq!(failed, 0, "an ack after a failed one");
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.to_string(), "batch dropped without acknowledgement");
                failed += 1;
            }
        }
    }
    let ok_txs: Vec<(u64, u64)> = (1..=ok).map(|t| (t as u64, 50)).collect();
    assert!(ok >= 1 && ok + failed == 50, "{ok} {failed}");
    assert_eq!(cat_lines(d.path()), expected(&ok_txs));
}

#[tokio::test]
async fn unwritable_dir_and_lock() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("file.txt"), b"x").unwrap();
    let bad = d.path().join("file.txt/sub");
    let SinkError::Fatal(msg) = FileSink::start(&cfg(&bad), &FakeCommitted::none())
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert!(
        msg.contains(&format!("backup dir {}", bad.display())),
        "{msg}"
    );
    assert!(msg.contains("not a directory"), "{msg}");

    let _held = started(cfg(d.path()), &FakeCommitted::none()).await;
    let SinkError::Fatal(msg) = FileSink::start(&cfg(d.path()), &FakeCommitted::none())
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert!(msg.contains("locked by another process"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_compression_and_cat_order() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    c.segment_max_bytes = 4000;
    let mut s = started(c, &FakeCommitted::none()).await;
    let all = txs(1..200, 2);
    let mut rxs = Vec::new();
    for (i, chunk) in all.chunks(7).enumerate() {
        rxs.push(write(&mut s, batch(i as u64 + 1, chunk)).await);
        if i % 5 == 0 {
            s.flush().await.unwrap();
        }
    }
    s.flush().await.unwrap();
    for mut rx in rxs {
        assert_eq!(rx.try_recv(), Ok(Ok(())));
    }
    s.wait_compressed();
    let segs = segments(d.path()).unwrap();
    assert!(segs.len() > 10, "{segs:?}");
    let (last, closed) = segs.split_last().unwrap();
    assert!(closed.iter().all(|s| s.form == Form::Zst), "{segs:?}");
    assert_eq!(last.form, Form::ZstOpen);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.num, i as u64 + 1);
    }
    // Every closed segment ends with a marker and is about segment_max_bytes.
    let mut by_seg: std::collections::BTreeMap<u64, Vec<LineKind>> = Default::default();
    for e in BackupReader::open(d.path()).unwrap() {
        let e = e.unwrap();
        by_seg.entry(e.segment).or_default().push(e.kind);
    }
    for (_, kinds) in by_seg.iter().take(closed.len()) {
        assert_eq!(kinds.last(), Some(&LineKind::TxEnd));
    }
    assert_eq!(cat_lines(d.path()), expected(&all));
    assert_eq!(
        markers(d.path()),
        all.iter().map(|t| gtid(t.0)).collect::<Vec<_>>()
    );
    drop(s);
    // No tmp files left, no .ndjson beside a .zst.
    for e in fs::read_dir(d.path()).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(!n.ends_with(".tmp"), "{n}");
    }
}

#[tokio::test]
async fn rotation_by_age() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    c.segment_max_age_secs = 1;
    let mut s = started(c, &FakeCommitted::none()).await;
    write(&mut s, batch(1, &[(1, 2)])).await;
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.flush().await.unwrap(); // idle flush at a boundary closes it
    write(&mut s, batch(2, &[(2, 2)])).await;
    s.flush().await.unwrap();
    s.wait_compressed();
    assert_eq!(
        segments(d.path()).unwrap(),
        vec![
            Segment {
                num: 1,
                form: Form::Zst
            },
            zst_open(2)
        ]
    );
    assert_eq!(cat_lines(d.path()), expected(&[(1, 2), (2, 2)]));
}

/// Writes `all` as committed-and-flushed transactions into a fresh backup.
async fn backup_of(dir: &Path, max_bytes: u64, all: &[(u64, u64)]) {
    let mut c = cfg(dir);
    c.segment_max_bytes = max_bytes;
    let mut s = started(c, &FakeCommitted::none()).await;
    for (i, chunk) in all.chunks(5).enumerate() {
        write(&mut s, batch(i as u64 + 1, chunk)).await;
    }
    s.flush().await.unwrap();
    s.wait_compressed();
}

fn ck_upto(all: &[(u64, u64)], n: usize) -> FakeCommitted {
    let g: Vec<String> = all[..n].iter().map(|t| gtid(t.0)).collect();
    FakeCommitted::of(g.iter().map(String::as_str))
}

#[tokio::test]
async fn recovery_cuts_partial_transaction_and_torn_line() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..6, 2);
    // Plain segments (`compress = false`, and every older backup).
    let mut c = cfg(d.path());
    c.compress = false;
    let cfg = |_: &Path| c.clone();
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    write(&mut s, batch(1, &all)).await;
    // A transaction whose end never came, then a torn line (crash mid-write).
    let mut b = batch(2, &[(6, 3)]);
    b.commits.clear();
    write(&mut s, b).await;
    s.flush().await.unwrap();
    drop(s);
    let open = d.path().join(segment_name(1, false));
    fs::OpenOptions::new()
        .append(true)
        .open(&open)
        .unwrap()
        .write_all(b"{\"before\":nu")
        .unwrap();
    // The reader shows complete transactions only.
    assert_eq!(cat_lines(d.path()), expected(&all));

    let ck = ck_upto(&all, all.len());
    let mut s = started(cfg(d.path()), &ck).await;
    assert_eq!(cat_lines(d.path()), expected(&all));
    let mut raw = Vec::new();
    for l in expected(&all) {
        raw.extend(l);
        raw.push(b'\n');
    }
    // File ends exactly at the last marker.
    let data = fs::read(&open).unwrap();
    let last = data[..data.len() - 1]
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap();
    assert!(last.ends_with(b"\"}}"));
    assert!(
        String::from_utf8_lossy(last).contains("\"id\":\"0-1-5\",\"event_count\":4,\"crc32c\":")
    );
    // The replay appends after it.
    write(&mut s, batch(3, &[(6, 3), (7, 1)])).await;
    s.flush().await.unwrap();
    let mut want = all.clone();
    want.extend([(6, 3), (7, 1)]);
    assert_eq!(cat_lines(d.path()), expected(&want));
}

#[tokio::test]
async fn recovery_cuts_transactions_past_checkpoint_in_open_segment() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..20, 1);
    backup_of(d.path(), 1 << 30, &all).await;
    let ck = ck_upto(&all, 12);
    let mut s = started(cfg(d.path()), &ck).await;
    assert_eq!(cat_lines(d.path()), expected(&all[..12]));
    assert_eq!(markers(d.path()).len(), 12);
    // Replay from the checkpoint: exactly once.
    write(&mut s, batch(9, &all[12..])).await;
    s.flush().await.unwrap();
    assert_eq!(cat_lines(d.path()), expected(&all));
    drop(s);
    // A restart with everything covered changes nothing.
    let path = d.path().join(form_name(1, Form::ZstOpen));
    let before = fs::read(&path).unwrap();
    let _s = started(cfg(d.path()), &ck_upto(&all, all.len())).await;
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn recovery_cut_inside_compressed_segment_removes_newer() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..120, 2);
    backup_of(d.path(), 3000, &all).await;
    let segs = segments(d.path()).unwrap();
    assert!(segs.len() >= 6, "{segs:?}");
    // Pick a transaction in the middle of a closed segment.
    let entries: Vec<_> = BackupReader::open(d.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let target_seg = segs[2].num;
    let in_seg: Vec<_> = entries
        .iter()
        .filter(|e| e.segment == target_seg && e.kind == LineKind::TxEnd)
        .collect();
    assert!(in_seg.len() >= 3);
    let cut_gtid = rowstream_file::encode::parse_tx_end(&in_seg[1].line)
        .unwrap()
        .id;
    let n = all.iter().position(|t| gtid(t.0) == cut_gtid).unwrap() + 1;

    let mut c = cfg(d.path());
    c.segment_max_bytes = 3000;
    let mut s = started(c, &ck_upto(&all, n)).await;
    let after = segments(d.path()).unwrap();
    assert_eq!(
        after.last(),
        Some(&Segment {
            num: target_seg,
            form: Form::Plain
        })
    );
    assert!(after[..after.len() - 1].iter().all(|s| s.form == Form::Zst));
    assert_eq!(after.len() as u64, target_seg);
    assert_eq!(cat_lines(d.path()), expected(&all[..n]));
    // Replay continues in the reopened segment, then rotates on.
    for (i, chunk) in all[n..].chunks(4).enumerate() {
        write(&mut s, batch(100 + i as u64, chunk)).await;
    }
    s.flush().await.unwrap();
    s.wait_compressed();
    assert_eq!(cat_lines(d.path()), expected(&all));
    assert_eq!(
        markers(d.path()),
        all.iter().map(|t| gtid(t.0)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn recovery_cut_at_end_of_compressed_segment() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..60, 2);
    backup_of(d.path(), 2000, &all).await;
    let entries: Vec<_> = BackupReader::open(d.path())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The last marker of segment 2.
    let last = entries
        .iter()
        .rev()
        .find(|e| e.segment == 2 && e.kind == LineKind::TxEnd)
        .unwrap();
    let g = rowstream_file::encode::parse_tx_end(&last.line).unwrap().id;
    let n = all.iter().position(|t| gtid(t.0) == g).unwrap() + 1;
    let mut s = started(cfg(d.path()), &ck_upto(&all, n)).await;
    assert_eq!(
        segments(d.path()).unwrap(),
        vec![
            Segment {
                num: 1,
                form: Form::Zst
            },
            Segment {
                num: 2,
                form: Form::Zst
            }
        ]
    );
    assert_eq!(cat_lines(d.path()), expected(&all[..n]));
    write(&mut s, batch(1, &all[n..])).await;
    s.flush().await.unwrap();
    assert_eq!(segments(d.path()).unwrap().last(), Some(&zst_open(3)));
    assert_eq!(cat_lines(d.path()), expected(&all));
}

#[tokio::test]
async fn recovery_finishes_interrupted_compression_and_rewrite() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..60, 2);
    backup_of(d.path(), 2000, &all).await;
    // Crash leftovers: a half-written .zst.tmp, a .ndjson still beside its
    // .zst, a rewrite tmp.
    fs::write(d.path().join("000000000002.ndjson.zst.tmp"), b"garbage").unwrap();
    fs::write(d.path().join("000000000001.ndjson.tmp"), b"garbage").unwrap();
    let mut z = Vec::new();
    open_segment(
        d.path(),
        Segment {
            num: 1,
            form: Form::Zst,
        },
    )
    .unwrap()
    .read_to_end(&mut z)
    .unwrap();
    fs::write(d.path().join(segment_name(1, false)), &z).unwrap();
    let _s = started(cfg(d.path()), &ck_upto(&all, all.len())).await;
    let mut names: Vec<String> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert!(!names.contains(&segment_name(1, false)), "{names:?}");
    assert_eq!(cat_lines(d.path()), expected(&all));
}

#[tokio::test]
async fn closed_uncompressed_segments_are_compressed_on_start() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..40, 2);
    let mut c = cfg(d.path());
    c.compress = false;
    c.segment_max_bytes = 2000;
    let mut s = started(c, &FakeCommitted::none()).await;
    write(&mut s, batch(1, &all)).await;
    s.flush().await.unwrap();
    drop(s);
    let segs = segments(d.path()).unwrap();
    assert!(segs.len() > 3 && segs.iter().all(|s| s.form == Form::Plain));
    assert_eq!(cat_lines(d.path()), expected(&all));
    let s = started(cfg(d.path()), &ck_upto(&all, all.len())).await;
    s.wait_compressed();
    let after = segments(d.path()).unwrap();
    assert_eq!(after.len(), segs.len());
    assert!(
        after[..after.len() - 1].iter().all(|s| s.form == Form::Zst),
        "{after:?}"
    );
    assert_eq!(cat_lines(d.path()), expected(&all));
}

#[tokio::test]
async fn refusals() {
    // Data but no checkpoint.
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..5, 1);
    backup_of(d.path(), 1 << 30, &all).await;
    let SinkError::Fatal(msg) = FileSink::start(&cfg(d.path()), &FakeCommitted::none())
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert!(msg.contains("has data but there is no checkpoint"), "{msg}");
    assert_eq!(cat_lines(d.path()), expected(&all)); // untouched

    // A checkpoint that skips a transaction of the backup.
    let ck = FakeCommitted::of(["0-1-1", "0-1-3"]);
    let SinkError::Fatal(msg) = FileSink::start(&cfg(d.path()), &ck).await.unwrap_err() else {
        panic!()
    };
    assert!(msg.contains("does not match this backup"), "{msg}");
    assert_eq!(cat_lines(d.path()), expected(&all));

    // A checkpoint covering nothing of a backup with closed segments.
    let d2 = tempfile::tempdir().unwrap();
    backup_of(d2.path(), 500, &all).await;
    let SinkError::Fatal(msg) = FileSink::start(&cfg(d2.path()), &FakeCommitted::of(["9-9-9"]))
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert!(msg.contains("belongs to another backup"), "{msg}");
    assert_eq!(cat_lines(d2.path()), expected(&all));

    // ... unless the checkpoint recognizes the newest one (chunks of its
    // snapshot in progress, none durable yet): then everything is cut.
    let ck = FakeCommitted::of([]);
    ck.recognize([gtid(4).as_str()]);
    let _s = started(cfg(d2.path()), &ck).await;
    assert!(cat_lines(d2.path()).is_empty());
}

#[tokio::test]
async fn first_start_wipes_only_an_incomplete_first_transaction() {
    let d = tempfile::tempdir().unwrap();
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    let mut b = batch(1, &[(1, 3)]);
    b.commits.clear();
    write(&mut s, b).await;
    s.flush().await.unwrap();
    drop(s);
    // No complete transaction, no checkpoint: a crashed first run; wiped.
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    assert!(segments(d.path()).unwrap().is_empty());
    write(&mut s, batch(1, &[(1, 3)])).await;
    s.flush().await.unwrap();
    assert_eq!(cat_lines(d.path()), expected(&[(1, 3)]));
    drop(s);
    // A checkpoint that covers nothing yet (written at start) and a single
    // open segment: everything is past it and cut.
    let _s = started(cfg(d.path()), &FakeCommitted::of([])).await;
    assert!(segments(d.path()).unwrap().is_empty());
}

fn verify_problems(dir: &Path) -> (rowstream_file::Summary, Vec<String>) {
    let mut problems = Vec::new();
    let sum = verify(dir, &mut |p| problems.push(p.to_string())).unwrap();
    (sum, problems)
}

/// What `cat` prints, and whether it failed.
fn cat_result(dir: &Path, buffer: usize) -> (Vec<Vec<u8>>, bool) {
    let mut out = Vec::new();
    let failed = cat_bounded(dir, &mut out, buffer).is_err();
    let lines = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    (lines, failed)
}

#[tokio::test]
async fn verify_clean_and_every_flipped_byte_is_caught() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..60, 2);
    backup_of(d.path(), 3000, &all).await;
    let (sum, problems) = verify_problems(d.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(sum.transactions, 59);
    assert_eq!(sum.rows + sum.schema_changes, expected(&all).len() as u64);
    assert_eq!(sum.unchecked, 0);
    assert!(sum.segments >= 3, "{sum:?}");
    assert_eq!(sum.covered_set(), "0:1-59");
    let want = expected(&all);
    // Both cat paths (held and re-read) print everything.
    assert_eq!(cat_result(d.path(), 1 << 20), (want.clone(), false));
    assert_eq!(cat_result(d.path(), 10), (want.clone(), false));

    let segs = segments(d.path()).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..60 {
        let seg = segs[if i % 2 == 0 { 0 } else { segs.len() - 1 }];
        let path = seg.path(d.path());
        let orig = fs::read(&path).unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % orig.len() as u64) as usize;
        let mut bad = orig.clone();
        bad[at] ^= 1 << (seed >> 60 & 7);
        fs::write(&path, &bad).unwrap();
        let (sum, problems) = verify_problems(d.path());
        assert!(
            sum.problems > 0 && !problems.is_empty(),
            "flip at {at} of {path:?} not caught"
        );
        for buffer in [1 << 20, 10] {
            let (lines, _) = cat_result(d.path(), buffer);
            // Whatever cat prints is the untouched prefix.
            assert!(lines.len() <= want.len());
            assert_eq!(
                lines[..],
                want[..lines.len()],
                "flip at {at} of {path:?} printed"
            );
        }
        fs::write(&path, &orig).unwrap();
    }
}

#[tokio::test]
async fn verify_reports_a_gap_and_reads_old_backups() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..60, 2);
    backup_of(d.path(), 3000, &all).await;
    // An old backup: markers without checksums.
    let old = tempfile::tempdir().unwrap();
    for seg in segments(d.path()).unwrap() {
        let mut text = String::new();
        open_segment(d.path(), seg)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let text: String = text
            .lines()
            .map(|l| match l.find(",\"crc32c\":") {
                // Segment lines close one object after it, markers two.
                Some(at) if l.starts_with("{\"segment\":") => format!("{}}}\n", &l[..at]),
                Some(at) => format!("{}}}}}\n", &l[..at]),
                None => format!("{l}\n"),
            })
            .collect();
        fs::write(old.path().join(segment_name(seg.num, false)), text).unwrap();
    }
    let (sum, problems) = verify_problems(old.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(sum.unchecked, 59);
    assert!(sum.to_string().contains("no checksums"), "{sum}");
    assert_eq!(cat_result(old.path(), 1 << 20), (expected(&all), false));

    // A deleted middle segment is a gap.
    let segs = segments(d.path()).unwrap();
    fs::remove_file(segs[1].path(d.path())).unwrap();
    let (_, problems) = verify_problems(d.path());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("gap: segments 2..2 are missing")),
        "{problems:?}"
    );
}

/// `backup verify`'s problems, as text.
fn problems(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    verify(dir, &mut |p| out.push(p.to_string())).unwrap();
    out
}

/// The first and last sequence number of the transactions in segment `num`.
fn seqs_of(dir: &Path, num: u64) -> (u64, u64) {
    let ids: Vec<u64> = BackupReader::open(dir)
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.segment == num && e.kind == LineKind::TxEnd)
        .map(|e| {
            let id = rowstream_file::encode::parse_tx_end(&e.line).unwrap().id;
            id.rsplit('-').next().unwrap().parse().unwrap()
        })
        .collect();
    (ids[0], *ids.last().unwrap())
}

#[tokio::test]
async fn segments_join_across_restarts_and_a_missing_one_is_named() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..80, 2);
    backup_of(d.path(), 2000, &all[..40]).await;
    // A restart continues the positions (in the open segment or a new one).
    let mut c = cfg(d.path());
    c.segment_max_bytes = 2000;
    let mut s = started(c, &ck_upto(&all, 40)).await;
    for (i, chunk) in all[40..].chunks(5).enumerate() {
        write(&mut s, batch(100 + i as u64, chunk)).await;
    }
    s.flush().await.unwrap();
    s.wait_compressed();
    drop(s);
    assert_eq!(problems(d.path()), Vec::<String>::new());
    let segs = segments(d.path()).unwrap();
    assert!(segs.len() >= 4, "{segs:?}");
    let (a, b) = seqs_of(d.path(), 2);
    fs::remove_file(segs[1].path(d.path())).unwrap();
    let p = problems(d.path());
    assert!(p.iter().any(|l| l.contains("gap: segments 2..2")), "{p:?}");
    let named = format!("transactions 0:{a}-{b} are missing");
    assert!(p.iter().any(|l| l.contains(&named)), "{named}: {p:?}");
}

#[tokio::test]
async fn a_closed_segment_cut_at_a_transaction_boundary_is_found() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    c.segment_max_bytes = 2000;
    c.compress = false;
    let mut s = started(c, &FakeCommitted::none()).await;
    for (i, chunk) in txs(1..30, 2).chunks(5).enumerate() {
        write(&mut s, batch(i as u64 + 1, chunk)).await;
    }
    s.flush().await.unwrap();
    drop(s);
    assert_eq!(problems(d.path()), Vec::<String>::new());
    // Segment 1 loses its last transaction and its end line.
    let path = d.path().join(segment_name(1, false));
    let raw = fs::read(&path).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop(); // the end line
    lines.pop(); // the last marker
    while !lines.last().unwrap().starts_with("{\"transaction\"") {
        lines.pop();
    }
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let p = problems(d.path());
    assert!(
        p.iter()
            .any(|l| l.contains("closed segment has no end line")),
        "{p:?}"
    );
    assert!(p.iter().any(|l| l.contains("does not join")), "{p:?}");
}

#[tokio::test]
async fn uncompressed_closed_segments_stay_closed_across_restarts() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..20, 2);
    let mut c = cfg(d.path());
    // One transaction per segment: every restart finds the newest one closed.
    c.segment_max_bytes = 1;
    c.compress = false;
    for (n, range) in [(0, 0..10), (10, 10..19)] {
        let ck = if n == 0 {
            FakeCommitted::none()
        } else {
            ck_upto(&all, n)
        };
        let mut s = started(c.clone(), &ck).await;
        for (i, chunk) in all[range].chunks(5).enumerate() {
            write(&mut s, batch(n as u64 + i as u64 + 1, chunk)).await;
        }
        s.flush().await.unwrap();
    }
    assert_eq!(problems(d.path()), Vec::<String>::new());
    assert_eq!(
        markers(d.path()),
        all.iter().map(|t| gtid(t.0)).collect::<Vec<_>>()
    );
}

/// A checkpoint as a MariaDB GTID position (what `Committed::executed` gives).
struct SetCommitted(rowstream_api::gtid::GtidSet);

impl rowstream_api::Committed for SetCommitted {
    fn contains(&self, id: &str) -> bool {
        rowstream_api::gtid::Gtid::parse(rowstream_api::Flavor::MariaDb, id)
            .is_ok_and(|g| self.0.contains(&g))
    }
    fn is_empty(&self) -> bool {
        false
    }
    fn executed(&self) -> Option<&rowstream_api::gtid::GtidSet> {
        Some(&self.0)
    }
}

fn mariadb_set(seq: u64) -> rowstream_api::gtid::GtidSet {
    rowstream_api::gtid::GtidSet::parse(rowstream_api::Flavor::MariaDb, &format!("0-1-{seq}"))
        .unwrap()
}

/// Written transactions `txs` and the source's executed set up to `upto`:
/// the numbers in between and after are transactions without lines.
fn filtered(seq: u64, txs: &[(u64, u64)], upto: u64) -> Batch {
    let mut b = batch(seq, txs);
    b.executed = Some(mariadb_set(upto));
    b
}

fn verify_text(dir: &Path) -> (Vec<String>, String) {
    let mut problems = Vec::new();
    let sum = verify(dir, &mut |p| problems.push(p.to_string())).unwrap();
    (problems, sum.to_string())
}

/// Transactions that wrote no lines (all changes filtered out) are covered:
/// by a marker's `skipped`, a skipped line, segment start / end sets; the
/// backup verifies clean and covers the source's whole history. Removing a
/// transaction's lines is then named as a gap; a restart whose checkpoint
/// covers what the backup lost refuses to start, naming the GTIDs.
#[tokio::test]
async fn filtered_transactions_are_covered_and_holes_found() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(d.path());
    c.segment_max_bytes = 600;
    let ck = SetCommitted(mariadb_set(2));
    let mut s = started(c.clone(), &ck).await;
    // History 1-2 is the checkpoint's (before the backup); 5-6, 9, 12-14
    // and 20-21 write no lines.
    write(&mut s, filtered(1, &[(3, 1), (4, 2)], 6)).await;
    write(&mut s, filtered(2, &[(7, 1), (8, 1), (10, 1), (11, 2)], 14)).await;
    write(&mut s, filtered(3, &[], 14)).await;
    write(&mut s, filtered(4, &[(15, 1), (16, 3), (17, 1)], 17)).await;
    write(&mut s, filtered(5, &[(18, 1), (19, 1)], 21)).await;
    s.flush().await.unwrap();
    drop(s);
    let (problems, summary) = verify_text(d.path());
    assert!(problems.is_empty(), "{problems:?}\n{summary}");
    assert!(summary.contains("covered: 0:1-21\n"), "{summary}");
    let segs = segments(d.path()).unwrap();
    assert!(segs.len() >= 2, "{segs:?}");
    let raw: String = segs
        .iter()
        .map(|&seg| {
            let mut t = String::new();
            open_segment(d.path(), seg)
                .unwrap()
                .read_to_string(&mut t)
                .unwrap();
            t
        })
        .collect();
    assert!(raw.contains("\"skipped\":[[9,9]]"), "{raw}");
    assert!(
        raw.contains("{\"segment\":{\"skipped\":{\"0\":[[5,6]]}},\"crc32c\":\""),
        "{raw}"
    );
    assert!(
        raw.contains("{\"segment\":{\"skipped\":{\"0\":[[12,14]]}},\"crc32c\":\""),
        "{raw}"
    );
    assert!(
        raw.contains("{\"segment\":{\"start_covered\":{\"0\":[[1,2]]}},\"crc32c\":\""),
        "{raw}"
    );
    assert_eq!(cat_lines(d.path()).len(), 15);
    // A restart from the checkpoint the backup covers continues.
    let s = started(c.clone(), &SetCommitted(mariadb_set(21))).await;
    drop(s);

    // A hole: transaction 16's lines removed from its (closed) segment.
    let read = |seg: Segment| {
        let mut t = String::new();
        open_segment(d.path(), seg)
            .unwrap()
            .read_to_string(&mut t)
            .unwrap();
        t
    };
    let seg = *segs
        .iter()
        .find(|&&seg| read(seg).contains("\"id\":\"0-1-16\""))
        .unwrap();
    let orig = fs::read(seg.path(d.path())).unwrap();
    let kept: String = read(seg)
        .split_inclusive('\n')
        .filter(|l| !l.contains("\"0-1-16\""))
        .collect();
    fs::remove_file(seg.path(d.path())).unwrap();
    let plain = d.path().join(segment_name(seg.num, false));
    fs::write(&plain, &kept).unwrap();
    let (problems, _) = verify_text(d.path());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("0:16") && p.contains("missing")),
        "{problems:?}"
    );
    fs::remove_file(&plain).unwrap();
    fs::write(seg.path(d.path()), &orig).unwrap();
    assert!(verify_text(d.path()).0.is_empty());
    // Truncated behind rowstream's back: the checkpoint (21) covers more
    // than the backup holds (up to 17 once the torn rest is cut).
    let last = *segments(d.path()).unwrap().last().unwrap();
    assert_eq!(last.form, Form::ZstOpen);
    let path = last.path(d.path());
    let text = String::from_utf8(seg_text(d.path(), last.num)).unwrap();
    let at = text.find("\"0-1-19\"").unwrap();
    fs::write(&path, zstd::encode_all(&text.as_bytes()[..at], 1).unwrap()).unwrap();
    let e = FileSink::start(&c, &SetCommitted(mariadb_set(21)))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(e.is_fatal(), "{msg}");
    assert!(msg.contains("does not hold: 0:19-21"), "{msg}");
    assert!(msg.contains("restore the segment from a copy"), "{msg}");
}

/// A backup written before coverage existed (segment lines with positions)
/// is continued: the sink takes the checkpoint's set as its start, the
/// segments it adds record coverage, and `verify` is clean across the
/// transition; a restart then checks the checkpoint against it.
#[tokio::test]
async fn old_backup_is_continued_with_coverage() {
    let d = tempfile::tempdir().unwrap();
    let tx = |n: u64| {
        let mut out = Vec::new();
        let mut crc = TxCrc::default();
        let mut l = line(&event(n, 0));
        l.push(b'\n');
        crc.update(&l);
        out.extend(l);
        encode_tx_end(&mut out, &gtid(n), 1, &[], crc);
        out
    };
    let mut seg1 = b"{\"segment\":{\"start\":{}}}\n".to_vec();
    seg1.extend(tx(1));
    seg1.extend(b"{\"segment\":{\"end\":{\"0\":1},\"transactions\":1}}\n");
    fs::write(d.path().join(segment_name(1, false)), seg1).unwrap();
    let mut seg2 = b"{\"segment\":{\"start\":{\"0\":1}}}\n".to_vec();
    seg2.extend(tx(2));
    fs::write(d.path().join(segment_name(2, false)), seg2).unwrap();
    assert!(verify_text(d.path()).0.is_empty());
    let mut c = cfg(d.path());
    c.segment_max_bytes = 1;
    c.compress = false;
    // Transaction 3 wrote no lines before the upgrade.
    let mut s = started(c.clone(), &SetCommitted(mariadb_set(3))).await;
    write(&mut s, filtered(1, &[(4, 1)], 5)).await;
    write(&mut s, filtered(2, &[(6, 1)], 6)).await;
    s.flush().await.unwrap();
    drop(s);
    let (problems, summary) = verify_text(d.path());
    assert!(problems.is_empty(), "{problems:?}\n{summary}");
    assert!(summary.contains("covered: 0:1-6\n"), "{summary}");
    // `cat` reads across the transition: records only, no segment lines.
    assert_eq!(cat_lines(d.path()).len(), 4);
    // Covered: a restart from 6 continues; one from 7 (lost) refuses.
    drop(started(c.clone(), &SetCommitted(mariadb_set(6))).await);
    let e = FileSink::start(&c, &SetCommitted(mariadb_set(7)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not hold: 0:7"), "{e}");
}

/// Everything `verify` says, as text (for tests that expect problems).
fn verify_lines(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    verify(dir, &mut |p| out.push(p.to_string())).unwrap();
    out
}

fn walk(dir: &Path, num: u64) -> rowstream_file::segment::FrameWalk {
    let f = fs::File::open(dir.join(form_name(num, Form::ZstOpen))).unwrap();
    rowstream_file::segment::walk_frames(&f, u64::MAX).unwrap()
}

fn no_tmp_files(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        assert!(!n.ends_with(".tmp"), "{n}");
    }
}

#[tokio::test]
async fn torn_compressed_tail_is_cut_at_a_frame_boundary() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..6, 2);
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    write(&mut s, batch(1, &all)).await;
    s.flush().await.unwrap();
    // A transaction whose end never came (its own frame), then a torn frame.
    let mut b = batch(2, &[(6, 3)]);
    b.commits.clear();
    write(&mut s, b).await;
    s.flush().await.unwrap();
    drop(s);
    // The start line has a frame of its own, then one per group commit.
    assert_eq!(walk(d.path(), 1).frames, 3);
    let path = d.path().join(form_name(1, Form::ZstOpen));
    let frame = zstd::encode_all(&b"{\"before\":null}\n".repeat(100)[..], 1).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&frame[..frame.len() / 2])
        .unwrap();
    // Readers show complete transactions of complete frames; verify names the tail.
    assert_eq!(cat_lines(d.path()), expected(&all));
    let p = verify_lines(d.path());
    assert!(
        p.iter().any(|l| l.contains("not a complete zstd frame")),
        "{p:?}"
    );
    // Recovery cuts at the end of the first frame (the last marker): no rewrite.
    let mut s = started(cfg(d.path()), &ck_upto(&all, all.len())).await;
    let w = walk(d.path(), 1);
    assert_eq!((w.frames, w.tail), (2, 0));
    no_tmp_files(d.path());
    assert_eq!(cat_lines(d.path()), expected(&all));
    // The replay appends after it.
    write(&mut s, batch(3, &[(6, 3), (7, 1)])).await;
    s.flush().await.unwrap();
    let mut want = all.clone();
    want.extend([(6, 3), (7, 1)]);
    assert_eq!(cat_lines(d.path()), expected(&want));
    assert_eq!(verify_lines(d.path()), Vec::<String>::new());
    assert_eq!(walk(d.path(), 1).frames, 3);
}

#[tokio::test]
async fn cut_inside_a_frame_rewrites_the_tail() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..20, 1);
    let mut s = started(cfg(d.path()), &FakeCommitted::none()).await;
    write(&mut s, batch(1, &all[..5])).await;
    s.flush().await.unwrap();
    write(&mut s, batch(2, &all[5..])).await;
    s.flush().await.unwrap();
    drop(s);
    let before = walk(d.path(), 1);
    assert_eq!((before.frames, before.tail), (3, 0));
    // And a torn frame after them, for good measure.
    let path = d.path().join(form_name(1, Form::ZstOpen));
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0x28, 0xb5, 0x2f, 0xfd, 0x24])
        .unwrap();
    // The checkpoint ends inside the second frame.
    let mut s = started(cfg(d.path()), &ck_upto(&all, 12)).await;
    no_tmp_files(d.path());
    let after = walk(d.path(), 1);
    assert_eq!((after.frames, after.tail), (3, 0));
    assert!(after.valid < before.valid, "{after:?} {before:?}");
    assert_eq!(cat_lines(d.path()), expected(&all[..12]));
    assert_eq!(markers(d.path()).len(), 12);
    write(&mut s, batch(3, &all[12..])).await;
    s.flush().await.unwrap();
    assert_eq!(cat_lines(d.path()), expected(&all));
    assert_eq!(
        markers(d.path()),
        all.iter().map(|t| gtid(t.0)).collect::<Vec<_>>()
    );
    assert_eq!(verify_lines(d.path()), Vec::<String>::new());
    assert_eq!(walk(d.path(), 1).frames, 4);
}

#[tokio::test]
async fn interrupted_rotation_of_a_compressed_segment_is_finished() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..60, 2);
    backup_of(d.path(), 2000, &all).await;
    let segs = segments(d.path()).unwrap();
    let n = segs.len();
    assert!(n >= 3, "{segs:?}");
    let closed = segs[n - 2];
    assert_eq!(closed.form, Form::Zst);
    let k = BackupReader::open(d.path())
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.segment <= closed.num && e.kind == LineKind::TxEnd)
        .count();
    // A crash between writing the end line and the rename, before the next
    // segment got a byte.
    fs::remove_file(segs[n - 1].path(d.path())).unwrap();
    fs::rename(
        closed.path(d.path()),
        d.path().join(form_name(closed.num, Form::ZstOpen)),
    )
    .unwrap();
    let mut c = cfg(d.path());
    c.segment_max_bytes = 2000;
    let mut s = started(c, &ck_upto(&all, k)).await;
    assert_eq!(segments(d.path()).unwrap().last(), Some(&closed));
    for (i, chunk) in all[k..].chunks(5).enumerate() {
        write(&mut s, batch(100 + i as u64, chunk)).await;
    }
    s.flush().await.unwrap();
    s.wait_compressed();
    assert_eq!(cat_lines(d.path()), expected(&all));
    assert_eq!(verify_lines(d.path()), Vec::<String>::new());
}

/// A backup directory written before the open segment was compressed:
/// closed `N.ndjson.zst`, the open segment plain `N.ndjson` (here with a
/// torn line). It is read, verified, recovered, and continued: the plain
/// segment is appended to until it rotates, then segments are compressed as
/// they are written.
#[tokio::test]
async fn old_format_directory_is_read_recovered_and_continued() {
    let d = tempfile::tempdir().unwrap();
    let all = txs(1..60, 2);
    let mut c = cfg(d.path());
    c.segment_max_bytes = 2000;
    c.compress = false;
    let mut s = started(c, &FakeCommitted::none()).await;
    for (i, chunk) in all.chunks(5).enumerate() {
        write(&mut s, batch(i as u64 + 1, chunk)).await;
    }
    s.flush().await.unwrap();
    drop(s);
    let segs = segments(d.path()).unwrap();
    let (open, closed) = segs.split_last().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    for seg in closed {
        assert!(rowstream_file::segment::compress_segment(d.path(), seg.num, true, &stop).unwrap());
    }
    assert_eq!(open.form, Form::Plain);
    fs::OpenOptions::new()
        .append(true)
        .open(open.path(d.path()))
        .unwrap()
        .write_all(b"{\"before\":nu")
        .unwrap();
    let segs = segments(d.path()).unwrap();
    assert!(segs[..segs.len() - 1].iter().all(|s| s.form == Form::Zst));
    assert_eq!(cat_lines(d.path()), expected(&all));
    let p = verify_lines(d.path());
    assert!(p.len() == 1 && p[0].contains("torn write"), "{p:?}");
    let more = txs(60..120, 2);
    let mut c = cfg(d.path());
    c.segment_max_bytes = 2000;
    let mut s = started(c, &ck_upto(&all, all.len())).await;
    for (i, chunk) in more.chunks(5).enumerate() {
        write(&mut s, batch(100 + i as u64, chunk)).await;
    }
    s.flush().await.unwrap();
    s.wait_compressed();
    drop(s);
    let after = segments(d.path()).unwrap();
    let (last, rest) = after.split_last().unwrap();
    assert_ne!(last.form, Form::Plain);
    assert!(rest.iter().all(|s| s.form == Form::Zst), "{after:?}");
    assert!(after.len() > segs.len() + 1, "{after:?}");
    no_tmp_files(d.path());
    let mut want = all.clone();
    want.extend(more);
    assert_eq!(cat_lines(d.path()), expected(&want));
    assert_eq!(verify_lines(d.path()), Vec::<String>::new());
}
