//! The librdkafka side of the Kafka sink: the client configuration (the
//! user's properties under the settings the guarantees depend on), the
//! client context that turns librdkafka's logs into `tracing` events and
//! remembers authentication / TLS failures, the first contact with the
//! brokers, the one call that hands a record to the producer, and the
//! classification of producer errors.
//!
//! Security is librdkafka's own, configured through `properties` as its
//! users expect (`security.protocol`, `sasl.mechanism`, `sasl.username`,
//! `sasl.password`, `ssl.ca.location`...). librdkafka retries a refused
//! login forever and only reports it to the error callback, so the context
//! keeps the first such report and [`reach_brokers`] turns it into a fatal
//! error naming the settings to fix, instead of a broker that seems down.
//!
//! Invariants kept: `enable.idempotence = true`, `enable.gapless.guarantee =
//! true` and `acks = all` are always set last, so no property overrides
//! them; every failed enqueue or delivery is classified here, once: errors
//! an operator must fix (authorization, records too large, fatal
//! idempotent-producer errors) are fatal, the rest (timeouts, brokers down)
//! transient.
//!
//! Why gapless: without it, when one batch of a partition fails with a
//! permanent error the idempotent producer bumps its epoch and goes on with
//! the later batches, so a record of transaction 6 can be written while
//! transaction 5's is not; the replay from the checkpoint then appends 5
//! after 6 and a consumer sees a key go back in time (seen in the
//! broker-kill test). With it, such a failure stops the producer with
//! `_GAPLESS_GUARANTEE` before anything later is written; that stop is
//! transient: the sink restarts with a new producer and replays in order.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rowstream_api::{Poison, SinkError};

use crate::config::KafkaSinkConfig;

/// How long `write` sleeps when librdkafka's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);

/// librdkafka's logs and errors as `tracing` events with the sink's name.
/// Connection failures are WARN, not ERROR: librdkafka reconnects on its own,
/// and a broker outage shows as a stalled checkpoint, not as an operator
/// action; errors that need one end the sink with a `SinkError`.
#[derive(Clone)]
pub struct SinkContext {
    /// The sink's name, in every event.
    pub sink: Arc<str>,
    /// The first authentication or TLS failure librdkafka reported: what to
    /// tell the operator (see [`reach_brokers`]).
    security_failure: Arc<OnceLock<String>>,
}

impl SinkContext {
    /// The context of sink `sink`'s clients (one per client kind; clones
    /// share the recorded failure).
    pub fn new(sink: &str) -> SinkContext {
        SinkContext {
            sink: Arc::from(sink),
            security_failure: Arc::default(),
        }
    }

    /// Records a failure that only the operator can fix, with the settings
    /// that decide it, once.
    fn security_failed(&self, code: RDKafkaErrorCode, reason: &str) {
        let settings = if code == RDKafkaErrorCode::SSL {
            "check the sink's \"ssl.ca.location\" property (the CA file that signed the \
             brokers' certificates) and \"security.protocol\""
        } else {
            "check the sink's \"sasl.username\", \"sasl.password\" and \"sasl.mechanism\" \
             properties"
        };
        let _ = self.security_failure.set(format!(
            "the brokers refused the connection ({reason}): {settings}"
        ));
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        let sink = &*self.sink;
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", sink, facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", sink, facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", sink, facility = fac, "{msg}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", sink, facility = fac, "{msg}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let sink = &*self.sink;
        match error.rdkafka_error_code() {
            Some(
                code @ (RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::SSL),
            ) => {
                self.security_failed(code, reason);
                tracing::error!(target: "librdkafka", sink, "{error}: {reason}")
            }
            Some(RDKafkaErrorCode::BrokerTransportFailure)
            | Some(RDKafkaErrorCode::AllBrokersDown)
            | Some(RDKafkaErrorCode::BrokerNotAvailable)
            | Some(RDKafkaErrorCode::RequestTimedOut)
            | Some(RDKafkaErrorCode::OperationTimedOut) => {
                tracing::warn!(target: "librdkafka", sink, "{error}: {reason}")
            }
            _ => tracing::error!(target: "librdkafka", sink, "{error}: {reason}"),
        }
    }
}

/// The producer the sink uses.
pub type KProducer = FutureProducer<SinkContext>;

/// The librdkafka configuration: the user's properties over the sink's
/// defaults, then the settings the guarantees depend on.
pub fn client_config(cfg: &KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("message.timeout.ms", "0")
        .set("allow.auto.create.topics", "false");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("enable.gapless.guarantee", "true")
        .set("acks", "all")
        .set("client.id", format!("rowstream-{}", cfg.name));
    c
}

/// Waits up to `timeout` for the brokers' metadata; returns how many
/// brokers the cluster has. Errors: `(true, why)` once librdkafka reported
/// an authentication or TLS failure (the operator must fix a setting),
/// `(false, why)` when the brokers did not answer in time.
/// `ctx` is the producer's context (its failures are the producer's).
pub fn reach_brokers(
    producer: &KProducer,
    ctx: &SinkContext,
    timeout: Duration,
) -> Result<usize, (bool, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let step = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(2));
        let res = producer.client().fetch_metadata(None, step);
        if let Some(why) = ctx.security_failure.get() {
            return Err((true, why.clone()));
        }
        match res {
            Ok(md) => return Ok(md.brokers().len()),
            Err(e) if Instant::now() >= deadline => return Err((false, e.to_string())),
            Err(_) => {}
        }
    }
}

/// Hands one record to librdkafka, waiting while its queue is full. A
/// refusal poisons the sink (see the module docs).
#[allow(clippy::too_many_arguments)]
pub async fn produce(
    producer: &KProducer,
    poison: &Poison,
    sink: &str,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    gtid: &str,
    op: &str,
) -> Result<DeliveryFuture, SinkError> {
    loop {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "gtid",
                value: Some(gtid.as_bytes()),
            })
            .insert(Header {
                key: "op",
                value: Some(op.as_bytes()),
            });
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(k) = key {
            fr = fr.key(k);
        }
        if let Some(v) = value {
            fr = fr.payload(v);
        }
        match producer.send_result(fr) {
            Ok(d) => return Ok(d),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(QUEUE_FULL_WAIT).await;
            }
            Err((e, _)) => {
                let (fatal, m) = classify(producer, &e);
                let m = format!("kafka sink {sink:?}: topic {topic:?}: {m}");
                tracing::error!(sink, fatal, "{m}");
                return Err(poison.set(SinkError::new(fatal, m)));
            }
        }
    }
}

/// Classifies a failed delivery or enqueue: `(fatal, message)`.
pub fn classify(producer: &KProducer, e: &KafkaError) -> (bool, String) {
    if let Some((code, msg)) = producer.client().fatal_error() {
        if code == RDKafkaErrorCode::GaplessGuarantee {
            return (
                false,
                format!("a delivery failed and the producer stopped before writing anything after it ({msg}); the sink restarts and replays from the checkpoint, in order"),
            );
        }
        return (
            true,
            format!("fatal producer error {code:?}: {msg}; the producer cannot continue, check the brokers and the sink's properties"),
        );
    }
    let code = e.rdkafka_error_code();
    let hint = match code {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) | Some(RDKafkaErrorCode::InvalidRecord) => Some(
            "a record is larger than the broker or topic accepts: raise the broker's message.max.bytes \
             (or the topic's max.message.bytes) and the sink's properties.\"message.max.bytes\"",
        ),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
        | Some(RDKafkaErrorCode::ClusterAuthorizationFailed)
        | Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) => {
            Some("the producer is not authorized: grant WRITE (and IDEMPOTENT_WRITE) on the topics to the sink's principal")
        }
        Some(RDKafkaErrorCode::Authentication) | Some(RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some("authentication with the brokers failed: check the sink's security properties")
        }
        Some(RDKafkaErrorCode::UnknownTopic) | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            Some("the topic does not exist (deleted while rowstream ran?)")
        }
        Some(RDKafkaErrorCode::InvalidConfig) | Some(RDKafkaErrorCode::UnsupportedForMessageFormat) => {
            Some("the brokers refuse the producer's settings")
        }
        Some(RDKafkaErrorCode::Fatal) => Some("fatal idempotent producer error"),
        _ => None,
    };
    match hint {
        Some(h) => (true, format!("delivery failed: {e}: {h}")),
        None => (
            false,
            format!("delivery failed: {e}; the batch was not acknowledged and will be replayed from the checkpoint"),
        ),
    }
}
