//! Standard Webhooks signatures, so receivers can verify that a request came
//! from this relay and was not altered (<https://www.standardwebhooks.com>).
//!
//! Every request carries `webhook-id` (the message GUID, stable across
//! retries), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature`: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))
//! for each configured secret, space-separated, the first secret's first. A
//! receiver accepts the request when any signature verifies with a secret it
//! holds, which is what makes rotation work: sign with old and new for a
//! while, switch receivers, drop the old one.
//!
//! The signature computation and header construction are pure (the clock is
//! an argument); secrets are read once, when the [`Signer`] is built.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::problem::ConfigProblem;
use crate::secret::SecretSource;
use crate::target::error::ClientError;

/// Header holding the message id (the GUID).
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// Header holding the signing time, Unix seconds.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// Header holding the space-separated `v1,<base64>` signatures.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
/// Prefix Standard Webhooks gives a base64 secret; optional in the config.
pub const SECRET_PREFIX: &str = "whsec_";

/// `[target.signing]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// Signing secrets, each `whsec_<base64>` or plain base64, inline or as
    /// `{ env = .. }` / `{ file = .. }`. Every secret produces a signature
    /// (rotation); the first is listed first. Read once at start.
    #[serde(default)]
    pub secrets: Vec<SecretSource>,
}

impl SigningConfig {
    /// Problems of this section, with key paths under `target.signing`.
    /// Inline secrets are decoded here; env and file secrets when the
    /// [`Signer`] is built.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if self.secrets.is_empty() {
            p.push(ConfigProblem {
                path: "target.signing.secrets".into(),
                problem: "at least one secret is required (or remove [target.signing])".into(),
            });
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if let SecretSource::Inline(v) = s
                && let Err(problem) = decode_secret(v)
            {
                p.push(ConfigProblem {
                    path: format!("target.signing.secrets[{i}]"),
                    problem,
                });
            }
        }
        p
    }
}

/// Decodes a secret given as `whsec_<base64>` or plain base64 into the HMAC
/// key. The error never contains the secret.
///
/// # Errors
/// The text is not base64, or decodes to nothing.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let b64 = text.trim();
    let b64 = b64.strip_prefix(SECRET_PREFIX).unwrap_or(b64);
    let key = BASE64
        .decode(b64)
        .map_err(|_| "not base64 (expected whsec_<base64> or base64)".to_owned())?;
    if key.is_empty() {
        return Err("decodes to an empty key".into());
    }
    Ok(key)
}

/// One `v1,<base64>` signature of `{id}.{timestamp}.{body}` with `key`.
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length (long ones are hashed first).
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` value: one signature per key, space-separated,
/// in key order.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| signature(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unix seconds of `now` (0 before 1970, which no real clock reports).
pub fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs requests.
#[derive(Clone)]
pub struct Signer {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer {{ keys: [{} redacted] }}", self.keys.len())
    }
}

impl Signer {
    /// A signer from its configuration: every secret resolved and decoded.
    ///
    /// # Errors
    /// A secret cannot be read or decoded; the error names its index.
    pub fn new(cfg: &SigningConfig) -> Result<Self, ClientError> {
        if cfg.secrets.is_empty() {
            return Err(ClientError::Setting {
                path: "target.signing.secrets".into(),
                problem: "at least one secret is required".into(),
            });
        }
        let keys = cfg
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let setting = |problem: String| ClientError::Setting {
                    path: format!("target.signing.secrets[{i}]"),
                    problem,
                };
                let text = s.resolve().map_err(|e| setting(e.to_string()))?;
                decode_secret(&text).map_err(setting)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Signer { keys })
    }

    /// A signer with these HMAC keys (already decoded).
    pub fn from_keys(keys: Vec<Vec<u8>>) -> Self {
        Signer { keys }
    }

    /// Adds `webhook-id`, `webhook-timestamp` and `webhook-signature` for one
    /// request. A GUID that is not a valid header value (the schema rules
    /// that out) leaves the request unsigned rather than wrongly signed.
    pub fn sign(&self, headers: &mut HeaderMap, guid: &str, body: &[u8], now: SystemTime) {
        let ts = unix_seconds(now);
        let Ok(id) = HeaderValue::from_str(guid) else {
            tracing::warn!("guid is not a valid header value; request left unsigned");
            return;
        };
        let sig = signature_header(&self.keys, guid, ts, body);
        // base64 and digits are always valid header values.
        let ts_value =
            HeaderValue::from_str(&ts.to_string()).expect("digits are a valid header value");
        let sig_value = HeaderValue::from_str(&sig).expect("base64 is a valid header value");
        headers.insert(WEBHOOK_ID, id);
        headers.insert(WEBHOOK_TIMESTAMP, ts_value);
        headers.insert(WEBHOOK_SIGNATURE, sig_value);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // The reference vector published with the Standard Webhooks spec (and
    // svix's libraries): cross-checked with Python's hmac module.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: u64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn reproduces_the_spec_vector_with_and_without_prefix() {
        for secret in [SPEC_SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
            let key = decode_secret(secret).unwrap();
            assert_eq!(key.len(), 24);
            assert_eq!(signature(&key, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        }
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = decode_secret(SPEC_SECRET).unwrap();
        let cases: [(&str, u64, &[u8]); 3] = [
            ("msg_other", SPEC_TS, SPEC_BODY),
            (SPEC_ID, SPEC_TS + 1, SPEC_BODY),
            (SPEC_ID, SPEC_TS, br#"{"test":2432232314}"#),
        ];
        for (id, ts, body) in cases {
            assert_ne!(signature(&key, id, ts, body), SPEC_SIG, "{id} {ts}");
        }
    }

    #[test]
    fn secrets_decode_or_say_why_without_echoing() {
        let cases = [
            (SPEC_SECRET, Ok(24)),
            ("  whsec_AAAA \n", Ok(3)),
            ("AAAA", Ok(3)),
            ("whsec_not*base64!", Err("not base64")),
            ("whsec_", Err("empty key")),
            ("", Err("empty key")),
        ];
        for (text, want) in cases {
            match (decode_secret(text), want) {
                (Ok(k), Ok(n)) => assert_eq!(k.len(), n, "{text:?}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{text:?}: {e}");
                    assert!(!e.contains("base64!"), "error echoes the secret: {e}");
                }
                (got, _) => panic!("{text:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn one_signature_per_secret_in_order() {
        let k1 = decode_secret(SPEC_SECRET).unwrap();
        let k2 = decode_secret("whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=").unwrap();
        let one = signature_header(std::slice::from_ref(&k1), SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_eq!(one, SPEC_SIG);
        let two = signature_header(&[k1.clone(), k2.clone()], SPEC_ID, SPEC_TS, SPEC_BODY);
        let parts: Vec<&str> = two.split(' ').collect();
        assert_eq!(
            parts,
            [
                SPEC_SIG.to_owned(),
                signature(&k2, SPEC_ID, SPEC_TS, SPEC_BODY)
            ]
        );
    }

    #[test]
    fn sign_sets_the_three_headers() {
        let signer = Signer::from_keys(vec![decode_secret(SPEC_SECRET).unwrap()]);
        let mut h = HeaderMap::new();
        let now = UNIX_EPOCH + Duration::from_millis(SPEC_TS * 1000 + 999);
        signer.sign(&mut h, SPEC_ID, SPEC_BODY, now);
        assert_eq!(h[WEBHOOK_ID], SPEC_ID);
        assert_eq!(h[WEBHOOK_TIMESTAMP], "1614265330");
        assert_eq!(h[WEBHOOK_SIGNATURE], SPEC_SIG);
    }

    #[test]
    fn config_problems_name_the_key() {
        let cfg: SigningConfig = toml::from_str("secrets = []").unwrap();
        assert_eq!(cfg.problems()[0].path, "target.signing.secrets");
        let cfg: SigningConfig =
            toml::from_str("secrets = [\"whsec_AAAA\", { env = \"X\" }, \"nope!\"]").unwrap();
        let p = cfg.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "target.signing.secrets[2]");
        assert!(toml::from_str::<SigningConfig>("secret = []").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let cfg: SigningConfig = toml::from_str(&format!("secrets = [\"{SPEC_SECRET}\"]")).unwrap();
        assert!(!format!("{cfg:?}").contains("MfKQ"));
        assert!(!toml::to_string(&cfg).unwrap().contains("MfKQ"));
        let signer = Signer::new(&cfg).unwrap();
        assert!(!format!("{signer:?}").contains("MfKQ"));
    }
}
