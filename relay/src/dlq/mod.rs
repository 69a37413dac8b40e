//! The dead-letter topic. What the daemon uses: [`headers`] (what a dead
//! letter carries, and its encoding), [`record`] (one dead letter decoded)
//! and [`writer`] (the producer that writes them). What operators use:
//! [`tools`], the `cpn-relay dlq` subcommands that read dead letters back,
//! filter, count, export and replay them.
//!
//! The tools stay in this crate, beside the format they read: they are
//! subcommands of the same binary (one image, one `--help`, one version for
//! the format written and the format read), and they share the record
//! decoder and the librdkafka settings with the daemon. Their own
//! dependencies (`indicatif`, `humantime`) are used by nothing under
//! `delivery`, `kafka` or `target`.

pub mod headers;
pub mod record;
pub mod tools;
pub mod writer;
