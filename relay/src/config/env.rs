//! Environment overrides: `CPN_<SECTION>_<KEY>` sets the plain key `<key>`
//! of `[<section>]`, found by reflecting on the default configuration, so a
//! new key takes env without an edit here.

use std::collections::{BTreeMap, BTreeSet};

use super::RelayConfig;
use super::problem::ConfigProblem;

/// Applies `CPN_<SECTION>_<KEY>` variables to a parsed file. Known keys are
/// those of the default configuration (maps such as `target.headers` are
/// set by flags or the file).
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Vec<ConfigProblem> {
    let mut problems = vec![];
    let Ok(toml::Value::Table(defaults)) = toml::Value::try_from(RelayConfig::default()) else {
        return problems;
    };
    // Options without a default value still take env.
    let extra = [
        ("CPN_KAFKA_DLQ_TOPIC", ("kafka", "dlq_topic")),
        ("CPN_KAFKA_INSTANCE_ID", ("kafka", "instance_id")),
        ("CPN_OBSERVABILITY_RELAY_ID", ("observability", "relay_id")),
    ];
    let mut known: BTreeSet<String> = extra.iter().map(|(v, _)| (*v).to_owned()).collect();
    for (section, keys) in &defaults {
        let toml::Value::Table(keys) = keys else {
            continue;
        };
        for (key, default) in keys {
            if default.is_table() {
                continue;
            }
            let var = format!(
                "CPN_{}_{}",
                section.to_ascii_uppercase(),
                key.to_ascii_uppercase()
            );
            known.insert(var.clone());
            let Some(raw) = env.get(&var) else { continue };
            let value = match default {
                toml::Value::Array(_) => toml::Value::Array(
                    raw.split(',')
                        .map(|s| toml::Value::String(s.trim().to_owned()))
                        .collect(),
                ),
                toml::Value::String(_) => toml::Value::String(raw.clone()),
                _ => match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
                    Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.clone())),
                    Err(_) => {
                        problems.push(ConfigProblem {
                            path: var.clone(),
                            problem: format!("{raw:?} is not a valid value for {section}.{key}"),
                        });
                        continue;
                    }
                },
            };
            let sect = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(s) = sect {
                s.insert(key.clone(), value);
            }
        }
    }
    for (var, path) in extra {
        if let Some(raw) = env.get(var) {
            let sect = table
                .entry(path.0.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(s) = sect {
                s.insert(path.1.to_owned(), toml::Value::String(raw.clone()));
            }
        }
    }
    // A variable named like a setting of a section but matching none (a
    // typo, or a table such as target.tls that env cannot set) is an error,
    // as an unknown key in the file is. Other CPN_ variables belong to the
    // other cpn tools and flags.
    let prefixes: Vec<String> = defaults
        .keys()
        .map(|section| format!("CPN_{}_", section.to_ascii_uppercase()))
        .collect();
    for var in env.keys() {
        if prefixes.iter().any(|p| var.starts_with(p.as_str()))
            && !known.contains(var)
            && !ENV_OF_OTHER_TOOLS.contains(&var.as_str())
        {
            problems.push(ConfigProblem {
                path: var.clone(),
                problem: "is not a setting: env sets CPN_<SECTION>_<KEY> for the plain keys of \
                          a section (see relay.example.toml); tables such as target.tls, \
                          target.headers or kafka.properties are set in the file or by flags"
                    .into(),
            });
        }
    }
    problems
}

/// `CPN_` variables shaped like relay settings that cpn-producer reads (its
/// `-X`, `serve --retry-after-secs` and `--shutdown-timeout-ms`), so the
/// relay leaves them alone (`tests/tests/env_vars.rs` checks the list).
pub const ENV_OF_OTHER_TOOLS: &[&str] = &[
    "CPN_KAFKA_PROPERTIES",
    "CPN_RETRY_AFTER_SECS",
    "CPN_SHUTDOWN_TIMEOUT_MS",
];

/// Who set `key` (`retry.max_attempts`): its environment variable when one
/// is set, else the file.
pub(super) fn blame(key: &str, env: &BTreeMap<String, String>, file: &str) -> String {
    match variable_for(key, env) {
        Some(var) => format!("environment variable {var} (sets {key})"),
        None => format!("{file}: {key}"),
    }
}

/// The environment variable that set `key` (`retry.max_attempts` →
/// `CPN_RETRY_MAX_ATTEMPTS`), if one is set.
pub(super) fn variable_for(key: &str, env: &BTreeMap<String, String>) -> Option<String> {
    let (section, rest) = key.split_once('.')?;
    let var = format!(
        "CPN_{}_{}",
        section.to_ascii_uppercase(),
        rest.replace('.', "_").to_ascii_uppercase()
    );
    env.contains_key(&var).then_some(var)
}
