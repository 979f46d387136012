#![no_main]
//! See holepunch_checks::decide for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::decide(data));
