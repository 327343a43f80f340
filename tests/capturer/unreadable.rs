//! A container whose logs cannot be read by design (`--log-driver none`) is listed under
//! `unreadable`, never a task: the agent stays `healthy` and the seeds' check passes.

use std::time::{Duration, Instant};

use end_to_end::{Capturer, container_tasks, metric_value, unique_label};
use test_support::docker::{self, Container};

fn run_labelled(label: &str, driver: &str, tag: &str) -> Container {
    let label = format!("log-capturer-e2e={label}");
    Container::run(&[
        "--network",
        "none",
        "--log-driver",
        driver,
        "--label",
        &label,
        docker::loggen_image(),
        "--tag",
        tag,
        "--lines",
        "0",
        "--rate",
        "5",
    ])
}

/// The seeds' check: `[.tasks[] | select(.id|startswith("container_"))]`, every one running.
fn container_tasks_all_running(health: &serde_json::Value) -> bool {
    let all = health["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|task| {
            task["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("container_"))
        })
        .count();
    all == container_tasks(health, "running").len() && container_tasks(health, "failed").is_empty()
}

fn unreadable_ids(health: &serde_json::Value) -> Vec<&str> {
    health["unreadable"]
        .as_array()
        .unwrap_or_else(|| panic!("/health has no unreadable array: {health:#}"))
        .iter()
        .filter_map(|entry| entry["id"].as_str())
        .collect()
}

#[test]
fn a_none_log_driver_container_is_listed_unreadable_and_the_agent_stays_healthy() {
    let label = unique_label("unreadable");
    let readable = run_labelled(&label, "json-file", "readable");
    // One found by the first listing, one by its start event.
    let before = run_labelled(&label, "none", "before");
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--include-label",
            &format!("log-capturer-e2e={label}"),
            "--heartbeat-interval",
            "1s",
            "--task-timeout",
            "10s",
        ],
    );
    let after = run_labelled(&label, "none", "after");

    let health = capturer.wait_health(
        Duration::from_secs(30),
        "one running task and two unreadable containers",
        |health| container_tasks(health, "running").len() == 1 && unreadable_ids(health).len() == 2,
    );
    let task_id = format!("container_{}", readable.id());
    assert_eq!(
        container_tasks(&health, "running")[0]["id"],
        task_id.as_str()
    );
    for container in [&before, &after] {
        let entry = health["unreadable"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == container.id())
            .unwrap_or_else(|| panic!("{} not listed: {health:#}", container.id()));
        assert_eq!(entry["driver"], "none", "{entry}");
        assert_eq!(entry["reason"], "log_driver_none", "{entry}");
        assert!(entry["name"].as_str().is_some_and(|name| !name.is_empty()));
    }

    // A `none` container used to fail at once; watch a few heartbeats for any failure.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let health = capturer.health();
        assert_eq!(health["status"], "healthy", "{health:#}");
        assert!(container_tasks_all_running(&health), "{health:#}");
        assert_eq!(container_tasks(&health, "running").len(), 1, "{health:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let metrics = capturer.metrics();
    assert_eq!(
        metric_value(&metrics, "task_failures_total{type=\"container\"}").unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "log_capturer_containers_unreadable{reason=\"log_driver_none\"}"
        ),
        Some(2.0),
        "{metrics}"
    );

    // Removed, it leaves the list.
    let removed = before.id().to_owned();
    before.remove();
    let health = capturer.wait_health(
        Duration::from_secs(20),
        "the removed container to leave the unreadable list",
        |health| unreadable_ids(health) == [after.id()],
    );
    assert!(!unreadable_ids(&health).contains(&removed.as_str()));
    assert_eq!(health["status"], "healthy", "{health:#}");
}
