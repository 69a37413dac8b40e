//! HTTP ingest (`cpn-producer serve`): an endpoint Genesys OCS can post its
//! contact-processed notifications to unchanged, backed by Kafka.
//!
//! Routes:
//!
//! - `POST /v1/contact-processed` — one event, body and headers as OCS sends
//!   them (`Content-Type: application/json`, `ETag: <GUID>`). 200 with the
//!   partition and offset once Kafka acknowledged it.
//! - `POST /v1/contact-processed/batch` — NDJSON; a per-line report.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (on its own listener
//!   with `metrics_listen`).
//!
//! Facing the network: native TLS with reload ([`tls`]), header keys OCS
//! can send ([`auth`]), client certificates (mTLS). With neither keys nor
//! client certificates, only a loopback address is served unless
//! `allow_unauthenticated` says otherwise ([`ServeError::Unprotected`]).
//! `/healthz` and `/readyz` never ask for a key (probes); `/metrics` does
//! on the main listener, and not on a separate `metrics_listen`.
//!
//! Status codes are chosen in [`response`] only. The server takes its
//! shutdown as a future ([`Server::run`]): on it, the listener stops
//! accepting, requests in flight finish (each bounded by `ack_timeout`), and
//! the producer is flushed.
//!
//! Bad input costs at most its bound: [`accept`] caps connections, the
//! time to send a request head and the head's size; [`routes`] caps the
//! body's size and the time to send it; [`linger`] makes sure an early
//! refusal reaches a client that writes its whole body first. Memory is at
//! most about `max_connections` × (`max_body_bytes` + a 64 KiB read
//! buffer).

pub mod accept;
pub mod auth;
pub mod content_type;
pub mod linger;
pub mod ready;
pub mod response;
mod routes;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::PublisherConfig;
use crate::publisher::{FlushError, Publisher, PublisherError};
use accept::{ConnectionLimits, TlsAccept};
use auth::{Auth, AuthError, AuthSettings};
use linger::LingerBounds;
use ready::Readiness;
use tls::{Tls, TlsError, TlsSettings};

/// Default `--max-body-bytes`: 1 MiB, far above a ~1.3 KB event and within
/// Kafka's default record size.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default `--ack-timeout-ms`: below the HTTP timeouts OCS and typical load
/// balancers use, so the client gets a 503 rather than a dropped connection.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `Retry-After` on a 503, in seconds.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 5;
/// Default deadline for flushing the producer at shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--header-read-timeout-ms`: a request head is a few hundred
/// bytes; 10 s is ample on any link and cuts a slow-loris client off.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--body-read-timeout-ms`: 1 MiB in 30 s is 280 kbit/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--max-header-bytes`: 16 KiB, as Node.js; OCS sends well under
/// 1 KiB, proxies in front add some.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Smallest `--max-header-bytes`: a request line and a few headers.
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Smallest `--reload-interval-ms`: the files are read and hashed each time.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(100);

/// Route of the single-event endpoint.
pub const SINGLE_ROUTE: &str = "/v1/contact-processed";
/// Route of the batch endpoint.
pub const BATCH_ROUTE: &str = "/v1/contact-processed/batch";

/// Settings of the ingest server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Kafka settings.
    pub publisher: PublisherConfig,
    /// Address to listen on (`127.0.0.1:8080`, `[::]:8080`, port 0 for any).
    pub listen: String,
    /// Largest request body accepted; larger gets 413.
    pub max_body_bytes: usize,
    /// How long a request waits for Kafka's acknowledgement before 503.
    pub ack_timeout: Duration,
    /// `Retry-After` seconds sent with a 503.
    pub retry_after_secs: u64,
    /// How long shutdown waits for outstanding acknowledgements.
    pub shutdown_timeout: Duration,
    /// How long a request's head (request line and headers) may take to
    /// arrive, from the connection's start or the end of the previous
    /// response; then the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive once its head did;
    /// then 408.
    pub body_read_timeout: Duration,
    /// Largest request head, in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Native TLS (certificate, key, floor, client CA for mTLS); `None`:
    /// plain HTTP.
    pub tls: Option<TlsSettings>,
    /// Keys a request must carry in a header; `None`: none asked.
    pub auth: Option<AuthSettings>,
    /// How often the TLS files and the keys file are checked for a change.
    pub reload_interval: Duration,
    /// A separate plain-HTTP listener for `/metrics`, `/healthz` and
    /// `/readyz`, none of which asks for a key there; `/metrics` then
    /// leaves the main listener.
    pub metrics_listen: Option<String>,
    /// Serve a non-loopback address with neither keys nor client
    /// certificates (`--allow-unauthenticated`).
    pub allow_unauthenticated: bool,
}

impl ServeConfig {
    /// Defaults for everything but Kafka and the address.
    #[must_use]
    pub fn new(publisher: PublisherConfig, listen: impl Into<String>) -> Self {
        Self {
            publisher,
            listen: listen.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls: None,
            auth: None,
            reload_interval: tls::DEFAULT_RELOAD_INTERVAL,
            metrics_listen: None,
            allow_unauthenticated: false,
        }
    }

    /// Whether a client must prove who it is: a header key or a client
    /// certificate.
    #[must_use]
    pub fn authenticates(&self) -> bool {
        self.auth.as_ref().is_some_and(AuthSettings::is_configured)
            || self
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some())
    }

    /// Checks every bound once, before anything is created.
    ///
    /// # Errors
    /// [`ServeError::Config`] naming the first option out of range.
    pub fn validate(&self) -> Result<(), ServeError> {
        let too_small = |option, min| Err(ServeError::Config { option, min });
        if self.max_body_bytes == 0 {
            return too_small("max-body-bytes", 1);
        }
        if self.ack_timeout.is_zero() {
            return too_small("ack-timeout-ms", 1);
        }
        if self.header_read_timeout.is_zero() {
            return too_small("header-read-timeout-ms", 1);
        }
        if self.body_read_timeout.is_zero() {
            return too_small("body-read-timeout-ms", 1);
        }
        if self.max_header_bytes < MIN_MAX_HEADER_BYTES {
            return too_small("max-header-bytes", MIN_MAX_HEADER_BYTES as u64);
        }
        if self.max_connections == 0 {
            return too_small("max-connections", 1);
        }
        if self.reload_interval < MIN_RELOAD_INTERVAL {
            return too_small("reload-interval-ms", MIN_RELOAD_INTERVAL.as_millis() as u64);
        }
        Ok(())
    }

    fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: self.max_header_bytes,
            linger: LingerBounds::default(),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An option is below its smallest value (a zero timeout or limit).
    #[error("{option}: must be at least {min}")]
    Config {
        /// The offending option.
        option: &'static str,
        /// Its smallest value.
        min: u64,
    },
    /// A non-loopback address with neither keys nor client certificates,
    /// and `allow_unauthenticated` not set.
    #[error(
        "refusing to serve {addr} without authentication: anyone who can reach it could \
         write events into Kafka. Require a key (--auth-keys-file FILE or CPN_AUTH_KEYS, sent \
         in the --auth-header header) or a client certificate (--tls-client-ca with --tls-cert \
         and --tls-key), or pass --allow-unauthenticated for a network you trust; a loopback \
         --listen (127.0.0.1:PORT) needs neither"
    )]
    Unprotected {
        /// The address asked for.
        addr: String,
    },
    /// The TLS files do not load.
    #[error(transparent)]
    Tls(TlsError),
    /// The keys are unusable.
    #[error(transparent)]
    Auth(AuthError),
    /// The listen address does not resolve.
    #[error("listen {addr}: {problem}")]
    Address {
        /// The address asked for.
        addr: String,
        /// Why it does not resolve.
        problem: String,
    },
    /// The Kafka producer could not be built.
    #[error("could not create the kafka producer")]
    Publisher(#[source] PublisherError),
    /// The listen address could not be bound.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Shutdown could not flush every outstanding event.
    #[error("shutdown: not every event was acknowledged")]
    Flush(#[source] FlushError),
}

/// Shared state of the handlers.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) publisher: Publisher,
    pub(crate) readiness: Readiness,
    pub(crate) max_body_bytes: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) retry_after_secs: u64,
    pub(crate) auth: Option<Auth>,
}

/// A bound, not yet running, ingest server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    app: Arc<App>,
    tls: Option<Tls>,
    limits: ConnectionLimits,
    shutdown_timeout: Duration,
    reload_interval: Duration,
}

/// The addresses `listen` resolves to, resolved once: what is checked for
/// loopback is what is bound.
async fn resolve(listen: &str) -> Result<Vec<SocketAddr>, ServeError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| ServeError::Address {
            addr: listen.to_owned(),
            problem: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ServeError::Address {
            addr: listen.to_owned(),
            problem: "resolves to no address".to_owned(),
        });
    }
    Ok(addrs)
}

async fn bind_to(shown: &str, addrs: &[SocketAddr]) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addrs)
        .await
        .map_err(|source| ServeError::Bind {
            addr: shown.to_owned(),
            source,
        })
}

impl Server {
    /// Loads the TLS files and keys, checks the address may be served,
    /// creates the producer and binds the listeners; serves nothing yet.
    ///
    /// # Errors
    /// [`ServeError`] for a bad configuration, TLS files or keys that do
    /// not load, an unprotected non-loopback address, or an address in use.
    pub async fn bind(config: ServeConfig) -> Result<Self, ServeError> {
        config.validate()?;
        let addrs = resolve(&config.listen).await?;
        let loopback = addrs.iter().all(|a| a.ip().is_loopback());
        if !config.authenticates() && !loopback {
            if !config.allow_unauthenticated {
                return Err(ServeError::Unprotected {
                    addr: config.listen.clone(),
                });
            }
            warn!(
                listen = %config.listen,
                "serving without authentication (--allow-unauthenticated): anyone who can reach this address can write events into Kafka"
            );
        }
        let tls = config
            .tls
            .clone()
            .map(Tls::load)
            .transpose()
            .map_err(ServeError::Tls)?;
        let auth = config
            .auth
            .as_ref()
            .filter(|a| a.is_configured())
            .map(Auth::load)
            .transpose()
            .map_err(ServeError::Auth)?;
        let publisher = Publisher::new(&config.publisher).map_err(ServeError::Publisher)?;
        let listener = bind_to(&config.listen, &addrs).await?;
        let metrics_listener = match &config.metrics_listen {
            Some(addr) => Some(bind_to(addr, &resolve(addr).await?).await?),
            None => None,
        };
        let app = Arc::new(App {
            readiness: Readiness::new(publisher.clone()),
            publisher,
            max_body_bytes: config.max_body_bytes,
            ack_timeout: config.ack_timeout,
            body_read_timeout: config.body_read_timeout,
            retry_after_secs: config.retry_after_secs,
            auth,
        });
        Ok(Self {
            listener,
            metrics_listener,
            app,
            tls,
            limits: config.connection_limits(),
            shutdown_timeout: config.shutdown_timeout,
            reload_interval: config.reload_interval,
        })
    }

    /// The address of the separate metrics listener, when there is one.
    ///
    /// # Errors
    /// The OS error, if the socket cannot report it.
    pub fn metrics_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.metrics_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// The OS error, if the socket cannot report it.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The publisher behind the server (for its metrics).
    #[must_use]
    pub fn publisher(&self) -> &Publisher {
        &self.app.publisher
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests
    /// in flight finish, and flushes the producer.
    ///
    /// # Errors
    /// [`ServeError::Flush`] if events were still unacknowledged after
    /// `shutdown_timeout`.
    pub async fn run<F>(self, shutdown: F) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let addr = self.local_addr().ok();
        let metrics_addr = self.metrics_addr().ok().flatten();
        let Server {
            listener,
            metrics_listener,
            app,
            tls,
            limits,
            shutdown_timeout,
            reload_interval,
        } = self;
        let router = router(Arc::clone(&app), metrics_addr.is_none());
        info!(
            ?addr,
            ?metrics_addr,
            topic = app.publisher.topic(),
            tls = tls.is_some(),
            keys = app.auth.is_some(),
            "ingest server listening"
        );
        let stop = CancellationToken::new();
        let watchers = CancellationToken::new();
        let metrics = app.publisher.metrics().clone();
        let tls = tls.map(|tls| {
            let accept = TlsAccept {
                state: tls.state(),
                metrics: metrics.clone(),
            };
            tokio::spawn(tls.watch(reload_interval, metrics, watchers.clone()));
            accept
        });
        if let Some(auth) = &app.auth {
            tokio::spawn(auth.clone().watch(
                reload_interval,
                app.publisher.metrics().clone(),
                watchers.clone(),
            ));
        }
        let main = accept::serve(
            listener,
            router,
            limits,
            tls,
            stop.clone().cancelled_owned(),
        );
        let side = async {
            if let Some(listener) = metrics_listener {
                let router = metrics_router(Arc::clone(&app));
                accept::serve(
                    listener,
                    router,
                    limits,
                    None,
                    stop.clone().cancelled_owned(),
                )
                .await;
            }
        };
        let signal = async {
            shutdown.await;
            stop.cancel();
        };
        tokio::join!(signal, main, side);
        watchers.cancel();
        info!("ingest server stopped accepting; flushing the producer");
        app.publisher
            .flush(shutdown_timeout)
            .await
            .map_err(ServeError::Flush)?;
        info!("ingest server stopped");
        Ok(())
    }
}

/// Binds and serves until `shutdown`; see [`Server::run`].
///
/// # Errors
/// As [`Server::bind`] and [`Server::run`].
pub async fn run<F>(config: ServeConfig, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    Server::bind(config).await?.run(shutdown).await
}

/// The main listener's routes: the API (and `/metrics` unless it has its
/// own listener) behind the key check, the probes open.
fn router(app: Arc<App>, with_metrics: bool) -> Router {
    let mut keyed = Router::new()
        .route(SINGLE_ROUTE, post(routes::single))
        .route(BATCH_ROUTE, post(routes::batch));
    if with_metrics {
        keyed = keyed.route("/metrics", get(routes::metrics));
    }
    let keyed = keyed.route_layer(axum::middleware::from_fn_with_state(
        Arc::clone(&app),
        routes::authenticate,
    ));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .merge(keyed)
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            routes::track,
        ))
        .with_state(app)
}

/// The separate metrics listener's routes: metrics and the probes, no key.
fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServeConfig {
        ServeConfig::new(PublisherConfig::new("127.0.0.1:1", "t"), "127.0.0.1:0")
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn every_bound_below_its_minimum_is_refused_naming_the_option() {
        type Break = fn(&mut ServeConfig);
        let cases: [(&str, Break); 7] = [
            ("max-body-bytes: must be at least 1", |c| {
                c.max_body_bytes = 0
            }),
            ("ack-timeout-ms: must be at least 1", |c| {
                c.ack_timeout = Duration::ZERO
            }),
            ("header-read-timeout-ms: must be at least 1", |c| {
                c.header_read_timeout = Duration::ZERO
            }),
            ("body-read-timeout-ms: must be at least 1", |c| {
                c.body_read_timeout = Duration::ZERO
            }),
            ("max-header-bytes: must be at least 1024", |c| {
                c.max_header_bytes = 1023
            }),
            ("max-connections: must be at least 1", |c| {
                c.max_connections = 0
            }),
            ("reload-interval-ms: must be at least 100", |c| {
                c.reload_interval = Duration::from_millis(99)
            }),
        ];
        for (expected, break_it) in cases {
            let mut c = config();
            break_it(&mut c);
            let e = c.validate().expect_err(expected);
            assert_eq!(e.to_string(), expected);
        }
        let mut c = config();
        c.max_header_bytes = MIN_MAX_HEADER_BYTES;
        assert!(c.validate().is_ok());
    }
}
