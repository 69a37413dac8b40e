//! Kafka, the consumer side: the consumer thread that polls, follows
//! rebalances and commits (`consumer`); per assigned partition, a feeder
//! that reads the partition's own queue while its window and the memory
//! budget ([`memory`]) have room (`feeder`), and a worker that keeps each
//! chain in order and reports finished offsets (`partition`); retries of offset fetches and commits while the group
//! coordinator moves ([`coordinator`]); the start-up check that Kafka
//! answers and has the topics ([`preflight`]); and the settings of the
//! `[kafka]`, `[commit]`, `[concurrency]` and `[shutdown]` sections
//! ([`settings`]).
//!
//! The offset committed for a partition is the next one to read, past
//! every finished record: [`crate::policy::watermark`] computes it (the one
//! place that off-by-one lives) and the consumer thread commits it. What
//! happens to one record is the business of `crate::delivery`.

pub(crate) mod consumer;
pub mod coordinator;
pub(crate) mod feeder;
pub mod memory;
pub(crate) mod partition;
pub mod preflight;
pub mod sensitive;
pub mod settings;
