//! Builds and runs the `log-capturer` release binary, and asks its health API.
//!
//! The capturer runs on a fresh data dir with the default file sink
//! (`<data_dir>/logs/containers.jsonl`), watches only containers with one label
//! (`--include-label`), logs JSON to a file beside the reports, and binds its health API to a
//! free port (`--health-listen 127.0.0.1:0`); the bound address is read from its first log event
//! (`"listen":"127.0.0.1:PORT"`).

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use test_support::http;

use super::{metrics::Metrics, time::format_duration};
use crate::util::{cargo, project_root, run};

/// How long the capturer may take to bind its health API after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment variable that sets `docker.read_from`.
const READ_FROM_ENV: &str = "LOG_CAPTURER_DOCKER_READ_FROM";

/// Builds `log-capturer` in release mode and returns the binary's path.
pub(crate) fn build_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "log-capturer"]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || project_root().join("target"),
            |dir| project_root().join(dir),
        );
    let binary = target_dir.join("release").join("log-capturer");
    if !binary.is_file() {
        bail!(
            "the build succeeded but {} does not exist",
            binary.display()
        );
    }
    Ok(binary)
}

/// How to run the capturer.
#[derive(Debug, Clone)]
pub(crate) struct CapturerConfig {
    /// The release binary ([`build_release`]).
    pub(crate) binary: PathBuf,
    /// A fresh, empty data dir (checkpoints would otherwise change what is read).
    pub(crate) data_dir: PathBuf,
    /// Only containers with this label are monitored (`key=value`).
    pub(crate) include_label: String,
    /// `--heartbeat-interval`, when not the default.
    pub(crate) heartbeat_interval: Option<Duration>,
    /// `--task-timeout`, when not the default.
    pub(crate) task_timeout: Option<Duration>,
    /// Whether containers already running at start are read from their first line.
    pub(crate) read_from_beginning: bool,
    /// Where the capturer's own (JSON) log goes.
    pub(crate) log_file: PathBuf,
    /// Further settings as `LOG_CAPTURER_<SECTION>_<KEY>` environment variables.
    pub(crate) extra_env: Vec<(String, String)>,
}

/// A running capturer; killed when dropped unless [`Capturer::stop`] ended it.
#[derive(Debug)]
pub(crate) struct Capturer {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log_file: PathBuf,
    /// Copies the capturer's stderr into the log file; joined once the process has exited.
    stderr_copier: Option<JoinHandle<()>>,
    exited: bool,
}

/// The capturer's command line and environment for `config` (no stdio set).
pub(crate) fn command(config: &CapturerConfig) -> Command {
    let mut command = Command::new(&config.binary);
    command
        .arg("--data-dir")
        .arg(&config.data_dir)
        .args(["--health-listen", "127.0.0.1:0"])
        .args(["--include-label", &config.include_label])
        .args(["--log-format", "json"]);
    if let Some(interval) = config.heartbeat_interval {
        command.args(["--heartbeat-interval", &format_duration(interval)]);
    }
    if let Some(timeout) = config.task_timeout {
        command.args(["--task-timeout", &format_duration(timeout)]);
    }
    // The caller's own LOG_CAPTURER_* settings would make runs incomparable.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOG_CAPTURER_") {
            command.env_remove(key);
        }
    }
    if config.read_from_beginning {
        command.env(READ_FROM_ENV, "beginning");
    }
    command.envs(config.extra_env.iter().map(|(key, value)| (key, value)));
    command
}

impl Capturer {
    /// Spawns the capturer and waits until its health API is bound.
    pub(crate) fn spawn(config: &CapturerConfig) -> Result<Capturer> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create {}", config.data_dir.display()))?;
        let mut command = command(config);
        let log = File::create(&config.log_file)
            .with_context(|| format!("create {}", config.log_file.display()))?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", config.binary.display()))?;
        let stderr = child.stderr.take().context("the capturer's stderr")?;
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr_copier = std::thread::spawn(move || copy_log(stderr, log, &addr_tx));
        let mut capturer = Capturer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: config.data_dir.clone(),
            log_file: config.log_file.clone(),
            stderr_copier: Some(stderr_copier),
            exited: false,
        };
        let started = Instant::now();
        capturer.addr = loop {
            match addr_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < START_TIMEOUT => {
                    if let Some(status) = capturer.child.try_wait()? {
                        capturer.exited = true;
                        bail!(
                            "log-capturer exited ({status}) before serving; its log:\n{}",
                            capturer.log_tail()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stderr closed: it exited (or is exiting) before serving.
                    let status = capturer.child.wait()?;
                    capturer.exited = true;
                    bail!(
                        "log-capturer exited ({status}) before serving; its log:\n{}",
                        capturer.log_tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "log-capturer logged no listen address within {START_TIMEOUT:?}; its log:\n{}",
                    capturer.log_tail()
                ),
            }
        };
        Ok(capturer)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The health API's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The default file sink's active file.
    pub(crate) fn records_path(&self) -> PathBuf {
        self.data_dir.join("logs").join("containers.jsonl")
    }

    /// `GET /health`: the status code and the parsed document.
    pub(crate) fn health(&self) -> Result<(u16, Value)> {
        let response = http::get(self.addr, "/health")?;
        let document = serde_json::from_str(&response.body)
            .with_context(|| format!("/health is not JSON: {}", response.body))?;
        Ok((response.status, document))
    }

    /// `GET /metrics`, parsed.
    pub(crate) fn metrics(&self) -> Result<Metrics> {
        let response = http::get(self.addr, "/metrics")?;
        if response.status != 200 {
            bail!("/metrics answered {}", response.status);
        }
        Ok(Metrics::parse(&response.body))
    }

    /// How many `container_` tasks /health lists in `state`.
    pub(crate) fn container_tasks_in(&self, state: &str) -> Result<usize> {
        let (_, health) = self.health()?;
        Ok(container_tasks(&health)
            .filter(|task| task["state"] == state)
            .count())
    }

    /// Asks the capturer to shut down (SIGTERM) and waits up to `grace`; returns its exit code,
    /// or an error when it had to be killed.
    pub(crate) fn stop(mut self, grace: Duration) -> Result<i32> {
        // std has no signal API; `kill` is everywhere the capturer runs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if started.elapsed() > grace {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.exited = true;
                bail!("log-capturer did not exit within {grace:?} of SIGTERM; killed it");
            }
            // Polling a child's exit: std offers no wait with a timeout.
            std::thread::sleep(Duration::from_millis(50));
        };
        self.exited = true;
        if let Some(copier) = self.stderr_copier.take() {
            let _ = copier.join();
        }
        Ok(status.code().unwrap_or(-1))
    }

    /// The last lines of the capturer's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Capturer {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `container_` tasks of a /health document.
pub(crate) fn container_tasks(health: &Value) -> impl Iterator<Item = &Value> {
    health["tasks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|task| {
            task["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("container_"))
        })
}

/// Copies the capturer's stderr into its log file and reports the health address it logs.
fn copy_log(stderr: impl std::io::Read, mut log: File, addr_tx: &mpsc::Sender<SocketAddr>) {
    let mut reported = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if !reported && let Some(addr) = listen_address(&line) {
            reported = addr_tx.send(addr).is_ok();
        }
        let _ = writeln!(log, "{line}");
    }
}

/// The address in a log line's `listen` field (JSON `"listen":"ADDR"` or text `listen=ADDR`).
fn listen_address(line: &str) -> Option<SocketAddr> {
    let start = line
        .find("\"listen\":\"")
        .map(|at| at + "\"listen\":\"".len())
        .or_else(|| line.find("listen=").map(|at| at + "listen=".len()))?;
    let rest = &line[start..];
    let end = rest.find(['"', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Makes `dir` an empty directory.
pub(crate) fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::listen_address;

    #[test]
    fn the_listen_address_is_found_in_json_and_text_logs() {
        let json = r#"{"level":"INFO","fields":{"message":"log-capturer starting","listen":"127.0.0.1:40123"}}"#;
        assert_eq!(listen_address(json).unwrap().to_string(), "127.0.0.1:40123");
        assert_eq!(
            listen_address("INFO log-capturer starting listen=127.0.0.1:8401 data_dir=x")
                .unwrap()
                .port(),
            8401
        );
        assert!(listen_address(r#"{"message":"other"}"#).is_none());
    }
}
