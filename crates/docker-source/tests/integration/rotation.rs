//! Docker's log rotation: the lines it sends again after each rotation are skipped (and
//! counted), so the pipeline gets every line once.

use crate::harness::{self, Harness, Sink, config, counter, docker_line_count, loggen, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_docker_sends_again_around_a_rotation_are_delivered_once() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("rotation");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());
    let lines = 40_000;
    // About 25 rotations of 100 kB files; five files, so Docker keeps what a follower that
    // falls a little behind still has to read.
    let container = loggen(
        &label,
        &["--log-opt", "max-size=100k", "--log-opt", "max-file=5"],
        &[
            "--tag",
            "rot",
            "--lines",
            &lines.to_string(),
            "--rate",
            "5000",
            "--stream",
            "both",
        ],
    );
    let id = container.id().to_owned();
    harness
        .sink
        .collected
        .lock()
        .unwrap()
        .checker
        .expect(&id, "rot", lines);
    harness
        .wait_task(&id, "completed after the container exited", |state| {
            state == Some(capture_core::status::TaskState::Completed)
        })
        .await;
    harness.sink.with(|c| {
        let report = c.report();
        report.assert_perfect();
        assert_eq!(c.count(&id), 2 * lines as usize);
    });
    let repeated = counter("log_capturer_lines_skipped_total", Some(("reason", "repeated")));
    assert!(repeated > 0, "Docker sent lines again around its rotations");
    // What Docker still has is the tail; everything it has was delivered.
    assert!(docker_line_count(&id) <= 2 * lines as usize);
    harness.stop().await;
}
