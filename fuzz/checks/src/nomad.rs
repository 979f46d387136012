//! Nomad's routes and Go's routing, written out apart from the code under
//! test: the table of every pattern Nomad's HTTP server registers, with the
//! endpoint group the README puts it in ([`NOMAD_ROUTES`]), and a model of
//! what Go's `net/http` does with the bytes the proxy forwards ([`go_path`],
//! [`nomad_mux`], [`clean`]). Group membership is judged with these, never
//! with `Group::of_path` or the path `parse_target` returns.
//!
//! The property tests (tests/path_rules.rs), the `decide` and `request_target` fuzz
//! targets and the corpus replay all judge with this one copy.

use holepunch::decision::allowlist::Group;
use holepunch::decision::target::parse_target;

/// Every pattern Nomad's HTTP server registers, which is also what the Task
/// API socket serves (hashicorp/nomad command/agent/http.go,
/// `registerHandlers`, in order, and the community edition's stubs in
/// command/agent/http_ce.go, `registerEnterpriseHandlers`), each with the
/// endpoint group the README's "Endpoint groups" table puts it in, by the
/// suffix of its `HOLEPUNCH_ALLOW_*` flag. A pattern ending in `/` is a
/// subtree, as Go's ServeMux reads it.
pub const NOMAD_ROUTES: &[(&str, Option<&str>)] = &[
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
pub fn flag_of(suffix: &str) -> Group {
    *Group::ALL
        .iter()
        .find(|g| g.flag() == format!("HOLEPUNCH_ALLOW_{suffix}"))
        .expect("a flag for every group named in NOMAD_ROUTES")
}

/// What Nomad's mux does with the path it decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nomad {
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
pub fn nomad_mux(path: &[u8]) -> Nomad {
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
pub fn route_group(path: &[u8]) -> Option<(Option<Group>, bool)> {
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
pub fn go_path(origin: &[u8]) -> Option<Vec<u8>> {
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
pub fn check_forward(
    target: &[u8],
    origin_offset: usize,
    group: Option<Group>,
) -> Result<(), String> {
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

/// Normalisation as an HTTP stack might do it after decoding: backslashes
/// as slashes, dot segments resolved, slashes merged.
pub fn clean(decoded: &[u8]) -> Vec<u8> {
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

pub fn percent_decode(s: &[u8]) -> Vec<u8> {
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
