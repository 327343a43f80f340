//! What a container's log stream yields, whichever way it is read, and the one place that opens
//! it.
//!
//! The stream is read straight from the daemon's socket ([`crate::raw_logs`]) for `unix://` and
//! `http://` endpoints, and through bollard's `logs()` for TLS ones. Both yield a [`Frame`]: the
//! payload of one multiplexed frame (`<timestamp> <text>\n`, or a piece of a long line) with its
//! stream, or for a TTY container whatever bytes of its raw stream arrived. bollard's
//! `LogOutput` is turned into a `Frame` here and nowhere else.

use bollard::{
    Docker, container::LogOutput, errors::Error as DockerError, query_parameters::LogsOptions,
};
use bytes::Bytes;
use capture_core::LogStream;
use futures_util::{Stream, StreamExt, future::Either};

use crate::{
    client,
    raw_logs::{self, LogsRequest},
    stream::TaskEnv,
};

/// One item of a container's log stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// `None`: neither stdout nor stderr (a bad stream byte, or the daemon's own error stream,
    /// "Error grabbing logs: ..."); the decoder counts it as malformed.
    pub(crate) stream: Option<LogStream>,
    pub(crate) bytes: Bytes,
}

impl Frame {
    /// bollard's item for a container with (`tty`) or without a TTY.
    pub(crate) fn from_output(output: LogOutput, tty: bool) -> Frame {
        let (stream, bytes) = match output {
            LogOutput::StdOut { message } | LogOutput::Console { message } if tty => {
                (Some(LogStream::Tty), message)
            }
            LogOutput::StdOut { message } => (Some(LogStream::Stdout), message),
            LogOutput::StdErr { message } => (Some(LogStream::Stderr), message),
            LogOutput::Console { message } | LogOutput::StdIn { message } => (None, message),
        };
        Frame { stream, bytes }
    }
}

/// What to read of a container's log (the query of `GET /containers/{id}/logs`, with
/// `timestamps=1`, both streams).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogsQuery {
    pub(crate) follow: bool,
    /// Unix seconds; 0 for everything.
    pub(crate) since: i32,
    /// Unix seconds; 0 for no end.
    pub(crate) until: i32,
    /// Only the last this many lines (`None`: all).
    pub(crate) tail: Option<u32>,
    /// Whether the container has a TTY.
    pub(crate) tty: bool,
}

/// A stream of frames, whichever way it is read.
pub(crate) trait Frames: Stream<Item = Result<Frame, DockerError>> {}

impl<S: Stream<Item = Result<Frame, DockerError>>> Frames for S {}

/// Opens the task's container's log stream (lazily: the request is made on the first poll).
pub(crate) fn open_logs(env: &TaskEnv, query: LogsQuery) -> impl Frames + use<> {
    let id = env.shared.id.as_str();
    match &env.settings.raw_endpoint {
        Some(endpoint) => {
            let api_version = client::version_string(&env.docker);
            let request = LogsRequest {
                api_version: &api_version,
                container_id: id,
                follow: query.follow,
                since: query.since,
                until: query.until,
                tail: query.tail,
                tty: query.tty,
            };
            Either::Left(raw_logs::logs(
                endpoint,
                &request,
                env.settings.request_timeout,
            ))
        }
        None => Either::Right(bollard_frames(&env.docker, id, query)),
    }
}

/// The TLS path: bollard's `logs()`, its items turned into frames.
fn bollard_frames(docker: &Docker, id: &str, query: LogsQuery) -> impl Frames + use<> {
    let options = LogsOptions {
        follow: query.follow,
        stdout: true,
        stderr: true,
        since: query.since,
        until: query.until,
        timestamps: true,
        tail: query
            .tail
            .map_or_else(|| "all".to_owned(), |lines| lines.to_string()),
    };
    let tty = query.tty;
    docker
        .logs(id, Some(options))
        .map(move |item| item.map(|output| Frame::from_output(output, tty)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bollard_items_become_frames_of_their_stream() {
        let bytes = Bytes::from_static(b"2024-01-01T00:00:00Z a\n");
        let frame = |output, tty| Frame::from_output(output, tty).stream;
        let out = || LogOutput::StdOut {
            message: bytes.clone(),
        };
        let console = || LogOutput::Console {
            message: bytes.clone(),
        };
        assert_eq!(frame(out(), false), Some(LogStream::Stdout));
        assert_eq!(frame(out(), true), Some(LogStream::Tty));
        assert_eq!(frame(console(), true), Some(LogStream::Tty));
        assert_eq!(frame(console(), false), None);
        let err = LogOutput::StdErr {
            message: bytes.clone(),
        };
        assert_eq!(frame(err, false), Some(LogStream::Stderr));
        let stdin = LogOutput::StdIn {
            message: bytes.clone(),
        };
        assert_eq!(frame(stdin, true), None);
        assert_eq!(Frame::from_output(out(), false).bytes, bytes);
    }
}
