//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, secrets never printed, Docker over TLS and
//! reloads.

mod config_errors;
mod docker_tls;
mod health;
mod otlp;
mod reload;
mod restarts;
mod secrets;
mod unreadable;
