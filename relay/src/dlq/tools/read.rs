//! Reading a dead-letter topic from one point to the end *as it was when
//! the read began*, then stopping — without becoming a member of any
//! consumer group.
//!
//! The reader assigns every partition explicitly (no `subscribe`, so no
//! JoinGroup and no rebalance of anybody's group) and never commits unless
//! the caller asks ([`DlqReader::commit`], used only by `replay` for its own
//! progress group). librdkafka needs *a* `group.id` to assign partitions;
//! `list`, `stats`, `show` and `export` use a throwaway
//! `cpn-dlq-reader.<uuid>` that is never joined nor committed to, so the
//! broker keeps no state for it and the relay's group is never touched.
//!
//! The end of each partition is its high watermark captured at open: dead
//! letters written while a command runs are left for the next run, so every
//! command terminates on a topic the relay keeps writing to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::dlq::record::{DeadLetterView, RawDeadLetter};

/// How long a read waits for the next record before it gives up, while some
/// partition has not been read to its end.
pub const READ_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one metadata, watermark or committed-offsets request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a committed-offsets fetch or a progress commit is retried while
/// the group coordinator is moving or loading ([`crate::kafka::coordinator`]).
pub const COORDINATOR_BUDGET: Duration = Duration::from_secs(30);

/// Where the brokers are and how to talk to them (`--brokers`, `-X`).
#[derive(Clone, Default)]
pub struct KafkaOptions {
    /// Bootstrap servers.
    pub brokers: String,
    /// librdkafka properties passed through (SASL, TLS, ...).
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // -X values may be passwords.
        let keys: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaOptions")
            .field("brokers", &self.brokers)
            .field("property_keys", &keys)
            .finish()
    }
}

impl KafkaOptions {
    /// A client config with the brokers and pass-through properties;
    /// `defaults` go first so `-X` can change them.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers);
        c
    }
}

/// Where a read starts in each partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still in the topic.
    Beginning,
    /// The offsets committed by the reader's group; the oldest record where
    /// the group has none.
    Committed,
    /// One record: `partition`, `offset` (for `show`).
    One {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
}

/// The part of one partition a read covers: offsets `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    /// Partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// One past the last offset read (the high watermark at open).
    pub end: i64,
}

/// Why a dead-letter topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The topic does not exist.
    #[error("--topic {topic}: no such topic on {brokers}")]
    NoTopic {
        /// Topic.
        topic: String,
        /// Bootstrap servers asked.
        brokers: String,
    },
    /// `show P:O` names a partition the topic does not have.
    #[error("partition {partition}: {topic} has partitions 0..={last}")]
    NoPartition {
        /// Topic.
        topic: String,
        /// Asked partition.
        partition: i32,
        /// Highest partition.
        last: i32,
    },
    /// `show P:O` names an offset that is not (or no longer) in the topic.
    #[error(
        "offset {offset}: partition {partition} of {topic} holds offsets {low}..{high} (end exclusive)"
    )]
    NoOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Asked offset.
        offset: i64,
        /// Low watermark.
        low: i64,
        /// High watermark.
        high: i64,
    },
    /// Nothing arrived for [`READ_STALL_TIMEOUT`] before the end was reached.
    #[error("reading {topic}: nothing received for {}s while partitions {partitions:?} are not read to the end", READ_STALL_TIMEOUT.as_secs())]
    Stalled {
        /// Topic.
        topic: String,
        /// Partitions not finished.
        partitions: Vec<i32>,
    },
    /// Kafka refused or failed a request.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The Kafka error.
        #[source]
        source: KafkaError,
    },
    /// A blocking Kafka call could not run.
    #[error("{0}")]
    Task(String),
    /// No broker answered, or the brokers refused the credentials or the
    /// topic ([`crate::kafka::preflight::reach`]).
    #[error(transparent)]
    Setup(#[from] crate::kafka::preflight::SetupError),
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ReadError {
    let what = what.into();
    move |source| ReadError::Kafka { what, source }
}

/// A bounded read of a dead-letter topic.
pub struct DlqReader {
    consumer: Arc<StreamConsumer>,
    topic: String,
    ranges: Vec<PartitionRange>,
    /// Partition → end, for partitions not yet read to their end.
    remaining: BTreeMap<i32, i64>,
}

impl std::fmt::Debug for DlqReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqReader")
            .field("topic", &self.topic)
            .field("ranges", &self.ranges)
            .finish_non_exhaustive()
    }
}

/// The `TopicPartitionList` that records "everything up to and including
/// `last_done` is handled": Kafka stores the *next* offset to read.
pub fn progress_position(topic: &str, partition: i32, last_done: i64) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    // add_partition_offset only fails for Offset::OffsetTail with a negative
    // value; this is a plain, non-negative offset.
    let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(last_done + 1));
    tpl
}

impl DlqReader {
    /// Opens `topic` for reading from `start` to the current end. `group` is
    /// the progress group whose committed offsets [`Start::Committed`] reads
    /// (and [`Self::commit`] writes); `None` uses a throwaway group id.
    ///
    /// # Errors
    /// The topic, partition or offset does not exist, Kafka does not answer,
    /// or it refuses the credentials, the TLS handshake or the topic.
    pub async fn open(
        kafka_opts: &KafkaOptions,
        topic: &str,
        start: Start,
        group: Option<&str>,
    ) -> Result<Self, ReadError> {
        // A wrong password or certificate is reported at once, with
        // librdkafka's reason, instead of as a metadata request timing out.
        crate::kafka::preflight::reach(
            &kafka_opts.brokers,
            &kafka_opts.properties,
            topic,
            REQUEST_TIMEOUT,
        )
        .await?;
        let group = group.map_or_else(
            || format!("cpn-dlq-reader.{}", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        );
        let config = kafka_opts.client_config(&[("client.id", "cpn-relay-dlq")]);
        let brokers = kafka_opts.brokers.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || open_blocking(config, &brokers, &topic, &start, &group))
            .await
            .map_err(|e| ReadError::Task(format!("opening the dead-letter topic: {e}")))?
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The part of each partition the read covers.
    pub fn ranges(&self) -> &[PartitionRange] {
        &self.ranges
    }

    /// The replication factor of the topic read (its first partition's
    /// replica count).
    ///
    /// # Errors
    /// Kafka does not answer.
    pub async fn replication_factor(&self) -> Result<i32, ReadError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let md = consumer
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .map_err(kafka(format!("metadata of {topic}")))?;
            let replicas = md
                .topics()
                .first()
                .and_then(|t| t.partitions().first())
                .map_or(1, |p| p.replicas().len());
            Ok(i32::try_from(replicas).unwrap_or(1).max(1))
        })
        .await
        .map_err(|e| ReadError::Task(format!("asking for topic metadata: {e}")))?
    }

    /// Whether every partition is read to its end.
    pub fn is_done(&self) -> bool {
        self.remaining.is_empty()
    }

    /// How many offsets the read covers in all.
    pub fn total(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| u64::try_from(r.end - r.start).unwrap_or(0))
            .sum()
    }

    /// Whether `topic` exists (asked without creating it: consumers never
    /// trigger auto-creation).
    ///
    /// # Errors
    /// Kafka does not answer.
    pub async fn topic_exists(&self, topic: &str) -> Result<bool, ReadError> {
        let consumer = self.consumer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let md = consumer
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .map_err(kafka(format!("metadata of {topic}")))?;
            let Some(t) = md.topics().first() else {
                return Ok(false);
            };
            match t.error().map(RDKafkaErrorCode::from) {
                None => Ok(!t.partitions().is_empty()),
                Some(
                    RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
                ) => Ok(false),
                // Not authorized, leader not available, ...: not "missing".
                Some(code) => Err(ReadError::Kafka {
                    what: format!("metadata of {topic}"),
                    source: KafkaError::MetadataFetch(code),
                }),
            }
        })
        .await
        .map_err(|e| ReadError::Task(format!("asking for topic metadata: {e}")))?
    }

    /// The next dead letter, or `None` when every partition is read to the
    /// end captured at open.
    ///
    /// # Errors
    /// Kafka reports an error, or nothing arrives for [`READ_STALL_TIMEOUT`].
    pub async fn next(&mut self) -> Result<Option<DeadLetterView>, ReadError> {
        loop {
            if self.remaining.is_empty() {
                return Ok(None);
            }
            let consumer = self.consumer.clone();
            let received = tokio::time::timeout(READ_STALL_TIMEOUT, consumer.recv()).await;
            let msg = match received {
                Err(_) => {
                    return Err(ReadError::Stalled {
                        topic: self.topic.clone(),
                        partitions: self.remaining.keys().copied().collect(),
                    });
                }
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    self.finish(p);
                    continue;
                }
                Ok(Err(e)) => return Err(kafka(format!("reading {}", self.topic))(e)),
                Ok(Ok(m)) => m,
            };
            let (p, offset) = (msg.partition(), msg.offset());
            let Some(&end) = self.remaining.get(&p) else {
                continue;
            };
            if offset >= end {
                self.finish(p);
                continue;
            }
            let raw = RawDeadLetter {
                partition: p,
                offset,
                timestamp_ms: msg.timestamp().to_millis(),
                key: msg.key().map(<[u8]>::to_vec),
                value: msg.payload().map(<[u8]>::to_vec),
                headers: msg
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            drop(msg);
            if offset + 1 >= end {
                self.finish(p);
            }
            return Ok(Some(DeadLetterView::decode(raw)));
        }
    }

    fn finish(&mut self, partition: i32) {
        if self.remaining.remove(&partition).is_some() {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, partition);
            // Pausing only saves fetches of records past the end; a failure
            // is harmless because `next` ignores them anyway.
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// Records (asynchronously) that `partition` is handled up to and
    /// including `last_done`, in the reader's group.
    ///
    /// # Errors
    /// librdkafka refused to queue the commit.
    pub fn commit(&self, partition: i32, last_done: i64) -> Result<(), ReadError> {
        let tpl = progress_position(&self.topic, partition, last_done);
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(kafka(format!("committing progress of {}", self.topic)))
    }

    /// Commits these positions (partition → last handled offset) and waits
    /// for the broker's answer.
    ///
    /// # Errors
    /// The broker did not accept the commit.
    pub async fn commit_sync(&self, positions: &BTreeMap<i32, i64>) -> Result<(), ReadError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, last) in positions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(last + 1))
                .map_err(kafka(format!("progress position {p}:{last}")))?;
        }
        let consumer = self.consumer.clone();
        let what = format!("committing progress of {}", self.topic);
        tokio::task::spawn_blocking(move || {
            crate::kafka::coordinator::retry(COORDINATOR_BUDGET, || {
                consumer.commit(&tpl, CommitMode::Sync)
            })
            .map_err(kafka(what))
        })
        .await
        .map_err(|e| ReadError::Task(format!("committing progress: {e}")))?
    }
}

fn open_blocking(
    mut config: ClientConfig,
    brokers: &str,
    topic: &str,
    start: &Start,
    group: &str,
) -> Result<DlqReader, ReadError> {
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = config
        .create()
        .map_err(kafka("creating the Kafka consumer"))?;
    let md = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(kafka(format!("metadata of {topic} from {brokers}")))?;
    let partitions: Vec<i32> = match md.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            t.partitions().iter().map(|p| p.id()).collect()
        }
        _ => {
            return Err(ReadError::NoTopic {
                topic: topic.to_owned(),
                brokers: brokers.to_owned(),
            });
        }
    };
    let mut watermarks = BTreeMap::new();
    for &p in &partitions {
        let w = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(kafka(format!("watermarks of {topic} partition {p}")))?;
        watermarks.insert(p, w);
    }
    let mut ranges: Vec<PartitionRange> = Vec::new();
    match start {
        Start::Beginning => {
            ranges.extend(
                watermarks
                    .iter()
                    .map(|(&partition, &(low, high))| PartitionRange {
                        partition,
                        start: low,
                        end: high,
                    }),
            );
        }
        Start::Committed => {
            let mut tpl = TopicPartitionList::new();
            for &p in &partitions {
                tpl.add_partition(topic, p);
            }
            let committed = crate::kafka::coordinator::retry(COORDINATOR_BUDGET, || {
                consumer.committed_offsets(tpl.clone(), REQUEST_TIMEOUT)
            })
            .map_err(kafka(format!("committed offsets of group {group}")))?;
            for (&partition, &(low, high)) in &watermarks {
                let at =
                    committed
                        .find_partition(topic, partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                // Below `low` the records are gone (retention): start at the oldest left.
                ranges.push(PartitionRange {
                    partition,
                    start: at.unwrap_or(low).max(low),
                    end: high,
                });
            }
        }
        Start::One { partition, offset } => {
            let Some(&(low, high)) = watermarks.get(partition) else {
                return Err(ReadError::NoPartition {
                    topic: topic.to_owned(),
                    partition: *partition,
                    last: partitions.iter().copied().max().unwrap_or(0),
                });
            };
            if !(low..high).contains(offset) {
                return Err(ReadError::NoOffset {
                    topic: topic.to_owned(),
                    partition: *partition,
                    offset: *offset,
                    low,
                    high,
                });
            }
            ranges.push(PartitionRange {
                partition: *partition,
                start: *offset,
                end: offset + 1,
            });
        }
    }
    let mut assignment = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for r in ranges.iter().filter(|r| r.start < r.end) {
        assignment
            .add_partition_offset(topic, r.partition, Offset::Offset(r.start))
            .map_err(kafka(format!(
                "assigning {topic} partition {}",
                r.partition
            )))?;
        remaining.insert(r.partition, r.end);
    }
    // An explicit assignment: no JoinGroup, nobody's group rebalances.
    consumer
        .assign(&assignment)
        .map_err(kafka(format!("assigning partitions of {topic}")))?;
    Ok(DlqReader {
        consumer: Arc::new(consumer),
        topic: topic.to_owned(),
        ranges,
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_stores_the_next_offset_to_read() {
        let tpl = progress_position("D", 2, 41);
        let e = tpl.find_partition("D", 2).unwrap();
        assert_eq!(e.offset(), Offset::Offset(42));
    }

    #[test]
    fn pass_through_properties_win_over_defaults_but_not_brokers() {
        let k = KafkaOptions {
            brokers: "b:9092".into(),
            properties: vec![
                ("client.id".into(), "mine".into()),
                ("sasl.password".into(), "pw".into()),
            ],
        };
        let c = k.client_config(&[("client.id", "default"), ("linger.ms", "5")]);
        assert_eq!(c.get("client.id"), Some("mine"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
        assert!(!format!("{k:?}").contains("pw"), "no secrets in Debug");
    }
}
