//! The relay's configuration: one TOML file, overridable by environment
//! (`CPN_<SECTION>_<KEY>`, e.g. `CPN_RETRY_MAX_ATTEMPTS=5`, in [`env`]) and,
//! for the essentials, by command-line flags ([`flags`]). Precedence:
//! defaults < file < env < flags.
//!
//! This room only assembles: each section's type, its defaults (its
//! `Default`, the one place they are written) and its checks live beside
//! the code it configures — `[kafka]`, `[concurrency]`, `[commit]`,
//! `[shutdown]` in [`crate::kafka::settings`]; `[target]` in
//! [`crate::target::settings`]; `[retry]` and `[circuit]` are
//! [`RetryPolicy`] and [`CircuitConfig`] themselves; `[observability]` and
//! `[health]` in [`crate::observe::settings`]; `[filter]` in
//! [`crate::policy::route`]. The leaves [`problem`] (what can be wrong) and
//! [`millis`] (durations as `*_ms` keys) import nothing from the crate.
//!
//! [`RelayConfig::validate`] runs once at load and reports every problem with
//! the key's path (`retry.max_attempts: must be at least 1`). Secrets (custom
//! header values, librdkafka passwords) never appear in `Debug` output or in
//! [`RelayConfig::to_redacted_toml`].

mod diagnose;
mod env;
mod flags;
pub mod millis;
pub mod problem;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use env::ENV_OF_OTHER_TOOLS;
pub use flags::Overrides;
pub use problem::{ConfigError, ConfigProblem};

use crate::kafka::settings::{CommitConfig, ConcurrencyConfig, KafkaConfig, ShutdownConfig};
use crate::observe::settings::{HealthConfig, ObservabilityConfig};
use crate::policy::circuit::CircuitConfig;
use crate::policy::classify::Classifier;
use crate::policy::retry::RetryPolicy;
use crate::policy::route::FilterConfig;
use crate::secret::Secret;
use crate::target::settings::TargetConfig;

/// The whole relay configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Where to read from and write dead letters to.
    pub kafka: KafkaConfig,
    /// The customer's web server.
    pub target: TargetConfig,
    /// Per-record retry budget.
    pub retry: RetryPolicy,
    /// Outage detection.
    pub circuit: CircuitConfig,
    /// Bounds on work in flight.
    pub concurrency: ConcurrencyConfig,
    /// Offset commits.
    pub commit: CommitConfig,
    /// Graceful shutdown and rebalance deadlines.
    pub shutdown: ShutdownConfig,
    /// Metrics, health and logs.
    pub observability: ObservabilityConfig,
    /// When a relay that makes no progress calls itself stalled.
    pub health: HealthConfig,
    /// Which records this relay delivers (all by default).
    pub filter: FilterConfig,
}

impl RelayConfig {
    /// Loads `path` (or defaults when `None`), applies `env` overrides
    /// (`CPN_<SECTION>_<KEY>`) and `flags`, then validates.
    ///
    /// # Errors
    /// A read or parse error, or every validation problem with its key path.
    pub fn load(
        path: Option<&str>,
        env: &BTreeMap<String, String>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        let file = path.unwrap_or("config");
        // Syntax and duplicate keys, then types and unknown keys of the
        // file alone: each error with its key, line and column.
        let mut table: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(diagnose::syntax_error(file, &text, &e)))?;
        let mut problems = env::apply_env(&mut table, env);
        // The file with the environment applied (env wins over the file,
        // also over a file value of the wrong type). On an error, what the
        // environment broke names its variable; anything else is shown
        // where the file has it, with line and column.
        let mut config: RelayConfig =
            match diagnose::read_value(toml::Value::Table(table), |key| env::blame(key, env, file))
            {
                Ok(c) => c,
                Err((message, true)) => return Err(ConfigError::Parse(message)),
                Err((message, false)) => {
                    return Err(ConfigError::Parse(
                        diagnose::read_file::<RelayConfig>(file, &text)
                            .err()
                            .unwrap_or(message),
                    ));
                }
            };
        problems.extend(config.apply_flags(flags));
        // A value that is wrong says where it came from when that was not
        // the file: the flag or the environment variable that set it.
        problems.extend(config.validate().into_iter().map(|mut p| {
            if let Some(source) = flags
                .flag_for(&p.path)
                .map(str::to_owned)
                .or_else(|| env::variable_for(&p.path, env))
            {
                p.path = format!("{} (set by {source})", p.path);
            }
            p
        }));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Settings that are valid but weaken a guarantee, each with its key
    /// path: `check-config` prints them and `run` logs them at WARN.
    pub fn warnings(&self) -> Vec<ConfigProblem> {
        let mut w = vec![];
        let (attempts, threshold) = (self.retry.max_attempts, self.circuit.failure_threshold);
        if attempts < threshold {
            // A record is charged for each retryable failure until the
            // circuit opens; with fewer attempts than the threshold, an outage
            // can exhaust the first records before it does (invariant 5).
            w.push(ConfigProblem {
                path: "retry.max_attempts".into(),
                problem: format!(
                    "{attempts} is below circuit.failure_threshold ({threshold}): when the \
                     target goes down, records can be dead-lettered as retries_exhausted \
                     before the circuit opens; keep max_attempts at least failure_threshold"
                ),
            });
        }
        w
    }

    /// Every problem of this configuration, each with its key path.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut p = self.kafka.problems();
        p.extend(self.target.problems());
        p.extend(self.retry.problems());
        p.extend(self.circuit.problems());
        p.extend(self.health.problems());
        p.extend(self.concurrency.problems());
        p.extend(self.commit.problems());
        p.extend(self.observability.problems());
        p.extend(self.target.subsection_problems());
        p.extend(self.filter.problems());
        p.extend(self.target.signing_problems());
        p
    }

    /// The dead-letter topic: the configured one or `<topic>.dlq`.
    pub fn dlq_topic(&self) -> String {
        self.kafka.dlq_topic()
    }

    /// The response classifier ([`TargetConfig::classifier`]).
    pub fn classifier(&self) -> Classifier {
        self.target.classifier()
    }

    /// The relay instance id: configured, or `<hostname>-<pid>`.
    pub fn relay_id(&self) -> String {
        self.observability.relay_id()
    }

    /// The effective configuration as TOML, with header values and the
    /// librdkafka properties that hold secrets
    /// ([`is_sensitive`](crate::kafka::sensitive::is_sensitive): those
    /// librdkafka marks sensitive, then names with a secret's word)
    /// replaced by `[redacted]`.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        for v in c.target.headers.values_mut() {
            *v = Secret("[redacted]".into());
        }
        for (k, v) in c.kafka.properties.iter_mut() {
            if crate::kafka::sensitive::is_sensitive(k) {
                *v = Secret("[redacted]".into());
            }
        }
        c.target.url = crate::secret::redact_url(&c.target.url);
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::settings::{GroupProtocol, MAX_INSTANCE_ID_LEN};

    fn load(
        text: &str,
        env: &[(&str, &str)],
        flags: Overrides,
    ) -> Result<RelayConfig, ConfigError> {
        let path = write_config(text);
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let loaded = RelayConfig::load(path.to_str(), &env, &flags);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        loaded
    }

    /// `text` as `relay.toml` in a fresh temp directory.
    fn write_config(text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cpn-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn problems(e: ConfigError) -> Vec<String> {
        match e {
            ConfigError::Invalid(p) => p.into_iter().map(|p| p.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn example_file_is_valid_and_names_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/relay.example.toml");
        RelayConfig::load(Some(path), &BTreeMap::new(), &Overrides::default()).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let toml::Value::Table(defaults) = toml::Value::try_from(RelayConfig::default()).unwrap()
        else {
            panic!("defaults are a table")
        };
        for (section, keys) in defaults {
            assert!(
                text.contains(&format!("[{section}]")),
                "example lacks [{section}]"
            );
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    text.contains(&format!("{key} ="))
                        || text.contains(&format!("[{section}.{key}]")),
                    "example lacks {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn a_target_url_alone_is_a_correct_config() {
        let c = load(
            "[target]\nurl = \"http://127.0.0.1:8080/crm\"\n",
            &[],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.kafka.topic, "contact-processed");
        assert_eq!(c.dlq_topic(), "contact-processed.dlq");
        assert_eq!(c.retry.max_attempts, 10);
        assert!(c.validate().is_empty());
    }

    #[test]
    fn missing_target_url_is_named() {
        let p = problems(load("", &[], Overrides::default()).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with("target.url: missing")),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("[retry]\nmax_attempt = 3\n", &[], Overrides::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("max_attempt"), "{msg}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_path() {
        let text = r#"
            [kafka]
            topic = "bad topic"
            dlq_topic = "x"
            properties = { "enable.auto.commit" = "true" }
            [target]
            url = "ftp://crm"
            retryable_statuses = ["7xx"]
            headers = { "Content-Type" = "text/plain" }
            [retry]
            max_attempts = 0
            multiplier = 0.5
            [concurrency]
            max_in_flight = 0
            [observability]
            metrics_listen = "nowhere"
        "#;
        let p = problems(load(text, &[], Overrides::default()).unwrap_err());
        for want in [
            "kafka.topic:",
            "kafka.properties.enable.auto.commit:",
            "target.url: scheme",
            "target.retryable_statuses:",
            "target.headers.Content-Type:",
            "retry.max_attempts: must be at least 1",
            "retry.multiplier:",
            "concurrency.max_in_flight:",
            "observability.metrics_listen:",
        ] {
            assert!(
                p.iter().any(|p| p.starts_with(want)),
                "missing {want} in {p:?}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_the_flag_or_variable_that_set_it() {
        // The same bad values from flags and from the environment: each
        // problem says which one set it, not only the key.
        let flags = Overrides {
            target_url: Some("not a url".into()),
            topic: Some(String::new()),
            headers: vec!["content-type: text/plain".into()],
            kafka_properties: vec!["enable.auto.commit=true".into()],
            metrics_listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        let env = [
            ("CPN_RETRY_MAX_ATTEMPTS", "0"),
            ("CPN_KAFKA_GROUP", ""),
            ("CPN_TARGET_URL", "http://env-loses/"),
        ];
        let p = problems(load("[retry]\nmultiplier = 0.5\n", &env, flags).unwrap_err());
        for want in [
            "target.url (set by --target-url): not a URL",
            "kafka.topic (set by --topic):",
            "target.headers.content-type (set by --header):",
            "kafka.properties.enable.auto.commit (set by -X):",
            "observability.metrics_listen (set by --metrics-listen):",
            "retry.max_attempts (set by CPN_RETRY_MAX_ATTEMPTS): must be at least 1",
            "kafka.group (set by CPN_KAFKA_GROUP):",
            // What the file set is named as before.
            "retry.multiplier:",
        ] {
            assert!(
                p.iter().any(|p| p.starts_with(want)),
                "missing {want} in {p:?}"
            );
        }
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let text = "[target]\nurl = \"http://file/\"\n[retry]\nmax_attempts = 3\n";
        let env = [
            ("CPN_RETRY_MAX_ATTEMPTS", "7"),
            ("CPN_TARGET_URL", "http://env/"),
            ("CPN_TARGET_RETRYABLE_STATUSES", "429, 503"),
            ("CPN_KAFKA_DLQ_TOPIC", "dead"),
        ];
        let c = load(text, &env, Overrides::default()).unwrap();
        assert_eq!(c.retry.max_attempts, 7);
        assert_eq!(c.target.url, "http://env/");
        assert_eq!(c.target.retryable_statuses, vec!["429", "503"]);
        assert_eq!(c.dlq_topic(), "dead");
        let flags = Overrides {
            target_url: Some("http://flag/".into()),
            headers: vec!["X-Api-Key: s3cret".into()],
            kafka_properties: vec![
                "security.protocol=SASL_SSL".into(),
                "sasl.password=pw".into(),
            ],
            ..Default::default()
        };
        let c = load(text, &env, flags).unwrap();
        assert_eq!(c.target.url, "http://flag/");
        assert_eq!(c.target.headers["X-Api-Key"].0, "s3cret");
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("s3cret") && !shown.contains("\"pw\""),
            "{shown}"
        );
        assert!(shown.contains("SASL_SSL"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn every_property_librdkafka_marks_sensitive_is_redacted_by_check_config() {
        use crate::kafka::sensitive::LIBRDKAFKA_SENSITIVE;
        let text = "[target]\nurl = \"http://x/\"\n";
        let flags = Overrides {
            kafka_properties: LIBRDKAFKA_SENSITIVE
                .iter()
                .map(|k| format!("{k}=value-of-{k}"))
                .chain(["security.protocol=SASL_SSL".to_owned()])
                .collect(),
            ..Default::default()
        };
        let shown = load(text, &[], flags).unwrap().to_redacted_toml();
        for k in LIBRDKAFKA_SENSITIVE {
            assert!(
                !shown.contains(&format!("value-of-{k}")),
                "{k} shown:\n{shown}"
            );
        }
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }

    /// `load` of `text` as a file named relay.toml: the error's text.
    fn load_error(text: &str, env: &[(&str, &str)]) -> String {
        let path = write_config(text);
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = RelayConfig::load(path.to_str(), &env, &Overrides::default())
            .expect_err("must be refused");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        e.to_string().replace(path.to_str().unwrap(), "relay.toml")
    }

    #[test]
    fn type_syntax_duplicate_and_unknown_key_errors_name_the_key_line_and_column() {
        let base = "[target]\nurl = \"http://x/\"\n";
        for (text, want) in [
            (
                format!("{base}[retry]\nmax_attempts = \"five\"\n"),
                "relay.toml:4:16: retry.max_attempts: expected a whole number, 0 or more, found the string \"five\"\n  |\n4 | max_attempts = \"five\"\n  |                ^^^^^^",
            ),
            (
                format!("{base}[retry]\nmax_attempts = 5\nmax_attempts = 6\n"),
                "relay.toml:5:1: retry.max_attempts: duplicate key",
            ),
            (
                format!("{base}[target.tls]\nmin_version = 1.2\n"),
                "relay.toml:4:15: target.tls.min_version: expected a string in quotes, found the number 1.2",
            ),
            (
                format!("{base}[target.auth]\nkind = \"none\"\nclient_id = \"x\"\n"),
                "relay.toml:5:1: target.auth.client_id: unknown key client_id: this table takes no keys",
            ),
            (
                format!(
                    "{base}[target.auth]\nkind = \"basic\"\nusername = \"u\"\npassword = {{ nope = 1 }}\n"
                ),
                "target.auth.password: expected a secret",
            ),
            (
                format!(
                    "{base}[target.auth]\nkind = \"oauth2\"\ntoken_url = \"http://t/\"\nclient_id = 5\n"
                ),
                "relay.toml:6:1: target.auth.client_id: expected a string in quotes, found the number 5\n  |\n6 | client_id = 5",
            ),
            (
                format!("{base}[target.auth]\nkind = \"basic\"\nusername = \"u\"\nextra = 1\n"),
                "relay.toml:6:1: target.auth.extra: unknown key extra; the keys here are username or password",
            ),
        ] {
            let shown = load_error(&text, &[]);
            assert!(
                shown.starts_with(want) || shown.contains(want),
                "want {want:?}\ngot {shown}"
            );
        }
    }

    #[test]
    fn the_environment_wins_over_a_file_value_of_the_wrong_type() {
        let text = "[target]\nurl = \"http://x/\"\n[retry]\nmax_attempts = \"5\"\n";
        let c = load(
            text,
            &[("CPN_RETRY_MAX_ATTEMPTS", "7")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.retry.max_attempts, 7);
    }

    #[test]
    fn a_multibyte_value_gets_one_caret_per_character() {
        let shown = load_error(
            "[target]\nurl = \"http://x/\"\n[retry]\nmax_attempts = \"fünf\"\n",
            &[],
        );
        assert!(shown.ends_with("\n  |                ^^^^^^"), "{shown}");
    }

    #[test]
    fn a_value_the_environment_broke_names_its_variable() {
        let shown = load_error(
            "[target]\nurl = \"http://x/\"\n",
            &[("CPN_RETRY_MAX_ATTEMPTS", "-3")],
        );
        assert_eq!(
            shown,
            "environment variable CPN_RETRY_MAX_ATTEMPTS (sets retry.max_attempts): expected a \
             whole number, 0 or more, found the number -3"
        );
    }

    /// Keys of a valid config, each with its table and a value of its type.
    const KEYS: &[(&str, &str, &str)] = &[
        ("kafka", "brokers", "\"127.0.0.1:9092\""),
        ("kafka", "topic", "\"t\""),
        ("kafka", "group", "\"g\""),
        ("target", "url", "\"http://x/\""),
        ("target", "request_timeout_ms", "5000"),
        ("target", "success_statuses", "[\"2xx\"]"),
        ("target", "user_agent", "\"OCS/8.1.528.15\""),
        ("target", "title_case_headers", "false"),
        ("target.tls", "min_version", "\"1.2\""),
        ("target.auth", "kind", "\"oauth2\""),
        ("target.auth", "token_url", "\"http://t/\""),
        ("target.auth", "client_id", "\"c\""),
        ("target.auth", "client_secret", "\"s\""),
        ("retry", "max_attempts", "5"),
        ("circuit", "failure_threshold", "5"),
        ("observability", "json_logs", "false"),
    ];

    /// The config of [`KEYS`], with `mutate` applied to key `i`'s line.
    fn config_text(i: usize, mutate: &dyn Fn(&str, &str) -> String) -> String {
        let mut out = String::new();
        let mut table = "";
        for (n, (t, k, v)) in KEYS.iter().enumerate() {
            if *t != table {
                out.push_str(&format!("[{t}]\n"));
                table = t;
            }
            out.push_str(&if n == i {
                mutate(k, v)
            } else {
                format!("{k} = {v}")
            });
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_unmutated_config_is_valid() {
        let text = config_text(usize::MAX, &|_, _| unreachable!());
        load(&text, &[], Overrides::default()).unwrap();
    }

    proptest::proptest! {
        /// Every rejection of a mutated config names the mutated key: a
        /// value of the wrong type, an unknown key, a key set twice.
        #[test]
        fn every_rejection_of_a_mutated_config_names_the_mutated_key(
            i in 0..KEYS.len(),
            kind in 0..3u8,
            junk in "[a-z]{1,8}",
        ) {
            let (table, key, value) = KEYS[i];
            let (text, named) = match kind {
                0 => {
                    let wrong = if value.starts_with('"') {
                        "12.5".to_owned()
                    } else {
                        format!("\"{junk}\"")
                    };
                    (config_text(i, &|k, _| format!("{k} = {wrong}")), format!("{table}.{key}"))
                }
                1 => (
                    config_text(i, &|k, v| format!("{k}_{junk} = {v}")),
                    format!("{table}.{key}_{junk}"),
                ),
                _ => (
                    config_text(i, &|k, v| format!("{k} = {v}\n{k} = {v}")),
                    format!("{table}.{key}"),
                ),
            };
            let shown = load_error(&text, &[]);
            proptest::prop_assert!(
                shown.contains(&named),
                "{named} not named in {shown:?} for\n{text}"
            );
            proptest::prop_assert!(shown.contains("relay.toml:"), "no file/line: {shown}");
        }
    }

    #[test]
    fn bad_env_value_is_named() {
        let p = problems(
            load(
                "[target]\nurl=\"http://x/\"\n",
                &[("CPN_RETRY_MAX_ATTEMPTS", "many")],
                Overrides::default(),
            )
            .unwrap_err(),
        );
        assert!(
            p.iter().any(|p| p.contains("CPN_RETRY_MAX_ATTEMPTS")),
            "{p:?}"
        );
    }

    #[test]
    fn unknown_setting_variables_are_named_and_other_tools_variables_left_alone() {
        let p = problems(
            load(
                "[target]\nurl=\"http://x/\"\n",
                &[
                    ("CPN_RETRY_MAX_ATTEMPT", "3"),
                    ("CPN_TARGET_TLS_CA_FILE", "/ca.pem"),
                    ("CPN_RETRY_MAX_ATTEMPTS", "3"),
                    ("CPN_KAFKA_PROPERTIES", "a=b"),
                    ("CPN_RETRY_AFTER_SECS", "2"),
                    ("CPN_SHUTDOWN_TIMEOUT_MS", "100"),
                    ("CPN_BROKERS", "h:1"),
                ],
                Overrides::default(),
            )
            .unwrap_err(),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("CPN_RETRY_MAX_ATTEMPT: is not a setting"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("CPN_TARGET_TLS_CA_FILE: is not a setting"),
            "{p:?}"
        );
    }

    #[test]
    fn fewer_attempts_than_the_circuit_threshold_is_a_warning_not_an_error() {
        assert!(RelayConfig::default().warnings().is_empty());
        let mut c = RelayConfig::default();
        c.target.url = "http://x/".into();
        c.retry.max_attempts = 3;
        assert!(c.validate().is_empty(), "still valid");
        let w = c.warnings();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "retry.max_attempts");
        assert!(
            w[0].problem.contains("circuit.failure_threshold (5)"),
            "{}",
            w[0]
        );
        c.circuit.failure_threshold = 3;
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn instance_id_and_group_protocol_come_from_file_env_and_flags() {
        let c = load("[target]\nurl=\"http://x/\"\n", &[], Overrides::default()).unwrap();
        assert_eq!(
            c.kafka.instance_id, None,
            "static membership is off by default"
        );
        assert_eq!(c.kafka.group_protocol, GroupProtocol::Classic);
        let text = "[target]\nurl=\"http://x/\"\n[kafka]\ninstance_id = \"relay-0\"\n";
        let c = load(text, &[], Overrides::default()).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("relay-0"));
        let env = [
            ("CPN_KAFKA_INSTANCE_ID", "relay-1"),
            ("CPN_KAFKA_GROUP_PROTOCOL", "consumer"),
        ];
        let p = problems(load(text, &env, Overrides::default()).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with(
                "kafka.instance_id (set by CPN_KAFKA_INSTANCE_ID): is not supported with"
            )),
            "static membership with KIP-848 is refused: {p:?}"
        );
        let c = load(text, &env[..1], Overrides::default()).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("relay-1"));
        let c = load(
            "[target]\nurl=\"http://x/\"\n",
            &env[1..],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.kafka.group_protocol, GroupProtocol::Consumer);
        let flags = Overrides {
            instance_id: Some("cpn-relay-2".into()),
            group_protocol: Some("classic".into()),
            ..Default::default()
        };
        let c = load(text, &env, flags).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("cpn-relay-2"));
        assert_eq!(c.kafka.group_protocol, GroupProtocol::Classic);
    }

    #[test]
    fn bad_instance_ids_and_protocols_are_named() {
        for (id, want) in [
            ("", "must not be empty"),
            ("  ", "must not be empty"),
            ("relay 0", "contains ' '"),
            ("relay/0", "contains '/'"),
        ] {
            let flags = Overrides {
                instance_id: Some(id.into()),
                ..Default::default()
            };
            let p = problems(load("[target]\nurl=\"http://x/\"\n", &[], flags).unwrap_err());
            assert!(
                p.iter().any(
                    |p| p.starts_with("kafka.instance_id (set by --instance-id):")
                        && p.contains(want)
                ),
                "{id:?}: {p:?}"
            );
        }
        let long = "r".repeat(MAX_INSTANCE_ID_LEN + 1);
        let p = problems(
            load(
                "[target]\nurl=\"http://x/\"\n",
                &[("CPN_KAFKA_INSTANCE_ID", &long)],
                Overrides::default(),
            )
            .unwrap_err(),
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("kafka.instance_id (set by CPN_KAFKA_INSTANCE_ID): longer")),
            "{p:?}"
        );
        let flags = Overrides {
            group_protocol: Some("kip848".into()),
            ..Default::default()
        };
        let p = problems(load("[target]\nurl=\"http://x/\"\n", &[], flags).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with("--group-protocol:")),
            "{p:?}"
        );
        let e = load(
            "[target]\nurl=\"http://x/\"\n",
            &[("CPN_KAFKA_GROUP_PROTOCOL", "kip848")],
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("group_protocol") || e.contains("GROUP_PROTOCOL"),
            "{e}"
        );
    }

    #[test]
    fn classic_only_settings_are_refused_with_the_consumer_protocol() {
        let text = "[target]\nurl=\"http://x/\"\n[kafka]\ngroup_protocol = \"consumer\"\n\
                    [kafka.properties]\n\"session.timeout.ms\" = \"30000\"\n\
                    \"group.instance.id\" = \"x\"\n";
        let p = problems(load(text, &[], Overrides::default()).unwrap_err());
        assert!(
            p.iter()
                .any(|p| p.starts_with("kafka.properties.session.timeout.ms: is not supported")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("kafka.properties.group.instance.id: is managed")),
            "{p:?}"
        );
        let classic = "[target]\nurl=\"http://x/\"\n[kafka.properties]\n\"heartbeat.interval.ms\" = \"1000\"\n";
        assert!(load(classic, &[], Overrides::default()).is_ok());
    }

    #[test]
    fn bad_flags_are_named() {
        let flags = Overrides {
            headers: vec!["NoColon".into()],
            kafka_properties: vec!["novalue".into()],
            ..Default::default()
        };
        let p = problems(load("[target]\nurl=\"http://x/\"\n", &[], flags).unwrap_err());
        assert!(
            p.iter().any(|p| p.starts_with("--header")) && p.iter().any(|p| p.starts_with("-X")),
            "{p:?}"
        );
    }
}
