//! The `cpn-producer` binary without a broker: `validate` accepts the
//! schema's valid samples and rejects each invalid one naming the field
//! (issue 2, item 3), and every subcommand has `--help`.

// A test binary: a panic is how a helper reports a broken fixture.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_cpn-producer");

fn examples(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schema/examples")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    files
}

/// A pretty-printed sample as one NDJSON line, its bytes otherwise
/// untouched (re-serializing would hide defects such as duplicate keys):
/// newlines between JSON tokens are whitespace, and JSON strings cannot
/// contain a raw newline.
fn one_line(path: &Path) -> Vec<u8> {
    std::fs::read(path)
        .unwrap()
        .into_iter()
        .map(|b| if b == b'\n' { b' ' } else { b })
        .collect()
}

fn validate(stdin: &[u8], extra: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("validate")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn validate_accepts_every_valid_sample_and_the_sample_stream() {
    let mut input = Vec::new();
    for f in examples("valid") {
        input.extend(one_line(&f));
        input.extend(b"\n\n");
    }
    let out = validate(&input, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());

    let stream = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/examples/events.ndjson");
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&stream)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn validate_rejects_each_invalid_sample_naming_the_field() {
    // Which field each invalid sample must be blamed on.
    let expected = [
        ("array-not-object", "(root)"),
        ("bad-call-attempt-guid", "GSW_CALL_ATTEMPT_GUID"),
        ("call-result-is-a-float", "GSW_CALL_RESULT"),
        ("chain-id-is-a-string", "GSW_CHAIN_ID"),
        ("duplicate-key", "GSW_CHAIN_ID"),
        ("mandatory-field-null", "GSW_CAMPAIGN_NAME"),
        ("missing-chain-id", "GSW_CHAIN_ID"),
        ("not-json", "(root)"),
        ("timestamp-as-number", "GSW_START_PROCESSING"),
        ("timestamp-without-millis", "GSW_TIMESTAMP"),
        ("unknown-media-type", "GSW_CONTACT_MEDIA_TYPE"),
        ("user-field-is-a-number", "Other1"),
        ("wrong-gsw-message", "GSW_MESSAGE"),
    ];
    let samples = examples("invalid");
    assert_eq!(
        samples.len(),
        expected.len(),
        "every invalid sample has its field here"
    );
    for f in samples {
        let out = validate(&one_line(&f), &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(!stdout.is_empty(), "{name}: nothing reported");
        for line in stdout.lines() {
            assert!(line.starts_with("line 1: "), "{name}: {line}");
            assert!(
                line.splitn(3, ": ").count() == 3,
                "{name}: not `line N: FIELD: problem`: {line}"
            );
        }
        let (_, field) = expected
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name}: no expected field listed"));
        assert!(
            stdout.contains(&format!("line 1: {field}: ")),
            "{name}: {stdout}"
        );
    }
}

#[test]
fn validate_as_publish_allows_missing_identity_only() {
    let line = br#"{"GSW_MESSAGE":"ContactProcessed","GSW_PHONE":"1"}"#;
    let strict = validate(line, &[]);
    let lenient = validate(line, &["--as-publish"]);
    let strict_out = String::from_utf8_lossy(&strict.stdout);
    let lenient_out = String::from_utf8_lossy(&lenient.stdout);
    assert!(
        strict_out.contains("line 1: GSW_MESSAGE_GUID: "),
        "{strict_out}"
    );
    assert!(!lenient_out.contains("GSW_MESSAGE_GUID"), "{lenient_out}");
    assert!(!lenient_out.contains("GSW_TIMESTAMP:"), "{lenient_out}");
    assert_eq!(
        lenient.status.code(),
        Some(1),
        "other fields are still missing"
    );
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["validate", "publish", "generate", "serve"] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help failed");
        assert!(text.contains("Usage: cpn-producer"), "{sub}: {text}");
        assert!(text.contains("[env: CPN_"), "{sub}: no env vars shown");
    }
    let publish = Command::new(BIN)
        .args(["publish", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&publish.stdout).contains("UUID v4"));
}

#[test]
fn bad_options_are_usage_errors_naming_the_option() {
    let out = Command::new(BIN)
        .args([
            "publish",
            "-b",
            "h:1",
            "-t",
            "t",
            "-X",
            "enable.idempotence=false",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("enable.idempotence"));
    let out = Command::new(BIN)
        .args(["generate", "-n", "1", "--rate", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate"));
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    // A log collector (kubectl logs, journald) keeps escape codes verbatim.
    let out = Command::new(BIN)
        .args(["generate", "-n", "1", "--seed", "1"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("generating events"), "a log line: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in {err:?}");
}
