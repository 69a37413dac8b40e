//! The relay's configuration: one TOML file, overridable by environment
//! (`CPN_<SECTION>_<KEY>`, e.g. `CPN_RETRY_MAX_ATTEMPTS=5`) and, for the
//! essentials, by command-line flags. Precedence: defaults < file < env <
//! flags.
//!
//! [`RelayConfig::validate`] runs once at load and reports every problem with
//! the key's path (`retry.max_attempts: must be at least 1`). Secrets (custom
//! header values, librdkafka passwords) never appear in `Debug` output or in
//! [`RelayConfig::to_redacted_toml`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::circuit::CircuitConfig;
use crate::classify::{Classifier, StatusSet};
use crate::retry::RetryPolicy;

/// One problem in a configuration, with the key's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the key, e.g. `retry.max_attempts`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has an unknown or mistyped key.
    #[error("{0}")]
    Parse(String),
    /// The values do not pass validation.
    #[error("invalid configuration:\n  {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ConfigProblem>),
}

/// A string that prints as `[redacted]` in `Debug` and redacted output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The whole relay configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Where to read from and write dead letters to.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// The customer's web server.
    #[serde(default)]
    pub target: TargetConfig,
    /// Per-record retry budget.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Outage detection.
    #[serde(default)]
    pub circuit: CircuitSection,
    /// Bounds on work in flight.
    #[serde(default)]
    pub concurrency: ConcurrencyConfig,
    /// Offset commits.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Graceful shutdown and rebalance deadlines.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Metrics, health and logs.
    #[serde(default)]
    pub observability: ObservabilityConfig,
    /// When a relay that makes no progress calls itself stalled.
    #[serde(default)]
    pub health: HealthConfig,
    /// Which records this relay delivers (all by default).
    #[serde(default)]
    pub filter: crate::route::FilterConfig,
}

/// `[kafka]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// The topic of ContactProcessed events.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Consumer group: one per target.
    #[serde(default = "default_group")]
    pub group: String,
    /// Dead-letter topic; default `<topic>.dlq`. One per target.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// Consumer session timeout (`group_protocol = "classic"` only: with
    /// `consumer` the broker's `group.consumer.session.timeout.ms` applies).
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// At start-up, how long `run` waits for a broker to answer and for the
    /// topics to exist before it exits 2 (authentication and authorization
    /// failures exit at once). See [`crate::preflight`].
    #[serde(default = "default_startup_timeout_ms")]
    pub startup_timeout_ms: u64,
    /// Static membership: this replica's `group.instance.id`. A relay that
    /// restarts with the same id takes its partitions back at once instead
    /// of waiting for its old session to expire. Off by default: it must be
    /// unique per replica and stable across restarts (a StatefulSet pod
    /// name), and two live relays with one id fence each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Consumer group protocol: `classic` (JoinGroup/SyncGroup,
    /// cooperative-sticky) or `consumer` (KIP-848, broker-side assignment).
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    /// librdkafka settings passed through to the consumer and the DLQ
    /// producer (SASL, SSL, ...). Keys cpn-relay manages are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, Secret>,
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

/// `[target]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The URL events are POSTed to (http or https).
    #[serde(default)]
    pub url: String,
    /// Extra headers sent verbatim with every request (OCS `http-custom-headers`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// TCP + TLS connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Statuses that mean delivered (`2xx`, `409`, `500-504` forms).
    #[serde(default = "default_success_statuses")]
    pub success_statuses: Vec<String>,
    /// Statuses worth retrying.
    #[serde(default = "default_retryable_statuses")]
    pub retryable_statuses: Vec<String>,
    /// TLS and mTLS settings.
    #[serde(default)]
    pub tls: crate::tls::TlsConfig,
    /// Forward proxy; none when absent (the environment is ignored unless asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::proxy::ProxyConfig>,
    /// Authentication beyond static headers.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// Standard Webhooks request signing; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<crate::signing::SigningConfig>,
    /// Request rate and concurrency budget for this target.
    #[serde(default)]
    pub budget: crate::budget::BudgetConfig,
}

/// `[retry]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per record, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff cap.
    #[serde(default = "default_initial_delay_ms")]
    pub initial_delay_ms: u64,
    /// Largest backoff.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// Backoff growth per attempt.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Retry budget time per record: the request time of its charged
    /// failures and the backoff after them. An outage costs nothing.
    #[serde(default = "default_max_elapsed_ms")]
    pub max_elapsed_ms: u64,
    /// Longest `Retry-After` honoured.
    #[serde(default = "default_retry_after_max_ms")]
    pub retry_after_max_ms: u64,
}

/// `[circuit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSection {
    /// Consecutive retryable failures that open the circuit.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Distinct chains those failures must span (connect errors excepted).
    #[serde(default = "default_min_distinct_keys")]
    pub min_distinct_keys: usize,
    /// First open period before a probe.
    #[serde(default = "default_open_initial_ms")]
    pub open_initial_ms: u64,
    /// Longest open period.
    #[serde(default = "default_open_max_ms")]
    pub open_max_ms: u64,
    /// Consecutive non-retryable answers (4xx, or 3xx) of one status class,
    /// with no success between them, that mean the target rejects the relay
    /// rather than the records: the circuit opens and records are held, not
    /// dead-lettered. 0 turns the guard off.
    #[serde(default = "default_rejection_threshold")]
    pub rejection_threshold: u32,
    /// Distinct chains those answers must come from.
    #[serde(default = "default_rejection_min_distinct_keys")]
    pub rejection_min_distinct_keys: usize,
}

/// `[concurrency]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// Requests in flight across all partitions.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Records taken from one partition and not finished; the partition is
    /// paused when its window is full and resumed at half. Also the bound on
    /// redeliveries per partition after a crash.
    #[serde(default = "default_max_in_flight_per_partition")]
    pub max_in_flight_per_partition: usize,
}

/// `[commit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// How often finished offsets are committed (asynchronously).
    #[serde(default = "default_commit_interval_ms")]
    pub interval_ms: u64,
}

/// `[shutdown]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM: how long in-flight records may take to finish.
    #[serde(default = "default_shutdown_deadline_ms")]
    pub deadline_ms: u64,
    /// On a rebalance: how long in-flight records of revoked partitions may
    /// take to finish before they are abandoned (and redelivered elsewhere).
    #[serde(default = "default_revoke_deadline_ms")]
    pub revoke_deadline_ms: u64,
}

/// `[observability]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; empty or `off` disables.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
    /// Logs as JSON lines instead of text.
    #[serde(default)]
    pub json_logs: bool,
    /// Name of this relay instance in dead letters and logs; default host name and pid.
    #[serde(default)]
    pub relay_id: Option<String>,
}

/// `[health]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A relay holding unfinished records with no request in flight and no
    /// known wait (backoff, circuit probe, budget) for this long is stalled:
    /// `/readyz` answers 503 with the reason and `cpn_relay_stalled` is 1.
    #[serde(default = "default_stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Exit non-zero (3) when stalled, so an orchestrator restarts the relay;
    /// nothing is lost, unfinished offsets were never committed.
    #[serde(default = "default_exit_on_stall")]
    pub exit_on_stall: bool,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_topic() -> String {
    "contact-processed".into()
}
fn default_group() -> String {
    "cpn-relay".into()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_startup_timeout_ms() -> u64 {
    // Long enough for a broker that restarts with the relay (a few seconds)
    // and a SASL or TLS handshake across a slow link; short enough that a
    // wrong address is reported while someone is still watching.
    15_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_success_statuses() -> Vec<String> {
    vec!["2xx".into()]
}
fn default_retryable_statuses() -> Vec<String> {
    ["408", "425", "429", "5xx"].map(String::from).to_vec()
}
fn default_max_attempts() -> u32 {
    10
}
fn default_initial_delay_ms() -> u64 {
    200
}
fn default_max_delay_ms() -> u64 {
    30_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_elapsed_ms() -> u64 {
    300_000
}
fn default_retry_after_max_ms() -> u64 {
    60_000
}
fn default_failure_threshold() -> u32 {
    5
}
fn default_min_distinct_keys() -> usize {
    2
}
fn default_open_initial_ms() -> u64 {
    500
}
fn default_open_max_ms() -> u64 {
    30_000
}
fn default_max_in_flight() -> usize {
    1024
}
fn default_max_in_flight_per_partition() -> usize {
    // librdkafka fetches a resumed partition again only on its broker
    // thread's next tick, about once a second, so a relay that keeps pausing
    // delivers at most about one window per partition per second (measured:
    // 2048 gave 13.7k events/s on 6 partitions, 4096 gave 24k/s at a 20 ms
    // target; BENCHMARKS.md). It is also the redelivery bound after a crash.
    4096
}
fn default_commit_interval_ms() -> u64 {
    // A crash redelivers what finished since the last commit: a quarter of
    // a second of deliveries instead of a second (BENCHMARKS.md). Four
    // asynchronous commits a second, each one request for all partitions.
    250
}
fn default_shutdown_deadline_ms() -> u64 {
    15_000
}
fn default_revoke_deadline_ms() -> u64 {
    10_000
}
fn default_rejection_threshold() -> u32 {
    20
}
fn default_rejection_min_distinct_keys() -> usize {
    5
}
fn default_stall_timeout_ms() -> u64 {
    60_000
}
fn default_exit_on_stall() -> bool {
    true
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}

macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // An empty table deserializes: every field has a serde default.
                toml::from_str("").unwrap_or_else(|e| unreachable!("defaults of {}: {e}", stringify!($t)))
            }
        }
    )*};
}
default_from_serde!(
    KafkaConfig,
    TargetConfig,
    RetryConfig,
    CircuitSection,
    ConcurrencyConfig,
    CommitConfig,
    ShutdownConfig,
    ObservabilityConfig,
    HealthConfig
);

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

/// librdkafka keys that librdkafka 2.12 refuses to create a consumer with
/// under `group.protocol=consumer` ("is not supported ... It is defined
/// broker side"; the assignor is `group.remote.assignor`).
pub const CLASSIC_ONLY_KAFKA_KEYS: &[&str] = &[
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

/// Overrides the essentials from the command line (flags win over env and file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--brokers`.
    pub brokers: Option<String>,
    /// `--topic`.
    pub topic: Option<String>,
    /// `--group`.
    pub group: Option<String>,
    /// `--instance-id`.
    pub instance_id: Option<String>,
    /// `--group-protocol`.
    pub group_protocol: Option<String>,
    /// `--target-url`.
    pub target_url: Option<String>,
    /// `--dlq-topic`.
    pub dlq_topic: Option<String>,
    /// `--header 'Name: value'`, repeatable.
    pub headers: Vec<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `-X key=value`, repeatable.
    pub kafka_properties: Vec<String>,
    /// `--json-logs`.
    pub json_logs: bool,
}

impl RelayConfig {
    /// Loads `path` (or defaults when `None`), applies `env` overrides
    /// (`CPN_<SECTION>_<KEY>`) and `flags`, then validates.
    ///
    /// # Errors
    /// A read or parse error, or every validation problem with its key path.
    pub fn load(
        path: Option<&str>,
        env: &BTreeMap<String, String>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError::Parse(format!("{}: {}", path.unwrap_or("config"), e.message()))
        })?;
        let mut problems = apply_env(&mut table, env);
        let mut config: RelayConfig =
            RelayConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
                ConfigError::Parse(format!("{}: {}", path.unwrap_or("config"), e.message()))
            })?;
        problems.extend(config.apply_flags(flags));
        problems.extend(config.validate());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn apply_flags(&mut self, f: &Overrides) -> Vec<ConfigProblem> {
        let mut problems = vec![];
        if let Some(v) = &f.brokers {
            self.kafka.brokers = v.clone();
        }
        if let Some(v) = &f.topic {
            self.kafka.topic = v.clone();
        }
        if let Some(v) = &f.group {
            self.kafka.group = v.clone();
        }
        if let Some(v) = &f.instance_id {
            self.kafka.instance_id = Some(v.clone());
        }
        if let Some(v) = &f.group_protocol {
            match GroupProtocol::parse(v) {
                Ok(p) => self.kafka.group_protocol = p,
                Err(problem) => problems.push(ConfigProblem {
                    path: "--group-protocol".into(),
                    problem,
                }),
            }
        }
        if let Some(v) = &f.target_url {
            self.target.url = v.clone();
        }
        if let Some(v) = &f.dlq_topic {
            self.kafka.dlq_topic = Some(v.clone());
        }
        if let Some(v) = &f.metrics_listen {
            self.observability.metrics_listen = v.clone();
        }
        if f.json_logs {
            self.observability.json_logs = true;
        }
        for h in &f.headers {
            match h.split_once(':') {
                Some((name, value)) if !name.trim().is_empty() => {
                    self.target
                        .headers
                        .insert(name.trim().to_owned(), Secret(value.trim().to_owned()));
                }
                _ => problems.push(ConfigProblem {
                    path: "--header".into(),
                    problem: "expected 'Name: value'".into(),
                }),
            }
        }
        for kv in &f.kafka_properties {
            match kv.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    self.kafka
                        .properties
                        .insert(k.trim().to_owned(), Secret(v.to_owned()));
                }
                _ => problems.push(ConfigProblem {
                    path: "-X".into(),
                    problem: format!("expected key=value, got {kv:?}"),
                }),
            }
        }
        problems
    }

    /// Settings that are valid but weaken a guarantee, each with its key
    /// path: `check-config` prints them and `run` logs them at WARN.
    pub fn warnings(&self) -> Vec<ConfigProblem> {
        let mut w = vec![];
        let (attempts, threshold) = (self.retry.max_attempts, self.circuit.failure_threshold);
        if attempts < threshold {
            // A record is charged for each retryable failure until the
            // circuit opens; with fewer attempts than the threshold, an outage
            // can exhaust the first records before it does (invariant 5).
            w.push(ConfigProblem {
                path: "retry.max_attempts".into(),
                problem: format!(
                    "{attempts} is below circuit.failure_threshold ({threshold}): when the \
                     target goes down, records can be dead-lettered as retries_exhausted \
                     before the circuit opens; keep max_attempts at least failure_threshold"
                ),
            });
        }
        w
    }

    /// Every problem of this configuration, each with its key path.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = vec![];
        let mut bad = |path: &str, problem: String| {
            p.push(ConfigProblem {
                path: path.to_owned(),
                problem,
            })
        };
        if self.kafka.brokers.trim().is_empty() {
            bad("kafka.brokers", "must not be empty".into());
        }
        if let Err(e) = check_topic_name(&self.kafka.topic) {
            bad("kafka.topic", e);
        }
        if let Some(d) = &self.kafka.dlq_topic {
            if let Err(e) = check_topic_name(d) {
                bad("kafka.dlq_topic", e);
            } else if d == &self.kafka.topic {
                bad("kafka.dlq_topic", "must differ from kafka.topic".into());
            }
        }
        if self.kafka.group.trim().is_empty() {
            bad("kafka.group", "must not be empty".into());
        }
        if !(1_000..=3_600_000).contains(&self.kafka.session_timeout_ms) {
            bad(
                "kafka.session_timeout_ms",
                "must be between 1000 and 3600000".into(),
            );
        }
        if !(1_000..=3_600_000).contains(&self.kafka.startup_timeout_ms) {
            bad(
                "kafka.startup_timeout_ms",
                "must be between 1000 and 3600000".into(),
            );
        }
        if let Some(id) = &self.kafka.instance_id {
            if let Err(e) = check_instance_id(id) {
                bad("kafka.instance_id", e);
            } else if self.kafka.group_protocol == GroupProtocol::Consumer {
                // Measured with Kafka 4.4 and librdkafka 2.12.1: a static
                // member restarted after a crash is refused
                // (UNRELEASED_INSTANCE_ID, fatal in librdkafka) until the
                // dead member's broker-side session expires, and the
                // consumer never recovers from a fatal error.
                bad(
                    "kafka.instance_id",
                    "is not supported with kafka.group_protocol = \"consumer\": after a \
                     crash the broker refuses the restarted member (UNRELEASED_INSTANCE_ID, \
                     fatal in librdkafka) until the old session expires; use the classic \
                     protocol for static membership"
                        .into(),
                );
            }
        }
        for k in self.kafka.properties.keys() {
            if MANAGED_KAFKA_KEYS.contains(&k.as_str()) {
                bad(
                    &format!("kafka.properties.{k}"),
                    "is managed by cpn-relay and cannot be set (see kafka.instance_id and \
                     kafka.group_protocol)"
                        .into(),
                );
            } else if self.kafka.group_protocol == GroupProtocol::Consumer
                && CLASSIC_ONLY_KAFKA_KEYS.contains(&k.as_str())
            {
                bad(
                    &format!("kafka.properties.{k}"),
                    "is not supported with kafka.group_protocol = \"consumer\" (the broker \
                     owns it: group.consumer.* settings)"
                        .into(),
                );
            }
        }
        if self.target.url.is_empty() {
            bad(
                "target.url",
                "missing: set it in the file, CPN_TARGET_URL or --target-url".into(),
            );
        } else {
            match reqwest::Url::parse(&self.target.url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                    if u.host_str().is_none() {
                        bad("target.url", "has no host".into());
                    }
                }
                Ok(u) => bad(
                    "target.url",
                    format!("scheme {:?} is not http or https", u.scheme()),
                ),
                Err(e) => bad("target.url", format!("not a URL: {e}")),
            }
        }
        for (name, value) in &self.target.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                bad(
                    &format!("target.headers.{name}"),
                    "is not a valid HTTP header name".into(),
                );
            } else if reqwest::header::HeaderValue::from_str(&value.0).is_err() {
                bad(
                    &format!("target.headers.{name}"),
                    "value is not a valid HTTP header value".into(),
                );
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                bad(
                    &format!("target.headers.{name}"),
                    "is set by cpn-relay (OCS framing) and cannot be overridden".into(),
                );
            }
        }
        if self.target.connect_timeout_ms == 0 {
            bad("target.connect_timeout_ms", "must be at least 1".into());
        }
        if self.target.request_timeout_ms == 0 {
            bad("target.request_timeout_ms", "must be at least 1".into());
        }
        if let Err(e) = StatusSet::parse(&self.target.success_statuses) {
            bad("target.success_statuses", e);
        }
        if let Err(e) = StatusSet::parse(&self.target.retryable_statuses) {
            bad("target.retryable_statuses", e);
        }
        let r = &self.retry;
        if r.max_attempts == 0 {
            bad("retry.max_attempts", "must be at least 1".into());
        }
        if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
            bad("retry.multiplier", "must be a number of at least 1".into());
        }
        if r.initial_delay_ms > r.max_delay_ms {
            bad(
                "retry.initial_delay_ms",
                "must not exceed retry.max_delay_ms".into(),
            );
        }
        let c = &self.circuit;
        if c.failure_threshold == 0 {
            bad("circuit.failure_threshold", "must be at least 1".into());
        }
        if c.min_distinct_keys == 0 {
            bad("circuit.min_distinct_keys", "must be at least 1".into());
        }
        if c.open_initial_ms == 0 || c.open_initial_ms > c.open_max_ms {
            bad(
                "circuit.open_initial_ms",
                "must be at least 1 and not exceed circuit.open_max_ms".into(),
            );
        }
        if c.rejection_threshold > 0 && c.rejection_min_distinct_keys == 0 {
            bad(
                "circuit.rejection_min_distinct_keys",
                "must be at least 1 (turn the guard off with circuit.rejection_threshold = 0)"
                    .into(),
            );
        }
        if c.rejection_threshold > 0
            && u64::from(c.rejection_threshold) < c.rejection_min_distinct_keys as u64
        {
            bad(
                "circuit.rejection_threshold",
                format!(
                    "{} is below circuit.rejection_min_distinct_keys ({}): the guard could never trip",
                    c.rejection_threshold, c.rejection_min_distinct_keys
                ),
            );
        }
        let h = &self.health;
        if h.stall_timeout_ms < 1_000 || h.stall_timeout_ms > 86_400_000 {
            bad(
                "health.stall_timeout_ms",
                "must be from 1000 (1 s) to 86400000 (a day)".into(),
            );
        }
        if self.concurrency.max_in_flight == 0 {
            bad("concurrency.max_in_flight", "must be at least 1".into());
        }
        if self.concurrency.max_in_flight_per_partition == 0 {
            bad(
                "concurrency.max_in_flight_per_partition",
                "must be at least 1".into(),
            );
        }
        if self.commit.interval_ms < 10 {
            bad("commit.interval_ms", "must be at least 10".into());
        }
        let m = self.observability.metrics_listen.trim();
        if !(m.is_empty() || m == "off") && m.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "observability.metrics_listen",
                format!("{m:?} is not an address like 127.0.0.1:9464 (or off)"),
            );
        }
        p.extend(self.target.tls.problems());
        if let Some(proxy) = &self.target.proxy {
            p.extend(proxy.problems());
        }
        p.extend(self.target.auth.problems());
        p.extend(self.target.budget.problems());
        p.extend(self.filter.problems());
        if let Some(signing) = &self.target.signing {
            p.extend(signing.problems());
        }
        p
    }

    /// The dead-letter topic: the configured one or `<topic>.dlq`.
    pub fn dlq_topic(&self) -> String {
        self.kafka
            .dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.kafka.topic))
    }

    /// The retry policy this configuration describes.
    pub fn retry_policy(&self) -> RetryPolicy {
        let r = &self.retry;
        RetryPolicy {
            max_attempts: r.max_attempts,
            max_elapsed: Duration::from_millis(r.max_elapsed_ms),
            initial_delay: Duration::from_millis(r.initial_delay_ms),
            max_delay: Duration::from_millis(r.max_delay_ms),
            multiplier: r.multiplier,
            retry_after_max: Duration::from_millis(r.retry_after_max_ms),
        }
    }

    /// The circuit breaker tuning.
    pub fn circuit_config(&self) -> CircuitConfig {
        let c = &self.circuit;
        CircuitConfig {
            failure_threshold: c.failure_threshold,
            min_distinct_keys: c.min_distinct_keys,
            open_initial: Duration::from_millis(c.open_initial_ms),
            open_max: Duration::from_millis(c.open_max_ms),
            rejection_threshold: c.rejection_threshold,
            rejection_min_distinct_keys: c.rejection_min_distinct_keys,
        }
    }

    /// The response classifier. Call after [`RelayConfig::validate`] passed;
    /// a list that does not parse falls back to the default rule.
    pub fn classifier(&self) -> Classifier {
        match (
            StatusSet::parse(&self.target.success_statuses),
            StatusSet::parse(&self.target.retryable_statuses),
        ) {
            (Ok(s), Ok(r)) => Classifier::new(s, r),
            _ => Classifier::default(),
        }
    }

    /// The relay instance id: configured, or `<hostname>-<pid>`.
    pub fn relay_id(&self) -> String {
        self.observability.relay_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "cpn-relay".into());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The effective configuration as TOML, with header values and
    /// librdkafka properties whose names suggest secrets replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        for v in c.target.headers.values_mut() {
            *v = Secret("[redacted]".into());
        }
        for (k, v) in c.kafka.properties.iter_mut() {
            if is_secret_key(k) {
                *v = Secret("[redacted]".into());
            }
        }
        c.target.url = crate::dlq::headers::redact_url(&c.target.url);
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Headers the relay sets itself for OCS parity.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "etag",
    "host",
    "user-agent",
    "accept",
];

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["password", "secret", "token", "key", "jaas"]
        .iter()
        .any(|s| k.contains(s))
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

/// Applies `CPN_<SECTION>_<KEY>` variables to a parsed file. Known keys are
/// those of the default configuration (maps such as `target.headers` are
/// set by flags or the file).
fn apply_env(table: &mut toml::Table, env: &BTreeMap<String, String>) -> Vec<ConfigProblem> {
    let mut problems = vec![];
    let Ok(toml::Value::Table(defaults)) = toml::Value::try_from(RelayConfig::default()) else {
        return problems;
    };
    // Options without a default value still take env.
    let extra = [
        ("CPN_KAFKA_DLQ_TOPIC", ("kafka", "dlq_topic")),
        ("CPN_KAFKA_INSTANCE_ID", ("kafka", "instance_id")),
        ("CPN_OBSERVABILITY_RELAY_ID", ("observability", "relay_id")),
    ];
    let mut known: BTreeSet<String> = extra.iter().map(|(v, _)| (*v).to_owned()).collect();
    for (section, keys) in &defaults {
        let toml::Value::Table(keys) = keys else {
            continue;
        };
        for (key, default) in keys {
            if default.is_table() {
                continue;
            }
            let var = format!(
                "CPN_{}_{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            known.insert(var.clone());
            let Some(raw) = env.get(&var) else { continue };
            let value = match default {
                toml::Value::Array(_) => toml::Value::Array(
                    raw.split(',')
                        .map(|s| toml::Value::String(s.trim().to_owned()))
                        .collect(),
                ),
                toml::Value::String(_) => toml::Value::String(raw.clone()),
                _ => match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
                    Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.clone())),
                    Err(_) => {
                        problems.push(ConfigProblem {
                            path: var.clone(),
                            problem: format!("{raw:?} is not a valid value for {section}.{key}"),
                        });
                        continue;
                    }
                },
            };
            let sect = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(s) = sect {
                s.insert(key.clone(), value);
            }
        }
    }
    for (var, path) in extra {
        if let Some(raw) = env.get(var) {
            let sect = table
                .entry(path.0.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(s) = sect {
                s.insert(path.1.to_owned(), toml::Value::String(raw.clone()));
            }
        }
    }
    // A variable named like a setting of a section but matching none (a
    // typo, or a table such as target.tls that env cannot set) is an error,
    // as an unknown key in the file is. Other CPN_ variables belong to the
    // other cpn tools and flags.
    let prefixes: Vec<String> = defaults
        .keys()
        .map(|section| format!("CPN_{}_", section.to_ascii_uppercase()))
        .collect();
    for var in env.keys() {
        if prefixes.iter().any(|p| var.starts_with(p.as_str()))
            && !known.contains(var)
            && !ENV_OF_OTHER_TOOLS.contains(&var.as_str())
        {
            problems.push(ConfigProblem {
                path: var.clone(),
                problem: "is not a setting: env sets CPN_<SECTION>_<KEY> for the plain keys of \
                          a section (see relay.example.toml); tables such as target.tls, \
                          target.headers or kafka.properties are set in the file or by flags"
                    .into(),
            });
        }
    }
    problems
}

/// `CPN_` variables shaped like relay settings that cpn-producer reads (its
/// `-X`, `serve --retry-after-secs` and `--shutdown-timeout-ms`), so the
/// relay leaves them alone (`tests/tests/env_vars.rs` checks the list).
pub const ENV_OF_OTHER_TOOLS: &[&str] = &[
    "CPN_KAFKA_PROPERTIES",
    "CPN_RETRY_AFTER_SECS",
    "CPN_SHUTDOWN_TIMEOUT_MS",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        text: &str,
        env: &[(&str, &str)],
        flags: Overrides,
    ) -> Result<RelayConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("cpn-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.toml");
        std::fs::write(&path, text).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RelayConfig::load(path.to_str(), &env, &flags)
    }

    fn problems(e: ConfigError) -> Vec<String> {
        match e {
            ConfigError::Invalid(p) => p.into_iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn example_file_is_valid_and_names_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/relay.example.toml");
        RelayConfig::load(Some(path), &BTreeMap::new(), &Overrides::default()).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let toml::Value::Table(defaults) = toml::Value::try_from(RelayConfig::default()).unwrap()
        else {
            panic!("defaults are a table")
        };
        for (section, keys) in defaults {
            assert!(
                text.contains(&format!("[{section}]")),
                "example lacks [{section}]"
            );
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    text.contains(&format!("{key} ="))
                        || text.contains(&format!("[{section}.{key}]")),
                    "example lacks {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn a_target_url_alone_is_a_correct_config() {
        let c = load(
            "[target]\nurl = \"http://127.0.0.1:8080/crm\"\n",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.kafka.topic, "contact-processed");
        assert_eq!(c.dlq_topic(), "contact-processed.dlq");
        assert_eq!(c.retry.max_attempts, 10);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn missing_target_url_is_named() {
        let p = problems(load("", &[], Overrides::default()).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with("target.url: missing")),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("[retry]\nmax_attempt = 3\n", &[], Overrides::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("max_attempt"), "{msg}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_path() {
        let text = r#"
            [kafka]
            topic = "bad topic"
            dlq_topic = "x"
            properties = { "enable.auto.commit" = "true" }
            [target]
            url = "ftp://crm"
            retryable_statuses = ["7xx"]
            headers = { "Content-Type" = "text/plain" }
            [retry]
            max_attempts = 0
            multiplier = 0.5
            [concurrency]
            max_in_flight = 0
            [observability]
            metrics_listen = "nowhere"
        "#;
        let p = problems(load(text, &[], Overrides::default()).unwrap_err());
        for want in [
            "kafka.topic:",
            "kafka.properties.enable.auto.commit:",
            "target.url: scheme",
            "target.retryable_statuses:",
            "target.headers.Content-Type:",
            "retry.max_attempts: must be at least 1",
            "retry.multiplier:",
            "concurrency.max_in_flight:",
            "observability.metrics_listen:",
        ] {
            assert!(
                p.iter().any(|p| p.starts_with(want)),
                "missing {want} in {p:?}"
            );
        }
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let text = "[target]\nurl = \"http://file/\"\n[retry]\nmax_attempts = 3\n";
        let env = [
            ("CPN_RETRY_MAX_ATTEMPTS", "7"),
            ("CPN_TARGET_URL", "http://env/"),
            ("CPN_TARGET_RETRYABLE_STATUSES", "429, 503"),
            ("CPN_KAFKA_DLQ_TOPIC", "dead"),
        ];
        let c = load(text, &env, Overrides::default()).unwrap();
        assert_eq!(c.retry.max_attempts, 7);
        assert_eq!(c.target.url, "http://env/");
        assert_eq!(c.target.retryable_statuses, vec!["429", "503"]);
        assert_eq!(c.dlq_topic(), "dead");
        let flags = Overrides {
            target_url: Some("http://flag/".into()),
            headers: vec!["X-Api-Key: s3cret".into()],
            kafka_properties: vec![
                "security.protocol=SASL_SSL".into(),
                "sasl.password=pw".into(),
            ],
            ..Default::default()
        };
        let c = load(text, &env, flags).unwrap();
        assert_eq!(c.target.url, "http://flag/");
        assert_eq!(c.target.headers["X-Api-Key"].0, "s3cret");
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("\"pw\""),
            "{shown}"
        );
        assert!(shown.contains("SASL_SSL"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_env_value_is_named() {
        let p = problems(
            load(
                "[target]\nurl=\"http://x/\"\n",
                &[("CPN_RETRY_MAX_ATTEMPTS", "many")],
                Overrides::default(),
            )
            .unwrap_err(),
        );
        assert!(
            p.iter().any(|p| p.contains("CPN_RETRY_MAX_ATTEMPTS")),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_setting_variables_are_named_and_other_tools_variables_left_alone() {
        let p = problems(
            load(
                "[target]\nurl=\"http://x/\"\n",
                &[
                    ("CPN_RETRY_MAX_ATTEMPT", "3"),
                    ("CPN_TARGET_TLS_CA_FILE", "/ca.pem"),
                    ("CPN_RETRY_MAX_ATTEMPTS", "3"),
                    ("CPN_KAFKA_PROPERTIES", "a=b"),
                    ("CPN_RETRY_AFTER_SECS", "2"),
                    ("CPN_SHUTDOWN_TIMEOUT_MS", "100"),
                    ("CPN_BROKERS", "h:1"),
                ],
                Overrides::default(),
            )
            .unwrap_err(),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("CPN_RETRY_MAX_ATTEMPT: is not a setting"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("CPN_TARGET_TLS_CA_FILE: is not a setting"),
            "{p:?}"
        );
    }

    #[test]
    fn fewer_attempts_than_the_circuit_threshold_is_a_warning_not_an_error() {
        assert!(RelayConfig::default().warnings().is_empty());
        let mut c = RelayConfig::default();
        c.target.url = "http://x/".into();
        c.retry.max_attempts = 3;
        assert!(c.validate().is_empty(), "still valid");
        let w = c.warnings();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "retry.max_attempts");
        assert!(
            w[0].problem.contains("circuit.failure_threshold (5)"),
            "{}",
            w[0]
        );
        c.circuit.failure_threshold = 3;
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn instance_id_and_group_protocol_come_from_file_env_and_flags() {
        let c = load("[target]\nurl=\"http://x/\"\n", &[], Overrides::default()).unwrap();
        assert_eq!(
            c.kafka.instance_id, None,
            "static membership is off by default"
        );
        assert_eq!(c.kafka.group_protocol, GroupProtocol::Classic);
        let text = "[target]\nurl=\"http://x/\"\n[kafka]\ninstance_id = \"relay-0\"\n";
        let c = load(text, &[], Overrides::default()).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("relay-0"));
        let env = [
            ("CPN_KAFKA_INSTANCE_ID", "relay-1"),
            ("CPN_KAFKA_GROUP_PROTOCOL", "consumer"),
        ];
        let p = problems(load(text, &env, Overrides::default()).unwrap_err());
        assert!(
            p.iter()
                .any(|p| p.starts_with("kafka.instance_id: is not supported with")),
            "static membership with KIP-848 is refused: {p:?}"
        );
        let c = load(text, &env[..1], Overrides::default()).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("relay-1"));
        let c = load(
            "[target]\nurl=\"http://x/\"\n",
            &env[1..],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.kafka.group_protocol, GroupProtocol::Consumer);
        let flags = Overrides {
            instance_id: Some("cpn-relay-2".into()),
            group_protocol: Some("classic".into()),
            ..Default::default()
        };
        let c = load(text, &env, flags).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("cpn-relay-2"));
        assert_eq!(c.kafka.group_protocol, GroupProtocol::Classic);
    }

    #[test]
    fn bad_instance_ids_and_protocols_are_named() {
        for (id, want) in [
            ("", "must not be empty"),
            ("  ", "must not be empty"),
            ("relay 0", "contains ' '"),
            ("relay/0", "contains '/'"),
        ] {
            let flags = Overrides {
                instance_id: Some(id.into()),
                ..Default::default()
            };
            let p = problems(load("[target]\nurl=\"http://x/\"\n", &[], flags).unwrap_err());
            assert!(
                p.iter()
                    .any(|p| p.starts_with("kafka.instance_id:") && p.contains(want)),
                "{id:?}: {p:?}"
            );
        }
        let long = "r".repeat(MAX_INSTANCE_ID_LEN + 1);
        let p = problems(
            load(
                "[target]\nurl=\"http://x/\"\n",
                &[("CPN_KAFKA_INSTANCE_ID", &long)],
                Overrides::default(),
            )
            .unwrap_err(),
        );
        assert!(
            p.iter().any(|p| p.starts_with("kafka.instance_id: longer")),
            "{p:?}"
        );
        let flags = Overrides {
            group_protocol: Some("kip848".into()),
            ..Default::default()
        };
        let p = problems(load("[target]\nurl=\"http://x/\"\n", &[], flags).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with("--group-protocol:")),
            "{p:?}"
        );
        let e = load(
            "[target]\nurl=\"http://x/\"\n",
            &[("CPN_KAFKA_GROUP_PROTOCOL", "kip848")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("group_protocol") || e.contains("GROUP_PROTOCOL"),
            "{e}"
        );
    }

    #[test]
    fn classic_only_settings_are_refused_with_the_consumer_protocol() {
        let text = "[target]\nurl=\"http://x/\"\n[kafka]\ngroup_protocol = \"consumer\"\n\
                    [kafka.properties]\n\"session.timeout.ms\" = \"30000\"\n\
                    \"group.instance.id\" = \"x\"\n";
        let p = problems(load(text, &[], Overrides::default()).unwrap_err());
        assert!(
            p.iter()
                .any(|p| p.starts_with("kafka.properties.session.timeout.ms: is not supported")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("kafka.properties.group.instance.id: is managed")),
            "{p:?}"
        );
        let classic = "[target]\nurl=\"http://x/\"\n[kafka.properties]\n\"heartbeat.interval.ms\" = \"1000\"\n";
        assert!(load(classic, &[], Overrides::default()).is_ok());
    }

    #[test]
    fn bad_flags_are_named() {
        let flags = Overrides {
            headers: vec!["NoColon".into()],
            kafka_properties: vec!["novalue".into()],
            ..Default::default()
        };
        let p = problems(load("[target]\nurl=\"http://x/\"\n", &[], flags).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with("--header")) && p.iter().any(|p| p.starts_with("-X")),
            "{p:?}"
        );
    }
}
