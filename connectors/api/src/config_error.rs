//! The one configuration error type of every sink: which sink, which key,
//! what is wrong.
//!
//! Invariant kept: the message reads `<kind> sink "<name>": <key>: <problem>`
//! (e.g. `kafka sink "k": partitions: must be greater than 0`); the service
//! and the config examples' tests match on `key` and on that text.

/// A configuration value a sink cannot work with.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{kind} sink {sink:?}: {key}: {problem}")]
pub struct ConfigError {
    /// The sink type (`file`, `kafka`, `elasticsearch`...).
    pub kind: &'static str,
    /// The sink's `name` (may be empty when that is the problem).
    pub sink: String,
    /// The offending key.
    pub key: String,
    /// What is wrong and what it must be.
    pub problem: String,
}

impl ConfigError {
    /// A builder of errors for one sink: `err(key, problem)`.
    pub fn of<'a>(kind: &'static str, sink: &'a str) -> impl Fn(&str, String) -> ConfigError + 'a {
        move |key, problem| ConfigError {
            kind,
            sink: sink.to_string(),
            key: key.to_string(),
            problem,
        }
    }
}

/// A configuration error found when a sink starts is for the operator to fix.
impl From<ConfigError> for crate::SinkError {
    fn from(e: ConfigError) -> Self {
        crate::SinkError::Fatal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_sink_and_key() {
        let err = ConfigError::of("kafka", "k");
        let e = err("partitions", "must be greater than 0".into());
        assert_eq!(e.key, "partitions");
        assert_eq!(
            e.to_string(),
            "kafka sink \"k\": partitions: must be greater than 0"
        );
    }
}
