//! Supervises named async tasks so that none can stop silently.
//!
//! Each task is a body (`Fn(TaskContext) -> Future<Output = Result<(), TaskError>>`) that the
//! [`Supervisor`] runs in attempts. An attempt that returns an error, panics, or stops beating its
//! [`Heartbeat`] for longer than the task timeout is a failure: it is counted
//! (`task_failures_total{type}`), its future is dropped, and its [`RestartPolicy`] decides whether
//! the task is restarted after an exponential backoff. Every state change is visible through
//! [`Supervisor::snapshot`] (the `/health` task list), [`Supervisor::subscribe`] and metrics.
//!
//! Layout:
//! - `supervisor`: [`Supervisor`], the per-task runner loop, the heartbeat watchdog, `stop` and
//!   `shutdown`.
//! - `registry`: the task table (behind a `std::sync::Mutex` never held across an await), the
//!   state machine that concludes an attempt, and the `tasks` / `task_last_heartbeat` gauges.
//! - `context`: [`TaskContext`] and [`Heartbeat`] (a beat is one atomic store; the watchdog reads
//!   it, so beating wakes nothing).
//! - `config`: [`SupervisorConfig`], [`RestartPolicy`], [`TaskSpec`].
//! - `error`: [`Error`] (the supervisor's API) and [`TaskError`] (what bodies return).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use task_supervisor::{Supervisor, SupervisorConfig, TaskError, TaskSpec};
//! use capture_core::status::TaskState;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let supervisor = Supervisor::new(SupervisorConfig::default());
//! supervisor
//!     .spawn(TaskSpec::new("ticker", "example", "ticker"), |ctx| async move {
//!         let mut ticks = tokio::time::interval(ctx.heartbeat_interval());
//!         loop {
//!             tokio::select! {
//!                 () = ctx.cancelled() => return Ok::<(), TaskError>(()),
//!                 _ = ticks.tick() => ctx.heartbeat(),
//!             }
//!         }
//!     })
//!     .expect("a new id is accepted");
//!
//! let tasks = supervisor.snapshot();
//! assert_eq!(tasks.len(), 1);
//! assert_eq!(tasks[0].state, TaskState::Running);
//!
//! let report = supervisor.shutdown(Duration::from_secs(5)).await;
//! assert_eq!(report.stopped, ["ticker"]);
//! assert!(report.aborted.is_empty());
//! assert_eq!(supervisor.task("ticker").unwrap().state, TaskState::Stopped);
//! # }
//! ```

mod config;
mod context;
mod error;
mod registry;
mod supervisor;

pub use config::{RestartPolicy, SupervisorConfig, TaskSpec};
pub use context::{Heartbeat, TaskContext};
pub use error::{Error, Result, TaskError};
pub use supervisor::{ShutdownReport, Supervisor};

#[cfg(test)]
mod tests;
