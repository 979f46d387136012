//! The variable table: one entry per variable, with its name, its default,
//! what it means, how its value is parsed (straight into its part of
//! [`Config`], or into what the cross-variable rules resolve) and how its
//! effective setting is described.

use super::parse::*;
use super::{Config, Draft, Vars};
use crate::decision::allowlist::Group;
use crate::logging::LogFormat;
use crate::var_name;
use crate::vars::*;
use std::path::Path;

/// One variable: everything about it the program knows.
#[derive(Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// What applies when it is unset or empty.
    pub default: DefaultValue,
    /// What it is for, in one line.
    pub meaning: &'static str,
    parse: Parse,
    /// Its line in [`Config::setting_lines`]; `None` when another variable's line
    /// covers it (the port is on the bind address's line).
    show: Option<fn(&Config) -> String>,
}

/// A variable's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// This value, parsed as if it were set (so it is checked like one).
    Value(&'static str),
    /// No value: what being unset means, in the README's words.
    Unset(&'static str),
}

impl DefaultValue {
    /// The default as the README's configuration table writes it.
    pub fn readme(self) -> String {
        match self {
            DefaultValue::Value(v) => format!("`{v}`"),
            DefaultValue::Unset(text) => text.to_string(),
        }
    }
}

/// How a variable's value is taken.
#[derive(Clone, Copy)]
enum Parse {
    /// Stores the value in the draft, or says what is wrong with it.
    With(fn(&str, &mut Draft) -> Result<(), String>),
    /// An endpoint group's flag, a boolean.
    Flag(Group),
}

/// Every variable this program reads, in the order it reads them and
/// describes them: the fixed ones, then the endpoint groups' flags.
pub fn table() -> impl Iterator<Item = Var> {
    VARS.iter()
        .copied()
        .chain(Group::ALL.into_iter().map(|group| Var {
            name: group.flag(),
            default: DefaultValue::Value(if group.default_enabled() {
                "true"
            } else {
                "false"
            }),
            meaning: "open this endpoint group (see Endpoint groups)",
            parse: Parse::Flag(group),
            show: None,
        }))
}

pub(super) static VARS: &[Var] = &[
    Var {
        name: BIND,
        default: DefaultValue::Value("0.0.0.0"),
        meaning: "the IP address to listen on",
        parse: Parse::With(|v, d| parse_bind(v).map(|ip| d.pending.ip = Some(ip))),
        show: Some(|c| format!("listen address: {}", c.listeners.listen)),
    },
    Var {
        name: PORT,
        default: DefaultValue::Value("6120"),
        meaning: "the port to listen on",
        parse: Parse::With(|v, d| parse_port(v).map(|port| d.pending.port = Some(port))),
        show: None,
    },
    Var {
        name: SOCKET_PATH,
        default: DefaultValue::Unset(concat!(
            "`$",
            var_name!(NOMAD_SECRETS_DIR),
            "/api.sock`, else `/secrets/api.sock`"
        )),
        meaning: "the Task API socket",
        parse: Parse::With(|v, d| set(&mut d.pending.socket_path, Some(v.to_string()))),
        show: Some(|c| {
            format!(
                "Task API socket: {} (from {})",
                path_in_message(Path::new(&c.upstream.socket_path)),
                c.upstream.socket_path_from
            )
        }),
    },
    Var {
        name: SOCKET_PATH_ALIAS,
        default: DefaultValue::Unset("unset"),
        meaning: concat!(
            "the Task API socket, when ",
            var_name!(SOCKET_PATH),
            " is unset"
        ),
        parse: Parse::With(|v, d| set(&mut d.pending.socket_path_alias, Some(v.to_string()))),
        show: None,
    },
    Var {
        name: NOMAD_SECRETS_DIR,
        default: DefaultValue::Unset("set by Nomad"),
        meaning: "the task's secrets directory: the socket and the token file are in it",
        parse: Parse::With(|v, d| set(&mut d.pending.secrets_dir, Some(v.to_string()))),
        show: None,
    },
    Var {
        name: TOKEN_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "the file holding the workload token, re-read when it changes",
        parse: Parse::With(|v, d| set(&mut d.pending.token_file, Some(v.into()))),
        show: Some(|c| format!("workload token: {}", c.files.token.origin())),
    },
    Var {
        name: NOMAD_TOKEN,
        default: DefaultValue::Unset("unset"),
        meaning: "the workload token from identity { env = true }",
        // Never echoed: this parser has no error. Blank counts as unset.
        parse: Parse::With(|v, d| {
            let token = Some(v.to_string()).filter(|v| !v.trim().is_empty());
            set(&mut d.pending.nomad_token, token)
        }),
        show: None,
    },
    Var {
        name: ALLOW_ALL,
        default: DefaultValue::Value("false"),
        meaning: "every /v1/ path and every method, request bodies forwarded",
        parse: Parse::With(|v, d| {
            let all = parse_bool(v).ok_or(BOOLEAN)?;
            let allow = d.rules.allow.with_all(all);
            set(&mut d.rules.allow, allow)
        }),
        show: Some(|c| format!("{ALLOW_ALL} = {}", c.rules.allow.all())),
    },
    Var {
        name: UPSTREAM_TIMEOUT,
        default: DefaultValue::Value("340s"),
        meaning: "how long Nomad may take to send a response header, and between two body reads",
        parse: Parse::With(|v, d| positive_duration(v).map(|t| d.upstream.upstream_timeout = t)),
        show: Some(|c| format!("{UPSTREAM_TIMEOUT} = {:?}", c.upstream.upstream_timeout)),
    },
    Var {
        name: CLIENT_HEADER_TIMEOUT,
        default: DefaultValue::Value("10s"),
        meaning: "how long a client may take to send a whole request header (a body: each 64 KiB)",
        parse: Parse::With(|v, d| {
            positive_duration(v).map(|t| d.listeners.client_header_timeout = t)
        }),
        show: Some(|c| {
            format!(
                "{CLIENT_HEADER_TIMEOUT} = {:?}",
                c.listeners.client_header_timeout
            )
        }),
    },
    Var {
        name: CLIENT_WRITE_TIMEOUT,
        default: DefaultValue::Value("30s"),
        meaning: "how long a client may take no bytes of what the proxy writes to it",
        parse: Parse::With(|v, d| {
            positive_duration(v).map(|t| d.listeners.client_write_timeout = t)
        }),
        show: Some(|c| {
            format!(
                "{CLIENT_WRITE_TIMEOUT} = {:?}",
                c.listeners.client_write_timeout
            )
        }),
    },
    Var {
        name: CLIENT_IDLE_TIMEOUT,
        default: DefaultValue::Value("60s"),
        meaning: "how long a kept-alive client connection may wait for its next request",
        parse: Parse::With(|v, d| {
            positive_duration(v).map(|t| d.listeners.client_idle_timeout = t)
        }),
        show: Some(|c| {
            format!(
                "{CLIENT_IDLE_TIMEOUT} = {:?}",
                c.listeners.client_idle_timeout
            )
        }),
    },
    Var {
        name: MAX_CONNECTIONS,
        // Unset rather than a value: a default that does not fit the
        // open-files limit is lowered, a value the operator set is not
        // (`crate::conn::connections::fit`).
        default: DefaultValue::Unset("`1024`, or fewer to fit the open-files limit"),
        meaning: "the most client connections open at once, on both listeners",
        parse: Parse::With(|v, d| {
            parse_max_connections(v).map(|n| d.listeners.max_connections = Some(n))
        }),
        show: Some(|c| match c.listeners.max_connections {
            Some(n) => format!("{MAX_CONNECTIONS} = {n}"),
            None => format!("{MAX_CONNECTIONS} = default"),
        }),
    },
    Var {
        name: MAX_CONNECTIONS_PER_CLIENT,
        // The default is `limits::default_per_client` of the cap in force
        // (`crate::conn::connections::Fitted`), which says why.
        default: DefaultValue::Unset(concat!(
            "a quarter of `",
            var_name!(MAX_CONNECTIONS),
            "` (`256`), at least 4 and below it"
        )),
        meaning: "the most of those connections from one client address",
        parse: Parse::With(|v, d| {
            parse_max_connections_per_client(v)
                .map(|n| d.listeners.max_connections_per_client = Some(n))
        }),
        show: Some(|c| match c.listeners.max_connections_per_client {
            Some(n) => format!("{MAX_CONNECTIONS_PER_CLIENT} = {n} per client address"),
            None => format!("{MAX_CONNECTIONS_PER_CLIENT} = default"),
        }),
    },
    Var {
        name: ALLOW_FROM,
        default: DefaultValue::Unset("unset (any address)"),
        meaning: "the client addresses and CIDR ranges served",
        parse: Parse::With(|v, d| parse_allow_from(v).map(|set| d.rules.allow_from = Some(set))),
        show: Some(|c| match &c.rules.allow_from {
            Some(set) => format!("{ALLOW_FROM} = {set}"),
            None => format!("{ALLOW_FROM} = any address"),
        }),
    },
    Var {
        name: ALLOWED_HOSTS,
        default: DefaultValue::Unset("unset (any Host)"),
        meaning: "the Host names served, against DNS rebinding",
        parse: Parse::With(|v, d| {
            parse_allowed_hosts(v).map(|hosts| d.rules.allowed_hosts = Some(hosts))
        }),
        show: Some(|c| match &c.rules.allowed_hosts {
            Some(hosts) => format!("{ALLOWED_HOSTS} = {hosts} (and IP addresses, localhost)"),
            None => format!("{ALLOWED_HOSTS} = any host"),
        }),
    },
    Var {
        name: NOMAD_REGION,
        default: DefaultValue::Unset("set by Nomad"),
        meaning: "the agent's region; a request naming another region is refused",
        parse: Parse::With(|v, d| set(&mut d.rules.region, Some(v.to_string()))),
        show: Some(|c| match &c.rules.region {
            Some(region) => format!("region: {region} (from {NOMAD_REGION})"),
            None => format!("region: unknown ({NOMAD_REGION} unset): not checked"),
        }),
    },
    Var {
        name: MAX_IN_FLIGHT,
        default: DefaultValue::Value(DEFAULT_MAX_IN_FLIGHT),
        meaning: "the most requests on the Task API socket at once",
        parse: Parse::With(|v, d| parse_max_in_flight(v).map(|n| d.limits.max_in_flight = n)),
        show: Some(|c| format!("{MAX_IN_FLIGHT} = {}", c.limits.max_in_flight)),
    },
    Var {
        name: MAX_IN_FLIGHT_PER_CLIENT,
        // The default is `limits::default_per_client`, which says why.
        default: DefaultValue::Unset(concat!(
            "a quarter of `",
            var_name!(MAX_IN_FLIGHT),
            "` (`64`), at least 4 and below it"
        )),
        meaning: "the most requests on the Task API socket at once from one client address",
        parse: Parse::With(|v, d| {
            parse_max_in_flight_per_client(v).map(|n| d.pending.max_in_flight_per_client = Some(n))
        }),
        show: Some(|c| {
            format!(
                "{MAX_IN_FLIGHT_PER_CLIENT} = {} per client address",
                c.limits.max_in_flight_per_client
            )
        }),
    },
    Var {
        name: RATE_LIMIT,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "requests per client address, as N/s, N/m or N/h",
        parse: Parse::With(|v, d| {
            parse_rate_limit(v).map(|limit| d.limits.rate_limit = Some(limit))
        }),
        show: Some(|c| match c.limits.rate_limit {
            Some(limit) => format!("{RATE_LIMIT} = {limit} per client address"),
            None => format!("{RATE_LIMIT} = off"),
        }),
    },
    Var {
        name: MAX_BODY,
        default: DefaultValue::Value("1MiB"),
        meaning: "the largest request body forwarded (bodies exist only under ALL)",
        parse: Parse::With(|v, d| {
            let size = parse_size(v)
                .ok_or("expected a size in bytes, such as 1048576, 512KiB, 1MiB or 2MB")?;
            set(&mut d.limits.max_body, size)
        }),
        show: Some(|c| format!("{MAX_BODY} = {} bytes", c.limits.max_body)),
    },
    Var {
        name: TLS_CERT_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "TLS on the listener: the certificate chain, PEM",
        parse: Parse::With(|v, d| set(&mut d.pending.tls_cert, Some(v.into()))),
        show: Some(|c| match &c.files.tls {
            Some(t) => format!("TLS: {} and {}", t.cert.display(), t.key.display()),
            None => "TLS: off".to_string(),
        }),
    },
    Var {
        name: TLS_KEY_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "TLS on the listener: the private key, PEM",
        parse: Parse::With(|v, d| set(&mut d.pending.tls_key, Some(v.into()))),
        show: None,
    },
    Var {
        name: TLS_CLIENT_CA_FILE,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "TLS on the listener: the CA certificates a client certificate must chain to, PEM",
        parse: Parse::With(|v, d| set(&mut d.pending.tls_client_ca, Some(v.into()))),
        show: Some(
            |c| match c.files.tls.as_ref().and_then(|t| t.client_ca.as_ref()) {
                Some(path) => format!(
                    "client certificates: required, from a CA in {}",
                    path.display()
                ),
                None => "client certificates: off".to_string(),
            },
        ),
    },
    Var {
        name: CLIENT_TOKEN_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "bearer tokens clients must present, one per line",
        parse: Parse::With(|v, d| set(&mut d.pending.client_token_file, Some(v.into()))),
        show: Some(|c| match &c.files.client_token_file {
            Some(path) => format!("client tokens: required, from {}", path.display()),
            None => "client tokens: off".to_string(),
        }),
    },
    Var {
        name: METRICS_CACHE_TTL,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "how long identical metrics scrapes are served from memory",
        parse: Parse::With(|v, d| {
            positive_duration(v).map(|t| d.upstream.metrics_cache_ttl = Some(t))
        }),
        show: Some(|c| match c.upstream.metrics_cache_ttl {
            Some(ttl) => format!("{METRICS_CACHE_TTL} = {ttl:?}"),
            None => format!("{METRICS_CACHE_TTL} = off"),
        }),
    },
    Var {
        name: TELEMETRY_BIND,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "the address and port of the proxy's own Prometheus metrics",
        parse: Parse::With(|v, d| {
            parse_telemetry_bind(v).map(|addr| d.pending.telemetry = Some((addr, v.to_string())))
        }),
        show: Some(|c| match c.listeners.telemetry_listen {
            Some(addr) => format!("{TELEMETRY_BIND} = {addr}"),
            None => format!("{TELEMETRY_BIND} = off"),
        }),
    },
    Var {
        name: LOG_FORMAT,
        default: DefaultValue::Value("text"),
        meaning: "text, or json for one JSON object per line",
        parse: Parse::With(|v, d| LogFormat::parse(v).map(|format| d.log_format = format)),
        show: Some(|c| format!("{LOG_FORMAT} = {}", c.log_format.name())),
    },
];

impl Var {
    /// Reads this variable's value (or its default) into the draft; a
    /// problem is recorded under its name.
    pub(super) fn read(&self, vars: &Vars, draft: &mut Draft, problems: &mut Problems) {
        let value = match vars.get(self.name) {
            Some(Err(())) => return problems.add(self.name, None, "the value is not valid UTF-8"),
            Some(Ok(v)) if !v.is_empty() => v.as_str(),
            _ => match self.default {
                DefaultValue::Value(v) => v,
                DefaultValue::Unset(_) => return,
            },
        };
        let parsed = match self.parse {
            Parse::With(parse) => parse(value, draft),
            Parse::Flag(group) => match parse_bool(value) {
                Some(open) => {
                    draft.rules.allow = draft.rules.allow.with(group, open);
                    Ok(())
                }
                None => Err(BOOLEAN.to_string()),
            },
        };
        if let Err(problem) = parsed {
            problems.add(self.name, Some(value), problem);
        }
    }

    /// This variable's line in the description, if it has its own.
    pub(super) fn setting_line(&self, config: &Config) -> Option<String> {
        match self.parse {
            Parse::Flag(group) => Some(format!(
                "{} = {}",
                self.name,
                config.rules.allow.allows(group)
            )),
            Parse::With(_) => self.show.map(|show| show(config)),
        }
    }
}
