//! Recovery measurements, run by hand (ignored by default: they take
//! minutes and print figures for BENCHMARKS.md rather than assert them).
//!
//! ```text
//! CARGO_BUILD_JOBS=1 cargo test -p cpn-e2e --test recovery_bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - `crash_recovery`: SIGKILL a relay of the real binary mid-backlog,
//!   restart it at once, and time the first delivery by the restarted relay,
//!   for each group protocol with and without a static `--instance-id`.
//! - `rescale_gaps`: 1 → 3 → 1 relays under load; the longest gap between
//!   two requests arriving at the CRM during each step.
//!
//! A 20 ms mock CRM, 6 partitions, a published backlog, the production
//! session timeout (10 s) and the broker's defaults.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use cpn_e2e::ledger::{WAIT, publish, relay_command, sigterm, wait_all_delivered};
use cpn_e2e::relay::{fixture, mock_crm};
use cpn_mock_crm::{Behavior, Latency, MockCrm};
use tokio::process::Child;

const RUNS: usize = 3;

fn spawn(
    f: &cpn_e2e::relay::Fixture,
    crm: &MockCrm,
    protocol: &str,
    instance_id: Option<&str>,
) -> Result<Child> {
    let mut c = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?;
    // Production window: the harness's 64 would cap each partition's
    // concurrency below what the rescale figures are about.
    c.env_remove("CPN_CONCURRENCY_MAX_IN_FLIGHT_PER_PARTITION")
        .env("CPN_KAFKA_SESSION_TIMEOUT_MS", "10000")
        .env("CPN_KAFKA_GROUP_PROTOCOL", protocol);
    if let Some(id) = instance_id {
        c.args(["--instance-id", id]);
    }
    c.spawn().context("spawning cpn-relay")
}

/// Polls the CRM every 5 ms until it has received more than `n` requests.
async fn until_more_than(crm: &MockCrm, n: u64) -> Result<Instant> {
    let start = Instant::now();
    while crm.received_count() <= n {
        anyhow::ensure!(start.elapsed() < WAIT, "no delivery within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Instant::now())
}

/// (restart → first delivery, kill → first delivery, redelivered).
async fn one_crash(protocol: &str, static_id: bool) -> Result<(Duration, Duration, usize)> {
    let f = fixture(6).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(20))))
            .await?;
    let sent = publish(&f.brokers, &f.topic, "list-rb", 40, 150).await?;
    let id = static_id.then(|| cpn_e2e::unique("relay"));
    let mut relay = spawn(&f, &crm, protocol, id.as_deref())?;
    until_more_than(&crm, 500).await?;
    relay.start_kill()?;
    relay.wait().await?;
    let killed = Instant::now();
    let n = crm.received_count();
    let restarted = Instant::now();
    let mut relay = spawn(&f, &crm, protocol, id.as_deref())?;
    let first = until_more_than(&crm, n).await?;
    wait_all_delivered(&crm, &sent).await?;
    sigterm(&relay)?;
    tokio::time::timeout(Duration::from_secs(60), relay.wait()).await??;
    let d = cpn_e2e::ledger::delivered(&crm);
    let dups = d.values().map(|n| n - 1).sum();
    Ok((first - restarted, first - killed, dups))
}

fn stats(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.2} s, min {:.2} s, max {:.2} s ({})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement run by hand: prints figures for BENCHMARKS.md"]
async fn crash_recovery() -> Result<()> {
    let only = std::env::var("BENCH_CASES").unwrap_or_default();
    // consumer + instance id is not measured: the broker refuses the
    // restarted static member (UNRELEASED_INSTANCE_ID, fatal in librdkafka
    // 2.12.1) until the old session expires, so config validation refuses
    // the combination.
    for (protocol, static_id) in [("classic", false), ("classic", true), ("consumer", false)] {
        let name = format!("{protocol}{}", if static_id { "+instance-id" } else { "" });
        if !only.is_empty() && !only.split(',').any(|c| c == name) {
            continue;
        }
        let (mut restart, mut kill, mut dups) = (vec![], vec![], vec![]);
        for _ in 0..RUNS {
            let (r, k, d) = one_crash(protocol, static_id).await?;
            eprintln!(
                "{name}: restart→first {:.2} s, kill→first {:.2} s, redelivered {d}",
                r.as_secs_f64(),
                k.as_secs_f64()
            );
            restart.push(r.as_secs_f64());
            kill.push(k.as_secs_f64());
            dups.push(d);
        }
        eprintln!(
            "RESULT {name}: restart→first delivery {}; kill→first {}; redelivered {dups:?}",
            stats(&mut restart),
            stats(&mut kill)
        );
    }
    Ok(())
}

/// The longest interval without a request arriving at the CRM between
/// `from` and `to` (the edges count).
fn longest_gap(arrivals: &[SystemTime], from: SystemTime, to: SystemTime) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &t in arrivals.iter().filter(|t| **t >= from && **t <= to) {
        gap = gap.max(t.duration_since(last).unwrap_or_default());
        last = t;
    }
    gap.max(to.duration_since(last).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement run by hand: prints figures for BENCHMARKS.md"]
async fn rescale_gaps() -> Result<()> {
    const HOLD: Duration = Duration::from_secs(6);
    for protocol in ["classic", "consumer"] {
        for run in 0..RUNS {
            let f = fixture(6).await?;
            let crm = mock_crm(
                Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(20))),
            )
            .await?;
            let sent = publish(&f.brokers, &f.topic, "list-rs", 60, 1500).await?;
            let mut first = spawn(&f, &crm, protocol, None)?;
            until_more_than(&crm, 1000).await?;
            let steady = SystemTime::now();
            tokio::time::sleep(HOLD).await;
            let up = SystemTime::now();
            let mut more = vec![
                spawn(&f, &crm, protocol, None)?,
                spawn(&f, &crm, protocol, None)?,
            ];
            tokio::time::sleep(HOLD).await;
            let down = SystemTime::now();
            for r in &more {
                sigterm(r)?;
            }
            tokio::time::sleep(HOLD).await;
            let end = SystemTime::now();
            let left = crm.received_count();
            for r in &mut more {
                tokio::time::timeout(Duration::from_secs(60), r.wait()).await??;
            }
            let arrivals: Vec<SystemTime> = crm.received().iter().map(|r| r.at).collect();
            let total = sent.at.len();
            eprintln!(
                "RESULT {protocol} run {run}: steady 1 relay longest gap {:.3} s, 1→3 longest gap {:.3} s, \
                 3→1 longest gap {:.3} s ({left} of {total} requests by the end; must be < {total} \
                 for the steps to be under load)",
                longest_gap(&arrivals, steady, up).as_secs_f64(),
                longest_gap(&arrivals, up, down).as_secs_f64(),
                longest_gap(&arrivals, down, end).as_secs_f64(),
            );
            wait_all_delivered(&crm, &sent).await?;
            sigterm(&first)?;
            tokio::time::timeout(Duration::from_secs(60), first.wait()).await??;
        }
    }
    Ok(())
}
