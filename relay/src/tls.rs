//! TLS to the target: minimum version, custom CA bundle, system roots, server
//! name override, mTLS client certificate, and a loudly logged
//! `insecure_skip_verify` for labs. (Stub: filled in by issue 6.)

use serde::{Deserialize, Serialize};

use crate::config::ConfigProblem;
use crate::http::ClientError;

/// `[target.tls]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {}

impl TlsConfig {
    /// Problems of this section, with key paths under `target.tls`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }

    /// Applies these settings to the target's client builder.
    ///
    /// # Errors
    /// A file cannot be read or is not valid PEM.
    pub fn configure(
        &self,
        b: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, ClientError> {
        Ok(b.tls_version_min(reqwest::tls::Version::TLS_1_2))
    }
}
