//! Socket-free tests of the routes, the status rules, the JSON shape and the runtime gauges.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use capture_core::status::{
    DockerSnapshot, DockerState, SinkSnapshot, SinkState, TaskSnapshot, TaskState,
    UnreadableContainer, UnreadableReason,
};
use http::{Method, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::Value;

use crate::process_metrics::parse_vm_rss;
use crate::report::evaluate;
use crate::{Error, HealthApi, HealthConfig, HealthStatus, Readiness, StatusSource};

const CONTAINER_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const CONTAINER_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A status source whose snapshots the test sets between requests.
#[derive(Debug)]
struct FakeStatus {
    tasks: Mutex<Vec<TaskSnapshot>>,
    sinks: Mutex<Vec<SinkSnapshot>>,
    docker: Mutex<DockerSnapshot>,
    unreadable: Mutex<Vec<UnreadableContainer>>,
}

impl FakeStatus {
    /// Docker connected, no tasks, no sinks: healthy.
    fn healthy() -> Arc<FakeStatus> {
        Arc::new(FakeStatus {
            tasks: Mutex::new(Vec::new()),
            sinks: Mutex::new(Vec::new()),
            docker: Mutex::new(docker(DockerState::Connected, SystemTime::now())),
            unreadable: Mutex::new(Vec::new()),
        })
    }

    fn set_tasks(&self, tasks: Vec<TaskSnapshot>) {
        *self.tasks.lock().unwrap() = tasks;
    }

    fn set_sinks(&self, sinks: Vec<SinkSnapshot>) {
        *self.sinks.lock().unwrap() = sinks;
    }

    fn set_docker(&self, snapshot: DockerSnapshot) {
        *self.docker.lock().unwrap() = snapshot;
    }

    fn set_unreadable(&self, unreadable: Vec<UnreadableContainer>) {
        *self.unreadable.lock().unwrap() = unreadable;
    }
}

impl StatusSource for FakeStatus {
    fn tasks(&self) -> Vec<TaskSnapshot> {
        self.tasks.lock().unwrap().clone()
    }

    fn sinks(&self) -> Vec<SinkSnapshot> {
        self.sinks.lock().unwrap().clone()
    }

    fn docker(&self) -> DockerSnapshot {
        self.docker.lock().unwrap().clone()
    }

    fn unreadable(&self) -> Vec<UnreadableContainer> {
        self.unreadable.lock().unwrap().clone()
    }
}

fn task(id: &str, kind: &str, state: TaskState) -> TaskSnapshot {
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    TaskSnapshot {
        id: id.to_owned(),
        kind: kind.to_owned(),
        name: format!("{kind}-task"),
        state,
        started_at: started,
        last_heartbeat: started + Duration::from_secs(30),
        restarts: 0,
        last_error: None,
        mode: None,
    }
}

fn sink(state: SinkState, failing_since: Option<SystemTime>) -> SinkSnapshot {
    SinkSnapshot {
        name: "file".to_owned(),
        kind: "file".to_owned(),
        state,
        last_success: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        last_error: None,
        failing_since,
        buffered_events: 0,
        dropped_events: 0,
    }
}

fn docker(state: DockerState, since: SystemTime) -> DockerSnapshot {
    DockerSnapshot {
        state,
        api_version: (state == DockerState::Connected).then(|| "1.41".to_owned()),
        since,
        last_error: None,
    }
}

fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new().build_recorder()
}

fn api_over(status: Arc<FakeStatus>, readiness: Readiness) -> HealthApi {
    HealthApi::new(
        HealthConfig::default(),
        status,
        readiness,
        recorder().handle(),
    )
}

fn body_text(response: &Response<Bytes>) -> &str {
    std::str::from_utf8(response.body()).expect("responses are UTF-8")
}

fn health_json(api: &HealthApi) -> (StatusCode, Value) {
    let response = api.handle(&Method::GET, "/health");
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    let json = serde_json::from_slice(response.body()).expect("/health is JSON");
    (response.status(), json)
}

// ---- Status rules, with an explicit clock. ----

/// A fixed "now" far from the epoch, so offsets before it stay valid.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn evaluate_at(
    tasks: &[TaskSnapshot],
    sinks: &[SinkSnapshot],
    docker_snapshot: &DockerSnapshot,
) -> HealthStatus {
    evaluate(
        &HealthConfig::default(),
        tasks,
        sinks,
        docker_snapshot,
        now(),
    )
}

fn connected() -> DockerSnapshot {
    docker(DockerState::Connected, now() - Duration::from_secs(3600))
}

#[test]
fn connected_docker_with_running_tasks_and_ok_sinks_is_healthy() {
    let tasks = [
        task(
            &format!("container_{CONTAINER_A}"),
            "container",
            TaskState::Running,
        ),
        task("events", "events", TaskState::Running),
        task("old", "container", TaskState::Stopped),
        task("once", "startup", TaskState::Completed),
    ];
    let sinks = [sink(SinkState::Ok, None)];
    assert_eq!(
        evaluate_at(&tasks, &sinks, &connected()),
        HealthStatus::Healthy
    );
}

#[test]
fn restarting_or_failed_task_is_degraded() {
    for state in [TaskState::Restarting, TaskState::Failed] {
        let tasks = [
            task("events", "events", TaskState::Running),
            task("troubled", "container", state),
        ];
        assert_eq!(
            evaluate_at(&tasks, &[], &connected()),
            HealthStatus::Degraded,
            "task state {state:?}"
        );
    }
}

#[test]
fn retrying_sink_is_degraded_until_its_failure_window_passes() {
    let window = HealthConfig::default().sink_failure_window;
    let recent = [sink(SinkState::Retrying, Some(now() - window))];
    assert_eq!(
        evaluate_at(&[], &recent, &connected()),
        HealthStatus::Degraded,
        "failing for exactly the window is not yet longer than it"
    );
    let old = [sink(
        SinkState::Retrying,
        Some(now() - window - Duration::from_secs(1)),
    )];
    assert_eq!(
        evaluate_at(&[], &old, &connected()),
        HealthStatus::Unhealthy
    );
}

#[test]
fn failing_sink_is_unhealthy_at_once() {
    let sinks = [sink(SinkState::Ok, None), sink(SinkState::Failing, None)];
    assert_eq!(
        evaluate_at(&[], &sinks, &connected()),
        HealthStatus::Unhealthy
    );
}

#[test]
fn unreachable_docker_is_degraded_within_grace_and_unhealthy_after() {
    let grace = HealthConfig::default().docker_unreachable_grace;
    for state in [DockerState::Connecting, DockerState::Disconnected] {
        let within = docker(state, now() - grace);
        assert_eq!(
            evaluate_at(&[], &[], &within),
            HealthStatus::Degraded,
            "{state:?} for exactly the grace"
        );
        let beyond = docker(state, now() - grace - Duration::from_millis(1));
        assert_eq!(
            evaluate_at(&[], &[], &beyond),
            HealthStatus::Unhealthy,
            "{state:?} beyond the grace"
        );
    }
}

#[test]
fn times_in_the_future_never_make_unhealthy() {
    let future = now() + Duration::from_secs(3600);
    let sinks = [sink(SinkState::Retrying, Some(future))];
    let docker_snapshot = docker(DockerState::Disconnected, future);
    assert_eq!(
        evaluate_at(&[], &sinks, &docker_snapshot),
        HealthStatus::Degraded
    );
}

#[test]
fn configured_windows_are_used() {
    let config = HealthConfig {
        docker_unreachable_grace: Duration::from_secs(5),
        sink_failure_window: Duration::from_secs(10),
        ..HealthConfig::default()
    };
    let disconnected = docker(DockerState::Disconnected, now() - Duration::from_secs(6));
    assert_eq!(
        evaluate(&config, &[], &[], &disconnected, now()),
        HealthStatus::Unhealthy
    );
    let sinks = [sink(
        SinkState::Retrying,
        Some(now() - Duration::from_secs(11)),
    )];
    assert_eq!(
        evaluate(&config, &[], &sinks, &connected(), now()),
        HealthStatus::Unhealthy
    );
}

#[test]
fn a_reload_changes_the_thresholds_and_nothing_else() {
    let status = FakeStatus::healthy();
    let api = api_over(Arc::clone(&status), Readiness::default());
    // Relative to the real clock, since `report` reads it.
    let lost = SystemTime::now() - Duration::from_secs(10);
    status.set_docker(docker(DockerState::Disconnected, lost));
    assert_eq!(api.report().status, HealthStatus::Degraded, "within 30 s");

    let next = HealthConfig {
        docker_unreachable_grace: Duration::from_secs(5),
        listen: "0.0.0.0:9".parse().unwrap(),
        max_connections: 1,
        ..HealthConfig::default()
    };
    let reloader = api.reloader();
    assert!(reloader.apply(&next));
    assert!(!reloader.apply(&next), "applying again changes nothing");
    assert_eq!(api.report().status, HealthStatus::Unhealthy, "past 5 s");
    assert_eq!(
        api.config.listen,
        HealthConfig::DEFAULT_LISTEN,
        "restart-only"
    );
    assert_eq!(api.config.max_connections, 64, "restart-only");

    let live = HealthConfig::default().with_live_settings(&next);
    assert_eq!(live.docker_unreachable_grace, Duration::from_secs(5));
    assert_eq!(live.listen, HealthConfig::DEFAULT_LISTEN);
    assert_eq!(live.max_connections, 64);
    assert_eq!(
        HealthConfig::LIVE_KEYS,
        ["docker_unreachable_grace", "sink_failure_window"]
    );
}

// ---- /health through the routes. ----

#[test]
fn health_status_and_http_code_follow_the_sources() {
    let status = FakeStatus::healthy();
    let api = api_over(Arc::clone(&status), Readiness::default());

    let (code, json) = health_json(&api);
    assert_eq!(
        (code, json["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );

    status.set_tasks(vec![task("events", "events", TaskState::Restarting)]);
    let (code, json) = health_json(&api);
    assert_eq!(
        (code, json["status"].as_str()),
        (StatusCode::OK, Some("degraded"))
    );

    // Relative to the real clock, since `report` reads it.
    let long_ago = SystemTime::now() - Duration::from_secs(120);
    status.set_docker(docker(DockerState::Disconnected, long_ago));
    let (code, json) = health_json(&api);
    assert_eq!(
        (code, json["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unhealthy"))
    );
    assert_eq!(api.report().status, HealthStatus::Unhealthy);

    status.set_docker(docker(DockerState::Connected, SystemTime::now()));
    status.set_tasks(vec![task("events", "events", TaskState::Running)]);
    let (code, json) = health_json(&api);
    assert_eq!(
        (code, json["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
}

#[test]
fn health_json_has_the_contract_shape() {
    let status = FakeStatus::healthy();
    status.set_tasks(vec![
        task(
            &format!("container_{CONTAINER_A}"),
            "container",
            TaskState::Running,
        ),
        task(
            &format!("container_{CONTAINER_B}"),
            "container",
            TaskState::Restarting,
        ),
        task("events", "events", TaskState::Running),
    ]);
    status.set_sinks(vec![sink(SinkState::Ok, None)]);
    let api = api_over(status, Readiness::default()).with_version("9.8.7");

    let raw = api.handle(&Method::GET, "/health");
    assert!(
        body_text(&raw).starts_with(r#"{"status":"degraded","version":"9.8.7","timestamp":""#),
        "the contract's field order: {}",
        body_text(&raw)
    );
    let (_, json) = health_json(&api);
    assert_eq!(
        sorted_keys(&json),
        [
            "docker",
            "sinks",
            "status",
            "tasks",
            "timestamp",
            "unreadable",
            "uptime_seconds",
            "version"
        ]
    );
    assert_eq!(json["status"], "degraded");
    assert_eq!(json["version"], "9.8.7");
    let timestamp = json["timestamp"].as_str().unwrap();
    timestamp
        .parse::<jiff::Timestamp>()
        .expect("timestamp is RFC 3339");
    assert!(json["uptime_seconds"].as_f64().unwrap() >= 0.0);

    let first_task = &json["tasks"][0];
    assert_eq!(
        sorted_keys(first_task),
        [
            "id",
            "last_error",
            "last_heartbeat",
            "name",
            "restarts",
            "started_at",
            "state",
            "type"
        ]
    );
    assert_eq!(first_task["id"], format!("container_{CONTAINER_A}"));
    assert_eq!(first_task["type"], "container");
    assert_eq!(first_task["state"], "running");
    assert_eq!(first_task["started_at"], "2023-11-14T22:13:20Z");
    assert_eq!(first_task["restarts"], 0);
    assert!(first_task["last_error"].is_null());

    // The contract's jq query:
    // [.tasks[] | select(.id | startswith("container_")) | select(.state == "running")] | length
    let running_containers = json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["id"].as_str().unwrap().starts_with("container_"))
        .filter(|task| task["state"] == "running")
        .count();
    assert_eq!(running_containers, 1);

    let first_sink = &json["sinks"][0];
    assert_eq!(first_sink["name"], "file");
    assert_eq!(first_sink["type"], "file");
    assert_eq!(first_sink["state"], "ok");
    assert_eq!(first_sink["last_success"], "2023-11-14T22:13:20Z");
    assert_eq!(first_sink["buffered_events"], 0);
    assert_eq!(first_sink["dropped_events"], 0);
    assert!(
        first_sink.get("failing_since").is_none(),
        "internal field stays internal"
    );

    assert_eq!(json["docker"]["state"], "connected");
    assert_eq!(json["docker"]["api_version"], "1.41");
    assert_eq!(json["unreadable"], serde_json::json!([]), "always present");
}

#[test]
fn unreadable_containers_are_listed_and_never_change_the_status() {
    let status = FakeStatus::healthy();
    status.set_tasks(vec![task(
        &format!("container_{CONTAINER_A}"),
        "container",
        TaskState::Running,
    )]);
    status.set_unreadable(vec![UnreadableContainer {
        id: CONTAINER_B.to_owned(),
        name: "quiet".to_owned(),
        driver: "none".to_owned(),
        reason: UnreadableReason::LogDriverNone,
    }]);
    let api = api_over(status, Readiness::default());
    let (code, json) = health_json(&api);
    assert_eq!(
        (code, json["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
    assert_eq!(
        json["unreadable"],
        serde_json::json!([{"id": CONTAINER_B, "name": "quiet", "driver": "none",
                            "reason": "log_driver_none"}])
    );
    // Not a task: the contract's query still counts only the running one.
    assert_eq!(json["tasks"].as_array().unwrap().len(), 1);
}

/// The keys of a JSON object, sorted (serde_json's map keeps them sorted already).
fn sorted_keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

// ---- Routing. ----

#[test]
fn unknown_path_is_404() {
    let api = api_over(FakeStatus::healthy(), Readiness::default());
    for path in ["/", "/healthz", "/health/", "/metrics/x"] {
        assert_eq!(
            api.handle(&Method::GET, path).status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[test]
fn other_methods_on_known_paths_are_405_with_allow() {
    let api = api_over(FakeStatus::healthy(), Readiness::default());
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        for path in ["/health", "/live", "/ready", "/metrics"] {
            let response = api.handle(&method, path);
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(response.headers()[http::header::ALLOW], "GET, HEAD");
        }
    }
}

#[test]
fn head_answers_like_get_without_a_body() {
    let api = api_over(FakeStatus::healthy(), Readiness::default());
    let get = api.handle(&Method::GET, "/health");
    let head = api.handle(&Method::HEAD, "/health");
    assert_eq!(head.status(), get.status());
    assert!(head.body().is_empty());
    let length: usize = head.headers()[http::header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The timestamp and uptime may differ in length between the two reports by a few digits.
    assert!(length.abs_diff(get.body().len()) < 16);
}

#[test]
fn live_is_always_ok() {
    let api = api_over(FakeStatus::healthy(), Readiness::default());
    let response = api.handle(&Method::GET, "/live");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(&response), "live\n");
}

#[test]
fn ready_follows_the_latch() {
    let readiness = Readiness::default();
    let api = api_over(FakeStatus::healthy(), readiness.clone());
    assert_eq!(
        api.handle(&Method::GET, "/ready").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    readiness.set_ready(true);
    assert_eq!(api.handle(&Method::GET, "/ready").status(), StatusCode::OK);
    readiness.set_ready(false);
    assert_eq!(
        api.handle(&Method::GET, "/ready").status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

// ---- /metrics. ----

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_renders_process_and_runtime_gauges_and_registered_metrics() {
    let recorder = recorder();
    let api = HealthApi::new(
        HealthConfig::default(),
        FakeStatus::healthy(),
        Readiness::default(),
        recorder.handle(),
    );
    // A task that stays alive until the scrape is over, so the runtime has one to count.
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let waiting = tokio::spawn(async move {
        let _ = release_rx.await;
    });

    let response = metrics::with_local_recorder(&recorder, || {
        metrics::counter!("test_scrapes_total").increment(3);
        api.handle(&Method::GET, "/metrics")
    });
    release_tx.send(()).unwrap();
    waiting.await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = body_text(&response);
    assert_eq!(sample(text, "test_scrapes_total"), Some(3.0), "{text}");
    assert!(sample(text, "tokio_alive_tasks").unwrap() >= 1.0, "{text}");
    if cfg!(target_os = "linux") {
        // The test binary has at least stdin, stdout and stderr open and some megabytes mapped.
        assert!(sample(text, "process_open_fds").unwrap() >= 3.0, "{text}");
        assert!(
            sample(text, "process_resident_memory_bytes").unwrap() > 1_000_000.0,
            "{text}"
        );
    }
}

#[test]
fn registered_runtimes_add_their_alive_tasks() {
    let main = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let extra = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Tasks spawned on a runtime nobody drives stay alive (queued) until it is dropped.
    for _ in 0..3 {
        drop(extra.spawn(std::future::pending::<()>()));
    }
    let _entered = main.enter();
    let recorder = recorder();
    let api = || {
        HealthApi::new(
            HealthConfig::default(),
            FakeStatus::healthy(),
            Readiness::default(),
            recorder.handle(),
        )
    };
    let main_only = api();
    let mut both = api();
    both.register_runtime(extra.handle().clone());

    let scrape = |api: &HealthApi| {
        metrics::with_local_recorder(&recorder, || {
            let response = api.handle(&Method::GET, "/metrics");
            sample(body_text(&response), "tokio_alive_tasks").unwrap()
        })
    };
    assert_eq!(scrape(&both) - scrape(&main_only), 3.0);
}

#[test]
fn vm_rss_is_parsed_in_bytes() {
    let status = "Name:\tlog-capturer\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t4\n";
    assert_eq!(parse_vm_rss(status), Some(5120 * 1024));
    assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
}

// ---- Configuration and errors. ----

#[test]
fn config_defaults_and_humantime_durations() {
    let empty: HealthConfig = toml::from_str("").unwrap();
    assert_eq!(empty, HealthConfig::default());
    assert_eq!(empty.listen, "127.0.0.1:8401".parse().unwrap());
    assert_eq!(empty.docker_unreachable_grace, Duration::from_secs(30));
    assert_eq!(empty.sink_failure_window, Duration::from_secs(300));
    assert_eq!(empty.max_connections, 64);

    let set: HealthConfig = toml::from_str(
        "listen = \"0.0.0.0:9000\"\ndocker_unreachable_grace = \"1m\"\nsink_failure_window = \"90s\"\nmax_connections = 8\n",
    )
    .unwrap();
    assert_eq!(set.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(set.docker_unreachable_grace, Duration::from_secs(60));
    assert_eq!(set.sink_failure_window, Duration::from_secs(90));
    assert_eq!(set.max_connections, 8);
}

#[test]
fn config_rejects_unknown_keys() {
    let error = toml::from_str::<HealthConfig>("listne = \"127.0.0.1:1\"").unwrap_err();
    assert!(error.to_string().contains("listne"), "{error}");
}

#[test]
fn only_address_in_use_is_transient() {
    let addr = "127.0.0.1:8401".parse().unwrap();
    let in_use = Error::Bind {
        addr,
        source: std::io::ErrorKind::AddrInUse.into(),
    };
    let denied = Error::Bind {
        addr,
        source: std::io::ErrorKind::PermissionDenied.into(),
    };
    assert!(in_use.is_transient());
    assert!(!denied.is_transient());
}
