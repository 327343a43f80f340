//! Counts what the capturer delivered against what Docker has: the one line ledger of the soak
//! and chaos.
//!
//! Captured lines come from the file sink (followed with [`FileTail`] across restarts and
//! rotations: [`Ledger::follow`]) or from a receiver (fed with [`Ledger::record`]). The truth is
//! each container's own log as Docker kept it (`docker logs`, taken before the container is
//! removed), or what a generator is known to have written when Docker's copy is gone. For every
//! container, loggen run and stream, the capture must hold each sequence number the truth has
//! exactly once, in order, on its stream and whole. A line missing at the tail of a sequence
//! counts as lost, because the truth says how long each sequence is.
//!
//! Sequences without a truth count fully for the containers the ledger was told to
//! [`watch`](Ledger::watch) (their gaps, and the tail when the generator is finite); for any other
//! container only their extra copies count (as duplicates).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::Value;

use crate::{
    checker::{LineChecker, SequenceKey, SequenceReport},
    docker::logs_bytes,
    parallel::parallel_map,
    tail::FileTail,
};

/// How many `docker logs` run at once when taking the truth of many containers.
const PARALLEL_LOGS: usize = 8;

/// How often a drain looks at the capture again.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// Captured lines and the truth they are compared with.
#[derive(Debug, Default)]
pub struct Ledger {
    tail: Option<FileTail>,
    checker: LineChecker,
    /// Records read (duplicates included).
    pub records: u64,
    /// File records that are not JSON objects with `container_id`, `stream` and `message`.
    pub malformed: u64,
    /// Records per container id.
    per_container: HashMap<String, u64>,
    /// Containers accounted fully ([`Ledger::watch`]).
    watched: HashSet<String>,
    /// The exact message length expected per container id.
    line_sizes: HashMap<String, usize>,
    /// Messages whose length differs from their generator's padded size (cut or joined wrongly).
    wrong_size: HashMap<String, u64>,
    /// Sequence lengths the truth has, by container, tag, run and stream.
    truth: BTreeMap<SequenceKey, u64>,
}

/// The comparison of the capture with the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Lines the truth has.
    pub expected: u64,
    /// Distinct lines captured.
    pub received: u64,
    pub lost: u64,
    /// Extra copies of captured lines.
    pub dup: u64,
    pub out_of_order: u64,
    pub wrong_stream: u64,
    pub wrong_size: u64,
    /// Records captured (duplicates included).
    pub records: u64,
}

impl Tally {
    /// Whether every line arrived once, in order, whole and on its stream.
    pub fn is_perfect(&self) -> bool {
        self.lost == 0
            && self.dup == 0
            && self.out_of_order == 0
            && self.wrong_stream == 0
            && self.wrong_size == 0
    }

    fn add_sequence(&mut self, sequence: &SequenceReport, truth: Option<u64>, watched: bool) {
        match truth {
            Some(length) => {
                self.received += sequence.received.min(length);
                // Lines past the highest captured number that the truth has: lost at the tail.
                let span = sequence.received + sequence.lost;
                self.lost += sequence.lost + length.saturating_sub(span);
            }
            None if watched => {
                self.received += sequence.received;
                self.lost += sequence.lost;
            }
            None => {
                self.dup += sequence.duplicated;
                return;
            }
        }
        self.dup += sequence.duplicated;
        self.out_of_order += sequence.out_of_order;
        self.wrong_stream += sequence.wrong_stream;
    }
}

impl Ledger {
    /// A ledger fed by hand ([`Ledger::record`]).
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// A ledger that follows the file sink's active file at `path`.
    pub fn follow(path: PathBuf) -> Ledger {
        Ledger {
            tail: Some(FileTail::new(path)),
            ..Ledger::default()
        }
    }

    /// Accounts a container fully: its messages must be exactly `line_size` bytes long (`0`: any
    /// length), and a finite generator writes `finite_lines` per stream of run `tag`.
    pub fn watch(&mut self, id: &str, tag: &str, line_size: usize, finite_lines: Option<u64>) {
        self.watched.insert(id.to_owned());
        if line_size > 0 {
            self.line_sizes.insert(id.to_owned(), line_size);
        }
        if let Some(lines) = finite_lines {
            self.checker.expect(id, tag, lines);
        }
    }

    /// Records one captured line.
    pub fn record(&mut self, container: &str, stream: &str, message: &str) {
        self.records += 1;
        self.count(container, stream, message);
    }

    fn count(&mut self, container: &str, stream: &str, message: &str) {
        self.checker.record(container, stream, message);
        *self.per_container.entry(container.to_owned()).or_default() += 1;
        // A terminal ends lines with CR LF; whether the CR is kept is not what this counts.
        let length = message.strip_suffix('\r').unwrap_or(message).len();
        if self
            .line_sizes
            .get(container)
            .is_some_and(|&size| size != length)
        {
            *self.wrong_size.entry(container.to_owned()).or_default() += 1;
        }
    }

    /// Reads the file records written since the last call; returns how many.
    pub fn poll(&mut self) -> Result<u64> {
        let Some(mut tail) = self.tail.take() else {
            return Ok(0);
        };
        let read = tail.poll(|line| self.count_record(line));
        self.tail = Some(tail);
        let read = read?;
        self.records += read;
        Ok(read)
    }

    fn count_record(&mut self, line: &[u8]) {
        let Ok(record) = serde_json::from_slice::<Value>(line) else {
            self.malformed += 1;
            return;
        };
        match (
            record["container_id"].as_str(),
            record["stream"].as_str(),
            record["message"].as_str(),
        ) {
            (Some(id), Some(stream), Some(message)) => self.count(id, stream, message),
            _ => self.malformed += 1,
        }
    }

    /// Distinct and duplicated lines captured from loggen runs whose tag passes `tags`, with or
    /// without a truth (for generators whose Docker copy is gone).
    pub fn captured(&self, tags: impl Fn(&str) -> bool) -> (u64, u64) {
        self.checker
            .report()
            .sequences
            .iter()
            .filter(|sequence| tags(&sequence.key.tag))
            .fold((0, 0), |(distinct, dup), sequence| {
                (distinct + sequence.received, dup + sequence.duplicated)
            })
    }

    /// Partial lines left at the ends of rotated files.
    pub fn truncated(&self) -> u64 {
        self.tail.as_ref().map_or(0, FileTail::truncated_lines)
    }

    /// Captured records that were not whole loggen lines.
    pub fn foreign(&self) -> u64 {
        self.checker.report().foreign_lines
    }

    /// Takes the truth of these containers from Docker (they must still exist).
    pub fn add_truth(&mut self, ids: &[String]) -> Result<()> {
        for group in ids.chunks(PARALLEL_LOGS) {
            let outputs = parallel_map(group, "docker logs", |id| logs_bytes(id))?;
            for (id, (stdout, stderr)) in group.iter().zip(outputs) {
                self.add_truth_from(id, &stdout, &stderr);
            }
        }
        Ok(())
    }

    /// Records the truth of one container from its `docker logs` output.
    pub fn add_truth_from(&mut self, id: &str, stdout: &[u8], stderr: &[u8]) {
        let mut truth = LineChecker::default();
        for text in [stdout, stderr] {
            for line in String::from_utf8_lossy(text).lines() {
                // The stream argument only feeds the wrong-stream count, unused for the truth.
                truth.record(id, "stdout", line);
            }
        }
        for sequence in truth.report().sequences {
            let length = sequence.received + sequence.lost;
            let entry = self.truth.entry(sequence.key).or_default();
            *entry = (*entry).max(length);
        }
    }

    /// Records the truth of a generator whose copy Docker no longer has (a `--rm` job, rotated
    /// logs): `lines` per stream of loggen run `run` with `tag` in `container`.
    pub fn add_generated_truth(
        &mut self,
        container: &str,
        tag: &str,
        run: &str,
        streams: &[&str],
        lines: u64,
    ) {
        for stream in streams {
            let key = SequenceKey {
                container: container.to_owned(),
                tag: tag.to_owned(),
                run: run.to_owned(),
                stream: (*stream).to_owned(),
            };
            self.truth.insert(key, lines);
        }
    }

    /// Lines the truth has over every container.
    pub fn expected_total(&self) -> u64 {
        self.truth.values().sum()
    }

    /// Lines the truth has for one container.
    pub fn expected_for(&self, id: &str) -> u64 {
        self.truth
            .iter()
            .filter(|(key, _)| key.container == id)
            .map(|(_, length)| length)
            .sum()
    }

    /// Records read for one container (duplicates included).
    pub fn records_for(&self, id: &str) -> u64 {
        self.per_container.get(id).copied().unwrap_or(0)
    }

    /// Records of containers that are not in `ids` (the capturer should not watch them).
    pub fn records_of_others(&self, ids: &[&str]) -> u64 {
        self.per_container
            .iter()
            .filter(|(id, _)| !ids.contains(&id.as_str()))
            .map(|(_, records)| records)
            .sum()
    }

    /// The capture against the truth, over every container.
    pub fn tally(&self) -> Tally {
        self.tally_where(|_| true)
    }

    /// [`Ledger::tally`] over the containers in `containers` only.
    pub fn tally_of(&self, containers: &[String]) -> Tally {
        self.tally_where(|container| containers.iter().any(|id| id == container))
    }

    /// [`Ledger::tally`] of one container.
    pub fn tally_for(&self, id: &str) -> Tally {
        self.tally_where(|container| container == id)
    }

    fn tally_where(&self, wanted: impl Fn(&str) -> bool) -> Tally {
        let report = self.checker.report();
        let mut tally = Tally::default();
        let mut captured = HashSet::new();
        for sequence in report.sequences.iter().filter(|s| wanted(&s.key.container)) {
            let container = &sequence.key.container;
            let truth = self.truth.get(&sequence.key).copied();
            tally.add_sequence(sequence, truth, self.watched.contains(container));
            captured.insert(&sequence.key);
        }
        for (key, &length) in self.truth.iter().filter(|(key, _)| wanted(&key.container)) {
            tally.expected += length;
            if !captured.contains(key) {
                tally.lost += length;
            }
        }
        for (id, records) in self.per_container.iter().filter(|(id, _)| wanted(id)) {
            tally.records += records;
            tally.wrong_size += self.wrong_size.get(id).copied().unwrap_or(0);
        }
        tally
    }

    /// Polls until every line of the truth is captured, no record arrived for `stall`, or
    /// `timeout` passed; returns how long that took and whether the capture is complete.
    pub fn drain(&mut self, timeout: Duration, stall: Duration) -> Result<(Duration, bool)> {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            if self.poll()? > 0 {
                last_progress = Instant::now();
            }
            if self.tally().lost == 0 {
                return Ok((started.elapsed(), true));
            }
            if started.elapsed() > timeout || last_progress.elapsed() > stall {
                return Ok((started.elapsed(), false));
            }
            // Waiting for another process to write a file; there is nothing to subscribe to.
            std::thread::sleep(DRAIN_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    #[test]
    fn loss_at_the_tail_and_duplicates_are_counted() {
        let mut ledger = Ledger::new();
        for seq in [0, 1, 1, 2] {
            ledger.record("c", "stdout", &format!("t r1 out {seq}"));
        }
        let truth: String = (0..5).map(|seq| format!("t r1 out {seq}\n")).collect();
        ledger.add_truth_from("c", truth.as_bytes(), b"t r2 err 0\n");
        let tally = ledger.tally();
        assert_eq!(tally.expected, 6);
        assert_eq!(tally.received, 3);
        assert_eq!(tally.lost, 3);
        assert_eq!(tally.dup, 1);
        assert_eq!(tally.records, 4);
    }

    #[test]
    fn watched_containers_count_without_a_truth_others_only_by_their_copies() {
        let mut ledger = Ledger::new();
        ledger.watch("w", "t", 10, Some(4));
        for seq in [0, 1, 1] {
            ledger.record("w", "stdout", &format!("t r1 out {seq}"));
        }
        ledger.record("w", "stdout", "t r1 out 10");
        for seq in [0, 2, 2] {
            ledger.record("x", "stdout", &format!("t r1 out {seq}"));
        }
        let watched = ledger.tally_for("w");
        assert_eq!(watched.received, 3);
        assert!(watched.lost > 0, "{watched:?}");
        assert_eq!(watched.dup, 1);
        assert_eq!(watched.wrong_size, 1);
        assert!(!watched.is_perfect());
        let other = ledger.tally_for("x");
        assert_eq!(
            (other.expected, other.received, other.lost, other.dup),
            (0, 0, 0, 1)
        );
        assert_eq!(ledger.records_of_others(&["w"]), 3);
    }
}
