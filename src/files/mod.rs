//! The files the proxy is pointed at, read at startup and reloaded when they
//! change:
//! - [`read`]: reading them: regular files only, capped, never waiting;
//! - [`reload`]: the value each of those files makes, swapped when it changes;
//! - [`watch`]: re-reading those files when they change, and on SIGHUP;
//! - [`token`]: the workload token;
//! - [`claims`]: the `exp` and `iat` of a JWT, read as Nomad reads them (pure);
//! - [`client_auth`]: the bearer tokens clients must present, if any;
//! - [`client_cert`]: the CAs client certificates must chain to, if any;
//! - [`tls`]: TLS on the listener, certificates reloaded on change.

pub mod claims;
pub mod client_auth;
pub mod client_cert;
pub mod pem;
pub mod read;
pub mod reload;
pub mod tls;
pub mod token;
pub mod watch;
