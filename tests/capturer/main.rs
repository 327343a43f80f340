//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, secrets never printed, Docker over TLS,
//! reloads, container filters and one agent per data dir.

mod config_errors;
mod data_dir_lock;
mod docker_tls;
mod filters;
mod health;
mod otlp;
mod reload;
mod restarts;
mod secrets;
mod unreadable;
