//! Every Prometheus metric the relay exports (`cpn_relay_*`), in one place.
//!
//! Labels are small closed sets (`outcome`, `class`, `reason`, `topic`,
//! `partition`), never GUIDs or URLs.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The relay's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct RelayMetrics {
    registry: Registry,
    /// Records taken from Kafka.
    pub consumed: IntCounterVec,
    /// Final outcomes: `delivered` or `dead_lettered`.
    pub deliveries: IntCounterVec,
    /// HTTP attempts by class (`2xx` ... `connect_error`, `timeout`).
    pub attempts: IntCounterVec,
    /// Attempts that were retries (not the first).
    pub retries: IntCounter,
    /// Dead letters by reason.
    pub dead_letters: IntCounterVec,
    /// Failed writes to the dead-letter topic (each retried; the offset waits).
    pub dlq_write_errors: IntCounter,
    /// Records taken and not finished.
    pub in_flight: IntGauge,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit_state: IntGauge,
    /// Times the circuit opened.
    pub circuit_opened: IntCounter,
    /// 1 while the circuit is open because the target rejects the relay.
    pub target_rejecting: IntGauge,
    /// 1 while the relay holds work without progress (see `health`).
    pub stalled: IntGauge,
    /// Partitions paused (circuit open, or draining).
    pub paused_partitions: IntGauge,
    /// `concurrency.memory_budget_bytes`: the bound on the bytes of records
    /// taken and not finished, across all partitions.
    pub memory_budget_bytes: IntGauge,
    /// Bytes of records taken and not finished, as charged to the budget.
    pub memory_taken_bytes: IntGauge,
    /// librdkafka's prefetch bound per partition (`queued.max.messages.kbytes`).
    pub prefetch_partition_bytes: IntGauge,
    /// Partitions assigned to this relay.
    pub assigned_partitions: IntGauge,
    /// Partitions of the topic (from metadata; the denominator of the
    /// group-wide request budget's share).
    pub topic_partitions: IntGauge,
    /// This replica's request rate budget now (`target.budget`, its share
    /// of the group's); 0 = no limit.
    pub budget_requests_per_second: Gauge,
    /// Last committed offset per partition.
    pub committed_offset: IntGaugeVec,
    /// Consumer lag per partition (from librdkafka statistics).
    pub consumer_lag: IntGaugeVec,
    /// Offset commits that failed.
    pub commit_errors: IntCounter,
    /// Duration of one HTTP attempt.
    pub attempt_duration: HistogramVec,
    /// From `GSW_TIMESTAMP` (mandatory in every deliverable event) to the 2xx.
    pub end_to_end: Histogram,
}

/// Registers `metric` in `r`. Every descriptor here is a literal, valid and
/// with a name of its own (`RelayMetrics::new` runs in the unit tests, so a
/// duplicate or malformed one fails there), so neither step fails at run time.
fn registered<M: Collector + Clone + 'static>(r: &Registry, metric: prometheus::Result<M>) -> M {
    let m = metric.expect("a literal metric descriptor is valid");
    r.register(Box::new(m.clone()))
        .expect("every relay metric name is registered once");
    m
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    registered(r, IntCounter::new(name, help))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::new(name, help))
}

fn fgauge(r: &Registry, name: &str, help: &str) -> Gauge {
    registered(r, Gauge::new(name, help))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

impl Default for RelayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let attempt_duration = registered(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "cpn_relay_attempt_duration_seconds",
                    "Duration of one HTTP attempt",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["class"],
            ),
        );
        let end_to_end = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "cpn_relay_end_to_end_seconds",
                    "From the event's GSW_TIMESTAMP to the 2xx",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            ),
        );
        RelayMetrics {
            consumed: counter_vec(
                &r,
                "cpn_relay_consumed_total",
                "Records taken from Kafka",
                &["topic", "partition"],
            ),
            deliveries: counter_vec(
                &r,
                "cpn_relay_deliveries_total",
                "Final outcomes",
                &["outcome"],
            ),
            attempts: counter_vec(
                &r,
                "cpn_relay_attempts_total",
                "HTTP attempts by result class",
                &["class"],
            ),
            retries: counter(&r, "cpn_relay_retries_total", "Attempts that were retries"),
            dead_letters: counter_vec(
                &r,
                "cpn_relay_dead_letters_total",
                "Records written to the dead-letter topic",
                &["reason"],
            ),
            dlq_write_errors: counter(
                &r,
                "cpn_relay_dlq_write_errors_total",
                "Failed dead-letter writes (retried; the offset waits)",
            ),
            in_flight: gauge(&r, "cpn_relay_in_flight", "Records taken and not finished"),
            circuit_state: gauge(
                &r,
                "cpn_relay_circuit_state",
                "Circuit breaker: 0 closed, 1 open, 2 half-open",
            ),
            circuit_opened: counter(
                &r,
                "cpn_relay_circuit_opened_total",
                "Times the circuit opened",
            ),
            target_rejecting: gauge(
                &r,
                "cpn_relay_target_rejecting",
                "1 while the target rejects every chain alike (4xx/3xx in a row): records are held, not dead-lettered",
            ),
            stalled: gauge(
                &r,
                "cpn_relay_stalled",
                "1 while the relay holds unfinished records with nothing in flight and nothing scheduled",
            ),
            paused_partitions: gauge(
                &r,
                "cpn_relay_paused_partitions",
                "Partitions paused (circuit open, or draining)",
            ),
            memory_budget_bytes: gauge(
                &r,
                "cpn_relay_memory_budget_bytes",
                "Bound on the bytes of records taken and not finished, all partitions together",
            ),
            memory_taken_bytes: gauge(
                &r,
                "cpn_relay_memory_taken_bytes",
                "Bytes of records taken and not finished (charged to the memory budget)",
            ),
            prefetch_partition_bytes: gauge(
                &r,
                "cpn_relay_prefetch_partition_bytes",
                "librdkafka prefetch bound per assigned partition (queued.max.messages.kbytes)",
            ),
            assigned_partitions: gauge(
                &r,
                "cpn_relay_assigned_partitions",
                "Partitions assigned to this relay",
            ),
            topic_partitions: gauge(
                &r,
                "cpn_relay_topic_partitions",
                "Partitions of the topic the relay consumes",
            ),
            budget_requests_per_second: fgauge(
                &r,
                "cpn_relay_budget_requests_per_second",
                "This replica's request rate budget to the target: its share of target.budget for the group (0 = no limit)",
            ),
            committed_offset: gauge_vec(
                &r,
                "cpn_relay_committed_offset",
                "Last committed offset",
                &["topic", "partition"],
            ),
            consumer_lag: gauge_vec(
                &r,
                "cpn_relay_consumer_lag",
                "Consumer lag in records",
                &["topic", "partition"],
            ),
            commit_errors: counter(
                &r,
                "cpn_relay_commit_errors_total",
                "Offset commits that failed",
            ),
            attempt_duration,
            end_to_end,
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
