//! The Pingora proxy. `request_filter` reads in order: decide
//! ([`crate::decision::head`]), check the client token, then forward or answer. Every
//! answer the proxy gives itself, with its status, body, header and
//! outcome, is [`Local::answer`] (pure). A forwarded request gets the body
//! limit, its absolute form cut to the path, compression and coalescing for
//! metrics ([`crate::proxy::coalesce`]), a place under `HOLEPUNCH_MAX_IN_FLIGHT`
//! and the client's share of it, and last, once nothing else can refuse it,
//! a count under `HOLEPUNCH_RATE_LIMIT` ([`Holepunch::spend`]): a refused
//! request never counts against anyone's limits. `upstream_peer` is the Task
//! API socket, and `upstream_request_filter` swaps the client's credentials
//! for the workload token and its Host for `localhost`. Responses stream
//! back untouched, headers included.
//!
//! **Credentials in flight.** A blocking query can wait minutes for its
//! answer, an event stream or an upgraded `exec` session can last hours:
//! far past the check at its start. So the client's credential is checked
//! again ([`Holepunch::in_flight_check`]) when the response header comes
//! from the socket, on every body chunk either way (Nomad's to the client,
//! the client's to Nomad), and before a shared metrics response is written:
//! its client token must still be in the list in use
//! ([`ClientTokens::still_admits`]), its client certificate still trusted
//! ([`ClientCas::recheck_stream`]). A request that fails gets 401 when
//! nothing of its answer was written (its token revoked) or nothing at all
//! (its certificate), and a stream already under way is cut at its next
//! chunk, the connection closed. Each check is an atomic load and a
//! compare while the token list and the CAs do not change. An answer that
//! sends nothing (a blocking query still waiting, a silent stream) is ended
//! at its next chunk, if one comes; until then it holds its place under
//! `HOLEPUNCH_MAX_IN_FLIGHT` and no data reaches the client.
//!
//! **Upgraded connections** (`101 Switching Protocols`, under ALL only) are
//! tunnels: no per-read timeout on either side once upgraded, since an idle
//! shell or a server-push WebSocket is silent one way for as long as it
//! likes ([`Holepunch::upstream_peer`], `upstream_response_filter`).
//!
//! The [`ProxyHttp`] methods are in the order Pingora calls them.

mod answer;
pub mod coalesce;
pub mod limits;
pub mod lru;

pub use answer::{Answer, Local, Next, Outcome};

use crate::conn::deadline::MIN_PROGRESS;
use crate::decision::allowlist::Group;
use crate::decision::cidr::admits;
use crate::decision::head::{decide_request, Decision, Head, Rules};
use crate::decision::target::parse_target;
use crate::files::client_auth::{Admitted, ClientTokens};
use crate::files::client_cert::ClientCas;
use crate::files::token::Token;
use crate::logging::{self, Verdict};
use crate::proxy::coalesce::{accepts_gzip, Coalescer, Join, Leader, Shared, GZIP_LEVEL};
use crate::proxy::limits::{Full, InFlightLimit, Permit, RateLimiter};
use crate::shutdown::{InFlight, InFlightGuard};
use crate::telemetry::{self, status_class};
use async_trait::async_trait;
use bytes::Bytes;
use log::{debug, info, warn};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::{ResponseCompression, ResponseCompressionBuilder};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long connecting to the Task API socket may take. A local socket
/// connects at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// How long `/ready` waits for the socket to accept a connection.
const READY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The Host every request carries on the socket. Nomad does not route on
/// Host, so the client's would only be a risk there; Go's server answers 400
/// to a malformed one and, on HTTP/1.1, to none.
const UPSTREAM_HOST: &str = "localhost";

/// The proxy. One per process, shared by every request.
pub struct Holepunch {
    rules: Rules,
    peer: HttpPeer,
    /// The connector of the shared metrics fetches (its own pool).
    connector: Connector,
    socket_path: String,
    token: Arc<Token>,
    client_tokens: Option<Arc<ClientTokens>>,
    client_cas: Option<Arc<ClientCas>>,
    max_body: u64,
    upstream_timeout: Duration,
    /// `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`: the pace of a request body too
    /// ([`BodyPace`]).
    body_period: Duration,
    coalescer: Coalescer,
    in_flight: Arc<InFlight>,
    limit: Arc<InFlightLimit>,
    rate: Option<RateLimiter>,
}

/// What a [`Holepunch`] is built from.
pub struct Settings {
    /// The decision's rules: the open groups and the head checks.
    pub rules: Rules,
    /// The Task API socket.
    pub socket_path: String,
    /// How long the Task API may take to send the response header, and at
    /// most between two reads of the body.
    pub upstream_timeout: Duration,
    /// The largest request body forwarded.
    pub max_body: u64,
    /// `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`: a request body (under ALL) must
    /// come at [`MIN_PROGRESS`] per this long at least (`BodyPace`).
    pub body_period: Duration,
    pub token: Arc<Token>,
    /// When set, clients must present one of these bearer tokens.
    pub client_tokens: Option<Arc<ClientTokens>>,
    /// When set, the TLS listener requires client certificates from these
    /// CAs; a request in flight is checked against them again.
    pub client_cas: Option<Arc<ClientCas>>,
    /// How long metrics responses are served from memory, if at all.
    pub metrics_cache_ttl: Option<Duration>,
    pub in_flight: Arc<InFlight>,
    /// `HOLEPUNCH_MAX_IN_FLIGHT`.
    pub max_in_flight: usize,
    /// `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT`.
    pub max_in_flight_per_client: usize,
    /// `HOLEPUNCH_RATE_LIMIT`.
    pub rate_limit: Option<crate::config::RateLimit>,
}

impl Holepunch {
    pub fn new(settings: Settings) -> Result<Self> {
        let mut peer = HttpPeer::new_uds(&settings.socket_path, false, String::new())?;
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(settings.upstream_timeout);
        peer.options.write_timeout = Some(settings.upstream_timeout);
        // A shared fetch may take as long as a request's connection and
        // response; its followers wait as long.
        let shared_wait = settings.upstream_timeout + CONNECT_TIMEOUT;
        Ok(Holepunch {
            rules: settings.rules,
            peer,
            connector: Connector::new(None),
            socket_path: settings.socket_path,
            token: settings.token,
            client_tokens: settings.client_tokens,
            client_cas: settings.client_cas,
            max_body: settings.max_body,
            upstream_timeout: settings.upstream_timeout,
            body_period: settings.body_period,
            coalescer: Coalescer::new(settings.metrics_cache_ttl, shared_wait),
            in_flight: settings.in_flight,
            limit: InFlightLimit::new(settings.max_in_flight, settings.max_in_flight_per_client),
            rate: settings.rate_limit.map(RateLimiter::new),
        })
    }
}

/// Per-request state.
pub struct RequestCtx {
    _in_flight: InFlightGuard,
    started: Instant,
    /// The group the path belongs to, for a forwarded or denied request
    /// (`None` for paths outside every group).
    pub group: Option<Group>,
    /// What was decided, for the metrics and the access log.
    outcome: Outcome,
    /// When the request was sent on the socket.
    upstream_sent: Option<Instant>,
    /// Request body bytes forwarded so far.
    body_bytes: u64,
    /// Whether this request was already retried on a fresh connection.
    retried: bool,
    /// This request's place under `HOLEPUNCH_MAX_IN_FLIGHT`, while it is on
    /// the socket.
    permit: Option<Permit>,
    /// The client's IP address, when the socket knows it.
    client: Option<IpAddr>,
    /// Whether this request was counted under `HOLEPUNCH_RATE_LIMIT`.
    counted: bool,
    /// The pace its body must keep, while one is coming.
    body_pace: Option<BodyPace>,
    /// The client token list its token was found in, with client tokens
    /// on: checked again while it is in flight.
    admitted: Option<Admitted>,
    /// Whether it became a tunnel (`101 Switching Protocols`).
    upgraded: bool,
}

/// A local answer being written: boxed, so that the futures that may answer
/// locally (every request's filter among them) stay small.
type Answering<'a> = Pin<Box<dyn Future<Output = Result<bool>> + Send + 'a>>;

// The methods follow Pingora's phases (pingora-proxy 0.9.1): once, when the
// service is built, `init_downstream_modules` (lib.rs, `handle_init_modules`);
// per request `new_ctx` (lib.rs, `process_new_http`), `request_filter`
// (lib.rs, `process_request`), `upstream_peer` (lib.rs, `proxy_to_upstream`),
// `upstream_request_filter` (proxy_h1.rs, `proxy_1to1`, before the header is
// written), `request_body_filter` as the body streams after it (proxy_h1.rs,
// `send_body_to_pipe`), `upstream_response_filter` (lib.rs,
// `upstream_filter`); on a failure `error_while_proxy` (lib.rs,
// `proxy_to_upstream`), then `fail_to_proxy` and right after it
// `suppress_error_log` (lib.rs, `process_request`, `handle_error`); and
// `logging` last (lib.rs, `finish`).
#[async_trait]
impl ProxyHttp for Holepunch {
    type CTX = RequestCtx;

    /// Response compression is available to every request but off (level
    /// 0); `request_filter` turns it on for metrics. It applies only when the
    /// client's `Accept-Encoding` allows it, which Prometheus's always does.
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(ResponseCompressionBuilder::enable(0));
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            _in_flight: self.in_flight.enter(),
            started: Instant::now(),
            group: None,
            outcome: Outcome::Denied,
            upstream_sent: None,
            body_bytes: 0,
            retried: false,
            permit: None,
            client: None,
            counted: false,
            body_pace: None,
            admitted: None,
            upgraded: false,
        }
    }

    /// Decides, checks the client, then forwards or answers.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let client = client_ip(session);
        ctx.client = client;
        if !admits(self.rules.allow_from.as_ref(), client) {
            // Outside HOLEPUNCH_ALLOW_FROM: one answer (`/health`, `/ready`
            // or 403) with `Connection: close`, and the guard closes the
            // connection after it. Set here, not before Pingora reads the
            // request: reading it sets keep-alive from the client's own
            // `Connection` (pingora-core 0.9.1 `protocols/http/v1/server.rs`,
            // `read_request`, `respect_keepalive`).
            session.set_keepalive(None);
        }
        let next = Next::of(self.decide(session, client));
        ctx.group = next.group();
        let local = match self.check_client(session, ctx, &next) {
            Some(refused) => refused,
            None => match next {
                Next::Forward {
                    group,
                    origin_offset,
                } => return self.forward(session, ctx, group, origin_offset).await,
                // Boxed: the socket check is a large future, rare.
                Next::Ready => return Box::pin(self.answer_ready(session, ctx)).await,
                Next::Answer(local) => local,
            },
        };
        self.answer(session, ctx, local).await
    }

    /// The Task API socket. A request that asks for an upgrade (under ALL
    /// only: `crate::decision::head` refuses `Upgrade` on every group path) reads
    /// from the socket with no timeout: once upgraded, the agent's side of
    /// an idle `exec` shell is silent for as long as the user is, and
    /// `HOLEPUNCH_UPSTREAM_TIMEOUT` would cut it. The peer's read timeout
    /// is its only per-read one for this request (pingora-core 0.9.1
    /// `protocols/http/v1/client.rs`, `read_body_ref`, set from the peer in
    /// `HttpSession::new_with_options`), and not part of the pool's key
    /// (`upstreams/peer.rs`, `impl Hash for HttpPeer`), so pooling is
    /// unchanged. What bounds it: the client, which can end the tunnel,
    /// and whose leaving ends it; its place under the in-flight limits.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let mut peer = self.peer.clone();
        if session.is_upgrade_req() {
            peer.options.read_timeout = None;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_sent = Some(Instant::now());
        // The client's own credentials are for this proxy at most; Nomad
        // sees only the workload's.
        upstream_request.remove_header("Authorization");
        upstream_request.remove_header("Proxy-Authorization");
        self.for_the_socket(upstream_request)
    }

    /// Checks the client's credential again (`in_flight_check`), then
    /// counts the body as it streams and stops it past the limit, for
    /// bodies whose length was not declared up front, and stops one that
    /// comes too slowly (`BodyPace`). An upgraded connection's bytes are
    /// no body: neither applies to them.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.in_flight_check(session, ctx)?;
        if ctx.upgraded {
            return Ok(());
        }
        let n = body.as_ref().map_or(0, Bytes::len);
        ctx.body_bytes += n as u64;
        if ctx.body_bytes > self.max_body {
            return Error::e_explain(
                HTTPStatus(413),
                format!("request body over {} bytes", self.max_body),
            );
        }
        if let Some(pace) = ctx.body_pace.as_mut() {
            if !pace.took(n, Instant::now()) {
                return Error::e_explain(
                    HTTPStatus(408),
                    format!(
                        "request body under {MIN_PROGRESS} bytes in {:?}",
                        pace.period
                    ),
                );
            }
        }
        if end_of_stream || body.is_none() {
            ctx.body_pace = None;
        }
        Ok(())
    }

    /// The response header from the socket, before anything of it is
    /// written: the client's credential is checked again (a blocking query
    /// answered minutes after its token was revoked gets 401, not Nomad's
    /// data). A `101` makes the connection a tunnel: from then on no
    /// per-read timeout on the client's side (Pingora's would cut a tunnel
    /// silent one way for `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`, or 60 s by
    /// default: pingora-core 0.9.1 `protocols/http/v1/server.rs`,
    /// `read_body`, and `init_body_reader`, which makes an upgraded
    /// connection's bytes a close-delimited body), no body pace, no body
    /// limit.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            telemetry::metrics()
                .upstream_duration
                .with_label_values(&[group_label(ctx.group)])
                .observe(sent.elapsed().as_secs_f64());
        }
        self.in_flight_check(session, ctx)?;
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS
            && session.is_upgrade_req()
        {
            ctx.upgraded = true;
            ctx.body_pace = None;
            session.set_read_timeout(None);
        }
        Ok(())
    }

    /// Every chunk of the response on its way to the client: the client's
    /// credential is checked again, and a stream whose client lost it is
    /// cut here, before the chunk is written.
    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        self.in_flight_check(session, ctx)?;
        Ok(None)
    }

    /// A request is retried once, on another connection, when the failure
    /// came from a pooled connection the agent had closed, the method is GET
    /// or HEAD, and nothing of the response has reached the client yet.
    /// Nothing else is retried: under ALL a write may already have happened.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if Revoked::of(&e).is_some() {
            // Sent again, it would be answered again: never.
            e.set_retry(false);
            return e;
        }
        let method = &session.req_header().method;
        let safe = *method == http::Method::GET || *method == http::Method::HEAD;
        if safe && !ctx.retried && session.response_written().is_none() {
            e.retry.decide_reuse(client_reused);
            ctx.retried = e.retry();
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = error_response(e);
        count_upstream_error(e);
        // The error's context names the socket: that is for the operator's
        // log, never for the client's body.
        let line = format!(
            "{} {} {}: {code}: {e}",
            client(session),
            session.req_header().method,
            escaped_target(session.req_header())
        );
        if code >= 500 {
            warn!("{line}");
        } else {
            debug!("{line}");
        }
        if code > 0 && session.response_written().is_none() {
            session.set_keepalive(None);
            let written = if Revoked::of(e) == Some(Revoked::Token) {
                // What any request with that token gets now.
                let Answer {
                    status,
                    body,
                    header,
                    outcome,
                    ..
                } = Local::Unauthorized.answer();
                ctx.outcome = outcome;
                respond(session, status, body, header).await
            } else {
                respond(session, code, body.into(), None).await
            };
            if let Err(write_err) = written {
                debug!("could not send the {code} response: {write_err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// `fail_to_proxy` logs every failure once, at a level that fits it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }

    /// Counts every request, and writes the access line (at debug level).
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map_or(0, |resp| resp.status.as_u16());
        let group = group_label(ctx.group);
        let outcome = ctx.outcome.label();
        telemetry::metrics()
            .requests
            .with_label_values(&[group, outcome, status_class(status)])
            .inc();
        if log::log_enabled!(target: "access", log::Level::Debug) {
            debug!(
                target: "access",
                "{} {} {} {} {} group={} {:.3}ms",
                client(session),
                session.req_header().method,
                escaped_target(session.req_header()),
                status,
                outcome,
                group,
                ctx.started.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}

/// `request_filter`'s steps, in its order.
impl Holepunch {
    /// The decision on the request head ([`decide_request`]).
    fn decide(&self, session: &Session, client: Option<IpAddr>) -> Decision {
        let req = session.req_header();
        let target = req.raw_path();
        decide_request(
            &self.rules,
            &Head {
                method: &req.method,
                target,
                parsed: &parse_target(target),
                headers: &req.headers,
                client,
            },
        )
    }

    /// What the decision leaves to the proxy about who asks: the client
    /// tokens, on everything but `/health` and `/ready`. `Some` answer when
    /// the client is refused; else the list its token was found in is kept
    /// for [`Holepunch::in_flight_check`]. The limits come last, in
    /// [`Holepunch::admit`] and [`Holepunch::spend`], so that nothing
    /// refused here counts.
    fn check_client(&self, session: &Session, ctx: &mut RequestCtx, next: &Next) -> Option<Local> {
        if next.open() {
            return None;
        }
        let tokens = self.client_tokens.as_ref()?;
        match tokens.admit(authorization(session)) {
            Some(admitted) => {
                ctx.admitted = Some(admitted);
                None
            }
            None => Some(Local::Unauthorized),
        }
    }

    /// Whether the client that made this request in flight may still have
    /// its answer: its client token still accepted, its client certificate
    /// still trusted. Logs (throttled, as refusals are) and returns the
    /// error that ends the request when not. Costs nothing without client
    /// tokens and certificates, and an atomic load and a compare for each
    /// while they do not change.
    fn in_flight_check(&self, session: &Session, ctx: &mut RequestCtx) -> Result<()> {
        match self.revoked(session, ctx) {
            None => Ok(()),
            Some(revoked) => {
                if log::log_enabled!(log::Level::Info) {
                    if let Verdict::Log(dropped) = logging::refusal_line() {
                        if let Some(dropped) = dropped {
                            info!("{dropped}");
                        }
                        info!(
                            "ended {} {} {} in flight: {}; nothing more forwarded",
                            client(session),
                            session.req_header().method,
                            escaped_target(session.req_header()),
                            revoked.reason()
                        );
                    }
                }
                Err(revoked.error())
            }
        }
    }

    /// What this request's client lost since it was let in, if anything.
    fn revoked(&self, session: &Session, ctx: &mut RequestCtx) -> Option<Revoked> {
        if let (Some(tokens), Some(admitted)) = (&self.client_tokens, ctx.admitted.as_mut()) {
            if !tokens.still_admits(authorization(session), admitted) {
                return Some(Revoked::Token);
            }
        }
        let cas = self.client_cas.as_ref()?;
        // The guard serves HTTP/1 only, so there is a stream; without one
        // there is no certificate to trust.
        let Some(stream) = session.downstream_session.stream() else {
            return Some(Revoked::Certificate);
        };
        cas.recheck_stream(stream, Instant::now())
            .err()
            .map(|_| Revoked::Certificate)
    }

    /// Before a shared metrics response (cached, or fetched by another
    /// request while this one waited) is written: `Some` answer for a
    /// client that lost its credential meanwhile, 401 for its token, the
    /// connection closed for its certificate.
    async fn refuse_revoked(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Option<Result<bool>> {
        let Err(e) = self.in_flight_check(session, ctx) else {
            return None;
        };
        if Revoked::of(&e) == Some(Revoked::Certificate) {
            return Some(Err(e));
        }
        let Answer {
            status,
            body,
            header,
            outcome,
            ..
        } = Local::Unauthorized.answer();
        ctx.outcome = outcome;
        Some(respond(session, status, body, header).await.map(|()| true))
    }

    /// A request the decision forwards: the body limit, absolute form,
    /// compression and coalescing for metrics, then a place on the socket.
    async fn forward(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        group: Option<Group>,
        origin_offset: usize,
    ) -> Result<bool> {
        ctx.outcome = Outcome::Allowed;
        if declared_length(session.req_header()).is_some_and(|len| len > self.max_body) {
            let max_body = self.max_body;
            return self
                .answer(session, ctx, Local::TooLarge { max_body })
                .await;
        }
        // A body (under ALL only: the groups refuse them) must keep a pace:
        // Pingora's own timeout is per read (60 s), so a body trickled a
        // byte at a time, or one that stops, would hold the connection, the
        // in-flight place and the socket connection for good. An upgrade
        // request's body too: only once upgraded (`101`) are its bytes a
        // tunnel's, and `upstream_response_filter` lifts both.
        if !session.is_body_empty() {
            ctx.body_pace = Some(BodyPace::new(self.body_period, Instant::now()));
        }
        // A body that stops altogether: no read returns, and Pingora's
        // per-read timeout ends it (pingora-core 0.9.1
        // `protocols/http/v1/server.rs`, `read_body`), this long rather than
        // its 60 s. Only body reads use it: once the body is done, or with
        // none, the wait for the answer reads with no timeout
        // (`read_body_or_idle`, `idle`), so a blocking query is never cut by
        // it; and an upgraded connection has it lifted at its `101`.
        session.set_read_timeout(Some(self.body_period));
        let req = session.req_header();
        if origin_offset > 0 {
            // Absolute-form: forward exactly the path that was decided on.
            let origin = req.raw_path()[origin_offset..].to_vec();
            session.req_header_mut().set_raw_path(&origin)?;
        }
        if group == Some(Group::Metrics) {
            // The Task API never compresses; a scrape is 50-500 KB of text.
            // A shared response is gzipped once by `respond_shared`; any
            // other goes through the compression module.
            if session.req_header().method == http::Method::GET {
                // Boxed: the shared fetch is a large future, and inline it
                // would make every request's filter future as large, copied
                // on every call (callgrind: 10.7k of 24k instructions the
                // proxy added to the floor per request, before).
                return Box::pin(self.coalesce(session, ctx)).await;
            }
            enable_compression(session);
        }
        self.admit(session, ctx).await
    }

    /// Answers a request locally: its outcome and log line, then the
    /// response, all from [`Local::answer`] and [`Local::log_line`].
    fn answer<'a>(
        &self,
        session: &'a mut Session,
        ctx: &mut RequestCtx,
        local: Local,
    ) -> Answering<'a> {
        // A refusal counts against no limit: its lines are throttled
        // (`logging::refusal_line`), and its target is capped.
        if log::log_enabled!(log::Level::Info) && local.logged() {
            if let Verdict::Log(dropped) = logging::refusal_line() {
                if let Some(dropped) = dropped {
                    info!("{dropped}");
                }
                let req = session.req_header();
                let line = local.log_line(client(session), &req.method, escaped_target(req));
                if let Some(line) = line {
                    info!("{line}");
                }
            }
        }
        let Answer {
            status,
            body,
            header,
            outcome,
            close,
        } = local.answer();
        ctx.outcome = outcome;
        if close {
            session.set_keepalive(None);
        }
        Box::pin(async move {
            respond(session, status, body, header).await?;
            Ok(true)
        })
    }

    /// Answers `/ready` with what [`Holepunch::ready`] finds.
    async fn answer_ready(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let ready = self.ready().await;
        self.answer(session, ctx, Local::Ready(ready)).await
    }

    /// [`Holepunch::admission`], answering the refusal if there is one:
    /// `Ok(false)` to go on, `Ok(true)` when it was answered 503 or 429
    /// instead.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.admission(ctx) {
            Some(refused) => self.answer(session, ctx, refused).await,
            None => Ok(false),
        }
    }

    /// Takes a place under `HOLEPUNCH_MAX_IN_FLIGHT` and the client's
    /// share of it for a request about to go to the socket, then counts it
    /// under the rate limit ([`Holepunch::spend`]). Writes nothing: `Some`
    /// refusal (503 or 429) for the caller to answer once it has let go of
    /// whatever others wait on (a coalescing leader's followers).
    fn admission(&self, ctx: &mut RequestCtx) -> Option<Local> {
        if ctx.permit.is_none() {
            match self.limit.try_acquire(ctx.client) {
                Ok(permit) => ctx.permit = Some(permit),
                Err(Full::Total) => return Some(Local::Busy),
                Err(Full::Client) => return Some(Local::BusyClient),
            }
        }
        let limited = self.spend(ctx)?;
        ctx.permit = None;
        Some(limited)
    }

    /// Counts the request under `HOLEPUNCH_RATE_LIMIT`, once: the last
    /// check, made only when the request is about to be forwarded or served
    /// from a shared response, so that a refused request never counts.
    /// `Some` answer when the client is over its rate.
    fn spend(&self, ctx: &mut RequestCtx) -> Option<Local> {
        if std::mem::replace(&mut ctx.counted, true) {
            return None;
        }
        let (Some(rate), Some(ip)) = (&self.rate, ctx.client) else {
            return None;
        };
        let retry_after = rate.check(ip).err()?;
        Some(Local::RateLimited { retry_after })
    }
}

/// Coalescing a metrics GET ([`crate::proxy::coalesce`]).
impl Holepunch {
    /// Joins a metrics GET with identical ones. Returns `Ok(true)` when it
    /// was answered (from a shared response, the micro-cache, or an error of
    /// its own fetch), and `Ok(false)` when it goes upstream on its own.
    async fn coalesce(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let accept = req.headers.get(http::header::ACCEPT).cloned();
        let key = Coalescer::key(req.raw_path(), accept.as_ref().map(|v| v.as_bytes()));
        let Some(key) = key else {
            return self.alone(session, ctx).await;
        };
        let scrapes = &telemetry::metrics().scrapes;
        match self.coalescer.join(key) {
            Join::Cached(shared) => {
                if let Some(refused) = self.refuse_revoked(session, ctx).await {
                    return refused;
                }
                if let Some(limited) = self.spend(ctx) {
                    return self.answer(session, ctx, limited).await;
                }
                scrapes.with_label_values(&["cached"]).inc();
                let age = shared.created.elapsed().as_secs();
                respond_shared(session, &shared, Some(age)).await?;
                Ok(true)
            }
            Join::Follower(follower) => {
                let waiting = &telemetry::metrics().scrapes_waiting;
                waiting.inc();
                let shared = follower.wait().await;
                waiting.dec();
                // Counted once served (here, or in `alone` when it goes
                // upstream after all), so that a refusal there never counts.
                let Some(shared) = shared else {
                    return self.alone(session, ctx).await;
                };
                // Its token may have been revoked while it waited.
                if let Some(refused) = self.refuse_revoked(session, ctx).await {
                    return refused;
                }
                if let Some(limited) = self.spend(ctx) {
                    return self.answer(session, ctx, limited).await;
                }
                scrapes.with_label_values(&["coalesced"]).inc();
                respond_shared(session, &shared, None).await?;
                Ok(true)
            }
            Join::Bypass => self.alone(session, ctx).await,
            Join::Leader(leader) => self.lead(session, ctx, leader, accept).await,
        }
    }

    /// A metrics GET that goes upstream on its own, streamed (and
    /// compressed) as any other request.
    async fn alone(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        telemetry::metrics()
            .scrapes
            .with_label_values(&["upstream"])
            .inc();
        enable_compression(session);
        self.admit(session, ctx).await
    }

    /// The leader: fetches the response whole for itself and its followers,
    /// then answers its own client from it. A response too large to share
    /// is streamed instead.
    async fn lead(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        leader: Leader,
        accept: Option<http::HeaderValue>,
    ) -> Result<bool> {
        telemetry::metrics()
            .scrapes
            .with_label_values(&["upstream"])
            .inc();
        if let Some(refused) = self.admission(ctx) {
            // Let the followers go before a byte of the refusal is written:
            // its write waits for this client alone, which may read nothing
            // (until HOLEPUNCH_CLIENT_WRITE_TIMEOUT). They fetch their own.
            drop(leader);
            return self.answer(session, ctx, refused).await;
        }
        let target = session.req_header().raw_path().to_vec();
        match Box::pin(self.fetch(&target, accept, leader)).await {
            Ok(shared) => {
                // Off the socket: the client's own pace holds no place there.
                ctx.permit = None;
                if let Some(refused) = self.refuse_revoked(session, ctx).await {
                    return refused;
                }
                respond_shared(session, &shared, None).await?;
                Ok(true)
            }
            // Too large to share: this one is streamed as any other request.
            Err(None) => {
                enable_compression(session);
                Ok(false)
            }
            Err(Some(e)) => {
                count_upstream_error(&e);
                let (code, body) = error_response(&e);
                warn!(
                    "{} GET {}: {code}: {e}",
                    client(session),
                    escaped_target(session.req_header())
                );
                session.set_keepalive(None);
                Box::pin(respond(session, code, body.into(), None)).await?;
                Ok(true)
            }
        }
    }

    /// Fetches a metrics response whole, at the socket's pace, through this
    /// proxy's connector and pool, and hands it to the leader. `Err(None)`
    /// when it grew too large to share.
    async fn fetch(
        &self,
        target: &[u8],
        accept: Option<http::HeaderValue>,
        mut leader: Leader,
    ) -> std::result::Result<Arc<Shared>, Option<Box<Error>>> {
        let mut request = RequestHeader::build(http::Method::GET, target, Some(4)).map_err(Some)?;
        self.for_the_socket(&mut request).map_err(Some)?;
        if let Some(accept) = accept {
            request
                .insert_header(http::header::ACCEPT, accept)
                .map_err(Some)?;
        }
        // One deadline for the whole fetch, header and body, the same a
        // follower waits: a trickling agent cannot hold it longer.
        let deadline = leader.deadline();
        let fetch = async {
            let (mut upstream, header) = self.send(&request).await.map_err(Some)?;
            while let Some(chunk) = upstream.read_response_body().await.map_err(Some)? {
                leader.push(chunk).map_err(|_| None)?;
            }
            let idle = self.peer.options.idle_timeout;
            self.connector
                .release_http_session(upstream, &self.peer, idle)
                .await;
            Ok(header)
        };
        // tokio's timer: Pingora's does not survive `-d` (`crate::shutdown`).
        let header = match tokio::time::timeout(deadline, fetch).await {
            Ok(result) => result.map_err(|e: Option<Box<Error>>| e.map(|e| e.into_up()))?,
            Err(_) => {
                return Err(Some(
                    Error::explain(ReadTimedout, "fetching the metrics").into_up(),
                ))
            }
        };
        Ok(leader.finish(header))
    }

    /// Sends a shared fetch's request through this proxy's pool and reads
    /// the response header. A pooled connection the agent closed meanwhile is
    /// tried again once, on a new one, as the proxy does for other requests.
    async fn send(&self, request: &RequestHeader) -> Result<(HttpSession, ResponseHeader)> {
        for attempt in 0..2 {
            let (mut upstream, reused) = self.connector.get_http_session(&self.peer).await?;
            upstream.set_read_timeout(Some(self.upstream_timeout));
            upstream.set_write_timeout(Some(self.upstream_timeout));
            let sent_at = Instant::now();
            let sent = async {
                upstream
                    .write_request_header(Box::new(request.clone()))
                    .await?;
                upstream.finish_request_body().await?;
                upstream.read_response_header().await
            }
            .await;
            if let Err(e) = sent {
                if reused && attempt == 0 {
                    continue;
                }
                return Err(e);
            }
            telemetry::metrics()
                .upstream_duration
                .with_label_values(&[group_label(Some(Group::Metrics))])
                .observe(sent_at.elapsed().as_secs_f64());
            let header = upstream
                .response_header()
                .cloned()
                .ok_or_else(|| Error::explain(ReadError, "no response header"))?;
            return Ok((upstream, header));
        }
        Error::e_explain(ConnectError, "no connection to the Task API socket")
    }
}

/// The Task API socket.
impl Holepunch {
    /// What every request on the socket carries, whoever built it: the
    /// workload token, and the one fixed Host.
    fn for_the_socket(&self, request: &mut RequestHeader) -> Result<()> {
        request.insert_header("X-Nomad-Token", self.token.header_value())?;
        request.insert_header(http::header::HOST, UPSTREAM_HOST)
    }

    /// Whether the proxy can serve: a workload token is loaded, it is not
    /// past its `exp` (Nomad would answer every request 500), client tokens
    /// are loaded too when they are required, and the socket accepts a
    /// connection. No request is sent, so this costs the Nomad servers
    /// nothing. The reason names no path: it is for clients.
    async fn ready(&self) -> std::result::Result<(), &'static str> {
        if self.token.header_value().is_empty() {
            return Err("no workload token loaded");
        }
        self.token.usable_at(std::time::SystemTime::now())?;
        if self.client_tokens.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(
                "no client token loaded: the client token file is empty, missing or unreadable",
            );
        }
        let connect = tokio::net::UnixStream::connect(&self.socket_path);
        match tokio::time::timeout(READY_CONNECT_TIMEOUT, connect).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(e)) => Err(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "the Nomad Task API socket does not exist (is the task's Nomad agent running?)"
                }
                std::io::ErrorKind::ConnectionRefused => {
                    "the Nomad Task API socket refuses connections"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "no permission to connect to the Nomad Task API socket"
                }
                _ => "cannot connect to the Nomad Task API socket",
            }),
            Err(_) => Err("the Nomad Task API socket did not accept a connection within 1s"),
        }
    }
}

/// Answers with a response another request fetched; `age` when it came
/// from the micro-cache. The body is gzipped once per response, not once
/// per client: a client that accepts gzip gets the shared compressed bytes.
async fn respond_shared(session: &mut Session, shared: &Shared, age: Option<u64>) -> Result<()> {
    let mut header = shared.header.clone();
    if let Some(age) = age {
        header.insert_header("Age", age)?;
    }
    header.append_header(http::header::VARY, "Accept-Encoding")?;
    let accept = session
        .req_header()
        .headers
        .get_all(http::header::ACCEPT_ENCODING);
    let gzipped = accepts_gzip(accept.iter().map(|v| v.as_bytes()))
        .then(|| shared.gzipped())
        .flatten();
    let body = match gzipped {
        Some(gz) => {
            header.insert_header(http::header::CONTENT_ENCODING, "gzip")?;
            header.insert_header(http::header::CONTENT_LENGTH, gz.len())?;
            gz.clone()
        }
        None => shared.body.clone(),
    };
    // A failure here is the client's (gone, or not reading): logged and
    // counted as such, not as the proxy's 500.
    let written = async {
        session
            .write_response_header(Box::new(header), false)
            .await?;
        session.write_response_body(Some(body), true).await
    };
    written.await.map_err(|e| e.into_down())
}

/// Turns on the compression module for this response: a metrics response
/// streamed from the socket rather than shared. The module skipped reading
/// `Accept-Encoding` while it was off, so it gets the request header again.
fn enable_compression(session: &mut Session) {
    let req = session.downstream_session.req_header();
    let modules = &mut session.downstream_modules_ctx;
    if let Some(c) = modules.get_mut::<ResponseCompression>() {
        c.adjust_level(GZIP_LEVEL);
        c.request_filter(req);
    }
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The pace a request body must keep: [`MIN_PROGRESS`] (64 KiB) or its
/// end in each period of `HOLEPUNCH_CLIENT_HEADER_TIMEOUT`, from its
/// request header on (the write deadline's rule, [`crate::conn::deadline`], for
/// what the client sends). Pure: the caller gives the time. A body of 1 MiB
/// (`HOLEPUNCH_MAX_BODY`'s default) at 10 s a period may take 160 s; one
/// trickled a byte at a time is ended after one or two periods.
#[derive(Debug)]
struct BodyPace {
    period: Duration,
    /// When the current period began, and the bytes taken in it.
    since: Instant,
    taken: u64,
}

impl BodyPace {
    fn new(period: Duration, now: Instant) -> BodyPace {
        BodyPace {
            period,
            since: now,
            taken: 0,
        }
    }

    /// `n` more bytes came at `now`: `false` when a whole period has gone
    /// by with less than [`MIN_PROGRESS`] in it.
    fn took(&mut self, n: usize, now: Instant) -> bool {
        self.taken += n as u64;
        if now.saturating_duration_since(self.since) < self.period {
            return true;
        }
        if self.taken < MIN_PROGRESS {
            return false;
        }
        self.since = now;
        self.taken = 0;
        true
    }
}

/// The status and body for a request that failed after it was allowed.
/// Status 0 means the client is gone and gets nothing.
fn error_response(e: &Error) -> (u16, &'static str) {
    match Revoked::of(e) {
        // `fail_to_proxy` writes `Local::Unauthorized`'s whole answer.
        Some(Revoked::Token) => return (401, ""),
        Some(Revoked::Certificate) => return (0, ""),
        None => {}
    }
    match (e.etype(), e.esource()) {
        (HTTPStatus(413), _) => (
            413,
            concat!("payload too large (", crate::var_name!(MAX_BODY), ")"),
        ),
        (HTTPStatus(408), _) => (
            408,
            concat!(
                "request timeout: the request body came slower than 64 KiB per ",
                crate::var_name!(CLIENT_HEADER_TIMEOUT)
            ),
        ),
        (HTTPStatus(code), _) => (*code, ""),
        (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => (
            504,
            "gateway timeout: the Nomad Task API did not answer in time",
        ),
        (_, ErrorSource::Upstream) => (
            502,
            "bad gateway: the Nomad Task API socket is not available",
        ),
        (
            ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout,
            ErrorSource::Downstream,
        ) => (0, ""),
        (_, ErrorSource::Downstream) => (400, "bad request"),
        _ => (500, "internal error"),
    }
}

/// Counts a failure on the socket by kind, in `holepunch_upstream_errors_total`.
fn count_upstream_error(e: &Error) {
    if e.esource() != &ErrorSource::Upstream || Revoked::of(e).is_some() {
        return;
    }
    let kind = match e.etype() {
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | SocketError | BindError | InvalidCert => "connect",
        ReadTimedout | WriteTimedout => "timeout",
        ConnectionClosed | ReadError | WriteError => "closed",
        _ => "other",
    };
    telemetry::metrics()
        .upstream_errors
        .with_label_values(&[kind])
        .inc();
}

/// Writes a complete plain-text response, with at most one header besides
/// its type and length.
async fn respond(
    session: &mut Session,
    status: u16,
    body: Cow<'static, str>,
    header: Option<(&'static str, Cow<'static, str>)>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("Content-Type", TEXT_PLAIN)?;
    resp.insert_header("Content-Length", body.len())?;
    if let Some((name, value)) = header {
        resp.insert_header(name, &*value)?;
    }
    // A request body we did not read would be taken for the next request.
    if !session.is_body_empty() {
        session.set_keepalive(None);
    }
    let body = match body {
        Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
        Cow::Owned(s) => Bytes::from(s),
    };
    let written = async {
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    };
    written.await.map_err(|e| e.into_down())
}

/// What a request in flight lost ([`Holepunch::in_flight_check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Revoked {
    /// Its client token is no longer in the list in use.
    Token,
    /// Its client certificate is no longer trusted.
    Certificate,
}

/// The errors that end such a request, told apart by their type.
const REVOKED_TOKEN: ErrorType = ErrorType::Custom("client token revoked");
const REVOKED_CERTIFICATE: ErrorType = ErrorType::Custom("client certificate no longer trusted");

impl Revoked {
    fn error(self) -> Box<Error> {
        let etype = match self {
            Revoked::Token => REVOKED_TOKEN,
            Revoked::Certificate => REVOKED_CERTIFICATE,
        };
        Error::explain(etype, self.reason())
    }

    /// Whether `e` ended a request for a lost credential, and which.
    fn of(e: &Error) -> Option<Revoked> {
        match e.etype() {
            t if *t == REVOKED_TOKEN => Some(Revoked::Token),
            t if *t == REVOKED_CERTIFICATE => Some(Revoked::Certificate),
            _ => None,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Revoked::Token => "its client token was revoked",
            Revoked::Certificate => "its client certificate is no longer trusted",
        }
    }
}

/// The request's `Authorization` value, if it has one.
fn authorization(session: &Session) -> Option<&[u8]> {
    session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
}

/// The client's address for a log line, or `-`.
fn client(session: &Session) -> impl fmt::Display + '_ {
    Shown(
        move |f: &mut fmt::Formatter<'_>| match session.client_addr() {
            Some(addr) => fmt::Display::fmt(addr, f),
            None => f.write_str("-"),
        },
    )
}

/// The raw target for a log line, with anything unprintable escaped, and
/// cut to `logging::LOGGED_TARGET_BYTES`: every line that shows a target
/// (refusals, errors, access lines) shows at most that much of it.
fn escaped_target(req: &RequestHeader) -> String {
    logging::capped(String::from_utf8_lossy(req.raw_path()).escape_debug())
}

/// Displays with a closure, so that a log line formats in place.
struct Shown<F>(F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Shown<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// The client's IP address, when the socket knows it.
fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The `group` label: the endpoint group, or "none" for paths outside every
/// group (forwarded under ALL only) and for local answers.
fn group_label(group: Option<Group>) -> &'static str {
    group.map_or("none", Group::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_must_come_at_64_kib_a_period() {
        let period = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // A byte every 3 s: within the first period, fine; past it, ended.
        let mut trickle = BodyPace::new(period, t0);
        for s in [0, 3, 6, 9] {
            assert!(trickle.took(1, at(s)), "{s}");
        }
        assert!(!trickle.took(1, at(12)));
        // 64 KiB in the first period, then a new period from the chunk that
        // ended it; a pause shorter than a period is fine.
        let mut steady = BodyPace::new(period, t0);
        assert!(steady.took(40_000, at(2)));
        assert!(steady.took(25_536, at(9)));
        assert!(steady.took(1, at(11)), "64 KiB in the first period");
        // The second period, from 11 s, takes 64 KiB too: a third from 21 s.
        assert!(steady.took(65_536, at(20)));
        assert!(steady.took(0, at(21)));
        // The third has 10 bytes when it ends.
        assert!(!steady.took(10, at(31)));
    }
}
