//! The file follower's states against real files and real inotify, without Docker (the
//! container's inspection fails, which the follower takes for "still running").

use std::time::Duration;

use task_supervisor::TaskSpec;
use tokio::sync::mpsc;

use capture_core::ContainerId;

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
    let following = Following::start(&id(0xfe), &dir, mpsc::channel(64).0);
    following.signal_stops_until_done().await;
    assert_eq!(gaps(&snapshotter), 1, "the removal is counted as a gap");
}

/// A `--rm` job on a busy host: its task looks after Docker deleted the job's directory, while
/// the daemon still answers for it (`removing`, then `dead` or gone). The job ran, so it had a
/// log file: its task counts the loss instead of finishing as if it wrote nothing. (An exited
/// container whose file is missing: the same state, which a test can hold still.)
#[tokio::test]
async fn a_stopped_container_whose_log_file_was_deleted_is_counted_lost() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let job = exited_container();
    let dir = Dir::new();
    let following = Following::start(&job_id(&job), &dir, mpsc::channel(64).0);
    following.signal_stops_until_done().await;
    assert_eq!(
        gaps(&snapshotter),
        1,
        "the deleted file is counted as a gap"
    );
}

/// The follower found no file and waits; the file appears and the stop is signalled before the
/// follower runs again (the signal wins the wake-up). It reads the file to its end.
#[tokio::test]
async fn a_file_that_appears_while_a_stop_is_signalled_is_read_to_its_end() {
    let job = exited_container();
    let dir = Dir::new();
    let (batch_tx, mut batch_rx) = mpsc::channel(64);
    let following = Following::start(&job_id(&job), &dir, batch_tx);
    following.wait_for_the_watch().await;
    // The follower has looked for a file (its first run registers the watch and looks, with no
    // await between) and waits. No watcher loop runs: only the signal wakes it.
    let expected: Vec<String> = (0..50).map(|n| format!("line {n}")).collect();
    for (n, text) in expected.iter().enumerate() {
        dir.append("c-json.log", &json_line("stdout", 1 + n as i64, text, true));
    }
    following.mode.died(&following.container);
    let mut lines = Vec::new();
    while lines.len() < expected.len() {
        let batch = tokio::time::timeout(Duration::from_secs(30), batch_rx.recv())
            .await
            .expect("every line before the deadline")
            .expect("the follower sends");
        lines.extend(batch.lines().map(|line| line.message.to_owned()));
    }
    assert_eq!(lines, expected);
    following.signal_stops_until_done().await;
}

/// dockerd answers an inspection of a container whose exit it is handling only once it is done
/// (0.26-0.38 s after the `die` event, measured here): the lines there are when the stop is
/// signalled are read and sent before the follower asks whether the container stopped. Here
/// the daemon never answers, and a batch waits a minute for more lines unless something sends
/// it: without the send before the inspection, the lines stay in the follower.
#[tokio::test]
async fn the_lines_written_when_a_stop_is_signalled_are_sent_before_the_container_is_inspected() {
    let dir = Dir::new();
    dir.append("c-json.log", "");
    let daemon = tempfile::tempdir().unwrap();
    let socket = daemon.path().join("docker.sock");
    // Connections wait in its backlog, never accepted: no request is ever answered.
    let _silent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (batch_tx, mut batch_rx) = mpsc::channel(64);
    let container = ContainerId::new("b".repeat(64)).unwrap();
    let mut env = env_sending(&container, batch_tx);
    env.docker = bollard::Docker::connect_with_unix(
        &socket.to_string_lossy(),
        3600,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let mut settings = (*env.settings).clone();
    settings.batch_max_latency = Duration::from_secs(60);
    env.settings = std::sync::Arc::new(settings);
    let following = Following::start_with(&container, &dir, env);
    following.wait_for_the_watch().await;
    let expected: Vec<String> = (0..50).map(|n| format!("last {n}")).collect();
    for (n, text) in expected.iter().enumerate() {
        dir.append("c-json.log", &json_line("stdout", 1 + n as i64, text, true));
    }
    following.mode.died(&following.container);
    let mut lines = Vec::new();
    while lines.len() < expected.len() {
        let batch = tokio::time::timeout(Duration::from_secs(20), batch_rx.recv())
            .await
            .expect("the lines before the inspection is answered")
            .expect("the follower sends");
        lines.extend(batch.lines().map(|line| line.message.to_owned()));
    }
    assert_eq!(lines, expected);
    following.supervisor.shutdown(Duration::from_secs(10)).await;
}

/// A file task for `container` (real or not, on the real daemon) whose files are in `dir`.
struct Following {
    mode: FileMode,
    watcher: Watcher,
    container: ContainerId,
    supervisor: task_supervisor::Supervisor,
    /// Not run: no directory change wakes the follower.
    _no_loop: Option<crate::files::watch::WatchLoop>,
}

impl Following {
    fn start(
        container: &ContainerId,
        dir: &Dir,
        batch_tx: mpsc::Sender<capture_core::EventBatch>,
    ) -> Following {
        let mut env = env_sending(container, batch_tx);
        env.docker = bollard::Docker::connect_with_unix_defaults().expect("the Docker socket");
        Following::start_with(container, dir, env)
    }

    /// [`Following::start`] with the task's environment given.
    fn start_with(container: &ContainerId, dir: &Dir, env: crate::stream::TaskEnv) -> Following {
        let (watcher, no_loop) = Watcher::new();
        let mut mode = FileMode::new(ReadMode::Files, watcher.clone());
        mode.inspected(container, &json_file_in(dir.dir.path()));
        let file_env = mode.env_for(&env, None).expect("a file task");
        let supervisor = supervisor();
        supervisor
            .spawn(
                TaskSpec::new("container_b", "container", "web"),
                move |ctx| file_task(ctx, file_env.clone()),
            )
            .unwrap();
        Following {
            mode,
            watcher,
            container: container.clone(),
            supervisor,
            _no_loop: no_loop,
        }
    }

    async fn wait_for_the_watch(&self) {
        for _ in 0..1000 {
            if self.watcher.watched_dirs() == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the follower never watched its directory");
    }

    /// Passes on `die` signals (as the source would) until the task completes.
    async fn signal_stops_until_done(&self) {
        let completed = async {
            loop {
                self.mode.died(&self.container);
                if self
                    .supervisor
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
    }
}

/// A real container that ran and exited.
fn exited_container() -> test_support::docker::Container {
    let job =
        test_support::docker::Container::run(&[test_support::docker::busybox_image(), "true"]);
    assert_eq!(job.wait_exit(), 0);
    job
}

fn job_id(job: &test_support::docker::Container) -> ContainerId {
    ContainerId::new(job.id()).expect("a container id")
}

/// `stream_gaps_total`, all reasons.
fn gaps(snapshotter: &metrics_util::debugging::Snapshotter) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == crate::metric_names::STREAM_GAPS_TOTAL)
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(count) => count,
            _ => 0,
        })
        .sum()
}
