//! The replica side: connect to the server, validate it, register as a
//! replica, dump the binlog from a GTID set and decode it into change events.
//!
//! Errors are split in two: `Transient` ones (network, server restart,
//! timeouts) are retried from the last complete transaction; everything
//! else stops the stream with a message telling the operator what to do.

pub mod checks;
pub mod conn;
pub mod decode;
pub mod filter;
pub mod gtid;
pub mod jsondiff;
pub mod schema;
pub mod stream;

/// What can go wrong while reading the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Worth a reconnect with backoff: network trouble, server restart, timeout.
    #[error("{0}")]
    Transient(String),
    /// The operator must act: bad setting, purged binlog, unknown event, corrupt data.
    #[error("{0}")]
    Fatal(String),
    /// This server cannot continue the stream (lacks delivered transactions,
    /// purged what we need, other flavour): another server may.
    #[error("{0}")]
    Refused(String),
    /// Our own configuration (URL, options) is invalid.
    #[error("configuration: {0}")]
    Config(String),
}

impl SourceError {
    /// True when reconnecting and resuming may fix it.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Transient(_))
    }
}

impl From<mysql_async::Error> for SourceError {
    fn from(e: mysql_async::Error) -> Self {
        use mysql_async::Error as E;
        match e {
            // mysql_async's Io error repeats its prefix ("Input/output error: Input/output error: ...").
            E::Io(ref io) => SourceError::Transient(format!("connection: {io}")),
            E::Driver(mysql_async::DriverError::ConnectionClosed) => {
                SourceError::Transient(e.to_string())
            }
            E::Server(ref s) if s.code == 1045 || s.code == 1227 || s.code == 1142 => {
                SourceError::Fatal(format!(
                    "{e}. Grant the rowstream user the privileges in deploy/grants.sql"
                ))
            }
            E::Server(ref s) if s.code == 1053 || s.code == 1040 => {
                SourceError::Transient(e.to_string())
            }
            _ => SourceError::Fatal(e.to_string()),
        }
    }
}
