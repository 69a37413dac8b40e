//! Every Prometheus metric of the producer, by name, and the registry that
//! holds them.
//!
//! One [`Metrics`] per [`Publisher`](crate::Publisher) (and per ingest server
//! using it), each with its own [`Registry`], so several publishers in one
//! process — tests do this — never collide. Names follow STYLE §9:
//! `cpn_producer_…`, counters end in `_total`, durations are `_seconds`
//! histograms, sizes `_bytes`. Labels are small closed sets (route, status);
//! never GUIDs.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Events Kafka acknowledged (acks=all).
pub const EVENTS_PUBLISHED_TOTAL: &str = "cpn_producer_events_published_total";
/// Bytes of event bodies Kafka acknowledged (record values, uncompressed).
pub const PUBLISHED_BYTES_TOTAL: &str = "cpn_producer_published_bytes_total";
/// Events refused because they were invalid (never handed to Kafka).
pub const EVENTS_REJECTED_TOTAL: &str = "cpn_producer_events_rejected_total";
/// Events handed to Kafka that it did not acknowledge (delivery error,
/// timeout, queue full, producer closed).
pub const EVENTS_FAILED_TOTAL: &str = "cpn_producer_events_failed_total";
/// Events handed to Kafka and still waiting for its acknowledgement.
pub const EVENTS_IN_FLIGHT: &str = "cpn_producer_events_in_flight";
/// Time from handing an event to librdkafka to its acknowledgement.
pub const ACK_DURATION_SECONDS: &str = "cpn_producer_ack_duration_seconds";
/// HTTP ingest requests by route and status code.
pub const HTTP_REQUESTS_TOTAL: &str = "cpn_producer_http_requests_total";
/// HTTP ingest request duration by route.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "cpn_producer_http_request_duration_seconds";

/// Ingest requests refused before their body was read, by reason: `auth`
/// (a missing or wrong key).
pub const INGEST_REJECTED_TOTAL: &str = "cpn_producer_ingest_rejected_total";
/// TLS handshakes the ingest refused or that failed, by reason
/// (`no_client_certificate`, `bad_client_certificate`, `incompatible`:
/// no common version or cipher, `bad_message`, `timeout`, `io`, `other`).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "cpn_producer_tls_handshake_failures_total";
/// Reloads of changed TLS files, by result (`ok`, `error`: the previous
/// certificate stays in use).
pub const TLS_RELOADS_TOTAL: &str = "cpn_producer_tls_reloads_total";

/// When the chain the ingest serves expires (the earliest notAfter of its
/// certificates), in Unix seconds; 0 without TLS.
pub const TLS_CERTIFICATE_EXPIRY: &str = "cpn_producer_tls_certificate_expiry_timestamp_seconds";
/// 1 while the TLS files on disk cannot be read or do not load, so the
/// certificate loaded before is still served; 0 otherwise.
pub const TLS_RELOAD_FAILING: &str = "cpn_producer_tls_reload_failing";

/// Reloads of a changed `--auth-keys-file`, by result (`ok`, `error`: no
/// usable key in it, the previous keys stay).
pub const AUTH_RELOADS_TOTAL: &str = "cpn_producer_auth_reloads_total";

/// Buckets for acknowledgement and request latency: 0.5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// The producer's metrics and the registry they are exported from.
///
/// Cheap to clone: every handle shares the same underlying values.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub(crate) published: IntCounter,
    pub(crate) published_bytes: IntCounter,
    pub(crate) rejected: IntCounter,
    pub(crate) failed: IntCounter,
    pub(crate) in_flight: IntGauge,
    pub(crate) ack_duration: Histogram,
    pub(crate) http_requests: IntCounterVec,
    pub(crate) http_duration: HistogramVec,
    pub(crate) ingest_rejected: IntCounterVec,
    pub(crate) tls_handshake_failures: IntCounterVec,
    pub(crate) tls_reloads: IntCounterVec,
    pub(crate) auth_reloads: IntCounterVec,
    pub(crate) tls_certificate_expiry: IntGauge,
    pub(crate) tls_reload_failing: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a fresh registry.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        // Cannot fail: every name below is a valid, distinct constant and the
        // registry is new, so neither construction nor registration can see
        // an invalid or duplicate descriptor (`new_metrics_register` tests it).
        let must = "metric names are valid, distinct constants in a fresh registry";
        let published =
            IntCounter::new(EVENTS_PUBLISHED_TOTAL, "Events Kafka acknowledged").expect(must);
        let published_bytes = IntCounter::new(
            PUBLISHED_BYTES_TOTAL,
            "Bytes of event bodies Kafka acknowledged (uncompressed)",
        )
        .expect(must);
        let rejected =
            IntCounter::new(EVENTS_REJECTED_TOTAL, "Invalid events refused").expect(must);
        let failed = IntCounter::new(
            EVENTS_FAILED_TOTAL,
            "Events handed to Kafka that it did not acknowledge",
        )
        .expect(must);
        let in_flight =
            IntGauge::new(EVENTS_IN_FLIGHT, "Events awaiting Kafka acknowledgement").expect(must);
        let ack_duration = Histogram::with_opts(
            HistogramOpts::new(
                ACK_DURATION_SECONDS,
                "Time from enqueue to Kafka acknowledgement",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect(must);
        let http_requests = IntCounterVec::new(
            Opts::new(HTTP_REQUESTS_TOTAL, "HTTP ingest requests"),
            &["route", "status"],
        )
        .expect(must);
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                HTTP_REQUEST_DURATION_SECONDS,
                "HTTP ingest request duration",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect(must);
        let ingest_rejected = IntCounterVec::new(
            Opts::new(
                INGEST_REJECTED_TOTAL,
                "Ingest requests refused before their body was read",
            ),
            &["reason"],
        )
        .expect(must);
        // Present from the start (at 0), so a rate() or an alert on it has a
        // series before the first refusal.
        ingest_rejected.with_label_values(&["auth"]);
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                TLS_HANDSHAKE_FAILURES_TOTAL,
                "TLS handshakes of the ingest that failed",
            ),
            &["reason"],
        )
        .expect(must);
        let tls_reloads = IntCounterVec::new(
            Opts::new(TLS_RELOADS_TOTAL, "Reloads of changed TLS files"),
            &["result"],
        )
        .expect(must);
        let auth_reloads = IntCounterVec::new(
            Opts::new(AUTH_RELOADS_TOTAL, "Reloads of a changed keys file"),
            &["result"],
        )
        .expect(must);
        // Both results exist from the start, at 0: an alert on increase()
        // sees the first error (a series born at 1 has no increase).
        for result in ["ok", "error"] {
            tls_reloads.with_label_values(&[result]);
            auth_reloads.with_label_values(&[result]);
        }
        let tls_certificate_expiry = IntGauge::new(
            TLS_CERTIFICATE_EXPIRY,
            "Earliest notAfter of the certificate chain the ingest serves, Unix seconds (0 without TLS)",
        )
        .expect(must);
        let tls_reload_failing = IntGauge::new(
            TLS_RELOAD_FAILING,
            "1 while the TLS files on disk do not load and the certificate loaded before is served",
        )
        .expect(must);
        for c in [
            Box::new(published.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(published_bytes.clone()),
            Box::new(rejected.clone()),
            Box::new(failed.clone()),
            Box::new(in_flight.clone()),
            Box::new(ack_duration.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(ingest_rejected.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(tls_reloads.clone()),
            Box::new(auth_reloads.clone()),
            Box::new(tls_certificate_expiry.clone()),
            Box::new(tls_reload_failing.clone()),
        ] {
            registry.register(c).expect(must);
        }
        Self {
            registry,
            published,
            published_bytes,
            rejected,
            failed,
            in_flight,
            ack_duration,
            http_requests,
            http_duration,
            ingest_rejected,
            tls_handshake_failures,
            tls_reloads,
            auth_reloads,
            tls_certificate_expiry,
            tls_reload_failing,
        }
    }

    /// The registry, to add more collectors or export elsewhere.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts `n` invalid events refused before reaching Kafka.
    pub fn record_rejected(&self, n: u64) {
        self.rejected.inc_by(n);
    }

    /// Events Kafka acknowledged so far.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.published.get()
    }

    /// Events currently awaiting acknowledgement.
    #[must_use]
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Counts one HTTP request.
    pub(crate) fn record_http(&self, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, status.to_string().as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// Counts one request refused for a missing or wrong key.
    pub(crate) fn record_auth_rejected(&self) {
        self.ingest_rejected.with_label_values(&["auth"]).inc();
    }

    /// Counts one failed TLS handshake.
    pub(crate) fn record_handshake_failure(&self, reason: &str) {
        self.tls_handshake_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts one reload of changed TLS files.
    pub(crate) fn record_tls_reload(&self, ok: bool) {
        self.tls_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The served certificate's notAfter (Unix seconds).
    pub(crate) fn set_tls_certificate_expiry(&self, not_after: i64) {
        self.tls_certificate_expiry.set(not_after);
    }

    /// Whether the TLS files on disk fail to load (the old certificate is served).
    pub(crate) fn set_tls_reload_failing(&self, failing: bool) {
        self.tls_reload_failing.set(i64::from(failing));
    }

    /// Counts one reload of a changed keys file.
    pub(crate) fn record_auth_reload(&self, ok: bool) {
        self.auth_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Requests refused for a missing or wrong key so far.
    #[must_use]
    pub fn auth_rejected(&self) -> u64 {
        self.ingest_rejected.with_label_values(&["auth"]).get()
    }

    /// Failed TLS handshakes so far, every reason.
    #[must_use]
    pub fn handshake_failures(&self) -> u64 {
        use prometheus::core::Collector;
        let families = self.tls_handshake_failures.collect();
        families
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Successful reloads of the TLS files so far.
    #[must_use]
    pub fn tls_reloads(&self) -> u64 {
        self.tls_reloads.with_label_values(&["ok"]).get()
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(4096);
        // Encoding into a Vec only fails on an I/O error, which a Vec never
        // returns; a failure would leave a partial page, not a panic.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_metrics_register_and_render_every_name() {
        let m = Metrics::new();
        m.published.inc();
        m.record_http("/v1/contact-processed", 200, 0.01);
        let text = m.render();
        for name in [
            EVENTS_PUBLISHED_TOTAL,
            PUBLISHED_BYTES_TOTAL,
            EVENTS_REJECTED_TOTAL,
            EVENTS_FAILED_TOTAL,
            EVENTS_IN_FLIGHT,
            ACK_DURATION_SECONDS,
            HTTP_REQUESTS_TOTAL,
            HTTP_REQUEST_DURATION_SECONDS,
            INGEST_REJECTED_TOTAL,
        ] {
            assert!(name.starts_with("cpn_producer_"), "{name}");
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert!(text.contains(
            r#"cpn_producer_http_requests_total{route="/v1/contact-processed",status="200"} 1"#
        ));
    }

    #[test]
    fn two_instances_do_not_share_values() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.record_rejected(3);
        assert_eq!(a.rejected.get(), 3);
        assert_eq!(b.rejected.get(), 0);
    }
}
