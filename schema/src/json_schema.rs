//! The JSON Schema (draft 2020-12) of the ContactProcessed body.
//!
//! Generated from the Rust types with `schemars`, so it cannot drift from the
//! code; the checked-in copy `schema/contact-processed.schema.json` is for
//! people and for receivers written in other languages, and a test fails when
//! it is out of date (regenerate with `CPN_BLESS=1 cargo test -p cpn-schema`).
//!
//! It describes what cpn *writes*: optional fields are absent, never `null`.
//! The validator is slightly more lenient on input (it reads a `null`
//! optional field as absent; see `validate`). What a schema cannot say, and
//! the validator also checks: JSON integers must fit in `i64`, and keys must
//! be unique.

use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use schemars::{Schema, json_schema};

use crate::event::{ContactProcessed, MESSAGE_NAME};

/// The `$id` of the published schema.
pub const SCHEMA_ID: &str = "https://example.invalid/cpn/contact-processed.schema.json";

/// The JSON Schema of a ContactProcessed body, draft 2020-12.
#[must_use]
pub fn json_schema() -> Schema {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(NoNullOptionals)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<ContactProcessed>();
    schema.insert("$id".to_owned(), SCHEMA_ID.into());
    pin_message_name(&mut schema);
    schema
}

/// The schema text as checked in: pretty-printed, with a final newline.
#[must_use]
pub fn json_schema_text() -> String {
    // Serializing a `Schema` (a JSON value with string keys) cannot fail.
    let mut text = serde_json::to_string_pretty(&json_schema())
        .expect("a JSON Schema value always serializes");
    text.push('\n');
    text
}

/// schemars writes the serde tag as `{"type": "string", "const": ...}`; make
/// sure it is there and required whatever schemars version does it.
fn pin_message_name(schema: &mut Schema) {
    if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        properties.insert(
            "GSW_MESSAGE".to_owned(),
            json_schema!({
                "description": "Always \"ContactProcessed\".",
                "type": "string",
                "const": MESSAGE_NAME,
            })
            .into(),
        );
    }
    if let Some(required) = schema
        .get_mut("required")
        .and_then(|r| r.as_array_mut())
        .filter(|r| !r.iter().any(|name| name == "GSW_MESSAGE"))
    {
        required.insert(0, "GSW_MESSAGE".into());
    }
}

/// Optional fields are omitted, never `null` (spec); schemars would allow
/// `null` for every `Option`, so take it out again.
#[derive(Debug, Clone)]
struct NoNullOptionals;

impl Transform for NoNullOptionals {
    fn transform(&mut self, schema: &mut Schema) {
        // `"type": ["string", "null"]` → `"type": "string"`
        if let Some(types) = schema.get_mut("type").and_then(|t| t.as_array_mut()) {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                schema.insert("type".to_owned(), only);
            }
        }
        // `"anyOf": [{"$ref": ...}, {"type": "null"}]` → `"$ref": ...`
        let any_of_without_null =
            schema
                .get("anyOf")
                .and_then(|a| a.as_array())
                .map(|alternatives| {
                    alternatives
                        .iter()
                        .filter(|alt| alt.get("type").is_none_or(|t| t != "null"))
                        .cloned()
                        .collect::<Vec<_>>()
                });
        if let Some(mut alternatives) = any_of_without_null {
            schema.remove("anyOf");
            if alternatives.len() == 1 {
                if let Some(serde_json::Value::Object(only)) = alternatives.pop() {
                    for (key, value) in only {
                        schema.insert(key, value);
                    }
                }
            } else {
                schema.insert("anyOf".to_owned(), alternatives.into());
            }
        }
        transform_subschemas(self, schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SPEC_FIELDS;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contact-processed.schema.json");

    #[test]
    fn checked_in_schema_is_up_to_date() {
        let generated = json_schema_text();
        if std::env::var_os("CPN_BLESS").is_some() {
            std::fs::write(CHECKED_IN, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        assert!(
            on_disk == generated,
            "schema/contact-processed.schema.json is out of date with the Rust types; \
             regenerate it with `CPN_BLESS=1 cargo test -p cpn-schema` and commit the result"
        );
    }

    #[test]
    fn schema_lists_exactly_the_spec_fields() {
        let schema = json_schema();
        let properties = schema.get("properties").unwrap().as_object().unwrap();
        let names: Vec<&str> = properties.keys().map(String::as_str).collect();
        let mut sorted_spec = SPEC_FIELDS.to_vec();
        let mut sorted_names = names.clone();
        sorted_spec.sort_unstable();
        sorted_names.sort_unstable();
        assert_eq!(sorted_names, sorted_spec);
    }

    #[test]
    fn schema_requires_exactly_the_mandatory_fields() {
        let schema = json_schema();
        let mut required: Vec<&str> = schema
            .get("required")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        required.sort_unstable();
        let mut expected = vec![
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
            "GSW_CALL_RESULT",
            "GSW_CAMPAIGN_NAME",
            "GSW_CONTACT_MEDIA_TYPE",
            "GSW_CALLING_LIST",
            "GSW_CAMPAIGN_GROUP_NAME",
            "GSW_CAMPAIGN_GROUP_GUID",
            "GSW_GROUP_NAME",
            "GSW_QUEUE_NAME",
            "GSW_DIAL_MODE",
            "GSW_RECORD_TYPE",
            "GSW_RECORD_STATUS",
            "GSW_START_PROCESSING",
        ];
        expected.sort_unstable();
        assert_eq!(required, expected);
    }

    #[test]
    fn schema_never_allows_null_and_types_user_fields_as_strings() {
        let text = json_schema_text();
        assert!(!text.contains("\"null\""), "{text}");
        let schema = json_schema();
        assert_eq!(
            schema.get("additionalProperties"),
            Some(&serde_json::json!({"type": "string"}))
        );
        assert_eq!(
            schema.get("$schema"),
            Some(&serde_json::json!(
                "https://json-schema.org/draft/2020-12/schema"
            ))
        );
    }
}
