#![no_main]
//! See holepunch_checks::watched_file for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::watched_file(data));
