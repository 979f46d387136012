//! The pure decision core: what a request may do, from its head alone. No
//! I/O; mutation testing covers it.
//! - [`target`]: the request-target rule, one function;
//! - [`allowlist`]: endpoint groups and the path decision;
//! - [`head`]: the whole request decision, from the request head;
//! - [`cidr`]: address ranges for `HOLEPUNCH_ALLOW_FROM`.

pub mod allowlist;
pub mod cidr;
pub mod head;
pub mod target;
