//! `ContactProcessed`: the notification body, one field per spec entry.
//!
//! The struct mirrors `spec/contact-processed.md` field by field, in spec
//! order, each under its exact JSON name. It is the in-memory form only: it
//! holds no raw bytes. Reading JSON (with validation) lives in `validate`;
//! this module writes the canonical JSON:
//!
//! - `GSW_MESSAGE: "ContactProcessed"` first (it is the serde tag, not a
//!   field: it never varies),
//! - then every spec field in spec order, optional ones omitted when `None`
//!   (the spec says they are never sent as `null`),
//! - then the user-defined fields in key order.
//!
//! The same event always serializes to the same bytes, so a body produced
//! once can be compared, hashed or re-produced byte for byte.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

use crate::guid::Guid;
use crate::media::MediaType;
use crate::timestamp::Timestamp;

/// The value of `GSW_MESSAGE`, the same in every event.
pub const MESSAGE_NAME: &str = "ContactProcessed";

/// Every JSON name the spec defines, in spec order, `GSW_MESSAGE` first.
///
/// Any other key of the body is a user-defined field.
pub const SPEC_FIELDS: [&str; 44] = [
    "GSW_MESSAGE",
    "GSW_MESSAGE_GUID",
    "GSW_TIMESTAMP",
    "GSW_CALL_ATTEMPT_GUID",
    "GSW_PHONE",
    "GSW_PHONE_TYPE",
    "GSW_CHAIN_ID",
    "GSW_CHAIN_N",
    "GSW_RECORD_HANDLE",
    "GSW_REASON",
    "GSW_CHAIN_LIFO_GUID",
    "GSW_CUSTOMER_ID",
    "GSW_CALL_RESULT",
    "GSW_DISPOSITION_CODE",
    "GSW_CAMPAIGN_NAME",
    "GSW_CAMPAIGN_TEMPLATE_NAME",
    "GSW_CONTACT_MEDIA_TYPE",
    "GSW_CALLING_LIST",
    "GSW_CAMPAIGN_GROUP_NAME",
    "GSW_CAMPAIGN_GROUP_GUID",
    "GSW_GROUP_NAME",
    "GSW_QUEUE_NAME",
    "GSW_DIAL_MODE",
    "GSW_AGENT_ID",
    "GSW_RECORD_TYPE",
    "GSW_RECORD_STATUS",
    "GSW_OPTIMIZE_BY",
    "GSW_OPTIMIZE_GOAL",
    "GSW_START_PROCESSING",
    "GSW_CALL_TIME",
    "GSW_SCHEDULED_TIME",
    "GSW_DIALING",
    "GSW_RINGING",
    "GSW_RELEASED",
    "GSW_ANSWERED",
    "GSW_CPD_COMPLETED",
    "GSW_QUEUED",
    "GSW_AGENT_RINGING",
    "GSW_AGENT_ANSWERED",
    "GSW_DIVERTED",
    "GSW_ABANDONED",
    "GSW_AGENT_RELEASED",
    "GSW_ACW_COMPLETED",
    "GSW_COMPLETE_PROCESSING",
];

/// Position of `name` in [`SPEC_FIELDS`], or `None` for a user-defined field.
pub(crate) fn spec_position(name: &str) -> Option<usize> {
    SPEC_FIELDS.iter().position(|field| *field == name)
}

/// One contact-processed notification: the chain's primary record after the
/// chain reached the *processed* state (spec: "When one is produced").
///
/// Build one from JSON with [`ContactProcessed::from_json`] (which validates
/// and reports every problem) and write it with
/// [`ContactProcessed::to_json_vec`]. Fields are public so code can build an
/// event directly; the types keep it valid (GUIDs, timestamps and media types
/// are checked on construction), so serializing cannot fail.
///
/// Integer codes are opaque: any `i64` is valid, known or not. See
/// [`crate::codes`] for display names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "GSW_MESSAGE", rename = "ContactProcessed")]
#[schemars(
    title = "ContactProcessed",
    description = "A Genesys OCS contact-processed notification (one per processed chain), \
                   as carried by cpn. Any key not listed here is a user-defined calling-list \
                   field whose value is a string."
)]
pub struct ContactProcessed {
    /// Unique id of this notification; also the `ETag` of the delivery; stable
    /// across re-sends.
    #[serde(rename = "GSW_MESSAGE_GUID")]
    pub message_guid: Guid,
    /// UTC time the notification was generated; stable across re-sends.
    #[serde(rename = "GSW_TIMESTAMP")]
    pub timestamp: Timestamp,
    /// Unique id of the call-processing attempt.
    #[serde(rename = "GSW_CALL_ATTEMPT_GUID")]
    pub call_attempt_guid: Guid,
    /// Contact info (phone number or address) of the primary record.
    #[serde(rename = "GSW_PHONE")]
    pub phone: String,
    /// Contact info type of the primary record; known codes in spec/enumerations.md.
    #[serde(rename = "GSW_PHONE_TYPE")]
    pub phone_type: i64,
    /// Chain id of the primary record.
    #[serde(rename = "GSW_CHAIN_ID")]
    pub chain_id: i64,
    /// Chain number (position) of the primary record.
    #[serde(rename = "GSW_CHAIN_N")]
    pub chain_n: i64,
    /// Record handle of the primary record (troubleshooting).
    #[serde(rename = "GSW_RECORD_HANDLE")]
    pub record_handle: i64,
    /// Cause code of the chain-processed event (numbers not public).
    #[serde(rename = "GSW_REASON")]
    pub reason: i64,
    /// Set for chains created by a LIFO campaign group (CX Contact).
    #[serde(
        rename = "GSW_CHAIN_LIFO_GUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_lifo_guid: Option<Guid>,
    /// The calling list's client id field, when the list defines it.
    #[serde(rename = "GSW_CUSTOMER_ID", skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Call result of the primary record; known codes in spec/enumerations.md.
    #[serde(rename = "GSW_CALL_RESULT")]
    pub call_result: i64,
    /// Disposition code from the agent desktop or a validation server.
    #[serde(
        rename = "GSW_DISPOSITION_CODE",
        skip_serializing_if = "Option::is_none"
    )]
    pub disposition_code: Option<String>,
    /// Campaign name (not the campaign group).
    #[serde(rename = "GSW_CAMPAIGN_NAME")]
    pub campaign_name: String,
    /// Campaign template name (CX Contact only).
    #[serde(
        rename = "GSW_CAMPAIGN_TEMPLATE_NAME",
        skip_serializing_if = "Option::is_none"
    )]
    pub campaign_template_name: Option<String>,
    /// Media type of the contact.
    #[serde(rename = "GSW_CONTACT_MEDIA_TYPE")]
    pub media_type: MediaType,
    /// Calling list name; with the chain id, the Kafka record key.
    #[serde(rename = "GSW_CALLING_LIST")]
    pub calling_list: String,
    /// Campaign group name.
    #[serde(rename = "GSW_CAMPAIGN_GROUP_NAME")]
    pub campaign_group_name: String,
    /// Campaign group (session) GUID.
    #[serde(rename = "GSW_CAMPAIGN_GROUP_GUID")]
    pub campaign_group_guid: Guid,
    /// Agent or place group name.
    #[serde(rename = "GSW_GROUP_NAME")]
    pub group_name: String,
    /// Voice transfer destination DN name.
    #[serde(rename = "GSW_QUEUE_NAME")]
    pub queue_name: String,
    /// Current dialing mode of the campaign group; known codes in spec/enumerations.md.
    #[serde(rename = "GSW_DIAL_MODE")]
    pub dial_mode: i64,
    /// Agent id; successful calls only.
    #[serde(rename = "GSW_AGENT_ID", skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Record type after processing; known codes in spec/enumerations.md.
    #[serde(rename = "GSW_RECORD_TYPE")]
    pub record_type: i64,
    /// Record status; known codes in spec/enumerations.md.
    #[serde(rename = "GSW_RECORD_STATUS")]
    pub record_status: i64,
    /// Optimisation method; predictive modes only; known codes in spec/enumerations.md.
    #[serde(rename = "GSW_OPTIMIZE_BY", skip_serializing_if = "Option::is_none")]
    pub optimize_by: Option<i64>,
    /// Optimisation goal; predictive modes only.
    #[serde(rename = "GSW_OPTIMIZE_GOAL", skip_serializing_if = "Option::is_none")]
    pub optimize_goal: Option<i64>,
    /// When processing of this attempt started.
    #[serde(rename = "GSW_START_PROCESSING")]
    pub start_processing: Timestamp,
    /// When the dial request was sent; absent when nothing was dialled.
    #[serde(rename = "GSW_CALL_TIME", skip_serializing_if = "Option::is_none")]
    pub call_time: Option<Timestamp>,
    /// When the record is rescheduled to.
    #[serde(rename = "GSW_SCHEDULED_TIME", skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Timestamp>,
    /// Dialing started.
    #[serde(rename = "GSW_DIALING", skip_serializing_if = "Option::is_none")]
    pub dialing: Option<Timestamp>,
    /// Client (customer) ringing.
    #[serde(rename = "GSW_RINGING", skip_serializing_if = "Option::is_none")]
    pub ringing: Option<Timestamp>,
    /// Failed call released.
    #[serde(rename = "GSW_RELEASED", skip_serializing_if = "Option::is_none")]
    pub released: Option<Timestamp>,
    /// Client picked up.
    #[serde(rename = "GSW_ANSWERED", skip_serializing_if = "Option::is_none")]
    pub answered: Option<Timestamp>,
    /// Call progress detection finished.
    #[serde(rename = "GSW_CPD_COMPLETED", skip_serializing_if = "Option::is_none")]
    pub cpd_completed: Option<Timestamp>,
    /// Call queued.
    #[serde(rename = "GSW_QUEUED", skip_serializing_if = "Option::is_none")]
    pub queued: Option<Timestamp>,
    /// Agent ringing.
    #[serde(rename = "GSW_AGENT_RINGING", skip_serializing_if = "Option::is_none")]
    pub agent_ringing: Option<Timestamp>,
    /// Agent established.
    #[serde(rename = "GSW_AGENT_ANSWERED", skip_serializing_if = "Option::is_none")]
    pub agent_answered: Option<Timestamp>,
    /// Answering machine call diverted.
    #[serde(rename = "GSW_DIVERTED", skip_serializing_if = "Option::is_none")]
    pub diverted: Option<Timestamp>,
    /// Call abandoned.
    #[serde(rename = "GSW_ABANDONED", skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<Timestamp>,
    /// Agent released the call.
    #[serde(rename = "GSW_AGENT_RELEASED", skip_serializing_if = "Option::is_none")]
    pub agent_released: Option<Timestamp>,
    /// After-call work completed.
    #[serde(rename = "GSW_ACW_COMPLETED", skip_serializing_if = "Option::is_none")]
    pub acw_completed: Option<Timestamp>,
    /// Attempt completed and removed from active processing.
    #[serde(
        rename = "GSW_COMPLETE_PROCESSING",
        skip_serializing_if = "Option::is_none"
    )]
    pub complete_processing: Option<Timestamp>,
    /// User-defined calling-list fields (any other key, e.g. `Other1`), carried
    /// untouched. Values are strings.
    ///
    /// A key equal to a spec field name (see [`SPEC_FIELDS`]) can never come
    /// from parsing; if code puts one here it is left out of the JSON, because
    /// writing it would produce a duplicate key.
    #[serde(flatten, serialize_with = "serialize_user_fields")]
    pub user_fields: BTreeMap<String, String>,
}

/// Writes the user-defined fields, skipping any that would shadow a spec field.
fn serialize_user_fields<S: Serializer>(
    fields: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(
        fields
            .iter()
            .filter(|(key, _)| spec_position(key).is_none()),
    )
}

impl ContactProcessed {
    /// The canonical JSON body: `GSW_MESSAGE` first, spec fields in spec
    /// order with `None` ones omitted, then user-defined fields by key.
    #[must_use]
    pub fn to_json_vec(&self) -> Vec<u8> {
        // A typical body is about 1.3 KB (spec, "Limits worth knowing").
        let mut body = Vec::with_capacity(2048);
        // Cannot fail: the writer is a Vec (its io::Write never errors), every
        // map key is a string, and every value is a string, an integer or a
        // type whose Serialize writes a string and never returns an error
        // (Guid: stored text; Timestamp: integer Display; MediaType: unit
        // variant). serde_json's only other errors are for non-string keys and
        // non-finite floats, neither of which exists here.
        serde_json::to_writer(&mut body, self)
            .expect("serializing a ContactProcessed into a Vec cannot fail");
        body
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fully populated event (every optional field set, two user fields).
    pub(crate) fn full_event() -> ContactProcessed {
        let ts = |ms| Timestamp::from_unix_millis(ms).unwrap();
        ContactProcessed {
            message_guid: Guid::parse("{0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C}").unwrap(),
            timestamp: ts(1_619_132_460_500),
            call_attempt_guid: Guid::parse("5f0c6c1e-8a87-4e8e-a3c7-1c2d3e4f5a6b").unwrap(),
            phone: "+14155550123".into(),
            phone_type: 4,
            chain_id: 17,
            chain_n: 0,
            record_handle: 4242,
            reason: 3,
            chain_lifo_guid: Some(Guid::parse("9d7b1e44-2f7a-4a8b-9c1d-2e3f4a5b6c7d").unwrap()),
            customer_id: Some("CUST-00017".into()),
            call_result: 33,
            disposition_code: Some("SALE".into()),
            campaign_name: "Spring Renewals".into(),
            campaign_template_name: Some("Renewals template".into()),
            media_type: MediaType::Voice,
            calling_list: "renewals:east".into(),
            campaign_group_name: "Renewals@Sales".into(),
            campaign_group_guid: Guid::parse("1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d").unwrap(),
            group_name: "Sales".into(),
            queue_name: "7001".into(),
            dial_mode: 1,
            agent_id: Some("agent042".into()),
            record_type: 2,
            record_status: 3,
            optimize_by: Some(3),
            optimize_goal: Some(80),
            start_processing: ts(1_619_132_400_000),
            call_time: Some(ts(1_619_132_400_100)),
            scheduled_time: Some(ts(1_619_218_800_000)),
            dialing: Some(ts(1_619_132_400_200)),
            ringing: Some(ts(1_619_132_401_000)),
            released: Some(ts(1_619_132_402_000)),
            answered: Some(ts(1_619_132_405_000)),
            cpd_completed: Some(ts(1_619_132_405_900)),
            queued: Some(ts(1_619_132_406_000)),
            agent_ringing: Some(ts(1_619_132_406_100)),
            agent_answered: Some(ts(1_619_132_407_000)),
            diverted: Some(ts(1_619_132_407_100)),
            abandoned: Some(ts(1_619_132_407_200)),
            agent_released: Some(ts(1_619_132_450_000)),
            acw_completed: Some(ts(1_619_132_460_000)),
            complete_processing: Some(ts(1_619_132_460_400)),
            user_fields: BTreeMap::from([
                ("Other1".to_owned(), "renewed".to_owned()),
                ("Zone".to_owned(), "Europe/Zürich \"quoted\"".to_owned()),
            ]),
        }
    }

    /// The keys of a JSON object body, in the order they were written.
    fn keys_in_order(body: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(body).unwrap();
        let mut keys = Vec::new();
        let mut rest = text;
        // Every key in these bodies is followed by `":`; values never contain it.
        while let Some(end) = rest.find("\":") {
            let start = rest[..end].rfind('"').unwrap();
            keys.push(rest[start + 1..end].to_owned());
            rest = &rest[end + 2..];
        }
        keys
    }

    #[test]
    fn writes_gsw_message_first_then_spec_order_then_user_fields() {
        let body = full_event().to_json_vec();
        let mut expected: Vec<String> = SPEC_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        expected.extend(["Other1".to_owned(), "Zone".to_owned()]);
        assert_eq!(keys_in_order(&body), expected);
        assert!(body.starts_with(br#"{"GSW_MESSAGE":"ContactProcessed","#));
    }

    #[test]
    fn omits_absent_optional_fields_and_never_writes_null() {
        let mut event = full_event();
        event.chain_lifo_guid = None;
        event.agent_id = None;
        event.optimize_by = None;
        event.call_time = None;
        let body = String::from_utf8(event.to_json_vec()).unwrap();
        for absent in [
            "GSW_CHAIN_LIFO_GUID",
            "GSW_AGENT_ID",
            "GSW_OPTIMIZE_BY",
            "GSW_CALL_TIME",
        ] {
            assert!(!body.contains(absent), "{absent} in {body}");
        }
        assert!(!body.contains("null"), "{body}");
    }

    #[test]
    fn writes_guids_verbatim_and_timestamps_as_strings() {
        let body = String::from_utf8(full_event().to_json_vec()).unwrap();
        assert!(body.contains(r#""GSW_MESSAGE_GUID":"{0B5E7A1C-3D2F-4E6A-9B8C-7D6E5F4A3B2C}""#));
        assert!(body.contains(r#""GSW_TIMESTAMP":"1619132460.500""#));
        assert!(body.contains(r#""GSW_CONTACT_MEDIA_TYPE":"voice""#));
        assert!(body.contains(r#""Zone":"Europe/Zürich \"quoted\"""#));
    }

    #[test]
    fn leaves_out_user_fields_that_shadow_spec_fields() {
        let mut event = full_event();
        event
            .user_fields
            .insert("GSW_PHONE".into(), "shadow".into());
        event
            .user_fields
            .insert("GSW_MESSAGE".into(), "shadow".into());
        let body = String::from_utf8(event.to_json_vec()).unwrap();
        assert!(!body.contains("shadow"), "{body}");
    }
}
