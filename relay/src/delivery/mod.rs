//! Delivering one record: validate, POST with retries under the policy and
//! the circuit breaker, and dead-letter what cannot be delivered.
//!
//! A record's life is `Pending → Delivered | DeadLettered`, or `Abandoned`
//! when the relay stops or loses the partition first (then it is not
//! finished, its offset is not committed, and Kafka redelivers it: at least
//! once). DESIGN invariant 3: the body is sent as produced, and every retry
//! carries the same bytes, so GUID and timestamp never change.
//!
//! Invariant 5's second half: a non-retryable answer is first shown to the
//! circuit's rejection guard ([`Circuit::rejected`]); when many chains get
//! the same class of answer in a row, the target is refusing the relay, and
//! the record is *held* (retried behind the circuit, never charged) instead
//! of dead-lettered. Invariant 8: every wait here is bounded and noted in
//! [`Health`], and a settling partition's records give up a wait at once
//! (`Stops::drain`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rand::Rng;
use rdkafka::message::{Headers, OwnedHeaders};
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, error, info_span, warn};

use cpn_schema::ContactProcessed;

use crate::circuit::{Admission, Circuit, Observation, Rejection};
use crate::classify::{Classifier, DlqReason, Verdict};
use crate::dlq::headers::DeadLetterInfo;
use crate::dlq::writer::{DLQ_WRITE_TIMEOUT, DeadLetter, DlqWriter};
use crate::health::Health;
use crate::http::Target;
use crate::metrics::RelayMetrics;
use crate::partition::Stops;
use crate::retry::{Charge, NextStep, RetryPolicy, Spent};

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

/// What every delivery of one relay shares.
#[derive(Debug)]
pub struct Deliverer {
    /// The customer's web server.
    pub target: Target,
    /// Attempt → verdict.
    pub classifier: Classifier,
    /// Per-record budget.
    pub policy: RetryPolicy,
    /// Outage detection for the target.
    pub circuit: Mutex<Circuit>,
    /// Bumped whenever the circuit may have changed state.
    pub circuit_changed: watch::Sender<u64>,
    /// Caps concurrent HTTP requests.
    pub requests: Semaphore,
    /// The target's request-rate budget.
    pub budget: Mutex<crate::budget::Budget>,
    /// Which records this relay delivers.
    pub filter: crate::route::FilterConfig,
    /// Dead-letter writer.
    pub dlq: DlqWriter,
    /// Metrics.
    pub metrics: RelayMetrics,
    /// Target URL without credentials, for dead letters.
    pub target_redacted: String,
    /// Consumer group.
    pub group: String,
    /// This relay's id.
    pub relay_id: String,
    /// The longest one attempt can take (connect and request timeouts): a
    /// request in flight is a known wait of at most this.
    pub attempt_timeout: Duration,
}

/// Releases a half-open probe slot if its task ends without reporting.
struct ProbeGuard<'a> {
    deliverer: &'a Deliverer,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.deliverer.lock_circuit().probe_abandoned();
            self.deliverer
                .circuit_changed
                .send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

impl Deliverer {
    fn lock_circuit(&self) -> MutexGuard<'_, Circuit> {
        // A panic while holding this lock leaves a consistent state machine
        // (every method is a few assignments), so a poisoned lock is usable.
        self.circuit.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Waits until an attempt for the chain `key` may go out. Returns
    /// whether it is the probe; `None` when cancelled, or when draining and
    /// it would have to wait.
    async fn admitted(&self, key: u64, stops: &Stops, health: &Health) -> Option<bool> {
        let mut changed = self.circuit_changed.subscribe();
        loop {
            changed.borrow_and_update();
            let admission = self.lock_circuit().admit(Instant::now(), key);
            self.publish_circuit_state();
            let wait_until = match admission {
                Admission::Go => return Some(false),
                Admission::Probe => return Some(true),
                Admission::Wait(until) => until,
            };
            if stops.drain.is_cancelled() {
                return None;
            }
            // Re-check now and then in case a probe holder vanished; a probe
            // out is itself a wait bounded by the attempt timeout.
            let until = wait_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            health.waiting_until(until);
            tokio::select! {
                _ = stops.cancel.cancelled() => return None,
                _ = stops.drain.cancelled() => return None,
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Waits for the target's rate budget; `None` when cancelled, or when
    /// draining and it would have to wait.
    async fn within_budget(&self, stops: &Stops, health: &Health) -> Option<()> {
        loop {
            let wait = match self.budget.lock() {
                Ok(mut b) => b.take(Instant::now()),
                Err(p) => p.into_inner().take(Instant::now()),
            };
            match wait {
                Ok(()) => return Some(()),
                Err(d) => {
                    health.waiting_for(d);
                    wait_or_stop(d, stops).await?;
                }
            }
        }
    }

    fn publish_circuit_state(&self) {
        let c = self.lock_circuit();
        self.metrics.circuit_state.set(c.state().as_gauge());
        self.metrics
            .target_rejecting
            .set(i64::from(c.is_rejecting()));
    }

    /// Delivers `rec` to its end, or returns `None` if it is abandoned or
    /// given up first ([`Stops`]).
    pub async fn process(&self, rec: &Record, stops: &Stops, health: &Health) -> Option<Finished> {
        let span = info_span!("record", topic = %rec.topic, partition = rec.partition, offset = rec.offset, guid = tracing::field::Empty);
        self.process_inner(rec, stops, health)
            .instrument(span)
            .await
    }

    async fn process_inner(
        &self,
        rec: &Record,
        stops: &Stops,
        health: &Health,
    ) -> Option<Finished> {
        let cancel = &stops.cancel;
        let Some(body) = rec.value.clone() else {
            return self
                .dead_letter(
                    rec,
                    DlqReason::InvalidPayload,
                    Failure::before_request("record has no value".into()),
                    stops,
                    health,
                )
                .await;
        };
        let event = match ContactProcessed::from_json(&body) {
            Ok(e) => e,
            Err(invalid) => {
                debug!(%invalid, "invalid payload");
                return self
                    .dead_letter(
                        rec,
                        DlqReason::InvalidPayload,
                        Failure::before_request(format!("invalid payload: {invalid}")),
                        stops,
                        health,
                    )
                    .await;
            }
        };
        if !self.filter.accepts(&event) {
            self.metrics
                .deliveries
                .with_label_values(&["skipped"])
                .inc();
            debug!("not for this relay's filter; skipped");
            return Some(Finished::Skipped);
        }
        let guid = event.message_guid.as_str().to_owned();
        tracing::Span::current().record("guid", guid.as_str());
        if let Some(h) = header_str(rec, cpn_schema::headers::GUID)
            && h != guid
        {
            warn!(
                header = h,
                "cpn.guid header differs from the body's GSW_MESSAGE_GUID; ETag uses the body"
            );
        }
        let key = rec.key_hash();
        // DESIGN invariant 5: only failures charged to this record use its
        // budget; waiting out an outage (circuit, probes, Retry-After) is free.
        let mut spent = Spent::default();
        let mut attempts: u32 = 0;
        let mut first_at: Option<SystemTime> = None;
        loop {
            let probe = self.admitted(key, stops, health).await?;
            let mut guard = ProbeGuard {
                deliverer: self,
                armed: probe,
            };
            let report = {
                let _permit = tokio::select! {
                    _ = cancel.cancelled() => return None,
                    p = self.requests.acquire() => p.ok()?,
                };
                self.within_budget(stops, health).await?;
                health.progress();
                health.waiting_for(self.attempt_timeout);
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    r = self.target.post(body.clone(), &guid) => r,
                }
            };
            health.progress();
            attempts += 1;
            if attempts > 1 {
                self.metrics.retries.inc();
            }
            first_at.get_or_insert(report.started_at);
            let class = report.attempt.class();
            self.metrics
                .attempts
                .with_label_values(&[class.as_str()])
                .inc();
            self.metrics
                .attempt_duration
                .with_label_values(&[class.as_str()])
                .observe(report.duration.as_secs_f64());
            if let (Some(429 | 503), Some(ra)) =
                (report.attempt.status(), report.attempt.retry_after())
            {
                // The target asked everybody to slow down, not just this record.
                let delay = ra.min(self.policy.retry_after_max);
                match self.budget.lock() {
                    Ok(mut b) => b.hold(Instant::now(), delay),
                    Err(p) => p.into_inner().hold(Instant::now(), delay),
                }
            }
            let verdict = self.classifier.classify(&report.attempt);
            let was_open = self.circuit_open();
            let was_rejecting = self.lock_circuit().is_rejecting();
            let mut is_charged = false;
            let mut rejection = Rejection::DeadLetter;
            match (&verdict, report.attempt.status()) {
                // A final answer with a status: the target is up, but may be
                // rejecting the relay as a whole (the guard decides).
                (Verdict::Permanent(_), Some(status)) => {
                    rejection = self
                        .lock_circuit()
                        .rejected(Instant::now(), key, status, probe);
                }
                (Verdict::Delivered | Verdict::Permanent(_), _) => {
                    let now = Instant::now();
                    let sent = now.checked_sub(report.duration).unwrap_or(now);
                    self.lock_circuit()
                        .record_sent(now, sent, key, Observation::Up, probe);
                }
                (Verdict::Retry, _) => {
                    let obs = Observation::Failure {
                        connect: matches!(report.attempt, crate::classify::Attempt::Connect(_)),
                        retry_after: report.attempt.retry_after(),
                    };
                    is_charged = self.lock_circuit().record(Instant::now(), key, obs, probe);
                }
            }
            let now_rejecting = self.lock_circuit().is_rejecting();
            if now_rejecting && !was_rejecting {
                self.metrics.circuit_opened.inc();
                error!(
                    status = report.attempt.status(),
                    response = %excerpt(&report.response_excerpt),
                    "the target rejects the relay, not the records: the same answer for many chains in a row \
                     (wrong URL, credentials or client certificate?). Holding records, probing until it accepts one"
                );
            } else if was_rejecting && !now_rejecting {
                tracing::info!("the target accepts records again: rejection guard cleared");
            }
            guard.armed = false;
            drop(guard);
            let now_open = self.circuit_open();
            if now_open != was_open || probe {
                if now_open && !was_open && !now_rejecting {
                    self.metrics.circuit_opened.inc();
                    warn!(attempt = %report.attempt.describe(), "target looks down: circuit open, consumption paused");
                } else if !now_open && was_open {
                    tracing::info!("target answers again: circuit closed, consumption resumes");
                }
                self.circuit_changed.send_modify(|v| *v = v.wrapping_add(1));
            }
            self.publish_circuit_state();
            match verdict {
                Verdict::Delivered => {
                    self.metrics
                        .deliveries
                        .with_label_values(&["delivered"])
                        .inc();
                    let produced_ms = event.timestamp.unix_millis();
                    let now_ms = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    if now_ms >= produced_ms {
                        self.metrics
                            .end_to_end
                            .observe((now_ms - produced_ms) as f64 / 1000.0);
                    }
                    debug!(attempts, "delivered");
                    return Some(Finished::Delivered);
                }
                Verdict::Permanent(reason) => {
                    if rejection == Rejection::Hold {
                        // Not this record's fault: wait for the circuit, uncharged.
                        debug!(
                            attempts,
                            status = report.attempt.status(),
                            "held: the target rejects the relay"
                        );
                        continue;
                    }
                    return self
                        .dead_letter(
                            rec,
                            reason,
                            Failure::after(report, attempts, first_at),
                            stops,
                            health,
                        )
                        .await;
                }
                Verdict::Retry => {
                    let charge = if is_charged {
                        Charge::Charged
                    } else {
                        Charge::Free
                    };
                    let jitter: f64 = rand::rng().random();
                    match self.policy.after_failure(
                        &mut spent,
                        charge,
                        report.duration,
                        report.attempt.retry_after(),
                        jitter,
                    ) {
                        NextStep::Exhausted => {
                            warn!(attempts, last = %report.attempt.describe(), "retries exhausted");
                            return self
                                .dead_letter(
                                    rec,
                                    DlqReason::RetriesExhausted,
                                    Failure::after(report, attempts, first_at),
                                    stops,
                                    health,
                                )
                                .await;
                        }
                        NextStep::RetryAfter(delay) => {
                            debug!(attempts, ?delay, last = %report.attempt.describe(), charged = is_charged, "retrying");
                            health.waiting_for(delay);
                            wait_or_stop(delay, stops).await?;
                        }
                    }
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        rec: &Record,
        reason: DlqReason,
        failure: Failure,
        stops: &Stops,
        health: &Health,
    ) -> Option<Finished> {
        let cancel = &stops.cancel;
        let info = DeadLetterInfo {
            reason,
            http_status: failure.http_status,
            error: failure.error,
            response_body: failure.response_body,
            attempts: failure.attempts,
            first_attempt_at: failure.first_attempt_at,
            last_attempt_at: failure.last_attempt_at,
            target: self.target_redacted.clone(),
            group: self.group.clone(),
            relay: self.relay_id.clone(),
            topic: rec.topic.clone(),
            partition: rec.partition,
            offset: rec.offset,
            original_timestamp_ms: rec.timestamp_ms,
        };
        let extra = info.to_headers();
        let dl = DeadLetter {
            key: rec.key.as_deref(),
            value: rec.value.as_deref(),
            original_headers: rec.headers.as_ref(),
            extra: &extra,
        };
        let mut failures: u32 = 0;
        loop {
            health.progress();
            health.waiting_for(DLQ_WRITE_TIMEOUT);
            let result = tokio::select! {
                _ = cancel.cancelled() => return None,
                r = self.dlq.write(&dl) => r,
            };
            match result {
                Ok((p, o)) => {
                    self.metrics
                        .dead_letters
                        .with_label_values(&[reason.as_str()])
                        .inc();
                    self.metrics
                        .deliveries
                        .with_label_values(&["dead_lettered"])
                        .inc();
                    tracing::info!(%reason, dlq_partition = p, dlq_offset = o, "dead-lettered");
                    return Some(Finished::DeadLettered(reason));
                }
                Err(e) => {
                    failures += 1;
                    self.metrics.dlq_write_errors.inc();
                    // Invariant 1: never drop. The offset waits until the write succeeds.
                    error!(error = %e, dlq_topic = self.dlq.topic(), failures, "cannot write to the dead-letter topic; retrying, the partition's offset does not advance");
                    let delay = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)));
                    health.waiting_for(delay);
                    wait_or_stop(delay, stops).await?;
                }
            }
        }
    }
}

/// What is known about a record's failure when it is dead-lettered.
struct Failure {
    http_status: Option<u16>,
    error: String,
    response_body: Vec<u8>,
    attempts: u32,
    first_attempt_at: Option<SystemTime>,
    last_attempt_at: Option<SystemTime>,
}

impl Failure {
    /// Refused before any request (invalid payload).
    fn before_request(error: String) -> Self {
        Failure {
            http_status: None,
            error,
            response_body: Vec::new(),
            attempts: 0,
            first_attempt_at: None,
            last_attempt_at: None,
        }
    }

    /// Failed after `attempts` requests, the last one reported in `last`.
    fn after(
        last: crate::http::AttemptReport,
        attempts: u32,
        first_at: Option<SystemTime>,
    ) -> Self {
        Failure {
            http_status: last.attempt.status(),
            error: last.attempt.describe(),
            response_body: last.response_excerpt,
            attempts,
            first_attempt_at: first_at,
            last_attempt_at: Some(last.started_at),
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

/// A response body excerpt fit for one log line: at most 200 characters,
/// control characters shown as spaces.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn header_str<'a>(rec: &'a Record, name: &str) -> Option<&'a str> {
    let h = rec.headers.as_ref()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A shared handle to a [`Deliverer`].
pub type SharedDeliverer = Arc<Deliverer>;
