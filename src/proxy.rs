//! The Pingora proxy: `request_filter` checks the client (when client tokens
//! are set), applies the allowlist and answers everything that is not
//! forwarded; `upstream_peer` is the Task API socket; and
//! `upstream_request_filter` swaps the client's credentials for the workload
//! token. Responses stream back untouched, headers included.

use crate::allowlist::{decide, Allowlist, Decision, Group};
use crate::client_auth::ClientTokens;
use crate::coalesce::{Coalescer, Join, Leader, Shared};
use crate::shutdown::{InFlight, InFlightGuard};
use crate::telemetry::{self, status_class};
use crate::token::Token;
use async_trait::async_trait;
use bytes::Bytes;
use log::{debug, info, warn};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::{ResponseCompression, ResponseCompressionBuilder};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long connecting to the Task API socket may take. A local socket
/// connects at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// How long `/ready` waits for the socket to accept a connection.
const READY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// gzip level for metrics responses: level 1 already shrinks Prometheus text
/// about tenfold, at a fraction of the CPU of the higher levels.
const METRICS_COMPRESSION_LEVEL: u32 = 1;

/// The proxy. One per process, shared by every request.
pub struct Holepunch {
    allow: Allowlist,
    peer: HttpPeer,
    socket_path: String,
    token: Arc<Token>,
    client_tokens: Option<Arc<ClientTokens>>,
    max_body: u64,
    upstream_timeout: Duration,
    coalescer: Coalescer,
    in_flight: Arc<InFlight>,
}

/// What a [`Holepunch`] is built from.
pub struct Settings {
    /// The open groups.
    pub allow: Allowlist,
    /// The Task API socket.
    pub socket_path: String,
    /// How long the Task API may take to send the response header, and at
    /// most between two reads of the body.
    pub upstream_timeout: Duration,
    /// The largest request body forwarded.
    pub max_body: u64,
    pub token: Arc<Token>,
    /// When set, clients must present one of these bearer tokens.
    pub client_tokens: Option<Arc<ClientTokens>>,
    /// How long metrics responses are served from memory, if at all.
    pub metrics_cache_ttl: Option<Duration>,
    pub in_flight: Arc<InFlight>,
}

impl Holepunch {
    pub fn new(settings: Settings) -> Result<Self> {
        let mut peer = HttpPeer::new_uds(&settings.socket_path, false, String::new())?;
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = Some(settings.upstream_timeout);
        peer.options.write_timeout = Some(settings.upstream_timeout);
        Ok(Holepunch {
            allow: settings.allow,
            peer,
            socket_path: settings.socket_path,
            token: settings.token,
            client_tokens: settings.client_tokens,
            max_body: settings.max_body,
            upstream_timeout: settings.upstream_timeout,
            coalescer: Coalescer::new(settings.metrics_cache_ttl),
            in_flight: settings.in_flight,
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
    /// What was decided, for the metrics and the access log: allowed,
    /// denied, refused, or local (`/health`, `/ready`).
    outcome: &'static str,
    /// When the request was sent on the socket.
    upstream_sent: Option<Instant>,
    /// Request body bytes forwarded so far.
    body_bytes: u64,
    /// Whether this request was already retried on a fresh connection.
    retried: bool,
    /// Set when this request fetches a metrics response for others too.
    leader: Option<Leader>,
}

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
            outcome: "denied",
            upstream_sent: None,
            body_bytes: 0,
            retried: false,
            leader: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let decision = decide(&self.allow, &req.method, req.raw_path());
        if let Decision::Forward { group, .. } | Decision::Deny { group } = decision {
            ctx.group = group;
        }
        ctx.outcome = match decision {
            Decision::Forward { .. } => "allowed",
            Decision::Health | Decision::Ready => "local",
            Decision::Refuse(_) => "refused",
            Decision::Deny { .. } | Decision::NotFound | Decision::MethodNotAllowed => "denied",
        };
        let local = matches!(decision, Decision::Health | Decision::Ready);
        if !local && !self.client_allowed(session) {
            ctx.outcome = "denied";
            let req = session.req_header();
            info!(
                "unauthorized {} {} {}",
                client(session),
                req.method,
                escaped_target(req)
            );
            respond(
                session,
                401,
                "unauthorized: send Authorization: Bearer <client token>".into(),
                &[("WWW-Authenticate", "Bearer realm=\"nomad-holepunch\"")],
            )
            .await?;
            return Ok(true);
        }
        let (status, body): (u16, Cow<'static, str>) = match decision {
            Decision::Forward {
                group,
                origin_offset,
            } => {
                if declared_length(req).is_some_and(|len| len > self.max_body) {
                    ctx.outcome = "refused";
                    session.set_keepalive(None);
                    let body = format!(
                        "payload too large: the limit is {} bytes (HOLEPUNCH_MAX_BODY)",
                        self.max_body
                    );
                    respond(session, 413, body.into(), &[]).await?;
                    return Ok(true);
                }
                if origin_offset > 0 {
                    // Absolute-form: forward exactly the path that was decided on.
                    let origin = req.raw_path()[origin_offset..].to_vec();
                    session.req_header_mut().set_raw_path(&origin)?;
                }
                if group == Some(Group::Metrics) {
                    // The Task API never compresses; a scrape is 50-500 KB of text.
                    // The module skipped reading Accept-Encoding while it was off,
                    // so it gets the request header again once it is on.
                    let req = session.downstream_session.req_header();
                    let modules = &mut session.downstream_modules_ctx;
                    if let Some(c) = modules.get_mut::<ResponseCompression>() {
                        c.adjust_level(METRICS_COMPRESSION_LEVEL);
                        c.request_filter(req);
                    }
                    if session.req_header().method == http::Method::GET {
                        return self.coalesce(session, ctx).await;
                    }
                }
                return Ok(false);
            }
            Decision::Health => (200, "ok".into()),
            Decision::Ready => match self.ready().await {
                Ok(()) => (200, "ready".into()),
                Err(why) => {
                    info!("not ready: {why}");
                    (503, format!("not ready: {why}").into())
                }
            },
            Decision::NotFound => (404, "not found".into()),
            Decision::MethodNotAllowed => (
                405,
                "method not allowed: this endpoint forwards only GET and HEAD".into(),
            ),
            Decision::Deny { group } => {
                info!(
                    "denied {} {} {}",
                    client(session),
                    req.method,
                    escaped_target(req)
                );
                (403, deny_body(group))
            }
            Decision::Refuse(refusal) => {
                info!(
                    "refused {} {} {}: {}",
                    client(session),
                    req.method,
                    escaped_target(req),
                    refusal.reason()
                );
                session.set_keepalive(None);
                (400, format!("bad request: {}", refusal.reason()).into())
            }
        };
        let headers: &[(&str, &str)] = match decision {
            Decision::MethodNotAllowed => &[("Allow", "GET, HEAD")],
            _ => &[],
        };
        respond(session, status, body, headers).await?;
        Ok(true)
    }

    /// Counts the body as it streams and stops it past the limit, for
    /// bodies whose length was not declared up front.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > self.max_body {
                return Error::e_explain(
                    HTTPStatus(413),
                    format!("request body over {} bytes", self.max_body),
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            telemetry::metrics()
                .upstream_duration
                .with_label_values(&[group_label(ctx.group)])
                .observe(sent.elapsed().as_secs_f64());
        }
        if let Some(leader) = ctx.leader.as_mut() {
            leader.capture_header(upstream_response);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(leader) = ctx.leader.as_mut() {
            if let Some(chunk) = body {
                leader.capture_body(chunk);
            }
            if end_of_stream {
                if let Some(leader) = ctx.leader.take() {
                    leader.publish();
                }
            }
        }
        Ok(None)
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
        upstream_request.insert_header("X-Nomad-Token", self.token.header_value())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = error_response(e);
        if e.esource() == &ErrorSource::Upstream {
            let kind = match e.etype() {
                ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
                | ConnectProxyFailure | SocketError | BindError | InvalidCert => "connect",
                ReadTimedout | WriteTimedout => "timeout",
                ConnectionClosed | ReadError | WriteError => "closed",
                _ => "other",
            };
            telemetry::metrics()
                .upstream_errors
                .with_label_values(&[kind])
                .inc();
        }
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
            if let Err(write_err) = respond(session, code, body.into(), &[]).await {
                debug!("could not send the {code} response: {write_err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
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
        telemetry::metrics()
            .requests
            .with_label_values(&[group, ctx.outcome, status_class(status)])
            .inc();
        if log::log_enabled!(target: "access", log::Level::Debug) {
            debug!(
                target: "access",
                "{} {} {} {} {} group={} {:.3}ms",
                client(session),
                session.req_header().method,
                escaped_target(session.req_header()),
                status,
                ctx.outcome,
                group,
                ctx.started.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
}

/// The status and body for a request that failed after it was allowed.
/// Status 0 means the client is gone and gets nothing.
fn error_response(e: &Error) -> (u16, &'static str) {
    match (e.etype(), e.esource()) {
        (HTTPStatus(413), _) => (413, "payload too large (HOLEPUNCH_MAX_BODY)"),
        (HTTPStatus(code), _) => (*code, ""),
        (ConnectTimedout | ReadTimedout | WriteTimedout, ErrorSource::Upstream) => (
            504,
            "gateway timeout: the Nomad Task API did not answer in time",
        ),
        (_, ErrorSource::Upstream) => (
            502,
            "bad gateway: the Nomad Task API socket is not available",
        ),
        (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => (0, ""),
        (_, ErrorSource::Downstream) => (400, "bad request"),
        _ => (500, "internal error"),
    }
}

/// The `group` label: the endpoint group, or "none" for paths outside every
/// group (forwarded under ALL only) and for local answers.
fn group_label(group: Option<Group>) -> &'static str {
    group.map_or("none", Group::name)
}

fn deny_body(group: Option<Group>) -> Cow<'static, str> {
    match group {
        Some(g) => format!("forbidden: this path needs {}=true", g.flag()).into(),
        None => "forbidden: no HOLEPUNCH_ALLOW_* group covers this path \
                 (only HOLEPUNCH_ALLOW_ALL would allow it)"
            .into(),
    }
}

impl Holepunch {
    /// Joins a metrics GET with identical ones. Returns `Ok(true)` when it
    /// was answered from another request's response (or the micro-cache), and
    /// `Ok(false)` when it goes upstream itself (as the leader, or because the
    /// leader had nothing to share).
    async fn coalesce(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let accept = req.headers.get(http::header::ACCEPT).map(|v| v.as_bytes());
        let key = Coalescer::key(req.raw_path(), accept);
        let scrapes = &telemetry::metrics().scrapes;
        let shared = match self.coalescer.join(key) {
            Join::Leader(leader) => {
                ctx.leader = Some(leader);
                scrapes.with_label_values(&["upstream"]).inc();
                return Ok(false);
            }
            Join::Cached(shared) => {
                scrapes.with_label_values(&["cached"]).inc();
                let age = shared.created.elapsed().as_secs();
                respond_shared(session, &shared, Some(age)).await?;
                return Ok(true);
            }
            Join::Follower(mut rx) => {
                // The leader's own timeouts bound this; the margin is a backstop.
                let wait = self.upstream_timeout + CONNECT_TIMEOUT;
                let ready = rx.borrow().clone();
                match ready {
                    Some(shared) => Some(shared),
                    None => match pingora::time::timeout(wait, rx.changed()).await {
                        Ok(Ok(())) => rx.borrow().clone(),
                        _ => None,
                    },
                }
            }
        };
        match shared {
            Some(shared) => {
                scrapes.with_label_values(&["coalesced"]).inc();
                respond_shared(session, &shared, None).await?;
                Ok(true)
            }
            None => {
                scrapes.with_label_values(&["upstream"]).inc();
                Ok(false)
            }
        }
    }

    /// Whether the proxy can serve: a workload token is loaded and the
    /// socket accepts a connection. No request is sent, so this costs the
    /// Nomad servers nothing. The reason names no path: it is for clients.
    async fn ready(&self) -> std::result::Result<(), &'static str> {
        if self.token.header_value().is_empty() {
            return Err("no workload token loaded");
        }
        let connect = tokio::net::UnixStream::connect(&self.socket_path);
        match pingora::time::timeout(READY_CONNECT_TIMEOUT, connect).await {
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

    /// Whether the client may use the proxy: always, unless client tokens
    /// are set, and then only with one of them.
    fn client_allowed(&self, session: &Session) -> bool {
        self.client_tokens.as_ref().is_none_or(|tokens| {
            let auth = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION);
            tokens.allows(auth.map(|v| v.as_bytes()))
        })
    }
}

/// Answers with a response another request fetched; `age` when it came
/// from the micro-cache.
async fn respond_shared(session: &mut Session, shared: &Shared, age: Option<u64>) -> Result<()> {
    let mut header = shared.header.clone();
    if let Some(age) = age {
        header.insert_header("Age", age)?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(shared.body.clone()), true)
        .await
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

/// Writes a complete plain-text response.
async fn respond(
    session: &mut Session,
    status: u16,
    body: Cow<'static, str>,
    headers: &[(&'static str, &'static str)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("Content-Type", TEXT_PLAIN)?;
    resp.insert_header("Content-Length", body.len())?;
    for (name, value) in headers {
        resp.insert_header(*name, *value)?;
    }
    // A request body we did not read would be taken for the next request.
    if !session.is_body_empty() {
        session.set_keepalive(None);
    }
    let body = match body {
        Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
        Cow::Owned(s) => Bytes::from(s),
    };
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

fn client(session: &Session) -> String {
    session
        .client_addr()
        .map_or_else(|| "-".to_string(), |a| a.to_string())
}

/// The raw target for a log line, with anything unprintable escaped.
fn escaped_target(req: &RequestHeader) -> String {
    String::from_utf8_lossy(req.raw_path())
        .escape_debug()
        .to_string()
}
