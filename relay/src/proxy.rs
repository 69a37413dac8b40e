//! Forward proxy for the target: `http://` proxy with CONNECT for https
//! targets, optional basic proxy auth, a `no_proxy` list, or the
//! `HTTPS_PROXY`/`NO_PROXY` environment when asked to. Without a `[target.proxy]`
//! section no proxy is used, whatever the environment says. (Stub: filled in
//! by issue 6.)

use serde::{Deserialize, Serialize};

use crate::config::ConfigProblem;
use crate::http::ClientError;

/// `[target.proxy]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {}

impl ProxyConfig {
    /// Problems of this section, with key paths under `target.proxy`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }
}

/// Applies the proxy settings (or "no proxy") to the target's client builder.
///
/// # Errors
/// The proxy URL or credentials are not usable.
pub fn configure(
    cfg: Option<&ProxyConfig>,
    b: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let _ = cfg;
    Ok(b.no_proxy())
}
