//! Silence on a connection: a quiet container's stream is checked, not reopened; an events
//! connection that goes silent without failing does not hide new containers, nor the stop of a
//! container read from files (the periodic listing finds both), and TCP connections to the
//! daemon carry keepalive.

use std::{sync::atomic::Ordering, time::Duration};

use docker_source::{DockerConfig, ReadMode};

use capture_core::status::TaskState;

use crate::{
    harness::{self, Harness, Sink, config, config_files, loggen, unique},
    proxy::FreezingProxy,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_is_checked_and_kept_open_not_reopened() {
    quiet_container(ReadMode::Api).await;
}

/// A file follower waits on its files: no idle check, no reopen, the lines after the silence
/// still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_container_read_from_files_is_neither_checked_nor_reopened() {
    quiet_container(ReadMode::Files).await;
}

async fn quiet_container(mode: ReadMode) {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("quiet");
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig {
        inactivity_timeout: Duration::from_millis(300),
        read_mode: mode,
        ..config(&label)
    };
    let harness = Harness::start(config, dir.path(), Sink::default());
    // Ten lines, four seconds of silence, ten more lines on the same stream.
    let quiet = loggen(
        &label,
        &[],
        &[
            "--tag",
            "quiet",
            "--lines",
            "20",
            "--burst",
            "10",
            "--burst-pause-ms",
            "4000",
            "--hold-secs",
            "-1",
        ],
    );
    let sink = harness.sink.clone();
    sink.collected
        .lock()
        .unwrap()
        .checker
        .expect(quiet.id(), "quiet", 20);
    sink.wait_until("the first ten lines", |c| c.count(quiet.id()) >= 10)
        .await;
    let expected_mode = if mode == ReadMode::Files {
        "files"
    } else {
        "api"
    };
    assert_eq!(
        harness.task_mode(quiet.id()).as_deref(),
        Some(expected_mode)
    );
    let checks = || {
        harness::counter(
            "log_capturer_stream_idle_checks_total",
            Some(("result", "current")),
        )
    };
    let before = checks();
    sink.wait_until("the ten lines after the silence", |c| {
        c.count(quiet.id()) >= 20
    })
    .await;
    let during_silence = checks() - before;
    if mode == ReadMode::Api {
        assert!(
            during_silence >= 3,
            "a silent stream is checked every inactivity_timeout ({during_silence} checks)"
        );
    } else {
        assert_eq!(
            harness::counter("log_capturer_stream_idle_checks_total", None),
            0,
            "a file follower asks the daemon for no line"
        );
    }
    assert_eq!(
        harness::counter(
            "log_capturer_stream_reconnects_total",
            Some(("reason", "inactivity"))
        ),
        0,
        "no reopen of a healthy silent stream"
    );
    harness.stop().await;
    sink.with(|c| c.report().assert_perfect());
}

/// The `timer_active` field of the TCP socket bound to local port `port` in `/proc/net/tcp`:
/// 2 is the keepalive timer.
fn tcp_timer_of_local_port(port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/self/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port)
            .then(|| u8::from_str_radix(fields.get(5)?.split(':').next()?, 16).ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_events_connection_does_not_hide_new_containers() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let proxy = FreezingProxy::start().await;
    let label = unique("silent-events");
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig {
        host: Some(format!("tcp://{}", proxy.address)),
        relist_interval: Duration::from_secs(1),
        ..config(&label)
    };
    let harness = Harness::start(config, dir.path(), Sink::default());
    let sink = harness.sink.clone();
    let seen = loggen(
        &label,
        &[],
        &["--tag", "seen", "--lines", "5", "--hold-secs", "-1"],
    );
    sink.wait_until("a container announced by the events stream", |c| {
        c.count(seen.id()) == 5
    })
    .await;
    let events_port = *proxy
        .events_ports
        .lock()
        .unwrap()
        .last()
        .expect("the source's events connection went through the proxy");
    assert_eq!(
        tcp_timer_of_local_port(events_port),
        Some(2),
        "the events connection has a keepalive timer"
    );

    proxy.frozen.store(true, Ordering::SeqCst);
    let unannounced = loggen(
        &label,
        &[],
        &["--tag", "unannounced", "--lines", "5", "--hold-secs", "-1"],
    );
    sink.wait_until("a container the events stream did not announce", |c| {
        c.count(unannounced.id()) == 5
    })
    .await;
    assert!(
        proxy.withheld.load(Ordering::SeqCst) > 0,
        "the events stream was silent: its start event was withheld"
    );
    proxy.frozen.store(false, Ordering::SeqCst);
    harness.stop().await;
    sink.with(|c| c.report().assert_perfect());
}

/// A file task learns of its container's stop only from the source (it does not inspect the
/// container on its own): with the `die` event withheld, the periodic listing tells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_the_events_stream_did_not_report_completes_a_file_task() {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let proxy = FreezingProxy::start().await;
    let label = unique("silent-stop");
    let dir = tempfile::tempdir().unwrap();
    let config = DockerConfig {
        host: Some(format!("tcp://{}", proxy.address)),
        relist_interval: Duration::from_secs(1),
        // Longer than the test waits: only the listing can end the task in time.
        inactivity_timeout: Duration::from_secs(80),
        ..config_files(&label)
    };
    let harness = Harness::start(config, dir.path(), Sink::default());
    let sink = harness.sink.clone();
    let container = loggen(
        &label,
        &[],
        &["--tag", "stops", "--lines", "5", "--hold-secs", "-1"],
    );
    sink.wait_until("the container's lines", |c| c.count(container.id()) == 5)
        .await;
    assert_eq!(harness.task_mode(container.id()).as_deref(), Some("files"));

    proxy.frozen.store(true, Ordering::SeqCst);
    container.stop();
    harness
        .wait_task(
            container.id(),
            "completed after the listing saw it stopped",
            |state| state == Some(TaskState::Completed),
        )
        .await;
    assert!(
        proxy.withheld.load(Ordering::SeqCst) > 0,
        "the events stream was silent: the stop's events were withheld"
    );
    proxy.frozen.store(false, Ordering::SeqCst);
    harness.stop().await;
    sink.with(|c| c.report().assert_perfect());
}
