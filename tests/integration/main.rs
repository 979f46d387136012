//! The integration tests, one binary: each module starts the real
//! `nomad-holepunch` (through `support::Harness`) in front of the stand-in
//! Task API socket, on loopback, in a temp dir.
//!
//! One binary rather than one per file: the shared code in `support/` is an
//! ordinary module, each helper is compiled once, and the compiler sees every
//! use of it, so a helper no test uses is reported (no `allow(dead_code)`).
//! Tests that need more than Rust (Debian's Prometheus, the Python venv) are
//! `#[ignore]`d with the reason; `make test` runs them with
//! `--include-ignored`.

mod support;

mod client_certs;
mod clients;
mod coalescing;
mod coalescing_keys;
mod connections;
mod expiry;
mod fairness;
mod hardening;
mod lifecycle;
mod private_dir;
mod proxy;
mod refusal_logs;
mod reload;
mod retries;
mod revocation;
mod secrets;
mod security;
mod targets;
mod telemetry;
mod timeouts;
mod tls_tokens;
mod upgrade;
mod watched_files;
