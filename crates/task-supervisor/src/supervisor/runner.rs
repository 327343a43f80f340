//! A task's runner: its attempts one after the other, the outcome of each (returned, panicked,
//! killed by the watchdog, or ignoring cancellation), and the backoff sleeps between them.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio_util::sync::CancellationToken;

use super::{Attempt, Inner, Next, TaskKey};
use crate::context::TaskContext;
use crate::error::TaskError;
use crate::registry::Outcome;

/// Owned by a runner future. Its drop (the runner returned, or was aborted, or its runtime went
/// away) signals `finished` and marks a still-live task `stopped`.
pub(super) struct RunnerGuard {
    pub(super) inner: Arc<Inner>,
    pub(super) key: TaskKey,
    pub(super) finished: CancellationToken,
}

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        // Only an abnormal end leaves the task live here; the normal paths set a final state.
        self.inner
            .mark_stopped(&self.key, Some("task runner was aborted".to_owned()));
        self.finished.cancel();
    }
}

/// A task's runner: attempts, outcomes and backoff sleeps until the task ends.
pub(super) async fn run_task<F, Fut>(guard: RunnerGuard, body: F)
where
    F: Fn(TaskContext) -> Fut,
    Fut: Future<Output = Result<(), TaskError>>,
{
    let inner = &guard.inner;
    let key = &guard.key;
    loop {
        let Some(attempt) = inner.begin_attempt(key) else {
            return;
        };
        let outcome = run_attempt(inner, key, &body, attempt).await;
        match inner.end_attempt(key, outcome) {
            Next::Exit => return,
            Next::RestartAfter(delay) => {
                tokio::select! {
                    () = key.cancel.cancelled() => {
                        inner.mark_stopped(key, None);
                        return;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Runs one attempt. Its future is dropped before this returns, whichever way it ended.
async fn run_attempt<F, Fut>(inner: &Inner, key: &TaskKey, body: &F, attempt: Attempt) -> Outcome
where
    F: Fn(TaskContext) -> Fut,
    Fut: Future<Output = Result<(), TaskError>>,
{
    let token = key.cancel.child_token();
    let context = TaskContext {
        id: Arc::clone(&key.id),
        attempt: attempt.number,
        heartbeat: attempt.heartbeat,
        cancel: token.clone(),
        heartbeat_interval: inner.config.heartbeat_interval,
    };
    let stop_timeout = inner.config.stop_timeout;
    // Boxed: held inline, the body's future would take its size twice in this one (the
    // matched value and the select's copy each keep their own space), 10 KiB per file task.
    let ended = match std::panic::catch_unwind(AssertUnwindSafe(|| Box::pin(body(context)))) {
        Err(panic) => AttemptEnd::Returned(Err(panic)),
        Ok(future) => {
            let future = AssertUnwindSafe(future).catch_unwind();
            tokio::select! {
                biased;
                () = attempt.killed.cancelled() => AttemptEnd::Killed,
                () = grace_expired(&key.cancel, stop_timeout) => AttemptEnd::IgnoredCancellation,
                result = future => AttemptEnd::Returned(result),
            }
        }
    };
    // The body's helpers may hold the attempt's token: end them with the attempt.
    token.cancel();
    if key.cancel.is_cancelled() {
        if matches!(ended, AttemptEnd::IgnoredCancellation) {
            tracing::warn!(
                task_id = %key.id, attempt = attempt.number, stop_timeout = ?stop_timeout,
                "task ignored cancellation; its future was dropped"
            );
        }
        return Outcome::Stopped;
    }
    match ended {
        // The watchdog concluded the attempt before killing it; this failure is not applied again.
        AttemptEnd::Killed | AttemptEnd::IgnoredCancellation => Outcome::Failure {
            message: "attempt killed".to_owned(),
            permanent: false,
        },
        AttemptEnd::Returned(Ok(Ok(()))) => Outcome::Success,
        AttemptEnd::Returned(Ok(Err(error))) => Outcome::Failure {
            message: error.to_string(),
            permanent: error.is_permanent(),
        },
        AttemptEnd::Returned(Err(panic)) => Outcome::Failure {
            message: format!("panicked: {}", panic_message(&*panic)),
            permanent: false,
        },
    }
}

/// How the select over an attempt ended.
enum AttemptEnd {
    Killed,
    IgnoredCancellation,
    Returned(std::thread::Result<Result<(), TaskError>>),
}

/// Completes `stop_timeout` after `cancel` is cancelled.
async fn grace_expired(cancel: &CancellationToken, stop_timeout: Duration) {
    cancel.cancelled().await;
    tokio::time::sleep(stop_timeout).await;
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&'static str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    }
}
