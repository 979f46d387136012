//! What the proxy answers itself, without the Task API: `/health`,
//! `/ready`, every refusal, and the limits. Pure: [`Next::of`] turns the
//! decision into what happens next, and [`Local::answer`] gives the exact
//! status, body, header and outcome of each local answer, so every one of
//! them is tested here without a connection. The proxy writes them, and the
//! connection guard (`crate::conn::guard`) writes its own from them too (a
//! header too large, a target Pingora would change, an outsider on the
//! telemetry listener: [`Answer::http1`]). The texts of every refusal the
//! decision makes are here ([`Refusal::reason`], [`BadHead::reason`],
//! [`Forbidden::reason`]), beside every other answer's body.

use crate::config::{
    ALLOW_FROM, MAX_BODY, MAX_IN_FLIGHT, MAX_IN_FLIGHT_PER_CLIENT, NOMAD_REGION, RATE_LIMIT,
};
use crate::decision::allowlist::Group;
use crate::decision::head::{BadHead, Decision, Forbidden};
use crate::decision::target::Refusal;
use std::borrow::Cow;
use std::fmt::Display;

/// What was decided about a request: the `decision` label of
/// `holepunch_requests_total` and the access log's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded to the Task API socket.
    Allowed,
    /// Refused for what it asks: a path no open group covers, another
    /// method, a forbidden address, page, region or agent, no client token.
    Denied,
    /// Refused for how it is asked: a bad target or head, a Host
    /// `HOLEPUNCH_ALLOWED_HOSTS` does not allow, a body over the limit.
    Refused,
    /// Refused by `HOLEPUNCH_RATE_LIMIT`, `HOLEPUNCH_MAX_IN_FLIGHT` or
    /// `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT`.
    Limited,
    /// `/health` and `/ready`, answered by the proxy.
    Local,
}

impl Outcome {
    /// The label, as dashboards and the access log know it. These strings
    /// never change.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Refused => "refused",
            Outcome::Limited => "limited",
            Outcome::Local => "local",
        }
    }
}

/// What happens to a request after the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Forward it (the client checks permitting); see [`Decision::Forward`].
    Forward {
        group: Option<Group>,
        origin_offset: usize,
    },
    /// Check the token and the socket, then answer [`Local::Ready`].
    Ready,
    /// Answer it locally.
    Answer(Local),
}

impl Next {
    pub fn of(decision: Decision) -> Next {
        Next::Answer(match decision {
            Decision::Forward {
                group,
                origin_offset,
            } => {
                return Next::Forward {
                    group,
                    origin_offset,
                }
            }
            Decision::Ready => return Next::Ready,
            Decision::Health => Local::Health,
            Decision::Deny { group } => Local::Deny(group),
            Decision::MethodNotAllowed => Local::MethodNotAllowed,
            Decision::NotFound => Local::NotFound,
            Decision::Refuse(refusal) => Local::Refuse(refusal),
            Decision::BadHead(bad) => Local::BadHead(bad),
            Decision::Forbid(forbidden) => Local::Forbid(forbidden),
            Decision::Misdirected => Local::Misdirected,
        })
    }

    /// The group for the metrics label: a forwarded or denied path's.
    pub fn group(&self) -> Option<Group> {
        match self {
            Next::Forward { group, .. } | Next::Answer(Local::Deny(group)) => *group,
            _ => None,
        }
    }

    /// `/health` and `/ready`: answered to anyone, with no client token and
    /// outside the rate limit.
    pub fn open(&self) -> bool {
        matches!(self, Next::Ready | Next::Answer(Local::Health))
    }
}

/// Why the proxy answers a request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// `/health`.
    Health,
    /// `/ready`, with the reason it is not, if it is not.
    Ready(Result<(), &'static str>),
    /// A path outside `/v1/`.
    NotFound,
    /// A method other than GET or HEAD on a group path, `/health` or `/ready`.
    MethodNotAllowed,
    /// A `/v1/` path no open group covers; the group that would, if any.
    Deny(Option<Group>),
    /// Refused by [`crate::decision::head`] for who asks or what the query reaches.
    Forbid(Forbidden),
    /// A Host `HOLEPUNCH_ALLOWED_HOSTS` does not allow.
    Misdirected,
    /// A head [`crate::decision::head`] refuses (a body, an upgrade, two Hosts).
    BadHead(BadHead),
    /// A target that breaks the path rules.
    Refuse(Refusal),
    /// Over `HOLEPUNCH_RATE_LIMIT`; seconds to the window's end.
    RateLimited { retry_after: u64 },
    /// No valid client token, when `HOLEPUNCH_CLIENT_TOKEN_FILE` is set.
    Unauthorized,
    /// A declared body over `HOLEPUNCH_MAX_BODY`.
    TooLarge { max_body: u64 },
    /// A request header over `max` bytes (the connection guard's limit).
    HeaderTooLarge { max: usize },
    /// `HOLEPUNCH_MAX_IN_FLIGHT` requests are already on the socket.
    Busy,
    /// This client already has `HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT`
    /// requests on the socket.
    BusyClient,
}

/// A plain-text response the proxy writes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Cow<'static, str>,
    /// The one header some answers carry besides `Content-Type` and
    /// `Content-Length`: `Allow`, `Retry-After` or `WWW-Authenticate`.
    pub header: Option<(&'static str, Cow<'static, str>)>,
    pub outcome: Outcome,
    /// Close the connection after it: the request's head broke a rule, or
    /// its body is too large to read past.
    pub close: bool,
}

impl Answer {
    fn new(status: u16, body: impl Into<Cow<'static, str>>, outcome: Outcome) -> Answer {
        Answer {
            status,
            body: body.into(),
            header: None,
            outcome,
            close: false,
        }
    }

    fn with(self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Answer {
        Answer {
            header: Some((name, value.into())),
            ..self
        }
    }

    fn closing(self) -> Answer {
        Answer {
            close: true,
            ..self
        }
    }

    /// The whole HTTP/1.1 response, as the connection guard writes it
    /// itself, before Pingora has a session: the same status, body and
    /// header as the proxy's, with `Connection: close` (the guard closes
    /// the connection after it), and no body when it answers a HEAD.
    pub fn http1(&self, head: bool) -> String {
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let header = match &self.header {
            Some((name, value)) => format!("{name}: {value}\r\n"),
            None => String::new(),
        };
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n{header}Connection: close\r\n\r\n{}",
            self.status,
            self.body.len(),
            if head { "" } else { &self.body }
        )
    }
}

impl Local {
    /// The response, exactly as the client gets it.
    pub fn answer(&self) -> Answer {
        use Outcome::{Denied, Limited, Refused};
        match self {
            Local::Health => Answer::new(200, "ok", Outcome::Local),
            Local::Ready(Ok(())) => Answer::new(200, "ready", Outcome::Local),
            Local::Ready(Err(why)) => Answer::new(503, format!("not ready: {why}"), Outcome::Local),
            Local::NotFound => Answer::new(404, "not found", Denied),
            Local::MethodNotAllowed => Answer::new(
                405,
                "method not allowed: this endpoint forwards only GET and HEAD",
                Denied,
            )
            .with("Allow", "GET, HEAD"),
            Local::Deny(group) => Answer::new(403, deny_body(*group), Denied),
            Local::Forbid(forbidden) => Answer::new(403, forbidden.reason(), Denied),
            Local::Misdirected => Answer::new(
                421,
                concat!(
                    "misdirected request: this Host is not one ",
                    crate::var_name!(ALLOWED_HOSTS),
                    " allows"
                ),
                Refused,
            ),
            Local::BadHead(bad) => bad_request(bad.reason()),
            Local::Refuse(refusal) => bad_request(refusal.reason()),
            Local::RateLimited { retry_after } => Answer::new(
                429,
                format!(
                    "too many requests: this address is over {RATE_LIMIT}; \
                     retry in {retry_after}s"
                ),
                Limited,
            )
            .with("Retry-After", retry_after.to_string()),
            Local::Unauthorized => Answer::new(
                401,
                "unauthorized: send Authorization: Bearer <client token>",
                Denied,
            )
            .with("WWW-Authenticate", "Bearer realm=\"nomad-holepunch\""),
            Local::TooLarge { max_body } => Answer::new(
                413,
                format!("payload too large: the limit is {max_body} bytes ({MAX_BODY})"),
                Refused,
            )
            .closing(),
            Local::HeaderTooLarge { max } => Answer::new(
                431,
                format!("request header fields too large: the limit is {max} bytes"),
                Refused,
            )
            .closing(),
            Local::Busy => Answer::new(
                503,
                concat!(
                    "service unavailable: ",
                    crate::var_name!(MAX_IN_FLIGHT),
                    " requests are already on the Nomad Task API; retry shortly"
                ),
                Limited,
            )
            .with("Retry-After", "1"),
            Local::BusyClient => Answer::new(
                503,
                concat!(
                    "service unavailable: this client address already has ",
                    crate::var_name!(MAX_IN_FLIGHT_PER_CLIENT),
                    " requests on the Nomad Task API; retry shortly"
                ),
                Limited,
            )
            .with("Retry-After", "1"),
        }
    }

    /// Whether this answer has an info line ([`Local::log_line`]).
    pub fn logged(&self) -> bool {
        !matches!(
            self,
            Local::Health
                | Local::Ready(Ok(()))
                | Local::NotFound
                | Local::MethodNotAllowed
                | Local::TooLarge { .. }
                | Local::HeaderTooLarge { .. }
        )
    }

    /// The info line for the operator's log, if this answer has one; the
    /// client's address, the method and the escaped target as given.
    pub fn log_line(
        &self,
        client: impl Display,
        method: impl Display,
        target: impl Display,
    ) -> Option<String> {
        let line = |what: &str, why: &str| {
            let sep = if why.is_empty() { "" } else { ": " };
            Some(format!("{what} {client} {method} {target}{sep}{why}"))
        };
        match self {
            Local::Ready(Err(why)) => Some(format!("not ready: {why}")),
            Local::Deny(_) => line("denied", ""),
            Local::Forbid(forbidden) => line("forbidden", &forbidden.reason()),
            Local::Misdirected => line(
                "misdirected",
                concat!("Host not in ", crate::var_name!(ALLOWED_HOSTS)),
            ),
            Local::BadHead(bad) => line("refused", bad.reason()),
            Local::Refuse(refusal) => line("refused", refusal.reason()),
            Local::RateLimited { .. } => Some(format!("rate limited {client} {target}")),
            Local::Unauthorized => line("unauthorized", ""),
            Local::Busy => line("limited", MAX_IN_FLIGHT),
            Local::BusyClient => line("limited", MAX_IN_FLIGHT_PER_CLIENT),
            Local::Health
            | Local::Ready(Ok(()))
            | Local::NotFound
            | Local::MethodNotAllowed
            | Local::TooLarge { .. }
            | Local::HeaderTooLarge { .. } => None,
        }
    }
}

impl Refusal {
    /// The text sent in the 400 response body and logged.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotOriginForm => "the request target must be a path starting with /",
            Refusal::BadAbsoluteForm => "malformed absolute-form request target",
            Refusal::AbsoluteFormNotForwarded => {
                "absolute-form request target for a path that is not forwarded"
            }
            Refusal::DotSegment => "dot segments (. or ..) are not allowed in the path",
            Refusal::EmptySegment => "empty path segments (//) are not allowed",
            Refusal::Backslash => "backslashes are not allowed in the path",
            Refusal::InvalidEscape => "invalid percent escape in the path",
            Refusal::EncodedDelimiter => {
                "percent-encoded /, \\, . or control bytes are not allowed in the path"
            }
            Refusal::DisallowedByte => "the path contains a byte that is not allowed there",
            Refusal::DisallowedQueryByte => "the query contains a byte that is not allowed there",
        }
    }
}

impl BadHead {
    /// The text of the 400 response and the log line.
    pub fn reason(self) -> &'static str {
        match self {
            BadHead::Body => {
                "this endpoint takes no request body: send no Transfer-Encoding and no \
                 Content-Length other than 0"
            }
            BadHead::Upgrade => "protocol upgrades (Upgrade) are not forwarded on this endpoint",
            BadHead::DuplicateHost => "more than one Host header",
        }
    }
}

impl Forbidden {
    /// The text of the 403 response and the log line.
    pub fn reason(&self) -> String {
        match self {
            Forbidden::Address => {
                format!("forbidden: your address is not in {ALLOW_FROM}")
            }
            Forbidden::CrossSite => "forbidden: requests from web pages (with an Origin header, \
                                     or Sec-Fetch-Site other than none) are not served: this \
                                     proxy adds a Nomad token to what it forwards"
                .to_string(),
            Forbidden::OtherRegion { asked, here } => format!(
                "forbidden: this proxy serves region {here:?} ({NOMAD_REGION}) and the request \
                 asks for region {asked:?}; set region: {here} in nomad_sd_configs, or the \
                 client's region setting"
            ),
            Forbidden::OtherAgent(param) => format!(
                "forbidden: {param} makes this agent fetch another agent's data; this proxy \
                 serves its own node only"
            ),
        }
    }
}

fn bad_request(reason: &str) -> Answer {
    Answer::new(400, format!("bad request: {reason}"), Outcome::Refused).closing()
}

fn deny_body(group: Option<Group>) -> Cow<'static, str> {
    match group {
        Some(g) => format!("forbidden: this path needs {}=true", g.flag()).into(),
        None => concat!(
            "forbidden: no HOLEPUNCH_ALLOW_* group covers this path (only ",
            crate::var_name!(ALLOW_ALL),
            " would allow it)"
        )
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer a client gets: status, body, the extra header, outcome,
    /// and whether the connection closes.
    fn sent(local: Local) -> (u16, String, Option<(&'static str, String)>, Outcome, bool) {
        let a = local.answer();
        let header = a.header.map(|(name, value)| (name, value.into_owned()));
        (a.status, a.body.into_owned(), header, a.outcome, a.close)
    }

    fn plain(
        status: u16,
        body: &str,
        outcome: Outcome,
    ) -> (u16, String, Option<(&'static str, String)>, Outcome, bool) {
        (status, body.to_string(), None, outcome, false)
    }

    #[test]
    fn outcome_labels_never_change() {
        // Dashboards and the access log read these: byte for byte.
        let labels = [
            (Outcome::Allowed, "allowed"),
            (Outcome::Denied, "denied"),
            (Outcome::Refused, "refused"),
            (Outcome::Limited, "limited"),
            (Outcome::Local, "local"),
        ];
        for (outcome, label) in labels {
            assert_eq!(outcome.label(), label, "{outcome:?}");
        }
    }

    #[test]
    fn local_routes() {
        use Outcome::Local as L;
        assert_eq!(sent(Local::Health), plain(200, "ok", L));
        assert_eq!(sent(Local::Ready(Ok(()))), plain(200, "ready", L));
        assert_eq!(
            sent(Local::Ready(Err("no workload token loaded"))),
            plain(503, "not ready: no workload token loaded", L)
        );
    }

    #[test]
    fn refusals_of_what_is_asked() {
        use Outcome::Denied;
        assert_eq!(sent(Local::NotFound), plain(404, "not found", Denied));
        assert_eq!(
            sent(Local::MethodNotAllowed),
            (
                405,
                "method not allowed: this endpoint forwards only GET and HEAD".to_string(),
                Some(("Allow", "GET, HEAD".to_string())),
                Denied,
                false
            )
        );
        assert_eq!(
            sent(Local::Deny(Some(Group::Nodes))),
            plain(
                403,
                "forbidden: this path needs HOLEPUNCH_ALLOW_NODES=true",
                Denied
            )
        );
        assert_eq!(
            sent(Local::Deny(None)),
            plain(
                403,
                "forbidden: no HOLEPUNCH_ALLOW_* group covers this path \
                 (only HOLEPUNCH_ALLOW_ALL would allow it)",
                Denied
            )
        );
        for forbidden in [
            Forbidden::Address,
            Forbidden::CrossSite,
            Forbidden::OtherAgent("node_id"),
            Forbidden::OtherRegion {
                asked: "asia".to_string(),
                here: "europe".to_string(),
            },
        ] {
            let reason = forbidden.reason();
            assert_eq!(sent(Local::Forbid(forbidden)), plain(403, &reason, Denied));
        }
        assert_eq!(
            sent(Local::Unauthorized),
            (
                401,
                "unauthorized: send Authorization: Bearer <client token>".to_string(),
                Some((
                    "WWW-Authenticate",
                    "Bearer realm=\"nomad-holepunch\"".to_string()
                )),
                Denied,
                false
            )
        );
    }

    #[test]
    fn refusals_of_how_it_is_asked_close_the_connection() {
        use Outcome::Refused;
        // A Host the list does not allow: the request itself is sound.
        assert_eq!(
            sent(Local::Misdirected),
            plain(
                421,
                "misdirected request: this Host is not one HOLEPUNCH_ALLOWED_HOSTS allows",
                Refused
            )
        );
        let closing = |body: String| (400, body, None, Refused, true);
        for bad in [BadHead::Body, BadHead::Upgrade, BadHead::DuplicateHost] {
            let body = format!("bad request: {}", bad.reason());
            assert_eq!(sent(Local::BadHead(bad)), closing(body), "{bad:?}");
        }
        for refusal in [Refusal::DotSegment, Refusal::AbsoluteFormNotForwarded] {
            let body = format!("bad request: {}", refusal.reason());
            assert_eq!(sent(Local::Refuse(refusal)), closing(body), "{refusal:?}");
        }
        assert_eq!(
            sent(Local::TooLarge { max_body: 1024 }),
            (
                413,
                "payload too large: the limit is 1024 bytes (HOLEPUNCH_MAX_BODY)".to_string(),
                None,
                Refused,
                true
            )
        );
    }

    #[test]
    fn limits_say_when_to_retry() {
        use Outcome::Limited;
        assert_eq!(
            sent(Local::RateLimited { retry_after: 7 }),
            (
                429,
                "too many requests: this address is over HOLEPUNCH_RATE_LIMIT; retry in 7s"
                    .to_string(),
                Some(("Retry-After", "7".to_string())),
                Limited,
                false
            )
        );
        assert_eq!(
            sent(Local::Busy),
            (
                503,
                "service unavailable: HOLEPUNCH_MAX_IN_FLIGHT requests are already on the \
                 Nomad Task API; retry shortly"
                    .to_string(),
                Some(("Retry-After", "1".to_string())),
                Limited,
                false
            )
        );
        assert_eq!(
            sent(Local::BusyClient),
            (
                503,
                "service unavailable: this client address already has \
                 HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT requests on the Nomad Task API; \
                 retry shortly"
                    .to_string(),
                Some(("Retry-After", "1".to_string())),
                Limited,
                false
            )
        );
    }

    #[test]
    fn log_lines() {
        let line = |local: Local| local.log_line("192.0.2.1:5", "GET", "/v1/x");
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            line(Local::Deny(None)),
            some("denied 192.0.2.1:5 GET /v1/x")
        );
        assert_eq!(
            line(Local::Unauthorized),
            some("unauthorized 192.0.2.1:5 GET /v1/x")
        );
        assert_eq!(
            line(Local::Forbid(Forbidden::Address)),
            some(&format!(
                "forbidden 192.0.2.1:5 GET /v1/x: {}",
                Forbidden::Address.reason()
            ))
        );
        assert_eq!(
            line(Local::Misdirected),
            some("misdirected 192.0.2.1:5 GET /v1/x: Host not in HOLEPUNCH_ALLOWED_HOSTS")
        );
        assert_eq!(
            line(Local::BadHead(BadHead::Upgrade)),
            some(&format!(
                "refused 192.0.2.1:5 GET /v1/x: {}",
                BadHead::Upgrade.reason()
            ))
        );
        assert_eq!(
            line(Local::Refuse(Refusal::DotSegment)),
            some(&format!(
                "refused 192.0.2.1:5 GET /v1/x: {}",
                Refusal::DotSegment.reason()
            ))
        );
        assert_eq!(
            line(Local::Busy),
            some("limited 192.0.2.1:5 GET /v1/x: HOLEPUNCH_MAX_IN_FLIGHT")
        );
        assert_eq!(
            line(Local::BusyClient),
            some("limited 192.0.2.1:5 GET /v1/x: HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT")
        );
        assert_eq!(
            line(Local::RateLimited { retry_after: 1 }),
            some("rate limited 192.0.2.1:5 /v1/x")
        );
        assert_eq!(line(Local::Ready(Err("why"))), some("not ready: why"));
        // Answers that are not refusals, or that say all in their status.
        for quiet in [
            Local::Health,
            Local::Ready(Ok(())),
            Local::NotFound,
            Local::MethodNotAllowed,
            Local::TooLarge { max_body: 1 },
        ] {
            assert_eq!(line(quiet.clone()), None, "{quiet:?}");
            assert!(!quiet.logged(), "{quiet:?}");
        }
        for logged in [
            Local::Ready(Err("why")),
            Local::Deny(None),
            Local::Forbid(Forbidden::Address),
            Local::Misdirected,
            Local::BadHead(BadHead::Upgrade),
            Local::Refuse(Refusal::DotSegment),
            Local::RateLimited { retry_after: 1 },
            Local::Unauthorized,
            Local::Busy,
            Local::BusyClient,
        ] {
            assert!(line(logged.clone()).is_some(), "{logged:?}");
            assert!(logged.logged(), "{logged:?}");
        }
    }

    #[test]
    fn what_follows_each_decision() {
        let forward = Decision::Forward {
            group: Some(Group::Metrics),
            origin_offset: 7,
        };
        let next = Next::of(forward);
        assert_eq!(
            next,
            Next::Forward {
                group: Some(Group::Metrics),
                origin_offset: 7
            }
        );
        assert_eq!(next.group(), Some(Group::Metrics));
        assert!(!next.open());
        assert_eq!(Next::of(Decision::Ready), Next::Ready);
        assert!(Next::of(Decision::Ready).open());
        assert!(Next::of(Decision::Health).open());
        let deny = Next::of(Decision::Deny {
            group: Some(Group::AgentSelf),
        });
        assert_eq!(deny, Next::Answer(Local::Deny(Some(Group::AgentSelf))));
        assert_eq!(deny.group(), Some(Group::AgentSelf), "the metrics label");
        let answered = [
            (Decision::Health, Local::Health),
            (Decision::NotFound, Local::NotFound),
            (Decision::MethodNotAllowed, Local::MethodNotAllowed),
            (Decision::Misdirected, Local::Misdirected),
            (
                Decision::Refuse(Refusal::Backslash),
                Local::Refuse(Refusal::Backslash),
            ),
            (
                Decision::BadHead(BadHead::Body),
                Local::BadHead(BadHead::Body),
            ),
            (
                Decision::Forbid(Forbidden::CrossSite),
                Local::Forbid(Forbidden::CrossSite),
            ),
        ];
        for (decision, local) in answered {
            let next = Next::of(decision);
            assert_eq!(next, Next::Answer(local));
            assert_eq!(next.group(), None);
        }
        // Everything but /health and /ready needs the client checks.
        assert!(!Next::of(Decision::NotFound).open());
    }

    /// The 400 texts: each names what was wrong, and no two are alike.
    #[test]
    fn target_refusal_texts() {
        use Refusal::*;
        let table = [
            (
                NotOriginForm,
                "the request target must be a path starting with /",
            ),
            (BadAbsoluteForm, "malformed absolute-form request target"),
            (
                AbsoluteFormNotForwarded,
                "absolute-form request target for a path that is not forwarded",
            ),
            (
                DotSegment,
                "dot segments (. or ..) are not allowed in the path",
            ),
            (EmptySegment, "empty path segments (//) are not allowed"),
            (Backslash, "backslashes are not allowed in the path"),
            (InvalidEscape, "invalid percent escape in the path"),
            (
                EncodedDelimiter,
                "percent-encoded /, \\, . or control bytes are not allowed in the path",
            ),
            (
                DisallowedByte,
                "the path contains a byte that is not allowed there",
            ),
            (
                DisallowedQueryByte,
                "the query contains a byte that is not allowed there",
            ),
        ];
        for (refusal, text) in table {
            assert_eq!(refusal.reason(), text, "{refusal:?}");
        }
    }

    /// The 400 and 403 texts the README's request table quotes.
    #[test]
    fn head_refusal_texts() {
        assert_eq!(
            BadHead::Body.reason(),
            "this endpoint takes no request body: send no Transfer-Encoding and no \
             Content-Length other than 0"
        );
        assert_eq!(
            BadHead::Upgrade.reason(),
            "protocol upgrades (Upgrade) are not forwarded on this endpoint"
        );
        assert_eq!(BadHead::DuplicateHost.reason(), "more than one Host header");
        assert_eq!(
            Forbidden::Address.reason(),
            "forbidden: your address is not in HOLEPUNCH_ALLOW_FROM"
        );
        assert!(Forbidden::CrossSite
            .reason()
            .starts_with("forbidden: requests from web pages (with an Origin header, or"));
        assert_eq!(
            Forbidden::OtherRegion {
                asked: "global".into(),
                here: "europe".into()
            }
            .reason(),
            "forbidden: this proxy serves region \"europe\" (NOMAD_REGION) and the request \
             asks for region \"global\"; set region: europe in nomad_sd_configs, or the \
             client's region setting"
        );
        assert_eq!(
            Forbidden::OtherAgent("server_id").reason(),
            "forbidden: server_id makes this agent fetch another agent's data; this proxy \
             serves its own node only"
        );
    }

    /// What the connection guard writes itself: the proxy's answers, whole,
    /// with `Connection: close`; the same bytes the guard wrote before it
    /// took them from here.
    #[test]
    fn the_guards_answers_are_the_proxys() {
        let too_large = Local::HeaderTooLarge { max: 65536 };
        assert_eq!(
            sent(too_large.clone()),
            (
                431,
                "request header fields too large: the limit is 65536 bytes".to_string(),
                None,
                Outcome::Refused,
                true
            )
        );
        assert!(!too_large.logged());
        assert_eq!(too_large.log_line("c", "GET", "/"), None);
        let body = "request header fields too large: the limit is 65536 bytes";
        assert_eq!(
            too_large.answer().http1(false),
            format!(
                "HTTP/1.1 431 Request Header Fields Too Large\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
        let body = format!("bad request: {}", Refusal::DisallowedByte.reason());
        let bad = Local::Refuse(Refusal::DisallowedByte).answer();
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        assert_eq!(bad.http1(false), format!("{head}{body}"));
        assert_eq!(bad.http1(true), head, "a HEAD gets no body");
        let body = Forbidden::Address.reason();
        let forbidden = Local::Forbid(Forbidden::Address).answer();
        assert_eq!(forbidden.outcome, Outcome::Denied);
        assert_eq!(
            forbidden.http1(false),
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
        // An answer with its header carries it before `Connection`.
        let busy = Local::Busy.answer();
        let tail = format!(
            "Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
            busy.body.len()
        );
        assert!(busy.http1(true).ends_with(&tail), "{}", busy.http1(true));
    }
}
