//! `cpn-relay dlq`: inspect, filter, count, export and replay a dead-letter
//! topic without joining a consumer group.
//!
//! Pure cores: [`filter`] (which dead letters), [`stats`] (counts),
//! [`render`] (tables and pages), [`replay`] (what a replay sends). Edges:
//! [`read`] (a bounded read without joining a group), [`republish`]
//! (producing and recording progress), [`ledger`] (what was replayed
//! already), [`cli`] (the subcommands).

pub mod cli;
pub(crate) mod filter;
pub(crate) mod ledger;
pub(crate) mod read;
pub(crate) mod render;
pub(crate) mod replay;
pub(crate) mod republish;
pub(crate) mod stats;
