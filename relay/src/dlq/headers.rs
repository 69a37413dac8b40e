//! The headers a dead letter carries: where it came from, why, how often it
//! was tried and by whom — in cpn's own names and in Kafka Connect's, so
//! existing tools read them too.
//!
//! Pure: encoding and decoding only. The original record's headers are kept
//! and these are appended (a replay adds `cpn.dlq.replays` and
//! `cpn.dlq.replayed_from`).

use std::time::SystemTime;

use crate::policy::classify::DlqReason;

/// `http_rejected` | `http_redirect` | `retries_exhausted` | `invalid_payload`.
pub const REASON: &str = "cpn.dlq.reason";
/// The last HTTP status, when the target answered.
pub const HTTP_STATUS: &str = "cpn.dlq.http_status";
/// The last error, as text.
pub const ERROR: &str = "cpn.dlq.error";
/// Where a redirect pointed (`http_redirect`; not followed), credentials
/// removed.
pub const HTTP_LOCATION: &str = "cpn.dlq.http_location";
/// The first [`RESPONSE_BODY_MAX_BYTES`] of the last response body.
pub const RESPONSE_BODY: &str = "cpn.dlq.response_body";
/// How many attempts were made.
pub const ATTEMPTS: &str = "cpn.dlq.attempts";
/// When the first attempt was made (RFC 3339, UTC, milliseconds).
pub const FIRST_ATTEMPT_AT: &str = "cpn.dlq.first_attempt_at";
/// When the last attempt was made.
pub const LAST_ATTEMPT_AT: &str = "cpn.dlq.last_attempt_at";
/// The target URL, without credentials.
pub const TARGET: &str = "cpn.dlq.target";
/// The consumer group of the relay.
pub const GROUP: &str = "cpn.dlq.group";
/// The relay instance that dead-lettered it.
pub const RELAY: &str = "cpn.dlq.relay";
/// The original record's timestamp (milliseconds since the epoch).
pub const ORIGINAL_TIMESTAMP: &str = "cpn.dlq.original_timestamp";
/// How many times the record was replayed from a dead-letter topic.
pub const REPLAYS: &str = "cpn.dlq.replays";
/// `TOPIC:PARTITION:OFFSET` of the dead letter this record was replayed from.
pub const REPLAYED_FROM: &str = "cpn.dlq.replayed_from";
/// Kafka Connect: original topic.
pub const CONNECT_TOPIC: &str = "__connect.errors.topic";
/// Kafka Connect: original partition.
pub const CONNECT_PARTITION: &str = "__connect.errors.partition";
/// Kafka Connect: original offset.
pub const CONNECT_OFFSET: &str = "__connect.errors.offset";
/// Kafka Connect: exception class name.
pub const CONNECT_EXCEPTION_CLASS: &str = "__connect.errors.exception.class.name";
/// Kafka Connect: exception message.
pub const CONNECT_EXCEPTION_MESSAGE: &str = "__connect.errors.exception.message";

/// How much of a response body a dead letter keeps.
pub const RESPONSE_BODY_MAX_BYTES: usize = 4096;

/// Everything the relay knows about why a record is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// Why.
    pub reason: DlqReason,
    /// Last HTTP status, if the target answered.
    pub http_status: Option<u16>,
    /// Last error text.
    pub error: String,
    /// A redirect's `Location`, credentials removed (`http_redirect`).
    pub location: Option<String>,
    /// Start of the last response body (at most [`RESPONSE_BODY_MAX_BYTES`]).
    pub response_body: Vec<u8>,
    /// Attempts made (0 for `invalid_payload`).
    pub attempts: u32,
    /// First attempt time (`None` when no request was made).
    pub first_attempt_at: Option<SystemTime>,
    /// Last attempt time.
    pub last_attempt_at: Option<SystemTime>,
    /// Target URL without credentials (see [`crate::secret::redact_url`]).
    pub target: String,
    /// Consumer group.
    pub group: String,
    /// Relay instance id.
    pub relay: String,
    /// Original topic.
    pub topic: String,
    /// Original partition.
    pub partition: i32,
    /// Original offset.
    pub offset: i64,
    /// Original record timestamp, milliseconds since the epoch, if any.
    pub original_timestamp_ms: Option<i64>,
}

impl DeadLetterInfo {
    /// The headers to append to the original record's, in a stable order.
    pub fn to_headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut h: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(20);
        let text = |s: String| s.into_bytes();
        h.push((REASON, text(self.reason.as_str().to_owned())));
        if let Some(s) = self.http_status {
            h.push((HTTP_STATUS, text(s.to_string())));
        }
        h.push((ERROR, text(self.error.clone())));
        if let Some(l) = &self.location {
            h.push((HTTP_LOCATION, text(l.clone())));
        }
        if !self.response_body.is_empty() {
            let end = self.response_body.len().min(RESPONSE_BODY_MAX_BYTES);
            h.push((RESPONSE_BODY, self.response_body[..end].to_vec()));
        }
        h.push((ATTEMPTS, text(self.attempts.to_string())));
        if let Some(t) = self.first_attempt_at {
            h.push((FIRST_ATTEMPT_AT, text(rfc3339(t))));
        }
        if let Some(t) = self.last_attempt_at {
            h.push((LAST_ATTEMPT_AT, text(rfc3339(t))));
        }
        h.push((TARGET, text(self.target.clone())));
        h.push((GROUP, text(self.group.clone())));
        h.push((RELAY, text(self.relay.clone())));
        if let Some(ts) = self.original_timestamp_ms {
            h.push((ORIGINAL_TIMESTAMP, text(ts.to_string())));
        }
        h.push((CONNECT_TOPIC, text(self.topic.clone())));
        h.push((CONNECT_PARTITION, text(self.partition.to_string())));
        h.push((CONNECT_OFFSET, text(self.offset.to_string())));
        h.push((
            CONNECT_EXCEPTION_CLASS,
            text(exception_class(self.reason).to_owned()),
        ));
        h.push((CONNECT_EXCEPTION_MESSAGE, text(self.error.clone())));
        h
    }
}

/// The Kafka Connect exception class name written for a reason. Not a Java
/// class; a stable name tools can group by.
pub fn exception_class(reason: DlqReason) -> &'static str {
    match reason {
        DlqReason::HttpRejected => "cpn.relay.HttpRejected",
        DlqReason::HttpRedirect => "cpn.relay.HttpRedirect",
        DlqReason::RetriesExhausted => "cpn.relay.RetriesExhausted",
        DlqReason::InvalidPayload => "cpn.relay.InvalidPayload",
    }
}

/// Formats a time as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T10:00:00.123Z`.
/// A time outside years 0000–9999 (a record timestamp can be anything a
/// producer wrote) is given as seconds from the epoch instead, e.g.
/// `253402300800000 ms from the epoch`.
pub fn rfc3339(t: SystemTime) -> String {
    let nanos: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos().try_into().unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|dt| dt.format(&fmt).ok())
        .unwrap_or_else(|| format!("{} ms from the epoch", nanos / 1_000_000))
}

/// Parses what [`rfc3339`] writes (and any RFC 3339 time).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Looks up a header by name in decoded `(name, value)` pairs; the last one
/// wins, as a replayed record may carry an older copy.
pub fn find<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// Like [`find`], as UTF-8 text.
pub fn find_str<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    find(headers, name).and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn info() -> DeadLetterInfo {
        DeadLetterInfo {
            reason: DlqReason::HttpRejected,
            http_status: Some(400),
            error: "HTTP 400".into(),
            location: None,
            response_body: vec![b'x'; 5000],
            attempts: 1,
            first_attempt_at: Some(
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_619_132_400_123),
            ),
            last_attempt_at: Some(
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_619_132_401_000),
            ),
            target: "https://crm.example/hook".into(),
            group: "g".into(),
            relay: "r1".into(),
            topic: "contact-processed".into(),
            partition: 3,
            offset: 42,
            original_timestamp_ms: Some(1_619_132_400_000),
        }
    }

    fn decoded(h: Vec<(&'static str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        h.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    #[test]
    fn every_header_is_written_with_its_value() {
        let h = decoded(info().to_headers());
        let get = |k| find_str(&h, k).unwrap_or_else(|| panic!("missing {k}"));
        assert_eq!(get(REASON), "http_rejected");
        assert_eq!(get(HTTP_STATUS), "400");
        assert_eq!(get(ERROR), "HTTP 400");
        assert_eq!(
            find(&h, RESPONSE_BODY).unwrap().len(),
            RESPONSE_BODY_MAX_BYTES
        );
        assert_eq!(get(ATTEMPTS), "1");
        assert_eq!(get(FIRST_ATTEMPT_AT), "2021-04-22T23:00:00.123Z");
        assert_eq!(get(LAST_ATTEMPT_AT), "2021-04-22T23:00:01.000Z");
        assert_eq!(get(TARGET), "https://crm.example/hook");
        assert_eq!(get(GROUP), "g");
        assert_eq!(get(RELAY), "r1");
        assert_eq!(get(ORIGINAL_TIMESTAMP), "1619132400000");
        assert_eq!(get(CONNECT_TOPIC), "contact-processed");
        assert_eq!(get(CONNECT_PARTITION), "3");
        assert_eq!(get(CONNECT_OFFSET), "42");
        assert_eq!(get(CONNECT_EXCEPTION_CLASS), "cpn.relay.HttpRejected");
        assert_eq!(get(CONNECT_EXCEPTION_MESSAGE), "HTTP 400");
    }

    #[test]
    fn invalid_payload_has_no_status_nor_attempt_times() {
        let mut i = info();
        i.reason = DlqReason::InvalidPayload;
        i.http_status = None;
        i.attempts = 0;
        i.first_attempt_at = None;
        i.last_attempt_at = None;
        i.response_body.clear();
        let h = decoded(i.to_headers());
        assert!(find(&h, HTTP_STATUS).is_none());
        assert!(find(&h, FIRST_ATTEMPT_AT).is_none());
        assert!(find(&h, RESPONSE_BODY).is_none());
        assert_eq!(find_str(&h, ATTEMPTS), Some("0"));
    }

    #[test]
    fn times_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_456);
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }

    #[test]
    fn times_past_year_9999_are_written_not_panicked_on() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(253_402_300_800_000);
        assert_eq!(rfc3339(t), "253402300800000 ms from the epoch");
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(rfc3339(before), "1969-12-31T23:59:58.500Z");
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert!(rfc3339(far).ends_with(" ms from the epoch"));
    }

    #[test]
    fn last_header_of_a_name_wins() {
        let h = vec![
            (REPLAYS.to_owned(), b"1".to_vec()),
            (REPLAYS.to_owned(), b"2".to_vec()),
        ];
        assert_eq!(find_str(&h, REPLAYS), Some("2"));
    }
}
