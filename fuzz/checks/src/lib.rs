//! What the fuzz targets check, one function per target, and the models
//! they check against. The fuzz targets (`fuzz/fuzz_targets/`, nightly,
//! cargo-fuzz) call these on every input they make; the proxy's own tests
//! call them on every committed input (`tests/fuzz_corpus.rs`, stable), so
//! a regression fails `cargo test` with no fuzzer.
//!
//! Each function panics, naming the input and what broke, when an
//! invariant does not hold: "no panic" is only the first of them.
//!
//! Test-only: nothing on the proxy's request path links this crate.

pub mod config;
pub mod decide;
pub mod go;
pub mod guard;
pub mod jwt;
pub mod nomad;
pub mod pingora;
pub mod query;
pub mod target;
pub mod tokens;

pub use config::config_values;
pub use decide::decide_case as decide;
pub use guard::guard_header;
pub use jwt::jwt_exp;
pub use query::query;
pub use target::request_target;
pub use tokens::{client_tokens, watched_file};

/// A target's check: panics when an input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every target, by name (the directory names under `fuzz/corpus/` and
/// `fuzz/regressions/`), with its check.
pub const TARGETS: [(&str, Check); 8] = [
    ("guard_header", guard_header),
    ("request_target", request_target),
    ("decide", decide),
    ("query", query),
    ("config_values", config_values),
    ("client_tokens", client_tokens),
    ("watched_file", watched_file),
    ("jwt_exp", jwt_exp),
];
