//! Reading a backup: every line in write order across compressed and open
//! segments (`BackupReader`), and `backup cat` (`cat`).
//!
//! `cat` prints a transaction only after its checksum (see `encode`) is
//! verified: transactions up to [`CAT_BUFFER`] bytes are held until their
//! marker; a bigger one is checksummed in a first pass and printed in a
//! second pass re-read from where it starts (decompressing its segment
//! again when compressed), so memory stays bounded. A transaction whose
//! checksum fails is not printed: `cat` stops with an error naming it.
//!
//! Invariants kept:
//! - Only records and markers are returned: segment lines (start, end and
//!   skipped lines, see `encode`) are skipped.
//! - Streams: memory is one line plus read buffers and zstd's window, never
//!   a segment or a transaction.
//! - Only complete transactions are returned: the newest segment, when it is
//!   the open one (plain, or compressed: then only its complete frames), is read only up to the end of its last
//!   complete transaction-end marker, so a transaction still being written
//!   (or torn by a crash) is not shown. Closed segments always end at a
//!   marker.
//! - The reader takes no lock and may run beside a live sink: a segment
//!   compressed between listing and opening is found under its new name.
//!   On a backup that crashed and has not been restarted yet, transactions
//!   beyond the checkpoint that a restart would cut are still shown.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::encode::{classify, is_segment_line, marker_crc, parse_tx_end, LineKind, TxCrc};
use crate::segment::{open_listed, open_segment, segments, Form, Segment};

/// One line of the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The segment it came from.
    pub segment: u64,
    pub kind: LineKind,
    /// The JSON text, without the trailing `\n`.
    pub line: Vec<u8>,
}

/// Iterates over the lines of a backup directory in write order. See the
/// module docs.
pub struct BackupReader {
    dir: PathBuf,
    rest: VecDeque<Segment>,
    newest: Option<u64>,
    cur: Option<(u64, Box<dyn BufRead + Send>)>,
    /// The segment being read, as opened.
    cur_seg: Option<Segment>,
    /// Bytes of the current segment consumed so far.
    pos: u64,
    line_no: u64,
    /// Segments listed at open, and finished since, for [`Self::done_fraction`].
    listed: usize,
    finished: usize,
    /// Uncompressed length of the current segment when known (open segment).
    cur_len: Option<u64>,
}

/// Where a line starts: segment (as opened), byte offset, 0-based line number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub segment: Segment,
    pub offset: u64,
    pub line_no: u64,
}

/// `Err(NotFound)` naming `dir` unless it is a directory: the one message
/// every reader of a backup gives for a wrong path.
pub(crate) fn require_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "backup dir {} does not exist or is not a directory",
            dir.display()
        ),
    ))
}

impl BackupReader {
    /// Lists the segments of `dir` (they are opened one at a time as reading
    /// proceeds).
    pub fn open(dir: &Path) -> io::Result<BackupReader> {
        require_dir(dir)?;
        let rest: VecDeque<Segment> = segments(dir)?.into();
        Ok(BackupReader {
            dir: dir.to_path_buf(),
            newest: rest.back().map(|s| s.num),
            rest,
            cur: None,
            cur_seg: None,
            pos: 0,
            line_no: 0,
            listed: 0,
            finished: 0,
            cur_len: None,
        }
        .counted())
    }

    fn counted(mut self) -> BackupReader {
        self.listed = self.rest.len();
        self
    }

    /// How much of the backup has been read, 0.0 to 1.0, by segments (and
    /// by bytes inside an uncompressed one): for progress bars and ETAs.
    pub fn done_fraction(&self) -> f64 {
        if self.listed == 0 {
            return 1.0;
        }
        let inside = match (self.cur.is_some(), self.cur_len) {
            (true, Some(len)) if len > 0 => self.pos as f64 / len as f64,
            (true, _) => 0.5,
            (false, _) => 0.0,
        };
        ((self.finished as f64 + inside) / self.listed as f64).min(1.0)
    }

    fn open_next(&mut self) -> io::Result<bool> {
        let Some(seg) = self.rest.pop_front() else {
            return Ok(false);
        };
        self.cur_len = None;
        // The open segment is read up to its last complete transaction,
        // measured before it is opened: it only grows (an open compressed
        // segment by whole frames), so what is opened next holds the limit.
        let mut seg = seg;
        let limit = if !seg.is_closed_zst() && Some(seg.num) == self.newest {
            match complete_prefix(&self.dir, seg) {
                Ok(limit) => Some(limit),
                // Closed (renamed or compressed) since the listing: read whole.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    seg.form = Form::Zst;
                    None
                }
                Err(e) => return Err(ctx(&self.dir, seg, e)),
            }
        } else {
            None
        };
        // The writer may have closed or compressed it since: the closed
        // form holds at least as much.
        let (seg, rd) = open_listed(&self.dir, seg).map_err(|e| ctx(&self.dir, seg, e))?;
        let rd: Box<dyn Read + Send> = if let Some(limit) = limit {
            self.cur_len = Some(limit);
            Box::new(rd.take(limit))
        } else {
            if seg.form == Form::Plain {
                self.cur_len = std::fs::metadata(seg.path(&self.dir)).ok().map(|m| m.len());
            }
            rd
        };
        self.cur = Some((seg.num, Box::new(BufReader::with_capacity(1 << 16, rd))));
        self.cur_seg = Some(seg);
        self.pos = 0;
        self.line_no = 0;
        Ok(true)
    }

    /// Where the line last read starts (`None` before the first).
    pub fn position_of_last(&self, last_len: usize) -> Option<Position> {
        Some(Position {
            segment: self.cur_seg?,
            offset: self.pos - last_len as u64,
            line_no: self.line_no - 1,
        })
    }

    /// Reads the next line into `buf` (cleared first, no trailing `\n`) and
    /// returns its kind; `None` at the end of the backup. A line that is not
    /// a backup record is an `InvalidData` error naming segment and line.
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<LineKind>> {
        self.read_line_in(buf).map(|r| r.map(|(_, k)| k))
    }

    fn read_line_in(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<(u64, LineKind)>> {
        loop {
            if self.cur.is_none() && !self.open_next()? {
                return Ok(None);
            }
            #[allow(clippy::expect_used)] // open_next returned true: it set `cur`
            let (num, rd) = self.cur.as_mut().expect("opened above");
            let num = *num;
            buf.clear();
            let n = rd.read_until(b'\n', buf)?;
            if n == 0 {
                self.cur = None;
                self.finished += 1;
                continue;
            }
            self.pos += n as u64;
            self.line_no += 1;
            let bad = |what: &str| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment {num} line {}: {what}", self.line_no),
                )
            };
            if buf.pop() != Some(b'\n') {
                return Err(bad("truncated line (no newline)"));
            }
            // Segment start / end lines are bookkeeping, not records.
            if is_segment_line(buf) {
                continue;
            }
            let Some(kind) = classify(buf) else {
                return Err(bad("not a backup record"));
            };
            return Ok(Some((num, kind)));
        }
    }
}

impl Iterator for BackupReader {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        match self.read_line_in(&mut line) {
            Ok(Some((segment, kind))) => Some(Ok(Entry {
                segment,
                kind,
                line,
            })),
            Ok(None) => None,
            Err(e) => {
                // Stop after an error.
                self.rest.clear();
                self.cur = None;
                Some(Err(e))
            }
        }
    }
}

fn ctx(dir: &Path, seg: Segment, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", seg.path(dir).display()))
}

/// Length (uncompressed) of the part of an open segment that ends with its
/// last complete transaction-end marker (0 if it has none).
fn complete_prefix(dir: &Path, seg: Segment) -> io::Result<u64> {
    let mut rd = BufReader::with_capacity(1 << 16, open_segment(dir, seg)?);
    let mut line = Vec::with_capacity(4096);
    let (mut pos, mut end) = (0u64, 0u64);
    loop {
        line.clear();
        let n = rd.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(end);
        }
        pos += n as u64;
        if classify(&line) == Some(LineKind::TxEnd) && parse_tx_end(&line).is_some() {
            end = pos;
        }
        if line.capacity() > 1 << 24 {
            line = Vec::with_capacity(4096);
        }
    }
}

/// Transactions up to this size are held by `cat` until their checksum is
/// verified; bigger ones are read twice.
pub const CAT_BUFFER: usize = 16 << 20;

/// The transaction `cat` is reading.
#[derive(Default)]
struct CatTx {
    crc: TxCrc,
    records: u64,
    start: Option<Position>,
    held: Vec<u8>,
    spilled: bool,
}

/// `rowstream backup cat DIR`: writes every row change event and schema
/// change of the backup in `dir` to `out`, one JSON object per line, in
/// write (commit) order, without the transaction-end markers. Returns the
/// number of lines written. Streams in bounded memory. A transaction whose
/// checksum fails is not written: an `InvalidData` error names it (the
/// transactions before it were written). Old backups without checksums are
/// written with a warning (logged).
pub fn cat(dir: &Path, out: &mut impl Write) -> io::Result<u64> {
    cat_bounded(dir, out, CAT_BUFFER)
}

/// [`cat`] holding at most `buffer` bytes of a transaction (tests use a
/// small one to exercise the second pass).
pub fn cat_bounded(dir: &Path, out: &mut impl Write, buffer: usize) -> io::Result<u64> {
    let mut rd = BackupReader::open(dir)?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut line = Vec::with_capacity(4096);
    let (mut n, mut checksummed, mut warned) = (0, false, false);
    let mut tx = CatTx::default();
    while let Some(kind) = rd.read_line(&mut line)? {
        line.push(b'\n');
        #[allow(clippy::expect_used)] // read_line just returned that line
        let at = rd.position_of_last(line.len()).expect("a line was read");
        if kind != LineKind::TxEnd {
            tx.start.get_or_insert(at);
            tx.crc.update(&line);
            tx.records += 1;
            if !tx.spilled {
                tx.held.extend_from_slice(&line);
                if tx.held.len() > buffer {
                    tx.spilled = true;
                    tx.held = Vec::new();
                }
            }
        } else {
            let bad = |what: String| {
                let id = parse_tx_end(&line).map_or_else(|| "?".to_string(), |m| m.id);
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "segment {} line {}: transaction {id}: {what}; it is not printed",
                        at.segment.num,
                        at.line_no + 1
                    ),
                )
            };
            if parse_tx_end(&line).is_none() {
                return Err(bad("malformed transaction-end marker".into()));
            }
            match marker_crc(&line, tx.crc) {
                None if checksummed => return Err(bad("marker without checksum".into())),
                None if !warned => {
                    tracing::warn!(dir = %dir.display(), "this backup has no checksums (written before they existed): transactions cannot be verified");
                    warned = true;
                }
                None => {}
                Some((claimed, got)) if claimed != got => {
                    return Err(bad(format!(
                        "checksum mismatch (marker {claimed:08x}, lines {got:08x})"
                    )))
                }
                Some(_) => checksummed = true,
            }
            if tx.spilled {
                // A transaction spills only after lines, which set `start`.
                #[allow(clippy::expect_used)]
                reprint(
                    dir,
                    tx.start.expect("spilled has lines"),
                    tx.records,
                    &mut out,
                )?;
            } else {
                out.write_all(&tx.held)?;
            }
            n += tx.records;
            let held = std::mem::take(&mut tx.held);
            tx = CatTx::default();
            if held.capacity() <= buffer.max(1 << 16) {
                tx.held = held;
                tx.held.clear();
            }
        }
        if line.capacity() > 1 << 24 {
            line = Vec::with_capacity(4096);
        }
    }
    out.flush()?;
    Ok(n)
}

/// The second pass over a big transaction: writes its `records` lines from
/// `start`. The segment may have been compressed since the first pass.
fn reprint(dir: &Path, start: Position, records: u64, out: &mut impl Write) -> io::Result<()> {
    let seg = start.segment;
    let (_, rd) = open_listed(dir, seg).map_err(|e| ctx(dir, seg, e))?;
    let mut rd = BufReader::with_capacity(1 << 16, rd);
    io::copy(&mut (&mut rd).take(start.offset), &mut io::sink())?;
    let mut line = Vec::with_capacity(4096);
    for _ in 0..records {
        line.clear();
        if rd.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("segment {}: shorter on the second read", seg.num),
            ));
        }
        out.write_all(&line)?;
        if line.capacity() > 1 << 24 {
            line = Vec::with_capacity(4096);
        }
    }
    Ok(())
}
