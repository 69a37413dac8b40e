//! Where a secret comes from: inline, an environment variable, or a file.
//!
//! In TOML: `password = "inline"`, `password = { env = "CRM_PASSWORD" }` or
//! `password = { file = "/run/secrets/crm" }`. A file is read when the value
//! is needed (so a rotated file is picked up by callers that re-resolve), and
//! surrounding whitespace is trimmed. `Debug` and serialization never show
//! the value.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret's source.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SecretSource {
    /// The value itself.
    Inline(String),
    /// The value of an environment variable.
    Env {
        /// Variable name.
        env: String,
    },
    /// The contents of a file.
    File {
        /// File path.
        file: String,
    },
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The variable is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// Path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SecretSource {
    /// The secret's current value.
    ///
    /// # Errors
    /// The variable is unset or the file unreadable.
    pub fn resolve(&self) -> Result<String, SecretError> {
        match self {
            SecretSource::Inline(v) => Ok(v.clone()),
            SecretSource::Env { env } => {
                std::env::var(env).map_err(|_| SecretError::MissingEnv(env.clone()))
            }
            SecretSource::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim().to_owned())
                .map_err(|source| SecretError::File {
                    path: file.clone(),
                    source,
                }),
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("[redacted]"),
            SecretSource::Env { env } => write!(f, "{{ env = {env:?} }}"),
            SecretSource::File { file } => write!(f, "{{ file = {file:?} }}"),
        }
    }
}

impl Serialize for SecretSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Env<'a> {
            env: &'a str,
        }
        #[derive(Serialize)]
        struct File<'a> {
            file: &'a str,
        }
        match self {
            SecretSource::Inline(_) => s.serialize_str("[redacted]"),
            SecretSource::Env { env } => Env { env }.serialize(s),
            SecretSource::File { file } => File { file }.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        a: SecretSource,
        b: SecretSource,
        c: SecretSource,
    }

    #[test]
    fn three_forms_parse_and_never_print() {
        let t: T = toml::from_str("a = \"s3cret\"\nb = { env = \"CPN_TEST_NOPE_UNSET\" }\nc = { file = \"/nonexistent/x\" }\n").unwrap();
        assert_eq!(t.a.resolve().unwrap(), "s3cret");
        assert!(
            t.b.resolve()
                .unwrap_err()
                .to_string()
                .contains("CPN_TEST_NOPE_UNSET")
        );
        assert!(
            t.c.resolve()
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/x")
        );
        assert!(!format!("{:?}", t.a).contains("s3cret"));
        assert!(
            !toml::to_string(&std::collections::BTreeMap::from([("a", &t.a)]))
                .unwrap()
                .contains("s3cret")
        );
    }

    #[test]
    fn files_are_trimmed() {
        let p = std::env::temp_dir().join(format!("cpn-secret-{}", std::process::id()));
        std::fs::write(&p, "tok\n").unwrap();
        let s = SecretSource::File {
            file: p.to_string_lossy().into_owned(),
        };
        assert_eq!(s.resolve().unwrap(), "tok");
    }
}
