//! The `decide` target: `holepunch::decision::head::decide_request`, the whole
//! request decision, against Nomad's route table and the model of Go's
//! routing ([`crate::nomad`]), the model of Go's query parsing
//! ([`crate::go`]), and the head rules written out from the README.

use crate::go;
use crate::nomad::{check_forward, go_path, route_group};
use holepunch::decision::allowlist::{Allowlist, Group};
use holepunch::decision::cidr::AddrSet;
use holepunch::decision::head::{decide_request, decide_target, Decision, Head, Rules};
use holepunch::decision::hosts::HostList;
use holepunch::decision::target::parse_target;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use std::net::IpAddr;

/// `HOLEPUNCH_ALLOW_FROM` when the input sets it.
pub const ALLOW_FROM: &str = "10.0.0.0/8, fd00::/8";
/// `HOLEPUNCH_ALLOWED_HOSTS` when the input sets it.
pub const ALLOWED_HOSTS: &str = "nomad.example, *.nodes.example";
/// `NOMAD_REGION` when the input sets it.
pub const REGION: &str = "europe";
/// The client addresses an input picks from (the last: unknown).
pub const CLIENTS: [Option<&str>; 5] = [
    Some("10.1.2.3"),
    Some("192.0.2.1"),
    Some("::ffff:10.0.0.1"),
    Some("fd00::5"),
    None,
];

/// A request and the rules it meets, read from fuzz input.
pub struct Case {
    pub rules: Rules,
    pub method: Method,
    pub target: Vec<u8>,
    pub headers: HeaderMap,
    pub client: Option<IpAddr>,
}

/// The input: two bytes of switches (bits 0 to 10: the groups in
/// `Group::ALL` order; 11: ALL; 12: `HOLEPUNCH_ALLOW_FROM`; 13:
/// `HOLEPUNCH_ALLOWED_HOSTS`; 14: `NOMAD_REGION`), one byte choosing the
/// client address ([`CLIENTS`]), then the request as text: `METHOD target`
/// on the first line, one `Name: value` header per line after it (names as
/// [`header_name`] reads them). A method or header value the `http` crate
/// refuses is left out (Pingora would answer 400 before the decision).
pub fn read_case(data: &[u8]) -> Option<Case> {
    let (switches, rest) = data.split_first_chunk::<3>()?;
    let bits = u16::from_le_bytes([switches[0], switches[1]]);
    let on = |bit: u32| bits & (1 << bit) != 0;
    let allow = Group::ALL
        .iter()
        .enumerate()
        .fold(Allowlist::none().with_all(on(11)), |a, (i, &g)| {
            a.with(g, on(i as u32))
        });
    let rules = Rules {
        allow,
        allow_from: on(12).then(|| AddrSet::parse(ALLOW_FROM).expect("a valid list")),
        allowed_hosts: on(13).then(|| HostList::parse(ALLOWED_HOSTS).expect("a valid list")),
        region: on(14).then(|| REGION.to_string()),
    };
    let client = CLIENTS[usize::from(switches[2]) % CLIENTS.len()]
        .map(|ip| ip.parse().expect("a valid address"));
    let mut lines = rest.split(|&b| b == b'\n');
    let first = lines.next()?;
    let space = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..space]).ok()?;
    let target = first[space + 1..].to_vec();
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(value) = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()) else {
            continue;
        };
        headers.append(header_name(&line[..colon]), value);
    }
    Some(Case {
        rules,
        method,
        target,
        headers,
        client,
    })
}

/// The headers the decision reads, and a few it does not, by name in any
/// case; any other name is `x-other`. (Reading names with the `http`
/// crate's parser instead would spend the fuzzer on that parser's table of
/// standard names, which the decision never sees.)
const NAMES: [&str; 10] = [
    "host",
    "origin",
    "sec-fetch-site",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "connection",
    "accept",
    "authorization",
    "x-other",
];

fn header_name(name: &[u8]) -> HeaderName {
    let name = NAMES
        .iter()
        .find(|n| n.as_bytes().eq_ignore_ascii_case(name))
        .unwrap_or(&"x-other");
    HeaderName::from_static(name)
}

/// Invariants:
/// - nothing the rules refuse is forwarded: a forward is, by Nomad's route
///   table and Go's reading of the bytes sent, a route of the group it was
///   decided for, open (or under ALL), with GET or HEAD unless ALL; from an
///   address `HOLEPUNCH_ALLOW_FROM` holds; with no web page's headers, one
///   Host at most and an allowed one; and on a group path no upgrade, and
///   unless ALL no body, no other region and, on an agent group, no
///   `node_id` or `server_id`, as Go's `url.ParseQuery` reads the query;
/// - a request no rule refuses is forwarded, and `/health` and `/ready`
///   are answered whatever the head says;
/// - a 403 for a closed group names the group of Nomad's route.
pub fn decide_case(data: &[u8]) {
    let Some(case) = read_case(data) else { return };
    let Case {
        rules,
        method,
        target,
        headers,
        client,
    } = &case;
    let parsed = parse_target(target);
    let head = Head {
        method,
        target,
        parsed: &parsed,
        headers,
        client: *client,
    };
    let got = decide_request(rules, &head);
    let path_decision = decide_target(&rules.allow, method, &parsed);
    let shown = format!("{method} {}", target.escape_ascii());
    let all = rules.allow.all();
    let read_only = method == Method::GET || method == Method::HEAD;

    if matches!(path_decision, Decision::Health | Decision::Ready) {
        assert_eq!(got, path_decision, "{shown}: a local route");
        return;
    }
    let refusals = head_refusals(&case, &path_decision);
    match &got {
        Decision::Forward {
            group,
            origin_offset,
        } => {
            assert!(refusals.is_empty(), "{shown}: {refusals:?}, but forwarded");
            if let Err(e) = check_forward(target, *origin_offset, *group) {
                panic!("{e}");
            }
            match group {
                Some(g) => assert!(
                    all || (rules.allow.allows(*g) && read_only),
                    "{shown}: forwarded as {g:?}, which is closed to it"
                ),
                None => assert!(all, "{shown}: forwarded outside the groups without ALL"),
            }
        }
        Decision::Deny { group } => {
            let path = go_path(target).unwrap_or_default();
            if let Some((g, false)) = route_group(&path) {
                assert_eq!(*group, g, "{shown}: the 403 names another group");
            }
        }
        _ => {}
    }
    if refusals.is_empty() && matches!(path_decision, Decision::Forward { .. }) {
        assert_eq!(got, path_decision, "{shown}: no rule refuses it");
    }
}

/// Why the head rules refuse this request, as the README states them,
/// for a request whose path decision is `path_decision`.
fn head_refusals(case: &Case, path_decision: &Decision) -> Vec<&'static str> {
    let mut why = Vec::new();
    let values = |name: &str| -> Vec<&[u8]> {
        case.headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    };
    if case.rules.allow_from.is_some() && !in_allow_from(case.client) {
        why.push("address");
    }
    if !values("origin").is_empty()
        || values("sec-fetch-site")
            .iter()
            .any(|v| !v.trim_ascii().eq_ignore_ascii_case(b"none"))
    {
        why.push("web page");
    }
    let hosts = values("host");
    if hosts.len() > 1 {
        why.push("two Host headers");
    }
    if case.rules.allowed_hosts.is_some() {
        let authority = absolute_authority(&case.target);
        if !hosts.iter().copied().chain(authority).all(host_allowed) {
            why.push("Host");
        }
    }
    let Decision::Forward {
        group: Some(group), ..
    } = path_decision
    else {
        return why;
    };
    if !values("upgrade").is_empty() {
        why.push("upgrade");
    }
    if case.rules.allow.all() {
        return why;
    }
    let lengths = values("content-length");
    let zero = |v: &&[u8]| {
        let v = v.trim_ascii();
        !v.is_empty() && v.iter().all(|&b| b == b'0')
    };
    if !values("transfer-encoding").is_empty()
        || lengths.len() > 1
        || lengths.iter().any(|v| !zero(v))
    {
        why.push("body");
    }
    let query = case
        .target
        .iter()
        .position(|&b| b == b'?')
        .map_or(&[][..], |q| &case.target[q + 1..]);
    for (key, value) in go::parse_query(query) {
        match key.as_slice() {
            b"region"
                if case.rules.region.is_some()
                    && !value.is_empty()
                    && value != REGION.as_bytes() =>
            {
                why.push("other region")
            }
            b"node_id" | b"server_id" if group.is_agent() => why.push("other agent"),
            _ => {}
        }
    }
    why
}

/// Whether [`ALLOW_FROM`] holds the client, by the bits.
fn in_allow_from(client: Option<IpAddr>) -> bool {
    match client.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.octets()[0] == 10,
        Some(IpAddr::V6(v6)) => v6.octets()[0] == 0xfd,
        None => false,
    }
}

/// The authority of an absolute-form target.
fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let lower = target[..target.len().min(8)].to_ascii_lowercase();
    let skip = if lower.starts_with(b"http://") {
        7
    } else if lower.starts_with(b"https://") {
        8
    } else {
        return None;
    };
    let rest = &target[skip..];
    Some(&rest[..rest.iter().position(|&b| b == b'/').unwrap_or(rest.len())])
}

/// Whether a Host value names [`ALLOWED_HOSTS`], an IP address or
/// `localhost`, with an optional port.
pub fn host_allowed(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let value = value.trim();
    if value.parse::<IpAddr>().is_ok() {
        return true;
    }
    let (host, port) = if let Some(v6) = value.strip_prefix('[') {
        let Some((ip, rest)) = v6.split_once(']') else {
            return false;
        };
        if ip.parse::<IpAddr>().is_err() {
            return false;
        }
        (None, rest)
    } else {
        match value.rfind(':') {
            Some(colon) => (Some(&value[..colon]), &value[colon..]),
            None => (Some(value), ""),
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return false;
    }
    let Some(host) = host else { return true };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() || host == "localhost" {
        return true;
    }
    let labels_ok = host.len() <= 253
        && host.split('.').all(|l| {
            (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    labels_ok
        && (host == "nomad.example"
            || host
                .strip_suffix(".nodes.example")
                .is_some_and(|sub| !sub.is_empty()))
}
