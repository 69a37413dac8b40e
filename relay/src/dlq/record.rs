//! One dead letter, decoded: its coordinates in the dead-letter topic, the
//! `cpn.dlq.*` and Kafka Connect headers the relay wrote (see
//! [`crate::dlq::headers`]), and the few event fields the tools filter and
//! group by — next to the untouched key, value and headers a replay sends
//! again.
//!
//! Pure: decoding is forgiving. A dead letter written by an older relay, by
//! another tool, or holding a value that is not JSON still decodes; whatever
//! is missing or unreadable is `None`. Nothing here talks to Kafka.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::dlq::headers::{self as h, find_str, parse_rfc3339, rfc3339};

/// A dead-letter record as read from Kafka, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDeadLetter {
    /// Partition in the dead-letter topic.
    pub partition: i32,
    /// Offset in the dead-letter topic.
    pub offset: i64,
    /// The dead-letter record's timestamp (ms since the epoch), if any.
    pub timestamp_ms: Option<i64>,
    /// Key bytes (the original record's).
    pub key: Option<Vec<u8>>,
    /// Value bytes (the original record's).
    pub value: Option<Vec<u8>>,
    /// Every header in order; `None` is a header with a null value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The event fields the tools filter and group by, read from a value that
/// is a JSON object (valid ContactProcessed or not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSummary {
    /// `GSW_MESSAGE_GUID`, as written.
    pub guid: Option<String>,
    /// `GSW_CAMPAIGN_GROUP_NAME`.
    pub campaign_group: Option<String>,
    /// `GSW_CAMPAIGN_NAME`.
    pub campaign: Option<String>,
    /// `GSW_CALLING_LIST`.
    pub calling_list: Option<String>,
    /// `GSW_CONTACT_MEDIA_TYPE`.
    pub media_type: Option<String>,
    /// `GSW_CALL_RESULT` code.
    pub call_result: Option<i64>,
}

impl EventSummary {
    fn from_object(o: &Map<String, Value>) -> Self {
        let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        EventSummary {
            guid: text("GSW_MESSAGE_GUID"),
            campaign_group: text("GSW_CAMPAIGN_GROUP_NAME"),
            campaign: text("GSW_CAMPAIGN_NAME"),
            calling_list: text("GSW_CALLING_LIST"),
            media_type: text("GSW_CONTACT_MEDIA_TYPE"),
            call_result: o.get("GSW_CALL_RESULT").and_then(Value::as_i64),
        }
    }
}

/// A decoded dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterView {
    /// The record as read, bytes untouched.
    pub raw: RawDeadLetter,
    /// `cpn.dlq.reason`, as written (normally a [`crate::policy::classify::DlqReason`] name).
    pub reason: Option<String>,
    /// `cpn.dlq.http_status`.
    pub http_status: Option<u16>,
    /// `cpn.dlq.error`.
    pub error: Option<String>,
    /// `cpn.dlq.response_body` (the first bytes of the last response).
    pub response_body: Option<Vec<u8>>,
    /// `cpn.dlq.attempts`.
    pub attempts: Option<u32>,
    /// `cpn.dlq.first_attempt_at`.
    pub first_attempt_at: Option<SystemTime>,
    /// `cpn.dlq.last_attempt_at`.
    pub last_attempt_at: Option<SystemTime>,
    /// `cpn.dlq.target` (already without credentials).
    pub target: Option<String>,
    /// `cpn.dlq.group`.
    pub group: Option<String>,
    /// `cpn.dlq.relay`.
    pub relay: Option<String>,
    /// `__connect.errors.topic`: where the record was consumed from.
    pub original_topic: Option<String>,
    /// `__connect.errors.partition`.
    pub original_partition: Option<i32>,
    /// `__connect.errors.offset`.
    pub original_offset: Option<i64>,
    /// `cpn.dlq.original_timestamp` (ms since the epoch).
    pub original_timestamp_ms: Option<i64>,
    /// `cpn.dlq.replays`: how often this event was already replayed (0 if never).
    pub replays: u32,
    /// `cpn.dlq.replayed_from`, when the event came from an earlier replay.
    pub replayed_from: Option<String>,
    /// Fields of the value, when it is a JSON object; `None` when not JSON.
    pub event: Option<EventSummary>,
}

impl DeadLetterView {
    /// Decodes headers and the value's summary. Never fails.
    pub fn decode(raw: RawDeadLetter) -> Self {
        let pairs: Vec<(String, Vec<u8>)> = raw
            .headers
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect();
        let text = |name: &str| find_str(&pairs, name).map(str::to_owned);
        let num = |name: &str| find_str(&pairs, name).and_then(|s| s.trim().parse::<i64>().ok());
        let time = |name: &str| find_str(&pairs, name).and_then(|s| parse_rfc3339(s.trim()));
        let event = raw
            .value
            .as_deref()
            .and_then(|v| match serde_json::from_slice::<Value>(v) {
                Ok(Value::Object(o)) => Some(EventSummary::from_object(&o)),
                _ => None,
            });
        DeadLetterView {
            reason: text(h::REASON),
            http_status: num(h::HTTP_STATUS).and_then(|n| u16::try_from(n).ok()),
            error: text(h::ERROR),
            response_body: h::find(&pairs, h::RESPONSE_BODY).map(<[u8]>::to_vec),
            attempts: num(h::ATTEMPTS).and_then(|n| u32::try_from(n).ok()),
            first_attempt_at: time(h::FIRST_ATTEMPT_AT),
            last_attempt_at: time(h::LAST_ATTEMPT_AT),
            target: text(h::TARGET),
            group: text(h::GROUP),
            relay: text(h::RELAY),
            original_topic: text(h::CONNECT_TOPIC),
            original_partition: num(h::CONNECT_PARTITION).and_then(|n| i32::try_from(n).ok()),
            original_offset: num(h::CONNECT_OFFSET),
            original_timestamp_ms: num(h::ORIGINAL_TIMESTAMP),
            // An unreadable count reads as 0: only a hand-edited record has one.
            replays: num(h::REPLAYS)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            replayed_from: text(h::REPLAYED_FROM),
            event,
            raw,
        }
    }

    /// Partition in the dead-letter topic.
    pub fn partition(&self) -> i32 {
        self.raw.partition
    }

    /// Offset in the dead-letter topic.
    pub fn offset(&self) -> i64 {
        self.raw.offset
    }

    /// `PARTITION:OFFSET` in the dead-letter topic.
    pub fn coordinates(&self) -> String {
        format!("{}:{}", self.raw.partition, self.raw.offset)
    }

    /// The message GUID from the value; `None` when the value is not JSON or
    /// has no `GSW_MESSAGE_GUID` string.
    pub fn guid(&self) -> Option<&str> {
        self.event.as_ref().and_then(|e| e.guid.as_deref())
    }

    /// The dead-letter record's own timestamp.
    pub fn timestamp(&self) -> Option<SystemTime> {
        let ms = u64::try_from(self.raw.timestamp_ms?).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    }

    /// When the relay gave up on the record: `cpn.dlq.last_attempt_at`, else
    /// (no request was made, e.g. `invalid_payload`) the dead-letter record's
    /// timestamp. The time filters, `stats` hours and oldest/newest use this.
    pub fn at(&self) -> Option<SystemTime> {
        self.last_attempt_at.or_else(|| self.timestamp())
    }

    /// The `list --json` row.
    pub fn list_row(&self) -> ListRow {
        ListRow {
            partition: self.raw.partition,
            offset: self.raw.offset,
            guid: self.guid().map(str::to_owned),
            reason: self.reason.clone(),
            http_status: self.http_status,
            attempts: self.attempts,
            original_topic: self.original_topic.clone(),
            original_partition: self.original_partition,
            original_offset: self.original_offset,
            last_attempt_at: self.last_attempt_at.map(rfc3339),
            error: self.error.clone(),
        }
    }

    /// The `export` line: the record as read plus its decoded [`ListRow`].
    pub fn export_line(&self, topic: &str) -> ExportLine {
        ExportLine {
            topic: topic.to_owned(),
            partition: self.raw.partition,
            offset: self.raw.offset,
            timestamp: self.timestamp().map(rfc3339),
            key: self.raw.key.as_deref().map(bytes_json),
            headers: self
                .raw
                .headers
                .iter()
                .map(|(k, v)| ExportHeader {
                    key: k.clone(),
                    value: v.as_deref().map(bytes_json),
                })
                .collect(),
            value: self.raw.value.as_deref().map(bytes_json),
            dead_letter: self.list_row(),
        }
    }
}

/// One `list --json` line: exactly the keys `partition`, `offset`, `guid`,
/// `reason`, `http_status`, `attempts`, `original_topic`,
/// `original_partition`, `original_offset`, `last_attempt_at`, `error`, in
/// that order; unknown values are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListRow {
    /// Partition in the dead-letter topic.
    pub partition: i32,
    /// Offset in the dead-letter topic.
    pub offset: i64,
    /// Message GUID; `null` when the value is not JSON.
    pub guid: Option<String>,
    /// `cpn.dlq.reason`.
    pub reason: Option<String>,
    /// Last HTTP status.
    pub http_status: Option<u16>,
    /// Attempts made.
    pub attempts: Option<u32>,
    /// Where the record was consumed from.
    pub original_topic: Option<String>,
    /// Its partition there.
    pub original_partition: Option<i32>,
    /// Its offset there.
    pub original_offset: Option<i64>,
    /// Last attempt, RFC 3339; `null` when no request was made.
    pub last_attempt_at: Option<String>,
    /// `cpn.dlq.error`.
    pub error: Option<String>,
}

/// One `export` line: `topic`, `partition`, `offset`, `timestamp`, `key`,
/// `headers` (every one, in order, as `{"key", "value"}`), `value`, and the
/// decoded `dead_letter` ([`ListRow`]). Bytes are a JSON string when they
/// are UTF-8, else `{"hex": "..."}`; a missing key, value or header value is
/// `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportLine {
    /// The dead-letter topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The dead-letter record's timestamp, RFC 3339.
    pub timestamp: Option<String>,
    /// Key bytes.
    pub key: Option<Value>,
    /// Every header, in order.
    pub headers: Vec<ExportHeader>,
    /// Value bytes (the original event, untouched).
    pub value: Option<Value>,
    /// The decoded dead letter.
    pub dead_letter: ListRow,
}

/// One header of an [`ExportLine`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportHeader {
    /// Header name.
    pub key: String,
    /// Header value; `null` for a null header.
    pub value: Option<Value>,
}

macro_rules! json_display {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            /// One line of JSON.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // Only strings, numbers and string-keyed objects: serializing cannot fail.
                f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
            }
        }
    };
}
json_display!(ListRow);
json_display!(ExportLine);

/// Bytes as JSON: the text when UTF-8, else `{"hex": "..."}`.
pub fn bytes_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "hex": hex(b) }),
    }
}

/// Lower-case hex digits of `b`.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        // Writing to a String cannot fail.
        let _ = write!(s, "{byte:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::headers::DeadLetterInfo;
    use crate::policy::classify::DlqReason;

    const GUID: &str = "6F1C4A52-9D7E-4B1A-8C3E-2F5A7B9D0E11";

    fn info(reason: DlqReason) -> DeadLetterInfo {
        DeadLetterInfo {
            reason,
            http_status: Some(400),
            error: "HTTP 400".into(),
            location: None,
            response_body: b"{\"error\":\"unknown list\"}".to_vec(),
            attempts: 1,
            first_attempt_at: Some(
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_064_800_123),
            ),
            last_attempt_at: Some(
                SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_064_801_000),
            ),
            target: "https://crm.example/hook".into(),
            group: "cpn-relay".into(),
            relay: "relay-1".into(),
            topic: "contact-processed".into(),
            partition: 2,
            offset: 41,
            original_timestamp_ms: Some(1_764_064_799_000),
        }
    }

    /// A dead letter exactly as `DlqWriter` lays it out: original headers,
    /// then the `to_headers()` ones.
    fn raw(original: Vec<(&str, &[u8])>, info: &DeadLetterInfo, value: &[u8]) -> RawDeadLetter {
        let mut headers: Vec<(String, Option<Vec<u8>>)> = original
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v.to_vec())))
            .collect();
        headers.extend(
            info.to_headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Some(v))),
        );
        RawDeadLetter {
            partition: 1,
            offset: 7,
            timestamp_ms: Some(1_764_064_802_000),
            key: Some(b"LIST:17".to_vec()),
            value: Some(value.to_vec()),
            headers,
        }
    }

    fn body() -> Vec<u8> {
        format!(
            r#"{{"GSW_MESSAGE":"ContactProcessed","GSW_MESSAGE_GUID":"{GUID}","GSW_CALL_RESULT":33,"GSW_CAMPAIGN_NAME":"C","GSW_CALLING_LIST":"L","GSW_CAMPAIGN_GROUP_NAME":"G","GSW_CONTACT_MEDIA_TYPE":"voice"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn decodes_every_header_the_relay_writes() {
        let d = DeadLetterView::decode(raw(
            vec![("cpn.guid", GUID.as_bytes())],
            &info(DlqReason::HttpRejected),
            &body(),
        ));
        assert_eq!(d.reason.as_deref(), Some("http_rejected"));
        assert_eq!(d.http_status, Some(400));
        assert_eq!(d.error.as_deref(), Some("HTTP 400"));
        assert_eq!(
            d.response_body.as_deref(),
            Some(&b"{\"error\":\"unknown list\"}"[..])
        );
        assert_eq!(d.attempts, Some(1));
        assert_eq!(
            d.first_attempt_at.map(rfc3339).as_deref(),
            Some("2025-11-25T10:00:00.123Z")
        );
        assert_eq!(
            d.last_attempt_at.map(rfc3339).as_deref(),
            Some("2025-11-25T10:00:01.000Z")
        );
        assert_eq!(d.target.as_deref(), Some("https://crm.example/hook"));
        assert_eq!(d.group.as_deref(), Some("cpn-relay"));
        assert_eq!(d.relay.as_deref(), Some("relay-1"));
        assert_eq!(d.original_topic.as_deref(), Some("contact-processed"));
        assert_eq!(d.original_partition, Some(2));
        assert_eq!(d.original_offset, Some(41));
        assert_eq!(d.original_timestamp_ms, Some(1_764_064_799_000));
        assert_eq!(d.replays, 0);
        assert_eq!(d.replayed_from, None);
        let e = d.event.as_ref().unwrap();
        assert_eq!(d.guid(), Some(GUID));
        assert_eq!(e.call_result, Some(33));
        assert_eq!(e.campaign_group.as_deref(), Some("G"));
        assert_eq!(e.calling_list.as_deref(), Some("L"));
        assert_eq!(e.media_type.as_deref(), Some("voice"));
        assert_eq!(d.coordinates(), "1:7");
        assert_eq!(d.at(), d.last_attempt_at);
    }

    #[test]
    fn list_row_has_exactly_the_documented_keys() {
        let d = DeadLetterView::decode(raw(vec![], &info(DlqReason::HttpRejected), &body()));
        let line = d.list_row().to_string();
        let want = [
            "partition",
            "offset",
            "guid",
            "reason",
            "http_status",
            "attempts",
            "original_topic",
            "original_partition",
            "original_offset",
            "last_attempt_at",
            "error",
        ];
        let mut at = 0;
        for k in want {
            let i = line
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing in {line}"));
            assert!(i >= at, "{k} out of order in {line}");
            at = i;
        }
        let row: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            row.as_object().unwrap().len(),
            want.len(),
            "no other keys: {line}"
        );
        assert_eq!(row["partition"], 1);
        assert_eq!(row["offset"], 7);
        assert_eq!(row["guid"], GUID);
        assert_eq!(row["http_status"], 400);
        assert_eq!(row["original_offset"], 41);
        assert_eq!(row["last_attempt_at"], "2025-11-25T10:00:01.000Z");
    }

    #[test]
    fn a_value_that_is_not_json_still_decodes_with_no_guid() {
        let mut i = info(DlqReason::InvalidPayload);
        i.http_status = None;
        i.attempts = 0;
        i.first_attempt_at = None;
        i.last_attempt_at = None;
        let d = DeadLetterView::decode(raw(vec![], &i, b"\xff not json"));
        assert!(d.event.is_none());
        assert_eq!(d.guid(), None);
        let row = serde_json::to_value(d.list_row()).unwrap();
        assert!(
            row["guid"].is_null()
                && row["http_status"].is_null()
                && row["last_attempt_at"].is_null()
        );
        assert_eq!(row["reason"], "invalid_payload");
        assert_eq!(d.at(), d.timestamp(), "no attempt: the record timestamp");
        let line = serde_json::to_value(d.export_line("D")).unwrap();
        assert_eq!(line["value"]["hex"], "ff206e6f74206a736f6e");
    }

    #[test]
    fn a_record_without_dlq_headers_decodes_to_nothing_known() {
        let d = DeadLetterView::decode(RawDeadLetter {
            partition: 0,
            offset: 0,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![
                ("x".into(), None),
                (h::ATTEMPTS.into(), Some(b"many".to_vec())),
            ],
        });
        assert_eq!(
            (d.reason.as_deref(), d.attempts, d.at(), d.event.as_ref()),
            (None, None, None, None)
        );
    }

    #[test]
    fn the_last_replay_count_wins() {
        // A replayed record carries cpn.dlq.replays; dead-lettered again, it
        // keeps it among its original headers.
        let d = DeadLetterView::decode(raw(
            vec![(h::REPLAYS, b"2"), (h::REPLAYED_FROM, b"D:0:5")],
            &info(DlqReason::RetriesExhausted),
            &body(),
        ));
        assert_eq!(d.replays, 2);
        assert_eq!(d.replayed_from.as_deref(), Some("D:0:5"));
    }

    #[test]
    fn export_keeps_every_header_in_order() {
        let d = DeadLetterView::decode(raw(
            vec![("cpn.guid", GUID.as_bytes())],
            &info(DlqReason::HttpRejected),
            &body(),
        ));
        let line = serde_json::to_value(d.export_line("D")).unwrap();
        assert_eq!(line["topic"], "D");
        assert_eq!(line["key"], "LIST:17");
        assert_eq!(line["value"].as_str().unwrap().as_bytes(), &body()[..]);
        let headers = line["headers"].as_array().unwrap();
        assert_eq!(headers.len(), d.raw.headers.len());
        assert_eq!(headers[0]["key"], "cpn.guid");
        assert_eq!(headers[1]["key"], h::REASON);
        assert_eq!(
            line["dead_letter"],
            serde_json::to_value(d.list_row()).unwrap()
        );
    }
}
