//! The backup directory on disk: segment names, the directory lock, the
//! appending writer, and zstd compression of closed segments (in a
//! background thread).
//!
//! Layout of a backup directory:
//!
//! ```text
//! .lock                      flock'ed by the one process that writes here
//! 000000000001.ndjson.zst    closed segment, compressed
//! 000000000002.ndjson.zst
//! 000000000003.ndjson        the open segment (only the newest may be open)
//! ```
//!
//! Transient names, removed by recovery: `N.ndjson.zst.tmp` (a compression
//! that did not finish), `N.ndjson.tmp` (a rewrite that did not finish).
//!
//! Invariants kept:
//! - Segments are numbered 1, 2, ... in write order; a segment begins and
//!   ends at a transaction boundary, so a transaction never spans segments.
//! - A `N.ndjson.zst` exists under its final name only once complete and
//!   (with fsync on) durable: it is written as `.zst.tmp`, fsync'd, renamed,
//!   and the directory fsync'd. Only then is `N.ndjson` removed. So when both
//!   exist, the `.zst` is authoritative and holds everything the `.ndjson`
//!   holds (or more, see `recover`).
//! - Data handed to [`SegmentWriter`] is durable once `sync` or `rotate`
//!   returned Ok (with fsync on); a new segment file's directory entry is
//!   fsync'd when the file is created.
//! - The open segment is only ever appended to by its writer: before each
//!   append and each sync the writer checks the file still has the length
//!   it wrote, so a segment truncated (or appended to) behind its back
//!   stops the sink before anything more is acknowledged, instead of
//!   appending after a hole in the stream.
//!
//! Everything here is blocking std I/O; the sink calls it from
//! `tokio::task::spawn_blocking` or from its own thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// zstd level for closed segments. Level 1 compresses NDJSON change events
/// nearly as well as the default 3 at about twice the speed; on a catch-up
/// the compressor competes with decoding for the same cores.
pub const ZSTD_LEVEL: i32 = 1;
/// Suffix of the open (and of a not yet compressed closed) segment.
pub const OPEN_SUFFIX: &str = ".ndjson";
/// Suffix of a compressed closed segment.
pub const ZST_SUFFIX: &str = ".ndjson.zst";
const ZST_TMP_SUFFIX: &str = ".ndjson.zst.tmp";
const OPEN_TMP_SUFFIX: &str = ".ndjson.tmp";
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

/// File name of segment `num` in the given form.
pub fn segment_name(num: u64, compressed: bool) -> String {
    if compressed {
        format!("{num:012}{ZST_SUFFIX}")
    } else {
        format!("{num:012}{OPEN_SUFFIX}")
    }
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

/// One segment as readers see it: the `.zst` when it exists, else the `.ndjson`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub num: u64,
    pub compressed: bool,
}

impl Segment {
    /// The segment's file in `dir`.
    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(segment_name(self.num, self.compressed))
    }
}

/// The segments of `dir` in order (temporary files ignored; where both
/// forms exist the compressed one counts).
pub fn segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut out: Vec<Segment> = Vec::new();
    for (num, kind) in list_files(dir)? {
        let compressed = match kind {
            FileKind::Open => false,
            FileKind::Zst => true,
            FileKind::ZstTmp | FileKind::OpenTmp => continue,
        };
        match out.last_mut() {
            Some(last) if last.num == num => last.compressed |= compressed,
            _ => out.push(Segment { num, compressed }),
        }
    }
    Ok(out)
}

/// fsyncs a directory, making creations, renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync directory", dir)
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

/// Appends to the open segment and rotates it.
///
/// The file of segment `num` is opened (created if missing) lazily on the
/// first append, so an empty segment never exists on disk.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    num: u64,
    file: Option<File>,
    len: u64,
    fsync: bool,
    compress: Option<SyncSender<CompressMsg>>,
}

impl SegmentWriter {
    /// A writer appending to segment `num`, which holds `len` bytes
    /// already (0: the file does not exist yet). Closed segments are handed
    /// to `compress` when given.
    pub fn new(
        dir: PathBuf,
        num: u64,
        len: u64,
        fsync: bool,
        compress: Option<SyncSender<CompressMsg>>,
    ) -> SegmentWriter {
        SegmentWriter {
            dir,
            num,
            file: None,
            len,
            fsync,
            compress,
        }
    }

    /// The open segment's number.
    pub fn num(&self) -> u64 {
        self.num
    }

    /// Bytes in the open segment.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the open segment holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn path(&self) -> PathBuf {
        self.dir.join(segment_name(self.num, false))
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
            self.file = Some(file);
        }
        self.check_len()?;
        #[allow(clippy::expect_used)] // set just above when it was None
        let file = self.file.as_mut().expect("opened above");
        let path = &self.dir;
        file.write_all(data).map_err(|source| IoError {
            op: "write",
            path: path.join(segment_name(self.num, false)),
            source,
        })?;
        self.len += data.len() as u64;
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
        Err(IoError {
            op: "check",
            path: self.path(),
            source: io::Error::other(format!(
                "the segment holds {found} bytes but rowstream wrote {}: it was truncated or \
                 written to behind rowstream's back; acknowledged transactions may be lost \
                 (check the backup with `rowstream backup verify`)",
                self.len
            )),
        })
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
        self.num += 1;
        self.len = 0;
        if let Some(tx) = &self.compress {
            // A closed receiver means the compressor stopped (shutdown); the
            // segment stays uncompressed and is compressed at the next start.
            let _ = tx.send(CompressMsg::Segment(closed));
        }
        tracing::debug!(dir = %self.dir.display(), segment = closed, "segment closed");
        Ok(())
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
/// Returns `Ok(false)` when `stop` was raised midway (the tmp is removed).
/// Streams: memory is one chunk plus zstd's window.
pub fn compress_segment(
    dir: &Path,
    num: u64,
    fsync: bool,
    stop: &AtomicBool,
) -> Result<bool, IoError> {
    let src_path = dir.join(segment_name(num, false));
    let dst_path = dir.join(segment_name(num, true));
    let tmp_path = dir.join(format!("{num:012}{ZST_TMP_SUFFIX}"));
    let mut src = File::open(&src_path).ctx("open segment", &src_path)?;
    let tmp = File::create(&tmp_path).ctx("create", &tmp_path)?;
    let mut enc = zstd::stream::write::Encoder::new(tmp, ZSTD_LEVEL).ctx("zstd init", &tmp_path)?;
    enc.include_checksum(true).ctx("zstd init", &tmp_path)?;
    if let Ok(meta) = src.metadata() {
        let _ = enc.set_pledged_src_size(Some(meta.len()));
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
    if fsync {
        tmp.sync_all().ctx("fsync", &tmp_path)?;
    }
    drop(tmp);
    fs::rename(&tmp_path, &dst_path).ctx("rename", &tmp_path)?;
    if fsync {
        sync_dir(dir)?;
    }
    fs::remove_file(&src_path).ctx("remove", &src_path)?;
    if fsync {
        sync_dir(dir)?;
    }
    Ok(true)
}

/// Opens segment `seg` for reading its lines (decompressing as a stream).
pub fn open_segment(dir: &Path, seg: Segment) -> io::Result<Box<dyn Read + Send>> {
    let path = seg.path(dir);
    let file = File::open(&path)?;
    if seg.compressed {
        Ok(Box::new(zstd::stream::read::Decoder::new(file)?))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
    }
}

/// Opens segment `seg` as listed, or, when its `.ndjson` is gone, its
/// `.zst`: a live writer may have compressed it since the listing. Returns
/// the form opened.
pub fn open_listed(dir: &Path, seg: Segment) -> io::Result<(Segment, Box<dyn Read + Send>)> {
    match open_segment(dir, seg) {
        Ok(rd) => Ok((seg, rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !seg.compressed => {
            let z = Segment {
                compressed: true,
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

    #[test]
    fn compress_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(d.path().to_path_buf(), 1, 0, true, None);
        let data: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("{{\"before\":{i}}}\n").into_bytes())
            .collect();
        w.append(&data).unwrap();
        w.rotate().unwrap();
        assert_eq!(w.num(), 2);
        let stop = AtomicBool::new(false);
        assert!(compress_segment(d.path(), 1, true, &stop).unwrap());
        assert_eq!(
            segments(d.path()).unwrap(),
            vec![Segment {
                num: 1,
                compressed: true
            }]
        );
        let mut back = Vec::new();
        open_segment(
            d.path(),
            Segment {
                num: 1,
                compressed: true,
            },
        )
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
        assert_eq!(back, data);
    }
}
