//! `/health` and `/metrics` of a capturer watching real containers.

use std::time::Duration;

use end_to_end::{Capturer, container_tasks, metric_value, unique_label};
use test_support::docker::{self, Container};

/// Every metric name the contract promises on `/metrics`.
const CONTRACT_METRICS: &[&str] = &[
    "task_failures_total",
    "task_last_heartbeat",
    "task_restarts_total",
    "tasks",
    "log_capturer_lines_total",
    "log_capturer_bytes_total",
    "log_capturer_containers_monitored",
    "log_capturer_lines_dropped_total",
    "log_capturer_stream_reconnects_total",
    "log_capturer_sink_events_total",
    "log_capturer_sink_buffered_events",
    "log_capturer_sink_request_duration_seconds",
    "log_capturer_config_reloads_total",
    "process_open_fds",
    "process_resident_memory_bytes",
    "tokio_alive_tasks",
];

fn label_arg(label: &str) -> String {
    format!("log-capturer-e2e={label}")
}

fn start_generator(label: &str, tag: &str, extra: &[&str]) -> Container {
    let image = docker::loggen_image();
    let label = label_arg(label);
    let mut args = vec!["--label", &label, image, "--tag", tag];
    args.extend_from_slice(extra);
    Container::run(&args)
}

fn timestamp(value: &serde_json::Value) -> jiff::Timestamp {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 timestamp: {value}"))
}

#[test]
fn health_lists_one_running_task_per_container_and_metrics_follow_the_contract() {
    let label = unique_label("health");
    let containers: Vec<Container> = (0..3)
        .map(|i| {
            start_generator(
                &label,
                &format!("c{i}"),
                &["--lines", "0", "--rate", "20", "--stream", "both"],
            )
        })
        .collect();
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--include-label",
            &label_arg(&label),
            "--heartbeat-interval",
            "1s",
            "--task-timeout",
            "10s",
        ],
    );

    let health = capturer.wait_health(Duration::from_secs(30), "3 running tasks", |health| {
        container_tasks(health, "running").len() == 3
    });
    for container in &containers {
        let id = format!("container_{}", container.id());
        let task = container_tasks(&health, "running")
            .into_iter()
            .find(|task| task["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no running task {id}: {health:#}"));
        assert_eq!(task["type"], "container");
    }
    assert_eq!(capturer.get("/ready").0, 200);
    assert_eq!(capturer.get("/live").0, 200);

    // Heartbeats stay fresh: within two intervals of the report's own timestamp.
    let health = capturer.wait_health(Duration::from_secs(10), "fresh heartbeats", |health| {
        let now = timestamp(&health["timestamp"]);
        let tasks = container_tasks(health, "running");
        tasks.len() == 3
            && tasks.iter().all(|task| {
                let started = timestamp(&task["started_at"]);
                let beat = timestamp(&task["last_heartbeat"]);
                // Only judge once the task has lived past a couple of intervals.
                now.duration_since(started).as_secs_f64() > 2.5
                    && now.duration_since(beat).as_secs_f64() <= 2.0
            })
    });
    assert_eq!(health["status"], "healthy", "{health:#}");

    let metrics = capturer.wait_metrics_with_lines();
    for name in CONTRACT_METRICS {
        // A histogram renders as its `_bucket`, `_sum` and `_count` series.
        let present = ["", "_bucket", "_sum", "_count"].iter().any(|suffix| {
            let series = format!("{name}{suffix}");
            metrics.lines().any(|line| {
                line.starts_with(&series) && line[series.len()..].starts_with([' ', '{'])
            })
        });
        assert!(present, "/metrics lacks {name}:\n{metrics}");
    }
    assert_eq!(
        metric_value(&metrics, "log_capturer_containers_monitored"),
        Some(3.0),
        "{metrics}"
    );

    // A container that exits leaves `running`.
    containers[0].stop();
    let gone = format!("container_{}", containers[0].id());
    capturer.wait_health(
        Duration::from_secs(20),
        "the stopped container's task to leave running",
        |health| {
            container_tasks(health, "running").len() == 2
                && !container_tasks(health, "running")
                    .iter()
                    .any(|task| task["id"] == gone.as_str())
        },
    );
}

#[test]
fn a_silent_container_is_not_a_dead_task() {
    let label = unique_label("silence");
    let _silent = start_generator(&label, "quiet", &["--lines", "1", "--hold-secs", "120"]);
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--include-label",
            &label_arg(&label),
            "--heartbeat-interval",
            "1s",
            "--task-timeout",
            "3s",
        ],
    );
    capturer.wait_health(
        Duration::from_secs(30),
        "the silent container's task",
        |health| container_tasks(health, "running").len() == 1,
    );
    // Watch for 20 s of silence: the task must stay running with no failure at any check.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let health = capturer.health();
        assert_eq!(container_tasks(&health, "running").len(), 1, "{health:#}");
        let task = container_tasks(&health, "running")[0];
        assert_eq!(task["restarts"], 0, "{health:#}");
        let failures = metric_value(
            &capturer.metrics(),
            "task_failures_total{type=\"container\"}",
        );
        assert!(
            failures.unwrap_or(0.0) == 0.0,
            "a silent task was declared failed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until `/metrics` shows lines captured (so every data-path metric has a sample).
trait WaitMetrics {
    fn wait_metrics_with_lines(&self) -> String;
}

impl WaitMetrics for Capturer {
    fn wait_metrics_with_lines(&self) -> String {
        let started = std::time::Instant::now();
        loop {
            let metrics = self.metrics();
            let has_lines = metrics.lines().any(|line| {
                line.starts_with("log_capturer_sink_events_total") && !line.ends_with(" 0")
            });
            if has_lines {
                return metrics;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no lines delivered: {metrics}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
