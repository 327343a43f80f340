//! The disk buffer: spill while a sink is down, replay in order, survive restarts and
//! corruption, drop the oldest when told to.

use std::{path::Path, sync::atomic::Ordering};

use capture_core::status::SinkState;
use sink_pipeline::config::{BufferConfig, WhenFull};

use crate::support::{
    Line, ScriptedSink, container, empty_pipeline, numbered, options, receive_lines, small_batches,
    start,
};

fn expected_lines(count: i64) -> Vec<i64> {
    (0..count).collect()
}

fn timestamps(lines: &[Line]) -> Vec<i64> {
    lines.iter().map(|line| line.2.timestamp_nanos).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_spills_gets_acks_then_replays_in_order_exactly_once() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (sink, mut delivered_rx) = ScriptedSink::new(usize::MAX);
    let failures = sink.failures.clone();
    pipeline
        .add_sink(options("test", BufferConfig::default()), sink)
        .unwrap();
    let mut running = start(pipeline);

    let web = container(1);
    for first in (0..100).step_by(5) {
        running
            .batch_tx
            .send(numbered(&web, first, 5))
            .await
            .unwrap();
    }
    // Every delivery is acknowledged although the sink has accepted none: they are on disk.
    let mut last = None;
    while last != Some(99) {
        last = Some(
            running
                .ack_rx
                .recv()
                .await
                .unwrap()
                .position
                .timestamp_nanos,
        );
    }
    let status = running
        .status
        .wait_for(|sinks| sinks[0].buffered_events == 100)
        .await
        .unwrap()
        .clone();
    assert_eq!(status[0].state, SinkState::Retrying);
    assert!(
        status[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("scripted failure")
    );
    assert!(delivered_rx.try_recv().is_err());

    failures.store(0, Ordering::SeqCst);
    let lines = receive_lines(&mut delivered_rx, 100).await;
    assert_eq!(timestamps(&lines), expected_lines(100));
    running
        .status
        .wait_for(|sinks| sinks[0].buffered_events == 0 && sinks[0].state == SinkState::Ok)
        .await
        .unwrap();
    running.finish().await;
    assert!(
        delivered_rx.recv().await.is_none(),
        "nothing is delivered twice"
    );
}

/// Runs a pipeline whose sink always fails until `count` lines are acknowledged, then stops it.
async fn buffer_while_down(data_dir: &Path, buffer: BufferConfig, count: i64) {
    let mut pipeline = empty_pipeline(data_dir, small_batches(5));
    let (sink, _delivered_rx) = ScriptedSink::new(usize::MAX);
    pipeline.add_sink(options("test", buffer), sink).unwrap();
    let mut running = start(pipeline);
    let web = container(1);
    for first in (0..count).step_by(5) {
        running
            .batch_tx
            .send(numbered(&web, first, 5))
            .await
            .unwrap();
    }
    let mut last = None;
    while last != Some(count - 1) {
        last = Some(
            running
                .ack_rx
                .recv()
                .await
                .unwrap()
                .position
                .timestamp_nanos,
        );
    }
    running.finish().await;
}

#[tokio::test(start_paused = true)]
async fn buffered_events_survive_a_restart_and_are_delivered_once() {
    let data_dir = tempfile::tempdir().unwrap();
    buffer_while_down(data_dir.path(), BufferConfig::default(), 50).await;

    // A new pipeline on the same data directory delivers the buffer, in order.
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (sink, mut delivered_rx) = ScriptedSink::new(0);
    pipeline
        .add_sink(options("test", BufferConfig::default()), sink)
        .unwrap();
    assert_eq!(pipeline.status().borrow()[0].buffered_events, 50);
    let mut running = start(pipeline);
    let lines = receive_lines(&mut delivered_rx, 50).await;
    assert_eq!(timestamps(&lines), expected_lines(50));
    running
        .status
        .wait_for(|sinks| sinks[0].buffered_events == 0)
        .await
        .unwrap();
    running.finish().await;

    // And a third one has nothing left to deliver.
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (sink, mut delivered_rx) = ScriptedSink::new(0);
    pipeline
        .add_sink(options("test", BufferConfig::default()), sink)
        .unwrap();
    assert_eq!(pipeline.status().borrow()[0].buffered_events, 0);
    start(pipeline).finish().await;
    assert!(delivered_rx.recv().await.is_none());
}

fn last_segment(data_dir: &Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("buffer/test"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("no segment file")
}

#[tokio::test(start_paused = true)]
async fn a_corrupted_segment_tail_is_skipped_and_counted() {
    for corruption in ["flip the last byte", "cut the last record short"] {
        let data_dir = tempfile::tempdir().unwrap();
        buffer_while_down(data_dir.path(), BufferConfig::default(), 50).await;
        let segment = last_segment(data_dir.path());
        let mut bytes = std::fs::read(&segment).unwrap();
        match corruption {
            "flip the last byte" => *bytes.last_mut().unwrap() ^= 0x55,
            _ => bytes.truncate(bytes.len() - 3),
        }
        std::fs::write(&segment, bytes).unwrap();

        let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
        let (sink, mut delivered_rx) = ScriptedSink::new(0);
        pipeline
            .add_sink(options("test", BufferConfig::default()), sink)
            .unwrap();
        let mut running = start(pipeline);
        let lines = receive_lines(&mut delivered_rx, 45).await;
        assert_eq!(timestamps(&lines), expected_lines(45), "{corruption}");
        let status = running
            .status
            .wait_for(|sinks| sinks[0].buffered_events == 0)
            .await
            .unwrap()
            .clone();
        assert_eq!(
            status[0].dropped_events, 5,
            "{corruption}: the lost record is counted"
        );
        running.finish().await;
        assert!(delivered_rx.recv().await.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_counts_every_dropped_event() {
    let data_dir = tempfile::tempdir().unwrap();
    let buffer = BufferConfig {
        max_bytes: 4000,
        segment_bytes: 1000,
        when_full: WhenFull::DropOldest,
        ..BufferConfig::default()
    };
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (sink, mut delivered_rx) = ScriptedSink::new(usize::MAX);
    let failures = sink.failures.clone();
    pipeline.add_sink(options("test", buffer), sink).unwrap();
    let mut running = start(pipeline);
    let web = container(1);
    for first in (0..500).step_by(5) {
        running
            .batch_tx
            .send(numbered(&web, first, 5))
            .await
            .unwrap();
    }
    let mut last = None;
    while last != Some(499) {
        last = Some(
            running
                .ack_rx
                .recv()
                .await
                .unwrap()
                .position
                .timestamp_nanos,
        );
    }
    failures.store(0, Ordering::SeqCst);
    let status = running
        .status
        .wait_for(|sinks| sinks[0].buffered_events == 0 && sinks[0].state == SinkState::Ok)
        .await
        .unwrap()
        .clone();
    running.finish().await;
    let mut lines = Vec::new();
    while let Some(batches) = delivered_rx.recv().await {
        lines.extend(crate::support::flatten(&batches));
    }
    let dropped = status[0].dropped_events;
    assert!(dropped > 0);
    assert_eq!(
        lines.len() as u64 + dropped,
        500,
        "every event is delivered or counted"
    );
    let delivered = timestamps(&lines);
    assert!(
        delivered.windows(2).all(|pair| pair[0] < pair[1]),
        "in order, no duplicate"
    );
    assert_eq!(delivered.last(), Some(&499), "the newest are kept");
}

#[tokio::test(start_paused = true)]
async fn a_hard_stop_persists_what_memory_holds_and_acks_only_that() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (mut sink, _delivered_rx) = ScriptedSink::new(0);
    // A healthy sink stuck in its first delivery: the worker holds everything in memory.
    sink.gate = Some(std::sync::Arc::new(tokio::sync::Semaphore::new(0)));
    pipeline
        .add_sink(options("test", BufferConfig::default()), sink)
        .unwrap();
    let mut running = start(pipeline);
    let web = container(1);
    for first in (0..100).step_by(5) {
        running
            .batch_tx
            .send(numbered(&web, first, 5))
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        running.ack_rx.try_recv().is_err(),
        "nothing is acknowledged before the stop"
    );

    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
    let mut acked = -1;
    while let Ok(ack) = running.ack_rx.try_recv() {
        assert!(ack.position.timestamp_nanos > acked, "in order");
        acked = ack.position.timestamp_nanos;
    }
    assert!(
        acked >= 4,
        "the deliveries held in memory were persisted and acknowledged"
    );

    // Exactly what was acknowledged is delivered by the next run.
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (sink, mut delivered_rx) = ScriptedSink::new(0);
    pipeline
        .add_sink(options("test", BufferConfig::default()), sink)
        .unwrap();
    start(pipeline).finish().await;
    let mut lines = Vec::new();
    while let Some(batches) = delivered_rx.recv().await {
        lines.extend(crate::support::flatten(&batches));
    }
    assert_eq!(timestamps(&lines), expected_lines(acked + 1));
}
