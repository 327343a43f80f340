//! The source stopped and started again from its checkpoint while containers keep writing.

use crate::harness::{self, Harness, Sink, config, docker_line_count, loggen, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_source_resumes_from_its_checkpoint_without_loss_or_duplicates() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("resume");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::default();
    let first = Harness::start(config(&label), dir.path(), sink.clone());
    let both = loggen(
        &label,
        &[],
        &[
            "--tag", "both", "--lines", "6000", "--rate", "1500", "--stream", "both",
        ],
    );
    let out = loggen(
        &label,
        &[],
        &["--tag", "out", "--lines", "4000", "--rate", "1000"],
    );
    sink.collected
        .lock()
        .unwrap()
        .checker
        .expect(both.id(), "both", 6000);
    sink.collected
        .lock()
        .unwrap()
        .checker
        .expect(out.id(), "out", 4000);
    sink.wait_until("some lines before the source stops", |c| {
        c.count(both.id()) >= 1000 && c.count(out.id()) >= 500
    })
    .await;
    first.stop().await;
    let before = sink.with(|c| (c.count(both.id()), c.count(out.id())));
    assert!(
        dir.path().join("checkpoints.json").exists(),
        "the checkpoint file is written at shutdown"
    );

    let second = Harness::start(config(&label), dir.path(), sink.clone());
    sink.wait_until("every line after the restart", |c| {
        c.count(both.id()) >= 12_000 && c.count(out.id()) >= 4000
    })
    .await;
    sink.with(|c| {
        c.report().assert_perfect();
        assert_eq!(c.out_of_order_positions, 0);
        assert_eq!(c.count(both.id()), 12_000);
        assert_eq!(c.count(out.id()), 4000);
        assert!(
            before.0 < 12_000,
            "the containers were still writing when the source stopped"
        );
    });
    assert_eq!(docker_line_count(both.id()), 12_000);
    second.stop().await;
}
