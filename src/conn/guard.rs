//! The connection guard, in front of both listeners (the proxy's and the
//! telemetry one): every request header must arrive complete within
//! `HOLEPUNCH_CLIENT_HEADER_TIMEOUT` and within [`MAX_HEADER_BYTES`], or the connection is
//! closed (431 for a header too large) before Pingora parses anything. On a
//! new TLS connection the handshake counts toward the same deadline. Every
//! write to the client must make progress within
//! `HOLEPUNCH_CLIENT_WRITE_TIMEOUT`. With client certificates, a kept-alive
//! connection whose certificate is no longer trusted is closed before its
//! next request ([`crate::files::client_cert::ClientCas::recheck_stream`], with
//! the record the connection's stream keeps, which the proxy's checks of
//! responses in flight share). A kept-alive connection waits at most
//! `HOLEPUNCH_CLIENT_IDLE_TIMEOUT` for its next request. Each connection
//! holds a place under `HOLEPUNCH_MAX_CONNECTIONS` and its client's share
//! of it ([`crate::conn::connections`]), and is idle, so closed first at the cap,
//! whenever no request of its own is in progress; its writes tell the cap
//! when they stall, so that at the cap it can be closed while it waits for
//! a client that has stopped reading.
//!
//! A client outside `HOLEPUNCH_ALLOW_FROM` gets one answer per connection,
//! with `Connection: close`, then the connection is closed: on the proxy's
//! listener the proxy's (`/health`, `/ready`, or 403), on the telemetry
//! listener a 403 from the guard ([`Outsiders`]). A connection it no longer
//! needs never holds a descriptor through a keep-alive.
//!
//! Pingora times out each read, not the whole header, so a client that
//! sends its header a byte at a time could hold a connection open forever;
//! and it gives a TLS handshake a fixed 60 s (pingora-core 0.9
//! `services/listening.rs`, `run_endpoint`); and a kept-alive connection
//! waits for its next request as long as the app's keep-alive says (60 s in
//! pingora-core's `HttpServer`, which pingora-prometheus serves the telemetry
//! with: `apps/http_app.rs`, `process_new_http`). [`HeaderGuard`] wraps the
//! proxy app and the telemetry app. The listener is plain TCP; the guard
//! does the TLS handshake itself, reads the raw header bytes under one
//! deadline, then hands them to Pingora's HTTP session as its first bytes
//! (`set_pipelined_prefix`).
//!
//! **This copies Pingora's HTTP/1 keep-alive loop**, as pingora-core 0.9.1
//! has it (`src/apps/mod.rs`, `impl<T: HttpServerApp> ServerApp for T`,
//! `process_new`: a new `ServerSession` per request, the persistent
//! settings carried over), so that every request on a connection gets the
//! same deadline. Review it against that loop on every Pingora upgrade:
//! Cargo.toml pins Pingora exactly, and a test fails when Cargo.lock holds
//! another version than [`REVIEWED_PINGORA`], the one it was reviewed against.
//!
//! The header bytes the guard read are handed on as the session's
//! pipelined prefix, which Pingora's loop uses for the bytes a finished
//! session read past its request. In pingora-core 0.9.1 a finished session
//! keeps such bytes only when HTTP/1.1 pipelining was turned on for it
//! (`protocols/http/v1/server.rs`, `HttpSession::reuse`: with it off, bytes
//! read past the request make the connection not reusable), and nothing
//! here or in pingora-proxy turns it on. The persisted settings carry the
//! prefix to the next session (`apps/mod.rs`,
//! `HttpPersistentSettings::apply_to_session`, which calls
//! `set_pipelined_prefix`), and they do not let anyone read it back, so the
//! guard cannot put it before its own bytes. It checks instead: a session
//! that comes back with pipelining on is closed, with a warning
//! ([`next_session`]), rather than have its prefix overwritten (the release
//! build) or a `debug_assert` panic (`set_pipelined_prefix`).
//!
//! Empty lines before a request line, which HTTP parsers skip (RFC 9112,
//! section 2.2), count toward the deadline and the size limit, and are
//! dropped before Pingora sees the request.
//!
//! A request target with a raw space, control byte or `#` is refused here,
//! with 400, before Pingora parses it, because Pingora would change it before
//! anything else sees it:
//! - httparse stops a target at a space or control byte, and Pingora then
//!   percent-encodes the target (spaces, control bytes, `"`, `<`, `>`) and
//!   parses it again (pingora-core 0.9 `protocols/http/v1/server.rs`,
//!   `read_request` and `escape_illegal_request_line`): the proxy would
//!   decide on, and forward, `/v1/service/a%20b` for `/v1/service/a b`;
//! - Pingora drops a `#` and everything after it (pingora-http 0.9
//!   `parse_request_target`): `/v1/service/web#x` would be forwarded as
//!   `/v1/service/web`.
//!
//! The path rules refuse those bytes ([`crate::decision::target::parse_target`]); the
//! guard applies them to the bytes the client sent, with the same reason.
//! Every other byte httparse accepts in a target (`!` to `~` and 0x80-0xFF,
//! its `URI_MAP`) reaches the path rules unchanged.

use crate::conn::connections::{Connections, Peer, Slot};
use crate::conn::deadline::WriteDeadline;
use crate::decision::cidr::{admits, AddrSet};
use crate::decision::head::Forbidden;
use crate::decision::target::{parse_target, Refusal};
use crate::files::client_cert::ClientCas;
use crate::logging::{capped, Verdict};
use crate::proxy::Local;
use crate::telemetry::status_class;
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
// tokio's timer, not Pingora's fast one: a deadline under a second would
// start Pingora's clock thread, which then wakes every 10 ms for good (see
// `fast_timeout_to_tokio_threshold_seconds` in `crate::startup`).
use tokio::time::timeout;

/// The largest request header accepted: the request line and every field.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The pingora-core version whose HTTP/1 keep-alive loop [`HeaderGuard`]
/// copies, and was last reviewed against (`src/apps/mod.rs`, `process_new`;
/// the pipelined prefix, [`next_session`]). A test compares it with the
/// version in Cargo.lock: change it only after reviewing the copy against
/// the new version.
pub const REVIEWED_PINGORA: &str = "0.9.1";

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

/// Where the request line starts in `buf`: after any empty lines (`\r\n`
/// or `\n`) before it. `None` while `buf` holds nothing else.
pub fn header_start(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b != b'\r' && b != b'\n')
}

/// Where a request header ends in `buf`, if it does: after the blank line
/// (`\r\n\r\n`, or the bare `\n\n` that lenient parsers accept too) that
/// follows the request line, never one of the empty lines before it.
/// Searches from `from` (minus the three bytes a terminator can straddle).
pub fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3).max(header_start(buf)?);
    buf[start..]
        .windows(2)
        .enumerate()
        .find_map(|(i, w)| match w {
            b"\n\n" => Some(start + i + 2),
            b"\n\r" if buf.get(start + i + 2) == Some(&b'\n') => Some(start + i + 3),
            _ => None,
        })
}

/// Why the request line in `header` (a complete request header, empty
/// lines before it removed) must be refused before Pingora parses it: its
/// target breaks the path rules ([`parse_target`]), or has a `"`, `<` or `>`
/// in its query, and holds a byte Pingora would not pass on unchanged. The
/// target is what lies between the first space and the last one on the line,
/// as Pingora's rewrite takes it (the method before, `HTTP/1.1` after).
/// `None` for every other line, well-formed or not: the proxy's decision, or
/// Pingora's parser, judges those.
pub fn refused_target(header: &[u8]) -> Option<Refusal> {
    let line = header.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line.iter().position(|&b| b == b' ')? + 1;
    let end = line.iter().rposition(|&b| b == b' ')?;
    let target = line.get(start..end)?;
    // The common case: nothing Pingora would change, and the proxy decides.
    if target.iter().all(|&b| plain(b)) {
        return None;
    }
    // The path rules let a query hold any visible ASCII byte but `#`; the
    // `http` crate's URI parser refuses these three in a query, and Pingora
    // would answer 400 with no reason (http 1 `uri/path.rs`, `QUERY_MAP`).
    match parse_target(target) {
        Err(refusal) => Some(refusal),
        Ok(t) => t
            .query
            .is_some_and(|q| q.iter().any(|b| b"\"<>".contains(b)))
            .then_some(Refusal::DisallowedQueryByte),
    }
}

/// Bytes of a request target that every parser on the way (httparse,
/// Pingora, the `http` crate) passes on unchanged: RFC 3986's unreserved
/// and sub-delims, and `:`, `@`, `/`, `?`, `%`.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// When the header deadline starts.
#[derive(Clone, Copy, Debug)]
pub enum Start {
    /// A new connection: the header is due by this instant (the accept
    /// time plus the timeout, so that a TLS handshake counts too).
    New(Instant),
    /// A kept-alive connection: wait up to this long for the next request
    /// to start; the timeout runs from its first byte.
    KeptAlive(Duration),
}

/// Reads one request header into `buf`, leaving it without the empty lines
/// that came before the request line.
pub async fn read_header(
    stream: &mut Stream,
    buf: &mut BytesMut,
    start: Start,
    header_timeout: Duration,
    shutdown: &ShutdownWatch,
) -> HeaderRead {
    let deadline = match start {
        Start::New(deadline) => deadline,
        Start::KeptAlive(idle) => {
            // A shutdown that began earlier would not wake `changed()` below.
            let mut shutdown = shutdown.clone();
            if *shutdown.borrow() {
                return HeaderRead::Closed;
            }
            let first = tokio::select! {
                biased;
                _ = shutdown.changed() => return HeaderRead::Closed,
                read = timeout(idle, stream.read_buf(buf)) => read,
            };
            match first {
                Ok(Ok(n)) if n > 0 => Instant::now() + header_timeout,
                _ => return HeaderRead::Closed,
            }
        }
    };
    let mut searched = 0;
    loop {
        if let Some(end) = header_end(buf, searched) {
            if end > MAX_HEADER_BYTES {
                return HeaderRead::TooLarge;
            }
            let lead = header_start(buf).unwrap_or(0);
            buf.advance(lead);
            return HeaderRead::Complete;
        }
        searched = buf.len();
        if buf.len() > MAX_HEADER_BYTES {
            return HeaderRead::TooLarge;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return HeaderRead::TimedOut;
        };
        buf.reserve(4096);
        match timeout(left, stream.read_buf(buf)).await {
            Err(_) => return HeaderRead::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => return HeaderRead::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

/// What the guard enforces.
pub struct GuardSettings {
    /// `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`.
    pub header_timeout: Duration,
    /// `HOLEPUNCH_CLIENT_WRITE_TIMEOUT`.
    pub write_timeout: Duration,
    /// `HOLEPUNCH_CLIENT_IDLE_TIMEOUT`.
    pub idle_timeout: Duration,
    /// TLS on the listener, when set.
    pub tls: Option<Acceptor>,
    /// The CAs client certificates must chain to, when the acceptor
    /// requires them: each request checks its connection's still does.
    pub client_cas: Option<Arc<ClientCas>>,
    /// `HOLEPUNCH_ALLOW_FROM`, when set.
    pub allow_from: Option<AddrSet>,
    /// What a client outside it gets on this listener.
    pub outsiders: Outsiders,
    /// The count under `HOLEPUNCH_MAX_CONNECTIONS`, one for both listeners.
    pub connections: Arc<Connections>,
}

/// What a client outside `HOLEPUNCH_ALLOW_FROM` gets. Either way, one answer
/// with `Connection: close`, then the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outsiders {
    /// The app answers (the proxy: `/health` and `/ready` for Nomad's
    /// checks, which may come from an address outside it, and 403 for the
    /// rest) and says `Connection: close` (`crate::proxy`, `request_filter`).
    OneAnswer,
    /// The guard answers 403 itself, naming `HOLEPUNCH_ALLOW_FROM`, and the
    /// app never sees the request (the telemetry listener, which has nothing
    /// for them). A 403 rather than a bare close, so that a scraper the
    /// operator forgot to allow says why it is refused; reading its header
    /// first costs no more than on the proxy's listener, and such a
    /// connection is the first closed at the cap.
    Forbidden,
}

/// Wraps an HTTP app (the Pingora proxy, or the telemetry app) with the
/// header deadline and size limit, the idle timeout, the connection cap and
/// `HOLEPUNCH_ALLOW_FROM`.
pub struct HeaderGuard<A> {
    inner: Arc<A>,
    settings: GuardSettings,
}

impl<A> HeaderGuard<A> {
    pub fn new(inner: A, settings: GuardSettings) -> Self {
        HeaderGuard {
            inner: Arc::new(inner),
            settings,
        }
    }

    /// The TLS handshake, when TLS is on, due by `deadline`.
    async fn handshake(&self, stream: Stream, deadline: Instant) -> Option<Stream> {
        let Some(acceptor) = &self.settings.tls else {
            return Some(stream);
        };
        // The listener is plain TCP, so this is the TCP stream it accepted.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => return None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, acceptor.tls_handshake(tcp)).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                log::debug!("TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                log::debug!(
                    "closing a connection whose TLS handshake and request header took over {:?}",
                    self.settings.header_timeout
                );
                None
            }
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
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let settings = &self.settings;
        let header_timeout = settings.header_timeout;
        let accepted = Instant::now();
        let deadline = accepted + header_timeout;
        let cas = settings.client_cas.as_deref();
        let checked = cas.map(|cas| cas.checked_now(accepted));
        let client = peer_ip(&stream);
        let admitted = admits(settings.allow_from.as_ref(), client);
        let kind = if admitted {
            Peer::Insider
        } else {
            Peer::Outsider
        };
        // Refused at the cap: dropping the stream closes it, unanswered.
        let mut slot = admit(&settings.connections, kind, client)?;
        // Idle until its first request header is complete: a new connection
        // at the cap may close it, during the handshake too.
        let stream = tokio::select! {
            biased;
            () = slot.closed() => return closed_for_room(client),
            stream = self.handshake(stream, deadline) => stream?,
        };
        // Its writes tell the cap when they wait for the client: a
        // connection stalled so may be closed for a new one at the cap.
        // With client certificates, it keeps the record of the last check
        // of the client's, which the proxy's checks in flight share.
        let mut stream =
            WriteDeadline::watched(stream, settings.write_timeout, slot.watch(), checked);
        let mut persistent: Option<HttpPersistentSettings> = None;
        let mut start = Start::New(deadline);
        // Bounded by the connection's own life: each turn serves one request.
        loop {
            let mut buf = BytesMut::with_capacity(4096);
            let read = tokio::select! {
                biased;
                () = slot.closed() => return closed_for_room(client),
                read = read_header(&mut stream, &mut buf, start, header_timeout, shutdown) => read,
            };
            // Whatever happens next is this request's: out of reach of new
            // connections until it is done.
            if !slot.busy() {
                return closed_for_room(client);
            }
            match read {
                HeaderRead::Complete => {}
                HeaderRead::TooLarge => {
                    let too_large = Local::HeaderTooLarge {
                        max: MAX_HEADER_BYTES,
                    };
                    unless_closed(&slot, answer(&mut stream, too_large, false)).await;
                    return None;
                }
                HeaderRead::TimedOut => {
                    log::debug!(
                        "closing a connection whose request header took over {:?}",
                        header_timeout
                    );
                    return None;
                }
                HeaderRead::Closed => return None,
            }
            if let Some(refusal) = refused_target(&buf) {
                unless_closed(&slot, refuse(&mut stream, &buf, refusal)).await;
                return None;
            }
            if let Some(cas) = cas {
                if let Err(e) = cas.recheck_stream(&stream, Instant::now()) {
                    log::info!(
                        "closing a connection from {}: its client certificate is no longer \
                         trusted ({e}); nothing forwarded",
                        peer(&stream)
                    );
                    return None;
                }
            }
            if !admitted && settings.outsiders == Outsiders::Forbidden {
                unless_closed(&slot, forbid(&mut stream, &buf)).await;
                return None;
            }
            let first = |session: &mut ServerSession| {
                // As Pingora's loop does; reading the request then sets
                // keep-alive from the client's `Connection` (pingora-core
                // 0.9.1 `protocols/http/v1/server.rs`, `read_request`,
                // `respect_keepalive`), and the app may change it: the
                // proxy turns it off for outsiders, so that they get
                // `Connection: close`. The idle wait is the guard's own
                // (`Start::KeptAlive`); 0 would mean "forever" here.
                let idle = settings.idle_timeout.as_secs().max(1);
                let keepalive = (!*shutdown.borrow()).then_some(idle);
                session.set_keepalive(keepalive);
                session.set_keepalive_reuses_remaining(
                    self.inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
            };
            let Some(session) = next_session(stream, persistent.take(), buf, first) else {
                log::warn!(
                    "closed a connection from {}: Pingora kept bytes of a pipelined request \
                     for it (HTTP/1.1 pipelining is on), which the connection guard cannot \
                     hand on in order; src/conn/guard.rs was reviewed against pingora-core \
                     {REVIEWED_PINGORA}, which never turns it on",
                    shown(client)
                );
                return None;
            };
            // A connection whose writes stalled may be closed for a new one
            // at the cap ([`Slot::watch`]): dropping the request drops its
            // stream and everything it holds.
            let served = unless_closed(&slot, self.inner.process_new_http(session, shutdown));
            let Some(reused) = served.await else {
                return closed_for_room(client);
            };
            let reused = reused?;
            let (next, kept) = reused.consume();
            if !admitted {
                // One answer for an outsider, whatever the app said.
                return None;
            }
            stream = next;
            persistent = kept;
            slot.idle();
            start = Start::KeptAlive(settings.idle_timeout);
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

/// The HTTP session of the next request on a connection: the settings
/// Pingora persisted from the previous one applied to it (`first` sets
/// them up on a connection's first request), and the guard's header bytes
/// as its first bytes. `None` when the previous session had HTTP/1.1
/// pipelining on: only then can the persisted settings hold bytes Pingora
/// read past that request, which would have to come before `header` and
/// which `set_pipelined_prefix` would overwrite (pingora-core 0.9.1
/// `protocols/http/v1/server.rs`, `HttpSession::reuse` keeps them only
/// with pipelining on; `HttpPersistentSettings::for_session` carries the
/// switch over with them, and `apply_to_session` hands both on).
fn next_session(
    stream: Stream,
    persistent: Option<HttpPersistentSettings>,
    header: BytesMut,
    first: impl FnOnce(&mut ServerSession),
) -> Option<ServerSession> {
    let mut session = ServerSession::new_http1(stream);
    // Pingora's own write timeout would cut off a large body that the
    // client is still reading: the stream's deadline does it.
    session.set_write_timeout(None);
    match persistent {
        Some(kept) => {
            kept.apply_to_session(&mut session);
            if session.pipelining_enabled() {
                return None;
            }
        }
        None => first(&mut session),
    }
    // No prefix of Pingora's: these bytes are the start of the request.
    session.set_pipelined_prefix(header);
    Some(session)
}

/// The client's address, for a log line.
fn peer(stream: &Stream) -> String {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().map(|a| a.to_string()))
        .unwrap_or_else(|| "-".to_string())
}

/// The client's IP address, when the socket knows it.
fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

/// A place under `HOLEPUNCH_MAX_CONNECTIONS` for a new connection, or
/// `None` (logged) when it is refused.
fn admit(connections: &Arc<Connections>, peer: Peer, client: Option<IpAddr>) -> Option<Slot> {
    let slot = connections.admit(peer, client);
    if slot.is_none() {
        log::debug!(
            "refused a connection from {}: at its share of {} connections, or all {} open \
             are busy",
            shown(client),
            connections.per_client(),
            connections.max()
        );
    }
    slot
}

/// Logs a connection closed to make room for a new one, and closes it.
fn closed_for_room(client: Option<IpAddr>) -> Option<Stream> {
    log::debug!(
        "closed a connection from {} (idle, or its writes stalled) to make room for a new one",
        shown(client)
    );
    None
}

/// `work`, unless the connection is closed to make room first (`None`).
async fn unless_closed<T>(slot: &Slot, work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = slot.closed() => None,
        done = work => Some(done),
    }
}

/// Writes and flushes a whole answer the guard makes itself, from the
/// proxy's own ([`Local::answer`]; [`crate::proxy::Answer::http1`], with no body for a
/// HEAD), and counts it in `holepunch_requests_total` as the proxy counts
/// every request it answers (`crate::proxy`, `logging`: the group label
/// `none`, as for every local answer, the outcome's, the status class). A
/// failure to write is the client's, and the connection is closed after it
/// either way.
async fn answer(stream: &mut Stream, local: Local, head: bool) {
    let answer = local.answer();
    crate::telemetry::metrics()
        .requests
        .with_label_values(&["none", answer.outcome.label(), status_class(answer.status)])
        .inc();
    let _ = stream.write_all(answer.http1(head).as_bytes()).await;
    let _ = stream.flush().await;
}

fn shown(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "-".to_string(), |ip| ip.to_string())
}

/// Answers 403 to a client outside `HOLEPUNCH_ALLOW_FROM` on a listener
/// that serves it nothing ([`Outsiders::Forbidden`]); the connection is
/// closed after it.
async fn forbid(stream: &mut Stream, header: &[u8]) {
    let local = Local::Forbid(Forbidden::Address);
    refusal_line(|| {
        let body = local.answer().body;
        format!("refused {} on the telemetry listener: {body}", peer(stream))
    });
    answer(stream, local, header.starts_with(b"HEAD ")).await;
}

/// Logs a refusal at info, throttled as every refusal line is
/// ([`crate::logging::refusal_line`]).
fn refusal_line(line: impl FnOnce() -> String) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    if let Verdict::Log(dropped) = crate::logging::refusal_line() {
        if let Some(dropped) = dropped {
            log::info!("{dropped}");
        }
        log::info!("{}", line());
    }
}

/// Answers 400 to a request whose target [`refused_target`] refused, and
/// logs it as the proxy does its own refusals. The connection is closed
/// after it.
async fn refuse(stream: &mut Stream, header: &[u8], refusal: Refusal) {
    let line = header.split(|&b| b == b'\n').next().unwrap_or_default();
    refusal_line(|| {
        let shown = capped(line.escape_ascii());
        format!("refused {} {shown}: {}", peer(stream), refusal.reason())
    });
    answer(stream, Local::Refuse(refusal), line.starts_with(b"HEAD ")).await;
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

    #[test]
    fn targets_pingora_would_change_are_refused_as_sent() {
        use Refusal::{DisallowedByte, DisallowedQueryByte, DotSegment, NotOriginForm};
        let cases: &[(&[u8], Option<Refusal>)] = &[
            // Pingora would percent-encode these, or cut a fragment off.
            (
                b"GET /v1/service/a b HTTP/1.1\r\nHost: x\r\n\r\n",
                Some(DisallowedByte),
            ),
            (
                b"GET /v1/metrics?a=b c HTTP/1.1\r\n\r\n",
                Some(DisallowedQueryByte),
            ),
            (
                b"GET /v1/me\x01trics HTTP/1.1\r\n\r\n",
                Some(DisallowedByte),
            ),
            (
                b"GET /v1/me\x7ftrics HTTP/1.1\r\n\r\n",
                Some(DisallowedByte),
            ),
            (b"GET /v1/me\ttrics HTTP/1.1\r\n\r\n", Some(DisallowedByte)),
            (b"GET /v1/metrics  HTTP/1.1\r\n\r\n", Some(DisallowedByte)),
            (b"GET  /v1/metrics HTTP/1.1\r\n\r\n", Some(NotOriginForm)),
            (b"GET /v1/m\rx HTTP/1.1\n\n", Some(DisallowedByte)),
            (b"GET /v1/metrics#x HTTP/1.1\r\n\r\n", Some(DisallowedByte)),
            (
                b"GET /v1/metrics?a=b#x HTTP/1.1\r\n\r\n",
                Some(DisallowedQueryByte),
            ),
            // The `http` crate would refuse these with no reason.
            (
                b"GET /v1/service/<a> HTTP/1.1\r\n\r\n",
                Some(DisallowedByte),
            ),
            (
                b"GET /v1/metrics?q=\"a\" HTTP/1.1\r\n\r\n",
                Some(DisallowedQueryByte),
            ),
            (
                b"GET /v1/metrics?q=<a> HTTP/1.1\r\n\r\n",
                Some(DisallowedQueryByte),
            ),
            (b"GET /v1/../b<c> HTTP/1.1\r\n\r\n", Some(DotSegment)),
            // Raw, these reach the path rules unchanged, or are plain.
            (b"GET /v1/metrics HTTP/1.1\r\nHost: a b\r\n\r\n", None),
            (b"GET /v1/metrics?q={a}|[b]^`c` HTTP/1.1\r\n\r\n", None),
            (b"GET /v1/metrics/../x HTTP/1.1\r\n\r\n", None),
            // Malformed lines are Pingora's to refuse.
            (b"GET /v1/metrics\r\n\r\n", None),
            (b"GET\r\n\r\n", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(refused_target(line), *want, "{}", line.escape_ascii());
        }
    }

    #[test]
    fn empty_lines_before_the_request_line_are_not_its_end() {
        assert_eq!(header_start(b"\r\n\r\n"), None);
        assert_eq!(header_end(b"\r\n\r\n", 0), None);
        assert_eq!(header_end(b"\n\n\r\n\r\nG", 0), None);
        assert_eq!(header_start(b"\r\n\nGET"), Some(3));
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(header_end(buf, 0), Some(31));
        for from in 0..buf.len() {
            assert_eq!(header_end(buf, from), Some(31), "from {from}");
        }
    }

    /// The tripwire of the copied keep-alive loop: Cargo.lock must hold the
    /// pingora-core it was reviewed against (build.rs reads the `pingora`
    /// version from Cargo.lock, and `build_info`'s tests hold every pingora
    /// crate to it).
    #[test]
    fn the_copied_keep_alive_loop_was_reviewed_against_the_locked_pingora() {
        let review = "review HeaderGuard::process_new and next_session against pingora-core's \
                      src/apps/mod.rs (process_new) and its pipelined prefix, then update \
                      REVIEWED_PINGORA";
        assert_eq!(crate::build_info::PINGORA, REVIEWED_PINGORA, "{review}");
        let locked = format!("name = \"pingora-core\"\nversion = \"{REVIEWED_PINGORA}\"\n");
        assert!(
            include_str!("../../Cargo.lock").contains(&locked),
            "Cargo.lock holds another pingora-core than {REVIEWED_PINGORA}: {review}"
        );
    }

    /// A stream for a session that is built and never read.
    fn idle_stream() -> Stream {
        Box::new(std::io::Cursor::new(Vec::new()))
    }

    /// A prefix Pingora persisted (pipelining on) is never overwritten by
    /// the guard's bytes, nor does it panic (`set_pipelined_prefix`'s
    /// `debug_assert`): the connection is closed. Without pipelining the
    /// settings carry over and the guard's bytes start the request.
    #[test]
    fn a_pipelined_prefix_pingora_kept_closes_the_connection() {
        let mut previous = ServerSession::new_http1(idle_stream());
        previous.set_pipelining_enabled(true);
        previous.set_keepalive(Some(5));
        let mut kept = HttpPersistentSettings::for_session(&previous);
        kept.set_pipelined_prefix(BytesMut::from(&b"GET /v1/metrics HTTP/1.1\r\n"[..]));
        let header = BytesMut::from(&b"GET /v1/agent/health HTTP/1.1\r\n\r\n"[..]);
        let never = |_: &mut ServerSession| panic!("not a first request");
        assert!(next_session(idle_stream(), Some(kept), header.clone(), never).is_none());

        let mut previous = ServerSession::new_http1(idle_stream());
        previous.set_keepalive(Some(5));
        let kept = HttpPersistentSettings::for_session(&previous);
        let session = next_session(idle_stream(), Some(kept), header.clone(), never)
            .expect("no pipelining: the session goes on");
        assert_eq!(session.get_keepalive(), Some(5));
        assert!(!session.pipelining_enabled());

        let mut firsts = 0;
        let session = next_session(idle_stream(), None, header, |s: &mut ServerSession| {
            firsts += 1;
            s.set_keepalive(Some(7));
        })
        .expect("a first request");
        assert_eq!((firsts, session.get_keepalive()), (1, Some(7)));
    }
}
