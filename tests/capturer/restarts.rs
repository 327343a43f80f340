//! A capturer stopped under load (gracefully or with SIGKILL) and started again captures every
//! line exactly once in its file sink.

use std::time::Duration;

use end_to_end::{Capturer, check_records, file_sink_records, unique_label, wait_records};
use test_support::{
    checker::LineChecker,
    docker::{self, Container},
};

const CONTAINERS: usize = 3;
const LINES_PER_STREAM: u64 = 40_000;

fn start_load(label: &str) -> Vec<Container> {
    let image = docker::loggen_image();
    let label = format!("log-capturer-e2e={label}");
    (0..CONTAINERS)
        .map(|i| {
            let tag = format!("load{i}");
            let lines = LINES_PER_STREAM.to_string();
            Container::run(&[
                "--label", &label, image, "--tag", &tag, "--lines", &lines, "--rate", "10000",
                "--stream", "both", "--size", "100",
            ])
        })
        .collect()
}

fn assert_exactly_once(data_dir: &std::path::Path, containers: &[Container]) {
    let records = file_sink_records(data_dir);
    let mut checker = LineChecker::default();
    for (i, container) in containers.iter().enumerate() {
        checker.expect(container.id(), &format!("load{i}"), LINES_PER_STREAM);
    }
    check_records(&records, &mut checker);
    let report = checker.report();
    report.assert_perfect();
    assert_eq!(
        report.total_lines(),
        CONTAINERS as u64 * 2 * LINES_PER_STREAM,
        "lines captured"
    );
    assert_eq!(
        records.len() as u64,
        report.total_lines(),
        "duplicate records"
    );
}

fn stop_and_restart(signal: &str) {
    let label = unique_label(&format!("restart-{signal}"));
    let data_dir = tempfile::tempdir().unwrap();
    // Containers that run before the first start follow read_from; read them whole.
    let containers = start_load(&label);
    let mut first = Capturer::start(
        data_dir.path(),
        &[
            "--include-label",
            &format!("log-capturer-e2e={label}"),
            "--config",
            &write_read_from_beginning(data_dir.path()),
        ],
    );
    wait_records(data_dir.path(), 5_000, Duration::from_secs(60));
    first.signal(signal);
    let status = first.wait_exit(Duration::from_secs(15));
    if signal == "TERM" {
        assert!(
            status.success(),
            "exit after SIGTERM: {status}\n{}",
            first.log_text()
        );
    }
    drop(first);

    let _second = Capturer::start(
        data_dir.path(),
        &[
            "--include-label",
            &format!("log-capturer-e2e={label}"),
            "--config",
            &write_read_from_beginning(data_dir.path()),
        ],
    );
    let expected = CONTAINERS * 2 * LINES_PER_STREAM as usize;
    wait_records(data_dir.path(), expected, Duration::from_secs(120));
    for container in &containers {
        container.wait_exit();
    }
    assert_exactly_once(data_dir.path(), &containers);
}

fn write_read_from_beginning(data_dir: &std::path::Path) -> String {
    let path = data_dir.join("config.toml");
    std::fs::write(&path, "[docker]\nread_from = \"beginning\"\n").unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn sigterm_under_load_then_restart_captures_every_line_once() {
    stop_and_restart("TERM");
}

#[test]
fn sigkill_under_load_then_restart_captures_every_line_once() {
    stop_and_restart("KILL");
}

/// How long the capturer stays down after the containers exited (see [`downtime`]).
const DOWNTIME_AFTER_EXIT: Duration = Duration::from_secs(8);

/// With the default `read_from = "end"`: a container the capturer followed keeps writing and
/// exits while the capturer is down, and a job starts, writes and exits meanwhile; the next
/// start (on the same data dir) reads both to their end, exactly once.
fn downtime(signal: &str) {
    let label = unique_label(&format!("downtime-{signal}"));
    let label_arg = format!("log-capturer-e2e={label}");
    let data_dir = tempfile::tempdir().unwrap();
    let image = docker::loggen_image();
    let mut first = Capturer::start(data_dir.path(), &["--include-label", &label_arg]);
    let followed = Container::run(&[
        "--label", &label_arg, image, "--tag", "followed", "--lines", "3000", "--rate", "1000",
    ]);
    wait_records(data_dir.path(), 300, Duration::from_secs(60));
    first.signal(signal);
    first.wait_exit(Duration::from_secs(15));
    drop(first);
    let job = Container::run(&[
        "--label", &label_arg, image, "--tag", "job", "--lines", "3000", "--stream", "both",
    ]);
    followed.wait_exit();
    job.wait_exit();
    // The downtime itself, not a synchronisation: longer than the few seconds of events the
    // capturer asks Docker to replay when it connects, so only its saved state can tell it
    // what happened meanwhile (as after a real upgrade or crash).
    std::thread::sleep(DOWNTIME_AFTER_EXIT);

    let _second = Capturer::start(data_dir.path(), &["--include-label", &label_arg]);
    wait_records(data_dir.path(), 9_000, Duration::from_secs(120));
    let records = file_sink_records(data_dir.path());
    let mut checker = LineChecker::default();
    checker.expect(followed.id(), "followed", 3000);
    checker.expect(job.id(), "job", 3000);
    check_records(&records, &mut checker);
    checker.report().assert_perfect();
    assert_eq!(records.len(), 9_000, "duplicate records");
}

#[test]
fn containers_that_ran_while_the_agent_was_stopped_are_captured_once() {
    downtime("TERM");
}

#[test]
fn containers_that_ran_while_the_agent_was_killed_are_captured_once() {
    downtime("KILL");
}
