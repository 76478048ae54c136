//! Start-up recovery: cut off whatever the backup holds beyond the
//! checkpoint, so that after the replay that follows every committed
//! transaction is in the backup exactly once, in commit order.
//!
//! The backup is written in stream order and the checkpoint covers a prefix
//! of the stream, so a backup is always `[covered transactions][uncovered
//! transactions][maybe a partial transaction]`. Recovery finds the end of the
//! covered prefix and removes everything after it:
//!
//! 1. Remove leftovers of interrupted operations: `*.tmp` files, and a
//!    `N.ndjson` or `N.ndjson.zst.open` that has a `N.ndjson.zst` beside it
//!    (the `.zst` is complete and authoritative, see `segment`).
//! 2. Plan, without changing anything: scan segments from the newest
//!    backwards, reading each as a stream, looking only at complete
//!    transaction-end markers. A segment whose first transaction is not
//!    covered (`!committed.contains(gtid)`), or which has no complete
//!    transaction at all, goes entirely; the first segment (from the newest)
//!    that starts with a covered transaction holds the cut: just after the
//!    last marker of its run of covered transactions. Older segments are not
//!    read (that would cost the whole backup).
//! 3. Act, newest first, so that an interruption leaves a prefix of the
//!    stream and a rerun converges: remove the newer segments (fsync dir);
//!    then, if the cut is inside an uncompressed segment truncate it (fsync);
//!    if it is inside a closed compressed one, write its covered prefix as
//!    `N.ndjson.tmp`, fsync, rename to `N.ndjson`, fsync dir, remove the
//!    `.zst`, fsync dir. The cut segment becomes the open segment.
//!    In an open compressed segment (`N.ndjson.zst.open`, zstd frames of
//!    at most 4 MiB of input per append, maybe ending with a torn frame) the scan reads only the
//!    complete frames; when the cut is at a frame boundary the file is
//!    truncated there (fsync), else its frames before the cut are copied as
//!    they are and the rest of the kept prefix is compressed as one more
//!    frame into `N.ndjson.zst.open.tmp`, fsync, renamed over it, fsync dir
//!    (never truncated first: the covered prefix stays on disk throughout).
//!    A kept prefix that ends with the segment's end line completes the
//!    rotation the crash interrupted: renamed to `N.ndjson.zst`, fsync dir.
//!    An open compressed segment that is not the newest (its rename was
//!    lost) is renamed the same way.
//!
//! Segment start and end lines (see `encode`) are not transactions: a
//! start line goes with its segment, an end line with the transaction it
//! follows. A skipped line (transactions without lines) counts like a
//! covered transaction when the checkpoint's set (`Committed::executed`)
//! holds all of it, else like an uncovered one: it was written in the I/O
//! job of the one batch whose set it comes from, so the checkpoint covers
//! it whole or not at all; a kept prefix that ends with its end line is a closed segment,
//! so the next number becomes the open segment (never append after an end
//! line).
//!
//! Refusals (nothing is changed, the operator decides):
//! - no checkpoint at all but the directory holds at least one complete
//!   transaction (a first start must not wipe a backup);
//! - a covered transaction after an uncovered one in the scanned segments
//!   (the checkpoint is not a prefix of this backup);
//! - a checkpoint that covers none of the backup's transactions while the
//!   backup has closed segments (the checkpoint most likely belongs to
//!   another backup; cutting would wipe it), unless the checkpoint
//!   recognizes the newest one (`Committed::recognizes`: a chunk of the
//!   snapshot the checkpoint holds in progress) or the oldest segment
//!   starts exactly at the checkpoint's set (a crash before the first
//!   checkpoint that covered any of it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rowstream_api::Committed;

use crate::coverage::Coverage;
use crate::encode::{classify, parse_segment_line, parse_tx_end, LineKind, SegmentLine};
use crate::segment::{
    form_name, kind_name, list_files, open_segment, publish_tmp, rename_synced, segment_name,
    segments, sync_dir, walk_frames, Ctx, FileKind, Form, IoError, Segment, ZSTD_LEVEL,
};

/// Why recovery refused or failed. Every variant is for the operator.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("backup dir {} has data but there is no checkpoint; move it away or restore the checkpoint", dir.display())]
    NoCheckpoint { dir: PathBuf },
    #[error("backup dir {}: segment {segment} holds transaction {covered} covered by the checkpoint after transaction {uncovered} that is not; the checkpoint does not match this backup (move the backup away or restore the matching checkpoint)", dir.display())]
    NotAPrefix {
        dir: PathBuf,
        segment: u64,
        uncovered: String,
        covered: String,
    },
    #[error("backup dir {}: none of its transactions (newest {newest}) is covered by the checkpoint, but it has closed segments; the checkpoint most likely belongs to another backup (move the backup away or restore the matching checkpoint)", dir.display())]
    NothingCovered { dir: PathBuf, newest: String },
}

/// What recovery left and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The segment to append to (may not exist yet).
    pub open_num: u64,
    /// Its current length (uncompressed).
    pub open_len: u64,
    /// Its form (when it exists), and its file's length.
    pub open_form: Form,
    pub open_file_len: u64,
    /// Closed segments still uncompressed (an interrupted rotation), oldest first.
    pub uncompressed_closed: Vec<u64>,
    /// Whole segments removed.
    pub segments_removed: u64,
    /// Bytes (uncompressed) cut from the segment holding the cut.
    pub bytes_cut: u64,
    /// GTID of the last transaction kept, when one was seen.
    pub last_kept: Option<String>,
    /// GTID of the first complete transaction removed, if any.
    pub first_removed: Option<String>,
}

/// The result of reading one segment.
#[derive(Debug, Default)]
struct Scan {
    /// Uncompressed length.
    len: u64,
    /// End of the last marker of the leading run of covered transactions.
    prefix_end: u64,
    covered_txs: u64,
    last_covered: Option<String>,
    first_uncovered: Option<String>,
    last_marker: Option<String>,
    /// The kept prefix ends with the segment's end line: a closed segment.
    closed: bool,
}

/// True when the backup's oldest segment starts exactly where the checkpoint
/// is (its start line records the checkpoint's set): every transaction in
/// it came after the checkpoint, which is ours, not another backup's. That
/// is the state a crash leaves between a first start's initial, empty
/// checkpoint and the first one covering a transaction, once small
/// segments have rotated (a `kill -9` loop found it).
fn starts_at(
    dir: &Path,
    oldest: Option<Segment>,
    cp: Option<&Coverage>,
) -> Result<bool, RecoverError> {
    let (Some(seg), Some(cp)) = (oldest, cp) else {
        return Ok(false);
    };
    let path = seg.path(dir);
    let mut rd = BufReader::new(open_segment(dir, seg).ctx("open segment", &path)?);
    let mut line = Vec::new();
    rd.read_until(b'\n', &mut line).ctx("read segment", &path)?;
    Ok(matches!(
        parse_segment_line(&line),
        // Both sides hold the invariants: `of_set` builds them, the parser normalizes.
        Ok(Some(SegmentLine::Start { covered: Some(c), .. })) if c == *cp
    ))
}

fn scan(
    dir: &Path,
    seg: Segment,
    committed: &dyn Committed,
    cp: Option<&Coverage>,
    stop_at_first_marker: bool,
) -> Result<Scan, RecoverError> {
    let path = seg.path(dir);
    let rd = open_segment(dir, seg).ctx("open segment", &path)?;
    let mut rd = BufReader::with_capacity(1 << 16, rd);
    let mut s = Scan::default();
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let n = rd.read_until(b'\n', &mut line).ctx("read segment", &path)?;
        if n == 0 {
            break;
        }
        let before = s.len;
        s.len += n as u64;
        // A complete segment line that is damaged stops recovery: the
        // segment is not what was written (a torn last line is not one).
        let seg_line = if line.last() == Some(&b'\n') {
            parse_segment_line(&line)
                .map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("at byte {before}: {e}"))
                })
                .ctx("read segment", &path)?
        } else {
            None
        };
        // A segment's end line right after its last kept transaction stays
        // with it (a closed segment cut there stays closed).
        if s.covered_txs > 0
            && s.prefix_end == before
            && s.first_uncovered.is_none()
            && matches!(seg_line, Some(SegmentLine::End { .. }))
        {
            s.prefix_end = s.len;
            s.closed = true;
            continue;
        }
        if let Some(SegmentLine::Skipped(sk)) = seg_line {
            let covered = cp.is_some_and(|cp| sk.minus(cp).is_empty());
            if covered && s.first_uncovered.is_none() {
                s.prefix_end = s.len;
                s.covered_txs += 1;
            } else if !covered && s.first_uncovered.is_none() {
                s.first_uncovered = Some(format!("(skipped {sk})"));
            }
            continue;
        }
        if line.last() != Some(&b'\n') || classify(&line) != Some(LineKind::TxEnd) {
            if line.capacity() > 1 << 24 {
                line = Vec::with_capacity(4096);
            }
            continue;
        }
        let Some(m) = parse_tx_end(&line) else {
            continue;
        };
        if committed.contains(&m.id) {
            if let Some(uncovered) = &s.first_uncovered {
                return Err(RecoverError::NotAPrefix {
                    dir: dir.to_path_buf(),
                    segment: seg.num,
                    uncovered: uncovered.clone(),
                    covered: m.id,
                });
            }
            s.prefix_end = s.len;
            s.covered_txs += 1;
            s.last_covered = Some(m.id.clone());
        } else if s.first_uncovered.is_none() {
            s.first_uncovered = Some(m.id.clone());
        }
        s.last_marker = Some(m.id);
        if stop_at_first_marker {
            break;
        }
    }
    Ok(s)
}

/// Recovers `dir` (which must exist and be locked by the caller) against
/// the checkpoint. See the module docs for the algorithm and refusals.
pub fn recover(
    dir: &Path,
    committed: &dyn Committed,
    fsync: bool,
) -> Result<Recovered, RecoverError> {
    // 1. Leftovers.
    let files = list_files(dir).ctx("list", dir)?;
    let mut removed_any = false;
    for &(num, kind) in &files {
        let remove = match kind {
            FileKind::ZstTmp | FileKind::OpenTmp | FileKind::ZstOpenTmp => true,
            FileKind::Open | FileKind::ZstOpen => files.contains(&(num, FileKind::Zst)),
            FileKind::Zst => false,
        };
        if remove {
            let path = dir.join(kind_name(num, kind));
            tracing::info!(path = %path.display(), "removing leftover of an interrupted operation");
            fs::remove_file(&path).ctx("remove", &path)?;
            removed_any = true;
        }
    }
    if removed_any && fsync {
        sync_dir(dir)?;
    }
    let segs = segments(dir).ctx("list", dir)?;
    let cp = committed.executed().map(Coverage::of_set);
    let cp = cp.as_ref();

    // 2. Plan.
    if committed.is_empty() {
        for &seg in segs.iter().rev() {
            if seg.is_closed_zst() || scan(dir, seg, committed, cp, true)?.last_marker.is_some() {
                return Err(RecoverError::NoCheckpoint {
                    dir: dir.to_path_buf(),
                });
            }
        }
    }
    let mut cut: Option<(usize, Scan)> = None;
    let mut newest_marker: Option<String> = None;
    let mut first_removed: Option<String> = None;
    for (i, &seg) in segs.iter().enumerate().rev() {
        if committed.is_empty() {
            break;
        }
        let s = scan(dir, seg, committed, cp, false)?;
        if newest_marker.is_none() {
            newest_marker = s.last_marker.clone();
        }
        if s.first_uncovered.is_some() {
            first_removed = s.first_uncovered.clone();
        }
        if s.covered_txs > 0 {
            cut = Some((i, s));
            break;
        }
    }
    let has_closed = segs.len() > 1 || segs.iter().any(|s| s.is_closed_zst());
    if cut.is_none() && has_closed && !starts_at(dir, segs.first().copied(), cp)? {
        // Chunks of the snapshot in progress, written before its first
        // progress reached the checkpoint, are ours: cut, not refused.
        if let Some(newest) = newest_marker.filter(|m| !committed.recognizes(m)) {
            return Err(RecoverError::NothingCovered {
                dir: dir.to_path_buf(),
                newest,
            });
        }
    }

    // 3. Act.
    let keep = cut.as_ref().map_or(0, |(i, _)| i + 1);
    let mut out = Recovered {
        open_num: 1,
        open_len: 0,
        open_form: Form::Plain,
        open_file_len: 0,
        uncompressed_closed: Vec::new(),
        segments_removed: 0,
        bytes_cut: 0,
        last_kept: None,
        first_removed,
    };
    for &seg in segs[keep..].iter().rev() {
        let path = seg.path(dir);
        tracing::warn!(path = %path.display(), "removing segment past the checkpoint");
        fs::remove_file(&path).ctx("remove", &path)?;
        out.segments_removed += 1;
    }
    if out.segments_removed > 0 && fsync {
        sync_dir(dir)?;
    }
    match cut {
        None => {}
        Some((i, s)) => {
            let seg = segs[i];
            out.last_kept = s.last_covered.clone();
            out.bytes_cut = s.len - s.prefix_end;
            if seg.form == Form::ZstOpen {
                let file_len = cut_frames(dir, seg, s.prefix_end, fsync)?;
                if s.closed {
                    close_open(dir, seg.num, fsync)?;
                    out.open_num = seg.num + 1;
                } else {
                    out.open_num = seg.num;
                    out.open_len = s.prefix_end;
                    out.open_form = Form::ZstOpen;
                    out.open_file_len = file_len;
                }
            } else if seg.form == Form::Plain {
                if s.prefix_end < s.len {
                    let path = seg.path(dir);
                    tracing::warn!(path = %path.display(), bytes = s.len - s.prefix_end, "cutting the open segment at the checkpoint");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .ctx("open", &path)?;
                    f.set_len(s.prefix_end).ctx("truncate", &path)?;
                    if fsync {
                        f.sync_all().ctx("fsync", &path)?;
                    }
                }
                if s.closed {
                    // Closed (not compressed yet): the next segment is the open one.
                    out.open_num = seg.num + 1;
                } else {
                    out.open_num = seg.num;
                    out.open_len = s.prefix_end;
                    out.open_file_len = s.prefix_end;
                }
            } else if s.prefix_end < s.len {
                rewrite_prefix(dir, seg, s.prefix_end, fsync)?;
                out.open_num = seg.num;
                out.open_len = s.prefix_end;
                out.open_file_len = s.prefix_end;
            } else {
                out.open_num = seg.num + 1;
            }
            for older in &segs[..i] {
                match older.form {
                    Form::Plain => out.uncompressed_closed.push(older.num),
                    Form::ZstOpen => close_open(dir, older.num, fsync)?,
                    Form::Zst => {}
                }
            }
            if seg.form == Form::Plain && s.closed {
                out.uncompressed_closed.push(seg.num);
            }
        }
    }
    if out.segments_removed > 0 || out.bytes_cut > 0 {
        tracing::warn!(
            dir = %dir.display(),
            segments_removed = out.segments_removed,
            bytes_cut = out.bytes_cut,
            last_kept = out.last_kept.as_deref().unwrap_or(""),
            first_removed = out.first_removed.as_deref().unwrap_or(""),
            "backup cut back to the checkpoint; the source replays from there"
        );
    }
    Ok(out)
}

/// Renames open compressed segment `num` to its closed name (the rotation
/// a crash interrupted; its contents end at a transaction boundary).
fn close_open(dir: &Path, num: u64, fsync: bool) -> Result<(), RecoverError> {
    let from = dir.join(form_name(num, Form::ZstOpen));
    let to = dir.join(form_name(num, Form::Zst));
    tracing::info!(path = %from.display(), "closing a compressed segment whose rotation was interrupted");
    Ok(rename_synced(dir, &from, &to, fsync)?)
}

/// Cuts open compressed segment `seg` to its first `len` uncompressed
/// bytes (see the module docs: truncate at a frame boundary, else rewrite
/// through a `.tmp`). Returns the file's new length.
fn cut_frames(dir: &Path, seg: Segment, len: u64, fsync: bool) -> Result<u64, RecoverError> {
    let path = seg.path(dir);
    let file = File::open(&path).ctx("open segment", &path)?;
    let walk = walk_frames(&file, len).ctx("read segment", &path)?;
    // The boundary is exact even when a later frame does not record its
    // size (rowstream's always do): the rewrite then starts there.
    let (at, raw_at) = walk.boundary;
    if raw_at == len {
        if at < walk.valid + walk.tail {
            tracing::warn!(path = %path.display(), bytes = walk.valid + walk.tail - at, "cutting the open segment at a frame boundary");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .ctx("open", &path)?;
            f.set_len(at).ctx("truncate", &path)?;
            if fsync {
                f.sync_all().ctx("fsync", &path)?;
            }
        }
        return Ok(at);
    }
    // The cut falls inside a frame: its frames before it as they are, and
    // the kept part of that frame compressed again.
    let tmp = dir.join(kind_name(seg.num, FileKind::ZstOpenTmp));
    tracing::warn!(path = %path.display(), keep_bytes = len, "the cut falls inside a zstd frame; rewriting the open segment's tail");
    let mut dst = File::create(&tmp).ctx("create", &tmp)?;
    (&file).seek(SeekFrom::Start(0)).ctx("seek", &path)?;
    let copied = io::copy(&mut (&file).take(at), &mut dst).ctx("copy segment prefix", &path)?;
    let mut src = open_segment(dir, seg).ctx("open segment", &path)?;
    io::copy(&mut (&mut src).take(raw_at), &mut io::sink()).ctx("read segment", &path)?;
    let mut enc = zstd::stream::write::Encoder::new(dst, ZSTD_LEVEL).ctx("zstd init", &tmp)?;
    enc.include_checksum(true).ctx("zstd init", &tmp)?;
    enc.set_pledged_src_size(Some(len - raw_at))
        .ctx("zstd init", &tmp)?;
    let n = io::copy(&mut src.take(len - raw_at), &mut enc).ctx("copy segment prefix", &path)?;
    if n != len - raw_at {
        return Err(IoError {
            op: "copy segment prefix",
            path,
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "segment shorter than scanned"),
        }
        .into());
    }
    let dst = enc.finish().ctx("write", &tmp)?;
    let new_len = dst.metadata().ctx("stat", &tmp)?.len();
    debug_assert!(new_len > copied);
    publish_tmp(dir, dst, &tmp, &path, fsync)?;
    Ok(new_len)
}

/// Replaces compressed segment `seg` by its first `len` uncompressed bytes
/// as an open segment, crash-safely (see the module docs).
fn rewrite_prefix(dir: &Path, seg: Segment, len: u64, fsync: bool) -> Result<(), RecoverError> {
    let zst = seg.path(dir);
    let tmp = dir.join(kind_name(seg.num, FileKind::OpenTmp));
    let open = dir.join(segment_name(seg.num, false));
    tracing::warn!(path = %zst.display(), keep_bytes = len, "the checkpoint falls inside a closed segment; reopening its covered prefix");
    let mut src = open_segment(dir, seg).ctx("open segment", &zst)?.take(len);
    let mut dst = File::create(&tmp).ctx("create", &tmp)?;
    let copied = io::copy(&mut src, &mut dst).map_err(|e| IoError {
        op: "copy segment prefix",
        path: zst.clone(),
        source: e,
    })?;
    if copied != len {
        return Err(IoError {
            op: "copy segment prefix",
            path: zst,
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "segment shorter than scanned"),
        }
        .into());
    }
    publish_tmp(dir, dst, &tmp, &open, fsync)?;
    fs::remove_file(&zst).ctx("remove", &zst)?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}
