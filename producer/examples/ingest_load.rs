//! A small load client for `cpn-producer serve`: posts single events with
//! keep-alive from a fixed number of concurrent connections and reports
//! requests/s and latency percentiles. For the figures in BENCHMARKS.md.
//!
//! Bounded (a request count and a duration, whichever ends first) and
//! loopback only: it refuses any URL whose host is not 127.0.0.1, ::1 or
//! localhost. Each request carries a fresh GSW_MESSAGE_GUID (and the same
//! ETag), like distinct OCS notifications.
//!
//! ```text
//! cargo run --release -p cpn-producer --example ingest_load -- \
//!     --url http://127.0.0.1:8080/v1/contact-processed --connections 32 --requests 200000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Load client for the single-event ingest endpoint.
#[derive(Debug, Parser)]
struct Args {
    /// Endpoint to post to (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/contact-processed")]
    url: String,
    /// Concurrent keep-alive connections (one request in flight on each).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Stop after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// Requests sent per connection before measuring starts.
    #[arg(long, default_value_t = 50)]
    warmup: u64,
}

/// The typical ~1.3 KB event of schema/examples, with a GUID placeholder.
fn template() -> Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schema/examples/valid/voice-answered-agent.json"
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut v: serde_json::Value = serde_json::from_str(&text)?;
    v["GSW_MESSAGE_GUID"] = "@GUID@".into();
    Ok(serde_json::to_string(&v)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let url = reqwest::Url::parse(&args.url).context("--url")?;
    match url.host_str() {
        Some("127.0.0.1" | "[::1]" | "::1" | "localhost") => {}
        other => bail!("--url must point at loopback, got host {other:?}"),
    }
    let template = Arc::new(template()?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .tcp_nodelay(true)
        .build()?;

    let post = {
        let client = client.clone();
        let url = url.clone();
        let template = Arc::clone(&template);
        move || {
            let guid = uuid::Uuid::new_v4().to_string();
            let body = template.replace("@GUID@", &guid);
            client
                .post(url.clone())
                .header("Content-Type", "application/json")
                .header("ETag", guid)
                .body(body)
                .send()
        }
    };

    // Warm up: open the connections, let the producer connect.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let post = post.clone();
        let n = args.warmup;
        warm.spawn(async move {
            for _ in 0..n {
                let _ = post().await.map(|r| r.status());
            }
        });
    }
    while warm.join_next().await.is_some() {}

    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let post = post.clone();
        let issued = Arc::clone(&issued);
        let limit = args.requests;
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: std::collections::BTreeMap<u16, u64> = Default::default();
            while issued.fetch_add(1, Ordering::Relaxed) < limit && Instant::now() < deadline {
                let t0 = Instant::now();
                let status = match post().await {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                latencies.push(t0.elapsed());
                *statuses.entry(status).or_default() += 1;
            }
            (latencies, statuses)
        });
    }
    let mut latencies = Vec::new();
    let mut statuses: std::collections::BTreeMap<u16, u64> = Default::default();
    while let Some(done) = workers.join_next().await {
        let (l, s) = done?;
        latencies.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{} requests in {:.2} s over {} connections: {:.0} requests/s",
        latencies.len(),
        elapsed.as_secs_f64(),
        args.connections,
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 90.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!("statuses (0 = transport error): {statuses:?}");
    Ok(())
}
