//! The whole request decision: the path rules and the allowlist
//! ([`crate::decision::allowlist::decide`]), then what the rest of the request head
//! may carry. Who asks (`HOLEPUNCH_ALLOW_FROM`), whether a web page asks
//! (`Origin`, `Sec-Fetch-Site`), which Host it was sent to
//! (`HOLEPUNCH_ALLOWED_HOSTS`), and, on the read-only groups, no body, no
//! upgrade, no other region and no other agent.
//!
//! Pure: [`decide_request`] reads the method, the target, the headers and
//! the client's address, and returns a [`Decision`]. The proxy acts on it;
//! nothing here does I/O or keeps state.

use crate::decision::allowlist::{decide, Allowlist, BadHead, Decision, Forbidden, Group};
use crate::decision::cidr::{admits, AddrSet};
use http::header::{HeaderMap, CONTENT_LENGTH, HOST, ORIGIN, TRANSFER_ENCODING, UPGRADE};
use http::Method;
use std::borrow::Cow;
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
    pub headers: &'a HeaderMap,
    /// The client's address (`None` when the socket could not say).
    pub client: Option<IpAddr>,
}

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// Decides what happens to one request. Checks run in this order, and the
/// first that fails decides:
///
/// 1. the target and the allowlist ([`decide`]); `/health` and `/ready`
///    are answered whatever else the head says;
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
    let decision = decide(&rules.allow, head.method, head.target);
    if matches!(decision, Decision::Health | Decision::Ready) {
        return decision;
    }
    if !admits(rules.allow_from.as_ref(), head.client) {
        return Decision::Forbid(Forbidden::Address);
    }
    if from_web_page(head.headers) {
        return Decision::Forbid(Forbidden::CrossSite);
    }
    // Pingora's parser refuses two Host fields before this runs (pingora-core
    // 0.9 `protocols/http/authority.rs`, `validate_request_authority_fields`);
    // the decision refuses them too, so that it holds on its own.
    let mut hosts = head.headers.get_all(HOST).iter();
    let host = hosts.next().map(|v| v.as_bytes());
    if hosts.next().is_some() {
        return Decision::BadHead(BadHead::DuplicateHost);
    }
    if let Some(list) = &rules.allowed_hosts {
        let authority = absolute_authority(head.target);
        if !host.into_iter().chain(authority).all(|h| list.allows(h)) {
            return Decision::Misdirected;
        }
    }
    let Decision::Forward { group, .. } = decision else {
        return decision;
    };
    let Some(group) = group else {
        return decision; // A path only ALL covers.
    };
    if head.headers.contains_key(UPGRADE) {
        return Decision::BadHead(BadHead::Upgrade);
    }
    if rules.allow.all() {
        return decision;
    }
    if has_body(head.headers) {
        return Decision::BadHead(BadHead::Body);
    }
    if let Some(forbidden) = query_reach(rules, group, head.target) {
        return Decision::Forbid(forbidden);
    }
    decision
}

/// Browsers send `Origin` on every cross-origin `fetch` and on every
/// request other than GET and HEAD, and `Sec-Fetch-Site` on every request to
/// an HTTPS or localhost origin (`none`: the user typed the URL). Machine
/// clients send neither. A plain-HTTP cross-site GET without either can't
/// be read by the page; rebinding is `HOLEPUNCH_ALLOWED_HOSTS`'s job.
fn from_web_page(headers: &HeaderMap) -> bool {
    headers.contains_key(ORIGIN)
        || headers
            .get_all(SEC_FETCH_SITE)
            .iter()
            .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"none"))
}

/// Whether the request says it has a body: any `Transfer-Encoding`, or a
/// `Content-Length` other than one plain `0`.
fn has_body(headers: &HeaderMap) -> bool {
    if headers.contains_key(TRANSFER_ENCODING) {
        return true;
    }
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (None, _) => false,
        (Some(v), None) => {
            let v = v.as_bytes().trim_ascii();
            v.is_empty() || !v.iter().all(|&b| b == b'0')
        }
        (Some(_), Some(_)) => true,
    }
}

/// A `region` other than this one, or `node_id`/`server_id` on an agent
/// group, read as Nomad reads the query (Go's `url.ParseQuery`).
fn query_reach(rules: &Rules, group: Group, target: &[u8]) -> Option<Forbidden> {
    let query = target.iter().position(|&b| b == b'?')?;
    for (key, value) in go_query_pairs(&target[query + 1..]) {
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

/// The query's key/value pairs exactly as Go's `url.ParseQuery` (Go 1.17
/// and later) keeps them: split on `&`; a piece holding `;` or a bad
/// escape is dropped (Go drops it too, so Nomad never sees it); `+` is a
/// space; `%XX` is decoded once.
pub fn go_query_pairs(query: &[u8]) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    query
        .split(|&b| b == b'&')
        .filter(|piece| !piece.is_empty() && !piece.contains(&b';'))
        .filter_map(|piece| {
            let (key, value) = match piece.iter().position(|&b| b == b'=') {
                Some(eq) => (&piece[..eq], &piece[eq + 1..]),
                None => (piece, &piece[piece.len()..]),
            };
            Some((query_unescape(key)?, query_unescape(value)?))
        })
}

/// Go's `url.QueryUnescape`: `None` where Go returns an error.
fn query_unescape(s: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !s.iter().any(|&b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex(*s.get(i + 1)?)?;
                let lo = hex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        let n = scheme.len();
        (target.len() >= n && target[..n].eq_ignore_ascii_case(scheme.as_bytes()))
            .then(|| &target[n..])
    })?;
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `HOLEPUNCH_ALLOWED_HOSTS`: exact names and `*.suffix` patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList {
    names: Vec<String>,
    suffixes: Vec<String>,
}

impl HostList {
    /// Parses a comma-separated list of host names (`nomad-1.example.com`)
    /// and patterns (`*.example.com`, which matches every name under
    /// `example.com` but not `example.com` itself). Every bad entry is
    /// reported.
    pub fn parse(list: &str) -> Result<HostList, Vec<String>> {
        let mut hosts = HostList {
            names: Vec::new(),
            suffixes: Vec::new(),
        };
        let mut problems = Vec::new();
        for entry in list.split(',').map(str::trim) {
            let lower = entry.to_ascii_lowercase();
            let (name, wildcard) = match lower.strip_prefix("*.") {
                Some(rest) => (rest, true),
                None => (lower.as_str(), false),
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            if !valid_name(name) {
                problems.push(format!(
                    "{entry:?} is not a host name or *.suffix pattern (no ports, no \
                     schemes; IP addresses and localhost are always allowed)"
                ));
            } else if wildcard {
                hosts.suffixes.push(format!(".{name}"));
            } else {
                hosts.names.push(name.to_string());
            }
        }
        if problems.is_empty() {
            Ok(hosts)
        } else {
            Err(problems)
        }
    }

    /// Whether a Host value (port included, if any) is allowed: an IP
    /// literal, `localhost`, or a listed name. A value that is not a valid
    /// host is not.
    pub fn allows(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let host = host.trim();
        if host.parse::<IpAddr>().is_ok() {
            return true; // A bare IPv6 address, which some clients send.
        }
        let name = match host.strip_prefix('[') {
            Some(v6) => {
                return v6
                    .split_once(']')
                    .is_some_and(|(ip, port)| ip.parse::<IpAddr>().is_ok() && valid_port(port));
            }
            None => match host.rsplit_once(':') {
                Some((name, port)) if valid_port(&format!(":{port}")) => name,
                Some(_) => return false,
                None => host,
            },
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if name.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        valid_name(&name)
            && (self.names.contains(&name)
                || self.suffixes.iter().any(|s| name.ends_with(s.as_str())))
    }
}

impl std::fmt::Display for HostList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wildcards = self.suffixes.iter().map(|s| format!("*{s}"));
        let all: Vec<String> = self.names.iter().cloned().chain(wildcards).collect();
        f.write_str(&all.join(", "))
    }
}

/// `""` or `":digits"`.
fn valid_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Letters, digits, `-` and `.`, in labels of 1 to 63 bytes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::allowlist::Group;
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
    fn host_list_parsing() {
        assert!(HostList::parse("a.example, *.b.example , c").is_ok());
        let errs = HostList::parse("a.example:80, http://x, *, *.x.*, , a_b").unwrap_err();
        assert_eq!(errs.len(), 6, "{errs:?}");
        assert_eq!(
            HostList::parse("A.example,*.B.example")
                .unwrap()
                .to_string(),
            "a.example, *.b.example"
        );
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

    #[test]
    fn go_query_semantics() {
        let pairs: Vec<(String, String)> = go_query_pairs(b"a=1&&b&c=%41+B&d;e=1&f=%g0&=x&g=h=i")
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let want = [("a", "1"), ("b", ""), ("c", "A B"), ("", "x"), ("g", "h=i")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, want);
    }
}
