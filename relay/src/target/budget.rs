//! The per-target request budget: at most `max_requests_per_second` (a token
//! bucket) and `max_concurrent_requests` at once, and a `Retry-After` on a 429
//! or 503 holds back the whole target, not just the one request.
//!
//! By default (`scope = "group"`) the rate is the budget of the whole
//! consumer group: each replica takes the share of the topic's partitions it
//! is assigned ([`Budget::set_share`], re-computed on every rebalance and
//! whenever the topic's partition count changes), so N replicas together
//! never exceed it, with no store shared between them. The cost: a replica
//! whose partitions carry less than their share of the traffic leaves its
//! share unused (the budget is never exceeded, but may be under-used when
//! keys are skewed). `scope = "replica"` gives every replica the whole rate.
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
    /// Requests in flight to the target at once, per replica; 0 means
    /// `concurrency.max_in_flight`.
    #[serde(default)]
    pub max_concurrent_requests: usize,
    /// Whom `max_requests_per_second` and `burst` are for: the whole
    /// consumer group (shared by partition share) or each replica.
    #[serde(default)]
    pub scope: BudgetScope,
}

/// `target.budget.scope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    /// The rate is the group's: each replica takes assigned / total partitions of it.
    #[default]
    Group,
    /// Every replica may send the whole rate (N replicas: N times the rate).
    Replica,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            max_requests_per_second: 0.0,
            burst: None,
            max_concurrent_requests: 0,
            scope: BudgetScope::Group,
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
    /// The configured rate (the group's, or the replica's); 0 = no limit.
    full_rate: f64,
    /// The configured bucket size.
    full_size: f64,
    scope: BudgetScope,
    /// This replica's rate: `full_rate` times its share.
    rate: f64,
    size: f64,
    tokens: f64,
    last: Instant,
    hold_until: Option<Instant>,
}

impl Budget {
    /// A full bucket at `now`, with the whole rate (a share of 1) until
    /// [`Budget::set_share`] says otherwise.
    pub fn new(config: &BudgetConfig, now: Instant) -> Self {
        let size = config.bucket_size();
        Budget {
            full_rate: config.max_requests_per_second,
            full_size: size,
            scope: config.scope,
            rate: config.max_requests_per_second,
            size,
            tokens: size,
            last: now,
            hold_until: None,
        }
    }

    /// This replica is assigned `assigned` of the topic's `total` partitions:
    /// with the group scope its rate and bucket become that share of the
    /// configured ones (at least one partition's worth, and a bucket of at
    /// least one request, so that a replica settling its last records is
    /// never starved). Tokens saved up are kept up to the new bucket size,
    /// never added: a replica that gains partitions does not burst. Returns
    /// this replica's rate (0 = no limit).
    pub fn set_share(&mut self, assigned: usize, total: usize, now: Instant) -> f64 {
        if self.full_rate <= 0.0 {
            return 0.0;
        }
        // Refill at the old rate up to now, so the change applies from now.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.size);
        let share = match self.scope {
            BudgetScope::Replica => 1.0,
            BudgetScope::Group if total == 0 => 1.0,
            BudgetScope::Group => assigned.clamp(1, total) as f64 / total as f64,
        };
        self.rate = (self.full_rate * share).max(MIN_REQUESTS_PER_SECOND);
        self.size = (self.full_size * share).max(1.0);
        self.tokens = self.tokens.min(self.size);
        self.rate
    }

    /// This replica's rate now (0 = no limit).
    pub fn rate(&self) -> f64 {
        self.rate.max(0.0)
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
            // Rounded up to the next nanosecond: a wait rounded down to 0
            // would come back to the same empty bucket.
            let wait = ((1.0 - self.tokens) / self.rate * 1e9).ceil() / 1e9;
            Err(Duration::try_from_secs_f64(wait)
                .map_or(MAX_WAIT, |d| d.clamp(Duration::from_nanos(1), MAX_WAIT)))
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
            scope: BudgetScope::Group,
        }
    }

    /// Requests admitted between `from` and `to`, taking as fast as allowed.
    fn admitted(b: &mut Budget, from: Instant, to: Instant) -> usize {
        let mut now = from;
        let mut n = 0;
        while now < to {
            match b.take(now) {
                Ok(()) => n += 1,
                Err(w) => now += w,
            }
        }
        n
    }

    #[test]
    fn replicas_sharing_the_partitions_share_the_rate() {
        // 12 partitions at 120/s for the group: 3 replicas of 4 each send
        // 40/s each, 120/s together; then one takes all 12 alone.
        let t = Instant::now();
        let mut rs: Vec<Budget> = (0..3).map(|_| Budget::new(&cfg(120.0, None), t)).collect();
        for r in &mut rs {
            assert_eq!(r.set_share(4, 12, t), 40.0);
        }
        let ten = Duration::from_secs(10);
        let together: usize = rs.iter_mut().map(|r| admitted(r, t, t + ten)).sum();
        // The rate times 10 s plus each bucket (a tenth of a second's worth).
        assert!((1200..=1215).contains(&together), "together {together}");
        let later = t + ten;
        assert_eq!(rs[0].set_share(12, 12, later), 120.0);
        let alone = admitted(&mut rs[0], later, later + ten);
        assert!((1195..=1213).contains(&alone), "alone {alone}");
    }

    #[test]
    fn a_replica_that_gains_partitions_does_not_burst() {
        let t = Instant::now();
        let mut b = Budget::new(&cfg(100.0, Some(100)), t);
        b.set_share(1, 10, t);
        // Its bucket is 10 now; idle for a minute it holds 10, not 100.
        let later = t + Duration::from_secs(60);
        b.set_share(10, 10, later);
        let mut burst = 0;
        while b.take(later).is_ok() {
            burst += 1;
        }
        assert_eq!(burst, 10);
    }

    #[test]
    fn no_partitions_keeps_one_partitions_worth_and_replica_scope_keeps_all() {
        let t = Instant::now();
        let mut b = Budget::new(&cfg(60.0, None), t);
        assert_eq!(b.set_share(0, 6, t), 10.0);
        let mut r = Budget::new(
            &BudgetConfig {
                scope: BudgetScope::Replica,
                ..cfg(60.0, None)
            },
            t,
        );
        assert_eq!(r.set_share(1, 6, t), 60.0);
        let mut unlimited = Budget::new(&cfg(0.0, None), t);
        assert_eq!(unlimited.set_share(1, 6, t), 0.0);
        assert_eq!(unlimited.take(t), Ok(()));
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
