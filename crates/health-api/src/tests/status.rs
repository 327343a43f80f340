//! The status rules with an explicit clock, the configuration and the errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capture_core::status::{
    DockerSnapshot, DockerState, SinkSnapshot, SinkState, TaskSnapshot, TaskState,
};

use super::{CONTAINER_A, FakeStatus, api_over, docker, sink, task};
use crate::report::evaluate;
use crate::{Error, HealthConfig, HealthStatus, Readiness};

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
