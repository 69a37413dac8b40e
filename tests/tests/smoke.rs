//! Smoke test of the test setup itself: the local broker answers, a topic can
//! be created, records produced with `acks=all` come back from a fresh
//! consumer group with the same keys, values, headers and order.
//!
//! It exercises no cpn code. When it fails, the broker or the client build is
//! at fault, not the producer or the relay: start there. It fails (never
//! skips) when no broker answers; `deploy/test` starts one.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cpn_e2e::{broker, create_topic, unique};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// How many records the test sends.
const RECORDS: usize = 5;
/// How long one delivery report or one consumed record may take. Generous:
/// the first group join on a fresh broker creates `__consumer_offsets`.
const WAIT: Duration = Duration::from_secs(30);
/// The header every record carries, to check headers survive the round trip.
const SEQ_HEADER: &str = "cpn-smoke-seq";

#[derive(Debug, PartialEq, Eq)]
struct Record {
    key: String,
    value: String,
    seq: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_records_come_back_in_order() -> Result<()> {
    let brokers = broker()?;
    let topic = unique("smoke");
    // One partition: order across all records is then defined and checkable.
    create_topic(&brokers, &topic, 1).await?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the producer")?;

    let sent: Vec<Record> = (0..RECORDS)
        .map(|i| Record {
            key: format!("chain-{i}"),
            value: format!("{topic} record {i}"),
            seq: Some(i.to_string()),
        })
        .collect();
    let mut offsets = Vec::with_capacity(RECORDS);
    for r in &sent {
        let headers = OwnedHeaders::new().insert(Header {
            key: SEQ_HEADER,
            value: r.seq.as_deref(),
        });
        let record = FutureRecord::to(&topic)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers);
        let delivery = producer
            .send(record, WAIT)
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing {} to {topic}", r.key))?;
        ensure!(
            delivery.partition == 0,
            "{} went to partition {}",
            r.key,
            delivery.partition
        );
        offsets.push(delivery.offset);
    }
    let expected: Vec<i64> = (0..).take(RECORDS).collect();
    assert_eq!(
        offsets, expected,
        "a fresh topic's offsets start at 0 and have no gaps"
    );

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("smoke-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&topic]).context("subscribing")?;

    let mut received = Vec::with_capacity(RECORDS);
    while received.len() < RECORDS {
        let Ok(next) = tokio::time::timeout(WAIT, consumer.recv()).await else {
            bail!(
                "got {} of {RECORDS} records from {topic}, then nothing for {WAIT:?}",
                received.len()
            );
        };
        let msg = next.context("consuming")?;
        ensure!(
            msg.partition() == 0,
            "record from partition {}",
            msg.partition()
        );
        assert_eq!(
            msg.offset(),
            offsets[received.len()],
            "records arrive in offset order"
        );
        let text = |bytes: Option<&[u8]>, what: &str| -> Result<String> {
            let bytes = bytes
                .with_context(|| format!("record at offset {} has no {what}", msg.offset()))?;
            String::from_utf8(bytes.to_vec()).with_context(|| format!("{what} is not UTF-8"))
        };
        let seq = msg
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == SEQ_HEADER))
            .map(|h| text(h.value, "header value"))
            .transpose()?;
        received.push(Record {
            key: text(msg.key(), "key")?,
            value: text(msg.payload(), "value")?,
            seq,
        });
    }
    assert_eq!(
        received, sent,
        "keys, values, headers and order as produced"
    );
    Ok(())
}
