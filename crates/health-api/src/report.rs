//! The `/health` body and the rules that turn snapshots into an overall status.

use std::time::{Duration, SystemTime};

use capture_core::status::{
    DockerSnapshot, DockerState, SinkSnapshot, SinkState, TaskSnapshot, TaskState,
    UnreadableContainer,
};
use serde::Serialize;

use crate::HealthConfig;

/// The overall status `/health` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Something is being retried or restarted, or Docker has been unreachable for less than the
    /// grace period; logs still flow or will once the retry succeeds. HTTP 200.
    Degraded,
    /// Docker has been unreachable for longer than the grace period, or a sink has been failing
    /// for longer than its window. HTTP 503.
    Unhealthy,
}

impl HealthStatus {
    /// The HTTP status `/health` answers with: 503 only when unhealthy.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            HealthStatus::Healthy | HealthStatus::Degraded => http::StatusCode::OK,
            HealthStatus::Unhealthy => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The `/health` body, in the contract's field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// The overall status.
    pub status: HealthStatus,
    /// The binary's version.
    pub version: &'static str,
    /// When the report was made (RFC 3339).
    #[serde(serialize_with = "capture_core::time::serialize_rfc3339")]
    pub timestamp: SystemTime,
    /// Seconds since the health API was created (about the process's uptime).
    pub uptime_seconds: f64,
    /// Every supervised task.
    pub tasks: Vec<TaskSnapshot>,
    /// Every sink.
    pub sinks: Vec<SinkSnapshot>,
    /// The Docker connection.
    pub docker: DockerSnapshot,
    /// Containers whose logs cannot be read by design (log driver `none`, ...): not tasks, and
    /// they never change the status.
    pub unreadable: Vec<UnreadableContainer>,
}

/// Applies the status rules to one set of snapshots as seen at `now`.
///
/// Times in the future (a clock step backwards) count as "just now", so a skewed clock can delay
/// an `unhealthy` verdict but never invent one.
pub(crate) fn evaluate(
    config: &HealthConfig,
    tasks: &[TaskSnapshot],
    sinks: &[SinkSnapshot],
    docker: &DockerSnapshot,
    now: SystemTime,
) -> HealthStatus {
    let elapsed_since = |since: SystemTime| now.duration_since(since).unwrap_or(Duration::ZERO);

    let docker_unreachable = matches!(
        docker.state,
        DockerState::Connecting | DockerState::Disconnected
    );
    if docker_unreachable && elapsed_since(docker.since) > config.docker_unreachable_grace {
        return HealthStatus::Unhealthy;
    }
    let sink_failing = sinks.iter().any(|sink| {
        sink.state == SinkState::Failing
            || sink
                .failing_since
                .is_some_and(|since| elapsed_since(since) > config.sink_failure_window)
    });
    if sink_failing {
        return HealthStatus::Unhealthy;
    }

    let task_troubled = tasks
        .iter()
        .any(|task| matches!(task.state, TaskState::Restarting | TaskState::Failed));
    let sink_retrying = sinks.iter().any(|sink| sink.state == SinkState::Retrying);
    if docker_unreachable || task_troubled || sink_retrying {
        HealthStatus::Degraded
    } else {
        HealthStatus::Healthy
    }
}
