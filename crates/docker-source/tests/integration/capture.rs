//! Every line arrives once, in order, on the right stream: multiplexed, TTY, long lines.

use capture_core::LogStream;

use crate::harness::{self, Harness, Sink, config, docker_line_count, loggen, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_of_several_containers_arrives_once_in_order_on_its_stream() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("capture");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());
    // Interleaved stdout/stderr as fast as loggen writes, a slow one and a stderr-only one.
    let fast = loggen(
        &label,
        &[],
        &[
            "--tag", "fast", "--lines", "20000", "--stream", "both", "--size", "100",
        ],
    );
    let slow = loggen(
        &label,
        &[],
        &["--tag", "slow", "--lines", "200", "--rate", "400"],
    );
    let errors = loggen(
        &label,
        &[],
        &["--tag", "err", "--lines", "5000", "--stream", "err"],
    );
    let expected = [
        (fast.id().to_owned(), "fast", 20_000, 40_000),
        (slow.id().to_owned(), "slow", 200, 200),
        (errors.id().to_owned(), "err", 5_000, 5_000),
    ];
    for (id, tag, per_stream, _) in &expected {
        harness
            .sink
            .collected
            .lock()
            .unwrap()
            .checker
            .expect(id, tag, *per_stream);
    }
    harness
        .sink
        .wait_until("every line of every container", |c| {
            expected
                .iter()
                .all(|(id, _, _, total)| c.count(id) >= *total)
        })
        .await;
    for (id, _, _, total) in &expected {
        assert_eq!(docker_line_count(id), *total, "docker kept every line");
    }
    harness.sink.with(|c| {
        c.report().assert_perfect();
        assert_eq!(c.out_of_order_positions, 0);
        for (id, _, _, total) in &expected {
            assert_eq!(c.count(id), *total, "no extra line for {}", &id[..12]);
        }
        let streams: Vec<LogStream> = c.lines[fast.id()].iter().map(|l| l.stream).collect();
        assert!(streams.contains(&LogStream::Stdout) && streams.contains(&LogStream::Stderr));
    });
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_container_is_captured_on_its_one_stream() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("tty");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());
    let tty = loggen(
        &label,
        &["--tty"],
        &[
            "--tag", "tty", "--lines", "3000", "--stream", "tty", "--size", "80",
        ],
    );
    harness
        .sink
        .collected
        .lock()
        .unwrap()
        .checker
        .expect(tty.id(), "tty", 3000);
    harness
        .sink
        .wait_until("3000 TTY lines", |c| c.count(tty.id()) >= 3000)
        .await;
    harness.sink.with(|c| {
        c.report().assert_perfect();
        assert_eq!(c.count(tty.id()), 3000);
        let lines = &c.lines[tty.id()];
        assert!(lines.iter().all(|l| l.stream == LogStream::Tty));
        // The terminal's carriage return is not part of the message.
        assert!(lines.iter().all(|l| !l.message.ends_with('\r')));
    });
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_merged_and_lines_over_the_limit_truncated_and_counted() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("long");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config(&label), dir.path(), Sink::default());
    let truncated_before = harness::counter(
        "log_capturer_lines_dropped_total",
        Some(("reason", "truncated")),
    );
    let medium = loggen(
        &label,
        &[],
        &["--tag", "kib40", "--lines", "3", "--size", "40960"],
    );
    let huge = loggen(
        &label,
        &[],
        &[
            "--tag", "mib3", "--lines", "2", "--size", "3145728", "--stream", "both",
        ],
    );
    harness
        .sink
        .wait_until("the long lines", |c| {
            c.count(medium.id()) >= 3 && c.count(huge.id()) >= 4
        })
        .await;
    harness.sink.with(|c| {
        c.report().assert_perfect();
        assert_eq!(c.count(medium.id()), 3);
        let lengths: Vec<_> = c.lines[medium.id()].iter().map(|l| l.len).collect();
        assert!(
            lengths.iter().all(|len| *len == 40960),
            "merged whole: {lengths:?}"
        );
        assert_eq!(c.count(huge.id()), 4);
        let lengths: Vec<_> = c.lines[huge.id()]
            .iter()
            .map(|l| (l.stream, l.len))
            .collect();
        assert!(
            lengths.iter().all(|(_, len)| *len == 1024 * 1024),
            "truncated at max_line_bytes: (stream, length) of each line {lengths:?}"
        );
    });
    let truncated = harness::counter(
        "log_capturer_lines_dropped_total",
        Some(("reason", "truncated")),
    );
    assert!(truncated >= truncated_before + 4, "truncations are counted");
    harness.stop().await;
}
