//! Liveness and the target rejecting the relay (DESIGN invariants 5 and 8),
//! under faults that come together: the consumer's session lost while the
//! target is down (a broker restart, a frozen relay), a target that answers
//! the same 4xx to everybody, SIGTERM while the circuit is open, and what
//! `/readyz` says meanwhile. Every test ends by counting every event.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use cpn_e2e::broker::PrivateBroker;
use cpn_e2e::faults::{Bounds, Ledger};
use cpn_e2e::ledger::{
    WAIT, delivered, free_port, metric, publish, readyz, relay_command, signal, sigterm,
    wait_all_delivered,
};
use cpn_e2e::relay::{fixture, mock_crm};
use cpn_e2e::{create_topic, read_all, unique, wait_for};
use cpn_mock_crm::{Behavior, Latency};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Keeps reading a child's stderr (a full pipe would block it) into lines.
fn collect_stderr(child: &mut Child) -> Result<Arc<Mutex<Vec<String>>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut reader = BufReader::new(child.stderr.take().context("stderr not piped")?).lines();
    let sink = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    Ok(lines)
}

fn lines_with(log: &Mutex<Vec<String>>, needle: &str) -> usize {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

async fn gauge(port: u16, name: &str) -> Option<i64> {
    metric(port, name).await.map(|v| v as i64)
}

async fn stop_ok(mut relay: Child) -> Result<()> {
    sigterm(&relay)?;
    let status = tokio::time::timeout(Duration::from_secs(60), relay.wait())
        .await
        .context("relay did not stop within 60 s of SIGTERM")??;
    ensure!(status.success(), "exit after SIGTERM: {status}");
    Ok(())
}

/// Reproduction (b) of the stall: target answering 503, the broker
/// SIGKILLed and restarted, so the relay's session is lost while its circuit
/// is open. Its rejoined partitions were paused before any record arrived,
/// nothing was left to probe, and it sat idle forever with `/readyz` 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_while_the_broker_restarts_then_everything_is_delivered() -> Result<()> {
    let kafka = PrivateBroker::start()?;
    let brokers = kafka.bootstrap();
    let topic = unique("cp");
    create_topic(&brokers, &topic, 3).await?;
    create_topic(&brokers, &format!("{topic}.dlq"), 1).await?;
    let crm = mock_crm(Behavior::status(503)).await?;
    let ledger = Ledger::new("liveness-broker-restart-target-down")?;
    // 300 events in the test command, 102,000 in the extended run.
    let (chains, per_chain) = ledger.tier().pick((30, 10), (300, 340));
    let sent = publish(&brokers, &topic, "list-bk", chains, per_chain).await?;
    ledger.record_sent(&sent);
    let outage = ledger.begin("target 503 throughout", true);
    let port = free_port()?;
    let relay = relay_command(&brokers, &topic, &unique("g"), &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("CPN_CIRCUIT_OPEN_MAX_MS", "2000")
        .spawn()
        .context("spawning cpn-relay")?;
    wait_for("the circuit to open on 503s", WAIT, || async {
        (gauge(port, "cpn_relay_circuit_state").await? >= 1).then_some(())
    })
    .await?;
    kafka.kill()?;
    let broker_down = ledger.begin("broker SIGKILL", true);
    // The session (6 s) runs out while the broker is away: the partitions are lost.
    wait_for("the relay to lose its partitions", WAIT, || async {
        (gauge(port, "cpn_relay_assigned_partitions").await? == 0).then_some(())
    })
    .await?;
    kafka.restart()?;
    ledger.end(broker_down);
    wait_for("the relay to rejoin", WAIT, || async {
        (gauge(port, "cpn_relay_assigned_partitions").await? == 3).then_some(())
    })
    .await?;
    // The stall showed here: rejoined, paused, nothing in flight, forever.
    // Now the circuit probes on its own clock (open_max 2 s) while the
    // target is still down.
    let rejoined_at = crm.received_count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probes = crm.received_count() - rejoined_at;
    ensure!(probes >= 1, "no probe in 5 s after the rejoin: stalled");
    eprintln!("probes in the 5 s after the rejoin, target still down: {probes}");
    let (status, body) = readyz(port).await.context("no /readyz")?;
    ensure!(
        status == 200,
        "waiting on an open circuit with a probe scheduled is ready: {status} {body}"
    );
    crm.set_behavior(Behavior::status(200))?;
    ledger.end(outage);
    ledger
        .wait_settled(&crm, &brokers, &format!("{topic}.dlq"))
        .await?;
    stop_ok(relay).await?;
    let dlq = read_all(&brokers, &format!("{topic}.dlq"))?;
    ensure!(
        dlq.is_empty(),
        "an outage and a broker restart are not poison"
    );
    // One relay, no crash, nothing answered 2xx before the fix: no
    // duplicates. After the fix the next probe is due within open_max (2 s).
    ledger.verify(
        &crm,
        &dlq,
        Bounds {
            duplicates: 0,
            stall: Duration::from_secs(5),
        },
    )?;
    Ok(())
}

/// Reproduction (a): a relay frozen (SIGSTOP) past its session timeout with
/// requests in flight, another taking its partitions, the target failing
/// when it wakes up: its circuit opens as its session turns out lost, and
/// the partitions it gets back must still be delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_frozen_past_its_session_with_requests_in_flight_recovers() -> Result<()> {
    let f = fixture(4).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(500))))
            .await?;
    // 40 chains at 500 ms each: ~80 events/s, so 2,000 events keep both
    // relays busy for the whole scenario.
    let sent = publish(&f.brokers, &f.topic, "list-zz", 40, 50).await?;
    let ledger = Ledger::new("liveness-frozen-relay-target-down")?;
    ledger.record_sent(&sent);
    let (pa, pb) = (free_port()?, free_port()?);
    let a = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{pa}")])
        .env("CPN_CIRCUIT_OPEN_MAX_MS", "2000")
        .spawn()
        .context("spawning relay A")?;
    wait_for("relay A delivering", WAIT, || async {
        (delivered(&crm).len() >= 40).then_some(())
    })
    .await?;
    let b = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{pb}")])
        .env("CPN_CIRCUIT_OPEN_MAX_MS", "2000")
        .spawn()
        .context("spawning relay B")?;
    wait_for("both relays hold partitions", WAIT, || async {
        let (x, y) = (
            gauge(pa, "cpn_relay_assigned_partitions").await?,
            gauge(pb, "cpn_relay_assigned_partitions").await?,
        );
        (x > 0 && y > 0 && x + y == 4).then_some(())
    })
    .await?;
    wait_for("requests of A in flight", WAIT, || async {
        (gauge(pa, "cpn_relay_in_flight").await? > 0).then_some(())
    })
    .await?;
    signal(&a, "STOP")?;
    let frozen = ledger.begin("SIGSTOP relay A past its session", false);
    // While A is frozen the target starts failing, and B takes everything.
    crm.set_behavior(Behavior::status(503))?;
    let outage = ledger.begin("target 503", true);
    wait_for("B to take all partitions", WAIT, || async {
        (gauge(pb, "cpn_relay_assigned_partitions").await? == 4).then_some(())
    })
    .await?;
    signal(&a, "CONT")?;
    ledger.end(frozen);
    wait_for("A to rejoin with partitions of its own", WAIT, || async {
        let x = gauge(pa, "cpn_relay_assigned_partitions").await?;
        let y = gauge(pb, "cpn_relay_assigned_partitions").await?;
        (x > 0 && x + y == 4).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    crm.set_behavior(Behavior::status(200))?;
    ledger.end(outage);
    wait_all_delivered(&crm, &sent).await?;
    stop_ok(a).await?;
    stop_ok(b).await?;
    ensure!(f.dead_letters()? == 0, "a frozen relay is not poison");
    // A's requests in flight at the freeze (one per chain, 40) were answered
    // 200 by the CRM while A slept; B sends them again. A had delivered at
    // most ~80 events/s × (commit interval 0.2 s + a round trip) since its
    // last commit. Stall: the freeze's own session timeout (6 s), then the
    // circuit's open_max (2 s) after the target recovers.
    ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: 40 + 80,
            stall: Duration::from_secs(15),
        },
    )?;
    Ok(())
}

/// A target that answers 400 to everybody (nginx's answer to a missing
/// client certificate, a wrong path, a revoked key) is refusing the relay:
/// the guard trips after `rejection_threshold` answers, the rest is held,
/// and everything is delivered once the target is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_rejecting_everybody_holds_the_backlog_instead_of_dead_lettering_it() -> Result<()>
{
    const THRESHOLD: usize = 20;
    let f = fixture(3).await?;
    let crm = mock_crm(Behavior::status(400)).await?;
    let sent = publish(&f.brokers, &f.topic, "list-400", 30, 10).await?;
    let port = free_port()?;
    let mut relay = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("CPN_CIRCUIT_OPEN_MAX_MS", "1000")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning cpn-relay")?;
    let log = collect_stderr(&mut relay)?;
    wait_for("the rejection guard to trip", WAIT, || async {
        (gauge(port, "cpn_relay_target_rejecting").await? == 1).then_some(())
    })
    .await?;
    // Several probes, each rejected again.
    let at_trip = crm.received_count();
    wait_for("probes of the rejecting target", WAIT, || async {
        (crm.received_count() >= at_trip + 5).then_some(())
    })
    .await?;
    let dead = f.dead_letters()?;
    ensure!(
        dead < THRESHOLD,
        "at most threshold - 1 dead letters before the guard trips, got {dead}"
    );
    ensure!(gauge(port, "cpn_relay_circuit_state").await.unwrap_or(0) >= 1);
    let (status, body) = readyz(port).await.context("no /readyz")?;
    ensure!(status == 200, "held with probes scheduled is ready: {body}");
    ensure!(
        lines_with(&log, "rejects the relay") == 1,
        "one ERROR line when the guard trips, not one per record"
    );
    crm.set_behavior(Behavior::status(200))?;
    let dlq_guids: std::collections::HashSet<String> = read_all(&f.brokers, &f.dlq)?
        .iter()
        .filter_map(|r| r.header("cpn.guid"))
        .collect();
    wait_for("every event delivered or dead-lettered", WAIT, || async {
        let d = delivered(&crm);
        sent.at
            .keys()
            .all(|g| d.contains_key(g) || dlq_guids.contains(g))
            .then_some(())
    })
    .await?;
    stop_ok(relay).await?;
    ensure!(
        f.dead_letters()? == dead,
        "nothing dead-lettered after the guard tripped"
    );
    ensure!(
        delivered(&crm).len() + dead == sent.at.len(),
        "every event delivered once the target accepts, or among the few dead letters"
    );
    ensure!(
        lines_with(&log, "accepts records again") == 1,
        "the guard says when it clears"
    );
    Ok(())
}

/// SIGTERM while the circuit is open and nothing is in flight ends the relay
/// at once, not after `shutdown.deadline_ms`, and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_circuit_open_exits_at_once_and_loses_nothing() -> Result<()> {
    let f = fixture(2).await?;
    let crm = mock_crm(Behavior::status(503)).await?;
    let sent = publish(&f.brokers, &f.topic, "list-term", 10, 3).await?;
    let port = free_port()?;
    let relay = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("CPN_SHUTDOWN_DEADLINE_MS", "60000")
        .env("CPN_CIRCUIT_OPEN_INITIAL_MS", "10000")
        .env("CPN_CIRCUIT_OPEN_MAX_MS", "30000")
        .spawn()
        .context("spawning cpn-relay")?;
    wait_for("the circuit to open", WAIT, || async {
        (gauge(port, "cpn_relay_circuit_state").await? == 1).then_some(())
    })
    .await?;
    let asked = Instant::now();
    sigterm(&relay)?;
    let mut relay = relay;
    let status = tokio::time::timeout(Duration::from_secs(30), relay.wait())
        .await
        .context("SIGTERM with nothing in flight must not wait out the 60 s deadline")??;
    let took = asked.elapsed();
    ensure!(status.success(), "{status}");
    eprintln!("SIGTERM with the circuit open: exited in {took:?}");
    // Nothing was delivered, so nothing may be committed; a restart delivers all.
    crm.set_behavior(Behavior::status(200))?;
    let again = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?.spawn()?;
    wait_all_delivered(&crm, &sent).await?;
    stop_ok(again).await?;
    ensure!(f.dead_letters()? == 0);
    Ok(())
}

/// `/readyz` is 200 for a relay with partitions and 503, with the reason,
/// for one that has none (more replicas than partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_no_partitions_for_a_relay_without_any() -> Result<()> {
    let f = fixture(1).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let (pa, pb) = (free_port()?, free_port()?);
    let a = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{pa}")])
        .spawn()?;
    wait_for("A ready", WAIT, || async {
        (readyz(pa).await?.0 == 200).then_some(())
    })
    .await?;
    let b = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{pb}")])
        .spawn()?;
    let body = wait_for("B joined without partitions", WAIT, || async {
        let (status, body) = readyz(pb).await?;
        (status == 503 && body.contains("no partitions assigned")).then_some(body)
    })
    .await?;
    eprintln!("surplus relay: {}", body.trim());
    let sent = publish(&f.brokers, &f.topic, "list-rdy", 3, 2).await?;
    wait_all_delivered(&crm, &sent).await?;
    ensure!(readyz(pa).await.map(|r| r.0) == Some(200));
    stop_ok(b).await?;
    stop_ok(a).await?;
    Ok(())
}

/// Two live relays with one `kafka.instance_id`: the broker fences the
/// first when the second joins, and librdkafka's error is fatal. The fenced
/// relay must exit 2 saying why (it cannot consume any more), not stay up
/// and idle; the other delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_fenced_by_a_second_one_with_its_instance_id_exits_2() -> Result<()> {
    let f = fixture(2).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let id = unique("relay");
    let port = free_port()?;
    let mut a = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--instance-id", &id])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning relay A")?;
    let log = collect_stderr(&mut a)?;
    wait_for("A assigned", WAIT, || async {
        (gauge(port, "cpn_relay_assigned_partitions").await? == 2).then_some(())
    })
    .await?;
    let b = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--instance-id", &id])
        .spawn()
        .context("spawning relay B")?;
    let sent = publish(&f.brokers, &f.topic, "list-fence", 10, 5).await?;
    let status = tokio::time::timeout(WAIT, a.wait())
        .await
        .context("the fenced relay stayed up")??;
    ensure!(status.code() == Some(2), "fenced relay: {status}");
    ensure!(
        lines_with(&log, "fatal Kafka client error") >= 1,
        "the fatal error is named: {:?}",
        log.lock().unwrap_or_else(|p| p.into_inner())
    );
    wait_all_delivered(&crm, &sent).await?;
    stop_ok(b).await?;
    ensure!(f.dead_letters()? == 0);
    Ok(())
}
