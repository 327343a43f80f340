//! The one coalescing policy: while a container writes fast, its lines wait up to [`PAUSE`] so
//! that one wake-up of the worker thread takes many of them.
//!
//! Docker writes one HTTP chunk per line. Woken per chunk, a fast writer would cost a wake-up
//! (and, through hyper, a task hand-off) per line. Where the pause is taken depends on who reads
//! the socket:
//!
//! - the raw reader (`unix://`, `http://`) parks a hot socket out of the reactor and reads it
//!   once per [`PAUSE`] (`raw_logs/parking.rs`);
//! - bollard's stream (TLS) cannot be read that way: the pump sleeps [`PAUSE`] after a busy
//!   burst ([`Bursts`]) and hyper's body channel applies backpressure meanwhile;
//! - a file follower reads a busy container's files again after [`PAUSE`], without being told
//!   of each write (`files/follower/wait.rs`).
//!
//! Either way the pump keeps filling a batch while bursts are busy and sends it as soon as the
//! stream goes idle, so a line at a low rate goes out at once and a line at a high rate waits at
//! most one pause (plus `batch_max_latency` if the batch is not full).

use std::time::Duration;

use tokio::time::Instant;

/// The longest a hot stream's line waits for the next read (raw path) or poll (TLS path).
pub(crate) const PAUSE: Duration = Duration::from_millis(1);

/// A burst (what was ready without waiting) of at least this many frames means the stream is
/// busy.
const BUSY_FRAMES: usize = 64;
/// The same, in payload bytes.
const BUSY_BYTES: usize = 16 * 1024;

/// Tells busy bursts from idle ones.
#[derive(Debug)]
pub(crate) struct Bursts {
    last_end: Instant,
}

impl Bursts {
    pub(crate) fn new() -> Bursts {
        Bursts {
            last_end: Instant::now(),
        }
    }

    /// A burst of `frames` frames and `bytes` payload bytes ran from `start` to `end`: whether
    /// the stream is busy (a big burst, or bursts following each other closer than the pause, a
    /// fast writer whose frames hyper hands over one by one).
    pub(crate) fn busy(
        &mut self,
        start: Instant,
        end: Instant,
        frames: usize,
        bytes: usize,
    ) -> bool {
        let busy = frames >= BUSY_FRAMES
            || bytes >= BUSY_BYTES
            || start.duration_since(self.last_end) < PAUSE;
        self.last_end = end;
        busy
    }
}

/// Lets the other tasks queued on this thread (hyper's connection task) run once, then resumes.
///
/// Unlike `tokio::task::yield_now`, which defers the task until the runtime has polled its I/O
/// driver (an `epoll_wait` per call), waking itself puts the task straight back at the end of
/// the run queue: under load this is called per HTTP chunk, so the syscall mattered.
pub(crate) async fn yield_to_local_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_or_close_bursts_are_busy_and_spaced_small_ones_are_not() {
        let start = Instant::now();
        let mut bursts = Bursts::new();
        let later = start + PAUSE * 10;
        assert!(bursts.busy(later, later, BUSY_FRAMES, 0), "many frames");
        let later = later + PAUSE * 10;
        assert!(bursts.busy(later, later, 1, BUSY_BYTES), "many bytes");
        let later = later + PAUSE * 10;
        assert!(
            !bursts.busy(later, later, 1, 10),
            "small, after a quiet spell"
        );
        let close = later + PAUSE / 2;
        assert!(
            bursts.busy(close, close, 1, 10),
            "small, right after another"
        );
    }
}
