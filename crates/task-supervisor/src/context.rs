//! What a task body sees: [`TaskContext`] and its [`Heartbeat`], plus the [`Clock`] that turns
//! monotonic heartbeat instants into wall-clock times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// A wall-clock time and a monotonic instant taken together, so monotonic instants (which paused
/// test time controls) can be reported as wall-clock times.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    system: SystemTime,
    instant: Instant,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        Clock {
            system: SystemTime::now(),
            instant: Instant::now(),
        }
    }

    pub(crate) fn base(&self) -> Instant {
        self.instant
    }

    pub(crate) fn system_time_of(&self, instant: Instant) -> SystemTime {
        if instant >= self.instant {
            self.system + (instant - self.instant)
        } else {
            self.system - (self.instant - instant)
        }
    }

    /// An instant given as nanoseconds since the base, as [`Heartbeat`] stores it.
    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.instant + Duration::from_nanos(nanos)
    }
}

/// Nanoseconds since `base`, saturating (an instant before the base counts as the base).
pub(crate) fn nanos_since(base: Instant, instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// A handle a task body uses to say "I am alive". Clone it into whatever part of the body makes
/// progress (the loop that reads a stream, for example).
///
/// [`Heartbeat::beat`] is one clock read and one relaxed atomic store: no channel, no lock, no
/// wake-up of another thread. The supervisor's watchdog reads the stored instant on its own
/// schedule, so beating on every loop iteration of a busy task costs next to nothing.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The attempt's last beat, in nanoseconds since `base`. Each attempt has its own cell, so a
    /// handle leaked from an old attempt cannot keep a new one alive.
    last_beat: Arc<AtomicU64>,
    base: Instant,
}

impl Heartbeat {
    /// A heartbeat cell whose first beat is `now`.
    pub(crate) fn new(base: Instant, now: Instant) -> Heartbeat {
        Heartbeat {
            last_beat: Arc::new(AtomicU64::new(nanos_since(base, now))),
            base,
        }
    }

    /// Records a beat now.
    pub fn beat(&self) {
        self.last_beat
            .store(nanos_since(self.base, Instant::now()), Ordering::Relaxed);
    }

    /// Sleeps for `delay`, beating every `every` meanwhile, so a body waiting out a backoff
    /// longer than its heartbeat timeout stays alive; `true` if `cancel` fired first.
    pub async fn sleep(
        &self,
        delay: Duration,
        every: Duration,
        cancel: &CancellationToken,
    ) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            self.beat();
            let wake = deadline.min(Instant::now() + every);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return true,
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                }
            }
        }
    }

    /// The last beat, in nanoseconds since the supervisor's clock base.
    pub(crate) fn last_beat_nanos(&self) -> u64 {
        self.last_beat.load(Ordering::Relaxed)
    }
}

/// What one attempt of a task body receives.
#[derive(Debug)]
pub struct TaskContext {
    pub(crate) id: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) heartbeat: Heartbeat,
    /// The attempt's token: a child of the task's token, so stopping the task cancels it, and
    /// cancelled on its own when the attempt ends (heartbeat timeout included), so helpers the
    /// body started with it end too.
    pub(crate) cancel: CancellationToken,
    pub(crate) heartbeat_interval: Duration,
}

impl TaskContext {
    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The attempt number, 1 for the first run.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Beats now (see [`Heartbeat::beat`]).
    pub fn heartbeat(&self) {
        self.heartbeat.beat();
    }

    /// A cloneable heartbeat handle for parts of the body that do not hold the context.
    pub fn heartbeat_handle(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// The attempt's cancellation token (see [`TaskContext::cancelled`]).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Completes once the task is asked to stop (or the attempt was declared dead). A body should
    /// select on this and return promptly; one that does not is dropped after the supervisor's
    /// `stop_timeout`.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether the task was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// How often the body is expected to beat. Beating more often is cheap.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_beats_while_it_waits_and_ends_early_on_cancel() {
        let base = Instant::now();
        let heartbeat = Heartbeat::new(base, base);
        let cancel = CancellationToken::new();
        let every = Duration::from_secs(1);
        assert!(
            !heartbeat
                .sleep(Duration::from_millis(3500), every, &cancel)
                .await
        );
        assert_eq!(Instant::now() - base, Duration::from_millis(3500));
        // The last beat was taken at the last wake-up before the deadline (3 s), not at the start.
        assert_eq!(heartbeat.last_beat_nanos(), 3_000_000_000);

        let stopper = cancel.clone();
        let sleep = heartbeat.sleep(Duration::from_secs(60), every, &cancel);
        let stop = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stopper.cancel();
        };
        let (cancelled, ()) = tokio::join!(sleep, stop);
        assert!(cancelled);
        assert_eq!(Instant::now() - base, Duration::from_millis(5000));
    }
}
