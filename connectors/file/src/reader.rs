//! Reading a backup: every line in write order across compressed and open
//! segments (`BackupReader`), and `backup cat` (`cat`).
//!
//! Invariants kept:
//! - Streams: memory is one line plus read buffers and zstd's window, never
//!   a segment or a transaction.
//! - Only complete transactions are returned: the newest segment, when it is
//!   the open (uncompressed) one, is read only up to the end of its last
//!   complete transaction-end marker, so a transaction still being written
//!   (or torn by a crash) is not shown. Closed segments always end at a
//!   marker.
//! - The reader takes no lock and may run beside a live sink: a segment
//!   compressed between listing and opening is found under its new name.
//!   On a backup that crashed and has not been restarted yet, transactions
//!   beyond the checkpoint that a restart would cut are still shown.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::encode::{classify, parse_tx_end, LineKind};
use crate::segment::{open_segment, segments, Segment};

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
    line_no: u64,
}

impl BackupReader {
    /// Lists the segments of `dir` (they are opened one at a time as reading
    /// proceeds).
    pub fn open(dir: &Path) -> io::Result<BackupReader> {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "backup dir {} does not exist or is not a directory",
                    dir.display()
                ),
            ));
        }
        let rest: VecDeque<Segment> = segments(dir)?.into();
        Ok(BackupReader {
            dir: dir.to_path_buf(),
            newest: rest.back().map(|s| s.num),
            rest,
            cur: None,
            line_no: 0,
        })
    }

    fn open_next(&mut self) -> io::Result<bool> {
        let Some(seg) = self.rest.pop_front() else {
            return Ok(false);
        };
        // The writer may have compressed it since we listed.
        let (seg, rd) = match open_segment(&self.dir, seg) {
            Ok(rd) => (seg, rd),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !seg.compressed => {
                let z = Segment {
                    num: seg.num,
                    compressed: true,
                };
                (
                    z,
                    open_segment(&self.dir, z).map_err(|e| ctx(&self.dir, z, e))?,
                )
            }
            Err(e) => return Err(ctx(&self.dir, seg, e)),
        };
        let rd: Box<dyn Read + Send> = if !seg.compressed && Some(seg.num) == self.newest {
            let limit =
                complete_prefix(&seg.path(&self.dir)).map_err(|e| ctx(&self.dir, seg, e))?;
            Box::new(rd.take(limit))
        } else {
            rd
        };
        self.cur = Some((seg.num, Box::new(BufReader::with_capacity(1 << 16, rd))));
        self.line_no = 0;
        Ok(true)
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
            let (num, rd) = self.cur.as_mut().expect("opened above");
            let num = *num;
            buf.clear();
            if rd.read_until(b'\n', buf)? == 0 {
                self.cur = None;
                continue;
            }
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

/// Length of the part of an uncompressed segment that ends with its last
/// complete transaction-end marker (0 if it has none).
fn complete_prefix(path: &Path) -> io::Result<u64> {
    let mut rd = BufReader::with_capacity(1 << 16, File::open(path)?);
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

/// `rowstream backup cat DIR`: writes every row change event and schema
/// change of the backup in `dir` to `out`, one JSON object per line, in
/// write (commit) order, without the transaction-end markers. Returns the
/// number of lines written. Streams in bounded memory.
pub fn cat(dir: &Path, out: &mut impl Write) -> io::Result<u64> {
    let mut rd = BackupReader::open(dir)?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut line = Vec::with_capacity(4096);
    let mut n = 0;
    while let Some(kind) = rd.read_line(&mut line)? {
        if kind == LineKind::TxEnd {
            continue;
        }
        line.push(b'\n');
        out.write_all(&line)?;
        n += 1;
        if line.capacity() > 1 << 24 {
            line = Vec::with_capacity(4096);
        }
    }
    out.flush()?;
    Ok(n)
}
