//! A private HAProxy (Debian's `haproxy`) on a loopback port, for tests that put a proxy in
//! front of the Docker socket: TLS termination with client certificates, or the least-privilege
//! filter shipped in `deploy/socket-proxy/`. The process is this test's own child, stopped (by its
//! pid) when the guard drops; the Docker daemon behind it is never touched.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long HAProxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How many fresh ports are tried when another process takes the chosen one first.
const BIND_ATTEMPTS: usize = 3;

/// A running HAProxy, stopped when dropped.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Haproxy {
    /// Starts `haproxy -db` with the configuration `config(addr)` (written to `dir`), on a free
    /// loopback address, and waits until it accepts connections. The configuration should log
    /// to stdout (`log stdout format raw local0`): stdout and stderr go to [`Haproxy::log_text`].
    pub fn start(dir: &Path, config: impl Fn(SocketAddr) -> String) -> Haproxy {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut last_log = String::new();
        for attempt in 0..BIND_ATTEMPTS {
            let addr = free_loopback_addr();
            let config_path = dir.join("haproxy.cfg");
            std::fs::write(&config_path, config(addr)).expect("write haproxy.cfg");
            let log = dir.join(format!("haproxy-{attempt}.log"));
            let child = spawn(&config_path, &log);
            let mut proxy = Haproxy { child, addr, log };
            if proxy.wait_listening() {
                return proxy;
            }
            last_log = proxy.log_text();
            // Only a port taken in the meantime is worth another try.
            if !last_log.contains("cannot bind") {
                break;
            }
        }
        panic!("haproxy did not start; its log:\n{last_log}")
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it wrote so far (its request log and warnings).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until the port accepts a connection; `false` when the process exits first or the
    /// deadline passes (the process is then stopped).
    fn wait_listening(&mut self) -> bool {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            // Polling an external process's start-up: nothing to subscribe to.
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        false
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("create the haproxy log");
    Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run haproxy ({e}); `cargo xtask test` installs Debian's haproxy")
        })
}

/// A loopback address with a port that was free a moment ago (HAProxy cannot report a port it
/// chose itself).
pub fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}
