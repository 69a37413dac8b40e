//! Is the relay doing its job? `/readyz`, the `cpn_relay_stalled` gauge and
//! the stall exit all come from [`assess`].
//!
//! DESIGN invariant 8, the liveness property: *while a record is assigned
//! and unfinished, the relay either has a request in flight, is waiting a
//! bounded, known delay (backoff, a circuit probe, the request budget, a
//! dead-letter write), or exits.* The pieces that keep it:
//! - a delivery task notes [`Health::progress`] at each attempt and each
//!   finished record, and every bounded wait it enters with
//!   [`Health::waiting_until`] (a request in flight is a wait bounded by its
//!   timeouts);
//! - the consumer thread notes every record it takes, publishes whether it
//!   holds work (records taken and unfinished, or partitions paused), and —
//!   while the circuit is open — the time its probe is due; when the probe
//!   is due and no record is there to be it, the consumer resumes the
//!   partitions so that one arrives (`consumer::apply_backpressure`), so
//!   recovery never depends on a delivery task that a rebalance cancelled;
//! - [`assess`] calls the relay *stalled* when it holds work and has seen
//!   neither progress nor a known wait for `health.stall_timeout_ms`, or when
//!   the consumer thread stopped polling for that long. A stall is a bug or
//!   a frozen dependency: the relay says so and, by default, exits 3 so that
//!   the orchestrator restarts it (nothing is lost: offsets of unfinished
//!   records were never committed).
//!
//! Pure but for the atomics: [`assess`] takes a [`Snapshot`] and a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Past this age of the last poll the relay is not ready (it may still be
/// settling a rebalance); past the stall bound it is stalled.
pub const POLL_READY_BOUND: Duration = Duration::from_secs(15);

/// What the consumer thread and the delivery tasks tell about their work.
/// Times are milliseconds since [`Health::new`] (monotonic).
#[derive(Debug)]
pub struct Health {
    origin: Instant,
    stall_after: Duration,
    joined: AtomicBool,
    assigned: AtomicUsize,
    last_poll_ms: AtomicU64,
    last_progress_ms: AtomicU64,
    wait_until_ms: AtomicU64,
    holds_work: AtomicBool,
}

/// One reading of [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Now, in ms since the origin.
    pub now_ms: u64,
    /// The first assignment arrived (an empty one too).
    pub joined: bool,
    /// Partitions assigned now.
    pub assigned: usize,
    /// The consumer thread's last poll.
    pub last_poll_ms: u64,
    /// The last attempt started or ended, record taken or finished.
    pub last_progress_ms: u64,
    /// The end of the longest known wait entered so far.
    pub wait_until_ms: u64,
    /// Records taken and unfinished, or partitions paused.
    pub holds_work: bool,
}

/// What [`assess`] concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Assigned partitions and making progress or legitimately waiting.
    Ready,
    /// Not (yet) doing the job, for a reason that is not a fault.
    NotReady(String),
    /// Holding work without progress or a known wait: a fault.
    Stalled(String),
}

impl Health {
    /// A relay that has not joined yet; stalled after `stall_after` without
    /// progress.
    pub fn new(stall_after: Duration) -> Self {
        Health {
            origin: Instant::now(),
            stall_after,
            joined: AtomicBool::new(false),
            assigned: AtomicUsize::new(0),
            last_poll_ms: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            wait_until_ms: AtomicU64::new(0),
            holds_work: AtomicBool::new(false),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn now_ms(&self) -> u64 {
        self.ms(Instant::now())
    }

    /// The consumer thread polled.
    pub fn polled(&self) {
        self.last_poll_ms.store(self.now_ms(), Ordering::Release);
    }

    /// A record was taken or finished, an attempt started or ended.
    pub fn progress(&self) {
        self.last_progress_ms
            .fetch_max(self.now_ms(), Ordering::AcqRel);
    }

    /// Work is waiting, by design, until `t` (a backoff, the circuit's
    /// probe, the budget, a request's timeout).
    pub fn waiting_until(&self, t: Instant) {
        self.wait_until_ms.fetch_max(self.ms(t), Ordering::AcqRel);
    }

    /// Like [`Health::waiting_until`], `d` from now.
    pub fn waiting_for(&self, d: Duration) {
        self.waiting_until(Instant::now() + d);
    }

    /// The group assigned partitions (or an empty set); `n` are assigned now.
    pub fn set_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Release);
        self.joined.store(true, Ordering::Release);
    }

    /// Partitions assigned now, without marking the relay joined.
    pub fn update_assigned(&self, n: usize) {
        self.assigned.store(n, Ordering::Release);
    }

    /// Whether records are taken and unfinished, or partitions are paused.
    pub fn set_holds_work(&self, holds: bool) {
        self.holds_work.store(holds, Ordering::Release);
    }

    /// A reading now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            now_ms: self.now_ms(),
            joined: self.joined.load(Ordering::Acquire),
            assigned: self.assigned.load(Ordering::Acquire),
            last_poll_ms: self.last_poll_ms.load(Ordering::Acquire),
            last_progress_ms: self.last_progress_ms.load(Ordering::Acquire),
            wait_until_ms: self.wait_until_ms.load(Ordering::Acquire),
            holds_work: self.holds_work.load(Ordering::Acquire),
        }
    }

    /// [`assess`] of a reading now.
    pub fn assess(&self) -> Assessment {
        assess(&self.snapshot(), self.stall_after)
    }
}

/// Ready, not ready, or stalled (see the module doc).
pub fn assess(s: &Snapshot, stall_after: Duration) -> Assessment {
    let stall_ms = u64::try_from(stall_after.as_millis()).unwrap_or(u64::MAX);
    let secs = |ms: u64| ms as f64 / 1000.0;
    // Before the first poll, the thread is still being set up (joining).
    let poll_age = if s.last_poll_ms == 0 {
        0
    } else {
        s.now_ms.saturating_sub(s.last_poll_ms)
    };
    if poll_age >= stall_ms {
        return Assessment::Stalled(format!(
            "the consumer thread has not polled Kafka for {:.0} s",
            secs(poll_age)
        ));
    }
    let quiet = s
        .now_ms
        .saturating_sub(s.last_progress_ms.max(s.wait_until_ms));
    if s.holds_work && quiet >= stall_ms {
        return Assessment::Stalled(format!(
            "unfinished records, but no request in flight and nothing scheduled for {:.0} s",
            secs(quiet)
        ));
    }
    if !s.joined {
        return Assessment::NotReady("not yet joined the consumer group".into());
    }
    if poll_age >= POLL_READY_BOUND.as_millis() as u64 {
        return Assessment::NotReady(format!("not polling Kafka for {:.0} s", secs(poll_age)));
    }
    if s.assigned == 0 {
        return Assessment::NotReady("no partitions assigned".into());
    }
    Assessment::Ready
}

/// Assesses the relay's health every second: keeps `cpn_relay_stalled` true,
/// logs each stall once at ERROR and, with `exit_on_stall`, resolves with the
/// reason (the caller stops the relay). Never resolves otherwise, and stops
/// watching once `stop` fires (a draining relay is not judged).
pub(crate) async fn watch(
    health: Arc<Health>,
    metrics: crate::observe::metrics::RelayMetrics,
    exit_on_stall: bool,
    stop: CancellationToken,
) -> String {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stalled = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => std::future::pending::<()>().await,
            _ = tick.tick() => {}
        }
        match health.assess() {
            Assessment::Stalled(why) => {
                metrics.stalled.set(1);
                if exit_on_stall {
                    return why;
                }
                if !was_stalled {
                    tracing::error!(reason = %why, "stalled: /readyz answers 503 (health.exit_on_stall is off)");
                }
                was_stalled = true;
            }
            _ => {
                if was_stalled {
                    tracing::info!("no longer stalled");
                }
                metrics.stalled.set(0);
                was_stalled = false;
            }
        }
    }
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    /// A health record of a relay with partitions and records taken whose
    /// consumer thread keeps polling, stalled after 1 s without progress.
    fn holding_work() -> (Arc<Health>, tokio::task::JoinHandle<()>) {
        let health = Arc::new(Health::new(Duration::from_secs(1)));
        health.set_assigned(2);
        health.polled();
        health.set_holds_work(true);
        let h = health.clone();
        let polling = tokio::spawn(async move {
            loop {
                h.polled();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (health, polling)
    }

    #[tokio::test]
    async fn a_relay_holding_work_without_progress_is_reported_stalled_and_stops() {
        let (health, polling) = holding_work();
        let metrics = crate::observe::metrics::RelayMetrics::new();
        let why = tokio::time::timeout(
            Duration::from_secs(10),
            watch(
                health.clone(),
                metrics.clone(),
                true,
                CancellationToken::new(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("no stall reported within 10 s"));
        polling.abort();
        assert!(why.contains("nothing scheduled"), "{why}");
        assert_eq!(metrics.stalled.get(), 1);
        assert!(matches!(health.assess(), Assessment::Stalled(_)));
    }

    #[tokio::test]
    async fn a_waiting_relay_is_not_stalled() {
        let (health, polling) = holding_work();
        health.waiting_for(Duration::from_secs(3600));
        let metrics = crate::observe::metrics::RelayMetrics::new();
        let watched = tokio::time::timeout(
            Duration::from_millis(2_500),
            watch(
                health.clone(),
                metrics.clone(),
                true,
                CancellationToken::new(),
            ),
        )
        .await;
        polling.abort();
        assert!(watched.is_err(), "a known wait of an hour is not a stall");
        assert_eq!(metrics.stalled.get(), 0);
        assert_eq!(health.assess(), Assessment::Ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(60);

    fn working(now_ms: u64) -> Snapshot {
        Snapshot {
            now_ms,
            joined: true,
            assigned: 3,
            last_poll_ms: now_ms,
            last_progress_ms: now_ms,
            wait_until_ms: 0,
            holds_work: true,
        }
    }

    #[test]
    fn making_progress_is_ready() {
        assert_eq!(assess(&working(100_000), BOUND), Assessment::Ready);
    }

    #[test]
    fn holding_work_without_progress_or_a_known_wait_is_a_stall() {
        let s = Snapshot {
            last_progress_ms: 30_000,
            ..working(90_000)
        };
        assert!(matches!(assess(&s, BOUND), Assessment::Stalled(r) if r.contains("60 s")));
        let just_below = Snapshot {
            last_progress_ms: 30_001,
            ..working(90_000)
        };
        assert_eq!(assess(&just_below, BOUND), Assessment::Ready);
    }

    #[test]
    fn a_known_wait_is_not_a_stall_until_it_is_long_over() {
        // A Retry-After of 5 minutes: waiting, not stalled.
        let waiting = Snapshot {
            last_progress_ms: 0,
            wait_until_ms: 300_000,
            ..working(200_000)
        };
        assert_eq!(assess(&waiting, BOUND), Assessment::Ready);
        let over = Snapshot {
            now_ms: 360_000,
            last_poll_ms: 360_000,
            ..waiting
        };
        assert!(matches!(assess(&over, BOUND), Assessment::Stalled(_)));
    }

    #[test]
    fn no_work_is_never_a_stall() {
        let idle = Snapshot {
            last_progress_ms: 0,
            holds_work: false,
            ..working(10_000_000)
        };
        assert_eq!(assess(&idle, BOUND), Assessment::Ready);
    }

    #[test]
    fn a_consumer_thread_that_stopped_polling_is_not_ready_then_stalled() {
        let slow = Snapshot {
            last_poll_ms: 80_000,
            holds_work: false,
            ..working(100_000)
        };
        assert!(matches!(assess(&slow, BOUND), Assessment::NotReady(r) if r.contains("polling")));
        let stuck = Snapshot {
            last_poll_ms: 30_000,
            ..slow
        };
        assert!(matches!(assess(&stuck, BOUND), Assessment::Stalled(r) if r.contains("polled")));
    }

    #[test]
    fn not_joined_or_no_partitions_is_not_ready() {
        let joining = Snapshot {
            joined: false,
            assigned: 0,
            last_poll_ms: 0,
            holds_work: false,
            ..working(5_000)
        };
        assert!(matches!(assess(&joining, BOUND), Assessment::NotReady(r) if r.contains("joined")));
        let revoked = Snapshot {
            assigned: 0,
            holds_work: false,
            ..working(5_000)
        };
        assert!(
            matches!(assess(&revoked, BOUND), Assessment::NotReady(r) if r.contains("no partitions"))
        );
    }

    #[test]
    fn the_shared_state_records_progress_and_waits() {
        let h = Health::new(Duration::from_secs(1));
        h.polled();
        h.set_assigned(1);
        h.set_holds_work(true);
        h.waiting_for(Duration::from_secs(3600));
        assert_eq!(h.assess(), Assessment::Ready, "an hour's known wait");
        let s = h.snapshot();
        assert!(s.wait_until_ms >= 3_599_000);
        h.progress();
        assert!(h.snapshot().last_progress_ms <= h.snapshot().now_ms);
    }
}
