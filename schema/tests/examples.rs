//! The sample events under `schema/examples/` behave as their README says:
//! every valid one parses and round-trips, every invalid one fails naming the
//! field it breaks, and `events.ndjson` is the valid ones in canonical form.

use std::fs;
use std::path::{Path, PathBuf};

use cpn_schema::{ContactProcessed, Invalid};

/// Each invalid example and the field its one defect is reported on
/// (`None`: not JSON at all). Keep in step with `examples/README.md`.
const INVALID: [(&str, Option<&str>); 13] = [
    ("array-not-object.json", Some("(root)")),
    ("bad-call-attempt-guid.json", Some("GSW_CALL_ATTEMPT_GUID")),
    ("call-result-is-a-float.json", Some("GSW_CALL_RESULT")),
    ("chain-id-is-a-string.json", Some("GSW_CHAIN_ID")),
    ("duplicate-key.json", Some("GSW_CHAIN_ID")),
    ("mandatory-field-null.json", Some("GSW_CAMPAIGN_NAME")),
    ("missing-chain-id.json", Some("GSW_CHAIN_ID")),
    ("not-json.json", None),
    ("timestamp-as-number.json", Some("GSW_START_PROCESSING")),
    ("timestamp-without-millis.json", Some("GSW_TIMESTAMP")),
    ("unknown-media-type.json", Some("GSW_CONTACT_MEDIA_TYPE")),
    ("user-field-is-a-number.json", Some("Other1")),
    ("wrong-gsw-message.json", Some("GSW_MESSAGE")),
];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The `.json` files of a directory, sorted by name.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("examples directory is readable")
        .map(|entry| entry.expect("examples directory entry is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> &str {
    path.file_name()
        .and_then(|name| name.to_str())
        .expect("example file names are UTF-8")
}

#[test]
fn every_valid_example_parses_and_round_trips() {
    let files = json_files(&examples().join("valid"));
    assert!(files.len() >= 5, "{files:?}");
    for path in files {
        let bytes = fs::read(&path).unwrap();
        let event =
            ContactProcessed::from_json(&bytes).unwrap_or_else(|e| panic!("{}: {e}", name(&path)));
        let canonical = event.to_json_vec();
        assert_eq!(
            ContactProcessed::from_json(&canonical).unwrap(),
            event,
            "{}",
            name(&path)
        );
    }
}

#[test]
fn every_invalid_example_fails_naming_the_field_it_breaks() {
    let files = json_files(&examples().join("invalid"));
    let names: Vec<&str> = files.iter().map(|p| name(p)).collect();
    let listed: Vec<&str> = INVALID.iter().map(|(file, _)| *file).collect();
    assert_eq!(
        names, listed,
        "every invalid example needs an expectation here"
    );
    for (file, field) in INVALID {
        let bytes = fs::read(examples().join("invalid").join(file)).unwrap();
        match (ContactProcessed::from_json(&bytes), field) {
            (Err(Invalid::Syntax { .. }), None) => {}
            (Err(Invalid::Fields(problems)), Some(field)) => {
                let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
                assert_eq!(fields, [field], "{file}: {problems:?}");
            }
            (other, _) => panic!("{file}: expected {field:?}, got {other:?}"),
        }
    }
}

#[test]
fn the_typical_example_is_about_1_3_kb_on_the_wire() {
    let bytes = fs::read(examples().join("valid/voice-answered-agent.json")).unwrap();
    let canonical = ContactProcessed::from_json(&bytes).unwrap().to_json_vec();
    assert!(
        (1200..=1500).contains(&canonical.len()),
        "{} bytes",
        canonical.len()
    );
}

#[test]
fn events_ndjson_is_the_valid_examples_in_canonical_form() {
    let mut expected = String::new();
    for path in json_files(&examples().join("valid")) {
        let event = ContactProcessed::from_json(&fs::read(&path).unwrap()).unwrap();
        expected.push_str(std::str::from_utf8(&event.to_json_vec()).unwrap());
        expected.push('\n');
    }
    let ndjson = examples().join("events.ndjson");
    if std::env::var_os("CPN_BLESS").is_some() {
        fs::write(&ndjson, &expected).unwrap();
        return;
    }
    let on_disk = fs::read_to_string(&ndjson).unwrap_or_default();
    assert!(
        on_disk == expected,
        "schema/examples/events.ndjson is out of date with examples/valid; \
         regenerate it with `CPN_BLESS=1 cargo test -p cpn-schema` and commit the result"
    );
}
