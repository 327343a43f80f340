//! The `log-capturer` binary as a child process: started on a data dir, its health API found
//! from its own start-up log, asked over HTTP, stopped or killed when dropped. The one process
//! harness of the end-to-end tests and xtask.
//!
//! The capturer binds its health API to a free port (`--health-listen 127.0.0.1:0`) unless told
//! otherwise; the bound address is read from its first log event (`"listen":"127.0.0.1:PORT"`).
//! Its own log is kept in memory (the tests wait on it) or copied to a file (the long xtask runs
//! keep it beside their reports).
//!
//! Errors are returned ([`Capturer::spawn`], [`Capturer::health_status`], [`Capturer::scrape`]);
//! the conveniences for tests ([`Capturer::start`], [`Capturer::health`], [`Capturer::wait_log`],
//! ...) panic with the capturer's log instead.

mod config;

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

pub use self::config::{CapturerConfig, command};
use crate::{http, metrics::Metrics, wait};

/// How long the capturer may take to bind its health API after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the waits look again (another process's state: nothing to subscribe to).
const POLL: Duration = Duration::from_millis(100);

/// A running capturer; killed when dropped unless it exited ([`Capturer::stop`]).
#[derive(Debug)]
pub struct Capturer {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: Log,
    /// Copies the capturer's stderr into the log; joined once the process has exited.
    stderr_copier: Option<JoinHandle<()>>,
    exited: bool,
}

/// Where the capturer's own log goes: kept in memory, or copied to a file.
#[derive(Debug, Clone)]
enum Log {
    Memory(Arc<Mutex<Vec<String>>>),
    File(PathBuf),
}

impl Log {
    fn lines(&self) -> Vec<String> {
        match self {
            Log::Memory(lines) => lines.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Log::File(path) => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl Capturer {
    /// Spawns the capturer as `config` says and waits until its health API is bound.
    pub fn spawn(config: &CapturerConfig) -> Result<Capturer> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create {}", config.data_dir.display()))?;
        Capturer::spawn_command(command(config), &config.data_dir, Some(&config.log_file))
    }

    /// Spawns `command` (a capturer's command line on `data_dir`; stdio is set here) and waits
    /// until its health API is bound. Its log goes to `log_file`, else it is kept in memory.
    pub fn spawn_command(
        mut command: Command,
        data_dir: &Path,
        log_file: Option<&Path>,
    ) -> Result<Capturer> {
        let file = log_file
            .map(|path| File::create(path).with_context(|| format!("create {}", path.display())))
            .transpose()?;
        let stdout = match &file {
            Some(file) => Stdio::from(file.try_clone()?),
            None => Stdio::null(),
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {:?}", command.get_program()))?;
        let stderr = child.stderr.take().context("the capturer's stderr")?;
        let log = match log_file {
            Some(path) => Log::File(path.to_owned()),
            None => Log::Memory(Arc::default()),
        };
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = log.clone();
        let stderr_copier = thread::spawn(move || copy_log(stderr, file, &sink, &addr_tx));
        let mut capturer = Capturer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            log,
            stderr_copier: Some(stderr_copier),
            exited: false,
        };
        capturer.addr = capturer.wait_listen(&addr_rx)?;
        Ok(capturer)
    }

    fn wait_listen(&mut self, addr_rx: &mpsc::Receiver<SocketAddr>) -> Result<SocketAddr> {
        let started = Instant::now();
        loop {
            match addr_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(addr) => return Ok(addr),
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < START_TIMEOUT => {
                    if let Some(status) = self.child.try_wait()? {
                        self.exited = true;
                        bail!(
                            "log-capturer exited ({status}) before serving; its log:\n{}",
                            self.log_tail()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Its stderr closed: it exited (or is exiting) before serving.
                    let status = self.child.wait()?;
                    self.exited = true;
                    bail!(
                        "log-capturer exited ({status}) before serving; its log:\n{}",
                        self.log_tail()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "log-capturer logged no listen address within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                ),
            }
        }
    }

    /// Starts the binary under test ([`capturer_binary`]) on `data_dir` with `args` (plus
    /// `--log-format json` and an ephemeral health port unless `args` name one), keeping its log
    /// in memory. Panics if it does not serve.
    pub fn start(data_dir: &Path, args: &[&str]) -> Capturer {
        Capturer::start_with_env(data_dir, args, &[])
    }

    /// [`Capturer::start`] with extra environment variables (`DOCKER_HOST`, `LOG_CAPTURER_*`).
    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Capturer {
        let mut command = Command::new(capturer_binary());
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        if !args.contains(&"--health-listen") {
            command.args(["--health-listen", "127.0.0.1:0"]);
        }
        Capturer::spawn_command(command, data_dir, None)
            .unwrap_or_else(|error| panic!("log-capturer did not start: {error:#}"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The health API's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The health API's address (the tests' name for [`Capturer::addr`]).
    pub fn health_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The default file sink's active file.
    pub fn records_path(&self) -> PathBuf {
        self.data_dir.join("logs").join("containers.jsonl")
    }

    /// `GET /health`: the status code and the parsed document.
    pub fn health_status(&self) -> Result<(u16, Value)> {
        let response = http::get(self.addr, "/health")?;
        let document = serde_json::from_str(&response.body)
            .with_context(|| format!("/health is not JSON: {}", response.body))?;
        Ok((response.status, document))
    }

    /// `GET /metrics`, parsed.
    pub fn scrape(&self) -> Result<Metrics> {
        let response = http::get(self.addr, "/metrics")?;
        if response.status != 200 {
            bail!("/metrics answered {}", response.status);
        }
        Ok(Metrics::parse(&response.body))
    }

    /// How many `container_` tasks /health lists in `state`.
    pub fn container_tasks_in(&self, state: &str) -> Result<usize> {
        let (_, health) = self.health_status()?;
        Ok(container_tasks(&health, state).len())
    }

    /// `GET path` on the health API: status code and body; panics if no answer comes.
    pub fn get(&self, path: &str) -> (u16, String) {
        let response = http::get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (response.status, response.body)
    }

    /// `GET /health` as JSON; panics if it is not.
    pub fn health(&self) -> Value {
        let (_, body) = self.get("/health");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"))
    }

    /// `GET /metrics` as text.
    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// Polls `/health` until `condition` holds, panicking after `timeout` with the last body.
    pub fn wait_health(
        &self,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let waited = wait::until_every(POLL * 2, timeout, what, || {
            last = self.health();
            Ok(condition(&last))
        });
        if let Err(error) = waited {
            panic!(
                "{error:#}; last /health: {last:#}\nlog:\n{}",
                self.log_text()
            );
        }
        last
    }

    /// The process's own log so far.
    pub fn log_text(&self) -> String {
        self.log.lines().join("\n")
    }

    /// The last lines of the capturer's log, for error messages.
    pub fn log_tail(&self) -> String {
        let lines = self.log.lines();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// How many lines the process has logged so far (for [`Capturer::wait_log_after`]).
    pub fn log_len(&self) -> usize {
        self.log.lines().len()
    }

    /// Waits until the process's own log contains `needle`, panicking after `timeout`; returns
    /// the log.
    pub fn wait_log(&self, timeout: Duration, needle: &str) -> String {
        self.wait_log_after(0, timeout, &[needle]);
        self.log_text()
    }

    /// Waits until a line logged after the first `from` lines contains every one of `needles`;
    /// returns it. Panics after `timeout` with the log.
    pub fn wait_log_after(&self, from: usize, timeout: Duration, needles: &[&str]) -> String {
        let mut found = None;
        let what = format!("a log line with {needles:?}");
        let waited = wait::until(timeout, &what, || {
            found = self
                .log
                .lines()
                .into_iter()
                .skip(from)
                .find(|line| needles.iter().all(|needle| line.contains(needle)));
            Ok(found.is_some())
        });
        match (found, waited) {
            (Some(line), _) => line,
            (None, Err(error)) => panic!("{error:#}; log:\n{}", self.log_text()),
            (None, Ok(_)) => unreachable!("the wait ends when a line is found"),
        }
    }

    /// Sends a signal (`TERM`, `KILL`, `HUP`, ...).
    pub fn send_signal(&self, name: &str) -> Result<()> {
        crate::procfs::signal(self.child.id(), name)
    }

    /// [`Capturer::send_signal`], panicking if it fails.
    pub fn signal(&self, name: &str) {
        self.send_signal(name)
            .unwrap_or_else(|error| panic!("{error:#}"));
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                if let Some(copier) = self.stderr_copier.take() {
                    let _ = copier.join();
                }
                return Ok(Some(status));
            }
            if started.elapsed() > timeout {
                return Ok(None);
            }
            // Polling a child's exit: std offers no wait with a timeout.
            thread::sleep(POLL / 2);
        }
    }

    /// Waits for the process to exit, panicking after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_exit(timeout) {
            Ok(Some(status)) => status,
            Ok(None) => panic!(
                "log-capturer did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            ),
            Err(error) => panic!("wait for log-capturer: {error:#}"),
        }
    }

    /// Asks the capturer to shut down (SIGTERM) and waits up to `grace`; returns its exit code,
    /// or an error when it had to be killed.
    pub fn stop(mut self, grace: Duration) -> Result<i32> {
        let _ = self.send_signal("TERM");
        match self.try_wait_exit(grace)? {
            Some(status) => Ok(status.code().unwrap_or(-1)),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.exited = true;
                bail!("log-capturer did not exit within {grace:?} of SIGTERM; killed it")
            }
        }
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

/// The path of the `log-capturer` binary the end-to-end tests run: `$CAPTURER_BIN_UNDER_TEST`
/// when set (`cargo xtask test` builds it first), else it is built here into `target/e2e`.
pub fn capturer_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("CAPTURER_BIN_UNDER_TEST") {
                return PathBuf::from(path);
            }
            let root = crate::docker::workspace_root();
            let target_dir = root.join("target").join("e2e");
            std::fs::create_dir_all(&target_dir).expect("create target/e2e");
            let lock = File::create(target_dir.join("build.lock")).expect("lock file");
            lock.lock().expect("take the build lock");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .current_dir(&root)
                .args(["build", "--quiet", "-p", "log-capturer"])
                .env("CARGO_TARGET_DIR", &target_dir)
                .status()
                .expect("run cargo");
            assert!(status.success(), "building log-capturer failed");
            target_dir.join("debug").join("log-capturer")
        })
        .clone()
}

/// The `container_` tasks of a /health document.
pub fn each_container_task(health: &Value) -> impl Iterator<Item = &Value> {
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

/// The `container_` tasks of a /health document that are in `state`.
pub fn container_tasks<'a>(health: &'a Value, state: &str) -> Vec<&'a Value> {
    each_container_task(health)
        .filter(|task| task["state"] == state)
        .collect()
}

/// Copies the capturer's stderr into its log and reports the health address it logs.
fn copy_log(
    stderr: impl std::io::Read,
    mut file: Option<File>,
    log: &Log,
    addr_tx: &mpsc::Sender<SocketAddr>,
) {
    let mut reported = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if !reported && let Some(addr) = listen_address(&line) {
            reported = addr_tx.send(addr).is_ok();
        }
        match (&mut file, log) {
            (Some(file), _) => {
                let _ = writeln!(file, "{line}");
            }
            (None, Log::Memory(lines)) => {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line)
            }
            (None, Log::File(_)) => {}
        }
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
