//! The file follower's states against real files and real inotify, without Docker (the
//! container's inspection fails, which the follower takes for "still running").

use std::time::Duration;

use task_supervisor::TaskSpec;
use tokio::sync::mpsc;

use super::file_task;
use crate::{
    ReadMode,
    files::{
        mode::{
            FileMode,
            tests::{env_sending, id, json_file_in, supervisor},
        },
        tail::tests::Dir,
        tests::json_line,
        watch::Watcher,
    },
};

/// The task starts before Docker creates the log file; the container writes a burst through
/// two rotations, exits and is removed before the follower looks again. The files the watcher
/// opened as Docker created them are all that is left, and every line in them arrives once,
/// in order.
#[tokio::test]
async fn a_container_removed_before_its_files_were_opened_is_read_from_the_watchers_files() {
    let dir = Dir::new();
    let container = id(1);
    let (batch_tx, mut batch_rx) = mpsc::channel(64);
    // No loop reads the events: the counts below do, while the follower waits.
    let (watcher, _no_loop) = Watcher::new();
    let mut mode = FileMode::new(ReadMode::Files, watcher.clone());
    let mut inspected = json_file_in(dir.dir.path());
    inspected.log_path = Some(dir.path("c.log").to_string_lossy().into_owned());
    mode.inspected(&container, &inspected);
    let file_env = mode
        .env_for(&env_sending(&container, batch_tx), None)
        .expect("a file task");
    let supervisor = supervisor();
    supervisor
        .spawn(
            TaskSpec::new("container_a", "container", "web"),
            move |ctx| file_task(ctx, file_env.clone()),
        )
        .unwrap();
    // The follower registers its watch, finds no file and waits.
    for _ in 0..1000 {
        if watcher.watched_dirs() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        watcher.watched_dirs(),
        1,
        "the follower watches the directory"
    );
    let registration = watcher.register(dir.dir.path(), std::ffi::OsStr::new("c.log"));
    let births = registration.births().expect("inotify counts creations");
    let mut expected = Vec::new();
    for generation in 0..3 {
        if generation > 0 {
            dir.rotate(2);
        }
        for n in 0..100 {
            let text = format!("{generation}-{n}");
            dir.append(
                "c.log",
                &json_line("stdout", 1 + expected.len() as i64, &text, true),
            );
            expected.push(text);
        }
        // The watcher reads the creation and opens the new live file (for every follower).
        births.count().unwrap();
    }
    std::fs::remove_dir_all(dir.dir.path()).unwrap();
    assert!(mode.removed(&container, "container_a", true));

    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lines.len() < expected.len() {
        let batch = tokio::time::timeout_at(deadline, batch_rx.recv())
            .await
            .expect("every line before the deadline")
            .expect("the follower sends");
        lines.extend(batch.lines().map(|line| line.message.to_owned()));
    }
    assert_eq!(lines, expected);
    // The task completes, and sends nothing more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while supervisor
        .task("container_a")
        .is_some_and(|task| task.state == capture_core::status::TaskState::Running)
    {
        assert!(tokio::time::Instant::now() < deadline, "the task completes");
        tokio::task::yield_now().await;
    }
    assert!(batch_rx.try_recv().is_err(), "no line twice");
}

/// The container ended and was removed before its task saw its files, and its removal is not
/// signalled yet: the stop signal finds it gone (the real daemon answers 404 for it). Its task
/// completes and counts the loss, never silently.
#[tokio::test]
async fn a_container_gone_before_its_files_were_seen_is_counted_lost() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A current-thread runtime: the task runs on this thread, under this recorder.
    let _recording = metrics::set_default_local_recorder(&recorder);
    let dir = Dir::new();
    // No such container on the daemon.
    let container = id(0xfe);
    let (batch_tx, _batch_rx) = mpsc::channel(64);
    let (watcher, _no_loop) = Watcher::new();
    let mut mode = FileMode::new(ReadMode::Files, watcher.clone());
    mode.inspected(&container, &json_file_in(dir.dir.path()));
    let mut env = env_sending(&container, batch_tx);
    env.docker = bollard::Docker::connect_with_unix_defaults().expect("the Docker socket");
    let file_env = mode.env_for(&env, None).expect("a file task");
    let supervisor = supervisor();
    supervisor
        .spawn(
            TaskSpec::new("container_b", "container", "web"),
            move |ctx| file_task(ctx, file_env.clone()),
        )
        .unwrap();
    let completed = async {
        loop {
            // The `die` the source would pass on: the follower looks at the container.
            mode.died(&container);
            if supervisor
                .task("container_b")
                .is_some_and(|task| task.state != capture_core::status::TaskState::Running)
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), completed)
        .await
        .expect("the task completes");
    let gaps: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == crate::metric_names::STREAM_GAPS_TOTAL)
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(count) => count,
            _ => 0,
        })
        .sum();
    assert_eq!(gaps, 1, "the removal is counted as a gap");
}
