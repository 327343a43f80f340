//! The sinks: one module each, all behind the [`Sink`](crate::Sink) trait.

pub(crate) mod file;
pub(crate) mod loki;
pub(crate) mod mark_retention;
pub(crate) mod stdout;
