//! The sinks: one module each, all behind the [`Sink`](crate::Sink) trait. `http/` is what the
//! HTTP sinks share.

pub(crate) mod file;
pub(crate) mod http;
pub(crate) mod loki;
pub(crate) mod mark_retention;
pub(crate) mod otlp;
pub(crate) mod resume;
pub(crate) mod stdout;
pub(crate) mod template;
