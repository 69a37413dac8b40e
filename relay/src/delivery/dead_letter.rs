//! `→ DeadLettered`: writing a record that cannot be delivered to the
//! dead-letter topic with the story of why. DESIGN invariant 1: a dead
//! letter is never dropped; the write is retried (with backoff, noted in
//! [`Health`]) until Kafka acknowledges it, and the partition's offset does
//! not pass the record meanwhile.

use std::time::{Duration, SystemTime};

use tracing::error;

use super::Stops;
use super::{Deliverer, Finished, Record, wait_or_stop};
use crate::dlq::headers::DeadLetterInfo;
use crate::dlq::writer::{DLQ_WRITE_TIMEOUT, DeadLetter};
use crate::observe::health::Health;
use crate::policy::classify::DlqReason;
use crate::target::client::AttemptReport;

/// What is known about a record's failure when it is dead-lettered.
#[derive(Debug)]
pub(crate) struct Failure {
    http_status: Option<u16>,
    error: String,
    location: Option<String>,
    response_body: Vec<u8>,
    attempts: u32,
    first_attempt_at: Option<SystemTime>,
    last_attempt_at: Option<SystemTime>,
}

impl Failure {
    /// Refused before any request (invalid payload).
    pub(super) fn before_request(error: String) -> Self {
        Failure {
            http_status: None,
            error,
            location: None,
            response_body: Vec::new(),
            attempts: 0,
            first_attempt_at: None,
            last_attempt_at: None,
        }
    }

    /// Failed after `attempts` requests, the last one reported in `last`.
    pub(super) fn after(last: AttemptReport, attempts: u32, first_at: Option<SystemTime>) -> Self {
        Failure {
            http_status: last.attempt.status(),
            error: match &last.location {
                Some(l) => format!(
                    "{} to {l} (redirects are not followed)",
                    last.attempt.describe()
                ),
                None => last.attempt.describe(),
            },
            location: last.location,
            response_body: last.response_excerpt,
            attempts,
            first_attempt_at: first_at,
            last_attempt_at: Some(last.started_at),
        }
    }
}

impl Deliverer {
    /// Writes `rec` to the dead-letter topic with `reason` and `failure`;
    /// `None` only when the record is abandoned first.
    pub(super) async fn dead_letter(
        &self,
        rec: &Record,
        reason: DlqReason,
        failure: Failure,
        stops: &Stops,
        health: &Health,
    ) -> Option<Finished> {
        let info = DeadLetterInfo {
            reason,
            http_status: failure.http_status,
            error: failure.error,
            location: failure.location,
            response_body: failure.response_body,
            attempts: failure.attempts,
            first_attempt_at: failure.first_attempt_at,
            last_attempt_at: failure.last_attempt_at,
            target: self.target_redacted.clone(),
            group: self.group.clone(),
            relay: self.relay_id.clone(),
            topic: rec.topic.clone(),
            partition: rec.partition,
            offset: rec.offset,
            original_timestamp_ms: rec.timestamp_ms,
        };
        let extra = info.to_headers();
        let dl = DeadLetter {
            key: rec.key.as_deref(),
            value: rec.value.as_deref(),
            original_headers: rec.headers.as_ref(),
            extra: &extra,
        };
        let mut failures: u32 = 0;
        loop {
            health.progress();
            health.waiting_for(DLQ_WRITE_TIMEOUT);
            let result = tokio::select! {
                _ = stops.cancel.cancelled() => return None,
                r = self.dlq.write(&dl) => r,
            };
            match result {
                Ok((p, o)) => {
                    self.metrics
                        .dead_letters
                        .with_label_values(&[reason.as_str()])
                        .inc();
                    self.metrics
                        .deliveries
                        .with_label_values(&["dead_lettered"])
                        .inc();
                    tracing::info!(%reason, dlq_partition = p, dlq_offset = o, "dead-lettered");
                    return Some(Finished::DeadLettered(reason));
                }
                Err(e) => {
                    failures += 1;
                    self.metrics.dlq_write_errors.inc();
                    // Invariant 1: never drop. The offset waits until the write succeeds.
                    error!(error = %e, dlq_topic = self.dlq.topic(), failures, "cannot write to the dead-letter topic; retrying, the partition's offset does not advance");
                    let delay = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)));
                    health.waiting_for(delay);
                    wait_or_stop(delay, stops).await?;
                }
            }
        }
    }
}
