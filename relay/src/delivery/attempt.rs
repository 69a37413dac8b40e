//! `Pending → Cleared → Attempted → Step`: one request and what follows
//! from its answer.
//!
//! `turn` waits for the circuit to admit the chain, for a request slot and
//! for the target's rate budget; `attempt` sends the POST; `judge` shows the
//! answer to the circuit (outage or rejection guard) and the retry policy.
//! Each wait is bounded and noted in [`Health`] (DESIGN invariant 8).

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use tokio::sync::SemaphorePermit;
use tracing::{debug, error, warn};

use super::dead_letter::Failure;
use super::pending::Pending;
use super::{Deliverer, Finished, Stops, wait_or_stop};
use crate::observe::health::Health;
use crate::policy::circuit::{Admission, Observation, Rejection};
use crate::policy::classify::{Attempt, DlqReason, Verdict};
use crate::policy::retry::{Charge, NextStep};
use crate::target::client::AttemptReport;

/// A pending delivery cleared to send: admitted by the circuit (perhaps as
/// its probe), holding a request slot, within the rate budget.
#[derive(Debug)]
pub(crate) struct Cleared<'d> {
    guard: ProbeGuard<'d>,
    permit: SemaphorePermit<'d>,
}

/// One request sent, with its answer.
#[derive(Debug)]
pub(crate) struct Attempted<'d> {
    report: AttemptReport,
    guard: ProbeGuard<'d>,
}

/// What follows an attempt.
#[derive(Debug)]
pub(super) enum Step {
    /// The target took the record.
    Delivered,
    /// The target refuses the relay, not the record: try again when the
    /// circuit admits it, uncharged (DESIGN invariant 5).
    Hold,
    /// Retry after this backoff.
    RetryAfter(Duration),
    /// The record cannot be delivered: dead-letter it with this reason.
    DeadLetter(DlqReason, Failure),
}

/// Releases a half-open probe slot if its task ends without reporting.
#[derive(Debug)]
struct ProbeGuard<'d> {
    deliverer: &'d Deliverer,
    armed: bool,
}

impl ProbeGuard<'_> {
    /// Whether this attempt is the circuit's probe.
    fn is_probe(&self) -> bool {
        self.armed
    }

    /// The probe reported: nothing to release.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.deliverer.lock_circuit().probe_abandoned();
            self.deliverer.circuit_moved();
        }
    }
}

impl Deliverer {
    /// Waits until `pending` may be sent; `None` when it is abandoned, or
    /// when its partition settles and it would have to wait.
    pub(super) async fn turn(
        &self,
        pending: &Pending,
        stops: &Stops,
        health: &Health,
    ) -> Option<Cleared<'_>> {
        let probe = self.admitted(pending.key, stops, health).await?;
        let guard = ProbeGuard {
            deliverer: self,
            armed: probe,
        };
        let permit = tokio::select! {
            _ = stops.cancel.cancelled() => return None,
            p = self.requests.acquire() => p.ok()?,
        };
        self.within_budget(stops, health).await?;
        Some(Cleared { guard, permit })
    }

    /// Sends one request for `pending`; `None` when it is abandoned first.
    pub(super) async fn attempt<'d>(
        &'d self,
        pending: &mut Pending,
        cleared: Cleared<'d>,
        stops: &Stops,
        health: &Health,
    ) -> Option<Attempted<'d>> {
        let Cleared { guard, permit } = cleared;
        health.progress();
        health.waiting_for(self.attempt_timeout);
        let report = tokio::select! {
            _ = stops.cancel.cancelled() => return None,
            r = self.target.post(pending.body.clone(), &pending.guid) => r,
        };
        drop(permit);
        health.progress();
        pending.attempts += 1;
        if pending.attempts > 1 {
            self.metrics.retries.inc();
        }
        pending.first_at.get_or_insert(report.started_at);
        let class = report.attempt.class().index();
        self.counted.attempts[class].inc();
        self.counted.durations[class].observe(report.duration.as_secs_f64());
        if let (Some(429 | 503), Some(ra)) = (report.attempt.status(), report.attempt.retry_after())
        {
            // The target asked everybody to slow down, not just this record.
            let delay = ra.min(self.policy.retry_after_max);
            self.lock_budget().hold(Instant::now(), delay);
        }
        Some(Attempted { report, guard })
    }

    /// What follows `attempted`: the circuit learns of the answer, then the
    /// verdict and the retry policy decide.
    pub(super) fn judge(&self, pending: &mut Pending, attempted: Attempted<'_>) -> Step {
        let Attempted { report, guard } = attempted;
        let probe = guard.is_probe();
        let verdict = self.classifier.classify(&report.attempt);
        let (was_open, was_rejecting) = {
            let c = self.lock_circuit();
            (c.is_open(), c.is_rejecting())
        };
        let (charge, rejection) = self.tell_circuit(pending.key, &verdict, &report, probe);
        self.announce(was_open, was_rejecting, &report, probe);
        guard.disarm();
        match verdict {
            Verdict::Delivered => Step::Delivered,
            Verdict::Permanent(_) if rejection == Rejection::Hold => {
                debug!(
                    attempts = pending.attempts,
                    status = report.attempt.status(),
                    "held: the target rejects the relay"
                );
                Step::Hold
            }
            Verdict::Permanent(reason) => Step::DeadLetter(
                reason,
                Failure::after(report, pending.attempts, pending.first_at),
            ),
            Verdict::Retry => {
                let jitter: f64 = rand::rng().random();
                match self.policy.after_failure(
                    &mut pending.spent,
                    charge,
                    report.duration,
                    report.attempt.retry_after(),
                    jitter,
                ) {
                    NextStep::Exhausted => {
                        warn!(attempts = pending.attempts, last = %report.attempt.describe(), "retries exhausted");
                        Step::DeadLetter(
                            DlqReason::RetriesExhausted,
                            Failure::after(report, pending.attempts, pending.first_at),
                        )
                    }
                    NextStep::RetryAfter(delay) => {
                        debug!(attempts = pending.attempts, ?delay, last = %report.attempt.describe(), charged = charge == Charge::Charged, "retrying");
                        Step::RetryAfter(delay)
                    }
                }
            }
        }
    }

    /// Counts a delivered record.
    pub(super) fn delivered(&self, pending: &Pending) -> Finished {
        self.counted.delivered.inc();
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if now_ms >= pending.produced_ms {
            self.metrics
                .end_to_end
                .observe((now_ms - pending.produced_ms) as f64 / 1000.0);
        }
        debug!(attempts = pending.attempts, "delivered");
        Finished::Delivered
    }

    /// Shows one answer to the circuit: whether the failure is charged to
    /// the record, and whether a refusal is the record's or the target's.
    fn tell_circuit(
        &self,
        key: u64,
        verdict: &Verdict,
        report: &AttemptReport,
        probe: bool,
    ) -> (Charge, Rejection) {
        let mut circuit = self.lock_circuit();
        match (verdict, report.attempt.status()) {
            // A final answer with a status: the target is up, but may be
            // rejecting the relay as a whole (the guard decides).
            (Verdict::Permanent(_), Some(status)) => (
                Charge::Free,
                circuit.rejected(Instant::now(), key, status, probe),
            ),
            (Verdict::Delivered | Verdict::Permanent(_), _) => {
                let now = Instant::now();
                let sent = now.checked_sub(report.duration).unwrap_or(now);
                circuit.record_sent(now, sent, key, Observation::Up, probe);
                (Charge::Free, Rejection::DeadLetter)
            }
            (Verdict::Retry, _) => {
                let obs = Observation::Failure {
                    connect: matches!(report.attempt, Attempt::Connect(_)),
                    retry_after: report.attempt.retry_after(),
                };
                let charge = if circuit.record(Instant::now(), key, obs, probe) {
                    Charge::Charged
                } else {
                    Charge::Free
                };
                (charge, Rejection::DeadLetter)
            }
        }
    }

    /// Logs and counts what changed in the circuit with this answer, and
    /// wakes the deliveries waiting on it.
    fn announce(&self, was_open: bool, was_rejecting: bool, report: &AttemptReport, probe: bool) {
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
        let now_open = self.circuit_open();
        if now_open != was_open || probe {
            if now_open && !was_open && !now_rejecting {
                self.metrics.circuit_opened.inc();
                warn!(attempt = %report.attempt.describe(), "target looks down: circuit open, consumption paused");
            } else if !now_open && was_open {
                tracing::info!("target answers again: circuit closed, consumption resumes");
            }
            self.circuit_moved();
        }
        self.publish_circuit_state();
    }

    /// Wakes the deliveries waiting for the circuit to admit them.
    fn circuit_moved(&self) {
        self.circuit_changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn publish_circuit_state(&self) {
        let c = self.lock_circuit();
        self.metrics.circuit_state.set(c.state().as_gauge());
        self.metrics
            .target_rejecting
            .set(i64::from(c.is_rejecting()));
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
            let wait = self.lock_budget().take(Instant::now());
            match wait {
                Ok(()) => return Some(()),
                Err(d) => {
                    health.waiting_for(d);
                    wait_or_stop(d, stops).await?;
                }
            }
        }
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
