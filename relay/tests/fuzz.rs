//! Fuzz targets for the dead-letter header decoder and the config loader
//! (bolero). Under `cargo test` each runs random inputs for a bounded time;
//! `cargo +nightly bolero test -p cpn-relay --test fuzz <name> --engine
//! libfuzzer` runs one coverage-guided (tests/FUZZING.md).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use cpn_relay::config::{Overrides, RelayConfig};
use cpn_relay::dlq::headers::DeadLetterInfo;
use cpn_relay::dlq::record::{DeadLetterView, RawDeadLetter};
use cpn_relay::policy::classify::DlqReason;

const TIME: Duration = Duration::from_secs(5);

fn raw(headers: Vec<(String, Option<Vec<u8>>)>, value: Option<Vec<u8>>) -> RawDeadLetter {
    RawDeadLetter {
        partition: 0,
        offset: 0,
        timestamp_ms: None,
        key: None,
        value,
        headers,
    }
}

/// Arbitrary header names and bytes (non-UTF-8 among them), including the
/// names the decoder reads, never panic the decoder.
#[test]
fn dead_letter_headers_of_any_bytes_decode_without_panic() {
    let names = [
        "cpn.dlq.reason",
        "cpn.dlq.http_status",
        "cpn.dlq.attempts",
        "cpn.dlq.first_attempt_at",
        "cpn.dlq.replays",
        "__connect.errors.partition",
        "__connect.errors.offset",
        "cpn.dlq.original_timestamp",
    ];
    bolero::check!()
        .with_test_time(TIME)
        .with_type::<(Vec<(u8, Option<Vec<u8>>)>, Option<Vec<u8>>)>()
        .for_each(|(headers, value)| {
            let headers: Vec<(String, Option<Vec<u8>>)> = headers
                .iter()
                .map(|(n, v)| (names[usize::from(*n) % names.len()].to_owned(), v.clone()))
                .collect();
            let view = DeadLetterView::decode(raw(headers.clone(), value.clone()));
            // What it decodes, it read from a header of that name.
            if let Some(r) = &view.reason {
                assert!(
                    headers.iter().any(|(k, v)| {
                        k == "cpn.dlq.reason" && v.as_deref() == Some(r.as_bytes())
                    })
                );
            }
        });
}

/// What the relay writes, the tools read back: encode → decode keeps every
/// field of the story.
#[test]
fn dead_letter_headers_round_trip() {
    bolero::check!()
        .with_test_time(TIME)
        .with_type::<(u8, Option<u16>, String, Vec<u8>, u32, u32, i32, i64)>()
        .for_each(
            |(reason, status, error, body, attempts, secs, partition, offset)| {
                let reasons = [
                    DlqReason::HttpRejected,
                    DlqReason::HttpRedirect,
                    DlqReason::RetriesExhausted,
                    DlqReason::InvalidPayload,
                ];
                let at = UNIX_EPOCH + Duration::from_secs(u64::from(*secs));
                let info = DeadLetterInfo {
                    reason: reasons[usize::from(*reason) % reasons.len()],
                    http_status: *status,
                    error: error.clone(),
                    location: None,
                    response_body: body.iter().copied().take(4096).collect(),
                    attempts: *attempts,
                    first_attempt_at: Some(at),
                    last_attempt_at: Some(at),
                    target: "https://crm.example/x".to_owned(),
                    group: "g".to_owned(),
                    relay: "r".to_owned(),
                    topic: "t".to_owned(),
                    partition: *partition,
                    offset: *offset,
                    original_timestamp_ms: Some(i64::from(*secs)),
                };
                let headers = info
                    .to_headers()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), Some(v)))
                    .collect();
                let view = DeadLetterView::decode(raw(headers, None));
                assert_eq!(view.reason.as_deref(), Some(info.reason.as_str()));
                assert_eq!(view.http_status, info.http_status);
                assert_eq!(view.attempts, Some(info.attempts));
                assert_eq!(view.original_partition, Some(info.partition));
                assert_eq!(view.original_offset, Some(info.offset));
                assert_eq!(view.first_attempt_at, Some(at));
                assert_eq!(view.response_body.unwrap_or_default(), info.response_body);
            },
        );
}

/// Any text as a config file, with any of a few environment overrides,
/// loads or fails with an error that says something — never a panic.
#[test]
fn config_text_of_any_shape_loads_or_errs_without_panic() {
    let dir = std::env::temp_dir().join(format!("cpn-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("relay.toml");
    let path_s = path.to_string_lossy().into_owned();
    let vars = [
        "CPN_RETRY_MAX_ATTEMPTS",
        "CPN_TARGET_URL",
        "CPN_KAFKA_BROKERS",
        "CPN_CIRCUIT_OPEN_MAX_MS",
        "CPN_COMMIT_INTERVAL_MS",
    ];
    bolero::check!()
        .with_test_time(TIME)
        .with_type::<(String, Vec<(u8, String)>)>()
        .for_each(|(text, env)| {
            std::fs::write(&path, text).expect("writing the config");
            let env: BTreeMap<String, String> = env
                .iter()
                .map(|(k, v)| (vars[usize::from(*k) % vars.len()].to_owned(), v.clone()))
                .collect();
            if let Err(e) = RelayConfig::load(Some(&path_s), &env, &Overrides::default()) {
                assert!(!e.to_string().is_empty(), "an error says something");
            }
        });
    let _ = std::fs::remove_dir_all(&dir);
}
