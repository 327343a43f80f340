//! Multiline events through the real binary: a container printing a known Java and a known
//! Python trace gives one record each in the file sink, also when the capturer is killed
//! (SIGKILL) in the middle of a trace and started again.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use end_to_end::{Capturer, file_sink_records, unique_label};
use test_support::docker::{Container, busybox_image};

const JAVA: &str =
    include_str!("../../crates/docker-source/src/multiline/fixtures/java_uncaught.txt");
const PYTHON: &str =
    include_str!("../../crates/docker-source/src/multiline/fixtures/python_logged_chained.txt");

fn trimmed(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// A configuration file: read containers from their first line, a Python rule for containers
/// labelled `lc-ml=py`, and a Java rule with a long `flush_timeout` for `lc-ml=java-slow`.
fn write_config(data_dir: &Path) -> String {
    let path = data_dir.join("config.toml");
    std::fs::write(
        &path,
        "[docker]\nread_from = \"beginning\"\n\n\
         [[docker.multiline]]\nname = \"py\"\nmatch_labels = [\"lc-ml=py\"]\npreset = \"python\"\nflush_timeout = \"300ms\"\n\n\
         [[docker.multiline]]\nname = \"java-slow\"\nmatch_labels = [\"lc-ml=java-slow\"]\npreset = \"java\"\nflush_timeout = \"30s\"\n",
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn start(data_dir: &Path, label: &str) -> Capturer {
    Capturer::start(
        data_dir,
        &[
            "--include-label",
            &format!("log-capturer-e2e={label}"),
            "--config",
            &write_config(data_dir),
        ],
    )
}

/// A busybox container running `script` with the e2e label, `labels` and `env`.
fn shell(
    label: &str,
    labels: &[&str],
    env: &[(&str, &str)],
    mounts: &[String],
    script: &str,
) -> Container {
    let mut args = vec!["--label".to_owned(), format!("log-capturer-e2e={label}")];
    for extra in labels {
        args.extend(["--label".to_owned(), (*extra).to_owned()]);
    }
    for (key, value) in env {
        args.extend(["--env".to_owned(), format!("{key}={value}")]);
    }
    for mount in mounts {
        args.extend(["--volume".to_owned(), mount.clone()]);
    }
    args.extend([busybox_image(), "sh", "-c", script].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Container::run(&args)
}

/// The messages the file sink holds for `container` on `stream`, in file order.
fn messages(data_dir: &Path, container: &Container, stream: &str) -> Vec<String> {
    file_sink_records(data_dir)
        .into_iter()
        .filter(|record| record["container_id"] == container.id() && record["stream"] == stream)
        .map(|record| record["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits (bounded) until `condition` holds for the file sink's records.
fn wait_for(capturer: &Capturer, what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; log:\n{}",
            capturer.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_java_and_a_python_trace_are_one_record_each_in_the_file_sink() {
    let label = unique_label("multiline");
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = start(data_dir.path(), &label);
    let java = shell(
        &label,
        &["log-capturer.multiline=java"],
        &[("TRACE", trimmed(JAVA))],
        &[],
        "echo starting; printf '%s\\n' \"$TRACE\" >&2; exec sleep 600",
    );
    let python = shell(
        &label,
        &["lc-ml=py"],
        &[("TRACE", trimmed(PYTHON))],
        &[],
        "printf '%s\\n' \"$TRACE\" >&2; exec sleep 600",
    );
    let python_lines: Vec<&str> = trimmed(PYTHON).split('\n').collect();
    let second = python_lines
        .iter()
        .rposition(|line| line.starts_with("Traceback"))
        .unwrap();
    let expected_python = [
        python_lines[0].to_owned(),
        python_lines[1..second].join("\n"),
        python_lines[second..].join("\n"),
    ];
    // Both traces end their container's output: flush_timeout (1 s for the Java preset named by
    // the label, 300 ms for the Python rule) sends them while the containers still run.
    wait_for(&capturer, "both traces", || {
        !messages(data_dir.path(), &java, "stderr").is_empty()
            && messages(data_dir.path(), &python, "stderr").len() >= 3
    });
    assert_eq!(messages(data_dir.path(), &java, "stderr"), [trimmed(JAVA)]);
    assert_eq!(messages(data_dir.path(), &java, "stdout"), ["starting"]);
    assert_eq!(
        messages(data_dir.path(), &python, "stderr"),
        expected_python
    );
    let metrics = capturer.metrics();
    assert!(
        metrics.lines().any(
            |line| line.starts_with("log_capturer_multiline_events_total ")
                && line.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok()) >= Some(3.0)
        ),
        "the joined events are counted:\n{metrics}"
    );
}

#[test]
fn sigkill_in_the_middle_of_a_trace_then_restart_writes_it_whole_and_once() {
    let label = unique_label("multiline-kill");
    let data_dir = tempfile::tempdir().unwrap();
    let control = tempfile::tempdir().unwrap();
    let lines: Vec<&str> = trimmed(JAVA).split('\n').collect();
    let (head, tail) = lines.split_at(lines.len() / 2);
    let (head, tail) = (head.join("\n"), tail.join("\n"));
    let mut first = start(data_dir.path(), &label);
    let container = shell(
        &label,
        &["lc-ml=java-slow"],
        &[("HEAD", &head), ("TAIL", &tail)],
        &[format!("{}:/ctl", control.path().display())],
        "echo before >&2; printf '%s\\n' \"$HEAD\" >&2; echo marker; \
         until [ -e /ctl/go ]; do sleep 0.05; done; \
         printf '%s\\n' \"$TAIL\" >&2; echo after >&2; exec sleep 600",
    );
    wait_for(
        &first,
        "the lines around the first half of the trace",
        || {
            messages(data_dir.path(), &container, "stdout") == ["marker"]
                && messages(data_dir.path(), &container, "stderr") == ["before"]
        },
    );
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(15));
    assert_eq!(
        messages(data_dir.path(), &container, "stderr"),
        ["before"],
        "nothing of the held trace was written"
    );
    drop(first);
    std::fs::write(control.path().join("go"), b"").unwrap();

    let second = start(data_dir.path(), &label);
    wait_for(&second, "the rest of the trace", || {
        messages(data_dir.path(), &container, "stderr").len() >= 3
    });
    assert_eq!(
        messages(data_dir.path(), &container, "stderr"),
        ["before", trimmed(JAVA), "after"],
        "the trace is one record, written once, and nothing around it twice"
    );
    assert_eq!(messages(data_dir.path(), &container, "stdout"), ["marker"]);
}
