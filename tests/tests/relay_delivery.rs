//! The relay against a real broker and a real HTTP server in this process:
//! framing, retries, dead letters, redirects, Retry-After, per-chain order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;
use cpn_e2e::relay::{Fixture, RunningRelay, fixture, mock_crm, test_config};
use cpn_e2e::{ReadRecord, event, produce, producer, read_all, wait_for};
use cpn_mock_crm::{Behavior, MockCrm, RetryAfter};

const WAIT: Duration = Duration::from_secs(60);

async fn wait_dlq(s: &Fixture, n: usize) -> Result<Vec<ReadRecord>> {
    wait_for(&format!("{n} dead letters"), WAIT, || async {
        read_all(&s.brokers, &s.dlq).ok().filter(|r| r.len() >= n)
    })
    .await
}

async fn wait_received(crm: &MockCrm, n: usize) -> Result<()> {
    wait_for(&format!("{n} requests at the CRM"), WAIT, || async {
        (crm.received().len() >= n).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_body_byte_for_byte_with_ocs_framing() -> Result<()> {
    let s = fixture(3).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let mut cfg = test_config(&s.brokers, &s.topic, &s.group, &crm.url());
    cfg.target.headers.insert(
        "X-Api-Key".into(),
        cpn_relay::secret::Secret("k-123".into()),
    );
    let relay = RunningRelay::start(cfg)?;
    let p = producer(&s.brokers)?;
    let mut sent = HashMap::new();
    for i in 0..20 {
        let (guid, body) = event("list-a", i, 0);
        produce(&p, &s.topic, &format!("list-a:{i}"), Some(&guid), &body).await?;
        sent.insert(guid, body);
    }
    wait_received(&crm, 20).await?;
    relay.stop().await?;
    let got = crm.received();
    assert_eq!(got.len(), 20, "each event exactly once on the success path");
    for r in &got {
        let guid = r.etag.clone().expect("ETag header");
        let body = sent.get(&guid).expect("ETag is the GUID of a sent event");
        assert_eq!(&r.body[..], &body[..], "body relayed byte for byte");
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("accept"), Some("*/*"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        let ua = r.header("user-agent").unwrap_or_default();
        assert!(ua.starts_with("cpn-relay/"), "user agent {ua}");
        assert_eq!(r.header("x-api-key"), Some("k-123"));
        assert!(r.framing_problems.is_empty(), "{:?}", r.framing_problems);
    }
    assert!(read_all(&s.brokers, &s.dlq)?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_succeeds_with_the_same_guid_and_body() -> Result<()> {
    let s = fixture(1).await?;
    let crm = mock_crm(Behavior::status(200).with_fail_first(2, 503)).await?;
    let relay = RunningRelay::start(test_config(&s.brokers, &s.topic, &s.group, &crm.url()))?;
    let (guid, body) = event("list-r", 1, 0);
    produce(
        &producer(&s.brokers)?,
        &s.topic,
        "list-r:1",
        Some(&guid),
        &body,
    )
    .await?;
    wait_received(&crm, 3).await?;
    // Give a wrongly repeated delivery time to show up before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.stop().await?;
    let got = crm.received();
    let statuses: Vec<u16> = got.iter().map(|r| r.status_sent).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    for r in &got {
        assert_eq!(r.etag.as_deref(), Some(guid.as_str()));
        assert_eq!(&r.body[..], &body[..]);
    }
    assert!(read_all(&s.brokers, &s.dlq)?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_goes_to_the_dlq_with_every_header() -> Result<()> {
    let s = fixture(1).await?;
    let crm = mock_crm(Behavior::status(200).reject_when("GSW_CHAIN_ID", "7", 400)).await?;
    let cfg = test_config(&s.brokers, &s.topic, &s.group, &crm.url());
    let relay_id = cfg.observability.relay_id.clone().unwrap_or_default();
    let relay = RunningRelay::start(cfg)?;
    let p = producer(&s.brokers)?;
    let (good, good_body) = event("list-x", 6, 0);
    let (bad, bad_body) = event("list-x", 7, 0);
    produce(&p, &s.topic, "list-x:6", Some(&good), &good_body).await?;
    let (bad_p, bad_o) = produce(&p, &s.topic, "list-x:7", Some(&bad), &bad_body).await?;
    let dl = wait_dlq(&s, 1).await?;
    wait_received(&crm, 2).await?;
    relay.stop().await?;
    assert_eq!(dl.len(), 1);
    let d = &dl[0];
    assert_eq!(d.key.as_deref(), Some(&b"list-x:7"[..]), "same key");
    assert_eq!(d.value.as_deref(), Some(&bad_body[..]), "same value bytes");
    assert_eq!(
        d.header("cpn.guid").as_deref(),
        Some(bad.as_str()),
        "original headers kept"
    );
    assert_eq!(d.header("cpn.dlq.reason").as_deref(), Some("http_rejected"));
    assert_eq!(d.header("cpn.dlq.http_status").as_deref(), Some("400"));
    assert_eq!(d.header("cpn.dlq.attempts").as_deref(), Some("1"));
    assert!(d.header("cpn.dlq.error").is_some_and(|e| e.contains("400")));
    assert!(
        d.header("cpn.dlq.response_body")
            .is_some_and(|b| !b.is_empty())
    );
    for h in ["cpn.dlq.first_attempt_at", "cpn.dlq.last_attempt_at"] {
        let t = d.header(h).unwrap_or_default();
        assert!(
            cpn_relay::dlq::headers::parse_rfc3339(&t).is_some(),
            "{h} = {t:?}"
        );
    }
    assert_eq!(
        d.header("cpn.dlq.target").as_deref(),
        Some(crm.url().as_str())
    );
    assert_eq!(d.header("cpn.dlq.group").as_deref(), Some(s.group.as_str()));
    assert_eq!(
        d.header("cpn.dlq.relay").as_deref(),
        Some(relay_id.as_str())
    );
    assert_eq!(
        d.header("__connect.errors.topic").as_deref(),
        Some(s.topic.as_str())
    );
    assert_eq!(
        d.header("__connect.errors.partition"),
        Some(bad_p.to_string())
    );
    assert_eq!(d.header("__connect.errors.offset"), Some(bad_o.to_string()));
    assert_eq!(
        d.header("__connect.errors.exception.class.name").as_deref(),
        Some("cpn.relay.HttpRejected")
    );
    assert!(d.header("__connect.errors.exception.message").is_some());
    // The good one was delivered, the bad one tried once.
    let got = crm.received();
    assert_eq!(
        got.iter()
            .filter(|r| r.etag.as_deref() == Some(bad.as_str()))
            .count(),
        1
    );
    assert_eq!(
        got.iter()
            .filter(|r| r.etag.as_deref() == Some(good.as_str()) && r.status_sent == 200)
            .count(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_go_to_the_dlq() -> Result<()> {
    let s = fixture(1).await?;
    // One chain always fails with 500; the others succeed, so the target is
    // up and the failures are the record's.
    let crm = mock_crm(Behavior::status(200).reject_when("GSW_CHAIN_ID", "13", 500)).await?;
    let mut cfg = test_config(&s.brokers, &s.topic, &s.group, &crm.url());
    cfg.retry.max_attempts = 3;
    let relay = RunningRelay::start(cfg)?;
    let p = producer(&s.brokers)?;
    let (bad, bad_body) = event("list-e", 13, 0);
    produce(&p, &s.topic, "list-e:13", Some(&bad), &bad_body).await?;
    for i in 0..5 {
        let (g, b) = event("list-e", 100 + i, 0);
        produce(&p, &s.topic, &format!("list-e:{}", 100 + i), Some(&g), &b).await?;
    }
    let dl = wait_dlq(&s, 1).await?;
    relay.stop().await?;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].value.as_deref(), Some(&bad_body[..]));
    assert_eq!(
        dl[0].header("cpn.dlq.reason").as_deref(),
        Some("retries_exhausted")
    );
    assert_eq!(dl[0].header("cpn.dlq.attempts").as_deref(), Some("3"));
    assert_eq!(dl[0].header("cpn.dlq.http_status").as_deref(), Some("500"));
    let tries = crm
        .received()
        .iter()
        .filter(|r| r.etag.as_deref() == Some(bad.as_str()))
        .count();
    assert_eq!(tries, 3, "max_attempts = 3");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_payloads_go_to_the_dlq_without_a_request() -> Result<()> {
    let s = fixture(1).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let relay = RunningRelay::start(test_config(&s.brokers, &s.topic, &s.group, &crm.url()))?;
    let p = producer(&s.brokers)?;
    produce(&p, &s.topic, "k:1", None, b"not json at all").await?;
    produce(
        &p,
        &s.topic,
        "k:2",
        None,
        br#"{"GSW_MESSAGE":"ContactProcessed"}"#,
    )
    .await?;
    let (g, b) = event("list-i", 3, 0);
    produce(&p, &s.topic, "list-i:3", Some(&g), &b).await?;
    let dl = wait_dlq(&s, 2).await?;
    wait_received(&crm, 1).await?;
    relay.stop().await?;
    assert_eq!(dl.len(), 2);
    for d in &dl {
        assert_eq!(
            d.header("cpn.dlq.reason").as_deref(),
            Some("invalid_payload")
        );
        assert_eq!(d.header("cpn.dlq.attempts").as_deref(), Some("0"));
        assert!(d.header("cpn.dlq.http_status").is_none());
    }
    assert_eq!(dl[0].value.as_deref(), Some(&b"not json at all"[..]));
    assert!(
        dl[1]
            .header("cpn.dlq.error")
            .is_some_and(|e| e.contains("GSW_MESSAGE_GUID")),
        "names a missing field"
    );
    let got = crm.received();
    assert_eq!(got.len(), 1, "only the valid event was sent");
    assert_eq!(got[0].etag.as_deref(), Some(g.as_str()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() -> Result<()> {
    let s = fixture(1).await?;
    let elsewhere = mock_crm(Behavior::status(200)).await?;
    let crm = mock_crm(Behavior::redirect(302, elsewhere.url())).await?;
    let relay = RunningRelay::start(test_config(&s.brokers, &s.topic, &s.group, &crm.url()))?;
    let (g, b) = event("list-3", 1, 0);
    produce(&producer(&s.brokers)?, &s.topic, "list-3:1", Some(&g), &b).await?;
    let dl = wait_dlq(&s, 1).await?;
    relay.stop().await?;
    assert_eq!(
        dl[0].header("cpn.dlq.reason").as_deref(),
        Some("http_redirect")
    );
    assert_eq!(dl[0].header("cpn.dlq.http_status").as_deref(), Some("302"));
    // Where it pointed, for the operator deciding whether to fix the URL.
    assert_eq!(
        dl[0].header("cpn.dlq.http_location").as_deref(),
        Some(elsewhere.url().as_str())
    );
    let error = dl[0].header("cpn.dlq.error").unwrap_or_default();
    assert!(
        error.contains(&elsewhere.url()) && error.contains("not followed"),
        "{error}"
    );
    assert_eq!(crm.received().len(), 1);
    assert!(
        elsewhere.received().is_empty(),
        "the redirect was not followed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() -> Result<()> {
    let s = fixture(1).await?;
    let crm = mock_crm(
        Behavior::status(200)
            .with_script([429])
            .with_retry_after(RetryAfter::Seconds(2)),
    )
    .await?;
    let relay = RunningRelay::start(test_config(&s.brokers, &s.topic, &s.group, &crm.url()))?;
    let (g, b) = event("list-ra", 1, 0);
    produce(&producer(&s.brokers)?, &s.topic, "list-ra:1", Some(&g), &b).await?;
    wait_received(&crm, 2).await?;
    relay.stop().await?;
    let got = crm.received();
    assert_eq!(got[0].status_sent, 429);
    assert_eq!(got[1].status_sent, 200);
    // Backoff alone would retry within 200 ms (max_delay_ms); the target asked for 2 s.
    let gap = got[1].at.duration_since(got[0].at)?;
    assert!(
        gap >= Duration::from_millis(1_900),
        "retried after {gap:?}, before Retry-After"
    );
    assert!(read_all(&s.brokers, &s.dlq)?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_chain_is_delivered_in_offset_order_under_retries() -> Result<()> {
    let s = fixture(2).await?;
    let crm = mock_crm(Behavior::status(200).with_fail_rate(0.3, 503).with_seed(7)).await?;
    let mut cfg = test_config(&s.brokers, &s.topic, &s.group, &crm.url());
    cfg.retry.max_attempts = 50;
    // Keep the circuit out of it: this is about order, not outages.
    cfg.circuit.failure_threshold = 1_000;
    let relay = RunningRelay::start(cfg)?;
    let p = producer(&s.brokers)?;
    let chains = 8;
    let per_chain = 15;
    let mut order: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for n in 0..per_chain {
        for c in 0..chains {
            let (g, b) = event("list-o", c, n);
            produce(&p, &s.topic, &format!("list-o:{c}"), Some(&g), &b).await?;
            order.entry(c).or_default().push(g);
        }
    }
    let total = (chains * per_chain) as usize;
    wait_for("every event delivered", WAIT, || async {
        let ok: HashSet<String> = crm
            .received()
            .into_iter()
            .filter(|r| r.status_sent == 200)
            .filter_map(|r| r.etag)
            .collect();
        (ok.len() >= total).then_some(())
    })
    .await?;
    relay.stop().await?;
    let got = crm.received();
    let pos: HashMap<&str, (i64, usize)> = order
        .iter()
        .flat_map(|(c, gs)| {
            gs.iter()
                .enumerate()
                .map(move |(i, g)| (g.as_str(), (*c, i)))
        })
        .collect();
    let mut last_seen: HashMap<i64, usize> = HashMap::new();
    let mut delivered: HashMap<i64, Vec<usize>> = HashMap::new();
    for r in &got {
        let (chain, i) = pos[r.etag.as_deref().expect("etag")];
        let last = last_seen.entry(chain).or_insert(0);
        assert!(
            i >= *last,
            "chain {chain}: event {i} sent after event {last} had started"
        );
        *last = i;
        if r.status_sent == 200 {
            delivered.entry(chain).or_default().push(i);
        }
    }
    for (chain, ds) in delivered {
        assert_eq!(
            ds,
            (0..per_chain as usize).collect::<Vec<_>>(),
            "chain {chain} delivered in order, once each"
        );
    }
    assert!(got.iter().any(|r| r.status_sent == 503), "retries happened");
    assert!(read_all(&s.brokers, &s.dlq)?.is_empty());
    Ok(())
}
