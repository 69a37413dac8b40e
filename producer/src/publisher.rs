//! The `Publisher`: hands events to Kafka and reports, per event, only what
//! Kafka acknowledged.
//!
//! A thin edge over rdkafka's `FutureProducer`, configured from a
//! [`PublisherConfig`] (idempotent, `acks=all`, lz4, murmur2 partitioner).
//! Three ways in:
//!
//! - [`Publisher::publish`]: one event; resolves with partition and offset
//!   once the broker acknowledged it, or with the error that prevented it.
//! - [`Publisher::enqueue`]: hand one [`Record`] over without waiting and get
//!   a [`Pending`] future for its acknowledgement.
//! - [`Publisher::publish_stream`]: drive a stream of records with up to
//!   `max_in_flight` awaiting acknowledgement, reporting each outcome to a
//!   callback. Records are enqueued strictly in stream order, so events of
//!   one chain (same key) land in their partition in order.
//!
//! What this guarantees: an `Ok(Delivered)` means the record is in the
//! partition log on every in-sync replica. An `Err` means Kafka did not
//! confirm it — it may still have been written (a timeout can race a late
//! acknowledgement), so callers retry with the same GUID and receivers
//! de-duplicate on it (at-least-once). What it does not do: validate events
//! (that is `cpn_schema`) or retry beyond librdkafka's own retries within
//! `delivery_timeout`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use cpn_schema::{ContactProcessed, Guid, headers};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::{ConfigError, PublisherConfig};
use crate::metrics::Metrics;
use crate::record::Record;

/// How long to wait before retrying an enqueue refused because librdkafka's
/// local queue is full, when none of our own events is in flight to wait for.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Where Kafka stored an acknowledged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivered {
    /// Partition the record was written to (chosen by the key).
    pub partition: i32,
    /// Offset of the record in that partition.
    pub offset: i64,
}

/// Why a [`Publisher`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// The configuration failed validation.
    #[error("invalid producer configuration")]
    Config(#[source] ConfigError),
    /// librdkafka refused the configuration (e.g. an unknown `-X` property).
    #[error("librdkafka refused the producer configuration")]
    Create(#[source] KafkaError),
}

/// Why one event is not known to be in Kafka.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Kafka reported the event as not delivered (broker error, or no
    /// acknowledgement within `delivery_timeout`).
    #[error("kafka did not acknowledge event {guid}")]
    NotAcknowledged {
        /// The event's GUID.
        guid: Guid,
        /// librdkafka's delivery error.
        #[source]
        source: KafkaError,
    },
    /// librdkafka's local queue stayed full; the event was never handed over.
    #[error("producer queue full; event {guid} was not handed to kafka")]
    QueueFull {
        /// The event's GUID.
        guid: Guid,
    },
    /// librdkafka refused to take the event (e.g. larger than
    /// `message.max.bytes`, or the producer hit a fatal error).
    #[error("kafka producer refused event {guid}")]
    Enqueue {
        /// The event's GUID.
        guid: Guid,
        /// The reason librdkafka gave.
        #[source]
        source: KafkaError,
    },
    /// The producer was dropped before Kafka reported on the event.
    #[error("producer closed before kafka reported on event {guid}")]
    Closed {
        /// The event's GUID.
        guid: Guid,
    },
}

impl PublishError {
    /// The GUID of the event concerned.
    #[must_use]
    pub fn guid(&self) -> Guid {
        match self {
            PublishError::NotAcknowledged { guid, .. }
            | PublishError::QueueFull { guid }
            | PublishError::Enqueue { guid, .. }
            | PublishError::Closed { guid } => *guid,
        }
    }

    /// True when the event can never be accepted as it is (too large for the
    /// broker), so retrying it is pointless; false for outages.
    #[must_use]
    pub fn is_too_large(&self) -> bool {
        let code = match self {
            PublishError::NotAcknowledged { source, .. } | PublishError::Enqueue { source, .. } => {
                source.rdkafka_error_code()
            }
            PublishError::QueueFull { .. } | PublishError::Closed { .. } => None,
        };
        matches!(
            code,
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
        )
    }
}

/// Why flushing did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// Events were still unacknowledged when the timeout passed.
    #[error("events still unacknowledged after flushing for {timeout:?}")]
    Timeout {
        /// How long the flush waited.
        timeout: Duration,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The blocking flush task did not complete (runtime shutting down).
    #[error("flush task did not complete")]
    Task(#[source] tokio::task::JoinError),
}

/// Why the broker is not usable for publishing right now.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// No broker answered the metadata request.
    #[error("no kafka broker answered a metadata request within {timeout:?}")]
    Unreachable {
        /// How long it waited.
        timeout: Duration,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The broker answered but does not have the topic.
    #[error("topic {topic} is not available: {problem}")]
    Topic {
        /// The configured topic.
        topic: String,
        /// What the broker said.
        problem: String,
    },
    /// The blocking metadata task did not complete.
    #[error("metadata task did not complete")]
    Task(#[source] tokio::task::JoinError),
}

/// How a [`Publisher::publish_stream`] run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The stream ended and every enqueued record got an outcome.
    Finished,
    /// `abandon` fired: this many records had been handed to Kafka without an
    /// outcome yet. Whether Kafka holds them is unknown.
    Abandoned {
        /// Records in flight when the run was abandoned.
        in_flight: usize,
    },
}

/// Publishes events to one topic. Cheap to clone; clones share the producer.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: Arc<str>,
    metrics: Arc<Metrics>,
    delivery_timeout: Duration,
    max_in_flight: usize,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Builds a publisher with fresh [`Metrics`]. Opens no connection yet:
    /// librdkafka connects in the background.
    ///
    /// # Errors
    /// [`PublisherError`] when the configuration is invalid or librdkafka
    /// refuses a property.
    pub fn new(config: &PublisherConfig) -> Result<Self, PublisherError> {
        Self::with_metrics(config, Metrics::new())
    }

    /// Builds a publisher that records into `metrics`.
    ///
    /// # Errors
    /// As [`Publisher::new`].
    pub fn with_metrics(
        config: &PublisherConfig,
        metrics: Metrics,
    ) -> Result<Self, PublisherError> {
        config.validate().map_err(PublisherError::Config)?;
        let mut client = ClientConfig::new();
        for (key, value) in config.librdkafka_properties() {
            client.set(key, value);
        }
        let producer: FutureProducer = client.create().map_err(PublisherError::Create)?;
        Ok(Self {
            producer,
            topic: Arc::from(config.topic.as_str()),
            metrics: Arc::new(metrics),
            delivery_timeout: config.delivery_timeout,
            max_in_flight: config.max_in_flight,
        })
    }

    /// The topic events go to.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The metrics this publisher records into.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Publishes one event and waits for Kafka's acknowledgement.
    ///
    /// Serializes the event once ([`Record::from_event`]). When librdkafka's
    /// local queue is full it waits for room, up to `delivery_timeout`.
    ///
    /// # Errors
    /// [`PublishError`] when Kafka did not acknowledge the event.
    pub async fn publish(&self, event: &ContactProcessed) -> Result<Delivered, PublishError> {
        self.publish_record(&Record::from_event(event)).await
    }

    /// As [`Publisher::publish`], for an already serialized record.
    ///
    /// # Errors
    /// [`PublishError`] when Kafka did not acknowledge the record.
    pub async fn publish_record(&self, record: &Record) -> Result<Delivered, PublishError> {
        let deadline = tokio::time::Instant::now() + self.delivery_timeout;
        self.enqueue_until(record, deadline).await?.await
    }

    /// Hands `record` to librdkafka, waiting for room in its local queue
    /// until `deadline`: the one place a full queue is waited out.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when there is still no room at the
    /// deadline (counted as failed), or [`PublishError::Enqueue`] when
    /// librdkafka refuses the record.
    pub async fn enqueue_until(
        &self,
        record: &Record,
        deadline: tokio::time::Instant,
    ) -> Result<Pending, PublishError> {
        loop {
            match self.enqueue(record) {
                Err(PublishError::QueueFull { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err(e) => {
                    if matches!(e, PublishError::QueueFull { .. }) {
                        self.metrics.failed.inc();
                    }
                    return Err(e);
                }
                Ok(p) => return Ok(p),
            }
        }
    }

    /// Hands `record` to librdkafka without waiting for Kafka.
    ///
    /// Returns at once. Records enqueued one after another from one task keep
    /// their order within a partition (idempotent producer).
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when librdkafka's local queue is full (try
    /// again after some acknowledgements; not counted as failed), or
    /// [`PublishError::Enqueue`] when librdkafka refuses the record.
    pub fn enqueue(&self, record: &Record) -> Result<Pending, PublishError> {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: headers::GUID,
                value: Some(record.guid.as_str()),
            })
            .insert(Header {
                key: headers::SCHEMA_VERSION,
                value: Some(headers::CURRENT_SCHEMA_VERSION),
            });
        let kafka_record = FutureRecord::to(&self.topic)
            .key(record.key.as_bytes())
            .payload(record.value.as_slice())
            .headers(headers);
        match self.producer.send_result(kafka_record) {
            Ok(delivery) => {
                self.metrics.in_flight.inc();
                debug!(guid = %record.guid, "event handed to kafka");
                Ok(Pending {
                    delivery,
                    guid: record.guid,
                    bytes: record.value.len(),
                    started: Instant::now(),
                    metrics: Arc::clone(&self.metrics),
                    settled: false,
                })
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(PublishError::QueueFull { guid: record.guid })
            }
            Err((source, _)) => {
                self.metrics.failed.inc();
                warn!(guid = %record.guid, error = %source, "kafka producer refused event");
                Err(PublishError::Enqueue {
                    guid: record.guid,
                    source,
                })
            }
        }
    }

    /// Publishes every record of `events`, keeping up to `max_in_flight`
    /// awaiting acknowledgement, and calls `on_outcome` once per record with
    /// its tag and outcome, in completion order.
    ///
    /// Records are enqueued in stream order; when librdkafka's queue is full
    /// the stream waits (backpressure) rather than skipping ahead, so a chain
    /// never overtakes itself. To stop early, end the stream (for example
    /// with `take_until`): what was enqueued is still awaited. Cancelling
    /// `abandon` stops waiting at once and returns how many outcomes are
    /// unknown.
    pub async fn publish_stream<T, S, F>(
        &self,
        events: S,
        abandon: &CancellationToken,
        mut on_outcome: F,
    ) -> StreamEnd
    where
        S: Stream<Item = (T, Record)>,
        F: FnMut(T, Result<Delivered, PublishError>),
    {
        let mut events = pin!(events);
        let mut pending = FuturesUnordered::new();
        let mut source_done = false;
        // Created once: re-creating the notification future on every turn of
        // the loop showed up in profiles at 100k+ events/s.
        let mut abandoned = pin!(abandon.cancelled());
        loop {
            if source_done && pending.is_empty() {
                return StreamEnd::Finished;
            }
            tokio::select! {
                biased;
                () = &mut abandoned => {
                    return StreamEnd::Abandoned { in_flight: pending.len() };
                }
                Some((tag, outcome)) = pending.next(), if !pending.is_empty() => {
                    on_outcome(tag, outcome);
                    // Take every other outcome already in without another
                    // turn of the select (the next turn re-registers wakers).
                    while let Some(Some((tag, outcome))) = pending.next().now_or_never() {
                        on_outcome(tag, outcome);
                    }
                }
                next = events.next(), if !source_done && pending.len() < self.max_in_flight => {
                    let mut next = next;
                    loop {
                        let Some((tag, record)) = next else {
                            source_done = true;
                            break;
                        };
                        // Retry this record until it is enqueued, keeping its
                        // place in line (DESIGN invariant 4: order per chain).
                        let mut tag = Some(tag);
                        while let Some(t) = tag.take() {
                            match self.enqueue(&record) {
                                Ok(p) => pending.push(tagged(t, p)),
                                Err(PublishError::QueueFull { guid }) => {
                                    tokio::select! {
                                        biased;
                                        () = &mut abandoned => {
                                            self.metrics.failed.inc();
                                            on_outcome(t, Err(PublishError::QueueFull { guid }));
                                            return StreamEnd::Abandoned {
                                                in_flight: pending.len(),
                                            };
                                        }
                                        Some((t2, o)) = pending.next(), if !pending.is_empty() => {
                                            on_outcome(t2, o);
                                        }
                                        () = tokio::time::sleep(QUEUE_FULL_BACKOFF),
                                            if pending.is_empty() => {}
                                    }
                                    tag = Some(t);
                                }
                                Err(e) => on_outcome(t, Err(e)),
                            }
                        }
                        // Keep enqueueing what the source has ready without
                        // another turn of the select.
                        if pending.len() >= self.max_in_flight {
                            break;
                        }
                        match events.next().now_or_never() {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// Waits until every event handed to this producer (by any clone) has an
    /// outcome, or `timeout` passes.
    ///
    /// # Errors
    /// [`FlushError::Timeout`] when events are still unacknowledged.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(FlushError::Task)?
            .map_err(|source| FlushError::Timeout { timeout, source })
    }

    /// Asks the cluster for the topic's metadata: the readiness check.
    ///
    /// # Errors
    /// [`ReachError`] when no broker answers within `timeout` or the topic is
    /// missing or in error.
    pub async fn check_reachable(&self, timeout: Duration) -> Result<(), ReachError> {
        let producer = self.producer.clone();
        let topic = Arc::clone(&self.topic);
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|source| ReachError::Unreachable { timeout, source })?;
            let found = md.topics().iter().find(|t| t.name() == &*topic);
            match found {
                None => Err(ReachError::Topic {
                    topic: topic.to_string(),
                    problem: "not in the metadata".to_owned(),
                }),
                Some(t) => match t.error() {
                    Some(code) => Err(ReachError::Topic {
                        topic: topic.to_string(),
                        problem: RDKafkaErrorCode::from(code).to_string(),
                    }),
                    None if t.partitions().is_empty() => Err(ReachError::Topic {
                        topic: topic.to_string(),
                        problem: "has no partitions".to_owned(),
                    }),
                    None => Ok(()),
                },
            }
        })
        .await
        .map_err(ReachError::Task)?
    }
}

/// Pairs a pending acknowledgement with the caller's tag; one function so
/// `FuturesUnordered` holds a single future type.
async fn tagged<T>(tag: T, pending: Pending) -> (T, Result<Delivered, PublishError>) {
    (tag, pending.await)
}

/// An event handed to Kafka, resolving when Kafka reports on it.
///
/// Dropping it does not withdraw the event: librdkafka still delivers it;
/// only the outcome is no longer observed.
#[must_use = "the event's outcome is only known by awaiting it"]
pub struct Pending {
    delivery: DeliveryFuture,
    guid: Guid,
    bytes: usize,
    started: Instant,
    metrics: Arc<Metrics>,
    /// Whether the in-flight gauge was already decremented for this event.
    settled: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("guid", &self.guid)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The GUID of the event awaited.
    #[must_use]
    pub fn guid(&self) -> Guid {
        self.guid
    }
}

impl Future for Pending {
    type Output = Result<Delivered, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let report = ready!(Pin::new(&mut self.delivery).poll(cx));
        let this = &mut *self;
        this.settled = true;
        this.metrics.in_flight.dec();
        let guid = this.guid;
        Poll::Ready(match report {
            Ok(Ok(delivery)) => {
                this.metrics.published.inc();
                this.metrics.published_bytes.inc_by(this.bytes as u64);
                this.metrics
                    .ack_duration
                    .observe(this.started.elapsed().as_secs_f64());
                debug!(guid = %guid, partition = delivery.partition, offset = delivery.offset,
                    "kafka acknowledged event");
                Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Ok(Err((source, _message))) => {
                this.metrics.failed.inc();
                debug!(guid = %guid, error = %source, "kafka did not acknowledge event");
                Err(PublishError::NotAcknowledged { guid, source })
            }
            Err(_canceled) => {
                this.metrics.failed.inc();
                debug!(guid = %guid, "producer closed before kafka reported on event");
                Err(PublishError::Closed { guid })
            }
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            self.metrics.in_flight.dec();
        }
    }
}
