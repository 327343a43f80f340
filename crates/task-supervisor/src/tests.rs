//! Unit tests of the pieces that need no supervisor: backoff, error display, clock conversion.

use std::time::Duration;

use tokio::time::Instant;

use crate::context::{Clock, Heartbeat, nanos_since};
use crate::{RestartPolicy, TaskError};

fn policy(base_ms: u64, cap_ms: u64, jitter: f64) -> RestartPolicy {
    RestartPolicy {
        backoff_base: Duration::from_millis(base_ms),
        backoff_cap: Duration::from_millis(cap_ms),
        jitter,
        ..RestartPolicy::default()
    }
}

#[test]
fn backoff_doubles_from_base_and_stops_at_cap() {
    let policy = policy(1_000, 8_000, 0.0);
    let delays: Vec<u64> = (1..=7)
        .map(|restart| policy.backoff(restart).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 8, 8, 8]);
    // Huge restart counts must neither overflow nor panic.
    assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(8));
    assert_eq!(policy.jittered_backoff(3), Duration::from_secs(4));
}

#[test]
fn the_policy_jitters_by_its_fraction_below_the_delay() {
    // The rule itself is capture_core::Backoff's (tested there); the policy passes its fraction.
    let delay = policy(1_000, 60_000, 0.1).jittered_backoff(1);
    assert!(
        (Duration::from_millis(900)..=Duration::from_secs(1)).contains(&delay),
        "{delay:?} is outside [0.9 s, 1 s]"
    );
}

#[test]
fn never_policy_restarts_nothing() {
    let never = RestartPolicy::never();
    assert!(!never.restart_on_error);
    assert!(!never.restart_on_success);
    let default = RestartPolicy::default();
    assert!(default.restart_on_error);
    assert!(!default.restart_on_success);
    assert_eq!(default.max_attempts, None);
}

#[derive(Debug, thiserror::Error)]
#[error("reading the log stream")]
struct Outer(#[source] std::io::Error);

#[test]
fn task_error_shows_the_whole_chain() {
    let error = TaskError::from(Outer(std::io::Error::other("connection reset")));
    assert_eq!(
        error.to_string(),
        "reading the log stream: connection reset"
    );
    assert!(!error.is_permanent());
}

#[test]
fn question_mark_converts_any_error_as_transient() {
    fn parse(text: &str) -> Result<u32, TaskError> {
        Ok(text.parse::<u32>()?)
    }
    fn refuse() -> Result<(), TaskError> {
        Err("no such container")?
    }
    let error = parse("x").unwrap_err();
    assert!(!error.is_permanent());
    assert_eq!(error.to_string(), "invalid digit found in string");
    assert_eq!(refuse().unwrap_err().to_string(), "no such container");

    let permanent = TaskError::permanent(String::from("bad configuration"));
    assert!(permanent.is_permanent());
    assert_eq!(permanent.into_error().to_string(), "bad configuration");
}

#[test]
fn clock_converts_instants_both_ways_of_its_base() {
    let clock = Clock::now();
    let base_system = clock.system_time_of(clock.base());
    let later = clock.base() + Duration::from_secs(90);
    assert_eq!(
        clock
            .system_time_of(later)
            .duration_since(base_system)
            .unwrap(),
        Duration::from_secs(90)
    );
    if let Some(earlier) = clock.base().checked_sub(Duration::from_secs(5)) {
        assert_eq!(
            base_system
                .duration_since(clock.system_time_of(earlier))
                .unwrap(),
            Duration::from_secs(5)
        );
    }
    assert_eq!(
        nanos_since(later, clock.base()),
        0,
        "saturates before the base"
    );
    assert_eq!(clock.instant_at(nanos_since(clock.base(), later)), later);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_records_the_latest_beat_through_any_clone() {
    let base = Instant::now();
    let heartbeat = Heartbeat::new(base, base);
    assert_eq!(heartbeat.last_beat_nanos(), 0);
    tokio::time::advance(Duration::from_secs(5)).await;
    heartbeat.clone().beat();
    assert_eq!(heartbeat.last_beat_nanos(), 5_000_000_000);
}
