//! A container's log stream read straight from the daemon's socket.
//!
//! Docker writes one multiplexed frame per log line, each in its own HTTP chunk. Through
//! bollard and hyper every chunk becomes a body frame passed from the connection task to the
//! reader over a channel, so a fast writer costs a task hand-off (and bollard a zero-filled
//! 8 KiB buffer) per line: measured here, 3 to 5 µs of CPU per line. This module sends the
//! one `GET /containers/{id}/logs` request itself, parses the response head with `httparse`,
//! and then reads the body in reads of [`QUIET_READ_BYTES`] that grow up to [`READ_BYTES`]
//! while reads fill them (`framing.rs`: the chunked transfer framing is removed while the bytes
//! read are copied into the payload, their one copy; Docker's 8-byte frame headers are split off
//! the payload without a copy): a line costs a copy and a reference count, not a wake-up.
//!
//! It also removes the wake-up per line that remains: while a stream is hot, its socket is
//! parked out of the reactor and read once per [`crate::coalesce::PAUSE`] (`parking.rs`,
//! `socket.rs`).
//!
//! It yields [`Frame`]s or a bollard error, like the TLS path (see [`crate::frame`]), so the
//! follower treats both alike: a non-200 answer is a `DockerResponseServerError` with Docker's
//! message, a transport failure an `IOError`. It serves `unix://` and plain `http://`
//! endpoints; TLS endpoints keep bollard's client. Every other request goes through bollard.

mod framing;
mod parking;
mod socket;

use std::{
    future::Future,
    io,
    path::PathBuf,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bollard::errors::Error as DockerError;
use bytes::{Buf, BytesMut};
use futures_util::Stream;

use crate::{client::Endpoint, frame::Frame};
use framing::{Framing, invalid_data, split_frame};
use parking::{Move, Parking};
use socket::{Conn, Socket};

/// How much one read from the socket may take in.
pub(crate) const READ_BYTES: usize = 64 * 1024;
/// The read buffer of a quiet stream: most containers are idle, and their buffers are most of
/// the source's memory. It doubles (up to [`READ_BYTES`]) when a read fills it, and shrinks back
/// when the stream cools down.
const QUIET_READ_BYTES: usize = 4 * 1024;
/// The largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How much of an error answer's body is read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

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
    /// Unix seconds; 0 for no end.
    pub(crate) until: i32,
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
        "GET /v{}/containers/{}/logs?follow={}&stdout=1&stderr=1&since={}{}&timestamps=1&tail={} HTTP/1.1\r\n\
         Host: {}\r\nUser-Agent: log-capturer/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        request.api_version,
        request.container_id,
        u8::from(request.follow),
        request.since,
        match request.until {
            0 => String::new(),
            until => format!("&until={until}"),
        },
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

/// An open response body.
struct Body {
    socket: Socket,
    /// Where reads land (zeroed once, reused); decoded from here into `payload`.
    scratch: Box<[u8]>,
    framing: Framing,
    /// Body bytes not yet split into frames.
    payload: BytesMut,
    /// Whether the socket is parked (see `parking.rs`).
    parking: Parking,
}

impl Stream for RawLogs {
    type Item = Result<Frame, DockerError>;

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
                    let polled = body.poll_frame(cx, this.tty);
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
    fn new(socket: Socket, scratch: Box<[u8]>, framing: Framing) -> Body {
        Body {
            socket,
            scratch,
            framing,
            payload: BytesMut::new(),
            parking: Parking::new(),
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        tty: bool,
    ) -> Poll<Option<Result<Frame, DockerError>>> {
        loop {
            match split_frame(&mut self.payload, tty) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
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
            if let Err(error) = ready!(self.poll_body(cx)) {
                return Poll::Ready(Some(Err(error.into())));
            }
        }
    }

    /// Reads more of the body into `payload` (or learns that it ended).
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match ready!(self.poll_read(cx))? {
            0 => self.framing.end_of_input(),
            _ => Ok(()),
        })
    }

    /// Reads what the socket has into `payload`: on readiness while the stream is cool, once
    /// per pause while it is hot.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let (read, next) = match &mut self.socket {
                Socket::Registered(conn) => {
                    let read = ready!(conn.poll_read(cx, &mut self.scratch))?;
                    self.take_in(read)?;
                    (read, self.parking.after_ready_read(read))
                }
                Socket::Parked(_) => match ready!(self.poll_parked_read(cx))? {
                    Some(read) => read,
                    None => continue,
                },
                Socket::Moving => {
                    return Poll::Ready(Err(io::Error::other("the connection was lost")));
                }
            };
            self.move_socket(next)?;
            return Poll::Ready(Ok(read));
        }
    }

    /// One read of the parked socket, after the pause: `None` if it found nothing (and the
    /// socket may be back under the reactor).
    fn poll_parked_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<(usize, Move)>>> {
        let paused = ready!(self.parking.poll_pause(cx));
        let Socket::Parked(parked) = &mut self.socket else {
            return Poll::Ready(Ok(None));
        };
        Poll::Ready(match parked.read(&mut self.scratch) {
            Ok(read) => {
                let filled = read == self.scratch.len();
                self.take_in(read)?;
                let next = self.parking.after_parked_read(read, filled);
                Ok(Some((read, next)))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let next = self.parking.after_empty_read(paused);
                if next == Move::Unpark {
                    // Cool again: wait for readiness.
                    self.shrink();
                }
                self.move_socket(next).map(|()| None)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {
                self.parking.interrupted();
                Ok(None)
            }
            Err(error) => Err(error),
        })
    }

    fn move_socket(&mut self, next: Move) -> io::Result<()> {
        match next {
            Move::Stay => Ok(()),
            Move::Park => self.socket.park(),
            Move::Unpark => self.socket.unpark(),
        }
    }

    /// Decodes the `read` bytes that landed in `scratch` into `payload`; a read that filled
    /// the buffer makes the next one larger.
    fn take_in(&mut self, read: usize) -> io::Result<()> {
        self.framing
            .decode(&self.scratch[..read], &mut self.payload)?;
        if read == self.scratch.len() && read < READ_BYTES {
            self.scratch = vec![0u8; (read * 2).min(READ_BYTES)].into_boxed_slice();
        }
        Ok(())
    }

    /// The stream went quiet: give back what a busy spell grew.
    fn shrink(&mut self) {
        if self.scratch.len() > QUIET_READ_BYTES {
            self.scratch = vec![0u8; QUIET_READ_BYTES].into_boxed_slice();
        }
        if self.payload.is_empty() && self.payload.capacity() > QUIET_READ_BYTES {
            self.payload = BytesMut::new();
        }
    }
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
    let mut body = Body::new(Socket::Registered(conn), scratch, framing);
    body.framing.decode(&raw, &mut body.payload)?;
    if status == 200 {
        return Ok(body);
    }
    Err(error_answer(status, body).await)
}

/// Reads (boundedly) the body of an error answer: `{"message": "..."}`.
async fn error_answer(status_code: u16, mut body: Body) -> DockerError {
    while !body.framing.is_complete() && body.payload.len() < MAX_ERROR_BODY_BYTES {
        if std::future::poll_fn(|cx| body.poll_body(cx)).await.is_err() {
            break;
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
