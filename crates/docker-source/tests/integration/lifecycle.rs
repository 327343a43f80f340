//! Containers restarted, stopped and started again, removed, started late: no loss, no
//! duplicate.

use capture_core::status::{DockerState, TaskState};

use test_support::{checker::Report, docker::Container};

use crate::harness::{self, Harness, Sink, config, docker_line_count, loggen, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_stops_removals_and_late_starts_lose_and_duplicate_nothing() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("life");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());
    let sink = harness.sink.clone();

    // Restarted (same id) in the middle of its stream.
    let restarted = loggen(
        &label,
        &[],
        &["--tag", "restarted", "--lines", "0", "--rate", "1000"],
    );
    // Exits on its own; started again once the source has seen it stop.
    let again = loggen(
        &label,
        &[],
        &["--tag", "again", "--lines", "300", "--rate", "1000"],
    );
    // Removed once read.
    let removed = loggen(
        &label,
        &[],
        &["--tag", "removed", "--lines", "200", "--hold-secs", "-1"],
    );

    restart_in_its_stream(&sink, &restarted).await;
    start_again_after_its_exit(&harness, &again).await;
    let removed_id = removed.id().to_owned();
    remove_once_read(&harness, removed).await;

    // A container started late, after all of the above.
    let late = loggen(
        &label,
        &[],
        &["--tag", "late", "--lines", "500", "--stream", "both"],
    );
    sink.wait_until("the late container's lines", |c| c.count(late.id()) >= 1000)
        .await;

    for container in [&restarted, &again, &late] {
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
        assert_eq!(c.count(&removed_id), 200);
        for container in [&restarted, &again, &late] {
            assert_eq!(c.count(container.id()), docker_line_count(container.id()));
        }
        // Two runs each for the restarted container and the one started again.
        assert_eq!(runs(&report, restarted.id()), 2);
        assert_eq!(runs(&report, again.id()), 2);
    });
    harness.stop().await;
}

/// Restarts `restarted` once 300 lines are read, waits for 300 more, and stops it.
async fn restart_in_its_stream(sink: &Sink, restarted: &Container) {
    sink.wait_until("the restarted container's first lines", |c| {
        c.count(restarted.id()) >= 300
    })
    .await;
    restarted.restart();
    let after_restart = sink.with(|c| c.count(restarted.id()));
    sink.wait_until("the restarted container's new lines", |c| {
        c.count(restarted.id()) >= after_restart + 300
    })
    .await;
    restarted.stop();
}

/// Waits for `again`'s task to complete after its 300 lines, starts it again, and waits for
/// the second run's lines and completion.
async fn start_again_after_its_exit(harness: &Harness, again: &Container) {
    let sink = &harness.sink;
    harness
        .wait_task(
            again.id(),
            "completed after its container exited",
            |state| state == Some(TaskState::Completed),
        )
        .await;
    sink.wait_until("the first run of the container started again", |c| {
        c.count(again.id()) >= 300
    })
    .await;
    again.start();
    sink.wait_until("both runs of the container started again", |c| {
        c.count(again.id()) >= 600
    })
    .await;
    harness
        .wait_task(again.id(), "completed after its second run", |state| {
            state == Some(TaskState::Completed)
        })
        .await;
}

/// Removes `removed` once its 200 lines are read; its task leaves with it.
async fn remove_once_read(harness: &Harness, removed: Container) {
    harness
        .sink
        .wait_until("the removed container's lines", |c| {
            c.count(removed.id()) >= 200
        })
        .await;
    let removed_id = removed.id().to_owned();
    removed.remove();
    harness
        .wait_task(&removed_id, "removed with its container", |state| {
            state.is_none()
        })
        .await;
}

/// How many runs of container `id` the report saw.
fn runs(report: &Report, id: &str) -> usize {
    report
        .sequences
        .iter()
        .filter(|s| s.key.container == id)
        .map(|s| s.key.run.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// An unreachable daemon is reported `disconnected` with the operating system's reason, in
/// `/health`'s `last_error` as in the log, not only "cannot reach Docker".
#[tokio::test]
async fn an_unreachable_daemon_is_reported_with_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on any more: connecting is refused.
    let refused = dir.path().join("refused.sock");
    drop(std::os::unix::net::UnixListener::bind(&refused).unwrap());
    let missing = dir.path().join("missing.sock");
    for (socket, reason) in [(&missing, "not found"), (&refused, "Connection refused")] {
        let data_dir = tempfile::tempdir().unwrap();
        let config = docker_source::DockerConfig {
            host: Some(format!("unix://{}", socket.display())),
            ..config("unreachable")
        };
        let mut harness = Harness::start(config, data_dir.path(), Sink::default());
        let status = tokio::time::timeout(
            harness::WAIT,
            harness.status_rx.wait_for(|s| s.last_error.is_some()),
        )
        .await
        .expect("an error is reported")
        .unwrap()
        .clone();
        assert_eq!(status.state, DockerState::Disconnected);
        let error = status.last_error.unwrap();
        assert!(error.contains(reason), "{error:?} does not say {reason:?}");
        harness.stop().await;
    }
}
