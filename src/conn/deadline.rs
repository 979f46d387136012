//! The client write deadline (`HOLEPUNCH_CLIENT_WRITE_TIMEOUT`): a wrapper
//! around a client's stream whose writes and flushes fail once a write has
//! waited for the client and the client has then taken less than
//! [`MIN_PROGRESS`] (64 KiB) within the timeout.
//!
//! Pingora 0.9 times out response *body* writes only, and each as a whole
//! call (`protocols/http/v1/server.rs`, `write_body`): a response header
//! write, a flush, and the guard's own 431 wait for as long as the client
//! does, and a large body is cut off even while the client keeps reading.
//! Here every write and flush is covered. The deadline measures only time
//! spent waiting with a write pending: the timer is armed when a write has
//! to wait, so a client that keeps up costs nothing, and it is disarmed
//! when the waiting write (or flush) is taken whole and nothing of ours
//! waits any more, once the client has taken [`MIN_PROGRESS`], and when the
//! client sends its next request. So a sparse stream (an event stream's
//! heartbeats every 10 s) whose writes wait now and then, minutes apart,
//! has each wait timed alone.
//!
//! Why a floor, not "any byte": a client that takes a few bytes at a time
//! (a tiny receive buffer read now and then, or a hand-made TCP stack that
//! opens its window a byte at a time) would otherwise restart the clock
//! forever, and hold its connection, and a place under
//! `HOLEPUNCH_MAX_IN_FLIGHT`, for as long as it liked. A write taken in
//! part does not end the wait: within one timeout the client must take the
//! rest of the write, or [`MIN_PROGRESS`]. Pingora writes a body in chunks
//! of up to 64 KiB (pingora-core 0.9.1 `protocols/http/v1/body.rs`,
//! `BODY_BUFFER_SIZE`), so a large response must go at about 64 KiB per
//! timeout; 64 KiB per 30 s is about 2 KB/s, and a scraper reads at the
//! network's pace. A stream of small chunks needs each taken within the
//! timeout: a client can hold it no longer than a reader keeping up would.
//!
//! "Takes" is read from the kernel as well as from our own writes: a socket
//! with a full send buffer is woken for writing only once a good part of it
//! has drained, which for a client reading steadily can take longer than
//! the timeout. So when the timer fires, the client's acknowledged byte
//! count (`TCP_INFO`'s `tcpi_bytes_acked`, read through Pingora's
//! `SocketDigest::tcp_info`) is compared with the count when the wait
//! began: if it grew by [`MIN_PROGRESS`], a new period starts.
//!
//! A client that stops reading is closed within one to two timeouts: its
//! kernel keeps acknowledging until its receive buffer is full, which the
//! sender cannot tell from reading.
//!
//! The guard's streams also tell the connection cap when a write begins to
//! wait for the client and when that wait ends ([`WriteDeadline::watched`],
//! [`StallWatch`]): at the cap, a connection whose write has waited long
//! enough may be closed for a new one ([`crate::conn::connections`]). And with
//! client certificates they keep the record of the connection's last
//! certificate check ([`WriteDeadline::checked`]), which the guard's check
//! before each request and the proxy's on each chunk share.

use crate::conn::connections::StallWatch;
use crate::vars::CLIENT_WRITE_TIMEOUT;
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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

/// This module's log target as it was before the modules moved into
/// folders, so that an operator's `RUST_LOG=holepunch::deadline=debug` still matches.
const LOG_TARGET: &str = "holepunch::deadline";

/// When a connection's client certificate was last found good, and
/// against which CAs (`crate::files::client_cert::ClientCas::recheck`, whose
/// record this is: the stream keeps it, so that the guard's check of a
/// kept-alive connection and the proxy's checks of responses in flight share
/// it).
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    generation: u64,
    at: Instant,
}

impl Checked {
    /// Found good at `at` against the CAs of `generation`.
    pub fn new(generation: u64, at: Instant) -> Checked {
        Checked { generation, at }
    }

    /// A record matching no set of CAs: the next check is a full one.
    pub(crate) fn never(now: Instant) -> Checked {
        Checked {
            generation: u64::MAX,
            at: now,
        }
    }

    /// The generation of the CAs it was checked against.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When it was checked.
    pub fn at(&self) -> Instant {
        self.at
    }
}

/// What a client must take within one timeout, once a write has had to
/// wait for it, to count as still reading: 64 KiB per 30 s (the default
/// timeout) is about 2 KB/s.
pub const MIN_PROGRESS: u64 = 64 * 1024;

/// A client stream with a write deadline.
pub struct WriteDeadline {
    inner: Stream,
    timeout: Duration,
    /// Armed while a write or flush is waiting for the client.
    timer: Option<Pin<Box<Sleep>>>,
    /// The client's acknowledged bytes when the timer was armed, where the
    /// kernel tells (TCP on Linux).
    acked: Option<u64>,
    /// Bytes our writes handed on since the timer was armed.
    written: u64,
    /// Told when a write starts to wait for the client and when it stops
    /// ([`WriteDeadline::watched`]).
    stalls: Option<StallWatch>,
    /// Whether `stalls` was told a wait began, and not yet that it ended.
    stalled: bool,
    /// When the client's certificate was last found good, with client
    /// certificates on ([`WriteDeadline::checked`]).
    checked: Option<Mutex<Checked>>,
}

impl WriteDeadline {
    pub fn wrap(inner: Stream, timeout: Duration) -> Stream {
        Box::new(WriteDeadline::new(inner, timeout, None, None))
    }

    /// [`WriteDeadline::wrap`], telling `stalls` when a write starts to
    /// wait for the client, and when that wait ends: a write (or flush)
    /// accepted whole, the client taking [`MIN_PROGRESS`] since the wait
    /// began, or its next request. The connection cap may close a
    /// connection whose wait has lasted long enough
    /// ([`crate::conn::connections::STALLED_AFTER`]). A write accepted only in
    /// part (a client that takes a few bytes at a time) does not end it.
    /// `checked`, with client certificates on: when the handshake checked
    /// the client's certificate ([`WriteDeadline::checked`]).
    pub fn watched(
        inner: Stream,
        timeout: Duration,
        stalls: StallWatch,
        checked: Option<Checked>,
    ) -> Stream {
        Box::new(WriteDeadline::new(inner, timeout, Some(stalls), checked))
    }

    fn new(
        inner: Stream,
        timeout: Duration,
        stalls: Option<StallWatch>,
        checked: Option<Checked>,
    ) -> WriteDeadline {
        WriteDeadline {
            inner,
            timeout,
            timer: None,
            acked: None,
            written: 0,
            stalls,
            stalled: false,
            checked: checked.map(Mutex::new),
        }
    }

    /// The record of the last check of the client certificate on `stream`,
    /// when `stream` is a guard's and certificates are on: one record per
    /// connection, which the guard (before each request) and the proxy (on
    /// each chunk of a response, through the session's stream) both bring
    /// up to date ([`crate::files::client_cert::ClientCas::recheck_stream`]).
    pub fn checked(stream: &Stream) -> Option<&Mutex<Checked>> {
        // What the box holds: the guard's stream, or another.
        let io: &dyn pingora::protocols::IO = &**stream;
        io.as_any()
            .downcast_ref::<WriteDeadline>()?
            .checked
            .as_ref()
    }

    /// The timer is disarmed: the client is taking what is written.
    fn disarm(&mut self) {
        self.timer = None;
        self.stall_ends();
    }

    /// A write waits for the client: tells [`StallWatch::waiting`], once
    /// per wait.
    fn stall_begins(&mut self) {
        if !self.stalled {
            self.stalled = true;
            if let Some(stalls) = &self.stalls {
                stalls.waiting();
            }
        }
    }

    /// The wait is over: tells [`StallWatch::moving`].
    fn stall_ends(&mut self) {
        if std::mem::take(&mut self.stalled) {
            if let Some(stalls) = &self.stalls {
                stalls.moving();
            }
        }
    }

    /// Bytes the client has acknowledged so far, if the kernel tells.
    fn acked_bytes(&self) -> Option<u64> {
        let digest = self.inner.get_socket_digest()?;
        digest.tcp_info().map(|info| info.tcpi_bytes_acked)
    }

    /// After an inner write of `len` bytes returned `poll`: counts what it
    /// took, and ends the period once the client has taken [`MIN_PROGRESS`].
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = poll {
            if n == len {
                // Taken whole: nothing of ours waits any more, so the
                // period ends. Only time spent waiting counts: on a sparse
                // stream (heartbeats every 10 s) two short waits minutes
                // apart are two periods, not one.
                self.disarm();
                return poll;
            }
            if self.timer.is_some() {
                self.written += n as u64;
                if self.written >= MIN_PROGRESS {
                    self.disarm();
                }
            }
            return poll;
        }
        self.watch(cx, poll)
    }

    /// After the inner write, flush or shutdown returned `poll`: while it
    /// waits, arm the timer (or check it). A write taken only in part does
    /// not disarm it: the rest of it taken ([`WriteDeadline::wrote`]),
    /// [`MIN_PROGRESS`], or a new request does.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            return poll;
        }
        let timeout = self.timeout;
        self.stall_begins();
        if self.timer.is_none() {
            self.acked = self.acked_bytes();
            self.written = 0;
        }
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep(timeout)));
        if timer.as_mut().poll(cx).is_ready() {
            let now = self.acked_bytes();
            if read_enough(self.acked, now) || self.written >= MIN_PROGRESS {
                // Still reading, behind a send buffer that has not drained
                // far enough to wake us: a new period, from now. A timer
                // due at once (a sub-millisecond timeout) would register
                // no wake-up, so that counts as the end.
                let mut timer = Box::pin(sleep(timeout));
                if timer.as_mut().poll(cx).is_pending() {
                    self.acked = now;
                    self.written = 0;
                    self.timer = Some(timer);
                    // It took enough: its wait starts again from now.
                    self.stall_ends();
                    self.stall_begins();
                    return Poll::Pending;
                }
            }
            self.disarm();
            log::info!(
                target: LOG_TARGET,
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

/// Whether the client acknowledged at least [`MIN_PROGRESS`] bytes between
/// two readings of its count. Unknown counts (not TCP, not Linux) never are.
fn read_enough(before: Option<u64>, now: Option<u64>) -> bool {
    match (before, now) {
        (Some(before), Some(now)) => now.saturating_sub(before) >= MIN_PROGRESS,
        _ => false,
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
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            // The client sent something (its next request): it is here,
            // and a new response starts a new count.
            self.disarm();
        }
        poll
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, buf.len(), poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let len = bufs.iter().map(|b| b.len()).sum();
        self.wrote(cx, len, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            // Everything written is on its way: nothing waits.
            self.disarm();
        }
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
        // tokio's timer: Pingora's does not survive `-d` (`crate::shutdown`).
        let _ = tokio::time::timeout(self.timeout, self.inner.shutdown()).await;
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
    fn only_a_real_read_restarts_the_clock() {
        assert!(read_enough(Some(0), Some(MIN_PROGRESS)));
        assert!(read_enough(Some(10), Some(10 + MIN_PROGRESS + 1)));
        assert!(!read_enough(Some(10), Some(10 + MIN_PROGRESS - 1)));
        assert!(!read_enough(Some(10), Some(10)));
        // A count that went backwards (a new connection's numbers) is no read.
        assert!(!read_enough(Some(10), Some(5)));
        assert!(!read_enough(None, Some(MIN_PROGRESS)));
        assert!(!read_enough(Some(0), None));
    }

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
    fn a_peer_that_takes_a_trickle_fails_the_write_at_the_timeout() {
        block_on(async {
            // 64 bytes every 20 ms: every write makes a little progress, but
            // about 1 KB per 300 ms timeout is far under MIN_PROGRESS.
            let (ours, mut peer) = tokio::io::duplex(1024);
            let reader = async move {
                let mut buf = [0; 64];
                for _ in 0..2_000 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if !matches!(peer.read(&mut buf).await, Ok(n) if n > 0) {
                        break;
                    }
                }
            };
            let writer = async move {
                let mut w = WriteDeadline::wrap(Box::new(ours), Duration::from_millis(300));
                // The bound only keeps a regression from taking 20 s.
                let written =
                    tokio::time::timeout(Duration::from_secs(5), w.write_all(&[b'x'; 64 * 1024]))
                        .await;
                drop(w);
                written
            };
            let (written, ()) = tokio::join!(writer, reader);
            let err = written
                .expect("the trickle was not given up within 5 s")
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        });
    }

    /// Polls a write of `buf` once: what it took, or `None` while it waits.
    async fn write_once(w: &mut Stream, buf: &[u8]) -> Option<usize> {
        std::future::poll_fn(|cx| match Pin::new(&mut *w).poll_write(cx, buf) {
            Poll::Ready(r) => Poll::Ready(Some(r.expect("a write"))),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    #[test]
    fn a_write_that_waits_for_the_peer_is_reported_until_it_is_taken() {
        use crate::conn::connections::{Connections, Peer};
        block_on(async {
            // One place: a new connection takes it only from a stalled one.
            let conns = Connections::with_stall(1, 1, Duration::ZERO);
            let slot = conns.admit(Peer::Insider, None).unwrap();
            assert!(slot.busy());
            let (ours, mut peer) = tokio::io::duplex(1024);
            let mut w = WriteDeadline::watched(
                Box::new(ours),
                Duration::from_secs(3600),
                slot.watch(),
                None,
            );
            // Taken whole: no wait.
            assert_eq!(write_once(&mut w, &[b'x'; 1000]).await, Some(1000));
            assert!(conns.admit(Peer::Insider, None).is_none());
            // Taken in part, then waiting: still no wait reported until the
            // write has to wait; then it is.
            let big = [b'y'; 4096];
            assert_eq!(write_once(&mut w, &big).await, Some(24));
            assert!(conns.admit(Peer::Insider, None).is_none());
            assert_eq!(write_once(&mut w, &big[24..]).await, None);
            // The peer takes a little: a part, not enough to end the wait.
            let mut buf = [0; 512];
            peer.read_exact(&mut buf).await.unwrap();
            assert_eq!(write_once(&mut w, &big[24..]).await, Some(512));
            let new = conns
                .admit(Peer::Insider, None)
                .expect("the stalled one makes room");
            assert!(slot.is_closed());
            drop((w, slot, new));
            // Another connection, in the place they left, whose
            // peer takes everything: a write taken whole ends its wait, and
            // nothing is stalled to make room for a newcomer.
            let slot = conns.admit(Peer::Insider, None).unwrap();
            assert!(slot.busy());
            let (ours, mut peer) = tokio::io::duplex(1024);
            let mut w = WriteDeadline::watched(
                Box::new(ours),
                Duration::from_secs(3600),
                slot.watch(),
                None,
            );
            assert_eq!(write_once(&mut w, &big).await, Some(1024));
            assert_eq!(write_once(&mut w, &big[1024..]).await, None);
            let mut all = vec![0; 1024];
            peer.read_exact(&mut all).await.unwrap();
            assert_eq!(write_once(&mut w, &big[1024..2048]).await, Some(1024));
            assert!(
                conns.admit(Peer::Insider, None).is_none(),
                "nothing stalled"
            );
            assert!(!slot.is_closed());
        });
    }

    /// A sparse stream (an event stream's heartbeats): a write that waits
    /// for a moment, then, more than a timeout later and with under
    /// [`MIN_PROGRESS`] in between, another. Only the time spent waiting
    /// counts: the second wait starts its own period.
    #[test]
    fn waits_far_apart_on_a_sparse_stream_are_each_timed_alone() {
        block_on(async {
            let timeout = Duration::from_millis(300);
            let (ours, mut peer) = tokio::io::duplex(1024);
            let mut w = WriteDeadline::wrap(Box::new(ours), timeout);
            // 2 KiB through a 1 KiB pipe: the write waits until the peer
            // reads, which it does at once. Twice, with more than a timeout
            // between them and 4 KiB in all.
            for round in 0..2 {
                let reader = async {
                    let mut buf = [0; 2048];
                    peer.read_exact(&mut buf).await.map(|_| ())
                };
                // A failed write ends the reader too, which would wait for
                // the rest for good.
                tokio::try_join!(w.write_all(&[b'x'; 2048]), reader)
                    .unwrap_or_else(|e| panic!("round {round}: the write failed: {e}"));
                // Idle, nothing pending: this time is no wait of the client's.
                tokio::time::sleep(timeout * 2).await;
            }
            // A trickle within one write is still held to the floor: a
            // write the peer never takes fails at the timeout.
            let err = w.write_all(&[b'x'; 4096]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        });
    }

    /// The proxy reaches the record through the session's stream, a
    /// `Box<dyn IO>`: found on a guard's stream that keeps one, and on no
    /// other (which is then checked in full).
    #[test]
    fn the_certificate_record_is_found_through_the_stream() {
        use crate::conn::connections::{Connections, Peer};
        let conns = Connections::with_stall(1, 1, Duration::ZERO);
        let slot = conns.admit(Peer::Insider, None).unwrap();
        let timeout = Duration::from_secs(1);
        let checked = Checked::never(std::time::Instant::now());
        let (ours, _peer) = tokio::io::duplex(64);
        let kept = WriteDeadline::watched(Box::new(ours), timeout, slot.watch(), Some(checked));
        assert!(WriteDeadline::checked(&kept).is_some());
        let (ours, _peer) = tokio::io::duplex(64);
        let none = WriteDeadline::watched(Box::new(ours), timeout, slot.watch(), None);
        assert!(WriteDeadline::checked(&none).is_none());
        let (ours, _peer) = tokio::io::duplex(64);
        let other: Stream = Box::new(ours);
        assert!(WriteDeadline::checked(&other).is_none());
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
