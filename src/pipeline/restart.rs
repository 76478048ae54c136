//! Acting on sink failures: a transient one restarts the sinks from the
//! checkpoint after a capped, jittered exponential backoff; a fatal one
//! stops the service. A transient source error while planning or opening
//! the source (a connection cut during the start or a restart) is waited
//! out the same way, never an exit.
//!
//! Invariants:
//! - the delay doubles from [`RESTART_BASE`] up to [`RESTART_CAP`], jittered
//!   by the kit's [`rowstream_api::Backoff`] so many instances do not retry
//!   in step; it starts over once a restarted run made progress;
//! - a dropped ack is fatal unless the sink that dropped it ended with a
//!   transient error (its pending acks are dropped with it then);
//! - every restart is counted per sink (`rowstream_sink_restarts_total`).

use std::time::Duration;

use rowstream_api::{metrics, SinkError};
use tokio::sync::watch;

use super::acks::SinkFailure;
use super::sinks::Ends;
use crate::source::SourceError;

/// The first delay before a restart.
pub(crate) const RESTART_BASE: Duration = Duration::from_millis(500);
/// The longest delay between two restarts.
pub(crate) const RESTART_CAP: Duration = Duration::from_secs(30);

/// The failure to act on: `first` (the first one observed) typed by how
/// the failing sink's thread ended (`ends`, from `SinkSet::close`).
pub(crate) fn classify(first: SinkFailure, ends: &Ends) -> SinkFailure {
    if matches!(first.error, SinkError::Transient(_)) {
        return first;
    }
    let end = ends
        .iter()
        .find(|(name, _)| *name == first.sink)
        .and_then(|(_, e)| e.as_ref());
    match end {
        Some(Err(e @ SinkError::Transient(_))) => SinkFailure {
            sink: first.sink,
            error: e.clone(),
        },
        _ => first,
    }
}

/// Counts and logs a restart of the sinks after `f`; returns nothing, the
/// caller waits `delay`.
pub(crate) fn note_restart(f: &SinkFailure, delay: Duration) {
    metrics::SINK_RESTARTS.with(&f.sink).inc();
    tracing::warn!(
        sink = %f.sink,
        reason = %f.error,
        delay_ms = delay.as_millis() as u64,
        "sink failed with a transient error: restarting the sinks from the checkpoint after {delay:?}"
    );
}

/// Logs a transient source error met while (re)starting and waits `delay`
/// before the next try; false when `stop` turned true first.
pub(crate) async fn wait_for_source(
    e: &SourceError,
    delay: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tracing::warn!(
        error = %e,
        delay_ms = delay.as_millis() as u64,
        "source unreachable while starting the stream: trying again after {delay:?}"
    );
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.wait_for(|s| *s) => {
            tracing::info!("stopping while waiting for the source; the checkpoint is unchanged");
            false
        }
    }
}
