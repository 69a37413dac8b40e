//! The dead-letter topic: what a dead letter carries (`headers`), the
//! producer that writes them (`writer`), and the `cpn-relay dlq` tooling
//! that reads them back.
//!
//! Tooling, pure cores: [`filter`] (which dead letters), [`record`] (one
//! dead letter decoded), [`stats`] (counts), [`render`] (tables and pages),
//! [`replay`] (what a replay sends). Edges: [`read`] (a bounded read without
//! joining a group), [`republish`] (producing and recording progress),
//! [`cli`] (the subcommands).

pub mod cli;
pub mod filter;
pub mod headers;
pub mod read;
pub mod record;
pub mod render;
pub mod replay;
pub mod republish;
pub mod stats;
pub mod writer;
