//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, container filters and one agent per data dir.

mod config_errors;
mod data_dir_lock;
mod filters;
mod health;
mod restarts;
