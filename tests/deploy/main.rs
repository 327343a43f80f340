//! The deployment deliverables under `deploy/`, checked for real.
//!
//! - [`image`]: `cargo xtask image` builds `log-capturer:dev`; run as a container next to a
//!   log generator, it captures the generator's lines into the mounted data dir, answers
//!   `/health` through its published port, passes its own `HEALTHCHECK`, never captures itself,
//!   and stops cleanly on SIGTERM.
//! - [`alerts`]: `promtool` checks and unit-tests the alert rules; a real Prometheus scraping a
//!   real agent fires the heartbeat alert when the agent's stream-worker threads are frozen (and
//!   not before), and the down alert when the whole process is stopped.
//! - [`artifacts`]: the compose files validate, every metric the dashboard queries exists in a
//!   running agent's `/metrics`, and the shipped agent configurations pass `--check-config`.
//! - [`data_dir`]: every deployment (image, compose, swarm, systemd) runs the agent on the same
//!   absolute data dir, kept by its volume or state directory.
//! - [`socket_proxy`]: the shipped least-privilege proxy (a real HAProxy in front of the real
//!   socket) passes every request the agent makes, which captures every line through it, and
//!   refuses writes and reads that are not on its list.
//!
//! The tools come from Debian: `docker.io`, `prometheus` (with `promtool`), `docker-compose` and
//! `haproxy`; `cargo xtask test` installs them (xtask/src/tools.rs), and a test run otherwise
//! fails with the apt line when one is missing.

mod alerts;
mod artifacts;
mod data_dir;
mod image;
mod socket_proxy;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use test_support::docker::workspace_root;

/// The apt line that installs the tools these tests need (besides Docker).
const APT_LINE: &str =
    "apt-get install -y --no-install-recommends prometheus docker-compose haproxy";

/// How often the tests poll something external (an HTTP endpoint, a container's state).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The `deploy/` directory.
fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// Panics with the apt line unless `program` is on PATH.
fn require_tool(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "`{program}` is not installed; `cargo xtask test` installs what the tests need \
         (as root), or: {APT_LINE}"
    );
}

/// Runs a command and returns its stdout, panicking with its output when it fails.
fn run_ok(command: &mut Command) -> String {
    let rendered = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {rendered}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{rendered} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A GET that tolerates a server that is not up yet (`None`). Returns the status and the body.
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    try_request(addr, "GET", path, "")
}

/// [`try_get`] with any method and a JSON body (sent when not empty).
fn try_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let json = (!body.is_empty()).then_some(body);
    let response = test_support::http::request(addr, method, path, json).ok()?;
    Some((response.status, response.body))
}

/// Percent-encodes a query parameter.
fn url_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Polls `probe` until it returns `Some`, panicking with `what` and the last `describe()` after
/// `timeout`.
fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}\n{}",
            describe()
        );
        // Polling an external process (Docker, Prometheus, the agent): nothing to subscribe to.
        std::thread::sleep(POLL_INTERVAL);
    }
}
