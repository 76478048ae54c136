//! Walking a backup for `restore`: every transaction in commit order, its
//! checksum verified, cut at the point the user chose.
//!
//! A transaction up to [`HOLD_BYTES`] ([`HOLD_SNAPSHOT_BYTES`] for a
//! snapshot chunk, whose id is needed to skip it on a rerun) is held (parsed) until its marker and
//! handed out only once its checksum and the stop rules passed, so a
//! corrupt or excluded small transaction is never applied at all, and DDL
//! (never transactional on the target) is applied only when verified. A
//! bigger transaction is streamed: its records go out as they are read and
//! the decision comes at its marker as a [`Step::Stop`] instead of a
//! [`Step::Commit`], so the caller rolls back what it applied of it (the
//! apply sink never commits a transaction without its commit). A schema
//! change after a transaction started streaming is refused for that reason.
//!
//! Stop rules (decided at a transaction's marker): `--until G` commits G
//! and stops; `--before G` stops without G; `--until-time T` stops before
//! the first transaction whose source commit time is after T. A GTID that
//! is not in the backup (it touched no captured table) is detected when a
//! later transaction of the same server (MySQL: same uuid and tag, higher
//! number; MariaDB: same domain, higher sequence) arrives: the walk stops
//! before that one, which is the state at G.

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use rowstream_api::gtid::Gtid;
use rowstream_api::parse::{read_line, Line};
use rowstream_file::encode::{marker_crc, parse_tx_end};
use rowstream_file::{BackupReader, LineKind, TxCrc};

/// Transactions up to this many bytes of lines are held until verified.
pub const HOLD_BYTES: usize = 8 << 20;
/// The same for snapshot chunks (10,000 rows by default: a few MB).
pub const HOLD_SNAPSHOT_BYTES: usize = 64 << 20;

/// Where the restore stops.
#[derive(Debug, Clone, PartialEq)]
pub enum StopAt {
    /// The end of the backup.
    End,
    /// After the transaction with this GTID (`--until`).
    Until(String),
    /// Just before the transaction with this GTID (`--before`).
    Before(String),
    /// Before the first transaction committed after this time, ms (`--until-time`).
    Time(u64),
}

/// Why the walk ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// Every transaction of the backup was handed out.
    End,
    /// `--until G`: G was the last transaction handed out.
    Reached,
    /// `--before G` / `--until-time`: the transaction `next` was not handed
    /// out (nor anything after it).
    Before { next: String },
    /// The GTID asked for is not in the backup; `next`, the first
    /// transaction after it, was not handed out.
    NotInBackup { next: String },
}

/// One step of the walk.
// Nearly every step is a `Record`: boxing it would add an allocation per row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step {
    /// A held (verified) transaction starts; its records follow. Streamed
    /// transactions have no `Begin` (their id is known only at the end).
    Begin { id: String },
    /// A record of the current transaction.
    Record(Line),
    /// The current transaction is complete, verified and inside the stop
    /// point: commit it.
    Commit { id: String, events: u64 },
    /// The walk is over; records handed out since the last commit must be
    /// rolled back.
    Stop(Stopped),
}

/// The transaction being read.
#[derive(Default)]
struct Tx {
    crc: TxCrc,
    lines: u64,
    bytes: usize,
    held: Vec<Line>,
    streaming: bool,
    /// Source commit time and connector flavour, from the first record.
    first: Option<(u64, rowstream_api::Flavor)>,
    /// The first record is a snapshot read or a snapshot's schema record.
    snapshot: bool,
    /// `source.gtid` of the first record (binlog transactions; not chunks).
    gtid: Option<String>,
}

/// The backup walk (see the module docs).
pub struct Replay {
    rd: BackupReader,
    stop: StopAt,
    tx: Tx,
    out: VecDeque<Step>,
    line: Vec<u8>,
    checksummed: bool,
    warned: bool,
    done: bool,
}

impl Replay {
    pub fn open(dir: &Path, stop: StopAt) -> io::Result<Replay> {
        Ok(Replay {
            rd: BackupReader::open(dir)?,
            stop,
            tx: Tx::default(),
            out: VecDeque::new(),
            line: Vec::with_capacity(4096),
            checksummed: false,
            warned: false,
            done: false,
        })
    }

    /// How much of the backup has been read, 0.0 to 1.0.
    pub fn done_fraction(&self) -> f64 {
        self.rd.done_fraction()
    }

    /// The next step; an error (corrupt line or checksum) ends the walk and
    /// the open transaction must be rolled back.
    pub fn next_step(&mut self) -> io::Result<Step> {
        loop {
            if let Some(s) = self.out.pop_front() {
                if matches!(s, Step::Stop(_)) {
                    self.done = true;
                    self.out.clear();
                }
                return Ok(s);
            }
            if self.done {
                return Ok(Step::Stop(Stopped::End));
            }
            let Some(kind) = self.rd.read_line(&mut self.line)? else {
                if self.tx.lines > 0 {
                    return Err(self.bad("the backup ends inside a transaction".into()));
                }
                self.out.push_back(Step::Stop(Stopped::End));
                continue;
            };
            self.line.push(b'\n');
            if kind == LineKind::TxEnd {
                self.end_tx()?;
            } else {
                self.record(kind)?;
            }
        }
    }

    fn bad(&self, what: String) -> io::Error {
        let at = self.rd.position_of_last(self.line.len());
        let place = at.map_or(String::new(), |p| {
            format!("segment {} line {}: ", p.segment.num, p.line_no + 1)
        });
        io::Error::new(io::ErrorKind::InvalidData, format!("{place}{what}"))
    }

    fn record(&mut self, kind: LineKind) -> io::Result<()> {
        self.tx.crc.update(&self.line);
        self.tx.lines += 1;
        self.tx.bytes += self.line.len();
        let body = &self.line[..self.line.len() - 1];
        let rec = read_line(body).map_err(|e| self.bad(format!("unreadable record: {e}")))?;
        if self.tx.first.is_none() {
            let src = match &rec {
                Line::Change(c) => &c.source,
                Line::SchemaChange(s) => &s.source,
            };
            self.tx.first = Some((src.ts_ms, src.connector));
            self.tx.snapshot = src.snapshot != rowstream_api::Snapshot::False;
            self.tx.gtid = (!src.gtid.is_empty()).then(|| src.gtid.to_string());
        }
        if self.tx.streaming {
            if kind == LineKind::SchemaChange {
                return Err(self.bad(
                    "a schema change after more than 8 MB of row changes in one transaction: \
                     it cannot be applied before its transaction is verified"
                        .into(),
                ));
            }
            self.out.push_back(Step::Record(rec));
            return Ok(());
        }
        self.tx.held.push(rec);
        let hold = if self.tx.snapshot {
            HOLD_SNAPSHOT_BYTES
        } else {
            HOLD_BYTES
        };
        if self.tx.bytes > hold {
            // A binlog transaction names itself on every record: the stop
            // point is decided before streaming any of it (a snapshot chunk
            // is known only by its marker).
            let early = self
                .tx
                .gtid
                .as_deref()
                .and_then(|g| self.stops_before(g, self.tx.first));
            if let Some(stopped) = early {
                self.tx = Tx::default();
                self.out.push_back(Step::Stop(stopped));
                return Ok(());
            }
            self.tx.streaming = true;
            self.out.extend(self.tx.held.drain(..).map(Step::Record));
        }
        Ok(())
    }

    fn end_tx(&mut self) -> io::Result<()> {
        let tx = std::mem::take(&mut self.tx);
        let Some(end) = parse_tx_end(&self.line) else {
            return Err(self.bad("malformed transaction-end marker".into()));
        };
        let id = end.id;
        match marker_crc(&self.line, tx.crc) {
            None if self.checksummed => {
                return Err(self.bad(format!("transaction {id}: marker without checksum")))
            }
            None if !self.warned => {
                tracing::warn!("this backup has no checksums (written before they existed): transactions cannot be verified");
                self.warned = true;
            }
            None => {}
            Some((claimed, got)) if claimed != got => {
                return Err(self.bad(format!(
                    "transaction {id}: checksum mismatch (marker {claimed:08x}, lines {got:08x}); \
                     it is not applied"
                )))
            }
            Some(_) => self.checksummed = true,
        }
        if end.event_count != tx.lines {
            return Err(self.bad(format!(
                "transaction {id}: the marker counts {} records, the backup holds {}",
                end.event_count, tx.lines
            )));
        }
        if let Some(stopped) = self.stops_before(&id, tx.first) {
            self.out.push_back(Step::Stop(stopped));
            return Ok(());
        }
        if !tx.streaming {
            self.out.push_back(Step::Begin { id: id.clone() });
        }
        self.out.extend(tx.held.into_iter().map(Step::Record));
        let reached = matches!(&self.stop, StopAt::Until(g) if *g == id);
        self.out.push_back(Step::Commit {
            id,
            events: end.event_count,
        });
        if reached {
            self.out.push_back(Step::Stop(Stopped::Reached));
        }
        Ok(())
    }

    /// `Some` when transaction `id` must not be applied.
    fn stops_before(
        &self,
        id: &str,
        first: Option<(u64, rowstream_api::Flavor)>,
    ) -> Option<Stopped> {
        let next = || id.to_string();
        match &self.stop {
            StopAt::End => None,
            StopAt::Time(t) => match first {
                Some((ts, _)) if ts > *t => Some(Stopped::Before { next: next() }),
                _ => None,
            },
            StopAt::Before(g) if g == id => Some(Stopped::Before { next: next() }),
            StopAt::Before(g) | StopAt::Until(g) => {
                let flavor = first?.1;
                passed(flavor, g, id).then(|| Stopped::NotInBackup { next: next() })
            }
        }
    }
}

/// True when `id` is a later transaction of the same origin as `target`
/// (so `target` will not come any more).
fn passed(flavor: rowstream_api::Flavor, target: &str, id: &str) -> bool {
    match (Gtid::parse(flavor, target), Gtid::parse(flavor, id)) {
        (Ok(Gtid::MySql(t)), Ok(Gtid::MySql(x))) => x.tsid == t.tsid && x.gno > t.gno,
        (Ok(Gtid::MariaDb(t)), Ok(Gtid::MariaDb(x))) => {
            x.domain_id == t.domain_id && x.seq_no > t.seq_no
        }
        _ => false,
    }
}

/// Steps sent at once from the walking thread.
const STEPS_PER_SEND: usize = 256;

/// The walk on its own thread, so reading, checking and parsing the backup
/// overlap the target's work; steps arrive in order, a bounded number at a
/// time (at most 8 sends of [`STEPS_PER_SEND`] ahead).
pub struct Walk {
    rx: tokio::sync::mpsc::Receiver<(Vec<io::Result<Step>>, f64)>,
    buf: VecDeque<io::Result<Step>>,
    fraction: f64,
}

impl Walk {
    /// Starts walking `replay` on a new thread.
    pub fn spawn(mut replay: Replay) -> io::Result<Walk> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        std::thread::Builder::new()
            .name("restore-walk".into())
            .spawn(move || loop {
                let mut steps = Vec::with_capacity(STEPS_PER_SEND);
                let mut end = false;
                while steps.len() < STEPS_PER_SEND && !end {
                    let s = replay.next_step();
                    end = matches!(s, Err(_) | Ok(Step::Stop(_)));
                    steps.push(s);
                }
                if tx.blocking_send((steps, replay.done_fraction())).is_err() || end {
                    return;
                }
            })?;
        Ok(Walk {
            rx,
            buf: VecDeque::new(),
            fraction: 0.0,
        })
    }

    /// The next step (see [`Replay::next_step`]).
    pub async fn next_step(&mut self) -> io::Result<Step> {
        loop {
            if let Some(s) = self.buf.pop_front() {
                return s;
            }
            match self.rx.recv().await {
                Some((steps, fraction)) => {
                    self.buf.extend(steps);
                    self.fraction = fraction;
                }
                None => return Err(io::Error::other("the backup reader thread stopped")),
            }
        }
    }

    /// How much of the backup has been read, 0.0 to 1.0.
    pub fn done_fraction(&self) -> f64 {
        self.fraction
    }
}
