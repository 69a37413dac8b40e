//! The target's error types, a leaf: imports nothing from the crate, so
//! every part of the client can name them without a cycle.

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A configured header name or value is not valid HTTP.
    #[error("target.headers.{name}: {problem}")]
    Header {
        /// Header name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The target URL is not valid.
    #[error("target.url: {0}")]
    Url(String),
    /// reqwest refused the settings.
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// A TLS, proxy, auth or signing setting cannot be used.
    #[error("{path}: {problem}")]
    Setting {
        /// Dotted key path, e.g. `target.tls.ca_file`.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// The error and its sources on one line, without the URL (it may carry
/// credentials).
pub(crate) fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.without_url_ref().to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let s = self.to_string();
        match self.url() {
            Some(u) => s
                .replace(&format!(" ({u})"), "")
                .replace(u.as_str(), "[target]"),
            None => s,
        }
    }
}
