//! The real `log-capturer` binary against the real Docker daemon: health, metrics, silence,
//! graceful and brutal restarts, configuration errors, secrets never printed, and Docker over TLS.

mod config_errors;
mod docker_tls;
mod health;
mod otlp;
mod restarts;
mod secrets;
mod unreadable;
