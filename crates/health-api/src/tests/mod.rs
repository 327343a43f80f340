//! Socket-free tests of the routes, the status rules, the JSON shape and the runtime gauges:
//! the fakes and helpers they share; `status.rs` (the rules, configuration, errors),
//! `routes.rs` (`/health`'s shape and the routing), `metrics.rs` (`/metrics`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use capture_core::status::{
    DockerSnapshot, DockerState, SinkSnapshot, SinkState, TaskSnapshot, TaskState,
    UnreadableContainer,
};
use http::{Method, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use serde_json::Value;

use crate::{HealthApi, HealthConfig, Readiness, StatusSource};

mod metrics;
mod routes;
mod status;

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

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
