//! What can be wrong with a configuration. A leaf: it imports nothing from
//! the crate, so every section's checks (beside the code they configure)
//! can report with it without a cycle.

use std::fmt;

/// One problem in a configuration, with the key's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the key, e.g. `retry.max_attempts`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

/// Collects the problems of a section.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Notes that the key at `path` has `problem`.
    pub fn add(&mut self, path: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            problem: problem.into(),
        });
    }

    /// Adds problems found elsewhere.
    pub fn extend(&mut self, more: impl IntoIterator<Item = ConfigProblem>) {
        self.0.extend(more);
    }

    /// The problems, in the order they were noted.
    pub fn into_vec(self) -> Vec<ConfigProblem> {
        self.0
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has an unknown or mistyped key.
    #[error("{0}")]
    Parse(String),
    /// The values do not pass validation.
    #[error("invalid configuration:\n  {}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ConfigProblem>),
}
