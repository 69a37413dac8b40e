//! OAuth2 client credentials (RFC 6749 §4.4): a token fetched on first use,
//! shared by every request, refreshed before it expires, re-minted when the
//! target answers 401.
//!
//! - Single flight: one fetch at a time; requests that need a token wait for
//!   it, requests that still hold a valid one keep using it meanwhile.
//! - Refresh at `expires_in - refresh_before` (the margin capped at half the
//!   lifetime, so a short-lived token is not fetched on every request). A
//!   token without `expires_in` is used until the target answers 401.
//! - A failed fetch is an [`AuthError`] (an outage: the partition pauses),
//!   unless the current token has not expired yet, which is then used. The
//!   endpoint is asked again at most once per [`FETCH_RETRY_INTERVAL`], so a
//!   down identity provider is not hammered by every queued request.
//! - A 401 drops the token unless it was obtained less than
//!   [`MIN_TOKEN_AGE_FOR_INVALIDATION`] ago: a burst of 401s for requests
//!   sent with the old token makes one new token, not one each.
//!
//! The request body, the client's basic header, the response parsing and
//! the cache decisions are pure functions below; [`Oauth2`] is the I/O.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{AuthError, bearer_header};
use crate::secret::SecretSource;
use crate::target::error::error_chain;

/// The longest `expires_in` taken from a token endpoint, in seconds.
const MAX_EXPIRES_IN_SECS: u64 = 1_000_000_000;

/// A failed token request is not repeated sooner than this.
pub const FETCH_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// A 401 does not drop a token younger than this (it was minted after the
/// rejected request was sent, or it is rejected anyway).
pub const MIN_TOKEN_AGE_FOR_INVALIDATION: Duration = Duration::from_secs(1);
/// Longest token response read.
pub const TOKEN_RESPONSE_MAX_BYTES: usize = 64 * 1024;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields.
    #[default]
    Post,
    /// `Authorization: Basic` with the form-encoded id and secret.
    Basic,
}

/// Checks a token endpoint URL.
///
/// # Errors
/// Not a URL, or not http(s).
pub fn check_token_url(u: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(()),
        _ => Err("scheme must be http or https".into()),
    }
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The token request's form body.
pub fn form_body(
    client_auth: ClientAuth,
    client_id: &str,
    client_secret: &str,
    scope: Option<&str>,
    audience: Option<&str>,
) -> String {
    let mut fields = vec![("grant_type", "client_credentials")];
    if client_auth == ClientAuth::Post {
        fields.push(("client_id", client_id));
        fields.push(("client_secret", client_secret));
    }
    if let Some(s) = scope {
        fields.push(("scope", s));
    }
    if let Some(a) = audience {
        fields.push(("audience", a));
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The client's `Authorization: Basic` value for `client_auth = "basic"`:
/// id and secret form-encoded first, as RFC 6749 §2.3.1 says.
///
/// # Errors
/// Never in practice (base64 is a valid header value); kept total.
pub fn client_basic_header(client_id: &str, client_secret: &str) -> Result<HeaderValue, String> {
    let raw = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    let mut v = HeaderValue::from_str(&format!("Basic {}", BASE64.encode(raw)))
        .map_err(|_| "client credentials are not a valid header value".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

/// What a token endpoint granted.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Its lifetime, when the endpoint said.
    pub expires_in: Option<Duration>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Reads a token endpoint's answer. Errors never quote the body (it may hold
/// a token); an OAuth2 `error` code is quoted when it looks like one.
///
/// # Errors
/// A non-2xx status, a body that is not a token response, or a token type
/// other than bearer.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(f64),
        Text(String),
    }
    #[derive(Deserialize)]
    struct Wire {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<Seconds>,
        error: Option<String>,
    }
    let wire: Result<Wire, _> = serde_json::from_slice(body);
    if !(200..300).contains(&status) {
        let code = wire
            .ok()
            .and_then(|w| w.error)
            .filter(|e| {
                e.len() <= 64
                    && e.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            })
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!("token endpoint answered {status}{code}"));
    }
    let wire = wire.map_err(|e| {
        format!(
            "token endpoint answered {status} with a body that is not a token response \
             (JSON error at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let access_token = wire
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("token endpoint response has no access_token")?;
    if let Some(t) = &wire.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(format!("token_type {t:?} is not supported (only bearer)"));
    }
    // Anything beyond ~30 years is nonsense (and would overflow an Instant).
    let expires_in = match wire.expires_in {
        None => None,
        Some(Seconds::Number(n)) if (0.0..=MAX_EXPIRES_IN_SECS as f64).contains(&n) => {
            Some(Duration::from_secs_f64(n))
        }
        Some(Seconds::Text(t)) => match t.trim().parse::<u64>() {
            Ok(n) if n <= MAX_EXPIRES_IN_SECS => Some(Duration::from_secs(n)),
            _ => return Err("token endpoint response has an invalid expires_in".into()),
        },
        Some(_) => return Err("token endpoint response has an invalid expires_in".into()),
    };
    Ok(TokenResponse {
        access_token,
        expires_in,
    })
}

/// A token in the cache.
#[derive(Debug, Clone)]
pub struct Token {
    header: HeaderValue,
    obtained_at: Instant,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
}

impl Token {
    /// A token requested at `requested_at` (the time the request was sent,
    /// so the lifetime is never overestimated).
    pub fn new(
        header: HeaderValue,
        requested_at: Instant,
        expires_in: Option<Duration>,
        refresh_before: Duration,
    ) -> Self {
        // A lifetime past what an Instant can hold is as good as none.
        let expires_at = expires_in.and_then(|l| requested_at.checked_add(l));
        let refresh_at = expires_in
            .and_then(|l| requested_at.checked_add(l.saturating_sub(refresh_before.min(l / 2))));
        Token {
            header,
            obtained_at: requested_at,
            refresh_at,
            expires_at,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    fn fresh(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|r| now < r)
    }
}

/// The token cache.
#[derive(Debug, Default)]
pub struct Cache {
    token: Option<Token>,
    last_failure: Option<(Instant, String)>,
}

/// What a request does about its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Use this header.
    Use(HeaderValue),
    /// Fetch a new token; `fallback` is usable meanwhile (refresh window).
    Fetch {
        /// The current token while it has not expired.
        fallback: Option<HeaderValue>,
    },
    /// The endpoint failed moments ago and there is no usable token.
    Fail(String),
}

impl Cache {
    /// What a request at `now` does.
    pub fn decide(&self, now: Instant) -> Decision {
        let usable = self.token.as_ref().filter(|t| t.usable(now));
        if let Some(t) = usable
            && t.fresh(now)
        {
            return Decision::Use(t.header.clone());
        }
        let fallback = usable.map(|t| t.header.clone());
        match (&self.last_failure, fallback) {
            (Some((at, _)), Some(h))
                if now.saturating_duration_since(*at) < FETCH_RETRY_INTERVAL =>
            {
                Decision::Use(h)
            }
            (Some((at, why)), None)
                if now.saturating_duration_since(*at) < FETCH_RETRY_INTERVAL =>
            {
                Decision::Fail(why.clone())
            }
            (_, fallback) => Decision::Fetch { fallback },
        }
    }

    /// A 401 at `now`: drops the token unless it is younger than
    /// [`MIN_TOKEN_AGE_FOR_INVALIDATION`].
    pub fn invalidate(&mut self, now: Instant) {
        if self.token.as_ref().is_some_and(|t| {
            now.saturating_duration_since(t.obtained_at) >= MIN_TOKEN_AGE_FOR_INVALIDATION
        }) {
            self.token = None;
        }
    }

    /// Records a fetch result.
    pub fn store(&mut self, result: Result<Token, (Instant, String)>) {
        match result {
            Ok(t) => {
                self.token = Some(t);
                self.last_failure = None;
            }
            Err(f) => self.last_failure = Some(f),
        }
    }
}

/// What the token request needs.
#[derive(Debug)]
pub struct Settings {
    /// Token endpoint.
    pub token_url: reqwest::Url,
    /// Client id.
    pub client_id: String,
    /// Client secret, resolved at every fetch.
    pub client_secret: SecretSource,
    /// Optional scope.
    pub scope: Option<String>,
    /// Optional audience.
    pub audience: Option<String>,
    /// Form fields or basic header.
    pub client_auth: ClientAuth,
    /// Refresh margin.
    pub refresh_before: Duration,
}

/// The client-credentials token source of one target.
#[derive(Debug)]
pub struct Oauth2 {
    client: reqwest::Client,
    settings: Settings,
    /// Never held across an await.
    cache: Mutex<Cache>,
    /// Held while a fetch runs: single flight.
    fetching: tokio::sync::Mutex<()>,
}

impl Oauth2 {
    /// A token source using `client` (the target's, so its TLS and proxy
    /// settings apply to the token endpoint too).
    pub fn new(client: reqwest::Client, settings: Settings) -> Self {
        Oauth2 {
            client,
            settings,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The target answered 401.
    pub fn invalidate(&self, now: Instant) {
        self.cache().invalidate(now);
    }

    /// The `Authorization` value for one request.
    ///
    /// # Errors
    /// No usable token and the endpoint failed (now or moments ago).
    pub async fn header(&self) -> Result<HeaderValue, AuthError> {
        let decision = self.cache().decide(Instant::now());
        let fallback = match decision {
            Decision::Use(h) => return Ok(h),
            Decision::Fail(why) => return Err(AuthError(why)),
            Decision::Fetch { fallback } => fallback,
        };
        let _guard = match (self.fetching.try_lock(), fallback) {
            (Ok(g), _) => g,
            // Someone is refreshing; the current token still works.
            (Err(_), Some(h)) => return Ok(h),
            (Err(_), None) => self.fetching.lock().await,
        };
        // Decide again: the fetch this request waited for may have settled it.
        let fallback = match self.cache().decide(Instant::now()) {
            Decision::Use(h) => return Ok(h),
            Decision::Fail(why) => return Err(AuthError(why)),
            Decision::Fetch { fallback } => fallback,
        };
        let requested_at = Instant::now();
        match self.fetch().await {
            Ok(resp) => {
                let header = bearer_header(&resp.access_token)
                    .map_err(|e| AuthError(format!("token endpoint: {e}")));
                let header = match header {
                    Ok(h) => h,
                    Err(e) => {
                        self.cache().store(Err((Instant::now(), e.0.clone())));
                        return fallback.ok_or(e);
                    }
                };
                tracing::debug!(expires_in_s = ?resp.expires_in.map(|d| d.as_secs()), "oauth2 token obtained");
                self.cache().store(Ok(Token::new(
                    header.clone(),
                    requested_at,
                    resp.expires_in,
                    self.settings.refresh_before,
                )));
                Ok(header)
            }
            Err(why) => {
                tracing::warn!(error = %why, "oauth2 token request failed");
                self.cache().store(Err((Instant::now(), why.clone())));
                match fallback {
                    Some(h) => Ok(h),
                    None => Err(AuthError(why)),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<TokenResponse, String> {
        let s = &self.settings;
        let source = s.client_secret.clone();
        // A file secret is read from disk: off the async threads.
        let secret = tokio::task::spawn_blocking(move || source.resolve())
            .await
            .map_err(|e| format!("reading the client secret: {e}"))?
            .map_err(|e| format!("target.auth.client_secret: {e}"))?;
        let body = form_body(
            s.client_auth,
            &s.client_id,
            &secret,
            s.scope.as_deref(),
            s.audience.as_deref(),
        );
        let mut req = self
            .client
            .post(s.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if s.client_auth == ClientAuth::Basic {
            req = req.header(AUTHORIZATION, client_basic_header(&s.client_id, &secret)?);
        }
        let mut resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| format!("token endpoint: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if bytes.len() + c.len() > TOKEN_RESPONSE_MAX_BYTES {
                        return Err(format!(
                            "token endpoint response is larger than {TOKEN_RESPONSE_MAX_BYTES} bytes"
                        ));
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(format!("token endpoint: {}", error_chain(&e))),
            }
        }
        parse_token_response(status, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_follows_the_urlencoded_rules() {
        let cases = [
            ("abc-._*XYZ019", "abc-._*XYZ019"),
            ("a b", "a+b"),
            ("a+b&c=d/é", "a%2Bb%26c%3Dd%2F%C3%A9"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(form_encode(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn form_body_per_client_auth() {
        let cases = [
            (
                ClientAuth::Post,
                Some("crm.write crm.read"),
                None,
                "grant_type=client_credentials&client_id=cpn&client_secret=s%26x&scope=crm.write+crm.read",
            ),
            (
                ClientAuth::Basic,
                None,
                Some("https://crm"),
                "grant_type=client_credentials&audience=https%3A%2F%2Fcrm",
            ),
            (
                ClientAuth::Basic,
                None,
                None,
                "grant_type=client_credentials",
            ),
        ];
        for (auth, scope, audience, want) in cases {
            assert_eq!(form_body(auth, "cpn", "s&x", scope, audience), want);
        }
    }

    #[test]
    fn client_basic_header_encodes_first() {
        // RFC 6749 §2.3.1: id and secret are form-encoded, then basic.
        let v = client_basic_header("cpn relay", "p:w").unwrap();
        assert_eq!(v, format!("Basic {}", BASE64.encode("cpn+relay:p%3Aw")));
        assert!(v.is_sensitive());
    }

    #[test]
    fn token_responses() {
        let ok = |body: &str| parse_token_response(200, body.as_bytes());
        let secs = |n| Some(Duration::from_secs(n));
        let t = ok(r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#).unwrap();
        assert_eq!((t.access_token.as_str(), t.expires_in), ("abc", secs(3600)));
        let cases: [(&str, Result<Option<Duration>, &str>); 11] = [
            (
                r#"{"access_token":"a","token_type":"bearer","expires_in":"60"}"#,
                Ok(secs(60)),
            ),
            (r#"{"access_token":"a"}"#, Ok(None)),
            (
                r#"{"access_token":"a","expires_in":1.5}"#,
                Ok(Some(Duration::from_millis(1500))),
            ),
            (
                r#"{"access_token":"a","token_type":"mac"}"#,
                Err("not supported"),
            ),
            (r#"{"access_token":""}"#, Err("no access_token")),
            (r#"{"token_type":"bearer"}"#, Err("no access_token")),
            (
                r#"{"access_token":"a","expires_in":"soon"}"#,
                Err("invalid expires_in"),
            ),
            (r#"<html>secret-ish</html>"#, Err("not a token response")),
            // Lifetimes an Instant cannot hold are refused, in either form.
            (
                r#"{"access_token":"a","expires_in":"10000000000000000000"}"#,
                Err("invalid expires_in"),
            ),
            (
                r#"{"access_token":"a","expires_in":1e300}"#,
                Err("invalid expires_in"),
            ),
            (
                r#"{"access_token":"a","expires_in":"1000000000"}"#,
                Ok(secs(1_000_000_000)),
            ),
        ];
        for (body, want) in cases {
            match (ok(body), want) {
                (Ok(t), Ok(e)) => assert_eq!(t.expires_in, e, "{body}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{body}: {e}");
                    assert!(!e.contains("secret-ish"), "{e}");
                }
                (got, _) => panic!("{body}: {got:?}"),
            }
        }
    }

    #[test]
    fn error_statuses_name_the_oauth_error_but_never_echo_the_body() {
        let e = parse_token_response(
            401,
            br#"{"error":"invalid_client","error_description":"client s3cr3t unknown"}"#,
        )
        .unwrap_err();
        assert_eq!(e, "token endpoint answered 401 (invalid_client)");
        let e = parse_token_response(503, b"upstream s3cr3t down").unwrap_err();
        assert_eq!(e, "token endpoint answered 503");
        let e = parse_token_response(400, br#"{"error":"bad s3cr3t here"}"#).unwrap_err();
        assert_eq!(e, "token endpoint answered 400");
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn refresh_schedule() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let cases = [
            // (expires_in, refresh_before, check after, fresh, usable)
            (Some(s(3600)), s(60), s(3539), true, true),
            (Some(s(3600)), s(60), s(3540), false, true),
            (Some(s(3600)), s(60), s(3600), false, false),
            // Margin capped at half the lifetime.
            (Some(s(10)), s(60), s(4), true, true),
            (Some(s(10)), s(60), s(5), false, true),
            (None, s(60), s(1_000_000), true, true),
        ];
        for (life, before, after, fresh, usable) in cases {
            let t = Token::new(hv("Bearer x"), t0, life, before);
            assert_eq!(
                (t.fresh(t0 + after), t.usable(t0 + after)),
                (fresh, usable),
                "{life:?} {before:?} {after:?}"
            );
        }
    }

    #[test]
    fn cache_decisions() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let token = Token::new(
            hv("Bearer a"),
            t0,
            Some(Duration::from_secs(10)),
            Duration::from_secs(2),
        );
        let mut c = Cache::default();
        assert_eq!(c.decide(t0), Decision::Fetch { fallback: None });
        c.store(Err((t0, "down".into())));
        assert_eq!(c.decide(ms(500)), Decision::Fail("down".into()));
        assert_eq!(c.decide(ms(1000)), Decision::Fetch { fallback: None });
        c.store(Ok(token));
        assert_eq!(c.decide(ms(7999)), Decision::Use(hv("Bearer a")));
        // Refresh window: fetch, the current token as fallback.
        assert_eq!(
            c.decide(ms(8000)),
            Decision::Fetch {
                fallback: Some(hv("Bearer a"))
            }
        );
        // Refresh failed moments ago: keep using the current token quietly.
        c.store(Err((ms(8000), "down".into())));
        assert_eq!(c.decide(ms(8500)), Decision::Use(hv("Bearer a")));
        assert_eq!(
            c.decide(ms(9000)),
            Decision::Fetch {
                fallback: Some(hv("Bearer a"))
            }
        );
        // Expired and the endpoint still failing: an outage.
        c.store(Err((ms(9900), "down".into())));
        assert_eq!(c.decide(ms(10_100)), Decision::Fail("down".into()));
    }

    #[test]
    fn a_401_drops_only_a_token_that_is_not_brand_new() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        c.store(Ok(Token::new(hv("Bearer a"), t0, None, Duration::ZERO)));
        c.invalidate(t0 + Duration::from_millis(999));
        assert_eq!(
            c.decide(t0 + Duration::from_millis(999)),
            Decision::Use(hv("Bearer a"))
        );
        c.invalidate(t0 + Duration::from_secs(1));
        assert_eq!(
            c.decide(t0 + Duration::from_secs(1)),
            Decision::Fetch { fallback: None }
        );
    }

    #[test]
    fn token_response_debug_hides_the_token() {
        let t = parse_token_response(200, br#"{"access_token":"zzz-tok"}"#).unwrap();
        assert!(!format!("{t:?}").contains("zzz-tok"));
    }
}
