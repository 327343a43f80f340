//! The task registry: one [`TaskEntry`] per task id, the state machine that concludes an attempt
//! ([`TaskEntry::conclude`]), and the gauges derived from the whole registry.
//!
//! Everything here is synchronous and runs under the supervisor's `std::sync::Mutex`; nothing in
//! this module awaits, so no lock can be held across an await.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capture_core::status::{TaskSnapshot, TaskState};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RestartPolicy;
use crate::context::{Clock, Heartbeat};

/// Counter: attempts that returned an error, panicked or missed their heartbeat timeout.
pub(crate) const TASK_FAILURES_TOTAL: &str = "task_failures_total";
/// Counter: restarts (new attempts after the first).
pub(crate) const TASK_RESTARTS_TOTAL: &str = "task_restarts_total";
/// Gauge: tasks per type and state.
pub(crate) const TASKS: &str = "tasks";
/// Gauge: unix seconds of the oldest last heartbeat among running tasks of a type.
pub(crate) const TASK_LAST_HEARTBEAT: &str = "task_last_heartbeat";

/// Whether a task in this state still has a runner that may start attempts.
pub(crate) fn is_live(state: TaskState) -> bool {
    matches!(state, TaskState::Running | TaskState::Restarting)
}

/// All tasks, keyed (and so sorted) by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) tasks: BTreeMap<String, TaskEntry>,
    /// Every task type ever seen, so the `tasks` gauge drops to zero for a type whose tasks all
    /// went away instead of keeping a stale count.
    pub(crate) kinds: BTreeSet<Arc<str>>,
    /// Set once by `shutdown`; `spawn` refuses from then on.
    pub(crate) shutting_down: bool,
    last_generation: u64,
}

impl Registry {
    /// A number unique to one `spawn`, so a runner that outlives its entry (replaced or removed)
    /// never touches the entry that took its id.
    pub(crate) fn next_generation(&mut self) -> u64 {
        self.last_generation += 1;
        self.last_generation
    }

    /// The entry of `id` if it still belongs to the runner of `generation`.
    pub(crate) fn entry_mut(&mut self, id: &str, generation: u64) -> Option<&mut TaskEntry> {
        self.tasks
            .get_mut(id)
            .filter(|entry| entry.generation == generation)
    }

    /// Sets the `tasks{type,state}` and `task_last_heartbeat{type}` gauges from the whole
    /// registry. Called on every state change and every watchdog tick.
    pub(crate) fn publish_gauges(&self, clock: &Clock) {
        // One pass over the tasks; the kinds are a handful, so a small vector beats a map.
        let mut per_kind: Vec<(&Arc<str>, [u32; TaskState::ALL.len()], Option<u64>)> = self
            .kinds
            .iter()
            .map(|kind| (kind, [0; TaskState::ALL.len()], None))
            .collect();
        for entry in self.tasks.values() {
            let Some((_, counts, oldest_beat)) = per_kind
                .iter_mut()
                .find(|(kind, _, _)| **kind == entry.kind)
            else {
                continue;
            };
            counts[state_index(entry.state)] += 1;
            if entry.state == TaskState::Running {
                let beat = entry.heartbeat.last_beat_nanos();
                *oldest_beat = Some(oldest_beat.map_or(beat, |oldest: u64| oldest.min(beat)));
            }
        }
        for (kind, counts, oldest_beat) in per_kind {
            for (state, count) in TaskState::ALL.iter().zip(counts) {
                metrics::gauge!(TASKS, "type" => Arc::clone(kind), "state" => state.as_str())
                    .set(f64::from(count));
            }
            // With no running task of the type there is no staleness: report the present, so
            // `time() - task_last_heartbeat` stays near zero instead of growing.
            let oldest = match oldest_beat {
                Some(nanos) => clock.system_time_of(clock.instant_at(nanos)),
                None => clock.system_time_of(Instant::now()),
            };
            metrics::gauge!(TASK_LAST_HEARTBEAT, "type" => Arc::clone(kind))
                .set(unix_seconds(oldest));
        }
    }
}

fn state_index(state: TaskState) -> usize {
    TaskState::ALL
        .iter()
        .position(|candidate| *candidate == state)
        .unwrap_or(0)
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// One task's bookkeeping.
#[derive(Debug)]
pub(crate) struct TaskEntry {
    pub(crate) generation: u64,
    pub(crate) id: Arc<str>,
    pub(crate) kind: Arc<str>,
    pub(crate) name: String,
    pub(crate) mode: Option<String>,
    pub(crate) policy: RestartPolicy,
    pub(crate) state: TaskState,
    /// The current (or last) attempt's number; 0 before the runner first ran.
    pub(crate) attempt: u32,
    pub(crate) restarts: u32,
    /// Consecutive attempts that ended sooner than `backoff_cap` after they started: the
    /// exponent of the next backoff.
    pub(crate) short_runs: u32,
    pub(crate) started_at: Instant,
    /// The current (or last) attempt's heartbeat cell.
    pub(crate) heartbeat: Heartbeat,
    pub(crate) last_error: Option<String>,
    /// Whether the current attempt's outcome has been applied (by its runner, or by the watchdog
    /// on a heartbeat timeout), so it is applied exactly once.
    pub(crate) concluded: bool,
    /// The backoff before the next attempt, set when the state became `restarting`.
    pub(crate) next_delay: Duration,
    /// The task's token (a child of the supervisor's): cancelled to stop the task.
    pub(crate) cancel: CancellationToken,
    /// The current attempt's kill switch: the watchdog cancels it on a heartbeat timeout and the
    /// runner then drops the attempt's future, even one that ignores its cancellation token.
    pub(crate) killed: CancellationToken,
    /// Cancelled when the runner future has been dropped (returned or aborted), so `stop` and
    /// `shutdown` can wait for it without holding the registry lock.
    pub(crate) finished: CancellationToken,
    /// Aborts the runner: the last resort of `stop` and `shutdown`.
    pub(crate) abort: Option<AbortHandle>,
}

/// How an attempt ended, as far as the restart policy is concerned.
#[derive(Debug)]
pub(crate) enum Outcome {
    Success,
    Failure { message: String, permanent: bool },
    Stopped,
}

/// A state change worth a log line, emitted after the registry lock is released.
#[derive(Debug)]
pub(crate) struct Transition {
    pub(crate) id: Arc<str>,
    pub(crate) kind: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) state: TaskState,
    pub(crate) error: Option<String>,
    pub(crate) restart_in: Option<Duration>,
}

impl Transition {
    pub(crate) fn log(&self) {
        let error = self.error.as_deref().unwrap_or("");
        match (self.state, self.restart_in) {
            (TaskState::Restarting, Some(delay)) if !error.is_empty() => tracing::warn!(
                task_id = %self.id, "type" = %self.kind, attempt = self.attempt, error,
                restart_in = ?delay, "task failed; restarting"
            ),
            (TaskState::Restarting, delay) => tracing::info!(
                task_id = %self.id, "type" = %self.kind, attempt = self.attempt,
                restart_in = ?delay, "task ended; restarting"
            ),
            (TaskState::Failed, _) => tracing::error!(
                task_id = %self.id, "type" = %self.kind, attempt = self.attempt, error,
                "task failed; not restarting"
            ),
            (state, _) => tracing::info!(
                task_id = %self.id, "type" = %self.kind, attempt = self.attempt,
                state = state.as_str(), "task ended"
            ),
        }
    }
}

impl TaskEntry {
    /// Applies the outcome of the current attempt (once): counts failures, records the error and
    /// moves to `restarting` (with the next backoff), `failed`, `completed` or `stopped`.
    pub(crate) fn conclude(&mut self, outcome: Outcome, now: Instant) -> Transition {
        self.concluded = true;
        let ran_for = now.saturating_duration_since(self.started_at);
        self.short_runs = if ran_for >= self.policy.backoff_cap {
            1
        } else {
            self.short_runs.saturating_add(1)
        };
        let attempts_left = self
            .policy
            .max_attempts
            .is_none_or(|max| self.attempt < max);
        let mut error = None;
        self.state = match outcome {
            Outcome::Success if self.policy.restart_on_success && attempts_left => {
                TaskState::Restarting
            }
            Outcome::Success => TaskState::Completed,
            Outcome::Failure { message, permanent } => {
                metrics::counter!(TASK_FAILURES_TOTAL, "type" => Arc::clone(&self.kind))
                    .increment(1);
                error = Some(message.clone());
                self.last_error = Some(message);
                if !permanent && self.policy.restart_on_error && attempts_left {
                    TaskState::Restarting
                } else {
                    TaskState::Failed
                }
            }
            Outcome::Stopped => TaskState::Stopped,
        };
        let restart_in = (self.state == TaskState::Restarting).then(|| {
            self.next_delay = self.policy.jittered_backoff(self.short_runs);
            self.next_delay
        });
        Transition {
            id: Arc::clone(&self.id),
            kind: Arc::clone(&self.kind),
            attempt: self.attempt,
            state: self.state,
            error,
            restart_in,
        }
    }

    /// Marks a live task `stopped` (a no-op for one that has already ended).
    pub(crate) fn mark_stopped(&mut self, error: Option<String>) -> bool {
        if !is_live(self.state) {
            return false;
        }
        self.state = TaskState::Stopped;
        self.concluded = true;
        if error.is_some() {
            self.last_error = error;
        }
        true
    }

    pub(crate) fn snapshot(&self, clock: &Clock) -> TaskSnapshot {
        TaskSnapshot {
            id: self.id.to_string(),
            kind: self.kind.to_string(),
            name: self.name.clone(),
            state: self.state,
            started_at: clock.system_time_of(self.started_at),
            last_heartbeat: clock
                .system_time_of(clock.instant_at(self.heartbeat.last_beat_nanos())),
            restarts: self.restarts,
            last_error: self.last_error.clone(),
            mode: self.mode.clone(),
        }
    }
}
