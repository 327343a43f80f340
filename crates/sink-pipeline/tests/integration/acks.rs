//! Acknowledgements, batching and backpressure.

use std::{sync::Arc, time::Duration};

use capture_core::{LogStream, Position};
use sink_pipeline::config::{BatchConfig, BufferConfig};
use tokio::{sync::Semaphore, time::Instant};

use crate::support::{
    ScriptedSink, container, drain_acks, empty_pipeline, numbered, options, receive_lines,
    small_batches, start,
};

#[tokio::test(start_paused = true)]
async fn the_source_only_sees_acks_for_delivered_events_in_order() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(5));
    let (mut fast, mut fast_rx) = ScriptedSink::new(0);
    fast.gate = None;
    let (mut slow, mut slow_rx) = ScriptedSink::new(0);
    let gate = Arc::new(Semaphore::new(0));
    slow.gate = Some(Arc::clone(&gate));
    pipeline
        .add_sink(options("fast", BufferConfig::default()), fast)
        .unwrap();
    pipeline
        .add_sink(options("slow", BufferConfig::default()), slow)
        .unwrap();
    let mut running = start(pipeline);

    let (web, db) = (container(1), container(2));
    running.batch_tx.send(numbered(&web, 0, 5)).await.unwrap();
    running.batch_tx.send(numbered(&db, 100, 5)).await.unwrap();
    running.batch_tx.send(numbered(&web, 5, 5)).await.unwrap();

    // The fast sink has everything, the slow one nothing: no acknowledgement yet.
    assert_eq!(receive_lines(&mut fast_rx, 15).await.len(), 15);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(drain_acks(&mut running.ack_rx).is_empty());

    // The slow sink accepts the first delivery: exactly its acknowledgement follows.
    gate.add_permits(1);
    let first = running.ack_rx.recv().await.unwrap();
    assert_eq!(
        (first.container_id.clone(), first.position),
        (web.id.clone(), Position::new(4, 0))
    );
    assert_eq!(receive_lines(&mut slow_rx, 5).await.len(), 5);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(drain_acks(&mut running.ack_rx).is_empty());

    gate.add_permits(2);
    let second = running.ack_rx.recv().await.unwrap();
    let third = running.ack_rx.recv().await.unwrap();
    assert_eq!(
        (second.container_id, second.position),
        (db.id.clone(), Position::new(104, 0))
    );
    assert_eq!(
        (third.container_id, third.stream, third.position),
        (web.id.clone(), LogStream::Stdout, Position::new(9, 0))
    );
    let mut ack_rx = running.finish().await;
    assert!(
        ack_rx.recv().await.is_none(),
        "nothing else is acknowledged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_single_event_is_flushed_at_max_age_not_before() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut pipeline = empty_pipeline(data_dir.path(), BatchConfig::default());
    let (sink, mut delivered_rx) = ScriptedSink::new(0);
    pipeline
        .add_sink(options("sink", BufferConfig::default()), sink)
        .unwrap();
    let running = start(pipeline);

    let sent_at = Instant::now();
    running
        .batch_tx
        .send(numbered(&container(1), 0, 1))
        .await
        .unwrap();
    let max_age = BatchConfig::default().max_age;
    tokio::time::sleep(max_age - Duration::from_millis(1)).await;
    assert!(delivered_rx.try_recv().is_err(), "flushed before max_age");
    let batches = delivered_rx.recv().await.unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(sent_at.elapsed(), max_age);
    running.finish().await;
}

#[tokio::test(start_paused = true)]
async fn deliveries_are_cut_by_count_and_by_bytes() {
    let data_dir = tempfile::tempdir().unwrap();
    let config = BatchConfig {
        max_events: 10,
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
    };
    let mut pipeline = empty_pipeline(data_dir.path(), config);
    let (sink, mut delivered_rx) = ScriptedSink::new(0);
    pipeline
        .add_sink(options("sink", BufferConfig::default()), sink)
        .unwrap();
    let running = start(pipeline);
    for first in (0..25).step_by(5) {
        running
            .batch_tx
            .send(numbered(&container(1), first, 5))
            .await
            .unwrap();
    }
    let sizes: Vec<usize> = vec![
        delivered_rx
            .recv()
            .await
            .unwrap()
            .iter()
            .map(|b| b.len())
            .sum(),
        delivered_rx
            .recv()
            .await
            .unwrap()
            .iter()
            .map(|b| b.len())
            .sum(),
    ];
    assert_eq!(sizes, [10, 10]);
    // The last 5 lines wait for the age limit, or the end of the input.
    drop(running.batch_tx);
    assert_eq!(delivered_rx.recv().await.unwrap()[0].len(), 5);
    running.task.await.unwrap().unwrap();

    // By bytes: each message is "line N" (6 bytes); the limit of 20 is reached by the fourth.
    let data_dir = tempfile::tempdir().unwrap();
    let config = BatchConfig {
        max_events: 1000,
        max_bytes: 20,
        max_age: Duration::from_secs(3600),
    };
    let mut pipeline = empty_pipeline(data_dir.path(), config);
    let (sink, mut delivered_rx) = ScriptedSink::new(0);
    pipeline
        .add_sink(options("sink", BufferConfig::default()), sink)
        .unwrap();
    let running = start(pipeline);
    for timestamp in 0..4 {
        running
            .batch_tx
            .send(numbered(&container(1), timestamp, 1))
            .await
            .unwrap();
    }
    let lines: usize = delivered_rx
        .recv()
        .await
        .unwrap()
        .iter()
        .map(|b| b.len())
        .sum();
    assert_eq!(lines, 4);
    running.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_stuck_sink_pushes_back_on_the_input_and_loses_nothing() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut pipeline = empty_pipeline(data_dir.path(), small_batches(1));
    let (mut sink, mut delivered_rx) = ScriptedSink::new(0);
    let gate = Arc::new(Semaphore::new(0));
    sink.gate = Some(Arc::clone(&gate));
    pipeline
        .add_sink(options("sink", BufferConfig::default()), sink)
        .unwrap();
    let running = start(pipeline);

    let web = container(1);
    let mut sent = 0i64;
    let mut refused = false;
    for _ in 0..10_000 {
        match running.batch_tx.try_send(numbered(&web, sent, 1)) {
            Ok(()) => sent += 1,
            Err(_) => {
                refused = true;
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the input channel never filled");
    assert!(sent < 200, "{sent} batches accepted by a stuck pipeline");

    gate.add_permits(100_000);
    for timestamp in sent..sent + 50 {
        running
            .batch_tx
            .send(numbered(&web, timestamp, 1))
            .await
            .unwrap();
    }
    let lines = receive_lines(&mut delivered_rx, (sent + 50) as usize).await;
    let timestamps: Vec<i64> = lines.iter().map(|line| line.2.timestamp_nanos).collect();
    assert_eq!(timestamps, (0..sent + 50).collect::<Vec<_>>());
    running.finish().await;
}
