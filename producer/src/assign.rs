//! The identity given to an event that arrives without one.
//!
//! The spec makes `GSW_MESSAGE_GUID` and `GSW_TIMESTAMP` mandatory and OCS
//! always sends both, but a dialer integration or a hand-written NDJSON file
//! may not. Every producer entry point (library callers choose; CLI
//! `publish`, HTTP ingest) reads events with
//! [`ContactProcessed::from_json_assigning`] and this module's
//! [`fresh_identity`]: a missing GUID becomes a random UUID v4 in lower-case
//! hyphenated form, a missing timestamp becomes the current UTC time to the
//! millisecond. Present-but-malformed values are still rejected. Both are
//! assigned *once*, before the body is serialized, so every later re-send of
//! the Kafka record carries the same identity (DESIGN invariant 3).
//!
//! This is the one place in the crate that reads the clock and the OS random
//! source for event identity; pure code takes them as arguments.

use std::time::SystemTime;

use cpn_schema::{ContactProcessed, Guid, Invalid, Timestamp};

/// A new random GUID and the current time.
#[must_use]
pub fn fresh_identity() -> (Guid, Timestamp) {
    // `from_system_time` is `None` only for a clock set before 1970 or past
    // the year 292 million; the epoch is then the least wrong "now".
    let now = Timestamp::from_system_time(SystemTime::now()).unwrap_or(Timestamp::EPOCH);
    (Guid::new_v4(), now)
}

/// Reads and validates an event, assigning a GUID and timestamp when absent.
///
/// `fallback_guid` is used instead of a random GUID when the body has none
/// (HTTP ingest passes the request's `ETag`, which OCS sets to the GUID).
///
/// # Errors
/// [`Invalid`] listing every problem of the event.
pub fn parse_assigning(
    bytes: &[u8],
    fallback_guid: Option<Guid>,
) -> Result<ContactProcessed, Invalid> {
    ContactProcessed::from_json_assigning(bytes, || {
        let (guid, now) = fresh_identity();
        (fallback_guid.unwrap_or(guid), now)
    })
}
