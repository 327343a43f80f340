//! Integration tests of the supervisor, driven by paused Tokio time (except the cross-runtime
//! test): a ten-minute scenario runs in milliseconds and timings are asserted exactly.

mod support;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use capture_core::status::TaskState;
use metrics_util::debugging::DebuggingRecorder;
use task_supervisor::{
    Error, RestartPolicy, ShutdownReport, Supervisor, SupervisorConfig, TaskError, TaskSpec,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use support::{DropSignalSlot, MetricsProbe, unix_seconds, wait_for_task, within};

const FIVE_MINUTES: Duration = Duration::from_secs(300);
const LIMIT: Duration = Duration::from_secs(3600);

fn seed_config() -> SupervisorConfig {
    SupervisorConfig {
        heartbeat_interval: Duration::from_secs(30),
        task_timeout: FIVE_MINUTES,
        stop_timeout: Duration::from_secs(5),
        default_restart: RestartPolicy::default(),
    }
}

fn container(id: &str) -> TaskSpec {
    TaskSpec::new(id, "container", format!("name-of-{id}"))
}

/// A body that heartbeats every `every` until cancelled, then returns `Ok`.
async fn beat_until_cancelled(
    ctx: task_supervisor::TaskContext,
    every: Duration,
) -> Result<(), TaskError> {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            _ = ticks.tick() => ctx.heartbeat(),
        }
    }
}

/// The Go predecessor's failure: a task that never heartbeats. Here it is declared dead at the
/// five-minute timeout (not a minute later), counted as a failure, and restarted.
#[tokio::test(start_paused = true)]
async fn silent_task_fails_at_timeout_and_is_restarted() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    let (attempt_tx, mut attempt_rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    supervisor
        .spawn(container("container_a"), move |ctx| {
            let _ = attempt_tx.send(ctx.attempt());
            async { pending::<Result<(), TaskError>>().await }
        })
        .unwrap();
    assert_eq!(within(LIMIT, attempt_rx.recv()).await, Some(1));

    tokio::time::sleep(Duration::from_secs(299)).await;
    let task = supervisor.task("container_a").unwrap();
    assert_eq!(task.state, TaskState::Running, "still running at 299 s");
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "container")]),
        0
    );

    let failed = wait_for_task(&supervisor, "container_a", LIMIT, |task| {
        task.state != TaskState::Running
    })
    .await;
    let detected_after = start.elapsed();
    assert!(
        (FIVE_MINUTES..=Duration::from_secs(301)).contains(&detected_after),
        "declared dead after {detected_after:?}"
    );
    assert_eq!(failed.state, TaskState::Restarting);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("heartbeat timeout after 300s")
    );
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "container")]),
        1
    );

    assert_eq!(
        within(Duration::from_secs(5), attempt_rx.recv()).await,
        Some(2)
    );
    let restarted = supervisor.task("container_a").unwrap();
    assert_eq!(restarted.state, TaskState::Running);
    assert_eq!(restarted.restarts, 1);
    assert_eq!(
        metrics.counter("task_restarts_total", &[("type", "container")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeating_task_keeps_running_for_ten_minutes() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    let (attempt_tx, mut attempt_rx) = mpsc::unbounded_channel();
    supervisor
        .spawn(container("container_b"), move |ctx| {
            let _ = attempt_tx.send(ctx.attempt());
            beat_until_cancelled(ctx, Duration::from_secs(30))
        })
        .unwrap();
    assert_eq!(within(LIMIT, attempt_rx.recv()).await, Some(1));

    tokio::time::sleep(Duration::from_secs(600)).await;
    let task = supervisor.task("container_b").unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.restarts, 0);
    assert_eq!(task.last_error, None);
    assert!(attempt_rx.try_recv().is_err(), "no second attempt");
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "container")]),
        0
    );
    // The interval ticks at 0, 30, ..., 600 s: the last beat seen is at 570 s or 600 s.
    let beat_at = task.last_heartbeat.duration_since(task.started_at).unwrap();
    assert!(
        beat_at >= Duration::from_secs(570),
        "last beat at {beat_at:?}"
    );
}

/// A body stuck forever in an await that ignores its token: detected at the timeout and its
/// future dropped (which is what releases a Docker connection).
#[tokio::test(start_paused = true)]
async fn stuck_task_is_detected_and_its_future_dropped() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    let (slot, dropped_rx) = DropSignalSlot::new();
    let start = Instant::now();
    supervisor
        .spawn(
            container("container_stuck").with_restart(RestartPolicy::never()),
            move |_ctx| {
                let signal = slot.take();
                async move {
                    let _signal = signal;
                    pending::<()>().await;
                    Ok(())
                }
            },
        )
        .unwrap();

    let failed = wait_for_task(&supervisor, "container_stuck", LIMIT, |task| {
        task.state == TaskState::Failed
    })
    .await;
    assert!(start.elapsed() <= FIVE_MINUTES + Duration::from_secs(1));
    assert_eq!(
        failed.last_error.as_deref(),
        Some("heartbeat timeout after 300s")
    );
    within(Duration::from_secs(1), dropped_rx)
        .await
        .expect("the stuck future was dropped");
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "container")]),
        1
    );
    assert_eq!(
        metrics.counter("task_restarts_total", &[("type", "container")]),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn restart_backoff_follows_schedule_until_max_attempts() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    let policy = RestartPolicy {
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(8),
        jitter: 0.0,
        max_attempts: Some(7),
        ..RestartPolicy::default()
    };
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    supervisor
        .spawn(container("flaky").with_restart(policy), move |ctx| {
            let _ = started_tx.send((ctx.attempt(), start.elapsed()));
            async { Err(TaskError::from("boom")) }
        })
        .unwrap();

    let mut starts = Vec::new();
    while let Some((attempt, at)) = within(LIMIT, started_rx.recv()).await {
        assert_eq!(attempt as usize, starts.len() + 1);
        starts.push(at.as_millis());
        if starts.len() == 7 {
            break;
        }
    }
    assert_eq!(starts, [0, 1_000, 3_000, 7_000, 15_000, 23_000, 31_000]);

    let failed = wait_for_task(&supervisor, "flaky", LIMIT, |task| {
        task.state == TaskState::Failed
    })
    .await;
    assert_eq!(failed.last_error.as_deref(), Some("boom"));
    assert_eq!(failed.restarts, 6);
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "container")]),
        7
    );
    assert_eq!(
        metrics.counter("task_restarts_total", &[("type", "container")]),
        6
    );
    // Once the runner is gone its body (and the sender it holds) is dropped: no eighth attempt.
    assert!(supervisor.remove("flaky"));
    assert_eq!(within(LIMIT, started_rx.recv()).await, None);
}

#[tokio::test(start_paused = true)]
async fn restarting_state_is_visible_during_backoff_and_stop_ends_it() {
    let supervisor = Supervisor::new(seed_config());
    let policy = RestartPolicy {
        backoff_base: Duration::from_secs(30),
        jitter: 0.0,
        ..RestartPolicy::default()
    };
    supervisor
        .spawn(
            container("backing_off").with_restart(policy),
            |_ctx| async { Err(TaskError::from("refused")) },
        )
        .unwrap();
    let restarting = wait_for_task(&supervisor, "backing_off", LIMIT, |task| {
        task.state == TaskState::Restarting
    })
    .await;
    assert_eq!(restarting.last_error.as_deref(), Some("refused"));
    let start = Instant::now();
    let stopped = supervisor.stop("backing_off").await.unwrap();
    assert_eq!(stopped.state, TaskState::Stopped);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "stop did not wait out the backoff"
    );
}

/// Shutdown with a grace shorter than `stop_timeout`: the body that ignores cancellation is
/// aborted at the end of the grace period and reported as aborted.
#[tokio::test(start_paused = true)]
async fn shutdown_aborts_a_task_ignoring_cancellation_at_the_grace_deadline() {
    let supervisor = Supervisor::new(seed_config());
    let (slot, dropped_rx) = DropSignalSlot::new();
    supervisor
        .spawn(container("deaf"), move |_ctx| {
            let signal = slot.take();
            async move {
                let _signal = signal;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
        .unwrap();
    supervisor
        .spawn(container("polite"), |ctx| {
            beat_until_cancelled(ctx, Duration::from_secs(30))
        })
        .unwrap();
    tokio::task::yield_now().await;

    let start = Instant::now();
    let report = supervisor.shutdown(Duration::from_secs(2)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(
        report,
        ShutdownReport {
            stopped: vec!["polite".to_owned()],
            aborted: vec!["deaf".to_owned()],
        }
    );
    within(Duration::from_secs(1), dropped_rx)
        .await
        .expect("the aborted future was dropped");
    let deaf = supervisor.task("deaf").unwrap();
    assert_eq!(deaf.state, TaskState::Stopped);
    assert_eq!(deaf.last_error.as_deref(), Some("aborted at shutdown"));
    assert_eq!(supervisor.task("polite").unwrap().state, TaskState::Stopped);
    assert_eq!(
        supervisor.spawn(container("late"), |_ctx| async { Ok(()) }),
        Err(Error::ShuttingDown)
    );
}

/// Shutdown with a grace longer than `stop_timeout`: the runner itself drops the body that
/// ignores cancellation after `stop_timeout`, so it is reported stopped, well within the grace.
#[tokio::test(start_paused = true)]
async fn shutdown_drops_a_task_ignoring_cancellation_after_stop_timeout() {
    let supervisor = Supervisor::new(seed_config());
    let (slot, dropped_rx) = DropSignalSlot::new();
    supervisor
        .spawn(container("deaf"), move |_ctx| {
            let signal = slot.take();
            async move {
                let _signal = signal;
                pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    tokio::task::yield_now().await;

    let start = Instant::now();
    let report = supervisor.shutdown(Duration::from_secs(30)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(report.stopped, ["deaf"]);
    assert!(report.aborted.is_empty());
    assert!(dropped_rx.await.is_ok(), "dropped before shutdown returned");
    assert_eq!(supervisor.task("deaf").unwrap().state, TaskState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn panic_is_a_counted_failure_and_restarted() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    let (attempt_tx, mut attempt_rx) = mpsc::unbounded_channel();
    supervisor
        .spawn(container("panicky"), move |ctx| {
            let attempt = ctx.attempt();
            let _ = attempt_tx.send(attempt);
            async move {
                if attempt == 1 {
                    panic!("kaboom in attempt {attempt}");
                }
                beat_until_cancelled(ctx, Duration::from_secs(30)).await
            }
        })
        .unwrap();
    assert_eq!(within(LIMIT, attempt_rx.recv()).await, Some(1));
    assert_eq!(within(LIMIT, attempt_rx.recv()).await, Some(2));
    let task = supervisor.task("panicky").unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.restarts, 1);
    let error = task.last_error.unwrap();
    assert!(error.contains("kaboom in attempt 1"), "{error}");
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "container")]),
        1
    );
    assert_eq!(
        metrics.counter("task_restarts_total", &[("type", "container")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn ok_completes_and_permanent_error_fails_without_restart() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    let attempts = Arc::new(AtomicU32::new(0));

    supervisor
        .spawn(TaskSpec::new("job", "oneshot", "job"), |_ctx| async {
            Ok(())
        })
        .unwrap();
    let counter = Arc::clone(&attempts);
    supervisor
        .spawn(
            TaskSpec::new("misconfigured", "oneshot", "bad"),
            move |_ctx| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Err(TaskError::permanent("bad configuration")) }
            },
        )
        .unwrap();

    let done = wait_for_task(&supervisor, "job", LIMIT, |t| {
        t.state == TaskState::Completed
    })
    .await;
    assert_eq!((done.restarts, done.last_error), (0, None));
    let failed = wait_for_task(&supervisor, "misconfigured", LIMIT, |t| {
        t.state == TaskState::Failed
    })
    .await;
    assert_eq!(failed.last_error.as_deref(), Some("bad configuration"));
    assert_eq!(failed.restarts, 0);
    // Give a (wrong) restart every chance to happen: the default backoff is about one second.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(
        metrics.counter("task_failures_total", &[("type", "oneshot")]),
        1
    );
    assert_eq!(
        metrics.counter("task_restarts_total", &[("type", "oneshot")]),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn restart_on_success_runs_the_body_again() {
    let supervisor = Supervisor::new(seed_config());
    let policy = RestartPolicy {
        restart_on_success: true,
        jitter: 0.0,
        max_attempts: Some(3),
        ..RestartPolicy::default()
    };
    supervisor
        .spawn(
            TaskSpec::new("poller", "poll", "poller").with_restart(policy),
            |_ctx| async { Ok(()) },
        )
        .unwrap();
    let done = wait_for_task(&supervisor, "poller", LIMIT, |t| {
        t.state == TaskState::Completed
    })
    .await;
    assert_eq!(done.restarts, 2);
    assert_eq!(done.last_error, None);
}

#[tokio::test(start_paused = true)]
async fn stop_waits_for_the_body_to_drop_then_removes_the_task() {
    let supervisor = Supervisor::new(seed_config());
    let (slot, mut dropped_rx) = DropSignalSlot::new();
    supervisor
        .spawn(container("web"), move |ctx| {
            let signal = slot.take();
            async move {
                let _signal = signal;
                beat_until_cancelled(ctx, Duration::from_secs(30)).await
            }
        })
        .unwrap();
    tokio::task::yield_now().await;

    let start = Instant::now();
    let stopped = supervisor.stop("web").await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "a polite body stops at once"
    );
    assert_eq!(stopped.state, TaskState::Stopped);
    assert_eq!(stopped.id, "web");
    assert_eq!(
        dropped_rx.try_recv(),
        Ok(()),
        "dropped before stop returned"
    );
    assert_eq!(supervisor.task("web"), None);
    assert!(supervisor.snapshot().is_empty());
    assert_eq!(supervisor.stop("web").await, None);
}

#[tokio::test(start_paused = true)]
async fn stop_drops_a_body_that_ignores_cancellation_after_stop_timeout() {
    let supervisor = Supervisor::new(seed_config());
    let (slot, mut dropped_rx) = DropSignalSlot::new();
    supervisor
        .spawn(container("deaf"), move |_ctx| {
            let signal = slot.take();
            async move {
                let _signal = signal;
                pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    tokio::task::yield_now().await;

    let start = Instant::now();
    let stopped = supervisor.stop("deaf").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(stopped.state, TaskState::Stopped);
    assert_eq!(dropped_rx.try_recv(), Ok(()));
    assert_eq!(supervisor.task("deaf"), None);
}

#[tokio::test(start_paused = true)]
async fn ids_are_unique_while_live_and_ended_tasks_can_be_replaced_or_removed() {
    let supervisor = Supervisor::new(seed_config());
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    supervisor
        .spawn(container("c1"), move |_ctx| {
            let release_rx = Arc::clone(&release_rx);
            async move {
                let receiver = release_rx.lock().await.take();
                if let Some(receiver) = receiver {
                    let _ = receiver.await;
                }
                Ok(())
            }
        })
        .unwrap();
    assert_eq!(
        supervisor.spawn(container("c1"), |_ctx| async { Ok(()) }),
        Err(Error::AlreadyRunning("c1".to_owned()))
    );
    assert!(!supervisor.remove("c1"), "a running task is not removed");
    assert!(!supervisor.remove("unknown"));

    release_tx.send(()).unwrap();
    wait_for_task(&supervisor, "c1", LIMIT, |t| {
        t.state == TaskState::Completed
    })
    .await;

    let (attempt_tx, mut attempt_rx) = mpsc::unbounded_channel();
    supervisor
        .spawn(container("c1"), move |ctx| {
            let _ = attempt_tx.send(ctx.attempt());
            beat_until_cancelled(ctx, Duration::from_secs(30))
        })
        .expect("an ended task is replaced");
    assert_eq!(within(LIMIT, attempt_rx.recv()).await, Some(1));
    let replaced = supervisor.task("c1").unwrap();
    assert_eq!((replaced.state, replaced.restarts), (TaskState::Running, 0));

    supervisor
        .spawn(container("c2"), |_ctx| async { Ok(()) })
        .unwrap();
    wait_for_task(&supervisor, "c2", LIMIT, |t| {
        t.state == TaskState::Completed
    })
    .await;
    let ids: Vec<String> = supervisor.snapshot().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, ["c1", "c2"]);
    assert!(supervisor.remove("c2"));
    assert_eq!(supervisor.task("c2"), None);
}

#[tokio::test(start_paused = true)]
async fn gauges_count_states_and_report_the_oldest_running_heartbeat() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    supervisor
        .spawn(container("fresh"), |ctx| {
            beat_until_cancelled(ctx, Duration::from_secs(10))
        })
        .unwrap();
    supervisor
        .spawn(container("stale"), |ctx| async move {
            ctx.heartbeat();
            ctx.cancelled().await;
            Ok(())
        })
        .unwrap();
    supervisor
        .spawn(container("done"), |_ctx| async { Ok(()) })
        .unwrap();
    supervisor
        .spawn(TaskSpec::new("events", "events", "events"), |ctx| {
            beat_until_cancelled(ctx, Duration::from_secs(10))
        })
        .unwrap();

    // 125 s in, "fresh" last beat at 120 s and "stale" at 0 s. The watchdog tick at 125 s sets
    // every gauge right before the probe reads them.
    tokio::time::sleep(Duration::from_millis(124_500)).await;
    metrics.gauges();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let gauges = metrics.gauges();
    let stale = supervisor.task("stale").unwrap();
    let fresh = supervisor.task("fresh").unwrap();
    assert_eq!(
        fresh
            .last_heartbeat
            .duration_since(stale.last_heartbeat)
            .unwrap(),
        Duration::from_secs(120)
    );
    let oldest = gauges.get("task_last_heartbeat", &[("type", "container")]);
    assert!(
        (oldest - unix_seconds(stale.last_heartbeat)).abs() < 1e-3,
        "{oldest}"
    );
    let state = |gauges: &support::Gauges, kind: &str, state: &str| {
        gauges.get("tasks", &[("type", kind), ("state", state)])
    };
    assert_eq!(state(&gauges, "container", "running"), 2.0);
    assert_eq!(state(&gauges, "container", "completed"), 1.0);
    assert_eq!(state(&gauges, "container", "failed"), 0.0);
    assert_eq!(state(&gauges, "events", "running"), 1.0);

    supervisor.stop("stale").await.unwrap();
    supervisor.stop("done").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let gauges = metrics.gauges();
    let fresh = supervisor.task("fresh").unwrap();
    let oldest = gauges.get("task_last_heartbeat", &[("type", "container")]);
    assert!(
        (oldest - unix_seconds(fresh.last_heartbeat)).abs() < 1e-3,
        "{oldest}"
    );
    assert_eq!(state(&gauges, "container", "running"), 1.0);
    assert_eq!(
        state(&gauges, "container", "completed"),
        0.0,
        "emptied state reports zero"
    );
}

/// What the remote body reports: an event, its attempt, and the thread it ran on.
type RemoteReport = (&'static str, u32, std::thread::ThreadId);

/// A current-thread runtime driven by a thread of its own until the sender is used.
fn runtime_on_its_own_thread() -> (
    tokio::runtime::Handle,
    oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    let (stop_thread_tx, stop_thread_rx) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime.block_on(async {
            let _ = stop_thread_rx.await;
        });
    });
    (handle, stop_thread_tx, thread)
}

/// The first attempt beats on its own and on each `true` command (reporting it), and stops
/// beating for good at `false`; later attempts wait for cancellation.
async fn remote_body(
    ctx: task_supervisor::TaskContext,
    command_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<bool>>>,
    report_tx: mpsc::UnboundedSender<RemoteReport>,
) -> Result<(), TaskError> {
    let _ = report_tx.send(("started", ctx.attempt(), std::thread::current().id()));
    if ctx.attempt() > 1 {
        ctx.cancelled().await;
        return Ok(());
    }
    // Beats on its own as well, so a slow test thread cannot make it miss a beat.
    let mut ticks = tokio::time::interval(ctx.heartbeat_interval());
    let mut commands = command_rx.lock().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => ctx.heartbeat(),
            command = commands.recv() => {
                if command != Some(true) {
                    break;
                }
                ctx.heartbeat();
                let _ = report_tx.send(("beat", ctx.attempt(), std::thread::current().id()));
            }
        }
    }
    drop(commands);
    pending::<()>().await;
    Ok(())
}

/// Tasks may run on other runtimes (the Docker source runs containers on dedicated
/// current-thread runtimes). Their heartbeats are plain atomic stores the main runtime's watchdog
/// reads, and the watchdog can still kill and restart them. Real time: paused time does not span
/// runtimes; every wait is on an event, bounded by a timeout.
#[tokio::test]
async fn task_on_another_runtime_is_watched_from_the_main_runtime() {
    let supervisor = Supervisor::new(SupervisorConfig {
        heartbeat_interval: Duration::from_millis(20),
        task_timeout: Duration::from_millis(300),
        stop_timeout: Duration::from_secs(1),
        default_restart: RestartPolicy {
            backoff_base: Duration::from_millis(10),
            jitter: 0.0,
            ..RestartPolicy::default()
        },
    });
    let (handle, stop_thread_tx, thread) = runtime_on_its_own_thread();
    let other_thread = thread.thread().id();

    // Commands to the body: `true` = beat and acknowledge, `false` = stop beating for good.
    let (command_tx, command_rx) = mpsc::unbounded_channel::<bool>();
    let command_rx = Arc::new(tokio::sync::Mutex::new(command_rx));
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    supervisor
        .spawn(container("remote").on_runtime(handle), move |ctx| {
            remote_body(ctx, Arc::clone(&command_rx), report_tx.clone())
        })
        .unwrap();

    let limit = Duration::from_secs(10);
    assert_eq!(
        within(limit, report_rx.recv()).await,
        Some(("started", 1, other_thread))
    );
    assert_ne!(other_thread, std::thread::current().id());
    let before = supervisor.task("remote").unwrap().last_heartbeat;
    command_tx.send(true).unwrap();
    assert_eq!(
        within(limit, report_rx.recv()).await,
        Some(("beat", 1, other_thread))
    );
    let after = supervisor.task("remote").unwrap().last_heartbeat;
    assert!(
        after > before,
        "the main runtime sees the other runtime's beat"
    );

    command_tx.send(false).unwrap();
    let failed = wait_for_task(&supervisor, "remote", limit, |task| {
        task.last_error.is_some()
    })
    .await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("heartbeat timeout after 300ms")
    );
    assert_eq!(
        within(limit, report_rx.recv()).await,
        Some(("started", 2, other_thread))
    );
    let restarted = wait_for_task(&supervisor, "remote", limit, |task| task.restarts == 1).await;
    assert_eq!(restarted.state, TaskState::Running);

    let report = within(limit, supervisor.shutdown(Duration::from_secs(5))).await;
    assert_eq!(report.stopped, ["remote"]);
    stop_thread_tx.send(()).unwrap();
    thread.join().unwrap();
}

/// The predecessor waited for a task while holding the lock that task needed. Here a body that
/// calls into the supervisor while being stopped (and from its drop) does not deadlock `stop`.
#[tokio::test(start_paused = true)]
async fn stop_does_not_deadlock_when_the_body_calls_the_supervisor() {
    struct SnapshotOnDrop {
        supervisor: Supervisor,
        seen_tx: Option<oneshot::Sender<usize>>,
    }
    impl Drop for SnapshotOnDrop {
        fn drop(&mut self) {
            let seen = self.supervisor.snapshot().len();
            let _ = self.supervisor.task("reentrant");
            if let Some(seen_tx) = self.seen_tx.take() {
                let _ = seen_tx.send(seen);
            }
        }
    }

    let supervisor = Supervisor::new(seed_config());
    let (seen_tx, mut seen_rx) = oneshot::channel();
    let seen_tx = Arc::new(std::sync::Mutex::new(Some(seen_tx)));
    let handle = supervisor.clone();
    supervisor
        .spawn(container("reentrant"), move |ctx| {
            let guard = SnapshotOnDrop {
                supervisor: handle.clone(),
                seen_tx: seen_tx.lock().unwrap().take(),
            };
            let handle = handle.clone();
            async move {
                let _guard = guard;
                ctx.cancelled().await;
                // While being stopped: read the registry and start another task.
                assert_eq!(handle.snapshot().len(), 1);
                handle
                    .spawn(container("successor"), |ctx| {
                        beat_until_cancelled(ctx, Duration::from_secs(30))
                    })
                    .map_err(TaskError::permanent)?;
                Ok(())
            }
        })
        .unwrap();
    tokio::task::yield_now().await;

    let stopped = within(Duration::from_secs(60), supervisor.stop("reentrant"))
        .await
        .unwrap();
    assert_eq!(stopped.state, TaskState::Stopped);
    assert_eq!(seen_rx.try_recv(), Ok(2), "the drop saw both tasks");
    assert_eq!(
        supervisor.task("successor").unwrap().state,
        TaskState::Running
    );
    assert_eq!(supervisor.task("reentrant"), None);
}

#[tokio::test(start_paused = true)]
async fn failure_and_restart_counters_are_published_at_zero_for_a_new_type() {
    let recorder = DebuggingRecorder::new();
    let mut metrics = MetricsProbe::new(recorder.snapshotter());
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let supervisor = Supervisor::new(seed_config());
    supervisor
        .spawn(
            TaskSpec::new("healthy", "container", "healthy"),
            |ctx| async move {
                ctx.cancelled().await;
                Ok(())
            },
        )
        .unwrap();
    let labels = [("type", "container")];
    assert!(metrics.has_counter("task_failures_total", &labels));
    assert!(metrics.has_counter("task_restarts_total", &labels));
    supervisor.shutdown(Duration::from_secs(1)).await;
}
