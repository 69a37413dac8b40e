//! The producer library against the real broker: what `Publisher` reports as
//! published is in Kafka, byte for byte, keyed by chain, with the GUID and
//! schema version headers; one chain's events keep their order in one
//! partition, and that partition is the one Kafka's Java producer picks for
//! the key (checked by running the Java client's own partitioner from the
//! broker's jars). Fresh topic per test; fails (never skips) without a broker.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cpn_e2e::{ReadRecord, broker, create_topic, read_all, unique};
use cpn_producer::assign::parse_assigning;
use cpn_producer::generate::{Generator, SEEDED_START};
use cpn_producer::{Delivered, Publisher, PublisherConfig, Record};
use cpn_schema::ContactProcessed;
use cpn_schema::headers::{CURRENT_SCHEMA_VERSION, GUID, SCHEMA_VERSION};
use futures::stream;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

fn publisher(brokers: &str, topic: &str) -> Result<Publisher> {
    let mut config = PublisherConfig::new(brokers, topic);
    config.delivery_timeout = Duration::from_secs(30);
    Publisher::new(&config).context("creating publisher")
}

/// The sample events of `schema/examples/events.ndjson`, one per line.
fn sample_lines() -> Result<Vec<Vec<u8>>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schema/examples/events.ndjson"
    );
    let text = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    Ok(text
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect())
}

fn json(bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).context("parsing JSON")
}

fn by_position(records: Vec<ReadRecord>) -> HashMap<(i32, i64), ReadRecord> {
    records
        .into_iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_published_event_reads_back_byte_equal_with_key_and_headers() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("producer-roundtrip");
    create_topic(&brokers, &topic, 3).await?;
    let publisher = publisher(&brokers, &topic)?;

    // Inputs: the schema's sample events exactly as written, plus generated
    // ones (every media type, optional fields present and absent, unicode).
    let mut inputs = sample_lines()?;
    ensure!(!inputs.is_empty(), "no sample events found");
    inputs.extend(
        Generator::new(StdRng::seed_from_u64(11), SEEDED_START)
            .take(300)
            .map(|e| e.to_json_vec()),
    );

    let mut sent = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let event = ContactProcessed::from_json(input)
            .map_err(|e| anyhow::anyhow!("input {i} invalid: {e}"))?;
        let record = Record::from_event(&event);
        let delivered = publisher.publish(&event).await?;
        sent.push((input, record, delivered));
    }

    let stored = by_position(read_all(&brokers, &topic)?);
    ensure!(
        stored.len() == sent.len(),
        "{} records in Kafka, {} published",
        stored.len(),
        sent.len()
    );
    for (input, record, Delivered { partition, offset }) in &sent {
        let got = stored
            .get(&(*partition, *offset))
            .with_context(|| format!("nothing at {partition}/{offset}"))?;
        let value = got.value.as_deref().context("record without value")?;
        assert_eq!(
            value,
            record.value.as_slice(),
            "value is not the serialized body"
        );
        assert_eq!(
            json(value)?,
            json(input)?,
            "value is not JSON-equal to the input"
        );
        assert_eq!(got.key.as_deref(), Some(record.key.as_bytes()));
        assert_eq!(got.header(GUID).as_deref(), Some(record.guid.as_str()));
        assert_eq!(
            got.header(SCHEMA_VERSION).as_deref(),
            Some(CURRENT_SCHEMA_VERSION)
        );
        // The key is the chain: "<calling list>:<chain id>".
        let body = json(value)?;
        let expected_key = format!(
            "{}:{}",
            body["GSW_CALLING_LIST"].as_str().unwrap_or_default(),
            body["GSW_CHAIN_ID"]
        );
        assert_eq!(got.key.as_deref(), Some(expected_key.as_bytes()));
    }
    assert_eq!(publisher.metrics().published(), sent.len() as u64);
    assert_eq!(publisher.metrics().in_flight(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_guid_or_timestamp_get_one_assigned_and_carried_in_the_header() -> Result<()>
{
    let brokers = broker()?;
    let topic = unique("producer-assign");
    create_topic(&brokers, &topic, 1).await?;
    let publisher = publisher(&brokers, &topic)?;

    let (_, body) = cpn_e2e::event("assign-list", 1, 0);
    let mut input = json(&body)?;
    let obj = input.as_object_mut().context("not an object")?;
    obj.remove("GSW_MESSAGE_GUID");
    obj.remove("GSW_TIMESTAMP");
    let bytes = serde_json::to_vec(&input)?;
    ensure!(
        ContactProcessed::from_json(&bytes).is_err(),
        "strict parse should refuse it"
    );

    let event = parse_assigning(&bytes, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let delivered = publisher.publish(&event).await?;
    let stored = by_position(read_all(&brokers, &topic)?);
    let got = &stored[&(delivered.partition, delivered.offset)];
    let value = json(got.value.as_deref().context("no value")?)?;
    let guid = value["GSW_MESSAGE_GUID"]
        .as_str()
        .context("no GUID in body")?;
    assert_eq!(uuid::Uuid::parse_str(guid)?.get_version_num(), 4);
    assert_eq!(got.header(GUID).as_deref(), Some(guid));
    assert!(
        value["GSW_TIMESTAMP"]
            .as_str()
            .is_some_and(|t| t.contains('.'))
    );
    Ok(())
}

/// The Kafka jars `deploy/kafka/kafka-local fetch` keeps (fetching them if
/// needed): the class path of the Java client.
fn kafka_libs() -> Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kafka/kafka-local");
    let out = std::process::Command::new(script)
        .arg("fetch")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {script} fetch"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{script} fetch failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| l.split_once(" jars in "))
        .map(|(_, dir)| dir.trim().to_owned())
        .next_back()
        .with_context(|| format!("no 'jars in DIR' line from {script} fetch: {text}"))
}

/// The partitions Kafka's Java producer picks for `keys` among `partitions`.
fn java_partitions(keys: &[String], partitions: i32) -> Result<Vec<i32>> {
    use std::io::Write;
    let program = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/java/JavaPartitions.java"
    );
    let mut child = std::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs()?))
        .arg(program)
        .arg(partitions.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running java (deploy/setup installs it)")?;
    let mut stdin = child.stdin.take().context("java stdin")?;
    for k in keys {
        ensure!(!k.contains('\n'), "key {k:?} has a newline");
        writeln!(stdin, "{k}")?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "JavaPartitions failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| l.trim().parse::<i32>().context("a partition number"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chain_lands_where_the_java_producer_would_put_it() -> Result<()> {
    const PARTITIONS: i32 = 12;
    let brokers = broker()?;
    let topic = unique("producer-java-partitions");
    create_topic(&brokers, &topic, PARTITIONS).await?;
    let publisher = publisher(&brokers, &topic)?;
    // Generated chains: calling lists with spaces, punctuation and unicode.
    let events: Vec<ContactProcessed> = Generator::new(StdRng::seed_from_u64(23), SEEDED_START)
        .take(400)
        .collect();
    let mut keys = Vec::new();
    let mut ours = Vec::new();
    for event in &events {
        keys.push(Record::from_event(event).key);
        ours.push(publisher.publish(event).await?.partition);
    }
    let spread: std::collections::HashSet<i32> = ours.iter().copied().collect();
    ensure!(
        spread.len() == PARTITIONS as usize,
        "400 chains should reach all {PARTITIONS} partitions, reached {spread:?}"
    );
    let java = java_partitions(&keys, PARTITIONS)?;
    ensure!(
        java.len() == keys.len(),
        "{} answers for {} keys",
        java.len(),
        keys.len()
    );
    let differ: Vec<_> = keys
        .iter()
        .zip(ours.iter().zip(&java))
        .filter(|(_, (a, b))| a != b)
        .collect();
    ensure!(
        differ.is_empty(),
        "{} of {} keys differ from the Java client (key, (cpn, java)): {:?}",
        differ.len(),
        keys.len(),
        &differ[..differ.len().min(5)]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_chain_share_a_partition_in_publication_order() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("producer-order");
    create_topic(&brokers, &topic, 6).await?;
    let publisher = publisher(&brokers, &topic)?;

    // 12 chains × 25 events, interleaved, all in flight together.
    const CHAINS: i64 = 12;
    const PER_CHAIN: i64 = 25;
    let mut records = Vec::new();
    for n in 0..PER_CHAIN {
        for chain in 0..CHAINS {
            let (_, body) = cpn_e2e::event("order-list", chain, n);
            let event = ContactProcessed::from_json(&body).map_err(|e| anyhow::anyhow!("{e}"))?;
            records.push(((chain, n), Record::from_event(&event)));
        }
    }
    let mut outcomes = BTreeMap::new();
    let end = publisher
        .publish_stream(
            stream::iter(records),
            &CancellationToken::new(),
            |tag, result| {
                outcomes.insert(tag, result);
            },
        )
        .await;
    assert_eq!(end, cpn_producer::StreamEnd::Finished);
    ensure!(
        outcomes.len() == (CHAINS * PER_CHAIN) as usize,
        "missing outcomes"
    );
    for (tag, result) in &outcomes {
        ensure!(result.is_ok(), "{tag:?} not published: {result:?}");
    }

    let stored = read_all(&brokers, &topic)?;
    let mut per_chain: BTreeMap<Vec<u8>, Vec<(i32, i64, i64)>> = BTreeMap::new();
    for r in &stored {
        let value = json(r.value.as_deref().context("no value")?)?;
        let n = value["GSW_CHAIN_N"].as_i64().context("no chain n")?;
        per_chain
            .entry(r.key.clone().context("no key")?)
            .or_default()
            .push((r.partition, r.offset, n));
    }
    assert_eq!(per_chain.len(), CHAINS as usize);
    let partitions: std::collections::BTreeSet<i32> = per_chain
        .values()
        .flat_map(|v| v.iter().map(|(p, _, _)| *p))
        .collect();
    ensure!(
        partitions.len() > 1,
        "all chains landed in one partition: key not used?"
    );
    for (key, mut seen) in per_chain {
        let key = String::from_utf8_lossy(&key).into_owned();
        let first = seen[0].0;
        assert!(
            seen.iter().all(|(p, _, _)| *p == first),
            "{key} spans partitions"
        );
        seen.sort_by_key(|(_, offset, _)| *offset);
        let order: Vec<i64> = seen.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(
            order,
            (0..PER_CHAIN).collect::<Vec<_>>(),
            "{key} out of order"
        );
        // Delivered partition/offset reported to the caller match the log.
        for (_, offset, n) in &seen {
            let chain: i64 = key.rsplit(':').next().unwrap_or_default().parse()?;
            let reported = outcomes[&(chain, *n)]
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            assert_eq!((reported.partition, reported.offset), (first, *offset));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_slows_the_stream_without_losing_or_reordering() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("producer-backpressure");
    create_topic(&brokers, &topic, 2).await?;
    let mut config = PublisherConfig::new(&brokers, topic.as_str());
    config.delivery_timeout = Duration::from_secs(30);
    // librdkafka's local queue holds 8 events: the stream must wait for
    // acknowledgements (QueueFull) far more often than it enqueues freely.
    config
        .overrides
        .push("queue.buffering.max.messages=8".parse()?);
    let publisher = Publisher::new(&config)?;

    const N: i64 = 400;
    let records: Vec<_> = (0..N)
        .map(|n| {
            let (_, body) = cpn_e2e::event("backpressure", n % 3, n);
            let event = ContactProcessed::from_json(&body).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((n, Record::from_event(&event)))
        })
        .collect::<Result<_>>()?;
    let mut ok = 0;
    let end = publisher
        .publish_stream(stream::iter(records), &CancellationToken::new(), |n, r| {
            assert!(r.is_ok(), "event {n}: {r:?}");
            ok += 1;
        })
        .await;
    assert_eq!(end, cpn_producer::StreamEnd::Finished);
    assert_eq!(ok, N);

    let stored = read_all(&brokers, &topic)?;
    assert_eq!(stored.len(), N as usize);
    let mut per_key: BTreeMap<Vec<u8>, Vec<(i64, i64)>> = BTreeMap::new();
    for r in &stored {
        let n = json(r.value.as_deref().unwrap_or_default())?["GSW_CHAIN_N"]
            .as_i64()
            .context("chain n")?;
        per_key
            .entry(r.key.clone().unwrap_or_default())
            .or_default()
            .push((r.offset, n));
    }
    for (key, mut seen) in per_key {
        seen.sort();
        let ns: Vec<i64> = seen.iter().map(|(_, n)| *n).collect();
        let mut sorted = ns.clone();
        sorted.sort();
        assert_eq!(ns, sorted, "{} out of order", String::from_utf8_lossy(&key));
    }
    Ok(())
}
