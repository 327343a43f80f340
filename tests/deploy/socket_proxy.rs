//! deploy/socket-proxy/haproxy.cfg, the least-privilege deployment, for real: a private HAProxy
//! runs the shipped file with only its `bind` address changed (a loopback port), in front of the
//! daemon's socket (the docker CLI's, normally the shared `/var/run/docker.sock`, whose life the
//! test never touches). The agent, given `tcp://` to the proxy, captures every line of a
//! container, and every request it made passed the filter; then writes and reads that are not
//! on the list are refused, with or without an API version prefix, and change nothing.

use std::net::SocketAddr;

use end_to_end::{
    Capturer, check_records, container_tasks, file_sink_records, unique_label, wait_records,
};
use test_support::{
    checker::LineChecker,
    docker::{self, Container},
    haproxy::Haproxy,
};

use crate::{deploy_dir, require_tool, try_request, wait_for};

/// Lines per stream the generator writes.
const LINES_PER_STREAM: u64 = 2_000;

/// How long the capture may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the proxy may take to log the requests of a stopped agent.
const LOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The API version prefix the probes use (the daemon is Docker 20.10 or later).
const API: &str = "/v1.41";

/// The shipped configuration with its one `bind` line pointed at `addr` and its one `server`
/// line at the daemon the docker CLI uses (`/var/run/docker.sock` unless `$DOCKER_HOST` names
/// another); nothing else changes.
fn adapted_config(addr: SocketAddr) -> String {
    let shipped = std::fs::read_to_string(deploy_dir().join("socket-proxy/haproxy.cfg"))
        .expect("read deploy/socket-proxy/haproxy.cfg");
    let (mut binds, mut servers) = (0, 0);
    let lines: Vec<String> = shipped
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("bind ") {
                binds += 1;
                format!("    bind {addr}")
            } else if trimmed.starts_with("server ") {
                servers += 1;
                assert_eq!(
                    trimmed, "server dockerd /var/run/docker.sock",
                    "the shipped server"
                );
                format!("    server dockerd {}", docker::socket_path().display())
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!((binds, servers), (1, 1), "one bind and one server line");
    lines.join("\n") + "\n"
}

/// One request through the proxy: its status.
fn status(proxy: SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    try_request(proxy, method, path, body)
        .unwrap_or_else(|| panic!("no answer from the proxy to {method} {path}"))
        .0
}

/// The requests in the proxy's log (`option httplog`): (status, "METHOD PATH").
fn logged_requests(log: &str) -> Vec<(u16, String)> {
    log.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let status = fields.get(5)?.parse().ok()?;
            let request = line.rsplit_once(" HTTP/1.1\"")?.0.split_once('"')?.1;
            Some((status, request.to_owned()))
        })
        .collect()
}

#[test]
fn socket_proxy_passes_every_request_of_the_agent_and_refuses_the_rest() {
    require_tool("haproxy");
    docker::require_daemon();
    let work = tempfile::tempdir().expect("temp dir");
    let proxy = Haproxy::start(work.path(), adapted_config);
    let host = format!("tcp://{}", proxy.addr());

    let label = format!("log-capturer-deploy={}", unique_label("socket-proxy"));
    let data = tempfile::tempdir().expect("temp dir");
    // The API is what the proxy guards: the agent must not read the log files instead.
    let mut capturer = Capturer::start_with_env(
        data.path(),
        &["--include-label", &label, "--docker-host", &host],
        &[("LOG_CAPTURER_DOCKER_READ_MODE", "api")],
    );
    let lines = LINES_PER_STREAM.to_string();
    let container = Container::run(&[
        "--label",
        &label,
        docker::loggen_image(),
        "--tag",
        "proxied",
        "--lines",
        &lines,
        "--stream",
        "both",
        "--hold-secs",
        "-1",
    ]);
    wait_records(data.path(), 2 * LINES_PER_STREAM as usize, TIMEOUT);
    let mut checker = LineChecker::default();
    checker.expect(container.id(), "proxied", LINES_PER_STREAM);
    check_records(&file_sink_records(data.path()), &mut checker);
    checker.report().assert_perfect();
    let health = capturer.health();
    assert_eq!(health["docker"]["state"], "connected", "{health:#}");
    assert_eq!(container_tasks(&health, "running").len(), 1, "{health:#}");

    // Long streams are logged when they end: stop the agent, then read what it asked.
    capturer.signal("TERM");
    assert!(capturer.wait_exit(TIMEOUT).success());
    let calls = agent_calls(container.id());
    let requests = wait_for(
        LOG_TIMEOUT,
        "the agent's streams in the proxy's log",
        || {
            let requests = logged_requests(&proxy.log_text());
            calls
                .iter()
                .all(|call| {
                    requests
                        .iter()
                        .any(|(_, request)| request.contains(call.as_str()))
                })
                .then_some(requests)
        },
        || proxy.log_text(),
    );
    let refused: Vec<&(u16, String)> = requests.iter().filter(|(s, _)| *s == 403).collect();
    assert!(
        refused.is_empty(),
        "the proxy refused requests of the agent (a call missing from deploy/socket-proxy/haproxy.cfg?): {refused:?}"
    );

    assert_the_rest_is_refused(proxy.addr(), &container);
}

/// The calls the list is for, which the agent makes for one container.
fn agent_calls(id: &str) -> Vec<String> {
    vec![
        "GET /version".to_owned(),
        "GET /containers/json".to_owned(),
        "GET /events".to_owned(),
        format!("/containers/{id}/json"),
        format!("/containers/{id}/logs"),
    ]
}

/// Writes and unlisted reads get 403 and change nothing; the listed reads pass.
fn assert_the_rest_is_refused(proxy: SocketAddr, container: &Container) {
    let id = container.id();
    let name = unique_label("socket-proxy-create");
    let create = format!(r#"{{"Image":"{}"}}"#, docker::loggen_image());
    for (method, path, body) in [
        (
            "POST",
            format!("{API}/containers/create?name={name}"),
            create.as_str(),
        ),
        (
            "POST",
            format!("/containers/create?name={name}"),
            create.as_str(),
        ),
        ("POST", format!("{API}/containers/{id}/stop"), ""),
        ("DELETE", format!("{API}/containers/{id}?force=1"), ""),
        (
            "POST",
            format!("{API}/containers/{id}/exec"),
            r#"{"Cmd":["/loggen"]}"#,
        ),
        ("GET", format!("{API}/containers/{id}/archive?path=/"), ""),
        ("GET", format!("{API}/containers/{id}/export"), ""),
        ("GET", format!("{API}/secrets"), ""),
        ("GET", "/images/json".to_owned(), ""),
        ("GET", format!("{API}/containers/{id}/../../secrets"), ""),
        ("GET", format!("{API}/containers/%2e%2e/secrets/json"), ""),
    ] {
        assert_eq!(
            status(proxy, method, &path, body),
            403,
            "{method} {path} passed the proxy"
        );
    }
    // Nothing was created, stopped or removed.
    let created = docker::docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("name={name}"),
    ]);
    assert!(created.is_empty(), "a container was created: {created}");
    assert!(container.is_running(), "the container was stopped");

    for (method, path) in [
        ("HEAD", "/_ping".to_owned()),
        ("GET", format!("{API}/version")),
        ("GET", "/info".to_owned()),
        ("GET", format!("{API}/containers/json")),
        ("GET", format!("/containers/{id}/json")),
        ("GET", format!("{API}/containers/{id}/logs?stdout=1&tail=1")),
    ] {
        assert_eq!(
            status(proxy, method, &path, ""),
            200,
            "{method} {path} was refused"
        );
    }
}
