//! File mode under rotation against the real daemon, at several rates and `max-file`s: every
//! line Docker kept is read once and in order, and every line lost is in a rotated file Docker
//! deleted before the agent could open it, counted.
//!
//! How much is lost depends on the machine (a starved agent looks late); what may not happen
//! does not: a duplicate, a line out of order, a loss that the counters do not account for
//! (lines lost = files counted × lines a rotated file holds).

use capture_core::status::TaskState;
use test_support::docker::Container;

use crate::{
    files::{LOST, args, fast},
    harness::{self, Collected, Harness, Sink, config_files, counter, loggen, unique},
};

/// One scenario: the driver, its rotation options and the writer.
struct Rotation {
    driver: &'static str,
    max_size: &'static str,
    max_size_bytes: u64,
    max_file: u32,
    /// Lines per second per stream (both streams write); 0: as fast as Docker takes them.
    rate: u64,
    /// Lines per stream.
    lines: u64,
}

/// The container of `case`: it writes once its task follows (after two seconds).
fn start_writer(label: &str, case: &Rotation) -> Container {
    let max_size = format!("max-size={}", case.max_size);
    let max_file = format!("max-file={}", case.max_file);
    let writer = [
        "--delay-secs".to_owned(),
        "2".to_owned(),
        "--rate".to_owned(),
        case.rate.to_string(),
    ];
    loggen(
        label,
        &[
            "--log-driver",
            case.driver,
            "--log-opt",
            &max_size,
            "--log-opt",
            &max_file,
        ],
        &args(&[fast("rot", case.lines, 100, "both"), writer.to_vec()].concat()),
    )
}

/// No duplicate, nothing out of order, and the lines lost are those of the `files_lost` files
/// counted, `per_file` lines each (within a small slack).
fn assert_losses_counted(c: &Collected, case: &Rotation, id: &str, files_lost: u64, per_file: u64) {
    let report = c.report();
    assert_eq!(report.duplicated(), 0, "{report:?}");
    assert_eq!(c.out_of_order_positions, 0);
    assert!(
        report
            .sequences
            .iter()
            .all(|s| s.out_of_order == 0 && s.wrong_stream == 0),
        "{report:?}"
    );
    let lost = report.lost();
    let expected = files_lost * per_file;
    // A rotated file holds `max-size` and up to one entry more; entries differ by a few
    // bytes (Docker trims trailing zeros of the timestamp).
    let slack = files_lost * per_file / 50 + files_lost;
    assert!(
        lost.abs_diff(expected) <= slack,
        "{lost} lines lost, {files_lost} files of ~{per_file} lines counted; missing: {:?}; in Docker's files: {:?}",
        missing_ranges(&c.lines[id], case.lines),
        where_in_files(id, &missing_ranges(&c.lines[id], case.lines))
    );
    tracing::info!(
        driver = case.driver,
        max_size = case.max_size,
        max_file = case.max_file,
        rate = case.rate,
        lost,
        files_lost,
        "rotation: lines lost in counted files"
    );
}

async fn rotation(case: Rotation) {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("rotate");
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness::start(config_files(&label), dir.path(), Sink::default());
    let lost_before = counter(LOST, Some(("reason", "rotated")));
    let sent_before = lines_sent();
    let container = start_writer(&label, &case);
    // Lines written before the agent opened the files and rotated out of Docker's `max-file`
    // before it could are gone for any reader: the writer starts once the task follows.
    harness
        .wait_task(container.id(), "the file task runs", |s| {
            s == Some(TaskState::Running)
        })
        .await;
    harness
        .sink
        .collected
        .lock()
        .unwrap()
        .checker
        .expect(container.id(), "rot", case.lines);
    assert_eq!(container.wait_exit(), 0);
    harness
        .wait_task(container.id(), "the task reads to the end", |s| {
            s == Some(TaskState::Completed)
        })
        .await;
    // The task completed once its last batch was in the pipeline's channel: every line it
    // sent reaches the sink.
    let sent = lines_sent() - sent_before;
    harness
        .sink
        .wait_until("every line sent", |c| {
            c.count(container.id()) as u64 >= sent
        })
        .await;
    let files_lost = counter(LOST, Some(("reason", "rotated"))) - lost_before;
    let per_file = lines_per_file(&case, container.id());
    harness
        .sink
        .with(|c| assert_losses_counted(c, &case, container.id(), files_lost, per_file));
    harness.stop().await;
}

/// Lines the source sent into the pipeline, so far.
fn lines_sent() -> u64 {
    ["stdout", "stderr"]
        .iter()
        .map(|stream| counter("log_capturer_lines_total", Some(("stream", stream))))
        .sum()
}

/// The sequence numbers missing per stream, as ranges.
fn missing_ranges(lines: &[harness::Captured], expected: u64) -> Vec<(String, u64, u64)> {
    let mut ranges = Vec::new();
    for stream in ["out", "err"] {
        let mut seen = vec![false; expected as usize];
        for line in lines {
            let mut fields = line.message.split(' ');
            if fields.nth(2) == Some(stream)
                && let Some(seq) = fields.next().and_then(|s| s.parse::<usize>().ok())
                && seq < seen.len()
            {
                seen[seq] = true;
            }
        }
        let mut start = None;
        for (seq, present) in seen.iter().chain([&true]).enumerate() {
            match (present, start) {
                (false, None) => start = Some(seq),
                (true, Some(from)) => {
                    ranges.push((stream.to_owned(), from as u64, seq as u64 - 1));
                    start = None;
                }
                _ => {}
            }
        }
    }
    ranges
}

/// Where Docker's files (those it still has) hold the first and last line of each range:
/// file, line number and how many lines the file has.
fn where_in_files(id: &str, ranges: &[(String, u64, u64)]) -> Vec<String> {
    let path = test_support::docker::docker(&["inspect", "--format", "{{.LogPath}}", id]);
    let live = path.trim().to_owned();
    let mut found = Vec::new();
    for suffix in ["", ".1", ".2"] {
        let file = format!("{live}{suffix}");
        let Ok(content) = std::fs::read_to_string(&file) else {
            continue;
        };
        let total = content.lines().count();
        for (number, line) in content.lines().enumerate() {
            for (stream, first, last) in ranges {
                for seq in [first, last] {
                    if line.contains(&format!(" {stream} {seq:06} "))
                        || line.contains(&format!(" {stream} {seq} "))
                    {
                        found.push(format!(
                            "{stream} {seq} in '{suffix}' line {number}/{total}"
                        ));
                    }
                }
            }
        }
    }
    found
}

/// How many lines a rotated file holds: `max-size` over the size of one entry (the live
/// file's first; json-file entries of one writer differ by a few bytes).
fn lines_per_file(case: &Rotation, id: &str) -> u64 {
    let path = test_support::docker::docker(&["inspect", "--format", "{{.LogPath}}", id]);
    let entry = match std::fs::read(path.trim()) {
        Ok(content) if case.driver == "json-file" => content
            .iter()
            .position(|b| *b == b'\n')
            .map_or(0, |end| end as u64 + 1),
        // `local`: a length-prefixed protobuf entry, about the line and its framing.
        _ => 0,
    };
    case.max_size_bytes / entry.max(130)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_at_2000_lines_a_second_loses_nothing_uncounted() {
    rotation(Rotation {
        driver: "json-file",
        max_size: "100k",
        max_size_bytes: 100_000,
        max_file: 3,
        rate: 1000,
        lines: 10_000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_at_20000_lines_a_second_loses_nothing_uncounted() {
    rotation(Rotation {
        driver: "json-file",
        max_size: "1m",
        max_size_bytes: 1_000_000,
        max_file: 3,
        rate: 10_000,
        lines: 100_000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_at_full_speed_loses_nothing_uncounted() {
    rotation(Rotation {
        driver: "json-file",
        max_size: "1m",
        max_size_bytes: 1_000_000,
        max_file: 3,
        rate: 0,
        lines: 100_000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_max_file_1_at_20000_lines_a_second_loses_nothing_uncounted() {
    rotation(Rotation {
        driver: "json-file",
        max_size: "1m",
        max_size_bytes: 1_000_000,
        max_file: 1,
        rate: 10_000,
        lines: 100_000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_with_max_file_1_at_full_speed_loses_nothing_uncounted() {
    rotation(Rotation {
        driver: "json-file",
        max_size: "1m",
        max_size_bytes: 1_000_000,
        max_file: 1,
        rate: 0,
        lines: 100_000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rotation_with_compression_under_load_loses_nothing_uncounted() {
    rotation(Rotation {
        driver: "local",
        max_size: "1m",
        max_size_bytes: 1_000_000,
        max_file: 3,
        rate: 10_000,
        lines: 100_000,
    })
    .await;
}
