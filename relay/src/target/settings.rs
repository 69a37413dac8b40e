//! `[target]`: the customer's web server and how to talk to it, with its
//! defaults (in `Default`) and its checks. The subsections (`tls`, `proxy`,
//! `auth`, `signing`, `budget`) are each defined and checked in their own
//! module.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::config::problem::{ConfigProblem, Problems};
use crate::policy::classify::{Classifier, StatusSet};
use crate::secret::Secret;

/// `[target]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// The URL events are POSTed to (http or https).
    pub url: String,
    /// Extra headers sent verbatim with every request (OCS `http-custom-headers`).
    pub headers: BTreeMap<String, Secret>,
    /// TCP + TLS connect timeout.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
    /// Statuses that mean delivered (`2xx`, `409`, `500-504` forms).
    pub success_statuses: Vec<String>,
    /// Statuses worth retrying.
    pub retryable_statuses: Vec<String>,
    /// TLS and mTLS settings.
    pub tls: crate::target::tls::TlsConfig,
    /// Forward proxy; none when absent (the environment is ignored unless asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::target::proxy::ProxyConfig>,
    /// Authentication beyond static headers.
    pub auth: crate::target::auth::AuthConfig,
    /// Standard Webhooks request signing; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<crate::target::signing::SigningConfig>,
    /// Request rate and concurrency budget for this target.
    pub budget: crate::target::budget::BudgetConfig,
    /// The `User-Agent` of every request: `cpn-relay/<version>` unless set
    /// (`"OCS/8.1.528.15"` for a receiver that matches OCS's).
    pub user_agent: String,
    /// HTTP/1.1 header names in Title-Case (`Content-Type`, `Etag`,
    /// `User-Agent`), as OCS and most HTTP/1.1 clients write them, rather
    /// than lower case. Names are case-insensitive (RFC 9110), but some old
    /// receivers match them exactly. HTTP/2 is always lower case.
    pub title_case_headers: bool,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            success_statuses: vec!["2xx".into()],
            retryable_statuses: ["408", "425", "429", "5xx"].map(String::from).to_vec(),
            tls: Default::default(),
            proxy: None,
            auth: Default::default(),
            signing: None,
            budget: Default::default(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            title_case_headers: true,
        }
    }
}

/// Default `target.user_agent`: `cpn-relay/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("cpn-relay/", env!("CARGO_PKG_VERSION"));

/// Headers the relay sets itself for OCS parity.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "etag",
    "host",
    "user-agent",
    "accept",
];

impl TargetConfig {
    /// Every problem of `[target]`'s own keys, each with its key path.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        if self.url.is_empty() {
            p.add(
                "target.url",
                "missing: set it in the file, CPN_TARGET_URL or --target-url",
            );
        } else {
            match reqwest::Url::parse(&self.url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                    if u.host_str().is_none() {
                        p.add("target.url", "has no host");
                    }
                }
                Ok(u) => p.add(
                    "target.url",
                    format!("scheme {:?} is not http or https", u.scheme()),
                ),
                Err(e) => p.add("target.url", format!("not a URL: {e}")),
            }
        }
        for (name, value) in &self.headers {
            let path = format!("target.headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.add(path, "is not a valid HTTP header name");
            } else if reqwest::header::HeaderValue::from_str(&value.0).is_err() {
                p.add(path, "value is not a valid HTTP header value");
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                p.add(
                    path,
                    "is set by cpn-relay (OCS framing) and cannot be overridden",
                );
            }
        }
        if self.user_agent.trim().is_empty() {
            p.add("target.user_agent", "must not be empty");
        } else if reqwest::header::HeaderValue::from_str(&self.user_agent).is_err() {
            p.add(
                "target.user_agent",
                "is not a valid HTTP header value (visible ASCII and spaces)",
            );
        }
        if self.connect_timeout.is_zero() {
            p.add("target.connect_timeout_ms", "must be at least 1");
        }
        if self.request_timeout.is_zero() {
            p.add("target.request_timeout_ms", "must be at least 1");
        }
        if let Err(e) = StatusSet::parse(&self.success_statuses) {
            p.add("target.success_statuses", e);
        }
        if let Err(e) = StatusSet::parse(&self.retryable_statuses) {
            p.add("target.retryable_statuses", e);
        }
        p.into_vec()
    }

    /// The problems of the subsections `tls`, `proxy`, `auth` and `budget`.
    pub fn subsection_problems(&self) -> Vec<ConfigProblem> {
        let mut p = Problems::default();
        p.extend(self.tls.problems());
        if let Some(proxy) = &self.proxy {
            p.extend(proxy.problems());
        }
        p.extend(self.auth.problems());
        p.extend(self.budget.problems());
        p.into_vec()
    }

    /// The problems of `signing`.
    pub fn signing_problems(&self) -> Vec<ConfigProblem> {
        self.signing
            .as_ref()
            .map(|s| s.problems())
            .unwrap_or_default()
    }

    /// The response classifier. Call after the checks passed; a list that
    /// does not parse falls back to the default rule.
    pub fn classifier(&self) -> Classifier {
        match (
            StatusSet::parse(&self.success_statuses),
            StatusSet::parse(&self.retryable_statuses),
        ) {
            (Ok(s), Ok(r)) => Classifier::new(s, r),
            _ => Classifier::default(),
        }
    }
}
