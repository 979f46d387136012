//! nomad-holepunch: expose an allowlisted part of the Nomad Task API socket
//! (`${NOMAD_SECRETS_DIR}/api.sock`) on TCP, authenticated with the task's
//! Workload Identity token.
//!
//! The modules, from the request's point of view:
//! - [`cli`]: the command-line flags (pure);
//! - [`build_info`]: the version, git commit and Pingora version (pure);
//! - [`config`]: the environment variables, parsed strictly (pure);
//! - [`target`]: the request-target rule, one function (pure);
//! - [`allowlist`]: endpoint groups and the path decision (pure);
//! - [`head`]: the whole request decision, from the request head (pure);
//! - [`cidr`]: address ranges for `HOLEPUNCH_ALLOW_FROM` (pure);
//! - [`limits`]: requests in flight on the socket, in all and per client,
//!   and per-client rates;
//! - [`lru`]: a fixed-size map that forgets its least recently used entry
//!   (the rate table, the metrics cache) (pure);
//! - [`token`]: the workload token;
//! - [`claims`]: the `exp` and `iat` of a JWT, read as Nomad reads them (pure);
//! - [`client_auth`]: the bearer tokens clients must present, if any;
//! - [`client_cert`]: the CAs client certificates must chain to, if any;
//! - [`tls`]: TLS on the listener, certificates reloaded on change;
//! - [`files`]: reading those files: regular files only, capped, never waiting;
//! - [`reload`]: the value each of those files makes, swapped when it changes;
//! - [`watch`]: re-reading those files when they change, and on SIGHUP;
//! - [`proxy`]: the Pingora `ProxyHttp` that ties them together;
//! - [`coalesce`]: one upstream request for concurrent identical scrapes;
//! - [`deadline`]: the client write deadline, on the client's stream;
//! - [`guard`]: TLS, the request-header deadline and size limit, the
//!   client write and idle timeouts, `HOLEPUNCH_ALLOW_FROM` for connections,
//!   in front of it and of the telemetry listener;
//! - [`connections`]: `HOLEPUNCH_MAX_CONNECTIONS`, one count for both
//!   listeners, and each client's share of it;
//! - [`open_files`]: the open-files limit, raised at startup;
//! - [`shutdown`]: in-flight counting and the early exit after SIGTERM;
//! - [`startup`]: loading and checking all of it, and assembling the server;
//! - [`rundir`]: the private directory of the upgrade socket and pid file;
//! - [`telemetry`]: the proxy's own Prometheus metrics;
//! - [`process`]: the process metrics Prometheus clients export, from `/proc`;
//! - [`logging`]: env_logger with secrets redacted from every line, text or JSON,
//!   targets cut and refusal lines throttled;
//! - [`allocator`]: glibc's trim and mmap thresholds, set once at startup.

pub mod allocator;
pub mod allowlist;
pub mod build_info;
pub mod cidr;
pub mod claims;
pub mod cli;
pub mod client_auth;
pub mod client_cert;
pub mod coalesce;
pub mod config;
pub mod connections;
pub mod deadline;
pub mod files;
pub mod guard;
pub mod head;
pub mod limits;
pub mod logging;
pub mod lru;
pub mod open_files;
pub mod process;
pub mod proxy;
pub mod reload;
pub mod rundir;
pub mod shutdown;
pub mod startup;
pub mod target;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod watch;

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
