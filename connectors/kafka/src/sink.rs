//! The Kafka sink: produces every change record of a batch, and acks the
//! batch once all its records have successful delivery reports.
//!
//! With `format = "avro"`, the first event of each table version (a new
//! `TableMeta`, i.e. the table's first TABLE_MAP or one after a DDL that
//! changed its columns) registers the key and value schemas of its topic
//! in the Schema Registry before its records are encoded (see `avro`); a
//! registry that cannot be reached is a transient error, a refused schema
//! (incompatible evolution), refused credentials or an untrusted
//! certificate a fatal one (see `registry`).
//!
//! Data path: `write` encodes each change event (see `encode`) and hands its
//! records to librdkafka (`send_result`, which copies the bytes, so one
//! encoding buffer serves the whole batch). The batch's delivery futures and
//! its ack go to the acker task, which awaits them in batch order and acks
//! each batch once every record of it is delivered: acks flow while batches
//! keep coming, without waiting for `flush`. `flush` waits until the acker
//! has settled everything written so far. Schema-change (DDL) records are
//! sent only with `format = "debezium"`, to the topic `{name}` as
//! Debezium's schema-change records (the other formats' envelopes carry
//! their own values; a schema-change topic for them is future work).
//!
//! With `transactions = true`, the records of each transaction are framed by
//! a BEGIN record (before its first change) and an END record (after its
//! commit, with event counts per table) on `{name}.transaction`, produced in
//! the same stream as the changes, so they are acked with their batch.
//! Transactions without changes sent (DDL only, filtered tables) get neither.
//!
//! Invariants kept:
//! - The producer is idempotent with `acks=all` (not overridable): librdkafka
//!   retries retriable errors itself, without duplicates or reordering within
//!   a partition, and all records of a key go to one partition. With the
//!   default `message.timeout.ms=0` it retries forever: a broker that is down
//!   stalls the pipeline (and the checkpoint) until it is back.
//! - An ack is given only after every record of its batch and of every
//!   earlier batch has been delivered; acks are given in batch order.
//! - After the first failed delivery the sink is poisoned: that batch's ack
//!   and every later one fail, and every call returns an error: `Fatal` for
//!   errors an operator must fix (authorization, record too large, the
//!   idempotent producer's fatal errors), `Transient` otherwise (timeouts).
//!   Nothing is acked after a failure, so a restart replays from the
//!   checkpoint; the records delivered past it are duplicates with the same
//!   key, harmless for keyed consumers.
//! - Topics are created through the admin API the first time a table is
//!   seen (an existing topic is fine), before any of its records is sent.
//!
//! Memory: librdkafka's queue (`queue.buffering.max.*`) bounds the records
//! in flight; when it is full `write` waits for deliveries. The acker's
//! channel holds at most the pipeline's unacked batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DeliveryFuture, Producer};
use rowstream_api::{Ack, Batch, Committed, Poison, Record, Sink, SinkError, TableTemplate};
use tokio::sync::{mpsc, oneshot};

use crate::avro::{self, AvroTable, AvroWriter};
use crate::client::{classify, client_config, produce, reach_brokers, KProducer, SinkContext};
use crate::config::{Format, KafkaSinkConfig};
use crate::debezium;
use crate::encode::{
    encode_change, encode_change_with, key_changed, write_tx_key, write_tx_marker, Encoded,
    TableCounts,
};
use crate::registry::Registry;

/// How long `start` waits for the brokers' metadata, and topic creation for
/// the brokers' answer.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the acker settles: one batch, or a flush marker.
enum Job {
    Batch {
        deliveries: Vec<DeliveryFuture>,
        ack: Ack,
    },
    Flush(oneshot::Sender<()>),
}

/// The running Kafka sink, made by [`KafkaSink::start`] (or the config's
/// `SinkBuilder::start`). See the module docs for the contract.
pub struct KafkaSink {
    cfg: KafkaSinkConfig,
    topic_template: TableTemplate,
    producer: KProducer,
    admin: AdminClient<SinkContext>,
    /// (db, table) -> topic, for topics known to exist.
    topics: HashMap<(Arc<str>, Arc<str>), Arc<str>>,
    enc: Encoded,
    /// Avro only: the schema ids of each topic's current table version.
    avro: HashMap<Arc<str>, AvroTable>,
    registry: Option<Registry>,
    acker: mpsc::UnboundedSender<Job>,
    poison: Poison,
    /// `transactions = true`: the transaction topic once created, and the
    /// transaction whose BEGIN was sent and whose END was not yet.
    tx_topic: Option<Arc<str>>,
    open_tx: Option<OpenTx>,
    /// Scratch for transaction records.
    tx_key: Vec<u8>,
    tx_value: Vec<u8>,
}

/// A table as `(db, table)`.
type DbTable = (Arc<str>, Arc<str>);

/// A transaction between its BEGIN and END records.
struct OpenTx {
    id: Arc<str>,
    /// The source's logical name, for the topic name.
    source: Arc<str>,
    ts_ms: u64,
    /// Change events per (db, table), in first-seen order.
    counts: Vec<(DbTable, u64)>,
}

impl KafkaSink {
    fn err(&self, fatal: bool, msg: impl std::fmt::Display) -> SinkError {
        let m = format!("kafka sink {:?}: {msg}", self.cfg.name);
        SinkError::new(fatal, m)
    }

    /// The topic of a table, created first if this process has not seen it.
    async fn topic(
        &mut self,
        name: &str,
        db: &Arc<str>,
        table: &Arc<str>,
    ) -> Result<Arc<str>, SinkError> {
        if let Some(t) = self.topics.get(&(db.clone(), table.clone())) {
            return Ok(t.clone());
        }
        let topic: Arc<str> = Arc::from(self.topic_template.render(name, db, table));
        self.create_topic(&topic).await?;
        self.topics
            .insert((db.clone(), table.clone()), topic.clone());
        Ok(topic)
    }

    /// The transaction metadata topic `{name}.transaction`, created first.
    async fn tx_topic(&mut self, name: &str) -> Result<Arc<str>, SinkError> {
        if let Some(t) = &self.tx_topic {
            return Ok(t.clone());
        }
        let topic: Arc<str> = Arc::from(format!("{name}.transaction"));
        self.create_topic(&topic).await?;
        self.tx_topic = Some(topic.clone());
        Ok(topic)
    }

    /// Creates `topic` through the admin API; an existing topic is fine.
    async fn create_topic(&self, topic: &str) -> Result<(), SinkError> {
        let new = NewTopic::new(
            topic,
            self.cfg.partitions,
            TopicReplication::Fixed(self.cfg.replication_factor),
        );
        let opts = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
        let res = tokio::time::timeout(BROKER_TIMEOUT * 2, self.admin.create_topics([&new], &opts))
            .await
            .map_err(|_| {
                SinkError::Transient(format!(
                    "kafka sink {:?}: creating topic {topic:?}: no answer from the brokers in {}s",
                    self.cfg.name,
                    (BROKER_TIMEOUT * 2).as_secs()
                ))
            })?;
        let res =
            res.map_err(|e| self.err(false, format_args!("creating topic {topic:?}: {e}")))?;
        for r in res {
            match r {
                Ok(_) => {
                    tracing::info!(sink = %self.cfg.name, topic = %topic, partitions = self.cfg.partitions,
                    replication_factor = self.cfg.replication_factor, "created topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    let fatal = matches!(
                        code,
                        RDKafkaErrorCode::TopicAuthorizationFailed
                            | RDKafkaErrorCode::ClusterAuthorizationFailed
                            | RDKafkaErrorCode::InvalidReplicationFactor
                            | RDKafkaErrorCode::InvalidPartitions
                            | RDKafkaErrorCode::InvalidTopic
                            | RDKafkaErrorCode::PolicyViolation
                            | RDKafkaErrorCode::InvalidConfig
                    );
                    return Err(self.err(
                        fatal,
                        format_args!(
                            "cannot create topic {topic:?} ({} partitions, replication factor {}): {code}{}",
                            self.cfg.partitions,
                            self.cfg.replication_factor,
                            if fatal { "; create it yourself or fix the sink's topic settings / ACLs" } else { "" }
                        ),
                    ));
                }
            }
        }
        self.await_leaders(topic).await
    }

    /// Waits until every partition of `topic` has a leader in the
    /// producer's metadata. Records produced to a topic the brokers had
    /// just created, before its leaders were known, were seen to go missing
    /// (the first transaction of a fresh topic, with no delivery error), so
    /// nothing is produced to a topic before this.
    async fn await_leaders(&self, topic: &str) -> Result<(), SinkError> {
        let deadline = std::time::Instant::now() + BROKER_TIMEOUT;
        loop {
            let md = self
                .producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(1));
            let ready = md.as_ref().is_ok_and(|md| {
                md.topics().iter().any(|t| {
                    t.name() == topic
                        && t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                })
            });
            if ready {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(SinkError::Transient(format!(
                    "kafka sink {:?}: topic {topic:?} has partitions without a leader after {}s",
                    self.cfg.name,
                    BROKER_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends the BEGIN (`end = false`) or END record of the open transaction
    /// to the transaction topic.
    // Called only while a transaction is open (begin and end of one).
    #[allow(clippy::expect_used)]
    async fn send_tx_marker(
        &mut self,
        end: bool,
        deliveries: &mut Vec<DeliveryFuture>,
    ) -> Result<(), SinkError> {
        let source = self
            .open_tx
            .as_ref()
            .expect("a transaction is open")
            .source
            .clone();
        let topic = self.tx_topic(&source).await?;
        let open = self.open_tx.as_ref().expect("a transaction is open");
        self.tx_key.clear();
        self.tx_value.clear();
        write_tx_key(&mut self.tx_key, &open.id);
        let counts: Option<TableCounts> = end.then(|| {
            open.counts
                .iter()
                .map(|((db, t), n)| (format!("{db}.{t}"), *n))
                .collect()
        });
        write_tx_marker(&mut self.tx_value, &open.id, open.ts_ms, counts.as_ref());
        let d = produce(
            &self.producer,
            &self.poison,
            &self.cfg.name,
            &topic,
            Some(&self.tx_key),
            Some(&self.tx_value),
            &open.id,
            if end { "END" } else { "BEGIN" },
        )
        .await?;
        deliveries.push(d);
        Ok(())
    }
}

impl KafkaSink {
    /// `format = "debezium"`: a DDL statement as Debezium's schema-change
    /// record on the topic `{name}`, key `{"databaseName":..}`.
    async fn send_schema_change(
        &mut self,
        sc: &rowstream_api::SchemaChange,
        deliveries: &mut Vec<DeliveryFuture>,
    ) -> Result<(), SinkError> {
        let name = sc.source.name.clone();
        if !self.topics.contains_key(&(name.clone(), Arc::from(""))) {
            self.create_topic(&name).await?;
            self.topics
                .insert((name.clone(), Arc::from("")), name.clone());
        }
        self.tx_key.clear();
        self.tx_value.clear();
        debezium::write_schema_change_key(&mut self.tx_key, sc);
        debezium::write_schema_change(&mut self.tx_value, sc);
        let d = produce(
            &self.producer,
            &self.poison,
            &self.cfg.name,
            &name,
            Some(&self.tx_key),
            Some(&self.tx_value),
            &sc.source.gtid,
            "ddl",
        )
        .await?;
        deliveries.push(d);
        Ok(())
    }

    /// Hands every record of `batch` (and, with `transactions`, the BEGIN
    /// and END records around each transaction) to librdkafka.
    async fn produce_batch(
        &mut self,
        batch: &Batch,
        deliveries: &mut Vec<DeliveryFuture>,
    ) -> Result<(), SinkError> {
        let mut commits = batch.commits.iter().peekable();
        for (i, rec) in batch.records.iter().enumerate() {
            if self.cfg.transactions {
                while let Some(c) = commits.next_if(|c| c.end <= i) {
                    self.end_tx(&c.gtid, deliveries).await?;
                }
            }
            let ev = match rec {
                Record::Change(ev) => ev,
                Record::SchemaChange(sc) if self.cfg.format == Format::Debezium => {
                    self.send_schema_change(sc, deliveries).await?;
                    continue;
                }
                Record::SchemaChange(_) => continue, // see the module docs
            };
            let topic = self
                .topic(&ev.source().name, &ev.source().db, &ev.source().table)
                .await?;
            let order = if self.cfg.transactions {
                Some(self.count_in_tx(ev, deliveries).await?)
            } else {
                None
            };
            let tombstones = self.cfg.tombstones;
            if self.cfg.format == Format::Avro {
                self.avro_table(&topic, ev).await?;
                let mut w = AvroWriter {
                    table: &self.avro[&topic],
                    scratch: Vec::new(),
                };
                if let Err(e) = encode_change_with(ev, tombstones, &mut self.enc, &mut w) {
                    return Err(SinkError::Fatal(format!(
                        "kafka sink {:?}: table {}.{} at {}:{}: Avro encoding: {e}",
                        self.cfg.name,
                        ev.source().db,
                        ev.source().table,
                        ev.source().file,
                        ev.source().pos
                    )));
                }
            }
            if self.cfg.format == Format::Json {
                encode_change(ev, tombstones, &mut self.enc);
            }
            if self.cfg.format == Format::Debezium {
                debezium::encode_change(ev, tombstones, order, &mut self.enc);
            }
            for out in &self.enc.records {
                deliveries.push(
                    produce(
                        &self.producer,
                        &self.poison,
                        &self.cfg.name,
                        &topic,
                        self.enc.bytes(&out.key),
                        self.enc.bytes(&out.value),
                        &ev.source().gtid,
                        out.op.as_str(),
                    )
                    .await?,
                );
            }
        }
        if self.cfg.transactions {
            for c in commits {
                self.end_tx(&c.gtid, deliveries).await?;
            }
        }
        Ok(())
    }

    /// Counts `ev` in its transaction, sending the BEGIN record first when
    /// it is the transaction's first change. Returns the event's
    /// `(total_order, data_collection_order)` in the transaction as counted
    /// here: with `format = "debezium"` a primary-key change counts as two
    /// events (its delete and its create, numbered from these), as in
    /// Debezium.
    async fn count_in_tx(
        &mut self,
        ev: &rowstream_api::ChangeEvent,
        deliveries: &mut Vec<DeliveryFuture>,
    ) -> Result<(u64, u64), SinkError> {
        if self.open_tx.as_ref().map(|t| &*t.id) != Some(&*ev.source().gtid) {
            // A transaction left open has no END in this stream (stopped
            // mid-transaction and replayed): it gets a fresh BEGIN on replay.
            self.open_tx = Some(OpenTx {
                id: ev.source().gtid.clone(),
                source: ev.source().name.clone(),
                ts_ms: ev.source().ts_ms,
                counts: Vec::new(),
            });
            self.send_tx_marker(false, deliveries).await?;
        }
        let n = if self.cfg.format == Format::Debezium && key_changed(ev) {
            2
        } else {
            1
        };
        #[allow(clippy::expect_used)] // set just above when it was None
        let open = self.open_tx.as_mut().expect("just opened");
        let s = &ev.source();
        let table = match open
            .counts
            .iter_mut()
            .find(|((db, t), _)| *db == s.db && *t == s.table)
        {
            Some((_, c)) => {
                *c += n;
                *c
            }
            None => {
                open.counts.push(((s.db.clone(), s.table.clone()), n));
                n
            }
        };
        let total: u64 = open.counts.iter().map(|(_, c)| c).sum();
        Ok((total - n + 1, table - n + 1))
    }

    /// The transaction `gtid` committed: its END record, if it had changes.
    async fn end_tx(
        &mut self,
        gtid: &str,
        deliveries: &mut Vec<DeliveryFuture>,
    ) -> Result<(), SinkError> {
        if self.open_tx.as_ref().is_none_or(|t| &*t.id != gtid) {
            return Ok(()); // no change of it was sent (filtered tables, DDL)
        }
        self.send_tx_marker(true, deliveries).await?;
        self.open_tx = None;
        Ok(())
    }

    /// Makes sure the key and value schemas of the event's table version are
    /// registered for `topic` (once per table version: a DDL that changes
    /// the table's shape registers the new schemas, i.e. schema evolution).
    async fn avro_table(
        &mut self,
        topic: &Arc<str>,
        ev: &rowstream_api::ChangeEvent,
    ) -> Result<(), SinkError> {
        let Some(meta) = ev.table().cloned() else {
            return Err(self.err(
                true,
                format_args!(
                    "table {}.{}: format \"avro\" needs the column types, which this event does not carry",
                    ev.source().db, ev.source().table
                ),
            ));
        };
        if let Some(t) = self.avro.get_mut(topic) {
            if Arc::ptr_eq(&t.meta, &meta) {
                return Ok(());
            }
            if *t.meta == *meta {
                t.meta = meta; // same shape, newer TABLE_MAP: compare by pointer next time
                return Ok(());
            }
        }
        let ns = avro::namespace(&ev.source().name, &ev.source().db, &ev.source().table);
        #[allow(clippy::expect_used)] // the avro format is built with its registry
        let registry = self.registry.clone().expect("avro sink has a registry");
        let reg_err = |e: crate::registry::RegistryError| {
            let m = format!(
                "kafka sink {:?}: topic {topic:?}: {}",
                self.cfg.name, e.message
            );
            tracing::error!(sink = %self.cfg.name, fatal = e.fatal, "{m}");
            SinkError::new(e.fatal, m)
        };
        let key_id = match avro::key_schema(&meta, &ns) {
            Some(k) => Some(
                registry
                    .register(&format!("{topic}-key"), &k.to_string())
                    .await
                    .map_err(reg_err)?,
            ),
            None => None,
        };
        let value_id = registry
            .register(
                &format!("{topic}-value"),
                &avro::value_schema(&meta, &ns).to_string(),
            )
            .await
            .map_err(reg_err)?;
        tracing::info!(sink = %self.cfg.name, topic = %topic, ?key_id, value_id, "registered Avro schemas");
        self.avro.insert(
            topic.clone(),
            AvroTable {
                meta,
                key_id,
                value_id,
            },
        );
        Ok(())
    }
}

/// Settles jobs in order; see the module docs.
async fn acker(
    producer: KProducer,
    name: String,
    poison: Poison,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::Batch { deliveries, ack } => {
                let mut failure = poison.get();
                for r in join_all(deliveries).await {
                    if failure.is_some() {
                        continue;
                    }
                    let err = match r {
                        Ok(Ok(_)) => continue,
                        Ok(Err((e, _msg))) => classify(&producer, &e),
                        Err(_canceled) => {
                            (false, "the producer dropped a delivery report".to_string())
                        }
                    };
                    let msg = format!("kafka sink {name:?}: {}", err.1);
                    tracing::error!(sink = %name, fatal = err.0, "{msg}");
                    failure = Some(poison.set(SinkError::new(err.0, msg)));
                }
                match failure {
                    None => ack.ack(),
                    Some(m) => ack.fail(m),
                }
            }
        }
    }
}

impl KafkaSink {
    /// Validates the configuration, creates the producer, the admin client
    /// and the acker task, and checks that the brokers answer (unreachable
    /// brokers are `Transient`: the pipeline retries the start). Kafka keeps
    /// nothing to cut: records past the checkpoint are replayed with the
    /// same keys.
    pub async fn start(
        cfg: &KafkaSinkConfig,
        _committed: &dyn Committed,
    ) -> Result<KafkaSink, SinkError> {
        cfg.validate()?;
        let err = |fatal: bool, msg: String| {
            SinkError::new(fatal, format!("kafka sink {:?}: {msg}", cfg.name))
        };
        let topic_template = cfg.topic_template().map_err(|e| err(true, e.to_string()))?;
        let cc = client_config(cfg);
        let ctx = SinkContext::new(&cfg.name);
        let producer: KProducer = cc
            .create_with_context(ctx.clone())
            .map_err(|e| err(true, format!("creating the producer: {e}")))?;
        let admin: AdminClient<SinkContext> = cc
            .create_with_context(ctx.clone())
            .map_err(|e| err(true, format!("creating the admin client: {e}")))?;
        let p = producer.clone();
        let reached = tokio::task::spawn_blocking(move || reach_brokers(&p, &ctx, BROKER_TIMEOUT))
            .await
            .map_err(|e| err(false, e.to_string()))?;
        let brokers = reached.map_err(|(fatal, why)| {
            if fatal {
                err(true, why)
            } else {
                err(
                    false,
                    format!(
                        "cannot reach the brokers {:?} within {}s: {why}",
                        cfg.brokers,
                        BROKER_TIMEOUT.as_secs()
                    ),
                )
            }
        })?;
        let registry = match (&cfg.schema_registry_url, cfg.format) {
            (Some(_), Format::Avro) => Some(Registry::new(cfg).map_err(|e| err(true, e))?),
            _ => None,
        };
        tracing::info!(sink = %cfg.name, brokers = %cfg.brokers, cluster_brokers = brokers, "kafka sink started");
        let poison = Poison::new();
        let (acker_tx, acker_rx) = mpsc::unbounded_channel();
        tokio::spawn(acker(
            producer.clone(),
            cfg.name.clone(),
            poison.clone(),
            acker_rx,
        ));
        Ok(KafkaSink {
            cfg: cfg.clone(),
            topic_template,
            producer,
            admin,
            topics: HashMap::new(),
            enc: Encoded::default(),
            avro: HashMap::new(),
            registry,
            acker: acker_tx,
            poison,
            tx_topic: None,
            open_tx: None,
            tx_key: Vec::new(),
            tx_value: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaSinkConfig {
        &self.cfg
    }

    /// Stops the sink for good with `why` (if first); returns the first failure.
    fn stop(&self, why: SinkError) -> SinkError {
        self.poison.set(why)
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batch: Arc<Batch>, ack: Ack) -> Result<(), SinkError> {
        let ack = self.poison.admit(ack)?;
        let mut deliveries = Vec::with_capacity(batch.records.len());
        if let Err(e) = self.produce_batch(&batch, &mut deliveries).await {
            let first = self.stop(e);
            ack.fail(first.clone());
            return Err(first);
        }
        if let Err(mpsc::error::SendError(job)) = self.acker.send(Job::Batch { deliveries, ack }) {
            let first = self.stop(self.err(false, "the acker task stopped"));
            if let Job::Batch { ack, .. } = job {
                ack.fail(first.clone());
            }
            return Err(first);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        let (done_tx, done_rx) = oneshot::channel();
        if self.acker.send(Job::Flush(done_tx)).is_err() || done_rx.await.is_err() {
            return Err(self.stop(self.err(false, "the acker task stopped")));
        }
        self.poison.check()
    }
}

rowstream_api::sink_builder!(KafkaSinkConfig => KafkaSink);
