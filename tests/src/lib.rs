//! Shared harness for the end-to-end tests: where the broker is, fresh topic
//! and group names, topic creation, and waiting with deadlines.
//!
//! Every test here runs against the real Kafka broker started by
//! `deploy/kafka/kafka-local start`. When no broker answers, [`broker`] fails
//! the test with the command that starts one: these tests never skip.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long a test waits for the broker to answer a metadata request.
pub const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bootstrap address of the test broker: `CPN_TEST_BROKERS`, else
/// `127.0.0.1:$KAFKA_PORT`, else `127.0.0.1:9092`.
pub fn bootstrap() -> String {
    if let Ok(b) = std::env::var("CPN_TEST_BROKERS") {
        return b;
    }
    let port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".to_owned());
    format!("127.0.0.1:{port}")
}

/// Checks that the broker answers and returns its bootstrap address.
///
/// # Errors
/// Fails, naming the command that starts the broker, when no broker answers
/// within [`BROKER_PROBE_TIMEOUT`].
pub fn broker() -> Result<String> {
    let brokers = bootstrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("socket.timeout.ms", "5000")
        .create()
        .context("creating a probe client")?;
    match consumer.fetch_metadata(None, BROKER_PROBE_TIMEOUT) {
        Ok(md) if !md.brokers().is_empty() => Ok(brokers),
        Ok(_) => bail!("broker at {brokers} returned no brokers in its metadata"),
        Err(e) => bail!(
            "no Kafka broker answers at {brokers} ({e}). These tests need the real local broker: \
             run `deploy/kafka/kafka-local start` (or `deploy/test`, which starts it) and try again"
        ),
    }
}

/// A name unique to this process and call, for topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates `topic` with `partitions` partitions and waits until it exists.
///
/// # Errors
/// Fails when the broker refuses the topic or does not answer.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics([&new], &opts).await.context("create_topics")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name}: {code}");
        }
    }
    Ok(())
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `deadline`
/// with `what` in the message.
///
/// # Errors
/// Fails when the deadline passes first.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
