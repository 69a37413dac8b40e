//! Shared by `target_tls.rs` and `target_proxy.rs`: a private PKI made in the
//! test with rcgen (CA, server and client certificates as PEM files in a temp
//! directory) and an HTTPS receiver, a rustls acceptor in front of an axum
//! router, that records every request and every handshake, failed or not.

#![allow(dead_code)] // each test file uses a different part of it

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long one server-side handshake may take before it counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A private CA and the files it issued, in a temp directory removed on drop.
pub struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A fresh CA; its certificate is at [`Pki::ca_file`].
    pub fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(cpn_e2e::unique("cpn-pki"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "cpn test private CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        Ok(Pki { dir, ca })
    }

    /// The CA certificate (PEM), for `target.tls.ca_file`.
    pub fn ca_file(&self) -> String {
        self.path("ca.pem")
    }

    /// The CA certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A path inside the temp directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) with
    /// `usage`, signed by the CA; also written as `<stem>.pem`/`<stem>.key`.
    pub fn leaf(
        &self,
        stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        self.leaf_until(stem, names, usage, None)
    }

    /// [`Pki::leaf`] valid until midnight UTC of `not_after`, (year, month,
    /// day) (`None`: rcgen's default, 4096).
    pub fn leaf_until(
        &self,
        stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        not_after: Option<(i32, u8, u8)>,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        if let Some((y, m, d)) = not_after {
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        std::fs::write(self.path(&format!("{stem}.pem")), cert.pem())?;
        std::fs::write(self.path(&format!("{stem}.key")), key.serialize_pem())?;
        Ok((
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        ))
    }

    /// A client certificate for mTLS: `(client_cert_file, client_key_file)`.
    pub fn client_files(&self, stem: &str) -> Result<(String, String)> {
        self.leaf(stem, &[], ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok((
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        ))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the HTTPS receiver is like.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names in the server certificate.
    pub names: Vec<String>,
    /// Accept TLS 1.2 only (default: 1.2 and 1.3).
    pub tls12_only: bool,
    /// Require a client certificate issued by the test CA.
    pub require_client_cert: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            names: vec!["localhost".into(), "127.0.0.1".into()],
            tls12_only: false,
            require_client_cert: false,
        }
    }
}

/// One request the receiver answered (200).
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: Method,
    /// The `ETag` header (the relay sends the GUID).
    pub etag: Option<String>,
    /// Body bytes.
    pub body: Bytes,
}

/// One TLS handshake as the server saw it.
#[derive(Debug, Clone)]
pub enum Handshake {
    /// Completed.
    Ok {
        /// Negotiated version, e.g. `TLSv1_3`.
        version: String,
        /// Whether the client presented a certificate.
        client_cert: bool,
    },
    /// Failed, with rustls' reason.
    Failed(String),
}

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Received>>,
    handshakes: Mutex<Vec<Handshake>>,
}

/// An HTTPS server on 127.0.0.1 that answers 200 to everything.
pub struct HttpsServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsServer {
    /// Starts a receiver with a certificate from `pki`.
    pub async fn start(pki: &Pki, opts: Options) -> Result<Self> {
        let names: Vec<&str> = opts.names.iter().map(String::as_str).collect();
        let (cert, key) = pki.leaf("server", &names, ExtendedKeyUsagePurpose::ServerAuth)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = if opts.require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der())?;
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?,
            )
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(vec![cert, pki.ca_der()], key)?;
        // axum serves HTTP/1.1 here (its http2 feature is off).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpListener::bind("127.0.0.1:0").await?;
        let addr = tcp.local_addr()?;
        let seen = Arc::new(Seen::default());
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            seen: seen.clone(),
        };
        let app = Router::new().fallback(record).with_state(seen.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpsServer { addr, seen, task })
    }

    /// `https://127.0.0.1:<port>/crm`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/crm", self.addr.port())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests answered so far.
    pub fn received(&self) -> Vec<Received> {
        self.seen
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Handshakes so far.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.seen
            .handshakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reasons of the failed handshakes so far.
    pub fn failed_handshakes(&self) -> Vec<String> {
        self.handshakes()
            .into_iter()
            .filter_map(|h| match h {
                Handshake::Failed(why) => Some(why),
                Handshake::Ok { .. } => None,
            })
            .collect()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(seen): State<Arc<Seen>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received { method, etag, body });
    StatusCode::OK
}

/// TCP accept plus the TLS handshake, recording how each handshake went.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    seen: Arc<Seen>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(x) => x,
                Err(_) => {
                    // e.g. EMFILE; the test will time out with a clear message.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await;
            let mut handshakes = self
                .seen
                .handshakes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(Ok(tls)) => {
                    let conn = tls.get_ref().1;
                    handshakes.push(Handshake::Ok {
                        version: conn
                            .protocol_version()
                            .map_or_else(|| "unknown".to_owned(), |v| format!("{v:?}")),
                        client_cert: conn.peer_certificates().is_some_and(|c| !c.is_empty()),
                    });
                    return (tls, addr);
                }
                Ok(Err(e)) => handshakes.push(Handshake::Failed(e.to_string())),
                Err(_) => handshakes.push(Handshake::Failed("handshake timed out".into())),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Runs the relay with `cfg`, produces one event and waits until `server`
/// received it as a POST with its GUID as ETag and its body byte for byte,
/// with nothing dead-lettered.
pub async fn assert_delivered(
    s: &cpn_e2e::relay::Fixture,
    cfg: cpn_relay::config::RelayConfig,
    server: &HttpsServer,
) -> Result<()> {
    let relay = cpn_e2e::relay::RunningRelay::start(cfg)?;
    let (guid, body) = cpn_e2e::event("list-https", 1, 0);
    let p = cpn_e2e::producer(&s.brokers)?;
    cpn_e2e::produce(&p, &s.topic, "list-https:1", Some(&guid), &body).await?;
    let got = cpn_e2e::wait_for(
        "the event at the HTTPS target",
        Duration::from_secs(60),
        || async {
            server
                .received()
                .into_iter()
                .find(|r| r.etag.as_deref() == Some(guid.as_str()))
        },
    )
    .await?;
    relay.stop().await?;
    anyhow::ensure!(got.method == "POST", "method {}", got.method);
    anyhow::ensure!(got.body[..] == body[..], "body not relayed byte for byte");
    anyhow::ensure!(
        cpn_e2e::read_all(&s.brokers, &s.dlq)?.is_empty(),
        "something was dead-lettered"
    );
    Ok(())
}

/// After the relay refused to deliver the one event of `s` (a TLS or proxy
/// failure is an outage, never the record's fault): nothing was
/// dead-lettered, and the group did not commit past the record.
pub fn assert_record_held(s: &cpn_e2e::relay::Fixture, why: &str) -> Result<()> {
    anyhow::ensure!(
        cpn_e2e::read_all(&s.brokers, &s.dlq)?.is_empty(),
        "{why} is an outage, not the record's fault: nothing may be dead-lettered"
    );
    let offsets = cpn_e2e::committed(&s.brokers, &s.group, &s.topic)?;
    let at = offsets.get(&0).copied().unwrap_or(0);
    anyhow::ensure!(
        at == 0,
        "the record is held: the group committed offset {at} past it"
    );
    Ok(())
}
