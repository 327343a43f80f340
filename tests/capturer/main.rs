//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors and reloads.

mod config_errors;
mod health;
mod reload;
mod restarts;
mod unreadable;
