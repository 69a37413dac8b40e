//! The mock CRM over real HTTP on loopback: statuses and headers as a client
//! sees them, what gets recorded, and stop/restart as an outage and recovery.

use std::io;
use std::time::{Duration, Instant};

use super::*;

const WAIT: Duration = Duration::from_secs(5);
const GUID_A: &str = "7d1c6f3e-2a4b-4c5d-9e8f-0a1b2c3d4e5f";
const GUID_B: &str = "7d1c6f3e-2a4b-4c5d-9e8f-0a1b2c3d4e60";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        // The spec: redirects are not followed; see them as the relay does.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn event(guid: &str, campaign: &str) -> String {
    serde_json::json!({
        "GSW_MESSAGE": "ContactProcessed",
        "GSW_MESSAGE_GUID": guid,
        "GSW_TIMESTAMP": "1619132400.123",
        "GSW_PHONE": "5551234",
        "GSW_CAMPAIGN_NAME": campaign,
        "GSW_CALL_RESULT": 33,
    })
    .to_string()
}

/// POST `body` framed as OCS would.
async fn post(client: &reqwest::Client, url: &str, guid: &str, body: String) -> reqwest::Response {
    client
        .post(url)
        .header("accept", "*/*")
        .header("user-agent", "cpn-relay-test/0")
        .header("content-type", "application/json")
        .header("etag", guid)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn json_body(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn start(behavior: Behavior) -> MockCrm {
    let listener = MockCrm::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    MockCrm::start(listener, behavior).await.unwrap()
}

#[tokio::test]
async fn records_the_request_and_answers_per_script() {
    let mut crm = start(
        Behavior::default()
            .with_script([503, 200])
            .with_retry_after(RetryAfter::Seconds(3)),
    )
    .await;
    let http = client();

    let first = post(&http, &crm.url(), GUID_A, event(GUID_A, "spring")).await;
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "3");
    let body = json_body(first).await;
    assert_eq!(body["status"], "error");

    let second = post(&http, &crm.url(), GUID_A, event(GUID_A, "spring")).await;
    assert_eq!(second.status(), 200);
    assert!(second.headers().get("retry-after").is_none());

    let r = crm.next(WAIT).await.unwrap();
    assert_eq!(
        (r.seq, r.method.as_str(), r.path.as_str()),
        (0, "POST", "/crm")
    );
    assert_eq!(r.etag.as_deref(), Some(GUID_A));
    assert_eq!(r.guid.as_deref(), Some(GUID_A));
    assert_eq!(r.status_sent, 503);
    assert_eq!(r.cause, Cause::Script { step: 1, len: 2 });
    assert_eq!(r.header("User-Agent"), Some("cpn-relay-test/0"));
    assert_eq!(r.body, event(GUID_A, "spring").as_bytes());
    assert_eq!(r.framing_problems, vec![]);
    assert_eq!(crm.next(WAIT).await.unwrap().status_sent, 200);

    let all = crm.received();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(crm.received_count(), 2);
}

#[tokio::test]
async fn next_times_out_when_nothing_arrives() {
    let mut crm = start(Behavior::default()).await;
    let started = Instant::now();
    assert!(crm.next(Duration::from_millis(50)).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn rejects_by_body_field_with_a_reason() {
    let crm = start(Behavior::default().reject_when("GSW_CAMPAIGN_NAME", "reject-me", 400)).await;
    let http = client();
    let ok = post(&http, &crm.url(), GUID_A, event(GUID_A, "fine")).await;
    let rejected = post(&http, &crm.url(), GUID_B, event(GUID_B, "reject-me")).await;
    assert_eq!(
        (ok.status().as_u16(), rejected.status().as_u16()),
        (200, 400)
    );
    let body = json_body(rejected).await;
    assert_eq!(body["status"], "rejected");
    assert_eq!(
        body["reason"],
        "field GSW_CAMPAIGN_NAME matched a reject rule"
    );
}

#[tokio::test]
async fn fails_each_message_twice_then_accepts_it() {
    let crm = start(Behavior::default().with_fail_first(2, 503)).await;
    let http = client();
    let mut statuses = Vec::new();
    for guid in [GUID_A, GUID_B, GUID_A, GUID_B, GUID_A, GUID_B] {
        statuses.push(
            post(&http, &crm.url(), guid, event(guid, "c"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![503, 503, 503, 503, 200, 200]);
}

#[tokio::test]
async fn redirect_is_sent_with_location() {
    let crm = start(Behavior::redirect(308, "http://elsewhere.invalid/crm")).await;
    let response = post(&client(), &crm.url(), GUID_A, event(GUID_A, "c")).await;
    assert_eq!(response.status(), 308);
    assert_eq!(
        response.headers()["location"],
        "http://elsewhere.invalid/crm"
    );
}

#[tokio::test]
async fn set_behavior_swaps_at_runtime() {
    let crm = start(Behavior::status(503)).await;
    let http = client();
    assert_eq!(
        post(&http, &crm.url(), GUID_A, event(GUID_A, "c"))
            .await
            .status(),
        503
    );
    crm.set_behavior(Behavior::default()).unwrap();
    assert_eq!(
        post(&http, &crm.url(), GUID_A, event(GUID_A, "c"))
            .await
            .status(),
        200
    );
    let err = crm.set_behavior(Behavior::status(42)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "status: 42 is not a status between 200 and 599"
    );
    assert_eq!(
        post(&http, &crm.url(), GUID_A, event(GUID_A, "c"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn custom_closure_sees_the_request() {
    let crm = start(Behavior::custom(|req| {
        (req.guid() == Some(GUID_B)).then(|| Reply::status(409).with_body("text/plain", "dup"))
    }))
    .await;
    let http = client();
    let a = post(&http, &crm.url(), GUID_A, event(GUID_A, "c")).await;
    let b = post(&http, &crm.url(), GUID_B, event(GUID_B, "c")).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 409));
    assert_eq!(b.headers()["content-type"], "text/plain");
    assert_eq!(b.text().await.unwrap(), "dup");
}

#[tokio::test]
async fn framing_problems_are_recorded_not_refused() {
    let mut crm = start(Behavior::default()).await;
    let response = client()
        .put(format!("http://{}/other?x=1", crm.addr()))
        .body("plain text")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let r = crm.next(WAIT).await.unwrap();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/other?x=1"));
    assert!(r.framing_problems.contains(&FramingProblem::NotPost));
    assert!(r.framing_problems.contains(&FramingProblem::MissingEtag));
    assert_eq!(r.guid, None);
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_recovers() {
    let crm = start(Behavior::default()).await;
    let addr = crm.addr();
    let http = client();
    assert_eq!(
        post(&http, &crm.url(), GUID_A, event(GUID_A, "c"))
            .await
            .status(),
        200
    );
    let url = crm.url();

    crm.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    // The same client, whose pooled connection was cut, sees the outage too.
    let err = http.post(&url).body("{}").send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    let mut back = MockCrm::start_on(addr, Behavior::default()).await.unwrap();
    assert_eq!(back.addr(), addr);
    assert_eq!(
        post(&http, &url, GUID_A, event(GUID_A, "c")).await.status(),
        200
    );
    assert_eq!(back.next(WAIT).await.unwrap().seq, 0);
}

#[tokio::test]
async fn stop_cuts_a_request_in_flight() {
    let mut crm =
        start(Behavior::default().with_latency(Latency::Fixed(Duration::from_secs(30)))).await;
    let url = crm.url();
    let request = tokio::spawn(async move {
        client()
            .post(url)
            .header("etag", GUID_A)
            .body(event(GUID_A, "c"))
            .send()
            .await
    });
    // Once it is recorded the handler is inside its 30 s delay.
    let r = crm.next(WAIT).await.unwrap();
    assert_eq!(r.delay, Duration::from_secs(30));

    let started = Instant::now();
    crm.stop().await;
    let outcome = tokio::time::timeout(WAIT, request).await.unwrap().unwrap();
    assert!(outcome.is_err(), "expected no response, got {outcome:?}");
    assert!(
        started.elapsed() < WAIT,
        "stop took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let crm = start(Behavior::default()).await;
    let addr = crm.addr();
    drop(crm);
    let deadline = Instant::now() + WAIT;
    // Drop cannot wait; poll for the listener to go, with a deadline.
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            _ if Instant::now() > deadline => panic!("still listening after drop"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test]
async fn keep_received_bounds_the_record_and_next_skips_ahead() {
    let listener = MockCrm::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let options = MockCrmOptions {
        keep_received: Some(2),
        ..MockCrmOptions::default()
    };
    let mut crm = MockCrm::start_with(listener, Behavior::default(), options)
        .await
        .unwrap();
    let http = client();
    for _ in 0..5 {
        post(&http, &crm.url(), GUID_A, event(GUID_A, "c")).await;
    }
    assert_eq!(
        crm.received().iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(crm.received_count(), 5);
    assert_eq!(crm.next(WAIT).await.unwrap().seq, 3);
}

#[tokio::test]
async fn invalid_behavior_does_not_start() {
    let listener = MockCrm::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = MockCrm::start(listener, Behavior::default().with_fail_rate(2.0, 503))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("fail_rate"), "{err}");
}

#[tokio::test]
async fn shutdown_token_stops_the_server() {
    let listener = MockCrm::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let options = MockCrmOptions {
        shutdown: shutdown.clone(),
        ..MockCrmOptions::default()
    };
    let crm = MockCrm::start_with(listener, Behavior::default(), options)
        .await
        .unwrap();
    let addr = crm.addr();
    shutdown.cancel();
    crm.stop().await;
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}
