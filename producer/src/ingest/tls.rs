//! Native TLS for the ingest endpoint: the certificate chain and key from
//! PEM files, a TLS 1.2 floor (1.3 optional), client certificates verified
//! against a CA bundle (mTLS) when one is configured, and a reload of all
//! three files without a restart.
//!
//! Reload: every `reload_interval` the files are read again and their
//! digest compared with the last one loaded. A change that loads (the key
//! matches the certificate, the CA bundle parses) replaces the
//! [`ServerConfig`] new handshakes use; connections already open keep the
//! one they started with, so a rotation drops no connection and no request.
//! A change that does not load — a renewal job that has written the new
//! certificate but not yet its key — leaves the previous configuration in
//! place, is logged once as a WARN, and is tried again at the next change.
//! Polling rather than inotify: Kubernetes updates a mounted Secret by
//! swapping a symlink, cert-manager renews weeks ahead, and reading three
//! small files every few seconds costs nothing.
//!
//! rustls implements no TLS 1.0 or 1.1, so a client offering only those is
//! refused at the handshake (`protocol_version` alert). Not here: the
//! handshake itself and its timeout (`accept`), header keys (`auth`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Default `--reload-interval-ms`: how often the certificate, key, CA and
/// key files are checked for a change.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Lowest TLS version the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinTlsVersion {
    /// TLS 1.2 and 1.3 (OCS speaks TLS 1.2).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl FromStr for MinTlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.2" => Ok(Self::Tls12),
            "1.3" => Ok(Self::Tls13),
            other => Err(format!(
                "{other:?} is not a TLS version this server offers: 1.2 or 1.3 \
                 (TLS 1.0 and 1.1 are never offered)"
            )),
        }
    }
}

impl fmt::Display for MinTlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tls12 => "1.2",
            Self::Tls13 => "1.3",
        })
    }
}

/// Where the server's certificate, key and (for mTLS) client CA come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, PEM, leaf first (`--tls-cert`).
    pub cert_file: PathBuf,
    /// Its private key, PEM: PKCS#8, PKCS#1 or SEC1, unencrypted
    /// (`--tls-key`).
    pub key_file: PathBuf,
    /// Lowest TLS version accepted (`--tls-min-version`).
    pub min_version: MinTlsVersion,
    /// mTLS: CA certificates (PEM bundle) a client certificate must chain
    /// to; a client without one is refused at the handshake
    /// (`--tls-client-ca`).
    pub client_ca_file: Option<PathBuf>,
}

impl TlsSettings {
    /// TLS with the certificate and key in these files, TLS 1.2 floor, no
    /// client certificates.
    #[must_use]
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            min_version: MinTlsVersion::default(),
            client_ca_file: None,
        }
    }
}

/// Why the TLS files do not make a server configuration. Names the option
/// and the file; never shows key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {path}: {problem}")]
pub struct TlsError {
    /// The option naming the file (`tls-cert`, `tls-key`, `tls-client-ca`).
    pub option: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The files' bytes as read once, and their digest.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
    digest: [u8; 32],
}

impl Files {
    fn read(s: &TlsSettings) -> Result<Self, TlsError> {
        let read = |option, path: &PathBuf| {
            std::fs::read(path).map_err(|e| TlsError {
                option,
                path: path.display().to_string(),
                problem: format!("cannot read: {e}"),
            })
        };
        let cert = read("tls-cert", &s.cert_file)?;
        let key = read("tls-key", &s.key_file)?;
        let ca = s
            .client_ca_file
            .as_ref()
            .map(|p| read("tls-client-ca", p))
            .transpose()?;
        let mut h = Sha256::new();
        for part in [Some(&cert), Some(&key), ca.as_ref()].into_iter().flatten() {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Ok(Self {
            cert,
            key,
            ca,
            digest: h.finalize().into(),
        })
    }
}

/// The rustls provider: the process default if one was installed, else
/// aws-lc-rs (as the relay).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        // Not the error's Debug: some variants carry bytes of the file.
        _ => "not valid PEM".to_owned(),
    }
}

fn certs(
    option: &'static str,
    path: &std::path::Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |problem| TlsError {
        option,
        path: path.display().to_string(),
        problem,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// Builds the server configuration from the files' bytes, and says when
/// the chain expires ([`not_after`]).
fn build(s: &TlsSettings, files: &Files) -> Result<(ServerConfig, Result<i64, String>), TlsError> {
    let provider = provider();
    let chain = certs("tls-cert", &s.cert_file, &files.cert)?;
    let expiry = not_after(&chain);
    let key_err = |problem| TlsError {
        option: "tls-key",
        path: s.key_file.display().to_string(),
        problem,
    };
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|e| {
        key_err(format!(
            "{} (an unencrypted PEM private key is expected)",
            pem_problem(&e)
        ))
    })?;
    // A key of another certificate (a rotation half done) is caught here,
    // not at the first handshake.
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
        Ok(_) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(key_err(format!(
                "not the key of the certificate in {}",
                s.cert_file.display()
            )));
        }
        Err(e) => return Err(key_err(format!("not usable: {e}"))),
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match s.min_version {
        MinTlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError {
            option: "tls-min-version",
            path: String::new(),
            problem: e.to_string(),
        })?;
    let builder = match (&s.client_ca_file, &files.ca) {
        (Some(path), Some(pem)) => {
            let ca_err = |problem| TlsError {
                option: "tls-client-ca",
                path: path.display().to_string(),
                problem,
            };
            let mut roots = RootCertStore::empty();
            for cert in certs("tls-client-ca", path, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| key_err(format!("not usable: {e}")))?;
    // The server speaks HTTP/1.1 only; a client offering h2 and http/1.1
    // (curl) gets http/1.1, one offering no ALPN (OCS) is served as well.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, expiry))
}

/// The configuration new handshakes use, replaced on reload.
#[derive(Clone)]
pub(crate) struct TlsState {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl fmt::Debug for TlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsState")
    }
}

impl TlsState {
    /// An acceptor with the current configuration.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        // A writer only swaps an Arc: a poisoned lock still holds a whole
        // configuration.
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }

    fn replace(&self, config: ServerConfig) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }
}

/// The TLS configuration, loaded once, and what its reload needs.
#[derive(Debug)]
pub(crate) struct Tls {
    settings: TlsSettings,
    state: TlsState,
    loaded: [u8; 32],
    /// When the served chain stops being valid, Unix seconds.
    not_after: Result<i64, String>,
}

/// The earliest notAfter (Unix seconds) of the certificates of `chain`:
/// the served chain is unusable once its first certificate expires, leaf or
/// intermediate. An error says which certificate does not parse.
fn not_after(chain: &[CertificateDer<'_>]) -> Result<i64, String> {
    let mut earliest: Option<i64> = None;
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate {}: {e}", i + 1))?;
        let t = cert.validity().not_after.timestamp();
        earliest = Some(earliest.map_or(t, |e| e.min(t)));
    }
    earliest.ok_or_else(|| "no certificate".to_owned())
}

/// Sets the expiry gauge, or says why it cannot.
fn report_expiry(metrics: &Metrics, cert_file: &std::path::Path, not_after: Result<i64, String>) {
    match not_after {
        Ok(t) => metrics.set_tls_certificate_expiry(t),
        Err(e) => warn!(
            cert = %cert_file.display(),
            error = %e,
            "cannot read when the certificate chain expires; cpn_producer_tls_certificate_expiry_timestamp_seconds not updated"
        ),
    }
}

impl Tls {
    /// Loads the files.
    ///
    /// # Errors
    /// [`TlsError`] naming the option and file that do not load.
    pub(crate) fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let files = Files::read(&settings)?;
        let (config, not_after) = build(&settings, &files)?;
        Ok(Self {
            settings,
            state: TlsState {
                current: Arc::new(RwLock::new(Arc::new(config))),
            },
            loaded: files.digest,
            not_after,
        })
    }

    pub(crate) fn state(&self) -> TlsState {
        self.state.clone()
    }

    /// Checks the files every `interval` and swaps in what changed and
    /// loads, until `stop`.
    pub(crate) async fn watch(self, interval: Duration, metrics: Metrics, stop: CancellationToken) {
        let Tls {
            settings,
            state,
            mut loaded,
            not_after: first,
        } = self;
        report_expiry(&metrics, &settings.cert_file, first);
        // The last change that did not load, so it is reported once.
        let mut refused: Option<[u8; 32]> = None;
        let mut unreadable: Option<TlsError> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            // Off the runtime's threads: a hung mount must not stall them.
            let s = settings.clone();
            let Ok(read) = tokio::task::spawn_blocking(move || Files::read(&s)).await else {
                continue;
            };
            let files = match read {
                Ok(f) => {
                    unreadable = None;
                    f
                }
                Err(e) => {
                    if unreadable.as_ref() != Some(&e) {
                        warn!(error = %e, "TLS files unreadable; still serving the certificate loaded before");
                        unreadable = Some(e);
                    }
                    metrics.set_tls_reload_failing(true);
                    continue;
                }
            };
            if files.digest == loaded {
                // Back to what is served (or never changed).
                metrics.set_tls_reload_failing(false);
                continue;
            }
            if refused == Some(files.digest) {
                metrics.set_tls_reload_failing(true);
                continue;
            }
            match build(&settings, &files) {
                Ok((config, expiry)) => {
                    state.replace(config);
                    loaded = files.digest;
                    refused = None;
                    metrics.record_tls_reload(true);
                    metrics.set_tls_reload_failing(false);
                    report_expiry(&metrics, &settings.cert_file, expiry);
                    info!(
                        cert = %settings.cert_file.display(),
                        "TLS files changed: new handshakes use the new certificate"
                    );
                }
                Err(e) => {
                    refused = Some(files.digest);
                    metrics.record_tls_reload(false);
                    metrics.set_tls_reload_failing(true);
                    warn!(
                        error = %e,
                        "TLS files changed but do not load; still serving the certificate loaded before"
                    );
                }
            }
        }
    }
}

/// A failed handshake, as a small closed set of reasons for the metric.
pub(crate) fn handshake_failure_reason(e: &std::io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return "io";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(_) => "bad_client_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => "bad_message",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_anything_else_is_refused_naming_the_choices() {
        assert_eq!("1.2".parse(), Ok(MinTlsVersion::Tls12));
        assert_eq!("1.3".parse(), Ok(MinTlsVersion::Tls13));
        for bad in ["1.1", "1.0", "tls1.2", "", "1.4"] {
            let e = bad.parse::<MinTlsVersion>().unwrap_err();
            assert!(e.contains("1.2 or 1.3"), "{bad}: {e}");
        }
        assert_eq!(MinTlsVersion::Tls13.to_string(), "1.3");
    }

    #[test]
    fn the_expiry_is_the_earliest_of_the_chain_and_garbage_is_said() {
        let cert = |y: i32| {
            let mut p =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("a valid name");
            p.not_after = rcgen::date_time_ymd(y, 3, 1);
            let key = rcgen::KeyPair::generate().expect("a key");
            let c = p.self_signed(&key).expect("a certificate");
            (c.pem(), rcgen::date_time_ymd(y, 3, 1).unix_timestamp())
        };
        let chain_of = |pem: &str| {
            certs(
                "tls-cert",
                std::path::Path::new("chain.pem"),
                pem.as_bytes(),
            )
            .expect("PEM certificates")
        };
        let (leaf, leaf_t) = cert(2030);
        let (intermediate, intermediate_t) = cert(2028);
        assert_eq!(not_after(&chain_of(&leaf)), Ok(leaf_t));
        assert_eq!(
            not_after(&chain_of(&format!("{leaf}{intermediate}"))),
            Ok(intermediate_t),
            "the intermediate expires first"
        );
        assert!(not_after(&[]).is_err());
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = not_after(&chain_of(broken)).unwrap_err();
        assert!(e.starts_with("certificate 1: "), "{e}");
    }

    #[test]
    fn missing_files_are_named_with_their_option() {
        let s = TlsSettings::new("/nonexistent/cert.pem", "/nonexistent/key.pem");
        let e = Tls::load(s).unwrap_err();
        assert_eq!(e.option, "tls-cert");
        assert!(
            e.to_string()
                .starts_with("tls-cert /nonexistent/cert.pem: cannot read")
        );
    }
}
