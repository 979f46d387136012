//! The allowlist: the endpoint groups an operator can open, and what a
//! decoded path and a method decide ([`decide_path`]): forward, a local
//! route, or a refusal for what is asked. The rest of the request decision
//! (the target's form, the head) is `crate::decision::head`'s.
//!
//! Pure: no I/O, no allocation.

use http::Method;

/// An endpoint group, enabled by its `HOLEPUNCH_ALLOW_*` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Metrics,
    AgentHealth,
    AgentSelf,
    AgentMembers,
    AgentServers,
    AgentHost,
    AgentSchedulers,
    Nodes,
    Plugins,
    Services,
    Status,
}

impl Group {
    /// Every group, in the order the README and the startup log list them.
    pub const ALL: [Group; 11] = [
        Group::Metrics,
        Group::AgentHealth,
        Group::AgentSelf,
        Group::AgentMembers,
        Group::AgentServers,
        Group::AgentHost,
        Group::AgentSchedulers,
        Group::Nodes,
        Group::Plugins,
        Group::Services,
        Group::Status,
    ];

    /// The environment variable that enables this group.
    pub fn flag(self) -> &'static str {
        match self {
            Group::Metrics => "HOLEPUNCH_ALLOW_METRICS",
            Group::AgentHealth => "HOLEPUNCH_ALLOW_AGENT_HEALTH",
            Group::AgentSelf => "HOLEPUNCH_ALLOW_AGENT_SELF",
            Group::AgentMembers => "HOLEPUNCH_ALLOW_AGENT_MEMBERS",
            Group::AgentServers => "HOLEPUNCH_ALLOW_AGENT_SERVERS",
            Group::AgentHost => "HOLEPUNCH_ALLOW_AGENT_HOST",
            Group::AgentSchedulers => "HOLEPUNCH_ALLOW_AGENT_SCHEDULERS",
            Group::Nodes => "HOLEPUNCH_ALLOW_NODES",
            Group::Plugins => "HOLEPUNCH_ALLOW_PLUGINS",
            Group::Services => "HOLEPUNCH_ALLOW_SERVICES",
            Group::Status => "HOLEPUNCH_ALLOW_STATUS",
        }
    }

    /// Whether the group is open when its flag is unset, as in the original.
    pub fn default_enabled(self) -> bool {
        matches!(self, Group::Metrics | Group::AgentHealth)
    }

    /// A short name for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Group::Metrics => "metrics",
            Group::AgentHealth => "agent_health",
            Group::AgentSelf => "agent_self",
            Group::AgentMembers => "agent_members",
            Group::AgentServers => "agent_servers",
            Group::AgentHost => "agent_host",
            Group::AgentSchedulers => "agent_schedulers",
            Group::Nodes => "nodes",
            Group::Plugins => "plugins",
            Group::Services => "services",
            Group::Status => "status",
        }
    }

    /// The group a decoded path belongs to, if any. Exact paths, plus the
    /// subtrees `/v1/node/`, `/v1/plugin/` and `/v1/service/` (with at least
    /// one byte after the prefix). Case-sensitive.
    pub fn of_path(path: &[u8]) -> Option<Group> {
        let rest = path.strip_prefix(b"/v1/")?;
        let group = match rest {
            b"metrics" => Group::Metrics,
            b"agent/health" => Group::AgentHealth,
            b"agent/self" => Group::AgentSelf,
            b"agent/members" => Group::AgentMembers,
            b"agent/servers" => Group::AgentServers,
            b"agent/host" => Group::AgentHost,
            b"agent/schedulers" | b"agent/schedulers/config" => Group::AgentSchedulers,
            b"nodes" => Group::Nodes,
            b"plugins" => Group::Plugins,
            b"services" => Group::Services,
            b"status/leader" | b"status/peers" => Group::Status,
            _ if under(rest, b"node/") => Group::Nodes,
            _ if under(rest, b"plugin/") => Group::Plugins,
            _ if under(rest, b"service/") => Group::Services,
            _ => return None,
        };
        Some(group)
    }

    /// Whether this is one of the `/v1/agent/...` groups.
    pub fn is_agent(self) -> bool {
        matches!(
            self,
            Group::AgentHealth
                | Group::AgentSelf
                | Group::AgentMembers
                | Group::AgentServers
                | Group::AgentHost
                | Group::AgentSchedulers
        )
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

fn under(rest: &[u8], prefix: &[u8]) -> bool {
    rest.len() > prefix.len() && rest.starts_with(prefix)
}

/// The set of open groups, plus the ALL switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowlist {
    all: bool,
    groups: u16,
}

impl Default for Allowlist {
    /// The original's defaults: metrics and agent health, nothing else.
    fn default() -> Self {
        Group::ALL
            .iter()
            .filter(|g| g.default_enabled())
            .fold(Allowlist::none(), |a, &g| a.with(g, true))
    }
}

impl Allowlist {
    /// Nothing open.
    pub fn none() -> Self {
        Allowlist {
            all: false,
            groups: 0,
        }
    }

    /// This allowlist with `group` opened or closed.
    pub fn with(self, group: Group, open: bool) -> Self {
        let groups = if open {
            self.groups | group.bit()
        } else {
            self.groups & !group.bit()
        };
        Allowlist { groups, ..self }
    }

    /// This allowlist with ALL (every `/v1/` path and method) on or off.
    pub fn with_all(self, all: bool) -> Self {
        Allowlist { all, ..self }
    }

    pub fn allows(&self, group: Group) -> bool {
        self.groups & group.bit() != 0
    }

    pub fn all(&self) -> bool {
        self.all
    }
}

/// What the path and the method decide: the allowlist's part of the
/// request decision (`crate::decision::head::Decision` is the whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Forwarded, as far as the path goes: `None` for a path only ALL covers.
    Forward(Option<Group>),
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
    /// A `/v1/` path no open group covers, and the group that would.
    Deny(Option<Group>),
    /// A method other than GET or HEAD on an open group's path (or on
    /// `/health` or `/ready`).
    MethodNotAllowed,
    /// A path outside `/v1/` other than `/health` and `/ready`.
    NotFound,
}

/// What a decoded path (`crate::decision::target::Target::path`) and a
/// method decide. Groups forward only GET and HEAD; ALL forwards every
/// method, on every `/v1/` path.
pub fn decide_path(allow: &Allowlist, method: &Method, path: &[u8]) -> Route {
    let read_only = method == Method::GET || method == Method::HEAD;
    let local = match path {
        b"/health" => Some(Route::Health),
        b"/ready" => Some(Route::Ready),
        _ => None,
    };
    if let Some(local) = local {
        return if read_only {
            local
        } else {
            Route::MethodNotAllowed
        };
    }
    if !path.starts_with(b"/v1/") {
        return Route::NotFound;
    }
    let group = Group::of_path(path);
    if allow.all {
        return Route::Forward(group);
    }
    match group {
        Some(g) if allow.allows(g) && read_only => Route::Forward(group),
        Some(g) if allow.allows(g) => Route::MethodNotAllowed,
        _ => Route::Deny(group),
    }
}
