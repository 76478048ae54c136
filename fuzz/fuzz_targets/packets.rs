//! Fuzz target: see `rowstream::fuzzing::packets` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::packets(data));
