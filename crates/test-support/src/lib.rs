//! Dev-only harness shared by the tests, the soak, chaos and the benchmarks: the one home of
//! each piece (xtask keeps only its commands).
//!
//! - [`docker`]: the real Docker daemon through its CLI (errors or panics): the `loggen` image
//!   (built `FROM scratch` from our static log generator, never pulled), containers removed when
//!   their guard drops, labelled sets of containers.
//! - `capturer` (feature `harness`): the `log-capturer` binary as a child process, its health API
//!   and its own log.
//! - `ledger` (feature `harness`): captured lines against Docker's own logs, per container, run
//!   and stream: lost, duplicated, out of order.
//! - `report` (feature `harness`): tables (text and Markdown), JSON files, fresh output
//!   directories, slopes and percentiles, SVG charts.
//! - [`tail`]: follows the file sink's output across rotations, line by line.
//! - [`metrics`]: the Prometheus text format of `/metrics`.
//! - [`procfs`]: RSS, open fds, CPU time and liveness of a process, from `/proc`.
//! - [`time`]: the wall clock, RFC 3339 timestamps, command-line durations.
//! - [`parallel`]: work on many items at once on scoped threads.
//! - [`wait`]: waiting on another process with a deadline, pacing a timeline.
//! - [`checker`]: counts `loggen` lines per container, run and stream, and reports what was lost,
//!   duplicated or reordered.
//! - [`pki`]: a CA, server and client certificates made with `openssl`, for TLS tests.
//! - `receiver` (feature `receiver`): a loopback HTTP receiver, plain or TLS, that decodes Loki
//!   and OTLP requests independently of the sinks.
//! - [`haproxy`]: a private HAProxy on a loopback port (TLS termination, the socket proxy).
//! - `http` (feature `http`): the one HTTP client of the tests and xtask (reqwest), for the
//!   agent's health API and the other loopback servers they ask.
//!
//! ```no_run
//! use test_support::{checker::LineChecker, docker};
//!
//! let image = docker::loggen_image();
//! let container = docker::Container::run(&["--name", "demo", image, "--lines", "5"]);
//! container.wait_exit();
//! let mut checker = LineChecker::default();
//! for line in docker::logs(container.id()) {
//!     checker.record(container.id(), "stdout", &line);
//! }
//! assert_eq!(checker.report().total_lines(), 5);
//! ```

#[cfg(feature = "harness")]
pub mod capturer;
pub mod checker;
pub mod docker;
pub mod haproxy;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "harness")]
pub mod ledger;
pub mod metrics;
pub mod parallel;
pub mod pki;
pub mod procfs;
#[cfg(feature = "receiver")]
pub mod receiver;
#[cfg(feature = "harness")]
pub mod report;
pub mod tail;
pub mod time;
pub mod wait;
