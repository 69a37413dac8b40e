//! The fault suite, target side: outages of every kind (503, refused
//! connections, a target slower than the request timeout), flapping, 429
//! storms, a target refusing everybody with 400/401/404, and poison in the
//! stream — each under load, each ending with the ledger's count
//! (`cpn_e2e::faults`). CI scale in the test command; `CPN_FAULTS=extended`
//! for the long run (`deploy/faults`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cpn_e2e::faults::{Bounds, Expect, Ledger, Load};
use cpn_e2e::ledger::{free_port, metric, relay_command, sigterm};
use cpn_e2e::relay::{Fixture, fixture, mock_crm};
use cpn_e2e::{event, read_all, wait_for};
use cpn_mock_crm::{Behavior, Latency, MockCrm, RetryAfter};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::process::Child;

/// `circuit.open_max_ms` of these relays: after the target recovers, the
/// next probe comes within this.
const OPEN_MAX_MS: &str = "2000";

/// `target.request_timeout_ms` of these relays.
const REQUEST_TIMEOUT_MS: &str = "1000";

/// Once the target accepts again, a partition waits at most for the next
/// probe (2 s), the retry backoff (200 ms) and a Retry-After (1 s here), on
/// a machine shared with the rest of the suite.
const TARGET_STALL: Duration = Duration::from_secs(10);

fn spawn(f: &Fixture, crm: &MockCrm, port: u16) -> Result<Child> {
    relay_command(&f.brokers, &f.topic, &f.group, &crm.url())?
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("CPN_CIRCUIT_OPEN_MAX_MS", OPEN_MAX_MS)
        .env("CPN_TARGET_REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS)
        .spawn()
        .context("spawning cpn-relay")
}

async fn gauge(port: u16, name: &str) -> Option<i64> {
    #[allow(clippy::cast_possible_truncation)] // gauges hold small integers
    metric(port, name).await.map(|v| v as i64)
}

async fn stop_ok(mut relay: Child) -> Result<()> {
    ensure!(
        relay.try_wait()?.is_none(),
        "the relay exited during the faults"
    );
    sigterm(&relay)?;
    let st = tokio::time::timeout(Duration::from_secs(60), relay.wait())
        .await
        .context("the relay did not exit within 60 s of SIGTERM")??;
    ensure!(st.success(), "the relay exited {st} after SIGTERM");
    Ok(())
}

async fn progress(ledger: &Ledger, crm: &MockCrm, n: usize) -> Result<()> {
    ledger.observe(crm);
    let want = ledger.delivered() + n;
    wait_for("more deliveries", ledger.tier().deadline(), || async {
        ledger.observe(crm);
        (ledger.delivered() >= want).then_some(())
    })
    .await
}

/// 503 for everybody, then connections refused, then a target that
/// answers 200 only after the relay's request timeout: an outage of each
/// kind (8 s each in the test command, 60 s extended). Nothing is
/// dead-lettered. Duplicates only where the CRM handled requests whose
/// answers the relay never saw, at most one per such request: in the slow
/// phase, and those answered as the CRM stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_of_every_kind_dead_letter_nothing_and_lose_nothing() -> Result<()> {
    let ledger = Ledger::new("target-outage-503-refused-slow")?;
    let tier = ledger.tier();
    let outage = tier.pick(Duration::from_secs(8), Duration::from_secs(60));
    let f = fixture(6).await?;
    let mut crm = mock_crm(Behavior::status(200)).await?;
    let addr = crm.addr();
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-outage",
        60,
        tier.pick(12_000, 150_000),
        Some(tier.pick(300.0, 1000.0)),
    )?;
    let port = free_port()?;
    let relay = spawn(&f, &crm, port)?;

    progress(&ledger, &crm, 500).await?;
    crm.set_behavior(Behavior::status(503))?;
    let down = ledger.begin("target 503", true);
    tokio::time::sleep(outage).await;
    crm.set_behavior(Behavior::status(200))?;
    ledger.end(down);

    progress(&ledger, &crm, 500).await?;
    let down = ledger.begin("target refusing connections", true);
    let halted_at = std::time::SystemTime::now();
    crm.halt().await;
    // Every request the CRM answered before it stopped, also those after
    // the last look: its log goes with the handle replaced below (one
    // answered 200 in that window was reported as never delivered).
    ledger.observe(&crm);
    // A request answered just before or while the CRM stopped may have had
    // its answer cut with the connection: the relay sends it again, at most
    // once each.
    let cut = crm
        .received_since(0)
        .iter()
        .filter(|r| r.status_sent == 200 && r.at + Duration::from_millis(500) >= halted_at)
        .count();
    tokio::time::sleep(outage).await;
    ledger.forget(addr);
    crm = MockCrm::start(MockCrm::bind(addr)?, Behavior::status(200)).await?;
    ledger.end(down);

    progress(&ledger, &crm, 500).await?;
    let before = crm.received_count();
    crm.set_behavior(
        Behavior::status(200).with_latency(Latency::Fixed(Duration::from_millis(1500))),
    )?;
    let down = ledger.begin("target slower than the request timeout", true);
    tokio::time::sleep(outage).await;
    crm.set_behavior(Behavior::status(200))?;
    // The requests answered slowly, from the CRM's log once no more can be:
    // a count taken before the switch missed one that arrived in between
    // (64 duplicates against a bound of 63 in one run).
    let slow_requests = crm
        .received_since(before)
        .iter()
        .filter(|r| !r.delay.is_zero())
        .count();
    ledger.end(down);

    load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(relay).await?;
    ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: slow_requests + cut,
            stall: TARGET_STALL,
        },
    )?;
    Ok(())
}

/// A target flapping up and down every 1.5 s, then a storm of 429s with
/// `Retry-After: 1`. A 503 or 429 is answered without handling the request:
/// no duplicates at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_and_429_storms_lose_nothing_and_send_nothing_twice() -> Result<()> {
    let ledger = Ledger::new("target-flapping-429")?;
    let tier = ledger.tier();
    let f = fixture(6).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-flap",
        60,
        tier.pick(12_000, 120_000),
        Some(tier.pick(300.0, 1000.0)),
    )?;
    let port = free_port()?;
    let relay = spawn(&f, &crm, port)?;
    progress(&ledger, &crm, 500).await?;
    for n in 1..=tier.pick(6, 30) {
        crm.set_behavior(Behavior::status(503))?;
        let down = ledger.begin(&format!("target flapping (503 for 1.5 s) #{n}"), true);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        crm.set_behavior(Behavior::status(200))?;
        ledger.end(down);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    progress(&ledger, &crm, 500).await?;
    crm.set_behavior(Behavior::status(429).with_retry_after(RetryAfter::Seconds(1)))?;
    let storm = ledger.begin("429 storm, Retry-After 1", true);
    tokio::time::sleep(tier.pick(Duration::from_secs(8), Duration::from_secs(60))).await;
    crm.set_behavior(Behavior::status(200))?;
    ledger.end(storm);
    load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(relay).await?;
    ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: 0,
            stall: TARGET_STALL,
        },
    )?;
    Ok(())
}

/// The target answers 400, then 401, then 404 to every record (a wrong
/// path, a revoked key): each time the rejection guard trips after at most
/// `rejection_threshold − 1` = 19 dead letters, holds the backlog, says so
/// (`cpn_relay_target_rejecting` = 1), and once the target is fixed
/// everything flows and the gauge is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_refusing_everybody_trips_the_guard_and_recovers_after_the_fix() -> Result<()> {
    let ledger = Ledger::new("target-systemic-400-401-404")?;
    let tier = ledger.tier();
    let f = fixture(6).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-refuse",
        60,
        tier.pick(12_000, 120_000),
        Some(tier.pick(300.0, 1000.0)),
    )?;
    let port = free_port()?;
    let relay = spawn(&f, &crm, port)?;
    let mut episodes = 0;
    for status in [400, 401, 404] {
        progress(&ledger, &crm, 500).await?;
        let before = read_all(&f.brokers, &f.dlq)?.len();
        crm.set_behavior(Behavior::status(status))?;
        let down = ledger.begin(&format!("target answers {status} to everybody"), true);
        wait_for("the guard to trip", tier.deadline(), || async {
            (gauge(port, "cpn_relay_target_rejecting").await? == 1).then_some(())
        })
        .await?;
        // Held, not flooded: the backlog keeps growing, the DLQ does not.
        tokio::time::sleep(tier.pick(Duration::from_secs(4), Duration::from_secs(30))).await;
        let flooded = read_all(&f.brokers, &f.dlq)?.len() - before;
        ensure!(
            flooded <= 19,
            "{flooded} dead letters while the target answered {status} to everybody"
        );
        crm.set_behavior(Behavior::status(200))?;
        ledger.end(down);
        wait_for("the guard to clear", tier.deadline(), || async {
            (gauge(port, "cpn_relay_target_rejecting").await? == 0).then_some(())
        })
        .await?;
        episodes += 1;
    }
    ledger.allow_dead_letters(episodes * 19);
    load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(relay).await?;
    ledger.verify(
        &crm,
        &read_all(&f.brokers, &f.dlq)?,
        Bounds {
            duplicates: 0,
            stall: TARGET_STALL,
        },
    )?;
    Ok(())
}

/// Poison among valid events on the same partitions: random bytes,
/// truncated JSON, valid JSON of the wrong shape, an invalid body just
/// under the producer's 1,000,000-byte limit, and invalid bodies with
/// non-UTF-8 header values are dead-lettered as `invalid_payload`, never
/// sent. A valid event near the limit and valid events with non-UTF-8
/// header values are delivered: the body is the contract, headers are
/// hints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_its_reason_and_its_neighbours_flow() -> Result<()> {
    let ledger = Ledger::new("target-poison")?;
    let tier = ledger.tier();
    let f = fixture(6).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let load = Load::start(
        &ledger,
        &f.brokers,
        &f.topic,
        "list-poison",
        60,
        tier.pick(6_000, 100_000),
        Some(tier.pick(300.0, 1000.0)),
    )?;
    let port = free_port()?;
    let relay = spawn(&f, &crm, port)?;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &f.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let invalid = Expect::DeadLetter("invalid_payload".to_owned());
    let rounds = tier.pick(5, 50);
    let mut poison = 0;
    for n in 0..rounds {
        let key = format!("list-poison:{}", n % 60);
        let (guid, body) = event("list-poison", n % 60, 1_000 + n);
        let random: Vec<u8> = (0..200).map(|_| rand::random::<u8>()).collect();
        let truncated = body[..body.len() / 2].to_vec();
        let mut huge_invalid = vec![b'x'; 999_000];
        huge_invalid[0] = b'{';
        let (big_guid, big) = big_event(n);
        let junk = OwnedHeaders::new()
            .insert(Header {
                key: "cpn.guid",
                value: Some(&[0xff_u8, 0xfe, 0x00][..]),
            })
            .insert(Header {
                key: "x-junk",
                value: Some(&[0xc3_u8, 0x28][..]),
            });
        let cases: Vec<Case> = vec![
            (random, None, None, invalid.clone()),
            (truncated, None, None, invalid.clone()),
            (
                br#"{"hello":"world"}"#.to_vec(),
                None,
                None,
                invalid.clone(),
            ),
            (b"[1,2,3]".to_vec(), None, None, invalid.clone()),
            (huge_invalid, None, None, invalid.clone()),
            (
                b"not json".to_vec(),
                None,
                Some(junk.clone()),
                invalid.clone(),
            ),
            (big, Some(big_guid), None, Expect::Deliver),
            (body, Some(guid), Some(junk), Expect::Deliver),
        ];
        for (bytes, guid, headers, expect) in cases {
            let mut rec = FutureRecord::to(&f.topic).key(&key).payload(&bytes);
            if let Some(h) = headers {
                rec = rec.headers(h);
            }
            let d = p
                .send(rec, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .context("publishing poison")?;
            poison += usize::from(expect != Expect::Deliver);
            ledger.record(
                guid.as_deref(),
                Some(key.as_bytes()),
                (d.partition, d.offset),
                expect,
            );
        }
    }
    ensure!(poison > 0, "poison was published");
    load.finish().await?;
    ledger.wait_settled(&crm, &f.brokers, &f.dlq).await?;
    stop_ok(relay).await?;
    let dlq = read_all(&f.brokers, &f.dlq)?;
    ensure!(
        dlq.len() == poison,
        "{} dead letters for {poison} poison records",
        dlq.len()
    );
    let report = ledger.verify(
        &crm,
        &dlq,
        Bounds {
            duplicates: 0,
            stall: TARGET_STALL,
        },
    )?;
    ensure!(
        report.dead_lettered == poison,
        "every poison record is in the DLQ"
    );
    Ok(())
}

/// One record to publish: bytes, GUID, headers, what must become of it.
type Case = (Vec<u8>, Option<String>, Option<OwnedHeaders>, Expect);

/// A valid event of about 900 KB (a huge `Other1`).
fn big_event(n: i64) -> (String, Vec<u8>) {
    let (guid, body) = event("list-poison", n % 60, 2_000 + n);
    let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["Other1"] = serde_json::Value::String("y".repeat(900_000));
    (guid, v.to_string().into_bytes())
}
