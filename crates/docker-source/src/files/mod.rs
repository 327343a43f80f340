//! File mode: a container's log read from the files Docker writes, not through its API.
//!
//! Docker's `json-file` (the default) and `local` drivers write every line to disk before the
//! logs API serves it again. Reading those files costs the host a fraction of the API path (the
//! daemon does no work per line for the agent) and lets the agent read a removed container's
//! last lines through a descriptor it holds. Discovery and metadata stay on the API.
//!
//! - `json_file.rs` and `local.rs` parse the two formats into [`Entry`]s: a stream, Docker's
//!   timestamp and the text of one log message, which may be one of the 16 KiB pieces Docker
//!   splits long lines into (`complete == false`). Pieces are merged by the same
//!   [`Decoder`](crate::decoder::Decoder) as on the API path.
//! - `tail.rs` follows one container's files across rotation (`max-size`/`max-file`), keeping
//!   each generation's descriptor until it is read to its end, and detects truncation and loss.
//! - `cursor.rs` keeps the byte offset of acknowledged lines as a resume hint beside the
//!   position cursors (which stay the cursor of record, the same as on the API path).
//! - `watch.rs` wakes the followers when a log directory changes (inotify, with a poll
//!   fallback): an idle container costs nothing.

pub(crate) mod cursor;
pub(crate) mod follower;
pub(crate) mod json_file;
pub(crate) mod local;
pub(crate) mod mode;
pub(crate) mod tail;
pub(crate) mod target;
pub(crate) mod watch;

use capture_core::LogStream;

/// One log message read from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// `Stdout` or `Stderr` (a TTY container's one stream is stored as stdout).
    pub(crate) stream: LogStream,
    /// Docker's timestamp, nanoseconds since the epoch.
    pub(crate) timestamp_nanos: i64,
    /// The text, without the newline.
    pub(crate) text: &'a [u8],
    /// Whether the message ends a line; `false` for all but the last piece of a line Docker
    /// split.
    pub(crate) complete: bool,
}

/// What the start of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// An entry, `len` bytes long.
    Entry { entry: Entry<'a>, len: usize },
    /// `len` bytes that are not an entry: counted as malformed and skipped.
    Malformed { len: usize },
    /// `len` more bytes of an entry already counted as malformed: skipped.
    Skip { len: usize },
    /// The buffer ends inside an entry (or is empty).
    NeedMore,
}

/// A log file format: turns the bytes at the start of a buffer into one [`Step`].
pub(crate) trait EntryFormat: std::fmt::Debug {
    /// Parses the entry at the start of `buffer`.
    fn next<'a>(&'a mut self, buffer: &'a [u8]) -> Step<'a>;

    /// The longest entry this format accepts: more bytes without one complete entry are
    /// malformed.
    fn max_entry_bytes(&self) -> usize;
}

/// The log drivers whose files the agent can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// `json-file`: `<container dir>/<id>-json.log`, rotated to `.1`, `.2`, ... (`.gz` with
    /// `compress=true`).
    JsonFile,
    /// `local`: `<container dir>/local-logs/container.log`, rotated files gzip-compressed by
    /// default.
    Local,
}

impl Driver {
    /// The driver of a `HostConfig.LogConfig.Type`, if its files can be read.
    pub(crate) fn from_name(name: &str) -> Option<Driver> {
        match name {
            "json-file" => Some(Driver::JsonFile),
            "local" => Some(Driver::Local),
            _ => None,
        }
    }

    /// A parser for the driver's format.
    pub(crate) fn format(self) -> Box<dyn EntryFormat + Send + Sync> {
        match self {
            Driver::JsonFile => Box::new(json_file::JsonFile::default()),
            Driver::Local => Box::new(local::Local::default()),
        }
    }
}

#[cfg(test)]
mod tests;
