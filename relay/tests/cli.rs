//! The `cpn-relay` binary's configuration front: `check-config` names the
//! wrong key and why, exits non-zero, and never prints secrets. (Having an
//! integration test here also makes `cargo test` build the binary that the
//! end-to-end tests spawn.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn relay() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cpn-relay"));
    c.env_remove("CPN_TARGET_URL")
        .env_remove("CPN_RELAY_CONFIG");
    c
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cpn-relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_the_example_file() {
    let out = relay()
        .args([
            "check-config",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/relay.example.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("configuration is valid"));
    assert!(text.contains("max_attempts = 10"));
}

#[test]
fn check_config_names_the_wrong_key() {
    let p = write(
        "bad.toml",
        "[target]\nurl = \"http://x/\"\n[retry]\nmax_attempts = 0\n",
    );
    let out = relay()
        .args(["check-config", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("retry.max_attempts: must be at least 1"),
        "{err}"
    );
}

#[test]
fn check_config_names_the_flag_or_variable_that_set_a_bad_value() {
    let out = relay()
        .args(["check-config", "--target-url", "crm.example.com/hook"])
        .env("CPN_RETRY_MAX_ATTEMPTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("target.url (set by --target-url): not a URL"),
        "{err}"
    );
    assert!(
        err.contains("retry.max_attempts (set by CPN_RETRY_MAX_ATTEMPTS): must be at least 1"),
        "{err}"
    );
}

#[test]
fn check_config_names_an_unknown_key() {
    let p = write(
        "unknown.toml",
        "[target]\nurl = \"http://x/\"\nretries = 3\n",
    );
    let out = relay()
        .args(["check-config", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retries"), "{err}");
}

#[test]
fn check_config_redacts_secrets() {
    let out = relay()
        .args([
            "check-config",
            "--target-url",
            "https://user:pw@crm.example/hook?token=t0k",
        ])
        .args([
            "--header",
            "Authorization: Bearer s3cr3t",
            "-X",
            "sasl.password=hunter2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for secret in ["s3cr3t", "hunter2", "pw@", "t0k"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert!(text.contains("[redacted]"));
}

#[test]
fn run_without_a_target_says_how_to_set_one() {
    let out = relay().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("target.url: missing"), "{err}");
}

#[test]
fn the_mock_crm_is_no_longer_a_relay_subcommand() {
    let help = relay().arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(text.contains("check-config"), "{text}");
    assert!(
        !text.contains("mock"),
        "--help still lists the mock CRM:\n{text}"
    );
    // The old spelling says where it went instead of running anything.
    let old = relay()
        .args(["mock-crm", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(old.status.code(), Some(2));
    let err = String::from_utf8(old.stderr).unwrap();
    assert!(err.contains("cpn-mock-crm"), "{err}");
}

#[test]
fn check_config_refuses_what_run_would_refuse_without_the_network() {
    let p = write(
        "unreadable-secret.toml",
        "[target]\nurl = \"https://crm.example/hook\"\n[target.auth]\nkind = \"oauth2\"\n\
         token_url = \"https://idp.example/token\"\nclient_id = \"relay\"\n\
         client_secret = { file = \"/nonexistent/secret\" }\n",
    );
    let out = relay()
        .args(["check-config", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("target.auth.client_secret") && err.contains("/nonexistent/secret"),
        "{err}"
    );
}

#[test]
fn check_config_redacts_what_librdkafka_marks_sensitive() {
    let p = write(
        "oauthbearer.toml",
        "[target]\nurl = \"http://crm.example/hook\"\n[kafka.properties]\n\
         \"sasl.oauthbearer.config\" = \"principal=relay clientSecret=s3cr3t-value\"\n",
    );
    let out = relay()
        .args(["check-config", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("sasl.oauthbearer.config"), "{text}");
    assert!(!text.contains("s3cr3t-value"), "{text}");
}

#[test]
fn check_config_never_panics_when_the_reader_goes_away() {
    // `check-config | head` closes the pipe early. Here the reader closes
    // its end before anything is written, so every write gets EPIPE
    // (println! panics on it: "failed printing to stdout").
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{{ {} check-config -c {}; echo \"rc=$?\" >&2; }} | (exec 0<&-; sleep 1)",
            env!("CARGO_BIN_EXE_cpn-relay"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/relay.example.toml")
        ))
        .env_remove("CPN_TARGET_URL")
        .env_remove("CPN_RELAY_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("rc=0"), "{err}");
}

#[test]
fn check_config_checks_the_kafka_files_run_would_load() {
    // librdkafka loads ssl.ca.location when its client is created: run
    // refused this at start while check-config said it was valid.
    let out = relay()
        .args(["check-config", "--target-url", "http://x/"])
        .args(["-X", "security.protocol=SSL"])
        .args(["-X", "ssl.ca.location=/nonexistent/kafka-ca.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kafka.properties.ssl.ca.location: cannot read /nonexistent/kafka-ca.pem"),
        "{err}"
    );
}
