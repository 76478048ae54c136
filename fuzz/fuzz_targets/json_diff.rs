//! Fuzz target: see `rowstream::fuzzing::json_diff` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::json_diff(data));
