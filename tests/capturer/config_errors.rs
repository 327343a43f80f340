//! Every configuration error exits 64 with a message that names the key.

use std::{io::Write, process::Command};

use end_to_end::capturer_binary;

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(capturer_binary())
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run log-capturer");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

#[test]
fn check_config_prints_the_effective_default_and_exits_0() {
    let (code, stdout, stderr) = run(&["--check-config"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("[docker]"), "{stdout}");
    assert!(stdout.contains("containers.jsonl"), "{stdout}");
    assert!(stdout.contains("heartbeat_interval = \"30s\""), "{stdout}");
}

#[test]
fn bad_configs_exit_64_and_name_the_key() {
    let unknown_key = config_file("[supervisor]\nheartbeat_intervall = \"30s\"\n");
    let bad_read_from = config_file("[docker]\nread_from = \"middle\"\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--config", unknown_key.path().to_str().unwrap()],
            "heartbeat_intervall",
        ),
        (
            vec!["--config", bad_read_from.path().to_str().unwrap()],
            "docker.read_from",
        ),
        (
            vec!["--heartbeat-interval", "soon"],
            "supervisor.heartbeat_interval",
        ),
        (vec!["--health-listen", "localhost:http"], "health.listen"),
        (vec!["--config", "/nonexistent/lc.toml"], "--config"),
    ];
    for (args, key) in cases {
        let mut full = args.clone();
        full.push("--check-config");
        let (code, _, stderr) = run(&full);
        assert_eq!(code, 64, "{args:?}: exit {code}, stderr: {stderr}");
        assert!(
            stderr.contains(key),
            "{args:?}: stderr does not name {key}: {stderr}"
        );
    }
}

#[test]
fn secrets_are_redacted_by_check_config() {
    let file = config_file(
        "[[sinks]]\ntype = \"loki\"\nendpoint = \"http://127.0.0.1:3100\"\n\
         [sinks.auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"hunter2\"\n",
    );
    let (code, stdout, stderr) =
        run(&["--config", file.path().to_str().unwrap(), "--check-config"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
}
