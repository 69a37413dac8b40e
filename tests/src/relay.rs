//! Running a relay inside a test: a configuration tuned for fast tests and a
//! handle that stops it gracefully.

use std::time::Duration;

use anyhow::{Context, Result};
use cpn_relay::config::RelayConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A relay configuration for tests: short retry delays and commit interval,
/// no metrics listener, a per-test relay id.
pub fn test_config(brokers: &str, topic: &str, group: &str, url: &str) -> RelayConfig {
    let mut c = RelayConfig::default();
    c.kafka.brokers = brokers.to_owned();
    c.kafka.topic = topic.to_owned();
    c.kafka.group = group.to_owned();
    c.kafka.dlq_topic = Some(format!("{topic}.dlq"));
    c.kafka.session_timeout_ms = 6_000;
    c.target.url = url.to_owned();
    c.target.request_timeout_ms = 5_000;
    c.target.connect_timeout_ms = 1_000;
    c.retry.initial_delay_ms = 20;
    c.retry.max_delay_ms = 200;
    c.retry.max_attempts = 5;
    c.retry.max_elapsed_ms = 10_000;
    c.circuit.open_initial_ms = 100;
    c.circuit.open_max_ms = 1_000;
    c.commit.interval_ms = 200;
    c.shutdown.deadline_ms = 10_000;
    c.observability.metrics_listen = "off".into();
    c.observability.relay_id = Some(crate::unique("relay"));
    c
}

/// A relay running in this process.
#[derive(Debug)]
pub struct RunningRelay {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), cpn_relay::RunError>>,
}

impl RunningRelay {
    /// Starts `config` (validated first).
    ///
    /// # Errors
    /// The configuration is invalid.
    pub fn start(config: RelayConfig) -> Result<Self> {
        let problems = config.validate();
        anyhow::ensure!(problems.is_empty(), "test config invalid: {problems:?}");
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(cpn_relay::run(config, async move {
            let _ = rx.await;
        }));
        Ok(RunningRelay {
            stop: Some(tx),
            join,
        })
    }

    /// Stops it gracefully (drain, commit, leave) and waits.
    ///
    /// # Errors
    /// The relay failed or did not stop within 60 s.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.join)
            .await
            .context("relay did not stop within 60 s")?
            .context("relay task panicked")?
            .context("relay failed")?;
        Ok(())
    }
}
