//! cpn-relay: deliver ContactProcessed events from a Kafka consumer group to
//! a customer's web server exactly as Genesys OCS would, at least once, with
//! a dead-letter topic for what cannot be delivered.
//!
//! The guarantee (DESIGN invariants): every record of the topic ends, for
//! this consumer group, either acknowledged 2xx by the target or in the
//! dead-letter topic with the reason. Offsets are committed only past
//! finished records, so a crash redelivers — receivers de-duplicate on the
//! GUID (`ETag`). Duplicates are bounded by what was in flight (at most
//! `concurrency.max_in_flight_per_partition` records per partition) plus
//! what finished since the last commit.
//!
//! # The rooms
//!
//! | room | holds | does not hold |
//! |---|---|---|
//! | [`kafka`] | the consumer thread, rebalances, the partition feeders and workers, the memory budget, commits, the start-up check | what happens to a record |
//! | `delivery` | one record's life, as typed states: pending → attempted → delivered, dead-lettered or held | HTTP, Kafka, policies |
//! | [`target`] | the HTTP client to the customer's server and its `tls`, `proxy`, `auth`, `signing`, `budget` | when to retry |
//! | [`policy`] | pure decisions: `classify`, `retry`, `circuit`, `watermark`, `route` | any I/O (checked by a test) |
//! | [`dlq`] | the dead-letter format and writer, and the `cpn-relay dlq` tools in [`dlq::tools`] | the daemon |
//! | [`observe`] | metrics, the `/metrics` `/healthz` `/readyz` server, liveness | decisions |
//! | [`config`] | loading the file, env and flags; assembling the sections | the sections' own types (they live with their code) |
//! | [`secret`] | where secrets come from, and redaction | |
//!
//! # The path of one record
//!
//! 1. [`kafka`]'s feeder of the record's partition (`kafka::feeder`) reads it
//!    from the partition's own queue when the partition's window and the
//!    relay's memory budget have room, and hands it to the partition's
//!    worker (`kafka::partition`), which keeps chains in order.
//! 2. The worker calls `delivery::Deliverer::process`: the record is
//!    validated into a pending delivery, waits its turn (circuit, request
//!    slot, rate budget), is POSTed by [`target`], and the answer is judged
//!    by [`policy`]: delivered, retried after a backoff, held, or
//!    dead-lettered through [`dlq`].
//! 3. The finished offset goes back to the worker; the watermark
//!    (`policy::watermark`) moves and the consumer thread commits it.
//!
//! [`run`] wires the rooms together for one process.

pub mod config;
mod daemon;
pub(crate) mod delivery;
pub mod dlq;
pub mod kafka;
pub mod observe;
pub mod policy;
pub mod secret;
pub mod shutdown;
pub mod target;

pub use daemon::{RunError, run};
