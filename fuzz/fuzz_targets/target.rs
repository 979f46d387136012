#![no_main]
//! See holepunch_checks::target for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::target(data));
