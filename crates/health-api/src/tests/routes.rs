//! `/health` through the routes, its contract shape, and the routing rules.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capture_core::status::{
    DockerState, SinkState, TaskState, UnreadableContainer, UnreadableReason,
};
use http::{Method, StatusCode};
use serde_json::Value;

use super::{
    CONTAINER_A, CONTAINER_B, FakeStatus, api_over, body_text, docker, health_json, sink,
    sorted_keys, task,
};
use crate::{HealthStatus, Readiness};

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

/// How the report of `health_json_has_the_contract_shape` starts: the contract's field order.
const FIELD_ORDER: &str = r#"{"status":"degraded","version":"9.8.7","timestamp":""#;

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
        body_text(&raw).starts_with(FIELD_ORDER),
        "the contract's field order: {}",
        body_text(&raw)
    );
    let (_, json) = health_json(&api);
    assert_top_level_shape(&json);
    assert_first_task_shape(&json["tasks"][0]);
    assert_eq!(running_containers(&json), 1);
    assert_first_sink_shape(&json["sinks"][0]);
    assert_eq!(json["docker"]["state"], "connected");
    assert_eq!(json["docker"]["api_version"], "1.41");
    assert_eq!(json["unreadable"], serde_json::json!([]), "always present");
}

/// The report's keys, status, version, timestamp and uptime.
fn assert_top_level_shape(json: &Value) {
    assert_eq!(
        sorted_keys(json),
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
}

/// The first task: the running container `CONTAINER_A`.
fn assert_first_task_shape(first_task: &Value) {
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
}

/// The contract's jq query:
/// `[.tasks[] | select(.id | startswith("container_")) | select(.state == "running")] | length`
fn running_containers(json: &Value) -> usize {
    json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["id"].as_str().unwrap().starts_with("container_"))
        .filter(|task| task["state"] == "running")
        .count()
}

/// The first sink: the healthy file sink, without its internal fields.
fn assert_first_sink_shape(first_sink: &Value) {
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
