//! rowstream: change data capture for MySQL and MariaDB.
//!
//! The library holds the runtime; `main.rs` only parses the command line.

pub mod checkpoint;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub use rowstream_api::gtid;
pub mod metrics;
pub mod pipeline;
pub mod restore;
pub mod source;
pub mod status;
pub mod verify;
