//! The Docker daemon restarted while the source runs: it reconnects, lists again and loses
//! nothing the json-file driver kept.
//!
//! A binary of its own because it stops the daemon every other test needs: it takes an
//! exclusive lock file (other processes running this test wait), always starts the daemon
//! again (also when the test fails), and should be run when no other Docker test runs.

#[path = "integration/harness.rs"]
mod harness;

use std::{
    fs::File,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use capture_core::status::DockerState;
use harness::{Harness, Sink, config, docker_line_count, loggen, unique};
use test_support::docker::daemon_answers;

/// Serialises daemon restarts across processes.
const LOCK_FILE: &str = "/tmp/log-capturer-dockerd-restart.lock";

/// The default daemon's pid, from its pidfile only (`procfs::daemon_pid` falls back to any
/// `dockerd`, and another daemon, say a developer's private one, is not this test's to stop).
fn dockerd_pid() -> Option<String> {
    test_support::procfs::default_daemon_pid().map(|pid| pid.to_string())
}

/// Polls `condition` (a process state: there is no event to wait for) for up to `limit`.
fn poll(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    condition()
}

fn start_dockerd() {
    if daemon_answers() {
        return;
    }
    test_support::docker::start_daemon(Path::new("/var/log/dockerd.log"))
        .expect("dockerd did not come back");
}

/// Starts the daemon again when dropped, whatever happened in between.
struct DaemonGuard;

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        start_dockerd();
    }
}

fn stop_dockerd() {
    let pid = dockerd_pid().expect("dockerd runs");
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("signal dockerd");
    assert!(
        poll(Duration::from_secs(60), || dockerd_pid().is_none()),
        "dockerd did not stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restart_loses_nothing_docker_kept() {
    let lock = File::create(LOCK_FILE).expect("create the lock file");
    lock.lock().expect("take the lock");
    let _daemon = DaemonGuard;
    start_dockerd();
    test_support::docker::loggen_image();

    let label = unique("dockerd");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());
    let sink = harness.sink.clone();
    let mut status_rx = harness.status_rx.clone();
    // Restarted by the daemon when it comes back: a new run of the same container.
    let always = loggen(
        &label,
        &["--restart", "always"],
        &["--tag", "always", "--lines", "0", "--rate", "500"],
    );
    // Not restarted: what it wrote before the daemon stopped must still arrive.
    let once = loggen(
        &label,
        &[],
        &["--tag", "once", "--lines", "0", "--rate", "500"],
    );
    sink.wait_until("lines before the restart", |c| {
        c.count(always.id()) >= 500 && c.count(once.id()) >= 500
    })
    .await;

    tokio::task::spawn_blocking(stop_dockerd).await.unwrap();
    tokio::time::timeout(
        harness::WAIT,
        status_rx.wait_for(|s| s.state == DockerState::Disconnected),
    )
    .await
    .expect("the source notices the daemon is gone")
    .unwrap();
    let before = sink.with(|c| c.count(always.id()));
    tokio::task::spawn_blocking(start_dockerd).await.unwrap();
    tokio::time::timeout(
        harness::WAIT,
        status_rx.wait_for(|s| s.state == DockerState::Connected),
    )
    .await
    .expect("the source reconnects")
    .unwrap();
    sink.wait_until("the restarted container's new run", |c| {
        c.count(always.id()) >= before + 500
    })
    .await;
    always.stop();
    for container in [&always, &once] {
        let kept = docker_line_count(container.id());
        sink.wait_until("every line Docker kept", |c| {
            c.count(container.id()) >= kept
        })
        .await;
    }
    sink.with(|c| {
        let report = c.report();
        report.assert_perfect();
        assert_eq!(c.out_of_order_positions, 0);
        for container in [&always, &once] {
            assert_eq!(c.count(container.id()), docker_line_count(container.id()));
        }
        let runs = report
            .sequences
            .iter()
            .filter(|s| s.key.container == always.id())
            .map(|s| s.key.run.clone())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(
            runs.len(),
            2,
            "the container ran again after the daemon restart"
        );
    });
    harness.stop().await;
}
