//! HTTP ingest (`cpn-producer serve`, run in-process through
//! `cpn_producer::ingest::Server`) against the real broker: a 2xx only once
//! Kafka holds the event, and every refusal path (400, 413, 415, 503 with
//! Retry-After) with nothing stored that was not accepted. Clients that
//! misbehave on the wire, written by hand in [`cpn_e2e::rawhttp`]: a 413
//! reaches a client that writes its whole body before reading, slow headers
//! and short bodies are cut off after their timeouts (408 for the body),
//! oversized headers get 431, and connections past `max_connections` wait.
//! Fresh topic per test; fails (never skips) without a broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cpn_e2e::{ReadRecord, broker, create_topic, rawhttp, read_all, unique, wait_for};
use cpn_producer::ingest::{BATCH_ROUTE, SINGLE_ROUTE, ServeConfig, Server};
use cpn_producer::{Metrics, PublisherConfig, Record};
use cpn_schema::ContactProcessed;
use cpn_schema::headers::{CURRENT_SCHEMA_VERSION, GUID, SCHEMA_VERSION};
use reqwest::StatusCode;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running ingest server and the means to stop it.
struct Running {
    addr: SocketAddr,
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), cpn_producer::ingest::ServeError>>,
}

impl Running {
    async fn start(config: ServeConfig) -> Result<Self> {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        let metrics = server.publisher().metrics().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            metrics,
            stop,
            task,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn shutdown(self) -> Result<Result<(), cpn_producer::ingest::ServeError>> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .context("server did not stop")?
            .context("server task panicked")
    }
}

fn config(brokers: &str, topic: &str) -> ServeConfig {
    let mut publisher = PublisherConfig::new(brokers, topic);
    publisher.delivery_timeout = Duration::from_secs(30);
    let mut c = ServeConfig::new(publisher, "127.0.0.1:0");
    c.ack_timeout = Duration::from_secs(20);
    c
}

fn sample(name: &str) -> Result<Vec<u8>> {
    let path = format!(
        "{}/../schema/examples/valid/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).with_context(|| format!("reading {path}"))
}

fn json(bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).context("parsing JSON")
}

/// POST `body` as OCS does: JSON content type, ETag = GUID, its User-Agent.
async fn post_as_ocs(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
) -> Result<(StatusCode, reqwest::header::HeaderMap, serde_json::Value)> {
    let value = json(body)?;
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Accept", "*/*")
        .header("User-Agent", "OCS/8.1.528.21");
    if let Some(guid) = value["GSW_MESSAGE_GUID"].as_str() {
        req = req.header("ETag", guid);
    }
    let resp = req.body(body.to_vec()).send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?;
    Ok((status, headers, json(&body)?))
}

fn stored(brokers: &str, topic: &str) -> Result<HashMap<(i32, i64), ReadRecord>> {
    Ok(read_all(brokers, topic)?
        .into_iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocs_post_is_acknowledged_with_where_kafka_stored_it_and_resends_are_accepted() -> Result<()>
{
    let brokers = broker()?;
    let topic = unique("ingest-single");
    create_topic(&brokers, &topic, 3).await?;
    let server = Running::start(config(&brokers, &topic)).await?;
    let client = reqwest::Client::new();

    let mut accepted = Vec::new();
    for name in [
        "voice-answered-agent.json",
        "uppercase-braced-guids.json",
        "email-user-fields.json",
    ] {
        let body = sample(name)?;
        let (status, _, reply) = post_as_ocs(&client, &server.url(SINGLE_ROUTE), &body).await?;
        assert_eq!(status, StatusCode::OK, "{name}: {reply}");
        accepted.push((body, reply));
    }
    // OCS retry: the same event (same GUID) again is accepted again.
    let (again, first) = (&accepted[0].0.clone(), &accepted[0].1.clone());
    let (status, _, reply) = post_as_ocs(&client, &server.url(SINGLE_ROUTE), again).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["guid"], first["guid"]);
    assert_ne!(
        (&reply["partition"], &reply["offset"]),
        (&first["partition"], &first["offset"])
    );
    accepted.push((again.clone(), reply));

    // The 200s came after the acknowledgement: the records are there now.
    let records = stored(&brokers, &topic)?;
    assert_eq!(records.len(), accepted.len());
    for (body, reply) in &accepted {
        let at = (
            i32::try_from(reply["partition"].as_i64().context("partition")?)?,
            reply["offset"].as_i64().context("offset")?,
        );
        let got = records
            .get(&at)
            .with_context(|| format!("nothing at {at:?}"))?;
        let event = ContactProcessed::from_json(body).map_err(|e| anyhow::anyhow!("{e}"))?;
        let expected = Record::from_event(&event);
        assert_eq!(got.value.as_deref(), Some(expected.value.as_slice()));
        assert_eq!(json(got.value.as_deref().unwrap_or_default())?, json(body)?);
        assert_eq!(got.key.as_deref(), Some(expected.key.as_bytes()));
        assert_eq!(
            got.header(GUID).as_deref(),
            Some(event.message_guid.as_str())
        );
        assert_eq!(reply["guid"].as_str(), Some(event.message_guid.as_str()));
        assert_eq!(
            got.header(SCHEMA_VERSION).as_deref(),
            Some(CURRENT_SCHEMA_VERSION)
        );
    }
    assert_eq!(server.metrics.published(), accepted.len() as u64);
    server.shutdown().await??;
    Ok(())
}

/// POSTs `chunks` with `Transfer-Encoding: chunked` (no `Content-Length`)
/// over a raw connection and returns the response's status line.
async fn post_chunked(url: &str, chunks: &[&[u8]]) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let parsed = reqwest::Url::parse(url)?;
    let addr = format!(
        "{}:{}",
        parsed.host_str().context("host")?,
        parsed.port().context("port")?
    );
    let mut conn = tokio::net::TcpStream::connect(&addr).await?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        parsed.path()
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it has read everything.
    let _ = conn.write_all(&req).await;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut reply))
        .await
        .context("no reply within 10 s")??;
    let text = String::from_utf8_lossy(&reply);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_400_413_415_store_nothing() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-refusals");
    create_topic(&brokers, &topic, 1).await?;
    let mut c = config(&brokers, &topic);
    c.max_body_bytes = 4096;
    let server = Running::start(c).await?;
    let client = reqwest::Client::new();
    let url = server.url(SINGLE_ROUTE);

    // 400: every field problem listed.
    let mut bad = json(&sample("voice-answered-agent.json")?)?;
    let obj = bad.as_object_mut().context("object")?;
    obj.remove("GSW_PHONE");
    obj.insert("GSW_CHAIN_ID".into(), "seventeen".into());
    obj.insert("GSW_CONTACT_MEDIA_TYPE".into(), "fax".into());
    let (status, _, reply) = post_as_ocs(&client, &url, &serde_json::to_vec(&bad)?).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let fields: Vec<&str> = reply["problems"]
        .as_array()
        .context("problems")?
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    for f in ["GSW_PHONE", "GSW_CHAIN_ID", "GSW_CONTACT_MEDIA_TYPE"] {
        assert!(fields.contains(&f), "{f} not named in {reply}");
    }

    // 400: not JSON, position given.
    let (status, _, reply) = post_as_ocs_raw(&client, &url, "application/json", b"{\"GSW_").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["problems"][0]["field"], "(root)");
    assert!(
        reply["problems"][0]["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("column")
    );

    // 400: ETag naming another GUID than the body.
    let body = sample("sms-minimal.json")?;
    let resp = client
        .post(&url)
        .header("Content-Type", "application/json")
        .header("ETag", uuid::Uuid::new_v4().to_string())
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(&resp.bytes().await?)?["problems"][0]["field"], "ETag");

    // 413: above --max-body-bytes.
    let mut big = json(&body)?;
    big["Other1"] = "x".repeat(5000).into();
    let (status, _, reply) = post_as_ocs(&client, &url, &serde_json::to_vec(&big)?).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(reply["problems"][0]["field"], "(body)");

    // 413 also without a Content-Length: a chunked body is counted as it
    // streams in and refused once it passes the limit.
    let status_line = post_chunked(&url, &[&[b' '; 2000][..]; 3]).await?;
    assert!(
        status_line.starts_with("HTTP/1.1 413"),
        "chunked 6000 bytes over a 4096 limit: {status_line}"
    );

    // 415: not JSON, or no content type at all.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = client.post(&url).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(
            json(&resp.bytes().await?)?["problems"][0]["field"],
            "Content-Type"
        );
    }
    // The batch endpoint takes NDJSON, the single one does not.
    let (status, _, _) = post_as_ocs_raw(&client, &url, "application/x-ndjson", &body).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing of the above reached Kafka; a valid post still works after.
    assert!(read_all(&brokers, &topic)?.is_empty());
    let (status, _, _) = post_as_ocs(&client, &url, &body).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_all(&brokers, &topic)?.len(), 1);

    let metrics = reqwest::get(server.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains(
            r#"cpn_producer_http_requests_total{route="/v1/contact-processed",status="415"} 4"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("cpn_producer_events_rejected_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cpn_producer_events_published_total 1"),
        "{metrics}"
    );
    server.shutdown().await??;
    Ok(())
}

async fn post_as_ocs_raw(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(StatusCode, reqwest::header::HeaderMap, serde_json::Value)> {
    let resp = client
        .post(url)
        .header("Content-Type", content_type)
        .body(body.to_vec())
        .send()
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await?;
    Ok((
        status,
        headers,
        json(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_reports_each_line_and_publishes_exactly_the_valid_ones() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-batch");
    create_topic(&brokers, &topic, 3).await?;
    let server = Running::start(config(&brokers, &topic)).await?;
    let client = reqwest::Client::new();
    let url = server.url(BATCH_ROUTE);

    let (_, a) = cpn_e2e::event("batch-list", 1, 0);
    let (_, b) = cpn_e2e::event("batch-list", 1, 1);
    let (_, c) = cpn_e2e::event("batch-list", 2, 0);
    let mut invalid = json(&c)?;
    invalid
        .as_object_mut()
        .context("object")?
        .remove("GSW_CALLING_LIST");
    let ndjson = [
        a.clone(),
        b"".to_vec(),
        serde_json::to_vec(&invalid)?,
        b.clone(),
        c.clone(),
    ]
    .join(&b'\n');

    let (status, _, report) =
        post_as_ocs_raw(&client, &url, "application/x-ndjson", &ndjson).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{report}");
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["rejected"], 1);
    assert_eq!(report["failed"], 0);
    let results = report["results"].as_array().context("results")?;
    let lines: Vec<(i64, &str)> = results
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap_or(-1),
                r["status"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (1, "accepted"),
            (3, "rejected"),
            (4, "accepted"),
            (5, "accepted")
        ]
    );
    assert_eq!(results[1]["problems"][0]["field"], "GSW_CALLING_LIST");

    let records = stored(&brokers, &topic)?;
    assert_eq!(records.len(), 3, "only the valid lines are in Kafka");
    for (r, body) in [(&results[0], &a), (&results[2], &b), (&results[3], &c)] {
        let at = (
            i32::try_from(r["partition"].as_i64().context("partition")?)?,
            r["offset"].as_i64().context("offset")?,
        );
        let got = records
            .get(&at)
            .with_context(|| format!("nothing at {at:?}"))?;
        assert_eq!(json(got.value.as_deref().unwrap_or_default())?, json(body)?);
        assert_eq!(got.header(GUID).as_deref(), r["guid"].as_str());
    }
    // Lines 1 and 4 are one chain: same partition, line order kept.
    assert_eq!(results[0]["partition"], results[2]["partition"]);
    assert!(results[0]["offset"].as_i64() < results[2]["offset"].as_i64());

    // All valid: 200.
    let all_good = [a, b].join(&b'\n');
    let (status, _, report) =
        post_as_ocs_raw(&client, &url, "application/x-ndjson", &all_good).await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["accepted"], 2);
    // Only blank lines: 400.
    let (status, _, _) = post_as_ocs_raw(&client, &url, "application/x-ndjson", b"\n \n").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.shutdown().await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-health");
    create_topic(&brokers, &topic, 1).await?;
    let server = Running::start(config(&brokers, &topic)).await?;
    assert_eq!(
        reqwest::get(server.url("/healthz")).await?.status(),
        StatusCode::OK
    );
    assert_eq!(
        reqwest::get(server.url("/readyz")).await?.status(),
        StatusCode::OK
    );
    let client = reqwest::Client::new();
    let (status, _, _) = post_as_ocs(
        &client,
        &server.url(SINGLE_ROUTE),
        &sample("sms-minimal.json")?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let resp = reqwest::get(server.url("/metrics")).await?;
    assert!(
        resp.headers()["content-type"]
            .to_str()?
            .starts_with("text/plain")
    );
    let text = resp.text().await?;
    for needle in [
        "cpn_producer_events_published_total 1",
        "cpn_producer_events_in_flight 0",
        "cpn_producer_ack_duration_seconds_count 1",
        r#"cpn_producer_http_requests_total{route="/v1/contact-processed",status="200"} 1"#,
        r#"cpn_producer_http_requests_total{route="/readyz",status="200"} 1"#,
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    server.shutdown().await??;

    // A topic the broker does not have: up, but not ready.
    let server = Running::start(config(&brokers, &unique("ingest-missing"))).await?;
    assert_eq!(
        reqwest::get(server.url("/healthz")).await?.status(),
        StatusCode::OK
    );
    let resp = reqwest::get(server.url("/readyz")).await?;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.shutdown().await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_503_with_retry_after_and_never_a_2xx() -> Result<()> {
    // Port 1 on loopback: nothing listens, connections are refused.
    let mut publisher = PublisherConfig::new("127.0.0.1:1", "nowhere");
    publisher.delivery_timeout = Duration::from_millis(1500);
    let mut c = ServeConfig::new(publisher, "127.0.0.1:0");
    c.ack_timeout = Duration::from_millis(800);
    c.retry_after_secs = 7;
    c.shutdown_timeout = Duration::from_secs(5);
    let server = Running::start(c).await?;
    let client = reqwest::Client::new();

    let body = sample("voice-answered-agent.json")?;
    let (status, headers, reply) = post_as_ocs(&client, &server.url(SINGLE_ROUTE), &body).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(reply["problems"][0]["field"], "(kafka)");

    let (_, a) = cpn_e2e::event("down-list", 1, 0);
    let (_, b) = cpn_e2e::event("down-list", 2, 0);
    let (status, headers, report) = post_as_ocs_raw(
        &client,
        &server.url(BATCH_ROUTE),
        "application/x-ndjson",
        &[a, b].join(&b'\n'),
    )
    .await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["failed"], 2);
    for r in report["results"].as_array().context("results")? {
        assert_eq!(r["status"], "failed");
        assert!(r.get("offset").is_none());
    }

    assert_eq!(
        reqwest::get(server.url("/readyz")).await?.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(server.metrics.published(), 0);
    // Shutdown still ends: the flush gives up after shutdown_timeout at worst.
    let _ = server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_request_in_flight_finish_with_its_acknowledgement() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-shutdown");
    create_topic(&brokers, &topic, 1).await?;
    let mut c = config(&brokers, &topic);
    // A long linger keeps the event waiting in the producer long enough to
    // stop the server while the request is certainly in flight.
    c.publisher.linger = Duration::from_millis(1500);
    let server = Running::start(c).await?;
    let url = server.url(SINGLE_ROUTE);
    let body = sample("sms-minimal.json")?;
    let request = tokio::spawn(async move {
        let client = reqwest::Client::new();
        post_as_ocs(&client, &url, &body).await
    });
    let metrics = server.metrics.clone();
    wait_for("the event to be in flight", Duration::from_secs(10), || {
        let n = metrics.in_flight();
        async move { (n == 1).then_some(()) }
    })
    .await?;
    let stopped = tokio::spawn(server.shutdown());
    let (status, _, reply) = request.await??;
    assert_eq!(status, StatusCode::OK, "{reply}");
    stopped.await???;
    let records = read_all(&brokers, &topic)?;
    ensure!(
        records.len() == 1,
        "expected the one event, found {}",
        records.len()
    );
    Ok(())
}

/// Short connection bounds, so a test can watch them act: 1 s to send the
/// headers, 1 s to send the body.
fn bounded(mut c: ServeConfig) -> ServeConfig {
    c.header_read_timeout = Duration::from_secs(1);
    c.body_read_timeout = Duration::from_secs(1);
    c
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_answered_413_even_to_a_client_that_writes_it_all_first() -> Result<()>
{
    let brokers = broker()?;
    let topic = unique("ingest-drain");
    create_topic(&brokers, &topic, 1).await?;
    let mut c = config(&brokers, &topic);
    c.max_body_bytes = 4096;
    let server = Running::start(c).await?;
    // The client must still be writing when the server has decided: a
    // server that closes then resets the connection, and the client sees a
    // broken pipe, not the 413. On loopback a client can hand several MiB
    // to its kernel at once (Linux grows a send buffer to 4 MiB), so
    // Python writes 8 MiB (below the 16 MiB the server reads after its
    // answer), and the raw client 2 MiB in 16 KiB pieces 1 ms apart.
    const PYTHON_BODY: usize = 8 << 20;
    const OVERSIZED: usize = 2 << 20;

    for attempt in 1..=5 {
        let said = rawhttp::python_http_client_post(server.addr, SINGLE_ROUTE, PYTHON_BODY).await?;
        assert!(
            said.starts_with("413 ") && said.contains("longer than the limit of 4096 bytes"),
            "python http.client, try {attempt}: {said}"
        );
    }
    let body = vec![b' '; OVERSIZED];
    let declared = rawhttp::request("POST", SINGLE_ROUTE, &[JSON], &body, None);
    let chunk = vec![b' '; 64 * 1024];
    let chunks: Vec<&[u8]> =
        std::iter::repeat_n(chunk.as_slice(), OVERSIZED / chunk.len()).collect();
    let chunked = rawhttp::chunked_post(SINGLE_ROUTE, &[JSON], &chunks);
    let batch = rawhttp::request(
        "POST",
        BATCH_ROUTE,
        &[("Content-Type", "application/x-ndjson")],
        &body,
        None,
    );
    for attempt in 1..=5 {
        for (what, req) in [
            ("content-length", &declared),
            ("chunked", &chunked),
            ("batch", &batch),
        ] {
            let reply = rawhttp::write_paced_then_read(
                server.addr,
                req,
                16 * 1024,
                Duration::from_millis(1),
                Duration::from_secs(20),
            )
            .await?;
            assert_eq!(
                reply.status(),
                Some(413),
                "{what}, try {attempt}: {}",
                short(&reply)
            );
            // The unread rest makes the connection unusable: said so.
            assert!(
                matches!(&reply, rawhttp::Reply::Response { text, .. }
                    if text.to_ascii_lowercase().contains("connection: close")),
                "{what}: {}",
                short(&reply)
            );
        }
    }

    // Nothing reached Kafka, and the server still takes a valid event.
    assert!(read_all(&brokers, &topic)?.is_empty());
    let (status, _, _) = post_as_ocs(
        &reqwest::Client::new(),
        &server.url(SINGLE_ROUTE),
        &sample("sms-minimal.json")?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_all(&brokers, &topic)?.len(), 1);
    server.shutdown().await??;
    Ok(())
}

/// A reply for a failure message, without megabytes of body.
fn short(reply: &rawhttp::Reply) -> String {
    let text = format!("{reply:?}");
    text.chars().take(400).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_send_its_headers_is_cut_off_after_the_header_read_timeout() -> Result<()>
{
    let brokers = broker()?;
    let topic = unique("ingest-slowloris");
    create_topic(&brokers, &topic, 1).await?;
    let server = Running::start(bounded(config(&brokers, &topic))).await?;

    // Slow-loris: a header byte every 100 ms, never the blank line.
    let head = format!("POST {SINGLE_ROUTE} HTTP/1.1\r\nHost: cpn-test\r\n");
    let cut = rawhttp::dribble_until_closed(
        server.addr,
        head.as_bytes(),
        b"X-Slow: abcdefgh\r\n",
        Duration::from_millis(100),
        Duration::from_secs(10),
    )
    .await?;
    let (after, reply) = cut.context("still open after 10 s with a 1 s header read timeout")?;
    assert!(
        !matches!(reply.status(), Some(s) if s < 400),
        "slow headers answered after {after:?}: {reply:?}"
    );

    // A connection that sends nothing at all is closed too.
    let reply = rawhttp::write_whole_then_read(server.addr, b"", Duration::from_secs(10)).await?;
    assert!(
        matches!(reply, rawhttp::Reply::NoResponse(_)),
        "a silent connection: {reply:?}"
    );

    // The bound is per request head, not per connection: a prompt client
    // is served as before.
    let (status, _, _) = post_as_ocs(
        &reqwest::Client::new(),
        &server.url(SINGLE_ROUTE),
        &sample("sms-minimal.json")?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    server.shutdown().await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_declared_or_too_slow_gets_408_after_the_body_read_timeout()
-> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-shortbody");
    create_topic(&brokers, &topic, 1).await?;
    let server = Running::start(bounded(config(&brokers, &topic))).await?;
    let body = sample("sms-minimal.json")?;

    // Content-Length 50 more than sent, then waiting for the answer.
    for route in [SINGLE_ROUTE, BATCH_ROUTE] {
        let req = rawhttp::request("POST", route, &[JSON], &body, Some(body.len() + 50));
        let reply =
            rawhttp::write_whole_then_read(server.addr, &req, Duration::from_secs(10)).await?;
        let rawhttp::Reply::Response { status, text } = &reply else {
            panic!("{route}: no response: {reply:?}")
        };
        assert_eq!(*status, 408, "{route}: {text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }

    // The whole body is bounded, not the pause between bytes: a body that
    // keeps coming a byte every 100 ms is cut as well.
    let head = rawhttp::request("POST", SINGLE_ROUTE, &[JSON], b"", Some(body.len()));
    let cut = rawhttp::dribble_until_closed(
        server.addr,
        &head,
        &body,
        Duration::from_millis(100),
        Duration::from_secs(10),
    )
    .await?;
    let (after, reply) = cut.context("a dripped body still read after 10 s")?;
    assert_eq!(reply.status(), Some(408), "after {after:?}: {reply:?}");

    assert!(read_all(&brokers, &topic)?.is_empty());
    let metrics = reqwest::get(server.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains(
            r#"cpn_producer_http_requests_total{route="/v1/contact-processed",status="408"} 2"#
        ),
        "{metrics}"
    );
    server.shutdown().await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_max_header_bytes_are_refused_with_431() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-bigheaders");
    create_topic(&brokers, &topic, 1).await?;
    let mut c = config(&brokers, &topic);
    c.max_header_bytes = 8192;
    let server = Running::start(c).await?;
    let body = sample("sms-minimal.json")?;

    let big = "a".repeat(64 * 1024);
    let req = rawhttp::request(
        "POST",
        SINGLE_ROUTE,
        &[JSON, ("X-Padding", &big)],
        &body,
        None,
    );
    for attempt in 1..=3 {
        let reply =
            rawhttp::write_whole_then_read(server.addr, &req, Duration::from_secs(10)).await?;
        assert_eq!(
            reply.status(),
            Some(431),
            "try {attempt}: {}",
            short(&reply)
        );
    }
    // Within the bound: served.
    let fits = "a".repeat(6 * 1024);
    let req = rawhttp::request(
        "POST",
        SINGLE_ROUTE,
        &[JSON, ("X-Padding", &fits)],
        &body,
        None,
    );
    let reply = rawhttp::write_whole_then_read(server.addr, &req, Duration::from_secs(20)).await?;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    assert_eq!(read_all(&brokers, &topic)?.len(), 1);
    server.shutdown().await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_max_connections_wait_until_one_closes() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("ingest-connlimit");
    create_topic(&brokers, &topic, 1).await?;
    let mut c = config(&brokers, &topic);
    c.max_connections = 2;
    // Idle keep-alive connections must stay open for the whole test.
    c.header_read_timeout = Duration::from_secs(60);
    let server = Running::start(c).await?;
    let wait = Duration::from_secs(10);

    let mut first = tokio::net::TcpStream::connect(server.addr).await?;
    assert_eq!(rawhttp::get_on(&mut first, "/healthz", wait).await?, 200);
    let mut second = tokio::net::TcpStream::connect(server.addr).await?;
    assert_eq!(rawhttp::get_on(&mut second, "/healthz", wait).await?, 200);

    // The third connects (the kernel's listen backlog completes the
    // handshake) but is not served while two are open...
    let mut third = tokio::net::TcpStream::connect(server.addr).await?;
    let pending = tokio::spawn(async move {
        rawhttp::get_on(&mut third, "/healthz", Duration::from_secs(30)).await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !pending.is_finished(),
        "a third connection was served while two of max 2 were open"
    );
    // ...and is, once one of them closes.
    drop(first);
    let status = tokio::time::timeout(wait, pending)
        .await
        .context("the third connection was not served within 10 s of a slot freeing")??;
    assert_eq!(status?, 200);
    // The connection that stayed open is still served.
    assert_eq!(rawhttp::get_on(&mut second, "/healthz", wait).await?, 200);
    server.shutdown().await??;
    Ok(())
}
