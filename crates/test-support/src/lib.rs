//! Dev-only helpers shared by tests, the soak and the benchmarks.
//!
//! - [`docker`]: the real Docker daemon through its CLI: the `loggen` image (built `FROM scratch`
//!   from our static log generator, never pulled), containers removed when their guard drops.
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

pub mod checker;
pub mod docker;
pub mod haproxy;
#[cfg(feature = "http")]
pub mod http;
pub mod pki;
#[cfg(feature = "receiver")]
pub mod receiver;
