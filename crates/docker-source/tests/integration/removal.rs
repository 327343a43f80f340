//! Removed containers: a `--rm` job's lines are read to the end after its removal, through a
//! slow pipeline, and in file mode also when it was removed before the source saw it start; a
//! drain that cannot progress ends at its bound and counts what it lost.

use std::time::Duration;

use docker_source::DockerConfig;

use test_support::{docker::docker_output, wait::until};

use capture_core::status::TaskState;

use crate::{
    harness::{self, Harness, Sink, config, config_files, counter, loggen, unique},
    proxy::FreezingProxy,
};

const LINES: usize = 30_000;

/// A `--rm` loggen job writing `LINES` lines in a second and a half, once the source follows it
/// (written over a while, so the source sees Docker follow the file rather than only send what
/// it had: see `removal.rs`). Docker removes it when it exits; the guard only cleans up after a
/// failed test.
fn rm_job(label: &str, tag: &str) -> test_support::docker::Container {
    loggen(
        label,
        &["--rm"],
        &[
            "--tag",
            tag,
            "--lines",
            &LINES.to_string(),
            "--rate",
            "20000",
            // The source has its stream open before the first line.
            "--delay-secs",
            "2",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rm_jobs_lines_are_all_read_after_its_removal_through_a_slow_pipeline() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("removal");
    let dir = tempfile::tempdir().unwrap();
    // About 0.7 s per 20 000 lines: the pipeline is still behind when Docker removes the job.
    let harness = Harness::start(
        config(&label),
        dir.path(),
        Sink::slow(Duration::from_millis(70)),
    );
    let gaps_before = counter(
        "log_capturer_stream_gaps_total",
        Some(("reason", "removed")),
    );
    let job = rm_job(&label, "rm");
    let id = job.id().to_owned();
    harness
        .sink
        .collected
        .lock()
        .unwrap()
        .checker
        .expect(&id, "rm", LINES as u64);
    harness
        .sink
        .wait_until("every line of the --rm job", |c| c.count(&id) >= LINES)
        .await;
    harness
        .wait_task(&id, "removed once drained", |state| state.is_none())
        .await;
    harness.sink.with(|c| {
        c.report().assert_perfect();
        assert_eq!(c.count(&id), LINES);
    });
    assert_eq!(
        counter(
            "log_capturer_stream_gaps_total",
            Some(("reason", "removed"))
        ),
        gaps_before
    );
    assert_eq!(counter("task_failures_total", None), 0);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cannot_progress_ends_at_its_bound_and_counts_the_loss() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("removal-stalled");
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig {
        removed_drain_timeout: Duration::from_secs(2),
        batch_max_lines: 100,
        ..config(&label)
    };
    let sink = Sink::default();
    sink.hold();
    let harness = Harness::start(config, dir.path(), sink);
    let job = rm_job(&label, "stalled");
    let id = job.id().to_owned();
    harness
        .wait_task(&id, "following the job", |state| state.is_some())
        .await;
    // The job ends and is removed while nothing is taken; the drain gives up 2 s later.
    harness
        .wait_task(&id, "ended at its drain bound", |state| state.is_none())
        .await;
    harness.sink.release();
    let dropped = counter(
        "log_capturer_lines_dropped_total",
        Some(("reason", "removed")),
    );
    let gaps = counter(
        "log_capturer_stream_gaps_total",
        Some(("reason", "removed")),
    );
    assert!(dropped > 0, "the lines read and not taken are counted");
    assert_eq!(gaps, 1, "the rest Docker had is counted as one gap");
    harness
        .sink
        .wait_until("the batches that were queued", |c| c.count(&id) > 0)
        .await;
    let received = harness.sink.with(|c| c.count(&id));
    assert!(received as u64 + dropped <= LINES as u64);
    assert_eq!(counter("task_failures_total", None), 0);
    harness.stop().await;
}

/// The source, in file mode, behind on the daemon's events: they are held back by a proxy
/// (on a busy host, other containers' inspections delay them) until `ready` holds, then
/// delivered.
struct Behind {
    harness: Harness,
    proxy: FreezingProxy,
    /// `stream_gaps_total{reason="removed"}` and `log_files_lost_total` at the start.
    losses_before: (u64, u64),
    _dir: tempfile::TempDir,
}

fn losses() -> (u64, u64) {
    let gaps = counter(
        "log_capturer_stream_gaps_total",
        Some(("reason", "removed")),
    );
    (gaps, counter("log_capturer_log_files_lost_total", None))
}

impl Behind {
    async fn start(label: &str) -> Behind {
        test_support::docker::loggen_image();
        let proxy = FreezingProxy::start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig {
            host: Some(format!("tcp://{}", proxy.address)),
            ..config_files(label)
        };
        let harness = Harness::start(config, dir.path(), Sink::default());
        tokio::task::block_in_place(|| {
            until(WITHIN, "the source's events connection", || {
                Ok(!proxy.events_ports.lock().unwrap().is_empty())
            })
        })
        .unwrap();
        proxy.hold_events(true);
        Behind {
            harness,
            proxy,
            losses_before: losses(),
            _dir: dir,
        }
    }

    /// Starts a job while the events are held; delivers them once `ready(id)` holds.
    async fn run(
        &self,
        label: &str,
        docker_args: &[&str],
        lines: usize,
        ready: impl Fn(&str) -> bool,
    ) -> test_support::docker::Container {
        let job = loggen(
            label,
            docker_args,
            &["--tag", "behind", "--lines", &lines.to_string()],
        );
        let id = job.id().to_owned();
        let checker = &mut self.harness.sink.collected.lock().unwrap().checker;
        checker.expect(&id, "behind", lines as u64);
        tokio::task::block_in_place(|| until(WITHIN, "the job's end", || Ok(ready(&id)))).unwrap();
        assert!(
            self.harness.task_mode(&id).is_none(),
            "the source did not see it"
        );
        self.proxy.hold_events(false);
        job
    }

    /// Every line once, no loss counted, the task ended.
    async fn assert_whole(self, id: &str, lines: usize, gone: bool) {
        let harness = self.harness;
        harness
            .sink
            .wait_until("every line of the job", |c| c.count(id) >= lines)
            .await;
        harness
            .wait_task(id, "ended once drained", |state| {
                if gone {
                    state.is_none()
                } else {
                    state == Some(TaskState::Completed)
                }
            })
            .await;
        harness.sink.with(|c| {
            c.report().assert_perfect();
            assert_eq!(c.count(id), lines);
        });
        assert_eq!(losses(), self.losses_before, "no removal gap, no file lost");
        harness.stop().await;
    }
}

/// How long a job may take to end.
const WITHIN: Duration = Duration::from_secs(60);

/// A `--rm` job that runs and is removed while the source is behind on the daemon's events:
/// when the source sees it start, the daemon no longer knows it. The watcher opened its log
/// file the moment Docker created it, so every line arrives once, and no loss is counted.
/// Without that (the API path cannot), all of them were lost, counted as one gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rm_job_removed_before_the_source_saw_it_start_is_read_whole_from_its_file() {
    removed_unseen("rm-unseen", &["--rm"]).await;
}

/// A `--rm` job run with `docker_args`, removed before the source saw it start: read whole.
async fn removed_unseen(label: &str, docker_args: &[&str]) {
    let _shared = harness::process_lock().read().await;
    let label = unique(label);
    let behind = Behind::start(&label).await;
    let lines = 2_000;
    let job = behind
        .run(&label, docker_args, lines, |id| {
            !docker_output(&["inspect", id]).status.success()
        })
        .await;
    let id = job.id().to_owned();
    behind.assert_whole(&id, lines, true).await;
}

/// A job that wrote 3.4 MB with `max-size=1m`, `max-file=2` and exited before the source saw it
/// start: Docker deleted its first files before anything looked. The watcher opened each as
/// Docker created it, so reading from the oldest file starts with them: every line once. (Until
/// 2026-12-01 the first generations were lost, and nothing counted them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_a_job_rotated_away_before_the_source_saw_it_start_are_read_whole() {
    let _shared = harness::process_lock().read().await;
    let label = unique("rotated-unseen");
    let behind = Behind::start(&label).await;
    let lines = 20_000;
    let rotation = ["--log-opt", "max-size=1m", "--log-opt", "max-file=2"];
    let job = behind
        .run(&label, &rotation, lines, |id| {
            docker_output(&["inspect", "--format", "{{.State.Status}}", id])
                .stdout
                .starts_with(b"exited")
        })
        .await;
    let id = job.id().to_owned();
    behind.assert_whole(&id, lines, false).await;
}

/// The same with the `local` driver: its `local-logs/container.log` is opened as Docker creates
/// it, and read whole after the job's removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_driver_rm_job_removed_before_the_source_saw_it_start_is_read_whole() {
    removed_unseen("rm-unseen-local", &["--rm", "--log-driver", "local"]).await;
}
