//! Why the service stopped: failed server checks, a source error, a sink
//! failure that is not worth a restart, or the checkpoint store.

use crate::source::SourceError;

/// Why `run` ended unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The server is not set up for us; each line says what to fix.
    #[error("{} check(s) failed:\n  - {}", .0.len(), .0.join("\n  - "))]
    Checks(Vec<String>),
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("sink {name}: {reason}")]
    Sink { name: String, reason: String },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}
