#![no_main]
//! See holepunch_checks::client_tokens for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::client_tokens(data));
