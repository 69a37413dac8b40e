//! Lingering close: when the server ends a connection it first sends its FIN
//! (shuts down the write side), then reads and throws away what the client
//! still sends, for at most [`LingerBounds::max_bytes`] and
//! [`LingerBounds::timeout`], and only then closes the socket.
//!
//! Why: a server that answers early (413 for a body over the limit, 431,
//! 408, 415) and closes with unread bytes in its receive buffer makes the
//! kernel send a reset. A client still writing its body — Python's
//! `http.client` and many embedded HTTP stacks write the whole request
//! before reading a byte — then gets a broken pipe or "connection reset"
//! instead of the answer, and an OCS-like client retries forever. Reading
//! the rest lets the answer and the FIN reach it; the bounds keep a client
//! that never stops writing from holding the connection. (Apache and nginx
//! do the same and call it lingering close.)
//!
//! Not here: deciding when to close. hyper does that (after a response that
//! left the request body unread, after its 431, on `Connection: close`, on
//! graceful shutdown) and calls [`AsyncWrite::poll_shutdown`], which is
//! where the lingering happens. A connection hyper abandons on an error (a
//! header read timeout mid-request) is dropped and closes at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Default [`LingerBounds::max_bytes`]: 16 MiB, several bodies over the
/// default 1 MiB limit and more than a client's kernel holds in flight
/// (Linux grows a send buffer to 4 MiB); past it the client gets a reset,
/// as it would without lingering. Costs time, not memory: what is read is
/// thrown away through one 8 KiB buffer.
pub const LINGER_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Default [`LingerBounds::timeout`]: 5 s, enough for 3 MiB at 5 Mbit/s
/// and for any client on a LAN to finish writing and read the answer.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read and thrown away per read while lingering.
const DRAIN_CHUNK: usize = 8 * 1024;

/// How much a lingering close reads, and for how long, before it closes
/// anyway: whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LingerBounds {
    /// Most bytes read and thrown away after the FIN.
    pub max_bytes: usize,
    /// Longest time spent reading after the FIN.
    pub timeout: Duration,
}

impl Default for LingerBounds {
    fn default() -> Self {
        Self {
            max_bytes: LINGER_MAX_BYTES,
            timeout: LINGER_TIMEOUT,
        }
    }
}

/// Where a [`LingeringClose`] is in closing.
#[derive(Debug)]
enum Closing {
    /// Serving: reads and writes pass through.
    Open,
    /// FIN sent; discarding what the client still sends.
    Draining {
        /// Bytes that may still be thrown away.
        left: usize,
        /// When to stop waiting for the client.
        deadline: Pin<Box<Sleep>>,
    },
    /// The client closed, a bound was reached, or the connection failed.
    Done,
}

/// A connection whose shutdown lingers: see the module documentation.
#[derive(Debug)]
pub struct LingeringClose<S> {
    inner: S,
    bounds: LingerBounds,
    closing: Closing,
}

impl<S> LingeringClose<S> {
    /// Wraps `inner`; its shutdown will linger within `bounds`.
    pub fn new(inner: S, bounds: LingerBounds) -> Self {
        Self {
            inner,
            bounds,
            closing: Closing::Open,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> LingeringClose<S> {
    /// Reads and discards until the client closes, a bound is reached, or
    /// the connection fails; `Ready` once closing is done.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Closing::Draining { left, deadline } = &mut self.closing else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; DRAIN_CHUNK];
        loop {
            // Checked before every read: a client that always has a byte
            // ready would otherwise never let the deadline be polled.
            if deadline.is_elapsed() {
                break;
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => {
                    *left = left.saturating_sub(buf.filled().len());
                    if *left == 0 {
                        break;
                    }
                }
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    ready!(deadline.as_mut().poll(cx));
                    break;
                }
            }
        }
        self.closing = Closing::Done;
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Sends the FIN, then lingers (see the module documentation); `Ready`
    /// once the client closed or a bound was reached. Only a failure to
    /// send the FIN is an error: the connection is gone either way.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Closing::Open = this.closing {
            if let Err(e) = ready!(Pin::new(&mut this.inner).poll_shutdown(cx)) {
                this.closing = Closing::Done;
                return Poll::Ready(Err(e));
            }
            this.closing = Closing::Draining {
                left: this.bounds.max_bytes,
                deadline: Box::pin(tokio::time::sleep(this.bounds.timeout)),
            };
        }
        ready!(this.poll_drain(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    const BOUNDS: LingerBounds = LingerBounds {
        max_bytes: 64 * 1024,
        timeout: Duration::from_secs(5),
    };

    /// A server end wrapped for lingering and the client end, joined by a
    /// pipe that holds only 1 KiB: the client cannot write ahead.
    fn pair() -> (LingeringClose<DuplexStream>, DuplexStream) {
        let (server, client) = duplex(1024);
        (LingeringClose::new(server, BOUNDS), client)
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_reaches_a_client_that_writes_its_whole_body_first() {
        let (mut server, mut client) = pair();
        let client = tokio::spawn(async move {
            // 32 KiB of body, far more than the pipe holds: this finishes
            // only if the server reads it after answering.
            client.write_all(&[b'x'; 32 * 1024]).await?;
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await?;
            drop(client);
            Ok::<_, io::Error>(answer)
        });
        server
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\n\r\n")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        let answer = client.await.unwrap().unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 413"), "{answer:?}");
        // It ended because the client closed, not at the deadline.
        assert!(started.elapsed() < BOUNDS.timeout);
        assert!(matches!(server.closing, Closing::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_stops_writing_is_cut_off_after_max_bytes() {
        let (mut server, mut client) = pair();
        let writer = tokio::spawn(async move {
            let mut written = 0usize;
            while client.write_all(&[b'x'; 512]).await.is_ok() {
                written += 512;
            }
            written
        });
        server.shutdown().await.unwrap();
        drop(server);
        let written = writer.await.unwrap();
        assert!(
            (BOUNDS.max_bytes..BOUNDS.max_bytes + 4096).contains(&written),
            "{written}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_neither_writes_nor_closes_is_cut_off_after_the_timeout() {
        let (mut server, _client) = pair();
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert!(started.elapsed() >= BOUNDS.timeout);
        assert!(matches!(server.closing, Closing::Done));
        // A second shutdown does not linger again.
        let again = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert_eq!(again.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_dripping_bytes_is_cut_off_after_the_timeout() {
        let (mut server, mut client) = pair();
        let dripper = tokio::spawn(async move {
            while client.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        let took = started.elapsed();
        assert!(took >= BOUNDS.timeout && took < BOUNDS.timeout + Duration::from_secs(1));
        drop(server);
        dripper.await.unwrap();
    }
}
