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
//! - [`limits`]: requests in flight on the socket, and per-client rates;
//! - [`token`]: the workload token;
//! - [`client_auth`]: the bearer tokens clients must present, if any;
//! - [`tls`]: TLS on the listener, certificates reloaded on change;
//! - [`reload`]: the value each of those files makes, swapped when it changes;
//! - [`watch`]: re-reading those files when they change;
//! - [`proxy`]: the Pingora `ProxyHttp` that ties them together;
//! - [`coalesce`]: one upstream request for concurrent identical scrapes;
//! - [`deadline`]: the client write deadline, on the client's stream;
//! - [`guard`]: TLS, the request-header deadline and size limit, and the
//!   client write timeout, in front of it;
//! - [`shutdown`]: in-flight counting and the early exit after SIGTERM;
//! - [`startup`]: loading and checking all of it, and assembling the server;
//! - [`telemetry`]: the proxy's own Prometheus metrics;
//! - [`logging`]: env_logger with secrets redacted from every line, text or JSON;
//! - [`allocator`]: glibc's trim and mmap thresholds, set once at startup.

pub mod allocator;
pub mod allowlist;
pub mod build_info;
pub mod cidr;
pub mod cli;
pub mod client_auth;
pub mod coalesce;
pub mod config;
pub mod deadline;
pub mod guard;
pub mod head;
pub mod limits;
pub mod logging;
pub mod proxy;
pub mod reload;
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
