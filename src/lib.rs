//! nomad-holepunch: expose an allowlisted part of the Nomad Task API socket
//! (`${NOMAD_SECRETS_DIR}/api.sock`) on TCP, authenticated with the task's
//! Workload Identity token.
//!
//! The modules, from the request's point of view:
//! - [`config`]: the environment variables, parsed strictly (pure);
//! - [`target`]: the request-target rule, one function (pure);
//! - [`allowlist`]: endpoint groups and the per-request decision (pure);
//! - [`token`]: the workload token and its file watcher;
//! - [`proxy`]: the Pingora `ProxyHttp` that ties them together;
//! - [`shutdown`]: in-flight counting and the early exit after SIGTERM;
//! - [`logging`]: env_logger with secrets redacted from every line.

pub mod allowlist;
pub mod config;
pub mod logging;
pub mod proxy;
pub mod shutdown;
pub mod target;
pub mod token;
