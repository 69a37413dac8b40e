//! relay-bench: delivered events per second, Kafka → cpn-relay → mock CRM,
//! on the local broker. Prints a table; figures go to BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p cpn-e2e --bin relay-bench -- [EVENTS] [LATENCY_MS] [PARTITIONS] [CHAINS]
//! ```
//! Events are published first (not timed); the clock runs from the relay's
//! start until the CRM has answered 2xx for every event. The relay and the
//! mock CRM share this process and the machine's cores with the broker.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cpn_e2e::relay::{RunningRelay, test_config};
use cpn_e2e::{broker, create_topic, event, producer, unique};
use cpn_mock_crm::{Behavior, Latency, MockCrm, MockCrmOptions};
use rdkafka::producer::{FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

fn arg(n: usize, default: u64) -> Result<u64> {
    match std::env::args().nth(n) {
        Some(v) => v
            .parse()
            .with_context(|| format!("argument {n} ({v:?}) is not a whole number")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let events = arg(1, 100_000)?;
    let latency_ms = arg(2, 0)?;
    let partitions = arg(3, 6)? as i32;
    let chains = arg(4, 10_000)?.max(1) as i64;
    let brokers = broker()?;
    let topic = unique("bench");
    create_topic(&brokers, &topic, partitions).await?;
    create_topic(&brokers, &format!("{topic}.dlq"), 1).await?;

    let p = producer(&brokers)?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..events as i64 {
        let chain = i % chains;
        let (_, body) = event("bench", chain, i / chains);
        let key = format!("bench:{chain}");
        let fut = p.send_result(FutureRecord::to(&topic).key(&key).payload(&body));
        match fut {
            Ok(f) => pending.push(f),
            Err((e, _)) => anyhow::bail!("enqueue: {e}"),
        }
        if pending.len() >= 10_000 {
            for f in pending.drain(..) {
                f.await
                    .context("delivery canceled")?
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
            }
        }
    }
    for f in pending.drain(..) {
        f.await
            .context("delivery canceled")?
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    p.flush(Duration::from_secs(30))?;
    eprintln!(
        "published {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let latency = if latency_ms == 0 {
        Latency::None
    } else {
        Latency::Fixed(Duration::from_millis(latency_ms))
    };
    let crm = MockCrm::start_with(
        MockCrm::bind("127.0.0.1:0".parse()?)?,
        Behavior::status(200).with_latency(latency),
        MockCrmOptions {
            keep_received: Some(0),
            shutdown: CancellationToken::new(),
        },
    )
    .await?;
    let mut cfg = test_config(&brokers, &topic, &unique("bench"), &crm.url());
    // Production defaults for everything that shapes throughput.
    let defaults = cpn_relay::config::RelayConfig::default();
    cfg.concurrency = defaults.concurrency.clone();
    cfg.commit = defaults.commit.clone();
    cfg.retry = defaults.retry.clone();
    for kv in std::env::var("BENCH_X")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').context("BENCH_X takes key=value,...")?;
        cfg.kafka
            .properties
            .insert(k.into(), cpn_relay::secret::Secret(v.into()));
    }
    if let Ok(w) = std::env::var("BENCH_WINDOW") {
        cfg.concurrency.max_in_flight_per_partition = w.parse()?;
    }
    cfg.observability.metrics_listen =
        std::env::var("BENCH_METRICS").unwrap_or_else(|_| "off".into());
    let t0 = Instant::now();
    let relay = RunningRelay::start(cfg)?;
    let mut last = 0;
    let mut first_at = None;
    while crm.received_count() < events {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = crm.received_count();
        if n > 0 && first_at.is_none() {
            first_at = Some(t0.elapsed());
        }
        if n != last {
            last = n;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(600),
            "only {n} of {events} delivered in 600 s"
        );
    }
    let total = t0.elapsed();
    let warmup = first_at.unwrap_or_default();
    relay.stop().await?;
    let steady = total.saturating_sub(warmup).as_secs_f64();
    println!(
        "| events | partitions | chains | CRM latency | wall s (incl. group join) | events/s wall | events/s after first delivery |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {events} | {partitions} | {chains} | {latency_ms} ms | {:.2} | {:.0} | {:.0} |",
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64(),
        events as f64 / steady.max(1e-9),
    );
    Ok(())
}
