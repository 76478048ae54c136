//! The sink kit: the machinery every sink needs and none should rewrite.
//!
//! - [`AckQueue`]: acks waiting for their batch to become durable, settled
//!   in batch order up to a position, or failed all at once;
//! - [`Poison`]: "the first failure stops this sink": once set, every later
//!   write and ack fails with that same error;
//! - [`Backoff`]: capped exponential backoff with jitter, for retries and
//!   reconnects;
//! - [`TableTemplate`]: `{name}`, `{db}`, `{table}` templates (topics,
//!   indices): parse, validate, render;
//! - [`TableFilter`]: `db.table` include/exclude globs (source and apply sink);
//! - [`ColumnRules`]: column exclusion and masking, applied by the source;
//! - [`with_causes`]: an error's message with its chain of causes;
//! - [`read_ca_pem`]: a private CA's PEM file for a sink's TLS client;
//! - [`ConfigError`](crate::ConfigError) lives beside it in `config_error`.
//!
//! Nothing here does network I/O or knows a target (`read_ca_pem` reads a
//! file named in the config, at start); each piece is unit-tested here
//! once, so a sink's own tests cover only what is specific to it.

pub mod acks;
pub mod backoff;
pub mod causes;
pub mod filter;
pub mod glob;
pub mod mask;
pub mod pem;
pub mod template;

pub use acks::{AckQueue, Poison};
pub use backoff::Backoff;
pub use causes::with_causes;
pub use filter::TableFilter;
pub use mask::ColumnRules;
pub use pem::read_ca_pem;
pub use template::TableTemplate;
