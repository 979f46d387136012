#![no_main]
//! See holepunch_checks::guard_header for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::guard_header(data));
