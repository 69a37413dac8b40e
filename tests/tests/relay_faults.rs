//! Faults: a target outage (refused, 5xx), SIGKILL mid-flight, a relay
//! leaving its group, SIGTERM, a second SIGTERM. Each checks that nothing is
//! lost, and that duplicates stay within the documented bound (only records
//! at or past the committed offset are ever redelivered).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use cpn_e2e::ledger::{
    Sent, WAIT, delivered, free_port, metric, publish, relay_command, sigterm, spawn_relay,
    wait_all_delivered,
};
use cpn_e2e::relay::{Fixture, RunningRelay, fixture, mock_crm, test_config};
use cpn_e2e::{
    bin_path, broker, committed, create_topic, end_offsets, event, produce, producer, read_all,
    unique, wait_for,
};
use cpn_mock_crm::{Behavior, Latency, MockCrm, RetryAfter};
use tokio::process::{Child, Command};

/// Which `commit.interval_ms` a relay runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitInterval {
    /// The fault tests' short one (harness).
    Fast,
    /// The production default, so that what a test prints is what a
    /// deployment gets.
    Default,
}

/// A fixture with `chains` x `per_chain` events, a 20 ms CRM and the relay
/// binary running, returned once `min_delivered` events were delivered.
async fn mid_flight(
    partitions: i32,
    list: &str,
    chains: i64,
    per_chain: i64,
    min_delivered: usize,
    commit: CommitInterval,
) -> Result<(Fixture, MockCrm, Sent, Child)> {
    let f = fixture(partitions).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(20))))
            .await?;
    let sent = publish(&f.brokers, &f.topic, list, chains, per_chain).await?;
    let mut cmd = relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?;
    if commit == CommitInterval::Default {
        cmd.env_remove("CPN_COMMIT_INTERVAL_MS");
    }
    let relay = cmd.spawn().context("spawning cpn-relay")?;
    wait_for(
        &format!("{min_delivered} deliveries under way"),
        WAIT,
        || async { (delivered(&crm).len() >= min_delivered).then_some(()) },
    )
    .await?;
    Ok((f, crm, sent, relay))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_sends_nothing_to_the_dlq() -> Result<()> {
    let Fixture { brokers, topic, .. } = fixture(2).await?;
    let up = mock_crm(Behavior::status(200)).await?;
    let addr = up.addr();
    let url = up.url();
    let mut cfg = test_config(&brokers, &topic, &unique("g"), &url);
    // Without the circuit, three refused attempts would dead-letter every record.
    cfg.retry.max_attempts = 3;
    cfg.retry.max_elapsed = std::time::Duration::from_millis(2_000);
    let relay = RunningRelay::start(cfg)?;
    up.stop().await;
    let sent = publish(&brokers, &topic, "list-out", 10, 5).await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let back = MockCrm::start_on(addr, Behavior::status(200)).await?;
    wait_all_delivered(&back, &sent).await?;
    relay.stop().await?;
    assert!(
        read_all(&brokers, &format!("{topic}.dlq"))?.is_empty(),
        "an outage is not poison"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_503s_longer_than_the_retry_budget_sends_nothing_to_the_dlq() -> Result<()> {
    let f = fixture(2).await?;
    let crm = mock_crm(Behavior::status(503).with_retry_after(RetryAfter::Seconds(1))).await?;
    let mut cfg = f.config(&crm.url());
    // One Retry-After is two thirds of a record's budget: if waiting out the
    // outage (probes, their Retry-After, the open circuit) cost budget, the
    // second probe of any record would dead-letter it.
    cfg.retry.max_attempts = 5;
    cfg.retry.max_elapsed = std::time::Duration::from_millis(1_500);
    let relay = RunningRelay::start(cfg)?;
    let sent = publish(&f.brokers, &f.topic, "list-503", 10, 3).await?;
    // The circuit opens after 5 failures; then about one probe a second.
    wait_for("a dozen probes of the down target", WAIT, || async {
        (crm.received_count() >= 17).then_some(())
    })
    .await?;
    assert_eq!(
        f.dead_letters()?,
        0,
        "nothing dead-lettered during the outage"
    );
    crm.set_behavior(Behavior::status(200))?;
    wait_all_delivered(&crm, &sent).await?;
    relay.stop().await?;
    assert_eq!(f.dead_letters()?, 0, "an outage of 5xx is not poison");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flight_then_restart_loses_nothing() -> Result<()> {
    let (
        Fixture {
            brokers,
            topic,
            group,
            ..
        },
        crm,
        sent,
        mut relay,
    ) = mid_flight(4, "list-k", 40, 150, 300, CommitInterval::Default).await?;
    // Kill half a second (1000 deliveries at 40 chains x 20 ms) after a
    // first commit was seen, whatever the interval: the count printed below
    // is then what the default commit interval leaves to redeliver.
    wait_for("a first commit", WAIT, || async {
        committed(&brokers, &group, &topic)
            .ok()
            .filter(|c| c.values().any(|o| *o > 0))
    })
    .await?;
    let seen = delivered(&crm).len();
    wait_for("1000 more deliveries", WAIT, || async {
        (delivered(&crm).len() >= seen + 1000).then_some(())
    })
    .await?;
    relay.start_kill()?;
    relay.wait().await?;
    let before_kill = delivered(&crm);
    let at_kill = committed(&brokers, &group, &topic)?;
    assert!(
        !at_kill.is_empty(),
        "the relay committed before it was killed"
    );
    // Invariant 2: everything below the committed offset was delivered.
    for (g, (p, o)) in &sent.at {
        if at_kill.get(p).is_some_and(|c| o < c) {
            assert!(
                before_kill.contains_key(g),
                "offset {o} of partition {p} committed but never delivered"
            );
        }
    }
    let mut relay = spawn_relay(&brokers, &topic, &group, &crm.url())?;
    wait_all_delivered(&crm, &sent).await?;
    sigterm(&relay)?;
    let status = tokio::time::timeout(Duration::from_secs(60), relay.wait()).await??;
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
    let after = delivered(&crm);
    // Duplicates only for records at or past the commit position at the kill.
    for (g, n) in &after {
        if *n > 1 {
            let (p, o) = sent.at[g];
            let c = at_kill.get(&p).copied().unwrap_or(0);
            assert!(
                o >= c,
                "record {p}:{o} delivered {n} times though committed at {c}"
            );
        }
    }
    let dups: usize = after.values().map(|n| n - 1).sum();
    eprintln!("redelivered after SIGKILL: {dups} of {}", sent.at.len());
    assert!(read_all(&brokers, &format!("{topic}.dlq"))?.is_empty());
    Ok(())
}

/// The old member's session in
/// `a_relay_restarted_with_its_instance_id_after_sigkill_resumes_before_its_session_expires`.
const LONG_SESSION: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_with_its_instance_id_after_sigkill_resumes_before_its_session_expires()
-> Result<()> {
    let f = fixture(4).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(20))))
            .await?;
    let sent = publish(&f.brokers, &f.topic, "list-static", 40, 100).await?;
    let id = unique("relay");
    let start = || -> Result<Child> {
        relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
            .env(
                "CPN_KAFKA_SESSION_TIMEOUT_MS",
                LONG_SESSION.as_millis().to_string(),
            )
            .args(["--instance-id", &id])
            .spawn()
            .context("spawning cpn-relay")
    };
    let mut relay = start()?;
    wait_for("300 deliveries under way", WAIT, || async {
        (delivered(&crm).len() >= 300).then_some(())
    })
    .await?;
    relay.start_kill()?;
    relay.wait().await?;
    let before = crm.received_count();
    let restarted = tokio::time::Instant::now();
    let mut relay = start()?;
    // Without static membership the group waits for the dead member's
    // session (30 s) before the partitions move; with it, the restarted
    // member takes the dead one's place. A behaviour bound, not a figure.
    wait_for(
        "a delivery by the restarted relay",
        LONG_SESSION + Duration::from_secs(10),
        || async { (crm.received_count() > before).then_some(()) },
    )
    .await?;
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the restarted relay delivered after {took:?}: it waited for the old \
         session ({LONG_SESSION:?}) instead of replacing its static member"
    );
    wait_all_delivered(&crm, &sent).await?;
    sigterm(&relay)?;
    let status = tokio::time::timeout(Duration::from_secs(60), relay.wait()).await??;
    assert!(status.success(), "graceful exit after SIGTERM: {status}");
    assert!(read_all(&f.brokers, &f.dlq)?.is_empty());
    eprintln!("first delivery {took:?} after the restart");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_commits_so_a_restart_sends_no_duplicates() -> Result<()> {
    let (
        Fixture {
            brokers,
            topic,
            group,
            ..
        },
        crm,
        sent,
        mut relay,
    ) = mid_flight(2, "list-t", 20, 40, 100, CommitInterval::Fast).await?;
    sigterm(&relay)?;
    let status = tokio::time::timeout(Duration::from_secs(60), relay.wait()).await??;
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
    let at_stop = delivered(&crm);
    let c = committed(&brokers, &group, &topic)?;
    // Drained: every delivered record is below the committed offset.
    for g in at_stop.keys() {
        let (p, o) = sent.at[g];
        assert!(
            c.get(&p).is_some_and(|c| o < *c),
            "delivered {p}:{o} not covered by commit {c:?}"
        );
    }
    let mut relay = spawn_relay(&brokers, &topic, &group, &crm.url())?;
    wait_all_delivered(&crm, &sent).await?;
    sigterm(&relay)?;
    tokio::time::timeout(Duration::from_secs(60), relay.wait()).await??;
    let after = delivered(&crm);
    let dups: Vec<_> = after.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "a graceful stop redelivers nothing: {} duplicates",
        dups.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once_and_loses_nothing() -> Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let f = fixture(1).await?;
    // Every request hangs for 60 s: a first SIGTERM would wait out the
    // 60 s shutdown deadline for them.
    let crm = mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_secs(60))))
        .await?;
    let sent = publish(&f.brokers, &f.topic, "list-2sig", 5, 2).await?;
    let mut relay = Command::new(bin_path("cpn-relay")?)
        .args(["run", "--brokers", &f.brokers, "--topic", &f.topic])
        .args(["--group", &f.group, "--target-url", &crm.url()])
        .args(["--metrics-listen", "off"])
        .env("CPN_SHUTDOWN_DEADLINE_MS", "60000")
        .env("CPN_COMMIT_INTERVAL_MS", "200")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning cpn-relay")?;
    // Read the whole log (a full pipe would block the relay), and say when
    // the first signal was taken.
    let mut log = BufReader::new(relay.stderr.take().context("stderr")?).lines();
    let (taken_tx, taken_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut taken = Some(taken_tx);
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("shutdown requested")
                && let Some(tx) = taken.take()
            {
                let _ = tx.send(());
            }
        }
    });
    wait_for("5 requests hanging at the CRM", WAIT, || async {
        (crm.received_count() >= 5).then_some(())
    })
    .await?;
    sigterm(&relay)?;
    tokio::time::timeout(WAIT, taken_rx)
        .await
        .context("no 'shutdown requested' in the relay's log")?
        .context("the relay's log ended before 'shutdown requested'")?;
    assert!(
        relay.try_wait()?.is_none(),
        "still draining after one signal"
    );
    sigterm(&relay)?;
    let status = tokio::time::timeout(Duration::from_secs(20), relay.wait())
        .await
        .context("a second SIGTERM must end the relay at once, not after the deadline")??;
    assert_eq!(status.code(), Some(130), "{status}");
    // Nothing was finished, so nothing is committed past a record...
    let c = committed(&f.brokers, &f.group, &f.topic)?;
    assert!(c.values().all(|o| *o == 0), "committed {c:?}");
    // ... and a restart delivers every event.
    crm.set_behavior(Behavior::status(200))?;
    let mut again = spawn_relay(&f.brokers, &f.topic, &f.group, &crm.url())?;
    wait_all_delivered(&crm, &sent).await?;
    sigterm(&again)?;
    tokio::time::timeout(WAIT, again.wait()).await??;
    Ok(())
}

async fn assigned_partitions(port: u16) -> Option<i64> {
    metric(port, "cpn_relay_assigned_partitions")
        .await
        .map(|v| v as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_partitions_and_one_leaving_loses_nothing() -> Result<()> {
    let Fixture {
        brokers,
        topic,
        group,
        ..
    } = fixture(4).await?;
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(10))))
            .await?;
    let (pa, pb) = (free_port()?, free_port()?);
    let mut a_cfg = test_config(&brokers, &topic, &group, &crm.url());
    a_cfg.observability.metrics_listen = format!("127.0.0.1:{pa}");
    let mut b_cfg = test_config(&brokers, &topic, &group, &crm.url());
    b_cfg.observability.metrics_listen = format!("127.0.0.1:{pb}");
    let a = RunningRelay::start(a_cfg)?;
    let b = RunningRelay::start(b_cfg)?;
    wait_for("both relays hold partitions", WAIT, || async {
        let (x, y) = (
            assigned_partitions(pa).await?,
            assigned_partitions(pb).await?,
        );
        (x > 0 && y > 0 && x + y == 4).then_some(())
    })
    .await?;
    let first = publish(&brokers, &topic, "list-2a", 20, 20).await?;
    wait_for("deliveries under way", WAIT, || async {
        (delivered(&crm).len() >= 100).then_some(())
    })
    .await?;
    b.stop().await?;
    let second = publish(&brokers, &topic, "list-2b", 20, 10).await?;
    wait_all_delivered(&crm, &first).await?;
    wait_all_delivered(&crm, &second).await?;
    wait_for("relay A takes all partitions", WAIT, || async {
        (assigned_partitions(pa).await? == 4).then_some(())
    })
    .await?;
    a.stop().await?;
    let d = delivered(&crm);
    let dups: usize = d.values().map(|n| n - 1).sum();
    assert_eq!(
        dups, 0,
        "a graceful leave settles and commits before giving partitions up"
    );
    assert!(read_all(&brokers, &format!("{topic}.dlq"))?.is_empty());
    Ok(())
}

/// Deletes `topic` and waits until the broker no longer lists it.
async fn delete_topic(brokers: &str, topic: &str) -> Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(&[topic], &opts).await? {
        if let Err((name, code)) = r {
            anyhow::bail!("deleting topic {name}: {code}");
        }
    }
    wait_for(&format!("{topic} gone"), WAIT, || async {
        end_offsets(brokers, topic).ok().filter(|o| o.is_empty())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_that_cannot_be_written_holds_the_offset_until_it_can() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cp");
    let group = unique("g");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 1).await?;
    // The relay starts only with its dead-letter topic in place; it is
    // deleted under the running relay (auto-creation is off), so the relay
    // cannot write the dead letter.
    create_topic(&brokers, &dlq, 1).await?;
    let crm = mock_crm(Behavior::status(200).reject_when("GSW_CHAIN_ID", "1", 400)).await?;
    let relay = RunningRelay::start(test_config(&brokers, &topic, &group, &crm.url()))?;
    let p = producer(&brokers)?;
    let (first, first_body) = event("list-d", 0, 0);
    produce(&p, &topic, "list-d:0", Some(&first), &first_body).await?;
    wait_for("the relay to run and deliver", WAIT, || async {
        crm.received()
            .iter()
            .any(|r| r.etag.as_deref() == Some(first.as_str()))
            .then_some(())
    })
    .await?;
    delete_topic(&brokers, &dlq).await?;
    let (bad, bad_body) = event("list-d", 1, 0);
    let (_, bad_offset) = produce(&p, &topic, "list-d:1", Some(&bad), &bad_body).await?;
    let (good, good_body) = event("list-d", 2, 0);
    produce(&p, &topic, "list-d:2", Some(&good), &good_body).await?;
    wait_for("the rejection and the later delivery", WAIT, || async {
        let got = crm.received();
        (got.iter().any(|r| r.etag.as_deref() == Some(bad.as_str()))
            && got.iter().any(|r| r.etag.as_deref() == Some(good.as_str())))
        .then_some(())
    })
    .await?;
    // Several commit intervals pass: the offset must stay at the undead letter.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = committed(&brokers, &group, &topic)?;
    assert!(
        held.get(&0).is_none_or(|c| *c <= bad_offset),
        "committed {held:?} past offset {bad_offset} whose dead letter was never written"
    );
    // Right after a deletion the name may still be taken for a moment.
    wait_for("the dead-letter topic created again", WAIT, || async {
        create_topic(&brokers, &dlq, 1).await.ok()
    })
    .await?;
    let dl = wait_for("the dead letter once the topic exists", WAIT, || async {
        read_all(&brokers, &dlq).ok().filter(|r| !r.is_empty())
    })
    .await?;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].value.as_deref(), Some(&bad_body[..]));
    wait_for("the offset to move past both records", WAIT, || async {
        committed(&brokers, &group, &topic)
            .ok()
            .filter(|c| c.get(&0).is_some_and(|c| *c > bad_offset + 1))
    })
    .await?;
    relay.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_never_charged_even_with_one_record_and_two_attempts() -> Result<()> {
    let f = fixture(1).await?;
    let up = mock_crm(Behavior::status(200)).await?;
    let (addr, url) = (up.addr(), up.url());
    up.stop().await;
    let mut cfg = f.config(&url);
    // Fewer attempts than the circuit's failure threshold, one chain only:
    // every refused connection would exhaust the budget if it were charged.
    cfg.retry.max_attempts = 2;
    let relay = RunningRelay::start(cfg)?;
    let (g, b) = event("list-one", 1, 0);
    produce(&producer(&f.brokers)?, &f.topic, "list-one:1", Some(&g), &b).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        read_all(&f.brokers, &f.dlq)?.is_empty(),
        "refused connections dead-lettered the record"
    );
    let back = MockCrm::start_on(addr, Behavior::status(200)).await?;
    wait_for("the record after the target is back", WAIT, || async {
        back.received()
            .iter()
            .any(|r| r.etag.as_deref() == Some(g.as_str()))
            .then_some(())
    })
    .await?;
    relay.stop().await?;
    assert!(read_all(&f.brokers, &f.dlq)?.is_empty());
    Ok(())
}
