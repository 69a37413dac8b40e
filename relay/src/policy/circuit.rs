//! The circuit breaker that tells a target outage from a bad record
//! (DESIGN invariant 5: outage is not poison).
//!
//! The rule:
//! - Every retryable failure (connect error, timeout, reset, retryable status
//!   such as 5xx or 429) while the circuit is closed adds to a run of
//!   consecutive failures; any answer that shows the target is up (a success,
//!   or a non-retryable status such as 400) ends the run.
//! - The circuit opens when the run reaches `failure_threshold` failures and
//!   either they came from at least `min_distinct_keys` different chains, or
//!   they were all connect errors (the request never reached the target, so
//!   it cannot be the record's fault).
//! - While it is open, nobody sends; consumption is paused and Kafka holds the
//!   backlog. After a delay (exponential from `open_initial` to `open_max`,
//!   at least a `Retry-After` the target asked for) one request goes out as a
//!   probe. A probe that gets any answer showing the target is up closes the
//!   circuit; a failed probe opens it again for longer.
//! - Failures that open the circuit, or that happen while it is open, are not
//!   charged to the record's retry budget, and time spent waiting for the
//!   circuit is not budget time. Connect errors (including TLS handshakes,
//!   proxies and credentials that cannot be had) are never charged at all.
//!   So an outage of any length sends nothing to the dead-letter topic,
//!   whatever `max_attempts` is.
//!
//! - **The target rejecting the relay** (DESIGN invariant 5, second half):
//!   non-retryable answers (4xx, 3xx) of one status class, `rejection_threshold`
//!   in a row from at least `rejection_min_distinct_keys` chains with no
//!   success in between, are the target refusing *the relay* (a wrong URL, a
//!   revoked key, a missing client certificate, a WAF page), not bad records.
//!   The circuit opens *rejecting*: the record that tripped it and every later
//!   one are held, not dead-lettered, and probes go out as in an outage. Only
//!   a success closes a rejecting circuit. Records dead-lettered before it
//!   trips are at most `rejection_threshold - 1`. A probe that is rejected
//!   again lets another chain probe first next time, so one bad record cannot
//!   hold the circuit open by always being the probe.
//!
//! What this cannot tell apart: one single chain whose every attempt fails
//! with 5xx or timeouts while no other chain is in flight. It looks like a
//! poison record and is charged as one (connect errors never are). And a run
//! of `rejection_threshold` genuinely bad records across chains with no good
//! one between them looks like a rejecting target: they are held until a
//! probe succeeds, then dead-lettered in runs shorter than the threshold.
//!
//! Pure: the caller passes the time in; `relay::delivery` is the edge.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::config::problem::{ConfigProblem, Problems};

/// Tuning of the circuit breaker: the `[circuit]` section of the
/// configuration, durations in milliseconds under keys ending `_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive retryable failures that open the circuit.
    pub failure_threshold: u32,
    /// Distinct chains the failures must come from (unless all are connect errors).
    pub min_distinct_keys: usize,
    /// How long the circuit first stays open before a probe.
    #[serde(rename = "open_initial_ms", with = "millis")]
    pub open_initial: Duration,
    /// The longest it stays open between probes.
    #[serde(rename = "open_max_ms", with = "millis")]
    pub open_max: Duration,
    /// Consecutive non-retryable answers (4xx, or 3xx) of one status class,
    /// with no success between them, that mean the target rejects the relay
    /// rather than the records: the circuit opens and records are held, not
    /// dead-lettered. 0 turns the guard off.
    pub rejection_threshold: u32,
    /// Distinct chains those answers must come from.
    pub rejection_min_distinct_keys: usize,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failure_threshold: 5,
            min_distinct_keys: 2,
            open_initial: Duration::from_millis(500),
            open_max: Duration::from_secs(30),
            rejection_threshold: 20,
            rejection_min_distinct_keys: 5,
        }
    }
}

impl CircuitConfig {
    /// Every problem of `[circuit]`, each with its key path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.failure_threshold == 0 {
            p.add("circuit.failure_threshold", "must be at least 1");
        }
        if self.min_distinct_keys == 0 {
            p.add("circuit.min_distinct_keys", "must be at least 1");
        }
        if self.open_initial.is_zero() || self.open_initial > self.open_max {
            p.add(
                "circuit.open_initial_ms",
                "must be at least 1 and not exceed circuit.open_max_ms",
            );
        }
        if self.rejection_threshold > 0 && self.rejection_min_distinct_keys == 0 {
            p.add(
                "circuit.rejection_min_distinct_keys",
                "must be at least 1 (turn the guard off with circuit.rejection_threshold = 0)",
            );
        }
        if self.rejection_threshold > 0
            && u64::from(self.rejection_threshold) < self.rejection_min_distinct_keys as u64
        {
            p.add(
                "circuit.rejection_threshold",
                format!(
                    "{} is below circuit.rejection_min_distinct_keys ({}): the guard could never trip",
                    self.rejection_threshold, self.rejection_min_distinct_keys
                ),
            );
        }
        p.into_vec()
    }
}

/// How long a chain whose probe was just rejected lets other chains take the
/// next probe first.
pub const REJECTED_PROBE_YIELD: Duration = Duration::from_millis(250);

/// What becomes of a record whose attempt got a non-retryable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The record's own fault: dead-letter it.
    DeadLetter,
    /// The target rejects the relay, not the record: hold it (not charged)
    /// and wait for the circuit.
    Hold,
}

/// What an attempt showed about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The target answered in a way that shows it is up (success, or a
    /// non-retryable status).
    Up,
    /// A retryable failure.
    Failure {
        /// The request never reached the target.
        connect: bool,
        /// The target asked to wait this long.
        retry_after: Option<Duration>,
    },
}

/// May an attempt go out now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Go,
    /// Yes, as the one probe of a half-open circuit; report its result with
    /// `probe = true`, or call [`Circuit::probe_abandoned`].
    Probe,
    /// No: wait until this instant, or until the state changes (`None`: only
    /// a state change helps).
    Wait(Option<Instant>),
}

/// The state, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Sending normally.
    Closed,
    /// Not sending until a probe is due.
    Open,
    /// One probe is (or may be) out.
    HalfOpen,
}

impl CircuitState {
    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_out: bool },
}

/// One target's circuit breaker.
#[derive(Debug, Clone)]
pub struct Circuit {
    config: CircuitConfig,
    inner: Inner,
    run: u32,
    run_connect_only: bool,
    run_keys: HashSet<u64>,
    rounds: u32,
    /// Consecutive non-retryable answers of `rejected_class` (status / 100).
    rejected_run: u32,
    rejected_class: u16,
    rejected_keys: HashSet<u64>,
    /// Open because the target rejects the relay; only a success clears it.
    rejecting: bool,
    /// The chain whose probe was rejected last (it yields the next probe).
    rejected_probe_key: Option<u64>,
    /// When the first answer of the current rejection run arrived: a
    /// success for a request sent before it is older news and clears
    /// nothing.
    rejected_since: Option<Instant>,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(config: CircuitConfig) -> Self {
        Circuit {
            config,
            inner: Inner::Closed,
            run: 0,
            run_connect_only: true,
            run_keys: HashSet::new(),
            rounds: 0,
            rejected_run: 0,
            rejected_class: 0,
            rejected_keys: HashSet::new(),
            rejecting: false,
            rejected_probe_key: None,
            rejected_since: None,
        }
    }

    /// Whether the circuit is open because the target rejects the relay.
    pub fn is_rejecting(&self) -> bool {
        self.rejecting
    }

    /// When a probe may go out while the circuit is open: `Some(t)` with `t`
    /// the time it is (or was) due, `None` when the circuit is closed or a
    /// probe is out already. The relay uses it to make sure some record is
    /// there to be the probe (DESIGN invariant 8: recovery must not depend on
    /// a delivery task existing).
    pub fn probe_due_at(&self, now: Instant) -> Option<Instant> {
        match self.inner {
            Inner::Closed | Inner::HalfOpen { probe_out: true } => None,
            Inner::Open { until } => Some(until),
            Inner::HalfOpen { probe_out: false } => Some(now),
        }
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        match self.inner {
            Inner::Closed => CircuitState::Closed,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Whether sending is held back (open or half-open).
    pub fn is_open(&self) -> bool {
        self.inner != Inner::Closed
    }

    /// Asks whether an attempt for the chain hashed as `key` may go out at
    /// `now`.
    pub fn admit(&mut self, now: Instant, key: u64) -> Admission {
        match self.inner {
            Inner::Closed => Admission::Go,
            Inner::Open { until }
                if self.rejected_probe_key == Some(key) && now < until + REJECTED_PROBE_YIELD =>
            {
                Admission::Wait(Some(until + REJECTED_PROBE_YIELD))
            }
            Inner::Open { until } if now >= until => {
                self.inner = Inner::HalfOpen { probe_out: true };
                Admission::Probe
            }
            Inner::Open { until } => Admission::Wait(Some(until)),
            Inner::HalfOpen { probe_out: false } => {
                self.inner = Inner::HalfOpen { probe_out: true };
                Admission::Probe
            }
            Inner::HalfOpen { probe_out: true } => Admission::Wait(None),
        }
    }

    /// The probe that was admitted will not report (its task was cancelled):
    /// let another one go.
    pub fn probe_abandoned(&mut self) {
        if let Inner::HalfOpen { probe_out: true } = self.inner {
            self.inner = Inner::HalfOpen { probe_out: false };
        }
    }

    /// Records an attempt's result for the chain hashed as `key`. Returns
    /// whether a failure is charged to the record's retry budget (always
    /// `false` for [`Observation::Up`]).
    pub fn record(&mut self, now: Instant, key: u64, obs: Observation, probe: bool) -> bool {
        self.record_sent(now, now, key, obs, probe)
    }

    /// [`Circuit::record`] for an attempt sent at `sent`. An answer to a
    /// request sent before the current rejection run began says nothing of
    /// the target now: with many chains in flight, successes sent before a
    /// target started refusing everybody arrive among its first refusals,
    /// and clearing the run on them would let more than
    /// `rejection_threshold - 1` records into the dead-letter topic.
    pub fn record_sent(
        &mut self,
        now: Instant,
        sent: Instant,
        key: u64,
        obs: Observation,
        probe: bool,
    ) -> bool {
        match obs {
            Observation::Up if self.rejected_since.is_some_and(|t| sent < t) => false,
            Observation::Up => {
                self.inner = Inner::Closed;
                self.reset_run();
                self.rounds = 0;
                self.reset_rejections();
                false
            }
            Observation::Failure {
                connect,
                retry_after,
            } => match self.inner {
                Inner::Closed => {
                    self.run = self.run.saturating_add(1);
                    self.run_connect_only &= connect;
                    if self.run_keys.len() < self.config.min_distinct_keys {
                        self.run_keys.insert(key);
                    }
                    let enough_keys = self.run_keys.len() >= self.config.min_distinct_keys;
                    if self.run >= self.config.failure_threshold
                        && (enough_keys || self.run_connect_only)
                    {
                        self.open(now, retry_after);
                        false
                    } else {
                        // A request that never reached the target cannot be
                        // the record's fault: connect errors are never charged,
                        // whatever max_attempts and failure_threshold are.
                        !connect
                    }
                }
                Inner::Open { .. } | Inner::HalfOpen { .. } => {
                    if probe {
                        self.open(now, retry_after);
                    }
                    false
                }
            },
        }
    }

    /// Records a non-retryable answer (`status`, e.g. 400 or 302) for the
    /// chain hashed as `key`, and says whether the record is dead-lettered or
    /// held because the target rejects the relay as a whole.
    pub fn rejected(&mut self, now: Instant, key: u64, status: u16, probe: bool) -> Rejection {
        // The target answered: a run of retryable failures ends here.
        self.reset_run();
        if self.rejecting {
            if probe {
                self.rejected_probe_key = Some(key);
                self.open(now, None);
            } else if self.inner == Inner::Closed {
                // Unreachable in practice (rejecting implies not closed);
                // keep the state machine consistent anyway.
                self.inner = Inner::Open { until: now };
            }
            return Rejection::Hold;
        }
        if self.config.rejection_threshold == 0 {
            self.close_after_answer(probe);
            return Rejection::DeadLetter;
        }
        let class = status / 100;
        if class != self.rejected_class {
            self.reset_rejections();
            self.rejected_class = class;
        }
        if self.rejected_run == 0 {
            self.rejected_since = Some(now);
        }
        self.rejected_run = self.rejected_run.saturating_add(1);
        if self.rejected_keys.len() < self.config.rejection_min_distinct_keys {
            self.rejected_keys.insert(key);
        }
        if self.rejected_run >= self.config.rejection_threshold
            && self.rejected_keys.len() >= self.config.rejection_min_distinct_keys
        {
            self.rejecting = true;
            self.rejected_probe_key = probe.then_some(key);
            self.open(now, None);
            Rejection::Hold
        } else {
            self.close_after_answer(probe);
            Rejection::DeadLetter
        }
    }

    /// A non-retryable answer while not rejecting shows the target is up,
    /// as a success does: a half-open circuit closes.
    fn close_after_answer(&mut self, probe: bool) {
        if probe || self.inner != Inner::Closed {
            self.inner = Inner::Closed;
            self.rounds = 0;
        }
    }

    fn reset_rejections(&mut self) {
        self.rejected_run = 0;
        self.rejected_keys.clear();
        self.rejecting = false;
        self.rejected_probe_key = None;
        self.rejected_since = None;
    }

    fn open(&mut self, now: Instant, retry_after: Option<Duration>) {
        let factor = 2u32.saturating_pow(self.rounds.min(30));
        let mut delay = self
            .config
            .open_initial
            .saturating_mul(factor)
            .min(self.config.open_max);
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(self.config.open_max));
        }
        self.rounds = self.rounds.saturating_add(1);
        self.inner = Inner::Open { until: now + delay };
        self.reset_run();
    }

    fn reset_run(&mut self) {
        self.run = 0;
        self.run_connect_only = true;
        self.run_keys.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: Observation = Observation::Failure {
        connect: false,
        retry_after: None,
    };
    const REFUSED: Observation = Observation::Failure {
        connect: true,
        retry_after: None,
    };

    fn circuit() -> Circuit {
        Circuit::new(CircuitConfig {
            failure_threshold: 3,
            min_distinct_keys: 2,
            open_initial: Duration::from_secs(1),
            open_max: Duration::from_secs(8),
            rejection_threshold: 6,
            rejection_min_distinct_keys: 3,
        })
    }

    #[test]
    fn the_same_4xx_across_chains_trips_the_guard_and_holds_records() {
        let t = Instant::now();
        let mut c = circuit();
        for k in 0..5 {
            assert_eq!(c.rejected(t, k % 3, 400, false), Rejection::DeadLetter);
        }
        assert!(!c.is_open());
        assert_eq!(
            c.rejected(t, 1, 404, false),
            Rejection::Hold,
            "the 6th 4xx in a row, from 3 chains, trips"
        );
        assert!(c.is_open() && c.is_rejecting());
        assert_eq!(c.rejected(t, 9, 400, false), Rejection::Hold);
        // A rejected probe keeps it open and rejecting, and backs off.
        let later = t + Duration::from_secs(1);
        assert_eq!(c.admit(later, 7), Admission::Probe);
        assert_eq!(c.rejected(later, 7, 400, true), Rejection::Hold);
        assert!(c.is_rejecting());
        assert_eq!(
            c.admit(later, 8),
            Admission::Wait(Some(later + Duration::from_secs(2)))
        );
        // Only a success clears it.
        let again = later + Duration::from_secs(2);
        assert_eq!(c.admit(again, 8), Admission::Probe);
        c.record(again, 8, Observation::Up, true);
        assert!(!c.is_open() && !c.is_rejecting());
        assert_eq!(c.rejected(again, 1, 400, false), Rejection::DeadLetter);
    }

    #[test]
    fn a_success_or_another_class_restarts_the_rejection_run() {
        let t = Instant::now();
        let mut c = circuit();
        for round in 0..3 {
            for k in 0..5 {
                assert_eq!(c.rejected(t, k, 400, false), Rejection::DeadLetter);
            }
            if round == 0 {
                c.record(t, 0, Observation::Up, false);
            } else {
                assert_eq!(c.rejected(t, 0, 302, false), Rejection::DeadLetter);
            }
        }
        assert!(!c.is_open());
    }

    #[test]
    fn a_success_sent_before_the_refusals_began_does_not_restart_the_run() {
        let sent = Instant::now();
        let t = sent + Duration::from_millis(5);
        let mut c = circuit();
        for k in 0..5 {
            assert_eq!(c.rejected(t, k % 3, 401, false), Rejection::DeadLetter);
            // Answers to requests that left before the target turned.
            c.record_sent(t, sent, 9, Observation::Up, false);
        }
        assert_eq!(
            c.rejected(t, 1, 401, false),
            Rejection::Hold,
            "stale successes among the first refusals do not reset the guard"
        );
        c.record_sent(t, sent, 9, Observation::Up, false);
        assert!(c.is_rejecting(), "nor clear it once tripped");
        c.record_sent(t, t, 9, Observation::Up, true);
        assert!(!c.is_rejecting(), "a success sent since does");
    }

    #[test]
    fn one_chain_rejected_over_and_over_is_its_own_fault() {
        let t = Instant::now();
        let mut c = circuit();
        for _ in 0..50 {
            assert_eq!(c.rejected(t, 4, 400, false), Rejection::DeadLetter);
        }
        assert!(!c.is_open());
    }

    #[test]
    fn a_zero_threshold_turns_the_guard_off() {
        let t = Instant::now();
        let mut c = Circuit::new(CircuitConfig {
            rejection_threshold: 0,
            ..CircuitConfig::default()
        });
        for k in 0..100 {
            assert_eq!(c.rejected(t, k, 401, false), Rejection::DeadLetter);
        }
        assert!(!c.is_open());
    }

    #[test]
    fn the_chain_whose_probe_was_rejected_lets_another_probe_first() {
        let t = Instant::now();
        let mut c = circuit();
        for k in 0..6 {
            c.rejected(t, k % 3, 401, false);
        }
        let due = t + Duration::from_secs(1);
        assert_eq!(c.admit(due, 5), Admission::Probe);
        c.rejected(due, 5, 401, true);
        let next = due + Duration::from_secs(2);
        assert_eq!(
            c.admit(next, 5),
            Admission::Wait(Some(next + REJECTED_PROBE_YIELD)),
            "the last rejected chain yields"
        );
        assert_eq!(
            c.admit(next, 6),
            Admission::Probe,
            "another chain goes first"
        );
        c.probe_abandoned();
        assert_eq!(
            c.admit(next + REJECTED_PROBE_YIELD, 5),
            Admission::Probe,
            "alone, it still probes after the yield"
        );
    }

    #[test]
    fn a_non_retryable_answer_closes_an_outage_circuit_and_is_dead_lettered() {
        let t = Instant::now();
        let mut c = circuit();
        for k in 0..3 {
            c.record(t, k, FAIL, false);
        }
        let later = t + Duration::from_secs(1);
        assert_eq!(c.admit(later, 1), Admission::Probe);
        assert_eq!(c.rejected(later, 1, 400, true), Rejection::DeadLetter);
        assert_eq!(c.state(), CircuitState::Closed);
    }

    #[test]
    fn the_probe_is_due_when_the_open_time_is_over_and_none_is_out() {
        let t = Instant::now();
        let mut c = circuit();
        assert_eq!(c.probe_due_at(t), None, "closed");
        for k in 0..3 {
            c.record(t, k, FAIL, false);
        }
        let until = t + Duration::from_secs(1);
        assert_eq!(c.probe_due_at(t), Some(until));
        assert_eq!(c.admit(until, 1), Admission::Probe);
        assert_eq!(c.probe_due_at(until), None, "a probe is out");
        c.probe_abandoned();
        assert_eq!(c.probe_due_at(until), Some(until), "due again at once");
    }

    #[test]
    fn failures_across_keys_open_the_circuit_and_are_not_charged() {
        let t = Instant::now();
        let mut c = circuit();
        assert!(c.record(t, 1, FAIL, false));
        assert!(c.record(t, 2, FAIL, false));
        assert!(
            !c.record(t, 1, FAIL, false),
            "the opening failure is not charged"
        );
        assert_eq!(c.state(), CircuitState::Open);
        assert_eq!(
            c.admit(t, 0),
            Admission::Wait(Some(t + Duration::from_secs(1)))
        );
        assert!(
            !c.record(t, 3, FAIL, false),
            "failures while open are not charged"
        );
    }

    #[test]
    fn one_key_failing_with_5xx_is_a_poison_record_not_an_outage() {
        let t = Instant::now();
        let mut c = circuit();
        for _ in 0..10 {
            assert!(c.record(t, 7, FAIL, false), "charged to the record");
        }
        assert_eq!(c.state(), CircuitState::Closed);
    }

    #[test]
    fn connect_errors_open_even_for_one_key_and_are_never_charged() {
        let t = Instant::now();
        let mut c = circuit();
        assert!(!c.record(t, 7, REFUSED, false));
        assert!(!c.record(t, 7, REFUSED, false));
        assert!(!c.is_open());
        assert!(!c.record(t, 7, REFUSED, false));
        assert!(c.is_open());
    }

    #[test]
    fn an_answer_from_the_target_ends_the_run() {
        let t = Instant::now();
        let mut c = circuit();
        c.record(t, 1, FAIL, false);
        c.record(t, 2, FAIL, false);
        c.record(t, 3, Observation::Up, false);
        assert!(c.record(t, 1, FAIL, false));
        assert!(c.record(t, 2, FAIL, false));
        assert_eq!(c.state(), CircuitState::Closed);
    }

    #[test]
    fn one_probe_at_a_time_then_close_on_success() {
        let t = Instant::now();
        let mut c = circuit();
        for k in 0..3 {
            c.record(t, k, FAIL, false);
        }
        let later = t + Duration::from_secs(1);
        assert_eq!(c.admit(later, 0), Admission::Probe);
        assert_eq!(c.admit(later, 0), Admission::Wait(None), "only one probe");
        c.record(later, 9, Observation::Up, true);
        assert_eq!(c.state(), CircuitState::Closed);
        assert_eq!(c.admit(later, 0), Admission::Go);
    }

    #[test]
    fn failed_probes_back_off_exponentially_up_to_the_max() {
        let mut t = Instant::now();
        let mut c = circuit();
        for k in 0..3 {
            c.record(t, k, FAIL, false);
        }
        let mut waits = vec![];
        for _ in 0..5 {
            let Admission::Wait(Some(until)) = c.admit(t, 0) else {
                panic!("expected open")
            };
            waits.push((until - t).as_secs());
            t = until;
            assert_eq!(c.admit(t, 0), Admission::Probe);
            assert!(!c.record(t, 1, FAIL, true));
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 8]);
    }

    #[test]
    fn abandoned_probe_lets_another_go() {
        let t = Instant::now();
        let mut c = circuit();
        for k in 0..3 {
            c.record(t, k, REFUSED, false);
        }
        let later = t + Duration::from_secs(2);
        assert_eq!(c.admit(later, 0), Admission::Probe);
        c.probe_abandoned();
        assert_eq!(c.admit(later, 0), Admission::Probe);
    }

    #[test]
    fn retry_after_stretches_the_open_time() {
        let t = Instant::now();
        let mut c = circuit();
        c.record(t, 1, FAIL, false);
        c.record(t, 2, FAIL, false);
        c.record(
            t,
            3,
            Observation::Failure {
                connect: false,
                retry_after: Some(Duration::from_secs(5)),
            },
            false,
        );
        assert_eq!(
            c.admit(t, 0),
            Admission::Wait(Some(t + Duration::from_secs(5)))
        );
    }
}
