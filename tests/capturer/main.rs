//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, secrets never printed, Docker over TLS,
//! reloads, container filters, one agent per data dir, multiline events and `--rm` bursts read
//! from files.

mod config_errors;
mod data_dir_lock;
mod docker_tls;
mod filters;
mod health;
mod multiline;
mod otlp;
mod reload;
mod removal;
mod restarts;
mod secrets;
mod unreadable;
