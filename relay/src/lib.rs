//! cpn-relay: deliver ContactProcessed events from a Kafka consumer group to
//! a customer's web server exactly as Genesys OCS would, at least once, with
//! a dead-letter topic for what cannot be delivered.
//!
//! The guarantee (DESIGN invariants): every record of the topic ends, for
//! this consumer group, either acknowledged 2xx by the target or in the
//! dead-letter topic with the reason. Offsets are committed only past
//! finished records, so a crash redelivers — receivers de-duplicate on the
//! GUID (`ETag`). Duplicates are bounded by what was in flight: at most
//! `concurrency.max_in_flight_per_partition` records per partition.
//!
//! A tour of the modules:
//! - pure cores, no I/O: [`config`] (settings and validation), [`classify`]
//!   (attempt → verdict), [`retry`] (backoff policy), [`circuit`] (outage vs
//!   bad record), [`budget`] (target rate limit), [`route`] (which records
//!   this relay takes), [`watermark`] (commit position), [`dlq::headers`] (what a
//!   dead letter carries);
//! - edges: [`http`] (the target client), [`dlq::writer`] (the DLQ producer),
//!   [`delivery`] (one record's life), [`partition`] (per-chain ordering in a
//!   partition), [`consumer`] (the Kafka consumer thread, commits,
//!   rebalances), [`coordinator`] (retrying offset fetches and commits while
//!   the group coordinator moves), [`preflight`] (the start-up check that
//!   Kafka answers, lets the relay in and has its topics), [`server`]
//!   (metrics and health), [`metrics`], [`health`] (liveness: ready,
//!   waiting or stalled);
//! - target edges: [`tls`], [`proxy`], [`auth`], [`signing`], [`secret`]
//!   (where secrets come from);
//! - tools: [`mockcrm`] (a fake customer server for onboarding, demos, tests).

pub mod auth;
pub mod budget;
pub mod circuit;
pub mod classify;
pub mod config;
pub mod consumer;
pub mod coordinator;
pub mod delivery;
pub mod dlq;
pub mod health;
pub mod http;
pub mod metrics;
pub mod mockcrm;
pub mod partition;
pub mod preflight;
pub mod proxy;
pub mod retry;
pub mod route;
pub mod secret;
pub mod server;
pub mod signing;
pub mod tls;
pub mod watermark;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::circuit::Circuit;
use crate::config::RelayConfig;
use crate::consumer::ConsumerSettings;
use crate::delivery::Deliverer;
use crate::health::{Assessment, Health};
use crate::metrics::RelayMetrics;

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Kafka consumer or producer could not be created.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Kafka cannot be used as configured: found at start-up, before
    /// consuming (wrong credentials, unknown topic, no broker answers).
    #[error(transparent)]
    KafkaSetup(#[from] preflight::SetupError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] http::ClientError),
    /// The metrics address could not be bound.
    #[error("observability.metrics_listen {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The consumer thread panicked.
    #[error("the consumer thread failed")]
    ConsumerThread,
    /// librdkafka reported a fatal error (for example this static member was
    /// fenced by another relay with the same `kafka.instance_id`): the
    /// consumer cannot go on. The relay drained and committed what was
    /// finished.
    #[error("fatal Kafka client error, the consumer cannot go on: {0}")]
    KafkaFatal(String),
    /// A delivery panicked (a bug). The relay drained and committed what was
    /// finished; the record is redelivered on restart.
    #[error("a delivery panicked; the relay stopped (see the error log)")]
    DeliveryPanicked,
    /// The relay held unfinished records without progress for
    /// `health.stall_timeout_ms` and `health.exit_on_stall` is on. It
    /// committed what was finished; the rest is redelivered on restart.
    #[error("stalled: {0}; exiting so that the relay is restarted (health.exit_on_stall)")]
    Stalled(String),
}

impl RunError {
    /// The process exit code for this error: 3 for a stall (an orchestrator
    /// restarts the relay), 2 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Stalled(_) => 3,
            _ => 2,
        }
    }
}

/// Runs a relay until `shutdown` resolves: then it stops fetching, finishes
/// in-flight records within `shutdown.deadline_ms`, commits and leaves the
/// group.
///
/// # Errors
/// Kafka cannot be used as configured ([`preflight`]), Kafka clients, the
/// HTTP client or the metrics listener cannot be set up, or the consumer
/// thread failed.
pub async fn run(config: RelayConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    // Before any client of the relay talks to Kafka: a setup that cannot
    // work ends here with the reason, not in a relay that logs errors.
    preflight::check(&config).await?;
    let metrics = RelayMetrics::new();
    let health = Arc::new(Health::new(Duration::from_millis(
        config.health.stall_timeout_ms,
    )));
    let stop = CancellationToken::new();
    let fatal = CancellationToken::new();
    let dlq_topic = config.dlq_topic();
    let props: Vec<(String, String)> = config
        .kafka
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    let dlq = dlq::writer::DlqWriter::new(
        &config.kafka.brokers,
        &dlq_topic,
        props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let (circuit_changed, _) = watch::channel(0u64);
    let relay_id = config.relay_id();
    let deliverer = Arc::new(Deliverer {
        target: http::Target::new(&config.target)?,
        classifier: config.classifier(),
        policy: config.retry_policy(),
        circuit: Mutex::new(Circuit::new(config.circuit_config())),
        circuit_changed,
        requests: Semaphore::new(match config.target.budget.max_concurrent_requests {
            0 => config.concurrency.max_in_flight,
            n => n.min(config.concurrency.max_in_flight),
        }),
        budget: Mutex::new(budget::Budget::new(
            &config.target.budget,
            std::time::Instant::now(),
        )),
        filter: config.filter.clone(),
        dlq: dlq.clone(),
        metrics: metrics.clone(),
        target_redacted: dlq::headers::redact_url(&config.target.url),
        group: config.kafka.group.clone(),
        relay_id: relay_id.clone(),
        attempt_timeout: Duration::from_millis(
            config
                .target
                .connect_timeout_ms
                .saturating_add(config.target.request_timeout_ms)
                .saturating_add(1_000),
        ),
    });

    let listen = config.observability.metrics_listen.trim();
    if !(listen.is_empty() || listen == "off") {
        let addr: SocketAddr = listen.parse().map_err(|_| RunError::MetricsBind {
            addr: listen.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an address"),
        })?;
        let bound = server::serve(addr, metrics.clone(), health.clone(), stop.clone())
            .await
            .map_err(|source| RunError::MetricsBind {
                addr: listen.to_owned(),
                source,
            })?;
        info!(%bound, "serving /metrics, /healthz, /readyz");
    }

    let consumer = consumer::create_consumer(
        &config,
        tokio::runtime::Handle::current(),
        deliverer,
        metrics.clone(),
        // Not a child of `stop`: a shutdown must let in-flight records
        // finish; workers are cancelled only when a settle deadline passes.
        CancellationToken::new(),
        health.clone(),
        fatal.clone(),
    )?;
    let settings = ConsumerSettings {
        window: config.concurrency.max_in_flight_per_partition,
        commit_interval: Duration::from_millis(config.commit.interval_ms),
        revoke_deadline: Duration::from_millis(config.shutdown.revoke_deadline_ms),
        shutdown_deadline: Duration::from_millis(config.shutdown.deadline_ms),
    };
    info!(
        relay = %relay_id,
        topic = %config.kafka.topic,
        group = %config.kafka.group,
        dlq = %dlq_topic,
        target = %dlq::headers::redact_url(&config.target.url),
        "relay starting"
    );
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("cpn-consumer".into())
        .spawn(move || consumer::run_consumer(consumer, settings, thread_stop))
        .map_err(|_| RunError::ConsumerThread)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // Some(fatal reason or None) when the thread returned, None when it panicked.
    let waiter = std::thread::spawn(move || {
        let _ = done_tx.send(thread.join().ok());
    });
    tokio::pin!(done_rx);
    let stalled = watch_health(health, metrics, config.health.exit_on_stall, stop.clone());
    tokio::pin!(stalled);
    let mut stall_reason = None;
    tokio::select! {
        why = &mut stalled => {
            tracing::error!(reason = %why, "stalled: stopping so that the orchestrator restarts the relay; nothing is lost");
            stall_reason = Some(why);
            stop.cancel();
        }
        _ = shutdown => {
            info!("shutdown requested");
            stop.cancel();
        }
        _ = fatal.cancelled() => {
            tracing::error!("stopping after a panicked delivery");
            stop.cancel();
        }
        done = &mut done_rx => {
            // The consumer thread ended by itself: a fatal Kafka error, or a panic.
            stop.cancel();
            let _ = waiter.join();
            let _ = dlq.flush(Duration::from_secs(5));
            return Err(match done.ok().flatten() {
                Some(Some(why)) => RunError::KafkaFatal(why),
                _ => RunError::ConsumerThread,
            });
        }
    }
    let done = done_rx.await.ok().flatten();
    let _ = waiter.join();
    let _ = dlq.flush(Duration::from_secs(5));
    info!("relay stopped");
    if done.is_none() {
        Err(RunError::ConsumerThread)
    } else if let Some(Some(why)) = done {
        Err(RunError::KafkaFatal(why))
    } else if let Some(why) = stall_reason {
        Err(RunError::Stalled(why))
    } else if fatal.is_cancelled() {
        Err(RunError::DeliveryPanicked)
    } else {
        Ok(())
    }
}

/// Assesses the relay's health every second: keeps `cpn_relay_stalled` true,
/// logs each stall once at ERROR and, with `exit_on_stall`, resolves with the
/// reason (the caller stops the relay). Never resolves otherwise, and stops
/// watching once `stop` fires (a draining relay is not judged).
async fn watch_health(
    health: Arc<Health>,
    metrics: metrics::RelayMetrics,
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
mod tests {
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
        let metrics = metrics::RelayMetrics::new();
        let why = tokio::time::timeout(
            Duration::from_secs(10),
            watch_health(
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
        let metrics = metrics::RelayMetrics::new();
        let watched = tokio::time::timeout(
            Duration::from_millis(2_500),
            watch_health(
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
