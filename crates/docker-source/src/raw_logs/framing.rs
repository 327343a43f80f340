//! The two framings of a log stream's response body: HTTP's transfer framing (chunked, a
//! length, or up to the close; RFC 9112 section 6), removed while the bytes read are copied into
//! the payload (the one copy a body byte makes after the socket read), and Docker's multiplexed
//! frames (an 8-byte header: the stream byte, three zero bytes, the big-endian payload size),
//! split off the payload without a copy.

use std::io;

use bytes::{Buf, BytesMut};
use capture_core::LogStream;

use crate::frame::Frame;

/// The largest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// The largest frame accepted. Docker's frames carry at most a 16 KiB piece of a line plus its
/// timestamp; a larger size means the stream is not what it should be.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The next frame of the body: a whole multiplexed frame, or (TTY) every byte there is.
pub(super) fn split_frame(payload: &mut BytesMut, tty: bool) -> io::Result<Option<Frame>> {
    if tty {
        return Ok((!payload.is_empty()).then(|| Frame {
            stream: Some(LogStream::Tty),
            bytes: payload.split().freeze(),
        }));
    }
    let Some(header) = payload.get(..8) else {
        return Ok(None);
    };
    let kind = header[0];
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if size > MAX_FRAME_BYTES {
        return Err(invalid_data(format!(
            "a frame header announces {size} bytes (stream type {kind}); not a Docker log stream"
        )));
    }
    if payload.len() < 8 + size {
        // Make room for the whole frame once instead of growing by reads.
        payload.reserve(8 + size - payload.len());
        return Ok(None);
    }
    payload.advance(8);
    let stream = match kind {
        1 => Some(LogStream::Stdout),
        2 => Some(LogStream::Stderr),
        // Stdin (0) or anything else: not a log line of the container.
        _ => None,
    };
    Ok(Some(Frame {
        stream,
        bytes: payload.split_to(size).freeze(),
    }))
}

/// How the body's end is known (RFC 9112 section 6.3).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Framing {
    Chunked(Chunked),
    Length(u64),
    UntilClose { closed: bool },
}

/// The chunked decoder: where it stands, and a size or trailer line cut by the end of a read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Chunked {
    state: ChunkState,
    line: Vec<u8>,
}

/// Where the chunked decoder stands.
#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting `<hex size>[;extensions]\r\n`.
    #[default]
    Size,
    /// Inside a chunk's data, with this much left.
    Data(u64),
    /// Expecting the `\r\n` after a chunk's data (`cr`: the `\r` came already).
    DataEnd {
        cr: bool,
    },
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

impl Framing {
    pub(super) fn from_head(headers: &[httparse::Header<'_>]) -> io::Result<Framing> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case(name))
                .map(|header| {
                    String::from_utf8_lossy(header.value)
                        .trim()
                        .to_ascii_lowercase()
                })
        };
        if let Some(encoding) = header("transfer-encoding") {
            return match encoding.rsplit(',').next().map(str::trim) {
                Some("chunked") => Ok(Framing::Chunked(Chunked::default())),
                _ => Err(invalid_data(format!(
                    "unsupported transfer-encoding {encoding:?}"
                ))),
            };
        }
        match header("content-length") {
            Some(length) => length
                .parse()
                .map(Framing::Length)
                .map_err(|_| invalid_data(format!("bad content-length {length:?}"))),
            None => Ok(Framing::UntilClose { closed: false }),
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        match self {
            Framing::Chunked(chunked) => chunked.state == ChunkState::Done,
            Framing::Length(left) => *left == 0,
            Framing::UntilClose { closed } => *closed,
        }
    }

    /// The peer closed the connection.
    pub(super) fn end_of_input(&mut self) -> io::Result<()> {
        match self {
            Framing::UntilClose { closed } => {
                *closed = true;
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection before the end of the body",
            )),
        }
    }

    /// Appends the body bytes of `input` (bytes as read) to `payload`, removing the transfer
    /// framing. Bytes past the body's end are not part of this response and are dropped.
    pub(super) fn decode(&mut self, input: &[u8], payload: &mut BytesMut) -> io::Result<()> {
        match self {
            Framing::UntilClose { .. } => {
                payload.extend_from_slice(input);
                Ok(())
            }
            Framing::Length(left) => {
                let take = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                payload.extend_from_slice(&input[..take]);
                *left -= take as u64;
                Ok(())
            }
            Framing::Chunked(chunked) => chunked.decode(input, payload),
        }
    }
}

impl Chunked {
    fn decode(&mut self, mut input: &[u8], payload: &mut BytesMut) -> io::Result<()> {
        while !input.is_empty() {
            match &mut self.state {
                ChunkState::Size => {
                    if let Some(size) = take_line(&mut self.line, &mut input, chunk_size)? {
                        self.state = match size {
                            0 => ChunkState::Trailers,
                            size => ChunkState::Data(size),
                        };
                    }
                }
                ChunkState::Data(left) => {
                    let take = input
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let (data, rest) = input.split_at(take);
                    payload.extend_from_slice(data);
                    input = rest;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd { cr: false };
                    }
                }
                ChunkState::DataEnd { cr } => {
                    match (*cr, input[0]) {
                        (false, b'\r') => *cr = true,
                        (true, b'\n') => self.state = ChunkState::Size,
                        _ => return Err(invalid_data("a chunk's data is not followed by CRLF")),
                    }
                    input = &input[1..];
                }
                ChunkState::Trailers => {
                    if let Some(empty) =
                        take_line(&mut self.line, &mut input, |line| Ok(line.is_empty()))?
                        && empty
                    {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Takes one CRLF-terminated line off `input`, joined to the start of it an earlier read left
/// in `partial`, and passes it (without the CRLF) to `parse`; `None` if the line is not whole
/// yet (its start is kept in `partial`).
fn take_line<T>(
    partial: &mut Vec<u8>,
    input: &mut &[u8],
    parse: impl FnOnce(&[u8]) -> io::Result<T>,
) -> io::Result<Option<T>> {
    let Some(at) = memchr::memchr(b'\n', input) else {
        partial.extend_from_slice(input);
        *input = &[];
        if partial.len() > MAX_CHUNK_LINE_BYTES {
            return Err(invalid_data("a chunk size or trailer line is too long"));
        }
        return Ok(None);
    };
    let (line, rest) = input.split_at(at + 1);
    *input = rest;
    let line = if partial.is_empty() {
        line
    } else {
        partial.extend_from_slice(line);
        &partial[..]
    };
    if line.len() > MAX_CHUNK_LINE_BYTES + 2 {
        return Err(invalid_data("a chunk size or trailer line is too long"));
    }
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(invalid_data(
            "a chunk size or trailer line does not end with CRLF",
        ));
    };
    let parsed = parse(line);
    partial.clear();
    parsed.map(Some)
}

/// A chunk size line's size: hex digits, then perhaps `;` and extensions.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.split(|&byte| byte == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits)
        .ok()
        .map(str::trim)
        .filter(|digits| !digits.is_empty() && digits.len() <= 16)
        .ok_or_else(|| invalid_data("a chunk size line is not a hex number"))?;
    u64::from_str_radix(digits, 16).map_err(|_| invalid_data(format!("bad chunk size {digits:?}")))
}

pub(super) fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests;
