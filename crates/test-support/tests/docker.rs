//! The loggen image runs on the real daemon and its lines check out.

use test_support::{checker::LineChecker, docker};

#[test]
fn loggen_image_writes_countable_lines_on_both_streams() {
    let image = docker::loggen_image();
    let container =
        docker::Container::run(&[image, "--tag", "t", "--lines", "50", "--stream", "both"]);
    assert_eq!(container.wait_exit(), 0);
    let output = docker::docker_output(&["logs", container.id()]);
    let mut checker = LineChecker::default();
    checker.expect(container.id(), "t", 50);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        checker.record(container.id(), "stdout", line);
    }
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        checker.record(container.id(), "stderr", line);
    }
    let report = checker.report();
    report.assert_perfect();
    assert_eq!(report.total_lines(), 100);
}
