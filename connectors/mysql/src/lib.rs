//! rowstream's MySQL / MariaDB apply sink: applies change events to a target
//! server, each source transaction as one target transaction whose first
//! statement records the sink's progress (`<progress_schema>.progress`), so
//! a restart resumes exactly after what the target holds (exactly once).
//! Used live (`[[sinks]] type = "mysql"`) and by `rowstream restore`.
//!
//! Modules: `config` (the `[[sinks]] type = "mysql"` table), `encode`
//! (events -> SQL and parameters, filters, WRITESET keys, conflict lines;
//! pure), `client` (connection, session, progress table, error classes),
//! `apply` (one connection's statements and conflicts), `pool` (parallel
//! workers with ordered commits), `sink` (the scheduler: transactions,
//! barriers, progress, ordered acks).
//!
//! Behaviour worth knowing (see each module for its invariants):
//! - the target user needs SELECT, INSERT, UPDATE, DELETE and CREATE
//!   TEMPORARY TABLES on the applied databases, CREATE, ALTER, DROP, INDEX
//!   for the DDL it applies, and CREATE, SELECT, INSERT, UPDATE on the
//!   progress schema (created if missing); without CREATE TEMPORARY TABLES
//!   updates and deletes go row by row;
//! - runs of updates that keep their key, and of deletes, go 1000 rows per
//!   statement through temporary tables (`apply`, bulk path); a run with a
//!   conflict rolls back to a savepoint and goes row by row;
//! - an update whose after image already is the target's row, and an insert
//!   that finds the identical row, are replays, not conflicts;
//! - a table without primary key matches rows by the whole before image
//!   (`LIMIT 1`), like MySQL's own replica; VECTOR columns take no part in
//!   before-image comparisons (the server cannot compare them);
//! - DDL is not transactional: it runs alone, then its progress commits on
//!   its own; after a crash between the two, the replayed DDL failing as
//!   "already exists / duplicate / unknown to drop" right after the
//!   recorded progress counts as applied. The rename map applies to the
//!   DDL's default database (`USE`), not to names written inside it;
//! - `threads > 1` opens `threads + 1` connections (worker 0 runs barriers:
//!   transactions spanning batches and DDL).

pub mod apply;
pub mod client;
pub mod config;
pub mod encode;
pub mod pool;
pub mod sink;

pub use client::Progress;
pub use config::{MysqlSinkConfig, OnConflict};
pub use rowstream_api::ConfigError;
pub use sink::{applied, MysqlSink};
