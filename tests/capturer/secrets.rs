//! Secrets never printed: credentials planted in a Loki endpoint's URL, in a bearer token, in an
//! OTLP sink's `Authorization` header and in the Docker host's URL must appear in none of the agent's logs, `/health`, `/metrics` and
//! `--check-config` output, while the errors that would have quoted them are there.

use std::{io::Write, process::Command, time::Duration};

use end_to_end::{Capturer, capturer_binary, unique_label};
use test_support::docker::{self, Container};

/// Distinct secrets, so a leak says which path leaked.
const URL_PASSWORD: &str = "planted-url-password-7f3a";
const BEARER_TOKEN: &str = "planted-bearer-token-91c2";
const DOCKER_PASSWORD: &str = "planted-docker-password-5d8e";
const HEADER_TOKEN: &str = "planted-header-token-2b6f";
const SECRETS: [&str; 4] = [URL_PASSWORD, BEARER_TOKEN, DOCKER_PASSWORD, HEADER_TOKEN];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

/// Two Loki sinks and an OTLP sink on a closed port, so every push fails and is logged: one
/// with credentials in its URL, one with an inline bearer token, one with a secret header.
fn config_file() -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        r#"
[[sinks]]
type = "loki"
name = "loki-url"
endpoint = "https://loki-user:{URL_PASSWORD}@127.0.0.1:1"
retry = {{ initial_backoff = "50ms", max_backoff = "200ms", failing_after = "500ms" }}

[[sinks]]
type = "loki"
name = "loki-bearer"
endpoint = "http://127.0.0.1:1"
auth = {{ type = "bearer", token = "{BEARER_TOKEN}" }}
retry = {{ initial_backoff = "50ms", max_backoff = "200ms", failing_after = "500ms" }}

[[sinks]]
type = "otlp"
endpoint = "https://otlp-user:{URL_PASSWORD}@127.0.0.1:1"
headers = {{ Authorization = "Bearer {HEADER_TOKEN}" }}
retry = {{ initial_backoff = "50ms", max_backoff = "200ms", failing_after = "500ms" }}
"#
    )
    .unwrap();
    file
}

fn check_config(args: &[&str]) -> String {
    let output = Command::new(capturer_binary())
        .args(args)
        .arg("--check-config")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run log-capturer --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_no_secret("--check-config stderr", &stderr);
    stdout
}

#[test]
fn planted_secrets_reach_no_log_health_metrics_or_check_config() {
    let config = config_file();
    let config_path = config.path().to_str().unwrap();
    let docker_host = format!("tcp://admin:{DOCKER_PASSWORD}@127.0.0.1:1");

    let printed = check_config(&["--config", config_path, "--docker-host", &docker_host]);
    assert_no_secret("--check-config", &printed);
    assert!(printed.contains("https://127.0.0.1:1"), "{printed}");
    assert!(printed.contains("tcp://127.0.0.1:1"), "{printed}");
    assert!(
        printed.contains("Authorization = \"<redacted>\""),
        "{printed}"
    );

    // Lines to push, so both sinks fail and log why.
    let label = unique_label("secrets");
    let label_arg = format!("log-capturer-e2e={label}");
    let _container = Container::run(&[
        "--label",
        &label_arg,
        docker::loggen_image(),
        "--tag",
        "secret",
        "--lines",
        "0",
        "--rate",
        "20",
    ]);
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = Capturer::start(
        data_dir.path(),
        &["--config", config_path, "--include-label", &label_arg],
    );
    let health = capturer.wait_health(
        Duration::from_secs(30),
        "every sink failing with an error",
        |health| {
            health["sinks"].as_array().is_some_and(|sinks| {
                sinks.len() == 3
                    && sinks
                        .iter()
                        .all(|sink| sink["state"] == "failing" && sink["last_error"].is_string())
            })
        },
    );
    let health_text = health.to_string();
    assert!(
        health_text.contains("https://127.0.0.1:1/loki/api/v1/push"),
        "{health_text}"
    );
    assert_no_secret("/health", &health_text);
    assert_no_secret("/metrics", &capturer.metrics());
    let log = capturer.log_text();
    assert!(log.contains("sink delivery failed"), "{log}");
    assert_no_secret("the agent's log", &log);
    drop(capturer);

    // The Docker host's credentials: an agent that cannot reach that host logs the failure.
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = Capturer::start(
        data_dir.path(),
        &["--config", config_path, "--docker-host", &docker_host],
    );
    let health = capturer.wait_health(
        Duration::from_secs(30),
        "the Docker connection failing with an error",
        |health| health["docker"]["last_error"].is_string(),
    );
    assert_no_secret("/health", &health.to_string());
    let log = capturer.wait_log(Duration::from_secs(30), "cannot reach Docker");
    assert_no_secret("the agent's log", &log);
}
