//! Multiline events against the real daemon: real traces printed by a container become one
//! line each, per stream; a source stopped while a trace is held resumes it whole, once.

use std::time::Duration;

use capture_core::LogStream;
use docker_source::{DockerConfig, MULTILINE_LABEL, MultilineConfig, MultilinePreset, ReadMode};
use test_support::docker::{Container, busybox_image};

use crate::harness::{self, Collected, Harness, Sink, config, counter, unique};

const JAVA: &str = include_str!("../../src/multiline/fixtures/java_uncaught.txt");
const PYTHON: &str = include_str!("../../src/multiline/fixtures/python_logged_chained.txt");

fn trimmed(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// A busybox container with the test label, `labels`, the environment `env` and a shell
/// `script`.
fn shell(
    label: &str,
    labels: &[String],
    env: &[(&str, &str)],
    mounts: &[String],
    script: &str,
) -> Container {
    let name = unique("lc-ml");
    let mut args = vec![
        "--name".to_owned(),
        name,
        "--label".to_owned(),
        format!("lc-test={label}"),
    ];
    for extra in labels {
        args.extend(["--label".to_owned(), extra.clone()]);
    }
    for (key, value) in env {
        args.extend(["--env".to_owned(), format!("{key}={value}")]);
    }
    for mount in mounts {
        args.extend(["--volume".to_owned(), mount.clone()]);
    }
    args.extend([
        busybox_image().to_owned(),
        "sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Container::run(&args)
}

fn messages(collected: &Collected, id: &str, stream: LogStream) -> Vec<String> {
    collected
        .lines
        .get(id)
        .map(|lines| {
            lines
                .iter()
                .filter(|line| line.stream == stream)
                .map(|line| line.message.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn python_rule(flush_timeout: Duration) -> MultilineConfig {
    MultilineConfig {
        name: "py".to_owned(),
        match_labels: vec!["lc-ml=py".to_owned()],
        preset: Some(MultilinePreset::Python),
        flush_timeout,
        ..MultilineConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_python_traces_become_one_event_each_on_their_own_stream() {
    traces_become_one_event_each_on_their_own_stream(ReadMode::Api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_python_traces_read_from_files_become_one_event_each_on_their_own_stream() {
    traces_become_one_event_each_on_their_own_stream(ReadMode::Files).await;
}

async fn traces_become_one_event_each_on_their_own_stream(read_mode: ReadMode) {
    let _shared = harness::process_lock().read().await;
    let label = unique("multiline");
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig {
        multiline: vec![python_rule(Duration::from_millis(300))],
        read_mode,
        ..config(&label)
    };
    let events_before = counter("log_capturer_multiline_events_total", None);
    let harness = Harness::start(config, dir.path(), Sink::default());
    // The label turns the Java preset on; stdout lines that look like frames are not joined
    // to the stderr trace.
    let java = shell(
        &label,
        &[format!("{MULTILINE_LABEL}=java")],
        &[("TRACE", trimmed(JAVA))],
        &[],
        "echo starting; printf '%s\\n' \"$TRACE\" >&2; printf '\\tat stdout line\\n'; \
         echo 'stderr after' >&2; exec sleep 600",
    );
    // A configured rule (by label match) turns Python on; the last traceback ends the burst and
    // is sent by flush_timeout while the container still runs.
    let python = shell(
        &label,
        &["lc-ml=py".to_owned()],
        &[("TRACE", trimmed(PYTHON))],
        &[],
        "printf '%s\\n' \"$TRACE\" >&2; exec sleep 600",
    );
    let python_lines: Vec<&str> = trimmed(PYTHON).split('\n').collect();
    let second = python_lines
        .iter()
        .rposition(|line| line.starts_with("Traceback"))
        .unwrap();
    harness
        .sink
        .wait_until("both traces", |c| {
            messages(c, java.id(), LogStream::Stderr).len() >= 2
                && messages(c, python.id(), LogStream::Stderr).len() >= 3
        })
        .await;
    harness.sink.with(|c| {
        assert_eq!(
            messages(c, java.id(), LogStream::Stderr),
            [trimmed(JAVA), "stderr after"]
        );
        assert_eq!(
            messages(c, java.id(), LogStream::Stdout),
            ["starting", "\tat stdout line"]
        );
        assert_eq!(
            messages(c, python.id(), LogStream::Stderr),
            [
                python_lines[0].to_owned(),
                python_lines[1..second].join("\n"),
                python_lines[second..].join("\n"),
            ]
        );
        assert_eq!(c.out_of_order_positions, 0);
    });
    assert!(
        counter("log_capturer_multiline_events_total", None) >= events_before + 3,
        "the joined events are counted"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_in_the_middle_of_a_trace_delivers_it_whole_and_once_after_restart() {
    stopped_in_the_middle_of_a_trace(ReadMode::Api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_source_stopped_in_the_middle_of_a_trace_delivers_it_whole_and_once_after_restart() {
    stopped_in_the_middle_of_a_trace(ReadMode::Files).await;
}

async fn stopped_in_the_middle_of_a_trace(read_mode: ReadMode) {
    let _shared = harness::process_lock().read().await;
    let label = unique("multiline-resume");
    let dir = tempfile::tempdir().unwrap();
    let control = tempfile::tempdir().unwrap();
    // A long flush_timeout: the half trace is surely still held when the source stops.
    let rule = MultilineConfig {
        name: "java-slow".to_owned(),
        match_labels: vec![format!("lc-test={label}")],
        preset: Some(MultilinePreset::Java),
        flush_timeout: Duration::from_secs(30),
        ..MultilineConfig::default()
    };
    let config = DockerConfig {
        multiline: vec![rule],
        read_mode,
        ..config(&label)
    };
    let lines: Vec<&str> = trimmed(JAVA).split('\n').collect();
    let (head, tail) = lines.split_at(lines.len() / 2);
    let sink = Sink::default();
    let first = Harness::start(config.clone(), dir.path(), sink.clone());
    let container = shell(
        &label,
        &[],
        &[("HEAD", &head.join("\n")), ("TAIL", &tail.join("\n"))],
        &[format!("{}:/ctl", control.path().display())],
        "echo before >&2; printf '%s\\n' \"$HEAD\" >&2; echo marker; sleep 0.2; echo marker2; \
         until [ -e /ctl/go ]; do sleep 0.05; done; \
         printf '%s\\n' \"$TAIL\" >&2; echo after >&2; exec sleep 600",
    );
    sink.wait_until("the lines around the first half of the trace", |c| {
        messages(c, container.id(), LogStream::Stdout) == ["marker", "marker2"]
            && messages(c, container.id(), LogStream::Stderr) == ["before"]
    })
    .await;
    first.stop().await;
    sink.with(|c| {
        assert_eq!(
            messages(c, container.id(), LogStream::Stderr),
            ["before"],
            "nothing of the held trace was sent"
        );
    });
    std::fs::write(control.path().join("go"), b"").unwrap();

    let second = Harness::start(config, dir.path(), sink.clone());
    sink.wait_until("the rest of the trace", |c| {
        messages(c, container.id(), LogStream::Stderr).len() >= 3
    })
    .await;
    sink.with(|c| {
        assert_eq!(
            messages(c, container.id(), LogStream::Stderr),
            ["before", trimmed(JAVA), "after"],
            "the trace is one event, sent once, and nothing before it is sent again"
        );
        assert_eq!(
            messages(c, container.id(), LogStream::Stdout),
            ["marker", "marker2"]
        );
        assert_eq!(c.out_of_order_positions, 0);
    });
    second.stop().await;
}
