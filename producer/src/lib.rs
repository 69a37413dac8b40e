//! `cpn-producer`: put ContactProcessed events into Kafka durably — from code,
//! from a CLI, and through an HTTP endpoint OCS can post to unchanged.
//!
//! Every path ends in the same place: an event validated by `cpn_schema`,
//! serialized once into a [`Record`] (key `<calling list>:<chain id>`, value
//! the canonical JSON body, headers `cpn.guid` and `cpn.schema_version`), and
//! handed to a [`Publisher`] that reports success only after Kafka
//! acknowledged it with `acks=all`.
//!
//! A tour of the modules:
//!
//! - [`config`]: [`PublisherConfig`] — brokers, topic, compression, linger,
//!   timeouts, and `-X key=value` librdkafka passthrough; pure.
//! - [`record`]: [`Record`], an event serialized for Kafka; pure.
//! - [`publisher`]: [`Publisher`] — `publish` one event, `enqueue` without
//!   waiting, `publish_stream` many in flight, `flush`, readiness probe.
//! - [`problem`]: [`Problem`], a field and what is wrong with it; pure.
//! - [`ndjson`]: bounded NDJSON line reader and `line N: FIELD: problem`
//!   reports; pure.
//! - [`assign`]: the GUID/timestamp given to events that arrive without one.
//! - [`generate`]: realistic valid events from a seeded RNG; pure.
//! - [`pace`]: the schedule that holds a `--rate`; pure.
//! - [`bulk`]: the `validate`, `publish` and `generate` commands' engines,
//!   with their [`bulk::Summary`].
//! - [`ingest`]: the axum HTTP ingest server (`serve`), run with a shutdown
//!   future.
//! - [`metrics`]: every `cpn_producer_*` Prometheus metric.
//!
//! ```no_run
//! # async fn demo(event: cpn_schema::ContactProcessed) -> Result<(), Box<dyn std::error::Error>> {
//! use cpn_producer::{Publisher, PublisherConfig};
//!
//! let publisher = Publisher::new(&PublisherConfig::new("127.0.0.1:9092", "contact-processed"))?;
//! let delivered = publisher.publish(&event).await?; // returns once Kafka acked it
//! println!("partition {} offset {}", delivered.partition, delivered.offset);
//! # Ok(()) }
//! ```

pub mod assign;
pub mod bulk;
pub mod config;
pub mod generate;
pub mod ingest;
pub mod metrics;
pub mod ndjson;
pub mod pace;
pub mod problem;
pub mod publisher;
pub mod record;

pub use config::{Compression, ConfigError, KafkaOverride, PublisherConfig};
pub use metrics::Metrics;
pub use problem::Problem;
pub use publisher::{
    Delivered, FlushError, Pending, PublishError, Publisher, PublisherError, ReachError, StreamEnd,
};
pub use record::Record;
