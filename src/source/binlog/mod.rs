//! The binlog source: a replica's dump session (`dump`) feeding a pure event
//! state machine (`machine`: event bytes in, records and batches out) that
//! uses the event codes (`event`), the TABLE_MAP parser (`table_map`) and
//! the schema planner (`schema`), the row value decoder (`decode`, with
//! JSON in `json` and `jsondiff`) and the DDL tokenizer (`ddl`); `semisync`
//! is the replica side of semi-sync replication (header, ACK path).
//!
//! Invariant: this file only declares modules; dependencies run
//! dump -> {machine, semisync}; machine -> {decode, schema, ddl, event} ->
//! leaves, never back.

pub mod ddl;
pub mod decode;
pub mod dump;
pub mod error;
pub mod event;
pub mod json;
pub mod jsondiff;
pub mod machine;
pub mod packed;
pub mod schema;
pub mod semisync;
pub mod table_map;
pub mod text;
