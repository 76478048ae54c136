//! Fuzz target: see `rowstream::fuzzing::gtid_set` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::gtid_set(data));
