//! Fuzz target: see `rowstream::fuzzing::config` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::config(data));
