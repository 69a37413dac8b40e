//! The ingest facing a network (`cpn-producer serve`, the binary) against
//! the real broker, driven by real TLS clients: Python's `ssl` and
//! `http.client` (`tls_support/ingest_client.py`), curl and `openssl
//! s_client`. Certificates come from a private CA made in the test (rcgen).
//!
//! - TLS 1.2 and 1.3 are served, 1.1 is refused by the server (its
//!   handshake-failure metric counts it, so a client that refused to offer
//!   1.1 by itself would fail the test), and a 1.3 floor refuses 1.2.
//! - The certificate is replaced under load, atomically and by a renewal
//!   that writes the certificate before its key, with no failed request and
//!   every 2xx event in Kafka; files that do not load keep the certificate
//!   in use.
//! - Keys: right key 200, wrong and missing 401 (with the challenge),
//!   nothing of theirs in Kafka, two keys valid at once, a keys file
//!   rotated without a restart, any header name.
//! - mTLS: a client without a certificate, or with one of another CA, is
//!   refused at the handshake.
//! - A non-loopback `--listen` without authentication is refused with the
//!   message naming both ways out; bad TLS and key settings exit 2 naming
//!   the option.
//! - At `RUST_LOG=trace` no key, refused value or private key reaches the
//!   logs, the metrics or an error body.
//!
//! Fails (never skips) without a broker.

mod tls_support;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cpn_e2e::{broker, create_topic, read_all, unique, wait_for, wait_http_ok};
use rcgen::ExtendedKeyUsagePurpose;
use serde_json::Value;
use tls_support::Pki;

const K1: &str = "key-one-5f1d3c2a9b8e7d6c";
const K2: &str = "key-two-0a9b8c7d6e5f4a3b";
const K3: &str = "key-three-77aa66bb55cc44dd";
const WRONG: &str = "wrong-key-e3b0c44298fc1c14";

const CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/tls_support/ingest_client.py"
);

/// A running `cpn-producer serve` and its stderr, collected as it comes.
struct Serve {
    child: Option<Child>,
    port: u16,
    metrics_port: u16,
    tls: bool,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts serve on `127.0.0.1:<free port>` with a metrics listener,
    /// `args` and `env`, and waits for its /healthz.
    async fn start(
        brokers: &str,
        topic: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_with(brokers, topic, args, env, true).await
    }

    /// [`Serve::start`]; without `separate_metrics`, /metrics stays on the
    /// main listener, which must then be plain HTTP (the health wait and
    /// [`Serve::metrics`] use it).
    async fn start_with(
        brokers: &str,
        topic: &str,
        args: &[&str],
        env: &[(&str, &str)],
        separate_metrics: bool,
    ) -> Result<Self> {
        let port = cpn_e2e::ledger::free_port()?;
        let metrics_port = if separate_metrics {
            cpn_e2e::ledger::free_port()?
        } else {
            port
        };
        let mut cmd = Command::new(cpn_e2e::bin_path("cpn-producer")?);
        cmd.args(["serve", "-b", brokers, "-t", topic])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if separate_metrics {
            cmd.arg("--metrics-listen")
                .arg(format!("127.0.0.1:{metrics_port}"));
        }
        cmd.args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning cpn-producer serve")?;
        let mut pipe = child.stderr.take().context("stderr")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&text);
            }
        });
        let mut serve = Serve {
            child: Some(child),
            port,
            metrics_port,
            tls: args.contains(&"--tls-cert"),
            stderr,
        };
        let health = format!("http://127.0.0.1:{metrics_port}/healthz");
        let up = wait_http_ok("serve to answer /healthz", &health, Duration::from_secs(30)).await;
        if let Err(e) = up {
            let out = serve.stop()?;
            bail!("{e:#}; serve exited {:?}, stderr:\n{}", out.0, out.1);
        }
        Ok(serve)
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.port)
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The metrics page of the separate listener.
    async fn metrics(&self) -> Result<String> {
        Ok(
            reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
                .await?
                .text()
                .await?,
        )
    }

    /// The sum of the samples whose line starts with `series`.
    async fn metric(&self, series: &str) -> Result<f64> {
        Ok(self
            .metrics()
            .await?
            .lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// SIGTERM, then the exit status and the whole stderr.
    fn stop(&mut self) -> Result<(Option<i32>, String)> {
        let Some(mut child) = self.child.take() else {
            return Ok((None, self.stderr()));
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("serve did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Let the reader thread drain the pipe.
        std::thread::sleep(Duration::from_millis(200));
        Ok((status.code(), self.stderr()))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A PKI with the server certificate `server` for localhost and 127.0.0.1.
fn pki_with_server() -> Result<Pki> {
    let pki = Pki::new()?;
    pki.leaf(
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    Ok(pki)
}

fn tls_args(pki: &Pki) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        pki.path("server.pem"),
        "--tls-key".into(),
        pki.path("server.key"),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Writes one event's body to a file; returns (GUID, path).
fn event_file(pki: &Pki, name: &str, chain: i64) -> Result<(String, String)> {
    let (guid, body) = cpn_e2e::event("ingest-sec", chain, 0);
    let path = pki.path(&format!("{name}.json"));
    std::fs::write(&path, body)?;
    Ok((guid, path))
}

/// `ingest_client.py post`: one POST on a fresh connection.
fn py_post(url: &str, pki: &Pki, body: &str, extra: &[&str]) -> Result<Value> {
    let out = Command::new("python3")
        .arg(CLIENT)
        .args(["post", url, "--ca", &pki.ca_file(), "--body", body])
        .args(extra)
        .output()
        .context("running python3 ingest_client.py (python3 is needed)")?;
    ensure!(
        out.status.success(),
        "ingest_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("ingest_client.py printed no JSON")
}

/// curl POSTing `body`: (HTTP status, response headers, response body,
/// curl's exit code).
fn curl(url: &str, pki: &Pki, body: &str, extra: &[&str]) -> Result<(u16, String, String, i32)> {
    let head = pki.path(&unique("curl-head"));
    let out = Command::new("curl")
        .args(["-sS", "--cacert", &pki.ca_file(), "-D", &head, "-o", "-"])
        .args(["-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json"])
        .args(["--data-binary", &format!("@{body}")])
        .args(extra)
        .arg(url)
        .output()
        .context("running curl")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (resp, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    let headers = std::fs::read_to_string(&head).unwrap_or_default();
    Ok((
        code.trim().parse().unwrap_or(0),
        headers,
        resp.to_owned(),
        out.status.code().unwrap_or(-1),
    ))
}

/// `openssl s_client -brief` to the server with `args`.
fn s_client(port: u16, pki: &Pki, args: &[&str]) -> Result<Output> {
    let mut child = Command::new("openssl")
        .args(["s_client", "-brief", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "localhost", "-CAfile", &pki.ca_file()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl s_client")?;
    // Closing stdin ends the session after the handshake.
    drop(child.stdin.take());
    Ok(child.wait_with_output()?)
}

fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The GUIDs of the events in `topic`.
fn stored_guids(brokers: &str, topic: &str) -> Result<Vec<String>> {
    read_all(brokers, topic)?
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())?;
            Ok(v["GSW_MESSAGE_GUID"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        })
        .collect()
}

async fn topic(prefix: &str) -> Result<(String, String)> {
    let brokers = broker()?;
    let topic = unique(prefix);
    create_topic(&brokers, &topic, 3).await?;
    Ok((brokers, topic))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_served_and_1_1_is_refused_by_the_server() -> Result<()> {
    let (brokers, topic) = topic("ingest-tls-versions").await?;
    let pki = pki_with_server()?;
    let mut serve = Serve::start(&brokers, &topic, &strs(&tls_args(&pki)), &[]).await?;
    let url = serve.url("/v1/contact-processed");
    let mut accepted = Vec::new();
    for (n, version, expect) in [(1, "1.2", "TLSv1.2"), (2, "1.3", "TLSv1.3")] {
        let (guid, body) = event_file(&pki, &format!("v{n}"), n)?;
        let r = py_post(&url, &pki, &body, &["--tls", version])?;
        assert_eq!(r["status"], 200, "python TLS {version}: {r}");
        assert_eq!(r["version"], expect, "{r}");
        assert_eq!(r["cn"], "server", "{r}");
        accepted.push(guid);
    }
    let (guid, body) = event_file(&pki, "curl12", 3)?;
    let (status, _, resp, _) = curl(&url, &pki, &body, &["--tlsv1.2", "--tls-max", "1.2"])?;
    assert_eq!(status, 200, "curl over TLS 1.2: {resp}");
    accepted.push(guid);
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let o = s_client(serve.port, &pki, &[flag])?;
        let text = output_text(&o);
        assert!(
            text.contains(&format!("Protocol version: {version}"))
                && text.contains("Verification: OK"),
            "s_client {flag}: {text}"
        );
    }

    // TLS 1.1: both clients offer it (OpenSSL at security level 0) and the
    // server refuses; its metric proves the refusal was the server's.
    let before = serve
        .metric("cpn_producer_tls_handshake_failures_total{reason=\"incompatible\"}")
        .await?;
    let (_, body) = event_file(&pki, "v11", 4)?;
    let r = py_post(&url, &pki, &body, &["--tls", "1.1"])?;
    assert_eq!(
        r["stage"], "handshake",
        "python TLS 1.1 must not connect: {r}"
    );
    let o = s_client(
        serve.port,
        &pki,
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
    )?;
    assert!(
        !o.status.success(),
        "s_client -tls1_1 connected: {}",
        output_text(&o)
    );
    // The server sends its alert before it counts the refusal: wait.
    let series = "cpn_producer_tls_handshake_failures_total{reason=\"incompatible\"}";
    wait_for(
        "the server to count both TLS 1.1 refusals",
        Duration::from_secs(10),
        || async {
            let n = serve.metric(series).await.ok()?;
            (n >= before + 2.0).then_some(())
        },
    )
    .await
    .with_context(|| output_text(&o))?;
    let (code, _) = serve.stop()?;
    assert_eq!(code, Some(0));
    let mut stored = stored_guids(&brokers, &topic)?;
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted, "exactly the accepted events are in Kafka");

    // A 1.3 floor refuses 1.2 and serves 1.3.
    let mut args = tls_args(&pki);
    args.extend(["--tls-min-version".into(), "1.3".into()]);
    let serve = Serve::start(&brokers, &topic, &strs(&args), &[]).await?;
    let url = serve.url("/v1/contact-processed");
    let (_, body) = event_file(&pki, "floor12", 5)?;
    let r = py_post(&url, &pki, &body, &["--tls", "1.2"])?;
    assert_eq!(r["stage"], "handshake", "TLS 1.2 under a 1.3 floor: {r}");
    let r = py_post(&url, &pki, &body, &["--tls", "1.3"])?;
    assert_eq!(r["status"], 200, "TLS 1.3 under a 1.3 floor: {r}");
    Ok(())
}

/// Replaces the server's files with those of `stem`: both written to temp
/// names and renamed into place (cert-manager's and the kubelet's way is a
/// symlink swap; a rename is the same to a reader), or written in place,
/// the certificate first and the key `gap` later (a renewal script).
fn rotate(pki: &Pki, stem: &str, in_place_gap: Option<Duration>) -> Result<()> {
    let cert = std::fs::read(pki.path(&format!("{stem}.pem")))?;
    let key = std::fs::read(pki.path(&format!("{stem}.key")))?;
    let (cert_to, key_to) = (pki.path("server.pem"), pki.path("server.key"));
    match in_place_gap {
        None => {
            std::fs::write(format!("{cert_to}.new"), cert)?;
            std::fs::write(format!("{key_to}.new"), key)?;
            std::fs::rename(format!("{key_to}.new"), &key_to)?;
            std::fs::rename(format!("{cert_to}.new"), cert_to)?;
        }
        Some(gap) => {
            std::fs::write(cert_to, cert)?;
            std::thread::sleep(gap);
            std::fs::write(&key_to, key)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_replaced_under_load_with_no_failed_request() -> Result<()> {
    let (brokers, topic) = topic("ingest-tls-reload").await?;
    let pki = pki_with_server()?;
    // Each certificate expires on another day: the expiry metric follows the
    // one served.
    let until = [("cert-b", (2031, 5, 17)), ("cert-c", (2032, 6, 18))];
    for (stem, day) in until {
        pki.leaf_until(
            stem,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            Some(day),
        )?;
    }
    let expiry_of =
        |(y, m, d): (i32, u8, u8)| rcgen::date_time_ymd(y, m, d).unix_timestamp() as f64;
    let mut args = tls_args(&pki);
    args.extend(["--reload-interval-ms".into(), "100".into()]);
    let serve = Serve::start(&brokers, &topic, &strs(&args), &[("CPN_AUTH_KEYS", K1)]).await?;
    let (expiry, failing) = (
        "cpn_producer_tls_certificate_expiry_timestamp_seconds",
        "cpn_producer_tls_reload_failing",
    );
    // From the start: the first certificate's notAfter (rcgen's default),
    // and the reload gauge exported at 0 (so the 0 checks below mean it).
    wait_for(
        "the first certificate's notAfter",
        Duration::from_secs(10),
        || async { (serve.metric(expiry).await.ok()? == expiry_of((4096, 1, 1))).then_some(()) },
    )
    .await?;
    let exported = serve.metrics().await?;
    assert!(
        exported.lines().any(|l| l == format!("{failing} 0")),
        "{exported}"
    );
    let (_, body) = event_file(&pki, "template", 1)?;
    let url = serve.url("/v1/contact-processed");
    let ca = pki.ca_file();
    let auth = format!("Authorization: Bearer {K1}");
    let load = std::thread::spawn(move || {
        Command::new("python3")
            .arg(CLIENT)
            .args([
                "load", &url, "--ca", &ca, "--body", &body, "--header", &auth,
            ])
            .args(["--seconds", "9", "--threads", "4", "--per-connection", "3"])
            .output()
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    rotate(&pki, "cert-b", None)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Certificate first, key 400 ms later: the reload in between sees a key
    // that is not the certificate's and must keep serving cert-b.
    rotate(&pki, "cert-c", Some(Duration::from_millis(400)))?;
    let out = load
        .join()
        .map_err(|_| anyhow::anyhow!("load thread panicked"))?
        .context("running python3 ingest_client.py load")?;
    ensure!(
        out.status.success(),
        "load client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let failed = report["failed"].as_array().context("failed")?;
    let accepted: HashSet<String> = report["accepted"]
        .as_array()
        .context("accepted")?
        .iter()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    assert!(
        failed.is_empty(),
        "requests failed during rotation: {failed:?}"
    );
    let cns = &report["cns"];
    for cn in ["server", "cert-b", "cert-c"] {
        assert!(
            cns[cn].as_u64().unwrap_or(0) > 0,
            "no request was served under {cn}: {cns}\n{}",
            serve.stderr()
        );
    }
    assert!(
        accepted.len() > 50,
        "only {} requests in 9 s",
        accepted.len()
    );
    let reloads = serve
        .metric("cpn_producer_tls_reloads_total{result=\"ok\"}")
        .await?;
    assert!(reloads >= 2.0, "two rotations, {reloads} reloads");
    assert_eq!(
        serve.metric(expiry).await?,
        expiry_of(until[1].1),
        "cert-c's notAfter"
    );
    assert_eq!(serve.metric(failing).await?, 0.0);

    // Files that do not load (the key of another certificate) keep the
    // certificate in use, and say so once.
    let before = serve
        .metric("cpn_producer_tls_reloads_total{result=\"error\"}")
        .await?;
    let refusals = |s: &Serve| s.stderr().matches("do not load").count();
    let logged = refusals(&serve);
    std::fs::copy(pki.path("cert-b.key"), pki.path("server.key"))?;
    wait_for("the refused reload", Duration::from_secs(10), || async {
        let n = serve
            .metric("cpn_producer_tls_reloads_total{result=\"error\"}")
            .await
            .ok()?;
        (n > before).then_some(())
    })
    .await?;
    let (_, one) = event_file(&pki, "after", 2)?;
    let r = py_post(
        &serve.url("/v1/contact-processed"),
        &pki,
        &one,
        &["--header", &format!("Authorization: Bearer {K1}")],
    )?;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["cn"], "cert-c", "the last certificate that loaded: {r}");
    // Several reload intervals later, the refusal was logged once, and the
    // metrics say the files on disk are not what is served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(refusals(&serve), logged + 1, "{}", serve.stderr());
    assert_eq!(serve.metric(failing).await?, 1.0, "a reload that failed");
    assert_eq!(
        serve.metric(expiry).await?,
        expiry_of(until[1].1),
        "still cert-c"
    );
    // The right key back: the files are what is served again.
    std::fs::copy(pki.path("cert-c.key"), pki.path("server.key"))?;
    wait_for(
        "the failing reload to clear",
        Duration::from_secs(10),
        || async { (serve.metric(failing).await.ok()? == 0.0).then_some(()) },
    )
    .await?;

    let stored: HashSet<String> = stored_guids(&brokers, &topic)?.into_iter().collect();
    let missing: Vec<_> = accepted.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events not in Kafka: {missing:?}",
        missing.len(),
        accepted.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_right_200_wrong_and_missing_401_two_at_once_and_rotated_in_place() -> Result<()> {
    let (brokers, topic) = topic("ingest-keys").await?;
    let pki = pki_with_server()?;
    let keys = pki.path("keys");
    std::fs::write(&keys, format!("# rolled out 2026-12\n{K1}\n{K2}\n"))?;
    let mut args = tls_args(&pki);
    args.extend([
        "--auth-keys-file".into(),
        keys.clone(),
        "--reload-interval-ms".into(),
        "100".into(),
    ]);
    let serve = Serve::start(&brokers, &topic, &strs(&args), &[]).await?;
    let url = serve.url("/v1/contact-processed");
    let bearer = |k: &str| format!("Authorization: Bearer {k}");
    let mut accepted = Vec::new();
    for (n, key) in [(1, K1), (2, K2)] {
        let (guid, body) = event_file(&pki, &format!("k{n}"), n)?;
        let (status, _, resp, _) = curl(&url, &pki, &body, &["-H", &bearer(key)])?;
        assert_eq!(status, 200, "key {n}: {resp}");
        accepted.push(guid);
    }
    let (_, body) = event_file(&pki, "refused", 3)?;
    let (status, head, resp, _) = curl(&url, &pki, &body, &["-H", &bearer(WRONG)])?;
    assert_eq!(status, 401, "wrong key: {resp}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"cpn-producer\", error=\"invalid_token\""),
        "{head}"
    );
    assert!(
        resp.contains("not an accepted key") && !resp.contains(WRONG),
        "{resp}"
    );
    let (status, head, resp, _) = curl(&url, &pki, &body, &[])?;
    assert_eq!(status, 401, "missing key: {resp}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"cpn-producer\"\r"),
        "{head}"
    );
    assert!(resp.contains("\"field\":\"Authorization\""), "{resp}");
    assert_eq!(
        serve
            .metric("cpn_producer_ingest_rejected_total{reason=\"auth\"}")
            .await?,
        2.0
    );
    // The probes stay open; /metrics on the main listener asks for a key.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            pki.ca_file(),
        )?)?)
        .build()?;
    // /metrics has its own listener here (Serve::start), so it left this one.
    for (path, want) in [("/healthz", 200), ("/readyz", 200), ("/metrics", 404)] {
        let r = client.get(serve.url(path)).send().await?;
        assert_eq!(r.status().as_u16(), want, "{path}");
    }

    // Rotation without a restart: K1 withdrawn, K3 added, K2 still valid,
    // and a line that is no usable key skipped without undoing the removal.
    std::fs::write(&keys, format!("{K2}\n{K3}\ntoo-short\n"))?;
    // An invalid body: past the key check it is a 400 and stores nothing,
    // so the probe cannot add an event while the old key is still valid.
    let probe = pki.path("probe.json");
    std::fs::write(&probe, b"{}")?;
    wait_for("the keys file reload", Duration::from_secs(10), || {
        let (url, probe, pki) = (&url, &probe, &pki);
        async move {
            let (status, ..) = curl(url, pki, probe, &["-H", &bearer(K1)]).ok()?;
            (status == 401).then_some(())
        }
    })
    .await?;
    for (n, key) in [(4, K2), (5, K3)] {
        let (guid, body) = event_file(&pki, &format!("k{n}"), n)?;
        let (status, _, resp, _) = curl(&url, &pki, &body, &["-H", &bearer(key)])?;
        assert_eq!(status, 200, "key after rotation: {resp}");
        accepted.push(guid);
    }
    let reloads = serve
        .metric("cpn_producer_auth_reloads_total{result=\"ok\"}")
        .await?;
    assert!(reloads >= 1.0, "{reloads} reloads of the keys file");
    assert!(
        serve.stderr().contains("line 3"),
        "the skipped line is named"
    );
    assert!(!serve.stderr().contains("too-short"), "but not shown");
    let mut stored = stored_guids(&brokers, &topic)?;
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted, "nothing refused reached Kafka");
    drop(serve);

    // Any header name: the whole value is the key, no challenge. Plain
    // HTTP, /metrics on the same listener: it asks for the key too.
    let serve = Serve::start_with(
        &brokers,
        &topic,
        &[],
        &[("CPN_AUTH_HEADER", "X-Api-Key"), ("CPN_AUTH_KEYS", K1)],
        false,
    )
    .await?;
    let metrics = serve.url("/metrics");
    let r = reqwest::get(&metrics).await?;
    assert_eq!(r.status().as_u16(), 401, "/metrics without the key");
    let r = reqwest::Client::new()
        .get(&metrics)
        .header("X-Api-Key", K1)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200, "/metrics with the key");
    assert!(
        r.text()
            .await?
            .contains("cpn_producer_ingest_rejected_total")
    );
    let url = serve.url("/v1/contact-processed");
    let (_, body) = event_file(&pki, "xapi", 6)?;
    let (status, _, resp, _) = curl(&url, &pki, &body, &["-H", &format!("X-Api-Key: {K1}")])?;
    assert_eq!(status, 200, "{resp}");
    let (status, head, resp, _) = curl(&url, &pki, &body, &["-H", &bearer(K1)])?;
    assert_eq!(status, 401, "{resp}");
    assert!(resp.contains("\"field\":\"X-Api-Key\""), "{resp}");
    assert!(
        !head.to_ascii_lowercase().contains("www-authenticate"),
        "{head}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_a_client_without_a_good_certificate_at_the_handshake() -> Result<()> {
    let (brokers, topic) = topic("ingest-mtls").await?;
    let pki = pki_with_server()?;
    let (cert, key) = pki.client_files("ocs")?;
    let other = Pki::new()?;
    let (other_cert, other_key) = other.client_files("stranger")?;
    let mut args = tls_args(&pki);
    args.extend(["--tls-client-ca".into(), pki.ca_file()]);
    let serve = Serve::start(&brokers, &topic, &strs(&args), &[]).await?;
    let url = serve.url("/v1/contact-processed");
    let (guid, body) = event_file(&pki, "mtls", 1)?;

    let r = py_post(&url, &pki, &body, &["--tls", "1.2"])?;
    assert_eq!(
        r["stage"], "handshake",
        "no client certificate, TLS 1.2: {r}"
    );
    let o = s_client(serve.port, &pki, &["-tls1_2"])?;
    assert!(
        !o.status.success(),
        "s_client without a certificate: {}",
        output_text(&o)
    );
    // TLS 1.3: the client's side of the handshake ends before the server
    // judges its certificate; the refusal comes before any answer.
    let (status, _, _, code) = curl(&url, &pki, &body, &["--tlsv1.3"])?;
    assert!(
        status == 0 && code != 0,
        "curl without a certificate got HTTP {status}"
    );
    let r = py_post(
        &url,
        &pki,
        &body,
        &["--cert", &other_cert, "--key", &other_key],
    )?;
    assert!(
        r.get("status").is_none(),
        "a certificate of another CA: {r}"
    );
    // The server sends its alert before it counts the refusal: wait.
    let series =
        |reason: &str| format!("cpn_producer_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    let counted = wait_for("the refusals counted", Duration::from_secs(10), || async {
        let none = serve.metric(&series("no_client_certificate")).await.ok()?;
        let bad = serve.metric(&series("bad_client_certificate")).await.ok()?;
        (none >= 3.0 && bad >= 1.0).then_some(())
    })
    .await;
    if let Err(e) = counted {
        bail!("{e:#}: {}", serve.metrics().await.unwrap_or_default());
    }
    assert!(
        stored_guids(&brokers, &topic)?.is_empty(),
        "nothing refused reached Kafka"
    );

    let r = py_post(&url, &pki, &body, &["--cert", &cert, "--key", &key])?;
    assert_eq!(r["status"], 200, "with the client certificate: {r}");
    assert_eq!(stored_guids(&brokers, &topic)?, vec![guid]);
    Ok(())
}

/// Runs serve with `args` and `env` expecting it to exit at once; returns
/// (exit code, stderr).
fn serve_exits(
    brokers: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(Option<i32>, String)> {
    let mut child = Command::new(cpn_e2e::bin_path("cpn-producer")?)
        .args(["serve", "-b", brokers, "-t", "unused"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait()? {
            let mut err = String::new();
            child
                .stderr
                .take()
                .context("stderr")?
                .read_to_string(&mut err)?;
            return Ok((st.code(), err));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!("serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprotected_non_loopback_listen_is_refused_naming_both_ways_out() -> Result<()> {
    let (brokers, topic) = topic("ingest-protected").await?;
    let port = cpn_e2e::ledger::free_port()?;
    for listen in [format!("0.0.0.0:{port}"), format!("[::]:{port}")] {
        let (code, err) = serve_exits(&brokers, &["--listen", &listen], &[])?;
        assert_eq!(code, Some(2), "{listen}: {err}");
        for part in [
            format!("refusing to serve {listen} without authentication"),
            "--auth-keys-file".to_owned(),
            "--tls-client-ca".to_owned(),
            "--allow-unauthenticated".to_owned(),
        ] {
            assert!(err.contains(&part), "{listen}: {part:?} not in {err}");
        }
    }

    // Either way out starts it on all interfaces.
    for (args, env, warns) in [
        (vec!["--allow-unauthenticated"], vec![], true),
        (vec![], vec![("CPN_AUTH_KEYS", K1)], false),
    ] {
        let port = cpn_e2e::ledger::free_port()?;
        let mut all = vec!["--listen".to_owned(), format!("0.0.0.0:{port}")];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let mut child = Command::new(cpn_e2e::bin_path("cpn-producer")?)
            .args(["serve", "-b", &brokers, "-t", &topic])
            .args(&all)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let health = format!("http://127.0.0.1:{port}/healthz");
        let up = wait_http_ok("serve on 0.0.0.0", &health, Duration::from_secs(30)).await;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let st = child.wait()?;
        let mut err = String::new();
        child
            .stderr
            .take()
            .context("stderr")?
            .read_to_string(&mut err)?;
        up.with_context(|| format!("{all:?}: {err}"))?;
        assert!(st.success(), "{all:?}: {err}");
        assert_eq!(
            err.contains("serving without authentication"),
            warns,
            "{err}"
        );
    }
    Ok(())
}

/// Arguments, environment, and what the error must name.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_and_key_settings_exit_2_naming_the_option() -> Result<()> {
    let brokers = broker()?;
    let pki = pki_with_server()?;
    pki.leaf("other", &["localhost"], ExtendedKeyUsagePurpose::ServerAuth)?;
    let (cert, key, other_key) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("other.key"),
    );
    let (cert, key, other_key) = (cert.as_str(), key.as_str(), other_key.as_str());
    let empty = pki.path("empty-keys");
    let empty = empty.as_str();
    std::fs::write(empty, "# nothing yet\n")?;
    let cases: Vec<Case> = vec![
        (vec!["--tls-cert", cert], vec![], "--tls-key"),
        (
            vec!["--tls-cert", cert, "--tls-key", other_key],
            vec![],
            "tls-key",
        ),
        (
            vec!["--tls-cert", "/nonexistent.pem", "--tls-key", key],
            vec![],
            "tls-cert /nonexistent.pem: cannot read",
        ),
        (
            vec![
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--tls-min-version",
                "1.1",
            ],
            vec![],
            "--tls-min-version",
        ),
        (
            vec![],
            vec![("CPN_AUTH_KEYS", "short")],
            "CPN_AUTH_KEYS entry 1",
        ),
        (vec!["--auth-keys-file", empty], vec![], "no key"),
        (vec![], vec![("CPN_AUTH_KEYS", " , ")], "holds no key"),
        (vec!["--auth-header", "bad header"], vec![], "--auth-header"),
    ];
    for (args, env, names) in cases {
        let (code, err) = serve_exits(&brokers, &args, &env)?;
        assert_eq!(code, Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(names), "{args:?}: {names:?} not in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (_, err) = serve_exits(&brokers, &["--tls-cert", cert, "--tls-key", other_key], &[])?;
    assert!(err.contains("not the key of the certificate"), "{err}");
    Ok(())
}

/// Lines of base64 in a PEM file (the key material itself).
fn pem_body_lines(path: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_at_trace_the_metrics_or_an_error_body() -> Result<()> {
    let (brokers, topic) = topic("ingest-secrets").await?;
    let pki = pki_with_server()?;
    let keys = pki.path("keys");
    std::fs::write(&keys, format!("{K1}\n"))?;
    let mut args = tls_args(&pki);
    args.extend(["--auth-keys-file".into(), keys]);
    let mut serve = Serve::start(
        &brokers,
        &topic,
        &strs(&args),
        &[("RUST_LOG", "trace"), ("CPN_AUTH_KEYS", K2)],
    )
    .await?;
    let url = serve.url("/v1/contact-processed");
    let mut bodies = String::new();
    for (n, header, want) in [
        (1, Some(format!("Authorization: Bearer {K1}")), 200),
        (2, Some(format!("Authorization: Bearer {K2}")), 200),
        (3, Some(format!("Authorization: Bearer {WRONG}")), 401),
        (4, Some(format!("Authorization: {WRONG}")), 401),
        (5, None, 401),
    ] {
        let (_, body) = event_file(&pki, &format!("s{n}"), n)?;
        let extra: Vec<&str> = header.as_deref().map_or(vec![], |h| vec!["-H", h]);
        let (status, head, resp, _) = curl(&url, &pki, &body, &extra)?;
        assert_eq!(status, want, "request {n}: {resp}");
        bodies.push_str(&head);
        bodies.push_str(&resp);
    }
    let metrics = serve.metrics().await?;
    let (code, logs) = serve.stop()?;
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("TRACE"),
        "RUST_LOG=trace produced trace lines (else this test proves nothing)"
    );
    let mut secrets: Vec<String> = vec![K1.into(), K2.into(), WRONG.into()];
    secrets.extend(pem_body_lines(&PathBuf::from(pki.path("server.key")))?);
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "a secret in the logs: {s}");
        assert!(
            !metrics.contains(s.as_str()),
            "a secret in the metrics: {s}"
        );
        assert!(!bodies.contains(s.as_str()), "a secret in a response: {s}");
    }
    assert_eq!(stored_guids(&brokers, &topic)?.len(), 2);
    Ok(())
}
