//! Fuzz target for the event validator (bolero). Under `cargo test` it runs
//! random inputs for a bounded time; `cargo +nightly bolero test -p
//! cpn-schema --test fuzz validator_never_panics --engine libfuzzer` runs it
//! coverage-guided (tests/FUZZING.md).
//!
//! Properties: no input panics the validator; a rejection names at least
//! one problem; whatever is accepted serializes and parses back to itself.

use std::time::Duration;

use cpn_schema::ContactProcessed;

#[test]
fn validator_never_panics_and_accepted_events_round_trip() {
    bolero::check!()
        .with_test_time(Duration::from_secs(5))
        .for_each(|bytes: &[u8]| match ContactProcessed::from_json(bytes) {
            Ok(event) => {
                let again = serde_json::to_vec(&event).expect("a valid event serializes");
                let back = ContactProcessed::from_json(&again).expect("its own JSON validates");
                assert_eq!(back, event, "round trip");
            }
            Err(invalid) => assert!(!invalid.to_string().is_empty(), "a rejection says why"),
        });
}

#[test]
fn a_valid_event_with_one_field_replaced_never_panics() {
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../examples/valid/email-user-fields.json"))
            .unwrap_or_default();
    bolero::check!()
        .with_test_time(Duration::from_secs(5))
        .with_type::<(u8, String, bool)>()
        .for_each(|(field, value, as_number)| {
            let mut v = sample.clone();
            if let Some(o) = v.as_object_mut() {
                let keys: Vec<String> = o.keys().cloned().collect();
                if let Some(k) = keys.get(usize::from(*field) % keys.len().max(1)) {
                    let new = match value.parse::<f64>() {
                        Ok(n) if *as_number => serde_json::json!(n),
                        _ => serde_json::Value::String(value.clone()),
                    };
                    o.insert(k.clone(), new);
                }
            }
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            if let Err(invalid) = ContactProcessed::from_json(&bytes) {
                assert!(!invalid.to_string().is_empty());
            }
        });
}
