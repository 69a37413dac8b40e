//! Command-line overrides of the essentials (`--brokers`, `--target-url`,
//! `-X`, ...): flags win over env and the file.

use super::RelayConfig;
use super::problem::ConfigProblem;
use crate::kafka::settings::GroupProtocol;
use crate::secret::Secret;

/// Overrides the essentials from the command line (flags win over env and file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--brokers`.
    pub brokers: Option<String>,
    /// `--topic`.
    pub topic: Option<String>,
    /// `--group`.
    pub group: Option<String>,
    /// `--instance-id`.
    pub instance_id: Option<String>,
    /// `--group-protocol`.
    pub group_protocol: Option<String>,
    /// `--target-url`.
    pub target_url: Option<String>,
    /// `--dlq-topic`.
    pub dlq_topic: Option<String>,
    /// `--header 'Name: value'`, repeatable.
    pub headers: Vec<String>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `-X key=value`, repeatable.
    pub kafka_properties: Vec<String>,
    /// `--json-logs`.
    pub json_logs: bool,
}

impl Overrides {
    /// The flag that set the key at `path` (`kafka.topic` → `--topic`,
    /// `target.headers.X-Key` → `--header`), if a flag did.
    pub(super) fn flag_for(&self, path: &str) -> Option<&'static str> {
        let set = |v: &Option<String>, flag| v.is_some().then_some(flag);
        match path {
            "kafka.brokers" => set(&self.brokers, "--brokers"),
            "kafka.topic" => set(&self.topic, "--topic"),
            "kafka.group" => set(&self.group, "--group"),
            "kafka.instance_id" => set(&self.instance_id, "--instance-id"),
            "kafka.group_protocol" => set(&self.group_protocol, "--group-protocol"),
            "kafka.dlq_topic" => set(&self.dlq_topic, "--dlq-topic"),
            "target.url" => set(&self.target_url, "--target-url"),
            "observability.metrics_listen" => set(&self.metrics_listen, "--metrics-listen"),
            _ => {
                if let Some(name) = path.strip_prefix("target.headers.") {
                    let named = |h: &String| {
                        h.split_once(':')
                            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                    };
                    return self.headers.iter().any(named).then_some("--header");
                }
                let key = path.strip_prefix("kafka.properties.")?;
                let named = |kv: &String| kv.split_once('=').is_some_and(|(k, _)| k.trim() == key);
                self.kafka_properties.iter().any(named).then_some("-X")
            }
        }
    }
}

impl RelayConfig {
    pub(super) fn apply_flags(&mut self, f: &Overrides) -> Vec<ConfigProblem> {
        let mut problems = vec![];
        if let Some(v) = &f.brokers {
            self.kafka.brokers = v.clone();
        }
        if let Some(v) = &f.topic {
            self.kafka.topic = v.clone();
        }
        if let Some(v) = &f.group {
            self.kafka.group = v.clone();
        }
        if let Some(v) = &f.instance_id {
            self.kafka.instance_id = Some(v.clone());
        }
        if let Some(v) = &f.group_protocol {
            match GroupProtocol::parse(v) {
                Ok(p) => self.kafka.group_protocol = p,
                Err(problem) => problems.push(ConfigProblem {
                    path: "--group-protocol".into(),
                    problem,
                }),
            }
        }
        if let Some(v) = &f.target_url {
            self.target.url = v.clone();
        }
        if let Some(v) = &f.dlq_topic {
            self.kafka.dlq_topic = Some(v.clone());
        }
        if let Some(v) = &f.metrics_listen {
            self.observability.metrics_listen = v.clone();
        }
        if f.json_logs {
            self.observability.json_logs = true;
        }
        for h in &f.headers {
            match h.split_once(':') {
                Some((name, value)) if !name.trim().is_empty() => {
                    self.target
                        .headers
                        .insert(name.trim().to_owned(), Secret(value.trim().to_owned()));
                }
                _ => problems.push(ConfigProblem {
                    path: "--header".into(),
                    problem: "expected 'Name: value'".into(),
                }),
            }
        }
        for kv in &f.kafka_properties {
            match kv.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    self.kafka
                        .properties
                        .insert(k.trim().to_owned(), Secret(v.to_owned()));
                }
                _ => problems.push(ConfigProblem {
                    path: "-X".into(),
                    problem: format!("expected key=value, got {kv:?}"),
                }),
            }
        }
        problems
    }
}
