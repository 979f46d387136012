#![no_main]
//! See holepunch_checks::jwt_exp for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| holepunch_checks::jwt_exp(data));
