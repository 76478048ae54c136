//! Unit tests of the pipeline pieces with fake sinks and a fake source.
