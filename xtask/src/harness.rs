//! What `soak` and `bench` share: driving the capturer and Docker, and observing both.
//!
//! - [`capturer`]: builds the release binary, runs it on a fresh data dir, asks its health API.
//! - [`containers`]: the Docker CLI with errors instead of panics, and labelled container sets
//!   that are removed when their guard drops.
//! - [`metrics`]: a small parser for the Prometheus text format of `/metrics`.
//! - [`procfs`]: RSS, open fds and CPU time of a process, read from `/proc`.
//! - [`tail`]: follows the file sink's output across rotations, line by line.
//! - [`time`]: RFC 3339 timestamps, durations given on the command line, the wall clock.
//!
//! Everything here is synchronous: the harness runs a handful of threads, not a runtime.

pub(crate) mod capturer;
pub(crate) mod containers;
pub(crate) mod metrics;
pub(crate) mod procfs;
pub(crate) mod tail;
pub(crate) mod time;

use anyhow::{Result, bail};

/// Runs `work` on every item at once, each on its own scoped thread, and returns the results in
/// the items' order. `what` names the work in the error if a thread panics.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    what: &str,
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || work(item)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or_else(|_| bail!("{what} panicked")))
            .collect()
    })
}
