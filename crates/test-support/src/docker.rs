//! The real Docker daemon, driven through its CLI.
//!
//! Tests fail with a clear message when no daemon answers; `cargo xtask test` starts one first.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

/// The tag of the log generator image.
pub const LOGGEN_IMAGE: &str = "log-capturer-loggen:dev";
/// The tag of the busybox image (`FROM scratch` with Debian's static busybox as
/// `/bin/busybox`, its entry point), for lines `loggen` cannot write: `sh -c 'printf ...'`.
pub const BUSYBOX_IMAGE: &str = "log-capturer-busybox:dev";

/// A name (or label value) no other test, test process or earlier run has used:
/// `PREFIX-PID-N-NANOS`. The process id alone is not enough: ids are reused, and a container
/// left by a killed test process of the same id would make `docker run --name` conflict.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff_ffff_ffff
    )
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("test-support lives at crates/test-support")
        .to_path_buf()
}

/// The Unix socket of the daemon the docker CLI talks to: `$DOCKER_HOST` when it names one
/// (`unix://PATH`), else `/var/run/docker.sock`. Tests that put a proxy in front of the daemon
/// forward to it, so they follow a private daemon as the CLI does.
pub fn socket_path() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Runs `docker ARGS`, panicking with its stderr if it fails.
pub fn docker(args: &[&str]) -> String {
    let output = docker_output(args);
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `docker ARGS` and returns its output, whatever its exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run the docker CLI: {error}"))
}

/// Panics with instructions unless a Docker daemon answers.
pub fn require_daemon() {
    let output = docker_output(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(
        output.status.success(),
        "no Docker daemon answers ({}); run `cargo xtask docker-up` (the test command does)",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Builds the static `loggen` binary and the `FROM scratch` image around it, once per process
/// and under a file lock across processes (nextest runs tests in parallel processes). Returns the
/// image tag.
pub fn loggen_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_daemon();
        let root = workspace_root();
        let target_dir = root.join("target").join("static");
        std::fs::create_dir_all(&target_dir).expect("create target/static");
        let lock = File::create(target_dir.join("loggen.lock")).expect("create the build lock");
        lock.lock().expect("take the build lock");
        build_loggen_image(&root, &target_dir);
        // The lock is released when `lock` drops here.
    });
    LOGGEN_IMAGE
}

fn build_loggen_image(root: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "loggen"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .env("CARGO_TARGET_DIR", target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .expect("run cargo to build loggen");
    assert!(status.success(), "building the static loggen binary failed");
    let context = target_dir.join("loggen-image");
    std::fs::create_dir_all(&context).expect("create the image context");
    std::fs::copy(
        target_dir.join("x86_64-unknown-linux-gnu/release/loggen"),
        context.join("loggen"),
    )
    .expect("copy loggen into the image context");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY loggen /loggen\nENTRYPOINT [\"/loggen\"]\n",
    )
    .expect("write the Dockerfile");
    let context = context.to_string_lossy().into_owned();
    docker(&["build", "--quiet", "--tag", LOGGEN_IMAGE, &context]);
}

/// Builds the busybox image from the host's static busybox (`apt-get install busybox-static`),
/// once per process and under a file lock across processes; never pulls. Returns the image tag.
/// Run it as `BUSYBOX_IMAGE sh -c '...'`.
pub fn busybox_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_daemon();
        let target_dir = workspace_root().join("target").join("static");
        std::fs::create_dir_all(&target_dir).expect("create target/static");
        let lock = File::create(target_dir.join("busybox.lock")).expect("create the build lock");
        lock.lock().expect("take the build lock");
        let exists = docker_output(&["image", "inspect", "--format", "{{.Id}}", BUSYBOX_IMAGE]);
        if !exists.status.success() {
            build_busybox_image(&target_dir.join("busybox-image"));
        }
    });
    BUSYBOX_IMAGE
}

fn build_busybox_image(context: &Path) {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .expect("busybox is not installed (apt-get install busybox-static)");
    std::fs::create_dir_all(context).expect("create the image context");
    std::fs::copy(busybox, context.join("busybox")).expect("copy busybox into the context");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n",
    )
    .expect("write the Dockerfile");
    docker(&[
        "build",
        "--quiet",
        "--tag",
        BUSYBOX_IMAGE,
        &context.to_string_lossy(),
    ]);
}

/// A container that is removed (with its logs) when the guard drops, also when a test panics.
#[derive(Debug)]
pub struct Container {
    id: String,
}

impl Container {
    /// `docker run --detach ARGS` (put `--name`, flags and the image in `args`).
    pub fn run(args: &[&str]) -> Container {
        let mut full = vec!["run", "--detach", "--label", "log-capturer-test=1"];
        full.extend_from_slice(args);
        Container { id: docker(&full) }
    }

    /// `docker create ARGS`, not started.
    pub fn create(args: &[&str]) -> Container {
        let mut full = vec!["create", "--label", "log-capturer-test=1"];
        full.extend_from_slice(args);
        Container { id: docker(&full) }
    }

    /// The full container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `docker start`.
    pub fn start(&self) {
        docker(&["start", &self.id]);
    }

    /// `docker stop --time 1`.
    pub fn stop(&self) {
        docker(&["stop", "--time", "1", &self.id]);
    }

    /// `docker restart --time 1`.
    pub fn restart(&self) {
        docker(&["restart", "--time", "1", &self.id]);
    }

    /// Waits for the container to exit and returns its exit code.
    pub fn wait_exit(&self) -> i32 {
        docker(&["wait", &self.id]).parse().unwrap_or(-1)
    }

    /// Whether the container is running.
    pub fn is_running(&self) -> bool {
        docker(&["inspect", "--format", "{{.State.Running}}", &self.id]) == "true"
    }

    /// Removes the container now (what dropping the guard does).
    pub fn remove(self) {
        // Drop does the work.
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Best effort: a failure here must not mask the test's own panic.
        let _ = docker_output(&["rm", "--force", "--volumes", &self.id]);
    }
}

/// The container's stdout and stderr lines as the daemon kept them (`docker logs`), for checks
/// that compare what a capture got against what Docker has.
pub fn logs(id: &str) -> Vec<String> {
    let output = docker_output(&["logs", id]);
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.extend(
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .map(str::to_owned),
    );
    lines
}
