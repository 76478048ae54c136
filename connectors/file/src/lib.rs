//! rowstream's file backup sink: a real-time backup of the source as
//! append-only NDJSON segment files, zstd-compressed as they are written, with
//! exactly-once contents after a crash (what lies beyond the checkpoint is
//! cut on start, then replayed). Also the reader behind `rowstream backup cat`.
//!
//! Modules: `config` (the `[[sinks]] type = "file"` table), `encode` (the
//! line format), `coverage` (the set of source transactions a backup
//! accounts for), `segment` (files, lock, writer, compressor), `recover`
//! (cutting back to the checkpoint), `sink` (the `Sink`), `reader` (reading
//! a backup back), `verify` (`rowstream backup verify`).

pub mod config;
pub mod coverage;
pub mod encode;
pub mod reader;
pub mod recover;
pub mod segment;
pub mod sink;
pub mod verify;

pub use config::FileSinkConfig;
pub use encode::{LineKind, TxCrc, TxEnd};
pub use reader::{cat, BackupReader, Entry};
pub use recover::{RecoverError, Recovered};
pub use rowstream_api::ConfigError;
pub use sink::FileSink;
pub use verify::{verify, Problem, Summary};
