//! The source's side of file mode without Docker: which containers get a file task, signals,
//! acknowledgements, and the drain of removed containers (reaped once their task ends, stopped
//! after the drain limit).

use std::{collections::HashMap, sync::Arc, time::Duration};

use bollard::{
    API_DEFAULT_VERSION,
    models::{ContainerInspectResponse, HostConfig, HostConfigLogConfig},
};
use capture_core::{ContainerId, ContainerInfo, Position, status::TaskState};
use task_supervisor::{Supervisor, SupervisorConfig, TaskSpec};
use tokio::sync::mpsc;

use super::*;
use crate::{
    files::{cursor::FileHint, tail::FileId},
    multiline::MultilineRules,
    stream::{ContainerShared, StreamSettings},
};

pub(in crate::files) fn id(n: u8) -> ContainerId {
    ContainerId::new(format!("{n:02x}").repeat(32)).unwrap()
}

fn env(id: &ContainerId) -> TaskEnv {
    env_sending(id, mpsc::channel(1).0)
}

/// A container task's environment whose batches go to `batch_tx`.
pub(in crate::files) fn env_sending(
    id: &ContainerId,
    batch_tx: mpsc::Sender<capture_core::EventBatch>,
) -> TaskEnv {
    let info = ContainerInfo::new(id.clone(), "web", "nginx");
    TaskEnv {
        shared: Arc::new(ContainerShared::new(
            Arc::new(info),
            StreamPositions::default(),
            None,
        )),
        // Never connected: these tests make no request.
        docker: crate::transport::http("127.0.0.1:9", 5, API_DEFAULT_VERSION).unwrap(),
        batch_tx,
        settings: Arc::new(StreamSettings {
            inactivity_timeout: Duration::from_secs(30),
            partial_flush_timeout: Duration::from_secs(1),
            max_line_bytes: 1024 * 1024,
            batch_max_lines: 1000,
            batch_max_bytes: 1024 * 1024,
            batch_max_latency: Duration::from_millis(10),
            request_timeout: Duration::from_secs(5),
            raw_endpoint: None,
            replay_through: 0,
            removed_drain: crate::removal::DrainBounds {
                idle: Duration::from_secs(1),
                max: Duration::from_secs(5),
            },
            multiline: Arc::new(MultilineRules::new(&[], Duration::from_secs(30)).unwrap()),
        }),
    }
}

/// An inspection of a json-file container whose log lives in `dir`.
pub(in crate::files) fn json_file_in(dir: &std::path::Path) -> ContainerInspectResponse {
    ContainerInspectResponse {
        log_path: Some(dir.join("c-json.log").to_string_lossy().into_owned()),
        host_config: Some(HostConfig {
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::new()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(in crate::files) fn supervisor() -> Supervisor {
    Supervisor::new(SupervisorConfig {
        heartbeat_interval: Duration::from_secs(3600),
        task_timeout: Duration::from_secs(4 * 3600),
        ..SupervisorConfig::default()
    })
}

/// A file mode with one container inspected and given a file task (`files` read mode).
fn with_task(dir: &std::path::Path, container: &ContainerId) -> (FileMode, FileEnv) {
    let mut mode = FileMode::new(ReadMode::Files, Watcher::polling());
    mode.inspected(container, &json_file_in(dir));
    let file_env = mode.env_for(&env(container), None).expect("a file task");
    (mode, file_env)
}

#[test]
fn the_read_mode_decides_who_reads_files() {
    let readable = tempfile::tempdir().unwrap();
    let unreadable = std::path::Path::new("/nonexistent/containers/c");
    let container = id(1);
    let cases = [
        (ReadMode::Api, readable.path(), false),
        (ReadMode::Auto, readable.path(), true),
        // `auto` reads through the API what it cannot read from files.
        (ReadMode::Auto, unreadable, false),
        // `files` never falls back (its follower fails clearly instead).
        (ReadMode::Files, unreadable, true),
    ];
    for (read_mode, dir, files) in cases {
        let mut mode = FileMode::new(read_mode, Watcher::polling());
        mode.inspected(&container, &json_file_in(dir));
        let env_for = mode.env_for(&env(&container), None);
        assert_eq!(
            env_for.is_some(),
            files,
            "{read_mode:?} in {}",
            dir.display()
        );
    }
    // A container never inspected, or whose driver writes no file, reads through the API.
    let mut mode = FileMode::new(ReadMode::Files, Watcher::polling());
    assert!(mode.env_for(&env(&id(2)), None).is_none());
    let mut journald = json_file_in(readable.path());
    journald.host_config = Some(HostConfig {
        log_config: Some(HostConfigLogConfig {
            typ: Some("journald".to_owned()),
            config: None,
        }),
        ..Default::default()
    });
    mode.inspected(&id(2), &journald);
    assert!(mode.env_for(&env(&id(2)), None).is_none());
}

#[test]
fn a_container_keeps_its_cursor_and_signal_across_task_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let container = id(1);
    let (mut mode, first) = with_task(dir.path(), &container);
    let again = mode.env_for(&env(&container), None).unwrap();
    assert!(Arc::ptr_eq(&first.cursor, &again.cursor));
    assert!(Arc::ptr_eq(&first.signal, &again.signal));
    // Forgotten (filtered out): the next task starts afresh.
    mode.forget(&container);
    assert!(
        mode.env_for(&env(&container), None).is_none(),
        "no target any more"
    );
}

#[test]
fn acknowledgements_commit_the_hint_of_the_batches_they_cover() {
    let dir = tempfile::tempdir().unwrap();
    let container = id(1);
    let (mode, file_env) = with_task(dir.path(), &container);
    let hint = FileHint {
        file: FileId { dev: 1, ino: 2 },
        offset: 300,
        entry_start: 200,
        entry_timestamp: 7,
        last: [Some(Position::new(7, 0)), None, None].into(),
    };
    file_env
        .cursor
        .sent([Some(Position::new(7, 0)), None, None].into(), hint);
    assert_eq!(
        mode.acknowledged(&container, &StreamPositions::default()),
        None
    );
    assert_eq!(
        mode.acknowledged(&container, &[Some(Position::new(7, 0)), None, None].into()),
        Some(hint)
    );
    assert_eq!(
        mode.acknowledged(&id(9), &StreamPositions::default()),
        None,
        "unknown container"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stop_wakes_the_follower_and_a_removal_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let container = id(1);
    let (mut mode, file_env) = with_task(dir.path(), &container);
    mode.died(&container);
    tokio::time::timeout(Duration::from_secs(1), file_env.signal.notified())
        .await
        .expect("the die signal wakes the follower");
    assert!(!file_env.signal.is_removed());
    assert!(mode.removed(&container, "container_x", true));
    assert!(file_env.signal.is_removed());
    tokio::time::timeout(Duration::from_secs(1), file_env.signal.notified())
        .await
        .expect("the removal wakes the follower");
    assert_eq!(
        mode.draining_task_ids().collect::<Vec<_>>(),
        ["container_x"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_container_without_a_reading_task_is_forgotten_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let container = id(1);
    let (mut mode, _file_env) = with_task(dir.path(), &container);
    assert!(!mode.removed(&container, "container_x", false));
    assert_eq!(mode.draining_task_ids().count(), 0);
    assert!(
        !mode.removed(&id(2), "container_y", true),
        "never a file task"
    );
    assert_eq!(mode.draining_task_ids().count(), 0);
}

/// A task that reads until told it may end (`done`), or until it is stopped.
fn spawn_reader(supervisor: &Supervisor, task_id: &str, done: Arc<tokio::sync::Notify>) {
    supervisor
        .spawn(TaskSpec::new(task_id, "container", "web"), move |ctx| {
            let done = done.clone();
            async move {
                tokio::select! {
                    () = done.notified() => {}
                    () = ctx.cancelled() => {}
                }
                Ok(())
            }
        })
        .unwrap();
}

fn state(supervisor: &Supervisor, task_id: &str) -> Option<TaskState> {
    supervisor.task(task_id).map(|task| task.state)
}

#[tokio::test(start_paused = true)]
async fn a_removed_container_is_reaped_once_its_task_has_read_everything() {
    let dir = tempfile::tempdir().unwrap();
    let container = id(1);
    let (mut mode, _file_env) = with_task(dir.path(), &container);
    let supervisor = supervisor();
    let done = Arc::new(tokio::sync::Notify::new());
    spawn_reader(&supervisor, "container_a", done.clone());
    assert!(mode.removed(&container, "container_a", true));
    // Still reading: kept, however often the source reaps.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        mode.reap(&supervisor).await;
        assert_eq!(state(&supervisor, "container_a"), Some(TaskState::Running));
        assert_eq!(mode.draining_task_ids().count(), 1);
    }
    done.notify_one();
    for _ in 0..100 {
        if state(&supervisor, "container_a") != Some(TaskState::Running) {
            break;
        }
        tokio::task::yield_now().await;
    }
    mode.reap(&supervisor).await;
    assert_eq!(
        state(&supervisor, "container_a"),
        None,
        "removed from the supervisor"
    );
    assert_eq!(mode.draining_task_ids().count(), 0);
    assert_eq!(
        mode.acknowledged(&container, &StreamPositions::default()),
        None,
        "its cursor is gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_that_takes_longer_than_the_limit_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let container = id(1);
    let (mut mode, _file_env) = with_task(dir.path(), &container);
    let supervisor = supervisor();
    spawn_reader(
        &supervisor,
        "container_b",
        Arc::new(tokio::sync::Notify::new()),
    );
    assert!(mode.removed(&container, "container_b", true));
    tokio::time::sleep(DRAIN_LIMIT - Duration::from_secs(1)).await;
    mode.reap(&supervisor).await;
    assert_eq!(state(&supervisor, "container_b"), Some(TaskState::Running));
    tokio::time::sleep(Duration::from_secs(2)).await;
    mode.reap(&supervisor).await;
    assert_eq!(
        state(&supervisor, "container_b"),
        None,
        "stopped and removed"
    );
    assert_eq!(mode.draining_task_ids().count(), 0);
}
