//! placeholder (json encoding)
