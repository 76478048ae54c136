//! The backup directory on disk: segment names, the directory lock, the
//! appending writer (which compresses as it appends), and the background
//! recompression of closed segments made of small frames.
//!
//! Layout of a backup directory:
//!
//! ```text
//! .lock                          flock'ed by the one process that writes here
//! 000000000001.ndjson.zst        closed segment, compressed
//! 000000000002.ndjson.zst
//! 000000000003.ndjson.zst.open   the open segment (only the newest may be open)
//! ```
//!
//! The open segment is written compressed: each append (one group commit)
//! is one complete zstd frame per [`FRAME_IN`] of input ([`ZSTD_LEVEL`], with
//! content size, without zstd's checksum: every line carries a CRC32C, see
//! `encode`) appended to `N.ndjson.zst.open`;
//! concatenated frames are one valid zstd stream. Nothing is written
//! plain, so the page cache copy and the second pass of compressing a
//! closed segment are gone. Rotation fsyncs it and
//! renames it to `N.ndjson.zst` (fsync dir); when its frames were small
//! (under [`SMALL_FRAME`] of input on average: live mode, one transaction
//! per group commit, compresses poorly) the compressor thread rewrites it
//! as one frame afterwards (`.zst.tmp`, renamed over the `.zst`).
//!
//! Older forms, still read, verified, recovered and continued: a plain
//! open segment `N.ndjson` (backups written before, or `compress = false`),
//! which the writer keeps appending to plain until it rotates (the
//! compressor then turns it into `N.ndjson.zst` as before); every segment
//! after it is written compressed.
//!
//! A crash may leave the open segment ending with a torn frame (or
//! garbage after the last complete frame). Readers ([`open_segment`]) read
//! only its complete frames, found by walking frame and block headers
//! ([`walk_frames`]); recovery cuts the file back to a frame boundary and,
//! when the cut falls inside a frame, rewrites the segment through
//! `N.ndjson.zst.open.tmp` (see `recover`).
//!
//! Transient names, removed by recovery: `N.ndjson.zst.tmp` (a compression
//! that did not finish), `N.ndjson.tmp` and `N.ndjson.zst.open.tmp` (a
//! rewrite that did not finish).
//!
//! Invariants kept:
//! - Segments are numbered 1, 2, ... in write order; a segment begins and
//!   ends at a transaction boundary, so a transaction never spans segments.
//! - A `N.ndjson.zst` exists under its final name only once complete and
//!   (with fsync on) durable: it is written as `.zst.tmp`, fsync'd, renamed,
//!   and the directory fsync'd. Only then is `N.ndjson` removed. So when both
//!   exist, the `.zst` is authoritative and holds everything the `.ndjson`
//!   holds (or more, see `recover`). A `.zst` is replaced only by an atomic
//!   rename of a complete, fsync'd file with the same contents (the
//!   recompression of small frames).
//! - `N.ndjson.zst.open` becomes `N.ndjson.zst` only by rename, after an
//!   fsync, at a segment's end; the next segment's file is created after.
//!   Where both exist (not made by rowstream) the `.zst` counts.
//! - Data handed to [`SegmentWriter`] is durable once `sync` or `rotate`
//!   returned Ok (with fsync on), or the [`SyncPoint`] taken after it
//!   synced; a new segment file's directory entry is fsync'd when the file
//!   is created.
//! - The open segment is only ever appended to by its writer: before each
//!   append and each sync the writer checks the file still has the length
//!   it wrote, so a segment truncated (or appended to) behind its back
//!   stops the sink before anything more is acknowledged, instead of
//!   appending after a hole in the stream. A [`SyncPoint`] syncs while the
//!   writer may append more, so it checks only that the file is not
//!   shorter than when it was taken.
//!
//! Everything here is blocking std I/O; the sink calls it from
//! `tokio::task::spawn_blocking` or from its own thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// zstd level of every frame written. Level 2 is level 1's `fast`
/// strategy with a 4x larger hash table and matches from 6 bytes instead
/// of 7; on NDJSON change events that finds more of the envelope's
/// repeats, so fewer, longer sequences are encoded: 9% faster and 11%
/// smaller than level 1 on the benchmark workload's backup (1 MiB frames;
/// `zstd -b1 -e3 -B1MiB`), and as small as the default 3. On a catch-up
/// the compressor competes with decoding for the same cores. Negative
/// ("fast") levels were no faster on this data and a third larger.
pub const ZSTD_LEVEL: i32 = 2;
/// Suffix of a plain segment: an open one of an older backup (or with
/// `compress = false`), or a closed one not compressed yet.
pub const OPEN_SUFFIX: &str = ".ndjson";
/// Suffix of a compressed closed segment.
pub const ZST_SUFFIX: &str = ".ndjson.zst";
/// Suffix of the open segment written compressed (frames of at most
/// [`FRAME_IN`] of input per append).
pub const ZST_OPEN_SUFFIX: &str = ".ndjson.zst.open";
const ZST_TMP_SUFFIX: &str = ".ndjson.zst.tmp";
const OPEN_TMP_SUFFIX: &str = ".ndjson.tmp";
const ZST_OPEN_TMP_SUFFIX: &str = ".ndjson.zst.open.tmp";
/// A closed segment whose frames held less input than this on average is
/// recompressed into one frame: small frames (a few transactions each)
/// compress several times worse than one big one.
pub const SMALL_FRAME: u64 = 64 << 10;
/// The most input one frame holds: a larger append is written as several
/// frames (any frame boundary is a valid cut for readers and recovery), so
/// the encoder's output buffer stays at the worst-case size of one frame.
/// Frames compress better and faster the more of the stream each holds
/// (the match finder has more history): on the benchmark workload's
/// backup, 4 MiB frames against 1 MiB were 1.2x as fast and 1.3-1.45x as
/// small (`zstd -b2 -B..`), and `run` used 3.5% less CPU with a backup of
/// 39 MB instead of 53. 8 MiB gained nothing more in `run` for 20 MB more
/// peak memory. A catch-up group commit is a few MiB, so most frames are
/// one whole append.
pub const FRAME_IN: usize = 4 << 20;
/// The lock file inside the backup directory.
pub const LOCK_FILE: &str = ".lock";
/// How many closed segments may wait for the compressor before rotation
/// waits for it (bounded work queue).
const COMPRESS_QUEUE: usize = 4;
/// Copy chunk for compression; the stop flag is checked between chunks.
const COPY_CHUNK: usize = 1 << 20;

/// An I/O error with the operation and the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct IoError {
    /// What was being done: "write", "fsync", "rename", ...
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Adds an operation and a path to an `io::Result`.
pub(crate) trait Ctx<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|source| IoError {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// File name of segment `num`: `N.ndjson.zst` when `compressed`, else the
/// plain `N.ndjson` (see [`form_name`] for the open compressed form).
pub fn segment_name(num: u64, compressed: bool) -> String {
    if compressed {
        form_name(num, Form::Zst)
    } else {
        form_name(num, Form::Plain)
    }
}

/// File name of segment `num` in the given form.
pub fn form_name(num: u64, form: Form) -> String {
    let suffix = match form {
        Form::Plain => OPEN_SUFFIX,
        Form::Zst => ZST_SUFFIX,
        Form::ZstOpen => ZST_OPEN_SUFFIX,
    };
    format!("{num:012}{suffix}")
}

/// File name of a file of the backup directory by its kind.
pub fn kind_name(num: u64, kind: FileKind) -> String {
    let suffix = match kind {
        FileKind::Open => OPEN_SUFFIX,
        FileKind::Zst => ZST_SUFFIX,
        FileKind::ZstTmp => ZST_TMP_SUFFIX,
        FileKind::OpenTmp => OPEN_TMP_SUFFIX,
        FileKind::ZstOpen => ZST_OPEN_SUFFIX,
        FileKind::ZstOpenTmp => ZST_OPEN_TMP_SUFFIX,
    };
    format!("{num:012}{suffix}")
}

/// What a file in the backup directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `N.ndjson`
    Open,
    /// `N.ndjson.zst`
    Zst,
    /// `N.ndjson.zst.tmp`
    ZstTmp,
    /// `N.ndjson.tmp`
    OpenTmp,
    /// `N.ndjson.zst.open`
    ZstOpen,
    /// `N.ndjson.zst.open.tmp`
    ZstOpenTmp,
}

/// Parses a segment file name; `None` for anything else (`.lock`, foreign files).
pub fn parse_name(name: &str) -> Option<(u64, FileKind)> {
    let digits = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let num: u64 = name[..digits].parse().ok()?;
    let kind = match &name[digits..] {
        OPEN_SUFFIX => FileKind::Open,
        ZST_SUFFIX => FileKind::Zst,
        ZST_TMP_SUFFIX => FileKind::ZstTmp,
        OPEN_TMP_SUFFIX => FileKind::OpenTmp,
        ZST_OPEN_SUFFIX => FileKind::ZstOpen,
        ZST_OPEN_TMP_SUFFIX => FileKind::ZstOpenTmp,
        _ => return None,
    };
    Some((num, kind))
}

/// Every segment-related file in `dir`, sorted by number then kind.
pub fn list_files(dir: &Path) -> io::Result<Vec<(u64, FileKind)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(parsed) = entry.file_name().to_str().and_then(parse_name) {
            out.push(parsed);
        }
    }
    out.sort_by_key(|&(n, k)| (n, k as u8));
    Ok(out)
}

/// The form a segment's file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Form {
    /// `N.ndjson`: plain NDJSON (older backups, `compress = false`, or a
    /// closed segment not compressed yet).
    Plain,
    /// `N.ndjson.zst.open`: the open segment, zstd frames of at most
    /// [`FRAME_IN`] of input per append;
    /// may end with a torn frame after a crash.
    ZstOpen,
    /// `N.ndjson.zst`: a closed segment, compressed (one or more frames).
    Zst,
}

/// One segment as readers see it: the `.zst` when it exists, else the
/// `.zst.open`, else the `.ndjson`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub num: u64,
    pub form: Form,
}

impl Segment {
    /// The segment's file in `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name())
    }

    /// The segment's file name.
    pub fn file_name(&self) -> String {
        form_name(self.num, self.form)
    }

    /// True for a closed compressed segment (`N.ndjson.zst`).
    pub fn is_closed_zst(&self) -> bool {
        self.form == Form::Zst
    }
}

/// The segments of `dir` in order (temporary files ignored; where several
/// forms exist the `.zst` counts, then the `.zst.open`).
pub fn segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out: Vec<Segment> = Vec::new();
    for (num, kind) in list_files(dir)? {
        let form = match kind {
            FileKind::Open => Form::Plain,
            FileKind::Zst => Form::Zst,
            FileKind::ZstOpen => Form::ZstOpen,
            FileKind::ZstTmp | FileKind::OpenTmp | FileKind::ZstOpenTmp => continue,
        };
        match out.last_mut() {
            Some(last) if last.num == num => last.form = last.form.max(form),
            _ => out.push(Segment { num, form }),
        }
    }
    Ok(out)
}

/// Where the complete zstd frames of a file end (see [`walk_frames`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameWalk {
    /// Bytes of the file taken by complete frames, from the start.
    pub valid: u64,
    /// Uncompressed bytes in them (`None`: a frame does not record its size).
    pub raw: Option<u64>,
    /// Complete frames.
    pub frames: u64,
    /// Bytes after the last complete frame (a torn write, or garbage).
    pub tail: u64,
    /// The end of the last complete frame whose uncompressed end is at or
    /// before the `upto` asked for: (file offset, uncompressed offset).
    pub boundary: (u64, u64),
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// Walks the zstd frames of `file` by their frame and block headers (memory
/// is one read buffer), stopping at the first frame that is incomplete or
/// not a frame: everything from there is `tail`. `upto` (uncompressed)
/// picks the `boundary` reported. Skippable frames count as frames holding
/// nothing.
///
/// The last complete frame is also decompressed (streaming; its blocks
/// and, where it has them, its content size and checksum checked) and
/// counts as tail when that fails: a crash can only tear what was written
/// after the last fsync, which is the newest append, one frame; a torn
/// frame followed by garbage (zeros) can look complete by its headers.
/// Frames before it were fsync'd before the last append began. Bytes that
/// decode but are damaged fail the lines' CRC32C (see `encode`), which
/// readers check and recovery never keeps past the last complete marker.
pub fn walk_frames(file: &File, upto: u64) -> io::Result<FrameWalk> {
    let w = walk_headers(file, upto)?;
    let Some(prev) = w.prev else {
        return Ok(w.walk);
    };
    let mut f = file;
    f.seek(SeekFrom::Start(prev.valid))?;
    let frame = f.take(w.walk.valid - prev.valid);
    let ok = zstd::stream::read::Decoder::new(frame)
        .map(|d| d.single_frame())
        .and_then(|mut d| io::copy(&mut d, &mut io::sink()))
        .is_ok();
    if ok {
        return Ok(w.walk);
    }
    Ok(FrameWalk {
        tail: w.walk.valid + w.walk.tail - prev.valid,
        ..prev
    })
}

/// [`walk_frames`] by headers only, with the walk as it was before the
/// last complete frame.
struct HeaderWalk {
    walk: FrameWalk,
    prev: Option<FrameWalk>,
}

fn walk_headers(file: &File, upto: u64) -> io::Result<HeaderWalk> {
    let len = file.metadata()?.len();
    let mut rd = BufReader::with_capacity(1 << 16, file);
    rd.seek(SeekFrom::Start(0))?;
    let mut w = FrameWalk {
        raw: Some(0),
        ..FrameWalk::default()
    };
    let mut prev = None;
    // Reads exactly `buf.len()` bytes, or returns false at the file's end.
    fn get(rd: &mut BufReader<&File>, buf: &mut [u8]) -> io::Result<bool> {
        match rd.read_exact(buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
    loop {
        let start = w.valid;
        if start == len {
            break;
        }
        let mut pos = start;
        let mut magic = [0u8; 4];
        if !get(&mut rd, &mut magic)? {
            break;
        }
        pos += 4;
        let magic = u32::from_le_bytes(magic);
        let mut size: Option<u64> = Some(0);
        let complete = if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let mut n = [0u8; 4];
            if !get(&mut rd, &mut n)? {
                break;
            }
            let n = u64::from(u32::from_le_bytes(n));
            pos += 4 + n;
            pos <= len
        } else if magic == ZSTD_MAGIC {
            let mut fhd = [0u8; 1];
            if !get(&mut rd, &mut fhd)? {
                break;
            }
            let fhd = fhd[0];
            if fhd & 0x08 != 0 {
                break; // reserved bit: not a frame we can read
            }
            let single = fhd & 0x20 != 0;
            let fcs_len = match fhd >> 6 {
                0 => usize::from(single),
                1 => 2,
                2 => 4,
                _ => 8,
            };
            let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
            let mut hdr = [0u8; 13];
            let hdr_len = usize::from(!single) + dict_len + fcs_len;
            if !get(&mut rd, &mut hdr[..hdr_len])? {
                break;
            }
            pos += 1 + hdr_len as u64;
            size = if fcs_len == 0 {
                None
            } else {
                let f = &hdr[hdr_len - fcs_len..hdr_len];
                let mut v = [0u8; 8];
                v[..fcs_len].copy_from_slice(f);
                let v = u64::from_le_bytes(v);
                Some(if fcs_len == 2 { v + 256 } else { v })
            };
            let mut ok = false;
            loop {
                let mut bh = [0u8; 3];
                if !get(&mut rd, &mut bh)? {
                    break;
                }
                let bh = u32::from(bh[0]) | u32::from(bh[1]) << 8 | u32::from(bh[2]) << 16;
                let last = bh & 1 != 0;
                let body = match (bh >> 1) & 3 {
                    0 | 2 => u64::from(bh >> 3),
                    1 => 1,
                    _ => break, // reserved block type
                };
                pos += 3 + body;
                if pos > len {
                    break;
                }
                rd.seek_relative(body as i64)?;
                if last {
                    ok = true;
                    break;
                }
            }
            if ok && fhd & 0x04 != 0 {
                pos += 4;
                ok = pos <= len;
                if ok {
                    rd.seek_relative(4)?;
                }
            }
            ok
        } else {
            false
        };
        if !complete {
            break;
        }
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            rd.seek(SeekFrom::Start(pos))?;
        }
        prev = Some(w);
        w.valid = pos;
        w.frames += 1;
        w.raw = match (w.raw, size) {
            (Some(r), Some(s)) => Some(r + s),
            _ => None,
        };
        if let Some(r) = w.raw.filter(|&r| r <= upto) {
            w.boundary = (pos, r);
        }
    }
    w.tail = len - w.valid;
    Ok(HeaderWalk { walk: w, prev })
}

/// fsyncs a directory, making creations, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
}

/// Renames `from` to `to` inside `dir`; with `fsync`, makes the rename
/// durable (fsync of the directory) before returning.
pub fn rename_synced(dir: &Path, from: &Path, to: &Path, fsync: bool) -> Result<(), IoError> {
    fs::rename(from, to).ctx("rename", from)?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Publishes a finished temporary file `tmp` (open as `file`) under `to`:
/// fsync the file, rename it over `to`, fsync the directory (with `fsync`).
/// Readers see either the old `to` or the complete new one.
pub fn publish_tmp(
    dir: &Path,
    file: File,
    tmp: &Path,
    to: &Path,
    fsync: bool,
) -> Result<(), IoError> {
    if fsync {
        file.sync_all().ctx("fsync", tmp)?;
    }
    drop(file);
    rename_synced(dir, tmp, to, fsync)
}

/// Why the directory lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("backup dir {} is locked by another process (flock on {}): only one rowstream may write a backup dir", dir.display(), lock.display())]
    Held { dir: PathBuf, lock: PathBuf },
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Takes the exclusive, non-blocking `flock` on `dir/.lock` (created if
/// missing). The lock lasts as long as the returned file is open.
pub fn lock_dir(dir: &Path) -> Result<File, LockError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx("open lock file", &path)?;
    // SAFETY: flock on a file descriptor we own and keep open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                lock: path,
            });
        }
        return Err(IoError {
            op: "flock",
            path,
            source: err,
        }
        .into());
    }
    Ok(file)
}

/// The zstd context of a writer, reused for every frame (one allocation
/// for the writer's life), and its output buffer.
struct FrameEncoder {
    cctx: zstd::zstd_safe::CCtx<'static>,
    out: Vec<u8>,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameEncoder")
    }
}

fn zstd_err(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

impl FrameEncoder {
    fn new() -> io::Result<FrameEncoder> {
        use zstd::zstd_safe::CParameter;
        let mut cctx = zstd::zstd_safe::CCtx::try_create()
            .ok_or_else(|| io::Error::other("zstd: cannot allocate a compression context"))?;
        cctx.set_parameter(CParameter::CompressionLevel(ZSTD_LEVEL))
            .map_err(zstd_err)?;
        cctx.set_parameter(CParameter::ChecksumFlag(false))
            .map_err(zstd_err)?;
        cctx.set_parameter(CParameter::ContentSizeFlag(true))
            .map_err(zstd_err)?;
        Ok(FrameEncoder {
            cctx,
            out: Vec::with_capacity(zstd::zstd_safe::compress_bound(FRAME_IN)),
        })
    }

    /// Writes `data` to `file` as complete frames of at most [`FRAME_IN`]
    /// input each; returns their size.
    ///
    /// Each frame is one pass into an output buffer of the worst-case size,
    /// so zstd compresses straight from `data`. Streaming through a small
    /// output buffer made it copy the input into its window and match
    /// across the wrap (the slower external-dictionary path): a third more
    /// CPU.
    fn frame(&mut self, data: &[u8], mut file: &File) -> io::Result<u64> {
        let mut written = 0;
        for chunk in data.chunks(FRAME_IN) {
            self.out.clear();
            self.out
                .reserve(zstd::zstd_safe::compress_bound(chunk.len()));
            self.cctx
                .compress2(&mut self.out, chunk)
                .map_err(zstd_err)?;
            file.write_all(&self.out)?;
            written += self.out.len() as u64;
        }
        Ok(written)
    }
}

/// Appends to the open segment and rotates it.
///
/// The file of segment `num` is opened (created if missing) lazily on the
/// first append, so an empty segment never exists on disk. With zstd on,
/// each append is one frame of `N.ndjson.zst.open` (see the module docs);
/// a plain open segment found at start is continued plain until it rotates.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    num: u64,
    form: Form,
    /// Shared with the [`SyncPoint`]s of appends not yet durable.
    file: Option<Arc<File>>,
    /// Bytes of the file (compressed, for a `.zst.open`).
    len: u64,
    fsync: bool,
    compress: Option<SyncSender<CompressMsg>>,
    /// `Some`: new segments are written compressed.
    zstd: Option<FrameEncoder>,
    /// Frames appended to the open segment by this writer, and their input.
    frames: u64,
    raw: u64,
}

impl SegmentWriter {
    /// A writer appending to segment `num` in `form`, whose file holds
    /// `len` bytes already (0: it does not exist yet; then `form` is
    /// ignored and the segment is written compressed when `zstd`). Closed
    /// segments are handed to `compress` when given (plain ones, and
    /// compressed ones of small frames).
    pub fn new(
        dir: PathBuf,
        num: u64,
        form: Form,
        len: u64,
        fsync: bool,
        compress: Option<SyncSender<CompressMsg>>,
        zstd: bool,
    ) -> io::Result<SegmentWriter> {
        let zstd = if zstd {
            Some(FrameEncoder::new()?)
        } else {
            None
        };
        let mut w = SegmentWriter {
            dir,
            num,
            form,
            file: None,
            len,
            fsync,
            compress,
            zstd,
            frames: 0,
            raw: 0,
        };
        if len == 0 {
            w.form = w.new_form();
        }
        Ok(w)
    }

    /// The form of a segment this writer begins.
    fn new_form(&self) -> Form {
        if self.zstd.is_some() {
            Form::ZstOpen
        } else {
            Form::Plain
        }
    }

    /// The open segment's form.
    pub fn form(&self) -> Form {
        self.form
    }

    /// The open segment's number.
    pub fn num(&self) -> u64 {
        self.num
    }

    /// Bytes in the open segment's file (compressed, for a `.zst.open`).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the open segment holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn path(&self) -> PathBuf {
        self.dir.join(form_name(self.num, self.form))
    }

    /// Appends `data` (written to the OS, not yet durable).
    pub fn append(&mut self, data: &[u8]) -> Result<(), IoError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            let path = self.path();
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .ctx("open segment", &path)?;
            if self.len == 0 && self.fsync {
                // A new file: make its directory entry durable once.
                sync_dir(&self.dir)?;
            }
            self.file = Some(Arc::new(file));
        }
        self.check_len()?;
        let path = self.path();
        #[allow(clippy::expect_used)] // set just above when it was None
        let file = self.file.as_deref().expect("opened above");
        let written = match (&mut self.zstd, self.form) {
            (Some(enc), Form::ZstOpen) => {
                // A new segment's first line (its start line, see `encode`)
                // gets a frame of its own, so that a segment cut short
                // behind rowstream's back keeps the coverage it began with
                // and the restart can name what was lost (see `sink`).
                let first = match (self.len == 0)
                    .then(|| data.iter().position(|&b| b == b'\n'))
                    .flatten()
                {
                    Some(nl) if nl + 1 < data.len() => nl + 1,
                    _ => 0,
                };
                let head = if first > 0 {
                    enc.frame(&data[..first], file)
                } else {
                    Ok(0)
                };
                head.and_then(|h| enc.frame(&data[first..], file).map(|n| h + n))
            }
            _ => {
                let mut file = file;
                file.write_all(data).map(|()| data.len() as u64)
            }
        };
        let written = written.map_err(|source| IoError {
            op: "write",
            path,
            source,
        })?;
        self.len += written;
        self.frames += 1;
        self.raw += data.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable (a no-op with fsync off).
    pub fn sync(&mut self) -> Result<(), IoError> {
        self.check_len()?;
        if let (Some(file), true) = (&self.file, self.fsync) {
            file.sync_data().ctx("fsync", &self.path())?;
        }
        Ok(())
    }

    /// What makes everything appended so far durable, apart from the
    /// writer: the next appends may run while it syncs. `None` when there
    /// is nothing to sync (fsync off, or no file opened yet).
    pub fn sync_point(&self) -> Result<Option<SyncPoint>, IoError> {
        self.check_len()?;
        Ok(match (&self.file, self.fsync) {
            (Some(file), true) => Some(SyncPoint {
                file: file.clone(),
                path: self.path(),
                len: self.len,
            }),
            _ => None,
        })
    }

    /// Fails when the open segment's length is not what this writer made
    /// it: someone else truncated or wrote to it, and what the sink acked
    /// may be gone. One fstat; nothing to check before the file is opened.
    fn check_len(&self) -> Result<(), IoError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let found = file.metadata().ctx("stat", &self.path())?.len();
        if found == self.len {
            return Ok(());
        }
        Err(changed_behind(self.path(), found, self.len))
    }

    /// Closes the open segment (durable first) and starts the next one; the
    /// closed segment goes to the compressor. A no-op on an empty segment.
    pub fn rotate(&mut self) -> Result<(), IoError> {
        if self.len == 0 {
            return Ok(());
        }
        self.sync()?;
        self.file = None;
        let closed = self.num;
        // Plain segments always need compressing; compressed ones only when
        // their frames are small (the ratio suffers).
        let mut queue = self.form == Form::Plain;
        if self.form == Form::ZstOpen {
            let from = self.path();
            let to = self.dir.join(form_name(closed, Form::Zst));
            rename_synced(&self.dir, &from, &to, self.fsync)?;
            queue = self.frames > 0 && self.raw / self.frames < SMALL_FRAME;
        }
        self.num += 1;
        self.len = 0;
        self.frames = 0;
        self.raw = 0;
        self.form = self.new_form();
        if let (Some(tx), true) = (&self.compress, queue) {
            // A closed receiver means the compressor stopped (shutdown); a
            // plain segment stays uncompressed and is compressed at the next
            // start (a compressed one of small frames stays as it is).
            let _ = tx.send(CompressMsg::Segment(closed));
        }
        tracing::debug!(dir = %self.dir.display(), segment = closed, "segment closed");
        Ok(())
    }
}

/// The open segment as one append left it: [`SyncPoint::sync`] makes
/// that append durable while the writer goes on appending.
#[derive(Debug)]
pub struct SyncPoint {
    file: Arc<File>,
    path: PathBuf,
    /// The file's length after the append.
    len: u64,
}

impl SyncPoint {
    /// fsyncs the file. Fails when it is shorter than the append left it
    /// (truncated behind rowstream's back). It may be longer: the writer's
    /// later appends (each checks the exact length before it writes, so a
    /// write behind its back is caught there, before more is acked).
    pub fn sync(&self) -> Result<(), IoError> {
        let found = self.file.metadata().ctx("stat", &self.path)?.len();
        if found < self.len {
            return Err(changed_behind(self.path.clone(), found, self.len));
        }
        self.file.sync_data().ctx("fsync", &self.path)
    }
}

/// The open segment at `path` holds `found` bytes where rowstream wrote `len`.
fn changed_behind(path: PathBuf, found: u64, len: u64) -> IoError {
    IoError {
        op: "check",
        path,
        source: io::Error::other(format!(
            "the segment holds {found} bytes but rowstream wrote {len}: it was truncated or \
             written to behind rowstream's back; acknowledged transactions may be lost \
             (check the backup with `rowstream backup verify`)"
        )),
    }
}

/// Work for the compressor thread.
#[derive(Debug)]
pub enum CompressMsg {
    /// Compress closed segment N.
    Segment(u64),
    /// Reply once everything queued before has been handled.
    Barrier(mpsc::Sender<()>),
}

/// The background thread compressing closed segments, one at a time, in
/// order, at a lowered CPU priority (nice 10) so that it yields to the
/// pipeline during catch-up.
#[derive(Debug)]
pub struct Compressor {
    tx: Option<SyncSender<CompressMsg>>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    handle: Option<JoinHandle<()>>,
}

impl Compressor {
    /// Starts the thread for `dir`.
    pub fn spawn(dir: PathBuf, fsync: bool) -> io::Result<Compressor> {
        let (tx, rx) = mpsc::sync_channel(COMPRESS_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let error = Arc::new(Mutex::new(None));
        let (stop2, error2) = (stop.clone(), error.clone());
        let handle = std::thread::Builder::new()
            .name("rowstream-zstd".into())
            .spawn(move || compressor_loop(dir, fsync, rx, stop2, error2))?;
        Ok(Compressor {
            tx: Some(tx),
            stop,
            error,
            handle: Some(handle),
        })
    }

    /// A sender for [`SegmentWriter::new`].
    pub fn sender(&self) -> Option<SyncSender<CompressMsg>> {
        self.tx.clone()
    }

    /// The first failure of the thread, if any (it stops at the first).
    pub fn error(&self) -> Option<String> {
        self.error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Blocks until every segment queued so far is compressed (or failed).
    pub fn wait_idle(&self) {
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(CompressMsg::Barrier(done_tx)).is_ok() {
                let _ = done_rx.recv();
            }
        }
    }
}

impl Drop for Compressor {
    /// Stops the thread: a compression under way is abandoned (its `.tmp`
    /// removed; the segment stays `.ndjson` and is compressed at the next
    /// start), so this returns within about one chunk's work.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn compressor_loop(
    dir: PathBuf,
    fsync: bool,
    rx: Receiver<CompressMsg>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
) {
    // SAFETY: plain syscalls on the calling thread; failure is harmless.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
    let mut failed = false;
    while !stop.load(Ordering::SeqCst) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(CompressMsg::Segment(num)) if !failed => {
                match compress_segment(&dir, num, fsync, &stop) {
                    Ok(true) => {
                        tracing::debug!(dir = %dir.display(), segment = num, "segment compressed")
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), segment = num, error = %e, "compressing a closed segment failed; it stays uncompressed");
                        if let Ok(mut slot) = error.lock() {
                            *slot = Some(format!("compressing segment: {e}"));
                        }
                        failed = true;
                    }
                }
            }
            Ok(CompressMsg::Segment(_)) => {}
            Ok(CompressMsg::Barrier(done)) => {
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Compresses closed segment `num`: `N.ndjson` -> `N.ndjson.zst.tmp`,
/// fsync, rename to `N.ndjson.zst`, fsync dir, remove `N.ndjson`, fsync dir.
/// Without an `N.ndjson`, recompresses `N.ndjson.zst` (frames written by the
/// open segment's appends) into one frame the same way, renamed over it.
/// Returns `Ok(false)` when `stop` was raised midway (the tmp is removed).
/// Streams: memory is one chunk plus zstd's window.
pub fn compress_segment(
    dir: &Path,
    num: u64,
    fsync: bool,
    stop: &AtomicBool,
) -> Result<bool, IoError> {
    let plain_path = dir.join(segment_name(num, false));
    let dst_path = dir.join(segment_name(num, true));
    let tmp_path = dir.join(format!("{num:012}{ZST_TMP_SUFFIX}"));
    let (src_path, mut src): (PathBuf, Box<dyn Read>) = match File::open(&plain_path) {
        Ok(f) => (plain_path, Box::new(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = File::open(&dst_path).ctx("open segment", &dst_path)?;
            let dec = zstd::stream::read::Decoder::new(f).ctx("zstd init", &dst_path)?;
            (dst_path.clone(), Box::new(dec))
        }
        Err(e) => return Err(e).ctx("open segment", &plain_path),
    };
    let recompress = src_path == dst_path;
    let tmp = File::create(&tmp_path).ctx("create", &tmp_path)?;
    let mut enc = zstd::stream::write::Encoder::new(tmp, ZSTD_LEVEL).ctx("zstd init", &tmp_path)?;
    enc.include_checksum(true).ctx("zstd init", &tmp_path)?;
    // The frame records the segment's size (recovery cuts by it, see `recover`).
    let size = if recompress {
        File::open(&src_path)
            .and_then(|f| walk_frames(&f, 0))
            .ok()
            .and_then(|w| w.raw)
    } else {
        fs::metadata(&src_path).ok().map(|m| m.len())
    };
    if size.is_some() {
        let _ = enc.set_pledged_src_size(size);
    }
    let mut chunk = vec![0u8; COPY_CHUNK];
    loop {
        if stop.load(Ordering::SeqCst) {
            drop(enc);
            let _ = fs::remove_file(&tmp_path);
            return Ok(false);
        }
        let n = match src.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx("read", &src_path),
        };
        enc.write_all(&chunk[..n]).ctx("write", &tmp_path)?;
    }
    let tmp = enc.finish().ctx("write", &tmp_path)?;
    publish_tmp(dir, tmp, &tmp_path, &dst_path, fsync)?;
    if !recompress {
        fs::remove_file(&src_path).ctx("remove", &src_path)?;
        if fsync {
            sync_dir(dir)?;
        }
    }
    Ok(true)
}

/// Opens segment `seg` for reading its lines (decompressing as a stream).
/// Of a `.zst.open` only the complete frames are read: a torn tail is
/// left out (see [`walk_frames`]).
pub fn open_segment(dir: &Path, seg: Segment) -> io::Result<Box<dyn Read + Send>> {
    let path = seg.path(dir);
    let mut file = File::open(&path)?;
    match seg.form {
        Form::Zst => Ok(Box::new(zstd::stream::read::Decoder::new(file)?)),
        Form::ZstOpen => {
            let walk = walk_frames(&file, 0)?;
            if walk.valid == 0 {
                return Ok(Box::new(io::empty()));
            }
            file.seek(SeekFrom::Start(0))?;
            Ok(Box::new(zstd::stream::read::Decoder::new(
                file.take(walk.valid),
            )?))
        }
        Form::Plain => Ok(Box::new(BufReader::with_capacity(1 << 16, file))),
    }
}

/// Opens segment `seg` as listed, or, when that file is gone, its `.zst`:
/// a live writer may have closed or compressed it since the listing.
/// Returns the form opened.
pub fn open_listed(dir: &Path, seg: Segment) -> io::Result<(Segment, Box<dyn Read + Send>)> {
    match open_segment(dir, seg) {
        Ok(rd) => Ok((seg, rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && seg.form != Form::Zst => {
            let z = Segment {
                form: Form::Zst,
                ..seg
            };
            Ok((z, open_segment(dir, z)?))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(segment_name(1, false), "000000000001.ndjson");
        assert_eq!(segment_name(42, true), "000000000042.ndjson.zst");
        assert_eq!(
            parse_name("000000000042.ndjson.zst"),
            Some((42, FileKind::Zst))
        );
        assert_eq!(
            parse_name("000000000042.ndjson"),
            Some((42, FileKind::Open))
        );
        assert_eq!(
            parse_name("000000000042.ndjson.zst.tmp"),
            Some((42, FileKind::ZstTmp))
        );
        assert_eq!(
            parse_name("000000000042.ndjson.tmp"),
            Some((42, FileKind::OpenTmp))
        );
        assert_eq!(parse_name(".lock"), None);
        assert_eq!(parse_name("12.json"), None);
        assert_eq!(
            parse_name("1234567890123.ndjson"),
            Some((1234567890123, FileKind::Open))
        );
    }

    #[test]
    fn lock_is_exclusive() {
        let d = tempfile::tempdir().unwrap();
        let held = lock_dir(d.path()).unwrap();
        let e = lock_dir(d.path()).unwrap_err();
        assert!(matches!(e, LockError::Held { .. }), "{e}");
        assert!(e.to_string().contains("locked by another process"), "{e}");
        drop(held);
        lock_dir(d.path()).unwrap();
    }

    fn lines(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{{\"before\":{i}}}\n").into_bytes())
            .collect()
    }

    fn read_all(dir: &Path, seg: Segment) -> Vec<u8> {
        let mut back = Vec::new();
        open_segment(dir, seg)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    #[test]
    fn compress_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let mut w =
            SegmentWriter::new(d.path().to_path_buf(), 1, Form::Plain, 0, true, None, false)
                .unwrap();
        let data = lines(100_000);
        w.append(&data).unwrap();
        w.rotate().unwrap();
        assert_eq!(w.num(), 2);
        let stop = AtomicBool::new(false);
        assert!(compress_segment(d.path(), 1, true, &stop).unwrap());
        let z = Segment {
            num: 1,
            form: Form::Zst,
        };
        assert_eq!(segments(d.path()).unwrap(), vec![z]);
        assert_eq!(read_all(d.path(), z), data);
    }

    #[test]
    fn frames_appended_then_closed_and_recompressed() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(d.path().to_path_buf(), 1, Form::Plain, 0, true, None, true)
            .unwrap();
        assert_eq!(w.form(), Form::ZstOpen);
        let data = lines(20_000);
        let (a, b) = data.split_at(12_345);
        w.append(a).unwrap();
        w.append(b).unwrap();
        w.sync().unwrap();
        let open = Segment {
            num: 1,
            form: Form::ZstOpen,
        };
        assert_eq!(segments(d.path()).unwrap(), vec![open]);
        let f = File::open(open.path(d.path())).unwrap();
        let walk = walk_frames(&f, a.len() as u64 + 10).unwrap();
        // The first line has a frame of its own (see `append`).
        assert_eq!(walk.frames, 3);
        assert_eq!(walk.tail, 0);
        assert_eq!(walk.raw, Some(data.len() as u64));
        assert_eq!(walk.boundary.1, a.len() as u64);
        assert_eq!(walk.valid, w.len());
        assert_eq!(read_all(d.path(), open), data);
        // A torn write: half a frame more. Readers see the complete frames.
        let mut f = OpenOptions::new()
            .append(true)
            .open(open.path(d.path()))
            .unwrap();
        let mut extra = Vec::new();
        let mut enc = FrameEncoder::new().unwrap();
        let tmp = d.path().join("x");
        let t = File::create(&tmp).unwrap();
        enc.frame(&lines(50), &t).unwrap();
        File::open(&tmp).unwrap().read_to_end(&mut extra).unwrap();
        f.write_all(&extra[..extra.len() / 2]).unwrap();
        let f = File::open(open.path(d.path())).unwrap();
        let walk = walk_frames(&f, u64::MAX).unwrap();
        assert_eq!((walk.frames, walk.tail), (3, extra.len() as u64 / 2));
        assert_eq!(read_all(d.path(), open), data);
        // Garbage (zeros) after the frames: the same.
        fs::write(&tmp, b"").unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(open.path(d.path()))
            .unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        assert_eq!(read_all(d.path(), open), data);
        fs::remove_file(&tmp).unwrap();
        // Rotation renames; small frames are recompressed into one.
        let mut w = SegmentWriter::new(d.path().to_path_buf(), 2, Form::Plain, 0, true, None, true)
            .unwrap();
        w.append(a).unwrap();
        w.append(b).unwrap();
        w.rotate().unwrap();
        assert_eq!(w.form(), Form::ZstOpen);
        let z = Segment {
            num: 2,
            form: Form::Zst,
        };
        assert!(z.path(d.path()).exists());
        let stop = AtomicBool::new(false);
        assert!(compress_segment(d.path(), 2, true, &stop).unwrap());
        let f = File::open(z.path(d.path())).unwrap();
        assert_eq!(walk_frames(&f, 0).unwrap().frames, 1);
        assert_eq!(read_all(d.path(), z), data);
    }

    #[test]
    fn sync_point_refuses_a_truncated_segment_and_allows_later_appends() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(d.path().to_path_buf(), 1, Form::Plain, 0, true, None, true)
            .unwrap();
        w.append(&lines(100)).unwrap();
        let first = w.sync_point().unwrap().expect("fsync on and a file open");
        // The writer appends on while the first append syncs: still fine.
        w.append(&lines(100)).unwrap();
        first.sync().unwrap();
        let second = w.sync_point().unwrap().expect("a sync point");
        // Cut behind the writer's back: the second append's bytes are gone.
        let path = Segment {
            num: 1,
            form: Form::ZstOpen,
        }
        .path(d.path());
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(w.len() - 1).unwrap();
        let e = second.sync().unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        // The first append's bytes are all there: it still syncs.
        first.sync().unwrap();
        // Off: nothing to sync.
        let w = SegmentWriter::new(d.path().to_path_buf(), 2, Form::Plain, 0, false, None, true)
            .unwrap();
        assert!(w.sync_point().unwrap().is_none());
    }
}
