//! Secrets: where one comes from (inline, an environment variable, or a file),
//! [`Secret`] for values that must never print, and [`redact_url`].
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

/// A string that prints as `[redacted]` in `Debug` and redacted output:
/// custom header values and librdkafka properties of the configuration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The URL with user name, password and query values removed, for headers
/// and logs: `https://user:secret@crm/x?token=abc` → `https://crm/x?token=[redacted]`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match authority_and_path.find('/') {
        Some(i) => authority_and_path.split_at(i),
        None => (authority_and_path, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut out = String::with_capacity(url.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    out.push_str(host);
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=[redacted]"),
                None => kv.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
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

    #[test]
    fn urls_lose_their_credentials() {
        let cases = [
            ("https://crm.example/hook", "https://crm.example/hook"),
            (
                "https://user:pw@crm.example:8443/hook",
                "https://crm.example:8443/hook",
            ),
            (
                "http://crm/x?token=abc&flag",
                "http://crm/x?token=[redacted]&flag",
            ),
            ("https://u@h", "https://h"),
            ("https://a@b@h/p", "https://h/p"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }
}
