//! Writes dead letters: the original key, value and headers, plus the
//! `cpn.dlq.*` and Kafka Connect headers, with an idempotent acks=all
//! producer. A write is finished only when Kafka acknowledged it.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// How long one dead-letter write may wait for Kafka before it is retried.
pub const DLQ_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The dead-letter topic producer.
#[derive(Clone)]
pub struct DlqWriter {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for DlqWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DlqWriter")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// A record to dead-letter, borrowed from the original.
#[derive(Debug)]
pub struct DeadLetter<'a> {
    /// Original key bytes.
    pub key: Option<&'a [u8]>,
    /// Original value bytes.
    pub value: Option<&'a [u8]>,
    /// Original headers, kept in order.
    pub original_headers: Option<&'a OwnedHeaders>,
    /// Headers to append.
    pub extra: &'a [(&'static str, Vec<u8>)],
}

impl DlqWriter {
    /// A producer for `topic`: idempotent, acks=all, with the given
    /// librdkafka pass-through properties.
    ///
    /// # Errors
    /// librdkafka refused the configuration.
    pub fn new<'a>(
        brokers: &str,
        topic: &str,
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, KafkaError> {
        let mut c = ClientConfig::new();
        for (k, v) in properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                DLQ_WRITE_TIMEOUT.as_millis().to_string(),
            );
        Ok(DlqWriter {
            producer: c.create()?,
            topic: topic.to_owned(),
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes one dead letter and waits for Kafka's acknowledgement.
    ///
    /// # Errors
    /// Kafka did not acknowledge the write (the caller retries).
    pub async fn write(&self, dl: &DeadLetter<'_>) -> Result<(i32, i64), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(
            dl.original_headers.map_or(0, |h| h.count()) + dl.extra.len(),
        );
        if let Some(orig) = dl.original_headers {
            for h in orig.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        for (k, v) in dl.extra {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(k) = dl.key {
            record = record.key(k);
        }
        if let Some(v) = dl.value {
            record = record.payload(v);
        }
        let delivery = self.producer.send(record, DLQ_WRITE_TIMEOUT).await;
        match delivery {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => Err(e),
        }
    }

    /// Waits for every queued write (shutdown).
    ///
    /// # Errors
    /// Some writes were not acknowledged in `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
