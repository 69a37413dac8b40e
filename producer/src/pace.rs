//! `Pace`: when the n-th event of a `--rate R` run is due.
//!
//! A schedule, not a sleeper: the caller owns the clock and sleeps until
//! `start + pace.due(n)`. Computing each due time from the start (rather than
//! sleeping a fixed interval after each event) keeps the long-run rate exact:
//! a late event does not push back the ones after it. Pure.

use std::time::Duration;

/// A fixed-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Events per second; finite and positive.
    per_second: f64,
}

/// Why a rate cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate: must be a positive number of events per second, got {0}")]
pub struct RateError(pub f64);

impl Pace {
    /// A schedule of `per_second` events per second.
    ///
    /// # Errors
    /// [`RateError`] unless `per_second` is finite and above zero.
    pub fn new(per_second: f64) -> Result<Self, RateError> {
        if per_second.is_finite() && per_second > 0.0 {
            Ok(Self { per_second })
        } else {
            Err(RateError(per_second))
        }
    }

    /// How long after the start event `n` (0-based) is due.
    #[must_use]
    pub fn due(&self, n: u64) -> Duration {
        // f64 holds every n below 2^53 exactly; beyond that, sub-nanosecond
        // drift is irrelevant. Clamp keeps Duration construction total.
        let secs = n as f64 / self.per_second;
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_follow_the_rate_from_the_start() {
        let p = Pace::new(1_000.0).unwrap();
        assert_eq!(p.due(0), Duration::ZERO);
        assert_eq!(p.due(1), Duration::from_millis(1));
        assert_eq!(p.due(1_500), Duration::from_millis(1_500));
        let slow = Pace::new(0.5).unwrap();
        assert_eq!(slow.due(3), Duration::from_secs(6));
    }

    #[test]
    fn rejects_rates_that_are_not_positive_and_finite() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::new(r).is_err(), "{r}");
        }
    }
}
