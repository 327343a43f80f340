//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, and multiline events.

mod config_errors;
mod health;
mod multiline;
mod restarts;
