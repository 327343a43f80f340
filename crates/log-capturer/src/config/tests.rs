//! Tests of config loading: precedence, defaults, errors that name the key, redaction.

use std::{io::Write, time::Duration};

use clap::Parser;

use super::Config;
use crate::cli::Cli;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("log-capturer").chain(args.iter().copied())).unwrap()
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, super::ConfigError> {
    Config::load(&cli(args), env(vars))
}

#[test]
fn no_arguments_gives_the_embedded_default() {
    let config = load(&[], &[]).unwrap();
    assert_eq!(
        config.data_dir,
        std::path::PathBuf::from("./log-capturer-data")
    );
    assert_eq!(
        config.supervisor.heartbeat_interval,
        Duration::from_secs(30)
    );
    assert_eq!(config.supervisor.task_timeout, Duration::from_secs(300));
    assert_eq!(config.health.listen.to_string(), "127.0.0.1:8401");
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    let sinks = config.effective_sinks();
    assert_eq!(sinks.len(), 1);
    let rendered = config.to_redacted_toml();
    assert!(rendered.contains("containers.jsonl"), "{rendered}");
}

#[test]
fn flags_beat_environment_beat_file() {
    let config_file = file(
        "[supervisor]\nheartbeat_interval = \"10s\"\ntask_timeout = \"1m\"\n[health]\nlisten = \"127.0.0.1:1000\"\n",
    );
    let path = config_file.path().to_str().unwrap();
    let config = load(
        &["--config", path, "--heartbeat-interval", "2s"],
        &[
            ("LOG_CAPTURER_SUPERVISOR_HEARTBEAT_INTERVAL", "5s"),
            ("LOG_CAPTURER_SUPERVISOR_TASK_TIMEOUT", "20s"),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(config.supervisor.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(config.supervisor.task_timeout, Duration::from_secs(20));
    assert_eq!(config.health.listen.to_string(), "127.0.0.1:1000");
}

#[test]
fn environment_sets_top_level_keys_and_lists() {
    let config = load(
        &[],
        &[
            ("LOG_CAPTURER_DATA_DIR", "/tmp/lc"),
            ("LOG_CAPTURER_DOCKER_INCLUDE_LABELS", "team=web, tier"),
        ],
    )
    .unwrap();
    assert_eq!(config.data_dir, std::path::PathBuf::from("/tmp/lc"));
    let rendered = config.to_redacted_toml();
    assert!(
        rendered.contains("team=web") && rendered.contains("tier"),
        "{rendered}"
    );
}

#[test]
fn include_label_flag_is_repeatable() {
    let config = load(&["--include-label", "a=1", "--include-label", "b"], &[]).unwrap();
    let rendered = config.to_redacted_toml();
    assert!(
        rendered.contains("a=1") && rendered.contains("\"b\""),
        "{rendered}"
    );
}

#[test]
fn unknown_key_is_named() {
    let config_file = file("[docker]\nhots = \"unix:///x\"\n");
    let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(error.to_string().contains("hots"), "{error}");
    assert!(error.key.starts_with("docker"), "{error}");
}

#[test]
fn bad_duration_is_named() {
    let error = load(&["--task-timeout", "five minutes"], &[]).unwrap_err();
    assert_eq!(error.key, "supervisor.task_timeout", "{error}");
}

#[test]
fn bad_address_is_named() {
    let error = load(&["--health-listen", "not-an-address"], &[]).unwrap_err();
    assert_eq!(error.key, "health.listen", "{error}");
}

#[test]
fn unreadable_file_is_named() {
    let error = load(&["--config", "/nonexistent/log-capturer.toml"], &[]).unwrap_err();
    assert_eq!(error.key, "--config");
    assert!(error.to_string().contains("/nonexistent/log-capturer.toml"));
}

#[test]
fn toml_syntax_error_is_reported() {
    let config_file = file("[docker\n");
    let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(
        error.to_string().contains("invalid configuration"),
        "{error}"
    );
}

#[test]
fn unknown_environment_section_is_named() {
    let error = load(&[], &[("LOG_CAPTURER_DOKER_HOST", "x")]).unwrap_err();
    assert_eq!(error.key, "LOG_CAPTURER_DOKER_HOST");
}

#[test]
fn health_limits_are_read_and_validated() {
    let config_file = file(
        "[health]\nprobe_connections = 2\nwrite_timeout = \"3s\"\nmax_requests_per_connection = 7\n",
    );
    let config = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(config.health.probe_connections, 2);
    assert_eq!(config.health.write_timeout, Duration::from_secs(3));
    assert_eq!(config.health.max_requests_per_connection, 7);
    for (key, value) in [
        ("WRITE_TIMEOUT", "0s"),
        ("MAX_REQUESTS_PER_CONNECTION", "0"),
        ("MAX_CONNECTIONS", "0"),
    ] {
        let variable = format!("LOG_CAPTURER_HEALTH_{key}");
        let error = load(&[], &[(variable.as_str(), value)]).unwrap_err();
        assert_eq!(
            error.key,
            format!("health.{}", key.to_lowercase()),
            "{error}"
        );
    }
}

#[test]
fn timeout_must_exceed_heartbeat_interval() {
    let error = load(
        &["--heartbeat-interval", "10s", "--task-timeout", "5s"],
        &[],
    )
    .unwrap_err();
    assert_eq!(error.key, "supervisor.task_timeout", "{error}");
}

#[test]
fn secrets_are_redacted() {
    let mut value: toml::Value = toml::from_str(
        "[auth]\npassword = \"hunter2\"\npassword_file = \"/run/secret\"\nbearer_token = \"t\"\nuser = \"u\"\n",
    )
    .unwrap();
    super::redact(&mut value);
    let rendered = toml::to_string(&value).unwrap();
    assert!(
        !rendered.contains("hunter2") && !rendered.contains("\"t\""),
        "{rendered}"
    );
    assert!(
        rendered.contains("/run/secret") && rendered.contains("\"u\""),
        "{rendered}"
    );
}

#[test]
fn a_short_task_timeout_shrinks_the_default_docker_deadlines() {
    let config = load(&["--heartbeat-interval", "1s", "--task-timeout", "3s"], &[]).unwrap();
    assert!(config.docker.inactivity_timeout < Duration::from_secs(3));
    assert!(config.docker.request_timeout < Duration::from_secs(3));
}

#[test]
fn an_explicit_docker_deadline_that_does_not_fit_is_named() {
    let error = load(
        &["--heartbeat-interval", "1s", "--task-timeout", "3s"],
        &[("LOG_CAPTURER_DOCKER_INACTIVITY_TIMEOUT", "10s")],
    )
    .unwrap_err();
    assert_eq!(error.key, "docker.inactivity_timeout", "{error}");
}

#[test]
fn a_bad_value_inside_a_sink_names_the_field() {
    let config_file = file(
        "[[sinks]]\ntype = \"file\"\npath = \"/tmp/a.jsonl\"\n\n\
         [[sinks]]\ntype = \"loki\"\nendpoint = \"http://127.0.0.1:3100\"\nretry = { max_backoff = \"soon\" }\n",
    );
    let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
    assert_eq!(error.key, "sinks[1].retry.max_backoff", "{error}");
}

#[test]
fn an_unknown_field_or_type_of_a_sink_is_named() {
    let config_file = file("[[sinks]]\ntype = \"file\"\npaht = \"/tmp/a.jsonl\"\n");
    let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
    assert_eq!(error.key, "sinks[0].paht", "{error}");

    for (sink, key, says) in [
        ("type = \"kafka\"", "sinks[0].type", "kafka"),
        ("path = \"/tmp/a.jsonl\"", "sinks[0].type", "missing"),
    ] {
        let config_file = file(&format!("[[sinks]]\n{sink}\n"));
        let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
        assert_eq!(error.key, key, "{error}");
        assert!(error.message.contains(says), "{error}");
    }
}

#[test]
fn configured_sinks_are_parsed_by_type() {
    let config_file = file(
        "[[sinks]]\ntype = \"stdout\"\n\n[[sinks]]\ntype = \"loki\"\nendpoint = \"http://127.0.0.1:3100\"\n",
    );
    let config = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap();
    let kinds: Vec<&str> = config.sinks.iter().map(|sink| sink.kind()).collect();
    assert_eq!(kinds, ["stdout", "loki"]);
}

/// The `[docker]` filter list named `key`.
fn docker_list(config: &Config, key: &str) -> Vec<String> {
    match key {
        "include_labels" => config.docker.include_labels.clone(),
        "exclude_labels" => config.docker.exclude_labels.clone(),
        "include_names" => config.docker.include_names.clone(),
        "exclude_names" => config.docker.exclude_names.clone(),
        "include_images" => config.docker.include_images.clone(),
        "exclude_images" => config.docker.exclude_images.clone(),
        _ => panic!("not a filter key: {key}"),
    }
}

/// Every filter: its flag, its key, and two valid values (labels need `key[=value]`).
const FILTERS: [(&str, &str, &str, &str); 6] = [
    ("--include-label", "include_labels", "team=web", "tier"),
    ("--exclude-label", "exclude_labels", "noisy=true", "debug"),
    ("--include-name", "include_names", "web-*", "api-?"),
    ("--exclude-name", "exclude_names", "*-canary", "tmp*"),
    ("--include-image", "include_images", "nginx:*", "redis*"),
    ("--exclude-image", "exclude_images", "busybox*", "*/debug:*"),
];

#[test]
fn every_filter_flag_is_repeatable_and_beats_environment_and_file() {
    for (flag, key, first, second) in FILTERS {
        let config_file = file(&format!("[docker]\n{key} = [\"from-file\"]\n"));
        let path = config_file.path().to_str().unwrap();
        let variable = format!("LOG_CAPTURER_DOCKER_{}", key.to_ascii_uppercase());
        let vars = [(variable.as_str(), "from-env-1,from-env-2")];

        let from_file = load(&["--config", path], &[]).unwrap();
        assert_eq!(docker_list(&from_file, key), ["from-file"], "{key}");
        let from_env = load(&["--config", path], &vars).unwrap();
        assert_eq!(
            docker_list(&from_env, key),
            ["from-env-1", "from-env-2"],
            "{key}"
        );
        let from_flags = load(&["--config", path, flag, first, flag, second], &vars).unwrap();
        assert_eq!(docker_list(&from_flags, key), [first, second], "{flag}");
        let defaults = load(&[], &[]).unwrap();
        assert!(docker_list(&defaults, key).is_empty(), "{key}");
    }
}

#[test]
fn a_filter_flag_leaves_the_other_filters_as_configured() {
    let config_file = file("[docker]\ninclude_names = [\"web-*\"]\nexclude_images = [\"x*\"]\n");
    let path = config_file.path().to_str().unwrap();
    let config = load(&["--config", path, "--exclude-image", "busybox*"], &[]).unwrap();
    assert_eq!(config.docker.include_names, ["web-*"]);
    assert_eq!(config.docker.exclude_images, ["busybox*"]);
}

/// A glob whose `{` alternation is never closed.
const UNCLOSED_GLOB: &str = "a{b";

#[test]
fn bad_filter_flags_name_the_key() {
    let error = load(&["--exclude-image", UNCLOSED_GLOB], &[]).unwrap_err();
    assert_eq!(error.key, "docker.exclude_images", "{error}");
    let error = load(&["--exclude-label", "=x"], &[]).unwrap_err();
    assert_eq!(error.key, "docker.exclude_labels", "{error}");
}

#[test]
fn check_config_prints_the_effective_filter_set_as_valid_toml() {
    let config = load(
        &["--exclude-image", "busybox*", "--include-name", "web-*"],
        &[("LOG_CAPTURER_DOCKER_EXCLUDE_LABELS", "noisy")],
    )
    .unwrap();
    let report = config.check_report();
    let summary: Vec<&str> = report.lines().take_while(|l| l.starts_with('#')).collect();
    let summary = summary.join("\n");
    assert!(
        summary.contains("docker.exclude_images  \"busybox*\""),
        "{summary}"
    );
    assert!(
        summary.contains("docker.include_names   \"web-*\""),
        "{summary}"
    );
    assert!(
        summary.contains("docker.exclude_labels  \"noisy\""),
        "{summary}"
    );
    assert!(
        summary.contains("docker.include_images  (every image)"),
        "{summary}"
    );
    let parsed: toml::Table = report.parse().expect("the report is TOML");
    assert_eq!(
        parsed["docker"]["exclude_images"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn multiline_rules_are_parsed_and_printed() {
    let config_file = file(
        "[[docker.multiline]]\nname = \"jvm\"\nmatch_images = [\"*/java-*\"]\npreset = \"java\"\n\n\
         [[docker.multiline]]\nname = \"app\"\nstart_pattern = '^\\d{4}-\\d{2}-\\d{2} '\nflush_timeout = \"500ms\"\nmax_lines = 200\n",
    );
    let config = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap();
    let rules = &config.docker.multiline;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].preset, Some(docker_source::MultilinePreset::Java));
    assert_eq!(rules[0].max_lines, 1000, "the default");
    assert_eq!(
        rules[1].start_pattern.as_deref(),
        Some(r"^\d{4}-\d{2}-\d{2} ")
    );
    assert_eq!(rules[1].flush_timeout, Duration::from_millis(500));
    assert_eq!(rules[1].max_lines, 200);
    let rendered = config.to_redacted_toml();
    assert!(
        rendered.contains("[[docker.multiline]]") && rendered.contains("name = \"app\""),
        "{rendered}"
    );
    let reparsed = file(&rendered);
    let again = load(&["--config", reparsed.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(
        again.docker.multiline, config.docker.multiline,
        "--check-config output loads"
    );
}

#[test]
fn a_bad_multiline_rule_names_its_index_and_key() {
    let config_file = file(
        "[[docker.multiline]]\nname = \"ok\"\npreset = \"go\"\n\n\
         [[docker.multiline]]\nname = \"bad\"\nstart_pattern = \"^(oops\"\n",
    );
    let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
    assert_eq!(error.key, "docker.multiline[1].start_pattern", "{error}");
    assert!(error.message.contains("unclosed group"), "{error}");

    let config_file = file("[[docker.multiline]]\nname = \"x\"\npreset = \"cobol\"\n");
    let error = load(&["--config", config_file.path().to_str().unwrap()], &[]).unwrap_err();
    assert!(error.key.starts_with("docker.multiline"), "{error}");
    assert!(error.message.contains("cobol"), "{error}");
}
