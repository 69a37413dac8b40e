//! Retry policy: exponential backoff with full jitter, bounded by attempts
//! and elapsed time, honouring `Retry-After` up to a ceiling.
//!
//! Pure: no clock and no random number generator inside. The caller passes
//! each attempt's duration and a jitter sample in `[0, 1)`.
//!
//! A record's budget ([`Spent`]) is used only by failures the circuit breaker
//! charges to the record: their request time and the backoff after them.
//! An uncharged failure (a connect error, or any failure while the target
//! looks down for everybody) costs nothing, however long its request, its
//! `Retry-After` or the wait for the circuit: an outage of any length never
//! exhausts a record (DESIGN invariant 5).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::config::problem::{ConfigProblem, Problems};

/// How often and how long one record is retried: the `[retry]` section of
/// the configuration, durations in milliseconds under keys ending `_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts a record may use, the first included. At least 1.
    pub max_attempts: u32,
    /// Cap of the backoff before jitter for the first retry.
    #[serde(rename = "initial_delay_ms", with = "millis")]
    pub initial_delay: Duration,
    /// Cap of any backoff delay.
    #[serde(rename = "max_delay_ms", with = "millis")]
    pub max_delay: Duration,
    /// Growth factor of the cap per attempt. At least 1.
    pub multiplier: f64,
    /// Retry budget time per record: the request time of its charged
    /// failures and the backoff after them, beyond which no retry starts.
    /// An outage costs nothing.
    #[serde(rename = "max_elapsed_ms", with = "millis")]
    pub max_elapsed: Duration,
    /// The longest `Retry-After` that is honoured; longer requests are cut to it.
    #[serde(rename = "retry_after_max_ms", with = "millis")]
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            max_elapsed: Duration::from_secs(300),
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            retry_after_max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Every problem of `[retry]`, each with its key path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.max_attempts == 0 {
            p.add("retry.max_attempts", "must be at least 1");
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            p.add("retry.multiplier", "must be a number of at least 1");
        }
        if self.initial_delay > self.max_delay {
            p.add(
                "retry.initial_delay_ms",
                "must not exceed retry.max_delay_ms",
            );
        }
        p.into_vec()
    }
}

/// What to do after a failed, retryable attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// The budget is spent: dead-letter as `retries_exhausted`.
    Exhausted,
}

impl RetryPolicy {
    /// The backoff cap before the retry that follows attempt number
    /// `attempts` (1-based): `initial_delay * multiplier^(attempts-1)`, at
    /// most `max_delay`.
    pub fn cap(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(64);
        let factor = self.multiplier.max(1.0).powi(exp as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max_delay.as_secs_f64() {
            self.max_delay
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// Full jitter: a delay uniformly in `[0, cap)`, from `jitter` in `[0, 1)`.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let j = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.cap(attempts).mul_f64(j)
    }

    /// The wait before the next attempt after `attempts` failures: the
    /// full-jitter backoff, or a longer `Retry-After` from the target,
    /// honoured up to `retry_after_max`.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let backoff = self.backoff(attempts, jitter);
        match retry_after {
            Some(ra) => backoff.max(ra.min(self.retry_after_max)),
            None => backoff,
        }
    }

    /// Decides the next step after `attempts` counted failed attempts, with
    /// `elapsed` budget time used since the first one.
    pub fn next_step(
        &self,
        attempts: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> NextStep {
        if attempts >= self.max_attempts {
            return NextStep::Exhausted;
        }
        let delay = self.delay(attempts, retry_after, jitter);
        if elapsed.saturating_add(delay) > self.max_elapsed {
            return NextStep::Exhausted;
        }
        NextStep::RetryAfter(delay)
    }

    /// Books a failed, retryable attempt that took `took` into `spent` and
    /// decides the next step. A [`Charge::Charged`] failure uses the budget
    /// (one attempt, its request time and the backoff that follows) and may
    /// exhaust it; a [`Charge::Free`] one only says how long to wait and never
    /// exhausts.
    pub fn after_failure(
        &self,
        spent: &mut Spent,
        charge: Charge,
        took: Duration,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> NextStep {
        match charge {
            Charge::Free => {
                NextStep::RetryAfter(self.delay(spent.attempts.max(1), retry_after, jitter))
            }
            Charge::Charged => {
                spent.attempts = spent.attempts.saturating_add(1);
                spent.time = spent.time.saturating_add(took);
                let step = self.next_step(spent.attempts, spent.time, retry_after, jitter);
                if let NextStep::RetryAfter(delay) = step {
                    spent.time = spent.time.saturating_add(delay);
                }
                step
            }
        }
    }
}

/// Whether a failure counts against the record's retry budget (decided by
/// the circuit breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The record's own failure, as far as anyone can tell.
    Charged,
    /// Not the record's fault: a connect error, or the target is down.
    Free,
}

/// What one record has used of its retry budget so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    /// Charged failed attempts.
    pub attempts: u32,
    /// Request time of the charged attempts plus the backoff after them.
    pub time: Duration,
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110
/// §10.2.3), relative to `now`. A date in the past means no wait. `None` for
/// a value that is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate instead of failing.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(60),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            multiplier: 2.0,
            retry_after_max: Duration::from_secs(30),
        }
    }

    #[test]
    fn cap_grows_exponentially_then_stops_at_max() {
        let p = policy();
        let caps: Vec<_> = (1..=7).map(|a| p.cap(a).as_millis()).collect();
        assert_eq!(caps, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(p.cap(u32::MAX), p.max_delay);
    }

    #[test]
    fn full_jitter_spans_zero_to_cap() {
        let p = policy();
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(200));
        assert!(p.backoff(3, 0.999_999) < Duration::from_millis(400));
        assert_eq!(
            p.backoff(3, f64::NAN),
            Duration::ZERO,
            "bad jitter is not a panic"
        );
    }

    #[test]
    fn stops_after_max_attempts() {
        let p = policy();
        assert!(matches!(
            p.next_step(4, Duration::ZERO, None, 0.5),
            NextStep::RetryAfter(_)
        ));
        assert_eq!(
            p.next_step(5, Duration::ZERO, None, 0.5),
            NextStep::Exhausted
        );
    }

    #[test]
    fn stops_when_the_delay_would_pass_max_elapsed() {
        let p = policy();
        assert_eq!(
            p.next_step(1, Duration::from_secs(60), None, 0.0),
            NextStep::RetryAfter(Duration::ZERO)
        );
        assert_eq!(
            p.next_step(2, Duration::from_millis(59_900), None, 0.9),
            NextStep::Exhausted
        );
    }

    #[test]
    fn retry_after_wins_over_shorter_backoff_and_is_capped() {
        let p = policy();
        assert_eq!(
            p.next_step(1, Duration::ZERO, Some(Duration::from_secs(7)), 0.5),
            NextStep::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            p.next_step(1, Duration::ZERO, Some(Duration::from_secs(3600)), 0.5),
            NextStep::RetryAfter(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert!(parse_retry_after("99999999999999999999999", now).is_some());
    }

    #[test]
    fn free_failures_never_exhaust_however_long_they_take() {
        let p = policy();
        let mut spent = Spent::default();
        for _ in 0..10_000 {
            let step = p.after_failure(
                &mut spent,
                Charge::Free,
                Duration::from_secs(30),
                Some(Duration::from_secs(3600)),
                0.9,
            );
            assert_eq!(step, NextStep::RetryAfter(p.retry_after_max));
        }
        assert_eq!(spent, Spent::default(), "nothing was charged");
    }

    #[test]
    fn charged_failures_book_request_time_and_backoff() {
        let p = policy();
        let mut spent = Spent::default();
        let step = p.after_failure(
            &mut spent,
            Charge::Charged,
            Duration::from_secs(1),
            Some(Duration::from_secs(7)),
            0.5,
        );
        assert_eq!(step, NextStep::RetryAfter(Duration::from_secs(7)));
        assert_eq!(
            spent,
            Spent {
                attempts: 1,
                time: Duration::from_secs(8)
            }
        );
        // 8 s used: a 30 s request takes the record past its 60 s after the
        // next 30 s Retry-After.
        let step = p.after_failure(
            &mut spent,
            Charge::Charged,
            Duration::from_secs(30),
            Some(Duration::from_secs(30)),
            0.5,
        );
        assert_eq!(step, NextStep::Exhausted);
    }

    #[test]
    fn charged_failures_exhaust_after_max_attempts_even_between_free_ones() {
        let p = policy();
        let mut spent = Spent::default();
        let mut steps = Vec::new();
        for n in 0..20 {
            let charge = if n % 3 == 0 {
                Charge::Charged
            } else {
                Charge::Free
            };
            steps.push(p.after_failure(&mut spent, charge, Duration::ZERO, None, 0.0));
        }
        let exhausted_at = steps.iter().position(|s| *s == NextStep::Exhausted);
        // Charged at n = 0, 3, 6, 9, 12: the fifth charged failure ends it.
        assert_eq!(exhausted_at, Some(12));
    }

    proptest! {
        #[test]
        fn only_charged_failures_use_the_budget(
            charges in proptest::collection::vec(any::<bool>(), 0..64),
            took_ms in 0u64..120_000, ra in proptest::option::of(0u64..7_200_000)
        ) {
            let p = policy();
            let mut spent = Spent::default();
            let mut charged = 0u32;
            for c in charges {
                let charge = if c { Charge::Charged } else { Charge::Free };
                charged += u32::from(c);
                let step = p.after_failure(&mut spent, charge, Duration::from_millis(took_ms), ra.map(Duration::from_millis), 0.5);
                prop_assert_eq!(spent.attempts, charged);
                if step == NextStep::Exhausted {
                    prop_assert!(c, "a free failure exhausted the record");
                    break;
                }
            }
        }

        #[test]
        fn delay_never_exceeds_the_larger_of_cap_and_retry_after_ceiling(
            attempts in 0u32..100, jitter in 0.0f64..1.0, ra in proptest::option::of(0u64..100_000)
        ) {
            let p = policy();
            if let NextStep::RetryAfter(d) = p.next_step(attempts, Duration::ZERO, ra.map(Duration::from_millis), jitter) {
                prop_assert!(d <= p.max_delay.max(p.retry_after_max));
            }
        }
    }
}
