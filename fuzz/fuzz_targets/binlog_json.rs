//! Fuzz target: see `rowstream::fuzzing::binlog_json` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::binlog_json(data));
