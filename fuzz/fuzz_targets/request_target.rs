#![no_main]
//! See holepunch_checks::request_target for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::request_target(data));
