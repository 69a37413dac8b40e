//! The fault suite, broker side: a broker SIGKILLed and restarted under
//! load, every event counted by the ledger (`cpn_e2e::faults`). One scenario
//! on a private three-broker cluster (RF 3, min ISR 2), where one node dying
//! must cost nothing but a short stall; one on a private single broker with
//! the HTTP ingest (`cpn-producer serve`) in front, which must answer 503
//! with `Retry-After` while Kafka is gone and 2xx only for what Kafka
//! acknowledged. CI scale in the test command; `CPN_FAULTS=extended` for the
//! long run (`deploy/faults`).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cpn_e2e::broker::{PrivateBroker, PrivateCluster};
use cpn_e2e::faults::{Bounds, Expect, Ledger, Load};
use cpn_e2e::ledger::{free_port, readyz, relay_command, sigterm, stop_ok};
use cpn_e2e::relay::mock_crm;
use cpn_e2e::{
    bin_path, committed, create_topic, create_topic_replicated, event, read_all, unique, wait_for,
};
use cpn_mock_crm::{Behavior, Latency, MockCrm};
use tokio::process::{Child, Command};

/// The relays' session timeout (`relay_command`): a member that lost its
/// coordinator is out of the group after this long.
const SESSION: Duration = Duration::from_secs(6);

/// How long the KRaft controller waits before it declares a silent broker
/// dead and moves its partition leaderships (`broker.session.timeout.ms`,
/// Kafka's default): a SIGKILLed leader's partitions serve nothing meanwhile.
const BROKER_SESSION: Duration = Duration::from_secs(9);

/// How long a broker stays down.
const DOWN: Duration = Duration::from_secs(10);

/// A margin for a machine of two cores shared with the rest of the suite:
/// a rebalance to complete, a fetch to start, librdkafka's reconnect backoff.
const MARGIN: Duration = Duration::from_secs(14);

/// Waits until `n` more events than now were delivered, or, once `done`
/// says nothing more will be published, until everything was.
async fn progress(
    ledger: &Ledger,
    crm: &MockCrm,
    n: usize,
    what: &str,
    done: impl Fn() -> bool,
) -> Result<()> {
    ledger.observe(crm);
    let want = ledger.delivered() + n;
    wait_for(what, ledger.tier().deadline(), || async {
        ledger.observe(crm);
        let all = done() && ledger.delivered() >= ledger.events();
        (all || ledger.delivered() >= want).then_some(())
    })
    .await
}

/// Events delivered so far at or past `committed` (per partition): what a
/// relay that rewinds to a committed position at or after `committed` may
/// send again (invariant 2: only the uncommitted comes again).
fn uncommitted(
    ledger: &Ledger,
    crm: &MockCrm,
    committed: &std::collections::BTreeMap<i32, i64>,
) -> usize {
    ledger.observe(crm);
    ledger
        .ok_counts()
        .keys()
        .filter_map(|g| ledger.position(g))
        .filter(|(p, o)| committed.get(p).is_none_or(|c| o >= c))
        .count()
}

/// The relay is still running and says it is ready.
async fn relay_alive_and_ready(relay: &mut Child, port: u16, ledger: &Ledger) -> Result<()> {
    ensure!(
        relay.try_wait()?.is_none(),
        "the relay exited during the broker fault: {:?}",
        relay.try_wait()?
    );
    wait_for("relay /readyz 200", ledger.tier().deadline(), || async {
        readyz(port).await.filter(|(s, _)| *s == 200).map(|_| ())
    })
    .await
}

/// A three-broker cluster, RF 3 and min ISR 2, one broker SIGKILLed for
/// ten seconds and restarted while an acks=all producer keeps publishing and
/// the relay keeps delivering. Nothing acknowledged can be lost: every
/// acknowledged record is on two replicas, so the survivors have it and one
/// of them becomes leader. The duplicate bound is invariant 2's: a relay
/// may send again only what it delivered and had not committed when it
/// rewound (a rebalance when the group coordinator was on the dead node);
/// the test counts, from the ledger, the events delivered at or past the
/// committed position read just before the kill, up to when delivery has
/// resumed, plus one in flight per chain. Stall: the dead broker's partitions
/// have no leader until the controller declares it dead (broker session,
/// 9 s), then a rebalance (consumer session, 6 s), plus the margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_brokers_sigkilled_under_load_loses_nothing() -> Result<()> {
    let ledger = Ledger::new("broker-cluster-sigkill")?;
    let tier = ledger.tier();
    let cluster = PrivateCluster::start()?;
    let brokers = cluster.bootstrap();
    let topic = unique("cp");
    let dlq = format!("{topic}.dlq");
    create_topic_replicated(&brokers, &topic, 6, 3).await?;
    create_topic_replicated(&brokers, &dlq, 1, 3).await?;
    let group = unique("g");
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(5))))
            .await?;
    let chains = 60;
    let total = tier.pick(12_000, 105_000);
    let rate = tier.pick(300.0, 1_000.0);
    let load = Load::start(
        &ledger,
        &brokers,
        &topic,
        "list-cluster",
        chains,
        total,
        Some(rate),
    )?;
    let port = free_port()?;
    let mut relay = relay_command(&brokers, &topic, &group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .spawn()
        .context("spawning cpn-relay")?;
    let rounds = tier.pick(1, 3);
    let mut allowance = 0;
    for round in 1..=rounds {
        progress(&ledger, &crm, 500, "deliveries before the kill", || {
            load.is_finished()
        })
        .await?;
        let before = committed(&brokers, &group, &topic)?;
        // Node 1 is first in everybody's bootstrap list; then the others.
        let node = u16::try_from((round - 1) % 3 + 1)?;
        cluster.kill(node)?;
        let fault = ledger.begin(
            &format!("SIGKILL broker {node} of 3, down 10 s #{round}"),
            false,
        );
        tokio::time::sleep(DOWN).await;
        cluster.restart(node)?;
        ledger.end(fault);
        progress(&ledger, &crm, 200, "deliveries after the restart", || {
            load.is_finished()
        })
        .await?;
        allowance += uncommitted(&ledger, &crm, &before) + chains;
    }
    let published = load.finish().await?;
    ledger.wait_settled(&crm, &brokers, &dlq).await?;
    relay_alive_and_ready(&mut relay, port, &ledger).await?;
    stop_ok(relay, "the relay").await?;
    let report = ledger.verify(
        &crm,
        &read_all(&brokers, &dlq)?,
        Bounds {
            duplicates: allowance,
            stall: BROKER_SESSION + SESSION + MARGIN,
        },
    )?;
    ensure!(
        report.events == published,
        "the ledger holds every published event"
    );
    ensure!(report.faults == rounds, "{rounds} kills were injected");
    Ok(())
}

/// What the HTTP clients saw.
#[derive(Debug, Default)]
struct Answers {
    /// 503s, each with a valid `Retry-After`.
    unavailable: AtomicUsize,
    /// Requests that failed without an answer (connection refused/reset,
    /// timeout).
    failed: AtomicUsize,
    /// 2xx answers.
    ok: AtomicUsize,
}

/// `cpn-producer serve` on `port`, publishing to `brokers`, answering 503
/// with `Retry-After: 1` when Kafka does not acknowledge within 2 s.
fn ingest(brokers: &str, topic: &str, port: u16) -> Result<Child> {
    Command::new(bin_path("cpn-producer")?)
        .args(["serve", "--brokers", brokers, "--topic", topic])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--ack-timeout-ms", "2000", "--retry-after-secs", "1"])
        // Each 503 logs a warning: thousands while the broker is down.
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning cpn-producer serve")
}

/// One client of the ingest: chain `chain` of `list`, `per_chain` events,
/// each POSTed until answered 2xx (the same body, so the same GUID, every
/// time), the next only then, paced to `rate` events/s. Every 2xx goes into
/// the ledger at the partition and offset the answer names; also returned,
/// to check against the topic.
#[allow(clippy::too_many_arguments)]
async fn client(
    http: reqwest::Client,
    url: String,
    ledger: Ledger,
    answers: Arc<Answers>,
    list: String,
    chain: i64,
    per_chain: i64,
    rate: f64,
) -> Result<Vec<(String, (i32, i64))>> {
    let started = Instant::now();
    let key = format!("{list}:{chain}");
    let mut acked = Vec::new();
    for n in 0..per_chain {
        let (guid, body) = event(&list, chain, n);
        loop {
            let r = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let r = match r {
                Ok(r) => r,
                Err(_) => {
                    answers.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let status = r.status();
            if status.is_success() {
                let a: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.context("reading a 2xx body")?)?;
                ensure!(
                    a["guid"] == guid.as_str(),
                    "2xx for {guid} names {}",
                    a["guid"]
                );
                let p = a["partition"].as_i64().context("2xx without a partition")?;
                let o = a["offset"].as_i64().context("2xx without an offset")?;
                let at = (i32::try_from(p)?, o);
                ledger.record(Some(&guid), Some(key.as_bytes()), at, Expect::Deliver);
                answers.ok.fetch_add(1, Ordering::Relaxed);
                acked.push((guid, at));
                break;
            }
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                let secs: u64 = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .context("503 without Retry-After")?
                    .to_str()?
                    .parse()
                    .context("Retry-After is not a number of seconds")?;
                ensure!(secs >= 1, "Retry-After: {secs}");
                answers.unavailable.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                continue;
            }
            bail!(
                "POST {guid}: {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        #[allow(clippy::cast_precision_loss)] // event counts ≪ 2^52
        let due = Duration::from_secs_f64((n + 1) as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    Ok(acked)
}

/// The single private broker SIGKILLed for ten seconds and restarted while
/// HTTP clients keep POSTing to the ingest and a relay delivers. While Kafka
/// is gone the ingest must answer 503 with `Retry-After` (the clients see
/// it), never 2xx for what Kafka did not acknowledge (every 2xx names a
/// record the topic holds with that GUID), and every acknowledged event is
/// delivered. Duplicate bound: each answer other than 2xx may still have
/// been published (librdkafka keeps retrying a queued record past the
/// request's ack timeout, until its 60 s delivery timeout, and the broker
/// is back before that), and the client sends the same GUID again: one
/// extra record, one extra delivery each; plus the relay's own, as in the
/// cluster scenario (delivered at or past the committed position at the
/// kill, plus one in flight per chain). Stall: nothing can be fetched while
/// the broker is down or starting (measured: from the kill until the broker
/// answers again), then a rebalance (consumer session) and the margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_broker_sigkilled_behind_the_http_ingest_acknowledges_only_what_kafka_has()
-> Result<()> {
    let ledger = Ledger::new("broker-restart-ingest")?;
    let tier = ledger.tier();
    let kafka = PrivateBroker::start()?;
    let brokers = kafka.bootstrap();
    let topic = unique("cp");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 6).await?;
    create_topic(&brokers, &dlq, 1).await?;
    let group = unique("g");
    let crm =
        mock_crm(Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(5))))
            .await?;
    let ingest_port = free_port()?;
    let mut producer = ingest(&brokers, &topic, ingest_port)?;
    wait_for("ingest /readyz 200", tier.deadline(), || async {
        readyz(ingest_port)
            .await
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    })
    .await?;
    let port = free_port()?;
    let mut relay = relay_command(&brokers, &topic, &group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .spawn()
        .context("spawning cpn-relay")?;

    let chains: i64 = 60;
    let per_chain = tier.pick(200, 1_700);
    let rate = tier.pick(300.0, 1_000.0);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("http://127.0.0.1:{ingest_port}/v1/contact-processed");
    let answers = Arc::new(Answers::default());
    #[allow(clippy::cast_precision_loss)] // 60 chains
    let per_client_rate = rate / chains as f64;
    let clients: Vec<_> = (0..chains)
        .map(|c| {
            tokio::spawn(client(
                http.clone(),
                url.clone(),
                ledger.clone(),
                answers.clone(),
                "list-ingest".to_owned(),
                c,
                per_chain,
                per_client_rate,
            ))
        })
        .collect();

    let rounds = tier.pick(1, 3);
    let mut allowance = 0;
    let mut outage = Duration::ZERO;
    for round in 1..=rounds {
        progress(&ledger, &crm, 500, "deliveries before the kill", || {
            clients.iter().all(|c| c.is_finished())
        })
        .await?;
        let before = committed(&brokers, &group, &topic)?;
        let killed = Instant::now();
        let seen = answers.unavailable.load(Ordering::Relaxed);
        kafka.kill()?;
        let fault = ledger.begin(
            &format!("SIGKILL the only broker, down 10 s #{round}"),
            false,
        );
        tokio::time::sleep(DOWN).await;
        let during = answers.unavailable.load(Ordering::Relaxed) - seen;
        ensure!(
            during > 0,
            "no 503 with Retry-After while the broker was down {DOWN:?}"
        );
        ensure!(producer.try_wait()?.is_none(), "the ingest exited");
        kafka.restart()?;
        ledger.end(fault);
        outage = outage.max(killed.elapsed());
        progress(&ledger, &crm, 200, "deliveries after the restart", || {
            clients.iter().all(|c| c.is_finished())
        })
        .await?;
        allowance += uncommitted(&ledger, &crm, &before) + usize::try_from(chains)?;
    }
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.context("a client panicked")??);
    }
    ledger.wait_settled(&crm, &brokers, &dlq).await?;
    relay_alive_and_ready(&mut relay, port, &ledger).await?;
    ensure!(producer.try_wait()?.is_none(), "the ingest exited");

    // Every 2xx names a record Kafka holds, carrying that GUID.
    let records: HashMap<(i32, i64), Option<String>> = read_all(&brokers, &topic)?
        .into_iter()
        .map(|r| ((r.partition, r.offset), r.header("cpn.guid")))
        .collect();
    let wrong: Vec<_> = acked
        .iter()
        .filter(|(g, at)| {
            records
                .get(at)
                .is_none_or(|h| h.as_deref() != Some(g.as_str()))
        })
        .take(5)
        .collect();
    ensure!(
        wrong.is_empty(),
        "2xx answered for records Kafka does not hold as named: {wrong:?}"
    );
    let not_ok =
        answers.unavailable.load(Ordering::Relaxed) + answers.failed.load(Ordering::Relaxed);
    eprintln!(
        "ingest answers: {} 2xx, {} 503 with Retry-After, {} without an answer; topic holds {} records",
        answers.ok.load(Ordering::Relaxed),
        answers.unavailable.load(Ordering::Relaxed),
        answers.failed.load(Ordering::Relaxed),
        records.len()
    );
    sigterm(&producer)?;
    let st = tokio::time::timeout(Duration::from_secs(60), producer.wait())
        .await
        .context("the ingest did not exit within 60 s of SIGTERM")??;
    ensure!(st.success(), "the ingest exited {st} after SIGTERM");
    stop_ok(relay, "the relay").await?;
    let report = ledger.verify(
        &crm,
        &read_all(&brokers, &dlq)?,
        Bounds {
            duplicates: allowance + not_ok,
            stall: outage + SESSION + MARGIN,
        },
    )?;
    ensure!(
        report.events == acked.len(),
        "the ledger holds every acknowledged event"
    );
    Ok(())
}
