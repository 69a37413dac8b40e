//! Authentication to the target beyond static headers: HTTP basic, a bearer
//! token from a file (re-read on change), OAuth2 client credentials (fetched
//! before first use, refreshed before expiry, re-minted once on 401; a token
//! endpoint that fails is an outage, not a record failure). (Stub: filled in
//! by issue 6.)

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigProblem, TargetConfig};
use crate::http::ClientError;

/// `[target.auth]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {}

impl AuthConfig {
    /// Problems of this section, with key paths under `target.auth`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// Why no credential could be attached. Delivery treats it like a connect
/// error: the target cannot be reached, the record is not at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Attaches credentials to requests.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {}

impl Authenticator {
    /// An authenticator for the target.
    ///
    /// # Errors
    /// The settings cannot be used (e.g. a secret cannot be read).
    pub fn new(target: &TargetConfig) -> Result<Self, ClientError> {
        let _ = target;
        Ok(Authenticator {})
    }

    /// Adds the credential headers to one request.
    ///
    /// # Errors
    /// No credential could be obtained (token endpoint down, file unreadable).
    pub async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), AuthError> {
        let _ = headers;
        Ok(())
    }

    /// The target answered 401: drop the cached credential. Returns whether
    /// one immediate retry with a fresh credential makes sense.
    pub fn unauthorized(&self) -> bool {
        false
    }
}
