//! Helpers for the end-to-end tests: the real `log-capturer` binary as a child process, its
//! health API over plain HTTP/1.1, and its file sink read back into a line checker.
//!
//! The binary is `$CAPTURER_BIN_UNDER_TEST` when set (`cargo xtask test` builds it first), else it is
//! built here into `target/e2e`.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        mpsc::{self, Receiver},
    },
    thread,
    time::{Duration, Instant},
};

use test_support::{checker::LineChecker, docker::workspace_root};

/// The path of the `log-capturer` binary under test.
pub fn capturer_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("CAPTURER_BIN_UNDER_TEST") {
                return PathBuf::from(path);
            }
            let root = workspace_root();
            let target_dir = root.join("target").join("e2e");
            std::fs::create_dir_all(&target_dir).expect("create target/e2e");
            let lock = std::fs::File::create(target_dir.join("build.lock")).expect("lock file");
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

/// A running `log-capturer` process, killed when dropped.
#[derive(Debug)]
pub struct Capturer {
    child: Child,
    /// The health API's address, read from the process's own start-up log.
    health: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// How long the capturer may take to start serving its health API.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Capturer {
    /// Starts the binary with `args` (plus `--log-format json` and an ephemeral health port
    /// unless `args` name one) and waits until its health API listens.
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
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !args.contains(&"--health-listen") {
            command.args(["--health-listen", "127.0.0.1:0"]);
        }
        let mut child = command.spawn().expect("start log-capturer");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listen_tx, listen_rx) = mpsc::channel();
        let log_writer = Arc::clone(&log);
        // The reader thread ends when the process closes its stderr (it exits).
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listen_address(&line) {
                    let _ = listen_tx.send(addr);
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let health = wait_listen(&listen_rx, &log);
        Capturer { child, health, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The health API's address.
    pub fn health_addr(&self) -> SocketAddr {
        self.health
    }

    /// `GET path` on the health API: status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.health, path)
    }

    /// `GET /health` as JSON.
    pub fn health(&self) -> serde_json::Value {
        let (_, body) = self.get("/health");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/health is not JSON ({e}): {body}"))
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        self.get("/metrics").1
    }

    /// Polls `/health` until `condition` holds, panicking after `timeout` with the last body.
    pub fn wait_health(
        &self,
        timeout: Duration,
        what: &str,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let health = self.health();
            if condition(&health) {
                return health;
            }
            assert!(
                started.elapsed() < timeout,
                "timed out waiting for {what}; last /health: {health:#}\nlog:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The process's own log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until the process's own log contains `needle`, panicking after `timeout`; returns
    /// the log.
    pub fn wait_log(&self, timeout: Duration, needle: &str) -> String {
        self.wait_log_after(0, timeout, &[needle]);
        self.log_text()
    }

    /// How many lines the process has logged so far (for [`Capturer::wait_log_after`]).
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits until a line logged after the first `from` lines contains every one of `needles`;
    /// returns it. Panics after `timeout` with the log.
    pub fn wait_log_after(&self, from: usize, timeout: Duration, needles: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .skip(from)
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                started.elapsed() < timeout,
                "no log line with {needles:?} within {timeout:?}; log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal (`TERM`, `KILL`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, panicking after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for log-capturer") {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "log-capturer did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Capturer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen_address(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("listen")?.as_str()?.parse().ok()
}

fn wait_listen(listen_rx: &Receiver<SocketAddr>, log: &Mutex<Vec<String>>) -> SocketAddr {
    listen_rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
        panic!(
            "log-capturer did not report its health address within {START_TIMEOUT:?}; log:\n{}",
            log.lock().unwrap().join("\n")
        )
    })
}

/// `GET path` from `addr`: status code and body; panics if no answer comes.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response =
        test_support::http::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (response.status, response.body)
}

/// The container tasks of a `/health` body that are in `state`.
pub fn container_tasks<'a>(
    health: &'a serde_json::Value,
    state: &str,
) -> Vec<&'a serde_json::Value> {
    health["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|task| {
                    task["id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("container_"))
                })
                .filter(|task| task["state"] == state)
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one series (`name{labels}` exactly as rendered) in a `/metrics` body.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Reads every record of one file sink file (none if it does not exist yet).
pub fn file_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A last line without its newline is still being written: it is read next time.
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| {
            let line = line.trim_end_matches('\n');
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON record ({e}): {line}", path.display()))
        })
        .collect()
}

/// Reads every record of the file sink under `data_dir` (the live file and rotated ones).
pub fn file_sink_records(data_dir: &Path) -> Vec<serde_json::Value> {
    let dir = data_dir.join("logs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        if file.extension().is_some_and(|ext| ext == "gz") {
            continue;
        }
        records.extend(file_records(&file));
    }
    records
}

/// Waits until the file sink under `data_dir` holds `expected` records (or fails after
/// `timeout`).
pub fn wait_records(data_dir: &Path, expected: usize, timeout: Duration) {
    let started = Instant::now();
    loop {
        let count = file_sink_records(data_dir).len();
        if count >= expected {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "only {count} of {expected} records after {timeout:?}"
        );
        // Polling the sink's file: the capturer is another process.
        thread::sleep(Duration::from_millis(250));
    }
}

/// Feeds file sink records into a checker keyed by container id.
pub fn check_records(records: &[serde_json::Value], checker: &mut LineChecker) {
    for record in records {
        let (Some(id), Some(stream), Some(message)) = (
            record["container_id"].as_str(),
            record["stream"].as_str(),
            record["message"].as_str(),
        ) else {
            panic!("record without container_id/stream/message: {record}");
        };
        checker.record(id, stream, message);
    }
}

/// A unique label value for this test run, so each test's capturer only watches its own
/// containers (`--include-label log-capturer-e2e=<value>`).
pub use test_support::docker::unique_name as unique_label;
