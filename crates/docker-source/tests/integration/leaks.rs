//! Forced checks of silent streams (and the reopens they may lead to) leak neither file
//! descriptors nor tasks.

use std::time::Duration;

use crate::harness::{self, Harness, Sink, config, loggen, unique};

fn open_fds() -> usize {
    let fds = test_support::procfs::open_fds(std::process::id()).expect("this process's fds");
    usize::try_from(fds).expect("a count of fds")
}

/// Silent-stream checks (each a request of its own) plus reopens after inactivity.
fn reopens() -> u64 {
    harness::counter("log_capturer_stream_idle_checks_total", None)
        + harness::counter(
            "log_capturer_stream_reconnects_total",
            Some(("reason", "inactivity")),
        )
}

/// Polls `condition` every few milliseconds, bounded by [`harness::WAIT`].
async fn poll_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + harness::WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tick.tick().await;
    }
}

/// The lowest of a few samples, so a reopen caught in flight (one socket more for a moment)
/// does not count as a leak.
async fn settled(sample: impl Fn() -> usize) -> usize {
    let mut lowest = usize::MAX;
    let mut tick = tokio::time::interval(Duration::from_millis(7));
    for _ in 0..15 {
        tick.tick().await;
        lowest = lowest.min(sample());
    }
    lowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_forced_idle_checks_leak_no_fd_and_no_task() {
    // Exclusive: the process's descriptors must be this test's alone while it counts them.
    let _exclusive = harness::process_lock().write().await;
    test_support::docker::loggen_image();
    let label = unique("leak");
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&label);
    // Silent for 20 ms = checked (or reopened): 300 of them in a few seconds (of the API
    // stream: a file follower waits on its files, with neither).
    config.inactivity_timeout = Duration::from_millis(20);
    config.read_mode = docker_source::ReadMode::Api;
    let harness = Harness::start(config, dir.path(), Sink::default());
    let silent = loggen(
        &label,
        &[],
        &["--tag", "silent", "--lines", "1", "--hold-secs", "-1"],
    );
    harness
        .sink
        .wait_until("the one line", |c| c.count(silent.id()) == 1)
        .await;
    let start = reopens();
    poll_until("a few reopens", || reopens() >= start + 5).await;
    let worker = harness.runtime_handles[0].clone();
    let tasks = || worker.metrics().num_alive_tasks();
    let baseline_fds = settled(open_fds).await;
    let baseline_tasks = settled(tasks).await;
    let counted_from = reopens();
    poll_until("300 more checks", || reopens() >= counted_from + 300).await;
    let fds = settled(open_fds).await;
    let alive = settled(tasks).await;
    tracing::info!(
        "after {} checks: fds {baseline_fds} -> {fds}, worker tasks {baseline_tasks} -> {alive}",
        reopens() - counted_from
    );
    assert!(
        fds <= baseline_fds + 1,
        "fds leaked: {baseline_fds} -> {fds}"
    );
    assert!(
        alive <= baseline_tasks + 1,
        "tasks leaked: {baseline_tasks} -> {alive}"
    );
    // Nothing was delivered twice: still exactly one.
    harness.sink.with(|c| assert_eq!(c.count(silent.id()), 1));
    harness.stop().await;
}
