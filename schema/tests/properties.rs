//! Invariants of the schema crate over generated inputs (proptest).
//!
//! - Every valid event survives serialize → parse → serialize byte for byte.
//! - No input, bytes or JSON, panics the validator.
//! - One corrupted field is accepted or reported on that field alone.
//! - `Timestamp` and `Guid` text round-trips.

use std::collections::BTreeMap;

use cpn_schema::{ContactProcessed, Guid, Invalid, MediaType, SPEC_FIELDS, Timestamp};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

// ---------------------------------------------------------------------------
// Generators.

/// A GUID in any spelling OCS might use.
fn guid() -> impl Strategy<Value = Guid> {
    (any::<u128>(), 0..5u8).prop_map(|(bits, form)| {
        let uuid = uuid::Uuid::from_u128(bits);
        let text = match form {
            0 => uuid.hyphenated().to_string(),
            1 => uuid.hyphenated().to_string().to_uppercase(),
            2 => format!("{{{}}}", uuid.hyphenated().to_string().to_uppercase()),
            3 => uuid.simple().to_string(),
            _ => uuid.urn().to_string(),
        };
        Guid::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        // Realistic: 2000-01-01 .. 2100-01-01.
        946_684_800_000..4_102_444_800_000i64,
        0..=i64::MAX,
    ]
    .prop_map(|millis| Timestamp::from_unix_millis(millis).unwrap_or(Timestamp::EPOCH))
}

fn media_type() -> impl Strategy<Value = MediaType> {
    prop_oneof![
        Just(MediaType::Voice),
        Just(MediaType::Sms),
        Just(MediaType::Email),
    ]
}

/// Any Unicode text, including quotes, backslashes and control characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[A-Za-z0-9 :_@.+-]{0,24}"]
}

/// User-defined field names: anything but a spec field name.
fn user_fields() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(
        prop_oneof![any::<String>(), "Other[0-9]{1,2}", "GSW_[A-Z_]{1,12}"]
            .prop_filter("not a spec field", |k| !SPEC_FIELDS.contains(&k.as_str())),
        text(),
        0..6,
    )
}

prop_compose! {
    fn identity()(
        message_guid in guid(), timestamp in timestamp(), call_attempt_guid in guid(),
        phone in text(), phone_type in any::<i64>(), chain_id in any::<i64>(),
        chain_n in any::<i64>(), record_handle in any::<i64>(), reason in any::<i64>(),
    ) -> (Guid, Timestamp, Guid, String, [i64; 5]) {
        (message_guid, timestamp, call_attempt_guid, phone,
         [phone_type, chain_id, chain_n, record_handle, reason])
    }
}

prop_compose! {
    fn campaign()(
        chain_lifo_guid in option::of(guid()), customer_id in option::of(text()),
        call_result in any::<i64>(), disposition_code in option::of(text()),
        campaign_name in text(), campaign_template_name in option::of(text()),
        media_type in media_type(), calling_list in text(), campaign_group_name in text(),
        campaign_group_guid in guid(), group_name in text(), queue_name in text(),
    ) -> (Option<Guid>, Option<String>, i64, Option<String>, String, Option<String>,
          MediaType, String, String, Guid, String, String) {
        (chain_lifo_guid, customer_id, call_result, disposition_code, campaign_name,
         campaign_template_name, media_type, calling_list, campaign_group_name,
         campaign_group_guid, group_name, queue_name)
    }
}

prop_compose! {
    fn processing()(
        dial_mode in any::<i64>(), agent_id in option::of(text()),
        record_type in any::<i64>(), record_status in any::<i64>(),
        optimize_by in option::of(any::<i64>()), optimize_goal in option::of(any::<i64>()),
        start_processing in timestamp(),
        times in vec(option::of(timestamp()), 15),
    ) -> (i64, Option<String>, i64, i64, Option<i64>, Option<i64>, Timestamp,
          Vec<Option<Timestamp>>) {
        (dial_mode, agent_id, record_type, record_status, optimize_by, optimize_goal,
         start_processing, times)
    }
}

prop_compose! {
    fn event()(id in identity(), c in campaign(), p in processing(), user_fields in user_fields())
        -> ContactProcessed {
        let (message_guid, timestamp, call_attempt_guid, phone, ints) = id;
        let [phone_type, chain_id, chain_n, record_handle, reason] = ints;
        let (chain_lifo_guid, customer_id, call_result, disposition_code, campaign_name,
             campaign_template_name, media_type, calling_list, campaign_group_name,
             campaign_group_guid, group_name, queue_name) = c;
        let (dial_mode, agent_id, record_type, record_status, optimize_by, optimize_goal,
             start_processing, times) = p;
        let t = |i: usize| times.get(i).copied().flatten();
        ContactProcessed {
            message_guid, timestamp, call_attempt_guid, phone, phone_type, chain_id, chain_n,
            record_handle, reason, chain_lifo_guid, customer_id, call_result, disposition_code,
            campaign_name, campaign_template_name, media_type, calling_list,
            campaign_group_name, campaign_group_guid, group_name, queue_name, dial_mode,
            agent_id, record_type, record_status, optimize_by, optimize_goal, start_processing,
            call_time: t(0), scheduled_time: t(1), dialing: t(2), ringing: t(3),
            released: t(4), answered: t(5), cpd_completed: t(6), queued: t(7),
            agent_ringing: t(8), agent_answered: t(9), diverted: t(10), abandoned: t(11),
            agent_released: t(12), acw_completed: t(13), complete_processing: t(14),
            user_fields,
        }
    }
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "[0-9]{1,12}\\.[0-9]{3}".prop_map(Value::String),
        guid().prop_map(|g| Value::String(g.to_string())),
        prop_oneof![
            Just("voice"),
            Just("sms"),
            Just("email"),
            Just("ContactProcessed")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(
                prop_oneof![
                    any::<String>(),
                    proptest::sample::select(SPEC_FIELDS.to_vec()).prop_map(str::to_owned)
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn stamp() -> (Guid, Timestamp) {
    (Guid::new_v4(), Timestamp::EPOCH)
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_valid_event_round_trips_byte_identically(event in event()) {
        let first = event.to_json_vec();
        let parsed = ContactProcessed::from_json(&first);
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed, &event);
        prop_assert_eq!(parsed.to_json_vec(), first);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048)) {
        let _ = ContactProcessed::from_json(&bytes);
        let _ = ContactProcessed::from_json_assigning(&bytes, stamp);
    }

    #[test]
    fn json_looking_bytes_never_panic(
        bytes in "[{}\\[\\]\":,0-9.eE+\\-a-zA-Z_\\\\ ]{0,256}"
    ) {
        let _ = ContactProcessed::from_json(bytes.as_bytes());
    }

    #[test]
    fn arbitrary_json_values_never_panic(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        match ContactProcessed::from_json(&bytes) {
            Err(Invalid::Fields(problems)) => prop_assert!(!problems.is_empty()),
            Err(Invalid::Syntax { .. }) => prop_assert!(false, "valid JSON read as a syntax error"),
            Ok(_) => {}
        }
        let _ = ContactProcessed::from_json_assigning(&bytes, stamp);
    }

    #[test]
    fn one_corrupted_field_is_accepted_or_reported_on_that_field(
        event in event(),
        field in prop_oneof![
            proptest::sample::select(SPEC_FIELDS.to_vec()).prop_map(str::to_owned),
            "Other[0-9]",
        ],
        value in json_value(),
    ) {
        let mut body: Map<String, Value> = serde_json::from_slice(&event.to_json_vec()).unwrap();
        body.insert(field.clone(), value);
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Err(error) = ContactProcessed::from_json(&bytes) {
            let problems = error.problems();
            prop_assert!(!problems.is_empty(), "{}", error);
            for problem in problems {
                prop_assert_eq!(&problem.field, &field, "{}", error);
            }
        }
    }

    #[test]
    fn timestamp_display_parse_round_trips(millis in 0..=i64::MAX) {
        let ts = Timestamp::from_unix_millis(millis).unwrap();
        let text = ts.to_string();
        prop_assert_eq!(Timestamp::parse(&text), Ok(ts));
        prop_assert_eq!(ts.unix_millis(), millis);
    }

    #[test]
    fn timestamp_parse_of_any_text_is_total_and_canonical(text in "\\PC{0,24}|[0-9]{1,20}\\.[0-9]{0,4}") {
        if let Ok(ts) = Timestamp::parse(&text) {
            // Accepted text prints back the same, bar leading zeros.
            let (seconds, millis) = text.split_once('.').unwrap();
            let seconds = seconds.trim_start_matches('0');
            let seconds = if seconds.is_empty() { "0" } else { seconds };
            prop_assert_eq!(ts.to_string(), format!("{seconds}.{millis}"));
            prop_assert_eq!(Timestamp::parse(&ts.to_string()), Ok(ts));
        }
    }

    #[test]
    fn guid_parse_keeps_accepted_text_verbatim(text in "\\PC{0,48}|[{]?[0-9a-fA-F-]{32,36}[}]?") {
        let ours = Guid::parse(&text);
        prop_assert_eq!(ours.is_ok(), uuid::Uuid::parse_str(&text).is_ok());
        if let Ok(guid) = ours {
            prop_assert_eq!(guid.as_str(), text.as_str());
        }
    }
}
