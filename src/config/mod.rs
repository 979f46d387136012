//! Configuration from the environment, with the Go original's variable names
//! and defaults, but strict: every bad value is an error naming the variable,
//! the value and what would be accepted, and nothing falls back silently.
//!
//! One table, [`table`], has one entry per variable: its name, its default,
//! what it means, how its value is parsed and how its effective setting is
//! described. The table drives the parsing, the unknown-variable check, and
//! the description printed by `--check` and at startup. Each variable is read
//! once, in the table's order; settings that depend on several variables
//! (the socket path, the token's source, the TLS pair, ALL off loopback) are
//! resolved after, so problems are reported in a stable order, each once.
//!
//! Pure: [`Config::from_vars`] takes the variables as a list, so tests and
//! `--check` see exactly what the server would. Reading the token itself
//! (a file, maybe) is `crate::files::token`'s job.

use crate::decision::allowlist::{Allowlist, Group};
use crate::decision::cidr::AddrSet;
use crate::decision::hosts::HostList;
use crate::files::token::TokenSource;
use crate::logging::LogFormat;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of each variable, the only place it is written (the endpoint
/// groups' flags are written in [`Group::flag`]). `var_name!(PORT)` is the
/// literal, for fixed messages elsewhere (`concat!`); the constants below are
/// the same names for everything else.
#[macro_export]
macro_rules! var_name {
    (BIND) => {
        "HOLEPUNCH_BIND"
    };
    (PORT) => {
        "HOLEPUNCH_PORT"
    };
    (SOCKET_PATH) => {
        "HOLEPUNCH_SOCKET_PATH"
    };
    (SOCKET_PATH_ALIAS) => {
        "NOMAD_SOCKET_PATH"
    };
    (NOMAD_SECRETS_DIR) => {
        "NOMAD_SECRETS_DIR"
    };
    (TOKEN_FILE) => {
        "HOLEPUNCH_TOKEN_FILE"
    };
    (NOMAD_TOKEN) => {
        "NOMAD_TOKEN"
    };
    (ALLOW_ALL) => {
        "HOLEPUNCH_ALLOW_ALL"
    };
    (UPSTREAM_TIMEOUT) => {
        "HOLEPUNCH_UPSTREAM_TIMEOUT"
    };
    (CLIENT_HEADER_TIMEOUT) => {
        "HOLEPUNCH_CLIENT_HEADER_TIMEOUT"
    };
    (CLIENT_WRITE_TIMEOUT) => {
        "HOLEPUNCH_CLIENT_WRITE_TIMEOUT"
    };
    (CLIENT_IDLE_TIMEOUT) => {
        "HOLEPUNCH_CLIENT_IDLE_TIMEOUT"
    };
    (MAX_CONNECTIONS) => {
        "HOLEPUNCH_MAX_CONNECTIONS"
    };
    (MAX_CONNECTIONS_PER_CLIENT) => {
        "HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT"
    };
    (ALLOW_FROM) => {
        "HOLEPUNCH_ALLOW_FROM"
    };
    (ALLOWED_HOSTS) => {
        "HOLEPUNCH_ALLOWED_HOSTS"
    };
    (NOMAD_REGION) => {
        "NOMAD_REGION"
    };
    (MAX_IN_FLIGHT) => {
        "HOLEPUNCH_MAX_IN_FLIGHT"
    };
    (MAX_IN_FLIGHT_PER_CLIENT) => {
        "HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT"
    };
    (RATE_LIMIT) => {
        "HOLEPUNCH_RATE_LIMIT"
    };
    (MAX_BODY) => {
        "HOLEPUNCH_MAX_BODY"
    };
    (TLS_CERT_FILE) => {
        "HOLEPUNCH_TLS_CERT_FILE"
    };
    (TLS_KEY_FILE) => {
        "HOLEPUNCH_TLS_KEY_FILE"
    };
    (TLS_CLIENT_CA_FILE) => {
        "HOLEPUNCH_TLS_CLIENT_CA_FILE"
    };
    (CLIENT_TOKEN_FILE) => {
        "HOLEPUNCH_CLIENT_TOKEN_FILE"
    };
    (METRICS_CACHE_TTL) => {
        "HOLEPUNCH_METRICS_CACHE_TTL"
    };
    (TELEMETRY_BIND) => {
        "HOLEPUNCH_TELEMETRY_BIND"
    };
    (LOG_FORMAT) => {
        "HOLEPUNCH_LOG_FORMAT"
    };
}

pub const BIND: &str = var_name!(BIND);
pub const PORT: &str = var_name!(PORT);
pub const SOCKET_PATH: &str = var_name!(SOCKET_PATH);
/// The name the Go original's README gives; read when HOLEPUNCH_SOCKET_PATH is unset.
pub const SOCKET_PATH_ALIAS: &str = var_name!(SOCKET_PATH_ALIAS);
/// Set by Nomad for every task.
pub const NOMAD_SECRETS_DIR: &str = var_name!(NOMAD_SECRETS_DIR);
pub const TOKEN_FILE: &str = var_name!(TOKEN_FILE);
/// Set by `identity { env = true }`.
pub const NOMAD_TOKEN: &str = var_name!(NOMAD_TOKEN);
pub const ALLOW_ALL: &str = var_name!(ALLOW_ALL);
pub const UPSTREAM_TIMEOUT: &str = var_name!(UPSTREAM_TIMEOUT);
pub const CLIENT_HEADER_TIMEOUT: &str = var_name!(CLIENT_HEADER_TIMEOUT);
pub const CLIENT_WRITE_TIMEOUT: &str = var_name!(CLIENT_WRITE_TIMEOUT);
pub const CLIENT_IDLE_TIMEOUT: &str = var_name!(CLIENT_IDLE_TIMEOUT);
pub const MAX_CONNECTIONS: &str = var_name!(MAX_CONNECTIONS);
pub const MAX_CONNECTIONS_PER_CLIENT: &str = var_name!(MAX_CONNECTIONS_PER_CLIENT);
pub const ALLOW_FROM: &str = var_name!(ALLOW_FROM);
pub const ALLOWED_HOSTS: &str = var_name!(ALLOWED_HOSTS);
/// Set by Nomad for every task: the region of the agent.
pub const NOMAD_REGION: &str = var_name!(NOMAD_REGION);
pub const MAX_IN_FLIGHT: &str = var_name!(MAX_IN_FLIGHT);
pub const MAX_IN_FLIGHT_PER_CLIENT: &str = var_name!(MAX_IN_FLIGHT_PER_CLIENT);
pub const RATE_LIMIT: &str = var_name!(RATE_LIMIT);
pub const MAX_BODY: &str = var_name!(MAX_BODY);
pub const TLS_CERT_FILE: &str = var_name!(TLS_CERT_FILE);
pub const TLS_KEY_FILE: &str = var_name!(TLS_KEY_FILE);
pub const TLS_CLIENT_CA_FILE: &str = var_name!(TLS_CLIENT_CA_FILE);
pub const CLIENT_TOKEN_FILE: &str = var_name!(CLIENT_TOKEN_FILE);
pub const METRICS_CACHE_TTL: &str = var_name!(METRICS_CACHE_TTL);
pub const TELEMETRY_BIND: &str = var_name!(TELEMETRY_BIND);
pub const LOG_FORMAT: &str = var_name!(LOG_FORMAT);

/// Every variable of ours starts with this; any other such variable is an
/// error, so a typo cannot silently leave a default.
const PREFIX: &str = "HOLEPUNCH_";

/// The socket path when neither the variables nor NOMAD_SECRETS_DIR say otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/secrets/api.sock";
/// Named in its variable's message, so written once here.
const DEFAULT_MAX_IN_FLIGHT: &str = "256";

/// The longest path a Unix socket address can hold on Linux (`sun_path` is
/// 108 bytes including the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// One variable: everything about it the program knows.
#[derive(Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// What applies when it is unset or empty.
    pub default: DefaultValue,
    /// What it is for, in one line.
    pub meaning: &'static str,
    parse: Parse,
    /// Its line in [`Config::describe`]; `None` when another variable's line
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

const BOOLEAN: &str =
    "expected a boolean: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false or False";
const DURATION: &str = "expected a duration above zero with a unit, such as 500ms, 10s, \
                        1m30s or 1h (units: ns, us, ms, s, m, h)";

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

static VARS: [Var; 28] = [
    Var {
        name: BIND,
        default: DefaultValue::Value("0.0.0.0"),
        meaning: "the IP address to listen on",
        parse: Parse::With(|v, d| parse_bind(v).map(|ip| d.ip = Some(ip))),
        show: Some(|c| format!("listen address: {}", c.listen)),
    },
    Var {
        name: PORT,
        default: DefaultValue::Value("6120"),
        meaning: "the port to listen on",
        parse: Parse::With(|v, d| parse_port(v).map(|port| d.port = Some(port))),
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
        parse: Parse::With(|v, d| set(&mut d.socket_path, Some(v.to_string()))),
        show: Some(|c| {
            format!(
                "Task API socket: {} (from {})",
                path_in_message(Path::new(&c.socket_path)),
                c.socket_path_from
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
        parse: Parse::With(|v, d| set(&mut d.socket_path_alias, Some(v.to_string()))),
        show: None,
    },
    Var {
        name: NOMAD_SECRETS_DIR,
        default: DefaultValue::Unset("set by Nomad"),
        meaning: "the task's secrets directory: the socket and the token file are in it",
        parse: Parse::With(|v, d| set(&mut d.secrets_dir, Some(v.to_string()))),
        show: None,
    },
    Var {
        name: TOKEN_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "the file holding the workload token, re-read when it changes",
        parse: Parse::With(|v, d| set(&mut d.token_file, Some(v.into()))),
        show: Some(|c| format!("workload token: {}", c.token.describe())),
    },
    Var {
        name: NOMAD_TOKEN,
        default: DefaultValue::Unset("unset"),
        meaning: "the workload token from identity { env = true }",
        // Never echoed: this parser has no error. Blank counts as unset.
        parse: Parse::With(|v, d| {
            let token = Some(v.to_string()).filter(|v| !v.trim().is_empty());
            set(&mut d.nomad_token, token)
        }),
        show: None,
    },
    Var {
        name: ALLOW_ALL,
        default: DefaultValue::Value("false"),
        meaning: "every /v1/ path and every method, request bodies forwarded",
        parse: Parse::With(|v, d| {
            let all = parse_bool(v).ok_or(BOOLEAN)?;
            let allow = d.allow.with_all(all);
            set(&mut d.allow, allow)
        }),
        show: Some(|c| format!("{ALLOW_ALL} = {}", c.allow.all())),
    },
    Var {
        name: UPSTREAM_TIMEOUT,
        default: DefaultValue::Value("340s"),
        meaning: "how long Nomad may take to send a response header, and between two body reads",
        parse: Parse::With(|v, d| positive_duration(v).map(|t| d.upstream_timeout = t)),
        show: Some(|c| format!("{UPSTREAM_TIMEOUT} = {:?}", c.upstream_timeout)),
    },
    Var {
        name: CLIENT_HEADER_TIMEOUT,
        default: DefaultValue::Value("10s"),
        meaning: "how long a client may take to send a whole request header (a body: each 64 KiB)",
        parse: Parse::With(|v, d| positive_duration(v).map(|t| d.client_header_timeout = t)),
        show: Some(|c| format!("{CLIENT_HEADER_TIMEOUT} = {:?}", c.client_header_timeout)),
    },
    Var {
        name: CLIENT_WRITE_TIMEOUT,
        default: DefaultValue::Value("30s"),
        meaning: "how long a client may take no bytes of what the proxy writes to it",
        parse: Parse::With(|v, d| positive_duration(v).map(|t| d.client_write_timeout = t)),
        show: Some(|c| format!("{CLIENT_WRITE_TIMEOUT} = {:?}", c.client_write_timeout)),
    },
    Var {
        name: CLIENT_IDLE_TIMEOUT,
        default: DefaultValue::Value("60s"),
        meaning: "how long a kept-alive client connection may wait for its next request",
        parse: Parse::With(|v, d| positive_duration(v).map(|t| d.client_idle_timeout = t)),
        show: Some(|c| format!("{CLIENT_IDLE_TIMEOUT} = {:?}", c.client_idle_timeout)),
    },
    Var {
        name: MAX_CONNECTIONS,
        // Unset rather than a value: a default that does not fit the
        // open-files limit is lowered, a value the operator set is not
        // (`crate::conn::connections::fit`).
        default: DefaultValue::Unset("`1024`, or fewer to fit the open-files limit"),
        meaning: "the most client connections open at once, on both listeners",
        parse: Parse::With(|v, d| parse_max_connections(v).map(|n| d.max_connections = Some(n))),
        show: Some(|c| match c.max_connections {
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
            parse_max_connections_per_client(v).map(|n| d.max_connections_per_client = Some(n))
        }),
        show: Some(|c| match c.max_connections_per_client {
            Some(n) => format!("{MAX_CONNECTIONS_PER_CLIENT} = {n} per client address"),
            None => format!("{MAX_CONNECTIONS_PER_CLIENT} = default"),
        }),
    },
    Var {
        name: ALLOW_FROM,
        default: DefaultValue::Unset("unset (any address)"),
        meaning: "the client addresses and CIDR ranges served",
        parse: Parse::With(|v, d| parse_allow_from(v).map(|set| d.allow_from = Some(set))),
        show: Some(|c| match &c.allow_from {
            Some(set) => format!("{ALLOW_FROM} = {set}"),
            None => format!("{ALLOW_FROM} = any address"),
        }),
    },
    Var {
        name: ALLOWED_HOSTS,
        default: DefaultValue::Unset("unset (any Host)"),
        meaning: "the Host names served, against DNS rebinding",
        parse: Parse::With(|v, d| {
            parse_allowed_hosts(v).map(|hosts| d.allowed_hosts = Some(hosts))
        }),
        show: Some(|c| match &c.allowed_hosts {
            Some(hosts) => format!("{ALLOWED_HOSTS} = {hosts} (and IP addresses, localhost)"),
            None => format!("{ALLOWED_HOSTS} = any host"),
        }),
    },
    Var {
        name: NOMAD_REGION,
        default: DefaultValue::Unset("set by Nomad"),
        meaning: "the agent's region; a request naming another region is refused",
        parse: Parse::With(|v, d| set(&mut d.region, Some(v.to_string()))),
        show: Some(|c| match &c.region {
            Some(region) => format!("region: {region} (from {NOMAD_REGION})"),
            None => format!("region: unknown ({NOMAD_REGION} unset): not checked"),
        }),
    },
    Var {
        name: MAX_IN_FLIGHT,
        default: DefaultValue::Value(DEFAULT_MAX_IN_FLIGHT),
        meaning: "the most requests on the Task API socket at once",
        parse: Parse::With(|v, d| parse_max_in_flight(v).map(|n| d.max_in_flight = n)),
        show: Some(|c| format!("{MAX_IN_FLIGHT} = {}", c.max_in_flight)),
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
            parse_max_in_flight_per_client(v).map(|n| d.max_in_flight_per_client = Some(n))
        }),
        show: Some(|c| {
            format!(
                "{MAX_IN_FLIGHT_PER_CLIENT} = {} per client address",
                c.max_in_flight_per_client
            )
        }),
    },
    Var {
        name: RATE_LIMIT,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "requests per client address, as N/s, N/m or N/h",
        parse: Parse::With(|v, d| parse_rate_limit(v).map(|limit| d.rate_limit = Some(limit))),
        show: Some(|c| match c.rate_limit {
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
            set(&mut d.max_body, size)
        }),
        show: Some(|c| format!("{MAX_BODY} = {} bytes", c.max_body)),
    },
    Var {
        name: TLS_CERT_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "TLS on the listener: the certificate chain, PEM",
        parse: Parse::With(|v, d| set(&mut d.tls_cert, Some(v.into()))),
        show: Some(|c| match &c.tls {
            Some(t) => format!("TLS: {} and {}", t.cert.display(), t.key.display()),
            None => "TLS: off".to_string(),
        }),
    },
    Var {
        name: TLS_KEY_FILE,
        default: DefaultValue::Unset("unset"),
        meaning: "TLS on the listener: the private key, PEM",
        parse: Parse::With(|v, d| set(&mut d.tls_key, Some(v.into()))),
        show: None,
    },
    Var {
        name: TLS_CLIENT_CA_FILE,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "TLS on the listener: the CA certificates a client certificate must chain to, PEM",
        parse: Parse::With(|v, d| set(&mut d.tls_client_ca, Some(v.into()))),
        show: Some(
            |c| match c.tls.as_ref().and_then(|t| t.client_ca.as_ref()) {
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
        parse: Parse::With(|v, d| set(&mut d.client_token_file, Some(v.into()))),
        show: Some(|c| match &c.client_token_file {
            Some(path) => format!("client tokens: required, from {}", path.display()),
            None => "client tokens: off".to_string(),
        }),
    },
    Var {
        name: METRICS_CACHE_TTL,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "how long identical metrics scrapes are served from memory",
        parse: Parse::With(|v, d| positive_duration(v).map(|t| d.metrics_cache_ttl = Some(t))),
        show: Some(|c| match c.metrics_cache_ttl {
            Some(ttl) => format!("{METRICS_CACHE_TTL} = {ttl:?}"),
            None => format!("{METRICS_CACHE_TTL} = off"),
        }),
    },
    Var {
        name: TELEMETRY_BIND,
        default: DefaultValue::Unset("unset (off)"),
        meaning: "the address and port of the proxy's own Prometheus metrics",
        parse: Parse::With(|v, d| {
            parse_telemetry_bind(v).map(|addr| d.telemetry = Some((addr, v.to_string())))
        }),
        show: Some(|c| match c.telemetry_listen {
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
    fn read(&self, vars: &Vars, draft: &mut Draft, problems: &mut Problems) {
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
                    draft.allow = draft.allow.with(group, open);
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
    fn describe(&self, config: &Config) -> Option<String> {
        match self.parse {
            Parse::Flag(group) => Some(format!("{} = {}", self.name, config.allow.allows(group))),
            Parse::With(_) => self.show.map(|show| show(config)),
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The address the proxy listens on.
    pub listen: SocketAddr,
    /// The Nomad Task API socket.
    pub socket_path: String,
    /// Which variable `socket_path` came from (or "default").
    pub socket_path_from: &'static str,
    /// Where the workload token comes from.
    pub token: TokenSource,
    /// The open groups.
    pub allow: Allowlist,
    /// How long the Task API may take to send a response header, and at
    /// most between two reads of its body, before the client gets 504.
    pub upstream_timeout: Duration,
    /// How long a client may take to send a complete request header (and
    /// finish the TLS handshake before it).
    pub client_header_timeout: Duration,
    /// How long a write to a client may wait for it to take bytes.
    pub client_write_timeout: Duration,
    /// How long a kept-alive client connection may wait for its next request.
    pub client_idle_timeout: Duration,
    /// The most client connections open at once, when the operator set it;
    /// `None`: the default, fitted to the open-files limit at startup.
    pub max_connections: Option<usize>,
    /// The most of those from one client address, when the operator set
    /// it; `None`: a quarter of the cap in force (`crate::conn::connections::Fitted`).
    pub max_connections_per_client: Option<usize>,
    /// The client addresses served, when limited.
    pub allow_from: Option<AddrSet>,
    /// The Host names served, when limited.
    pub allowed_hosts: Option<HostList>,
    /// The agent's region (`NOMAD_REGION`), when known.
    pub region: Option<String>,
    /// The most requests forwarded at once.
    pub max_in_flight: usize,
    /// The most requests forwarded at once for one client address.
    pub max_in_flight_per_client: usize,
    /// Requests per client address, when limited.
    pub rate_limit: Option<RateLimit>,
    /// The largest request body forwarded (bodies exist only under ALL).
    pub max_body: u64,
    /// TLS on the listener: the certificate chain and key, both PEM, and
    /// the CAs of client certificates, when they are required.
    pub tls: Option<TlsFiles>,
    /// Bearer tokens clients must present, one per line.
    pub client_token_file: Option<PathBuf>,
    /// How long a metrics response is served from memory; `None`: only
    /// concurrent identical scrapes share one upstream request.
    pub metrics_cache_ttl: Option<Duration>,
    /// Where the proxy's own Prometheus metrics are served, if anywhere.
    pub telemetry_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
}

/// `HOLEPUNCH_RATE_LIMIT`: at most `requests` per `per` from one client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    /// Parses `20/s`, `600/m` or `10000/h`.
    pub fn parse(v: &str) -> Option<RateLimit> {
        let (n, unit) = v.split_once('/')?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return None,
        };
        if n.starts_with('+') {
            return None;
        }
        let requests: u32 = n.parse().ok().filter(|&n| n > 0)?;
        Some(RateLimit { requests, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// The PEM files for TLS on the listener, re-read when they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `HOLEPUNCH_TLS_CLIENT_CA_FILE`: when set, every client must present
    /// a certificate from one of these CAs (`crate::files::client_cert`).
    pub client_ca: Option<PathBuf>,
}

/// One problem with one variable (or with `-c`, or a file a variable names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault.
    pub var: String,
    /// The value it had, quoted for the message; `None` when it was unset or
    /// when the value must not be shown (a token).
    pub value: Option<String>,
    /// What is wrong: what would be accepted, or what could not be done
    /// with the value, and what to do.
    pub problem: String,
}

/// How a path that came from a variable is shown in a message: as it is
/// when it is plainly a path (absolute, or starting with `./` or `../`),
/// otherwise not at all. A value that is not plainly a path may be a token
/// set in the wrong variable (a client token in HOLEPUNCH_CLIENT_TOKEN_FILE,
/// the workload token in NOMAD_SECRETS_DIR), and the paths made from it
/// (`$NOMAD_SECRETS_DIR/nomad_token`) hold it whole. A token holds a `/`
/// often (base64), so a `/` alone does not make a path; one starting with
/// `/` is a token only by a 1 in 64 chance of base64, and never a JWT or a
/// UUID. Nomad's own paths are absolute. Pure.
pub fn shown_path(path: &Path) -> Option<&str> {
    path.to_str()
        .filter(|p| p.starts_with('/') || p.starts_with("./") || p.starts_with("../"))
}

/// What stands for a path [`shown_path`] does not show.
pub const PATH_NOT_SHOWN: &str = "(a value not shown: not a path starting with /, ./ or ../)";

/// `path` for the inside of a message: [`shown_path`], or
/// [`PATH_NOT_SHOWN`].
pub fn path_in_message(path: &Path) -> &str {
    shown_path(path).unwrap_or(PATH_NOT_SHOWN)
}

impl ConfigError {
    /// A problem with the path `path`, named by the variable `var`: the
    /// path is shown as the value when [`shown_path`] shows it; otherwise
    /// the message says why it is not, before the problem.
    pub fn with_path(var: &str, path: &Path, problem: String) -> ConfigError {
        match shown_path(path) {
            Some(shown) => ConfigError {
                var: var.to_string(),
                value: Some(shown.to_string()),
                problem,
            },
            None => ConfigError {
                var: var.to_string(),
                value: None,
                problem: format!(
                    "its value is not shown, as it is not a path starting with /, ./ or ../ \
                     (a token set here by mistake?); {problem}"
                ),
            },
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={:?}: {}", self.var, v, self.problem),
            None => write!(f, "{}: {}", self.var, self.problem),
        }
    }
}

/// Every problem found, in the order found.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigError>);

impl Problems {
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        self.0.extend(errors);
    }

    /// Records a problem with `var`, whose value was `value`.
    pub fn add(&mut self, var: &str, value: Option<&str>, problem: impl Into<String>) {
        self.push(ConfigError {
            var: var.to_string(),
            value: value.map(str::to_string),
            problem: problem.into(),
        });
    }

    /// The value, or `None` with its problem recorded.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// Whether a problem was recorded for any of `vars`.
    fn about(&self, vars: &[&str]) -> bool {
        self.0.iter().any(|e| vars.contains(&e.var.as_str()))
    }

    /// `value` when nothing went wrong, else every problem.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Vec<ConfigError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}

/// The variables as given: `Err(())` for a value that is not UTF-8.
type Vars = HashMap<String, Result<String, ()>>;

/// What the variables said, each on its own; [`Draft::finish`] puts them together.
#[derive(Default)]
struct Draft {
    ip: Option<IpAddr>,
    port: Option<u16>,
    socket_path: Option<String>,
    socket_path_alias: Option<String>,
    secrets_dir: Option<String>,
    token_file: Option<PathBuf>,
    nomad_token: Option<String>,
    allow: Allowlist,
    upstream_timeout: Duration,
    client_header_timeout: Duration,
    client_write_timeout: Duration,
    client_idle_timeout: Duration,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    allow_from: Option<AddrSet>,
    allowed_hosts: Option<HostList>,
    region: Option<String>,
    max_in_flight: usize,
    max_in_flight_per_client: Option<usize>,
    rate_limit: Option<RateLimit>,
    max_body: u64,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    client_token_file: Option<PathBuf>,
    metrics_cache_ttl: Option<Duration>,
    /// The address, and the value as written, for the message if it clashes.
    telemetry: Option<(SocketAddr, String)>,
    log_format: LogFormat,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, Vec<ConfigError>> {
        Config::from_vars(std::env::vars_os())
    }

    /// Builds the configuration from a list of variables. Returns every
    /// problem found, not just the first: each variable's, in the table's
    /// order, then unknown variables by name, then those across variables.
    pub fn from_vars<I>(vars: I) -> Result<Config, Vec<ConfigError>>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let vars: Vars = vars
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().map_err(|_| ()))))
            .collect();
        let mut problems = Problems::default();
        let mut draft = Draft {
            allow: Allowlist::none(),
            ..Draft::default()
        };
        for var in table() {
            var.read(&vars, &mut draft, &mut problems);
        }
        let mut unknown: Vec<&String> = vars
            .keys()
            .filter(|name| name.starts_with(PREFIX) && !table().any(|var| var.name == *name))
            .collect();
        unknown.sort();
        for name in unknown {
            problems.push(unknown_variable(name));
        }
        let config = draft.finish(&mut problems);
        problems.finish(config)
    }

    /// One line per setting, for the startup log and `--check`, in the
    /// table's order. The token is described by its source only.
    pub fn describe(&self) -> Vec<String> {
        table().filter_map(|var| var.describe(self)).collect()
    }
}

impl Draft {
    /// The configuration, once the settings that rest on several variables
    /// are resolved and checked; `None` when something essential is missing.
    fn finish(self, problems: &mut Problems) -> Option<Config> {
        let (socket_path, socket_path_from) = self.socket_path(problems);
        let token = self.token_source(problems);
        let tls = self.tls(problems);
        let listen = self
            .ip
            .zip(self.port)
            .map(|(ip, port)| SocketAddr::new(ip, port));
        let telemetry_listen = self.telemetry_listen(listen, problems);
        let max_in_flight_per_client = self.max_in_flight_per_client(problems);
        self.check_connections_per_client(problems);
        self.check_all_off_loopback(problems);
        Some(Config {
            listen: listen?,
            socket_path,
            socket_path_from,
            token: token?,
            allow: self.allow,
            upstream_timeout: self.upstream_timeout,
            client_header_timeout: self.client_header_timeout,
            client_write_timeout: self.client_write_timeout,
            client_idle_timeout: self.client_idle_timeout,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            allow_from: self.allow_from,
            allowed_hosts: self.allowed_hosts,
            region: self.region,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_client,
            rate_limit: self.rate_limit,
            max_body: self.max_body,
            tls,
            client_token_file: self.client_token_file,
            metrics_cache_ttl: self.metrics_cache_ttl,
            telemetry_listen,
            log_format: self.log_format,
        })
    }

    /// The first of HOLEPUNCH_SOCKET_PATH, NOMAD_SOCKET_PATH,
    /// `$NOMAD_SECRETS_DIR/api.sock` and the default; it must fit in a
    /// Unix socket address.
    fn socket_path(&self, problems: &mut Problems) -> (String, &'static str) {
        let (path, from) = if let Some(p) = &self.socket_path {
            (p.clone(), SOCKET_PATH)
        } else if let Some(p) = &self.socket_path_alias {
            (p.clone(), SOCKET_PATH_ALIAS)
        } else if let Some(dir) = &self.secrets_dir {
            let path = format!("{}/api.sock", dir.trim_end_matches('/'));
            (path, NOMAD_SECRETS_DIR)
        } else {
            (DEFAULT_SOCKET_PATH.to_string(), "default")
        };
        if path.len() > MAX_SOCKET_PATH {
            let problem = format!(
                "a Unix socket path can be at most {MAX_SOCKET_PATH} bytes; this one is {} \
                 (move the task directory to a shorter path or link the socket somewhere shorter)",
                path.len()
            );
            problems.push(ConfigError::with_path(from, Path::new(&path), problem));
        }
        (path, from)
    }

    /// The first of HOLEPUNCH_TOKEN_FILE, NOMAD_TOKEN and
    /// `$NOMAD_SECRETS_DIR/nomad_token`. "No workload token" only when none
    /// of them had a problem of its own already reported.
    fn token_source(&self, problems: &mut Problems) -> Option<TokenSource> {
        let source = if let Some(path) = &self.token_file {
            TokenSource::File {
                path: path.clone(),
                var: TOKEN_FILE,
            }
        } else if let Some(token) = &self.nomad_token {
            TokenSource::Env(token.clone())
        } else if let Some(dir) = &self.secrets_dir {
            TokenSource::File {
                path: PathBuf::from(dir).join("nomad_token"),
                var: NOMAD_SECRETS_DIR,
            }
        } else {
            if !problems.about(&[TOKEN_FILE, NOMAD_TOKEN, NOMAD_SECRETS_DIR]) {
                let problem = format!(
                    "no workload token: set {TOKEN_FILE} to a token file, or give the task \
                     identity {{ env = true }} (sets {NOMAD_TOKEN}) or identity {{ file = true }} \
                     (writes ${NOMAD_SECRETS_DIR}/nomad_token)"
                );
                problems.add(NOMAD_TOKEN, None, problem);
            }
            return None;
        };
        Some(source)
    }

    /// Both PEM files, or neither: the problem names the one missing. The
    /// client CAs need both: client certificates are part of the handshake.
    fn tls(&self, problems: &mut Problems) -> Option<TlsFiles> {
        let (set, unset) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                return Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                })
            }
            (None, None) => {
                if let Some(ca) = &self.tls_client_ca {
                    let problem = format!(
                        "client certificates are checked in the TLS handshake, so they \
                         need TLS on the listener: set {TLS_CERT_FILE} and {TLS_KEY_FILE} too"
                    );
                    problems.push(ConfigError::with_path(TLS_CLIENT_CA_FILE, ca, problem));
                }
                return None;
            }
            (Some(_), None) => (TLS_CERT_FILE, TLS_KEY_FILE),
            (None, Some(_)) => (TLS_KEY_FILE, TLS_CERT_FILE),
        };
        let problem = format!("{set} is set, so TLS needs {unset} too (both PEM files)");
        problems.add(unset, None, problem);
        None
    }

    /// HOLEPUNCH_TELEMETRY_BIND, unless it is the proxy's own address and port.
    fn telemetry_listen(
        &self,
        listen: Option<SocketAddr>,
        problems: &mut Problems,
    ) -> Option<SocketAddr> {
        let (addr, value) = self.telemetry.as_ref()?;
        let clash = listen.filter(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip() || l.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some(listen) = clash {
            let problem =
                format!("the proxy itself listens on {listen}: give the metrics another port");
            problems.add(TELEMETRY_BIND, Some(value), problem);
            return None;
        }
        Some(*addr)
    }

    /// HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT, or its default for
    /// HOLEPUNCH_MAX_IN_FLIGHT; never more than HOLEPUNCH_MAX_IN_FLIGHT.
    fn max_in_flight_per_client(&self, problems: &mut Problems) -> usize {
        let max = self.max_in_flight;
        let Some(per_client) = self.max_in_flight_per_client else {
            return crate::proxy::limits::default_per_client(max);
        };
        // max is 0 when HOLEPUNCH_MAX_IN_FLIGHT had a problem of its own.
        if max > 0 && per_client > max {
            let problem = format!(
                "one client cannot hold more places than {MAX_IN_FLIGHT} gives in all \
                 ({max}): set it from 1 to {max}, or leave it unset for {}",
                crate::proxy::limits::default_per_client(max)
            );
            problems.add(
                MAX_IN_FLIGHT_PER_CLIENT,
                Some(&per_client.to_string()),
                problem,
            );
        }
        per_client
    }

    /// HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT, never more than a
    /// HOLEPUNCH_MAX_CONNECTIONS the operator set. Under a default cap,
    /// lowered at startup to fit the open-files limit, it is lowered with it
    /// (`crate::conn::connections::Fitted::share`).
    fn check_connections_per_client(&self, problems: &mut Problems) {
        let (Some(max), Some(per_client)) = (self.max_connections, self.max_connections_per_client)
        else {
            return;
        };
        if per_client > max {
            let problem = format!(
                "one client cannot hold more connections than {MAX_CONNECTIONS} allows in all \
                 ({max}): set it from 1 to {max}, or leave it unset for {}",
                crate::proxy::limits::default_per_client(max)
            );
            problems.add(
                MAX_CONNECTIONS_PER_CLIENT,
                Some(&per_client.to_string()),
                problem,
            );
        }
    }

    /// ALL forwards anything with the workload token: off loopback, only to
    /// clients that authenticate, with a client token or a client
    /// certificate (each a credential on its own).
    fn check_all_off_loopback(&self, problems: &mut Problems) {
        let Some(ip) = self.ip else { return };
        let authenticated = self.client_token_file.is_some() || self.tls_client_ca.is_some();
        if self.allow.all() && !authenticated && !ip.to_canonical().is_loopback() {
            let problem = format!(
                "ALL forwards every Nomad API call with the workload token, so off \
                 loopback it needs client authentication: set {CLIENT_TOKEN_FILE} or \
                 {TLS_CLIENT_CA_FILE}, or set {BIND} to 127.0.0.1 (it is {ip})"
            );
            problems.add(ALLOW_ALL, Some("true"), problem);
        }
    }
}

/// Stores a parsed value: the table's parsers end with it.
fn set<T>(slot: &mut T, value: T) -> Result<(), String> {
    *slot = value;
    Ok(())
}

/// Exactly the spellings Go's strconv.ParseBool accepts.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A duration in Go's syntax, as Nomad job specs write them (`10s`, `5m40s`,
/// `1.5s`, `500ms`), above zero.
fn positive_duration(v: &str) -> Result<Duration, String> {
    parse_duration(v)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| DURATION.to_string())
}

/// Go's `time.ParseDuration` (golang/go `src/time/format.go`), for values
/// of zero and above, as Nomad job specs write them (`10s`, `5m40s`,
/// `1.5s`, `500ms`): one or more decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs` or `μs`, `ms`, `s`, `m`, `h`),
/// after an optional `+`. Read the way Go reads it, to the nanosecond: a
/// whole number exactly, a fraction through a float64 and cut, not
/// rounded, to the nanosecond; and, as Go's `Duration` is an int64 of
/// nanoseconds, nothing above 2^63-1 ns (about 292 years).
pub fn parse_duration(v: &str) -> Option<Duration> {
    /// Go's limit on every step: 1<<63.
    const LIMIT: u64 = 1 << 63;
    let mut s = v.as_bytes();
    if let Some(rest) = s.strip_prefix(b"+") {
        s = rest;
    }
    if s == b"0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
        let (whole, rest) = s.split_at(digits(s));
        let (fraction, rest) = match rest.strip_prefix(b".") {
            Some(rest) => rest.split_at(digits(rest)),
            None => (&rest[..0], rest),
        };
        if whole.is_empty() && fraction.is_empty() {
            return None; // No digits: "", ".", ".s", a letter.
        }
        let unit_len = rest
            .iter()
            .position(|&b| b == b'.' || b.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let unit: u64 = match unit {
            b"ns" => 1,
            // "µs" (U+00B5, micro sign) and "μs" (U+03BC, Greek mu).
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return None,
        };
        // Go's leadingInt: exact, an error past 1<<63, checked before the
        // step that could pass it (and wrap a u64: 2^64 is not far past).
        let mut n: u64 = 0;
        for &d in whole {
            if n > LIMIT / 10 {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
            if n > LIMIT {
                return None;
            }
        }
        if n > LIMIT / unit {
            return None;
        }
        n *= unit;
        // Go's leadingFraction: digits past what fits are skipped.
        let (mut f, mut scale) = (0u64, 1f64);
        for &d in fraction {
            match (f <= (LIMIT - 1) / 10).then(|| f * 10 + u64::from(d - b'0')) {
                Some(next) if next <= LIMIT => {
                    f = next;
                    scale *= 10.0;
                }
                _ => break,
            }
        }
        if f > 0 {
            // As Go: a float64, so that a fraction of an hour is exact to
            // the nanosecond, then cut toward zero.
            n += (f as f64 * (unit as f64 / scale)) as u64;
            if n > LIMIT {
                return None;
            }
        }
        total += n;
        if total > LIMIT {
            return None;
        }
        s = rest;
    }
    (total < LIMIT).then(|| Duration::from_nanos(total))
}

/// A byte size: a plain number, or one with a unit (B, KB, MB, GB in powers
/// of 1000; KiB, MiB, GiB in powers of 1024).
pub fn parse_size(v: &str) -> Option<u64> {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn parse_bind(v: &str) -> Result<IpAddr, String> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse().map_err(|_| {
        format!(
            "expected an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1, :: or ::1 \
             (the port goes in {PORT})"
        )
    })
}

fn parse_port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 && !v.starts_with('+') => Ok(p),
        _ => Err("expected a port number from 1 to 65535".to_string()),
    }
}

/// `HOLEPUNCH_TELEMETRY_BIND`: an address and port (checked against the
/// proxy's own in [`Draft::finish`]).
fn parse_telemetry_bind(v: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = v.parse().map_err(|_| {
        "expected an address and a port, such as 127.0.0.1:6121 or [::1]:6121 \
         (127.0.0.1 keeps the proxy's own metrics off the network)"
            .to_string()
    })?;
    if addr.port() == 0 {
        return Err("expected a port from 1 to 65535".to_string());
    }
    Ok(addr)
}

fn parse_allow_from(v: &str) -> Result<AddrSet, String> {
    AddrSet::parse(v).map_err(|problems| {
        format!(
            "{}; expected comma-separated IP addresses and CIDR ranges, \
             such as 10.0.0.0/8, 192.0.2.7, fd00::/8",
            problems.join("; ")
        )
    })
}

fn parse_allowed_hosts(v: &str) -> Result<HostList, String> {
    HostList::parse(v).map_err(|problems| {
        format!(
            "{}; expected comma-separated host names, such as \
             nomad-1.example.com, *.nodes.example.com",
            problems.join("; ")
        )
    })
}

/// A count of requests from 1 to 1000000, written plainly.
fn parse_requests(v: &str) -> Option<usize> {
    v.parse::<usize>()
        .ok()
        .filter(|&n| n > 0 && n <= 1_000_000 && !v.starts_with('+'))
}

fn parse_max_in_flight(v: &str) -> Result<usize, String> {
    parse_requests(v).ok_or_else(|| {
        format!(
            "expected a whole number of requests from 1 to 1000000 \
             (default {DEFAULT_MAX_IN_FLIGHT})"
        )
    })
}

fn parse_max_in_flight_per_client(v: &str) -> Result<usize, String> {
    parse_requests(v).ok_or_else(|| {
        format!(
            "expected a whole number of requests from 1 to {MAX_IN_FLIGHT} \
             (unset: a quarter of {MAX_IN_FLIGHT})"
        )
    })
}

/// The largest `HOLEPUNCH_MAX_CONNECTIONS` accepted: Linux's default
/// ceiling on open files per process (`fs.nr_open`) is 1048576.
const MAX_MAX_CONNECTIONS: usize = 1_000_000;

fn parse_max_connections(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 && n <= MAX_MAX_CONNECTIONS && !v.starts_with('+') => Ok(n),
        _ => Err(format!(
            "expected a whole number of connections from 1 to {MAX_MAX_CONNECTIONS} \
             (default {})",
            crate::conn::connections::DEFAULT_MAX_CONNECTIONS
        )),
    }
}

fn parse_max_connections_per_client(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 && n <= MAX_MAX_CONNECTIONS && !v.starts_with('+') => Ok(n),
        _ => Err(format!(
            "expected a whole number of connections from 1 to {MAX_CONNECTIONS} \
             (unset: a quarter of {MAX_CONNECTIONS})"
        )),
    }
}

fn parse_rate_limit(v: &str) -> Result<RateLimit, String> {
    RateLimit::parse(v).ok_or_else(|| {
        "expected requests per client address as N/s, N/m or N/h \
         with N from 1, such as 20/s or 600/m"
            .to_string()
    })
}

/// The error for a `HOLEPUNCH_` variable not in the table. Its value is
/// never shown: a misspelt variable may hold a token
/// (`HOLEPUNCH_NOMAD_TOKEN`), and the name is enough to fix it.
fn unknown_variable(name: &str) -> ConfigError {
    let ours = || {
        table()
            .map(|var| var.name)
            .filter(|n| n.starts_with(PREFIX))
    };
    let nearest = ours()
        .map(|k| (edit_distance(name, k), k))
        .min()
        .filter(|(d, _)| *d <= 3);
    let problem = match nearest {
        Some((_, k)) => format!("unknown variable; did you mean {k}?"),
        None => format!(
            "unknown variable; the {PREFIX} variables are {}",
            ours().collect::<Vec<_>>().join(", ")
        ),
    };
    ConfigError {
        var: name.to_string(),
        value: None,
        problem,
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigError>> {
        Config::from_vars(
            vars.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
    }

    const TOKEN: (&str, &str) = ("NOMAD_TOKEN", "eyJhbGciOiJSUzI1NiJ9.e30.sig");

    fn errors_for(vars: &[(&str, &str)]) -> Vec<String> {
        cfg(vars)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn defaults_match_the_original() {
        let c = cfg(&[TOKEN]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:6120".parse().unwrap());
        assert_eq!(c.socket_path, "/secrets/api.sock");
        assert_eq!(c.socket_path_from, "default");
        assert_eq!(c.token, TokenSource::Env(TOKEN.1.to_string()));
        assert_eq!(c.allow, Allowlist::default());
    }

    #[test]
    fn bind_and_port() {
        let c = cfg(&[TOKEN, (BIND, "127.0.0.1"), (PORT, "8080")]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        let c = cfg(&[TOKEN, (BIND, "::"), (PORT, "65535")]).unwrap();
        assert_eq!(c.listen, "[::]:65535".parse().unwrap());
        let c = cfg(&[TOKEN, (BIND, "[::1]"), (PORT, "1")]).unwrap();
        assert_eq!(c.listen, "[::1]:1".parse().unwrap());
        // Empty means default.
        let c = cfg(&[TOKEN, (BIND, ""), (PORT, "")]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:6120".parse().unwrap());

        for bad in ["0", "65536", "-1", "+80", "80a", " 80", "http"] {
            let errs = errors_for(&[TOKEN, (PORT, bad)]);
            assert_eq!(
                errs,
                vec![format!(
                    "HOLEPUNCH_PORT={bad:?}: expected a port number from 1 to 65535"
                )]
            );
        }
        for bad in ["localhost", "0.0.0.0:6120", "1.2.3", "256.0.0.1", "[::1"] {
            let errs = errors_for(&[TOKEN, (BIND, bad)]);
            assert_eq!(errs.len(), 1, "{bad}");
            assert!(
                errs[0].starts_with(&format!("HOLEPUNCH_BIND={bad:?}: expected an IPv4 or IPv6"))
            );
        }
    }

    #[test]
    fn socket_path_precedence() {
        let secrets = ("NOMAD_SECRETS_DIR", "/var/nomad/alloc/1/task/secrets/");
        let c = cfg(&[TOKEN, secrets]).unwrap();
        assert_eq!(c.socket_path, "/var/nomad/alloc/1/task/secrets/api.sock");
        assert_eq!(c.socket_path_from, NOMAD_SECRETS_DIR);
        let c = cfg(&[TOKEN, secrets, (SOCKET_PATH_ALIAS, "/alias.sock")]).unwrap();
        assert_eq!(
            (c.socket_path.as_str(), c.socket_path_from),
            ("/alias.sock", SOCKET_PATH_ALIAS)
        );
        let c = cfg(&[
            TOKEN,
            secrets,
            (SOCKET_PATH_ALIAS, "/alias.sock"),
            (SOCKET_PATH, "/main.sock"),
        ])
        .unwrap();
        assert_eq!(
            (c.socket_path.as_str(), c.socket_path_from),
            ("/main.sock", SOCKET_PATH)
        );
    }

    #[test]
    fn socket_path_too_long() {
        let long = format!("/{}", "a".repeat(107));
        let errs = errors_for(&[TOKEN, (SOCKET_PATH, &long)]);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("HOLEPUNCH_SOCKET_PATH="), "{}", errs[0]);
        assert!(
            errs[0].contains("at most 107 bytes; this one is 108"),
            "{}",
            errs[0]
        );
        assert!(cfg(&[TOKEN, (SOCKET_PATH, &long[..107])]).is_ok());
    }

    #[test]
    fn token_sources_in_order() {
        let file = (TOKEN_FILE, "/run/token");
        let secrets = (NOMAD_SECRETS_DIR, "/secrets");
        let c = cfg(&[file, TOKEN, secrets]).unwrap();
        assert_eq!(
            c.token,
            TokenSource::File {
                path: "/run/token".into(),
                var: TOKEN_FILE
            }
        );
        let c = cfg(&[TOKEN, secrets]).unwrap();
        assert_eq!(c.token, TokenSource::Env(TOKEN.1.into()));
        // An empty NOMAD_TOKEN counts as unset.
        let c = cfg(&[(NOMAD_TOKEN, " "), secrets]).unwrap();
        assert_eq!(
            c.token,
            TokenSource::File {
                path: "/secrets/nomad_token".into(),
                var: NOMAD_SECRETS_DIR
            }
        );
        let errs = errors_for(&[(NOMAD_TOKEN, "")]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("NOMAD_TOKEN: no workload token"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn token_never_in_debug_or_errors() {
        let c = cfg(&[TOKEN, (PORT, "x")]);
        let shown = format!("{c:?}");
        assert!(!shown.contains(TOKEN.1), "{shown}");
        let c = cfg(&[TOKEN]).unwrap();
        assert!(!format!("{c:?}").contains(TOKEN.1));
        assert!(!c.describe().join("\n").contains(TOKEN.1));
        let non_utf8 = Config::from_vars([(
            OsString::from(NOMAD_TOKEN),
            std::os::unix::ffi::OsStringExt::from_vec(vec![0xff, b'x']),
        )]);
        assert_eq!(
            non_utf8.unwrap_err()[0].to_string(),
            "NOMAD_TOKEN: the value is not valid UTF-8"
        );
    }

    #[test]
    fn booleans_are_go_parsebool() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in [
            "yes", "no", "on", "off", "tRUE", "2", " true", "true ", "y", "-1",
        ] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_flag() {
        let a = cfg(&[TOKEN]).unwrap().allow;
        for g in Group::ALL {
            assert_eq!(a.allows(g), g.default_enabled());
            let flipped = if g.default_enabled() { "false" } else { "true" };
            let a = cfg(&[TOKEN, (g.flag(), flipped)]).unwrap().allow;
            assert_eq!(a.allows(g), !g.default_enabled(), "{g:?}");
            for other in Group::ALL.iter().filter(|o| **o != g) {
                assert_eq!(a.allows(*other), other.default_enabled());
            }
            // Empty is the default, not false.
            let a = cfg(&[TOKEN, (g.flag(), "")]).unwrap().allow;
            assert_eq!(a.allows(g), g.default_enabled());
            let errs = errors_for(&[TOKEN, (g.flag(), "yes")]);
            assert_eq!(errs.len(), 1);
            assert!(errs[0].starts_with(&format!("{}=\"yes\": expected a boolean", g.flag())));
        }
        assert!(cfg(&[TOKEN, (ALLOW_ALL, "T"), (BIND, "127.0.0.1")])
            .unwrap()
            .allow
            .all());
        assert!(!cfg(&[TOKEN, (ALLOW_ALL, "")]).unwrap().allow.all());
    }

    /// Problems come in one order whatever the order of the environment:
    /// each variable's in the table's order, then unknown variables by name,
    /// then the checks across variables.
    #[test]
    fn problems_are_reported_in_a_stable_order() {
        let vars = [
            (TLS_CERT_FILE, "/c.pem"),
            ("HOLEPUNCH_ZZZ", "1"),
            (LOG_FORMAT, "yaml"),
            ("HOLEPUNCH_ALLOW_NODES", "yes"),
            ("HOLEPUNCH_AAA", "1"),
            (PORT, "0"),
            (BIND, "nowhere"),
        ];
        let want = [
            BIND,
            PORT,
            LOG_FORMAT,
            "HOLEPUNCH_ALLOW_NODES",
            "HOLEPUNCH_AAA",
            "HOLEPUNCH_ZZZ",
            NOMAD_TOKEN,
            TLS_KEY_FILE,
        ];
        for turn in 0..vars.len() {
            let mut vars = vars.to_vec();
            vars.rotate_left(turn);
            vars.swap(0, turn / 2);
            let errs = cfg(&vars).unwrap_err();
            let got: Vec<&str> = errs.iter().map(|e| e.var.as_str()).collect();
            assert_eq!(got, want, "{vars:?}");
        }
    }

    /// NOMAD_SECRETS_DIR gives both the socket path and the token file; a
    /// value that is not UTF-8 is one problem, reported once, and no "no
    /// workload token" besides.
    #[test]
    fn a_variable_used_twice_is_read_and_reported_once() {
        let non_utf8 = std::os::unix::ffi::OsStringExt::from_vec(vec![b'/', 0xff]);
        let errs = Config::from_vars([(OsString::from(NOMAD_SECRETS_DIR), non_utf8)]).unwrap_err();
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["NOMAD_SECRETS_DIR: the value is not valid UTF-8"]
        );
    }

    /// One entry per variable, every group's flag among them, and each
    /// default that is a value gives what setting it to that value gives.
    #[test]
    fn the_table_has_each_variable_once_with_the_default_that_applies() {
        let names: Vec<&str> = table().map(|v| v.name).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(name), "{name} twice");
            assert!(!table().nth(i).unwrap().meaning.is_empty(), "{name}");
        }
        for g in Group::ALL {
            assert!(names.contains(&g.flag()), "{g:?}");
        }
        assert_eq!(names.len(), VARS.len() + Group::ALL.len());
        let unset = cfg(&[TOKEN]).unwrap();
        for var in table() {
            if let DefaultValue::Value(v) = var.default {
                assert_eq!(cfg(&[TOKEN, (var.name, v)]).unwrap(), unset, "{}", var.name);
            }
        }
        let socket = table().find(|v| v.name == SOCKET_PATH).unwrap().default;
        assert!(socket
            .readme()
            .ends_with(&format!("else `{DEFAULT_SOCKET_PATH}`")));
    }

    /// The README's configuration table, as the variable column and the
    /// default column of each row. A row may name several variables, and
    /// `_SUFFIX` stands for the first one's name with its last part(s)
    /// replaced (`HOLEPUNCH_ALLOW_AGENT_SELF`, `_AGENT_MEMBERS`).
    fn readme_rows() -> Vec<(Vec<String>, String, String)> {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("a Configuration section");
        let section = section.split("\n#").next().unwrap_or_default();
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let names: Vec<&str> = cells[0].split('`').skip(1).step_by(2).collect();
            let first = names[0];
            let expanded = names.iter().map(|name| match name.strip_prefix('_') {
                None => name.to_string(),
                Some(_) => (0..first.len())
                    .rev()
                    .filter(|&i| first.as_bytes()[i] == b'_')
                    .map(|i| format!("{}{name}", &first[..i]))
                    .find(|full| table().any(|v| v.name == full))
                    .unwrap_or_else(|| name.to_string()),
            });
            let meaning = cells.get(2).unwrap_or(&"").to_string();
            rows.push((expanded.collect(), cells[1].to_string(), meaning));
        }
        rows
    }

    /// Every variable has a row of the README's configuration table with
    /// its default as the table here writes it; the two that have no row
    /// of their own are named in the row that says how they are used.
    #[test]
    fn the_readme_lists_every_variable_with_its_default() {
        let rows = readme_rows();
        assert!(rows.len() > 20, "{rows:?}");
        let under = [
            (SOCKET_PATH_ALIAS, SOCKET_PATH),
            (NOMAD_SECRETS_DIR, SOCKET_PATH),
        ];
        for var in table() {
            let own = rows
                .iter()
                .find(|(names, ..)| names.iter().any(|n| n == var.name));
            match (own, under.iter().find(|(name, _)| *name == var.name)) {
                (Some((_, default, _)), None) => {
                    assert_eq!(*default, var.default.readme(), "{}", var.name)
                }
                (None, Some((_, row))) => {
                    let (_, default, meaning) = rows
                        .iter()
                        .find(|(names, ..)| names.iter().any(|n| n == row))
                        .unwrap_or_else(|| panic!("no README row for {row}"));
                    let text = format!("{default} {meaning}");
                    assert!(text.contains(var.name), "{} not in the {row} row", var.name);
                }
                _ => panic!("{} has no row of its own in the README's table", var.name),
            }
        }
    }

    #[test]
    fn every_problem_is_reported_and_nothing_falls_back() {
        let errs = errors_for(&[
            TOKEN,
            (PORT, "99999"),
            (BIND, "nowhere"),
            ("HOLEPUNCH_ALLOW_NODES", "yes"),
            ("HOLEPUNCH_ALLOW_METRICS", "nope"),
        ]);
        assert_eq!(errs.len(), 4, "{errs:#?}");
        for var in [
            "HOLEPUNCH_PORT",
            "HOLEPUNCH_BIND",
            "HOLEPUNCH_ALLOW_NODES",
            "HOLEPUNCH_ALLOW_METRICS",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(var)),
                "{var} in {errs:#?}"
            );
        }
    }

    /// A path variable's value is shown only when it is plainly a path: a
    /// token put there by mistake (a JWT, a UUID, base64 with a `/` inside)
    /// is not, and neither is a path made from it.
    #[test]
    fn only_what_is_plainly_a_path_is_shown() {
        for path in ["/secrets/nomad_token", "./local/tokens", "../tokens", "/"] {
            assert_eq!(shown_path(Path::new(path)), Some(path));
        }
        for value in [
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            "0b6f1c4e-7d2a-4f35-9a0b-2f1c3d4e5f60",
            "dGhpcy9pcy9iYXNlNjQ=/more",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/nomad_token",
            "local/tokens",
            "",
        ] {
            assert_eq!(shown_path(Path::new(value)), None, "{value}");
            assert_eq!(path_in_message(Path::new(value)), PATH_NOT_SHOWN);
        }
        let shown = ConfigError::with_path(TOKEN_FILE, Path::new("/s/t"), "gone".into());
        assert_eq!(shown.to_string(), "HOLEPUNCH_TOKEN_FILE=\"/s/t\": gone");
        let hidden = ConfigError::with_path(TOKEN_FILE, Path::new("s3cr3t.tok"), "gone".into());
        assert_eq!(
            hidden.to_string(),
            "HOLEPUNCH_TOKEN_FILE: its value is not shown, as it is not a path starting with \
             /, ./ or ../ (a token set here by mistake?); gone"
        );
        // The socket path made from NOMAD_SECRETS_DIR, too long here.
        let secret = "s3cr3t".repeat(20);
        let errs = errors_for(&[TOKEN, (NOMAD_SECRETS_DIR, &secret)]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("NOMAD_SECRETS_DIR: its value is not shown"),
            "{errs:?}"
        );
        assert!(!errs[0].contains("s3cr3t"), "{errs:?}");
    }

    #[test]
    fn unknown_holepunch_variables_are_errors() {
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_ALLOW_NODE", "true")]);
        assert_eq!(
            errs,
            vec!["HOLEPUNCH_ALLOW_NODE: unknown variable; did you mean HOLEPUNCH_ALLOW_NODES?"]
        );
        // Never its value: a misspelt variable may hold a token.
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_NOMAD_TOKEN", "s3cr3t\"tok\\en")]);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("HOLEPUNCH_NOMAD_TOKEN: unknown variable; "),
            "{errs:?}"
        );
        assert!(!errs[0].contains("s3cr3t"), "{errs:?}");
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_SOMETHING_ELSE", "1")]);
        assert!(
            errs[0].contains("the HOLEPUNCH_ variables are HOLEPUNCH_BIND"),
            "{errs:?}"
        );
        // Other variables are none of our business.
        assert!(cfg(&[TOKEN, ("NOMAD_ADDR", "x"), ("PATH", "/bin")]).is_ok());
    }

    /// What startup hands `Problems` (the configuration's errors, each
    /// file's load) is kept, in order, and a value that loaded is passed on.
    #[test]
    fn problems_keep_what_startup_hands_them() {
        let error = |var: &str| ConfigError {
            var: var.to_string(),
            value: None,
            problem: "bad".to_string(),
        };
        let mut problems = Problems::default();
        problems.extend([error("A")]);
        assert_eq!(problems.take(Err::<u8, _>(error("B"))), None);
        assert_eq!(problems.take(Ok::<u8, ConfigError>(7)), Some(7));
        let vars: Vec<String> = match problems.finish(Some(())) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.var).collect(),
        };
        assert_eq!(vars, ["A", "B"]);
    }

    /// Go's leadingInt refuses a number only past 1<<63: the largest
    /// whole number of nanoseconds, whose first 18 digits are exactly
    /// 1<<63 / 10, is read.
    #[test]
    fn the_largest_whole_number_of_nanoseconds() {
        assert_eq!(
            parse_duration("9223372036854775807ns"),
            Some(Duration::from_nanos(i64::MAX as u64))
        );
    }

    #[test]
    fn durations_as_go_writes_them() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("10s"), Some(s(10)));
        assert_eq!(parse_duration("5m40s"), Some(s(340)));
        assert_eq!(parse_duration("1h"), Some(s(3600)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        // Exactly as Go reads them (found by the config_values fuzz
        // target's check against a model of Go's ParseDuration): a
        // fraction cut to the nanosecond, not rounded; whole numbers
        // exact however large; Go's range and nothing past it; its sign
        // and its two spellings of micro.
        let ns = Duration::from_nanos;
        assert_eq!(parse_duration("0.9999999999s"), Some(ns(999_999_999)));
        assert_eq!(
            parse_duration("9223372035.999999999s"),
            Some(Duration::new(9_223_372_035, 999_999_999))
        );
        assert_eq!(
            parse_duration("2562047h47m16.854775807s"),
            Some(ns(i64::MAX as u64))
        );
        for past in [
            "2562047h47m16.854775808s",
            "2562048h",
            "9999999999999999999ns",
            // 2^64: one more digit after 1844674407370955161 wrapped a u64
            // (found by the config_values fuzz target, in this parser's
            // first version).
            "18446744073709551616ms",
            "1s18446744073709551616h",
        ] {
            assert_eq!(parse_duration(past), None, "{past}");
        }
        assert_eq!(
            parse_duration("1.0000000001h"),
            Some(Duration::new(3600, 360))
        );
        assert_eq!(parse_duration("+1s"), Some(s(1)));
        assert_eq!(parse_duration("1\u{3bc}s"), Some(ns(1000)));
        assert_eq!(parse_duration("1\u{b5}s"), Some(ns(1000)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        // What `--check` prints reads back as the same duration.
        for d in [ns(1), ns(1500), Duration::new(9_223_372_035, 999_999_999)] {
            assert_eq!(parse_duration(&format!("{d:?}")), Some(d), "{d:?}");
        }
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "-1s",
            "1s-",
            "ten seconds",
            ".s",
            ".",
            "1e3s",
            "+",
            "-0s",
            "1m-1s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let c = cfg(&[TOKEN]).unwrap();
        assert_eq!(c.upstream_timeout, s(340));
        assert_eq!(c.client_header_timeout, s(10));
        let c = cfg(&[
            TOKEN,
            (UPSTREAM_TIMEOUT, "2s"),
            (CLIENT_HEADER_TIMEOUT, "250ms"),
        ])
        .unwrap();
        assert_eq!(c.upstream_timeout, s(2));
        assert_eq!(c.client_header_timeout, Duration::from_millis(250));
        for bad in ["0s", "10", "soon"] {
            let errs = errors_for(&[TOKEN, (UPSTREAM_TIMEOUT, bad)]);
            assert_eq!(errs.len(), 1);
            assert!(
                errs[0].starts_with(&format!(
                    "HOLEPUNCH_UPSTREAM_TIMEOUT={bad:?}: expected a duration above zero"
                )),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn metrics_cache_ttl() {
        assert_eq!(cfg(&[TOKEN]).unwrap().metrics_cache_ttl, None);
        assert_eq!(
            cfg(&[TOKEN, (METRICS_CACHE_TTL, "")])
                .unwrap()
                .metrics_cache_ttl,
            None
        );
        let c = cfg(&[TOKEN, (METRICS_CACHE_TTL, "1s")]).unwrap();
        assert_eq!(c.metrics_cache_ttl, Some(Duration::from_secs(1)));
        let errs = errors_for(&[TOKEN, (METRICS_CACHE_TTL, "0s")]);
        assert!(errs[0]
            .starts_with("HOLEPUNCH_METRICS_CACHE_TTL=\"0s\": expected a duration above zero"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("3KB"), Some(3_000));
        assert_eq!(parse_size("3kB"), Some(3_000));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("7B"), Some(7));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "1.5MiB", "1 MiB", "MiB", "1mib", "-1", "99999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(cfg(&[TOKEN]).unwrap().max_body, 1 << 20);
        assert_eq!(cfg(&[TOKEN, (MAX_BODY, "4KiB")]).unwrap().max_body, 4096);
        let errs = errors_for(&[TOKEN, (MAX_BODY, "lots")]);
        assert!(errs[0].starts_with("HOLEPUNCH_MAX_BODY=\"lots\": expected a size in bytes"));
    }

    #[test]
    fn tls_needs_both_files() {
        let c = cfg(&[TOKEN, (TLS_CERT_FILE, "/c.pem"), (TLS_KEY_FILE, "/k.pem")]).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
                client_ca: None,
            })
        );
        assert_eq!(cfg(&[TOKEN]).unwrap().tls, None);
        let errs = errors_for(&[TOKEN, (TLS_CERT_FILE, "/c.pem")]);
        assert_eq!(
            errs,
            vec!["HOLEPUNCH_TLS_KEY_FILE: HOLEPUNCH_TLS_CERT_FILE is set, so TLS needs HOLEPUNCH_TLS_KEY_FILE too (both PEM files)"]
        );
        let errs = errors_for(&[TOKEN, (TLS_KEY_FILE, "/k.pem")]);
        assert!(errs[0].starts_with("HOLEPUNCH_TLS_CERT_FILE: HOLEPUNCH_TLS_KEY_FILE is set"));
        // An empty variable is unset: the certificate is the one missing,
        // whichever of the two is present in the environment.
        for (cert, key) in [("", "/k.pem"), ("/c.pem", "")] {
            let missing = if cert.is_empty() {
                TLS_CERT_FILE
            } else {
                TLS_KEY_FILE
            };
            let set = if cert.is_empty() {
                TLS_KEY_FILE
            } else {
                TLS_CERT_FILE
            };
            let errs = errors_for(&[TOKEN, (TLS_CERT_FILE, cert), (TLS_KEY_FILE, key)]);
            assert_eq!(
                errs,
                vec![format!(
                    "{missing}: {set} is set, so TLS needs {missing} too (both PEM files)"
                )]
            );
        }
        assert_eq!(
            cfg(&[TOKEN, (TLS_CERT_FILE, ""), (TLS_KEY_FILE, "")])
                .unwrap()
                .tls,
            None
        );
        let c = cfg(&[TOKEN, (CLIENT_TOKEN_FILE, "/run/clients")]).unwrap();
        assert_eq!(c.client_token_file, Some(PathBuf::from("/run/clients")));
    }

    #[test]
    fn client_cas_need_the_tls_pair() {
        let pair = [TOKEN, (TLS_CERT_FILE, "/c.pem"), (TLS_KEY_FILE, "/k.pem")];
        let c = cfg(&[&pair[..], &[(TLS_CLIENT_CA_FILE, "/ca.pem")]].concat()).unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.client_ca, Some(PathBuf::from("/ca.pem")));
        assert!(c
            .describe()
            .contains(&"client certificates: required, from a CA in /ca.pem".to_string()));
        let c = cfg(&[&pair[..], &[(TLS_CLIENT_CA_FILE, "")]].concat()).unwrap();
        assert_eq!(c.tls.unwrap().client_ca, None, "empty is unset");
        // Without TLS: one problem, naming the variables to set.
        let errs = errors_for(&[TOKEN, (TLS_CLIENT_CA_FILE, "/ca.pem")]);
        assert_eq!(
            errs,
            vec![
                "HOLEPUNCH_TLS_CLIENT_CA_FILE=\"/ca.pem\": client certificates are checked in \
                  the TLS handshake, so they need TLS on the listener: set \
                  HOLEPUNCH_TLS_CERT_FILE and HOLEPUNCH_TLS_KEY_FILE too"
            ]
        );
        // Half a pair: the pair's own problem says what is missing, once.
        let errs = errors_for(&[
            TOKEN,
            (TLS_CERT_FILE, "/c.pem"),
            (TLS_CLIENT_CA_FILE, "/ca.pem"),
        ]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("HOLEPUNCH_TLS_KEY_FILE: "), "{errs:?}");
    }

    #[test]
    fn telemetry_bind_is_an_address_and_port_apart_from_the_proxy() {
        let c = cfg(&[TOKEN, (TELEMETRY_BIND, "127.0.0.1:6121")]).unwrap();
        assert_eq!(c.telemetry_listen, Some("127.0.0.1:6121".parse().unwrap()));
        assert_eq!(cfg(&[TOKEN]).unwrap().telemetry_listen, None);
        for (value, expected) in [
            (
                "6121",
                "expected an address and a port, such as 127.0.0.1:6121",
            ),
            ("localhost:6121", "expected an address and a port"),
            ("127.0.0.1:0", "expected a port from 1 to 65535"),
            ("127.0.0.1:6120", "the proxy itself listens on 0.0.0.0:6120"),
        ] {
            let errs = cfg(&[TOKEN, (TELEMETRY_BIND, value)]).unwrap_err();
            assert_eq!(errs.len(), 1, "{value}");
            assert_eq!(errs[0].var, TELEMETRY_BIND);
            assert!(
                errs[0].to_string().contains(expected),
                "{value}: {}",
                errs[0]
            );
        }
        // Another address on the same port is fine when the proxy binds one address.
        let c = cfg(&[
            TOKEN,
            (BIND, "10.0.0.1"),
            (TELEMETRY_BIND, "127.0.0.1:6120"),
        ])
        .unwrap();
        assert_eq!(c.telemetry_listen.map(|a| a.port()), Some(6120));
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(cfg(&[TOKEN]).unwrap().log_format, LogFormat::Text);
        let c = cfg(&[TOKEN, (LOG_FORMAT, "json")]).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let errs = cfg(&[TOKEN, (LOG_FORMAT, "JSON")]).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "HOLEPUNCH_LOG_FORMAT=\"JSON\": expected text (the default) or json"
        );
    }

    #[test]
    fn all_off_loopback_needs_client_tokens_or_certificates() {
        for bind in ["0.0.0.0", "10.0.0.5", "::", "fd00::1"] {
            let errs = errors_for(&[TOKEN, (ALLOW_ALL, "true"), (BIND, bind)]);
            assert_eq!(errs.len(), 1, "{bind}: {errs:?}");
            assert!(errs[0].contains(CLIENT_TOKEN_FILE), "{}", errs[0]);
            assert!(errs[0].contains(TLS_CLIENT_CA_FILE), "{}", errs[0]);
            assert!(errs[0].contains(BIND), "{}", errs[0]);
        }
        // A client certificate is client authentication on its own.
        assert!(cfg(&[
            TOKEN,
            (ALLOW_ALL, "true"),
            (BIND, "0.0.0.0"),
            (TLS_CERT_FILE, "/c.pem"),
            (TLS_KEY_FILE, "/k.pem"),
            (TLS_CLIENT_CA_FILE, "/ca.pem"),
        ])
        .is_ok());
        // Default bind is 0.0.0.0.
        assert_eq!(errors_for(&[TOKEN, (ALLOW_ALL, "1")]).len(), 1);
        for bind in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"] {
            assert!(
                cfg(&[TOKEN, (ALLOW_ALL, "true"), (BIND, bind)]).is_ok(),
                "{bind}"
            );
        }
        assert!(cfg(&[
            TOKEN,
            (ALLOW_ALL, "true"),
            (BIND, "0.0.0.0"),
            (CLIENT_TOKEN_FILE, "/secrets/clients")
        ])
        .is_ok());
        assert!(cfg(&[TOKEN, (ALLOW_ALL, "false"), (BIND, "0.0.0.0")]).is_ok());
    }

    #[test]
    fn limits_and_access_variables() {
        let c = cfg(&[TOKEN]).unwrap();
        assert_eq!(c.max_in_flight, 256);
        assert_eq!(c.rate_limit, None);
        assert_eq!(c.client_write_timeout, Duration::from_secs(30));
        assert_eq!(c.client_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, None);
        assert_eq!(
            (c.allow_from, c.allowed_hosts, c.region),
            (None, None, None)
        );
        let c = cfg(&[
            TOKEN,
            (MAX_IN_FLIGHT, "8"),
            (RATE_LIMIT, "600/m"),
            (CLIENT_WRITE_TIMEOUT, "5s"),
            (CLIENT_IDLE_TIMEOUT, "1m30s"),
            (MAX_CONNECTIONS, "300"),
            (ALLOW_FROM, "10.0.0.0/8, ::1"),
            (ALLOWED_HOSTS, "*.example.com"),
            (NOMAD_REGION, "europe"),
        ])
        .unwrap();
        assert_eq!(c.max_in_flight, 8);
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                requests: 600,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(c.client_write_timeout, Duration::from_secs(5));
        assert_eq!(c.client_idle_timeout, Duration::from_secs(90));
        assert_eq!(c.max_connections, Some(300));
        assert!(c.allow_from.unwrap().contains("10.1.1.1".parse().unwrap()));
        assert!(c.allowed_hosts.unwrap().allows(b"a.example.com"));
        assert_eq!(c.region.as_deref(), Some("europe"));
        assert_eq!(RateLimit::parse("20/s").unwrap().to_string(), "20/s");
        assert_eq!(
            RateLimit::parse("7/h").unwrap().per,
            Duration::from_secs(3600)
        );

        for (var, bad) in [
            (MAX_IN_FLIGHT, "0"),
            (MAX_IN_FLIGHT, "-1"),
            (MAX_IN_FLIGHT, "+5"),
            (MAX_IN_FLIGHT, "lots"),
            (MAX_IN_FLIGHT, "1000001"),
            (RATE_LIMIT, "20"),
            (RATE_LIMIT, "0/s"),
            (RATE_LIMIT, "20/d"),
            (RATE_LIMIT, "20 /s"),
            (RATE_LIMIT, "+20/s"),
            (RATE_LIMIT, "/s"),
            (CLIENT_WRITE_TIMEOUT, "30"),
            (CLIENT_IDLE_TIMEOUT, "60"),
            (CLIENT_IDLE_TIMEOUT, "0s"),
            (MAX_CONNECTIONS, "0"),
            (MAX_CONNECTIONS, "-1"),
            (MAX_CONNECTIONS, "+5"),
            (MAX_CONNECTIONS, "1k"),
            (MAX_CONNECTIONS, "1000001"),
            (ALLOW_FROM, "10.0.0.1/8"),
            (ALLOW_FROM, "10.0.0.0/8,"),
            (ALLOW_FROM, "everyone"),
            (ALLOWED_HOSTS, "example.com:6120"),
            (ALLOWED_HOSTS, "http://example.com"),
        ] {
            let errs = errors_for(&[TOKEN, (var, bad)]);
            assert_eq!(errs.len(), 1, "{var}={bad}: {errs:?}");
            assert!(
                errs[0].starts_with(&format!("{var}={bad:?}: ")),
                "{var}={bad}: {}",
                errs[0]
            );
        }
    }

    #[test]
    fn the_per_client_share_defaults_below_the_total_and_never_exceeds_it() {
        let share = |vars: &[(&str, &str)]| {
            let mut all = vec![TOKEN];
            all.extend_from_slice(vars);
            cfg(&all).map(|c| c.max_in_flight_per_client)
        };
        assert_eq!(share(&[]).unwrap(), 64);
        assert_eq!(share(&[(MAX_IN_FLIGHT, "8")]).unwrap(), 4);
        assert_eq!(share(&[(MAX_IN_FLIGHT, "2")]).unwrap(), 1);
        assert_eq!(share(&[(MAX_IN_FLIGHT, "1")]).unwrap(), 1);
        assert_eq!(share(&[(MAX_IN_FLIGHT_PER_CLIENT, "3")]).unwrap(), 3);
        let equal = [(MAX_IN_FLIGHT, "8"), (MAX_IN_FLIGHT_PER_CLIENT, "8")];
        assert_eq!(share(&equal).unwrap(), 8);
        // Above the total: an error naming both variables and both values.
        let errs = errors_for(&[TOKEN, (MAX_IN_FLIGHT, "8"), (MAX_IN_FLIGHT_PER_CLIENT, "9")]);
        assert_eq!(
            errs,
            [
                "HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT=\"9\": one client cannot hold more places \
                 than HOLEPUNCH_MAX_IN_FLIGHT gives in all (8): set it from 1 to 8, or leave \
                 it unset for 4"
            ]
        );
        assert_eq!(
            errors_for(&[TOKEN, (MAX_IN_FLIGHT_PER_CLIENT, "257")]).len(),
            1
        );
        // A bad total is reported once, not again as a clash.
        let errs = errors_for(&[TOKEN, (MAX_IN_FLIGHT, "0"), (MAX_IN_FLIGHT_PER_CLIENT, "9")]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("HOLEPUNCH_MAX_IN_FLIGHT=\"0\""));
        for bad in ["0", "-1", "+2", "two", "1000001"] {
            let errs = errors_for(&[TOKEN, (MAX_IN_FLIGHT_PER_CLIENT, bad)]);
            assert_eq!(
                errs,
                [format!(
                    "HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT={bad:?}: expected a whole number of \
                     requests from 1 to HOLEPUNCH_MAX_IN_FLIGHT (unset: a quarter of \
                     HOLEPUNCH_MAX_IN_FLIGHT)"
                )]
            );
        }
    }

    #[test]
    fn the_per_client_connection_share_never_exceeds_a_cap_the_operator_set() {
        let share = |vars: &[(&str, &str)]| {
            let mut all = vec![TOKEN];
            all.extend_from_slice(vars);
            cfg(&all).map(|c| c.max_connections_per_client)
        };
        // Unset: a quarter of the cap in force, decided at startup.
        assert_eq!(share(&[]).unwrap(), None);
        assert_eq!(
            share(&[(MAX_CONNECTIONS_PER_CLIENT, "10")]).unwrap(),
            Some(10)
        );
        // Above a cap the operator set: an error naming both.
        let both = [(MAX_CONNECTIONS, "8"), (MAX_CONNECTIONS_PER_CLIENT, "8")];
        assert_eq!(share(&both).unwrap(), Some(8));
        let errs = errors_for(&[
            TOKEN,
            (MAX_CONNECTIONS, "8"),
            (MAX_CONNECTIONS_PER_CLIENT, "9"),
        ]);
        assert_eq!(
            errs,
            [
                "HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT=\"9\": one client cannot hold more \
                 connections than HOLEPUNCH_MAX_CONNECTIONS allows in all (8): set it from 1 \
                 to 8, or leave it unset for 4"
            ]
        );
        // Above the default cap it is lowered with it at startup, not refused.
        assert_eq!(
            share(&[(MAX_CONNECTIONS_PER_CLIENT, "5000")]).unwrap(),
            Some(5000)
        );
        for bad in ["0", "-1", "+2", "two", "1000001"] {
            let errs = errors_for(&[TOKEN, (MAX_CONNECTIONS_PER_CLIENT, bad)]);
            assert_eq!(
                errs,
                [format!(
                    "HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT={bad:?}: expected a whole number of \
                     connections from 1 to HOLEPUNCH_MAX_CONNECTIONS (unset: a quarter of \
                     HOLEPUNCH_MAX_CONNECTIONS)"
                )]
            );
        }
    }

    #[test]
    fn rate_limits_print_as_they_are_written() {
        for v in ["20/s", "600/m", "7/h", "1/s", "4294967295/h"] {
            assert_eq!(RateLimit::parse(v).unwrap().to_string(), v);
        }
        assert_eq!(RateLimit::parse("4294967296/s"), None);
    }

    #[test]
    fn token_sources_describe_themselves_without_the_token() {
        let env = TokenSource::Env(TOKEN.1.to_string());
        assert_eq!(format!("{env:?}"), "NOMAD_TOKEN (<redacted>)");
        let file = TokenSource::File {
            path: "/secrets/nomad_token".into(),
            var: NOMAD_SECRETS_DIR,
        };
        assert_eq!(
            format!("{file:?}"),
            "file /secrets/nomad_token (from NOMAD_SECRETS_DIR)"
        );
    }

    /// "Did you mean" rests on these distances.
    #[test]
    fn edit_distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("abc", "abc", 0),
            ("kitten", "sitting", 3),
            ("ab", "ba", 2),
            ("HOLEPUNCH_ALOW_NODES", "HOLEPUNCH_ALLOW_NODES", 1),
            ("HOLEPUNCH_PORTS", "HOLEPUNCH_PORT", 1),
            ("XHOLEPUNCH_PORT", "HOLEPUNCH_PORT", 1),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a:?} {b:?}");
            assert_eq!(edit_distance(b, a), d, "{b:?} {a:?}");
        }
    }

    #[test]
    fn describe_lists_every_setting() {
        let c = cfg(&[TOKEN, (BIND, "127.0.0.1")]).unwrap();
        let lines = c.describe();
        assert_eq!(lines[0], "listen address: 127.0.0.1:6120");
        assert_eq!(
            lines[1],
            "Task API socket: /secrets/api.sock (from default)"
        );
        assert_eq!(lines[2], "workload token: NOMAD_TOKEN (<redacted>)");
        assert_eq!(lines.len(), 4 + Group::ALL.len() + 19);
        assert!(lines.contains(&"HOLEPUNCH_CLIENT_WRITE_TIMEOUT = 30s".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_CLIENT_IDLE_TIMEOUT = 60s".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_CONNECTIONS = default".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT = default".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_IN_FLIGHT = 256".to_string()));
        assert!(lines
            .contains(&"HOLEPUNCH_MAX_IN_FLIGHT_PER_CLIENT = 64 per client address".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_RATE_LIMIT = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_FROM = any address".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOWED_HOSTS = any host".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_METRICS_CACHE_TTL = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_TELEMETRY_BIND = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_LOG_FORMAT = text".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_UPSTREAM_TIMEOUT = 340s".to_string()));
        assert!(lines.contains(&"TLS: off".to_string()));
        assert!(lines.contains(&"client certificates: off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_METRICS = true".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_NODES = false".to_string()));
    }
}
