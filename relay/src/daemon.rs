//! The daemon: [`run`] wires the rooms together for one relay process and
//! waits for a shutdown, a fatal error or a stall. It holds no logic of its
//! own beyond the order of start-up and of shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::RelayConfig;
use crate::delivery::Deliverer;
use crate::dlq;
use crate::kafka::consumer::{self, ConsumerSettings};
use crate::kafka::preflight;
use crate::observe::health::{self, Health};
use crate::observe::metrics::RelayMetrics;
use crate::observe::server;
use crate::target;

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
    Client(#[from] target::error::ClientError),
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
    let ready = preflight::check(&config).await?;
    let metrics = RelayMetrics::new();
    let health = Arc::new(Health::new(config.health.stall_timeout));
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
    let relay_id = config.relay_id();
    let deliverer = Arc::new(Deliverer::new(
        &config,
        dlq.clone(),
        metrics.clone(),
        relay_id.clone(),
    )?);

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
        ready.topic_partitions,
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
        commit_interval: config.commit.interval,
        shutdown_deadline: config.shutdown.deadline,
    };
    info!(
        relay = %relay_id,
        topic = %config.kafka.topic,
        group = %config.kafka.group,
        dlq = %dlq_topic,
        target = %crate::secret::redact_url(&config.target.url),
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
    let stalled = health::watch(health, metrics, config.health.exit_on_stall, stop.clone());
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
            flush(dlq).await;
            return Err(match done.ok().flatten() {
                Some(Some(why)) => RunError::KafkaFatal(why),
                _ => RunError::ConsumerThread,
            });
        }
    }
    let done = done_rx.await.ok().flatten();
    let _ = waiter.join();
    flush(dlq).await;
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

/// Waits (off the async threads: librdkafka's flush blocks) up to 5 s for
/// dead letters still queued in the producer.
async fn flush(dlq: dlq::writer::DlqWriter) {
    let flushed = tokio::task::spawn_blocking(move || dlq.flush(Duration::from_secs(5))).await;
    if !matches!(flushed, Ok(Ok(()))) {
        tracing::warn!("the dead-letter producer did not flush within 5 s");
    }
}
