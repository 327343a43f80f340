//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, and secrets never printed.

mod config_errors;
mod health;
mod otlp;
mod restarts;
mod secrets;
mod unreadable;
