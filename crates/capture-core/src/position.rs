//! Streams and positions within them.

use std::{fmt, str::FromStr};

/// The stream a line was written to.
///
/// A TTY container has one raw stream, `Tty`; others have `Stdout` and `Stderr`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output of a container without a TTY.
    Stdout,
    /// Standard error of a container without a TTY.
    Stderr,
    /// The single raw stream of a container with a TTY.
    Tty,
}

impl LogStream {
    /// Every stream, in a fixed order (usable as an array index with [`LogStream::index`]).
    pub const ALL: [LogStream; 3] = [LogStream::Stdout, LogStream::Stderr, LogStream::Tty];

    /// The name used in records, labels and metrics: `stdout`, `stderr` or `tty`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Tty => "tty",
        }
    }

    /// A dense index (0, 1, 2) for per-stream arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LogStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogStream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(LogStream::Stdout),
            "stderr" => Ok(LogStream::Stderr),
            "tty" => Ok(LogStream::Tty),
            other => Err(format!(
                "unknown stream {other:?} (expected stdout, stderr or tty)"
            )),
        }
    }
}

/// Where a line stands in its container's stream.
///
/// Docker stamps every line with a nanosecond timestamp; two lines may still share one. The
/// `ordinal` counts the earlier lines of the same stream with the same timestamp (almost always
/// 0), so `(timestamp_nanos, ordinal)` orders a stream's lines strictly and a cursor resumes
/// exactly after the last delivered line, with no duplicate at the boundary.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    /// Docker's timestamp of the line, nanoseconds since the Unix epoch.
    pub timestamp_nanos: i64,
    /// How many earlier lines of the same stream carry the same timestamp.
    pub ordinal: u32,
}

impl Position {
    /// A position from its parts.
    pub const fn new(timestamp_nanos: i64, ordinal: u32) -> Self {
        Position {
            timestamp_nanos,
            ordinal,
        }
    }

    /// The position of the next line given its timestamp: ordinal 0 for a new timestamp, one
    /// more than `self`'s for a repeated one.
    pub fn next_for(self, timestamp_nanos: i64) -> Position {
        if timestamp_nanos == self.timestamp_nanos {
            Position::new(timestamp_nanos, self.ordinal + 1)
        } else {
            Position::new(timestamp_nanos, 0)
        }
    }
}
