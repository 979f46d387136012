//! Property tests of the request decision: no refused variant of a path is
//! ever forwarded, and nothing that is forwarded under a group can be read
//! by the Task API as a path outside that group.
//!
//! Group membership is judged here with [`NOMAD_ROUTES`], Nomad's own route
//! table written out by hand, and what a forwarded target means with a model
//! of Go's URL parsing and ServeMux ([`go_path`], [`nomad_mux`]) applied to
//! the bytes the proxy would send, never with `Group::of_path` or the path
//! `parse_target` returns.

use holepunch::decision::allowlist::{Allowlist, Group};
use holepunch::decision::head::{decide_target, Decision};
use holepunch::decision::target::{parse_target, Refusal};
use http::Method;
use proptest::prelude::*;

/// The target and the allowlist: the path decision of a raw target.
fn decide(allow: &Allowlist, method: &Method, raw: &[u8]) -> Decision {
    decide_target(allow, method, &parse_target(raw))
}

/// Every group open, ALL off: the strictest test of group boundaries.
fn every_group() -> Allowlist {
    Group::ALL
        .iter()
        .fold(Allowlist::none(), |a, &g| a.with(g, true))
}

// ---- Nomad's routes, apart from the code under test -------------------------

// The table and the model of Go's routing live in fuzz/checks (`holepunch_checks::nomad`),
// which the fuzz targets and the corpus replay judge with too.
use holepunch_checks::nomad::{
    check_forward, clean, flag_of, go_path, nomad_mux, percent_decode, route_group, Nomad,
    NOMAD_ROUTES,
};

const GROUP_PATHS: &[&str] = &[
    "/v1/metrics",
    "/v1/agent/health",
    "/v1/agent/self",
    "/v1/agent/members",
    "/v1/agent/servers",
    "/v1/agent/host",
    "/v1/agent/schedulers",
    "/v1/agent/schedulers/config",
    "/v1/nodes",
    "/v1/node/abc",
    "/v1/node/abc/allocations",
    "/v1/plugins",
    "/v1/plugin/csi/ebs",
    "/v1/services",
    "/v1/service/web",
    "/v1/status/leader",
    "/v1/status/peers",
];

/// Pieces that are refused wherever they appear in a path.
const ALWAYS_REFUSED: &[&str] = &[
    "//", "\\", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%00", "%0a", "%0D", "%1f", "%7f", "%z",
    "%g0", "%0g", "%%", "%252e", "%252F", "%255c", "%2500", "#", " ", "\"", "<", "{", "|", "^",
    "`", "\u{e9}",
];

/// Request targets built from pieces that matter to path handling.
fn target_strategy() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/",
        "/",
        "/",
        "v1",
        "/v1/",
        "metrics",
        "agent",
        "health",
        "self",
        "node",
        "nodes",
        "service",
        "services",
        "plugin",
        "status",
        "leader",
        "peers",
        "pools",
        "pool",
        "csi",
        "schedulers",
        "config",
        "members",
        "keyring",
        "allocations",
        "jobs",
        "x",
        ".",
        "..",
        "...",
        "..;",
        "%2e",
        "%2E",
        "%2f",
        "%5c",
        "\\",
        "%",
        "%0",
        "%00",
        "%25",
        "%252e",
        // Whole climbs out of a subtree, for a component that decodes twice.
        "/%252e%252e/%252e%252e/metrics",
        "/%252E%252E/agent/self",
        "%252f..%252f..%252fagent%252fself",
        "%6d",
        "%65",
        "%41",
        "?",
        "?index=1",
        "#",
        ";",
        "//",
        " ",
        "@",
        ":",
        "*",
        "%c3%a9",
        "http://h",
        "HTTP://h:1",
    ]);
    (
        prop::sample::select(vec!["", "", "", "http://h", "HTTP://h:1"]),
        prop::sample::select(GROUP_PATHS.to_vec()),
        prop::collection::vec(piece, 0..6),
        prop::sample::select(vec![true, true, true, false]),
    )
        .prop_map(|(scheme, base, pieces, keep_base)| {
            let mut t = scheme.to_string();
            if keep_base {
                t.push_str(base);
            }
            for p in pieces {
                t.push_str(p);
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// An always-refused piece spliced anywhere into a group path's path part
    /// is refused with 400, even under ALL.
    #[test]
    fn refused_pieces_are_refused_anywhere(
        base in prop::sample::select(GROUP_PATHS.to_vec()),
        piece in prop::sample::select(ALWAYS_REFUSED.to_vec()),
        at in any::<prop::sample::Index>(),
        query in prop::sample::select(vec!["", "?index=7&wait=1s", "?format=prometheus"]),
    ) {
        // Splice after the leading '/', at a char boundary (the paths are ASCII).
        let pos = 1 + at.index(base.len());
        let target = format!("{}{}{}{}", &base[..pos], piece, &base[pos..], query);
        for allow in [every_group(), Allowlist::none().with_all(true)] {
            let d = decide(&allow, &Method::GET, target.as_bytes());
            prop_assert!(matches!(d, Decision::Refuse(_)), "{target:?} -> {d:?}");
        }
    }

    /// A dot segment inserted at any segment boundary is refused.
    #[test]
    fn dot_segments_are_refused_at_any_boundary(
        base in prop::sample::select(GROUP_PATHS.to_vec()),
        dots in prop::sample::select(vec!["/.", "/..", "/./..", "/../.."]),
        at in any::<prop::sample::Index>(),
    ) {
        let boundaries: Vec<usize> = base
            .char_indices()
            .filter(|&(_, c)| c == '/')
            .map(|(i, _)| i)
            .skip(1)
            .chain([base.len()])
            .collect();
        let pos = boundaries[at.index(boundaries.len())];
        let target = format!("{}{}{}", &base[..pos], dots, &base[pos..]);
        let d = decide(&Allowlist::none().with_all(true), &Method::GET, target.as_bytes());
        prop_assert!(matches!(d, Decision::Refuse(_)), "{target:?} -> {d:?}");
    }

    /// Whatever is forwarded under a group is, by Nomad's route table and
    /// Go's parsing of the bytes sent, a route of that group (or no route at
    /// all), however hard the far side normalises it.
    #[test]
    fn forwarded_targets_cannot_leave_their_group(target in target_strategy()) {
        let allow = every_group();
        if let Decision::Forward { group, origin_offset } = decide(&allow, &Method::GET, target.as_bytes()) {
            prop_assert!(group.is_some(), "{target:?}: forwarded without ALL and without a group");
            if let Err(e) = check_forward(target.as_bytes(), origin_offset, group) {
                return Err(TestCaseError::fail(e));
            }
        }
    }

    /// Random allowlists, methods and raw targets: nothing outside the
    /// allowlist is ever forwarded. A forward under a group needs that group
    /// open and GET or HEAD; a forward outside every group needs ALL.
    #[test]
    fn nothing_outside_the_allowlist_is_forwarded(
        open in prop::collection::vec(any::<bool>(), Group::ALL.len()),
        all in prop::bool::weighted(0.2),
        method in prop_oneof![
            prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"])
                .prop_map(str::to_string),
            "[A-Z][A-Z-]{0,11}",
        ],
        target in prop_oneof![target_strategy(), "[ -~]{0,40}", "/v1/[ -~]{0,30}"],
    ) {
        let allow = Group::ALL
            .iter()
            .zip(&open)
            .fold(Allowlist::none().with_all(all), |a, (&g, &o)| a.with(g, o));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let read_only = method == Method::GET || method == Method::HEAD;
        match decide(&allow, &method, target.as_bytes()) {
            Decision::Forward { group, origin_offset } => {
                match group {
                    Some(g) => prop_assert!(all || (allow.allows(g) && read_only), "{target:?} {method} -> {g:?}"),
                    None => prop_assert!(all, "{target:?} forwarded without ALL"),
                }
                if let Err(e) = check_forward(target.as_bytes(), origin_offset, group) {
                    return Err(TestCaseError::fail(e));
                }
            }
            Decision::Deny { group } => {
                // The 403 names the flag of Nomad's route, when it has one.
                let path = go_path(target.as_bytes()).unwrap_or_default();
                if let Some((g, false)) = route_group(&path) {
                    prop_assert_eq!(group, g, "{:?}", target);
                }
            }
            _ => {}
        }
    }

    /// Any bytes and any method: a decision, never a panic; and a target
    /// with a byte outside printable ASCII is never forwarded.
    #[test]
    fn arbitrary_input_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..64),
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "DELETE", "PURGE", "M-SEARCH"]),
        all in any::<bool>(),
    ) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let allow = every_group().with_all(all);
        let d = decide(&allow, &method, &raw);
        if raw.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
            prop_assert!(!matches!(d, Decision::Forward { .. }), "{raw:?} -> {d:?}");
        }
        let mut prefixed = b"/v1/".to_vec();
        prefixed.extend_from_slice(&raw);
        let _ = decide(&allow, &method, &prefixed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every route of Nomad's table (random ids under a subtree, random
    /// escapes, origin or absolute form, a query), under random allowlists
    /// and methods, gets exactly the decision the README gives the group of
    /// Nomad's route for that path; and what is forwarded, Nomad reads as
    /// that route.
    #[test]
    fn every_nomad_route_gets_its_groups_decision(
        route in 0..NOMAD_ROUTES.len(),
        tail in prop::collection::vec("[A-Za-z0-9_~!$&'()*+,;=:@-]{1,6}", 1..3),
        escape in prop::collection::vec(0u8..4, 48),
        absolute in prop::sample::select(vec!["", "", "http://nomad.local:6120", "HTTPS://[::1]"]),
        query in prop::sample::select(vec!["", "?index=7&wait=1s", "?format=prometheus", "?"]),
        open in prop::collection::vec(any::<bool>(), Group::ALL.len()),
        all in prop::bool::weighted(0.2),
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "DELETE"]),
    ) {
        let pattern = NOMAD_ROUTES[route].0;
        let path = match pattern.ends_with('/') {
            true => format!("{pattern}{}", tail.join("/")),
            false => pattern.to_string(),
        };
        // Some letters and digits percent-encoded, as any client may.
        let mut target = absolute.to_string();
        for (i, c) in path.chars().enumerate() {
            match escape.get(i) {
                Some(1) if c.is_ascii_alphanumeric() => target.push_str(&format!("%{:02x}", c as u8)),
                Some(2) if c.is_ascii_alphanumeric() => target.push_str(&format!("%{:02X}", c as u8)),
                _ => target.push(c),
            }
        }
        target.push_str(query);
        let allow = Group::ALL
            .iter()
            .zip(&open)
            .fold(Allowlist::none().with_all(all), |a, (&g, &o)| a.with(g, o));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let read_only = method == Method::GET || method == Method::HEAD;

        // The README's rules, on the group of Nomad's route.
        let (group, root) = route_group(path.as_bytes()).expect("every table path is routed");
        prop_assert!(!root);
        let forward = Decision::Forward { group, origin_offset: absolute.len() };
        let want = match group {
            _ if !path.starts_with("/v1/") => Decision::NotFound,
            _ if all => forward,
            Some(g) if allow.allows(g) && read_only => forward,
            Some(g) if allow.allows(g) => Decision::MethodNotAllowed,
            g => Decision::Deny { group: g },
        };
        let want = match want {
            Decision::Forward { .. } => want,
            _ if !absolute.is_empty() => Decision::Refuse(Refusal::AbsoluteFormNotForwarded),
            other => other,
        };
        let got = decide(&allow, &method, target.as_bytes());
        prop_assert_eq!(&got, &want, "{} {:?}", method, target);
        if let Decision::Forward { group, origin_offset } = got {
            if let Err(e) = check_forward(target.as_bytes(), origin_offset, group) {
                return Err(TestCaseError::fail(e));
            }
        }
    }
}

/// The route model itself: Go's ServeMux picks the longest pattern, redirects
/// what cleaning changes, and a subtree's bare root is marked.
#[test]
fn the_route_model_routes_as_go_does() {
    let group = |p: &str| route_group(p.as_bytes());
    assert_eq!(group("/v1/metrics"), Some((Some(Group::Metrics), false)));
    assert_eq!(group("/v1/node/pools"), Some((Some(Group::Nodes), false)));
    assert_eq!(
        group("/v1/node/x/allocations"),
        Some((Some(Group::Nodes), false))
    );
    assert_eq!(group("/v1/node/"), Some((Some(Group::Nodes), true)));
    assert_eq!(
        group("/v1/plugin/csi/ebs"),
        Some((Some(Group::Plugins), false))
    );
    assert_eq!(
        group("/v1/agent/schedulers/config"),
        Some((Some(Group::AgentSchedulers), false))
    );
    assert_eq!(group("/v1/acl/token/onetime"), Some((None, false)));
    assert_eq!(group("/v1/agent/keyring/list"), Some((None, false)));
    // Not routed: 404s and redirects.
    for nothing in [
        "/v1/plugin/other",
        "/v1/metrics/",
        "/v1/node",
        "/v1//metrics",
        "/v1/x/../metrics",
        "/v2/metrics",
    ] {
        assert_eq!(nomad_mux(nothing.as_bytes()), Nomad::Nothing, "{nothing}");
    }
    assert_eq!(
        go_path(b"/v1/m%65trics?x=%zz"),
        Some(b"/v1/metrics".to_vec())
    );
    assert_eq!(go_path(b"/v1/a%2"), None);
    assert_eq!(go_path(b"/v1/a%+1"), None);
    assert_eq!(go_path(b"/v1/a\x01"), None);
}

#[test]
fn the_model_itself_normalises() {
    assert_eq!(clean(b"/v1/metrics/../agent/self"), b"/v1/agent/self");
    assert_eq!(clean(b"/v1//metrics"), b"/v1/metrics");
    assert_eq!(clean(&percent_decode(b"/v1/node/%2e%2e/x")), b"/v1/x");
    assert_eq!(clean(b"/v1/node\\..\\x"), b"/v1/x");
    assert_eq!(clean(b"/v1/node/abc/"), b"/v1/node/abc/");
}

/// Guards the property above against passing vacuously: a fair share of
/// the generated targets must actually be forwarded, some of them with
/// percent escapes and some in absolute form.
#[test]
fn the_generator_reaches_forwarded_targets() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = target_strategy();
    let (mut forwarded, mut escaped, mut absolute) = (0, 0, 0);
    for _ in 0..4000 {
        let target = strategy.new_tree(&mut runner).unwrap().current();
        if let Decision::Forward { origin_offset, .. } =
            decide(&every_group(), &Method::GET, target.as_bytes())
        {
            forwarded += 1;
            escaped += usize::from(target.contains('%'));
            absolute += usize::from(origin_offset > 0);
        }
    }
    eprintln!("forwarded {forwarded} of 4000: {escaped} with escapes, {absolute} absolute-form");
    assert!(forwarded > 600, "only {forwarded} of 4000 forwarded");
    assert!(escaped > 20, "only {escaped} forwarded targets had escapes");
    assert!(
        absolute > 5,
        "only {absolute} forwarded targets were absolute-form"
    );
}

// ---- The whole head: random requests against an independent model ----------

use holepunch::decision::cidr::AddrSet;
use holepunch::decision::head::{decide_request, Head, Rules};
use holepunch::decision::hosts::HostList;

/// A path for each group route of [`NOMAD_ROUTES`] (an id filled in under a
/// subtree): (path, group flag suffix, is an agent endpoint).
fn group_routes() -> Vec<(String, &'static str, bool)> {
    NOMAD_ROUTES
        .iter()
        .filter_map(|&(pattern, group)| {
            let path = match pattern.strip_suffix('/') {
                Some(_) => format!("{pattern}abc"),
                None => pattern.to_string(),
            };
            Some((path, group?, pattern.starts_with("/v1/agent/")))
        })
        .collect()
}

/// Paths outside every group.
const OTHER_PATHS: &[&str] = &[
    "/v1/jobs",
    "/v1/var/a",
    "/v1/agent/monitor",
    "/health",
    "/ready",
];

const QUERIES: &[&str] = &[
    "",
    "?format=prometheus",
    "?region=europe",
    "?region=global",
    "?reg%69on=asia",
    "?region=asia;x=1",
    "?node_id=abc",
    "?server_id=s",
    "?index=5&wait=1s",
];

const HEADERS: &[(&str, &str)] = &[
    ("Origin", "https://evil.example"),
    ("Sec-Fetch-Site", "none"),
    ("Sec-Fetch-Site", "cross-site"),
    ("Upgrade", "websocket"),
    ("Content-Length", "0"),
    ("Content-Length", "5"),
    ("Transfer-Encoding", "chunked"),
    ("Host", "evil.example"),
    ("Host", "10.0.0.9:6120"),
    ("Accept", "text/plain"),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// For random heads and rules: whatever the model says must not go to
    /// the socket is never forwarded, and a clean request to an open group
    /// is always forwarded.
    #[test]
    fn no_refused_head_is_forwarded(
        path in 0..(group_routes().len() + OTHER_PATHS.len()),
        query in 0..QUERIES.len(),
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "DELETE"]),
        headers in prop::collection::vec(0..HEADERS.len(), 0..4),
        open in prop::collection::vec(any::<bool>(), group_routes().len()),
        all in any::<bool>(),
        from_ten in any::<bool>(),
        client in prop::sample::select(vec!["10.1.2.3", "192.0.2.1", "::ffff:10.0.0.1"]),
        hosts_limited in any::<bool>(),
        region_known in any::<bool>(),
    ) {
        let routes = group_routes();
        let (path, route) = match routes.get(path) {
            Some(r) => (r.0.as_str(), Some(r.clone())),
            None => (OTHER_PATHS[path - routes.len()], None),
        };
        let target = format!("{path}{}", QUERIES[query]);
        let mut allow = Allowlist::none().with_all(all);
        for (i, r) in routes.iter().enumerate() {
            if open[i] {
                allow = allow.with(flag_of(r.1), true);
            }
        }
        let rules = Rules {
            allow,
            allow_from: from_ten.then(|| AddrSet::parse("10.0.0.0/8").unwrap()),
            allowed_hosts: hosts_limited.then(|| HostList::parse("nomad.example").unwrap()),
            region: region_known.then(|| "europe".to_string()),
        };
        let mut map = http::HeaderMap::new();
        let mut seen = Vec::new();
        for &h in &headers {
            let (k, v) = HEADERS[h];
            // One Host at most: two are refused by Pingora's parser first.
            if k == "Host" && seen.iter().any(|(k, _): &(&str, &str)| *k == "Host") {
                continue;
            }
            seen.push((k, v));
            map.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_static(v),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let ip: std::net::IpAddr = client.parse().unwrap();
        let d = decide_request(&rules, &Head {
            method: &method,
            target: target.as_bytes(),
            parsed: &parse_target(target.as_bytes()),
            headers: &map,
            client: Some(ip),
        });

        // The model, from the words.
        let has = |k: &str, v: &str| seen.iter().any(|(hk, hv)| *hk == k && *hv == v);
        let local = path == "/health" || path == "/ready";
        let read_only = method == Method::GET || method == Method::HEAD;
        let q = QUERIES[query];
        let mut must_not = Vec::new();
        if !local {
            if from_ten && !client.contains("10.") { must_not.push("address"); }
            if seen.iter().any(|(k, _)| *k == "Origin") || has("Sec-Fetch-Site", "cross-site") {
                must_not.push("web page");
            }
            if hosts_limited && has("Host", "evil.example") { must_not.push("host"); }
            match route {
                None if !all => must_not.push("outside the groups"),
                None => {}
                Some((_, flag, agent)) => {
                    let group_open = routes
                        .iter()
                        .zip(&open)
                        .any(|(r, &o)| o && r.1 == flag);
                    if has("Upgrade", "websocket") { must_not.push("upgrade"); }
                    if !all {
                        if !group_open { must_not.push("closed group"); }
                        if !read_only { must_not.push("method"); }
                        // Two Content-Length headers are refused like a body, as
                        // Go refuses "Content-Length: 0, 0".
                        let lengths = seen.iter().filter(|(k, _)| *k == "Content-Length").count();
                        if has("Content-Length", "5") || has("Transfer-Encoding", "chunked") || lengths > 1 {
                            must_not.push("body");
                        }
                        if region_known && (q == "?region=global" || q == "?reg%69on=asia") {
                            must_not.push("region");
                        }
                        if agent && (q == "?node_id=abc" || q == "?server_id=s") {
                            must_not.push("other agent");
                        }
                    }
                }
            }
        }
        let forwarded = matches!(d, Decision::Forward { .. });
        if !must_not.is_empty() {
            prop_assert!(!forwarded, "{method} {target} {seen:?} from {client}: {must_not:?} but {d:?}");
        } else if !local {
            prop_assert!(forwarded, "{method} {target} {seen:?} from {client}: clean but {d:?}");
        }
    }
}
