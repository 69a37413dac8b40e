//! The start-up check: before `run` creates the consumer, it asks Kafka —
//! with the relay's own settings — for the metadata of `kafka.topic` and
//! `kafka.dlq_topic` and for `kafka.group`'s committed offsets, so that a
//! setup that cannot work ends the process with the reason (`main` exits 2)
//! instead of leaving a relay up that logs errors and delivers nothing.
//!
//! What it decides:
//! - authentication failed (SASL credentials or mechanism), the TLS
//!   handshake failed, or the topic, the dead-letter topic or the group is
//!   not authorized: fail at once, as waiting does not fix any of them;
//! - no broker answers, or a topic does not exist: ask again until
//!   `kafka.startup_timeout_ms` has passed, then fail. A broker that starts
//!   with the relay or a topic being created makes it in time; a wrong
//!   address or a misspelt topic does not;
//! - the group coordinator not answering in time is not a setup error: the
//!   consumer waits for it as it would anyway.
//!
//! The dead-letter topic is asked for as the dead-letter producer would ask:
//! where the broker creates topics on demand (`auto.create.topics.enable`),
//! the question creates it, as the first dead letter would have; where it
//! does not (the local broker, most production clusters), a missing
//! dead-letter topic fails the start instead of holding back the first
//! partition that needs it. (One that disappears later still holds the
//! offset until it can be written: DESIGN invariant 1.)
//!
//! `cpn-relay dlq …` asks the same way before it reads ([`reach`]), short of
//! waiting for the topic: those tools report a missing one themselves.
//!
//! What it is not: a health check while running. Once running, a broker
//! outage never ends the relay: librdkafka reconnects and Kafka keeps the
//! backlog. Nor can it see write or group-read authorization: metadata and
//! offset fetches need only describe rights, so those still show up as
//! errors of the running relay.
//!
//! librdkafka reports an authentication or TLS failure as an error event
//! (`ClientContext::error`); the metadata request itself then merely times
//! out. The check's client context (`Watch`) keeps those events, so the
//! reason reaches the message.
//! Messages name the brokers, the topic or group, `security.protocol`,
//! `sasl.mechanism` and `sasl.username` — never a password.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::config::RelayConfig;
use crate::config::problem::ConfigProblem;

/// How long one request may wait before the check looks at the client's
/// error events again: how late, at most, an authentication failure is
/// noticed.
const ATTEMPT: Duration = Duration::from_secs(1);

/// The least time between two attempts, so one that fails at once
/// (connection refused) does not spin.
const PAUSE: Duration = Duration::from_millis(200);

/// How long the queued events of a client are served after each attempt.
const SERVE: Duration = Duration::from_millis(10);

/// How the relay introduces itself to the brokers, as error messages show
/// it: `security.protocol`, `sasl.mechanism` and `sasl.username` of
/// `kafka.properties`, never a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Rendered once: errors carry it, and small errors travel cheaply.
    shown: String,
}

impl Identity {
    /// Reads the identity from librdkafka properties.
    pub fn from_properties<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let (mut protocol, mut mechanism, mut username) = (None, None, None);
        for (k, v) in properties {
            match k {
                "security.protocol" => protocol = Some(v),
                "sasl.mechanism" | "sasl.mechanisms" => mechanism = Some(v),
                "sasl.username" => username = Some(v),
                _ => {}
            }
        }
        let protocol = protocol.unwrap_or("plaintext");
        let mut shown = format!("security.protocol {protocol}");
        if protocol.to_ascii_lowercase().starts_with("sasl") {
            // librdkafka's default mechanism: naming it shows a forgotten one.
            let mechanism = mechanism.unwrap_or("GSSAPI (the default)");
            shown.push_str(&format!(", sasl.mechanism {mechanism}"));
            if let Some(u) = username {
                shown.push_str(&format!(", sasl.username {u:?}"));
            }
        }
        Identity { shown }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Who asks, so that messages name the options of that command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `cpn-relay run`: `kafka.brokers`, `kafka.startup_timeout_ms`.
    Run,
    /// `cpn-relay dlq …`: `--brokers`.
    DlqTool,
}

impl Via {
    fn brokers(self) -> &'static str {
        match self {
            Via::Run => "kafka.brokers",
            Via::DlqTool => "--brokers",
        }
    }

    fn timeout(self) -> &'static str {
        match self {
            Via::Run => " (kafka.startup_timeout_ms)",
            Via::DlqTool => "",
        }
    }
}

/// Why Kafka cannot be used as configured, found before consuming.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No broker answered before the start-up timeout.
    #[error(
        "{} {brokers}: no broker answered within {}{}, connecting with {identity}{}",
        .via.brokers(),
        humantime::format_duration(*.waited),
        .via.timeout(),
        last_error(.last)
    )]
    NoBroker {
        /// Whose options to name.
        via: Via,
        /// The bootstrap servers.
        brokers: String,
        /// How the relay connected.
        identity: Identity,
        /// How long it waited.
        waited: Duration,
        /// librdkafka's last error, e.g. connection refused.
        last: Option<String>,
    },
    /// A broker refused the credentials or the SASL mechanism.
    #[error("{} {brokers}: authentication failed with {identity}: {reason}", .via.brokers())]
    Authentication {
        /// Whose options to name.
        via: Via,
        /// The bootstrap servers.
        brokers: String,
        /// How the relay authenticated.
        identity: Identity,
        /// librdkafka's reason.
        reason: String,
    },
    /// The TLS handshake with a broker failed.
    #[error("{} {brokers}: TLS handshake failed with {identity}: {reason}", .via.brokers())]
    Tls {
        /// Whose options to name.
        via: Via,
        /// The bootstrap servers.
        brokers: String,
        /// How the relay connected.
        identity: Identity,
        /// librdkafka's reason.
        reason: String,
    },
    /// A topic does not exist.
    #[error(
        "{option} {topic}: no such topic on {brokers} (asked for {}, kafka.startup_timeout_ms); {hint}",
        humantime::format_duration(*.waited)
    )]
    NoTopic {
        /// `kafka.topic` or `kafka.dlq_topic`.
        option: &'static str,
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
        /// How long it was asked for.
        waited: Duration,
        /// What to do.
        hint: &'static str,
    },
    /// The brokers do not let this identity use a topic or the group.
    #[error("{option} {name}: not authorized with {identity}: {reason}")]
    NotAuthorized {
        /// `kafka.topic`, `kafka.dlq_topic`, `kafka.group` or `--topic`.
        option: &'static str,
        /// The topic or group.
        name: String,
        /// Who asked.
        identity: Identity,
        /// The broker's error.
        reason: String,
    },
    /// A topic exists but kept answering with an error.
    #[error(
        "{option} {topic}: {reason} (still after {}, kafka.startup_timeout_ms)",
        humantime::format_duration(*.waited)
    )]
    TopicError {
        /// `kafka.topic` or `kafka.dlq_topic`.
        option: &'static str,
        /// The topic.
        topic: String,
        /// The broker's error.
        reason: String,
        /// How long it was asked for.
        waited: Duration,
    },
    /// librdkafka refused the settings.
    #[error("kafka.properties: librdkafka refused the settings: {0}")]
    Settings(#[source] KafkaError),
    /// The check itself could not run.
    #[error("the kafka start-up check did not finish: {0}")]
    Task(String),
}

fn last_error(last: &Option<String>) -> String {
    last.as_ref()
        .map(|r| format!("; last error: {r}"))
        .unwrap_or_default()
}

/// What the brokers said about the setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Partitions of `kafka.topic`.
    pub topic_partitions: usize,
    /// Partitions of `kafka.dlq_topic`.
    pub dlq_partitions: usize,
}

/// Checks that the relay can use Kafka as configured; see the module docs
/// for what fails at once and what is waited for.
///
/// # Errors
/// The first problem found, naming the option it concerns.
pub async fn check(config: &RelayConfig) -> Result<Ready, SetupError> {
    let plan = Plan::new(config);
    info!(
        brokers = %plan.brokers,
        identity = %plan.identity,
        "checking that Kafka answers and the topics exist"
    );
    let ready = tokio::task::spawn_blocking(move || plan.run())
        .await
        .map_err(|e| SetupError::Task(e.to_string()))??;
    info!(
        topic_partitions = ready.topic_partitions,
        dlq_partitions = ready.dlq_partitions,
        "kafka start-up check passed"
    );
    Ok(ready)
}

/// For a tool that reads one topic and reports a missing one itself
/// (`cpn-relay dlq`): waits at most `timeout` for a broker to answer for
/// `topic`, and fails at once when authentication or TLS fails or the topic
/// is not authorized, as [`check`] does.
///
/// # Errors
/// No broker answered, authentication or TLS failed, `topic` is not
/// authorized, or librdkafka refused the settings.
pub async fn reach(
    brokers: &str,
    properties: &[(String, String)],
    topic: &str,
    timeout: Duration,
) -> Result<(), SetupError> {
    let plan = Plan {
        via: Via::DlqTool,
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        dlq_topic: String::new(),
        group: String::new(),
        identity: Identity::from_properties(
            properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
        properties: properties.to_vec(),
        timeout,
    };
    tokio::task::spawn_blocking(move || plan.reach())
        .await
        .map_err(|e| SetupError::Task(e.to_string()))?
}

/// What librdkafka refuses of the relay's Kafka settings, found without the
/// network: the clients `run` creates are created here with no bootstrap
/// servers, so certificate, key and CA files (`ssl.ca.location`,
/// `ssl.certificate.location`, `ssl.key.location`, inline PEM, keystores)
/// and unknown or malformed properties are checked as `run` checks them,
/// and nothing is connected to.
pub fn offline_problems(config: &RelayConfig) -> Vec<ConfigProblem> {
    let plan = Plan::new(config);
    let mut c = ClientConfig::new();
    for (k, v) in &plan.properties {
        c.set(k, v);
    }
    // No broker to connect to: creating the client only loads the settings.
    c.set("bootstrap.servers", "");
    match c.create::<BaseProducer>() {
        Ok(_) => Vec::new(),
        Err(e) => vec![settings_problem(&plan.properties, &e.to_string())],
    }
}

/// librdkafka's refusal, at the property it names (`ssl.ca.location failed:
/// …`, `No such configuration property: "x"`), with the reason a file
/// cannot be read when a `*.location` names one (librdkafka says only
/// `system lib`). Only paths are quoted back, never values of other keys.
fn settings_problem(properties: &[(String, String)], text: &str) -> ConfigProblem {
    let named = properties
        .iter()
        .filter(|(k, _)| {
            text.contains(&format!("{k} failed")) || text.contains(&format!("\"{k}\""))
        })
        .max_by_key(|(k, _)| k.len());
    let Some((key, value)) = named else {
        return ConfigProblem {
            path: "kafka.properties".into(),
            problem: format!("librdkafka refused the settings: {text}"),
        };
    };
    let unreadable = key
        .ends_with(".location")
        .then(|| std::fs::metadata(value).err())
        .flatten();
    ConfigProblem {
        path: format!("kafka.properties.{key}"),
        problem: match unreadable {
            Some(io) => format!("cannot read {value}: {io} (librdkafka: {text})"),
            None => format!("librdkafka refused it: {text}"),
        },
    }
}

/// When asking for a topic is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The topic exists.
    Exists,
    /// A broker answered, whatever it said about the topic (except that it
    /// is not authorized).
    Answered,
}

/// What a failure code says about the setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Credentials or mechanism refused: waiting does not fix it.
    Authentication,
    /// TLS handshake failed: waiting does not fix it.
    Tls,
    /// Authenticated, not allowed: waiting does not fix it.
    Authorization,
    /// Anything else may pass (a broker starting, a topic being created).
    Transient,
}

fn kind(code: RDKafkaErrorCode) -> Kind {
    match code {
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::UnsupportedSASLMechanism
        | RDKafkaErrorCode::IllegalSASLState => Kind::Authentication,
        RDKafkaErrorCode::SSL => Kind::Tls,
        RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => Kind::Authorization,
        _ => Kind::Transient,
    }
}

/// What one metadata answer says about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicState {
    /// It exists, with these partitions.
    Ready(Vec<i32>),
    /// The broker does not know it.
    Missing,
    /// The broker answered for it with an error.
    Failed(RDKafkaErrorCode),
}

fn topic_state(metadata: &Metadata, topic: &str) -> TopicState {
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return TopicState::Missing;
    };
    match t.error().map(RDKafkaErrorCode::from) {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            TopicState::Missing
        }
        Some(code) => TopicState::Failed(code),
        None if t.partitions().is_empty() => TopicState::Missing,
        None => TopicState::Ready(t.partitions().iter().map(|p| p.id()).collect()),
    }
}

/// What librdkafka reported to a client of the check.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// The first authentication or TLS failure.
    fatal: Option<(Kind, String)>,
    /// The latest other error (connection refused, name not resolved, ...).
    last: Option<String>,
}

/// The context of the check's clients: keeps librdkafka's error events, and
/// keeps its log lines at DEBUG (the reason ends up in the error message).
#[derive(Debug, Default)]
struct Watch {
    seen: Mutex<Seen>,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, Seen> {
        // Nothing panics while holding it; a poisoned value is still usable.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Watch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        debug!(?level, fac, log_message, "librdkafka (start-up check)");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        debug!(%error, reason, "kafka client error (start-up check)");
        let code = error.rdkafka_error_code();
        let mut seen = self.lock();
        match code.map(kind) {
            Some(k @ (Kind::Authentication | Kind::Tls)) => {
                seen.fatal.get_or_insert_with(|| (k, reason.to_owned()));
            }
            // "1/1 brokers are down" says less than the error before it.
            _ if code == Some(RDKafkaErrorCode::AllBrokersDown) && seen.last.is_some() => {}
            _ => seen.last = Some(reason.to_owned()),
        }
    }
}

impl ConsumerContext for Watch {}

impl ProducerContext for Watch {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A client of the check: asks for metadata and serves its event queue,
/// where librdkafka's error events wait.
trait Probe {
    fn metadata(&self, topic: &str, timeout: Duration) -> Result<Metadata, KafkaError>;
    fn serve(&self, time: Duration);
    fn seen(&self) -> Seen;
}

impl Probe for BaseConsumer<Watch> {
    fn metadata(&self, topic: &str, timeout: Duration) -> Result<Metadata, KafkaError> {
        self.fetch_metadata(Some(topic), timeout)
    }

    fn serve(&self, time: Duration) {
        let until = Instant::now() + time;
        // Not subscribed and nothing assigned: poll only serves events.
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            let _ = self.poll(left);
        }
    }

    fn seen(&self) -> Seen {
        self.context().lock().clone()
    }
}

impl Probe for BaseProducer<Watch> {
    fn metadata(&self, topic: &str, timeout: Duration) -> Result<Metadata, KafkaError> {
        rdkafka::producer::Producer::client(self).fetch_metadata(Some(topic), timeout)
    }

    fn serve(&self, time: Duration) {
        self.poll(time);
    }

    fn seen(&self) -> Seen {
        rdkafka::producer::Producer::context(self).lock().clone()
    }
}

/// Everything the check needs from the configuration, owned, for the
/// blocking thread.
struct Plan {
    via: Via,
    brokers: String,
    topic: String,
    dlq_topic: String,
    group: String,
    properties: Vec<(String, String)>,
    identity: Identity,
    timeout: Duration,
}

impl Plan {
    fn new(config: &RelayConfig) -> Self {
        let properties: Vec<(String, String)> = config
            .kafka
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        Plan {
            via: Via::Run,
            brokers: config.kafka.brokers.clone(),
            topic: config.kafka.topic.clone(),
            dlq_topic: config.dlq_topic(),
            group: config.kafka.group.clone(),
            identity: Identity::from_properties(
                properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ),
            properties,
            timeout: config.kafka.startup_timeout,
        }
    }

    /// The pass-through properties and the brokers, as the relay's own
    /// clients get them.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    fn run(self) -> Result<Ready, SetupError> {
        let deadline = Instant::now() + self.timeout;
        // A consumer asks for the topic as the relay's consumer does: it
        // never creates one.
        let consumer: BaseConsumer<Watch> = self
            .client_config()
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .create_with_context(Watch::default())
            .map_err(SetupError::Settings)?;
        let partitions = self.await_topic(
            &consumer,
            "kafka.topic",
            &self.topic,
            deadline,
            Until::Exists,
        )?;
        // A producer asks for the dead-letter topic as the dead-letter
        // writer does: where the broker creates topics, this creates it.
        let producer: BaseProducer<Watch> = self
            .client_config()
            .create_with_context(Watch::default())
            .map_err(SetupError::Settings)?;
        let dlq = self.await_topic(
            &producer,
            "kafka.dlq_topic",
            &self.dlq_topic,
            deadline,
            Until::Exists,
        )?;
        self.check_group(&consumer, &partitions, deadline)?;
        Ok(Ready {
            topic_partitions: partitions.len(),
            dlq_partitions: dlq.len(),
        })
    }

    fn reach(self) -> Result<(), SetupError> {
        let deadline = Instant::now() + self.timeout;
        let consumer: BaseConsumer<Watch> = self
            .client_config()
            .create_with_context(Watch::default())
            .map_err(SetupError::Settings)?;
        self.await_topic(&consumer, "--topic", &self.topic, deadline, Until::Answered)?;
        Ok(())
    }

    fn fatal(&self, kind: Kind, reason: String) -> SetupError {
        let (via, brokers, identity) = (self.via, self.brokers.clone(), self.identity.clone());
        match kind {
            Kind::Tls => SetupError::Tls {
                via,
                brokers,
                identity,
                reason,
            },
            _ => SetupError::Authentication {
                via,
                brokers,
                identity,
                reason,
            },
        }
    }

    /// Asks `probe` for `topic` until `until` holds, a failure that waiting
    /// does not fix, or `deadline`. Returns the partitions (none when only
    /// an answer was awaited and the topic has none).
    fn await_topic(
        &self,
        probe: &impl Probe,
        option: &'static str,
        topic: &str,
        deadline: Instant,
        until: Until,
    ) -> Result<Vec<i32>, SetupError> {
        let mut answered = false;
        let mut topic_error = None;
        let mut warned = false;
        loop {
            let started = Instant::now();
            let left = deadline.saturating_duration_since(started);
            let got = probe.metadata(topic, left.clamp(Duration::from_millis(1), ATTEMPT));
            probe.serve(SERVE);
            let seen = probe.seen();
            if let Some((kind, reason)) = seen.fatal {
                return Err(self.fatal(kind, reason));
            }
            match got {
                Ok(metadata) => {
                    answered = true;
                    match topic_state(&metadata, topic) {
                        TopicState::Ready(partitions) => return Ok(partitions),
                        TopicState::Failed(code) if kind(code) == Kind::Authorization => {
                            return Err(SetupError::NotAuthorized {
                                option,
                                name: topic.to_owned(),
                                identity: self.identity.clone(),
                                reason: code.to_string(),
                            });
                        }
                        _ if until == Until::Answered => return Ok(Vec::new()),
                        TopicState::Failed(code) => topic_error = Some(code),
                        TopicState::Missing => topic_error = None,
                    }
                }
                Err(e) => match e.rdkafka_error_code().map(kind) {
                    Some(k @ (Kind::Authentication | Kind::Tls)) => {
                        return Err(self.fatal(k, seen.last.unwrap_or_else(|| e.to_string())));
                    }
                    _ => debug!(error = %e, option, topic, "metadata request failed"),
                },
            }
            if Instant::now() >= deadline {
                return Err(match (answered, topic_error) {
                    (false, _) => SetupError::NoBroker {
                        via: self.via,
                        brokers: self.brokers.clone(),
                        identity: self.identity.clone(),
                        waited: self.timeout,
                        last: seen.last,
                    },
                    (true, None) => SetupError::NoTopic {
                        option,
                        topic: topic.to_owned(),
                        brokers: self.brokers.clone(),
                        waited: self.timeout,
                        hint: if option == "kafka.dlq_topic" {
                            "the broker did not create it: create it (one dead-letter topic per target) or correct kafka.dlq_topic"
                        } else {
                            "create it or correct kafka.topic"
                        },
                    },
                    (true, Some(code)) => SetupError::TopicError {
                        option,
                        topic: topic.to_owned(),
                        reason: code.to_string(),
                        waited: self.timeout,
                    },
                });
            }
            if !answered && !warned && seen.last.is_some() {
                warned = true;
                warn!(
                    brokers = %self.brokers,
                    error = seen.last.as_deref().unwrap_or_default(),
                    timeout = ?self.timeout,
                    "no Kafka broker answers yet; asking again until the timeout"
                );
            }
            if let Some(rest) = PAUSE.checked_sub(started.elapsed()) {
                probe.serve(rest);
            }
        }
    }

    /// Asks for the group's committed offsets: the broker checks that this
    /// identity may describe the group. A coordinator that is not ready in
    /// time is left to the consumer, which waits for it anyway.
    fn check_group(
        &self,
        consumer: &BaseConsumer<Watch>,
        partitions: &[i32],
        deadline: Instant,
    ) -> Result<(), SetupError> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, *p);
        }
        // The topics may have taken all the time; the group gets one attempt.
        let deadline = deadline.max(Instant::now() + ATTEMPT);
        let not_authorized = |reason: String| SetupError::NotAuthorized {
            option: "kafka.group",
            name: self.group.clone(),
            identity: self.identity.clone(),
            reason,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = consumer.committed_offsets(tpl.clone(), left.max(Duration::from_millis(1)));
            consumer.serve(SERVE);
            if let Some((kind, reason)) = consumer.seen().fatal {
                return Err(self.fatal(kind, reason));
            }
            let error = match got {
                Ok(offsets) => match offsets.elements().iter().find_map(|e| e.error().err()) {
                    None => return Ok(()),
                    Some(e) => e,
                },
                Err(e) => e,
            };
            if error.rdkafka_error_code().map(kind) == Some(Kind::Authorization) {
                return Err(not_authorized(error.to_string()));
            }
            if !crate::kafka::coordinator::is_transient(&error)
                || Instant::now() + PAUSE >= deadline
            {
                warn!(
                    group = %self.group,
                    error = %error,
                    "the group's offsets could not be fetched at start-up; the consumer will retry"
                );
                return Ok(());
            }
            consumer.serve(PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refused_setting_is_named_with_why_its_file_cannot_be_read() {
        let props = vec![
            ("security.protocol".to_owned(), "SSL".to_owned()),
            (
                "ssl.ca.location".to_owned(),
                "/nonexistent/ca.pem".to_owned(),
            ),
            ("ssl.key.password".to_owned(), "hunter2".to_owned()),
        ];
        let p = super::settings_problem(
            &props,
            "Client creation error: ssl.ca.location failed: error:05880002:x509 certificate routines::system lib",
        );
        assert_eq!(p.path, "kafka.properties.ssl.ca.location");
        assert!(
            p.problem
                .starts_with("cannot read /nonexistent/ca.pem: No such file"),
            "{p}"
        );
        let p = super::settings_problem(&props, "No such configuration property: \"nope\"");
        assert_eq!(p.path, "kafka.properties");
        assert!(!p.to_string().contains("hunter2"), "{p}");
    }

    use super::*;

    #[test]
    fn the_identity_names_protocol_mechanism_and_user_never_the_password() {
        let id = Identity::from_properties([
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "relay"),
            ("sasl.password", "hunter2"),
        ]);
        let shown = id.to_string();
        assert_eq!(
            shown,
            r#"security.protocol SASL_SSL, sasl.mechanism SCRAM-SHA-512, sasl.username "relay""#
        );
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn without_sasl_only_the_protocol_is_named() {
        assert_eq!(
            Identity::from_properties([]).to_string(),
            "security.protocol plaintext"
        );
        let tls = Identity::from_properties([("security.protocol", "ssl"), ("sasl.username", "x")]);
        assert_eq!(tls.to_string(), "security.protocol ssl");
    }

    #[test]
    fn a_sasl_protocol_without_a_mechanism_names_librdkafkas_default() {
        let id = Identity::from_properties([("security.protocol", "sasl_plaintext")]);
        assert_eq!(
            id.to_string(),
            "security.protocol sasl_plaintext, sasl.mechanism GSSAPI (the default)"
        );
    }

    #[test]
    fn only_credentials_tls_and_authorization_fail_at_once() {
        use RDKafkaErrorCode as C;
        let table = [
            (C::Authentication, Kind::Authentication),
            (C::SaslAuthenticationFailed, Kind::Authentication),
            (C::UnsupportedSASLMechanism, Kind::Authentication),
            (C::IllegalSASLState, Kind::Authentication),
            (C::SSL, Kind::Tls),
            (C::TopicAuthorizationFailed, Kind::Authorization),
            (C::GroupAuthorizationFailed, Kind::Authorization),
            (C::ClusterAuthorizationFailed, Kind::Authorization),
            (C::AllBrokersDown, Kind::Transient),
            (C::BrokerTransportFailure, Kind::Transient),
            (C::Resolve, Kind::Transient),
            (C::OperationTimedOut, Kind::Transient),
            (C::UnknownTopicOrPartition, Kind::Transient),
            (C::LeaderNotAvailable, Kind::Transient),
            (C::CoordinatorNotAvailable, Kind::Transient),
        ];
        for (code, want) in table {
            assert_eq!(kind(code), want, "{code:?}");
        }
    }

    #[test]
    fn the_watch_keeps_the_first_fatal_error_and_the_most_telling_other_one() {
        let w = Watch::default();
        let global = |c| KafkaError::Global(c);
        w.error(
            global(RDKafkaErrorCode::BrokerTransportFailure),
            "connect to 127.0.0.1:1 failed: Connection refused",
        );
        w.error(
            global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(
            w.lock().last.as_deref(),
            Some("connect to 127.0.0.1:1 failed: Connection refused")
        );
        assert!(w.lock().fatal.is_none());
        w.error(
            global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: Invalid username or password",
        );
        w.error(global(RDKafkaErrorCode::SSL), "later");
        assert_eq!(
            w.lock().fatal,
            Some((
                Kind::Authentication,
                "SASL authentication error: Invalid username or password".to_owned()
            ))
        );
    }

    #[test]
    fn messages_name_the_option_and_the_reason() {
        let identity = Identity::from_properties([
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "cpn"),
            ("sasl.password", "wrong"),
        ]);
        let auth = SetupError::Authentication {
            via: Via::Run,
            brokers: "127.0.0.1:19092".into(),
            identity: identity.clone(),
            reason: "SASL authentication error: Invalid username or password".into(),
        };
        assert_eq!(
            auth.to_string(),
            "kafka.brokers 127.0.0.1:19092: authentication failed with security.protocol \
             SASL_PLAINTEXT, sasl.mechanism PLAIN, sasl.username \"cpn\": SASL authentication \
             error: Invalid username or password"
        );
        let none = SetupError::NoBroker {
            via: Via::Run,
            brokers: "127.0.0.1:1".into(),
            identity: Identity::from_properties([]),
            waited: Duration::from_secs(15),
            last: Some("Connection refused".into()),
        };
        assert_eq!(
            none.to_string(),
            "kafka.brokers 127.0.0.1:1: no broker answered within 15s (kafka.startup_timeout_ms), \
             connecting with security.protocol plaintext; last error: Connection refused"
        );
        let topic = SetupError::NoTopic {
            option: "kafka.dlq_topic",
            topic: "cp.dlq".into(),
            brokers: "b:9092".into(),
            waited: Duration::from_millis(1500),
            hint: "create it",
        };
        assert_eq!(
            topic.to_string(),
            "kafka.dlq_topic cp.dlq: no such topic on b:9092 (asked for 1s 500ms, \
             kafka.startup_timeout_ms); create it"
        );
        let tool = SetupError::NoBroker {
            via: Via::DlqTool,
            brokers: "127.0.0.1:1".into(),
            identity: Identity::from_properties([]),
            waited: Duration::from_secs(15),
            last: None,
        };
        assert_eq!(
            tool.to_string(),
            "--brokers 127.0.0.1:1: no broker answered within 15s, connecting with \
             security.protocol plaintext"
        );
        for e in [auth, none, topic, tool] {
            assert!(!e.to_string().contains("wrong"));
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }
}
