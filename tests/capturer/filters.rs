//! The container filters set by flags, against the real daemon: a container excluded by its
//! image, its name or a label (or not included by name) is never captured, while the others are
//! captured whole; `--check-config` prints the effective filter set.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use end_to_end::{Capturer, capturer_binary, file_sink_records, unique_label};
use test_support::docker::{self, Container};

/// Lines each generator writes before it exits.
const LINES: usize = 300;

/// A second tag of the loggen image, removed when dropped (the image itself stays).
struct ImageTag(String);

impl ImageTag {
    fn new(source: &str, tag: String) -> ImageTag {
        docker::docker(&["tag", source, &tag]);
        ImageTag(tag)
    }
}

impl Drop for ImageTag {
    fn drop(&mut self) {
        // Untags only: the loggen image keeps its own tag.
        let _ = docker::docker_output(&["rmi", &self.0]);
    }
}

/// `docker run` of a loggen generator named `name` from `image`, writing [`LINES`] lines.
fn generator(label: &str, name: &str, image: &str, tag: &str, extra_labels: &[&str]) -> Container {
    let label = format!("log-capturer-e2e={label}");
    let lines = LINES.to_string();
    let mut args = vec!["--name", name, "--label", &label];
    for extra in extra_labels {
        args.extend(["--label", extra]);
    }
    args.extend([image, "--tag", tag, "--lines", &lines, "--rate", "1000"]);
    Container::run(&args)
}

fn records_of(data_dir: &std::path::Path, id: &str) -> usize {
    file_sink_records(data_dir)
        .iter()
        .filter(|record| record["container_id"] == id)
        .count()
}

#[test]
fn excluded_images_names_and_labels_are_not_captured_and_the_others_are() {
    let label = unique_label("filters");
    // Names and the image tag carry the run's unique label, so no other test's containers match.
    let unique = label.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let image = docker::loggen_image();
    let skipped_image = ImageTag::new(image, format!("{image}-skip-{unique}"));
    let name = |what: &str| format!("{unique}-{what}");

    let kept = generator(&label, &name("kept"), image, "kept", &[]);
    let by_image = generator(&label, &name("image"), &skipped_image.0, "image", &[]);
    let by_name = generator(&label, &name("canary"), image, "name", &[]);
    let by_label = generator(&label, &name("label"), image, "label", &["noisy=true"]);
    let not_included = generator(&label, &format!("other-{unique}"), image, "other", &[]);
    for container in [&kept, &by_image, &by_name, &by_label, &not_included] {
        container.wait_exit();
    }

    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("config.toml");
    std::fs::write(&config, "[docker]\nread_from = \"beginning\"\n").unwrap();
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--include-label",
            &format!("log-capturer-e2e={label}"),
            "--include-name",
            &format!("{unique}-*"),
            "--exclude-name",
            "*-canary",
            "--include-image",
            "log-capturer-loggen*",
            "--exclude-image",
            &format!("*-skip-{unique}*"),
            "--exclude-label",
            "noisy=true",
            "--exclude-label",
            "never-set",
        ],
    );

    // Every container was listed at start, so the decisions were all made before the kept
    // container's lines arrive: once they are all in the file, nothing else will come.
    let started = Instant::now();
    while records_of(data_dir.path(), kept.id()) < LINES {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {LINES} lines of the kept container; log:\n{}",
            records_of(data_dir.path(), kept.id()),
            capturer.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let records = file_sink_records(data_dir.path());
    assert_eq!(records.len(), LINES, "only the kept container's lines");
    for (what, container) in [
        ("an excluded image", &by_image),
        ("an excluded name", &by_name),
        ("an excluded label", &by_label),
        ("a name not included", &not_included),
    ] {
        assert_eq!(
            records_of(data_dir.path(), container.id()),
            0,
            "{what} was captured"
        );
    }
    let health = capturer.health();
    let tasks: Vec<&str> = health["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|task| task["id"].as_str())
        .filter(|id| id.starts_with("container_"))
        .collect();
    assert_eq!(tasks, [format!("container_{}", kept.id())], "{health:#}");
}

#[test]
fn check_config_prints_the_filters_given_by_flags() {
    let output = Command::new(capturer_binary())
        .args(["--check-config", "--exclude-image", "busybox*"])
        .args(["--include-name", "web-*", "--include-name", "api-*"])
        .env("LOG_CAPTURER_DOCKER_EXCLUDE_LABELS", "noisy=true")
        .output()
        .expect("run log-capturer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("docker.exclude_images  \"busybox*\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker.include_names   \"web-*\", \"api-*\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker.exclude_labels  \"noisy=true\" (any match excludes)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("exclude_images = [\"busybox*\"]"),
        "{stdout}"
    );
}
