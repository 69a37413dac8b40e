//! `/readyz`: is Kafka reachable and does it have our topic — asked with a
//! metadata request, the answer cached briefly.
//!
//! Load balancers and Kubernetes poll readiness often; caching for
//! [`READY_CACHE_TTL`] keeps that from turning into a metadata request per
//! poll, and only one probe runs at a time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bulk::error_chain;
use crate::publisher::Publisher;

/// How long one readiness answer is reused.
pub const READY_CACHE_TTL: Duration = Duration::from_secs(2);
/// How long one metadata request may take before Kafka counts as unreachable.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Cached readiness of one publisher's broker and topic.
#[derive(Debug)]
pub struct Readiness {
    publisher: Publisher,
    /// Last answer and when it was obtained; std mutex, never held across
    /// an await.
    cached: Mutex<Option<(Instant, Result<(), String>)>>,
    /// Serializes probes so a burst of polls costs one metadata request.
    probing: tokio::sync::Mutex<()>,
}

impl Readiness {
    /// Readiness of `publisher`'s cluster and topic.
    #[must_use]
    pub fn new(publisher: Publisher) -> Self {
        Self {
            publisher,
            cached: Mutex::new(None),
            probing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Result<(), String>> {
        let guard = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*guard {
            Some((at, answer)) if at.elapsed() < READY_CACHE_TTL => Some(answer.clone()),
            _ => None,
        }
    }

    /// `Ok` when the broker answered a metadata request for the topic
    /// recently; otherwise why not.
    ///
    /// # Errors
    /// The reason Kafka is not usable, as text for the response body.
    pub async fn check(&self) -> Result<(), String> {
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let _probe = self.probing.lock().await;
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let answer = self
            .publisher
            .check_reachable(READY_PROBE_TIMEOUT)
            .await
            .map_err(|e| error_chain(&e));
        let mut guard = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some((Instant::now(), answer.clone()));
        answer
    }
}
