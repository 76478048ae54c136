//! The pipeline's metric handles, looked up once (a lookup takes a lock),
//! and the lag computation.
//!
//! Invariant: lag is the age of the oldest change not yet durable in every
//! sink: honest while catching up, 0 once everything read is durable.

use rowstream_api::metrics;

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) struct Meters {
    pub events: metrics::Handle,
    pub transactions: metrics::Handle,
    pub in_flight: metrics::Handle,
    lag: metrics::Handle,
    sink_batches: Vec<metrics::Handle>,
    sink_events: Vec<metrics::Handle>,
}

impl Meters {
    /// Handles for the sinks named `names`, in order.
    pub fn new<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Meters {
        Meters {
            events: metrics::SOURCE_RECORDS.with(""),
            transactions: metrics::SOURCE_TRANSACTIONS.with(""),
            in_flight: metrics::IN_FLIGHT_BATCHES.with(""),
            lag: metrics::LAG_SECONDS.with(""),
            sink_batches: names
                .clone()
                .map(|n| metrics::SINK_BATCHES.with(n))
                .collect(),
            sink_events: names.map(|n| metrics::SINK_RECORDS.with(n)).collect(),
        }
    }

    /// A batch of `records` is durable everywhere; `next` is the commit
    /// time of the oldest batch still in flight (outer None: none in flight).
    pub fn acked(&self, records: u64, next: Option<Option<u64>>) {
        for (b, e) in self.sink_batches.iter().zip(&self.sink_events) {
            b.inc();
            e.add(records);
        }
        self.lag_from(next);
    }

    /// Sets the lag from the oldest batch in flight (see the module docs).
    pub fn lag_from(&self, oldest: Option<Option<u64>>) {
        let lag = match oldest.flatten() {
            Some(ms) => (now_secs() - ms as f64 / 1000.0).max(0.0),
            None => 0.0,
        };
        self.lag.set(lag);
    }
}
