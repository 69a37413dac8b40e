//! `ContactProcessed`: the notification body, one field per spec entry.
//!
//! The struct mirrors `spec/contact-processed.md` field by field, in spec
//! order, each under its exact JSON name; the fields are not written here but
//! expanded from the table in `fields` (one row per spec field). It is the
//! in-memory form only: it holds no raw bytes. Reading JSON (with validation)
//! lives in `validate`; this module writes the canonical JSON:
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

use crate::fields::spec_fields;
use crate::guid::Guid;
use crate::media::MediaType;
use crate::timestamp::Timestamp;

/// The value of `GSW_MESSAGE`, the same in every event.
pub const MESSAGE_NAME: &str = "ContactProcessed";

/// Expands the field table (`crate::fields`) into [`SPEC_FIELDS`] and the
/// [`ContactProcessed`] struct.
///
/// The struct needs a different field type and serde attribute for mandatory
/// and optional rows, which a single repetition cannot choose, so the rows are
/// munched one at a time into `[fields]`; the JSON names are collected in the
/// same pass into `[names]`.
macro_rules! contact_processed {
    (@munch [$($names:tt)*] [$($fields:tt)*]
        $(#[doc = $doc:literal])* mandatory $json:literal => $field:ident: $ty:ty,
        $($rest:tt)*
    ) => {
        contact_processed! { @munch [$($names)* $json,] [$($fields)*
            $(#[doc = $doc])*
            #[serde(rename = $json)]
            pub $field: $ty,
        ] $($rest)* }
    };
    (@munch [$($names:tt)*] [$($fields:tt)*]
        $(#[doc = $doc:literal])* optional $json:literal => $field:ident: $ty:ty,
        $($rest:tt)*
    ) => {
        contact_processed! { @munch [$($names)* $json,] [$($fields)*
            $(#[doc = $doc])*
            #[serde(rename = $json, skip_serializing_if = "Option::is_none")]
            pub $field: Option<$ty>,
        ] $($rest)* }
    };
    (@munch [$($names:tt)*] [$($fields:tt)*]) => {
        /// Every JSON name the spec defines, in spec order, `GSW_MESSAGE` first.
        ///
        /// Any other key of the body is a user-defined field.
        pub const SPEC_FIELDS: [&str; [$($names)*].len() + 1] = ["GSW_MESSAGE", $($names)*];

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
            $($fields)*
            /// User-defined calling-list fields (any other key, e.g. `Other1`), carried
            /// untouched. Values are strings.
            ///
            /// A key equal to a spec field name (see [`SPEC_FIELDS`]) can never come
            /// from parsing; if code puts one here it is left out of the JSON, because
            /// writing it would produce a duplicate key.
            #[serde(flatten, serialize_with = "serialize_user_fields")]
            pub user_fields: BTreeMap<String, String>,
        }
    };
    ($($rows:tt)*) => {
        contact_processed! { @munch [] [] $($rows)* }
    };
}

spec_fields!(contact_processed);

/// Position of `name` in [`SPEC_FIELDS`], or `None` for a user-defined field.
pub(crate) fn spec_position(name: &str) -> Option<usize> {
    SPEC_FIELDS.iter().position(|field| *field == name)
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
