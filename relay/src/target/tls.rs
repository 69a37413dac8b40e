//! TLS to the target (`[target.tls]`): minimum version, extra CA bundle,
//! system roots on or off, a server name override, the mTLS client
//! certificate, and a loudly logged `insecure_skip_verify` for labs.
//!
//! This module builds the whole rustls `ClientConfig` and hands it to reqwest
//! preconfigured, rather than using reqwest's TLS knobs: reqwest cannot verify
//! the certificate for a name other than the URL's host, and one code path
//! for every setting is easier to trust than two. What reqwest would have set
//! and we keep: the aws-lc-rs provider (or a process default), SNI on, ALPN
//! `h2, http/1.1`, the platform verifier for system roots.
//!
//! Not here: which proxy carries the connection (`proxy.rs`), credentials in
//! headers (`auth.rs`). PKCS#12 is not read (rustls has no parser for it):
//! convert with `openssl pkcs12 -in id.p12 -nodes`. Encrypted private keys are
//! not read either: decrypt with `openssl pkey`.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::config::problem::ConfigProblem;
use crate::target::error::ClientError;

/// ALPN protocols offered, as reqwest offers them with HTTP/2 enabled.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// `[target.tls]`: how the relay verifies the target and proves itself to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Lowest TLS version offered: `"1.2"` or `"1.3"`. Nothing below 1.2 is
    /// ever offered (rustls implements no TLS 1.0 or 1.1).
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// Extra trusted CA certificates, a PEM bundle: the private CA that signed
    /// the target's certificate. Added to the system roots unless
    /// `system_roots = false`, in which case they are the only roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Trust the operating system's CA store (`/etc/ssl/certs` on Debian).
    #[serde(default = "default_system_roots")]
    pub system_roots: bool,
    /// Verify the target's certificate for this DNS name (or IP address)
    /// instead of the URL's host, e.g. when the URL holds an IP address or a
    /// load balancer alias that the certificate does not name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Labs only: accept any certificate for any name. Logged as a WARN at
    /// every start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// mTLS: the client certificate chain (PEM), leaf first. Set together
    /// with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    /// mTLS: the client certificate's private key (PEM: PKCS#8, PKCS#1 or
    /// SEC1, unencrypted). Set together with `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
}

fn default_min_version() -> String {
    "1.2".to_owned()
}

fn default_system_roots() -> bool {
    true
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            min_version: default_min_version(),
            ca_file: None,
            system_roots: default_system_roots(),
            server_name: None,
            insecure_skip_verify: false,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

fn problem(key: &str, problem: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        path: format!("target.tls.{key}"),
        problem: problem.into(),
    }
}

/// A configuration problem found while building the client.
fn setting(p: ConfigProblem) -> ClientError {
    ClientError::Setting {
        path: p.path,
        problem: p.problem,
    }
}

impl TlsConfig {
    /// Problems of this section, with key paths under `target.tls`. Reads the
    /// certificate and key files, so a missing or malformed file is reported
    /// at load (and by `check-config`), not at the first delivery.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut p = Vec::new();
        if let Err(e) = self.versions() {
            p.push(e);
        }
        if let Some(name) = &self.server_name
            && let Err(e) = fixed_name(name)
        {
            p.push(e);
        }
        if !self.system_roots && self.ca_file.is_none() && !self.insecure_skip_verify {
            p.push(problem(
                "ca_file",
                "required when system_roots = false (nothing would be trusted)",
            ));
        }
        if let Some(ca) = &self.ca_file
            && let Err(e) = load_certs("ca_file", ca)
        {
            p.push(e);
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => p.push(problem(
                "client_key_file",
                "set together with client_cert_file",
            )),
            (None, Some(_)) => p.push(problem(
                "client_cert_file",
                "set together with client_key_file",
            )),
            (Some(_), Some(_)) => {
                if let Err(e) = self.identity() {
                    p.push(e);
                }
            }
            (None, None) => {}
        }
        p
    }

    /// Applies these settings to the target's client builder: a rustls
    /// configuration built here, handed to reqwest preconfigured.
    ///
    /// # Errors
    /// A setting is invalid, or a file cannot be read or is not valid PEM.
    pub fn configure(
        &self,
        b: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, ClientError> {
        Ok(b.tls_backend_preconfigured(self.client_config()?))
    }

    /// The rustls client configuration these settings describe.
    ///
    /// # Errors
    /// A setting is invalid, or a file cannot be read or is not valid PEM.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ClientError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions().map_err(setting)?)
            .map_err(|e| setting(problem("min_version", e.to_string())))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.insecure_skip_verify {
            tracing::warn!(
                "TLS certificate verification is DISABLED for the target \
                 (target.tls.insecure_skip_verify = true): any server can pose as it; \
                 use this only in a lab"
            );
            Arc::new(AcceptAnyCertificate { provider })
        } else {
            let verifier = self.verifier(provider).map_err(setting)?;
            match &self.server_name {
                Some(name) => Arc::new(FixedServerName {
                    inner: verifier,
                    name: fixed_name(name).map_err(setting)?,
                }),
                None => verifier,
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match self.identity().map_err(setting)? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| setting(problem("client_key_file", format!("not usable: {e}"))))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    fn versions(
        &self,
    ) -> Result<&'static [&'static rustls::SupportedProtocolVersion], ConfigProblem> {
        static FROM_1_2: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static FROM_1_3: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self.min_version.as_str() {
            "1.2" => Ok(&FROM_1_2),
            "1.3" => Ok(&FROM_1_3),
            other => Err(problem(
                "min_version",
                format!("expected \"1.2\" or \"1.3\", got {other:?}"),
            )),
        }
    }

    /// The verifier of the target's certificate chain (for the name the
    /// connection gives it).
    fn verifier(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ServerCertVerifier>, ConfigProblem> {
        let extra = match &self.ca_file {
            Some(path) => load_certs("ca_file", path)?,
            None => Vec::new(),
        };
        if self.system_roots {
            let v = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
                .map_err(|e| {
                    problem(
                        "ca_file",
                        format!("cannot be used with the system roots: {e}"),
                    )
                })?;
            Ok(Arc::new(v))
        } else {
            let mut roots = RootCertStore::empty();
            for cert in extra {
                roots
                    .add(cert)
                    .map_err(|e| problem("ca_file", format!("not a usable CA certificate: {e}")))?;
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| problem("ca_file", e.to_string()))?;
            Ok(v)
        }
    }

    /// The client certificate chain and key, when both are configured.
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, ConfigProblem> {
        let (Some(cert), Some(key)) = (&self.client_cert_file, &self.client_key_file) else {
            return Ok(None);
        };
        let chain = load_certs("client_cert_file", cert)?;
        let key_path = key;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
            problem(
                "client_key_file",
                format!(
                    "{key_path}: {} (an unencrypted PEM private key is expected)",
                    pem_error(&e)
                ),
            )
        })?;
        // Catch a key that belongs to another certificate at load, not at the
        // first handshake (rustls checks the same when the config is built).
        match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()) {
            Ok(_) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(problem(
                    "client_key_file",
                    format!("{key_path} is not the key of the certificate in {cert}"),
                ));
            }
            Err(e) => {
                return Err(problem(
                    "client_key_file",
                    format!("{key_path}: not usable: {e}"),
                ));
            }
        }
        Ok(Some((chain, key)))
    }
}

/// Whether a request failed in TLS: a rustls error somewhere in its source
/// chain. In TLS 1.3 the server checks the client certificate after the
/// client's side of the handshake is done, so a refused (or missing) client
/// certificate surfaces as a send error rather than a connect error. Either
/// way the target never processed the request: the edge treats it like a
/// connect error (an outage), never as the record's fault.
pub fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = Some(e);
    while let Some(s) = src {
        if s.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps (the source of that
        // one is returned), so step into it instead: hyper wraps rustls's
        // error in an io::Error inside another io::Error.
        src = match s.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    false
}

/// The process-wide rustls provider if one was installed, else aws-lc-rs
/// (what reqwest itself would pick).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn fixed_name(name: &str) -> Result<ServerName<'static>, ConfigProblem> {
    ServerName::try_from(name.to_owned()).map_err(|_| {
        problem(
            "server_name",
            format!("{name:?} is not a DNS name or IP address"),
        )
    })
}

/// Every certificate in a PEM file; at least one.
fn load_certs(key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigProblem> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| problem(key, format!("{path}: {}", pem_error(&e))))?;
    if certs.is_empty() {
        return Err(problem(
            key,
            format!("{path}: no PEM certificate in the file"),
        ));
    }
    Ok(certs)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot read: {io}"),
        Error::NoItemsFound => "no PEM item of the expected kind in the file".to_owned(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// Verifies the chain with `inner` but for a fixed name, whatever host the
/// URL names.
///
/// Why a verifier and not `resolve(server_name, addr)` plus a URL rewrite:
/// that would also change the `Host` header, pin the address at start (no DNS
/// updates), and send the rewritten name to a forward proxy in CONNECT. Here
/// the connection, `Host` and CONNECT stay the URL's; only the name checked
/// against the certificate changes. The SNI sent is still the URL's host (none
/// for an IP address): rustls offers no hook to send another.
#[derive(Debug)]
struct FixedServerName {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedServerName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// `insecure_skip_verify`: any certificate for any name is accepted. The
/// handshake signatures are still checked, so the peer at least holds the key
/// of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(c: &TlsConfig) -> Vec<String> {
        c.problems().into_iter().map(|p| p.to_string()).collect()
    }

    fn builds(c: &TlsConfig) -> bool {
        c.configure(reqwest::Client::builder())
            .and_then(|b| b.build().map_err(ClientError::Build))
            .is_ok()
    }

    #[test]
    fn defaults_are_valid_and_reqwest_takes_the_preconfigured_rustls() {
        let c = TlsConfig::default();
        assert!(c.problems().is_empty());
        assert_eq!(c.min_version, "1.2");
        assert!(c.system_roots);
        // A rustls version other than reqwest's would fail here ("unknown TLS backend").
        assert!(builds(&c));
    }

    #[test]
    fn min_version_is_1_2_or_1_3() {
        for (v, ok) in [
            ("1.2", true),
            ("1.3", true),
            ("1.1", false),
            ("1.0", false),
            ("", false),
        ] {
            let c = TlsConfig {
                min_version: v.into(),
                ..TlsConfig::default()
            };
            assert_eq!(c.problems().is_empty(), ok, "{v:?}: {:?}", paths(&c));
            assert_eq!(builds(&c), ok, "{v:?}");
        }
        let c = TlsConfig {
            min_version: "1.1".into(),
            ..TlsConfig::default()
        };
        assert_eq!(
            paths(&c),
            ["target.tls.min_version: expected \"1.2\" or \"1.3\", got \"1.1\""]
        );
    }

    #[test]
    fn client_cert_and_key_are_set_together() {
        let c = TlsConfig {
            client_cert_file: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(
            paths(&c),
            ["target.tls.client_key_file: set together with client_cert_file"]
        );
        let c = TlsConfig {
            client_key_file: Some("c.key".into()),
            ..TlsConfig::default()
        };
        assert_eq!(
            paths(&c),
            ["target.tls.client_cert_file: set together with client_key_file"]
        );
    }

    #[test]
    fn without_system_roots_a_ca_file_is_required() {
        let c = TlsConfig {
            system_roots: false,
            ..TlsConfig::default()
        };
        assert_eq!(
            paths(&c),
            ["target.tls.ca_file: required when system_roots = false (nothing would be trusted)"]
        );
        let lab = TlsConfig {
            insecure_skip_verify: true,
            ..c
        };
        assert!(lab.problems().is_empty());
        assert!(builds(&lab));
    }

    #[test]
    fn unreadable_or_empty_files_are_named_at_load() {
        let c = TlsConfig {
            ca_file: Some("/nonexistent/cpn-ca.pem".into()),
            client_cert_file: Some("/nonexistent/cpn-client.pem".into()),
            client_key_file: Some("/nonexistent/cpn-client.key".into()),
            ..TlsConfig::default()
        };
        let p = paths(&c);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("target.tls.ca_file: /nonexistent/cpn-ca.pem: cannot read"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("target.tls.client_cert_file: /nonexistent/cpn-client.pem"),
            "{p:?}"
        );
        let err = c.client_config().unwrap_err().to_string();
        assert!(
            err.starts_with("target.tls.ca_file: /nonexistent/cpn-ca.pem"),
            "{err}"
        );

        let empty = std::env::temp_dir().join(format!("cpn-tls-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let c = TlsConfig {
            ca_file: Some(empty.to_string_lossy().into_owned()),
            ..TlsConfig::default()
        };
        let p = paths(&c);
        assert!(p[0].ends_with("no PEM certificate in the file"), "{p:?}");
        let _ = std::fs::remove_file(empty);
    }

    #[test]
    fn server_name_must_be_a_name() {
        for (name, ok) in [
            ("crm.internal", true),
            ("10.1.2.3", true),
            ("bad name", false),
            ("", false),
        ] {
            let c = TlsConfig {
                server_name: Some(name.into()),
                ..TlsConfig::default()
            };
            assert_eq!(c.problems().is_empty(), ok, "{name:?}: {:?}", paths(&c));
        }
    }

    #[test]
    fn unknown_keys_are_refused_and_defaults_fill_in() {
        let c: TlsConfig = toml::from_str("min_version = \"1.3\"\n").unwrap();
        assert_eq!(c.min_version, "1.3");
        assert!(c.system_roots);
        assert!(toml::from_str::<TlsConfig>("verify = false\n").is_err());
    }

    #[test]
    fn a_rustls_error_inside_io_is_a_tls_failure() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        assert!(is_tls_failure(&io));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!is_tls_failure(&plain));
        // As hyper hands it over: an io::Error wrapping an io::Error
        // wrapping rustls's (the outer `source` skips the middle one).
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, cert);
        let outer = std::io::Error::other(inner);
        assert!(is_tls_failure(&outer));
        let nested_plain = std::io::Error::other(std::io::Error::other("no"));
        assert!(!is_tls_failure(&nested_plain));
    }
}
