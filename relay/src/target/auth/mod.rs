//! Authentication to the target beyond static headers: HTTP basic, a bearer
//! token from a file (re-read when it changes), OAuth2 client credentials
//! (fetched before first use, refreshed before expiry, re-minted once on a
//! 401). No credential means the target cannot be reached: an [`AuthError`]
//! is an outage (the partition pauses), never a record failure.
//!
//! What it is not: TLS client certificates (`tls.rs`) or request signing
//! (`signing.rs`). Static `[target.headers]` are sent as before, alongside.
//!
//! The decisions (when to re-read a file, when to refresh a token, what the
//! token request looks like, what a token response means) are pure functions
//! in the submodules, the clock passed in; the I/O around them is thin.
//! Credentials never reach logs or error messages.

mod bearer_file;
mod oauth2;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::problem::ConfigProblem;
use crate::secret::SecretSource;
use crate::target::error::ClientError;

pub use oauth2::{ClientAuth, TokenResponse, parse_token_response};

/// `[target.auth]`: one method, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No credentials beyond `[target.headers]`. (A struct variant, so keys
    /// of another kind are refused here too.)
    None {},
    /// HTTP basic authentication (RFC 7617).
    Basic {
        /// User name; must not contain `:`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// Password (inline, `{ env = .. }` or `{ file = .. }`); read once at start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<SecretSource>,
    },
    /// `Authorization: Bearer <token>`, the token read from a file and read
    /// again when the file changes (checked at most once a second, and
    /// right away after a 401).
    BearerFile {
        /// Path of the file holding the token (surrounding whitespace trimmed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_file: Option<String>,
    },
    /// OAuth2 client credentials grant (RFC 6749 §4.4).
    Oauth2 {
        /// The token endpoint (http or https).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
        /// Client id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// Client secret; read again at every token request, so a rotated
        /// file is picked up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<SecretSource>,
        /// `scope` form field; omitted when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        /// `audience` form field some identity providers require; omitted when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// How the client authenticates to the token endpoint: `post` (form
        /// fields) or `basic` (an `Authorization: Basic` header).
        #[serde(default)]
        client_auth: ClientAuth,
        /// Refresh this long before the token expires (at most half its lifetime).
        #[serde(default = "default_refresh_before_ms")]
        refresh_before_ms: u64,
    },
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig::None {}
    }
}

fn default_refresh_before_ms() -> u64 {
    60_000
}

impl AuthConfig {
    /// The `kind` value, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthConfig::None {} => "none",
            AuthConfig::Basic { .. } => "basic",
            AuthConfig::BearerFile { .. } => "bearer_file",
            AuthConfig::Oauth2 { .. } => "oauth2",
        }
    }

    /// Problems of this section, with key paths under `target.auth`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        let kind = self.kind();
        let mut missing = |key: &str, present: bool| {
            if !present {
                p.push(ConfigProblem {
                    path: format!("target.auth.{key}"),
                    problem: format!("required when kind = \"{kind}\""),
                });
            }
        };
        match self {
            AuthConfig::None {} => {}
            AuthConfig::Basic { username, password } => {
                missing("username", username.is_some());
                missing("password", password.is_some());
                if let Some(u) = username
                    && let Err(problem) = check_username(u)
                {
                    p.push(ConfigProblem {
                        path: "target.auth.username".into(),
                        problem,
                    });
                }
            }
            AuthConfig::BearerFile { token_file } => {
                missing(
                    "token_file",
                    token_file.as_deref().is_some_and(|f| !f.is_empty()),
                );
            }
            AuthConfig::Oauth2 {
                token_url,
                client_id,
                client_secret,
                ..
            } => {
                missing("token_url", token_url.is_some());
                missing(
                    "client_id",
                    client_id.as_deref().is_some_and(|c| !c.is_empty()),
                );
                missing("client_secret", client_secret.is_some());
                if let Some(u) = token_url
                    && let Err(problem) = oauth2::check_token_url(u)
                {
                    p.push(ConfigProblem {
                        path: "target.auth.token_url".into(),
                        problem,
                    });
                }
            }
        }
        p
    }
}

/// A basic-auth user name cannot hold `:` (RFC 7617 §2) or control characters.
fn check_username(u: &str) -> Result<(), String> {
    if u.contains(':') {
        return Err("must not contain ':'".into());
    }
    if u.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// `Basic base64(user:password)`, marked sensitive.
///
/// # Errors
/// The password holds characters a header cannot carry (the message does
/// not show it).
pub fn basic_header(username: &str, password: &str) -> Result<HeaderValue, String> {
    if password.chars().any(char::is_control) {
        return Err("password contains control characters".into());
    }
    let value = format!("Basic {}", BASE64.encode(format!("{username}:{password}")));
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| "credentials are not a valid header value".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Bearer <token>`, marked sensitive.
///
/// # Errors
/// The token is empty or holds characters a header cannot carry (the
/// message does not show it).
pub fn bearer_header(token: &str) -> Result<HeaderValue, String> {
    if token.is_empty() {
        return Err("token is empty".into());
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "token is not a valid header value".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

/// Why no credential could be attached. Delivery treats it like a connect
/// error: the target cannot be reached, the record is not at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Attaches credentials to requests. Cheap to clone: clones share one
/// token cache.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    method: Method,
}

#[derive(Debug, Clone, Default)]
enum Method {
    #[default]
    None,
    /// A header computed once (basic).
    Fixed(HeaderValue),
    BearerFile(Arc<bearer_file::BearerFile>),
    Oauth2(Arc<oauth2::Oauth2>),
}

impl Authenticator {
    /// An authenticator for `[target.auth]`. Reads the basic password and
    /// the bearer token file now, so a wrong path fails at start. OAuth2
    /// asks its token endpoint through `token_client()` (the target's own
    /// TLS and proxy settings), built only for that method.
    ///
    /// # Errors
    /// A required setting is missing, or a secret cannot be read.
    pub fn new(
        auth: &AuthConfig,
        token_client: impl FnOnce() -> Result<reqwest::Client, ClientError>,
    ) -> Result<Self, ClientError> {
        let setting = |key: &str, problem: String| ClientError::Setting {
            path: format!("target.auth.{key}"),
            problem,
        };
        if let Some(first) = auth.problems().into_iter().next() {
            return Err(ClientError::Setting {
                path: first.path,
                problem: first.problem,
            });
        }
        let method = match auth {
            AuthConfig::None {} => Method::None,
            AuthConfig::Basic {
                username: Some(username),
                password: Some(password),
            } => {
                let pw = password
                    .resolve()
                    .map_err(|e| setting("password", e.to_string()))?;
                Method::Fixed(basic_header(username, &pw).map_err(|e| setting("password", e))?)
            }
            AuthConfig::BearerFile {
                token_file: Some(path),
            } => Method::BearerFile(Arc::new(
                bearer_file::BearerFile::open(path.into()).map_err(|e| setting("token_file", e))?,
            )),
            AuthConfig::Oauth2 {
                token_url: Some(token_url),
                client_id: Some(client_id),
                client_secret: Some(client_secret),
                scope,
                audience,
                client_auth,
                refresh_before_ms,
            } => {
                // Read once now so a wrong env name or path fails at start.
                client_secret
                    .resolve()
                    .map_err(|e| setting("client_secret", e.to_string()))?;
                let token_url = reqwest::Url::parse(token_url)
                    .map_err(|e| setting("token_url", e.to_string()))?;
                if token_url.scheme() == "http" {
                    tracing::warn!(
                        "target.auth.token_url is plain http: the client secret and tokens cross the network unencrypted"
                    );
                }
                Method::Oauth2(Arc::new(oauth2::Oauth2::new(
                    token_client()?,
                    oauth2::Settings {
                        token_url,
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        scope: scope.clone(),
                        audience: audience.clone(),
                        client_auth: *client_auth,
                        refresh_before: std::time::Duration::from_millis(*refresh_before_ms),
                    },
                )))
            }
            // problems() above rejects every incomplete configuration.
            other => {
                return Err(setting(
                    "kind",
                    format!("incomplete settings for kind = \"{}\"", other.kind()),
                ));
            }
        };
        Ok(Authenticator { method })
    }

    /// Adds the credential headers to one request.
    ///
    /// # Errors
    /// No credential could be obtained (token endpoint down or refusing,
    /// token file unreadable with no earlier token to fall back on).
    pub async fn authorize(&self, headers: &mut HeaderMap) -> Result<(), AuthError> {
        let value = match &self.method {
            Method::None => return Ok(()),
            Method::Fixed(v) => v.clone(),
            Method::BearerFile(f) => f.header().await?,
            Method::Oauth2(o) => o.header().await?,
        };
        headers.insert(AUTHORIZATION, value);
        Ok(())
    }

    /// Whether a 401 can be cured by a fresh credential, so that
    /// [`Authenticator::unauthorized`] may ask for a second request.
    pub fn can_cure_unauthorized(&self) -> bool {
        matches!(self.method, Method::BearerFile(_) | Method::Oauth2(_))
    }

    /// The target answered 401: drop the cached credential. Returns whether
    /// one immediate retry with a fresh credential makes sense (a token
    /// file re-read, an OAuth2 token re-minted); never for basic, whose
    /// credentials cannot change while running.
    pub fn unauthorized(&self) -> bool {
        match &self.method {
            Method::None | Method::Fixed(_) => false,
            Method::BearerFile(f) => {
                f.force_reread();
                true
            }
            Method::Oauth2(o) => {
                o.invalidate(std::time::Instant::now());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AuthConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn paths(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .problems()
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn kinds_parse_with_their_keys() {
        assert!(
            parse("").unwrap_err().contains("kind"),
            "the section names its kind"
        );
        assert_eq!(parse("kind = \"none\"").unwrap(), AuthConfig::None {});
        let b = parse("kind = \"basic\"\nusername = \"u\"\npassword = { env = \"P\" }").unwrap();
        assert!(matches!(b, AuthConfig::Basic { .. }) && b.problems().is_empty());
        let f = parse("kind = \"bearer_file\"\ntoken_file = \"/t\"").unwrap();
        assert!(f.problems().is_empty());
        let o = parse(
            "kind = \"oauth2\"\ntoken_url = \"https://idp/token\"\nclient_id = \"c\"\nclient_secret = { file = \"/s\" }\nclient_auth = \"basic\"",
        )
        .unwrap();
        assert!(o.problems().is_empty(), "{:?}", o.problems());
        let AuthConfig::Oauth2 {
            client_auth,
            refresh_before_ms,
            ..
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!(client_auth, ClientAuth::Basic);
        assert_eq!(refresh_before_ms, 60_000);
    }

    #[test]
    fn keys_of_another_kind_or_unknown_kinds_are_refused() {
        let cases = [
            ("kind = \"basic\"\ntoken_file = \"/t\"", "token_file"),
            ("kind = \"none\"\nusername = \"u\"", "username"),
            ("kind = \"oauth2\"\nclient_secrt = \"x\"", "client_secrt"),
            ("kind = \"kerberos\"", "kerberos"),
            ("kind = \"oauth2\"\nclient_auth = \"jwt\"", "jwt"),
        ];
        for (text, named) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(named), "{text:?}: {e}");
        }
    }

    #[test]
    fn missing_keys_are_named_with_their_path() {
        let cases = [
            (
                "kind = \"basic\"",
                vec![
                    "target.auth.username: required when kind = \"basic\"",
                    "target.auth.password: required when kind = \"basic\"",
                ],
            ),
            (
                "kind = \"bearer_file\"\ntoken_file = \"\"",
                vec!["target.auth.token_file: required when kind = \"bearer_file\""],
            ),
            (
                "kind = \"oauth2\"",
                vec![
                    "target.auth.token_url: required when kind = \"oauth2\"",
                    "target.auth.client_id: required when kind = \"oauth2\"",
                    "target.auth.client_secret: required when kind = \"oauth2\"",
                ],
            ),
            (
                "kind = \"basic\"\nusername = \"a:b\"\npassword = \"p\"",
                vec!["target.auth.username: must not contain ':'"],
            ),
            (
                "kind = \"oauth2\"\ntoken_url = \"ftp://idp/t\"\nclient_id = \"c\"\nclient_secret = \"s\"",
                vec!["target.auth.token_url: scheme must be http or https"],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(paths(text), want, "{text:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let c = parse("kind = \"basic\"\nusername = \"u\"\npassword = \"hunter2\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = toml::to_string(&c).unwrap();
        assert!(!t.contains("hunter2") && t.contains("[redacted]"), "{t}");
        assert!(t.contains("kind = \"basic\""), "{t}");
        let c = parse("kind = \"oauth2\"\ntoken_url = \"https://i/t\"\nclient_id = \"c\"\nclient_secret = \"s3cr3t\"").unwrap();
        assert!(!toml::to_string(&c).unwrap().contains("s3cr3t"));
    }

    #[test]
    fn basic_header_matches_rfc_7617_example() {
        // RFC 7617 §2: Aladdin / open sesame.
        let v = basic_header("Aladdin", "open sesame").unwrap();
        assert_eq!(v, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(v.is_sensitive());
        let e = basic_header("u", "bad\npw").unwrap_err();
        assert!(!e.contains("bad"), "{e}");
    }

    #[test]
    fn bearer_header_refuses_what_a_header_cannot_carry() {
        assert_eq!(bearer_header("abc.def").unwrap(), "Bearer abc.def");
        for bad in ["", "line\nbreak", "nul\0"] {
            let e = bearer_header(bad).unwrap_err();
            assert!(!e.contains("break") && !e.contains("nul"), "{e}");
        }
    }

    fn no_token_client() -> Result<reqwest::Client, ClientError> {
        panic!("basic authentication needs no token endpoint")
    }

    #[tokio::test]
    async fn basic_authorizes_and_a_401_is_not_cured() {
        let auth = parse("kind = \"basic\"\nusername = \"relay\"\npassword = \"s3cret\"").unwrap();
        let a = Authenticator::new(&auth, no_token_client).unwrap();
        let mut h = HeaderMap::new();
        a.authorize(&mut h).await.unwrap();
        assert_eq!(h[AUTHORIZATION], "Basic cmVsYXk6czNjcmV0");
        assert!(!a.unauthorized());
        assert!(!format!("{a:?}").contains("cmVsYXk6czNjcmV0"));
    }

    #[test]
    fn a_missing_secret_fails_at_start_naming_the_key() {
        let auth = parse(
            "kind = \"basic\"\nusername = \"relay\"\npassword = { env = \"CPN_TEST_SURELY_UNSET_PW\" }",
        )
        .unwrap();
        let e = Authenticator::new(&auth, no_token_client)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("target.auth.password:"), "{e}");
    }
}
