//! The whole request decision ([`decide_request`]): the target's form and
//! the allowlist ([`decide_target`]), then what the rest of the request head
//! may carry. Who asks (`HOLEPUNCH_ALLOW_FROM`), whether a web page asks
//! (`Origin`, `Sec-Fetch-Site`), which Host it was sent to
//! (`HOLEPUNCH_ALLOWED_HOSTS`), and, on the read-only groups, no body, no
//! upgrade, no other region and no other agent. The refusals only the head
//! makes ([`BadHead`], [`Forbidden`]) are here too; the texts of every
//! refusal are beside the other answers' bodies (`crate::proxy::answer`).
//!
//! Pure: [`decide_request`] reads the method, the target (parsed once, by
//! the caller, with [`crate::decision::target::parse_target`]), the headers
//! (in one pass) and the client's address, and returns a [`Decision`]. The
//! proxy acts on it; nothing here does I/O or keeps state.

use crate::decision::allowlist::{decide_path, Allowlist, Group, Route};
use crate::decision::cidr::{admits, AddrSet};
use crate::decision::hosts::HostList;
use crate::decision::query::go_query_pairs;
use crate::decision::target::{absolute_authority, Refusal, Target};
use http::header::{HeaderMap, CONTENT_LENGTH, HOST, ORIGIN, TRANSFER_ENCODING, UPGRADE};
use http::Method;
use std::net::IpAddr;

/// The rules that do not change while the proxy runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// The open groups, and ALL.
    pub allow: Allowlist,
    /// `HOLEPUNCH_ALLOW_FROM`: when set, the only client addresses served.
    pub allow_from: Option<AddrSet>,
    /// `HOLEPUNCH_ALLOWED_HOSTS`: when set, the only Host names served
    /// (besides IP literals and `localhost`).
    pub allowed_hosts: Option<HostList>,
    /// `NOMAD_REGION`: the region this agent belongs to, when known.
    pub region: Option<String>,
}

/// What the decision reads from one request.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    pub method: &'a Method,
    /// The raw request target, as sent.
    pub target: &'a [u8],
    /// `target`, read once by `parse_target`: the decision reads its path,
    /// query and authority from this. (`target` itself is read again only
    /// for the authority of an absolute-form target that was refused.)
    pub parsed: &'a Result<Target<'a>, Refusal>,
    pub headers: &'a HeaderMap,
    /// The client's address (`None` when the socket could not say).
    pub client: Option<IpAddr>,
}

/// What to do with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward to the Task API socket. `group` is `None` for a path only ALL
    /// covers. `origin_offset` is where the origin-form part of the raw target
    /// starts (non-zero only for absolute-form targets, which are forwarded
    /// as their path and query).
    Forward {
        group: Option<Group>,
        origin_offset: usize,
    },
    /// `/health`: answer `200 ok` locally.
    Health,
    /// `/ready`: check the token and the socket, and answer 200 or 503.
    Ready,
    /// 403: a `/v1/` path no open group covers. `group` names the flag that
    /// would open it, if there is one.
    Deny { group: Option<Group> },
    /// 405 with `Allow: GET, HEAD`: a method other than GET or HEAD on an
    /// open group's path (or on `/health` or `/ready`).
    MethodNotAllowed,
    /// 404: a path outside `/v1/` other than `/health` and `/ready`.
    NotFound,
    /// 400: the target breaks the path rules (see [`crate::decision::target`]).
    Refuse(Refusal),
    /// 400: the request head breaks a rule of this module (a body or an
    /// upgrade on a read-only group path, two Host headers).
    BadHead(BadHead),
    /// 403: refused for who asks or what the query reaches (address, web
    /// page, other region, other agent).
    Forbid(Forbidden),
    /// 421: the Host is not one `HOLEPUNCH_ALLOWED_HOSTS` allows.
    Misdirected,
}

/// Why a request head was refused with 400 (its text: `BadHead::reason`,
/// in `crate::proxy::answer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadHead {
    /// A `Content-Length` other than a single 0, or any `Transfer-Encoding`,
    /// on a group path (ALL off): the groups are read-only GETs.
    Body,
    /// `Upgrade` on a group path, whatever ALL says.
    Upgrade,
    /// More than one `Host` header (RFC 9112, section 3.2: answer 400).
    DuplicateHost,
}

/// Why a request was refused with 403 (its text: `Forbidden::reason`, in
/// `crate::proxy::answer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forbidden {
    /// The client's address is outside `HOLEPUNCH_ALLOW_FROM`.
    Address,
    /// An `Origin` header, or a `Sec-Fetch-Site` other than `none`: a web page.
    CrossSite,
    /// A `region` parameter naming another region than `NOMAD_REGION`.
    OtherRegion { asked: String, here: String },
    /// `node_id` or `server_id` on an agent group: another agent's data.
    OtherAgent(&'static str),
}

/// What the target and the method decide with the allowlist, before the
/// rest of the head is read: the target's refusal, or the path's
/// [`Route`]. The path rules apply to everything, ALL included. An
/// absolute-form target is accepted only when its path would be forwarded;
/// otherwise it is refused with 400 rather than answered as its path would
/// be.
pub fn decide_target(
    allow: &Allowlist,
    method: &Method,
    target: &Result<Target<'_>, Refusal>,
) -> Decision {
    let target = match target {
        Ok(target) => target,
        Err(refusal) => return Decision::Refuse(*refusal),
    };
    match decide_path(allow, method, &target.path) {
        Route::Forward(group) => Decision::Forward {
            group,
            origin_offset: target.origin_offset,
        },
        _ if target.origin_offset > 0 => Decision::Refuse(Refusal::AbsoluteFormNotForwarded),
        Route::Health => Decision::Health,
        Route::Ready => Decision::Ready,
        Route::Deny(group) => Decision::Deny { group },
        Route::MethodNotAllowed => Decision::MethodNotAllowed,
        Route::NotFound => Decision::NotFound,
    }
}

/// Decides what happens to one request. Checks run in this order, and the
/// first that fails decides:
///
/// 1. the target and the allowlist ([`decide_target`]); `/health` and
///    `/ready` are answered whatever else the head says;
/// 2. the client's address, against `HOLEPUNCH_ALLOW_FROM` (403);
/// 3. a web page: `Origin`, or `Sec-Fetch-Site` other than `none` (403);
/// 4. two `Host` headers (400), then `HOLEPUNCH_ALLOWED_HOSTS` (421);
/// 5. for a forwarded group path: `Upgrade` (400, ALL included); and with
///    ALL off, a body (400), a `region` other than `NOMAD_REGION` (403), and
///    `node_id` or `server_id` on an agent group (403).
///
/// Under ALL, paths outside the groups take any method, body, upgrade and
/// query: steps 2 to 4 still apply.
pub fn decide_request(rules: &Rules, head: &Head<'_>) -> Decision {
    let decision = decide_target(&rules.allow, head.method, head.parsed);
    if matches!(decision, Decision::Health | Decision::Ready) {
        return decision;
    }
    if !admits(rules.allow_from.as_ref(), head.client) {
        return Decision::Forbid(Forbidden::Address);
    }
    let fields = Fields::of(head.headers);
    if fields.web_page() {
        return Decision::Forbid(Forbidden::CrossSite);
    }
    // Pingora's parser refuses two Host fields before this runs (pingora-core
    // 0.9 `protocols/http/authority.rs`, `validate_request_authority_fields`);
    // the decision refuses them too, so that it holds on its own.
    if fields.hosts > 1 {
        return Decision::BadHead(BadHead::DuplicateHost);
    }
    if let Some(list) = &rules.allowed_hosts {
        let authority = match head.parsed {
            Ok(target) => target.authority,
            Err(_) => absolute_authority(head.target),
        };
        if !fields
            .host
            .into_iter()
            .chain(authority)
            .all(|h| list.allows(h))
        {
            return Decision::Misdirected;
        }
    }
    let Decision::Forward { group, .. } = decision else {
        return decision;
    };
    let Some(group) = group else {
        return decision; // A path only ALL covers.
    };
    if fields.upgrade {
        return Decision::BadHead(BadHead::Upgrade);
    }
    if rules.allow.all() {
        return decision;
    }
    if fields.has_body() {
        return Decision::BadHead(BadHead::Body);
    }
    let query = head.parsed.as_ref().ok().and_then(|t| t.query);
    if let Some(forbidden) = query_reach(rules, group, query) {
        return Decision::Forbid(forbidden);
    }
    decision
}

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// What the head rules read of the request headers, gathered in one pass
/// over them rather than one hashed lookup per name.
#[derive(Debug, Default)]
struct Fields<'a> {
    /// How many `Host` fields, and the first one's value.
    hosts: usize,
    host: Option<&'a [u8]>,
    origin: bool,
    /// A `Sec-Fetch-Site` other than `none`.
    cross_site: bool,
    upgrade: bool,
    transfer_encoding: bool,
    /// How many `Content-Length` fields, and the first one's value.
    lengths: usize,
    length: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn of(headers: &'a HeaderMap) -> Fields<'a> {
        let mut fields = Fields::default();
        for (name, value) in headers {
            if name == HOST {
                fields.hosts += 1;
                fields.host = fields.host.or(Some(value.as_bytes()));
            } else if name == CONTENT_LENGTH {
                fields.lengths += 1;
                fields.length = fields.length.or(Some(value.as_bytes()));
            } else if name == TRANSFER_ENCODING {
                fields.transfer_encoding = true;
            } else if name == UPGRADE {
                fields.upgrade = true;
            } else if name == ORIGIN {
                fields.origin = true;
            } else if name.as_str() == SEC_FETCH_SITE {
                let site = value.as_bytes().trim_ascii();
                fields.cross_site |= !site.eq_ignore_ascii_case(b"none");
            }
        }
        fields
    }

    /// Browsers send `Origin` on every cross-origin `fetch` and on every
    /// request other than GET and HEAD, and `Sec-Fetch-Site` on every
    /// request to an HTTPS or localhost origin (`none`: the user typed the
    /// URL). Machine clients send neither. A plain-HTTP cross-site GET
    /// without either can't be read by the page; rebinding is
    /// `HOLEPUNCH_ALLOWED_HOSTS`'s job.
    fn web_page(&self) -> bool {
        self.origin || self.cross_site
    }

    /// Whether the request says it has a body: any `Transfer-Encoding`, or
    /// a `Content-Length` other than one plain `0`.
    fn has_body(&self) -> bool {
        if self.transfer_encoding || self.lengths > 1 {
            return true;
        }
        self.length.is_some_and(|v| {
            let v = v.trim_ascii();
            v.is_empty() || !v.iter().all(|&b| b == b'0')
        })
    }
}

/// A `region` other than this one, or `node_id`/`server_id` on an agent
/// group, read as Nomad reads the query (Go's `url.ParseQuery`).
fn query_reach(rules: &Rules, group: Group, query: Option<&[u8]>) -> Option<Forbidden> {
    for (key, value) in go_query_pairs(query?) {
        match &*key {
            b"region" => {
                if let Some(here) = &rules.region {
                    if !value.is_empty() && *value != *here.as_bytes() {
                        return Some(Forbidden::OtherRegion {
                            asked: String::from_utf8_lossy(&value).into_owned(),
                            here: here.clone(),
                        });
                    }
                }
            }
            b"node_id" if group.is_agent() => return Some(Forbidden::OtherAgent("node_id")),
            b"server_id" if group.is_agent() => return Some(Forbidden::OtherAgent("server_id")),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::allowlist::Group;
    use crate::decision::target::parse_target;
    use http::HeaderValue;

    fn rules() -> Rules {
        Rules {
            allow: Allowlist::default().with(Group::AgentHost, true),
            ..Rules::default()
        }
    }

    fn decide_with(
        rules: &Rules,
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Decision {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        decide_request(
            rules,
            &Head {
                method: &method,
                target: target.as_bytes(),
                parsed: &parse_target(target.as_bytes()),
                headers: &map,
                client: Some("192.0.2.1".parse().unwrap()),
            },
        )
    }

    fn get(rules: &Rules, target: &str, headers: &[(&str, &str)]) -> Decision {
        decide_with(rules, Method::GET, target, headers)
    }

    fn forwarded(d: &Decision) -> bool {
        matches!(d, Decision::Forward { .. })
    }

    #[test]
    fn a_plain_scrape_is_forwarded() {
        let d = get(
            &rules(),
            "/v1/metrics?format=prometheus",
            &[("Host", "10.0.0.5:6120")],
        );
        assert_eq!(
            d,
            Decision::Forward {
                group: Some(Group::Metrics),
                origin_offset: 0
            }
        );
        // No Host at all (HTTP/1.0) is forwarded too; the proxy sets one.
        assert!(forwarded(&get(&rules(), "/v1/metrics", &[])));
    }

    #[test]
    fn web_pages_are_refused_everywhere_but_local_routes() {
        let all = Rules {
            allow: Allowlist::none().with_all(true),
            ..Rules::default()
        };
        for r in [&rules(), &all] {
            for h in [
                ("Origin", "https://evil.example"),
                ("Origin", "null"),
                ("Sec-Fetch-Site", "cross-site"),
                ("Sec-Fetch-Site", "same-site"),
                ("Sec-Fetch-Site", "same-origin"),
            ] {
                assert_eq!(
                    get(r, "/v1/metrics", &[h]),
                    Decision::Forbid(Forbidden::CrossSite),
                    "{h:?}"
                );
            }
            // A person typing the URL.
            assert!(forwarded(&get(
                r,
                "/v1/metrics",
                &[("Sec-Fetch-Site", "none")]
            )));
            assert_eq!(get(r, "/health", &[("Origin", "x")]), Decision::Health);
        }
        assert_eq!(
            decide_with(
                &rules(),
                Method::POST,
                "/v1/jobs",
                &[("Origin", "https://a")]
            ),
            Decision::Forbid(Forbidden::CrossSite)
        );
        assert_eq!(
            decide_with(
                &Rules {
                    allow: Allowlist::none().with_all(true),
                    ..Rules::default()
                },
                Method::POST,
                "/v1/jobs",
                &[("Sec-Fetch-Site", "cross-site")]
            ),
            Decision::Forbid(Forbidden::CrossSite)
        );
    }

    #[test]
    fn bodies_and_upgrades_on_group_paths() {
        let r = rules();
        for h in [
            ("Content-Length", "1"),
            ("Content-Length", "00001"),
            ("Content-Length", "0, 0"),
            ("Content-Length", "abc"),
            ("Content-Length", ""),
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "identity"),
        ] {
            assert_eq!(
                get(&r, "/v1/metrics", &[h]),
                Decision::BadHead(BadHead::Body),
                "{h:?}"
            );
        }
        assert_eq!(
            get(
                &r,
                "/v1/metrics",
                &[("Content-Length", "0"), ("Content-Length", "0")]
            ),
            Decision::BadHead(BadHead::Body)
        );
        assert!(forwarded(&get(
            &r,
            "/v1/metrics",
            &[("Content-Length", "0")]
        )));
        assert_eq!(
            get(
                &r,
                "/v1/metrics",
                &[("Upgrade", "websocket"), ("Connection", "Upgrade")]
            ),
            Decision::BadHead(BadHead::Upgrade)
        );
        // ALL: bodies and upgrades pass outside the groups; upgrades never on them.
        let all = Rules {
            allow: Allowlist::none().with_all(true),
            ..Rules::default()
        };
        let post = |t: &str, h: &[(&str, &str)]| decide_with(&all, Method::POST, t, h);
        assert!(forwarded(&post("/v1/jobs", &[("Content-Length", "10")])));
        assert!(forwarded(&post("/v1/metrics", &[("Content-Length", "10")])));
        assert!(forwarded(&get(
            &all,
            "/v1/client/allocation/x/exec",
            &[("Upgrade", "websocket")]
        )));
        assert_eq!(
            get(&all, "/v1/agent/health", &[("Upgrade", "websocket")]),
            Decision::BadHead(BadHead::Upgrade)
        );
    }

    #[test]
    fn host_rules() {
        let r = Rules {
            allowed_hosts: Some(HostList::parse("nomad.example.com, *.nodes.example").unwrap()),
            ..rules()
        };
        for ok in [
            "nomad.example.com",
            "NOMAD.example.com:6120",
            "nomad.example.com.",
            "a.nodes.example",
            "b.a.nodes.example:1",
            "10.0.0.5:6120",
            "10.0.0.5",
            "[::1]:6120",
            "[fe80::1]",
            "localhost:6120",
            "LOCALHOST",
        ] {
            assert!(forwarded(&get(&r, "/v1/metrics", &[("Host", ok)])), "{ok}");
        }
        for bad in [
            "evil.example",
            "nodes.example",
            "xnomad.example.com",
            "nomad.example.com.evil",
            "localhost.evil",
            "nomad.example.com:x",
            "nomad.example.com:123456",
            "[::1",
            "[::1]x",
            "a b",
            "2130706433x",
        ] {
            assert_eq!(
                get(&r, "/v1/metrics", &[("Host", bad)]),
                Decision::Misdirected,
                "{bad}"
            );
        }
    }

    #[test]
    fn host_rules_beyond_the_list() {
        let r = Rules {
            allowed_hosts: Some(HostList::parse("nomad.example.com, *.nodes.example").unwrap()),
            ..rules()
        };
        // The authority of an absolute-form target is a Host too.
        assert_eq!(
            get(
                &r,
                "http://evil.example/v1/metrics",
                &[("Host", "localhost")]
            ),
            Decision::Misdirected
        );
        assert!(forwarded(&get(
            &r,
            "http://10.0.0.5:6120/v1/metrics",
            &[("Host", "localhost")]
        )));
        // Two Host headers are refused with or without the list.
        for r in [&r, &rules()] {
            assert_eq!(
                get(
                    r,
                    "/v1/metrics",
                    &[("Host", "localhost"), ("Host", "localhost")]
                ),
                Decision::BadHead(BadHead::DuplicateHost)
            );
        }
        // Without the list, any single Host is forwarded (and replaced upstream).
        assert!(forwarded(&get(
            &rules(),
            "/v1/metrics",
            &[("Host", "evil.example")]
        )));
    }

    #[test]
    fn addresses() {
        let r = Rules {
            allow_from: Some(AddrSet::parse("10.0.0.0/8").unwrap()),
            ..rules()
        };
        // The test head comes from 192.0.2.1.
        assert_eq!(
            get(&r, "/v1/metrics", &[]),
            Decision::Forbid(Forbidden::Address)
        );
        assert_eq!(
            get(&r, "/v1/nodes", &[]),
            Decision::Forbid(Forbidden::Address)
        );
        assert_eq!(get(&r, "/health", &[]), Decision::Health);
        assert_eq!(get(&r, "/ready", &[]), Decision::Ready);
        let r = Rules {
            allow_from: Some(AddrSet::parse("192.0.2.0/24").unwrap()),
            ..rules()
        };
        assert!(forwarded(&get(&r, "/v1/metrics", &[])));
    }

    #[test]
    fn region_must_be_this_one() {
        let r = Rules {
            region: Some("europe".to_string()),
            ..rules()
        };
        let other = |asked: &str| {
            Decision::Forbid(Forbidden::OtherRegion {
                asked: asked.to_string(),
                here: "europe".to_string(),
            })
        };
        assert_eq!(get(&r, "/v1/metrics?region=global", &[]), other("global"));
        assert_eq!(get(&r, "/v1/metrics?reg%69on=global", &[]), other("global"));
        assert_eq!(get(&r, "/v1/metrics?region=glo%62al", &[]), other("global"));
        assert_eq!(get(&r, "/v1/metrics?region=a+b", &[]), other("a b"));
        assert_eq!(
            get(&r, "/v1/metrics?region=europe&region=asia", &[]),
            other("asia")
        );
        for ok in [
            "/v1/metrics?region=europe",
            "/v1/metrics?region=",
            "/v1/metrics?format=prometheus",
            // Pieces Go drops never reach Nomad.
            "/v1/metrics?region=asia;x=1",
            "/v1/metrics?region=as%zzia",
            "/v1/metrics?regions=asia",
        ] {
            assert!(forwarded(&get(&r, ok, &[])), "{ok}");
        }
        // Unknown NOMAD_REGION: nothing to compare with.
        assert!(forwarded(&get(&rules(), "/v1/metrics?region=asia", &[])));
        // ALL: queries pass.
        let all = Rules {
            allow: Allowlist::none().with_all(true),
            ..r
        };
        assert!(forwarded(&get(&all, "/v1/jobs?region=asia", &[])));
    }

    #[test]
    fn other_agents_are_not_reached() {
        let r = rules();
        assert_eq!(
            get(&r, "/v1/agent/host?node_id=abc", &[]),
            Decision::Forbid(Forbidden::OtherAgent("node_id"))
        );
        assert_eq!(
            get(&r, "/v1/agent/health?server_id=s1", &[]),
            Decision::Forbid(Forbidden::OtherAgent("server_id"))
        );
        assert_eq!(
            get(&r, "/v1/agent/host?x=1&n%6fde_id=abc", &[]),
            Decision::Forbid(Forbidden::OtherAgent("node_id"))
        );
        assert!(forwarded(&get(&r, "/v1/agent/host", &[])));
        assert!(forwarded(&get(&r, "/v1/metrics?node_id=abc", &[])));
    }

    /// The Host rule reads an absolute-form target's authority even when
    /// the target is refused (the authority up to the first `/`, as
    /// `absolute_authority` reads it), so a refused target with a host the
    /// list does not allow is 421, and one with an allowed host is 400.
    #[test]
    fn host_rules_on_a_refused_absolute_form() {
        let r = Rules {
            allowed_hosts: Some(HostList::parse("nomad.example.com").unwrap()),
            ..rules()
        };
        for (target, want) in [
            ("http://evil.example/v1/../x", Decision::Misdirected),
            (
                "http://user@nomad.example.com/v1/metrics",
                Decision::Misdirected,
            ),
            (
                "http://nomad.example.com?x/v1/metrics",
                Decision::Misdirected,
            ),
            (
                "http://nomad.example.com/v1/../x",
                Decision::Refuse(Refusal::DotSegment),
            ),
            (
                "http://nomad.example.com",
                Decision::Refuse(Refusal::BadAbsoluteForm),
            ),
        ] {
            assert_eq!(get(&r, target, &[("Host", "localhost")]), want, "{target}");
        }
    }

    /// The one pass over the headers sees every field, whatever its place
    /// among the others: either `Sec-Fetch-Site` of two, the second `Host`,
    /// the second `Content-Length`.
    #[test]
    fn every_field_is_read_in_the_one_pass() {
        let r = rules();
        let other = ("Accept", "text/plain");
        for (first, second) in [("none", "same-site"), ("same-site", "none")] {
            let sites = [("Sec-Fetch-Site", first), other, ("Sec-Fetch-Site", second)];
            assert_eq!(
                get(&r, "/v1/metrics", &sites),
                Decision::Forbid(Forbidden::CrossSite),
                "{sites:?}"
            );
        }
        assert_eq!(
            get(&r, "/v1/metrics", &[("Host", "a"), other, ("Host", "a")]),
            Decision::BadHead(BadHead::DuplicateHost)
        );
        assert_eq!(
            get(
                &r,
                "/v1/metrics",
                &[("Content-Length", "0"), other, ("Content-Length", "0")]
            ),
            Decision::BadHead(BadHead::Body)
        );
        let limited = Rules {
            allowed_hosts: Some(HostList::parse("nomad.example.com").unwrap()),
            ..rules()
        };
        assert!(forwarded(&get(
            &limited,
            "/v1/metrics",
            &[other, ("HOST", "nomad.example.com")]
        )));
        assert_eq!(
            get(
                &limited,
                "/v1/metrics",
                &[other, ("HOST", "evil.example"), ("upgrade", "x")]
            ),
            Decision::Misdirected
        );
        assert_eq!(
            get(
                &limited,
                "/v1/metrics",
                &[other, ("HOST", "nomad.example.com"), ("upgrade", "x")]
            ),
            Decision::BadHead(BadHead::Upgrade)
        );
    }

    /// Two `Sec-Fetch-Site` fields that each name another site are a web
    /// page, as one is: the pass adds each field's answer to what it has
    /// seen, it does not toggle it.
    #[test]
    fn two_cross_site_fields_are_a_web_page_too() {
        let sites = [
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Site", "same-site"),
        ];
        assert_eq!(
            get(&rules(), "/v1/metrics", &sites),
            Decision::Forbid(Forbidden::CrossSite)
        );
    }

    /// `node_id` and `server_id` are refused on the agent groups only;
    /// elsewhere they are forwarded like any other parameter.
    #[test]
    fn other_agent_parameters_pass_outside_the_agent_groups() {
        for query in ["node_id=abc", "server_id=s1"] {
            let target = format!("/v1/metrics?{query}");
            assert!(forwarded(&get(&rules(), &target, &[])), "{target}");
        }
    }
}
