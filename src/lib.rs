//! nomad-holepunch: expose an allowlisted part of the Nomad Task API socket
//! (`${NOMAD_SECRETS_DIR}/api.sock`) on TCP, authenticated with the task's
//! Workload Identity token.
//!
//! The layout, folders by layer, from the request's point of view:
//! - leaves, importing nothing from the crate: [`vars`] (every variable's
//!   name, `ConfigError` and `Problems`: the vocabulary of every message
//!   about the configuration) and [`secrets`] (the registry of the secrets
//!   held, and their redaction);
//! - [`cli`]: the command-line flags (pure);
//! - [`build_info`]: the version, git commit and Pingora version (pure);
//! - [`config`]: the environment variables, parsed strictly (pure);
//! - [`decision`]: the pure core, what a request may do from its head alone:
//!   [`decision::target`] (the request-target rule, read once, and the one
//!   percent decoding), [`decision::allowlist`] (endpoint groups and the path
//!   decision), [`decision::head`] (the whole request decision),
//!   [`decision::hosts`] (`HOLEPUNCH_ALLOWED_HOSTS`), [`decision::query`] (the
//!   query as Nomad reads it), [`decision::cidr`] (address ranges for
//!   `HOLEPUNCH_ALLOW_FROM`);
//! - [`files`]: the files the proxy is pointed at, read and reloaded:
//!   [`files::read`] (regular files only, capped, never waiting),
//!   [`files::reload`] (the value each file makes, swapped when it changes),
//!   [`files::watch`] (re-reading on change and on SIGHUP), [`files::token`]
//!   (the workload token), [`files::claims`] (a JWT's `exp` and `iat`, pure),
//!   [`files::client_auth`] (the bearer tokens clients must present),
//!   [`files::client_cert`] (the CAs client certificates must chain to),
//!   [`files::tls`] (TLS on the listener);
//! - [`conn`]: the code tied to Pingora's internals, one folder to diff on a
//!   Pingora upgrade: [`conn::guard`] (TLS, the request-header deadline and
//!   size limit, the client write and idle timeouts, `HOLEPUNCH_ALLOW_FROM`
//!   for connections), [`conn::deadline`] (the client write deadline),
//!   [`conn::connections`] (`HOLEPUNCH_MAX_CONNECTIONS` and each client's
//!   share of it);
//! - [`proxy`]: the Pingora `ProxyHttp` hooks that tie them together, with
//!   the local answers, response writing and error mapping, the shared
//!   metrics fetch, [`proxy::retry`] (the one retry policy of both upstream
//!   clients, pure), [`proxy::coalesce`] (one upstream request for
//!   concurrent identical scrapes), [`proxy::limits`] (requests in flight on the socket, in all
//!   and per client, and per-client rates) and [`proxy::lru`] (a fixed-size
//!   map that forgets its least recently used entry, pure);
//! - process level: [`open_files`] (the open-files limit, raised at
//!   startup), [`shutdown`] (in-flight counting and the early exit after
//!   SIGTERM), [`startup`] (loading and checking all of it, and assembling
//!   the server), [`rundir`] (the private directory of the upgrade socket and
//!   pid file), [`telemetry`] (the proxy's own Prometheus metrics),
//!   [`process`] (the process metrics, from `/proc`), [`logging`] (env_logger
//!   with every line redacted by [`secrets`], targets cut and refusal lines
//!   throttled), [`allocator`] (glibc's trim and mmap thresholds).

pub mod allocator;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod conn;
pub mod decision;
pub mod files;
pub mod logging;
pub mod open_files;
pub mod process;
pub mod proxy;
pub mod rundir;
pub mod secrets;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod vars;

/// Runs a future to completion on a one-thread runtime with a timer: the
/// unit tests' way into async code.
#[cfg(test)]
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a test runtime")
        .block_on(f)
}
