//! The `log-capturer:dev` image (`cargo xtask image`) run as a container, as docs/deploy.md says.

use std::{
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    process::Command,
    time::{Duration, Instant},
};

use end_to_end::{file_sink_records, unique_label};
use test_support::docker::{self, Container, workspace_root};

use crate::{run_ok, try_get, wait_for};

/// The tag `cargo xtask image` builds.
const IMAGE: &str = "log-capturer:dev";

/// The image's non-root user (distroless's `nonroot`).
const IMAGE_USER: u32 = 65532;

/// The Docker socket the agent container mounts.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Lines per stream the generator writes.
const LINES_PER_STREAM: usize = 50;

/// How long the agent may take to start, capture and report.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long `docker stop` waits before SIGKILL: the agent's own grace (10 s) plus margin.
const STOP_TIMEOUT_SECS: &str = "15";

/// Builds the image with `cargo xtask image` (a cached no-op when nothing changed).
fn build_image() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "run",
            "--quiet",
            "--locked",
            "--package",
            "xtask",
            "--",
            "image",
        ])
        .status()
        .expect("run cargo xtask image");
    assert!(status.success(), "cargo xtask image failed");
}

#[test]
fn dev_image_captures_its_neighbours_never_itself_and_answers_health() {
    docker::require_daemon();
    build_image();
    check_image_config();
    let loggen = docker::loggen_image();

    let label = unique_label("deploy-image");
    let include = format!("log-capturer-deploy={label}");
    let data = tempfile::tempdir().expect("temp dir");
    // The image runs as 65532; a bind-mounted data dir must be writable by it (docs/deploy.md).
    std::os::unix::fs::chown(data.path(), Some(IMAGE_USER), Some(IMAGE_USER))
        .expect("chown the data dir (the tests run as root)");
    let socket_gid = std::fs::metadata(DOCKER_SOCKET)
        .unwrap_or_else(|e| panic!("{DOCKER_SOCKET}: {e}"))
        .gid()
        .to_string();
    let data_mount = format!("{}:/var/lib/log-capturer", data.path().display());
    let socket_mount = format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro");
    let include_env = format!("LOG_CAPTURER_DOCKER_INCLUDE_LABELS={include}");
    let name = format!("log-capturer-agent-{label}");

    // The agent carries the label it watches: only its self-detection keeps it from capturing
    // its own start-up log, which it writes before the generator starts.
    let (agent, addr) = start_agent(&[
        "--name",
        &name,
        "--label",
        &include,
        "--group-add",
        &socket_gid,
        "--volume",
        &socket_mount,
        "--volume",
        &data_mount,
        "--env",
        &include_env,
    ]);
    let agent_logs = || docker::logs(agent.id()).join("\n");
    let generator = start_generator(&include, "deploy");
    let records = wait_generator_lines(data.path(), &generator, &agent_logs);
    for stream in ["stdout", "stderr"] {
        let count = records
            .iter()
            .filter(|r| r["container_id"] == generator.id() && r["stream"] == stream)
            .count();
        assert_eq!(count, LINES_PER_STREAM, "{stream} records");
    }
    let generator_record = records
        .iter()
        .find(|r| r["container_id"] == generator.id())
        .expect("a generator record");
    assert_eq!(generator_record["image"], loggen);

    // The agent logged (its start-up at least), watched a label it carries itself, and read
    // from the beginning: none of that may be in the sink.
    assert!(
        !agent_logs().trim().is_empty(),
        "the agent logged nothing, so its exclusion proves nothing"
    );
    let own = records
        .iter()
        .filter(|r| r["container_id"] == agent.id())
        .count();
    assert_eq!(own, 0, "the agent captured {own} of its own lines");

    let (status, body) = try_get(addr, "/health").expect("/health answers");
    assert_eq!(status, 200, "/health: {body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
    let task_ids: Vec<&str> = health["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|task| task["id"].as_str())
        .collect();
    assert!(
        task_ids.contains(&format!("container_{}", generator.id()).as_str()),
        "no task for the generator: {task_ids:?}"
    );
    assert!(
        !task_ids.contains(&format!("container_{}", agent.id()).as_str()),
        "the agent supervises a task for its own container: {task_ids:?}"
    );
    assert_eq!(try_get(addr, "/live").map(|(status, _)| status), Some(200));

    // The image's own HEALTHCHECK (busybox wget on /live) passes.
    wait_for(
        TIMEOUT,
        "Docker's health status `healthy`",
        || {
            let status = docker::docker(&[
                "inspect",
                "--format",
                "{{.State.Health.Status}}",
                agent.id(),
            ]);
            (status == "healthy").then_some(())
        },
        || docker::docker(&["inspect", "--format", "{{json .State.Health}}", agent.id()]),
    );

    // SIGTERM (docker stop) ends it cleanly, well within the stop timeout, as PID 1.
    let started = Instant::now();
    docker::docker(&["stop", "--time", STOP_TIMEOUT_SECS, agent.id()]);
    let took = started.elapsed();
    let exit_code = docker::docker(&["inspect", "--format", "{{.State.ExitCode}}", agent.id()]);
    assert_eq!(
        exit_code,
        "0",
        "exit code after docker stop; log:\n{}",
        agent_logs()
    );
    assert!(took < Duration::from_secs(12), "docker stop took {took:?}");
    drop(generator);
}

/// The image in file mode, as docs/deploy.md says: Docker's containers directory mounted
/// read-only at its own path, the agent run as root with `CAP_DAC_READ_SEARCH` as its only
/// capability. `read_mode = "files"` fails at start when the directory cannot be read, so a
/// task in `files` mode and every generator line in the sink show the image reads files.
#[test]
fn dev_image_in_file_mode_reads_its_neighbours_log_files() {
    docker::require_daemon();
    build_image();
    let label = unique_label("deploy-image-files");
    let include = format!("log-capturer-deploy={label}");
    let data = tempfile::tempdir().expect("temp dir");
    let containers = format!(
        "{}/containers",
        docker::docker(&["info", "--format", "{{.DockerRootDir}}"])
    );
    refuses_files_it_cannot_read(&data);
    let (agent, addr) = start_agent(&[
        "--user",
        "0:0",
        "--cap-add",
        "DAC_READ_SEARCH",
        "--volume",
        &format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro"),
        "--volume",
        &format!("{}:/var/lib/log-capturer", data.path().display()),
        "--volume",
        &format!("{containers}:{containers}:ro"),
        "--env",
        &format!("LOG_CAPTURER_DOCKER_INCLUDE_LABELS={include}"),
        "--env",
        "LOG_CAPTURER_DOCKER_READ_MODE=files",
    ]);
    let agent_logs = || docker::logs(agent.id()).join("\n");
    let generator = start_generator(&include, "files");
    wait_generator_lines(data.path(), &generator, &agent_logs);
    let (_, body) = try_get(addr, "/health").expect("/health answers");
    let health: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
    let task = health["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|task| task["id"] == format!("container_{}", generator.id()).as_str())
        .unwrap_or_else(|| panic!("no task for the generator: {body}"));
    assert_eq!(task["mode"], "files", "{task}");
    docker::docker(&["stop", "--time", STOP_TIMEOUT_SECS, agent.id()]);
    let exit_code = docker::docker(&["inspect", "--format", "{{.State.ExitCode}}", agent.id()]);
    assert_eq!(exit_code, "0", "log:\n{}", agent_logs());
}

/// A generator of [`LINES_PER_STREAM`] lines on each stream, alive afterwards.
fn start_generator(include: &str, tag: &str) -> Container {
    Container::run(&[
        "--label",
        include,
        docker::loggen_image(),
        "--tag",
        tag,
        "--lines",
        &LINES_PER_STREAM.to_string(),
        "--stream",
        "both",
        "--hold-secs",
        "-1",
    ])
}

/// Waits until the file sink in `data` holds every line of `generator`; returns its records.
fn wait_generator_lines(
    data: &std::path::Path,
    generator: &Container,
    agent_logs: &dyn Fn() -> String,
) -> Vec<serde_json::Value> {
    wait_for(
        TIMEOUT,
        "the generator's lines in the mounted file sink",
        || {
            let records = file_sink_records(data);
            let mine = records
                .iter()
                .filter(|r| r["container_id"] == generator.id())
                .count();
            (mine == 2 * LINES_PER_STREAM).then_some(records)
        },
        || {
            format!(
                "{} records so far; agent log:\n{}",
                file_sink_records(data).len(),
                agent_logs()
            )
        },
    )
}

/// Without the containers directory, `read_mode = "files"` stops the agent at start (exit
/// code not 0), its last word naming the directory and what it needs.
fn refuses_files_it_cannot_read(data: &tempfile::TempDir) {
    let agent = Container::run(&[
        "--user",
        "0:0",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--volume",
        &format!("{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro"),
        "--volume",
        &format!("{}:/var/lib/log-capturer", data.path().display()),
        "--env",
        "LOG_CAPTURER_DOCKER_READ_MODE=files",
        IMAGE,
        "--log-format",
        "json",
    ]);
    let log = || docker::logs(agent.id()).join("\n");
    wait_for(
        TIMEOUT,
        "the agent without the containers directory to stop",
        || (!agent.is_running()).then_some(()),
        log,
    );
    let exit_code = docker::docker(&["inspect", "--format", "{{.State.ExitCode}}", agent.id()]);
    let log = log();
    assert_ne!(exit_code, "0", "log:\n{log}");
    let last = log
        .lines()
        .rfind(|line| line.contains("\"ERROR\""))
        .unwrap_or_else(|| panic!("no error logged:\n{log}"));
    for expected in [
        "Docker source",
        "containers in file mode",
        "CAP_DAC_READ_SEARCH",
    ] {
        assert!(
            last.contains(expected),
            "{expected:?} not in the last error: {last}"
        );
    }
}

/// Runs the image with `args` (volumes, environment, user), hardened as docs/deploy.md says
/// (read-only root, no capability but those `args` add, no new privileges), its health API
/// published on the loopback and its probe run every second; returns once `/ready` answers.
fn start_agent(args: &[&str]) -> (Container, SocketAddr) {
    let mut run = vec![
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--publish",
        "127.0.0.1:0:8401",
        "--env",
        "LOG_CAPTURER_DOCKER_READ_FROM=beginning",
        // The image's probe, run every second instead of every 30 s.
        "--health-interval",
        "1s",
        "--health-start-period",
        "0s",
    ];
    run.extend_from_slice(args);
    run.extend([IMAGE, "--log-format", "json"]);
    let agent = Container::run(&run);
    let addr: SocketAddr = {
        let published = docker::docker(&["port", agent.id(), "8401/tcp"]);
        let first = published.lines().next().unwrap_or_default().to_owned();
        first
            .parse()
            .unwrap_or_else(|e| panic!("docker port said {published:?}: {e}"))
    };
    wait_for(
        TIMEOUT,
        "the agent's /ready through the published port",
        || try_get(addr, "/ready").filter(|(status, _)| *status == 200),
        || docker::logs(agent.id()).join("\n"),
    );
    (agent, addr)
}

/// The dev image has deploy/Dockerfile's runtime semantics (the xtask reuses that stage; this
/// checks what Docker recorded).
fn check_image_config() {
    let config: serde_json::Value = serde_json::from_str(&run_ok(Command::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        IMAGE,
    ])))
    .expect("image config is JSON");
    assert_eq!(config["User"], "65532:65532", "{config:#}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|value| value.as_str())
        .collect();
    for expected in [
        "LOG_CAPTURER_DATA_DIR=/var/lib/log-capturer",
        "LOG_CAPTURER_HEALTH_LISTEN=0.0.0.0:8401",
    ] {
        assert!(env.contains(&expected), "{expected} not in {env:?}");
    }
    assert!(
        config["Volumes"].get("/var/lib/log-capturer").is_some(),
        "{config:#}"
    );
    assert!(
        config["ExposedPorts"].get("8401/tcp").is_some(),
        "{config:#}"
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/log-capturer"])
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!([
            "CMD",
            "/usr/local/bin/busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1:8401/live"
        ])
    );
}
