//! The mock CRM's HTTP edge: an axum server answering every method and path
//! by [`decide`], recording each request, and a [`MockCrm`] handle to steer
//! and observe it from tests or the CLI.
//!
//! Stopping is an outage, not a graceful drain: [`MockCrm::stop`] closes the
//! listening socket, so new connections are refused, and severs open ones,
//! in-flight requests included, the way a crashed target would. A new
//! [`MockCrm`] on the same port ([`MockCrm::bind`] sets `SO_REUSEADDR`) is
//! the recovery.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::behavior::{Behavior, BehaviorError};
use super::decide::{Cause, DecideState, Reply, RequestView, decide, parse_object};
use super::framing::{FramingProblem, framing_problems};

/// Largest request body accepted; larger ones get 413 and are not recorded.
/// A typical ContactProcessed body is about 1.3 KB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Path used by [`MockCrm::url`]; the server answers on every path.
pub const DEFAULT_PATH: &str = "/crm";

/// How long [`MockCrm::stop`] waits for severed connections to wind down
/// before abandoning the server task.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Pending connections the kernel queues for [`MockCrm::bind`].
const LISTEN_BACKLOG: u32 = 1024;

/// One request as the mock CRM saw it, and what it answered.
#[derive(Clone, Debug)]
pub struct Received {
    /// Arrival number, from 0, per [`MockCrm`] instance.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
    /// The `ETag` header.
    pub etag: Option<String>,
    /// `GSW_MESSAGE_GUID` from the body, when it is a JSON object holding one.
    pub guid: Option<String>,
    /// Status answered (or about to be, while `delay` runs).
    pub status_sent: u16,
    /// Which behavior knob chose `status_sent`.
    pub cause: Cause,
    /// Delay applied before answering.
    pub delay: Duration,
    /// Where the request departs from the spec's HTTP framing; empty when it
    /// is framed like OCS.
    pub framing_problems: Vec<FramingProblem>,
    /// When the request was read, before the delay.
    pub at: SystemTime,
}

impl Received {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Options for [`MockCrm::start_with`].
#[derive(Clone, Debug, Default)]
pub struct MockCrmOptions {
    /// Keep only the last this-many requests for [`MockCrm::received`] and
    /// [`MockCrm::next`]; `None` keeps all (tests). The CLI bounds it so a
    /// long demo does not grow without limit.
    pub keep_received: Option<usize>,
    /// Cancelling this stops the server like [`MockCrm::stop`].
    pub shutdown: CancellationToken,
}

/// A running mock CRM. Dropping the handle stops the server.
pub struct MockCrm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    arrivals: watch::Receiver<u64>,
    /// Sequence number [`MockCrm::next`] returns next.
    cursor: u64,
    /// Resolves (with `Err`) once the listening socket is closed.
    listener_closed: Option<oneshot::Receiver<()>>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for MockCrm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockCrm")
            .field("addr", &self.addr)
            .field("received", &self.received_count())
            .finish_non_exhaustive()
    }
}

impl MockCrm {
    /// Bind a listener on `addr` with `SO_REUSEADDR`, so a test can bind the
    /// port of a just-stopped mock again. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// The socket errors, e.g. `AddrInUse` while something still listens.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    }

    /// [`MockCrm::bind`] `addr`, then [`MockCrm::start`].
    ///
    /// # Errors
    ///
    /// As [`MockCrm::bind`] and [`MockCrm::start`].
    pub async fn start_on(addr: SocketAddr, behavior: Behavior) -> io::Result<MockCrm> {
        Self::start(Self::bind(addr)?, behavior).await
    }

    /// Serve on `listener` (tests pass one bound to `127.0.0.1:0`) until the
    /// handle is stopped or dropped.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `behavior` fails [`Behavior::validate`]; the
    /// listener's address error.
    pub async fn start(listener: TcpListener, behavior: Behavior) -> io::Result<MockCrm> {
        Self::start_with(listener, behavior, MockCrmOptions::default()).await
    }

    /// [`MockCrm::start`] with options.
    ///
    /// # Errors
    ///
    /// As [`MockCrm::start`].
    pub async fn start_with(
        listener: TcpListener,
        behavior: Behavior,
        options: MockCrmOptions,
    ) -> io::Result<MockCrm> {
        behavior
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let addr = listener.local_addr()?;
        let stop = options.shutdown.child_token();
        let (arrivals_tx, arrivals) = watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                rng: rng_for(behavior.seed),
                behavior,
                state: DecideState::default(),
                log: VecDeque::new(),
                first_seq: 0,
                next_seq: 0,
                keep: options.keep_received,
            }),
            arrivals: arrivals_tx,
            stop: stop.clone(),
        });
        let (closed_tx, closed_rx) = oneshot::channel();
        let listener = SeveringListener {
            inner: listener,
            stop: stop.clone(),
            _closed: closed_tx,
        };
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(Arc::clone(&shared));
        let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        let server = tokio::spawn(async move {
            if let Err(error) = serve.await {
                tracing::warn!(%error, "mock CRM server ended with an error");
            }
        });
        tracing::debug!(%addr, "mock CRM listening");
        Ok(MockCrm {
            addr,
            shared,
            arrivals,
            cursor: 0,
            listener_closed: Some(closed_rx),
            server: Some(server),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/crm`, with loopback in place of an unspecified address.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}{DEFAULT_PATH}")
    }

    /// Replace the behavior; script position and per-GUID counts start over,
    /// and a seeded behavior reseeds the random source.
    ///
    /// # Errors
    ///
    /// [`BehaviorError`] from [`Behavior::validate`]; the old behavior stays.
    pub fn set_behavior(&self, behavior: Behavior) -> Result<(), BehaviorError> {
        behavior.validate()?;
        let mut inner = self.shared.lock();
        if let Some(seed) = behavior.seed {
            inner.rng = StdRng::seed_from_u64(seed);
        }
        inner.behavior = behavior;
        inner.state = DecideState::default();
        Ok(())
    }

    /// Requests received so far (the kept ones, see
    /// [`MockCrmOptions::keep_received`]), in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().log.iter().cloned().collect()
    }

    /// The kept requests numbered `seq` and later, in arrival order: a
    /// cheap way for a long test to read only what is new.
    pub fn received_since(&self, seq: u64) -> Vec<Received> {
        let inner = self.shared.lock();
        let first = inner.log.partition_point(|r| r.seq < seq);
        inner.log.range(first..).cloned().collect()
    }

    /// How many requests arrived in total.
    pub fn received_count(&self) -> u64 {
        *self.arrivals.borrow()
    }

    /// The next request after the last one this returned, waiting up to
    /// `timeout` for it to arrive; `None` on timeout. Starts at the first
    /// request; requests dropped by `keep_received` are skipped.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.next_arrival())
            .await
            .ok()
    }

    /// [`MockCrm::next`] without a deadline.
    pub(super) async fn next_arrival(&mut self) -> Received {
        loop {
            if let Some(received) = self.try_next() {
                return received;
            }
            let cursor = self.cursor;
            // The sender lives in `shared`, which this handle owns, so the
            // channel cannot close while we wait.
            if self
                .arrivals
                .wait_for(|&count| count > cursor)
                .await
                .is_err()
            {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stop: once this returns, connections to the port are refused and open
    /// ones have been cut, in-flight requests unanswered. Received requests
    /// are gone with the handle; read them first.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// [`MockCrm::stop`] keeping the handle: what arrived until the stop,
    /// also while it was stopping, can still be read (`received_since`).
    pub async fn halt(&mut self) {
        self.shut_down().await;
    }

    /// [`MockCrm::stop`] keeping the handle, so the CLI can still read what
    /// arrived.
    pub(super) async fn shut_down(&mut self) {
        self.shared.stop.cancel();
        if let Some(closed) = self.listener_closed.take() {
            // Err is the signal: the sender lives in the listener.
            let _ = closed.await;
        }
        if let Some(mut server) = self.server.take() {
            if tokio::time::timeout(STOP_DEADLINE, &mut server)
                .await
                .is_err()
            {
                tracing::warn!(addr = %self.addr, "mock CRM connections still open after stop");
                server.abort();
            }
        }
    }

    /// The next request already recorded, without waiting.
    pub(super) fn try_next(&mut self) -> Option<Received> {
        self.shared.lock().take_from(&mut self.cursor)
    }
}

impl Drop for MockCrm {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

fn rng_for(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

/// State shared by the handle and every request handler.
#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Total requests recorded; wakes [`MockCrm::next`].
    arrivals: watch::Sender<u64>,
    /// Stops the server and cuts connections.
    stop: CancellationToken,
}

/// Behavior, decision state and the record, under one lock so arrival order
/// in the record is the order decisions were made in.
#[derive(Debug)]
struct Inner {
    behavior: Behavior,
    state: DecideState,
    rng: StdRng,
    log: VecDeque<Received>,
    /// `seq` of `log[0]`.
    first_seq: u64,
    next_seq: u64,
    keep: Option<usize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking custom closure poisons the lock; the data is still
        // consistent (decide is the only writer and finished or never ran).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decide `request`, record it, wake waiters.
    fn decide_and_record(
        &self,
        request: &RequestView<'_>,
        etag: Option<String>,
        at: SystemTime,
    ) -> Reply {
        let problems = framing_problems(request);
        let count;
        let reply;
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            reply = decide(
                &inner.behavior,
                request,
                &mut inner.state,
                &mut inner.rng,
                at,
            );
            let received = Received {
                seq: inner.next_seq,
                method: request.method.to_owned(),
                path: request.path.to_owned(),
                headers: request.headers.to_vec(),
                body: Bytes::copy_from_slice(request.body),
                etag,
                guid: request.guid().map(str::to_owned),
                status_sent: reply.status,
                cause: reply.cause.clone(),
                delay: reply.delay,
                framing_problems: problems,
                at,
            };
            inner.next_seq += 1;
            inner.log.push_back(received);
            if let Some(keep) = inner.keep {
                while inner.log.len() > keep {
                    inner.log.pop_front();
                    inner.first_seq += 1;
                }
            }
            count = inner.next_seq;
        }
        self.arrivals.send_replace(count);
        reply
    }
}

impl Inner {
    /// The record at `*cursor` (or the oldest kept one after it), advancing
    /// the cursor past it.
    fn take_from(&self, cursor: &mut u64) -> Option<Received> {
        *cursor = (*cursor).max(self.first_seq);
        let index = usize::try_from(*cursor - self.first_seq).ok()?;
        let received = self.log.get(index)?.clone();
        *cursor += 1;
        Some(received)
    }
}

/// The one handler: every method, every path.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = SystemTime::now();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let json = parse_object(&body);
    let view = RequestView {
        method: method.as_str(),
        path: &path,
        headers: &headers,
        body: &body,
        json: json.as_ref(),
    };
    let etag = view.header("etag").map(str::to_owned);
    let reply = shared.decide_and_record(&view, etag, at);
    if !reply.delay.is_zero() {
        // On stop the reply is still built, but the severed connection
        // never carries it: the client sees the connection drop.
        tokio::select! {
            () = tokio::time::sleep(reply.delay) => {}
            () = shared.stop.cancelled() => {}
        }
    }
    to_response(reply)
}

fn to_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or_else(|_| {
        // Unreachable through a validated Behavior; a custom closure may
        // still build one.
        tracing::warn!(
            status = reply.status,
            "invalid status in mock CRM reply; sending 500"
        );
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(%name, "invalid header in mock CRM reply; dropped"),
        }
    }
    response
}

/// A TCP listener whose connections die when `stop` is cancelled, and which
/// reports its own closing by dropping `_closed`.
struct SeveringListener {
    inner: TcpListener,
    stop: CancellationToken,
    /// Dropped with the listener: tells [`MockCrm::stop`] the port is closed.
    _closed: oneshot::Sender<()>,
}

impl axum::serve::Listener for SeveringListener {
    type Io = SeverableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let stream = SeverableStream {
                        inner: stream,
                        severed: Box::pin(self.stop.clone().cancelled_owned()),
                    };
                    return (stream, addr);
                }
                // The peer gave up before we accepted: nothing to serve.
                Err(e) if is_connection_error(&e) => {}
                Err(error) => {
                    // Typically EMFILE; spinning would not free descriptors.
                    tracing::warn!(%error, "mock CRM accept failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP stream that fails every read and write once `severed` resolves, so
/// hyper drops the connection at once instead of draining it. Polling
/// `severed` in each call registers the waker, so an idle connection wakes
/// up to die too.
struct SeverableStream {
    inner: TcpStream,
    severed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl SeverableStream {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        // The future re-checks the token on every poll, so polling it after
        // it resolved is fine.
        match self.severed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "mock CRM stopped",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for SeverableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SeverableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
