//! `rowstream backup verify DIR`: reads every segment of a backup and
//! reports every problem it finds, then a summary.
//!
//! Checked: zstd's frame checksum where a frame has one (those the writer
//! appends have none since segment lines carry a CRC32C); every
//! transaction's CRC32C (see `encode`) and `event_count`; every segment
//! line's CRC32C (lines written before it existed have none); that every
//! line is a backup record ending in `\n`; that no segment ends inside a
//! transaction; that segment numbers are consecutive from 1 (a missing
//! segment is a gap); that the GTIDs of each server (MySQL UUID[:tag],
//! MariaDB domain) are increasing, so no transaction is there twice or out
//! of commit order; that the snapshot chunk markers of each snapshot
//! (`snapshot:<id>:<n>`) follow one another with none missing or repeated;
//! and, for segments written with start / end lines (see `encode`), that
//! each segment's start joins the previous one's end (a deleted segment is
//! named by the transactions it held), that its end line agrees with its
//! start and the transactions in it (count and last per server), and that
//! every closed segment has its end line (a closed segment cut at a
//! transaction boundary loses it).
//!
//! Coverage (segments whose start line holds the covered set, see
//! `encode`): the set is recomputed line by line from the start set, each
//! marker (its transaction and its `skipped`) and each skipped line. A
//! marker whose number skips ahead of its key's covered numbers names the
//! missing transactions at its line (lines deleted or lost); at the end line
//! the recomputed set must equal the end set, and the next segment's start
//! set must equal this end set (or, for the open segment, what it holds),
//! each difference named. Segments of older backups are checked by their
//! per-server positions as before.
//!
//! Invariants kept:
//! - Streams: memory is one line, read buffers, zstd's window and a few
//!   intervals per server, never a segment or a transaction.
//! - Never writes to the backup and takes no lock; on a live backup the
//!   newest segment may end inside a transaction being written, which is
//!   reported like a torn one.
//! - A backup written before checksums (markers without `crc32c`) is read
//!   and checked for everything else; the summary says it has no checksums.
//!   A marker without a checksum after one with a checksum is a problem.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::coverage::{split_id, Coverage};
use crate::encode::{
    advance, classify, id_key, is_segment_line, marker_crc, parse_segment_line, parse_tx_end,
    LineKind, Positions, SegmentLine, TxCrc,
};
use crate::segment::{open_listed, segments, walk_frames, Form, Segment};

/// One problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The segment's file name.
    pub segment: String,
    /// 1-based line in the (uncompressed) segment; 0 for the whole segment.
    pub line: u64,
    /// The transaction's GTID (or chunk marker) when known.
    pub gtid: Option<String>,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.segment)?;
        if self.line > 0 {
            write!(f, " line {}", self.line)?;
        }
        if let Some(g) = &self.gtid {
            write!(f, " transaction {g}")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What `verify` saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub segments: u64,
    pub transactions: u64,
    /// Row change events.
    pub rows: u64,
    pub schema_changes: u64,
    /// Transactions whose marker carries no checksum (an old backup).
    pub unchecked: u64,
    pub problems: u64,
    /// Per server (MySQL UUID[:tag], MariaDB domain), the sequence number
    /// intervals of the transactions seen; snapshot chunks under `snapshot:<id>`.
    pub covered: BTreeMap<String, Vec<(u64, u64)>>,
    /// Everything the backup covers (segments with coverage): transactions
    /// with lines, those without, and the history before it began.
    pub coverage: Coverage,
    /// `source.ts_ms` of the first and last record.
    pub first_ts_ms: Option<u64>,
    pub last_ts_ms: Option<u64>,
}

impl Summary {
    /// The transactions covered (or, for backups without coverage, seen),
    /// as `key:a-b:c-d,...` (MariaDB keys are domains).
    pub fn covered_set(&self) -> String {
        if !self.coverage.is_empty() {
            let mut all = self.coverage.clone();
            for (k, iv) in &self.covered {
                for &(a, b) in iv {
                    all.insert(k, a, b);
                }
            }
            return all.to_string();
        }
        let mut out = Vec::new();
        for (k, iv) in &self.covered {
            let mut s = k.clone();
            for &(a, b) in iv {
                if a == b {
                    s.push_str(&format!(":{a}"));
                } else {
                    s.push_str(&format!(":{a}-{b}"));
                }
            }
            out.push(s);
        }
        out.join(",")
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "segments: {}, transactions: {}, rows: {}, schema changes: {}",
            self.segments, self.transactions, self.rows, self.schema_changes
        )?;
        writeln!(f, "covered: {}", self.covered_set())?;
        let ts = |t: Option<u64>| {
            t.map_or("-".to_string(), |t| {
                format!("{} ({t})", rowstream_api::rfc3339::format_ms(t))
            })
        };
        writeln!(
            f,
            "first commit: {}, last commit: {}",
            ts(self.first_ts_ms),
            ts(self.last_ts_ms)
        )?;
        if self.unchecked > 0 {
            writeln!(
                f,
                "warning: {} transactions carry no checksums (written before checksums existed)",
                self.unchecked
            )?;
        }
        if self.problems == 0 {
            write!(f, "OK")
        } else {
            write!(f, "{} problems", self.problems)
        }
    }
}

/// `source.ts_ms` of a record line, found without parsing the whole line.
fn source_ts_ms(line: &[u8]) -> Option<u64> {
    const SRC: &[u8] = b"\"source\":{";
    const TS: &[u8] = b"\"ts_ms\":";
    let s = line.windows(SRC.len()).position(|w| w == SRC)? + SRC.len();
    let t = line[s..].windows(TS.len()).position(|w| w == TS)? + s + TS.len();
    let digits = line[t..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[t..t + digits]).ok()?.parse().ok()
}

/// The state carried across lines and segments.
#[derive(Default)]
struct Walk {
    sum: Summary,
    checksummed: bool,
    seg: String,
    line: u64,
    tx_crc: TxCrc,
    tx_records: u64,
    tx_lines: u64,
    /// This segment's start line, and its start advanced by its markers.
    seg_start: Option<Positions>,
    seen: Positions,
    seg_txs: u64,
    /// This segment's end line (and its covered set).
    seg_end: Option<(Positions, u64)>,
    seg_end_cov: Option<Coverage>,
    /// The previous segment's end line (`None`: it had none, or no previous,
    /// or it could not be read to its end).
    prev_end: Option<Positions>,
    /// `prev_end`, taken when this segment began: what its start must join.
    join: Option<Positions>,
    /// Coverage recomputed through this segment (`None`: its start line has
    /// none, an older backup).
    cov: Option<Coverage>,
    /// The previous segment's end set (or what it held, when it had no end
    /// line), and that taken when this segment began.
    prev_cov: Option<Coverage>,
    join_cov: Option<Coverage>,
}

/// `key:a-b` for every server whose position moved from `from` to `to`
/// (what lies between), `key:a..b repeated` where it went back.
fn between(from: &Positions, to: &Positions) -> (Vec<String>, Vec<String>) {
    let (mut missing, mut back) = (Vec::new(), Vec::new());
    for (k, &b) in to {
        let a = from.get(k).copied().unwrap_or(0);
        match b.cmp(&a) {
            std::cmp::Ordering::Greater if b == a + 1 => missing.push(format!("{k}:{b}")),
            std::cmp::Ordering::Greater => missing.push(format!("{k}:{}-{b}", a + 1)),
            std::cmp::Ordering::Less => back.push(format!("{k}:{b} after {k}:{a}")),
            std::cmp::Ordering::Equal => {}
        }
    }
    for (k, &a) in from {
        if !to.contains_key(k) {
            back.push(format!("{k} (was at {a}) no longer listed"));
        }
    }
    (missing, back)
}

impl Walk {
    fn problem(
        &mut self,
        line: u64,
        gtid: Option<&str>,
        what: String,
        out: &mut dyn FnMut(&Problem),
    ) {
        self.sum.problems += 1;
        out(&Problem {
            segment: self.seg.clone(),
            line,
            gtid: gtid.map(str::to_string),
            what,
        });
    }

    fn reset_tx(&mut self) {
        self.tx_crc = TxCrc::default();
        self.tx_records = 0;
        self.tx_lines = 0;
    }

    /// A segment start or end line.
    fn segment_line(&mut self, raw: &[u8], out: &mut dyn FnMut(&Problem)) {
        let line = self.line;
        let parsed = match parse_segment_line(raw) {
            Ok(p) => p,
            Err(what) => return self.problem(line, None, what, out),
        };
        match parsed {
            Some(SegmentLine::Start { pos: s, covered }) if line == 1 => {
                let join_cov = self.join_cov.take();
                if let (Some(prev), Some(c)) = (&join_cov, &covered) {
                    self.join_covered(prev, c, out);
                    self.join = None;
                }
                if let Some(c) = &covered {
                    self.sum.coverage.union_with(c);
                }
                self.cov = covered;
                if let Some(prev) = self.join.take() {
                    let (missing, back) = between(&prev, &s);
                    // From an older segment (positions of transactions with
                    // lines only) to one with coverage (filtered ones and
                    // history included): only going back is a problem.
                    if !missing.is_empty() && self.cov.is_none() {
                        let what = format!(
                            "does not join the previous segment's end: transactions {} are missing (those not filtered out)",
                            missing.join(",")
                        );
                        self.problem(line, None, what, out);
                    }
                    if !back.is_empty() {
                        let what = format!(
                            "starts before the previous segment's end ({}): transactions repeated",
                            back.join(", ")
                        );
                        self.problem(line, None, what, out);
                    }
                }
                self.seen = s.clone();
                self.seg_start = Some(s);
            }
            Some(SegmentLine::End {
                end,
                covered,
                transactions,
            }) if self.tx_lines == 0 => {
                self.seg_end = Some((end, transactions));
                self.seg_end_cov = covered;
            }
            Some(SegmentLine::Skipped(sk)) if self.tx_lines == 0 && self.seg_end.is_none() => {
                if let Some(c) = self.cov.as_mut() {
                    c.union_with(&sk);
                }
                self.sum.coverage.union_with(&sk);
            }
            Some(_) => self.problem(line, None, "segment line out of place".into(), out),
            // `line` only calls this for lines that start like one.
            None => self.problem(line, None, "malformed segment line".into(), out),
        }
    }

    /// After a segment's last line: its end line against what it held.
    fn segment_done(&mut self, last: bool, out: &mut dyn FnMut(&Problem)) {
        let line = self.line;
        let end_cov = self.seg_end_cov.take();
        // An older segment the current sink closed: its end set includes
        // filtered transactions and history its markers do not show.
        let end_had_cov = end_cov.is_some();
        if let (Some(cov), Some(end)) = (&self.cov, &end_cov) {
            let (missing, extra) = (end.minus(cov), cov.minus(end));
            if !missing.is_empty() {
                let what = format!(
                    "end line counts transactions {missing} as covered, but no line of the segment holds them: missing"
                );
                self.problem(line, None, what, out);
            }
            if !extra.is_empty() {
                let what =
                    format!("the segment holds transactions {extra} its end line does not count");
                self.problem(line, None, what, out);
            }
        }
        self.prev_cov = match end_cov {
            Some(c) => Some(c),
            None if self.seg_end.is_none() => self.cov.take(),
            None => None,
        };
        match self.seg_end.take() {
            Some((end, n)) => {
                if n != self.seg_txs {
                    let what = format!(
                        "end line counts {n} transactions, the segment holds {}",
                        self.seg_txs
                    );
                    self.problem(line, None, what, out);
                }
                if self.seg_start.is_some() && !end_had_cov && end != self.seen {
                    let (missing, back) = between(&self.seen, &end);
                    let what = format!(
                        "end line does not match the segment's transactions: missing {}{}",
                        if missing.is_empty() {
                            "-".into()
                        } else {
                            missing.join(",")
                        },
                        if back.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", back.join(", "))
                        }
                    );
                    self.problem(line, None, what, out);
                }
                self.prev_end = Some(end);
            }
            None => {
                if self.seg_start.is_some() && !last {
                    let what =
                        "closed segment has no end line: transactions at its end may be missing"
                            .into();
                    self.problem(line, None, what, out);
                }
                // What it does hold: the next start names what is missing.
                self.prev_end = self.seg_start.is_some().then(|| self.seen.clone());
            }
        }
    }

    /// One complete line (with its `\n`).
    fn line(&mut self, raw: &[u8], out: &mut dyn FnMut(&Problem)) {
        if is_segment_line(raw) {
            return self.segment_line(raw, out);
        }
        if self.seg_end.is_some() {
            self.problem(
                self.line,
                None,
                "line after the segment's end line".into(),
                out,
            );
        }
        match classify(raw) {
            Some(LineKind::TxEnd) => self.marker(raw, out),
            kind => {
                if kind.is_none() {
                    self.problem(self.line, None, "not a backup record".into(), out);
                }
                if kind == Some(LineKind::Change) {
                    self.sum.rows += 1;
                    self.tx_records += 1;
                } else if kind == Some(LineKind::SchemaChange) {
                    self.sum.schema_changes += 1;
                    self.tx_records += 1;
                }
                if let Some(ts) = kind.and_then(|_| source_ts_ms(raw)) {
                    self.sum.first_ts_ms.get_or_insert(ts);
                    self.sum.last_ts_ms = Some(ts);
                }
                self.tx_crc.update(raw);
                self.tx_lines += 1;
            }
        }
    }

    /// A segment start set against the previous segment's end set.
    fn join_covered(&mut self, prev: &Coverage, start: &Coverage, out: &mut dyn FnMut(&Problem)) {
        let missing = start.minus(prev);
        if !missing.is_empty() {
            let what = format!(
                "does not join the previous segment's end: transactions {missing} are missing (covered by this start line, held by no earlier segment)"
            );
            self.problem(self.line, None, what, out);
        }
        let back = prev.minus(start);
        if !back.is_empty() {
            let what = format!(
                "starts without transactions {back} that the previous segment's end covers"
            );
            self.problem(self.line, None, what, out);
        }
    }

    /// A marker's transaction (and its `skipped`) into the recomputed set;
    /// a number that skips ahead of its key's covered ones is a gap.
    fn cover(
        &mut self,
        id: &str,
        skipped: &[(u64, u64)],
        line: u64,
        out: &mut dyn FnMut(&Problem),
    ) {
        let Some((k, n)) = split_id(id) else { return };
        self.sum.coverage.add(k, n);
        for &(a, b) in skipped {
            self.sum.coverage.insert(k, a, b);
        }
        let Some(cov) = self.cov.as_mut() else { return };
        let prev = cov.last(k);
        let mut missing = Coverage::default();
        if n > prev.saturating_add(1) {
            // Rare: only when the number skips ahead. What `skipped` does not
            // explain is missing; counted once (not again at the end line).
            missing.insert(k, prev + 1, n - 1);
            let mut explained = Coverage::default();
            for &(a, b) in skipped {
                explained.insert(k, a, b);
            }
            missing = missing.minus(&explained);
            cov.insert(k, prev + 1, n - 1);
        }
        for &(a, b) in skipped {
            cov.insert(k, a, b);
        }
        cov.add(k, n);
        if !missing.is_empty() {
            let what = format!(
                "transactions {missing} are missing before this one: the backup holds neither their lines nor a record that they wrote none (deleted or lost)"
            );
            self.problem(line, Some(id), what, out);
        }
    }

    fn marker(&mut self, raw: &[u8], out: &mut dyn FnMut(&Problem)) {
        let line = self.line;
        let Some(m) = parse_tx_end(raw) else {
            self.problem(line, None, "malformed transaction-end marker".into(), out);
            self.reset_tx();
            return;
        };
        let g = Some(m.id.as_str());
        self.sum.transactions += 1;
        self.cover(&m.id, &m.skipped, line, out);
        advance(&mut self.seen, &m.id);
        self.seg_txs += 1;
        match marker_crc(raw, self.tx_crc) {
            None if self.checksummed => self.problem(
                line,
                g,
                "marker without checksum in a checksummed backup".into(),
                out,
            ),
            None => self.sum.unchecked += 1,
            Some((claimed, got)) => {
                self.checksummed = true;
                if claimed != got {
                    let what = format!(
                        "checksum mismatch: marker says {claimed:08x}, the {} lines give {got:08x}",
                        self.tx_lines
                    );
                    self.problem(line, g, what, out);
                }
            }
        }
        if m.event_count != self.tx_records {
            let what = format!(
                "event_count {} but {} records precede the marker",
                m.event_count, self.tx_records
            );
            self.problem(line, g, what, out);
        }
        self.order(&m.id, line, out);
        self.reset_tx();
    }

    /// GTIDs increase per server; snapshot chunks follow one another.
    fn order(&mut self, id: &str, line: u64, out: &mut dyn FnMut(&Problem)) {
        let Some((key, n)) = id_key(id) else {
            self.problem(line, Some(id), "unrecognized transaction id".into(), out);
            return;
        };
        let chunk = key.starts_with("snapshot:");
        let iv = self.sum.covered.entry(key).or_default();
        let what = match iv.last_mut() {
            Some(last) if n <= last.1 => Some(format!(
                "repeated or out of commit order (after {})",
                last.1
            )),
            Some(last) if n == last.1 + 1 => {
                last.1 = n;
                None
            }
            Some(last) => {
                let what =
                    chunk.then(|| format!("snapshot chunks {}..{} missing", last.1 + 1, n - 1));
                iv.push((n, n));
                what
            }
            None => {
                iv.push((n, n));
                None
            }
        };
        if let Some(w) = what {
            self.problem(line, Some(id), w, out);
        }
    }

    /// Reads one segment; stops at the first read error (zstd's frame
    /// structure or checksum).
    fn segment(&mut self, dir: &Path, seg: Segment, last: bool, out: &mut dyn FnMut(&Problem)) {
        self.seg = seg.file_name();
        self.line = 0;
        self.reset_tx();
        self.seg_start = None;
        self.join = self.prev_end.take();
        self.join_cov = self.prev_cov.take();
        self.cov = None;
        self.seg_end_cov = None;
        self.seen = Positions::new();
        self.seg_txs = 0;
        self.seg_end = None;
        self.sum.segments += 1;
        let (opened, rd) = match open_listed(dir, seg) {
            Ok((seg, rd)) => {
                self.seg = seg.file_name();
                (seg, rd)
            }
            Err(e) => return self.problem(0, None, format!("cannot open: {e}"), out),
        };
        let mut rd = BufReader::with_capacity(1 << 16, rd);
        let mut raw = Vec::with_capacity(4096);
        loop {
            raw.clear();
            match rd.read_until(b'\n', &mut raw) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let what = format!("unreadable from here on (corrupt or truncated): {e}");
                    return self.problem(self.line + 1, None, what, out);
                }
            }
            self.line += 1;
            if raw.last() != Some(&b'\n') {
                let what = "truncated line at the end of the segment (torn write)".into();
                return self.problem(self.line, None, what, out);
            }
            self.line(&raw, out);
            if raw.capacity() > 1 << 24 {
                raw = Vec::with_capacity(4096);
            }
        }
        if opened.form == Form::ZstOpen {
            // Readers leave out a torn frame; verify names it.
            let tail = std::fs::File::open(opened.path(dir)).and_then(|f| walk_frames(&f, 0));
            match tail {
                Ok(w) if w.tail > 0 => {
                    let what = format!(
                        "segment ends with {} bytes that are not a complete zstd frame (torn write, or still being written)",
                        w.tail
                    );
                    self.problem(self.line, None, what, out);
                }
                Ok(_) => {}
                Err(e) => self.problem(0, None, format!("cannot read: {e}"), out),
            }
        }
        if self.tx_lines > 0 {
            let what = format!(
                "segment ends inside a transaction ({} lines after the last marker; torn, or still being written)",
                self.tx_lines
            );
            self.problem(self.line, None, what, out);
        }
        self.segment_done(last, out);
    }
}

/// Verifies the backup in `dir`, calling `out` for every problem as it is
/// found. `Err` only when the directory cannot be listed.
pub fn verify(dir: &Path, out: &mut dyn FnMut(&Problem)) -> io::Result<Summary> {
    crate::reader::require_dir(dir)?;
    let mut w = Walk::default();
    let mut expect = 1;
    let all = segments(dir)?;
    let n = all.len();
    for (i, seg) in all.into_iter().enumerate() {
        if seg.num != expect {
            w.seg = seg.file_name();
            let what = format!("gap: segments {expect}..{} are missing", seg.num - 1);
            w.problem(0, None, what, out);
        }
        expect = seg.num + 1;
        w.segment(dir, seg, i + 1 == n, out);
    }
    Ok(w.sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys() {
        assert_eq!(id_key("3e11:tag:23"), Some(("3e11:tag".into(), 23)));
        assert_eq!(id_key("0-1-42"), Some(("0".into(), 42)));
        assert_eq!(id_key("snapshot:7:3"), Some(("snapshot:7".into(), 3)));
        assert_eq!(id_key("junk"), None);
    }

    #[test]
    fn ts_of_record() {
        let l = b"{\"before\":null,\"after\":{},\"op\":\"c\",\"ts_ms\":5,\"source\":{\"a\":1,\"ts_ms\":1700}}\n";
        assert_eq!(source_ts_ms(l), Some(1700));
    }
}
