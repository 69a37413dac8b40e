//! Per-target budget (rate limit, concurrent requests, Retry-After for the
//! whole target) and Kafka-native fan-out with a per-relay filter.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use cpn_e2e::relay::{Fixture, RunningRelay, fixture, mock_crm, test_config};
use cpn_e2e::{
    committed, create_topic, end_offsets, event, event_with_media, produce, producer, read_all,
    unique, wait_for,
};
use cpn_mock_crm::{Behavior, MockCrm, RetryAfter};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_within_10_percent_over_10_seconds() -> Result<()> {
    let Fixture { brokers, topic, .. } = fixture(3).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let mut cfg = test_config(&brokers, &topic, &unique("g"), &crm.url());
    cfg.target.budget.max_requests_per_second = 50.0;
    let p = producer(&brokers)?;
    // Enough for 16 s at 50/s: the 10 s window is all steady state.
    for i in 0..800 {
        let (g, b) = event("list-rate", i, 0);
        produce(&p, &topic, &format!("list-rate:{i}"), Some(&g), &b).await?;
    }
    let relay = RunningRelay::start(cfg)?;
    wait_for("11 s of deliveries", WAIT, || async {
        let got = crm.received();
        let first = got.first()?.at;
        got.last()?
            .at
            .duration_since(first)
            .ok()
            .filter(|d| *d >= Duration::from_secs(11))
            .map(|_| ())
    })
    .await?;
    relay.stop().await?;
    let got = crm.received();
    let t0 = got[0].at;
    let in_window = got
        .iter()
        .filter(|r| {
            r.at.duration_since(t0)
                .is_ok_and(|d| d < Duration::from_secs(10))
        })
        .count();
    // 500 at 50/s, plus the initial bucket (5 tokens).
    assert!(
        (450..=550).contains(&in_window),
        "{in_window} requests in 10 s at 50/s"
    );
    Ok(())
}

/// A receiver that answers 200 after 200 ms and remembers how many requests
/// it held at once, and which GUIDs (`ETag`) it answered.
#[derive(Default)]
struct Gauge {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
    etags: std::sync::Mutex<HashSet<String>>,
}

async fn counted(
    axum::extract::State(g): axum::extract::State<std::sync::Arc<Gauge>>,
    headers: axum::http::HeaderMap,
) -> &'static str {
    use std::sync::atomic::Ordering::SeqCst;
    let n = g.now.fetch_add(1, SeqCst) + 1;
    g.max.fetch_max(n, SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.now.fetch_sub(1, SeqCst);
    if let Some(e) = headers.get("etag").and_then(|v| v.to_str().ok()) {
        g.etags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(e.to_owned());
    }
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_requests_caps_what_the_target_holds_at_once() -> Result<()> {
    let Fixture { brokers, topic, .. } = fixture(3).await?;
    let gauge = std::sync::Arc::new(Gauge::default());
    let app = axum::Router::new()
        .fallback(counted)
        .with_state(gauge.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/crm", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut cfg = test_config(&brokers, &topic, &unique("g"), &url);
    cfg.target.budget.max_concurrent_requests = 3;
    let p = producer(&brokers)?;
    let mut guids = HashSet::new();
    // 24 chains: without the cap all 24 would be at the target at once.
    for i in 0..24 {
        let (g, b) = event("list-conc", i, 0);
        produce(&p, &topic, &format!("list-conc:{i}"), Some(&g), &b).await?;
        guids.insert(g);
    }
    let relay = RunningRelay::start(cfg)?;
    wait_for("every event answered", WAIT, || async {
        let got = gauge.etags.lock().unwrap_or_else(|p| p.into_inner());
        guids.is_subset(&got).then_some(())
    })
    .await?;
    relay.stop().await?;
    server.abort();
    let max = gauge.max.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        max <= 3,
        "the target held {max} requests at once; the cap is 3"
    );
    assert!(max >= 2, "requests still overlap under the cap (max {max})");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_slows_the_whole_target() -> Result<()> {
    let Fixture { brokers, topic, .. } = fixture(3).await?;
    let crm = mock_crm(
        Behavior::status(200)
            .with_script([429])
            .with_retry_after(RetryAfter::Seconds(2)),
    )
    .await?;
    let mut cfg = test_config(&brokers, &topic, &unique("g"), &crm.url());
    // Spread the requests out so some are due during the hold.
    cfg.target.budget.max_requests_per_second = 20.0;
    cfg.circuit.failure_threshold = 1_000;
    let p = producer(&brokers)?;
    let mut guids = HashSet::new();
    for i in 0..40 {
        let (g, b) = event("list-429", i, 0);
        produce(&p, &topic, &format!("list-429:{i}"), Some(&g), &b).await?;
        guids.insert(g);
    }
    let relay = RunningRelay::start(cfg)?;
    wait_for("every event delivered", WAIT, || async {
        let ok: HashSet<String> = crm
            .received()
            .into_iter()
            .filter(|r| r.status_sent == 200)
            .filter_map(|r| r.etag)
            .collect();
        guids.is_subset(&ok).then_some(())
    })
    .await?;
    relay.stop().await?;
    let got = crm.received();
    let t429 = got
        .iter()
        .find(|r| r.status_sent == 429)
        .expect("the scripted 429")
        .at;
    // Requests already on the wire when the 429 came back may still land
    // just after it; after that, nobody is sent until the 2 s are up.
    let during_hold: Vec<_> = got
        .iter()
        .filter_map(|r| r.at.duration_since(t429).ok())
        .filter(|d| *d > Duration::from_millis(200) && *d < Duration::from_millis(1_900))
        .collect();
    assert!(
        during_hold.is_empty(),
        "requests sent during the target-wide hold: {during_hold:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_one_group_per_target_with_a_filter_commits_what_it_skips() -> Result<()> {
    let Fixture { brokers, topic, .. } = fixture(3).await?;
    let all_crm = mock_crm(Behavior::status(200)).await?;
    let sms_crm = mock_crm(Behavior::status(200)).await?;
    let (g_all, g_sms) = (unique("all"), unique("sms"));
    let all_cfg = test_config(&brokers, &topic, &g_all, &all_crm.url());
    let mut sms_cfg = test_config(&brokers, &topic, &g_sms, &sms_crm.url());
    sms_cfg.kafka.dlq_topic = Some(format!("{topic}.sms.dlq"));
    sms_cfg.filter.media_types = vec!["sms".into()];
    create_topic(&brokers, &format!("{topic}.sms.dlq"), 1).await?;
    let p = producer(&brokers)?;
    let (mut all, mut sms) = (HashSet::new(), HashSet::new());
    for i in 0..60 {
        let media = ["voice", "sms", "email"][(i % 3) as usize];
        let (g, b) = event_with_media("list-fan", i, 0, media);
        produce(&p, &topic, &format!("list-fan:{i}"), Some(&g), &b).await?;
        if media == "sms" {
            sms.insert(g.clone());
        }
        all.insert(g);
    }
    let a = RunningRelay::start(all_cfg)?;
    let s = RunningRelay::start(sms_cfg)?;
    let etags = |c: &MockCrm| -> HashSet<String> {
        c.received().into_iter().filter_map(|r| r.etag).collect()
    };
    wait_for("both targets served", WAIT, || async {
        (etags(&all_crm) == all && etags(&sms_crm) == sms).then_some(())
    })
    .await?;
    let end = end_offsets(&brokers, &topic)?;
    wait_for("both groups committed to the end", WAIT, || async {
        let done = |g: &str| {
            committed(&brokers, g, &topic)
                .ok()
                .is_some_and(|c| c == end)
        };
        (done(&g_all) && done(&g_sms)).then_some(())
    })
    .await?;
    a.stop().await?;
    s.stop().await?;
    assert_eq!(
        sms_crm.received().len(),
        sms.len(),
        "the SMS target got only SMS, once each"
    );
    assert!(
        read_all(&brokers, &format!("{topic}.sms.dlq"))?.is_empty(),
        "skipped records are not dead letters"
    );
    Ok(())
}
