//! Bad input: malformed configurations, an unreachable Docker socket, and hostile log lines.

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::stage::{Ctx, Outcome, Stage, file_sink, kill_all};
use test_support::wait;

/// The exit code of a configuration error (EX_USAGE).
const EXIT_CONFIG: i32 = 64;
/// How long a capturer with a bad config may take to exit.
const CONFIG_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The grace after which an unreachable Docker makes /health unhealthy, shortened for the test.
const UNREACHABLE_GRACE: &str = "2s";
/// The uid/gid the permission case runs as (`nobody`/`nogroup`).
const NOBODY: &str = "65534";

/// One malformed configuration: a file, environment variables, what the message must name.
struct BadConfig {
    what: &'static str,
    file: &'static str,
    env: &'static [(&'static str, &'static str)],
    names: &'static str,
    /// A less precise location the product is known to give instead (a documented deviation).
    known_deviation: Option<&'static str>,
}

const BAD_CONFIGS: &[BadConfig] = &[
    BadConfig {
        what: "unknown key",
        file: "[docker]\nbogus_key = 1\n",
        env: &[],
        known_deviation: None,
        names: "bogus_key",
    },
    BadConfig {
        what: "bad duration",
        file: "[supervisor]\ntask_timeout = \"5 parsecs\"\n",
        env: &[],
        known_deviation: None,
        names: "task_timeout",
    },
    BadConfig {
        what: "wrong type",
        file: "[health]\nlisten = 42\n",
        env: &[],
        known_deviation: None,
        names: "listen",
    },
    BadConfig {
        what: "bad enum value",
        file: "[docker]\nread_from = \"middle\"\n",
        env: &[],
        known_deviation: None,
        names: "read_from",
    },
    BadConfig {
        what: "heartbeat not below timeout",
        file: "[supervisor]\nheartbeat_interval = \"10m\"\ntask_timeout = \"5m\"\n",
        env: &[],
        known_deviation: None,
        names: "heartbeat_interval",
    },
    BadConfig {
        what: "loki sink without endpoint",
        file: "[[sinks]]\ntype = \"loki\"\n",
        env: &[],
        known_deviation: None,
        names: "endpoint",
    },
    BadConfig {
        what: "unknown sink type",
        file: "[[sinks]]\ntype = \"kafka\"\n",
        env: &[],
        known_deviation: None,
        names: "kafka",
    },
    BadConfig {
        what: "bad buffer policy",
        file: "[[sinks]]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\nbuffer = { when_full = \"explode\" }\n",
        env: &[],
        known_deviation: None,
        names: "sinks[0].buffer.when_full",
    },
    BadConfig {
        what: "TOML syntax error",
        file: "[docker\nhost = \n",
        env: &[],
        known_deviation: None,
        names: "",
    },
    BadConfig {
        what: "environment typo",
        file: "",
        env: &[("LOG_CAPTURER_DOKCER_HOST", "unix:///var/run/docker.sock")],
        known_deviation: None,
        names: "LOG_CAPTURER_DOKCER_HOST",
    },
    BadConfig {
        what: "bad environment value",
        file: "",
        env: &[("LOG_CAPTURER_SUPERVISOR_TASK_TIMEOUT", "soon")],
        known_deviation: None,
        names: "task_timeout",
    },
];

/// `bad-config`: each malformed configuration exits 64 naming the key (with `--check-config`
/// and on a normal start), and an unreachable Docker socket is a clear error with /health
/// unhealthy while the process stays up.
pub(crate) fn bad_config(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = Stage::new(ctx, "bad-config")?;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut deviations = std::collections::BTreeSet::<String>::new();
    for (index, case) in BAD_CONFIGS.iter().enumerate() {
        let path = stage.dir.join(format!("bad-{index}.toml"));
        std::fs::write(&path, case.file)?;
        for check_only in [true, false] {
            let mut command = Command::new(&ctx.binary);
            if check_only {
                command.arg("--check-config");
            }
            command
                .arg("--config")
                .arg(&path)
                .arg("--data-dir")
                .arg(stage.dir.join("data"))
                .envs(case.env.iter().copied());
            let (code, stderr) = run_bounded(&mut command, CONFIG_EXIT_TIMEOUT)?;
            let first_line = stderr.lines().next().unwrap_or_default().to_owned();
            let named = stderr.contains(case.names);
            let mode = if check_only {
                "--check-config"
            } else {
                "start"
            };
            if code == Some(EXIT_CONFIG)
                && !named
                && let Some(location) = case.known_deviation
                && stderr.contains(location)
            {
                deviations.insert(format!(
                    "{}: names `{location}`, not `{}` ({first_line})",
                    case.what, case.names
                ));
            } else if code != Some(EXIT_CONFIG) || !named {
                failures.push(format!(
                    "{} ({mode}): exit {code:?}, {first_line:?}",
                    case.what
                ));
            }
        }
    }
    outcome.expect(
        failures.is_empty(),
        format!("bad configs not rejected clearly: {}", failures.join("; ")),
    );
    outcome.note(format!(
        "{} malformed configs x (--check-config, start): exit 64 naming the key",
        BAD_CONFIGS.len()
    ));
    for deviation in deviations {
        outcome.deviation(deviation);
    }

    // A socket that does not exist.
    stage.set_env(
        "LOG_CAPTURER_HEALTH_DOCKER_UNREACHABLE_GRACE",
        UNREACHABLE_GRACE,
    );
    stage.set_env(
        "LOG_CAPTURER_DOCKER_HOST",
        "unix:///nonexistent/docker.sock",
    );
    unreachable_docker(&mut stage, outcome, "missing socket")?;

    // A socket without permission: the real daemon's socket, as an unprivileged user.
    let socket = "/var/run/docker.sock";
    let mode = std::fs::metadata(socket)
        .map(|metadata| metadata.permissions().mode() & 0o777)
        .unwrap_or(0);
    if mode & 0o006 != 0 {
        outcome.note(format!(
            "permission case skipped: {socket} is world-accessible ({mode:o})"
        ));
    } else if Command::new("setpriv").arg("--version").output().is_err() {
        outcome.note("permission case skipped: setpriv is missing");
    } else {
        let wrapper = stage.dir.join("as-nobody.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups {} \"$@\"\n",
                ctx.binary.display()
            ),
        )?;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        // The unprivileged process must reach the binary and own its data dir.
        let data_dir = stage.dir.join("data-nobody");
        std::fs::create_dir_all(&data_dir)?;
        Command::new("chown")
            .arg(format!("{NOBODY}:{NOBODY}"))
            .arg(&data_dir)
            .status()?;
        stage.config.binary = wrapper;
        stage.set_sinks(&file_sink(&data_dir))?;
        stage.config.data_dir = data_dir;
        stage.set_env("LOG_CAPTURER_DOCKER_HOST", &format!("unix://{socket}"));
        unreachable_docker(&mut stage, outcome, "socket without permission (uid 65534)")?;
    }
    outcome.recovered_in = None;
    outcome.duration = started.elapsed();
    Ok(())
}

/// Starts the capturer against an unusable Docker socket: it must stay up, say why in its log,
/// and report unhealthy (503) with Docker not connected.
fn unreachable_docker(stage: &mut Stage, outcome: &mut Outcome, case: &str) -> Result<()> {
    let capturer = match stage.spawn() {
        Ok(capturer) => capturer,
        Err(error) => {
            outcome.expect(false, format!("{case}: did not start: {error:#}"));
            return Ok(());
        }
    };
    let became_unhealthy = wait::until(Duration::from_secs(20), "/health 503", || {
        Ok(capturer.health_status()?.0 == 503)
    });
    let (status, health) = capturer.health_status()?;
    let alive = test_support::procfs::is_alive(capturer.pid());
    let log = capturer.log_tail();
    let error_line = log
        .lines()
        .find(|line| line.contains("docker") && (line.contains("WARN") || line.contains("ERROR")))
        .map(|line| line.chars().take(240).collect::<String>())
        .unwrap_or_default();
    outcome.expect(
        became_unhealthy.is_ok() && status == 503,
        format!("{case}: /health answered {status}, not 503"),
    );
    outcome.expect(alive, format!("{case}: the process exited"));
    // A clear error names the cause the operating system gave.
    let cause = [
        "Permission denied",
        "permission denied",
        "No such file",
        "not found",
        "os error",
    ]
    .iter()
    .any(|cause| log.contains(cause));
    outcome.expect(
        log.contains("cannot reach Docker"),
        format!("{case}: no error about Docker in the log"),
    );
    if !cause {
        outcome.deviation(format!(
            "{case}: the logged error does not give the OS cause (EACCES/ENOENT)"
        ));
    }
    outcome.note(format!(
        "{case}: stays up, /health {status} docker={} (log: {error_line})",
        health["docker"]["state"]
    ));
    let code = capturer.stop(Duration::from_secs(15));
    outcome.expect(
        matches!(code, Ok(0)),
        format!("{case}: SIGTERM exit {code:?}"),
    );
    Ok(())
}

/// Runs a command to its end (killed after `timeout`); its exit code and stderr.
fn run_bounded(command: &mut Command, timeout: Duration) -> Result<(Option<i32>, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start log-capturer")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
            }
            return Ok((status.code(), stderr));
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((None, "did not exit".to_owned()));
        }
        // Waiting for a child with a deadline; std has no timed wait.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The hostile lines the busybox container writes, then it stays alive.
const BAD_LINES_SCRIPT: &str = r"printf 'first line\n'
printf 'bad \377\376 utf8\n'
printf 'nul\000byte\n'
printf '\033[31mred\033[0m\n'
head -c 5242880 /dev/zero | tr '\0' a
printf '\n'
yes '' | head -n 100000
printf 'last line\n'
exec sleep 3600
";

/// Lines the script writes.
const BAD_LINES_TOTAL: u64 = 100_006;
/// Empty lines among them.
const EMPTY_LINES: u64 = 100_000;
/// The capturer's default `docker.max_line_bytes`.
const MAX_LINE_BYTES: usize = 1 << 20;

/// `(task id, read mode)` of every task in a `/health` document that shows its mode.
fn task_modes(health: &serde_json::Value) -> Vec<(String, String)> {
    let tasks = health["tasks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    tasks
        .iter()
        .filter_map(|task| {
            let id = task["id"].as_str()?;
            let mode = task["mode"].as_str()?;
            Some((id.to_owned(), mode.to_owned()))
        })
        .collect()
}

/// `bad-lines`: invalid UTF-8, NUL bytes, ANSI escapes, a 5 MiB line and 100 k empty lines,
/// from one container on the `json-file` log driver and one on `local`; no panic, every line
/// delivered once, the long line truncated and counted.
///
/// The `json-file` driver replaces invalid UTF-8 itself (Go's JSON encoder writes U+FFFD), so
/// only the `local` driver (protobuf bytes) hands the capturer raw invalid bytes to replace and
/// count in `log_capturer_invalid_utf8_lines_total`.
pub(crate) fn bad_lines(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let image = test_support::docker::busybox_image();
    let mut stage = Stage::new(ctx, "bad-lines")?;
    let started = Instant::now();
    let capturer = stage.spawn()?;
    let before = capturer.scrape()?;
    let drivers = ["json-file", "local"];
    let ids = drivers
        .iter()
        .map(|driver| {
            stage.containers.run(&stage.run_args(
                &format!("hostile-{driver}"),
                &["--log-driver", driver],
                image,
                &["sh", "-c", BAD_LINES_SCRIPT],
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut messages: HashMap<String, Vec<String>> = HashMap::new();
    let mut tail = test_support::tail::FileTail::new(stage.records_path());
    let mut malformed = 0;
    let mut poll = |messages: &mut HashMap<String, Vec<String>>| -> Result<u64> {
        tail.poll(|line| {
            match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(record) => {
                    let id = record["container_id"].as_str().unwrap_or_default();
                    let message = record["message"].as_str().unwrap_or_default();
                    messages
                        .entry(id.to_owned())
                        .or_default()
                        .push(message.to_owned());
                }
                Err(_) => malformed += 1,
            };
        })
    };
    let caught_up = wait::until(Duration::from_secs(90), "every hostile line", || {
        poll(&mut messages)?;
        Ok(ids.iter().all(|id| {
            messages
                .get(id)
                .and_then(|lines| lines.last())
                .is_some_and(|last| last == "last line")
        }))
    });
    // A little longer, so duplicates written after the last line would be seen too.
    std::thread::sleep(Duration::from_secs(2));
    poll(&mut messages)?;
    let after = capturer.scrape()?;
    let modes = task_modes(&capturer.health_status()?.1);
    kill_all(&ids);
    // What the capturer could read is the truth. Read from the files, that is every line the
    // script wrote. Read through the API, it is Docker's API copy: the reader of its `local`
    // driver drops an empty line after the long one (`docker logs` shows it too).
    let truth: Vec<(u64, u64)> = ids
        .iter()
        .map(|id| {
            if modes
                .iter()
                .any(|(task, mode)| task.ends_with(id.as_str()) && mode == "files")
            {
                return Ok((BAD_LINES_TOTAL, EMPTY_LINES));
            }
            let (stdout, _) = test_support::docker::logs_bytes(id)?;
            let lines: Vec<&[u8]> = stdout.split(|&byte| byte == b'\n').collect();
            // The text ends with a newline, so the last piece is empty and not a line.
            let total = lines.len() as u64 - 1;
            let empty = lines[..lines.len() - 1]
                .iter()
                .filter(|line| line.is_empty())
                .count() as u64;
            Ok((total, empty))
        })
        .collect::<Result<_>>()?;
    let delta = |name: &str, filter: &[(&str, &str)]| {
        after.sum(name, filter).unwrap_or(0.0) - before.sum(name, filter).unwrap_or(0.0)
    };
    let truncated = delta(
        "log_capturer_lines_dropped_total",
        &[("reason", "truncated")],
    );
    let invalid = delta("log_capturer_invalid_utf8_lines_total", &[]);
    let (mut lost, mut dup) = (0, 0);
    for ((driver, id), &(expected, expected_empty)) in drivers.iter().zip(&ids).zip(&truth) {
        let lines = messages.get(id).map(Vec::as_slice).unwrap_or_default();
        let records = lines.len() as u64;
        lost += expected.saturating_sub(records);
        dup += records.saturating_sub(expected);
        if expected != BAD_LINES_TOTAL {
            outcome.note(format!(
                "{driver}: Docker itself kept {expected} of the {BAD_LINES_TOTAL} lines"
            ));
        }
        let empty = lines.iter().filter(|message| message.is_empty()).count() as u64;
        let long = lines
            .iter()
            .find(|message| message.starts_with("aaaa"))
            .map_or(0, String::len);
        outcome.expect(
            empty == expected_empty && expected_empty + 1 >= EMPTY_LINES,
            format!("{driver}: {empty} empty lines, Docker has {expected_empty}"),
        );
        outcome.expect(
            long == MAX_LINE_BYTES,
            format!("{driver}: the 5 MiB line arrived as {long} bytes, not {MAX_LINE_BYTES}"),
        );
        let has = |text: &str| lines.iter().any(|message| message == text);
        outcome.expect(
            lines
                .iter()
                .any(|message| message.starts_with("bad ") && message.contains('\u{fffd}')),
            format!("{driver}: invalid UTF-8 not replaced with U+FFFD"),
        );
        outcome.expect(
            has("nul\0byte"),
            format!("{driver}: the NUL byte was not kept"),
        );
        outcome.expect(
            has("\u{1b}[31mred\u{1b}[0m"),
            format!("{driver}: the ANSI escapes were not kept"),
        );
        outcome.note(format!(
            "{driver}: {records} records ({empty} empty), long line cut to {long} B"
        ));
    }
    outcome.lines(lost, dup);
    outcome.expect(caught_up.is_ok(), "the last line never arrived");
    outcome.expect(
        truncated == drivers.len() as f64,
        format!(
            "lines_dropped_total{{reason=truncated}} rose by {truncated}, not {}",
            drivers.len()
        ),
    );
    // Only the `local` driver passes invalid bytes through (see above).
    outcome.expect(
        invalid == 1.0,
        format!("log_capturer_invalid_utf8_lines_total rose by {invalid}, not 1"),
    );
    outcome.expect(malformed == 0, format!("{malformed} malformed records"));
    let logs = stage.capturer_logs();
    outcome.expect(!logs.contains("panicked"), "the capturer panicked");
    outcome.expect(
        test_support::procfs::is_alive(capturer.pid()),
        "the capturer exited",
    );
    let (status, _) = capturer.health_status()?;
    outcome.note(format!(
        "truncated +{truncated}, invalid_utf8 +{invalid} (json-file already replaces invalid \
         UTF-8 itself), /health {status}; recovered_in = start to last line captured"
    ));
    outcome.recovered_in = caught_up.ok();
    let code = capturer.stop(Duration::from_secs(15));
    outcome.expect(matches!(code, Ok(0)), format!("SIGTERM exit {code:?}"));
    outcome.duration = started.elapsed();
    Ok(())
}
