//! The `/health`, `/live`, `/ready` and `/metrics` HTTP endpoints of log-capturer.
//!
//! This is the only crate that imports hyper. Its layout:
//!
//! - [`HealthApi`] (`api.rs`): the routes. [`HealthApi::handle`] turns a method and a path into a
//!   complete response synchronously, with no socket, from a [`StatusSource`] (tasks, sinks,
//!   Docker), a [`Readiness`] latch and a Prometheus handle. No request body is ever read.
//! - [`HealthReport`], [`HealthStatus`] (`report.rs`): the `/health` body and the rules that
//!   make it `healthy`, `degraded` (200) or `unhealthy` (503).
//! - `process_metrics.rs`: `process_open_fds`, `process_resident_memory_bytes` and
//!   `tokio_alive_tasks`, set through the `metrics` facade on each `/metrics` scrape.
//! - [`BoundHealthApi`] (`server.rs`): HTTP/1.1 over hyper with bounded request heads, a header
//!   read timeout that also closes idle connections, and a graceful, bounded shutdown on a
//!   [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - `admission.rs`, `connection.rs`: every connection reads its first request head without a
//!   slot, then is admitted by path (slots reserved for `/live` and `/ready`, so a flood of other
//!   clients cannot starve the probes); an admitted connection is served under a write timeout
//!   and a cap on the requests it may make.
//! - [`HealthConfig`] (`config.rs`), [`Error`] (`error.rs`); [`HealthReloader`] (`reload.rs`)
//!   changes the status thresholds of a running API (a configuration reload).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use capture_core::status::{DockerSnapshot, DockerState, SinkSnapshot, TaskSnapshot};
//! use health_api::{HealthApi, HealthConfig, HealthStatus, Readiness, StatusSource};
//! use http::{Method, StatusCode};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use tokio_util::sync::CancellationToken;
//!
//! struct Idle;
//! impl StatusSource for Idle {
//!     fn tasks(&self) -> Vec<TaskSnapshot> { Vec::new() }
//!     fn sinks(&self) -> Vec<SinkSnapshot> { Vec::new() }
//!     fn docker(&self) -> DockerSnapshot {
//!         DockerSnapshot { state: DockerState::Connected, ..DockerSnapshot::default() }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), health_api::Error> {
//! let prometheus = PrometheusBuilder::new().build_recorder().handle();
//! let readiness = Readiness::default();
//! let config = HealthConfig { listen: "127.0.0.1:0".parse().unwrap(), ..HealthConfig::default() };
//! let api = HealthApi::new(config, Arc::new(Idle), readiness.clone(), prometheus)
//!     .with_version("1.2.3");
//!
//! // Socket-free: the routes answer directly.
//! assert_eq!(api.report().status, HealthStatus::Healthy);
//! assert_eq!(api.handle(&Method::GET, "/ready").status(), StatusCode::SERVICE_UNAVAILABLE);
//! readiness.set_ready(true);
//! assert_eq!(api.handle(&Method::GET, "/ready").status(), StatusCode::OK);
//!
//! // Served: bind first (address errors surface here), then serve until the token is cancelled.
//! let bound = api.bind().await?;
//! assert_ne!(bound.local_addr().port(), 0);
//! let shutdown = CancellationToken::new();
//! shutdown.cancel();
//! bound.serve(shutdown).await?;
//! assert!(!readiness.is_ready(), "shutdown marks the agent not ready");
//! # Ok(())
//! # }
//! ```

mod admission;
mod api;
mod config;
mod connection;
mod error;
mod process_metrics;
mod readiness;
mod reload;
mod report;
mod server;

pub use api::{HealthApi, StatusSource};
pub use config::HealthConfig;
pub use error::{Error, Result};
pub use readiness::Readiness;
pub use reload::HealthReloader;
pub use report::{HealthReport, HealthStatus};
pub use server::BoundHealthApi;

#[cfg(test)]
mod tests;
