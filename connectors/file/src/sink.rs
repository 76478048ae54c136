//! The file backup sink: encodes batches into the open segment, makes them
//! durable with group commit, and acks them in order.
//!
//! Data path (group commit): `write` encodes a batch into an in-memory
//! buffer (records as `rowstream_api::json::write_record` encodes them, plus
//! a transaction-end marker carrying the transaction's CRC32C after each
//! transaction, see `encode`; the checksum is updated line by line as it is
//! encoded, so a transaction spanning batches is never held) and keeps
//! its ack. The buffer, its rotation points and its acks become one I/O job
//! on tokio's blocking pool: compress and append, rotate where planned,
//! hand the writer back, fsync, then ack every batch of the job from that
//! thread (or fail them all). One job appends at a time: `write` starts one
//! whenever the writer is home and fewer than [`UNSETTLED`] jobs wait for
//! their fsync, and whatever arrives meanwhile fills the next buffer, so
//! under load each job covers everything that arrived during the previous
//! one (and, on a slow disk, during the fsyncs), and encoding overlaps with
//! compression. A job's fsync overlaps with the next job's compression
//! (each acks only after the one before it), so the compressor, the
//! slowest stage of a catch-up, does not wait for the disk. `write` waits
//! only when the next buffer passes [`FLUSH_BYTES`] (backpressure);
//! `flush` waits for every job, then writes and waits for the rest.
//! Memory: two buffers of about [`FLUSH_BYTES`] plus one batch, and the
//! compressor's output buffer for one frame (about `segment::FRAME_IN`).
//!
//! Invariants kept:
//! - An ack is given only after everything up to and including its batch
//!   is written and (fsync on) fsync'd; acks are given in batch order.
//! - After the first I/O error the sink is poisoned: the failing job's acks
//!   and every later ack fail, and every call returns `SinkError::Fatal` with
//!   the path and OS error. Nothing is acked after a failed write, so a
//!   partial write can only be followed by a restart, whose recovery cuts it.
//! - Every segment begins with a start line and every closed one ends with
//!   an end line (see `encode`): the set of source transactions the backup
//!   covers before it and at its end ([`Coverage`]). Transactions that wrote
//!   no lines are found per batch from `Batch::executed`: those of a
//!   marker's own key just before it go on the marker (`skipped`, only
//!   when its number does not follow the key's last one: no work in the
//!   common case), the rest in one skipped line after the batch's last
//!   transaction. Both are written in the batch's own I/O job, so they are
//!   durable before the batch is acked and the checkpoint can cover them.
//! - `start` rebuilds the covered set from the open segment (or the last
//!   closed one), so it continues across restarts, and refuses to start
//!   when the checkpoint covers source transactions the backup does not
//!   (it lost data behind rowstream's back: resuming would leave a hole).
//!   A backup that has not recorded its place in the source's history yet
//!   (empty, snapshot chunks only, or written before coverage existed)
//!   takes the checkpoint's set as covered instead.
//! - Segments rotate only right after a transaction-end marker, when the
//!   open segment has reached `segment_max_bytes` or `segment_max_age_secs`
//!   (the age is also checked on an idle `flush` at a transaction boundary).
//! - Segments are written compressed as they are appended (zstd frames of
//!   at most 4 MiB of input per I/O job, see `segment`); a closed segment
//!   of small frames (live mode) is recompressed by a background thread
//!   (`segment::Compressor`), as is a closed plain one (older backups);
//!   until it is done they stay valid segments as they are.
//! - `start` takes an exclusive flock on the directory and cuts what lies
//!   beyond the checkpoint (`recover`): after a crash, every committed
//!   transaction is in the backup exactly once.
//!
//! Blocking I/O runs on tokio's blocking pool (`spawn_blocking`), and
//! start-up recovery under `block_in_place` on a multi-threaded runtime
//! (inline on a current-thread runtime).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rowstream_api::{Ack, AckQueue, Batch, Commit, Committed, Poison, Sink, SinkError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::FileSinkConfig;
use crate::coverage::{split_id, Coverage};
use crate::encode::{
    encode_record, encode_segment_end, encode_segment_start, encode_skipped, encode_tx_end,
    parse_segment_line, parse_tx_end, SegmentLine, TxCrc,
};
use crate::recover::{recover, Recovered};
use crate::segment::{
    form_name, lock_dir, open_listed, CompressMsg, Compressor, Form, Segment, SegmentWriter,
    SyncPoint,
};

/// Buffered bytes at which `write` waits for the running I/O job and starts
/// the next one: the largest group commit, and the bound on buffered data.
pub const FLUSH_BYTES: usize = 8 << 20;

/// Jobs not known durable yet at most: one waiting for its fsync while
/// the next compresses and appends. No third starts meanwhile: the buffer
/// keeps filling, so a slow disk gets fewer, larger fsyncs.
const UNSETTLED: usize = 2;

/// The running file backup sink, made by [`FileSink::start`] (or the
/// config's `SinkBuilder::start`). See the module docs for the contract.
#[derive(Debug)]
pub struct FileSink {
    cfg: FileSinkConfig,
    st: State,
}

/// What the sink holds between calls.
#[derive(Debug)]
struct State {
    lock: Arc<File>,
    compressor: Option<Compressor>,
    /// `None` while a job owns it.
    writer: Option<SegmentWriter>,
    /// The job appending: it sends the writer and its buffer back once its
    /// appends are written, before its fsync.
    inflight: Option<oneshot::Receiver<Appended>>,
    /// Jobs whose data is not known durable yet, oldest first: at most
    /// [`UNSETTLED`].
    durable: VecDeque<JoinHandle<Result<(), String>>>,
    /// The newest job's outcome, for the next job: acks settle in order.
    settled: Option<oneshot::Receiver<Result<(), String>>>,
    buf: Vec<u8>,
    /// Offsets in `buf` after which the segment is closed.
    rotations: Vec<usize>,
    /// Acks of the batches in `buf`.
    acks: AckQueue,
    spare: Vec<u8>,
    /// Bytes of the open segment, written or buffered since its last rotation point.
    seg_bytes: u64,
    /// When the first byte of the open segment was encoded.
    seg_opened: Instant,
    /// Records encoded since the last transaction end.
    tx_records: u64,
    /// Checksum of the bytes encoded since the last transaction end, up to
    /// `crc_upto`.
    tx_crc: TxCrc,
    /// Where in `buf` the open transaction's lines not in `tx_crc` yet
    /// begin. They are checksummed in one call, at the transaction's end or
    /// when `buf` is handed to a job: CRC32C over one long run is three
    /// times faster than line by line.
    crc_upto: usize,
    /// The source transactions the backup covers up to what was encoded.
    covered: Coverage,
    /// Covered without lines, not written yet (see [`State::flush_pending`]).
    pending: Coverage,
    /// Transactions in the open segment.
    seg_txs: u64,
    poison: Poison,
}

/// What a job sends back when its appends are written.
#[derive(Debug)]
struct Appended {
    writer: SegmentWriter,
    data: Vec<u8>,
    result: Result<(), String>,
}

impl FileSink {
    /// Validates the configuration, creates and locks the directory and
    /// cuts what lies beyond `committed` (see `recover`). Refuses, with an
    /// error for the operator, an unwritable or locked directory and a
    /// backup that does not match the checkpoint (including data without
    /// any checkpoint).
    pub async fn start(
        cfg: &FileSinkConfig,
        committed: &dyn Committed,
    ) -> Result<FileSink, SinkError> {
        cfg.validate()?;
        let multi = tokio::runtime::Handle::try_current()
            .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        let st = if multi {
            tokio::task::block_in_place(|| open(cfg, committed))?
        } else {
            open(cfg, committed)?
        };
        Ok(FileSink {
            cfg: cfg.clone(),
            st,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FileSinkConfig {
        &self.cfg
    }

    /// Blocks until every closed segment handed to the compressor so far is
    /// compressed (for tests and tools; the service never needs it).
    pub fn wait_compressed(&self) {
        if let Some(c) = &self.st.compressor {
            c.wait_idle();
        }
    }
}

fn open(cfg: &FileSinkConfig, committed: &dyn Committed) -> Result<State, SinkError> {
    let fatal =
        |msg: &dyn std::fmt::Display| SinkError::Fatal(format!("file sink {:?}: {msg}", cfg.name));
    let dir = &cfg.dir;
    let dir_err = |op: &str, path: &Path, e: io::Error| {
        fatal(&format_args!(
            "backup dir {}: {}: {op} {}: {e}",
            dir.display(),
            e.kind(),
            path.display()
        ))
    };
    fs::create_dir_all(dir).map_err(|e| dir_err("create directory", dir, e))?;
    let probe = dir.join(".write-probe");
    File::create(&probe)
        .and_then(|f| f.sync_all())
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| dir_err("create file", &probe, e))?;
    let lock = lock_dir(dir).map_err(|e| fatal(&e))?;
    let rec: Recovered = recover(dir, committed, cfg.fsync).map_err(|e| fatal(&e))?;
    let compressor = if cfg.compress {
        let c = Compressor::spawn(dir.clone(), cfg.fsync)
            .map_err(|e| fatal(&format_args!("starting the compressor thread: {e}")))?;
        if let Some(tx) = c.sender() {
            for &num in &rec.uncompressed_closed {
                let _ = tx.send(CompressMsg::Segment(num));
            }
        }
        Some(c)
    } else {
        None
    };
    let sender = compressor.as_ref().and_then(|c| c.sender());
    let writer = SegmentWriter::new(
        dir.clone(),
        rec.open_num,
        rec.open_form,
        rec.open_file_len,
        cfg.fsync,
        sender,
        cfg.compress,
    )
    .map_err(|e| fatal(&format_args!("starting the segment writer: {e}")))?;
    let seg_opened = if rec.open_len > 0 {
        let path = dir.join(form_name(rec.open_num, rec.open_form));
        fs::metadata(&path)
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .and_then(|age| Instant::now().checked_sub(age))
            .unwrap_or_else(Instant::now)
    } else {
        Instant::now()
    };
    let (found, seg_txs) = resume_coverage(dir, rec.open_num, rec.open_form, rec.open_len)
        .map_err(|e| fatal(&format_args!("reading segment coverage: {e}")))?;
    // A new segment with no coverage before it (a fresh backup, or one
    // written before coverage existed) starts with the checkpoint's set in
    // its start line instead of a skipped line: no segment end to join.
    let fresh = found.is_none() && rec.open_len == 0;
    let (covered, mut pending) = check_coverage(dir, found, committed).map_err(|e| fatal(&e))?;
    if fresh {
        pending = Default::default();
    }
    tracing::info!(
        sink = %cfg.name,
        dir = %dir.display(),
        open_segment = rec.open_num,
        open_bytes = rec.open_len,
        last_kept = rec.last_kept.as_deref().unwrap_or(""),
        "file sink started"
    );
    Ok(State {
        lock: Arc::new(lock),
        compressor,
        writer: Some(writer),
        inflight: None,
        durable: VecDeque::new(),
        settled: None,
        buf: Vec::with_capacity(FLUSH_BYTES + (1 << 20)),
        rotations: Vec::new(),
        acks: AckQueue::new(),
        spare: Vec::new(),
        seg_bytes: rec.open_len,
        seg_opened,
        tx_records: 0,
        tx_crc: TxCrc::default(),
        crc_upto: 0,
        covered,
        pending,
        seg_txs,
        poison: Poison::new(),
    })
}

/// The covered set after the open segment's contents and its transaction
/// count: read from the open segment when it has data (its start line, its
/// markers and skipped lines), else from the last closed segment (its end
/// line, or its start line and markers). `None` when the segment has no
/// coverage (written before coverage existed) or there is none. Recovery
/// has already cut the open segment to whole transactions.
fn resume_coverage(
    dir: &Path,
    open_num: u64,
    open_form: Form,
    open_len: u64,
) -> io::Result<(Option<Coverage>, u64)> {
    let (num, form, open) = if open_len > 0 {
        (open_num, open_form, true)
    } else if open_num > 1 {
        // Uncompressed first: `open_listed` falls back to the compressed form.
        (open_num - 1, Form::Plain, false)
    } else {
        return Ok((None, 0));
    };
    let seg = Segment { num, form };
    let rd = match open_listed(dir, seg) {
        Ok((_, rd)) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, 0)),
        Err(e) => return Err(e),
    };
    let mut rd = io::BufReader::with_capacity(
        1 << 16,
        io::Read::take(rd, if open { open_len } else { u64::MAX }),
    );
    let (mut cov, mut txs): (Option<Coverage>, u64) = (None, 0);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if io::BufRead::read_until(&mut rd, b'\n', &mut line)? == 0 {
            break;
        }
        let seg_line = parse_segment_line(&line).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("segment {num}: {e}"))
        })?;
        match seg_line {
            Some(SegmentLine::Start { covered, .. }) => cov = covered,
            Some(SegmentLine::End { covered, .. }) => return Ok((covered, 0)),
            Some(SegmentLine::Skipped(s)) => {
                if let Some(c) = cov.as_mut() {
                    c.union_with(&s);
                }
            }
            None => {
                if let Some(m) = parse_tx_end(&line) {
                    txs += 1;
                    if let (Some(c), Some((k, n))) = (cov.as_mut(), split_id(&m.id)) {
                        for &(a, b) in &m.skipped {
                            c.insert(k, a, b);
                        }
                        c.add(k, n);
                    }
                }
            }
        }
        if line.capacity() > 1 << 24 {
            line = Vec::with_capacity(4096);
        }
    }
    Ok((cov, if open { txs } else { 0 }))
}

/// The covered set to continue from, and what of it still needs a skipped
/// line. Refuses (the message is for the operator) when the backup has
/// recorded its place in the source's history and the checkpoint covers
/// source transactions it does not hold: the checkpoint only advances over
/// what every sink made durable, so they were lost behind rowstream's back.
fn check_coverage(
    dir: &Path,
    found: Option<Coverage>,
    committed: &dyn Committed,
) -> Result<(Coverage, Coverage), String> {
    let cp = committed.executed().map(Coverage::of_set);
    match found {
        Some(c) if c.anchored() => {
            if let Some(cp) = cp {
                let missing = cp.minus(&c);
                if !missing.is_empty() {
                    return Err(format!(
                        "the checkpoint covers source transactions that backup dir {} does not hold: {missing} \
                         (server:numbers, MariaDB servers by domain; the backup covers {}). Part of the backup was lost behind rowstream's back \
                         (a segment truncated, edited or removed); resuming would leave a hole. \
                         To fix: put the missing data back (restore the segment from a copy) and restart; \
                         or, to accept the loss, move the backup directory aside (it stays readable; \
                         `rowstream backup verify` shows the hole) and restart: a new backup begins at the \
                         checkpoint (remove the checkpoint too to begin it with a fresh snapshot)",
                        dir.display(),
                        c.source_only(),
                    ));
                }
            }
            Ok((c, Coverage::default()))
        }
        found => {
            if found.is_none() && crate::segment::segments(dir).is_ok_and(|s| !s.is_empty()) {
                tracing::warn!(dir = %dir.display(), "this backup was written before segments recorded the transactions they cover: its start is not checked against the checkpoint");
            }
            let mut c = found.unwrap_or_default();
            let pending = cp.map(|cp| cp.minus(&c)).unwrap_or_default();
            c.union_with(&pending);
            Ok((c, pending))
        }
    }
}

impl State {
    /// The poison, or the compressor's failure (which poisons too).
    fn check(&mut self) -> Result<(), SinkError> {
        if let Some(e) = self.compressor.as_ref().and_then(|c| c.error()) {
            self.poison.set(SinkError::Fatal(e));
        }
        self.poison.check()
    }

    /// Fails every ack not yet handed to a job.
    fn fail_buffered(&mut self, why: &SinkError) {
        self.acks.fail_all(why);
        self.buf.clear();
        self.crc_upto = 0;
        self.rotations.clear();
    }

    fn encode(&mut self, batch: &Batch, cfg: &FileSinkConfig) {
        self.flush_pending();
        // Once per batch: the source's executed set at its end.
        let exec = batch.executed.as_ref().map(Coverage::of_set);
        // Transactions without lines that no marker accounts for are
        // recorded after the batch's last transaction, between transactions.
        let split = batch.commits.last().map_or(0, |c| c.end);
        let mut recorded = exec.is_none();
        let mut commits = batch.commits.iter().peekable();
        for (i, rec) in batch.records.iter().enumerate() {
            while let Some(c) = commits.next_if(|c| c.end <= i) {
                self.end_tx(c, exec.as_ref(), cfg);
            }
            if !recorded && i >= split {
                recorded = true;
                self.record_skipped(exec.as_ref());
            }
            self.begin_segment();
            let before = self.buf.len();
            if self.tx_records == 0 {
                self.crc_upto = before;
            }
            encode_record(&mut self.buf, rec);
            self.seg_bytes += (self.buf.len() - before) as u64;
            self.tx_records += 1;
        }
        for c in commits {
            self.end_tx(c, exec.as_ref(), cfg);
        }
        if !recorded {
            self.record_skipped(exec.as_ref());
        }
    }

    /// Records what the source completed (`exec`) that the backup does not
    /// cover yet: transactions without lines.
    fn record_skipped(&mut self, exec: Option<&Coverage>) {
        let Some(exec) = exec else { return };
        let rest = exec.minus(&self.covered);
        if rest.is_empty() {
            return;
        }
        self.covered.union_with(&rest);
        self.pending.union_with(&rest);
        self.flush_pending();
    }

    /// Writes the pending skipped line, unless inside a transaction (then
    /// after its marker; the binlog completes no transaction while another
    /// is open, so this only waits for a snapshot chunk's or a restart's).
    fn flush_pending(&mut self) {
        if self.pending.is_empty() || self.tx_records > 0 {
            return;
        }
        self.begin_segment();
        let before = self.buf.len();
        encode_skipped(&mut self.buf, &self.pending);
        self.seg_bytes += (self.buf.len() - before) as u64;
        self.pending = Coverage::default();
    }

    fn end_tx(&mut self, c: &Commit, exec: Option<&Coverage>, cfg: &FileSinkConfig) {
        if c.events != self.tx_records {
            tracing::debug!(gtid = %c.gtid, commit_events = c.events, written = self.tx_records, "transaction size differs from the records received");
        }
        self.begin_segment();
        let id = split_id(&c.gtid);
        // Same-key transactions without lines just before this one: only
        // when the number does not follow the key's last (rare).
        let skipped = match (id, exec) {
            (Some((k, n)), Some(exec)) if n > self.covered.last(k).saturating_add(1) => {
                exec.within(k, self.covered.last(k) + 1, n - 1)
            }
            _ => Vec::new(),
        };
        self.crc_catch_up();
        let before = self.buf.len();
        encode_tx_end(
            &mut self.buf,
            &c.gtid,
            self.tx_records,
            &skipped,
            self.tx_crc,
        );
        self.seg_bytes += (self.buf.len() - before) as u64;
        self.tx_records = 0;
        self.tx_crc = TxCrc::default();
        if let Some((k, n)) = id {
            for &(a, b) in &skipped {
                self.covered.insert(k, a, b);
            }
            self.covered.add(k, n);
        }
        self.seg_txs += 1;
        self.flush_pending();
        if self.seg_bytes >= cfg.segment_max_bytes
            || self.seg_opened.elapsed() >= Duration::from_secs(cfg.segment_max_age_secs)
        {
            self.end_segment();
        }
    }

    /// Adds the open transaction's lines not checksummed yet to `tx_crc`.
    fn crc_catch_up(&mut self) {
        if self.tx_records > 0 {
            self.tx_crc.update(&self.buf[self.crc_upto..]);
        }
        self.crc_upto = self.buf.len();
    }

    /// Before the first byte of a segment: its start line. It holds what
    /// the previous segment's end line holds: pending transactions get
    /// their skipped line in this segment, so that segments join exactly.
    fn begin_segment(&mut self) {
        if self.seg_bytes == 0 {
            self.seg_opened = Instant::now();
            let before = self.buf.len();
            if self.pending.is_empty() {
                encode_segment_start(&mut self.buf, &self.covered);
            } else {
                encode_segment_start(&mut self.buf, &self.covered.minus(&self.pending));
            }
            self.seg_bytes += (self.buf.len() - before) as u64;
            self.seg_txs = 0;
        }
    }

    /// At a transaction boundary: the end line, and the segment closes there.
    fn end_segment(&mut self) {
        encode_segment_end(&mut self.buf, &self.covered, self.seg_txs);
        self.rotations.push(self.buf.len());
        self.seg_bytes = 0;
        self.seg_txs = 0;
    }

    /// Takes the writer back from the appending job (waiting for it when
    /// `wait`, else only if it is done), and the outcomes of the jobs whose
    /// fsync is done, oldest first (of every job, waiting, when `durable`).
    async fn reap(&mut self, wait: bool, durable: bool, name: &str) -> Result<(), SinkError> {
        if let Some(rx) = self.inflight.as_mut() {
            let got = if wait {
                Some(rx.await.map_err(|_| ()))
            } else {
                match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    Ok(a) => Some(Ok(a)),
                    Err(oneshot::error::TryRecvError::Closed) => Some(Err(())),
                }
            };
            if let Some(got) = got {
                self.inflight = None;
                let res = match got {
                    Ok(a) => {
                        self.writer = Some(a.writer);
                        if self.spare.capacity() < a.data.capacity() {
                            self.spare = a.data;
                        }
                        a.result
                    }
                    // The job's acks were dropped with it: they report failure.
                    Err(_) => Err(format!("file sink {name:?}: I/O task failed")),
                };
                if res.is_err() {
                    // The job fails its acks once every earlier job has
                    // settled: wait for that, so they have failed when the
                    // error is returned.
                    while !self.durable.is_empty() {
                        let _ = self.settle_oldest(name).await;
                    }
                }
                self.failed(res, name)?;
            }
        }
        while self
            .durable
            .front()
            .is_some_and(|h| durable || h.is_finished())
        {
            self.settle_oldest(name).await?;
        }
        Ok(())
    }

    /// Waits for the oldest unsettled job.
    async fn settle_oldest(&mut self, name: &str) -> Result<(), SinkError> {
        if let Some(h) = self.durable.pop_front() {
            let res = h
                .await
                .unwrap_or_else(|e| Err(format!("file sink {name:?}: I/O task failed: {e}")));
            self.failed(res, name)?;
        }
        Ok(())
    }

    /// Poisons the sink when a job failed.
    fn failed(&mut self, res: Result<(), String>, name: &str) -> Result<(), SinkError> {
        if let Err(e) = res {
            tracing::error!(sink = %name, error = %e, "file sink failed; nothing more is acknowledged");
            let first = self.poison.set(SinkError::Fatal(e));
            self.fail_buffered(&first);
            return Err(first);
        }
        Ok(())
    }

    /// Hands the buffer, its rotation points and its acks to a new I/O job.
    /// Only when [`State::may_launch`]: the writer is home.
    fn launch(&mut self, name: &str) {
        debug_assert!(self.may_launch());
        #[allow(clippy::expect_used)] // the writer is home (asserted above)
        let mut writer = self.writer.take().expect("no job running");
        self.crc_catch_up();
        let data = std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare));
        self.buf.clear();
        self.crc_upto = 0;
        let rotations = std::mem::take(&mut self.rotations);
        let acks = std::mem::take(&mut self.acks);
        let lock = self.lock.clone();
        let name = name.to_string();
        let (back, appended) = oneshot::channel();
        let (done, settled) = oneshot::channel();
        let earlier = self.settled.replace(settled);
        self.inflight = Some(appended);
        self.durable.push_back(tokio::task::spawn_blocking(move || {
            let _lock = lock; // the directory stays locked while a job may write
            let fail = |e: crate::segment::IoError| format!("file sink {name:?}: {e}");
            let point = append_job(&mut writer, &data, &rotations).map_err(fail);
            let mut data = data;
            data.clear();
            let result = point.as_ref().map(|_| ()).map_err(Clone::clone);
            // The writer goes home: the next job compresses and appends
            // while this one waits for its fsync.
            let _ = back.send(Appended {
                writer,
                data,
                result,
            });
            // Acks settle in batch order: after every earlier job's.
            let before = earlier.map_or(Ok(()), |rx| {
                rx.blocking_recv()
                    .unwrap_or_else(|_| Err(format!("file sink {name:?}: I/O task failed")))
            });
            let result = before.and_then(|()| match point? {
                Some(p) => p.sync().map_err(fail),
                None => Ok(()),
            });
            let mut acks = acks;
            match &result {
                Ok(()) => acks.settle_all(),
                Err(e) => acks.fail_all(&SinkError::Fatal(e.clone())),
            }
            let _ = done.send(result.clone());
            result
        }));
    }

    /// The writer is home and fewer than [`UNSETTLED`] jobs wait for their fsync.
    fn may_launch(&self) -> bool {
        self.inflight.is_none() && self.durable.len() < UNSETTLED
    }
}

/// Appends a job's buffer, rotating where planned; what makes the appends
/// durable is returned (see `SegmentWriter::sync_point`).
fn append_job(
    w: &mut SegmentWriter,
    data: &[u8],
    rotations: &[usize],
) -> Result<Option<SyncPoint>, crate::segment::IoError> {
    let mut at = 0;
    for &r in rotations {
        w.append(&data[at..r])?;
        w.rotate()?;
        at = r;
    }
    w.append(&data[at..])?;
    w.sync_point()
}

#[async_trait::async_trait]
impl Sink for FileSink {
    /// Encodes the batch; its ack is given by the I/O job that makes it
    /// durable (started now if the writer is free, else a later one).
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        let name = self.cfg.name.as_str();
        let st = &mut self.st;
        if let Err(e) = st.check() {
            ack.fail(e.clone());
            st.fail_buffered(&e);
            return Err(e);
        }
        st.encode(&batch, &self.cfg);
        st.acks.push(0, ack); // settled all at once by the job that writes it
        st.reap(false, false, name).await?;
        if !st.may_launch() && st.buf.len() >= FLUSH_BYTES {
            // Backpressure: the appending job, and the oldest fsync when
            // UNSETTLED jobs wait for theirs.
            st.reap(true, false, name).await?;
            while st.durable.len() >= UNSETTLED {
                st.settle_oldest(name).await?;
            }
        }
        if st.may_launch() {
            // Group commit: whatever arrives while this job compresses (and
            // while the disk is busy with fsyncs) goes into the next one.
            st.launch(name);
        }
        Ok(())
    }

    /// Writes out and fsyncs everything accepted so far, acks it, and
    /// closes the open segment if it is over age at a transaction boundary.
    async fn flush(&mut self) -> Result<(), SinkError> {
        let name = self.cfg.name.as_str();
        let st = &mut self.st;
        st.reap(true, true, name).await?;
        if let Err(e) = st.check() {
            st.fail_buffered(&e);
            return Err(e);
        }
        let aged = st.tx_records == 0
            && st.seg_bytes > 0
            && st.seg_opened.elapsed() >= Duration::from_secs(self.cfg.segment_max_age_secs);
        if aged {
            st.end_segment();
        }
        if !st.buf.is_empty() || !st.rotations.is_empty() || !st.acks.is_empty() {
            st.launch(name);
            st.reap(true, true, name).await?;
        }
        Ok(())
    }
}

rowstream_api::sink_builder!(FileSinkConfig => FileSink);
