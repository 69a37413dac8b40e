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
//! What this cannot tell apart: one single chain whose every attempt fails
//! with 5xx or timeouts while no other chain is in flight. It looks like a
//! poison record and is charged as one (connect errors never are).
//!
//! Pure: the caller passes the time in; `relay::delivery` is the edge.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Tuning of the circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive retryable failures that open the circuit.
    pub failure_threshold: u32,
    /// Distinct chains the failures must come from (unless all are connect errors).
    pub min_distinct_keys: usize,
    /// How long the circuit first stays open before a probe.
    pub open_initial: Duration,
    /// The longest it stays open between probes.
    pub open_max: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failure_threshold: 5,
            min_distinct_keys: 2,
            open_initial: Duration::from_millis(500),
            open_max: Duration::from_secs(30),
        }
    }
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

    /// Asks whether an attempt may go out at `now`.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.inner {
            Inner::Closed => Admission::Go,
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
        match obs {
            Observation::Up => {
                self.inner = Inner::Closed;
                self.reset_run();
                self.rounds = 0;
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
        })
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
            c.admit(t),
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
        assert_eq!(c.admit(later), Admission::Probe);
        assert_eq!(c.admit(later), Admission::Wait(None), "only one probe");
        c.record(later, 9, Observation::Up, true);
        assert_eq!(c.state(), CircuitState::Closed);
        assert_eq!(c.admit(later), Admission::Go);
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
            let Admission::Wait(Some(until)) = c.admit(t) else {
                panic!("expected open")
            };
            waits.push((until - t).as_secs());
            t = until;
            assert_eq!(c.admit(t), Admission::Probe);
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
        assert_eq!(c.admit(later), Admission::Probe);
        c.probe_abandoned();
        assert_eq!(c.admit(later), Admission::Probe);
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
            c.admit(t),
            Admission::Wait(Some(t + Duration::from_secs(5)))
        );
    }
}
