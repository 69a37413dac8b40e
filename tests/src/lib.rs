//! Shared harness for the end-to-end tests: where the broker is, fresh topic
//! and group names, topic creation, and waiting with deadlines.
//!
//! Every test here runs against the real Kafka broker started by
//! `deploy/kafka/kafka-local start`. When no broker answers, [`broker`] fails
//! the test with the command that starts one: these tests never skip.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long a test waits for the broker to answer a metadata request.
pub const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bootstrap address of the test broker: `CPN_TEST_BROKERS`, else
/// `127.0.0.1:$KAFKA_PORT`, else `127.0.0.1:9092`.
pub fn bootstrap() -> String {
    if let Ok(b) = std::env::var("CPN_TEST_BROKERS") {
        return b;
    }
    let port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".to_owned());
    format!("127.0.0.1:{port}")
}

/// Checks that the broker answers and returns its bootstrap address.
///
/// # Errors
/// Fails, naming the command that starts the broker, when no broker answers
/// within [`BROKER_PROBE_TIMEOUT`].
pub fn broker() -> Result<String> {
    let brokers = bootstrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("socket.timeout.ms", "5000")
        .create()
        .context("creating a probe client")?;
    match consumer.fetch_metadata(None, BROKER_PROBE_TIMEOUT) {
        Ok(md) if !md.brokers().is_empty() => Ok(brokers),
        Ok(_) => bail!("broker at {brokers} returned no brokers in its metadata"),
        Err(e) => bail!(
            "no Kafka broker answers at {brokers} ({e}). These tests need the real local broker: \
             run `deploy/kafka/kafka-local start` (or `deploy/test`, which starts it) and try again"
        ),
    }
}

/// A name unique to this process and call, for topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates `topic` with `partitions` partitions and waits until it exists.
///
/// # Errors
/// Fails when the broker refuses the topic or does not answer.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    create_topic_replicated(brokers, topic, partitions, 1).await
}

/// Like [`create_topic`], with `replicas` replicas of each partition (3 on a
/// [`broker::PrivateCluster`]).
///
/// # Errors
/// Fails when the broker refuses the topic or does not answer.
pub async fn create_topic_replicated(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replicas: i32,
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .context("create_topics")?;
    for r in results {
        if let Err((name, code)) = r {
            bail!("creating topic {name}: {code}");
        }
    }
    Ok(())
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `deadline`
/// with `what` in the message.
///
/// # Errors
/// Fails when the deadline passes first.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `url` answers a 2xx (a server's `/healthz`), within
/// `deadline`.
///
/// # Errors
/// It did not in time.
pub async fn wait_http_ok(what: &str, url: &str, deadline: Duration) -> Result<()> {
    wait_for(what, deadline, || async {
        reqwest::get(url)
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await
}

/// The path of a workspace binary (`cpn-relay`, `cpn-producer`; each is
/// built by the package of the same name), built next to this test
/// executable, so a stale binary is never tested, even under
/// `cargo test -p cpn-e2e`. (`CARGO_BIN_EXE_*` is only set for a package's
/// own binaries.)
///
/// The first call in a test process runs `cargo test --workspace
/// --all-targets --no-run` with this executable's target directory and
/// profile: the very build the test command (`deploy/test`) just made, so
/// there it is a check of a second and compiles nothing. The binaries come
/// out of it with the features of that build; a `cargo build -p NAME` would
/// resolve the features of NAME alone (no dev-dependencies) and compile
/// tokio, hyper, reqwest and everything above them a second time (about
/// four minutes per binary on a cold 2-core machine). A binary that build
/// does not make (of a package without integration tests) is built with
/// `cargo build -p NAME --bin NAME`.
///
/// # Errors
/// The build fails, or the binary is not where cargo puts it.
pub fn bin_path(name: &str) -> Result<std::path::PathBuf> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, Result<std::path::PathBuf, String>>>> =
        OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    static WORKSPACE: OnceLock<Result<(), String>> = OnceLock::new();
    WORKSPACE
        .get_or_init(|| {
            cargo(["test", "--workspace", "--all-targets", "--no-run"])
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)?;
    built
        .entry(name.to_owned())
        .or_insert_with(|| locate_bin(name).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `target/<profile>` of this test executable.
fn profile_dir() -> Result<std::path::PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test-exe>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(std::path::Path::to_path_buf)
        .context("test executable is not under target/<profile>/deps")
}

/// Runs cargo with `args` on this executable's target directory and profile.
fn cargo<const N: usize>(args: [&str; N]) -> Result<()> {
    let profile_dir = profile_dir()?;
    let target_dir = profile_dir
        .parent()
        .context("no target directory above the profile directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    build
        .args(args)
        .arg("--quiet")
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    anyhow::ensure!(
        status.success(),
        "cargo {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

/// The binaries `cargo test --workspace --all-targets` builds (and links
/// into `target/<profile>/`): those of packages with integration tests
/// (`relay/tests`, `producer/tests`).
const BUILT_BY_THE_TEST_BUILD: &[&str] = &["cpn-relay", "cpn-producer"];

fn locate_bin(name: &str) -> Result<std::path::PathBuf> {
    let bin = profile_dir()?.join(name);
    if !BUILT_BY_THE_TEST_BUILD.contains(&name) {
        cargo(["build", "-p", name, "--bin", name])?;
    }
    anyhow::ensure!(bin.exists(), "{} missing after cargo build", bin.display());
    Ok(bin)
}

/// A valid ContactProcessed body for tests: chain `chain_id` of calling list
/// `list`, position `n` in the chain, with a fresh GUID. Returns the GUID
/// and the JSON bytes.
pub fn event(list: &str, chain_id: i64, n: i64) -> (String, Vec<u8>) {
    event_with_media(list, chain_id, n, "voice")
}

/// Like [`event`], with `GSW_CONTACT_MEDIA_TYPE` = `media`.
pub fn event_with_media(list: &str, chain_id: i64, n: i64, media: &str) -> (String, Vec<u8>) {
    let guid = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "GSW_MESSAGE": "ContactProcessed",
        "GSW_MESSAGE_GUID": guid,
        "GSW_TIMESTAMP": "1764064800.123",
        "GSW_CALL_ATTEMPT_GUID": uuid::Uuid::new_v4().to_string(),
        "GSW_PHONE": "+15555550100",
        "GSW_PHONE_TYPE": 4,
        "GSW_CHAIN_ID": chain_id,
        "GSW_CHAIN_N": n,
        "GSW_RECORD_HANDLE": 1000 + n,
        "GSW_REASON": 1,
        "GSW_CALL_RESULT": 33,
        "GSW_CAMPAIGN_NAME": "test-campaign",
        "GSW_CONTACT_MEDIA_TYPE": media,
        "GSW_CALLING_LIST": list,
        "GSW_CAMPAIGN_GROUP_NAME": "test-group",
        "GSW_CAMPAIGN_GROUP_GUID": "6f1c2d3e-0000-4000-8000-000000000001",
        "GSW_GROUP_NAME": "agents",
        "GSW_QUEUE_NAME": "queue-1",
        "GSW_DIAL_MODE": 1,
        "GSW_RECORD_TYPE": 2,
        "GSW_RECORD_STATUS": 3,
        "GSW_START_PROCESSING": "1764064790.000",
        "Other1": "seq-".to_owned() + &n.to_string(),
    });
    (guid, body.to_string().into_bytes())
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ReadRecord {
    /// The last header of that name, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A producer like cpn-producer's: idempotent, acks=all.
///
/// # Errors
/// The client cannot be created.
pub fn producer(brokers: &str) -> Result<rdkafka::producer::FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .context("creating producer")
}

/// Produces `value` with `key` and a `cpn.guid` header; waits for the ack.
///
/// # Errors
/// Kafka did not acknowledge.
pub async fn produce(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    key: &str,
    guid: Option<&str>,
    value: &[u8],
) -> Result<(i32, i64)> {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut rec = rdkafka::producer::FutureRecord::to(topic)
        .key(key)
        .payload(value);
    if let Some(g) = guid {
        rec = rec.headers(OwnedHeaders::new().insert(Header {
            key: "cpn.guid",
            value: Some(g),
        }));
    }
    let d = p
        .send(rec, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| anyhow::anyhow!("produce to {topic}: {e}"))?;
    Ok((d.partition, d.offset))
}

/// Reads every record of `topic` present now (up to the high watermarks),
/// without a consumer group.
///
/// # Errors
/// Kafka does not answer.
pub fn read_all(brokers: &str, topic: &str) -> Result<Vec<ReadRecord>> {
    use rdkafka::Offset;
    use rdkafka::TopicPartitionList;
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .context("creating reader")?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let parts: Vec<i32> = md
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut highs = std::collections::HashMap::new();
    for p in &parts {
        let (lo, hi) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10))?;
        if hi > lo {
            tpl.add_partition_offset(topic, *p, Offset::Offset(lo))?;
            remaining += hi - lo;
            highs.insert(*p, hi);
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remaining > 0 {
        if std::time::Instant::now() > deadline {
            bail!("reading {topic}: {remaining} records did not arrive in 30 s");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            if highs.get(&m.partition()).is_some_and(|h| m.offset() < *h) {
                remaining -= 1;
                out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// The committed offsets of `group` on `topic`, by partition (absent when
/// nothing was committed).
///
/// # Errors
/// Kafka does not answer.
pub fn committed(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Result<std::collections::BTreeMap<i32, i64>> {
    use rdkafka::Offset;
    use rdkafka::TopicPartitionList;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .context("creating offsets reader")?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    let got = cpn_relay::kafka::coordinator::retry(Duration::from_secs(30), || {
        consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))
    })?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// High watermarks (end offsets) of `topic`, by partition.
///
/// # Errors
/// Kafka does not answer.
pub fn end_offsets(brokers: &str, topic: &str) -> Result<std::collections::BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating watermark reader")?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut out = std::collections::BTreeMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (_, hi) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            out.insert(p.id(), hi);
        }
    }
    Ok(out)
}

/// The configuration values Kafka reports for `topic` (defaults included).
///
/// # Errors
/// Kafka does not answer or does not know the topic.
pub async fn topic_config(
    brokers: &str,
    topic: &str,
) -> Result<std::collections::HashMap<String, String>> {
    use rdkafka::admin::ResourceSpecifier;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating admin client")?;
    let spec = ResourceSpecifier::Topic(topic);
    let mut out = std::collections::HashMap::new();
    for r in admin
        .describe_configs([&spec], &AdminOptions::new())
        .await?
    {
        let resource = r.map_err(|e| anyhow::anyhow!("describing {topic}: {e}"))?;
        for e in resource.entries {
            if let Some(v) = e.value {
                out.insert(e.name, v);
            }
        }
    }
    Ok(out)
}

pub mod broker;
pub mod faults;
pub mod ledger;
pub mod rawhttp;
pub mod relay;
