//! The code tied to Pingora's internals, one folder to diff on a Pingora
//! upgrade:
//! - [`guard`]: TLS, the request-header deadline and size limit, the client
//!   write and idle timeouts, `HOLEPUNCH_ALLOW_FROM` for connections, in
//!   front of the proxy and of the telemetry listener;
//! - [`deadline`]: the client write deadline, on the client's stream;
//! - [`connections`]: `HOLEPUNCH_MAX_CONNECTIONS`, one count for both
//!   listeners, and each client's share of it.

pub mod connections;
pub mod deadline;
pub mod guard;
