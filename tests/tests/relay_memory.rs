//! The engine under a deep backlog: each partition read from its own queue,
//! a relay-wide memory budget, no partition paused for backpressure, and
//! per-chain order and the commit watermark kept when split queues move
//! between relays in rebalances. Every event is counted by the ledger
//! (`cpn_e2e::faults`), against the real broker.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cpn_e2e::faults::{Bounds, Ledger, Load};
use cpn_e2e::ledger::{free_port, metric, stop_ok};
use cpn_e2e::relay::{fixture, mock_crm, relay_on};
use cpn_e2e::{read_all, wait_for};
use cpn_mock_crm::{Behavior, Latency};

/// The smallest budget the relay accepts: small enough that 120 partitions
/// with a window of 64 records each (7,680 records) would overrun it many
/// times over.
const BUDGET: u64 = 1024 * 1024;

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // gauges of small non-negative integers
async fn gauge(port: u16, name: &str) -> Option<u64> {
    metric(port, name).await.map(|v| v as u64)
}

/// 120 partitions, a backlog published before the relay starts, a slow
/// target and the smallest memory budget: the bytes of records taken never
/// exceed the budget, the budget is what bounds them (it is reached), no
/// partition is paused, and every event arrives once, each chain in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_backlog_on_120_partitions_stays_within_the_memory_budget() -> Result<()> {
    let ledger = Ledger::new("relay-memory-120")?;
    let tier = ledger.tier();
    let f = fixture(120).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(20))))
            .await?;
    let total = tier.pick(24_000, 100_000);
    let load = Load::start(&ledger, &f.brokers, &f.topic, "list-mem", 600, total, None)?;
    let published = load.finish().await?;
    let port = free_port()?;
    let r = relay_on(&f, &crm, port)?
        .env("CPN_CONCURRENCY_MEMORY_BUDGET_BYTES", BUDGET.to_string())
        .spawn()
        .context("spawning cpn-relay")?;
    wait_for(
        "the relay holding 120 partitions",
        tier.deadline(),
        || async { (gauge(port, "cpn_relay_assigned_partitions").await? == 120).then_some(()) },
    )
    .await?;
    let (mut samples, mut peak, mut paused) = (0usize, 0u64, 0u64);
    let deadline = tokio::time::Instant::now() + tier.deadline();
    loop {
        ledger.observe(&crm);
        if ledger.delivered() >= published {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{} of {published} delivered within {:?}",
            ledger.delivered(),
            tier.deadline()
        );
        if let (Some(taken), Some(budget), Some(p)) = (
            gauge(port, "cpn_relay_memory_taken_bytes").await,
            gauge(port, "cpn_relay_memory_budget_bytes").await,
            gauge(port, "cpn_relay_paused_partitions").await,
        ) {
            ensure!(budget == BUDGET, "the budget gauge says {budget}");
            ensure!(
                taken <= BUDGET,
                "{taken} bytes taken, over the budget of {BUDGET}"
            );
            samples += 1;
            peak = peak.max(taken);
            paused = paused.max(p);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(samples >= 10, "only {samples} samples of the memory gauge");
    ensure!(
        peak >= BUDGET / 2,
        "the budget never bound: at most {peak} of {BUDGET} bytes taken"
    );
    ensure!(paused == 0, "{paused} partitions paused without an outage");
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    let idle = gauge(port, "cpn_relay_memory_taken_bytes").await;
    ensure!(
        idle == Some(0),
        "every charge given back when all is finished: {idle:?}"
    );
    stop_ok(r, "the relay").await?;
    let report = ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: 0,
            stall: Duration::from_secs(15),
        },
    )?;
    ensure!(report.events == published, "the ledger holds every event");
    Ok(())
}

/// 1 → 2 → 1 relays while a backlog drains: partitions, with records
/// prefetched on their split queues, move to the second relay and back.
/// Revoked partitions settle and commit before they move, and a partition
/// assigned again is read from its queue again, so nothing is lost, stuck or
/// delivered twice, and each chain stays in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_queues_move_between_relays_without_loss_duplicates_or_reordering() -> Result<()> {
    let ledger = Ledger::new("relay-split-rebalance")?;
    let tier = ledger.tier();
    let f = fixture(12).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(10))))
            .await?;
    let total = tier.pick(20_000, 100_000);
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-split",
        120,
        total,
        None,
    )?;
    let published = load.finish().await?;
    let ports = [free_port()?, free_port()?];
    let first = relay_on(&f, &crm, ports[0])?.spawn().context("relay 1")?;
    let progress = |n: usize, what: &'static str| {
        let (ledger, crm) = (&ledger, &crm);
        async move {
            ledger.observe(crm);
            let want = (ledger.delivered() + n).min(published);
            wait_for(what, tier.deadline(), || async {
                ledger.observe(crm);
                (ledger.delivered() >= want).then_some(())
            })
            .await
        }
    };
    progress(total / 10, "deliveries with one relay").await?;
    let up = ledger.begin("scale 1 → 2", false);
    let second = relay_on(&f, &crm, ports[1])?.spawn().context("relay 2")?;
    wait_for(
        "two relays sharing 12 partitions",
        tier.deadline(),
        || async {
            let a = gauge(ports[0], "cpn_relay_assigned_partitions").await?;
            let b = gauge(ports[1], "cpn_relay_assigned_partitions").await?;
            (a > 0 && b > 0 && a + b == 12).then_some(())
        },
    )
    .await?;
    ledger.end(up);
    progress(total / 10, "deliveries with two relays").await?;
    let down = ledger.begin("scale 2 → 1", false);
    stop_ok(second, "relay 2").await?;
    wait_for(
        "one relay holding 12 partitions",
        tier.deadline(),
        || async { (gauge(ports[0], "cpn_relay_assigned_partitions").await? == 12).then_some(()) },
    )
    .await?;
    ledger.end(down);
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(first, "relay 1").await?;
    let report = ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: 0,
            stall: Duration::from_secs(15),
        },
    )?;
    ensure!(report.events == published, "the ledger holds every event");
    Ok(())
}
