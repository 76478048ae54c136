//! The change event model shared by the source and every sink.
//!
//! One `ChangeEvent` per row change, shaped after Debezium's envelope:
//! `before`/`after` images, `op`, the source position and the transaction
//! block. What every row of a rows event has in common (the `Source` block,
//! the table version's primary key and types, the names of the images'
//! columns) sits in one [`Shared`] behind one `Arc`, and an event holds only
//! its images' values: building and freeing a row costs one reference count
//! for all of it, not one per field (each count is an atomic operation, and
//! the six a row took were a fifth of the decoding thread's time). The
//! transaction block's id is `source.gtid`, not a copy. Strings that repeat
//! across rows events (names, GTID, file) are `Arc<str>` so building a
//! `Source` does not copy them.
//!
//! Invariant: an image's values are named, in order, by the matching list
//! in the event's `Shared` (`before_columns`, `after_columns`);
//! [`ChangeEvent::before_row`] and [`ChangeEvent::after_row`] pair them and
//! [`ChangeEvent::set_rows`] replaces both together.

use std::sync::Arc;

use crate::table::TableMeta;
use crate::value::Value;

/// Which server family produced the event; printed as `source.connector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    MySql,
    MariaDb,
}

impl Flavor {
    /// The `source.connector` string: "mysql" or "mariadb".
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::MySql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }
}

/// The kind of row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Insert: `after` only.
    Create,
    /// Update: `before` and `after`.
    Update,
    /// Delete: `before` only.
    Delete,
    /// Snapshot read: `after` only.
    Read,
}

impl Op {
    /// The Debezium `op` letter.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
        }
    }
}

pub use crate::table::Columns;

/// One row image with its column names, owned: what a producer hands to
/// [`ChangeEvent::set_rows`] and what tools build. An event keeps only the
/// values of its images; their names are in its [`Shared`].
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Column names, same length as `values`.
    pub columns: Columns,
    /// Values; a column absent from a partial image is not listed at all.
    pub values: Vec<Value>,
}

/// One row image of an event, borrowed: its values and their names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    /// Column names, same length as `values`.
    pub columns: &'a Columns,
    /// Values; a column absent from a partial image is not listed at all.
    pub values: &'a [Value],
}

impl Row {
    /// The borrowed form.
    pub fn as_row_ref(&self) -> RowRef<'_> {
        RowRef {
            columns: &self.columns,
            values: &self.values,
        }
    }
}

impl RowRef<'_> {
    /// An owned copy.
    pub fn to_row(self) -> Row {
        Row {
            columns: self.columns.clone(),
            values: self.values.to_vec(),
        }
    }
}

/// Where an event comes from (`source` block of the envelope).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// rowstream version that produced the event.
    pub version: &'static str,
    pub connector: Flavor,
    /// Logical server name chosen by the operator.
    pub name: Arc<str>,
    /// Commit time of the transaction on the source, milliseconds since the epoch.
    pub ts_ms: u64,
    /// "false" for streamed changes; "true"/"last" for snapshot reads.
    pub snapshot: Snapshot,
    pub db: Arc<str>,
    pub table: Arc<str>,
    pub server_id: u32,
    /// GTID of the transaction in the server's notation.
    pub gtid: Arc<str>,
    /// Binlog file and position of the rows event holding this row.
    pub file: Arc<str>,
    pub pos: u64,
    /// Position of the event's transaction in the server's linear history:
    /// MySQL, the number of GTIDs in the executed set once this transaction
    /// is included; MariaDB, the sum over replication domains of the last
    /// sequence number once it is included. The same for a replayed
    /// transaction (it depends only on the history up to it), strictly
    /// larger for every later transaction, and the same on a promoted
    /// replica that has the same history (MariaDB's gtid_strict_mode keeps a
    /// domain's numbers growing; a MySQL set has the same size whichever
    /// server UUIDs it holds). Snapshot reads carry the sequence of their
    /// consistent cut. Sinks use it for versions that never go backwards
    /// (Elasticsearch external versions). 0 when unknown (tools, tests).
    /// Not part of the JSON envelope.
    pub sequence: u64,
}

/// `source.snapshot` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    False,
    True,
    Last,
}

impl Snapshot {
    pub fn as_str(self) -> &'static str {
        match self {
            Snapshot::False => "false",
            Snapshot::True => "true",
            Snapshot::Last => "last",
        }
    }
}

/// The `transaction` block: the event's order in its transaction. The
/// block's `id` is the transaction's GTID, `source.gtid`: not stored twice,
/// so a row does not take another reference count for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// 1-based order of this event among all events of the transaction.
    pub total_order: u64,
    /// 1-based order of this event among the transaction's events for this table.
    pub data_collection_order: u64,
}

/// What every row change of one rows event shares (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    pub source: Source,
    /// Indices of the table's primary key columns, in key order, into the
    /// table's column order (which is the order of `before`/`after` values:
    /// the source requires full row images). Empty when the table has no
    /// primary key (or the server did not log it). Not part of the JSON
    /// envelope.
    pub primary_key: Arc<[usize]>,
    /// Column types, nullability and primary key of the table version
    /// (one `Arc` per TABLE_MAP). `None` when the producer of the event has
    /// no type information (tests, tools); the Avro encoding requires it.
    /// Not part of the JSON envelope.
    pub table: Option<Arc<TableMeta>>,
    /// Names of the before image's values, in order: the table's columns
    /// for a full image, fewer for a partial one (MySQL
    /// `binlog_row_image=minimal`), empty when the event has no before image.
    pub before_columns: Columns,
    /// Names of the after image's values (as `before_columns`).
    pub after_columns: Columns,
}

impl Shared {
    /// A `Shared` with the key and types of `table`, for full images.
    pub fn typed(source: Source, table: &Arc<TableMeta>) -> Shared {
        Shared {
            source,
            primary_key: table.primary_key.clone(),
            table: Some(table.clone()),
            before_columns: table.columns.clone(),
            after_columns: table.columns.clone(),
        }
    }
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    pub op: Op,
    /// The before image's values, named by `shared.before_columns`
    /// ([`ChangeEvent::before_row`] pairs them).
    pub before: Option<Vec<Value>>,
    /// The after image's values, named by `shared.after_columns`.
    pub after: Option<Vec<Value>>,
    /// When rowstream processed the event, milliseconds since the epoch.
    pub ts_ms: u64,
    /// The source block, key, types and image column names, shared by
    /// every row of the rows event; change one row's copy with
    /// [`ChangeEvent::shared_mut`].
    pub shared: Arc<Shared>,
    /// Index of the row within its rows event: the envelope's `source.row`.
    pub row: u32,
    pub transaction: Option<Transaction>,
    /// A streamed change that rows a snapshot delivered earlier may already
    /// contain: the snapshot read (some of) its tables in views newer than
    /// the cut the stream starts from (a lock-free cut, or a snapshot
    /// resumed after a crash), and this change's transaction is in one of
    /// those views. Its before image may not match what a sink built from
    /// the snapshot, so apply sinks make its after image hold (upsert,
    /// delete by key) instead of checking the before image. The JSON
    /// envelope carries it as a trailing `"overlap":true`, only when set.
    pub overlap: bool,
}

impl ChangeEvent {
    /// The envelope's `source` block.
    pub fn source(&self) -> &Source {
        &self.shared.source
    }

    /// The table's primary key columns (see [`Shared::primary_key`]).
    pub fn primary_key(&self) -> &[usize] {
        &self.shared.primary_key
    }

    /// The table version's types, when the producer had them.
    pub fn table(&self) -> Option<&Arc<TableMeta>> {
        self.shared.table.as_ref()
    }

    /// This event's own copy of what it shares with the other rows of its
    /// rows event (copied on the first change).
    pub fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// The before image with its column names.
    pub fn before_row(&self) -> Option<RowRef<'_>> {
        self.before.as_deref().map(|values| RowRef {
            columns: &self.shared.before_columns,
            values,
        })
    }

    /// The after image with its column names.
    pub fn after_row(&self) -> Option<RowRef<'_>> {
        self.after.as_deref().map(|values| RowRef {
            columns: &self.shared.after_columns,
            values,
        })
    }

    /// Replaces both images, names included (this event's `Shared` is
    /// copied when the names change and other rows share it).
    pub fn set_rows(&mut self, before: Option<Row>, after: Option<Row>) {
        let names = |r: &Option<Row>| r.as_ref().map(|r| r.columns.clone()).unwrap_or_default();
        let (b, a) = (names(&before), names(&after));
        if self.shared.before_columns != b || self.shared.after_columns != a {
            let shared = self.shared_mut();
            shared.before_columns = b;
            shared.after_columns = a;
        }
        self.before = before.map(|r| r.values);
        self.after = after.map(|r| r.values);
    }
}

/// A DDL statement seen in the binlog, emitted as its own record; also a
/// snapshot's `SHOW CREATE DATABASE` / `SHOW CREATE TABLE` before the rows
/// (then `source.snapshot` is "true", as on the snapshot's rows).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    /// Source position of the statement (the envelope's `source.row` is 0);
    /// `table` is empty, except the table's name on a snapshot's CREATE TABLE.
    pub source: Source,
    /// Processing time, milliseconds since the epoch.
    pub ts_ms: u64,
    /// Default database of the statement (may be empty).
    pub database: Arc<str>,
    /// The statement text as logged.
    pub ddl: String,
}

/// What the source hands to sinks, in binlog order.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Change(ChangeEvent),
    /// Boxed: rare, and as large as a `Source`, so inline it made every
    /// record (a batch's element) 80 bytes larger than a change event.
    SchemaChange(Box<SchemaChange>),
}
