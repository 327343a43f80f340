//! Snapshots of the agent's parts, as the health API reports them.
//!
//! Each producer owns its snapshot type's values: the supervisor makes [`TaskSnapshot`]s, each
//! sink a [`SinkSnapshot`], the Docker source a [`DockerSnapshot`] and the list of
//! [`UnreadableContainer`]s. They serialise to the `/health` shape of the contract (timestamps as
//! RFC 3339 strings).

use std::time::SystemTime;

use serde::Serialize;

/// The life-cycle state of a supervised task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// The task's body is running.
    Running,
    /// The task failed (error, panic or heartbeat timeout) and waits for its restart backoff.
    Restarting,
    /// The task failed and its restart policy gave up.
    Failed,
    /// The task was stopped on request (cancelled).
    Stopped,
    /// The task returned `Ok` and its policy does not restart it.
    Completed,
}

impl TaskState {
    /// Every state, for metrics that report a gauge per state.
    pub const ALL: [TaskState; 5] = [
        TaskState::Running,
        TaskState::Restarting,
        TaskState::Failed,
        TaskState::Stopped,
        TaskState::Completed,
    ];

    /// The contract's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Restarting => "restarting",
            TaskState::Failed => "failed",
            TaskState::Stopped => "stopped",
            TaskState::Completed => "completed",
        }
    }
}

/// One supervised task as `/health` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSnapshot {
    /// Unique id, for container tasks `container_<full id>`.
    pub id: String,
    /// The task's type (`container`, `events`, ...), a bounded set used as a metric label.
    #[serde(rename = "type")]
    pub kind: String,
    /// A human name, for container tasks the container's name.
    pub name: String,
    /// The current state.
    pub state: TaskState,
    /// When the current (or last) attempt started.
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub started_at: SystemTime,
    /// The last heartbeat (or the start of the attempt, before the first heartbeat).
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub last_heartbeat: SystemTime,
    /// How many times the task has been restarted.
    pub restarts: u32,
    /// The last error, panic message or timeout, if any.
    pub last_error: Option<String>,
    /// How the task does its work, when it has several ways (a container task: `api` or
    /// `files`); not shown when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A sink's delivery health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkState {
    /// The last delivery succeeded.
    Ok,
    /// Deliveries fail and are being retried (events wait in the buffer).
    Retrying,
    /// Deliveries have failed for longer than the sink's failure window, or permanently.
    Failing,
}

/// One sink as `/health` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkSnapshot {
    /// The sink's configured name (unique).
    pub name: String,
    /// The sink's type: `file`, `loki`, `stdout`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Delivery health.
    pub state: SinkState,
    /// The last successful delivery.
    #[serde(serialize_with = "crate::time::serialize_rfc3339_opt")]
    pub last_success: Option<SystemTime>,
    /// The last delivery error, if the sink is not `ok`.
    pub last_error: Option<String>,
    /// Since when deliveries have been failing without a success, if they are.
    #[serde(skip)]
    pub failing_since: Option<SystemTime>,
    /// Events accepted by the pipeline and not yet delivered by this sink (queue and disk buffer).
    pub buffered_events: u64,
    /// Events this sink dropped (by policy or as undeliverable), all counted in metrics too.
    pub dropped_events: u64,
}

/// The Docker connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerState {
    /// Not yet connected (start-up).
    Connecting,
    /// The daemon answers.
    Connected,
    /// The daemon does not answer; the source retries.
    Disconnected,
}

/// The Docker connection as `/health` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DockerSnapshot {
    /// Connection state.
    pub state: DockerState,
    /// The negotiated API version, once connected.
    pub api_version: Option<String>,
    /// Since when the state has been what it is.
    #[serde(skip)]
    pub since: SystemTime,
    /// The last connection error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Default for DockerSnapshot {
    fn default() -> Self {
        DockerSnapshot {
            state: DockerState::Connecting,
            api_version: None,
            since: SystemTime::now(),
            last_error: None,
        }
    }
}

/// Why a container's logs cannot be read by design (its configuration, not a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnreadableReason {
    /// The container runs with `--log-driver none`: Docker keeps no log at all.
    LogDriverNone,
    /// The container's log driver sends lines elsewhere and cannot read them back (`syslog`,
    /// `gelf`, `fluentd`, `awslogs`, `splunk`, ...), and Docker's dual logging (the local cache
    /// that lets `docker logs` work for such drivers) is off (`cache-disabled=true`).
    DualLoggingDisabled,
}

impl UnreadableReason {
    /// Every reason, for metrics that report a gauge per reason.
    pub const ALL: [UnreadableReason; 2] = [
        UnreadableReason::LogDriverNone,
        UnreadableReason::DualLoggingDisabled,
    ];

    /// The name `/health` and the `reason` metric label use.
    pub fn as_str(self) -> &'static str {
        match self {
            UnreadableReason::LogDriverNone => "log_driver_none",
            UnreadableReason::DualLoggingDisabled => "dual_logging_disabled",
        }
    }
}

/// A container the agent would capture but whose logs cannot be read by design, as `/health`
/// lists it under `unreadable`. It has no task and is not a failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableContainer {
    /// The full container id (64 hex digits; not a task id).
    pub id: String,
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    /// The container's log driver as Docker reports it (`none`, `syslog`, ...).
    pub driver: String,
    /// Why its logs cannot be read.
    pub reason: UnreadableReason,
}
