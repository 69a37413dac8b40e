//! The `cpn-producer` binary against the real broker: `publish` exits 0 only
//! when every line was valid and acknowledged, reports invalid lines as
//! `line N: FIELD: problem`, never counts as published what Kafka did not
//! acknowledge (broker down, Ctrl-C), `generate` publishes what it would
//! print, and `serve` shuts down cleanly on SIGTERM and bounds slow and
//! oversized clients by the options it was given.
//!
//! The binary comes from [`cpn_e2e::bin_path`], which builds it once per
//! test process so a stale one is never tested.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cpn_e2e::{broker, create_topic, end_offsets, read_all, unique, wait_for};

/// Builds (if needed) and locates the `cpn-producer` binary.
fn producer_bin() -> Result<PathBuf> {
    cpn_e2e::bin_path("cpn-producer")
}

/// Runs the binary with `args`, `stdin` as input, and a deadline.
fn run(args: &[&str], stdin: &[u8]) -> Result<Output> {
    let mut child = Command::new(producer_bin()?)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning cpn-producer")?;
    let mut input = child.stdin.take().context("stdin")?;
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = wait_output(child, Duration::from_secs(120))?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("stdin writer panicked"))?
        .or_else(|e| {
            // The binary may exit before reading everything (it failed).
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    Ok(out)
}

/// Waits for `child` to exit, killing it after `deadline`.
fn wait_output(child: std::process::Child, deadline: Duration) -> Result<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            bail!("cpn-producer (pid {pid}) did not exit within {deadline:?}")
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `n` valid NDJSON lines of `list`, chains 0..n.
fn valid_lines(list: &str, n: i64) -> Vec<Vec<u8>> {
    (0..n).map(|i| cpn_e2e::event(list, i, 0).1).collect()
}

fn ndjson(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_all_valid_exits_zero_and_kafka_holds_every_line() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cli-publish");
    create_topic(&brokers, &topic, 3).await?;
    let lines = valid_lines("cli-list", 40);
    let out = run(
        &["publish", "--brokers", &brokers, "--topic", &topic, "-"],
        &ndjson(&lines),
    )?;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(
        stderr.contains("published 40, rejected 0, failed 0"),
        "{stderr}"
    );
    assert!(stderr.contains("events/s"), "{stderr}");
    let stored = read_all(&brokers, &topic)?;
    assert_eq!(stored.len(), 40);
    let mut got: Vec<serde_json::Value> = stored
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    let mut want: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_slice(l))
        .collect::<Result<_, _>>()?;
    let key = |v: &serde_json::Value| {
        v["GSW_MESSAGE_GUID"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reports_invalid_lines_publishes_the_rest_and_exits_one() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cli-invalid");
    create_topic(&brokers, &topic, 1).await?;
    let mut lines = valid_lines("cli-invalid", 5);
    let mut bad: serde_json::Value = serde_json::from_slice(&lines[1])?;
    bad.as_object_mut()
        .context("object")?
        .remove("GSW_CHAIN_ID");
    bad["GSW_CONTACT_MEDIA_TYPE"] = "fax".into();
    lines[1] = serde_json::to_vec(&bad)?;
    lines.insert(3, Vec::new()); // a blank line: skipped, but counted in numbering
    lines.insert(4, b"{not json".to_vec());
    let file = std::env::temp_dir().join(format!("{}.ndjson", unique("cli-invalid")));
    std::fs::write(&file, ndjson(&lines))?;
    let path = file.to_string_lossy().into_owned();
    let out = run(&["publish", "-b", &brokers, "-t", &topic, &path], b"")?;
    let _ = std::fs::remove_file(&file);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2: GSW_CHAIN_ID: missing"), "{stderr}");
    assert!(
        stderr.contains("line 2: GSW_CONTACT_MEDIA_TYPE: unknown media type"),
        "{stderr}"
    );
    assert!(stderr.contains("line 5: (root): not JSON"), "{stderr}");
    assert!(
        stderr.contains("published 4, rejected 2, failed 0"),
        "{stderr}"
    );
    assert_eq!(read_all(&brokers, &topic)?.len(), 4);
    Ok(())
}

#[test]
fn publish_with_broker_down_exits_nonzero_and_reports_nothing_published() -> Result<()> {
    let lines = valid_lines("cli-down", 7);
    let out = run(
        &[
            "publish",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "nowhere",
            "--delivery-timeout-ms",
            "1500",
            "-X",
            "socket.connection.setup.timeout.ms=1000",
        ],
        &ndjson(&lines),
    )?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("published 0, rejected 0, failed 7"),
        "{stderr}"
    );
    let failures = stderr
        .lines()
        .filter(|l| l.contains(": not published: "))
        .count();
    assert_eq!(failures, 7, "{stderr}");
    for n in 1..=7 {
        assert!(
            stderr.contains(&format!("line {n}: not published: ")),
            "line {n}: {stderr}"
        );
    }
    Ok(())
}

/// `cpn-producer publish -b BROKERS -t TOPIC EXTRA…` reading a piped stdin,
/// with `RUST_LOG=rust_log` and stdout and stderr piped.
fn spawn_publish(
    brokers: &str,
    topic: &str,
    extra: &[&str],
    rust_log: &str,
) -> Result<std::process::Child> {
    Command::new(producer_bin()?)
        .args(["publish", "-b", brokers, "-t", topic])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning cpn-producer publish")
}

/// Sends `child` the signal `sig` (`INT`: Ctrl-C, as a terminal sends it).
fn signal(child: &std::process::Child, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()?;
    ensure!(status.success(), "kill -{sig} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_reading_and_reports_exactly_what_kafka_acknowledged() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cli-interrupt");
    create_topic(&brokers, &topic, 1).await?;
    let mut child = spawn_publish(&brokers, &topic, &[], "warn")?;
    // 25 lines, then stdin stays open: the command would wait for more.
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(&ndjson(&valid_lines("cli-interrupt", 25)))?;
    stdin.flush()?;
    let b = brokers.clone();
    let t = topic.clone();
    wait_for("25 records in Kafka", Duration::from_secs(30), || {
        let ends = end_offsets(&b, &t).ok();
        async move { ends.filter(|e| e.values().sum::<i64>() == 25).map(|_| ()) }
    })
    .await?;
    signal(&child, "INT")?;
    let out = wait_output(child, Duration::from_secs(60))?;
    drop(stdin);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("published 25, rejected 0, failed 0"),
        "{stderr}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(read_all(&brokers, &topic)?.len(), 25);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_waits_for_events_still_in_flight_and_counts_them() -> Result<()> {
    use std::io::BufRead;
    let brokers = broker()?;
    let topic = unique("cli-interrupt-inflight");
    create_topic(&brokers, &topic, 1).await?;
    // A 3 s linger keeps every event handed to Kafka unacknowledged for a
    // while: the interrupt below arrives while all 20 are in flight.
    let mut child = spawn_publish(
        &brokers,
        &topic,
        &["--linger-ms", "3000"],
        "warn,cpn_producer=debug",
    )?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    stdin.write_all(&ndjson(&valid_lines("cli-inflight", 20)))?;
    stdin.flush()?;
    // Wait until the tool says it handed all 20 to Kafka (stdin stays open).
    let mut said = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while said
        .iter()
        .filter(|l: &&String| l.contains("event handed to kafka"))
        .count()
        < 20
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        said.push(
            rx.recv_timeout(left)
                .with_context(|| format!("{said:#?}"))?,
        );
    }
    let in_kafka: i64 = end_offsets(&brokers, &topic)?.values().sum();
    signal(&child, "INT")?;
    let out = wait_output(child, Duration::from_secs(60))?;
    drop(stdin);
    said.extend(rx.try_iter());
    let stderr = said.join("\n");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("published 20, rejected 0, failed 0"),
        "every in-flight event was waited for and counted: {stderr}"
    );
    assert_eq!(read_all(&brokers, &topic)?.len(), 20);
    assert!(
        in_kafka < 20,
        "not vacuous: events were still in flight at the interrupt ({in_kafka} in Kafka)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_publishes_exactly_what_it_would_print_for_the_same_seed() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cli-generate");
    create_topic(&brokers, &topic, 3).await?;
    let out = run(
        &[
            "generate", "--count", "500", "--seed", "99", "-b", &brokers, "-t", &topic,
        ],
        b"",
    )?;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("published 500, rejected 0, failed 0"),
        "{stderr}"
    );
    assert!(stderr.contains("MB/s"), "{stderr}");

    let printed = run(&["generate", "--count", "500", "--seed", "99"], b"")?;
    assert!(printed.status.success());
    let mut want: Vec<Vec<u8>> = printed
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let mut got: Vec<Vec<u8>> = read_all(&brokers, &topic)?
        .into_iter()
        .filter_map(|r| r.value)
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), 500);
    assert!(got == want, "Kafka values differ from the printed events");

    // And what it prints passes `validate`.
    let checked = run(&["validate", "-"], &printed.stdout)?;
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_accepts_an_event_and_stops_cleanly_on_sigterm() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cli-serve");
    create_topic(&brokers, &topic, 1).await?;
    // A free port: bind, note it, release it for the binary.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(producer_bin()?)
        .args(["serve", "-b", &brokers, "-t", &topic])
        .env("CPN_LISTEN", &listen) // options also come from the environment
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let base = format!("http://{listen}");
    let health = format!("{base}/healthz");
    cpn_e2e::wait_http_ok("serve to answer /healthz", &health, Duration::from_secs(30)).await?;
    let (_, body) = cpn_e2e::event("serve-list", 1, 0);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/contact-processed"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?;
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    signal(&child, "TERM")?;
    let out = wait_output(child, Duration::from_secs(60))?;
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("ingest server stopped"), "{stderr}");
    assert_eq!(read_all(&brokers, &topic)?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_bounds_slow_and_oversized_clients_by_its_options() -> Result<()> {
    use cpn_e2e::rawhttp::{self, Reply};

    let brokers = broker()?;
    let topic = unique("cli-serve-bounds");
    create_topic(&brokers, &topic, 1).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    // Flags and environment both: each option is read from either.
    let child = Command::new(producer_bin()?)
        .args(["serve", "-b", &brokers, "-t", &topic])
        .args(["--listen", &addr.to_string()])
        .args([
            "--header-read-timeout-ms",
            "1000",
            "--max-header-bytes",
            "8192",
        ])
        .env("CPN_BODY_READ_TIMEOUT_MS", "1000")
        .env("CPN_MAX_CONNECTIONS", "8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let checks = async {
        let health = format!("http://{addr}/healthz");
        wait_for("serve to answer /healthz", Duration::from_secs(30), || {
            let url = health.clone();
            async move {
                reqwest::get(url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await?;
        let route = "/v1/contact-processed";
        let json = ("Content-Type", "application/json");

        // Slow-loris: cut off by --header-read-timeout-ms.
        let head = format!("POST {route} HTTP/1.1\r\nHost: cpn-test\r\n");
        let cut = rawhttp::dribble_until_closed(
            addr,
            head.as_bytes(),
            b"X-Slow: abcdefgh\r\n",
            Duration::from_millis(100),
            Duration::from_secs(10),
        )
        .await?;
        ensure!(cut.is_some(), "slow headers still open after 10 s");

        // 50 bytes short: 408 after CPN_BODY_READ_TIMEOUT_MS.
        let (_, body) = cpn_e2e::event("serve-bounds", 1, 0);
        let short = rawhttp::request("POST", route, &[json], &body, Some(body.len() + 50));
        let reply = rawhttp::write_whole_then_read(addr, &short, Duration::from_secs(10)).await?;
        ensure!(reply.status() == Some(408), "short body: {reply:?}");

        // 64 KiB of headers over --max-header-bytes 8192: 431.
        let pad = "a".repeat(64 * 1024);
        let big = rawhttp::request("POST", route, &[json, ("X-Padding", &pad)], &body, None);
        let reply = rawhttp::write_whole_then_read(addr, &big, Duration::from_secs(10)).await?;
        ensure!(
            reply.status() == Some(431),
            "big headers: {:?}",
            reply.status()
        );

        // 8 MiB over the default 1 MiB limit, from Python's http.client.
        let said = rawhttp::python_http_client_post(addr, route, 8 << 20).await?;
        ensure!(said.starts_with("413 "), "python http.client: {said}");

        // And a good event is still taken.
        let ok = rawhttp::request("POST", route, &[json], &body, None);
        let reply = rawhttp::write_whole_then_read(addr, &ok, Duration::from_secs(20)).await?;
        ensure!(
            matches!(reply, Reply::Response { status: 200, .. }),
            "{reply:?}"
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    signal(&child, "TERM")?;
    let out = wait_output(child, Duration::from_secs(60))?;
    let stderr = text(&out.stderr);
    checks.with_context(|| format!("cpn-producer serve stderr:\n{stderr}"))?;
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert_eq!(read_all(&brokers, &topic)?.len(), 1);
    Ok(())
}
