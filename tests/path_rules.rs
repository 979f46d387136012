//! Property tests of the request decision: no refused variant of a path is
//! ever forwarded, and nothing that is forwarded under a group can be read
//! by the Task API as a path outside that group.
//!
//! Group membership is judged here with [`NOMAD_ROUTES`], Nomad's own route
//! table written out by hand, and what a forwarded target means with a model
//! of Go's URL parsing and ServeMux ([`go_path`], [`nomad_mux`]) applied to
//! the bytes the proxy would send, never with `Group::of_path` or the path
//! `parse_target` returns.

use holepunch::allowlist::{decide, Allowlist, Decision, Group};
use holepunch::target::{parse_target, Refusal};
use http::Method;
use proptest::prelude::*;

/// Every group open, ALL off: the strictest test of group boundaries.
fn every_group() -> Allowlist {
    Group::ALL
        .iter()
        .fold(Allowlist::none(), |a, &g| a.with(g, true))
}

// ---- Nomad's routes, apart from the code under test -------------------------

/// Every pattern Nomad's HTTP server registers, which is also what the Task
/// API socket serves (hashicorp/nomad command/agent/http.go,
/// `registerHandlers`, in order, and the community edition's stubs in
/// command/agent/http_ce.go, `registerEnterpriseHandlers`), each with the
/// endpoint group the README's "Endpoint groups" table puts it in, by the
/// suffix of its `HOLEPUNCH_ALLOW_*` flag. A pattern ending in `/` is a
/// subtree, as Go's ServeMux reads it.
const NOMAD_ROUTES: &[(&str, Option<&str>)] = &[
    ("/v1/jobs", None),
    ("/v1/jobs/parse", None),
    ("/v1/jobs/statuses", None),
    ("/v1/job/", None),
    ("/v1/nodes", Some("NODES")),
    ("/v1/node/", Some("NODES")),
    // Node pools live under /v1/node/ too, and the README's NODES is
    // "/v1/nodes and everything under /v1/node/": they open with NODES.
    ("/v1/node/pools", Some("NODES")),
    ("/v1/node/pool/", Some("NODES")),
    ("/v1/allocations", None),
    ("/v1/allocation/", None),
    ("/v1/evaluations", None),
    ("/v1/evaluations/count", None),
    ("/v1/evaluation/", None),
    ("/v1/deployments", None),
    ("/v1/deployment/", None),
    ("/v1/volumes", None),
    ("/v1/volumes/external", None),
    ("/v1/volumes/snapshot", None),
    ("/v1/volume/csi/", None),
    ("/v1/plugins", Some("PLUGINS")),
    ("/v1/plugin/csi/", Some("PLUGINS")),
    ("/v1/volume/host/", None),
    ("/v1/volumes/claims", None),
    ("/v1/volumes/claim/", None),
    ("/v1/acl/policies", None),
    ("/v1/acl/policy/", None),
    ("/v1/acl/token/onetime", None),
    ("/v1/acl/token/onetime/exchange", None),
    ("/v1/acl/bootstrap", None),
    ("/v1/acl/tokens", None),
    ("/v1/acl/token", None),
    ("/v1/acl/token/", None),
    ("/v1/acl/roles", None),
    ("/v1/acl/role", None),
    ("/v1/acl/role/", None),
    ("/v1/acl/auth-methods", None),
    ("/v1/acl/auth-method", None),
    ("/v1/acl/auth-method/", None),
    ("/v1/acl/binding-rules", None),
    ("/v1/acl/binding-rule", None),
    ("/v1/acl/binding-rule/", None),
    ("/v1/acl/oidc/auth-url", None),
    ("/v1/acl/oidc/complete-auth", None),
    ("/v1/acl/login", None),
    ("/v1/acl/identity/client-introduction-token", None),
    ("/v1/client/fs/", None),
    ("/v1/client/gc", None),
    ("/v1/client/stats", None),
    ("/v1/client/allocation/", None),
    ("/v1/client/metadata", None),
    ("/v1/client/identity", None),
    ("/v1/client/identity/renew", None),
    ("/v1/client/allocations/prometheus-sd", None),
    ("/v1/agent/self", Some("AGENT_SELF")),
    ("/v1/agent/join", None),
    ("/v1/agent/members", Some("AGENT_MEMBERS")),
    ("/v1/agent/force-leave", None),
    ("/v1/agent/servers", Some("AGENT_SERVERS")),
    ("/v1/agent/schedulers", Some("AGENT_SCHEDULERS")),
    ("/v1/agent/schedulers/config", Some("AGENT_SCHEDULERS")),
    ("/v1/agent/keyring/", None),
    ("/v1/agent/health", Some("AGENT_HEALTH")),
    ("/v1/agent/host", Some("AGENT_HOST")),
    ("/v1/agent/reload", None),
    ("/v1/services", Some("SERVICES")),
    ("/v1/service/", Some("SERVICES")),
    ("/v1/agent/monitor", None),
    ("/v1/agent/monitor/export", None),
    ("/v1/agent/pprof/", None),
    ("/v1/metrics", Some("METRICS")),
    ("/v1/validate/job", None),
    ("/v1/regions", None),
    ("/v1/scaling/policies", None),
    ("/v1/scaling/policy/", None),
    ("/v1/status/leader", Some("STATUS")),
    ("/v1/status/peers", Some("STATUS")),
    ("/v1/search/fuzzy", None),
    ("/v1/search", None),
    ("/v1/operator/license", None),
    ("/v1/operator/raft/", None),
    ("/v1/operator/keyring/", None),
    ("/v1/operator/autopilot/configuration", None),
    ("/v1/operator/autopilot/health", None),
    ("/v1/operator/snapshot", None),
    ("/v1/operator/upgrade-check/", None),
    ("/v1/operator/utilization", None),
    ("/v1/system/gc", None),
    ("/v1/system/reconcile/summaries", None),
    ("/v1/operator/scheduler/configuration", None),
    ("/v1/event/stream", None),
    ("/v1/namespaces", None),
    ("/v1/namespace", None),
    ("/v1/namespace/", None),
    ("/v1/vars", None),
    ("/v1/var/", None),
    ("/.well-known/jwks.json", None),
    ("/.well-known/openid-configuration", None),
    ("/ui/", None),
    // registerEnterpriseHandlers (community edition: 501 stubs).
    ("/v1/sentinel/policies", None),
    ("/v1/sentinel/policy/", None),
    ("/v1/quotas", None),
    ("/v1/quota-usages", None),
    ("/v1/quota/", None),
    ("/v1/quota", None),
    ("/v1/recommendation", None),
    ("/v1/recommendations", None),
    ("/v1/recommendations/apply", None),
    ("/v1/recommendation/", None),
];

/// The group whose flag is `HOLEPUNCH_ALLOW_<suffix>`.
fn flag_of(suffix: &str) -> Group {
    *Group::ALL
        .iter()
        .find(|g| g.flag() == format!("HOLEPUNCH_ALLOW_{suffix}"))
        .expect("a flag for every group named in NOMAD_ROUTES")
}

/// What Nomad's mux does with the path it decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nomad {
    /// The handler of `NOMAD_ROUTES[i]` runs.
    Handler(usize),
    /// No handler reads anything: 404 from the root fallthrough (Nomad's
    /// `handleRootFallthrough`), or a 301 from Go's ServeMux to the cleaned
    /// path or from `/tree` to `/tree/`, which comes back through the proxy
    /// if the client follows it.
    Nothing,
}

/// Go's ServeMux over [`NOMAD_ROUTES`]: a path that cleaning would change is
/// redirected; otherwise the longest pattern that matches wins (an exact
/// pattern matches only itself, a subtree pattern every path it prefixes).
fn nomad_mux(path: &[u8]) -> Nomad {
    if clean(path) != path {
        return Nomad::Nothing;
    }
    NOMAD_ROUTES
        .iter()
        .enumerate()
        .filter(|(_, (pattern, _))| {
            let pattern = pattern.as_bytes();
            if pattern.ends_with(b"/") {
                path.starts_with(pattern)
            } else {
                path == pattern
            }
        })
        .max_by_key(|(_, (pattern, _))| pattern.len())
        .map_or(Nomad::Nothing, |(i, _)| Nomad::Handler(i))
}

/// The group Nomad's route for `path` belongs to, and whether `path` is a
/// subtree pattern itself (`/v1/node/`), which names no object and which
/// the README leaves out ("everything under" means one more byte at least).
fn route_group(path: &[u8]) -> Option<(Option<Group>, bool)> {
    match nomad_mux(path) {
        Nomad::Handler(i) => {
            let (pattern, group) = NOMAD_ROUTES[i];
            let root = pattern.ends_with('/') && pattern.as_bytes() == path;
            Some((group.map(flag_of), root))
        }
        Nomad::Nothing => None,
    }
}

/// The path Nomad's Go server routes a forwarded origin-form target to
/// (`url.ParseRequestURI`, then `URL.Path`): the part before the first `?`,
/// every `%XX` decoded once. `None` where Go answers 400 instead: a `%`
/// without two hex digits, or a control byte.
fn go_path(origin: &[u8]) -> Option<Vec<u8>> {
    let raw = origin.split(|&b| b == b'?').next()?;
    if raw.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let (h, l) = (hex(*raw.get(i + 1)?)?, hex(*raw.get(i + 2)?)?);
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Judges a `Forward { group, origin_offset }` of `target` by the bytes the
/// proxy would send and what Nomad would do with them.
fn check_forward(target: &[u8], origin_offset: usize, group: Option<Group>) -> Result<(), String> {
    let shown = String::from_utf8_lossy(target);
    let sent = target
        .get(origin_offset..)
        .filter(|s| s.first() == Some(&b'/'))
        .ok_or_else(|| format!("{shown:?}: what is sent is not a path"))?;
    let escaped = sent.split(|&b| b == b'?').next().unwrap_or_default();
    let path = go_path(sent).ok_or_else(|| format!("{shown:?}: Nomad would answer 400"))?;
    // Go's ServeMux cleans the escaped path and then routes on the decoded
    // segments: neither may change, or Nomad would read another path.
    if clean(escaped) != escaped || clean(&path) != path {
        return Err(format!("{shown:?}: Nomad would redirect to a cleaned path"));
    }
    // The proxy decided on the path Nomad routes.
    let decided = parse_target(target)
        .map_err(|r| format!("{shown:?}: forwarded but parse_target says {r:?}"))?;
    if *decided.path != *path {
        return Err(format!("{shown:?}: decided on another path than Nomad's"));
    }
    match route_group(&path) {
        Some((g, root)) if g != group && !(root && group.is_none()) => {
            return Err(format!(
                "{shown:?}: forwarded as {group:?}, Nomad's route is {g:?}"
            ));
        }
        _ => {}
    }
    // Even a second, wrong decoding plus any normalisation cannot reach a
    // route of another group.
    if let Some(group) = group {
        let twice = clean(&percent_decode(&path));
        if let Some((g, _)) = route_group(&twice) {
            if g != Some(group) {
                return Err(format!(
                    "{shown:?}: decoded twice, {:?} is Nomad's route for {g:?}",
                    String::from_utf8_lossy(&twice)
                ));
            }
        }
    }
    Ok(())
}

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

/// Normalisation as an HTTP stack might do it after decoding: backslashes
/// as slashes, dot segments resolved, slashes merged.
fn clean(decoded: &[u8]) -> Vec<u8> {
    let slashed: Vec<u8> = decoded
        .iter()
        .map(|&b| if b == b'\\' { b'/' } else { b })
        .collect();
    let trailing = slashed.ends_with(b"/");
    let mut out: Vec<&[u8]> = Vec::new();
    for seg in slashed.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = Vec::new();
    for seg in out {
        path.push(b'/');
        path.extend_from_slice(seg);
    }
    if trailing || path.is_empty() {
        path.push(b'/');
    }
    path
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

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

use holepunch::cidr::AddrSet;
use holepunch::head::{decide_request, Head, HostList, Rules};

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
