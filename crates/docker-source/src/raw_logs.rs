//! A container's log stream read straight from the daemon's socket.
//!
//! Docker writes one multiplexed frame per log line, each in its own HTTP chunk. Through
//! bollard and hyper every chunk becomes a body frame passed from the connection task to the
//! reader over a channel, so a fast writer costs a task hand-off (and bollard a zero-filled
//! 8 KiB buffer) per line: measured here, 3 to 5 µs of CPU per line. This module sends the
//! one `GET /containers/{id}/logs` request itself, parses the response head with `httparse`,
//! and then reads the body in large reads (up to [`READ_BYTES`] each), removing the chunked
//! transfer framing and splitting Docker's 8-byte frame headers in place: a line costs a copy
//! and a reference count, not a wake-up.
//!
//! It also removes the wake-up per line that remains: while a stream is hot (several small
//! reads within [`COALESCE_PAUSE`]), its socket is taken out of the reactor (`into_std`) and
//! read without blocking once per [`COALESCE_PAUSE`] on a timer, so the daemon's writes
//! accumulate in the socket buffer instead of waking the thread one by one. A read that finds
//! nothing (the stream cooled down) or a lot (the writer outpaces the pause, and would block on
//! the socket buffer) puts the socket back under the reactor. A line waits at most one pause
//! longer.
//!
//! It yields the same items as bollard's `logs()` ([`LogOutput`] or a bollard error), so the
//! follower treats both alike: a non-200 answer is a `DockerResponseServerError` with Docker's
//! message, a transport failure an `IOError`. It serves `unix://` and plain `http://`
//! endpoints; TLS endpoints keep bollard's client. Every other request goes through bollard.

use std::{
    future::Future,
    io,
    path::PathBuf,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bollard::{container::LogOutput, errors::Error as DockerError};
use bytes::{Buf, BytesMut};
use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWriteExt, ReadBuf},
    net::{TcpStream, UnixStream},
    time::{Instant, Sleep},
};

use crate::client::Endpoint;

/// How much one read from the socket may take in.
pub(crate) const READ_BYTES: usize = 64 * 1024;
/// The read buffer of a quiet stream: most containers are idle, and their buffers are most of
/// the source's memory. It doubles (up to [`READ_BYTES`]) when a read fills it, and shrinks back
/// when the stream cools down.
const QUIET_READ_BYTES: usize = 4 * 1024;
/// The largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// The largest frame accepted. Docker's frames carry at most a 16 KiB piece of a line plus its
/// timestamp; a larger size means the stream is not what it should be.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// How much of an error answer's body is read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// While a stream is hot, its socket is read once per pause instead of on every write.
pub(crate) const COALESCE_PAUSE: Duration = Duration::from_millis(1);
/// Small reads within one [`COALESCE_PAUSE`] that make a stream hot.
const HOT_READS: u32 = 4;
/// Reading this much at a wake-up shares it among fifty lines or more: no need to park. After a
/// pause it means the writer outpaces the pause: a Unix socket holds only a few hundred writes
/// (each write is a buffer of its own), so pausing on would cap the rate.
const BIG_READ_BYTES: usize = 8 * 1024;

/// Where the daemon listens, for the raw path; `None` from [`RawEndpoint::new`] for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawEndpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl RawEndpoint {
    pub(crate) fn new(endpoint: &Endpoint) -> Option<RawEndpoint> {
        match endpoint {
            Endpoint::Unix(path) => Some(RawEndpoint::Unix(PathBuf::from(path))),
            Endpoint::Http(address) => Some(RawEndpoint::Tcp(address.clone())),
            Endpoint::Https(_) => None,
        }
    }

    fn host_header(&self) -> &str {
        match self {
            // Docker ignores the host of a Unix socket request, but HTTP/1.1 requires one.
            RawEndpoint::Unix(_) => "docker",
            RawEndpoint::Tcp(address) => address,
        }
    }
}

/// What to ask for: the query of `GET /containers/{id}/logs`.
#[derive(Debug, Clone)]
pub(crate) struct LogsRequest<'a> {
    /// `1.41`.
    pub(crate) api_version: &'a str,
    pub(crate) container_id: &'a str,
    pub(crate) follow: bool,
    /// Unix seconds; 0 for everything.
    pub(crate) since: i32,
    /// Only the last this many lines (`None`: all). The daemon finds them from the end of the
    /// file, without reading what comes before.
    pub(crate) tail: Option<u32>,
    /// Whether the container has a TTY: its stream is raw bytes, not multiplexed frames.
    pub(crate) tty: bool,
}

/// Opens the stream lazily: the connection is made on the first poll. `timeout` bounds the
/// connection, the request and the response head; the body's reads are bounded by the
/// follower's inactivity deadline.
pub(crate) fn logs(
    endpoint: &RawEndpoint,
    request: &LogsRequest<'_>,
    timeout: Duration,
) -> RawLogs {
    let head = format!(
        "GET /v{}/containers/{}/logs?follow={}&stdout=1&stderr=1&since={}&timestamps=1&tail={} HTTP/1.1\r\n\
         Host: {}\r\nUser-Agent: log-capturer/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        request.api_version,
        request.container_id,
        u8::from(request.follow),
        request.since,
        request
            .tail
            .map_or_else(|| "all".to_owned(), |lines| lines.to_string()),
        endpoint.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    let endpoint = endpoint.clone();
    let open = async move {
        match tokio::time::timeout(timeout, open(endpoint, head)).await {
            Ok(opened) => opened,
            Err(_) => Err(DockerError::RequestTimeoutError),
        }
    };
    RawLogs {
        state: State::Opening(Box::pin(open)),
        tty: request.tty,
    }
}

/// The stream returned by [`logs`].
pub(crate) struct RawLogs {
    state: State,
    tty: bool,
}

type Opening = Pin<Box<dyn Future<Output = Result<Body, DockerError>> + Send>>;

enum State {
    Opening(Opening),
    Reading(Body),
    Done,
}

impl std::fmt::Debug for RawLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Opening(_) => "opening",
            State::Reading(_) => "reading",
            State::Done => "done",
        };
        f.debug_struct("RawLogs")
            .field("state", &state)
            .field("tty", &self.tty)
            .finish()
    }
}

/// A connection under the reactor: reads wait for readiness.
#[derive(Debug)]
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection out of the reactor (still non-blocking): its data wakes nobody.
#[derive(Debug)]
enum Parked {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Conn {
    async fn connect(endpoint: &RawEndpoint) -> io::Result<Conn> {
        Ok(match endpoint {
            RawEndpoint::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
            RawEndpoint::Tcp(address) => {
                let stream = TcpStream::connect(address.as_str()).await?;
                stream.set_nodelay(true)?;
                // A follow stream may stay silent for hours: keepalive notices a dead peer.
                crate::transport::set_tcp_keepalive(&stream)?;
                Conn::Tcp(stream)
            }
        })
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Unix(stream) => stream.write_all(bytes).await,
            Conn::Tcp(stream) => stream.write_all(bytes).await,
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, into: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(into);
        ready!(match self {
            Conn::Unix(stream) => Pin::new(stream).poll_read(cx, &mut buf),
            Conn::Tcp(stream) => Pin::new(stream).poll_read(cx, &mut buf),
        })?;
        Poll::Ready(Ok(buf.filled().len()))
    }

    async fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, into)).await
    }

    /// Takes the socket out of the reactor (it stays non-blocking).
    fn park(self) -> io::Result<Parked> {
        Ok(match self {
            Conn::Unix(stream) => Parked::Unix(stream.into_std()?),
            Conn::Tcp(stream) => Parked::Tcp(stream.into_std()?),
        })
    }
}

impl Parked {
    fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        match self {
            Parked::Unix(stream) => stream.read(into),
            Parked::Tcp(stream) => stream.read(into),
        }
    }

    /// Puts the socket back under the reactor.
    fn unpark(self) -> io::Result<Conn> {
        Ok(match self {
            Parked::Unix(stream) => Conn::Unix(UnixStream::from_std(stream)?),
            Parked::Tcp(stream) => Conn::Tcp(TcpStream::from_std(stream)?),
        })
    }
}

#[derive(Debug)]
enum Socket {
    Registered(Conn),
    Parked(Parked),
    /// Only while moving between the two; a failed move leaves it here and ends the stream.
    Moving,
}

/// An open response body.
struct Body {
    socket: Socket,
    /// Where reads land (zeroed once, reused).
    scratch: Box<[u8]>,
    /// Bytes read from the socket, transfer framing not yet removed.
    raw: BytesMut,
    framing: Framing,
    /// Body bytes not yet split into frames.
    payload: BytesMut,
    /// Reads in the current window of one [`COALESCE_PAUSE`], to tell a hot stream.
    window_start: Instant,
    window_reads: u32,
    /// The pause between reads of a parked socket.
    pause: Pin<Box<Sleep>>,
    pause_armed: bool,
    /// The last parked read filled the scratch buffer: read again without pausing.
    read_again: bool,
    /// Bytes read since the last pause ended.
    burst_bytes: usize,
}

impl Stream for RawLogs {
    type Item = Result<LogOutput, DockerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Opening(open) => match ready!(open.as_mut().poll(cx)) {
                    Ok(body) => this.state = State::Reading(body),
                    Err(error) => {
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(error)));
                    }
                },
                State::Reading(body) => {
                    let polled = body.poll_item(cx, this.tty);
                    if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
                        this.state = State::Done;
                    }
                    return polled;
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Body {
    fn poll_item(
        &mut self,
        cx: &mut Context<'_>,
        tty: bool,
    ) -> Poll<Option<Result<LogOutput, DockerError>>> {
        loop {
            match split_item(&mut self.payload, tty) {
                Ok(Some(item)) => return Poll::Ready(Some(Ok(item))),
                Ok(None) => {}
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
            if self.framing.is_complete() {
                return Poll::Ready(match self.payload.is_empty() {
                    true => None,
                    false => Some(Err(invalid_data(format!(
                        "the body ended inside a frame ({} bytes left)",
                        self.payload.len()
                    ))
                    .into())),
                });
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) => {
                    if let Err(error) = self.framing.end_of_input() {
                        return Poll::Ready(Some(Err(error.into())));
                    }
                }
                Ok(_) => {
                    if let Err(error) = self.framing.decode(&mut self.raw, &mut self.payload) {
                        return Poll::Ready(Some(Err(error.into())));
                    }
                }
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
        }
    }

    /// Reads what the socket has into `raw`: on readiness while the stream is cool, once per
    /// pause while it is hot.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            match &mut self.socket {
                Socket::Registered(conn) => {
                    let read = ready!(conn.poll_read(cx, &mut self.scratch))?;
                    self.raw.extend_from_slice(&self.scratch[..read]);
                    self.grow_if_filled(read);
                    let now = Instant::now();
                    if now.duration_since(self.window_start) >= COALESCE_PAUSE {
                        self.window_start = now;
                        self.window_reads = 0;
                    }
                    // A big read already shares its wake-up among many lines; small reads in
                    // quick succession are a wake-up per line or two: park.
                    if read >= BIG_READ_BYTES {
                        self.window_reads = 0;
                    } else {
                        self.window_reads += 1;
                    }
                    if read > 0 && self.window_reads >= HOT_READS {
                        self.move_socket(|socket| match socket {
                            Socket::Registered(conn) => conn.park().map(Socket::Parked),
                            other => Ok(other),
                        })?;
                    }
                    return Poll::Ready(Ok(read));
                }
                Socket::Parked(parked) => {
                    let paused = !self.read_again;
                    if paused {
                        if !self.pause_armed {
                            self.pause.as_mut().reset(Instant::now() + COALESCE_PAUSE);
                            self.pause_armed = true;
                        }
                        ready!(self.pause.as_mut().poll(cx));
                        self.pause_armed = false;
                        self.burst_bytes = 0;
                    }
                    match parked.read(&mut self.scratch) {
                        Ok(read) => {
                            self.raw.extend_from_slice(&self.scratch[..read]);
                            self.read_again = read == self.scratch.len();
                            self.grow_if_filled(read);
                            self.burst_bytes += read;
                            if self.burst_bytes >= BIG_READ_BYTES {
                                // The writer outpaces the pause (it may be blocked on a full
                                // socket buffer, capping the rate): readiness serves it better,
                                // each wake-up finding many lines.
                                self.read_again = false;
                                self.window_reads = 0;
                                self.move_socket(|socket| match socket {
                                    Socket::Parked(parked) => {
                                        parked.unpark().map(Socket::Registered)
                                    }
                                    other => Ok(other),
                                })?;
                            }
                            return Poll::Ready(Ok(read));
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock && !paused => {
                            // Caught up after reading on: pause before the next read.
                            self.read_again = false;
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            // Cool again: wait for readiness.
                            self.read_again = false;
                            self.window_reads = 0;
                            self.shrink();
                            self.move_socket(|socket| match socket {
                                Socket::Parked(parked) => parked.unpark().map(Socket::Registered),
                                other => Ok(other),
                            })?;
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                            self.read_again = true;
                        }
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
                Socket::Moving => {
                    return Poll::Ready(Err(io::Error::other("the connection was lost")));
                }
            }
        }
    }

    /// A read that filled the buffer: the next one may take more.
    fn grow_if_filled(&mut self, read: usize) {
        if read == self.scratch.len() && read < READ_BYTES {
            self.scratch = vec![0u8; (read * 2).min(READ_BYTES)].into_boxed_slice();
        }
    }

    /// The stream went quiet: give back what a busy spell grew.
    fn shrink(&mut self) {
        if self.scratch.len() > QUIET_READ_BYTES {
            self.scratch = vec![0u8; QUIET_READ_BYTES].into_boxed_slice();
        }
        for buffer in [&mut self.raw, &mut self.payload] {
            if buffer.is_empty() && buffer.capacity() > QUIET_READ_BYTES {
                *buffer = BytesMut::new();
            }
        }
    }

    fn move_socket(&mut self, f: impl FnOnce(Socket) -> io::Result<Socket>) -> io::Result<()> {
        let socket = std::mem::replace(&mut self.socket, Socket::Moving);
        self.socket = f(socket)?;
        Ok(())
    }
}

/// The next item of the body: a whole multiplexed frame, or (TTY) every byte there is.
fn split_item(payload: &mut BytesMut, tty: bool) -> io::Result<Option<LogOutput>> {
    if tty {
        return Ok((!payload.is_empty()).then(|| LogOutput::Console {
            message: payload.split().freeze(),
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
    let message = payload.split_to(size).freeze();
    Ok(Some(match kind {
        0 => LogOutput::StdIn { message },
        1 => LogOutput::StdOut { message },
        2 => LogOutput::StdErr { message },
        _ => LogOutput::Console { message },
    }))
}

/// How the body's end is known (RFC 9112 section 6.3).
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Chunked(Chunked),
    Length(u64),
    UntilClose { closed: bool },
}

/// Where the chunked decoder stands.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
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
    fn from_head(headers: &[httparse::Header<'_>]) -> io::Result<Framing> {
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

    fn is_complete(&self) -> bool {
        match self {
            Framing::Chunked(state) => *state == Chunked::Done,
            Framing::Length(left) => *left == 0,
            Framing::UntilClose { closed } => *closed,
        }
    }

    /// The peer closed the connection.
    fn end_of_input(&mut self) -> io::Result<()> {
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
    fn decode(&mut self, raw: &mut BytesMut, payload: &mut BytesMut) -> io::Result<()> {
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

fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Connects, sends the request and reads the response head. A non-200 answer becomes
/// Docker's error with the message of its JSON body.
async fn open(endpoint: RawEndpoint, head: String) -> Result<Body, DockerError> {
    let mut conn = Conn::connect(&endpoint).await?;
    conn.write_all(head.as_bytes()).await?;
    let mut scratch = vec![0u8; QUIET_READ_BYTES].into_boxed_slice();
    let mut raw = BytesMut::with_capacity(QUIET_READ_BYTES);
    let (status, framing) = loop {
        let read = conn.read(&mut scratch).await?;
        raw.extend_from_slice(&scratch[..read]);
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection before answering",
            )
            .into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&raw) {
            Ok(httparse::Status::Complete(length)) => {
                let status = response.code.unwrap_or_default();
                let framing = Framing::from_head(response.headers)?;
                raw.advance(length);
                break (status, framing);
            }
            Ok(httparse::Status::Partial) if raw.len() <= MAX_HEAD_BYTES => {}
            Ok(httparse::Status::Partial) => {
                return Err(invalid_data("the response head is too long").into());
            }
            Err(error) => {
                return Err(invalid_data(format!("malformed response head: {error}")).into());
            }
        }
    };
    let mut body = Body {
        socket: Socket::Registered(conn),
        scratch,
        raw: BytesMut::new(),
        framing,
        payload: BytesMut::new(),
        window_start: Instant::now(),
        window_reads: 0,
        pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
        pause_armed: false,
        read_again: false,
        burst_bytes: 0,
    };
    body.framing.decode(&mut raw, &mut body.payload)?;
    if status == 200 {
        return Ok(body);
    }
    Err(error_answer(status, body).await)
}

/// Reads (boundedly) the body of an error answer: `{"message": "..."}`.
async fn error_answer(status_code: u16, mut body: Body) -> DockerError {
    while !body.framing.is_complete() && body.payload.len() < MAX_ERROR_BODY_BYTES {
        match std::future::poll_fn(|cx| body.poll_read(cx)).await {
            Ok(0) => {
                if body.framing.end_of_input().is_err() {
                    break;
                }
            }
            Ok(_) => {
                if body
                    .framing
                    .decode(&mut body.raw, &mut body.payload)
                    .is_err()
                {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    let message = serde_json::from_slice::<Message>(&body.payload)
        .map(|answer| answer.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body.payload).trim().to_owned());
    DockerError::DockerResponseServerError {
        status_code,
        message,
    }
}

#[cfg(test)]
mod tests;
