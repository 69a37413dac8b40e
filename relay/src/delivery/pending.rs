//! `Record → Pending`: the checks before any request. A record whose body
//! is not a valid ContactProcessed ends here as a dead letter (DESIGN
//! invariant 6: routed with the reason, never dropped); one this relay's
//! filter does not take ends here as skipped.

use std::time::SystemTime;

use bytes::Bytes;
use rdkafka::message::Headers;
use tracing::{debug, warn};

use cpn_schema::ContactProcessed;

use super::dead_letter::Failure;
use super::{Deliverer, Record};
use crate::policy::retry::Spent;

/// A valid record on its way to the target, with what its attempts so far
/// have cost.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The body exactly as produced: every attempt sends these bytes
    /// (DESIGN invariant 3).
    pub(super) body: Bytes,
    /// The body's `GSW_MESSAGE_GUID`, sent as `ETag`.
    pub(super) guid: String,
    /// When the event was produced, milliseconds since the epoch.
    pub(super) produced_ms: i64,
    /// The chain, hashed: the circuit counts distinct chains.
    pub(super) key: u64,
    /// The retry budget this record has used (DESIGN invariant 5: only
    /// failures charged to it).
    pub(super) spent: Spent,
    /// Requests sent so far.
    pub(super) attempts: u32,
    /// When the first of them started.
    pub(super) first_at: Option<SystemTime>,
}

/// Why a record ends before its first request.
#[derive(Debug)]
pub(super) enum Early {
    /// This relay's `[filter]` does not take it.
    Skipped,
    /// No value, or not a valid event: dead-lettered as `invalid_payload`.
    Invalid(Failure),
}

impl Deliverer {
    /// Validates `rec` into a pending delivery.
    pub(super) fn take(&self, rec: &Record) -> Result<Pending, Early> {
        let Some(body) = rec.value.clone() else {
            return Err(Early::Invalid(Failure::before_request(
                "record has no value".into(),
            )));
        };
        let event = match ContactProcessed::from_json(&body) {
            Ok(e) => e,
            Err(invalid) => {
                debug!(%invalid, "invalid payload");
                return Err(Early::Invalid(Failure::before_request(format!(
                    "invalid payload: {invalid}"
                ))));
            }
        };
        if !self.filter.accepts(&event) {
            self.counted.skipped.inc();
            debug!("not for this relay's filter; skipped");
            return Err(Early::Skipped);
        }
        let guid = event.message_guid.as_str().to_owned();
        tracing::Span::current().record("guid", guid.as_str());
        if let Some(h) = header_str(rec, cpn_schema::headers::GUID)
            && h != guid
        {
            warn!(
                header = h,
                "cpn.guid header differs from the body's GSW_MESSAGE_GUID; ETag uses the body"
            );
        }
        Ok(Pending {
            body,
            guid,
            produced_ms: event.timestamp.unix_millis(),
            key: rec.key_hash(),
            spent: Spent::default(),
            attempts: 0,
            first_at: None,
        })
    }
}

fn header_str<'a>(rec: &'a Record, name: &str) -> Option<&'a str> {
    let h = rec.headers.as_ref()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}
