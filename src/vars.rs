//! The configuration's vocabulary, a leaf that imports nothing from the
//! crate: the name of every variable (the [`var_name!`](crate::var_name) macro and a
//! constant each), and the error every module reports an operator's mistake
//! with ([`ConfigError`], gathered in [`Problems`]). Modules that only need
//! a variable's name for a message, or the error type, import this, not
//! `crate::config`, which assembles the configuration from them.

use std::fmt;
use std::path::Path;

/// The name of each variable, the only place it is written (the endpoint
/// groups' flags are written in `crate::decision::allowlist::Group::flag`). `var_name!(PORT)` is the
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
    pub fn about(&self, vars: &[&str]) -> bool {
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
