//! The sections of the configuration that shape the consumer: `[kafka]`,
//! `[concurrency]`, `[commit]` and `[shutdown]`, each with its defaults (in
//! its `Default`, the one place they are written) and its own checks.
//! `crate::config` only assembles them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::config::problem::{ConfigProblem, Problems};
use crate::secret::Secret;

/// `[kafka]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// The topic of ContactProcessed events.
    pub topic: String,
    /// Consumer group: one per target.
    pub group: String,
    /// Dead-letter topic; default `<topic>.dlq`. One per target.
    pub dlq_topic: Option<String>,
    /// Consumer session timeout (`group_protocol = "classic"` only: with
    /// `consumer` the broker's `group.consumer.session.timeout.ms` applies).
    #[serde(rename = "session_timeout_ms", with = "millis")]
    pub session_timeout: Duration,
    /// At start-up, how long `run` waits for a broker to answer and for the
    /// topics to exist before it exits 2 (authentication and authorization
    /// failures exit at once). See [`crate::kafka::preflight`].
    #[serde(rename = "startup_timeout_ms", with = "millis")]
    pub startup_timeout: Duration,
    /// Static membership: this replica's `group.instance.id`. A relay that
    /// restarts with the same id takes its partitions back at once instead
    /// of waiting for its old session to expire. Off by default: it must be
    /// unique per replica and stable across restarts (a StatefulSet pod
    /// name), and two live relays with one id fence each other.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Consumer group protocol: `classic` (JoinGroup/SyncGroup,
    /// cooperative-sticky) or `consumer` (KIP-848, broker-side assignment).
    pub group_protocol: GroupProtocol,
    /// librdkafka settings passed through to the consumer and the DLQ
    /// producer (SASL, SSL, ...). Keys cpn-relay manages are refused.
    pub properties: BTreeMap<String, Secret>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic: "contact-processed".into(),
            group: "cpn-relay".into(),
            dlq_topic: None,
            session_timeout: Duration::from_secs(10),
            // Long enough for a broker that restarts with the relay (a few
            // seconds) and a SASL or TLS handshake across a slow link; short
            // enough that a wrong address is reported while someone is
            // still watching.
            startup_timeout: Duration::from_secs(15),
            instance_id: None,
            group_protocol: GroupProtocol::default(),
            properties: BTreeMap::new(),
        }
    }
}

/// Which consumer group protocol the relay speaks (`kafka.group_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// The classic protocol, with the cooperative-sticky assignor.
    #[default]
    Classic,
    /// KIP-848: the broker assigns partitions incrementally; the session
    /// timeout and the assignor are the broker's.
    Consumer,
}

impl GroupProtocol {
    /// The value of librdkafka's `group.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
        }
    }

    /// Parses `classic` or `consumer`.
    ///
    /// # Errors
    /// Anything else, with what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            other => Err(format!("{other:?} is not classic or consumer")),
        }
    }
}

// By hand, so that a wrong value names its key wherever it came from (file
// or CPN_KAFKA_GROUP_PROTOCOL): serde's "unknown variant" does not.
impl<'de> Deserialize<'de> for GroupProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GroupProtocol::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("kafka.group_protocol: {e}")))
    }
}

/// Longest `kafka.instance_id`: Kafka takes up to 249 characters as a
/// group instance id; the relay keeps to that.
pub const MAX_INSTANCE_ID_LEN: usize = 249;

/// librdkafka keys cpn-relay sets itself; overriding them would break the
/// delivery guarantees.
pub const MANAGED_KAFKA_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "enable.partition.eof",
    "group.instance.id",
    "group.protocol",
];

/// Whether `key` is one of the [`MANAGED_KAFKA_KEYS`]: the one check behind
/// `kafka.properties` and the DLQ tools' `-X`.
pub fn is_managed_key(key: &str) -> bool {
    MANAGED_KAFKA_KEYS.contains(&key)
}

/// librdkafka keys that librdkafka 2.12 refuses to create a consumer with
/// under `group.protocol=consumer` ("is not supported ... It is defined
/// broker side"; the assignor is `group.remote.assignor`).
pub const CLASSIC_ONLY_KAFKA_KEYS: &[&str] = &[
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

impl KafkaConfig {
    /// The dead-letter topic: the configured one or `<topic>.dlq`.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }

    /// Every problem of `[kafka]`, each with its key path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.brokers.trim().is_empty() {
            p.add("kafka.brokers", "must not be empty");
        }
        if let Err(e) = check_topic_name(&self.topic) {
            p.add("kafka.topic", e);
        }
        if let Some(d) = &self.dlq_topic {
            if let Err(e) = check_topic_name(d) {
                p.add("kafka.dlq_topic", e);
            } else if d == &self.topic {
                p.add("kafka.dlq_topic", "must differ from kafka.topic");
            }
        }
        if self.group.trim().is_empty() {
            p.add("kafka.group", "must not be empty");
        }
        let hour = Duration::from_secs(3_600);
        if !(Duration::from_secs(1)..=hour).contains(&self.session_timeout) {
            p.add(
                "kafka.session_timeout_ms",
                "must be between 1000 and 3600000",
            );
        }
        if !(Duration::from_secs(1)..=hour).contains(&self.startup_timeout) {
            p.add(
                "kafka.startup_timeout_ms",
                "must be between 1000 and 3600000",
            );
        }
        if let Some(id) = &self.instance_id {
            if let Err(e) = check_instance_id(id) {
                p.add("kafka.instance_id", e);
            } else if self.group_protocol == GroupProtocol::Consumer {
                // Measured with Kafka 4.4 and librdkafka 2.12.1: a static
                // member restarted after a crash is refused
                // (UNRELEASED_INSTANCE_ID, fatal in librdkafka) until the
                // dead member's broker-side session expires, and the
                // consumer never recovers from a fatal error.
                p.add(
                    "kafka.instance_id",
                    "is not supported with kafka.group_protocol = \"consumer\": after a \
                     crash the broker refuses the restarted member (UNRELEASED_INSTANCE_ID, \
                     fatal in librdkafka) until the old session expires; use the classic \
                     protocol for static membership",
                );
            }
        }
        for k in self.properties.keys() {
            if is_managed_key(k) {
                p.add(
                    format!("kafka.properties.{k}"),
                    "is managed by cpn-relay and cannot be set (see kafka.instance_id and \
                     kafka.group_protocol)",
                );
            } else if self.group_protocol == GroupProtocol::Consumer
                && CLASSIC_ONLY_KAFKA_KEYS.contains(&k.as_str())
            {
                p.add(
                    format!("kafka.properties.{k}"),
                    "is not supported with kafka.group_protocol = \"consumer\" (the broker \
                     owns it: group.consumer.* settings)",
                );
            }
        }
        p.into_vec()
    }
}

/// A group instance id: what Kafka accepts (up to 249 characters), kept to
/// the characters of a host or pod name so that it survives every tool it
/// is typed into.
fn check_instance_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("must not be empty (leave it unset to turn static membership off)".into());
    }
    if id.len() > MAX_INSTANCE_ID_LEN {
        return Err(format!("longer than {MAX_INSTANCE_ID_LEN} characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; use letters, digits, '.', '_' and '-' (a pod or host name)"
        ));
    }
    Ok(())
}

fn check_topic_name(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    if t.len() > 249 {
        return Err("longer than 249 characters".into());
    }
    if t == "." || t == ".." {
        return Err("cannot be '.' or '..'".into());
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; Kafka topics use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// `[concurrency]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// Requests in flight across all partitions.
    pub max_in_flight: usize,
    /// Records taken from one partition and not finished: the partition's
    /// feeder stops reading while its window is full. Also the bound, with
    /// what finished in the last commit interval, on redeliveries per
    /// partition after a crash.
    pub max_in_flight_per_partition: usize,
    /// Bytes of records taken and not finished, all partitions together
    /// (key, value and headers, plus a fixed overhead per record).
    pub memory_budget_bytes: usize,
    /// Bytes librdkafka may prefetch, all partitions of the topic together:
    /// each partition's queue holds at most this divided by the topic's
    /// partition count (`queued.max.messages.kbytes`).
    pub prefetch_bytes: usize,
}

/// The smallest `concurrency.memory_budget_bytes`.
const MIN_MEMORY_BUDGET: usize = 1024 * 1024;
/// The smallest `concurrency.prefetch_bytes`.
const MIN_PREFETCH: usize = 64 * 1024;
/// Per partition, librdkafka's prefetch bound is kept within these.
const PARTITION_PREFETCH: (usize, usize) = (64 * 1024, 2 * 1024 * 1024 * 1024 - 1024);

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            max_in_flight: 1024,
            // The window no longer paces fetching (a full one pauses
            // nothing; the memory budget bounds the bytes): it bounds one
            // partition's concurrency and its crash redelivery.
            max_in_flight_per_partition: 512,
            // Sized for a small pod, whatever the partition count: about
            // 10,000 records of 1.3 KB taken (ten times what 1024 requests in
            // flight need), plus 8 MiB prefetched. 64 + 32 MiB measured 40 %
            // more RSS on 120 partitions and no more throughput
            // (BENCHMARKS.md).
            memory_budget_bytes: 16 * 1024 * 1024,
            prefetch_bytes: 8 * 1024 * 1024,
        }
    }
}

impl ConcurrencyConfig {
    /// Every problem of `[concurrency]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.max_in_flight == 0 {
            p.add("concurrency.max_in_flight", "must be at least 1");
        }
        if self.max_in_flight_per_partition == 0 {
            p.add(
                "concurrency.max_in_flight_per_partition",
                "must be at least 1",
            );
        }
        if self.memory_budget_bytes < MIN_MEMORY_BUDGET {
            p.add(
                "concurrency.memory_budget_bytes",
                "must be at least 1048576 (1 MiB)",
            );
        }
        if self.memory_budget_bytes > crate::kafka::memory::MAX_BUDGET {
            p.add(
                "concurrency.memory_budget_bytes",
                "must be at most 4294967295 (4 GiB)",
            );
        }
        if self.prefetch_bytes < MIN_PREFETCH {
            p.add(
                "concurrency.prefetch_bytes",
                "must be at least 65536 (64 KiB)",
            );
        }
        p.into_vec()
    }

    /// librdkafka's prefetch bound for each partition of a topic of
    /// `partitions` partitions, in bytes (a whole number of KiB).
    #[must_use]
    pub fn partition_prefetch(&self, partitions: usize) -> usize {
        let share = self.prefetch_bytes / partitions.max(1);
        share.clamp(PARTITION_PREFETCH.0, PARTITION_PREFETCH.1) / 1024 * 1024
    }
}

/// `[commit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommitConfig {
    /// How often finished offsets are committed (asynchronously).
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
}

impl Default for CommitConfig {
    fn default() -> Self {
        // A crash redelivers what finished since the last commit: a quarter
        // of a second of deliveries instead of a second (BENCHMARKS.md).
        // Four asynchronous commits a second, each one request for all
        // partitions.
        CommitConfig {
            interval: Duration::from_millis(250),
        }
    }
}

impl CommitConfig {
    /// Every problem of `[commit]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.interval < Duration::from_millis(10) {
            p.add("commit.interval_ms", "must be at least 10");
        }
        p.into_vec()
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM: how long in-flight records may take to finish.
    #[serde(rename = "deadline_ms", with = "millis")]
    pub deadline: Duration,
    /// On a rebalance: how long in-flight records of revoked partitions may
    /// take to finish before they are abandoned (and redelivered elsewhere).
    #[serde(rename = "revoke_deadline_ms", with = "millis")]
    pub revoke_deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            deadline: Duration::from_secs(15),
            revoke_deadline: Duration::from_secs(10),
        }
    }
}
