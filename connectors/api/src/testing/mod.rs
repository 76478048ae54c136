//! Test helpers for sink crates (cargo feature `testing`): change-event and
//! batch builders, a fake checkpoint, throwaway test servers, and the one
//! conformance test every sink runs ([`conformance::check`]).
//!
//! Invariants kept: builders are deterministic (transaction `n` always has
//! GTID `0-1-n` and the same rows), so a test can compute what a target must
//! hold; nothing here is compiled into the service.

pub mod conformance;
pub mod daemon;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::event::{ChangeEvent, Flavor, Op, Record, Row, Shared, Snapshot, Source, Transaction};
use crate::sink::{Batch, Commit, Committed};
use crate::value::Value;

/// The GTID of test transaction `tx` (MariaDB notation).
pub fn gtid(tx: u64) -> String {
    format!("0-1-{tx}")
}

/// Row `i` of transaction `tx`: an insert into `shop.orders (id, name)`
/// with `id = tx * 1000 + i`.
pub fn event(tx: u64, i: u64) -> Record {
    let row = Row {
        columns: vec![Arc::from("id"), Arc::from("name")].into(),
        values: vec![
            Value::Int((tx * 1000 + i) as i64),
            Value::String(format!("row {tx}/{i} \"é\"").into()),
        ],
    };
    Record::Change(change(tx, i, "shop", "orders", row))
}

/// An insert of `row` into `db.table` as row `i` of transaction `tx`, the
/// first column being the primary key.
pub fn change(tx: u64, i: u64, db: &str, table: &str, row: Row) -> ChangeEvent {
    let g: Arc<str> = gtid(tx).into();
    let mut ev = ChangeEvent {
        op: Op::Create,
        before: None,
        after: None,
        ts_ms: 1_700_000_000_000,
        shared: Arc::new(Shared {
            source: Source {
                version: "0.1.0",
                connector: Flavor::MariaDb,
                name: "test".into(),
                ts_ms: 1_700_000_000_000,
                snapshot: Snapshot::False,
                db: db.into(),
                table: table.into(),
                server_id: 1,
                gtid: g.clone(),
                file: "mysql-bin.000001".into(),
                pos: 4 + tx,
                sequence: 0,
            },
            primary_key: Arc::from([0usize].as_slice()),
            table: None,
            before_columns: Default::default(),
            after_columns: Default::default(),
        }),
        row: i as u32,
        transaction: Some(Transaction {
            total_order: i + 1,
            data_collection_order: i + 1,
        }),
        overlap: false,
    };
    ev.set_rows(None, Some(row));
    ev
}

/// A batch of whole transactions `(tx number, records)` built with [`event`].
pub fn batch(seq: u64, txs: &[(u64, u64)]) -> Batch {
    batch_of(seq, txs, event)
}

/// A batch of whole transactions `(tx number, records)`, record `i` of
/// transaction `tx` being `record(tx, i)`.
pub fn batch_of(seq: u64, txs: &[(u64, u64)], record: impl Fn(u64, u64) -> Record) -> Batch {
    let mut b = Batch {
        seq,
        ..Default::default()
    };
    for &(tx, n) in txs {
        b.records.extend((0..n).map(|i| record(tx, i)));
        b.commits.push(Commit {
            end: b.records.len(),
            gtid: gtid(tx).into(),
            events: n,
        });
    }
    b
}

/// A checkpoint as a set of GTIDs, shareable and growable while a sink runs.
#[derive(Debug, Default, Clone)]
pub struct FakeCommitted {
    inner: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    set: HashSet<String>,
    exists: bool,
    /// Ids recognized though not covered (a snapshot in progress).
    known: HashSet<String>,
}

impl FakeCommitted {
    /// No checkpoint at all (first start).
    pub fn none() -> FakeCommitted {
        FakeCommitted::default()
    }

    /// A checkpoint covering exactly `gtids`.
    pub fn of<'a>(gtids: impl IntoIterator<Item = &'a str>) -> FakeCommitted {
        let c = FakeCommitted::default();
        c.add(gtids);
        c
    }

    /// Covers `gtids` too (creating the checkpoint if there was none).
    pub fn add<'a>(&self, gtids: impl IntoIterator<Item = &'a str>) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.exists = true;
        st.set.extend(gtids.into_iter().map(String::from));
    }

    /// Covers every transaction committed in `batch`.
    pub fn add_batch(&self, batch: &Batch) {
        self.add(batch.commits.iter().map(|c| &*c.gtid));
    }

    /// Recognizes `ids` without covering them (a snapshot in progress).
    pub fn recognize<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.known.extend(ids.into_iter().map(String::from));
    }
}

impl Committed for FakeCommitted {
    fn contains(&self, gtid: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set
            .contains(gtid)
    }
    fn is_empty(&self) -> bool {
        !self.inner.lock().unwrap_or_else(|e| e.into_inner()).exists
    }
    fn recognizes(&self, id: &str) -> bool {
        let st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.set.contains(id) || st.known.contains(id)
    }
}
