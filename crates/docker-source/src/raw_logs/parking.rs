//! When a raw stream's socket is parked out of the reactor (see [`crate::coalesce`]).
//!
//! While a stream is hot (several small reads within one [`PAUSE`]), its socket is taken out of
//! the reactor and read without blocking once per [`PAUSE`] on a timer, so the daemon's writes
//! accumulate in the socket buffer instead of waking the thread one by one. A read that finds
//! nothing (the stream cooled down) or a lot (the writer outpaces the pause, and would block on
//! the socket buffer) puts the socket back under the reactor. A line waits at most one pause
//! longer. This type decides; `Body::poll_read` does the reads and the moves.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::time::{Instant, Sleep};

use crate::coalesce::PAUSE;

/// Small reads within one [`PAUSE`] that make a stream hot.
const HOT_READS: u32 = 4;
/// Reading this much at a wake-up shares it among fifty lines or more: no need to park. After a
/// pause it means the writer outpaces the pause: a Unix socket holds only a few hundred writes
/// (each write is a buffer of its own), so pausing on would cap the rate.
const BIG_READ_BYTES: usize = 8 * 1024;

/// What to do with the socket after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Move {
    Stay,
    /// Take it out of the reactor: the stream is hot.
    Park,
    /// Put it back under the reactor: the stream cooled down, or outpaces the pause.
    Unpark,
}

/// A raw stream's heat: the reads that tell it is hot, and the pause of a parked socket.
#[derive(Debug)]
pub(super) struct Parking {
    /// Reads in the current window of one [`PAUSE`], to tell a hot stream.
    window_start: Instant,
    window_reads: u32,
    /// The pause between reads of a parked socket.
    pause: Pin<Box<Sleep>>,
    pause_armed: bool,
    /// The last parked read filled the buffer: read again without pausing.
    read_again: bool,
    /// Bytes read since the last pause ended.
    burst_bytes: usize,
}

impl Parking {
    pub(super) fn new() -> Parking {
        Parking {
            window_start: Instant::now(),
            window_reads: 0,
            pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
            pause_armed: false,
            read_again: false,
            burst_bytes: 0,
        }
    }

    /// A read of `read` bytes on readiness: park if it is one of several small reads in a row.
    pub(super) fn after_ready_read(&mut self, read: usize) -> Move {
        let now = Instant::now();
        if now.duration_since(self.window_start) >= PAUSE {
            self.window_start = now;
            self.window_reads = 0;
        }
        // A big read already shares its wake-up among many lines; small reads in quick
        // succession are a wake-up per line or two.
        if read >= BIG_READ_BYTES {
            self.window_reads = 0;
        } else {
            self.window_reads += 1;
        }
        if read > 0 && self.window_reads >= HOT_READS {
            Move::Park
        } else {
            Move::Stay
        }
    }

    /// Before a parked read: waits out the pause, unless the last read filled the buffer.
    /// Resolves to whether it paused.
    pub(super) fn poll_pause(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if self.read_again {
            return Poll::Ready(false);
        }
        if !self.pause_armed {
            self.pause.as_mut().reset(Instant::now() + PAUSE);
            self.pause_armed = true;
        }
        ready!(self.pause.as_mut().poll(cx));
        self.pause_armed = false;
        self.burst_bytes = 0;
        Poll::Ready(true)
    }

    /// A parked read of `read` bytes (`filled`: it filled the buffer).
    pub(super) fn after_parked_read(&mut self, read: usize, filled: bool) -> Move {
        self.read_again = filled;
        self.burst_bytes += read;
        if self.burst_bytes < BIG_READ_BYTES {
            return Move::Stay;
        }
        // The writer outpaces the pause (it may be blocked on a full socket buffer, capping the
        // rate): readiness serves it better, each wake-up finding many lines.
        self.read_again = false;
        self.window_reads = 0;
        Move::Unpark
    }

    /// A parked read found nothing: after reading on, pause before the next read; after a
    /// pause, the stream is cool again (the caller gives back its buffers).
    pub(super) fn after_empty_read(&mut self, paused: bool) -> Move {
        self.read_again = false;
        if !paused {
            return Move::Stay;
        }
        self.window_reads = 0;
        Move::Unpark
    }

    /// A parked read was interrupted: read again at once.
    pub(super) fn interrupted(&mut self) {
        self.read_again = true;
    }
}
