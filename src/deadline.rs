//! The client write deadline (`HOLEPUNCH_CLIENT_WRITE_TIMEOUT`): a wrapper
//! around a client's stream whose writes and flushes fail once the client
//! has taken no bytes for the timeout.
//!
//! Pingora 0.9 times out response *body* writes only, and each as a whole
//! call (`protocols/http/v1/server.rs`, `write_body`): a response header
//! write, a flush, and the guard's own 431 wait for as long as the client
//! does, and a large body is cut off even while the client keeps reading.
//! Here every write and flush is covered, and the clock restarts whenever
//! the client takes bytes. The timer is armed only when a write has to wait,
//! so a client that keeps up costs nothing.
//!
//! "Takes bytes" is read from the kernel as well as from our own writes: a
//! socket with a full send buffer is woken for writing only once about half
//! of it has drained, which for a client reading steadily at a few hundred
//! KB/s can take longer than the timeout. So when the timer fires, the
//! client's acknowledged byte count (`TCP_INFO`'s `tcpi_bytes_acked`, read
//! through Pingora's `SocketDigest::tcp_info`) is compared with the count
//! when the wait began: if it grew, the client is reading and the clock
//! starts again.

use crate::config::CLIENT_WRITE_TIMEOUT;
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest,
};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

/// A client stream with a write deadline.
pub struct WriteDeadline {
    inner: Stream,
    timeout: Duration,
    /// Armed while a write or flush is waiting for the client.
    timer: Option<Pin<Box<Sleep>>>,
    /// The client's acknowledged bytes when the timer was armed, where the
    /// kernel tells (TCP on Linux).
    acked: Option<u64>,
}

impl WriteDeadline {
    pub fn wrap(inner: Stream, timeout: Duration) -> Stream {
        Box::new(WriteDeadline {
            inner,
            timeout,
            timer: None,
            acked: None,
        })
    }

    /// Bytes the client has acknowledged so far, if the kernel tells.
    fn acked_bytes(&self) -> Option<u64> {
        let digest = self.inner.get_socket_digest()?;
        digest.tcp_info().map(|info| info.tcpi_bytes_acked)
    }

    /// After the inner write or flush returned `poll`: disarm on progress,
    /// arm (or check) the timer while it waits.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.timer = None;
            return poll;
        }
        let timeout = self.timeout;
        if self.timer.is_none() {
            self.acked = self.acked_bytes();
        }
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep(timeout)));
        if timer.as_mut().poll(cx).is_ready() {
            let now = self.acked_bytes();
            if now > self.acked {
                // Still reading, behind a send buffer that has not drained
                // far enough to wake us: a new period, from now.
                self.acked = now;
                let mut timer = Box::pin(sleep(timeout));
                let _ = timer.as_mut().poll(cx);
                self.timer = Some(timer);
                return Poll::Pending;
            }
            self.timer = None;
            log::info!(
                "closing a client that took no bytes for {timeout:?} ({CLIENT_WRITE_TIMEOUT})"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                concat!(
                    "the client took no bytes for ",
                    crate::var_name!(CLIENT_WRITE_TIMEOUT)
                ),
            )));
        }
        Poll::Pending
    }
}

impl std::fmt::Debug for WriteDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteDeadline")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[async_trait]
impl Shutdown for WriteDeadline {
    async fn shutdown(&mut self) {
        // A client that takes nothing cannot stall the close either.
        let _ = pingora::time::timeout(self.timeout, self.inner.shutdown()).await;
    }
}

impl UniqueID for WriteDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for WriteDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for WriteDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for WriteDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for WriteDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for WriteDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_peer_that_takes_nothing_fails_the_write_at_the_timeout() {
        block_on(async {
            let (ours, _peer) = tokio::io::duplex(1024);
            let mut w = WriteDeadline::wrap(Box::new(ours), Duration::from_millis(300));
            let err = w.write_all(&[b'x'; 64 * 1024]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            // A flush that cannot finish fails the same way.
            let err = w.flush().await.err();
            assert!(err.is_none() || err.is_some_and(|e| e.kind() == io::ErrorKind::TimedOut));
        });
    }

    #[test]
    fn a_peer_that_keeps_reading_is_never_cut_off() {
        block_on(async {
            // 64 KB through a 1 KB pipe, taken 1 KB every 10 ms: about 0.64 s
            // in all, each wait far below the 1 s timeout.
            let (ours, mut peer) = tokio::io::duplex(1024);
            let reader = async move {
                let mut got = 0;
                let mut buf = [0; 1024];
                for _ in 0..10_000 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    match peer.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                got
            };
            let writer = async move {
                let mut w = WriteDeadline::wrap(Box::new(ours), Duration::from_secs(1));
                let written = w.write_all(&[b'x'; 64 * 1024]).await;
                drop(w);
                written
            };
            let (written, got) = tokio::join!(writer, reader);
            written.expect("a reading peer is not cut off");
            assert_eq!(got, 64 * 1024);
        });
    }
}
