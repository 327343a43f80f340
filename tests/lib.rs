//! Helpers for the end-to-end tests: the file sink read back into a line checker. The real
//! `log-capturer` binary as a child process ([`Capturer`]: `$CAPTURER_BIN_UNDER_TEST` when set,
//! which `cargo xtask test` builds first, else built into `target/e2e`) is test-support's, as are
//! the Docker helpers.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use test_support::{checker::LineChecker, wait};

pub use test_support::{
    capturer::{Capturer, capturer_binary, container_tasks},
    metrics::metric_value,
};

/// Reads every record of one file sink file (none if it does not exist yet).
pub fn file_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A last line without its newline is still being written: it is read next time.
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| {
            let line = line.trim_end_matches('\n');
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON record ({e}): {line}", path.display()))
        })
        .collect()
}

/// Reads every record of the file sink under `data_dir` (the live file and rotated ones).
pub fn file_sink_records(data_dir: &Path) -> Vec<serde_json::Value> {
    let dir = data_dir.join("logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        if file.extension().is_some_and(|ext| ext == "gz") {
            continue;
        }
        records.extend(file_records(&file));
    }
    records
}

/// Waits until the file sink under `data_dir` holds `expected` records (or fails after
/// `timeout`).
pub fn wait_records(data_dir: &Path, expected: usize, timeout: Duration) {
    let what = format!("{expected} records");
    let waited = wait::until_every(Duration::from_millis(250), timeout, &what, || {
        Ok(file_sink_records(data_dir).len() >= expected)
    });
    if let Err(error) = waited {
        let count = file_sink_records(data_dir).len();
        panic!("{error:#}: only {count} of {expected}");
    }
}

/// Feeds file sink records into a checker keyed by container id.
pub fn check_records(records: &[serde_json::Value], checker: &mut LineChecker) {
    for record in records {
        let (Some(id), Some(stream), Some(message)) = (
            record["container_id"].as_str(),
            record["stream"].as_str(),
            record["message"].as_str(),
        ) else {
            panic!("record without container_id/stream/message: {record}");
        };
        checker.record(id, stream, message);
    }
}

/// A unique label value for this test run, so each test's capturer only watches its own
/// containers (`--include-label log-capturer-e2e=<value>`).
pub use test_support::docker::unique_name as unique_label;
