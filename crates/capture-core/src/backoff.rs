//! Exponential backoff with one jitter rule, for every retry loop of the agent.
//!
//! The delay before attempt `n` (1-based) is `base * 2^(n-1)`, capped at `cap`. Jitter spreads
//! retries of many clients apart without ever passing the cap: a jittered delay is uniform in
//! `[(1 - jitter) * d, d]`, so `cap` stays the longest wait and `jitter = 0` is deterministic.
//! Users: the Docker connection (no jitter, one client per source), the supervisor's restarts
//! (`RestartPolicy::jitter`) and the sinks' retries (half the delay).

use std::time::Duration;

/// Exponential backoff from `base` to `cap`, jittered by a fraction of the delay.
///
/// ```
/// use std::time::Duration;
/// use capture_core::Backoff;
///
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
/// let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
/// assert_eq!(delays, [100, 200, 350, 350]);
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: f64,
    attempt: u32,
}

impl Backoff {
    /// A backoff without jitter whose first delay is `base`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            jitter: 0.0,
            attempt: 0,
        }
    }

    /// The same backoff with `jitter` as a fraction of each delay, clamped to `[0, 1]`; a
    /// fraction that is not a number means none.
    pub fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The delay before attempt `attempt` (1-based), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The jittered delay before attempt `attempt` (1-based).
    pub fn jittered(&self, attempt: u32) -> Duration {
        let delay = self.delay(attempt);
        if self.jitter == 0.0 {
            return delay;
        }
        delay.mul_f64(1.0 - self.jitter * fastrand::f64())
    }

    /// The jittered delay before the next attempt; each call counts one attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.jittered(self.attempt)
    }

    /// Starts again from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_base_to_the_cap_without_overflow() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<u64> = (1..=7).map(|n| backoff.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(8));
        assert_eq!(backoff.jittered(3), Duration::from_secs(4));
    }

    #[test]
    fn jitter_stays_below_the_delay_within_its_fraction_and_varies() {
        let backoff =
            Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.1);
        let delays: Vec<Duration> = (0..200).map(|_| backoff.jittered(1)).collect();
        for delay in &delays {
            assert!(
                (Duration::from_millis(900)..=Duration::from_secs(1)).contains(delay),
                "{delay:?} is outside [0.9 s, 1 s]"
            );
        }
        assert!(
            delays.iter().any(|delay| *delay != delays[0]),
            "never varied"
        );
    }

    #[test]
    fn nonsense_jitter_is_ignored_or_clamped() {
        let base = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(
            base.clone().with_jitter(f64::NAN).jittered(1),
            Duration::from_secs(1)
        );
        let wild = base.with_jitter(7.0).jittered(1);
        assert!(wild <= Duration::from_secs(1), "{wild:?}");
    }
}
