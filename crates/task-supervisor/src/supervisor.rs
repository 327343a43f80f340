//! The [`Supervisor`]: spawning, the per-task runner loop, the heartbeat watchdog, `stop` and
//! `shutdown`.
//!
//! Who changes a task's state: its runner (attempt start, the outcome of an attempt that returned
//! or panicked, stop during backoff), the watchdog (a heartbeat timeout, concluded at once even if
//! the task's own thread is stuck), and `stop`/`shutdown`/the runner's drop guard (`stopped`).
//! Each holds the registry's `std::sync::Mutex` only for a synchronous update, never across an
//! await, and never while dropping or calling user code.
//!
//! Files: this one (the API, the registry updates), `supervisor/runner.rs` (a task's runner
//! loop and one attempt), `supervisor/watchdog.rs` (the heartbeat checks).

mod runner;
mod watchdog;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capture_core::status::{TaskSnapshot, TaskState};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{SupervisorConfig, TaskSpec};
use crate::context::{Clock, Heartbeat, TaskContext};
use crate::error::{Error, Result, TaskError};
use crate::registry::{
    Outcome, Registry, TASK_FAILURES_TOTAL, TASK_RESTARTS_TOTAL, TaskEntry, is_live,
};

/// How much longer than `stop_timeout` `stop` waits before aborting the runner: the runner itself
/// drops a body that ignores cancellation after `stop_timeout`, and that path should win.
const ABORT_MARGIN: Duration = Duration::from_millis(100);

/// Supervises named tasks: runs each body, watches its heartbeat, restarts it by its policy and
/// stops it on request. Cheap to clone (all clones share one supervisor).
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

/// What `shutdown` did with the tasks that were live when it began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks whose runner ended within the grace period (sorted by id). A body that ignored
    /// cancellation is dropped after `stop_timeout` and, if that is within the grace period, is
    /// listed here.
    pub stopped: Vec<String>,
    /// Tasks still running at the end of the grace period, which were aborted (sorted by id).
    pub aborted: Vec<String>,
}

struct Inner {
    config: SupervisorConfig,
    clock: Clock,
    /// The runtime `new` was called on: where tasks run unless their spec names another.
    runtime: Handle,
    registry: Mutex<Registry>,
    /// Owns every runner and the watchdog, so `shutdown` can wait for all of them.
    tracker: TaskTracker,
    /// The parent of every task's token and the watchdog's shutdown signal.
    root: CancellationToken,
    changes_tx: watch::Sender<u64>,
}

/// What a runner knows about its task without taking the lock.
#[derive(Debug, Clone)]
struct TaskKey {
    id: Arc<str>,
    generation: u64,
    cancel: CancellationToken,
}

/// What the runner needs to run one attempt.
#[derive(Debug)]
struct Attempt {
    number: u32,
    heartbeat: Heartbeat,
    killed: CancellationToken,
}

/// What the runner does after an attempt.
#[derive(Debug)]
enum Next {
    Exit,
    RestartAfter(Duration),
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("config", &self.inner.config)
            .field("tasks", &self.inner.lock().tasks.len())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Creates a supervisor and starts its watchdog.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the watchdog is spawned on the current one).
    pub fn new(config: SupervisorConfig) -> Supervisor {
        let runtime = Handle::current();
        let (changes_tx, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            clock: Clock::now(),
            runtime,
            registry: Mutex::new(Registry::default()),
            tracker: TaskTracker::new(),
            root: CancellationToken::new(),
            changes_tx,
            config,
        });
        let period = watchdog::period(inner.config.task_timeout);
        // The watchdog holds a weak reference so that a supervisor dropped without `shutdown`
        // (and without tasks) does not leave it ticking forever.
        let watchdog = watchdog::run(Arc::downgrade(&inner), inner.root.clone(), period);
        inner.tracker.spawn_on(watchdog, &inner.runtime);
        Supervisor { inner }
    }

    /// The configuration this supervisor runs with.
    pub fn config(&self) -> &SupervisorConfig {
        &self.inner.config
    }

    /// Starts a task: `body` is called once per attempt with a fresh [`TaskContext`].
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] if a task with this id is running or restarting (one that has
    /// ended is replaced); [`Error::ShuttingDown`] once [`Supervisor::shutdown`] has begun.
    pub fn spawn<F, Fut>(&self, spec: TaskSpec, body: F) -> Result<()>
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let inner = &self.inner;
        let runtime = spec.runtime.clone();
        let (key, finished) = inner.register(spec)?;
        inner.bump();

        // Spawned outside the lock: if the target runtime is gone, the runner is dropped right
        // here and its guard takes the lock to mark the task stopped.
        let guard = runner::RunnerGuard {
            inner: Arc::clone(inner),
            key: key.clone(),
            finished,
        };
        let runtime = runtime.unwrap_or_else(|| inner.runtime.clone());
        let join = inner
            .tracker
            .spawn_on(runner::run_task(guard, body), &runtime);
        if let Some(entry) = inner.lock().entry_mut(&key.id, key.generation) {
            entry.abort = Some(join.abort_handle());
        }
        Ok(())
    }

    /// Stops a task: cancels it, waits until its body future has been dropped (a body that
    /// ignores cancellation is dropped after `stop_timeout`; a runner still alive shortly after
    /// that is aborted), marks it `stopped` (unless it had already ended) and removes it.
    ///
    /// Returns its final snapshot, or `None` if there is no such task.
    pub async fn stop(&self, id: &str) -> Option<TaskSnapshot> {
        let inner = &self.inner;
        let (generation, cancel, finished, abort) = {
            let registry = inner.lock();
            let entry = registry.tasks.get(id)?;
            (
                entry.generation,
                entry.cancel.clone(),
                entry.finished.clone(),
                entry.abort.clone(),
            )
        };
        cancel.cancel();
        let stop_timeout = inner.config.stop_timeout;
        if tokio::time::timeout(stop_timeout + ABORT_MARGIN, finished.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(task_id = id, "task did not stop in time; aborting it");
            if let Some(abort) = abort {
                abort.abort();
            }
            if tokio::time::timeout(stop_timeout, finished.cancelled())
                .await
                .is_err()
            {
                tracing::error!(
                    task_id = id,
                    "aborted task did not end; its thread may be blocked"
                );
            }
        }
        let snapshot = {
            let mut registry = inner.lock();
            let mut entry = registry
                .tasks
                .remove(id)
                .filter(|entry| entry.generation == generation);
            let snapshot = entry.as_mut().map(|entry| {
                entry.mark_stopped(None);
                entry.snapshot(&inner.clock)
            });
            registry.publish_gauges(&inner.clock);
            snapshot
        };
        inner.bump();
        snapshot
    }

    /// Forgets a task that has ended (`failed`, `stopped` or `completed`). Returns `false` if the
    /// task is live or unknown.
    pub fn remove(&self, id: &str) -> bool {
        let removed = {
            let mut registry = self.inner.lock();
            match registry.tasks.get(id) {
                Some(entry) if !is_live(entry.state) => {
                    registry.tasks.remove(id);
                    registry.publish_gauges(&self.inner.clock);
                    true
                }
                _ => false,
            }
        };
        if removed {
            self.inner.bump();
        }
        removed
    }

    /// Every task, sorted by id.
    pub fn snapshot(&self) -> Vec<TaskSnapshot> {
        let registry = self.inner.lock();
        registry
            .tasks
            .values()
            .map(|entry| entry.snapshot(&self.inner.clock))
            .collect()
    }

    /// One task.
    pub fn task(&self, id: &str) -> Option<TaskSnapshot> {
        let registry = self.inner.lock();
        registry
            .tasks
            .get(id)
            .map(|entry| entry.snapshot(&self.inner.clock))
    }

    /// A counter bumped on every state change (spawn, attempt start, failure, restart, end,
    /// removal), to wait for changes without polling. Heartbeats do not bump it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes_tx.subscribe()
    }

    /// Whether [`Supervisor::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.lock().shutting_down
    }

    /// Refuses new tasks, cancels every task, waits up to `grace` for them to end and aborts
    /// what is left (marking it `stopped`). The watchdog stops too.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let inner = &self.inner;
        let deadline = Instant::now() + grace;
        let pending: Vec<(
            String,
            u64,
            CancellationToken,
            Option<tokio::task::AbortHandle>,
        )> = {
            let mut registry = inner.lock();
            registry.shutting_down = true;
            registry
                .tasks
                .iter()
                .filter(|(_, entry)| !entry.finished.is_cancelled())
                .map(|(id, entry)| {
                    (
                        id.clone(),
                        entry.generation,
                        entry.finished.clone(),
                        entry.abort.clone(),
                    )
                })
                .collect()
        };
        tracing::info!(tasks = pending.len(), grace = ?grace, "supervisor shutting down");
        inner.root.cancel();
        inner.tracker.close();
        if tokio::time::timeout_at(deadline, inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("tasks still running after the shutdown grace period; aborting them");
        }
        let mut report = ShutdownReport::default();
        let mut aborted = Vec::new();
        for (id, generation, finished, abort) in pending {
            if finished.is_cancelled() {
                report.stopped.push(id);
            } else {
                if let Some(abort) = abort {
                    abort.abort();
                }
                aborted.push((id.clone(), generation));
                report.aborted.push(id);
            }
        }
        if !aborted.is_empty() {
            {
                let mut registry = inner.lock();
                for (id, generation) in &aborted {
                    if let Some(entry) = registry.entry_mut(id, *generation) {
                        tracing::warn!(task_id = %id, "type" = %entry.kind, "task aborted at shutdown");
                        entry.mark_stopped(Some("aborted at shutdown".to_owned()));
                    }
                }
                registry.publish_gauges(&inner.clock);
            }
            inner.bump();
        }
        report
    }
}

impl Inner {
    /// Locks the registry. A panic while it was held (which would be a bug here: no user code
    /// runs under it) must not take the supervisor down, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells subscribers that something changed. Called after the registry lock is released.
    fn bump(&self) {
        self.changes_tx
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Registers a task to be run (replacing one with the same id that has ended) and returns
    /// its key and the token its runner cancels when it is gone.
    fn register(&self, spec: TaskSpec) -> Result<(TaskKey, CancellationToken)> {
        let TaskSpec {
            id,
            kind,
            name,
            restart,
            runtime: _,
            mode,
        } = spec;
        let now = Instant::now();
        let mut registry = self.lock();
        if registry.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if let Some(existing) = registry.tasks.get(&id) {
            if is_live(existing.state) {
                return Err(Error::AlreadyRunning(id));
            }
            // An ended task whose runner is somehow still around (its thread blocked) must not
            // linger beside its replacement.
            if !existing.finished.is_cancelled() {
                existing.cancel.cancel();
                if let Some(abort) = &existing.abort {
                    abort.abort();
                }
            }
        }
        let generation = registry.next_generation();
        let kind: Arc<str> = Arc::from(kind);
        if registry.kinds.insert(Arc::clone(&kind)) {
            // A counter only shows in an exporter once touched: publish the first task of a
            // type's failure and restart counters at zero, so dashboards and alerts see
            // `task_failures_total{type}` before anything fails.
            metrics::counter!(TASK_FAILURES_TOTAL, "type" => Arc::clone(&kind)).increment(0);
            metrics::counter!(TASK_RESTARTS_TOTAL, "type" => Arc::clone(&kind)).increment(0);
        }
        let key = TaskKey {
            id: Arc::from(id.as_str()),
            generation,
            cancel: self.root.child_token(),
        };
        let entry = TaskEntry {
            generation,
            id: Arc::clone(&key.id),
            kind,
            name,
            mode,
            policy: restart.unwrap_or_else(|| self.config.default_restart.clone()),
            state: TaskState::Running,
            attempt: 0,
            restarts: 0,
            short_runs: 0,
            started_at: now,
            heartbeat: Heartbeat::new(self.clock.base(), now),
            last_error: None,
            concluded: false,
            next_delay: Duration::ZERO,
            cancel: key.cancel.clone(),
            killed: CancellationToken::new(),
            finished: CancellationToken::new(),
            abort: None,
        };
        let finished = entry.finished.clone();
        registry.tasks.insert(id, entry);
        registry.publish_gauges(&self.clock);
        Ok((key, finished))
    }

    /// Starts the next attempt of a task, or returns `None` if it must not run (stopped, removed
    /// or replaced).
    fn begin_attempt(&self, key: &TaskKey) -> Option<Attempt> {
        let now = Instant::now();
        let attempt = {
            let mut registry = self.lock();
            let entry = registry.entry_mut(&key.id, key.generation)?;
            // The watchdog may have ended the task before its runner first ran (its runtime was
            // stuck for longer than the timeout): that verdict stands.
            if !is_live(entry.state) {
                return None;
            }
            if key.cancel.is_cancelled() {
                entry.mark_stopped(None);
                registry.publish_gauges(&self.clock);
                drop(registry);
                self.bump();
                return None;
            }
            entry.attempt += 1;
            if entry.attempt > 1 {
                entry.restarts += 1;
                metrics::counter!(TASK_RESTARTS_TOTAL, "type" => Arc::clone(&entry.kind))
                    .increment(1);
                tracing::info!(
                    task_id = %entry.id, "type" = %entry.kind, attempt = entry.attempt,
                    restarts = entry.restarts, "task restarted"
                );
            }
            entry.state = TaskState::Running;
            entry.started_at = now;
            entry.heartbeat = Heartbeat::new(self.clock.base(), now);
            entry.killed = CancellationToken::new();
            entry.concluded = false;
            let attempt = Attempt {
                number: entry.attempt,
                heartbeat: entry.heartbeat.clone(),
                killed: entry.killed.clone(),
            };
            registry.publish_gauges(&self.clock);
            attempt
        };
        self.bump();
        Some(attempt)
    }

    /// Applies an attempt's outcome (unless the watchdog already did) and says what comes next.
    fn end_attempt(&self, key: &TaskKey, outcome: Outcome) -> Next {
        let now = Instant::now();
        let (next, transition) = {
            let mut registry = self.lock();
            let Some(entry) = registry.entry_mut(&key.id, key.generation) else {
                return Next::Exit;
            };
            let transition = if entry.concluded {
                None
            } else {
                Some(entry.conclude(outcome, now))
            };
            let next = match entry.state {
                TaskState::Restarting => Next::RestartAfter(entry.next_delay),
                _ => Next::Exit,
            };
            registry.publish_gauges(&self.clock);
            (next, transition)
        };
        self.bump();
        if let Some(transition) = transition {
            transition.log();
        }
        next
    }

    /// Marks a live task `stopped`, if the entry still belongs to this runner.
    fn mark_stopped(&self, key: &TaskKey, error: Option<String>) {
        let changed = {
            let mut registry = self.lock();
            let changed = registry
                .entry_mut(&key.id, key.generation)
                .is_some_and(|entry| entry.mark_stopped(error));
            if changed {
                registry.publish_gauges(&self.clock);
            }
            changed
        };
        if changed {
            self.bump();
        }
    }
}
