//! Delivering one record, as a small state machine whose states are types.
//!
//! ```text
//!  Record ──take──► Pending ──turn──► Cleared ──attempt──► Attempted ──judge──► Step
//!    │                ▲                                                        │
//!    │ (invalid)      └──────── Hold / Retry(after a bounded wait) ◄───────────┤
//!    ▼                                                                         ▼
//!  dead_letter ◄──────────────────── DeadLetter(reason) ────────── Delivered ──► Finished
//! ```
//!
//! - [`pending`]: `take` validates a record into a [`Pending`] delivery, or
//!   ends it early (skipped by the filter, or invalid → dead letter).
//! - [`attempt`]: `turn` waits for the circuit, a request slot and the rate
//!   budget ([`Cleared`]); `attempt` sends one POST ([`Attempted`]); `judge`
//!   shows the answer to the circuit and the retry policy and says the next
//!   [`Step`].
//! - [`dead_letter`]: writing the dead letter, retried until Kafka
//!   acknowledges it.
//!
//! A record ends `Delivered`, `DeadLettered` or `Skipped` ([`Finished`]), or
//! is abandoned (`None`) when the relay stops or loses the partition first:
//! then it is not finished, its offset is not committed, and Kafka
//! redelivers it (at least once).
//!
//! Where the invariants of DESIGN.md are kept:
//! - **1, no loss**: [`Deliverer::dead_letter`] never gives up on a dead
//!   letter; a record ends only through [`Finished`].
//! - **3, stable identity**: [`Pending`] holds the body as produced, and
//!   every attempt sends those bytes with the body's GUID as `ETag`.
//! - **5, outage is not poison**: `judge` charges a record only for
//!   failures the circuit blames on it, and holds a record the target's
//!   rejection guard blames on the target.
//! - **8, live**: every wait here is bounded and noted in [`Health`], and a
//!   settling partition's records give up a wait at once (`Stops::drain`).
//!
//! What is not here: ordering per chain and commits (`crate::kafka`), the
//! policies themselves (`crate::policy`), and HTTP (`crate::target`).

mod attempt;
mod dead_letter;
mod pending;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{Histogram, IntCounter};
use rdkafka::message::OwnedHeaders;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, info_span};

use crate::config::RelayConfig;
use crate::dlq::writer::DlqWriter;
use crate::observe::health::Health;
use crate::observe::metrics::RelayMetrics;
use crate::policy::circuit::Circuit;
use crate::policy::classify::{AttemptClass, Classifier, DlqReason};
use crate::policy::retry::RetryPolicy;
use crate::policy::route::FilterConfig;
use crate::target::budget::Budget;
use crate::target::client::{ClientError, Target};
use tokio_util::sync::CancellationToken;

use attempt::Step;

/// A record taken from Kafka, detached from the consumer.
#[derive(Debug, Clone)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes (the chain).
    pub key: Option<Vec<u8>>,
    /// Value bytes (the body to POST).
    pub value: Option<Bytes>,
    /// Headers as produced.
    pub headers: Option<OwnedHeaders>,
    /// Record timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A hash of the key: records with equal hashes are delivered in order.
    /// Records without a key share one hash, so they keep partition order.
    pub fn key_hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.key.hash(&mut h);
        h.finish()
    }
}

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The target took it.
    Delivered,
    /// It is in the dead-letter topic (write acknowledged).
    DeadLettered(DlqReason),
    /// This relay's `[filter]` does not take it: finished without a request.
    Skipped,
}

/// When a record's delivery stops short of its end.
#[derive(Debug, Clone)]
pub struct Stops {
    /// Abandon at once, even a request in flight.
    pub cancel: CancellationToken,
    /// The partition is settling: finish a request in flight, but give up
    /// instead of waiting (circuit, backoff, budget).
    pub drain: CancellationToken,
}

/// What every delivery of one relay shares.
#[derive(Debug)]
pub struct Deliverer {
    /// The customer's web server.
    target: Target,
    /// Attempt → verdict.
    classifier: Classifier,
    /// Per-record budget.
    policy: RetryPolicy,
    /// Outage detection for the target.
    circuit: Mutex<Circuit>,
    /// Bumped whenever the circuit may have changed state.
    circuit_changed: watch::Sender<u64>,
    /// Caps concurrent HTTP requests.
    requests: Semaphore,
    /// The target's request-rate budget.
    budget: Mutex<Budget>,
    /// Which records this relay delivers.
    filter: FilterConfig,
    /// Dead-letter writer.
    dlq: DlqWriter,
    /// Metrics.
    metrics: RelayMetrics,
    /// Target URL without credentials, for dead letters.
    target_redacted: String,
    /// Consumer group.
    group: String,
    /// This relay's id.
    relay_id: String,
    /// The longest one attempt can take (connect and request timeouts): a
    /// request in flight is a known wait of at most this.
    attempt_timeout: Duration,
    /// The metrics every record touches, resolved once.
    counted: Counted,
}

/// The series every record touches, resolved once when the relay starts:
/// no label lookup (a hash and a lock inside `prometheus`) per record. Every
/// attempt class is there from the start, at 0.
#[derive(Debug)]
struct Counted {
    /// `cpn_relay_attempts_total`, by [`AttemptClass::index`].
    attempts: [IntCounter; AttemptClass::ALL.len()],
    /// `cpn_relay_attempt_duration_seconds`, by [`AttemptClass::index`].
    durations: [Histogram; AttemptClass::ALL.len()],
    /// `cpn_relay_deliveries_total{outcome="delivered"}`.
    delivered: IntCounter,
    /// `cpn_relay_deliveries_total{outcome="skipped"}`.
    skipped: IntCounter,
}

impl Counted {
    fn resolve(m: &RelayMetrics) -> Self {
        Counted {
            attempts: AttemptClass::ALL.map(|c| m.attempts.with_label_values(&[c.as_str()])),
            durations: AttemptClass::ALL
                .map(|c| m.attempt_duration.with_label_values(&[c.as_str()])),
            delivered: m.deliveries.with_label_values(&["delivered"]),
            skipped: m.deliveries.with_label_values(&["skipped"]),
        }
    }
}

impl Deliverer {
    /// What the deliveries of a relay configured by `config` share; dead
    /// letters go to `dlq` and carry `relay_id`.
    ///
    /// # Errors
    /// The target's HTTP client cannot be built from `config.target`.
    pub fn new(
        config: &RelayConfig,
        dlq: DlqWriter,
        metrics: RelayMetrics,
        relay_id: String,
    ) -> Result<Self, ClientError> {
        let target = &config.target;
        let (circuit_changed, _) = watch::channel(0u64);
        Ok(Deliverer {
            target: Target::new(target)?,
            classifier: config.classifier(),
            policy: config.retry.clone(),
            circuit: Mutex::new(Circuit::new(config.circuit.clone())),
            circuit_changed,
            requests: Semaphore::new(match target.budget.max_concurrent_requests {
                0 => config.concurrency.max_in_flight,
                n => n.min(config.concurrency.max_in_flight),
            }),
            budget: {
                metrics
                    .budget_requests_per_second
                    .set(target.budget.max_requests_per_second);
                Mutex::new(Budget::new(&target.budget, Instant::now()))
            },
            filter: config.filter.clone(),
            dlq,
            counted: Counted::resolve(&metrics),
            metrics,
            target_redacted: crate::secret::redact_url(&target.url),
            group: config.kafka.group.clone(),
            relay_id,
            attempt_timeout: target
                .connect_timeout
                .saturating_add(target.request_timeout)
                .saturating_add(Duration::from_secs(1)),
        })
    }

    fn lock_circuit(&self) -> MutexGuard<'_, Circuit> {
        // A panic while holding this lock leaves a consistent state machine
        // (every method is a few assignments), so a poisoned lock is usable.
        self.circuit.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_budget(&self) -> MutexGuard<'_, Budget> {
        // The same holds for the budget: a token bucket of plain numbers.
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica holds `assigned` of the topic's `total` partitions: its
    /// share of a group-wide request budget (see [`Budget::set_share`]).
    pub fn set_budget_share(&self, assigned: usize, total: usize) {
        let rate = self
            .lock_budget()
            .set_share(assigned, total, Instant::now());
        self.metrics.budget_requests_per_second.set(rate);
        self.metrics.topic_partitions.set(total as i64);
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// Whether the circuit is open (consumption should pause).
    pub fn circuit_open(&self) -> bool {
        self.lock_circuit().is_open()
    }

    /// When the open circuit's probe is (or was) due; `None` when closed or
    /// a probe is out ([`Circuit::probe_due_at`]).
    pub fn probe_due_at(&self, now: Instant) -> Option<Instant> {
        self.lock_circuit().probe_due_at(now)
    }

    /// Delivers `rec` to its end, or returns `None` if it is abandoned or
    /// given up first ([`Stops`]).
    pub async fn process(&self, rec: &Record, stops: &Stops, health: &Health) -> Option<Finished> {
        let span = info_span!("record", topic = %rec.topic, partition = rec.partition, offset = rec.offset, guid = tracing::field::Empty);
        self.run(rec, stops, health).instrument(span).await
    }

    /// The state machine of the module docs.
    async fn run(&self, rec: &Record, stops: &Stops, health: &Health) -> Option<Finished> {
        let mut pending = match self.take(rec) {
            Ok(pending) => pending,
            Err(pending::Early::Skipped) => return Some(Finished::Skipped),
            Err(pending::Early::Invalid(failure)) => {
                return self
                    .dead_letter(rec, DlqReason::InvalidPayload, failure, stops, health)
                    .await;
            }
        };
        loop {
            let cleared = self.turn(&pending, stops, health).await?;
            let attempted = self.attempt(&mut pending, cleared, stops, health).await?;
            match self.judge(&mut pending, attempted) {
                Step::Delivered => return Some(self.delivered(&pending)),
                Step::Hold => {}
                Step::RetryAfter(delay) => {
                    health.waiting_for(delay);
                    wait_or_stop(delay, stops).await?;
                }
                Step::DeadLetter(reason, failure) => {
                    return self.dead_letter(rec, reason, failure, stops, health).await;
                }
            }
        }
    }
}

/// Sleeps `d`; `None` when the record is abandoned or its partition settles
/// first (a settling partition does not wait).
async fn wait_or_stop(d: Duration, stops: &Stops) -> Option<()> {
    if stops.drain.is_cancelled() {
        return None;
    }
    tokio::select! {
        _ = stops.cancel.cancelled() => None,
        _ = stops.drain.cancelled() => None,
        _ = tokio::time::sleep(d) => Some(()),
    }
}

/// A shared handle to a [`Deliverer`].
pub type SharedDeliverer = Arc<Deliverer>;
