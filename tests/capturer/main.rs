//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, and configuration errors.

mod config_errors;
mod health;
mod restarts;
mod unreadable;
