//! The two framings of a log stream's response body: HTTP's transfer framing (chunked, a
//! length, or up to the close; RFC 9112 section 6), removed by copying each chunk's data from the
//! bytes read into the payload, and Docker's multiplexed frames (an 8-byte header: the stream
//! byte, three zero bytes, the big-endian payload size), split off the payload without a copy.

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

/// Where the chunked decoder stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Chunked {
    /// Expecting `<hex size>[;extensions]\r\n`.
    Size,
    /// Inside a chunk's data, with this much left.
    Data(u64),
    /// Expecting the `\r\n` after a chunk's data.
    DataEnd,
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
                Some("chunked") => Ok(Framing::Chunked(Chunked::Size)),
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
            Framing::Chunked(state) => *state == Chunked::Done,
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

    /// Moves the body bytes of `raw` to `payload`, removing the transfer framing.
    pub(super) fn decode(&mut self, raw: &mut BytesMut, payload: &mut BytesMut) -> io::Result<()> {
        match self {
            Framing::UntilClose { .. } => {
                payload.extend_from_slice(raw);
                raw.clear();
                Ok(())
            }
            Framing::Length(left) => {
                let take = raw.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                payload.extend_from_slice(&raw[..take]);
                raw.advance(take);
                *left -= take as u64;
                // Bytes past the announced length are not part of this response.
                raw.clear();
                Ok(())
            }
            Framing::Chunked(state) => decode_chunked(state, raw, payload),
        }
    }
}

fn decode_chunked(
    state: &mut Chunked,
    raw: &mut BytesMut,
    payload: &mut BytesMut,
) -> io::Result<()> {
    loop {
        match state {
            Chunked::Size => {
                let Some(line) = take_line(raw)? else {
                    return Ok(());
                };
                let digits = line[..]
                    .split(|&byte| byte == b';')
                    .next()
                    .unwrap_or_default();
                let digits = std::str::from_utf8(digits)
                    .ok()
                    .map(str::trim)
                    .filter(|digits| !digits.is_empty() && digits.len() <= 16)
                    .ok_or_else(|| invalid_data("a chunk size line is not a hex number"))?;
                let size = u64::from_str_radix(digits, 16)
                    .map_err(|_| invalid_data(format!("bad chunk size {digits:?}")))?;
                *state = if size == 0 {
                    Chunked::Trailers
                } else {
                    Chunked::Data(size)
                };
            }
            Chunked::Data(left) => {
                if raw.is_empty() {
                    return Ok(());
                }
                let take = raw.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                payload.extend_from_slice(&raw[..take]);
                raw.advance(take);
                *left -= take as u64;
                if *left == 0 {
                    *state = Chunked::DataEnd;
                }
            }
            Chunked::DataEnd => {
                let Some(end) = raw.get(..2) else {
                    return Ok(());
                };
                if end != b"\r\n" {
                    return Err(invalid_data("a chunk's data is not followed by CRLF"));
                }
                raw.advance(2);
                *state = Chunked::Size;
            }
            Chunked::Trailers => {
                let Some(line) = take_line(raw)? else {
                    return Ok(());
                };
                if line.is_empty() {
                    *state = Chunked::Done;
                }
            }
            Chunked::Done => {
                raw.clear();
                return Ok(());
            }
        }
    }
}

/// Takes one CRLF-terminated line (without the CRLF) off `raw`, if it holds a whole one.
fn take_line(raw: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    match raw.windows(2).position(|pair| pair == b"\r\n") {
        Some(at) => {
            let line = raw.split_to(at);
            raw.advance(2);
            Ok(Some(line))
        }
        None if raw.len() > MAX_CHUNK_LINE_BYTES => {
            Err(invalid_data("a chunk size or trailer line is too long"))
        }
        None => Ok(None),
    }
}

pub(super) fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}
