#![no_main]
//! See holepunch_checks::config_values for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::config_values(data));
