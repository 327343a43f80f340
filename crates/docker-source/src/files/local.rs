//! Docker's `local` log format: each entry is a protobuf `LogEntry` framed by its size, as a
//! 4-byte big-endian integer, before and after it. Rotated files are gzip-compressed by default
//! (the reader in `tail.rs` decompresses them); the format is the same inside.
//!
//! The messages are Docker's published definition (`api/types/plugins/logdriver/entry.proto`,
//! package `docker.logentry`), declared with prost's derive:
//!
//! ```proto
//! message LogEntry {
//!   string source = 1; int64 time_nano = 2; bytes line = 3; bool partial = 4;
//!   PartialLogEntryMetadata partial_log_metadata = 5;
//! }
//! message PartialLogEntryMetadata { bool last = 1; string id = 2; int32 ordinal = 3; }
//! ```
//!
//! `line` has no newline; an entry is a piece of a longer line when `partial` is set and its
//! metadata is not `last`. A frame whose two sizes differ, whose size is beyond any entry, or
//! whose message does not decode is malformed: the parser counts it once and looks for the next
//! valid frame byte by byte.

use capture_core::LogStream;
use prost::Message;

use super::{Entry, EntryFormat, Step};

/// The size prefix and suffix.
const SIZE_BYTES: usize = 4;
/// The largest entry accepted (Docker's local driver refuses messages over 1 MB).
const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// `docker.logentry.LogEntry`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LogEntry {
    #[prost(string, tag = "1")]
    pub(crate) source: String,
    #[prost(int64, tag = "2")]
    pub(crate) time_nano: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) line: Vec<u8>,
    #[prost(bool, tag = "4")]
    pub(crate) partial: bool,
    #[prost(message, optional, tag = "5")]
    pub(crate) partial_log_metadata: Option<PartialLogEntryMetadata>,
}

/// `docker.logentry.PartialLogEntryMetadata`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PartialLogEntryMetadata {
    #[prost(bool, tag = "1")]
    pub(crate) last: bool,
    #[prost(string, tag = "2")]
    pub(crate) id: String,
    #[prost(int32, tag = "3")]
    pub(crate) ordinal: i32,
}

/// The `local` parser. It decodes into one reused message (no allocation per entry once its
/// buffers have grown) and remembers whether it is resynchronising after a bad frame.
#[derive(Debug, Default)]
pub(crate) struct Local {
    entry: LogEntry,
    resynchronising: bool,
}

/// What a frame at the start of a buffer is.
enum Frame {
    Valid { len: usize },
    Invalid,
    NeedMore,
}

impl EntryFormat for Local {
    fn next<'a>(&'a mut self, buffer: &'a [u8]) -> Step<'a> {
        match self.frame(buffer) {
            Frame::NeedMore if self.resynchronising => self.skip_to_valid_frame(buffer),
            Frame::NeedMore => Step::NeedMore,
            Frame::Invalid => {
                // Count the bad frame once, then step byte by byte to the next good one.
                if std::mem::replace(&mut self.resynchronising, true) {
                    Step::Skip { len: 1 }
                } else {
                    Step::Malformed { len: 1 }
                }
            }
            Frame::Valid { len } => {
                self.resynchronising = false;
                let stream = match self.entry.source.as_str() {
                    "stdout" => LogStream::Stdout,
                    _ => LogStream::Stderr,
                };
                let complete = !self.entry.partial
                    || self
                        .entry
                        .partial_log_metadata
                        .as_ref()
                        .is_some_and(|meta| meta.last);
                Step::Entry {
                    entry: Entry {
                        stream,
                        timestamp_nanos: self.entry.time_nano,
                        text: &self.entry.line,
                        complete,
                    },
                    len,
                }
            }
        }
    }

    fn max_entry_bytes(&self) -> usize {
        MAX_ENTRY_BYTES + 2 * SIZE_BYTES
    }
}

impl Local {
    /// While resynchronising, a size that points beyond the buffer may be garbage: skip to the
    /// first offset where a whole valid frame starts, if there is one yet.
    fn skip_to_valid_frame(&mut self, buffer: &[u8]) -> Step<'static> {
        for offset in 1..buffer.len() {
            if let Frame::Valid { .. } = self.frame(&buffer[offset..]) {
                return Step::Skip { len: offset };
            }
        }
        Step::NeedMore
    }

    /// Checks the framing and decodes the message into `self.entry`.
    fn frame(&mut self, buffer: &[u8]) -> Frame {
        let Some(size) = read_size(buffer, 0) else {
            return Frame::NeedMore;
        };
        if size > MAX_ENTRY_BYTES {
            return Frame::Invalid;
        }
        let len = size + 2 * SIZE_BYTES;
        if buffer.len() < len {
            return Frame::NeedMore;
        }
        if read_size(buffer, SIZE_BYTES + size) != Some(size) {
            return Frame::Invalid;
        }
        self.entry.clear();
        if self
            .entry
            .merge(&buffer[SIZE_BYTES..SIZE_BYTES + size])
            .is_err()
            || !matches!(self.entry.source.as_str(), "stdout" | "stderr")
        {
            return Frame::Invalid;
        }
        Frame::Valid { len }
    }
}

fn read_size(buffer: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; SIZE_BYTES] = buffer.get(at..at + SIZE_BYTES)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

/// Frames an entry as Docker's local driver writes it (for tests and benchmarks).
#[cfg(test)]
pub(crate) fn encode_frame(entry: &LogEntry) -> Vec<u8> {
    let body = entry.encode_to_vec();
    let size = u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut frame = Vec::with_capacity(body.len() + 2 * SIZE_BYTES);
    frame.extend_from_slice(&size);
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&size);
    frame
}

/// An entry of `source` at `time_nano`; `partial`: `None` for a whole line, `Some(last)` for a
/// piece.
#[cfg(test)]
pub(crate) fn entry(source: &str, time_nano: i64, line: &[u8], partial: Option<bool>) -> LogEntry {
    LogEntry {
        source: source.to_owned(),
        time_nano,
        line: line.to_vec(),
        partial: partial.is_some(),
        partial_log_metadata: partial.map(|last| PartialLogEntryMetadata {
            last,
            id: "p".to_owned(),
            ordinal: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(input: &[u8]) -> Vec<String> {
        let render = |text: &[u8]| String::from_utf8_lossy(text).into_owned();
        crate::files::tests::steps(&mut Local::default(), input, render, false)
    }

    #[test]
    fn frames_decode_with_their_partial_metadata() {
        let mut input = Vec::new();
        input.extend(encode_frame(&entry("stdout", 7, b"hello", None)));
        input.extend(encode_frame(&entry("stderr", 8, b"head", Some(false))));
        input.extend(encode_frame(&entry("stderr", 9, b"tail", Some(true))));
        input.extend(encode_frame(&entry("stdout", 10, b"", None)));
        assert_eq!(
            steps(&input),
            [
                "stdout@7 hello",
                "stderr@8 head (partial)",
                "stderr@9 tail",
                "stdout@10 "
            ]
        );
        // A frame cut anywhere waits for the rest.
        let frame = encode_frame(&entry("stdout", 7, b"hello", None));
        for cut in 0..frame.len() {
            assert!(steps(&frame[..cut]).is_empty(), "cut at {cut}");
        }
    }

    #[test]
    fn a_bad_frame_counts_once_and_reading_resumes_at_the_next_good_one() {
        let mut input = encode_frame(&entry("stdout", 1, b"one", None));
        let mut bad = encode_frame(&entry("stdout", 2, b"two", None));
        let last = bad.len() - 1;
        bad[last] ^= 0xff; // the suffix no longer matches the prefix
        input.extend(bad);
        input.extend(b"garbage");
        input.extend(encode_frame(&entry("stdin", 3, b"three", None)));
        input.extend(encode_frame(&entry("stdout", 4, b"four", None)));
        assert_eq!(
            steps(&input),
            ["stdout@1 one", "malformed", "stdout@4 four"]
        );
    }

    #[test]
    fn an_absurd_size_is_malformed_not_an_allocation() {
        let mut input = vec![0xff, 0xff, 0xff, 0xff];
        input.extend(encode_frame(&entry("stdout", 5, b"after", None)));
        assert_eq!(steps(&input), ["malformed", "stdout@5 after"]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let valid = encode_frame(&entry("stdout", 5, b"x", Some(true)));
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut input = valid.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % input.len();
                input[at] = (seed >> 32) as u8;
            }
            let _ = steps(&input);
        }
    }
}
