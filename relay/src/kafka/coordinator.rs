//! Retrying the group-coordinator calls (offset fetch, synchronous commit)
//! through the moments when the coordinator cannot answer.
//!
//! A group's coordinator is the leader of one `__consumer_offsets`
//! partition. While that partition is created (the first group on a fresh
//! cluster), loaded or moved to another broker, the broker answers
//! `NOT_COORDINATOR`, `COORDINATOR_LOAD_IN_PROGRESS` or
//! `COORDINATOR_NOT_AVAILABLE`, and librdkafka hands those to the caller of
//! `committed_offsets` or a synchronous `commit` instead of retrying them.
//! Kafka's own clients retry them; so do we, for a bounded time.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether `e` says only that the coordinator cannot answer right now, so the
/// same call may succeed in a moment.
#[must_use]
pub fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::WaitingForCoordinator
        )
    )
}

/// Calls `call` until it succeeds, fails for a reason other than
/// [`is_transient`], or `budget` has passed; then returns its last result.
/// The pause between calls doubles from 50 ms up to 1 s.
///
/// # Errors
/// The last error of `call`.
pub fn retry<T>(
    budget: Duration,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let deadline = Instant::now() + budget;
    let mut pause = Duration::from_millis(50);
    loop {
        match call() {
            Err(e) if is_transient(&e) && Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, "group coordinator not ready; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MetadataFetch(code)
    }

    #[test]
    fn coordinator_moves_are_transient_and_nothing_else_is() {
        for code in [
            RDKafkaErrorCode::NotCoordinator,
            RDKafkaErrorCode::CoordinatorLoadInProgress,
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::WaitingForCoordinator,
        ] {
            assert!(is_transient(&fetch(code)), "{code:?}");
            assert!(is_transient(&KafkaError::ConsumerCommit(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::OperationTimedOut,
        ] {
            assert!(!is_transient(&fetch(code)), "{code:?}");
        }
        assert!(!is_transient(&KafkaError::Canceled));
    }

    #[test]
    fn retries_through_transient_errors_and_returns_the_success() {
        let mut calls = 0;
        let got = retry(Duration::from_secs(5), || {
            calls += 1;
            if calls < 3 {
                Err(fetch(RDKafkaErrorCode::NotCoordinator))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(got.ok(), Some(3));
    }

    #[test]
    fn a_permanent_error_is_returned_at_once() {
        let mut calls = 0;
        let got: Result<(), _> = retry(Duration::from_secs(5), || {
            calls += 1;
            Err(fetch(RDKafkaErrorCode::GroupAuthorizationFailed))
        });
        assert_eq!(calls, 1);
        assert_eq!(
            got.err().and_then(|e| e.rdkafka_error_code()),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed)
        );
    }

    #[test]
    fn gives_up_with_the_last_error_when_the_budget_is_spent() {
        let mut calls = 0;
        let got: Result<(), _> = retry(Duration::from_millis(300), || {
            calls += 1;
            Err(fetch(RDKafkaErrorCode::CoordinatorLoadInProgress))
        });
        assert!(calls >= 2, "retried: {calls}");
        assert!(calls <= 5, "bounded: {calls}");
        assert_eq!(
            got.err().and_then(|e| e.rdkafka_error_code()),
            Some(RDKafkaErrorCode::CoordinatorLoadInProgress)
        );
    }
}
