//! `SIGHUP` reloads the configuration of the running binary: a filter change captures a
//! container excluded before (from the reload on) and completes one included before (every line
//! up to the reload, nothing doubled); an invalid file is refused and changes nothing; a sink
//! added by a reload receives lines, and stops receiving them once removed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use end_to_end::{
    Capturer, container_tasks, file_records, file_sink_records, metric_value, unique_label,
};
use jiff::Timestamp;
use test_support::docker::{self, Container};

/// How long anything the agent does promptly may take on a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(30);

/// A loggen container writing `rate` lines per second on both streams, until stopped.
fn generator(label: &str, name: &str, tag: &str, rate: &str) -> Container {
    Container::run(&[
        "--name",
        name,
        "--label",
        &format!("log-capturer-e2e={label}"),
        docker::loggen_image(),
        "--tag",
        tag,
        "--lines",
        "0",
        "--rate",
        rate,
        "--stream",
        "both",
    ])
}

/// A config file: containers already running are read whole, plus `more`.
fn write_config(path: &Path, more: &str) {
    std::fs::write(path, format!("[docker]\nread_from = \"beginning\"\n{more}")).unwrap();
}

/// One loggen line: its tag, stream label, sequence number and Docker timestamp.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    tag: String,
    stream: String,
    seq: u64,
    at: Timestamp,
}

fn parse_message(message: &str, at: Timestamp) -> Line {
    let fields: Vec<&str> = message.split(' ').collect();
    let [tag, _run, stream, seq, ..] = fields[..] else {
        panic!("not a loggen line: {message}");
    };
    Line {
        tag: tag.to_owned(),
        stream: stream.to_owned(),
        seq: seq.parse().unwrap(),
        at,
    }
}

/// The captured loggen lines of one container, in file order.
fn captured(records: &[serde_json::Value], container: &Container) -> Vec<Line> {
    records
        .iter()
        .filter(|record| record["container_id"] == container.id())
        .map(|record| {
            let at = record["timestamp"].as_str().unwrap().parse().unwrap();
            parse_message(record["message"].as_str().unwrap(), at)
        })
        .collect()
}

/// What Docker kept of a container, with its timestamps (`docker logs --timestamps`).
fn truth(container: &Container) -> Vec<Line> {
    let output = docker::docker_output(&["logs", "--timestamps", container.id()]);
    assert!(output.status.success(), "docker logs failed");
    [output.stdout, output.stderr]
        .iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .into_owned()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|line| {
            let (at, message) = line.split_once(' ').unwrap();
            parse_message(message, at.parse().unwrap())
        })
        .collect()
}

/// Each stream's sequence numbers, sorted, duplicates kept.
fn by_stream(lines: &[Line]) -> BTreeMap<String, Vec<u64>> {
    let mut streams: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in lines {
        streams
            .entry(line.stream.clone())
            .or_default()
            .push(line.seq);
    }
    streams.values_mut().for_each(|seqs| seqs.sort_unstable());
    streams
}

/// Asserts each stream is one run of consecutive numbers, each once; returns the runs.
fn assert_contiguous_once(what: &str, lines: &[Line]) -> BTreeMap<String, (u64, u64)> {
    by_stream(lines)
        .into_iter()
        .map(|(stream, seqs)| {
            let (first, last) = (seqs[0], seqs[seqs.len() - 1]);
            let expected: Vec<u64> = (first..=last).collect();
            assert_eq!(seqs, expected, "{what} {stream}: lost or doubled lines");
            (stream, (first, last))
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task_ids(health: &serde_json::Value) -> Vec<String> {
    health["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|task| task["id"].as_str())
        .filter(|id| id.starts_with("container_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_reload_changes_a_filter_live_without_losing_or_doubling_a_line() {
    let label = unique_label("reload-filter");
    let (x_name, y_name) = (format!("{label}-x"), format!("{label}-y"));
    let x = generator(&label, &x_name, "x", "50");
    let y = generator(&label, &y_name, "y", "50");
    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("config.toml");
    write_config(&config, &format!("exclude_names = [\"{x_name}\"]\n"));
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--include-label",
            &format!("log-capturer-e2e={label}"),
        ],
    );
    wait_until("lines of y", PROMPTLY, || {
        captured(&file_sink_records(data_dir.path()), &y).len() >= 100
    });
    let (x_task, y_task) = (
        format!("container_{}", x.id()),
        format!("container_{}", y.id()),
    );
    assert_eq!(task_ids(&capturer.health()), [y_task]);

    // Swap the filter: x is captured from now on, y is completed.
    let sent_at = Timestamp::now();
    write_config(&config, &format!("exclude_names = [\"{y_name}\"]\n"));
    let logged = capturer.log_len();
    capturer.signal("HUP");
    capturer.wait_log_after(logged, PROMPTLY, &["configuration reloaded"]);
    capturer.wait_health(PROMPTLY, "x's task alone", |health| {
        task_ids(health) == [x_task.clone()] && container_tasks(health, "running").len() == 1
    });
    let y_gone_at = Timestamp::now();
    wait_until("lines of x", PROMPTLY, || {
        captured(&file_sink_records(data_dir.path()), &x).len() >= 100
    });
    x.stop();
    y.stop();
    let x_truth = truth(&x);
    wait_until("every line x wrote after the reload", PROMPTLY, || {
        let got = captured(&file_sink_records(data_dir.path()), &x);
        by_stream(&got).iter().all(|(stream, seqs)| {
            let last = x_truth
                .iter()
                .filter(|line| &line.stream == stream)
                .map(|line| line.seq)
                .max();
            seqs.last().copied() == last
        }) && !got.is_empty()
    });
    capturer.wait_health(PROMPTLY, "x's task completed", |health| {
        container_tasks(health, "running").is_empty()
    });

    let records = file_sink_records(data_dir.path());
    // y: everything from its first line, every line written before the reload, once.
    let y_got = captured(&records, &y);
    let y_runs = assert_contiguous_once("y", &y_got);
    for (stream, seqs) in by_stream(&truth(&y)) {
        let before_reload = truth(&y)
            .iter()
            .filter(|line| line.stream == stream && line.at <= sent_at)
            .map(|line| line.seq)
            .max();
        let (first, last) = y_runs[&stream];
        assert_eq!(first, 0, "y {stream} is read from its first line");
        assert!(
            Some(last) >= before_reload,
            "y {stream}: lines before the reload missing (got to {last}, wrote {before_reload:?} by then)"
        );
        assert!(last <= *seqs.last().unwrap());
    }
    let y_last = y_got.iter().map(|line| line.at).max().unwrap();
    assert!(y_last < y_gone_at, "y was read after its task completed");
    // x: nothing before the reload; from there on, every line to its end, once.
    let x_got = captured(&records, &x);
    let x_runs = assert_contiguous_once("x", &x_got);
    let x_first = x_got.iter().map(|line| line.at).min().unwrap();
    assert!(
        x_first >= sent_at,
        "x captured from before the reload ({x_first} < {sent_at})"
    );
    assert!(
        x_first.duration_since(sent_at).as_secs_f64() < 10.0,
        "x captured only from {x_first}, long after the reload at {sent_at}"
    );
    for (stream, (_, last)) in x_runs {
        let wrote = x_truth
            .iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.seq)
            .max();
        assert_eq!(Some(last), wrote, "x {stream} is complete to its end");
    }
}

#[test]
fn a_reload_with_an_invalid_file_is_refused_and_the_running_config_stays() {
    let label = unique_label("reload-invalid");
    let name = format!("{label}-z");
    let z = generator(&label, &name, "z", "20");
    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("config.toml");
    write_config(&config, "");
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--include-label",
            &format!("log-capturer-e2e={label}"),
        ],
    );
    let count = || captured(&file_sink_records(data_dir.path()), &z).len();
    wait_until("lines of z", PROMPTLY, || count() >= 20);
    let reloads = |result: &str| {
        let series = format!("log_capturer_config_reloads_total{{result=\"{result}\"}}");
        metric_value(&capturer.metrics(), &series)
    };
    assert_eq!(
        (reloads("success"), reloads("error")),
        (Some(0.0), Some(0.0))
    );

    // An invalid value, and a filter that would exclude z if it were applied.
    write_config(
        &config,
        &format!("exclude_names = [\"{name}\"]\nmax_line_bytes = \"lots\"\n"),
    );
    let logged = capturer.log_len();
    capturer.signal("HUP");
    let refusal = capturer.wait_log_after(logged, PROMPTLY, &["configuration reload refused"]);
    assert!(refusal.contains("\"level\":\"ERROR\""), "{refusal}");
    assert!(refusal.contains("docker.max_line_bytes"), "{refusal}");
    assert_eq!(capturer.get("/live").0, 200);
    assert_eq!(
        (reloads("success"), reloads("error")),
        (Some(0.0), Some(1.0))
    );
    // The running configuration stays: z is still captured.
    let before = count();
    wait_until("z still captured", PROMPTLY, || count() >= before + 20);
    assert_eq!(container_tasks(&capturer.health(), "running").len(), 1);

    // Fixed, the same change applies; a key that needs a restart is named and kept.
    write_config(
        &config,
        &format!("exclude_names = [\"{name}\"]\nstream_threads = 2\n"),
    );
    let logged = capturer.log_len();
    capturer.signal("HUP");
    capturer.wait_log_after(logged, PROMPTLY, &["configuration reloaded"]);
    let warning = capturer.wait_log_after(logged, PROMPTLY, &["docker.stream_threads"]);
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(warning.contains("next restart"), "{warning}");
    assert_eq!(
        (reloads("success"), reloads("error")),
        (Some(1.0), Some(1.0))
    );
    capturer.wait_health(PROMPTLY, "z released", |health| task_ids(health).is_empty());
}

#[test]
fn a_sink_added_by_a_reload_receives_lines_until_a_reload_removes_it() {
    let label = unique_label("reload-sink");
    let w = generator(&label, &format!("{label}-w"), "w", "50");
    let data_dir = tempfile::tempdir().unwrap();
    let config = data_dir.path().join("config.toml");
    let main_sink = format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{}\"\n",
        data_dir.path().join("logs/containers.jsonl").display()
    );
    let extra: PathBuf = data_dir.path().join("extra/b.jsonl");
    let extra_sink = format!(
        "[[sinks]]\ntype = \"file\"\nname = \"extra\"\npath = \"{}\"\n",
        extra.display()
    );
    write_config(&config, &main_sink);
    let capturer = Capturer::start(
        data_dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--include-label",
            &format!("log-capturer-e2e={label}"),
        ],
    );
    let main_count = || captured(&file_sink_records(data_dir.path()), &w).len();
    wait_until("lines in the main sink", PROMPTLY, || main_count() >= 50);

    write_config(&config, &format!("{main_sink}{extra_sink}"));
    let logged = capturer.log_len();
    capturer.signal("HUP");
    let reloaded = capturer.wait_log_after(logged, PROMPTLY, &["configuration reloaded"]);
    assert!(reloaded.contains("extra"), "{reloaded}");
    wait_until("lines in the added sink", PROMPTLY, || {
        file_records(&extra).len() >= 50
    });
    let sinks = capturer.health()["sinks"].clone();
    assert_eq!(sinks.as_array().map(Vec::len), Some(2), "{sinks:#}");

    write_config(&config, &main_sink);
    let logged = capturer.log_len();
    capturer.signal("HUP");
    capturer.wait_log_after(logged, PROMPTLY, &["configuration reloaded"]);
    capturer.wait_health(PROMPTLY, "the removed sink gone", |health| {
        health["sinks"].as_array().map(Vec::len) == Some(1)
    });
    let extra_final = file_records(&extra).len();
    let main_now = main_count();
    wait_until("more lines in the main sink", PROMPTLY, || {
        main_count() >= main_now + 50
    });
    assert_eq!(
        file_records(&extra).len(),
        extra_final,
        "a removed sink got lines"
    );

    w.stop();
    let w_truth = truth(&w);
    wait_until("every line in the main sink", PROMPTLY, || {
        main_count() >= w_truth.len()
    });
    let main = captured(&file_sink_records(data_dir.path()), &w);
    for (stream, (first, last)) in assert_contiguous_once("main", &main) {
        let wrote = w_truth
            .iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.seq)
            .max();
        assert_eq!((first, Some(last)), (0, wrote), "main {stream}");
    }
    let added = captured(&file_records(&extra), &w);
    assert_contiguous_once("extra", &added);
    assert!(
        added.iter().all(|line| main.contains(line)),
        "the extra sink has lines the main one lacks"
    );
}
