//! Writing the proxy's own responses and mapping failures to answers:
//! a plain-text answer ([`respond`]), a shared metrics response
//! ([`respond_shared`]), the status and body for a request that failed
//! after it was allowed ([`error_response`]) and the `kind` it is counted
//! under ([`upstream_error_kind`]). The mappings are pure, tested here
//! without a socket.

use crate::proxy::coalesce::{accepts_gzip, Shared, GZIP_LEVEL};
use crate::telemetry;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::modules::http::compression::ResponseCompression;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::borrow::Cow;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// Answers with a response another request fetched; `age` when it came
/// from the micro-cache. The body is gzipped once per response, not once
/// per client: a client that accepts gzip gets the shared compressed bytes.
pub(super) async fn respond_shared(
    session: &mut Session,
    shared: &Shared,
    age: Option<u64>,
) -> Result<()> {
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
pub(super) fn enable_compression(session: &mut Session) {
    let req = session.downstream_session.req_header();
    let modules = &mut session.downstream_modules_ctx;
    if let Some(c) = modules.get_mut::<ResponseCompression>() {
        c.adjust_level(GZIP_LEVEL);
        c.request_filter(req);
    }
}

/// The status and body for a request that failed after it was allowed.
/// Status 0 means the client is gone and gets nothing.
pub(super) fn error_response(e: &Error) -> (u16, &'static str) {
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
pub(super) fn count_upstream_error(e: &Error) {
    if let Some(kind) = upstream_error_kind(e) {
        telemetry::metrics()
            .upstream_errors
            .with_label_values(&[kind])
            .inc();
    }
}

/// The `kind` label of a failure on the socket (one of
/// [`telemetry::UPSTREAM_ERROR_KINDS`]); `None` for a failure that is not
/// the socket's (the client's, or a credential the request lost). Pure.
pub(super) fn upstream_error_kind(e: &Error) -> Option<&'static str> {
    if e.esource() != &ErrorSource::Upstream || Revoked::of(e).is_some() {
        return None;
    }
    Some(match e.etype() {
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | SocketError | BindError | InvalidCert => "connect",
        ReadTimedout | WriteTimedout => "timeout",
        ConnectionClosed | ReadError | WriteError => "closed",
        _ => "other",
    })
}

/// Writes a complete plain-text response, with at most one header besides
/// its type and length.
pub(super) async fn respond(
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

/// What a request in flight lost (`Holepunch::in_flight_check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Revoked {
    /// Its client token is no longer in the list in use.
    Token,
    /// Its client certificate is no longer trusted.
    Certificate,
}

/// The errors that end such a request, told apart by their type.
const REVOKED_TOKEN: ErrorType = ErrorType::Custom("client token revoked");
const REVOKED_CERTIFICATE: ErrorType = ErrorType::Custom("client certificate no longer trusted");

impl Revoked {
    pub(super) fn error(self) -> Box<Error> {
        let etype = match self {
            Revoked::Token => REVOKED_TOKEN,
            Revoked::Certificate => REVOKED_CERTIFICATE,
        };
        Error::explain(etype, self.reason())
    }

    /// Whether `e` ended a request for a lost credential, and which.
    pub(super) fn of(e: &Error) -> Option<Revoked> {
        match e.etype() {
            t if *t == REVOKED_TOKEN => Some(Revoked::Token),
            t if *t == REVOKED_CERTIFICATE => Some(Revoked::Certificate),
            _ => None,
        }
    }

    pub(super) fn reason(self) -> &'static str {
        match self {
            Revoked::Token => "its client token was revoked",
            Revoked::Certificate => "its client certificate is no longer trusted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every failure after a request was allowed, with the answer its
    /// client gets: Pingora's error types by where they happened.
    #[test]
    fn failures_map_to_answers() {
        let cases: [(Box<Error>, (u16, &str)); 13] = [
            (
                Error::new_down(HTTPStatus(413)),
                (413, "payload too large (HOLEPUNCH_MAX_BODY)"),
            ),
            (
                Error::new_down(HTTPStatus(408)),
                (
                    408,
                    "request timeout: the request body came slower than 64 KiB per \
                     HOLEPUNCH_CLIENT_HEADER_TIMEOUT",
                ),
            ),
            (Error::new_up(HTTPStatus(404)), (404, "")),
            (
                Error::new_up(ConnectTimedout),
                (
                    504,
                    "gateway timeout: the Nomad Task API did not answer in time",
                ),
            ),
            (
                Error::new_up(ReadTimedout),
                (
                    504,
                    "gateway timeout: the Nomad Task API did not answer in time",
                ),
            ),
            (
                Error::new_up(ConnectRefused),
                (
                    502,
                    "bad gateway: the Nomad Task API socket is not available",
                ),
            ),
            (
                Error::new_up(ConnectionClosed),
                (
                    502,
                    "bad gateway: the Nomad Task API socket is not available",
                ),
            ),
            // The client is gone: nothing to write.
            (Error::new_down(ReadError), (0, "")),
            (Error::new_down(WriteTimedout), (0, "")),
            (Error::new_down(ConnectionClosed), (0, "")),
            (Error::new_down(InvalidHTTPHeader), (400, "bad request")),
            (Error::new_in(InternalError), (500, "internal error")),
            (Error::new(ConnectError), (500, "internal error")),
        ];
        for (e, want) in cases {
            assert_eq!(error_response(&e), want, "{e}");
        }
    }

    /// A request ended for a lost credential: the revoked token gets
    /// `Local::Unauthorized` (written whole by `fail_to_proxy`), a
    /// certificate no longer trusted nothing at all; wherever the error
    /// was raised.
    #[test]
    fn a_lost_credential_maps_to_its_own_answer() {
        for e in [
            Revoked::Token.error(),
            Revoked::Token.error().into_up(),
            Revoked::Token.error().into_down(),
        ] {
            assert_eq!(Revoked::of(&e), Some(Revoked::Token));
            assert_eq!(error_response(&e), (401, ""));
            assert_eq!(upstream_error_kind(&e), None);
        }
        for e in [
            Revoked::Certificate.error(),
            Revoked::Certificate.error().into_up(),
        ] {
            assert_eq!(Revoked::of(&e), Some(Revoked::Certificate));
            assert_eq!(error_response(&e), (0, ""));
            assert_eq!(upstream_error_kind(&e), None);
        }
        assert_eq!(Revoked::of(&Error::new_up(ReadError)), None);
    }

    /// `holepunch_upstream_errors_total`'s `kind`: only the socket's
    /// failures count, each under one of the kinds the metric is created
    /// with.
    #[test]
    fn socket_failures_are_counted_by_kind() {
        let cases = [
            (ConnectTimedout, "connect"),
            (ConnectRefused, "connect"),
            (ConnectNoRoute, "connect"),
            (ConnectError, "connect"),
            (SocketError, "connect"),
            (ReadTimedout, "timeout"),
            (WriteTimedout, "timeout"),
            (ConnectionClosed, "closed"),
            (ReadError, "closed"),
            (WriteError, "closed"),
            (InvalidHTTPHeader, "other"),
            (HTTPStatus(502), "other"),
        ];
        for (etype, kind) in cases {
            let e = Error::new_up(etype.clone());
            assert_eq!(upstream_error_kind(&e), Some(kind), "{e}");
            assert!(telemetry::UPSTREAM_ERROR_KINDS.contains(&kind));
            // The same failure on the client's side, or inside, is not
            // the socket's.
            assert_eq!(upstream_error_kind(&Error::new_down(etype.clone())), None);
            assert_eq!(upstream_error_kind(&Error::new_in(etype)), None);
        }
    }
}
