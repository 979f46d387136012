//! Configuration from the environment, with the Go original's variable names
//! and defaults, but strict: every bad value is an error naming the variable,
//! the value and what would be accepted, and nothing falls back silently.
//!
//! Pure: [`Config::from_vars`] takes the variables as a list, so tests and
//! `--check` see exactly what the server would. Reading the token itself
//! (a file, maybe) is `crate::token`'s job.

use crate::allowlist::{Allowlist, Group};
use crate::cidr::AddrSet;
use crate::head::HostList;
use crate::token::TokenSource;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const BIND: &str = "HOLEPUNCH_BIND";
pub const PORT: &str = "HOLEPUNCH_PORT";
pub const SOCKET_PATH: &str = "HOLEPUNCH_SOCKET_PATH";
/// The name the Go original's README gives; read when HOLEPUNCH_SOCKET_PATH is unset.
pub const SOCKET_PATH_ALIAS: &str = "NOMAD_SOCKET_PATH";
pub const TOKEN_FILE: &str = "HOLEPUNCH_TOKEN_FILE";
pub const ALLOW_ALL: &str = "HOLEPUNCH_ALLOW_ALL";
pub const UPSTREAM_TIMEOUT: &str = "HOLEPUNCH_UPSTREAM_TIMEOUT";
pub const CLIENT_HEADER_TIMEOUT: &str = "HOLEPUNCH_CLIENT_HEADER_TIMEOUT";
pub const MAX_BODY: &str = "HOLEPUNCH_MAX_BODY";
pub const TLS_CERT_FILE: &str = "HOLEPUNCH_TLS_CERT_FILE";
pub const TLS_KEY_FILE: &str = "HOLEPUNCH_TLS_KEY_FILE";
pub const CLIENT_TOKEN_FILE: &str = "HOLEPUNCH_CLIENT_TOKEN_FILE";
pub const METRICS_CACHE_TTL: &str = "HOLEPUNCH_METRICS_CACHE_TTL";
pub const TELEMETRY_BIND: &str = "HOLEPUNCH_TELEMETRY_BIND";
pub const LOG_FORMAT: &str = "HOLEPUNCH_LOG_FORMAT";
pub const CLIENT_WRITE_TIMEOUT: &str = "HOLEPUNCH_CLIENT_WRITE_TIMEOUT";
pub const ALLOWED_HOSTS: &str = "HOLEPUNCH_ALLOWED_HOSTS";
pub const ALLOW_FROM: &str = "HOLEPUNCH_ALLOW_FROM";
pub const MAX_IN_FLIGHT: &str = "HOLEPUNCH_MAX_IN_FLIGHT";
pub const RATE_LIMIT: &str = "HOLEPUNCH_RATE_LIMIT";
/// Set by Nomad for every task: the region of the agent.
pub const NOMAD_REGION: &str = "NOMAD_REGION";
/// Set by `identity { env = true }`.
pub const NOMAD_TOKEN: &str = "NOMAD_TOKEN";
/// Set by Nomad for every task.
pub const NOMAD_SECRETS_DIR: &str = "NOMAD_SECRETS_DIR";

pub const DEFAULT_BIND: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 6120;
/// The socket path when neither the variables nor NOMAD_SECRETS_DIR say otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/secrets/api.sock";
/// How long Nomad may take to answer: above the 330 s a blocking query can
/// last (a 5 min `wait` plus up to 1/16 jitter).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(340);
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
pub const DEFAULT_CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The longest path a Unix socket address can hold on Linux (`sun_path` is
/// 108 bytes including the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Every `HOLEPUNCH_*` variable this program reads. Any other variable with
/// that prefix is an error, so a typo cannot silently leave a default.
fn known_variables() -> impl Iterator<Item = &'static str> {
    [
        BIND,
        PORT,
        SOCKET_PATH,
        TOKEN_FILE,
        ALLOW_ALL,
        UPSTREAM_TIMEOUT,
        CLIENT_HEADER_TIMEOUT,
        MAX_BODY,
        TLS_CERT_FILE,
        TLS_KEY_FILE,
        CLIENT_TOKEN_FILE,
        METRICS_CACHE_TTL,
        TELEMETRY_BIND,
        LOG_FORMAT,
        CLIENT_WRITE_TIMEOUT,
        ALLOWED_HOSTS,
        ALLOW_FROM,
        MAX_IN_FLIGHT,
        RATE_LIMIT,
    ]
    .into_iter()
    .chain(Group::ALL.iter().map(|g| g.flag()))
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
    /// The client addresses served, when limited.
    pub allow_from: Option<AddrSet>,
    /// The Host names served, when limited.
    pub allowed_hosts: Option<HostList>,
    /// The agent's region (`NOMAD_REGION`), when known.
    pub region: Option<String>,
    /// The most requests forwarded at once.
    pub max_in_flight: usize,
    /// Requests per client address, when limited.
    pub rate_limit: Option<RateLimit>,
    /// The largest request body forwarded (bodies exist only under ALL).
    pub max_body: u64,
    /// TLS on the listener: the certificate chain and key, both PEM.
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

/// How log lines are written (`HOLEPUNCH_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `[2026-11-25T10:00:00.000Z INFO  target] message`, env_logger's.
    #[default]
    Text,
    /// One JSON object per line: ts, level, target, msg.
    Json,
}

impl LogFormat {
    /// Parses `HOLEPUNCH_LOG_FORMAT`; unset or empty is text.
    pub fn parse(v: Option<&str>) -> Result<LogFormat, ConfigError> {
        match v {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(ConfigError {
                var: LOG_FORMAT.to_string(),
                value: Some(other.to_string()),
                expected: "expected text (the default) or json".to_string(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format the process environment asks for, for the logger, which
    /// starts before the configuration is checked (a bad value is reported
    /// with the other problems, and text is used meanwhile).
    pub fn from_env() -> LogFormat {
        LogFormat::parse(std::env::var(LOG_FORMAT).ok().as_deref()).unwrap_or_default()
    }
}

/// The PEM files for TLS on the listener, re-read when they change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One problem with one variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault.
    pub var: String,
    /// The value it had, quoted for the message; `None` when it was unset or
    /// when the value must not be shown (a token).
    pub value: Option<String>,
    /// What would be accepted, or what to do.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={:?}: {}", self.var, v, self.expected),
            None => write!(f, "{}: {}", self.var, self.expected),
        }
    }
}

/// The variables as given: `Err(())` for a value that is not UTF-8.
type Vars = HashMap<String, Result<String, ()>>;

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, Vec<ConfigError>> {
        Config::from_vars(std::env::vars_os())
    }

    /// Builds the configuration from a list of variables. Returns every
    /// problem found, not just the first.
    pub fn from_vars<I>(vars: I) -> Result<Config, Vec<ConfigError>>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let vars: Vars = vars
            .into_iter()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().map_err(|_| ()))))
            .collect();
        let mut errors = Vec::new();

        for name in vars.keys().filter(|k| k.starts_with("HOLEPUNCH_")) {
            if !known_variables().any(|known| known == name) {
                errors.push(unknown_variable(name, &vars));
            }
        }

        let bind = get(&vars, BIND, &mut errors).unwrap_or(DEFAULT_BIND);
        let ip = parse_bind(bind).map_err(|e| errors.push(e)).ok();
        let port = match get(&vars, PORT, &mut errors) {
            None => Some(DEFAULT_PORT),
            Some(v) => parse_port(v).map_err(|e| errors.push(e)).ok(),
        };

        let (socket_path, socket_path_from) = socket_path(&vars, &mut errors);
        if socket_path.len() > MAX_SOCKET_PATH {
            errors.push(ConfigError {
                var: socket_path_from.to_string(),
                value: Some(socket_path.clone()),
                expected: format!(
                    "a Unix socket path can be at most {MAX_SOCKET_PATH} bytes; this one is {} \
                     (move the task directory to a shorter path or link the socket somewhere shorter)",
                    socket_path.len()
                ),
            });
        }

        let token = token_source(&vars, &mut errors);

        let upstream_timeout = get_duration(
            &vars,
            UPSTREAM_TIMEOUT,
            DEFAULT_UPSTREAM_TIMEOUT,
            &mut errors,
        );
        let client_header_timeout = get_duration(
            &vars,
            CLIENT_HEADER_TIMEOUT,
            DEFAULT_CLIENT_HEADER_TIMEOUT,
            &mut errors,
        );
        let max_body = match get(&vars, MAX_BODY, &mut errors) {
            None => DEFAULT_MAX_BODY,
            Some(v) => parse_size(v).unwrap_or_else(|| {
                errors.push(ConfigError {
                    var: MAX_BODY.to_string(),
                    value: Some(v.to_string()),
                    expected: "expected a size in bytes, such as 1048576, 512KiB, 1MiB or 2MB"
                        .to_string(),
                });
                DEFAULT_MAX_BODY
            }),
        };
        let tls = match (
            get(&vars, TLS_CERT_FILE, &mut errors),
            get(&vars, TLS_KEY_FILE, &mut errors),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                let (set, unset) = if vars.contains_key(TLS_CERT_FILE) {
                    (TLS_CERT_FILE, TLS_KEY_FILE)
                } else {
                    (TLS_KEY_FILE, TLS_CERT_FILE)
                };
                errors.push(ConfigError {
                    var: unset.to_string(),
                    value: None,
                    expected: format!("{set} is set, so TLS needs {unset} too (both PEM files)"),
                });
                None
            }
        };
        let client_token_file = get(&vars, CLIENT_TOKEN_FILE, &mut errors).map(PathBuf::from);
        let client_write_timeout = get_duration(
            &vars,
            CLIENT_WRITE_TIMEOUT,
            DEFAULT_CLIENT_WRITE_TIMEOUT,
            &mut errors,
        );
        let allow_from = get(&vars, ALLOW_FROM, &mut errors).and_then(|v| {
            AddrSet::parse(v)
                .map_err(|problems| {
                    errors.push(ConfigError {
                        var: ALLOW_FROM.to_string(),
                        value: Some(v.to_string()),
                        expected: format!(
                            "{}; expected comma-separated IP addresses and CIDR ranges, \
                             such as 10.0.0.0/8, 192.0.2.7, fd00::/8",
                            problems.join("; ")
                        ),
                    })
                })
                .ok()
        });
        let allowed_hosts = get(&vars, ALLOWED_HOSTS, &mut errors).and_then(|v| {
            HostList::parse(v)
                .map_err(|problems| {
                    errors.push(ConfigError {
                        var: ALLOWED_HOSTS.to_string(),
                        value: Some(v.to_string()),
                        expected: format!(
                            "{}; expected comma-separated host names, such as \
                             nomad-1.example.com, *.nodes.example.com",
                            problems.join("; ")
                        ),
                    })
                })
                .ok()
        });
        let region = get(&vars, NOMAD_REGION, &mut errors).map(str::to_string);
        let max_in_flight = match get(&vars, MAX_IN_FLIGHT, &mut errors) {
            None => DEFAULT_MAX_IN_FLIGHT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 && n <= 1_000_000 && !v.starts_with('+') => n,
                _ => {
                    errors.push(ConfigError {
                        var: MAX_IN_FLIGHT.to_string(),
                        value: Some(v.to_string()),
                        expected: format!(
                            "expected a whole number of requests from 1 to 1000000 \
                             (default {DEFAULT_MAX_IN_FLIGHT})"
                        ),
                    });
                    DEFAULT_MAX_IN_FLIGHT
                }
            },
        };
        let rate_limit = get(&vars, RATE_LIMIT, &mut errors).and_then(|v| {
            let parsed = RateLimit::parse(v);
            if parsed.is_none() {
                errors.push(ConfigError {
                    var: RATE_LIMIT.to_string(),
                    value: Some(v.to_string()),
                    expected: "expected requests per client address as N/s, N/m or N/h \
                               with N from 1, such as 20/s or 600/m"
                        .to_string(),
                });
            }
            parsed
        });
        let metrics_cache_ttl = get(&vars, METRICS_CACHE_TTL, &mut errors)
            .is_some()
            .then(|| get_duration(&vars, METRICS_CACHE_TTL, Duration::ZERO, &mut errors));

        let telemetry_listen = get(&vars, TELEMETRY_BIND, &mut errors).and_then(|v| {
            parse_telemetry_bind(v, ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port)))
                .map_err(|e| errors.push(e))
                .ok()
        });
        let log_format = LogFormat::parse(get(&vars, LOG_FORMAT, &mut errors))
            .map_err(|e| errors.push(e))
            .unwrap_or_default();

        let mut allow = Allowlist::default();
        if let Some(all) = get_bool(&vars, ALLOW_ALL, false, &mut errors) {
            allow = allow.with_all(all);
        }
        for group in Group::ALL {
            if let Some(open) = get_bool(&vars, group.flag(), group.default_enabled(), &mut errors)
            {
                allow = allow.with(group, open);
            }
        }

        if let Some(ip) = ip {
            if allow.all() && client_token_file.is_none() && !ip.to_canonical().is_loopback() {
                errors.push(ConfigError {
                    var: ALLOW_ALL.to_string(),
                    value: Some("true".to_string()),
                    expected: format!(
                        "ALL forwards every Nomad API call with the workload token, so off \
                         loopback it needs client authentication: set {CLIENT_TOKEN_FILE}, \
                         or set {BIND} to 127.0.0.1 (it is {ip})"
                    ),
                });
            }
        }

        match (ip, port, token) {
            (Some(ip), Some(port), Some(token)) if errors.is_empty() => Ok(Config {
                listen: SocketAddr::new(ip, port),
                socket_path,
                socket_path_from,
                token,
                allow,
                upstream_timeout,
                client_header_timeout,
                client_write_timeout,
                allow_from,
                allowed_hosts,
                region,
                max_in_flight,
                rate_limit,
                max_body,
                tls,
                client_token_file,
                metrics_cache_ttl,
                telemetry_listen,
                log_format,
            }),
            _ => Err(errors),
        }
    }

    /// One line per setting, for the startup log and `--check`. The token
    /// is described by its source only.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("listen address: {}", self.listen),
            format!(
                "Task API socket: {} (from {})",
                self.socket_path, self.socket_path_from
            ),
            format!("workload token: {}", self.token.describe()),
            format!("{ALLOW_ALL} = {}", self.allow.all()),
        ];
        let tls = match &self.tls {
            Some(t) => format!("{} and {}", t.cert.display(), t.key.display()),
            None => "off".to_string(),
        };
        let client_tokens = match &self.client_token_file {
            Some(path) => format!("required, from {}", path.display()),
            None => "off".to_string(),
        };
        lines.extend([
            format!("{UPSTREAM_TIMEOUT} = {:?}", self.upstream_timeout),
            format!("{CLIENT_HEADER_TIMEOUT} = {:?}", self.client_header_timeout),
            format!("{CLIENT_WRITE_TIMEOUT} = {:?}", self.client_write_timeout),
            match &self.allow_from {
                Some(set) => format!("{ALLOW_FROM} = {set}"),
                None => format!("{ALLOW_FROM} = any address"),
            },
            match &self.allowed_hosts {
                Some(hosts) => format!("{ALLOWED_HOSTS} = {hosts} (and IP addresses, localhost)"),
                None => format!("{ALLOWED_HOSTS} = any host"),
            },
            match &self.region {
                Some(region) => format!("region: {region} (from {NOMAD_REGION})"),
                None => format!("region: unknown ({NOMAD_REGION} unset): not checked"),
            },
            format!("{MAX_IN_FLIGHT} = {}", self.max_in_flight),
            match self.rate_limit {
                Some(limit) => format!("{RATE_LIMIT} = {limit} per client address"),
                None => format!("{RATE_LIMIT} = off"),
            },
            format!("{MAX_BODY} = {} bytes", self.max_body),
            format!("TLS: {tls}"),
            format!("client tokens: {client_tokens}"),
            match self.metrics_cache_ttl {
                Some(ttl) => format!("{METRICS_CACHE_TTL} = {ttl:?}"),
                None => format!("{METRICS_CACHE_TTL} = off"),
            },
            match self.telemetry_listen {
                Some(addr) => format!("{TELEMETRY_BIND} = {addr}"),
                None => format!("{TELEMETRY_BIND} = off"),
            },
            format!("{LOG_FORMAT} = {}", self.log_format.name()),
        ]);
        lines.extend(
            Group::ALL
                .iter()
                .map(|g| format!("{} = {}", g.flag(), self.allow.allows(*g))),
        );
        lines
    }
}

/// The value of a variable; `None` when unset or empty. A value that is not
/// UTF-8 is reported and treated as unset.
fn get<'a>(vars: &'a Vars, name: &str, errors: &mut Vec<ConfigError>) -> Option<&'a str> {
    match vars.get(name)? {
        Ok(v) if v.is_empty() => None,
        Ok(v) => Some(v.as_str()),
        Err(()) => {
            errors.push(ConfigError {
                var: name.to_string(),
                value: None,
                expected: "the value is not valid UTF-8".to_string(),
            });
            None
        }
    }
}

/// A boolean as Go's strconv.ParseBool reads it; empty or unset is `default`.
fn get_bool(vars: &Vars, name: &str, default: bool, errors: &mut Vec<ConfigError>) -> Option<bool> {
    match get(vars, name, errors) {
        None => Some(default),
        Some(v) => match parse_bool(v) {
            Some(b) => Some(b),
            None => {
                errors.push(ConfigError {
                    var: name.to_string(),
                    value: Some(v.to_string()),
                    expected: "expected a boolean: 1, t, T, TRUE, true, True, 0, f, F, FALSE, \
                               false or False"
                        .to_string(),
                });
                None
            }
        },
    }
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
/// `1.5s`, `500ms`); empty or unset is `default`. Must be above zero.
fn get_duration(
    vars: &Vars,
    name: &str,
    default: Duration,
    errors: &mut Vec<ConfigError>,
) -> Duration {
    match get(vars, name, errors) {
        None => default,
        Some(v) => match parse_duration(v) {
            Some(d) if !d.is_zero() => d,
            _ => {
                errors.push(ConfigError {
                    var: name.to_string(),
                    value: Some(v.to_string()),
                    expected: "expected a duration above zero with a unit, such as 500ms, 10s, \
                               1m30s or 1h (units: ns, us, ms, s, m, h)"
                        .to_string(),
                });
                default
            }
        },
    }
}

/// Go's time.ParseDuration, for positive values: one or more decimal numbers,
/// each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`).
pub fn parse_duration(v: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = v;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() || number == "." {
            return None;
        }
        let number: f64 = number.parse().ok()?;
        // The longest unit that matches ("ms" before "m").
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| tail.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        total += number * scale;
        rest = &tail[unit.len()..];
    }
    Duration::try_from_secs_f64(total).ok()
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

fn parse_bind(v: &str) -> Result<IpAddr, ConfigError> {
    let bare = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    bare.parse().map_err(|_| ConfigError {
        var: BIND.to_string(),
        value: Some(v.to_string()),
        expected: "expected an IPv4 or IPv6 address such as 0.0.0.0, 127.0.0.1, :: or ::1 \
                   (the port goes in HOLEPUNCH_PORT)"
            .to_string(),
    })
}

/// `HOLEPUNCH_TELEMETRY_BIND`: an address and port, not the proxy's own.
fn parse_telemetry_bind(v: &str, listen: Option<SocketAddr>) -> Result<SocketAddr, ConfigError> {
    let error = |expected: String| ConfigError {
        var: TELEMETRY_BIND.to_string(),
        value: Some(v.to_string()),
        expected,
    };
    let addr: SocketAddr = v.parse().map_err(|_| {
        error(
            "expected an address and a port, such as 127.0.0.1:6121 or [::1]:6121 \
             (127.0.0.1 keeps the proxy's own metrics off the network)"
                .to_string(),
        )
    })?;
    if addr.port() == 0 {
        return Err(error("expected a port from 1 to 65535".to_string()));
    }
    let clash = listen.is_some_and(|l| {
        l.port() == addr.port()
            && (l.ip() == addr.ip() || l.ip().is_unspecified() || addr.ip().is_unspecified())
    });
    if clash {
        return Err(error(format!(
            "the proxy itself listens on {}: give the metrics another port",
            listen.map_or_else(String::new, |l| l.to_string())
        )));
    }
    Ok(addr)
}

fn parse_port(v: &str) -> Result<u16, ConfigError> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 && !v.starts_with('+') => Ok(p),
        _ => Err(ConfigError {
            var: PORT.to_string(),
            value: Some(v.to_string()),
            expected: "expected a port number from 1 to 65535".to_string(),
        }),
    }
}

fn socket_path(vars: &Vars, errors: &mut Vec<ConfigError>) -> (String, &'static str) {
    if let Some(p) = get(vars, SOCKET_PATH, errors) {
        return (p.to_string(), SOCKET_PATH);
    }
    if let Some(p) = get(vars, SOCKET_PATH_ALIAS, errors) {
        return (p.to_string(), SOCKET_PATH_ALIAS);
    }
    if let Some(dir) = get(vars, NOMAD_SECRETS_DIR, errors) {
        return (
            format!("{}/api.sock", dir.trim_end_matches('/')),
            NOMAD_SECRETS_DIR,
        );
    }
    (DEFAULT_SOCKET_PATH.to_string(), "default")
}

fn token_source(vars: &Vars, errors: &mut Vec<ConfigError>) -> Option<TokenSource> {
    if let Some(path) = get(vars, TOKEN_FILE, errors) {
        return Some(TokenSource::File {
            path: PathBuf::from(path),
            var: TOKEN_FILE,
        });
    }
    // The token's value is never echoed, even when it is not UTF-8.
    match vars.get(NOMAD_TOKEN) {
        Some(Ok(v)) if !v.trim().is_empty() => return Some(TokenSource::Env(v.clone())),
        Some(Err(())) => {
            errors.push(ConfigError {
                var: NOMAD_TOKEN.to_string(),
                value: None,
                expected: "the value is not valid UTF-8".to_string(),
            });
            return None;
        }
        _ => {}
    }
    if let Some(dir) = get(vars, NOMAD_SECRETS_DIR, errors) {
        return Some(TokenSource::File {
            path: PathBuf::from(dir).join("nomad_token"),
            var: NOMAD_SECRETS_DIR,
        });
    }
    errors.push(ConfigError {
        var: NOMAD_TOKEN.to_string(),
        value: None,
        expected: format!(
            "no workload token: set {TOKEN_FILE} to a token file, or give the task \
             identity {{ env = true }} (sets {NOMAD_TOKEN}) or identity {{ file = true }} \
             (writes $NOMAD_SECRETS_DIR/nomad_token)"
        ),
    });
    None
}

fn unknown_variable(name: &str, vars: &Vars) -> ConfigError {
    let nearest = known_variables()
        .map(|k| (edit_distance(name, k), k))
        .min()
        .filter(|(d, _)| *d <= 3);
    let expected = match nearest {
        Some((_, k)) => format!("unknown variable; did you mean {k}?"),
        None => format!(
            "unknown variable; the HOLEPUNCH_ variables are {}",
            known_variables().collect::<Vec<_>>().join(", ")
        ),
    };
    ConfigError {
        var: name.to_string(),
        value: vars.get(name).and_then(|v| v.clone().ok()),
        expected,
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

    #[test]
    fn unknown_holepunch_variables_are_errors() {
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_ALLOW_NODE", "true")]);
        assert_eq!(
            errs,
            vec!["HOLEPUNCH_ALLOW_NODE=\"true\": unknown variable; did you mean HOLEPUNCH_ALLOW_NODES?"]
        );
        let errs = errors_for(&[TOKEN, ("HOLEPUNCH_SOMETHING_ELSE", "1")]);
        assert!(
            errs[0].contains("the HOLEPUNCH_ variables are HOLEPUNCH_BIND"),
            "{errs:?}"
        );
        // Other variables are none of our business.
        assert!(cfg(&[TOKEN, ("NOMAD_ADDR", "x"), ("PATH", "/bin")]).is_ok());
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
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "-1s",
            "1s-",
            "ten seconds",
            ".s",
            "1e3s",
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
                key: "/k.pem".into()
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
        let c = cfg(&[TOKEN, (CLIENT_TOKEN_FILE, "/run/clients")]).unwrap();
        assert_eq!(c.client_token_file, Some(PathBuf::from("/run/clients")));
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
    fn all_off_loopback_needs_client_tokens() {
        for bind in ["0.0.0.0", "10.0.0.5", "::", "fd00::1"] {
            let errs = errors_for(&[TOKEN, (ALLOW_ALL, "true"), (BIND, bind)]);
            assert_eq!(errs.len(), 1, "{bind}: {errs:?}");
            assert!(errs[0].contains(CLIENT_TOKEN_FILE), "{}", errs[0]);
            assert!(errs[0].contains(BIND), "{}", errs[0]);
        }
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
        assert_eq!(c.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(c.rate_limit, None);
        assert_eq!(c.client_write_timeout, Duration::from_secs(30));
        assert_eq!(
            (c.allow_from, c.allowed_hosts, c.region),
            (None, None, None)
        );
        let c = cfg(&[
            TOKEN,
            (MAX_IN_FLIGHT, "8"),
            (RATE_LIMIT, "600/m"),
            (CLIENT_WRITE_TIMEOUT, "5s"),
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
    fn rate_limits_print_as_they_are_written() {
        for v in ["20/s", "600/m", "7/h", "1/s", "4294967295/h"] {
            assert_eq!(RateLimit::parse(v).unwrap().to_string(), v);
        }
        assert_eq!(RateLimit::parse("4294967296/s"), None);
    }

    /// The logger starts before the configuration is checked, from the
    /// process environment. Only "json" is set here: a value every other
    /// test reading the environment also accepts.
    #[test]
    fn log_format_from_the_process_environment() {
        std::env::set_var(LOG_FORMAT, "json");
        let format = LogFormat::from_env();
        std::env::remove_var(LOG_FORMAT);
        assert_eq!(format, LogFormat::Json);
        assert_eq!(LogFormat::Json.name(), "json");
        assert_eq!(LogFormat::Text.name(), "text");
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
        assert_eq!(lines.len(), 4 + Group::ALL.len() + 14);
        assert!(lines.contains(&"HOLEPUNCH_CLIENT_WRITE_TIMEOUT = 30s".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_MAX_IN_FLIGHT = 256".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_RATE_LIMIT = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_FROM = any address".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOWED_HOSTS = any host".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_METRICS_CACHE_TTL = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_TELEMETRY_BIND = off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_LOG_FORMAT = text".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_UPSTREAM_TIMEOUT = 340s".to_string()));
        assert!(lines.contains(&"TLS: off".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_METRICS = true".to_string()));
        assert!(lines.contains(&"HOLEPUNCH_ALLOW_NODES = false".to_string()));
    }
}
