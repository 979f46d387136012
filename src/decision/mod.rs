//! The pure decision core: what a request may do, from its head alone. No
//! I/O; mutation testing covers it.
//! - [`target`]: the request-target rule, one function, and the crate's one
//!   percent decoding;
//! - [`allowlist`]: endpoint groups and the path decision;
//! - [`head`]: the whole request decision, from the request head;
//! - [`hosts`]: `HOLEPUNCH_ALLOWED_HOSTS`, the Host names served;
//! - [`query`]: the query as Nomad reads it (Go's `url.ParseQuery`);
//! - [`cidr`]: address ranges for `HOLEPUNCH_ALLOW_FROM`.

pub mod allowlist;
pub mod cidr;
pub mod head;
pub mod hosts;
pub mod query;
pub mod target;

#[cfg(test)]
mod path_tests;
