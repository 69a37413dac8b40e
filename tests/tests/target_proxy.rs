//! The target behind a real forward proxy: Debian's tinyproxy (installed by
//! `deploy/setup`), started by each test on a free loopback port with its own
//! config and log in a temp directory. The target is the HTTPS receiver of
//! `tls_support` (private CA), reached through CONNECT; the proxy's log shows
//! the CONNECT, so the request really went through it.
//!
//! A proxy that refuses the CONNECT (wrong credentials: 407) or does not
//! answer is an outage: the relay counts connect errors (its
//! `cpn_relay_attempts_total{class="connect_error"}`), holds the record and
//! dead-letters nothing.
//!
//! With `from_env = true` the relay binary takes `HTTPS_PROXY` and
//! `NO_PROXY` from its environment (the test sets them on the child only).
//!
//! Without tinyproxy these tests fail and say to run `deploy/setup`; they
//! never skip.

mod tls_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cpn_e2e::relay::{Fixture, RunningRelay, fixture};
use cpn_e2e::{event, produce, producer, read_all, unique, wait_for};
use cpn_relay::config::RelayConfig;
use cpn_relay::secret::SecretSource;
use cpn_relay::target::proxy::ProxyConfig;
use tls_support::{HttpsServer, Options, Pki, assert_delivered, assert_record_held};

const WAIT: Duration = Duration::from_secs(60);

/// Failed attempts to see before concluding the record is held: more than
/// `retry.max_attempts` (5) in `test_config`.
const REFUSALS: u64 = 8;

/// A tinyproxy process of this test, killed on drop.
struct Tinyproxy {
    dir: PathBuf,
    port: u16,
    _child: tokio::process::Child,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tinyproxy_bin() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|d| d.join("tinyproxy"))
        .find(|p| p.is_file())
        .context(
            "tinyproxy is not installed: run deploy/setup (it installs the Debian package \
             these proxy tests use) and try again",
        )
}

impl Tinyproxy {
    /// Starts tinyproxy allowing CONNECT to `connect_port` only, with basic
    /// auth when `auth` is given.
    async fn start(connect_port: u16, auth: Option<(&str, &str)>) -> Result<Self> {
        let bin = tinyproxy_bin()?;
        let dir = std::env::temp_dir().join(unique("cpn-tinyproxy"));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n\
             ConnectPort {connect_port}\nLogFile \"{log}\"\nLogLevel Info\n\
             PidFile \"{pid}\"\nMaxClients 20\n",
            log = dir.join("tinyproxy.log").display(),
            pid = dir.join("tinyproxy.pid").display(),
        );
        if let Some((user, pass)) = auth {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf)?;
        let out = std::fs::File::create(dir.join("stdout"))?;
        let mut child = tokio::process::Command::new(&bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let said = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
                bail!("tinyproxy exited ({status}) at start: {said}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("tinyproxy did not listen on 127.0.0.1:{port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Tinyproxy {
            dir,
            port,
            _child: child,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }

    /// CONNECT requests for 127.0.0.1:`port` in the log.
    fn connects_to(&self, port: u16) -> usize {
        self.log()
            .matches(&format!("CONNECT 127.0.0.1:{port} HTTP/1.1"))
            .count()
    }

    /// Tunnels the proxy opened to 127.0.0.1:`port`.
    fn tunnels_to(&self, port: u16) -> usize {
        self.log()
            .matches(&format!("opening connection to 127.0.0.1:{port}"))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The relay config for `server` (trusting the test CA) through `proxy`.
fn proxied(s: &Fixture, server: &HttpsServer, pki: &Pki, proxy: ProxyConfig) -> RelayConfig {
    let mut c = s.config(&server.url());
    c.target.tls.ca_file = Some(pki.ca_file());
    c.target.proxy = Some(proxy);
    c
}

fn via(url: String) -> ProxyConfig {
    ProxyConfig {
        url: Some(url),
        ..ProxyConfig::default()
    }
}

/// `cpn_relay_attempts_total{class="connect_error"}` from the relay's /metrics.
async fn connect_errors(metrics: &str) -> Option<u64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix("cpn_relay_attempts_total{class=\"connect_error\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// Runs the relay with `cfg` (metrics on a free port), produces one event
/// and waits for [`REFUSALS`] connect errors; then checks nothing was
/// delivered, dead-lettered or committed.
async fn assert_held(s: &Fixture, mut cfg: RelayConfig, server: &HttpsServer) -> Result<()> {
    let metrics = format!("127.0.0.1:{}", free_port()?);
    cfg.observability.metrics_listen = metrics.clone();
    let relay = RunningRelay::start(cfg)?;
    let (guid, body) = event("list-px", 2, 0);
    produce(
        &producer(&s.brokers)?,
        &s.topic,
        "list-px:2",
        Some(&guid),
        &body,
    )
    .await?;
    wait_for(&format!("{REFUSALS} connect errors"), WAIT, || async {
        connect_errors(&metrics).await.filter(|n| *n >= REFUSALS)
    })
    .await
    .with_context(|| {
        format!(
            "dead letters {:?}",
            read_all(&s.brokers, &s.dlq).map(|d| d
                .iter()
                .map(|r| r.header("cpn.dlq.error"))
                .collect::<Vec<_>>())
        )
    })?;
    relay.stop().await?;
    assert!(server.handshakes().is_empty(), "nothing reached the target");
    assert_record_held(s, "a proxy failure")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_is_reached_through_connect() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let proxy = Tinyproxy::start(server.port(), None).await?;
    let cfg = proxied(&s, &server, &pki, via(proxy.url()));
    assert_delivered(&s, cfg, &server).await?;
    assert!(
        proxy.connects_to(server.port()) >= 1 && proxy.tunnels_to(server.port()) >= 1,
        "the proxy log shows the CONNECT: {}",
        proxy.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_is_reached_through_connect_with_proxy_auth() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let proxy = Tinyproxy::start(server.port(), Some(("relay", "s3cret-pw"))).await?;
    let secret = pki.path("proxy-password");
    std::fs::write(&secret, "s3cret-pw\n")?;
    let cfg = proxied(
        &s,
        &server,
        &pki,
        ProxyConfig {
            username: Some("relay".into()),
            password: Some(SecretSource::File { file: secret }),
            ..via(proxy.url())
        },
    );
    assert!(
        !format!("{:?}", cfg.target.proxy).contains("s3cret-pw"),
        "the password never prints"
    );
    assert_delivered(&s, cfg, &server).await?;
    assert!(
        proxy.tunnels_to(server.port()) >= 1,
        "the proxy opened the tunnel: {}",
        proxy.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_proxy_credentials_hold_the_record() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let proxy = Tinyproxy::start(server.port(), Some(("relay", "s3cret-pw"))).await?;
    let cfg = proxied(
        &s,
        &server,
        &pki,
        ProxyConfig {
            username: Some("relay".into()),
            password: Some(SecretSource::Inline("wrong".into())),
            ..via(proxy.url())
        },
    );
    assert_held(&s, cfg, &server).await?;
    assert!(
        proxy.connects_to(server.port()) >= REFUSALS as usize,
        "each attempt asked the proxy: {}",
        proxy.log()
    );
    assert_eq!(
        proxy.tunnels_to(server.port()),
        0,
        "the proxy refused every tunnel"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_proxy_is_an_outage() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    // Nothing listens there.
    let cfg = proxied(
        &s,
        &server,
        &pki,
        via(format!("http://127.0.0.1:{}", free_port()?)),
    );
    assert_held(&s, cfg, &server).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_hosts_are_reached_directly() -> Result<()> {
    let s = fixture(1).await?;
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let proxy = Tinyproxy::start(server.port(), None).await?;
    let cfg = proxied(
        &s,
        &server,
        &pki,
        ProxyConfig {
            no_proxy: vec!["localhost".into(), "127.0.0.0/8".into()],
            ..via(proxy.url())
        },
    );
    assert_delivered(&s, cfg, &server).await?;
    assert_eq!(
        proxy.connects_to(server.port()),
        0,
        "the proxy was bypassed: {}",
        proxy.log()
    );
    Ok(())
}

/// Runs the relay binary for `s` and `server` with `[target.proxy]
/// from_env = true`, the proxy variables of this process removed and `env`
/// set; returns once `server` received the event produced.
async fn deliver_with_proxy_env(
    s: &Fixture,
    server: &HttpsServer,
    pki: &Pki,
    env: &[(&str, String)],
) -> Result<()> {
    let file = pki.path("from-env.toml");
    std::fs::write(
        &file,
        format!(
            "[target.tls]\nca_file = {ca:?}\n[target.proxy]\nfrom_env = true\n",
            ca = pki.ca_file()
        ),
    )?;
    let mut cmd = tokio::process::Command::new(cpn_e2e::bin_path("cpn-relay")?);
    cmd.args([
        "run",
        "-c",
        &file,
        "--brokers",
        &s.brokers,
        "--topic",
        &s.topic,
    ])
    .args(["--group", &s.group, "--dlq-topic", &s.dlq])
    .args(["--target-url", &server.url(), "--metrics-listen", "off"])
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("CPN_") || k.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut relay = cmd.spawn().context("spawning cpn-relay")?;
    let (guid, body) = event("list-px-env", 3, 0);
    produce(
        &producer(&s.brokers)?,
        &s.topic,
        "list-px-env:3",
        Some(&guid),
        &body,
    )
    .await?;
    let got = wait_for("the event at the HTTPS target", WAIT, || async {
        server
            .received()
            .into_iter()
            .find(|r| r.etag.as_deref() == Some(guid.as_str()))
    })
    .await;
    let _ = relay.start_kill();
    let _ = relay.wait().await;
    got.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_env_takes_https_proxy_and_no_proxy_from_the_environment() -> Result<()> {
    let pki = Pki::new()?;
    let server = HttpsServer::start(&pki, Options::default()).await?;
    let proxy = Tinyproxy::start(server.port(), None).await?;

    let s = fixture(1).await?;
    deliver_with_proxy_env(&s, &server, &pki, &[("HTTPS_PROXY", proxy.url())]).await?;
    let tunnels = proxy.tunnels_to(server.port());
    assert!(tunnels >= 1, "HTTPS_PROXY was used: {}", proxy.log());

    let s = fixture(1).await?;
    deliver_with_proxy_env(
        &s,
        &server,
        &pki,
        &[
            ("HTTPS_PROXY", proxy.url()),
            ("NO_PROXY", "127.0.0.1".to_owned()),
        ],
    )
    .await?;
    assert_eq!(
        proxy.tunnels_to(server.port()),
        tunnels,
        "NO_PROXY=127.0.0.1 sends the target directly: {}",
        proxy.log()
    );
    Ok(())
}
