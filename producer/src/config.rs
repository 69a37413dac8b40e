//! Producer settings: which brokers and topic, how librdkafka is tuned, and the
//! `-X key=value` passthrough for everything else (SASL, SSL, timeouts).
//!
//! This module is pure: it turns a [`PublisherConfig`] into the list of
//! librdkafka properties the [`Publisher`](crate::Publisher) hands to
//! `rdkafka`, and checks it once. It opens no connection. The settings that
//! make publishing durable (`enable.idempotence=true`, `acks=all`) are not
//! options: a `-X` that would weaken them is refused with an error naming it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Setting whose absence would break "no loss" or "order per chain".
const IDEMPOTENCE: &str = "enable.idempotence";
/// `acks` and its librdkafka alias.
const ACKS_KEYS: [&str; 2] = ["acks", "request.required.acks"];

/// Everything a [`Publisher`](crate::Publisher) needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// Bootstrap servers, comma-separated `host:port` (librdkafka
    /// `bootstrap.servers`).
    pub brokers: String,
    /// Topic every event is published to.
    pub topic: String,
    /// Batch compression codec; see [`Compression`] for why lz4 is the default.
    pub compression: Compression,
    /// How long librdkafka waits to fill a batch before sending it
    /// (`linger.ms`). Higher favours throughput, lower favours the latency of
    /// a single HTTP ingest request.
    pub linger: Duration,
    /// Upper bound on one batch's size in bytes (`batch.size`).
    pub batch_size_bytes: u32,
    /// How long librdkafka keeps retrying one event before it reports it as
    /// not delivered (`message.timeout.ms`). Until then an event is neither
    /// published nor failed.
    pub delivery_timeout: Duration,
    /// Most events one streaming publish keeps waiting for acknowledgement at
    /// once; bounds memory and is the batching window of the bulk paths.
    pub max_in_flight: usize,
    /// Extra librdkafka properties (`-X key=value`), applied last so they can
    /// override the tuning above, but never the durability settings.
    pub overrides: Vec<KafkaOverride>,
}

/// Default `linger.ms`: long enough to fill lz4 batches under load, short
/// enough not to dominate the latency of one ingested event.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Default `batch.size`: 1 MiB, librdkafka's ceiling for one message set.
pub const DEFAULT_BATCH_SIZE_BYTES: u32 = 1024 * 1024;
/// Default `message.timeout.ms`: a minute of retrying before giving up on an
/// event, so a short broker restart costs nothing but a bulk run against a
/// dead broker still ends.
pub const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on events awaiting acknowledgement in the streaming form:
/// 20k × ~1.3 KB ≈ 26 MB, many full batches in flight.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 20_000;

impl PublisherConfig {
    /// A configuration with the defaults for everything but brokers and topic.
    #[must_use]
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            compression: Compression::default(),
            linger: DEFAULT_LINGER,
            batch_size_bytes: DEFAULT_BATCH_SIZE_BYTES,
            delivery_timeout: DEFAULT_DELIVERY_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            overrides: Vec::new(),
        }
    }

    /// Checks the whole configuration once, naming the offending option.
    ///
    /// # Errors
    /// [`ConfigError`] for an empty broker list or topic, a zero limit, or a
    /// `-X` that would turn off idempotence or `acks=all`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(ConfigError::Invalid {
                option: "brokers",
                problem: "must name at least one host:port".to_owned(),
            });
        }
        if self.topic.trim().is_empty() {
            return Err(ConfigError::Invalid {
                option: "topic",
                problem: "must not be empty".to_owned(),
            });
        }
        if self.delivery_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                option: "delivery-timeout-ms",
                problem: "must be at least 1".to_owned(),
            });
        }
        if self.batch_size_bytes == 0 {
            return Err(ConfigError::Invalid {
                option: "batch-size-bytes",
                problem: "must be at least 1".to_owned(),
            });
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::Invalid {
                option: "max-in-flight",
                problem: "must be at least 1".to_owned(),
            });
        }
        for o in &self.overrides {
            o.check_durability()?;
        }
        Ok(())
    }

    /// The librdkafka properties, in the order they must be applied (later
    /// wins), for this configuration.
    #[must_use]
    pub fn librdkafka_properties(&self) -> Vec<(String, String)> {
        let mut props: Vec<(String, String)> = [
            ("bootstrap.servers", self.brokers.clone()),
            // DESIGN "no loss": the broker acknowledges only once every in-sync
            // replica has the record, and retries cannot duplicate or reorder.
            (IDEMPOTENCE, "true".to_owned()),
            ("acks", "all".to_owned()),
            ("compression.type", self.compression.as_str().to_owned()),
            ("linger.ms", self.linger.as_millis().to_string()),
            ("batch.size", self.batch_size_bytes.to_string()),
            (
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            ),
            // Same key → same partition as the Java client's default partitioner,
            // so a chain stays in one partition whichever producer wrote it.
            ("partitioner", "murmur2_random".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        props.extend(
            self.overrides
                .iter()
                .map(|o| (o.key.clone(), o.value.clone())),
        );
        props
    }
}

/// Batch compression codec (`compression.type`).
///
/// **lz4 is the default** because on the machines cpn targets the producer,
/// the broker and the relays share a few cores: lz4 compresses and
/// decompresses several times faster than zstd for the same JSON, and the
/// broker decompresses every batch once to validate it. zstd shrinks these
/// ~1.3 KB JSON bodies further (less disk and network), which pays off when
/// the broker is remote or storage-bound: choose it with
/// `--compression zstd`. `BENCHMARKS.md` has both measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: small output, slow; for compatibility only.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4 (default): cheapest per byte for producer, broker and consumer.
    #[default]
    Lz4,
    /// zstd: best ratio, more CPU.
    Zstd,
}

impl Compression {
    /// The librdkafka name of the codec.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            _ => Err(ConfigError::Invalid {
                option: "compression",
                problem: format!("{s:?} is not one of none, gzip, snappy, lz4, zstd"),
            }),
        }
    }
}

/// One `-X key=value` librdkafka property, as kcat takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOverride {
    /// librdkafka property name, e.g. `security.protocol`.
    pub key: String,
    /// Its value, verbatim (may itself contain `=`).
    pub value: String,
}

impl KafkaOverride {
    /// Refuses overrides that would make an acknowledged event losable or let
    /// retries reorder a chain.
    fn check_durability(&self) -> Result<(), ConfigError> {
        let value = self.value.trim().to_ascii_lowercase();
        if self.key == IDEMPOTENCE && value != "true" {
            return Err(ConfigError::Weakened {
                key: self.key.clone(),
                required: "true",
            });
        }
        if ACKS_KEYS.contains(&self.key.as_str()) && value != "all" && value != "-1" {
            return Err(ConfigError::Weakened {
                key: self.key.clone(),
                required: "all",
            });
        }
        Ok(())
    }
}

impl FromStr for KafkaOverride {
    type Err = ConfigError;

    /// Parses `key=value`; the first `=` splits, so values may contain `=`
    /// (SASL JAAS strings do).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(ConfigError::Override {
                text: s.to_owned(),
                problem: "expected key=value",
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::Override {
                text: s.to_owned(),
                problem: "the key before '=' is empty",
            });
        }
        let o = KafkaOverride {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        o.check_durability()?;
        Ok(o)
    }
}

/// A configuration that cannot be used, naming the option at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An option has a value outside its range.
    #[error("{option}: {problem}")]
    Invalid {
        /// The option's CLI name.
        option: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// A `-X` argument is not `key=value`.
    #[error("-X {text:?}: {problem}")]
    Override {
        /// The argument as given.
        text: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A `-X` would weaken a setting cpn's no-loss guarantee rests on.
    #[error("-X {key}: cpn requires {key}={required} and does not let it be overridden")]
    Weakened {
        /// The librdkafka property.
        key: String,
        /// The only value allowed.
        required: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
        props
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn defaults_are_durable_and_java_compatible() {
        let c = PublisherConfig::new("127.0.0.1:9092", "t");
        c.validate().unwrap();
        let p = c.librdkafka_properties();
        assert_eq!(prop(&p, "enable.idempotence"), Some("true"));
        assert_eq!(prop(&p, "acks"), Some("all"));
        assert_eq!(prop(&p, "partitioner"), Some("murmur2_random"));
        assert_eq!(prop(&p, "compression.type"), Some("lz4"));
        assert_eq!(prop(&p, "linger.ms"), Some("5"));
        assert_eq!(prop(&p, "batch.size"), Some("1048576"));
        assert_eq!(prop(&p, "message.timeout.ms"), Some("60000"));
        assert_eq!(prop(&p, "bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn overrides_parse_like_kcat() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "security.protocol=SASL_SSL",
                Some(("security.protocol", "SASL_SSL")),
            ),
            (
                "sasl.jaas.config=a=b c=d",
                Some(("sasl.jaas.config", "a=b c=d")),
            ),
            ("linger.ms=", Some(("linger.ms", ""))),
            (" client.id =x", Some(("client.id", "x"))),
            ("acks=-1", Some(("acks", "-1"))),
            (
                "enable.idempotence=TRUE",
                Some(("enable.idempotence", "TRUE")),
            ),
            ("no-equals-sign", None),
            ("=value", None),
            ("acks=1", None),
            ("request.required.acks=0", None),
            ("enable.idempotence=false", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<KafkaOverride>();
            match want {
                Some((k, v)) => {
                    let o = got.unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!((o.key.as_str(), o.value.as_str()), (*k, *v), "{text}");
                }
                None => assert!(got.is_err(), "{text} should be refused"),
            }
        }
    }

    #[test]
    fn weakening_errors_name_the_key() {
        let e = "acks=1".parse::<KafkaOverride>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "-X acks: cpn requires acks=all and does not let it be overridden"
        );
    }

    #[test]
    fn overrides_apply_last() {
        let mut c = PublisherConfig::new("b:1", "t");
        c.overrides.push("linger.ms=50".parse().unwrap());
        c.overrides.push("compression.type=zstd".parse().unwrap());
        let p = c.librdkafka_properties();
        assert_eq!(prop(&p, "linger.ms"), Some("50"));
        assert_eq!(prop(&p, "compression.type"), Some("zstd"));
    }

    #[test]
    fn validate_names_the_option() {
        type Mutate = fn(&mut PublisherConfig);
        let table: &[(Mutate, &str)] = &[
            (
                |c| c.brokers = " ".into(),
                "brokers: must name at least one host:port",
            ),
            (|c| c.topic = String::new(), "topic: must not be empty"),
            (
                |c| c.delivery_timeout = Duration::ZERO,
                "delivery-timeout-ms: must be at least 1",
            ),
            (|c| c.max_in_flight = 0, "max-in-flight: must be at least 1"),
            (
                |c| c.batch_size_bytes = 0,
                "batch-size-bytes: must be at least 1",
            ),
        ];
        for (mutate, want) in table {
            let mut c = PublisherConfig::new("b:1", "t");
            mutate(&mut c);
            assert_eq!(c.validate().unwrap_err().to_string(), *want);
        }
    }

    #[test]
    fn compression_names_round_trip() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert_eq!(c.as_str().parse::<Compression>().unwrap(), c);
        }
        assert!("brotli".parse::<Compression>().is_err());
    }
}
