//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors and container filters.

mod config_errors;
mod filters;
mod health;
mod restarts;
