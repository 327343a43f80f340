//! The source stopped (cleanly or as by `kill -9`) while containers start, write and exit, then
//! started again on the same data dir: what happened meanwhile is read, exactly once, with the
//! default `read_from = "end"`, through the API and from the log files alike.

use capture_core::status::TaskState;
use docker_source::{DockerConfig, ReadFrom, ReadMode};

use crate::harness::{self, Harness, Sink, config, docker_line_count, loggen, unique};

/// The default `read_from`: a downtime must not be mistaken for a first start.
fn config_from_end(label: &str, mode: ReadMode) -> DockerConfig {
    DockerConfig {
        read_from: ReadFrom::End,
        read_mode: mode,
        ..config(label)
    }
}

/// How `/health` names the mode.
fn mode_name(mode: ReadMode) -> &'static str {
    match mode {
        ReadMode::Files => "files",
        ReadMode::Api | ReadMode::Auto => "api",
    }
}

/// How long the source stays down after the containers exited: the downtime itself, not a
/// synchronisation. It is longer than the few seconds of events the source asks Docker to
/// replay when it connects, so only its saved state can tell it what happened meanwhile (as
/// after a real upgrade or crash).
const DOWNTIME_AFTER_EXIT: std::time::Duration = std::time::Duration::from_secs(8);

/// How the first run ends.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Clean,
    Crash,
}

async fn end(harness: Harness, stop: Stop) {
    match stop {
        Stop::Clean => harness.stop().await,
        Stop::Crash => harness.crash().await,
    }
}

async fn containers_started_while_the_source_was_down_are_read_whole(stop: Stop, mode: ReadMode) {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("down");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::default();
    let first = Harness::start(config_from_end(&label, mode), dir.path(), sink.clone());
    // Seen by the first run, so the agent has state.
    let before = loggen(&label, &[], &["--tag", "before", "--lines", "50"]);
    sink.wait_until("the first run's container", |c| c.count(before.id()) == 50)
        .await;
    end(first, stop).await;

    // While the source is down: a job that writes and exits, a service that keeps writing.
    let job = loggen(
        &label,
        &[],
        &["--tag", "job", "--lines", "3000", "--stream", "both"],
    );
    let service = loggen(
        &label,
        &[],
        &["--tag", "service", "--lines", "2000", "--rate", "500"],
    );
    job.wait_exit();
    tokio::time::sleep(DOWNTIME_AFTER_EXIT).await;
    let second = Harness::start(config_from_end(&label, mode), dir.path(), sink.clone());
    sink.wait_until("every line written while the source was down", |c| {
        c.count(job.id()) >= 6000 && c.count(service.id()) >= 2000
    })
    .await;
    assert_eq!(second.task_mode(job.id()).as_deref(), Some(mode_name(mode)));
    second
        .wait_task(job.id(), "the job's task completes", |state| {
            state == Some(TaskState::Completed)
        })
        .await;
    second.stop().await;
    sink.with(|c| {
        let report = c.report();
        assert_eq!(report.lost(), 0, "{report:?}");
        assert_eq!(c.count(job.id()), docker_line_count(job.id()));
        assert_eq!(c.count(service.id()), 2000);
        match stop {
            Stop::Clean => report.assert_perfect(),
            // What the first run delivered but had not saved may come again (at least once).
            Stop::Crash => assert_eq!(
                c.count(job.id()) + c.count(service.id()),
                8000,
                "nothing of the new containers was delivered by the crashed run"
            ),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_while_the_source_was_stopped_are_read_from_their_first_line() {
    containers_started_while_the_source_was_down_are_read_whole(Stop::Clean, ReadMode::Api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_after_a_crash_are_read_from_their_first_line() {
    containers_started_while_the_source_was_down_are_read_whole(Stop::Crash, ReadMode::Api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_while_the_source_was_stopped_are_read_from_their_first_line_in_files() {
    containers_started_while_the_source_was_down_are_read_whole(Stop::Clean, ReadMode::Files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_after_a_crash_are_read_from_their_first_line_in_files() {
    containers_started_while_the_source_was_down_are_read_whole(Stop::Crash, ReadMode::Files).await;
}

async fn a_followed_container_that_exits_while_the_source_is_down_is_drained_once(
    stop: Stop,
    mode: ReadMode,
) {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("exit-down");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::default();
    let first = Harness::start(config_from_end(&label, mode), dir.path(), sink.clone());
    let writer = loggen(
        &label,
        &[],
        &["--tag", "writer", "--lines", "3000", "--rate", "1000"],
    );
    sink.collected
        .lock()
        .unwrap()
        .checker
        .expect(writer.id(), "writer", 3000);
    sink.wait_until("a part of the lines", |c| c.count(writer.id()) >= 300)
        .await;
    end(first, stop).await;
    let delivered_before = sink.with(|c| c.count(writer.id()));
    assert!(delivered_before < 3000, "the writer was still writing");
    assert_eq!(writer.wait_exit(), 0);
    tokio::time::sleep(DOWNTIME_AFTER_EXIT).await;

    let restarted = std::time::Instant::now();
    let second = Harness::start(config_from_end(&label, mode), dir.path(), sink.clone());
    sink.wait_until("the rest of the lines", |c| c.count(writer.id()) >= 3000)
        .await;
    assert_eq!(
        second.task_mode(writer.id()).as_deref(),
        Some(mode_name(mode))
    );
    second
        .wait_task(writer.id(), "drained once, then completed", |state| {
            state == Some(TaskState::Completed)
        })
        .await;
    // The task learns at once that the container is stopped: it does not wait for its next
    // look at the container (`inactivity_timeout`, 60 s) to complete.
    let inactivity = DockerConfig::default().inactivity_timeout;
    assert!(
        restarted.elapsed() < inactivity / 2,
        "the drain completed {:?} after the start",
        restarted.elapsed()
    );
    second.stop().await;
    let after_second = sink.with(|c| c.count(writer.id()));

    // A third start: the container was read to the end of this stop; nothing is read again,
    // and no task is even started for it.
    let third = Harness::start(config_from_end(&label, mode), dir.path(), sink.clone());
    let probe = loggen(&label, &[], &["--tag", "probe", "--lines", "5"]);
    sink.wait_until("a later container, so the third run has listed", |c| {
        c.count(probe.id()) == 5
    })
    .await;
    assert_eq!(
        third.task_state(writer.id()),
        None,
        "no task for a drained container"
    );
    third.stop().await;
    sink.with(|c| {
        assert_eq!(c.count(writer.id()), after_second, "nothing read again");
        let report = c.report();
        assert_eq!(report.lost(), 0, "{report:?}");
        if let Stop::Clean = stop {
            report.assert_perfect();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_container_that_exits_while_the_source_is_stopped_is_drained_once() {
    a_followed_container_that_exits_while_the_source_is_down_is_drained_once(
        Stop::Clean,
        ReadMode::Api,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_container_that_exits_after_a_crash_is_drained_once() {
    a_followed_container_that_exits_while_the_source_is_down_is_drained_once(
        Stop::Crash,
        ReadMode::Api,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_container_that_exits_while_the_source_is_stopped_is_drained_once_in_files() {
    a_followed_container_that_exits_while_the_source_is_down_is_drained_once(
        Stop::Clean,
        ReadMode::Files,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_container_that_exits_after_a_crash_is_drained_once_in_files() {
    a_followed_container_that_exits_while_the_source_is_down_is_drained_once(
        Stop::Crash,
        ReadMode::Files,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_only_container_persists_a_read_through_time_near_its_cursor() {
    stdout_only_read_through(ReadMode::Api).await;
}

/// A file follower keeps the same read-through time, for a later read through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_only_container_read_from_files_persists_a_read_through_time_too() {
    stdout_only_read_through(ReadMode::Files).await;
}

async fn stdout_only_read_through(mode: ReadMode) {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("through");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::default();
    let config = DockerConfig {
        read_mode: mode,
        ..config(&label)
    };
    let harness = Harness::start(config, dir.path(), sink.clone());
    let quiet = loggen(
        &label,
        &[],
        &["--tag", "quiet", "--lines", "2000", "--hold-secs", "-1"],
    );
    sink.wait_until("every line", |c| c.count(quiet.id()) == 2000)
        .await;
    assert_eq!(
        harness.task_mode(quiet.id()).as_deref(),
        Some(mode_name(mode))
    );
    harness.stop().await;
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("checkpoints.json")).unwrap())
            .unwrap();
    assert_eq!(file["version"], 2);
    assert!(file["daemon_seen_at_nanos"].as_i64().is_some(), "{file}");
    let entry = &file["containers"][quiet.id()];
    let cursor = entry["streams"]["stdout"]["timestamp_nanos"]
        .as_i64()
        .unwrap_or_else(|| panic!("a stdout cursor: {entry}"));
    assert!(entry["streams"].get("stderr").is_none(), "{entry}");
    let through = entry["read_through_nanos"]
        .as_i64()
        .unwrap_or_else(|| panic!("a read-through time: {entry}"));
    // Its stderr, which never wrote, is asked from here on a reopen, not from 0.
    assert!(
        through <= cursor && cursor - through <= 3_000_000_000,
        "read through {through}, cursor {cursor}"
    );
}
