//! Counts what the capturer wrote against what Docker has.
//!
//! The file sink's records are read as they are written ([`FileTail`]) and every message goes to
//! a [`LineChecker`] under its container id and captured stream. At the end, each generator's
//! own log as Docker kept it (`docker logs`, taken after it stopped, or before it was removed)
//! is the ground truth: for every container, loggen run and stream, the capture must hold each
//! sequence number Docker has, exactly once and in order. A loss at the tail of a sequence (which
//! the checker alone cannot see) counts, because the truth says how long each sequence is.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use anyhow::Result;
use serde_json::Value;
use test_support::checker::{LineChecker, SequenceKey};

use test_support::tail::FileTail;

/// The file records, checked as they arrive.
#[derive(Debug)]
pub(crate) struct Accounting {
    tail: FileTail,
    checker: LineChecker,
    /// Records read so far.
    pub(crate) records: u64,
    /// Records per container id.
    per_container: HashMap<String, u64>,
    /// The exact message length expected per container id.
    line_sizes: HashMap<String, usize>,
    /// Messages whose length differs from their generator's padded size (cut or joined wrongly).
    wrong_size: HashMap<String, u64>,
    /// Records that are not JSON objects with `container_id`, `stream` and `message`.
    pub(crate) malformed: u64,
    /// Sequence lengths Docker has, by container, tag, run and stream.
    truth: BTreeMap<SequenceKey, u64>,
}

/// The outcome for one container.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerTally {
    /// Lines Docker has for it.
    pub(crate) expected: u64,
    /// Distinct lines captured.
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) wrong_stream: u64,
    pub(crate) wrong_size: u64,
    /// File records for it (duplicates included).
    pub(crate) records: u64,
}

impl ContainerTally {
    /// Whether every line arrived once, in order, whole and on its stream.
    pub(crate) fn is_perfect(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.wrong_stream == 0
            && self.wrong_size == 0
    }
}

impl Accounting {
    /// Follows the file sink's active file at `path`.
    pub(crate) fn new(path: PathBuf) -> Accounting {
        Accounting {
            tail: FileTail::new(path),
            checker: LineChecker::default(),
            records: 0,
            per_container: HashMap::new(),
            line_sizes: HashMap::new(),
            wrong_size: HashMap::new(),
            malformed: 0,
            truth: BTreeMap::new(),
        }
    }

    /// Registers a container: its messages must be exactly `line_size` bytes long, and a finite
    /// generator must produce `finite_lines` per stream.
    pub(crate) fn watch(
        &mut self,
        id: &str,
        tag: &str,
        line_size: usize,
        finite_lines: Option<u64>,
    ) {
        self.line_sizes.insert(id.to_owned(), line_size);
        if let Some(lines) = finite_lines {
            self.checker.expect(id, tag, lines);
        }
    }

    /// Reads the records written since the last call; returns how many.
    pub(crate) fn poll(&mut self) -> Result<u64> {
        let Accounting {
            tail,
            checker,
            per_container,
            line_sizes,
            wrong_size,
            malformed,
            ..
        } = self;
        let read = tail.poll(|line| {
            let Ok(record) = serde_json::from_slice::<Value>(line) else {
                *malformed += 1;
                return;
            };
            let (Some(id), Some(stream), Some(message)) = (
                record["container_id"].as_str(),
                record["stream"].as_str(),
                record["message"].as_str(),
            ) else {
                *malformed += 1;
                return;
            };
            checker.record(id, stream, message);
            *per_container.entry(id.to_owned()).or_default() += 1;
            // A terminal ends lines with CR LF; whether the CR is kept is not what this counts.
            let length = message.strip_suffix('\r').unwrap_or(message).len();
            if line_sizes.get(id).is_some_and(|&size| size != length) {
                *wrong_size.entry(id.to_owned()).or_default() += 1;
            }
        })?;
        self.records += read;
        Ok(read)
    }

    /// Records the ground truth for a container from its `docker logs` output.
    pub(crate) fn add_truth(&mut self, id: &str, stdout: &[u8], stderr: &[u8]) {
        let mut truth = LineChecker::default();
        for text in [stdout, stderr] {
            for line in String::from_utf8_lossy(text).lines() {
                // The stream argument only feeds the wrong-stream count, unused for the truth.
                truth.record(id, "stdout", line);
            }
        }
        for sequence in truth.report().sequences {
            let length = sequence.received + sequence.lost;
            self.truth.insert(sequence.key, length);
        }
    }

    /// Lines Docker has over every container with a truth recorded.
    pub(crate) fn expected_total(&self) -> u64 {
        self.truth.values().sum()
    }

    /// Lines Docker has for one container.
    pub(crate) fn expected_for(&self, id: &str) -> u64 {
        self.truth
            .iter()
            .filter(|(key, _)| key.container == id)
            .map(|(_, length)| length)
            .sum()
    }

    /// Records read for one container (duplicates included).
    pub(crate) fn records_for(&self, id: &str) -> u64 {
        self.per_container.get(id).copied().unwrap_or(0)
    }

    /// File records that were not whole loggen lines of a known container.
    pub(crate) fn foreign(&self) -> u64 {
        self.checker.report().foreign_lines
    }

    /// Partial lines left at the ends of rotated files.
    pub(crate) fn truncated(&self) -> u64 {
        self.tail.truncated_lines()
    }

    /// Records of containers that are not in `ids` (the capturer should not watch them).
    pub(crate) fn records_of_others(&self, ids: &[&str]) -> u64 {
        self.per_container
            .iter()
            .filter(|(id, _)| !ids.contains(&id.as_str()))
            .map(|(_, records)| records)
            .sum()
    }

    /// The outcome for one container, against the truth.
    pub(crate) fn tally(&self, id: &str) -> ContainerTally {
        let report = self.checker.report();
        let mut tally = ContainerTally {
            expected: self.expected_for(id),
            records: self.records_for(id),
            wrong_size: self.wrong_size.get(id).copied().unwrap_or(0),
            ..ContainerTally::default()
        };
        let captured: BTreeMap<&SequenceKey, _> = report
            .sequences
            .iter()
            .filter(|sequence| sequence.key.container == id)
            .map(|sequence| (&sequence.key, sequence))
            .collect();
        for (key, sequence) in &captured {
            tally.received += sequence.received;
            tally.lost += sequence.lost;
            tally.duplicated += sequence.duplicated;
            tally.out_of_order += sequence.out_of_order;
            tally.wrong_stream += sequence.wrong_stream;
            // Lines past the highest captured number that Docker has: lost at the tail.
            let span = sequence.received + sequence.lost;
            if let Some(&length) = self.truth.get(*key) {
                tally.lost += length.saturating_sub(span);
            }
        }
        for (key, length) in self.truth.iter().filter(|(key, _)| key.container == id) {
            if !captured.contains_key(key) {
                tally.lost += length;
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::Accounting;

    #[test]
    fn truth_reveals_tail_loss_and_missing_runs() {
        let mut accounting = Accounting::new(PathBuf::from("/nonexistent/containers.jsonl"));
        accounting.watch("c", "t", 0, None);
        for seq in 0..3 {
            accounting
                .checker
                .record("c", "stdout", &format!("t r1 out {seq}"));
        }
        let truth_out: String = (0..5).map(|seq| format!("t r1 out {seq}\n")).collect();
        let truth_err = "t r2 err 0\nt r2 err 1\n";
        accounting.add_truth("c", truth_out.as_bytes(), truth_err.as_bytes());
        let tally = accounting.tally("c");
        assert_eq!(tally.expected, 7);
        assert_eq!(tally.received, 3);
        assert_eq!(tally.lost, 4);
        assert!(!tally.is_perfect());
    }
}
