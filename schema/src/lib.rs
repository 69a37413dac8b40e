//! `cpn-schema`: the ContactProcessed event that cpn carries end to end.
//!
//! The wire contract is `spec/contact-processed.md` (the Genesys OCS
//! contact-processed notification); this crate is its only implementation in
//! cpn. It is a pure core: no I/O, no clock, no randomness in validation.
//!
//! A tour of the modules:
//!
//! - `fields` (private): the table of spec fields, one row per field (doc,
//!   mandatory or optional, JSON name, Rust name, type); the struct, its JSON,
//!   the validator's per-field code and the JSON Schema are expanded from it,
//!   so adding a field is one row (the module doc says how).
//! - [`event`]: [`ContactProcessed`], one field per spec entry, and its
//!   canonical JSON output ([`ContactProcessed::to_json_vec`]).
//! - [`validate`]: reading JSON bytes into a `ContactProcessed`
//!   ([`ContactProcessed::from_json`]), reporting *every* problem with the
//!   exact JSON field name ([`Invalid`], [`FieldProblem`]).
//! - [`guid`]: [`Guid`], a validated GUID kept exactly as written (it is the
//!   `ETag`, so its spelling must survive).
//! - [`timestamp`]: [`Timestamp`], the `"seconds.mmm"` time type.
//! - [`media`]: [`MediaType`], `voice` / `sms` / `email`.
//! - [`key`]: the Kafka record key of an event, `<calling list>:<chain id>`.
//! - [`headers`]: Kafka header names for the GUID and schema version.
//! - [`codes`]: display names of the integer codes, for people only.
//! - [`json_schema`]: the JSON Schema (draft 2020-12) generated from these
//!   types; checked in as `schema/contact-processed.schema.json`.
//!
//! ```
//! use cpn_schema::ContactProcessed;
//!
//! let body = std::fs::read(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/examples/valid/sms-minimal.json"
//! ))?;
//! let event = ContactProcessed::from_json(&body)?;
//! assert_eq!(ContactProcessed::from_json(&event.to_json_vec())?, event);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod codes;
pub mod event;
mod fields;
pub mod guid;
pub mod headers;
pub mod json_schema;
pub mod key;
pub mod media;
pub mod timestamp;
pub mod validate;

pub use event::{ContactProcessed, MESSAGE_NAME, SPEC_FIELDS};
pub use guid::{Guid, GuidError};
pub use key::split_chain_key;
pub use media::{MediaType, MediaTypeError};
pub use timestamp::{Timestamp, TimestampError};
pub use validate::{FieldProblem, Invalid, ROOT_FIELD};
