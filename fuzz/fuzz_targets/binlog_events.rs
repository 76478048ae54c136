//! Fuzz target: see `rowstream::fuzzing::binlog_events` for the input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rowstream::fuzzing::binlog_events(data));
