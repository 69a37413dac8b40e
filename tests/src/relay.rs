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
    c.kafka.session_timeout = std::time::Duration::from_millis(6_000);
    c.target.url = url.to_owned();
    c.target.request_timeout = std::time::Duration::from_millis(5_000);
    c.target.connect_timeout = std::time::Duration::from_millis(1_000);
    c.retry.initial_delay = std::time::Duration::from_millis(20);
    c.retry.max_delay = std::time::Duration::from_millis(200);
    c.retry.max_attempts = 5;
    c.retry.max_elapsed = std::time::Duration::from_millis(10_000);
    c.circuit.open_initial = std::time::Duration::from_millis(100);
    c.circuit.open_max = std::time::Duration::from_millis(1_000);
    c.commit.interval = std::time::Duration::from_millis(200);
    c.shutdown.deadline = std::time::Duration::from_millis(10_000);
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

/// A fresh topic, its dead-letter topic `<topic>.dlq` and a fresh group name.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Bootstrap address.
    pub brokers: String,
    /// Topic of events.
    pub topic: String,
    /// Its dead-letter topic.
    pub dlq: String,
    /// A consumer group nobody used yet.
    pub group: String,
}

/// Creates a [`Fixture`] with `partitions` partitions (the DLQ has one).
///
/// # Errors
/// No broker, or the topics cannot be created.
pub async fn fixture(partitions: i32) -> Result<Fixture> {
    let brokers = crate::broker()?;
    let topic = crate::unique("cp");
    let dlq = format!("{topic}.dlq");
    crate::create_topic(&brokers, &topic, partitions).await?;
    crate::create_topic(&brokers, &dlq, 1).await?;
    Ok(Fixture {
        brokers,
        topic,
        dlq,
        group: crate::unique("g"),
    })
}

impl Fixture {
    /// A relay configuration for this fixture and `url`.
    pub fn config(&self, url: &str) -> RelayConfig {
        test_config(&self.brokers, &self.topic, &self.group, url)
    }

    /// Produces `n` events of calling list `list` on distinct chains;
    /// returns their GUIDs.
    ///
    /// # Errors
    /// Kafka did not acknowledge.
    pub async fn produce_events(&self, list: &str, n: i64) -> Result<Vec<String>> {
        let p = crate::producer(&self.brokers)?;
        let mut guids = Vec::new();
        for i in 0..n {
            let (guid, body) = crate::event(list, i, 0);
            crate::produce(&p, &self.topic, &format!("{list}:{i}"), Some(&guid), &body).await?;
            guids.push(guid);
        }
        Ok(guids)
    }

    /// How many records the dead-letter topic holds now.
    ///
    /// # Errors
    /// Kafka does not answer.
    pub fn dead_letters(&self) -> Result<usize> {
        Ok(crate::read_all(&self.brokers, &self.dlq)?.len())
    }
}

/// A mock CRM on a free loopback port.
///
/// # Errors
/// The port cannot be bound or the behavior is invalid.
pub async fn mock_crm(behavior: cpn_mock_crm::Behavior) -> Result<cpn_mock_crm::MockCrm> {
    use cpn_mock_crm::MockCrm;
    Ok(MockCrm::start(MockCrm::bind("127.0.0.1:0".parse()?)?, behavior).await?)
}

/// A `cpn-relay run` of `f`'s topic and group to `crm`, its metrics on
/// `port` (not spawned: callers add what their scenario needs).
///
/// # Errors
/// The relay binary cannot be found or built.
pub fn relay_on(
    f: &Fixture,
    crm: &cpn_mock_crm::MockCrm,
    port: u16,
) -> Result<tokio::process::Command> {
    let mut c = crate::ledger::relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?;
    c.args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    Ok(c)
}
