//! The HTTP edge: the one place the target's client is built, and one POST
//! with OCS framing turned into a classified [`Attempt`].
//!
//! Framing (spec "HTTP framing of the delivery"): the body is the record value
//! byte for byte; `Accept: */*`, `User-Agent: cpn-relay/<version>`,
//! `Content-Type: application/json`, an exact `Content-Length`, `ETag: <GUID>`
//! and the configured custom headers. Redirects are never followed. Proxies
//! come only from `target.proxy` (the environment only when it says so),
//! set up in [`build_client`].

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, ETAG, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER,
};

use crate::config::problem::ConfigProblem;
use crate::dlq::headers::RESPONSE_BODY_MAX_BYTES;
use crate::policy::classify::Attempt;
use crate::policy::retry::parse_retry_after;
pub use crate::target::error::ClientError;
use crate::target::error::error_chain;
use crate::target::settings::TargetConfig;

/// Default `User-Agent` value (`target.user_agent`): `cpn-relay/<version>`.
pub const USER_AGENT: &str = crate::target::settings::DEFAULT_USER_AGENT;

/// The customer's web server: a pooled client, the URL and the fixed headers.
#[derive(Debug, Clone)]
pub struct Target {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    auth: crate::target::auth::Authenticator,
    signer: Option<crate::target::signing::Signer>,
}

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// The classified result.
    pub attempt: Attempt,
    /// The first bytes of the response body (for the dead letter).
    pub response_excerpt: Vec<u8>,
    /// A 3xx's `Location`, credentials removed (redirects are not followed).
    pub location: Option<String>,
    /// How long the attempt took.
    pub duration: Duration,
    /// When it started.
    pub started_at: SystemTime,
}

/// Builds the target's HTTP client: the single place TLS, proxy, pooling and
/// timeout settings are made.
///
/// # Errors
/// Names the header or setting that is not acceptable.
pub fn build_client(cfg: &TargetConfig) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(cfg.user_agent.as_str())
        .connect_timeout(cfg.connect_timeout)
        .timeout(cfg.request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true);
    if cfg.title_case_headers {
        b = b.http1_title_case_headers();
    }
    let b = cfg.tls.configure(b)?;
    let b = crate::target::proxy::configure(cfg.proxy.as_ref(), b)?;
    b.build().map_err(ClientError::Build)
}

impl Target {
    /// A target from its configuration.
    ///
    /// # Errors
    /// The URL or a header is invalid, or the client cannot be built.
    pub fn new(cfg: &TargetConfig) -> Result<Self, ClientError> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| ClientError::Url(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| ClientError::Header {
                name: name.clone(),
                problem: e.to_string(),
            })?;
            let mut v = HeaderValue::from_str(&value.0).map_err(|e| ClientError::Header {
                name: name.clone(),
                problem: e.to_string(),
            })?;
            v.set_sensitive(true);
            headers.append(n, v);
        }
        let signer = cfg
            .signing
            .as_ref()
            .map(crate::target::signing::Signer::new)
            .transpose()?;
        Ok(Target {
            client: build_client(cfg)?,
            url,
            headers,
            auth: crate::target::auth::Authenticator::new(&cfg.auth, || build_client(cfg))?,
            signer,
        })
    }

    /// POSTs `body` with `ETag: guid` and classifies the result. Never fails:
    /// every error becomes an [`Attempt`].
    pub async fn post(&self, body: Bytes, guid: &str) -> AttemptReport {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let mut headers = self.headers.clone();
        match HeaderValue::from_str(guid) {
            Ok(v) => {
                headers.insert(ETAG, v);
            }
            Err(_) => {
                // The GUID was validated by the schema; a GUID is ASCII.
                tracing::warn!("guid is not a valid header value; sending without ETag");
            }
        }
        if let Some(signer) = &self.signer {
            signer.sign(&mut headers, guid, &body, SystemTime::now());
        }
        let result = self.send_authorized(headers, body).await;
        let mut location = None;
        let (attempt, response_excerpt) = match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                // Where a redirect pointed (it is not followed), without
                // credentials, for the dead letter.
                location = (300..400)
                    .contains(&status)
                    .then(|| resp.headers().get(LOCATION))
                    .flatten()
                    .map(|v| shown_location(v.as_bytes()));
                let mut excerpt = Vec::new();
                // Read at most the excerpt; the rest is dropped with the connection
                // reading it would only delay the outcome.
                while excerpt.len() < RESPONSE_BODY_MAX_BYTES {
                    match resp.chunk().await {
                        Ok(Some(c)) => {
                            let room = RESPONSE_BODY_MAX_BYTES - excerpt.len();
                            excerpt.extend_from_slice(&c[..c.len().min(room)]);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                (
                    Attempt::Response {
                        status,
                        retry_after,
                    },
                    excerpt,
                )
            }
            Err(Failure::Http(e)) => (classify_error(&e), Vec::new()),
            // No credential means the target cannot be reached: like a
            // connect error, an outage rather than the record's fault.
            Err(Failure::Auth(e)) => (Attempt::Connect(format!("auth: {e}")), Vec::new()),
        };
        AttemptReport {
            attempt,
            response_excerpt,
            location,
            duration: start.elapsed(),
            started_at,
        }
    }
}

enum Failure {
    Http(reqwest::Error),
    Auth(crate::target::auth::AuthError),
}

impl Target {
    /// Sends with credentials; on a 401 that the authenticator can cure
    /// (a fresh OAuth2 token), sends once more.
    async fn send_authorized(
        &self,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, Failure> {
        // The headers are kept for a second request only where a 401 can
        // be cured; otherwise the one map goes out as it is.
        let (mut first, kept) = if self.auth.can_cure_unauthorized() {
            (headers.clone(), Some(headers))
        } else {
            (headers, None)
        };
        self.auth
            .authorize(&mut first)
            .await
            .map_err(Failure::Auth)?;
        let resp = self
            .client
            .post(self.url.clone())
            .headers(first)
            .body(body.clone())
            .send()
            .await
            .map_err(Failure::Http)?;
        let Some(mut second) = kept else {
            return Ok(resp);
        };
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED || !self.auth.unauthorized() {
            return Ok(resp);
        }
        drop(resp);
        self.auth
            .authorize(&mut second)
            .await
            .map_err(Failure::Auth)?;
        self.client
            .post(self.url.clone())
            .headers(second)
            .body(body)
            .send()
            .await
            .map_err(Failure::Http)
    }
}

/// What `run` would refuse at start that needs no network: every secret
/// readable (files exist, variables set), the token file readable, and
/// the HTTP client buildable (certificates and keys parse and match,
/// the proxy URL). `check-config` runs these after the key checks.
pub fn offline_problems(cfg: &TargetConfig) -> Vec<ConfigProblem> {
    use crate::target::auth::AuthConfig;
    let mut p = crate::config::problem::Problems::default();
    let mut secret = |path: &str, s: &crate::secret::SecretSource| {
        if let Err(e) = s.resolve() {
            p.add(path, e.to_string());
        }
    };
    match &cfg.auth {
        AuthConfig::Basic {
            password: Some(pw), ..
        } => secret("target.auth.password", pw),
        AuthConfig::Oauth2 {
            client_secret: Some(cs),
            ..
        } => secret("target.auth.client_secret", cs),
        _ => {}
    }
    if let Some(pw) = cfg.proxy.as_ref().and_then(|x| x.password.as_ref()) {
        secret("target.proxy.password", pw);
    }
    if let Some(signing) = &cfg.signing {
        for (i, s) in signing.secrets.iter().enumerate() {
            secret(&format!("target.signing.secrets[{i}]"), s);
        }
    }
    if let crate::target::auth::AuthConfig::BearerFile {
        token_file: Some(f),
    } = &cfg.auth
        && let Err(e) = std::fs::read_to_string(f)
    {
        p.add("target.auth.token_file", format!("cannot read {f}: {e}"));
    }
    let mut p = p.into_vec();
    if p.is_empty()
        && let Err(e) = Target::new(cfg)
    {
        p.push(ConfigProblem {
            path: "target".into(),
            problem: e.to_string(),
        });
    }
    p
}

/// Longest `Location` kept for a dead letter: it goes into three of its
/// headers, and an unbounded one could push the dead letter past the
/// broker's record size (the partition would then stall).
pub const LOCATION_MAX_BYTES: usize = 2048;

/// A redirect's `Location` as a dead letter keeps it: without credentials,
/// query values or fragment, at most [`LOCATION_MAX_BYTES`].
fn shown_location(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let without_fragment = text.split('#').next().unwrap_or_default();
    let mut shown = crate::secret::redact_url(without_fragment);
    if shown.len() > LOCATION_MAX_BYTES {
        let mut end = LOCATION_MAX_BYTES;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    shown
}

fn classify_error(e: &reqwest::Error) -> Attempt {
    let text = error_chain(e);
    if crate::target::tls::is_tls_failure(e) {
        // One line per failed attempt, from cpn, with the reason: the
        // certificate verifier's own ERROR lines are filtered out (main.rs).
        tracing::warn!(reason = %text, "TLS with the target failed; the record is held and retried");
        Attempt::Connect(text)
    } else if e.is_connect() {
        Attempt::Connect(text)
    } else if e.is_timeout() {
        Attempt::Timeout(text)
    } else {
        Attempt::Transport(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_kept_without_secrets_and_bounded() {
        let shown = shown_location(b"https://u:pw@crm.example/cb?token=abc&x=1#access_token=zz");
        assert!(
            !shown.contains("pw") && !shown.contains("abc") && !shown.contains("zz"),
            "{shown}"
        );
        assert!(shown.starts_with("https://crm.example/cb?"), "{shown}");
        let long = format!("https://crm.example/{}", "é".repeat(5000));
        let shown = shown_location(long.as_bytes());
        assert!(
            shown.len() <= LOCATION_MAX_BYTES + "…".len(),
            "{}",
            shown.len()
        );
    }
}
