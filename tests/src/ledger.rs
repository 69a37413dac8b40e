//! Counting every event in a fault test: what was published where, what the
//! mock CRM accepted, and the relay binary run as a process (spawned,
//! signalled, scraped).

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cpn_mock_crm::MockCrm;
use tokio::process::{Child, Command};

use crate::{event, produce, producer, wait_for};

/// How long a fault test waits for an outcome before it fails.
pub const WAIT: Duration = Duration::from_secs(120);

/// Events published by [`publish`].
#[derive(Debug, Default)]
pub struct Sent {
    /// guid → (partition, offset)
    pub at: HashMap<String, (i32, i64)>,
    /// guid → key (the chain)
    pub keys: HashMap<String, String>,
}

/// Publishes `per_chain` rounds of one event per chain; each round waits for
/// its acks, so every chain's events are in offset order.
///
/// # Errors
/// Kafka did not acknowledge.
pub async fn publish(
    brokers: &str,
    topic: &str,
    list: &str,
    chains: i64,
    per_chain: i64,
) -> Result<Sent> {
    let p = producer(brokers)?;
    let mut at = HashMap::new();
    let mut keys = HashMap::new();
    for n in 0..per_chain {
        let batch: Vec<_> = (0..chains)
            .map(|c| {
                let (g, b) = event(list, c, n);
                (format!("{list}:{c}"), g, b)
            })
            .collect();
        let sends = batch
            .iter()
            .map(|(k, g, b)| produce(&p, topic, k, Some(g), b));
        let results = futures::future::join_all(sends).await;
        for ((k, g, _), r) in batch.iter().zip(results) {
            at.insert(g.clone(), r?);
            keys.insert(g.clone(), k.clone());
        }
    }
    Ok(Sent { at, keys })
}

/// GUID → how many times the CRM answered it 200.
pub fn delivered(crm: &MockCrm) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in crm.received() {
        if r.status_sent == 200
            && let Some(g) = r.etag
        {
            *m.entry(g).or_insert(0) += 1;
        }
    }
    m
}

/// Waits until the CRM accepted every event of `sent`.
///
/// # Errors
/// Some were not delivered within [`WAIT`] (the message says how many).
pub async fn wait_all_delivered(crm: &MockCrm, sent: &Sent) -> Result<()> {
    let want = sent.at.len();
    let r = wait_for(&format!("all {want} events delivered"), WAIT, || async {
        let d = delivered(crm);
        sent.at.keys().all(|g| d.contains_key(g)).then_some(())
    })
    .await;
    if r.is_err() {
        let d = delivered(crm);
        let missing = sent.at.keys().filter(|g| !d.contains_key(*g)).count();
        return r.with_context(|| format!("{missing} of {want} never delivered"));
    }
    r
}

/// `cpn-relay run` for a topic, group and target, with the fast retry and
/// commit settings of the fault tests, no metrics listener and warnings-only
/// logs. Add `.env(…)`/`.args(…)` before spawning.
///
/// # Errors
/// The binary cannot be built.
pub fn relay_command(brokers: &str, topic: &str, group: &str, url: &str) -> Result<Command> {
    let mut c = Command::new(crate::bin_path("cpn-relay")?);
    c.args(["run", "--brokers", brokers, "--topic", topic])
        .args(["--group", group, "--target-url", url])
        .env("CPN_OBSERVABILITY_METRICS_LISTEN", "off")
        .env("CPN_RETRY_INITIAL_DELAY_MS", "20")
        .env("CPN_RETRY_MAX_DELAY_MS", "200")
        .env("CPN_COMMIT_INTERVAL_MS", "200")
        .env("CPN_CONCURRENCY_MAX_IN_FLIGHT_PER_PARTITION", "64")
        .env("CPN_KAFKA_SESSION_TIMEOUT_MS", "6000")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    Ok(c)
}

/// Spawns [`relay_command`] as it is.
///
/// # Errors
/// The binary cannot be built or started.
pub fn spawn_relay(brokers: &str, topic: &str, group: &str, url: &str) -> Result<Child> {
    relay_command(brokers, topic, group, url)?
        .spawn()
        .context("spawning cpn-relay")
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`, …) to the child.
///
/// # Errors
/// The child has exited, or `kill` failed.
pub fn signal(child: &Child, signal: &str) -> Result<()> {
    let pid = child.id().context("relay already exited")?;
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()?;
    anyhow::ensure!(st.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// SIGTERM.
///
/// # Errors
/// As [`signal`].
pub fn sigterm(child: &Child) -> Result<()> {
    signal(child, "TERM")
}

/// SIGTERMs a relay and waits up to 60 s for it to exit 0.
///
/// # Errors
/// It cannot be signalled, does not exit in time, or exits otherwise.
pub async fn stop_ok(mut relay: Child, what: &str) -> Result<()> {
    sigterm(&relay)?;
    let st = tokio::time::timeout(Duration::from_secs(60), relay.wait())
        .await
        .with_context(|| format!("{what} did not exit within 60 s of SIGTERM"))??;
    ensure!(st.success(), "{what} exited {st} after SIGTERM");
    Ok(())
}

/// A free loopback port (for a metrics listener).
///
/// # Errors
/// No port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The value of an unlabelled metric (or the first series starting with
/// `name`) scraped from a relay's `/metrics` on `port`; `None` while it
/// does not answer.
pub async fn metric(port: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
}

/// `/readyz` of a relay on `port`: status and body; `None` while it does
/// not answer.
pub async fn readyz(port: u16) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}
