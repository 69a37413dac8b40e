//! HTTP/1.1 written by hand over a plain TCP connection, for the clients a
//! real HTTP library will not imitate: one that writes its whole request
//! before reading a byte of the answer (as Python's `http.client` does), one
//! that sends its headers a byte at a time, one that declares more body than
//! it sends. Not an HTTP client: the answer is kept as text for the test to
//! look at.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What a client saw of the server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A response arrived: its status code and everything read (head and
    /// body) until the server closed the connection or the deadline.
    Response {
        /// The status code of the status line.
        status: u16,
        /// Everything read, lossily as UTF-8.
        text: String,
    },
    /// Writing the request failed before it was all written (the server
    /// closed: broken pipe, connection reset).
    WriteFailed(ErrorKind),
    /// The connection ended (closed or reset) before any response.
    NoResponse(Option<ErrorKind>),
    /// Neither a response nor a close before the deadline.
    TimedOut,
}

impl Reply {
    /// The status code, if a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Response { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A request with `headers` and `body`, declaring `Content-Length:
/// declared_len` (the body's length when `None`).
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    declared_len: Option<usize>,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: cpn-test\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\n\r\n",
        declared_len.unwrap_or(body.len())
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `Transfer-Encoding: chunked` POST of `chunks`, the last chunk included.
pub fn chunked_post(path: &str, headers: &[(&str, &str)], chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("POST {path} HTTP/1.1\r\nHost: cpn-test\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Transfer-Encoding: chunked\r\n\r\n");
    let mut out = out.into_bytes();
    for c in chunks {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// Reads until the server closes, an error, or `deadline`; what was read.
async fn read_reply(conn: &mut TcpStream, deadline: Instant) -> Reply {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let ended = loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) => break Some(None),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break Some(Some(e.kind())),
        }
    };
    match (status_of(&got), ended) {
        (Some(status), _) => Reply::Response {
            status,
            text: String::from_utf8_lossy(&got).into_owned(),
        },
        (None, Some(kind)) => Reply::NoResponse(kind),
        (None, None) => Reply::TimedOut,
    }
}

/// Writes all of `request`, and only then reads the answer until the server
/// closes or `deadline` passes: the order of Python's `http.client`, which
/// sees nothing of an early answer if the server resets the connection
/// while the body is still being written.
///
/// # Errors
/// The connection could not be opened.
pub async fn write_whole_then_read(
    addr: SocketAddr,
    request: &[u8],
    deadline: Duration,
) -> Result<Reply> {
    write_paced_then_read(
        addr,
        request,
        request.len().max(1),
        Duration::ZERO,
        deadline,
    )
    .await
}

/// As [`write_whole_then_read`], writing `piece` bytes at a time with
/// `pause` between pieces: a client on a slower link, still writing when
/// the server has decided. (On loopback a fast writer can fit megabytes
/// into the socket buffers before the server reads the head.)
///
/// # Errors
/// The connection could not be opened.
pub async fn write_paced_then_read(
    addr: SocketAddr,
    request: &[u8],
    piece: usize,
    pause: Duration,
    deadline: Duration,
) -> Result<Reply> {
    let until = Instant::now() + deadline;
    let mut conn = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let write = async {
        for (i, part) in request.chunks(piece.max(1)).enumerate() {
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            conn.write_all(part).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout_at(until, write).await {
        Err(_) => return Ok(Reply::TimedOut),
        Ok(Err(e)) => return Ok(Reply::WriteFailed(e.kind())),
        Ok(Ok(())) => {}
    }
    Ok(read_reply(&mut conn, until).await)
}

/// Writes `head`, then `drip` one byte every `every`, until the server ends
/// the connection or `give_up` passes. Returns how long the server took to
/// end it and what it answered, or `None` if it was still open at `give_up`.
///
/// # Errors
/// The connection could not be opened or `head` not written.
pub async fn dribble_until_closed(
    addr: SocketAddr,
    head: &[u8],
    drip: &[u8],
    every: Duration,
    give_up: Duration,
) -> Result<Option<(Duration, Reply)>> {
    let start = Instant::now();
    let mut conn = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    conn.write_all(head).await.context("writing the head")?;
    let mut buf = [0u8; 4096];
    for byte in drip.iter().cycle() {
        if start.elapsed() > give_up {
            return Ok(None);
        }
        if conn.write_all(std::slice::from_ref(byte)).await.is_err() {
            let reply = read_reply(&mut conn, Instant::now() + Duration::from_secs(5)).await;
            return Ok(Some((start.elapsed(), reply)));
        }
        match tokio::time::timeout(every, conn.peek(&mut buf)).await {
            // Still open and silent: drip on.
            Err(_) => {}
            // An answer, a close or a reset: read what there is.
            Ok(_) => {
                let reply = read_reply(&mut conn, Instant::now() + Duration::from_secs(5)).await;
                return Ok(Some((start.elapsed(), reply)));
            }
        }
    }
    Ok(None)
}

/// Sends `GET path` on an open keep-alive connection and reads exactly one
/// response (head and `Content-Length` body); returns its status code.
///
/// # Errors
/// The connection failed, closed, or no whole response came within
/// `deadline`.
pub async fn get_on(conn: &mut TcpStream, path: &str, deadline: Duration) -> Result<u16> {
    let until = Instant::now() + deadline;
    let req = format!("GET {path} HTTP/1.1\r\nHost: cpn-test\r\n\r\n");
    conn.write_all(req.as_bytes())
        .await
        .context("writing GET")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return status_of(&got).context("no status line");
            }
        }
        let n = tokio::time::timeout_at(until, conn.read(&mut buf))
            .await
            .with_context(|| format!("no whole response to GET {path} within {deadline:?}"))?
            .context("reading the response")?;
        anyhow::ensure!(n > 0, "connection closed before the response to GET {path}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// POSTs `size` bytes of body to `http://addr{path}` with Python's
/// `http.client` (`python3` on the `PATH`), which writes headers and the
/// whole body before it reads; returns what the script printed: `STATUS
/// BODY` or `error KIND MESSAGE`.
///
/// # Errors
/// `python3` cannot be run or did not finish within 30 s.
pub async fn python_http_client_post(addr: SocketAddr, path: &str, size: usize) -> Result<String> {
    const SCRIPT: &str = r#"
import http.client, sys
host, port, path, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection(host, port, timeout=20)
try:
    c.request("POST", path, body=b" " * size, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    print(r.status, r.read().decode(errors="replace"))
except Exception as e:
    print("error", type(e).__name__, e)
finally:
    c.close()
"#;
    let run = tokio::process::Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            path,
            &size.to_string(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .context("python3 http.client did not finish within 30 s")?
        .context("running python3 (needed for this test; install it)")?;
    anyhow::ensure!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_reads_the_status_line_only() {
        assert_eq!(status_of(b"HTTP/1.1 413 Payload Too Large\r\n"), Some(413));
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 4"), None);
        assert_eq!(status_of(b"garbage garbage"), None);
    }
}
