//! Start-up exits: `cpn-relay run` checks Kafka before it consumes, and when
//! the setup cannot work it exits 2 with one line that names what failed —
//! a wrong SASL password or mechanism, a user not allowed to read the topic,
//! an unknown topic or dead-letter topic, no broker at the address — instead
//! of staying up and logging errors. With the right settings it runs and
//! delivers.
//!
//! The SASL cases need a broker with a SASL listener: the test starts its
//! own (`KAFKA_SASL=plain deploy/kafka/kafka-local start` on a free port,
//! data and logs in a temporary directory) and stops it when it ends. The
//! other cases use the shared local broker. All run the real binary.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cpn_e2e::broker::PrivateBroker;
use cpn_e2e::ledger::sigterm;
use cpn_e2e::relay::mock_crm;
use cpn_e2e::{bin_path, broker, create_topic, event, produce, unique, wait_for};
use cpn_mock_crm::{Behavior, MockCrm};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureProducer;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

mod tls_support;

/// How long a relay that must exit may take. Failures that waiting does not
/// fix exit within seconds; the tests that wait for a timeout set
/// `kafka.startup_timeout_ms` to [`SHORT_STARTUP_TIMEOUT_MS`].
const EXIT_BOUND: Duration = Duration::from_secs(30);

/// `kafka.startup_timeout_ms` for the cases that wait for it.
const SHORT_STARTUP_TIMEOUT_MS: u64 = 3_000;

/// `kafka.startup_timeout_ms` for the cases that must not wait for it: an
/// exit within [`EXIT_BOUND`] shows the failure was reported at once.
const LONG_STARTUP_TIMEOUT_MS: u64 = 120_000;

const WAIT: Duration = Duration::from_secs(60);

/// The users of `deploy/kafka/sasl.properties`.
const SASL_USER: &str = "cpn";
const SASL_PASSWORD: &str = "cpn-secret";
const GUEST_USER: &str = "guest";
const GUEST_PASSWORD: &str = "guest-secret";

/// A SASL broker of this test's own ([`PrivateBroker::start_sasl`]).
struct SaslBroker(PrivateBroker);

impl SaslBroker {
    /// Starts it, or fails with what `kafka-local` said.
    fn start() -> Result<Self> {
        Ok(SaslBroker(PrivateBroker::start_sasl()?))
    }

    fn brokers(&self) -> String {
        self.0.bootstrap()
    }

    /// librdkafka settings that log in as `user`.
    fn client_config(&self, user: &str, password: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers())
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", user)
            .set("sasl.password", password);
        c
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config(SASL_USER, SASL_PASSWORD)
            .create()
            .context("creating a SASL admin client")?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        for r in admin.create_topics([&new], &opts).await? {
            if let Err((name, code)) = r {
                bail!("creating topic {name} on the SASL broker: {code}");
            }
        }
        Ok(())
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> Result<u16> {
    cpn_e2e::ledger::free_port()
}

/// `cpn-relay run` with these flags and `CPN_` variables only, its stderr
/// collected.
struct Relay {
    child: Child,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

impl Relay {
    fn spawn(args: &[&str], env: &[(&str, String)]) -> Result<Self> {
        let mut cmd = Command::new(bin_path("cpn-relay")?);
        cmd.arg("run").args(args).args(["--metrics-listen", "off"]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CPN_")) {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning cpn-relay run")?;
        let mut pipe = child.stderr.take().context("stderr")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(Relay {
            child,
            stderr,
            started: Instant::now(),
        })
    }

    fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits for the exit; fails with the log when it does not come within
    /// `bound`. Returns the status, the time since spawn and the whole stderr.
    async fn exit_within(mut self, bound: Duration) -> Result<(ExitStatus, Duration, String)> {
        let status = match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.start_kill();
                bail!(
                    "cpn-relay run was still running after {bound:?}; it should have exited 2. Its log:\n{}",
                    self.log()
                );
            }
        };
        let took = self.started.elapsed();
        // The pipe closes with the process; give the reader a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok((status, took, self.log()))
    }
}

/// The `error: …` line `main` prints.
fn error_line(log: &str) -> Result<&str> {
    log.lines()
        .find(|l| l.starts_with("error: "))
        .with_context(|| format!("no 'error: ' line in:\n{log}"))
}

/// Asserts exit code 2 and returns the error line.
fn exited_2(status: ExitStatus, log: &str) -> Result<String> {
    ensure!(
        status.code() == Some(2),
        "expected exit 2, got {status}; log:\n{log}"
    );
    Ok(error_line(log)?.to_owned())
}

fn sasl_flags(user: &str, password: &str, mechanism: &str) -> Vec<String> {
    [
        "security.protocol=SASL_PLAINTEXT".to_owned(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
    .into_iter()
    .flat_map(|kv| ["-X".to_owned(), kv])
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_sasl_broker_bad_credentials_exit_2_and_good_ones_deliver() -> Result<()> {
    let broker = tokio::task::spawn_blocking(SaslBroker::start).await??;
    let brokers = broker.brokers();
    let topic = unique("cp");
    let dlq = format!("{topic}.dlq");
    broker.create_topic(&topic, 2).await?;
    broker.create_topic(&dlq, 1).await?;
    let crm = mock_crm(Behavior::status(200)).await?;
    let url = crm.url();
    let group = unique("g");
    let base = |extra: Vec<String>| -> Vec<String> {
        let mut a: Vec<String> = [
            "--brokers",
            brokers.as_str(),
            "--topic",
            topic.as_str(),
            "--group",
            group.as_str(),
            "--target-url",
            url.as_str(),
        ]
        .map(str::to_owned)
        .to_vec();
        a.extend(extra);
        a
    };
    let env = [(
        "CPN_KAFKA_STARTUP_TIMEOUT_MS",
        LONG_STARTUP_TIMEOUT_MS.to_string(),
    )];

    // A wrong password: refused by the broker, reported at once.
    let wrong = format!("not-the-password-{}", uuid::Uuid::new_v4().simple());
    let args = base(sasl_flags(SASL_USER, &wrong, "PLAIN"));
    let relay = Relay::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)?;
    let (status, took, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    for want in [
        format!("kafka.brokers {brokers}"),
        "authentication failed".to_owned(),
        "sasl.mechanism PLAIN".to_owned(),
        "sasl.username \"cpn\"".to_owned(),
        "Invalid username or password".to_owned(),
    ] {
        ensure!(line.contains(&want), "wanted {want:?} in {line:?}");
    }
    ensure!(
        !log.contains(&wrong),
        "the password appears in the relay's output:\n{log}"
    );
    eprintln!("wrong password: exit 2 after {took:?}: {line}");

    // The dead-letter tools check the same way: at once, with the reason.
    let started = Instant::now();
    let out = Command::new(bin_path("cpn-relay")?)
        .args(["dlq", "list", "--topic", &dlq, "--brokers", &brokers])
        .args(sasl_flags(SASL_USER, &wrong, "PLAIN"))
        .env_remove("CPN_KAFKA_BROKERS")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(EXIT_BOUND, out)
        .await
        .context("cpn-relay dlq list did not exit")??;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "dlq list: expected exit 2, got {}: {stderr}",
        out.status
    );
    let want = format!("--brokers {brokers}: authentication failed");
    ensure!(stderr.contains(&want), "wanted {want:?} in {stderr:?}");
    ensure!(
        took < Duration::from_secs(10),
        "dlq list took {took:?}: an authentication failure is reported at once"
    );
    ensure!(!stderr.contains(&wrong), "password in the output: {stderr}");

    // A mechanism the listener does not offer.
    let args = base(sasl_flags(SASL_USER, SASL_PASSWORD, "SCRAM-SHA-256"));
    let relay = Relay::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)?;
    let (status, took, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    for want in ["authentication failed", "sasl.mechanism SCRAM-SHA-256"] {
        ensure!(line.contains(want), "wanted {want:?} in {line:?}");
    }
    ensure!(
        !log.contains(SASL_PASSWORD),
        "password in the output:\n{log}"
    );
    eprintln!("wrong mechanism: exit 2 after {took:?}: {line}");

    // Authenticated, but not allowed to see the topic.
    let args = base(sasl_flags(GUEST_USER, GUEST_PASSWORD, "PLAIN"));
    let relay = Relay::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)?;
    let (status, took, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    let want = format!("kafka.topic {topic}: not authorized");
    ensure!(line.contains(&want), "wanted {want:?} in {line:?}");
    ensure!(line.contains("sasl.username \"guest\""), "{line}");
    ensure!(
        !log.contains(GUEST_PASSWORD),
        "password in the output:\n{log}"
    );
    eprintln!("not authorized: exit 2 after {took:?}: {line}");

    // The right password: the check passes, events are delivered, SIGTERM
    // ends it with 0.
    let args = base(sasl_flags(SASL_USER, SASL_PASSWORD, "PLAIN"));
    let relay = Relay::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env)?;
    let producer: FutureProducer = broker
        .client_config(SASL_USER, SASL_PASSWORD)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .context("creating a SASL producer")?;
    let mut guids = Vec::new();
    for i in 0..5 {
        let (guid, body) = event("list-sasl", i, 0);
        produce(
            &producer,
            &topic,
            &format!("list-sasl:{i}"),
            Some(&guid),
            &body,
        )
        .await?;
        guids.push(guid);
    }
    let delivered = |crm: &MockCrm| {
        let got = crm.received();
        guids
            .iter()
            .all(|g| got.iter().any(|r| r.etag.as_deref() == Some(g.as_str())))
    };
    if let Err(e) = wait_for("5 events delivered through SASL", WAIT, || async {
        delivered(&crm).then_some(())
    })
    .await
    {
        bail!("{e:#}; the relay's log:\n{}", relay.log());
    }
    let log = relay.log();
    ensure!(
        log.contains("kafka start-up check passed"),
        "no 'kafka start-up check passed' in the log:\n{log}"
    );
    sigterm(&relay.child)?;
    let (status, _, log) = relay.exit_within(WAIT).await?;
    ensure!(
        status.success(),
        "exit after SIGTERM: {status}; log:\n{log}"
    );
    ensure!(
        !log.contains(SASL_PASSWORD),
        "password in the output:\n{log}"
    );
    drop(broker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_topic_exits_2_naming_it() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cp-missing");
    let crm = mock_crm(Behavior::status(200)).await?;
    let relay = Relay::spawn(
        &[
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--group",
            &unique("g"),
            "--target-url",
            &crm.url(),
        ],
        &[(
            "CPN_KAFKA_STARTUP_TIMEOUT_MS",
            SHORT_STARTUP_TIMEOUT_MS.to_string(),
        )],
    )?;
    let (status, took, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    let want = format!("kafka.topic {topic}: no such topic on {brokers}");
    ensure!(line.contains(&want), "wanted {want:?} in {line:?}");
    ensure!(
        took >= Duration::from_millis(SHORT_STARTUP_TIMEOUT_MS),
        "a topic being created gets kafka.startup_timeout_ms to appear; exited after {took:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dead_letter_topic_exits_2_naming_it() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("cp");
    create_topic(&brokers, &topic, 1).await?;
    let dlq = unique("cp-dead-letters");
    let crm = mock_crm(Behavior::status(200)).await?;
    let relay = Relay::spawn(
        &[
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--dlq-topic",
            &dlq,
            "--group",
            &unique("g"),
            "--target-url",
            &crm.url(),
        ],
        &[(
            "CPN_KAFKA_STARTUP_TIMEOUT_MS",
            SHORT_STARTUP_TIMEOUT_MS.to_string(),
        )],
    )?;
    let (status, _, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    let want = format!("kafka.dlq_topic {dlq}: no such topic on {brokers}");
    ensure!(line.contains(&want), "wanted {want:?} in {line:?}");
    ensure!(
        crm.received_count() == 0,
        "nothing is consumed before the check passed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_at_the_address_exits_2_after_the_startup_timeout() -> Result<()> {
    let brokers = format!("127.0.0.1:{}", closed_port()?);
    let relay = Relay::spawn(
        &[
            "--brokers",
            &brokers,
            "--topic",
            &unique("cp"),
            "--target-url",
            "http://127.0.0.1:1/",
        ],
        &[(
            "CPN_KAFKA_STARTUP_TIMEOUT_MS",
            SHORT_STARTUP_TIMEOUT_MS.to_string(),
        )],
    )?;
    let (status, took, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    for want in [
        format!("kafka.brokers {brokers}: no broker answered within 3s"),
        "Connection refused".to_owned(),
    ] {
        ensure!(line.contains(&want), "wanted {want:?} in {line:?}");
    }
    ensure!(
        took >= Duration::from_millis(SHORT_STARTUP_TIMEOUT_MS),
        "a broker that is starting gets kafka.startup_timeout_ms to answer; exited after {took:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_that_is_not_trusted_exits_2_at_once() -> Result<()> {
    // A TLS listener whose certificate comes from a CA the relay does not
    // trust: the handshake fails before any Kafka request.
    let pki = tls_support::Pki::new()?;
    let server = tls_support::HttpsServer::start(&pki, tls_support::Options::default()).await?;
    let brokers = format!("127.0.0.1:{}", server.port());
    let relay = Relay::spawn(
        &[
            "--brokers",
            &brokers,
            "--topic",
            &unique("cp"),
            "--target-url",
            "http://127.0.0.1:1/",
            "-X",
            "security.protocol=SSL",
        ],
        &[(
            "CPN_KAFKA_STARTUP_TIMEOUT_MS",
            LONG_STARTUP_TIMEOUT_MS.to_string(),
        )],
    )?;
    let (status, took, log) = relay.exit_within(EXIT_BOUND).await?;
    let line = exited_2(status, &log)?;
    for want in [
        format!("kafka.brokers {brokers}: TLS handshake failed with security.protocol SSL"),
        "certificate verify failed".to_owned(),
    ] {
        ensure!(line.contains(&want), "wanted {want:?} in {line:?}");
    }
    eprintln!("untrusted certificate: exit 2 after {took:?}: {line}");
    Ok(())
}
