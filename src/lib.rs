//! rowstream: change data capture for MySQL and MariaDB.
//!
//! The library holds the runtime; `main.rs` only parses the command line.

pub mod alloc;
pub mod checkpoint;
pub mod cli;
pub mod config;
#[doc(hidden)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // fuzz harness: a panic is the finding
pub mod fuzzing;
pub use rowstream_api::gtid;
pub mod metrics;
pub mod pipeline;
pub mod restore;
pub mod source;
pub mod status;
pub mod verify;
