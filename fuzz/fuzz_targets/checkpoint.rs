//! Fuzz target: see `rowstream::fuzzing::checkpoint` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::checkpoint(data));
