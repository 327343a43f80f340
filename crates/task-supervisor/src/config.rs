//! What the caller configures: [`SupervisorConfig`], [`RestartPolicy`] and [`TaskSpec`].

use std::time::Duration;

use capture_core::Backoff;
use tokio::runtime::Handle;

/// Supervisor-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorConfig {
    /// How often task bodies are expected to beat (handed to them through
    /// [`TaskContext::heartbeat_interval`](crate::TaskContext::heartbeat_interval)).
    pub heartbeat_interval: Duration,
    /// A running attempt whose last heartbeat is older than this is declared dead (within at most
    /// one watchdog tick, one second or less), its future dropped, and the restart policy applied.
    pub task_timeout: Duration,
    /// How long a cancelled body may take to return on its own before its future is dropped.
    pub stop_timeout: Duration,
    /// The restart policy of tasks whose [`TaskSpec`] names none.
    pub default_restart: RestartPolicy,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            heartbeat_interval: Duration::from_secs(30),
            task_timeout: Duration::from_secs(5 * 60),
            stop_timeout: Duration::from_secs(5),
            default_restart: RestartPolicy::default(),
        }
    }
}

/// When and how fast a task is restarted.
///
/// The delay before restart number `n` (1-based, counted over consecutive short-lived attempts)
/// is `backoff_base * 2^(n-1)`, capped at `backoff_cap`, then jittered by the agent's one rule
/// ([`capture_core::Backoff`]): uniform in `[(1 - jitter) * d, d]`, so `backoff_cap` is the
/// longest wait. An attempt that ran for at
/// least `backoff_cap` before ending resets `n` to 1: a task that worked for a while and then
/// failed is retried quickly.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartPolicy {
    /// Restart after an error, a panic or a heartbeat timeout (not after a permanent error).
    pub restart_on_error: bool,
    /// Restart after the body returned `Ok` (otherwise the task ends `completed`).
    pub restart_on_success: bool,
    /// The first restart delay.
    pub backoff_base: Duration,
    /// The longest restart delay.
    pub backoff_cap: Duration,
    /// Jitter as a fraction of the delay, in `[0, 1]`; `0.1` means up to 10 % shorter.
    pub jitter: f64,
    /// The most attempts (the first run included) before the task ends `failed`; `None` means no
    /// limit.
    pub max_attempts: Option<u32>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            restart_on_error: true,
            restart_on_success: false,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            jitter: 0.1,
            max_attempts: None,
        }
    }
}

impl RestartPolicy {
    /// Never restart: the first attempt's outcome is final.
    pub fn never() -> RestartPolicy {
        RestartPolicy {
            restart_on_error: false,
            restart_on_success: false,
            ..RestartPolicy::default()
        }
    }

    /// The delay before restart number `restart` (1-based), before jitter.
    pub fn backoff(&self, restart: u32) -> Duration {
        self.schedule().delay(restart)
    }

    /// The jittered delay before restart number `restart` (1-based).
    pub fn jittered_backoff(&self, restart: u32) -> Duration {
        self.schedule().jittered(restart)
    }

    fn schedule(&self) -> Backoff {
        Backoff::new(self.backoff_base, self.backoff_cap).with_jitter(self.jitter)
    }
}

/// What to run: the task's identity, its restart policy and where it runs.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) restart: Option<RestartPolicy>,
    pub(crate) runtime: Option<Handle>,
    pub(crate) mode: Option<String>,
}

impl TaskSpec {
    /// A task with a unique `id`, a `kind` (its type: a bounded set, used as a metric label) and
    /// a human `name`.
    pub fn new(
        id: impl Into<String>,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> TaskSpec {
        TaskSpec {
            id: id.into(),
            kind: kind.into(),
            name: name.into(),
            restart: None,
            runtime: None,
            mode: None,
        }
    }

    /// How the task does its work (shown as `mode` in its snapshot), for a kind of task that has
    /// several ways.
    pub fn with_mode(mut self, mode: impl Into<String>) -> TaskSpec {
        self.mode = Some(mode.into());
        self
    }

    /// Uses this restart policy instead of the supervisor's default.
    pub fn with_restart(mut self, policy: RestartPolicy) -> TaskSpec {
        self.restart = Some(policy);
        self
    }

    /// Runs the task on this runtime (which must have its time driver enabled) instead of the
    /// runtime the supervisor was created on.
    pub fn on_runtime(mut self, handle: Handle) -> TaskSpec {
        self.runtime = Some(handle);
        self
    }

    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}
