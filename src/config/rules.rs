//! The cross-variable rules: the settings that rest on several variables
//! (the listen address, the socket path, the token's source, the TLS pair,
//! the per-client shares against the totals, the telemetry address apart
//! from the proxy's, ALL off loopback), resolved once every variable was
//! read, so that each problem is reported once, in a stable order.

use super::{Config, Draft, Files, Listeners, Pending};
use crate::decision::head::Rules;
use crate::files::tls::TlsFiles;
use crate::files::token::TokenSource;
use crate::vars::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The socket path when neither the variables nor NOMAD_SECRETS_DIR say otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/secrets/api.sock";
/// The longest path a Unix socket address can hold on Linux (`sun_path` is
/// 108 bytes including the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl Draft {
    /// The configuration, once the settings that rest on several variables
    /// are resolved and checked; `None` when something essential is missing.
    pub(super) fn finish(self, problems: &mut Problems) -> Option<Config> {
        let Draft {
            rules,
            mut upstream,
            mut limits,
            mut listeners,
            log_format,
            pending,
        } = self;
        (upstream.socket_path, upstream.socket_path_from) = pending.socket_path(problems);
        let token = pending.token_source(problems);
        let tls = pending.tls(problems);
        let listen = pending.listen();
        listeners.telemetry_listen = pending.telemetry_listen(listen, problems);
        limits.max_in_flight_per_client =
            pending.max_in_flight_per_client(limits.max_in_flight, problems);
        check_connections_per_client(&listeners, problems);
        pending.check_all_off_loopback(&rules, problems);
        listeners.listen = listen?;
        Some(Config {
            rules,
            upstream,
            limits,
            listeners,
            files: Files {
                token: token?,
                tls,
                client_token_file: pending.client_token_file,
            },
            log_format,
        })
    }
}

impl Pending {
    /// HOLEPUNCH_BIND and HOLEPUNCH_PORT, when both are good.
    fn listen(&self) -> Option<SocketAddr> {
        self.ip
            .zip(self.port)
            .map(|(ip, port)| SocketAddr::new(ip, port))
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
    fn max_in_flight_per_client(&self, max: usize, problems: &mut Problems) -> usize {
        let Some(per_client) = self.max_in_flight_per_client else {
            return crate::proxy::limits::default_per_client(max);
        };
        // max is 0 when HOLEPUNCH_MAX_IN_FLIGHT had a problem of its own.
        if max > 0 {
            let share = Share {
                name: MAX_IN_FLIGHT_PER_CLIENT,
                total: MAX_IN_FLIGHT,
                what: "places",
                verb: "gives",
            };
            share.check(per_client, max, problems);
        }
        per_client
    }

    /// ALL forwards anything with the workload token: off loopback, only to
    /// clients that authenticate, with a client token or a client
    /// certificate (each a credential on its own).
    fn check_all_off_loopback(&self, rules: &Rules, problems: &mut Problems) {
        let Some(ip) = self.ip else { return };
        let authenticated = self.client_token_file.is_some() || self.tls_client_ca.is_some();
        if rules.allow.all() && !authenticated && !ip.to_canonical().is_loopback() {
            let problem = format!(
                "ALL forwards every Nomad API call with the workload token, so off \
                 loopback it needs client authentication: set {CLIENT_TOKEN_FILE} or \
                 {TLS_CLIENT_CA_FILE}, or set {BIND} to 127.0.0.1 (it is {ip})"
            );
            problems.add(ALLOW_ALL, Some("true"), problem);
        }
    }
}

/// HOLEPUNCH_MAX_CONNECTIONS_PER_CLIENT, never more than a
/// HOLEPUNCH_MAX_CONNECTIONS the operator set. Under a default cap,
/// lowered at startup to fit the open-files limit, it is lowered with it
/// (`crate::conn::connections::Fitted::share`).
pub(super) fn check_connections_per_client(listeners: &Listeners, problems: &mut Problems) {
    let (Some(max), Some(per_client)) = (
        listeners.max_connections,
        listeners.max_connections_per_client,
    ) else {
        return;
    };
    let share = Share {
        name: MAX_CONNECTIONS_PER_CLIENT,
        total: MAX_CONNECTIONS,
        what: "connections",
        verb: "allows",
    };
    share.check(per_client, max, problems);
}

/// A per-client share of a total (in-flight places, connections): never
/// more than the total, and the problem says what to set instead.
struct Share {
    name: &'static str,
    total: &'static str,
    what: &'static str,
    verb: &'static str,
}

impl Share {
    fn check(&self, per_client: usize, max: usize, problems: &mut Problems) {
        if per_client > max {
            let Share {
                total, what, verb, ..
            } = self;
            let problem = format!(
                "one client cannot hold more {what} than {total} {verb} in all ({max}): set \
                 it from 1 to {max}, or leave it unset for {}",
                crate::proxy::limits::default_per_client(max)
            );
            problems.add(self.name, Some(&per_client.to_string()), problem);
        }
    }
}
