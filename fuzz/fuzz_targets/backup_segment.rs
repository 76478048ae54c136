//! Fuzz target: see `rowstream::fuzzing::backup_segment` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::backup_segment(data));
