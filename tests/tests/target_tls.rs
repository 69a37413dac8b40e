//! TLS and mTLS to the target, end to end: the real broker, the relay, and an
//! HTTPS receiver in this process whose certificates come from a private CA
//! made in the test (rcgen).
//!
//! A refused handshake must hold the record, not dead-letter it: the request
//! never reached the target, so it is an outage (DESIGN invariant 5). Each
//! refusal test waits for more refused handshakes than `retry.max_attempts`
//! allows (5 in `test_config`) and then checks the dead-letter topic is empty
//! and the offset was not committed past the record.
//!
//! The floor is tested at both steps: a TLS 1.1-only server (Python's ssl
//! module, `tls_support/tls11_server.py`: rustls cannot serve TLS 1.1) is
//! refused with the default `min_version = "1.2"`, and a TLS 1.2-only server
//! is accepted with `"1.2"` and refused with `"1.3"`.

mod tls_support;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use cpn_e2e::relay::{Fixture, RunningRelay, fixture};
use cpn_e2e::{event, produce, producer, read_all, wait_for};
use cpn_relay::config::RelayConfig;
use tls_support::{Handshake, HttpsServer, Options, Pki, assert_delivered, assert_record_held};
use tokio::io::{AsyncBufReadExt, BufReader};

const WAIT: Duration = Duration::from_secs(60);

/// Refused handshakes to see before concluding the record is held: more than
/// `retry.max_attempts` (5) in `test_config`.
const REFUSALS: usize = 8;

/// Runs the relay with `cfg`, produces one event and waits for [`REFUSALS`]
/// failed handshakes at `server`, each failing for `reason`; then checks
/// nothing was delivered, dead-lettered or committed.
async fn assert_refused(
    s: &Fixture,
    cfg: RelayConfig,
    server: &HttpsServer,
    reason: &str,
) -> Result<()> {
    let relay = RunningRelay::start(cfg)?;
    let (guid, body) = event("list-tls", 2, 0);
    produce(
        &producer(&s.brokers)?,
        &s.topic,
        "list-tls:2",
        Some(&guid),
        &body,
    )
    .await?;
    let failed = wait_for(&format!("{REFUSALS} refused handshakes"), WAIT, || async {
        let f = server.failed_handshakes();
        (f.len() >= REFUSALS).then_some(f)
    })
    .await
    .with_context(|| {
        format!(
            "handshakes {:?}, requests {}, dead letters {:?}",
            server.handshakes(),
            server.received().len(),
            read_all(&s.brokers, &s.dlq).map(|d| d
                .iter()
                .map(|r| r.header("cpn.dlq.error"))
                .collect::<Vec<_>>())
        )
    })?;
    relay.stop().await?;
    assert!(
        failed.iter().all(|f| f.contains(reason)),
        "every handshake failed for {reason:?}: {failed:?}"
    );
    assert!(server.received().is_empty(), "no request got through");
    assert_record_held(s, "a refused handshake")
}

fn versions(server: &HttpsServer) -> Vec<String> {
    server
        .handshakes()
        .into_iter()
        .filter_map(|h| match h {
            Handshake::Ok { version, .. } => Some(version),
            Handshake::Failed(_) => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_with_the_private_ca() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.ca_file = Some(pki.ca_file());
    assert_delivered(&s, cfg, &server).await?;
    let v = versions(&server);
    assert!(
        !v.is_empty() && v.iter().all(|v| v == "TLSv1_3"),
        "TLS 1.3 when both sides have it: {v:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_without_the_private_ca() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    // System roots only: the private CA is unknown.
    let cfg = s.config(&server.url());
    assert_refused(&s, cfg, &server, "UnknownCA").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_server_is_accepted_at_the_default_floor() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(
        &pki,
        Options {
            tls12_only: true,
            ..Options::default()
        },
    )
    .await?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.ca_file = Some(pki.ca_file());
    assert_eq!(cfg.target.tls.min_version, "1.2", "the default floor");
    assert_delivered(&s, cfg, &server).await?;
    let v = versions(&server);
    assert!(!v.is_empty() && v.iter().all(|v| v == "TLSv1_2"), "{v:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_server_is_refused_when_the_floor_is_1_3() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(
        &pki,
        Options {
            tls12_only: true,
            ..Options::default()
        },
    )
    .await?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.ca_file = Some(pki.ca_file());
    cfg.target.tls.min_version = "1.3".into();
    assert_refused(&s, cfg, &server, "peer is incompatible").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls11_only_server_is_refused_with_the_default_floor_of_1_2() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    pki.leaf(
        "tls11",
        &["localhost", "127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tls_support/tls11_server.py"
    );
    let mut server = tokio::process::Command::new("python3")
        .arg(script)
        .args([pki.path("tls11.pem"), pki.path("tls11.key"), pki.ca_file()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting python3 tls_support/tls11_server.py")?;
    let mut lines = BufReader::new(server.stdout.take().context("server stdout")?).lines();
    let mut next_line = async || -> Result<String> {
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .context("the TLS 1.1 server said nothing")??
            .context("the TLS 1.1 server exited")
    };
    let first = next_line().await?;
    let words: Vec<&str> = first.split_whitespace().collect();
    // Not vacuous: the server's own TLS 1.1 client got in.
    assert_eq!(words.get(3).copied(), Some("TLSv1.1"), "{first}");
    let port: u16 = words
        .get(1)
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {first:?}"))?;

    let mut cfg = s.config(&format!("https://127.0.0.1:{port}/crm"));
    cfg.target.tls.ca_file = Some(pki.ca_file());
    assert_eq!(cfg.target.tls.min_version, "1.2", "the default floor");
    let relay = RunningRelay::start(cfg)?;
    let (guid, body) = event("list-tls11", 2, 0);
    produce(
        &producer(&s.brokers)?,
        &s.topic,
        "list-tls11:2",
        Some(&guid),
        &body,
    )
    .await?;
    let mut handshakes = Vec::new();
    while handshakes.len() < REFUSALS {
        handshakes.push(next_line().await?);
    }
    relay.stop().await?;
    assert!(
        handshakes.iter().all(|h| h.starts_with("failed ")),
        "every handshake failed: {handshakes:?}"
    );
    assert_record_held(&s, "a refused TLS 1.1 handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_verifies_a_name_the_url_does_not_carry() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    // The certificate names crm.internal only; the URL holds 127.0.0.1.
    let server = HttpsServer::start(
        &pki,
        Options {
            names: vec!["crm.internal".into()],
            ..Options::default()
        },
    )
    .await?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.ca_file = Some(pki.ca_file());

    // Without the override the name does not match: a connect error.
    let client = cpn_relay::target::client::build_client(&cfg.target)?;
    let err = client
        .post(server.url())
        .body("{}")
        .send()
        .await
        .expect_err("the certificate does not name 127.0.0.1");
    assert!(err.is_connect(), "{err:?}");

    cfg.target.tls.server_name = Some("crm.internal".into());
    assert_delivered(&s, cfg, &server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_an_unknown_ca() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.insecure_skip_verify = true;
    assert_delivered(&s, cfg, &server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_the_client_certificate_is_presented_and_accepted() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(
        &pki,
        Options {
            require_client_cert: true,
            ..Options::default()
        },
    )
    .await?;
    let (cert, key) = pki.client_files("relay-client")?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.ca_file = Some(pki.ca_file());
    cfg.target.tls.client_cert_file = Some(cert);
    cfg.target.tls.client_key_file = Some(key);
    assert_delivered(&s, cfg, &server).await?;
    let hs = server.handshakes();
    assert!(
        !hs.is_empty()
            && hs.iter().all(|h| matches!(
                h,
                Handshake::Ok {
                    client_cert: true,
                    ..
                }
            )),
        "every handshake carried the client certificate: {hs:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_a_missing_client_certificate_is_refused() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(
        &pki,
        Options {
            require_client_cert: true,
            ..Options::default()
        },
    )
    .await?;
    let mut cfg = s.config(&server.url());
    cfg.target.tls.ca_file = Some(pki.ca_file());
    assert_refused(&s, cfg, &server, "no certificates").await
}

/// A real nginx with `ssl_verify_client on` in front of the CRM completes
/// the handshake with a relay that has no client certificate, then answers
/// **400** to every request: the target refusing the relay, not the records.
/// The rejection guard trips before `rejection_threshold` (20) dead letters,
/// holds the rest, and once the relay gets its certificate everything else
/// is delivered through nginx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_demanding_a_client_certificate_does_not_empty_the_backlog() -> Result<()> {
    use cpn_e2e::ledger::{delivered, free_port, metric, publish};
    use cpn_mock_crm::Behavior;

    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .context("nginx is not installed: deploy/setup installs Debian's nginx-light")?;
    let s = fixture(3).await?;
    let pki = Pki::new()?;
    pki.leaf(
        "nginx",
        &["127.0.0.1"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let crm = cpn_e2e::relay::mock_crm(Behavior::status(200)).await?;
    let port = free_port()?;
    let conf = format!(
        "daemon off; master_process off; pid {dir}/nginx.pid; error_log {dir}/error.log warn;\n\
         events {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;\n  \
           fastcgi_temp_path {dir}/fastcgi;\n\
           server {{\n    listen 127.0.0.1:{port} ssl;\n    \
             ssl_certificate {dir}/nginx.pem; ssl_certificate_key {dir}/nginx.key;\n    \
             ssl_client_certificate {ca}; ssl_verify_client on;\n    \
             location / {{ proxy_pass http://{crm}; }}\n  }}\n}}\n",
        dir = pki.path("").trim_end_matches('/'),
        ca = pki.ca_file(),
        crm = crm.addr(),
    );
    let conf_file = pki.path("nginx.conf");
    std::fs::write(&conf_file, conf)?;
    let mut server = tokio::process::Command::new(nginx)
        .args([
            "-p",
            &pki.path(""),
            "-c",
            &conf_file,
            "-e",
            &pki.path("error.log"),
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting nginx")?;
    wait_for("nginx listening", WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .with_context(|| std::fs::read_to_string(pki.path("error.log")).unwrap_or_default())?;
    let url = format!("https://127.0.0.1:{port}/crm");
    let sent = publish(&s.brokers, &s.topic, "list-ngx", 30, 5).await?;

    let metrics = free_port()?;
    let mut cfg = s.config(&url);
    cfg.target.tls.ca_file = Some(pki.ca_file());
    cfg.observability.metrics_listen = format!("127.0.0.1:{metrics}");
    let relay = RunningRelay::start(cfg.clone())?;
    wait_for(
        "the rejection guard to trip on nginx's 400s",
        WAIT,
        || async { (metric(metrics, "cpn_relay_target_rejecting").await? >= 1.0).then_some(()) },
    )
    .await?;
    relay.stop().await?;
    let dead = read_all(&s.brokers, &s.dlq)?;
    assert!(
        dead.len() < 20,
        "at most threshold - 1 dead letters, got {}",
        dead.len()
    );
    assert!(
        dead.iter()
            .all(|d| d.header("cpn.dlq.http_status").as_deref() == Some("400")),
        "nginx answered 400"
    );
    assert!(delivered(&crm).is_empty(), "nginx let nothing through");

    // The fix: the relay gets its client certificate.
    let (cert, key) = pki.client_files("relay-client")?;
    cfg.target.tls.client_cert_file = Some(cert);
    cfg.target.tls.client_key_file = Some(key);
    let relay = RunningRelay::start(cfg)?;
    let dead_guids: std::collections::HashSet<String> =
        dead.iter().filter_map(|d| d.header("cpn.guid")).collect();
    wait_for(
        "every event delivered or among the dead letters",
        WAIT,
        || async {
            let d = delivered(&crm);
            sent.at
                .keys()
                .all(|g| d.contains_key(g) || dead_guids.contains(g))
                .then_some(())
        },
    )
    .await?;
    relay.stop().await?;
    assert_eq!(
        read_all(&s.brokers, &s.dlq)?.len(),
        dead.len(),
        "nothing dead-lettered after the guard tripped"
    );
    server.start_kill()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_is_one_warn_from_cpn_per_attempt_not_a_dependencys_error()
-> Result<()> {
    // The binary at its default log level: before, rustls_platform_verifier
    // logged an ERROR line of its own on every failed handshake.
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let mut relay = cpn_e2e::ledger::relay_command(&s.brokers, &s.topic, &s.group, &server.url())?
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning cpn-relay")?;
    let (guid, body) = event("list-tls-log", 2, 0);
    produce(
        &producer(&s.brokers)?,
        &s.topic,
        "list-tls-log:2",
        Some(&guid),
        &body,
    )
    .await?;
    wait_for("3 refused handshakes", WAIT, || async {
        (server.failed_handshakes().len() >= 3).then_some(())
    })
    .await?;
    cpn_e2e::ledger::signal(&relay, "TERM")?;
    let mut stderr = String::new();
    let mut pipe = relay.stderr.take().context("relay stderr")?;
    tokio::time::timeout(WAIT, async {
        use tokio::io::AsyncReadExt;
        pipe.read_to_string(&mut stderr).await
    })
    .await
    .context("the relay did not stop")??;
    relay.wait().await?;
    let attempts = server.failed_handshakes().len();
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log written to a pipe:\n{stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        !lines.iter().any(|l| l.contains("rustls_platform_verifier")),
        "a dependency's line in the relay's log:\n{stderr}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("ERROR")),
        "a refused certificate is not an ERROR:\n{stderr}"
    );
    let warns = lines
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("TLS with the target failed"))
        .count();
    assert!(
        (1..=attempts).contains(&warns),
        "one cpn WARN per failed attempt ({attempts} refused handshakes), got {warns}:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("TLS with the target failed") && l.contains("UnknownIssuer")),
        "the WARN says why:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("circuit open, consumption paused")),
        "the circuit's change is a WARN an operator reads:\n{stderr}"
    );
    Ok(())
}
