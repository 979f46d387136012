//! The connection guard: every request header must arrive complete within
//! `HOLEPUNCH_CLIENT_HEADER_TIMEOUT` and within 64 KiB, or the connection is
//! closed (431 for a header too large) before Pingora parses anything.
//!
//! Pingora times out each read, not the whole header, so a client that
//! sends its header a byte at a time could hold a connection open forever.
//! [`HeaderGuard`] wraps the proxy app: it reads the raw header bytes itself
//! under one deadline, then hands them to Pingora's HTTP session as its
//! first bytes (`set_pipelined_prefix`), and runs the same keep-alive loop
//! Pingora runs, so every request on a connection gets the same deadline.

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest request header accepted: the request line and every field.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long a kept-alive connection may sit idle before its next request
/// (Pingora's default keep-alive).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

const TOO_LARGE_BODY: &str = "request header fields too large: the limit is 65536 bytes";

/// How reading one request header ended.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderRead {
    /// The header is complete in the buffer (possibly with body bytes after it).
    Complete,
    /// More than [`MAX_HEADER_BYTES`] without the end of the header.
    TooLarge,
    /// The header did not arrive within the deadline.
    TimedOut,
    /// The client closed the connection, idled out between requests, or the
    /// server is shutting down.
    Closed,
}

/// Where a request header ends in `buf`, if it does: after the blank line
/// (`\r\n\r\n`, or the bare `\n\n` that lenient parsers accept too).
/// Searches from `from` (minus the three bytes a terminator can straddle).
pub fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(2)
        .enumerate()
        .find_map(|(i, w)| match w {
            b"\n\n" => Some(start + i + 2),
            b"\n\r" if buf.get(start + i + 2) == Some(&b'\n') => Some(start + i + 3),
            _ => None,
        })
}

/// Reads one request header into `buf`. A kept-alive connection first waits
/// up to `idle` for the next request to start; from its first byte (or from
/// the start, for a new connection) the whole header must arrive within
/// `header_timeout`.
pub async fn read_header(
    stream: &mut Stream,
    buf: &mut BytesMut,
    idle: Option<Duration>,
    header_timeout: Duration,
    shutdown: &ShutdownWatch,
) -> HeaderRead {
    let mut shutdown = shutdown.clone();
    if let Some(idle) = idle {
        // A shutdown that began earlier would not wake `changed()` below.
        if *shutdown.borrow() {
            return HeaderRead::Closed;
        }
        let first = tokio::select! {
            biased;
            _ = shutdown.changed() => return HeaderRead::Closed,
            read = pingora::time::timeout(idle, stream.read_buf(buf)) => read,
        };
        match first {
            Ok(Ok(n)) if n > 0 => {}
            _ => return HeaderRead::Closed,
        }
    }
    let deadline = Instant::now() + header_timeout;
    let mut searched = 0;
    loop {
        if let Some(end) = header_end(buf, searched) {
            return if end > MAX_HEADER_BYTES {
                HeaderRead::TooLarge
            } else {
                HeaderRead::Complete
            };
        }
        searched = buf.len();
        if buf.len() > MAX_HEADER_BYTES {
            return HeaderRead::TooLarge;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return HeaderRead::TimedOut;
        };
        buf.reserve(4096);
        match pingora::time::timeout(left, stream.read_buf(buf)).await {
            Err(_) => return HeaderRead::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => return HeaderRead::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// Wraps an HTTP app (the Pingora proxy) with the header deadline and size limit.
pub struct HeaderGuard<A> {
    inner: Arc<A>,
    header_timeout: Duration,
}

impl<A> HeaderGuard<A> {
    pub fn new(inner: A, header_timeout: Duration) -> Self {
        HeaderGuard {
            inner: Arc::new(inner),
            header_timeout,
        }
    }
}

#[async_trait]
impl<A> ServerApp for HeaderGuard<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut persistent: Option<HttpPersistentSettings> = None;
        let mut idle = None;
        // Bounded by the connection's own life: each turn serves one request.
        loop {
            let mut buf = BytesMut::with_capacity(4096);
            match read_header(&mut stream, &mut buf, idle, self.header_timeout, shutdown).await {
                HeaderRead::Complete => {}
                HeaderRead::TooLarge => {
                    let response = format!(
                        "HTTP/1.1 431 Request Header Fields Too Large\r\n\
                         Content-Type: text/plain; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{TOO_LARGE_BODY}",
                        TOO_LARGE_BODY.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.flush().await;
                    return None;
                }
                HeaderRead::TimedOut => {
                    log::debug!(
                        "closing a connection whose request header took over {:?}",
                        self.header_timeout
                    );
                    return None;
                }
                HeaderRead::Closed => return None,
            }
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    let keepalive = (!*shutdown.borrow()).then_some(KEEPALIVE_IDLE.as_secs());
                    session.set_keepalive(keepalive);
                    session.set_keepalive_reuses_remaining(
                        self.inner
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            // Pipelining is never enabled here, so the finished session left no
            // prefix of its own: these bytes are the start of the request.
            session.set_pipelined_prefix(buf);
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (next, settings) = reused.consume();
            stream = next;
            persistent = settings;
            idle = Some(KEEPALIVE_IDLE);
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end_finds_the_blank_line() {
        assert_eq!(
            header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0),
            Some(27)
        );
        assert_eq!(
            header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", 0),
            Some(27)
        );
        assert_eq!(header_end(b"GET / HTTP/1.1\nHost: x\n\n", 0), Some(24));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r", 0), None);
        // A terminator split across reads is found when searching from the split.
        let buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for from in 0..buf.len() {
            assert_eq!(header_end(buf, from), Some(27), "from {from}");
        }
    }
}
