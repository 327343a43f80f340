//! The real Docker daemon, driven through its CLI: the one wrapper of the tests and xtask.
//!
//! [`cli`] and [`logs_bytes`] return errors (xtask's commands report them); [`docker`], [`logs`]
//! and the [`Container`] guard panic with the same message (what a test wants). Tests fail with
//! a clear message when no daemon answers; `cargo xtask test` starts one first.
//!
//! Every container the soak, chaos or the benchmarks start carries a label
//! (`log-capturer-soak=<run>`, ...). A [`ContainerSet`] removes every container with its label
//! when it drops, also when the command fails half-way. An interrupted run (Ctrl-C kills xtask
//! before any guard runs; std has no signal API) is cleaned by the next run, which first removes
//! whatever still carries the label key ([`remove_labelled`]).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

use crate::{parallel::parallel_map, wait};

/// How many `docker` commands run at once when creating or removing many containers; the
/// daemon serialises much of the work, so more threads only add contention on two cores.
const PARALLEL_DOCKER_COMMANDS: usize = 8;

/// Containers removed per `docker rm` command.
const REMOVE_BATCH: usize = 50;

/// The label keys the project's tests put on every container they start ([`Container`] and the
/// end-to-end tests' `--include-label`).
pub const TEST_LABEL_KEYS: [&str; 2] = ["log-capturer-test", "log-capturer-e2e"];

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

/// Runs `docker ARGS` and returns its trimmed stdout, or an error carrying its stderr.
pub fn cli(args: &[&str]) -> Result<String> {
    let output = try_output(args)?;
    if !output.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs `docker ARGS`, panicking with its stderr if it fails ([`cli`] for tests).
pub fn docker(args: &[&str]) -> String {
    cli(args).unwrap_or_else(|error| panic!("{error:#}"))
}

/// Runs `docker ARGS` and returns its output, whatever its exit status.
pub fn docker_output(args: &[&str]) -> Output {
    try_output(args).unwrap_or_else(|error| panic!("{error:#}"))
}

fn try_output(args: &[&str]) -> Result<Output> {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run the docker CLI")
}

/// Whether a Docker daemon answers the CLI.
pub fn daemon_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Closes the shell's descriptors above 2, then becomes `dockerd`.
const EXEC_DOCKERD_WITHOUT_INHERITED_FDS: &str = r#"for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-"; done; exec dockerd"#;

/// How long a freshly started daemon may take to answer.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `dockerd` in its own session (`setsid`: it outlives this process, and a Ctrl-C of the
/// caller does not take it down), logging to `log`, and waits until it answers. For a machine
/// where no daemon runs, and for the tests and the chaos scenario that stop it.
pub fn start_daemon(log: &Path) -> Result<Duration> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    // `setsid` detaches the daemon from this process group, so it outlives the test run and
    // a Ctrl-C of the tests does not take it down. `bash` closes every descriptor it inherited
    // beyond stdio first: a `flock(1)` around the run hands its lock down as fd 3, and a daemon
    // that kept it would hold that lock for as long as it lives.
    Command::new("setsid")
        .args(["bash", "-c", EXEC_DOCKERD_WITHOUT_INHERITED_FDS])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("start dockerd")?;
    let what = "dockerd to answer";
    wait::until_every(
        Duration::from_millis(250),
        DAEMON_START_TIMEOUT,
        what,
        || Ok(daemon_answers()),
    )
    .with_context(|| format!("see {}", log.display()))
}

/// Panics with instructions unless a Docker daemon answers.
pub fn require_daemon() {
    assert!(
        daemon_answers(),
        "no Docker daemon answers; run `cargo xtask docker-up` (the test command does)"
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

/// Both output streams of a container as Docker kept them (`docker logs`), as raw bytes.
pub fn logs_bytes(id: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let output = try_output(&["logs", id])?;
    if !output.status.success() {
        bail!(
            "docker logs {id} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((output.stdout, output.stderr))
}

/// The container's stdout and stderr lines as the daemon kept them (`docker logs`), for checks
/// that compare what a capture got against what Docker has (none when Docker has no such
/// container).
pub fn logs(id: &str) -> Vec<String> {
    let output = docker_output(&["logs", id]);
    [output.stdout, output.stderr]
        .iter()
        .flat_map(|text| {
            String::from_utf8_lossy(text)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Removes every container (running or not) that carries `label` (`key` or `key=value`), and
/// returns how many there were.
pub fn remove_labelled(label: &str) -> Result<usize> {
    remove_where(&[&format!("label={label}")])
}

/// Removes every container `docker ps --all` lists under `filters` (`--filter` values: the same
/// key twice is either, different keys are both), and returns how many there were.
pub fn remove_where(filters: &[&str]) -> Result<usize> {
    let mut args = vec!["ps", "--all", "--quiet"];
    for filter in filters {
        args.extend(["--filter", filter]);
    }
    let listed = cli(&args)?;
    let ids: Vec<&str> = listed.split_whitespace().collect();
    let batches: Vec<&[&str]> = ids.chunks(REMOVE_BATCH).collect();
    for group in batches.chunks(PARALLEL_DOCKER_COMMANDS) {
        parallel_map(group, "docker rm", |batch| {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend_from_slice(batch);
            cli(&args)
        })?;
    }
    Ok(ids.len())
}

/// The containers of one run, all labelled `key=value`; removed when this guard drops.
#[derive(Debug)]
pub struct ContainerSet {
    key: &'static str,
    value: String,
}

impl ContainerSet {
    /// A set labelled `key=value`, where `value` should be unique to this run.
    pub fn new(key: &'static str, value: impl Into<String>) -> ContainerSet {
        ContainerSet {
            key,
            value: value.into(),
        }
    }

    /// `key=value`, for `--include-label` and `docker ps --filter label=`.
    pub fn label(&self) -> String {
        format!("{}={}", self.key, self.value)
    }

    /// `docker run --detach --label key=value ARGS` (name, flags, image and command in `args`);
    /// returns the full container id.
    pub fn run(&self, args: &[String]) -> Result<String> {
        let label = self.label();
        let mut full = vec!["run", "--detach", "--label", &label];
        full.extend(args.iter().map(String::as_str));
        cli(&full)
    }

    /// Runs many containers, a few at a time; ids in the order given.
    pub fn run_many(&self, specs: &[Vec<String>]) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(specs.len());
        for group in specs.chunks(PARALLEL_DOCKER_COMMANDS) {
            ids.extend(parallel_map(group, "docker run", |spec| self.run(spec))?);
        }
        Ok(ids)
    }

    /// Removes every container of the set now (what dropping the guard does).
    pub fn remove_all(&self) -> Result<usize> {
        remove_labelled(&self.label())
    }
}

impl Drop for ContainerSet {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the error that is unwinding, and the next
        // run removes leftovers by label anyway.
        if let Err(error) = self.remove_all() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "warning: cannot remove the containers labelled {}: {error:#}",
                    self.label()
                );
            }
        }
    }
}
