//! The log-capturer binary.

fn main() {}
