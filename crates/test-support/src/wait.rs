//! Waiting on another process (the capturer, the Docker daemon, a sink's file) with a deadline:
//! the one polling loop of the harness. There is nothing to subscribe to across processes, so
//! these poll; every wait is bounded.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How often [`until`] looks again.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls `condition` every `poll` until it holds or `timeout` passes; returns how long it took.
/// An error from `condition` counts as "not yet" (the other process may be restarting).
pub fn until_every(
    poll: Duration,
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if condition().unwrap_or(false) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(poll.min(timeout.saturating_sub(started.elapsed())));
    }
}

/// [`until_every`] with the default [`POLL`].
pub fn until(
    timeout: Duration,
    what: &str,
    condition: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    until_every(POLL, timeout, what, condition)
}

/// Lets `duration` pass while calling `tick` every 200 ms (so files are read as they grow and
/// rotations are followed), and once more at the end.
pub fn pace(duration: Duration, mut tick: impl FnMut() -> Result<()>) -> Result<()> {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        tick()?;
        // Pacing a timeline is what this function is for.
        std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
    }
    tick()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_condition_that_comes_true_ends_the_wait_and_one_that_never_does_times_out() {
        let mut calls = 0;
        let took = super::until(Duration::from_secs(5), "the third call", || {
            calls += 1;
            Ok(calls >= 3)
        })
        .unwrap();
        assert_eq!(calls, 3);
        assert!(took < Duration::from_secs(5));
        let error = super::until(Duration::from_millis(50), "never", || Ok(false)).unwrap_err();
        assert!(error.to_string().contains("never"), "{error}");
        let mut ticks = 0;
        super::pace(Duration::from_millis(250), || {
            ticks += 1;
            Ok(())
        })
        .unwrap();
        assert!(ticks >= 2, "{ticks}");
    }
}
