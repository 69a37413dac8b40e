//! Kafka header names cpn puts on a ContactProcessed record, and their values.
//!
//! The producer sets them so the relay can set `ETag` (and check the schema
//! version) without parsing the body (DESIGN, "Kafka usage"). They are a
//! convenience copy: the body stays the source of truth. Dead-letter headers
//! belong to the relay, not here.

/// Header holding the message GUID exactly as in `GSW_MESSAGE_GUID` (UTF-8).
pub const GUID: &str = "cpn.guid";

/// Header holding the body's schema version (UTF-8 decimal).
pub const SCHEMA_VERSION: &str = "cpn.schema_version";

/// The schema version this crate reads and writes.
pub const CURRENT_SCHEMA_VERSION: &str = "1";
