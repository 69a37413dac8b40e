//! The ingest server's accept loop: what one connection may cost before a
//! request reaches a handler.
//!
//! - At most [`ConnectionLimits::max_connections`] connections are served
//!   at once. A slot is taken *before* `accept`, so connections past the
//!   limit wait in the kernel's listen backlog (their handshake completes
//!   there; they are served, in order, as slots free) and cost this process
//!   nothing; once the backlog is full the kernel drops new handshakes and
//!   clients retry or time out.
//! - Each connection speaks HTTP/1.1 through hyper with a header read
//!   timeout (a request head must arrive within it, counted from the
//!   connection's start or the end of the previous response, so it also
//!   bounds an idle keep-alive connection) and a bound on the request
//!   head's size (hyper answers 431 past it).
//! - Each connection closes through a [`LingeringClose`], so an early
//!   answer reaches a client still writing its body.
//!
//! - With TLS, the handshake comes first and must end within the header
//!   read timeout too (a client that stalls in it is cut off); a failed
//!   handshake is counted by reason and logged at DEBUG (a port scanner or
//!   a client without a certificate is not an operator's concern, the
//!   metric is). New handshakes use the configuration in force when they
//!   start ([`TlsState`], replaced on reload).
//!
//! On shutdown: stop accepting (close the listener), let every connection
//! finish its request in flight, then return. Not here: routes, the body
//! limit and the body read timeout (`routes`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::linger::{LingerBounds, LingeringClose};
use super::tls::{TlsState, handshake_failure_reason};
use crate::metrics::Metrics;

/// Largest read buffer of one connection unless the header bound needs more:
/// 64 KiB (hyper's default is ~400 KiB), which bounds the memory of a
/// connection reading a body at that plus the body itself.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// Pause after an `accept` failure that is not about one connection (out
/// of file descriptors): retrying at once would spin.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What a connection may cost before its request reaches a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long a request head may take to arrive.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// What closing a connection may read and wait for.
    pub linger: LingerBounds,
}

impl ConnectionLimits {
    /// hyper's HTTP/1 settings for these limits.
    fn http1(&self) -> http1::Builder {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_header_size(self.max_header_bytes)
            // hyper panics below 8 KiB; READ_BUF_BYTES is 64 KiB. A head
            // may fill the buffer, so it is at least the head bound.
            .max_buf_size(self.max_header_bytes.max(READ_BUF_BYTES));
        http
    }
}

/// TLS on a listener: the configuration and where handshake failures are
/// counted.
#[derive(Debug, Clone)]
pub(crate) struct TlsAccept {
    pub(crate) state: TlsState,
    pub(crate) metrics: Metrics,
}

/// Serves `router` on `listener` within `limits` (over TLS when `tls` is
/// set) until `shutdown` resolves, then stops accepting and waits for every
/// connection to finish.
pub(crate) async fn serve<F>(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAccept>,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    let http = limits.http1();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: past the limit, connections wait in the backlog.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = connections.join_next() => {
                report(done);
                continue;
            }
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        // The semaphore is never closed, so this is always a permit.
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_RETRY_DELAY) => continue,
                    }
                }
            },
        };
        let http = http.clone();
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        let stream = LingeringClose::new(stream, limits.linger);
        let handshake_timeout = limits.header_read_timeout;
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(&http, stream, peer, service, &stop).await,
                Some(tls) => {
                    let acceptor = tls.state.acceptor();
                    let handshake = tokio::select! {
                        // Shutdown during a handshake: nothing was asked yet.
                        () = stop.cancelled() => return,
                        h = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => h,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            serve_connection(&http, stream, peer, service, &stop).await;
                        }
                        Ok(Err(e)) => {
                            let reason = handshake_failure_reason(&e);
                            tls.metrics.record_handshake_failure(reason);
                            debug!(%peer, reason, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            tls.metrics.record_handshake_failure("timeout");
                            debug!(%peer, "TLS handshake not done within the header read timeout");
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    stop.cancel();
    while let Some(done) = connections.join_next().await {
        report(done);
    }
}

/// Serves one connection until it closes, or finishes its request in
/// flight once `stop` is cancelled.
async fn serve_connection<S>(
    http: &http1::Builder,
    stream: S,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
    stop: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let mut conn = pin!(http.serve_connection(io, service));
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Header read timeouts, resets and malformed requests: per-connection
    // detail, not an operator's concern.
    if let Err(e) = ended {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Logs a connection task that panicked (it is gone; the server goes on).
fn report(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!(error = %e, "an ingest connection task panicked");
    }
}

/// An `accept` failure about one connection only (it was reset while
/// queued): nothing to wait for.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
