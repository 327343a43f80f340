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
mod http;
pub(crate) mod metrics;
pub(crate) mod procfs;
pub(crate) mod tail;
pub(crate) mod time;
