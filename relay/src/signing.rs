//! Standard Webhooks signatures (`webhook-id` = GUID, `webhook-timestamp`,
//! `webhook-signature` = HMAC-SHA256 over `id.timestamp.body`), so receivers
//! can verify where a request came from; several secrets for rotation.
//! (Stub: filled in by issue 6.)

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::ConfigProblem;
use crate::http::ClientError;

/// `[target.signing]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {}

impl SigningConfig {
    /// Problems of this section, with key paths under `target.signing`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// Signs requests.
#[derive(Debug, Clone)]
pub struct Signer {}

impl Signer {
    /// A signer from its configuration.
    ///
    /// # Errors
    /// A secret cannot be read or decoded.
    pub fn new(cfg: &SigningConfig) -> Result<Self, ClientError> {
        let _ = cfg;
        Ok(Signer {})
    }

    /// Adds the signature headers for one request.
    pub fn sign(&self, headers: &mut HeaderMap, guid: &str, body: &[u8], now: SystemTime) {
        let _ = (headers, guid, body, now);
    }
}
