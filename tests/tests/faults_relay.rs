//! The fault suite, relay side: relays killed, frozen and rescaled under
//! load, every event counted by the ledger (`cpn_e2e::faults`). CI scale in
//! the test command; `CPN_FAULTS=extended` for the long run (`deploy/faults`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cpn_e2e::faults::{Bounds, Ledger, Load};
use cpn_e2e::ledger::{free_port, metric, relay_command, signal, stop_ok};
use cpn_e2e::relay::{fixture, mock_crm, relay_on};
use cpn_e2e::{committed, read_all, wait_for};
use cpn_mock_crm::{Behavior, Latency, MockCrm};

/// The relays' session timeout (`relay_command`): a SIGKILLed member holds
/// its partitions this long before the group gives them to another.
const SESSION: Duration = Duration::from_secs(6);

/// A stall the group's own protocol explains: the session of a dead member
/// runs out, the rebalance completes, a fetch starts (plus a margin for a
/// machine shared with the rest of the suite).
const REBALANCE_STALL: Duration = Duration::from_secs(SESSION.as_secs() + 14);

async fn gauge(port: u16, name: &str) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation)] // gauges hold small integers
    metric(port, name).await.map(|v| v as i64)
}

/// Waits until `n` more events than now were delivered.
async fn progress(ledger: &Ledger, crm: &MockCrm, n: usize, what: &str) -> Result<()> {
    ledger.observe(crm);
    let want = ledger.delivered() + n;
    let deadline = ledger.tier().deadline();
    wait_for(what, deadline, || async {
        ledger.observe(crm);
        (ledger.delivered() >= want).then_some(())
    })
    .await
}

/// Ten SIGKILLs of the one relay, each restarted at once, while events keep
/// coming. The bound: after a kill only what was not committed can come
/// again (invariant 2). Each kill may redeliver the records delivered at or
/// past the committed position at that moment, plus those in flight (at
/// most one per chain); the test counts both from the ledger at each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_under_load_lose_nothing_and_redeliver_only_the_uncommitted() -> Result<()> {
    let ledger = Ledger::new("relay-sigkill-x10")?;
    let tier = ledger.tier();
    let f = fixture(6).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(5))))
            .await?;
    let chains = 60;
    let rate = tier.pick(300.0, 1200.0);
    let total = tier.pick(30_000, 120_000);
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-kill",
        chains,
        total,
        Some(rate),
    )?;
    let port = free_port()?;
    let mut r = relay_on(&f, &crm, port)?
        .spawn()
        .context("spawning cpn-relay")?;
    let mut allowance = 0usize;
    for kill in 1..=10 {
        progress(&ledger, &crm, 300, "deliveries between kills").await?;
        r.start_kill()?;
        r.wait().await?;
        ledger.instant(&format!("SIGKILL relay #{kill}"));
        // What a restart may send again: delivered, not yet committed.
        ledger.observe(&crm);
        let at_kill = committed(&f.brokers, &f.group, &f.topic)?;
        let uncommitted = ledger
            .ok_counts()
            .keys()
            .filter_map(|g| ledger.position(g))
            .filter(|(p, o)| at_kill.get(p).is_none_or(|c| o >= c))
            .count();
        allowance += uncommitted + chains;
        r = relay_on(&f, &crm, port)?
            .spawn()
            .context("restarting cpn-relay")?;
    }
    let published = load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(r, "the last relay").await?;
    let report = ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: allowance,
            stall: REBALANCE_STALL,
        },
    )?;
    ensure!(
        report.events == published,
        "the ledger holds every published event"
    );
    ensure!(report.faults == 10, "ten kills were injected");
    Ok(())
}

/// A relay frozen (SIGSTOP) past its session while a second one runs: the
/// group gives its partitions to the other, the frozen one wakes up (SIGCONT)
/// as a zombie with requests in flight and stale offsets, and must neither
/// commit over the other's progress nor lose what it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_relay_woken_after_its_session_loses_nothing() -> Result<()> {
    let ledger = Ledger::new("relay-zombie")?;
    let tier = ledger.tier();
    let f = fixture(6).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(20))))
            .await?;
    let chains = 60;
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-zombie",
        chains,
        tier.pick(15_000, 100_000),
        Some(tier.pick(400.0, 1500.0)),
    )?;
    let (pa, pb) = (free_port()?, free_port()?);
    let a = relay_on(&f, &crm, pa)?
        .spawn()
        .context("spawning relay A")?;
    let b = relay_on(&f, &crm, pb)?
        .spawn()
        .context("spawning relay B")?;
    wait_for("both relays hold partitions", tier.deadline(), || async {
        let (x, y) = (
            gauge(pa, "cpn_relay_assigned_partitions").await?,
            gauge(pb, "cpn_relay_assigned_partitions").await?,
        );
        (x > 0 && y > 0 && x + y == 6).then_some(())
    })
    .await?;
    let mut allowance = 0;
    for round in 1..=tier.pick(2, 5) {
        progress(&ledger, &crm, 500, "deliveries before the freeze").await?;
        signal(&a, "STOP")?;
        let frozen = ledger.begin(&format!("SIGSTOP relay A past its session #{round}"), false);
        // What A delivered but had not committed is what may come again.
        ledger.observe(&crm);
        let at_freeze = committed(&f.brokers, &f.group, &f.topic)?;
        allowance += ledger
            .ok_counts()
            .keys()
            .filter_map(|g| ledger.position(g))
            .filter(|(p, o)| at_freeze.get(p).is_none_or(|c| o >= c))
            .count()
            + chains;
        wait_for("B to take all partitions", tier.deadline(), || async {
            (gauge(pb, "cpn_relay_assigned_partitions").await? == 6).then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        signal(&a, "CONT")?;
        ledger.end(frozen);
        wait_for("A to rejoin with partitions", tier.deadline(), || async {
            let x = gauge(pa, "cpn_relay_assigned_partitions").await?;
            let y = gauge(pb, "cpn_relay_assigned_partitions").await?;
            (x > 0 && x + y == 6).then_some(())
        })
        .await?;
    }
    load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(a, "relay A").await?;
    stop_ok(b, "relay B").await?;
    // The freeze itself is a stall of the partitions A held: the session
    // (6 s) runs out before B gets them, then a rebalance.
    ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: allowance,
            stall: REBALANCE_STALL,
        },
    )?;
    Ok(())
}

/// 1 → 3 → 1 relays under load. Scaling is a graceful rebalance: revoked
/// partitions finish their in-flight records and commit before they move,
/// so nothing is delivered twice (README: "a graceful stop (SIGTERM, or a
/// rebalance) … redelivers nothing").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescaling_one_three_one_under_load_delivers_everything_once() -> Result<()> {
    let ledger = Ledger::new("relay-rescale-1-3-1")?;
    let tier = ledger.tier();
    let f = fixture(6).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(10))))
            .await?;
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-scale",
        60,
        tier.pick(15_000, 100_000),
        Some(tier.pick(400.0, 1500.0)),
    )?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let first = relay_on(&f, &crm, ports[0])?.spawn().context("relay 1")?;
    let held = |n: usize| {
        let ports = &ports[..n];
        async move {
            let mut sum = 0;
            for p in ports {
                let x = gauge(*p, "cpn_relay_assigned_partitions").await?;
                if x == 0 {
                    return None;
                }
                sum += x;
            }
            (sum == 6).then_some(())
        }
    };
    let mut rounds = Vec::new();
    let mut others = Vec::new();
    for round in 1..=tier.pick(1, 3) {
        progress(&ledger, &crm, 500, "deliveries with one relay").await?;
        let up = ledger.begin(&format!("scale 1 → 3 #{round}"), false);
        others = vec![
            relay_on(&f, &crm, ports[1])?.spawn().context("relay 2")?,
            relay_on(&f, &crm, ports[2])?.spawn().context("relay 3")?,
        ];
        wait_for(
            "three relays sharing the partitions",
            tier.deadline(),
            || held(3),
        )
        .await?;
        ledger.end(up);
        progress(&ledger, &crm, 500, "deliveries with three relays").await?;
        let down = ledger.begin(&format!("scale 3 → 1 #{round}"), false);
        for r in others.drain(..) {
            stop_ok(r, "a scaled-in relay").await?;
        }
        wait_for("one relay holding everything", tier.deadline(), || held(1)).await?;
        ledger.end(down);
        rounds.push(round);
    }
    ensure!(
        others.is_empty() && !rounds.is_empty(),
        "every round scaled in"
    );
    load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(first, "relay 1").await?;
    ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: 0,
            stall: Duration::from_secs(15),
        },
    )?;
    Ok(())
}

/// The ledger itself, end to end: an event written down but never seen by
/// the relay is reported as lost, so a green scenario means something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_reports_an_event_that_never_arrived_as_lost() -> Result<()> {
    let f = fixture(1).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let ledger = Ledger::new("ledger-self-check")?;
    let load = Load::start(&ledger, &f.brokers, &f.topic, "list-self", 5, 20, None)?;
    load.finish().await?;
    // An event the relay will never see: written down, but not published.
    ledger.record(
        Some("00000000-0000-4000-8000-00000000dead"),
        Some(b"list-self:99"),
        (0, 1_000_000),
        cpn_e2e::faults::Expect::Deliver,
    );
    let relay = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .spawn()
        .context("spawning cpn-relay")?;
    wait_for("20 deliveries", ledger.tier().deadline(), || async {
        ledger.observe(&crm);
        (ledger.delivered() >= 20).then_some(())
    })
    .await?;
    stop_ok(relay, "the relay").await?;
    let err = ledger
        .verify(
            &crm,
            &read_all(&f.brokers, &f.dlq)?,
            Bounds {
                duplicates: 0,
                stall: Duration::from_secs(60),
            },
        )
        .err()
        .context("verify passed with an event lost")?;
    ensure!(format!("{err:#}").contains("1 events lost"), "{err:#}");
    let _ = std::fs::remove_file(
        cpn_e2e::faults::report_dir()
            .join(format!("ledger-self-check.{}.json", ledger.tier().name())),
    );
    Ok(())
}
