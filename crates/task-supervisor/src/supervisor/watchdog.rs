//! The heartbeat watchdog: one pass per period over every running attempt, on the
//! supervisor's runtime, so an attempt whose own thread is stuck is still declared dead.

use std::sync::Weak;
use std::time::Duration;

use capture_core::status::TaskState;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::registry::Outcome;

/// The longest pause between two heartbeat checks: a dead attempt is declared dead at most this
/// long after its timeout.
const MAX_WATCHDOG_PERIOD: Duration = Duration::from_secs(1);
/// The shortest pause between two heartbeat checks, for tiny test timeouts.
const MIN_WATCHDOG_PERIOD: Duration = Duration::from_millis(1);

/// The pause between two checks for `task_timeout`: a tenth of it, within the bounds above.
pub(super) fn period(task_timeout: Duration) -> Duration {
    (task_timeout / 10).clamp(MIN_WATCHDOG_PERIOD, MAX_WATCHDOG_PERIOD)
}

impl Inner {
    /// One watchdog pass: concludes every running attempt whose heartbeat is older than the
    /// task timeout, kills it, and refreshes the gauges.
    fn check_heartbeats(&self) {
        let now = Instant::now();
        let timeout = self.config.task_timeout;
        let mut killed = Vec::new();
        let mut transitions = Vec::new();
        {
            let mut registry = self.lock();
            for entry in registry.tasks.values_mut() {
                // A task whose runner has not started its first attempt yet (attempt 0) is
                // checked too: a runtime too busy to start it for a whole timeout is a failure.
                if entry.state != TaskState::Running || entry.concluded {
                    continue;
                }
                let last_beat = self.clock.instant_at(entry.heartbeat.last_beat_nanos());
                if now.saturating_duration_since(last_beat) > timeout {
                    let message = format!("heartbeat timeout after {timeout:?}");
                    transitions.push(entry.conclude(
                        Outcome::Failure {
                            message,
                            permanent: false,
                        },
                        now,
                    ));
                    killed.push(entry.killed.clone());
                }
            }
            registry.publish_gauges(&self.clock);
        }
        // Cancelled outside the lock: the runner wakes, drops the attempt's future and reads the
        // conclusion applied above.
        for token in &killed {
            token.cancel();
        }
        if !transitions.is_empty() {
            self.bump();
            for transition in &transitions {
                transition.log();
            }
        }
    }
}

/// Checks heartbeats every `period` until the supervisor shuts down or is dropped.
pub(super) async fn run(inner: Weak<Inner>, shutdown: CancellationToken, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.check_heartbeats();
    }
}
