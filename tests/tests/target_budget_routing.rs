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

/// Requests in every 10 s window (sliding by 1 s) that lies within
/// `[from, to]`, from the receiver's arrival times.
fn window_counts(
    at: &[std::time::SystemTime],
    from: std::time::SystemTime,
    to: std::time::SystemTime,
) -> Vec<usize> {
    let ten = Duration::from_secs(10);
    let mut out = Vec::new();
    let mut start = from;
    while start + ten <= to {
        let end = start + ten;
        out.push(at.iter().filter(|t| **t >= start && **t < end).count());
        start += Duration::from_secs(1);
    }
    out
}

/// `target.budget` is the group's: 1 → 3 → 1 relay processes on 12
/// partitions together send 60/s, never three times that, within 10 % in
/// every 10 s window of each steady phase, and at most 10 % over it in any
/// window of the whole run, rebalances included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_budget_holds_with_one_three_one_relays() -> Result<()> {
    use cpn_e2e::ledger::{free_port, metric, stop_ok};
    use cpn_e2e::relay::relay_on;
    use std::time::SystemTime;
    const RATE: f64 = 60.0;
    const PHASE: Duration = Duration::from_secs(21);
    let f = fixture(12).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    // More than 100 s at 60/s, on 400 chains spread over the 12 partitions.
    let p = producer(&f.brokers)?;
    for chunk in 0..16 {
        let sends = (0..500).map(|j| {
            let i = chunk * 500 + j;
            let (g, b) = event("list-share", i % 400, i / 400);
            let (p, topic) = (&p, &f.topic);
            async move { produce(p, topic, &format!("list-share:{}", i % 400), Some(&g), &b).await }
        });
        futures::future::try_join_all(sends).await?;
    }
    let config = std::env::temp_dir().join(format!("{}.toml", unique("budget-share")));
    std::fs::write(
        &config,
        format!("[target.budget]\nmax_requests_per_second = {RATE}\n"),
    )?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let spawn = |port: u16| -> Result<tokio::process::Child> {
        let mut c = relay_on(&f, &crm, port)?;
        c.args(["--config", &config.display().to_string()]);
        Ok(c.spawn()?)
    };
    // Every relay of `ports` holds partitions, 12 together, and each has
    // taken its share of the budget.
    let settled = |n: usize| {
        let ports = &ports[..n];
        async move {
            let (mut held, mut rate) = (0.0, 0.0);
            for port in ports {
                let x = metric(*port, "cpn_relay_assigned_partitions").await?;
                if x == 0.0 {
                    return None;
                }
                held += x;
                rate += metric(*port, "cpn_relay_budget_requests_per_second").await?;
            }
            (held == 12.0 && (rate - RATE).abs() < 1e-6).then_some(())
        }
    };
    let mut phases = Vec::new();
    let first = spawn(ports[0])?;
    wait_for("one relay holding 12 partitions", WAIT, || settled(1)).await?;
    let t = SystemTime::now();
    tokio::time::sleep(PHASE).await;
    phases.push(("one relay", t, SystemTime::now()));
    let others = [spawn(ports[1])?, spawn(ports[2])?];
    wait_for("three relays sharing 12 partitions", WAIT, || settled(3)).await?;
    let t = SystemTime::now();
    tokio::time::sleep(PHASE).await;
    phases.push(("three relays", t, SystemTime::now()));
    for r in others {
        stop_ok(r, "a scaled-in relay").await?;
    }
    wait_for("one relay holding 12 partitions again", WAIT, || settled(1)).await?;
    let t = SystemTime::now();
    tokio::time::sleep(PHASE).await;
    phases.push(("one relay again", t, SystemTime::now()));
    stop_ok(first, "the last relay").await?;
    let at: Vec<SystemTime> = crm.received().iter().map(|r| r.at).collect();
    let (start, end) = (at[0], phases[2].2);
    let budget = RATE * 10.0;
    let whole = window_counts(&at, start, end);
    let most = whole.iter().copied().max().unwrap_or(0);
    assert!(
        (most as f64) <= budget * 1.1,
        "a 10 s window held {most} requests; the group's budget is {budget}"
    );
    eprintln!("group budget {budget}/10 s: at most {most} in any window of the run");
    for (what, from, to) in phases {
        let counts = window_counts(&at, from, to);
        assert!(!counts.is_empty(), "{what}: no full 10 s window");
        eprintln!(
            "{what}: {}..{} per 10 s window",
            counts.iter().min().unwrap_or(&0),
            counts.iter().max().unwrap_or(&0)
        );
        for c in counts {
            assert!(
                (c as f64 - budget).abs() <= budget * 0.1,
                "{what}: {c} requests in a 10 s window, budget {budget} (windows {:?})",
                window_counts(&at, from, to)
            );
        }
    }
    let _ = std::fs::remove_file(&config);
    Ok(())
}
