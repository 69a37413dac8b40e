//! HTTP ingest (`cpn-producer serve`): an endpoint Genesys OCS can post its
//! contact-processed notifications to unchanged, backed by Kafka.
//!
//! Routes:
//!
//! - `POST /v1/contact-processed` — one event, body and headers as OCS sends
//!   them (`Content-Type: application/json`, `ETag: <GUID>`). 200 with the
//!   partition and offset once Kafka acknowledged it.
//! - `POST /v1/contact-processed/batch` — NDJSON; a per-line report.
//! - `GET /healthz`, `GET /readyz`, `GET /metrics`.
//!
//! Status codes are chosen in [`response`] only. The server takes its
//! shutdown as a future ([`Server::run`]): on it, the listener stops
//! accepting, requests in flight finish (each bounded by `ack_timeout`), and
//! the producer is flushed. Not here: TLS and authentication (terminate them
//! in front, as OCS deployments do with a proxy).
//!
//! Bad input costs at most its bound: [`accept`] caps connections, the
//! time to send a request head and the head's size; [`routes`] caps the
//! body's size and the time to send it; [`linger`] makes sure an early
//! refusal reaches a client that writes its whole body first. Memory is at
//! most about `max_connections` × (`max_body_bytes` + a 64 KiB read
//! buffer).

pub mod accept;
pub mod content_type;
pub mod linger;
pub mod ready;
pub mod response;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tracing::info;

use crate::config::PublisherConfig;
use crate::publisher::{FlushError, Publisher, PublisherError};
use accept::ConnectionLimits;
use linger::LingerBounds;
use ready::Readiness;

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
        }
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
}

/// A bound, not yet running, ingest server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    limits: ConnectionLimits,
    shutdown_timeout: Duration,
}

impl Server {
    /// Creates the producer and binds the listener; serves nothing yet.
    ///
    /// # Errors
    /// [`ServeError`] for a bad configuration or an address in use.
    pub async fn bind(config: ServeConfig) -> Result<Self, ServeError> {
        config.validate()?;
        let publisher = Publisher::new(&config.publisher).map_err(ServeError::Publisher)?;
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;
        let app = Arc::new(App {
            readiness: Readiness::new(publisher.clone()),
            publisher,
            max_body_bytes: config.max_body_bytes,
            ack_timeout: config.ack_timeout,
            body_read_timeout: config.body_read_timeout,
            retry_after_secs: config.retry_after_secs,
        });
        Ok(Self {
            listener,
            app,
            limits: config.connection_limits(),
            shutdown_timeout: config.shutdown_timeout,
        })
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
        let router = router(Arc::clone(&self.app));
        let addr = self.local_addr().ok();
        info!(
            ?addr,
            topic = self.app.publisher.topic(),
            "ingest server listening"
        );
        accept::serve(self.listener, router, self.limits, shutdown).await;
        info!("ingest server stopped accepting; flushing the producer");
        self.app
            .publisher
            .flush(self.shutdown_timeout)
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

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(SINGLE_ROUTE, post(routes::single))
        .route(BATCH_ROUTE, post(routes::batch))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            routes::track,
        ))
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
        let cases: [(&str, Break); 6] = [
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
