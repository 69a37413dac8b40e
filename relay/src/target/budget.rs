//! The per-target request budget: at most `max_requests_per_second` (a token
//! bucket) and `max_concurrent_requests` at once, and a `Retry-After` on a 429
//! or 503 holds back the whole target, not just the one request.
//!
//! The budget is per relay process. With N replicas in a group the target
//! sees up to N times the rate; divide the rate by the replica count (a
//! budget shared across replicas is a later goal).
//!
//! Pure: the caller passes the time in.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::problem::ConfigProblem;

/// `[target.budget]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Requests per second to the target; 0 means no limit.
    #[serde(default)]
    pub max_requests_per_second: f64,
    /// Requests that may go out at once after an idle spell; default a tenth
    /// of a second's worth (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests in flight to the target at once; 0 means
    /// `concurrency.max_in_flight`.
    #[serde(default)]
    pub max_concurrent_requests: usize,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            max_requests_per_second: 0.0,
            burst: None,
            max_concurrent_requests: 0,
        }
    }
}

impl BudgetConfig {
    /// Problems of this section, with key paths under `target.budget`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = vec![];
        let r = self.max_requests_per_second;
        if !(r.is_finite() && (r == 0.0 || r >= MIN_REQUESTS_PER_SECOND)) {
            p.push(ConfigProblem {
                path: "target.budget.max_requests_per_second".into(),
                problem: format!(
                    "must be 0 (no limit) or a number of at least {MIN_REQUESTS_PER_SECOND}"
                ),
            });
        }
        if self.burst == Some(0) {
            p.push(ConfigProblem {
                path: "target.budget.burst".into(),
                problem: "must be at least 1".into(),
            });
        }
        p
    }

    /// The bucket size: `burst`, or a tenth of a second's worth, at least 1.
    pub fn bucket_size(&self) -> f64 {
        match self.burst {
            Some(b) => f64::from(b),
            None => (self.max_requests_per_second / 10.0).max(1.0),
        }
    }
}

/// The lowest non-zero `max_requests_per_second`: one request in 1000 s.
pub const MIN_REQUESTS_PER_SECOND: f64 = 0.001;

/// The longest a request is ever told to wait for the budget.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A token bucket with a "hold until" for `Retry-After`.
#[derive(Debug, Clone)]
pub struct Budget {
    rate: f64,
    size: f64,
    tokens: f64,
    last: Instant,
    hold_until: Option<Instant>,
}

impl Budget {
    /// A full bucket at `now`.
    pub fn new(config: &BudgetConfig, now: Instant) -> Self {
        let size = config.bucket_size();
        Budget {
            rate: config.max_requests_per_second,
            size,
            tokens: size,
            last: now,
            hold_until: None,
        }
    }

    /// Takes one request's token, or says how long to wait before asking again.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(h) = self.hold_until {
            if now < h {
                return Err(h - now);
            }
            self.hold_until = None;
        }
        if self.rate <= 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.size);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // The rate is at least MIN_REQUESTS_PER_SECOND once validated;
            // the cap keeps an unvalidated one from overflowing.
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait).map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
        }
    }

    /// The target asked everybody to wait (`Retry-After` on a 429 or 503):
    /// no request goes out before `now + delay`.
    pub fn hold(&mut self, now: Instant, delay: Duration) {
        let until = now.checked_add(delay.min(MAX_WAIT)).unwrap_or(now);
        self.hold_until = Some(self.hold_until.map_or(until, |h| h.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rate: f64, burst: Option<u32>) -> BudgetConfig {
        BudgetConfig {
            max_requests_per_second: rate,
            burst,
            max_concurrent_requests: 0,
        }
    }

    #[test]
    fn no_limit_always_admits() {
        let t = Instant::now();
        let mut b = Budget::new(&cfg(0.0, None), t);
        for _ in 0..10_000 {
            assert_eq!(b.take(t), Ok(()));
        }
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t = Instant::now();
        let mut b = Budget::new(&cfg(10.0, Some(3)), t);
        assert_eq!(b.take(t), Ok(()));
        assert_eq!(b.take(t), Ok(()));
        assert_eq!(b.take(t), Ok(()));
        let wait = b.take(t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(b.take(t + wait), Ok(()));
    }

    #[test]
    fn over_ten_seconds_admits_rate_times_ten_plus_the_bucket() {
        let start = Instant::now();
        let mut b = Budget::new(&cfg(50.0, None), start);
        let mut now = start;
        let mut admitted = 0;
        while now < start + Duration::from_secs(10) {
            match b.take(now) {
                Ok(()) => admitted += 1,
                Err(w) => now += w,
            }
        }
        assert!((500..=506).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn a_hold_stops_everybody_until_it_ends() {
        let t = Instant::now();
        let mut b = Budget::new(&cfg(0.0, None), t);
        b.hold(t, Duration::from_secs(2));
        assert_eq!(
            b.take(t + Duration::from_secs(1)),
            Err(Duration::from_secs(1))
        );
        b.hold(t, Duration::from_secs(1));
        assert!(
            b.take(t + Duration::from_millis(1500)).is_err(),
            "a shorter hold does not cut a longer one"
        );
        assert_eq!(b.take(t + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            cfg(-1.0, None).problems()[0]
                .path
                .ends_with("max_requests_per_second")
        );
        assert!(
            cfg(f64::NAN, None).problems()[0]
                .path
                .ends_with("max_requests_per_second")
        );
        assert!(
            cfg(1e-20, None).problems()[0]
                .path
                .ends_with("max_requests_per_second")
        );
        assert!(cfg(1.0, Some(0)).problems()[0].path.ends_with("burst"));
        assert!(cfg(5.0, None).problems().is_empty());
        assert!(cfg(MIN_REQUESTS_PER_SECOND, None).problems().is_empty());
    }

    #[test]
    fn extreme_values_wait_long_but_never_panic() {
        let t = Instant::now();
        let mut b = Budget::new(&cfg(1e-20, Some(1)), t);
        assert_eq!(b.take(t), Ok(()));
        assert_eq!(b.take(t), Err(MAX_WAIT));
        let mut b = Budget::new(&cfg(0.0, None), t);
        b.hold(t, Duration::MAX);
        assert_eq!(b.take(t), Err(MAX_WAIT));
    }
}
