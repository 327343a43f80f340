//! Unit tests of the OTLP sink.
