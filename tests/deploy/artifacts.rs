//! The compose files, the Grafana dashboard and the shipped agent configurations.

use std::{collections::BTreeSet, process::Command, time::Duration};

use end_to_end::{Capturer, capturer_binary, container_tasks, unique_label};
use test_support::docker::{self, Container};

use crate::{deploy_dir, require_tool, run_ok, wait_for};

/// Series that Prometheus itself makes for every target, not the agent.
const SCRAPE_SERIES: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

#[test]
fn compose_and_swarm_files_validate() {
    require_tool("docker-compose");
    for file in [
        "docker-compose.yml",
        "docker-compose.socket-proxy.yml",
        "swarm-stack.yml",
    ] {
        run_ok(
            Command::new("docker-compose")
                .args(["--file", file, "config", "--quiet"])
                .current_dir(deploy_dir()),
        );
    }
    // The demo's services and what the docs promise about them.
    let rendered = run_ok(
        Command::new("docker-compose")
            .args(["--file", "docker-compose.yml", "config"])
            .env("DOCKER_GID", "4242")
            .current_dir(deploy_dir()),
    );
    for expected in [
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        "127.0.0.1:8401:8401",
        "grafana/loki:3.",
        "read_only: true",
        "'4242'",
    ] {
        assert!(
            rendered.contains(expected),
            "no {expected:?} in\n{rendered}"
        );
    }
}

#[test]
fn socket_proxy_compose_variant_gives_the_socket_to_the_proxy_only() {
    require_tool("docker-compose");
    let rendered = run_ok(
        Command::new("docker-compose")
            .args(["--file", "docker-compose.socket-proxy.yml", "config"])
            .env("DOCKER_GID", "4242")
            .current_dir(deploy_dir()),
    );
    let proxy = service_block(&rendered, "socket-proxy");
    let agent = service_block(&rendered, "log-capturer");
    for expected in [
        "/var/run/docker.sock:/var/run/docker.sock:ro",
        "socket-proxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro",
        "'4242'",
        "read_only: true",
    ] {
        assert!(proxy.contains(expected), "no {expected:?} in\n{proxy}");
    }
    assert!(
        !proxy.contains("ports:"),
        "the proxy must not be published:\n{proxy}"
    );
    for expected in [
        "LOG_CAPTURER_DOCKER_HOST: tcp://socket-proxy:2375",
        "docker-api",
        "read_only: true",
    ] {
        assert!(agent.contains(expected), "no {expected:?} in\n{agent}");
    }
    for absent in ["docker.sock", "group_add"] {
        assert!(
            !agent.contains(absent),
            "the agent has {absent:?}:\n{agent}"
        );
    }
    assert!(
        rendered.contains("docker-api:\n    internal: true"),
        "{rendered}"
    );
}

/// The lines of service `name` in `docker-compose config` output (two-space indented YAML).
fn service_block(rendered: &str, name: &str) -> String {
    let header = format!("  {name}:");
    let mut lines = rendered
        .lines()
        .skip_while(|line| !line.starts_with("services:"))
        .skip_while(|line| *line != header);
    let Some(first) = lines.next() else {
        panic!("no service {name} in\n{rendered}");
    };
    let body: Vec<&str> = lines.take_while(|line| line.starts_with("    ")).collect();
    format!("{first}\n{}", body.join("\n"))
}

#[test]
fn shipped_agent_configurations_pass_check_config() {
    let dir = deploy_dir().join("log-capturer");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/log-capturer") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let output = Command::new(capturer_binary())
            .arg("--check-config")
            .arg("--config")
            .arg(&path)
            .env_remove("LOG_CAPTURER_CONFIG")
            .output()
            .expect("run log-capturer --check-config");
        assert!(
            output.status.success(),
            "{} is rejected: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let effective = String::from_utf8_lossy(&output.stdout);
        assert!(effective.contains("type = \"loki\""), "{effective}");
        checked += 1;
    }
    assert_eq!(checked, 3, "compose.toml, swarm.toml and host.toml");
}

#[test]
fn dashboard_queries_only_metrics_a_running_agent_exports() {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/dashboard.json"))
        .expect("read dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut expressions = Vec::new();
    collect_prometheus_expressions(&dashboard, &mut expressions);
    assert!(
        expressions.len() >= 10,
        "only {} queries",
        expressions.len()
    );
    let queried: BTreeSet<String> = expressions.iter().flat_map(|e| metric_names(e)).collect();

    docker::require_daemon();
    let loggen = docker::loggen_image();
    let label = unique_label("deploy-dashboard");
    let include = format!("log-capturer-deploy={label}");
    let data = tempfile::tempdir().expect("temp dir");
    let capturer = Capturer::start(data.path(), &["--include-label", &include]);
    let _generator = Container::run(&[
        "--label",
        &include,
        loggen,
        "--tag",
        "dash",
        "--lines",
        "20",
        "--stream",
        "both",
        "--hold-secs",
        "-1",
    ]);
    capturer.wait_health(
        Duration::from_secs(30),
        "one running container task",
        |health| container_tasks(health, "running").len() == 1,
    );
    let exported = wait_for(
        Duration::from_secs(30),
        "lines counted in /metrics",
        || {
            let names = exported_names(&capturer.metrics());
            names.contains("log_capturer_lines_total").then_some(names)
        },
        || capturer.metrics(),
    );
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !exported.contains(*name))
        .filter(|name| !SCRAPE_SERIES.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the agent does not export: {missing:?}\nexported: {exported:?}"
    );
    // Every contract metric family is charted somewhere.
    for family in [
        "log_capturer_lines_total",
        "log_capturer_containers_monitored",
        "tasks",
        "task_last_heartbeat",
        "log_capturer_sink_buffered_events",
        "process_resident_memory_bytes",
        "process_open_fds",
        "tokio_alive_tasks",
    ] {
        assert!(
            queried.contains(family),
            "the dashboard does not chart {family}"
        );
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum by (stream) (rate(log_capturer_lines_total{job="log-capturer", instance=~"$instance"}[$__rate_interval]))
           / on (instance) group_left max without (type) (time() - task_last_heartbeat{type="container"} offset 1m)
           or histogram_quantile(0.99, sum by (le) (rate(foo_seconds_bucket[5m]))) > bool 2e3"#,
    );
    assert_eq!(
        names,
        [
            "foo_seconds_bucket",
            "log_capturer_lines_total",
            "task_last_heartbeat"
        ]
        .map(String::from)
        .into_iter()
        .collect()
    );
}

/// Every `expr` of a Prometheus target in the dashboard (Loki targets use LogQL).
fn collect_prometheus_expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            let is_loki = map
                .get("datasource")
                .and_then(|ds| ds.get("type"))
                .is_some_and(|kind| kind == "loki");
            if let (Some(expr), false) = (map.get("expr").and_then(|e| e.as_str()), is_loki) {
                out.push(expr.to_owned());
            }
            map.values()
                .for_each(|v| collect_prometheus_expressions(v, out));
        }
        serde_json::Value::Array(items) => {
            items
                .iter()
                .for_each(|v| collect_prometheus_expressions(v, out));
        }
        _ => {}
    }
}

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregation or set operators, keywords, label names or Grafana variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        // Aggregation operators may come before their `by (...)` clause, not a parenthesis.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    // Label names follow these keywords in parentheses.
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let bytes = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut index = 0;
    let mut skip_label_list = false;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'"' | b'\'' | b'`' => index = skip_past(bytes, index + 1, byte),
            b'{' => index = skip_past(bytes, index + 1, b'}'),
            b'[' => index = skip_past(bytes, index + 1, b']'),
            b'(' if skip_label_list => {
                index = skip_past(bytes, index + 1, b')');
                skip_label_list = false;
            }
            b'$' => {
                index += 1;
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
                {
                    index += 1;
                }
            }
            b'0'..=b'9' | b'.' => {
                // Numbers, including 2e3 and 0x1f.
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'.')
                {
                    index += 1;
                }
            }
            _ if byte.is_ascii_alphabetic() || byte == b'_' || byte == b':' => {
                let start = index;
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric()
                        || bytes[index] == b'_'
                        || bytes[index] == b':')
                {
                    index += 1;
                }
                let word = &expr[start..index];
                let next = expr[index..].trim_start().as_bytes().first().copied();
                if LABEL_LISTS.contains(&word) {
                    skip_label_list = next == Some(b'(');
                } else if KEYWORDS.contains(&word) || next == Some(b'(') {
                    // A keyword, or a function / aggregation called with parentheses.
                } else {
                    names.insert(word.to_owned());
                }
            }
            _ => index += 1,
        }
    }
    names
}

/// The index just after the next `close` at or after `from` (or the end).
fn skip_past(bytes: &[u8], from: usize, close: u8) -> usize {
    bytes[from.min(bytes.len())..]
        .iter()
        .position(|byte| *byte == close)
        .map_or(bytes.len(), |offset| from + offset + 1)
}

/// The sample names in a Prometheus text exposition.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}
