//! Header keys: what OCS can authenticate with (`http-custom-headers`, a
//! static header added verbatim to every notification).
//!
//! One header (`Authorization` by default, or any name such as `X-Api-Key`)
//! and one or more accepted keys, so a new key can be rolled out to the
//! clients before the old one is withdrawn. With `Authorization`, a key is a
//! bearer token: the request sends `Authorization: Bearer <key>` (the scheme
//! in any case) and a refusal carries `WWW-Authenticate: Bearer` (RFC 6750).
//! With any other header, the header's whole value is the key and a refusal
//! carries no challenge (no scheme applies).
//!
//! Keys are kept only as SHA-256 digests and a presented value is compared
//! with every one of them in constant time ([`subtle`]), so neither the
//! comparison's time nor its length reveals how much of a key was right.
//! A key never appears in a log line, a metric or an error body. Keys from a
//! file (one per line, `#` comments and blank lines skipped) are re-read
//! when the file changes, so rotation needs no restart. At start every line
//! must be a usable key. On a reload an unusable line (too short, a space)
//! is skipped with a WARN naming its line, and the file's other keys
//! replace the old ones, so withdrawing a key always takes effect; a file
//! that changes into one with no usable key at all (empty mid-write) keeps
//! the previous keys. Each reload is counted by result.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Shortest key accepted: 16 characters. Shorter keys are guessable; make
/// one with `openssl rand -hex 32`.
pub const MIN_KEY_LEN: usize = 16;

/// Default header carrying the key.
pub const DEFAULT_HEADER: &str = "authorization";

/// Which header carries the key and where the accepted keys come from.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The header (`--auth-header`): `authorization` (bearer tokens) or any
    /// other name (the whole value is the key).
    pub header: HeaderName,
    /// Keys given directly (`CPN_AUTH_KEYS`, comma- or newline-separated).
    pub keys: Vec<String>,
    /// A file of keys, one per line, re-read when it changes
    /// (`--auth-keys-file`).
    pub keys_file: Option<PathBuf>,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("header", &self.header)
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("keys_file", &self.keys_file)
            .finish()
    }
}

impl AuthSettings {
    /// Keys in the default `Authorization: Bearer` header.
    #[must_use]
    pub fn bearer(keys: Vec<String>) -> Self {
        Self {
            header: HeaderName::from_static(DEFAULT_HEADER),
            keys,
            keys_file: None,
        }
    }

    /// Whether any key source is configured at all.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty() || self.keys_file.is_some()
    }
}

/// Splits a list of keys: commas or newlines, surrounding blanks trimmed,
/// empty entries and `#` comment lines skipped.
#[must_use]
pub fn split_keys(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Why the keys are not usable. Never contains a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The keys file cannot be read.
    #[error("auth-keys-file {path}: cannot read: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A key is unusable; `at` says which (`CPN_AUTH_KEYS entry 2`,
    /// `auth-keys-file /run/keys line 3`).
    #[error("{at}: {problem}")]
    BadKey {
        /// Where the key is.
        at: String,
        /// What is wrong with it.
        problem: String,
    },
    /// No key anywhere.
    #[error("{0}: no key (one per line; '#' starts a comment)")]
    NoKeys(String),
}

/// The accepted keys' digests.
#[derive(Clone)]
struct KeySet(Vec<[u8; 32]>);

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn check_key(key: &str, at: impl FnOnce() -> String) -> Result<[u8; 32], AuthError> {
    let bad = |problem: String| AuthError::BadKey { at: at(), problem };
    if key.len() < MIN_KEY_LEN {
        return Err(bad(format!(
            "a key of {} characters is guessable: use at least {MIN_KEY_LEN} \
             (for example `openssl rand -hex 32`)",
            key.len()
        )));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "a key must be visible ASCII without spaces (it is sent in a header)".to_owned(),
        ));
    }
    Ok(digest(key.as_bytes()))
}

/// Reads the keys file: (digests, digest of the whole file); every line
/// must be a usable key.
fn read_file(path: &Path) -> Result<(Vec<[u8; 32]>, [u8; 32]), AuthError> {
    let (keys, bad, d) = read_file_lenient(path)?;
    if let Some(e) = bad.into_iter().next() {
        return Err(e);
    }
    Ok((keys, d))
}

/// Reads the keys file: (usable keys' digests, the unusable lines' problems,
/// digest of the whole file). No usable key at all is an error.
#[allow(clippy::type_complexity)] // three plain results, named in the doc
fn read_file_lenient(path: &Path) -> Result<(Vec<[u8; 32]>, Vec<AuthError>, [u8; 32]), AuthError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let key = line.trim();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        match check_key(key, || format!("auth-keys-file {shown} line {}", n + 1)) {
            Ok(d) => keys.push(d),
            Err(e) => bad.push(e),
        }
    }
    if keys.is_empty() {
        return Err(bad
            .into_iter()
            .next()
            .unwrap_or_else(|| AuthError::NoKeys(format!("auth-keys-file {shown}"))));
    }
    Ok((keys, bad, digest(text.as_bytes())))
}

/// Whether a request may pass, and the refusal when not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A key matched.
    Pass,
    /// The header is absent (or sent more than once).
    Missing,
    /// The header is there but holds no accepted key.
    Wrong,
}

/// The keys in force and the header they are read from.
#[derive(Clone)]
pub(crate) struct Auth {
    header: HeaderName,
    bearer: bool,
    /// Keys given directly: fixed for the process's life.
    fixed: Vec<[u8; 32]>,
    /// Keys from the file, replaced on reload.
    from_file: Arc<RwLock<KeySet>>,
    file: Option<PathBuf>,
    file_digest: Option<[u8; 32]>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Checks and loads the keys.
    ///
    /// # Errors
    /// [`AuthError`] naming the source and entry of an unusable key, or an
    /// empty or unreadable file.
    pub(crate) fn load(settings: &AuthSettings) -> Result<Self, AuthError> {
        let mut fixed = Vec::new();
        for (i, key) in settings.keys.iter().enumerate() {
            fixed.push(check_key(key, || format!("CPN_AUTH_KEYS entry {}", i + 1))?);
        }
        let (from_file, file_digest) = match &settings.keys_file {
            Some(path) => {
                let (keys, d) = read_file(path)?;
                (keys, Some(d))
            }
            None => (Vec::new(), None),
        };
        if fixed.is_empty() && from_file.is_empty() {
            return Err(AuthError::NoKeys("CPN_AUTH_KEYS".to_owned()));
        }
        Ok(Self {
            bearer: settings.header == header::AUTHORIZATION,
            header: settings.header.clone(),
            fixed,
            from_file: Arc::new(RwLock::new(KeySet(from_file))),
            file: settings.keys_file.clone(),
            file_digest,
        })
    }

    /// Judges a request's headers.
    pub(crate) fn verdict(&self, headers: &HeaderMap) -> Verdict {
        let mut values = headers.get_all(&self.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Verdict::Missing;
        };
        let bytes = value.as_bytes();
        let presented = if self.bearer {
            match bytes.iter().position(|b| *b == b' ') {
                Some(i) if bytes[..i].eq_ignore_ascii_case(b"bearer") => trim(&bytes[i + 1..]),
                _ => return Verdict::Wrong,
            }
        } else {
            trim(bytes)
        };
        let d = digest(presented);
        let file = self
            .from_file
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // Every key is compared, whichever matches: the time does not say
        // which one (or whether one) did.
        let matched = self
            .fixed
            .iter()
            .chain(file.0.iter())
            .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(&d));
        if bool::from(matched) {
            Verdict::Pass
        } else {
            Verdict::Wrong
        }
    }

    /// The `WWW-Authenticate` value for a refusal, when the header has a
    /// scheme (`Authorization`).
    pub(crate) fn challenge(&self, verdict: Verdict) -> Option<HeaderValue> {
        if !self.bearer {
            return None;
        }
        Some(HeaderValue::from_static(match verdict {
            Verdict::Wrong => "Bearer realm=\"cpn-producer\", error=\"invalid_token\"",
            Verdict::Missing | Verdict::Pass => "Bearer realm=\"cpn-producer\"",
        }))
    }

    /// The header's name, for messages.
    pub(crate) fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Re-reads the keys file every `interval` until `stop`, replacing the
    /// file's keys when it changed into a usable list.
    pub(crate) async fn watch(self, interval: Duration, metrics: Metrics, stop: CancellationToken) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let mut loaded = self.file_digest;
        let mut reported: Option<AuthError> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            // Off the runtime's threads: a hung mount must not stall them.
            let p = path.clone();
            let Ok(read) = tokio::task::spawn_blocking(move || {
                let seen = std::fs::read(&p).map(|b| digest(&b)).ok();
                (seen, read_file_lenient(&p))
            })
            .await
            else {
                continue;
            };
            let (seen, parsed) = read;
            if seen.is_some() && seen == loaded {
                continue;
            }
            match parsed {
                Ok((keys, bad, d)) => {
                    if Some(d) == loaded {
                        continue;
                    }
                    let n = keys.len();
                    *self
                        .from_file
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = KeySet(keys);
                    loaded = Some(d);
                    reported = None;
                    metrics.record_auth_reload(true);
                    for e in &bad {
                        warn!(error = %e, "auth keys file: line skipped");
                    }
                    info!(file = %path.display(), keys = n, skipped = bad.len(), "auth keys file changed: keys replaced");
                }
                Err(e) => {
                    if reported.as_ref() != Some(&e) {
                        metrics.record_auth_reload(false);
                        warn!(error = %e, "auth keys file changed but holds no usable key; the keys loaded before stay in force");
                        reported = Some(e);
                    }
                }
            }
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1-0123456789abcdef";
    const K2: &str = "k2-fedcba9876543210";

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn bearer_keys_pass_in_any_scheme_case_and_anything_else_is_refused() {
        let a = Auth::load(&AuthSettings::bearer(vec![K1.into(), K2.into()])).unwrap();
        for ok in [
            format!("Bearer {K1}"),
            format!("bearer {K2}"),
            format!("BEARER  {K1} "),
        ] {
            assert_eq!(
                a.verdict(&headers("Authorization", &ok)),
                Verdict::Pass,
                "{ok}"
            );
        }
        for wrong in [
            format!("Bearer {K1}x"),
            K1.to_owned(),
            format!("Basic {K1}"),
            "Bearer".to_owned(),
            format!("Bearer {}", &K1[..10]),
        ] {
            assert_eq!(
                a.verdict(&headers("Authorization", &wrong)),
                Verdict::Wrong,
                "{wrong}"
            );
        }
        assert_eq!(a.verdict(&HeaderMap::new()), Verdict::Missing);
        let mut twice = headers("Authorization", &format!("Bearer {K1}"));
        twice.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(a.verdict(&twice), Verdict::Missing);
        assert!(
            a.challenge(Verdict::Wrong)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }

    #[test]
    fn any_header_name_takes_the_whole_value_and_sends_no_challenge() {
        let s = AuthSettings {
            header: HeaderName::from_static("x-api-key"),
            keys: vec![K1.into()],
            keys_file: None,
        };
        let a = Auth::load(&s).unwrap();
        assert_eq!(a.verdict(&headers("X-Api-Key", K1)), Verdict::Pass);
        assert_eq!(a.verdict(&headers("X-API-KEY", K2)), Verdict::Wrong);
        assert_eq!(
            a.verdict(&headers("Authorization", &format!("Bearer {K1}"))),
            Verdict::Missing
        );
        assert!(a.challenge(Verdict::Wrong).is_none());
    }

    #[test]
    fn short_or_unsendable_keys_are_refused_naming_the_entry_not_the_key() {
        for (bad, why) in [
            ("short", "guessable"),
            ("has a space in it ok", "without spaces"),
        ] {
            let e = Auth::load(&AuthSettings::bearer(vec![K1.into(), bad.into()])).unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with("CPN_AUTH_KEYS entry 2: "), "{msg}");
            assert!(msg.contains(why), "{msg}");
            assert!(!msg.contains(bad), "the key itself is not shown: {msg}");
        }
        assert_eq!(
            Auth::load(&AuthSettings::bearer(vec![])).unwrap_err(),
            AuthError::NoKeys("CPN_AUTH_KEYS".to_owned())
        );
    }

    #[test]
    fn split_keys_takes_commas_and_lines_and_skips_comments() {
        assert_eq!(
            split_keys(&format!("{K1}, {K2}\n# old one\n\n")),
            vec![K1.to_owned(), K2.to_owned()]
        );
    }

    #[test]
    fn settings_debug_never_shows_keys() {
        let s = AuthSettings::bearer(vec![K1.into()]);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains(K1) && shown.contains("1 redacted"),
            "{shown}"
        );
    }
}
