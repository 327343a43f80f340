//! Unit tests of a container task's pump against a scripted stream, in paused time: the batch
//! latency after a partial flush, and the drain of a removed container (to its end, cut when
//! nothing progresses, never cut while a slow pipeline takes its batches).

use std::{
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bollard::{API_DEFAULT_VERSION, Docker};
use bytes::Bytes;
use capture_core::{ContainerId, ContainerInfo, EventBatch, LogStream};
use task_supervisor::{Supervisor, SupervisorConfig, TaskSpec};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{ContainerShared, Follower, Mode, StreamEnd, StreamSettings, TaskEnv};
use crate::checkpoint::StreamPositions;
use crate::{frame::Frame, multiline::MultilineRules, removal::DrainBounds, tests::frame};

type Item = Result<Frame, bollard::errors::Error>;

const BATCH_LATENCY: Duration = Duration::from_millis(20);
const PARTIAL_FLUSH: Duration = Duration::from_secs(5);
const DRAIN_IDLE: Duration = Duration::from_secs(5);

fn settings(drain_max: Duration) -> Arc<StreamSettings> {
    Arc::new(StreamSettings {
        inactivity_timeout: Duration::from_secs(60),
        partial_flush_timeout: PARTIAL_FLUSH,
        max_line_bytes: 1024 * 1024,
        batch_max_lines: 100,
        batch_max_bytes: 1024 * 1024,
        batch_max_latency: BATCH_LATENCY,
        request_timeout: Duration::from_secs(10),
        raw_endpoint: None,
        replay_through: 0,
        removed_drain: DrainBounds {
            idle: DRAIN_IDLE,
            max: drain_max,
        },
        multiline: Arc::new(MultilineRules::new(&[], Duration::from_secs(60)).unwrap()),
    })
}

/// A pump of a container task over a scripted stream, run by a real supervisor.
struct Pumped {
    shared: Arc<ContainerShared>,
    items_tx: mpsc::UnboundedSender<Item>,
    batch_rx: mpsc::Receiver<EventBatch>,
    end_rx: oneshot::Receiver<StreamEnd>,
    /// Items the pump took from the stream.
    read: Arc<AtomicUsize>,
    started: Instant,
    _supervisor: Supervisor,
}

fn pump(channel_capacity: usize, drain_max: Duration) -> Pumped {
    let id = ContainerId::new("c".repeat(64)).unwrap();
    let info = Arc::new(ContainerInfo::new(id, "job", "loggen"));
    let shared = Arc::new(ContainerShared::new(info, StreamPositions::default(), None));
    let (batch_tx, batch_rx) = mpsc::channel(channel_capacity);
    let (items_tx, items_rx) = mpsc::unbounded_channel::<Item>();
    let (end_tx, end_rx) = oneshot::channel();
    // Never used: the pump reads the scripted stream. Connecting is lazy; bollard only wants
    // the path to exist.
    let path = std::env::temp_dir();
    let docker =
        Docker::connect_with_unix(&path.to_string_lossy(), 1, API_DEFAULT_VERSION).unwrap();
    let env = TaskEnv {
        shared: shared.clone(),
        docker,
        batch_tx,
        settings: settings(drain_max),
    };
    let read = Arc::new(AtomicUsize::new(0));
    let counted = read.clone();
    let once = Arc::new(Mutex::new(Some((items_rx, end_tx))));
    let supervisor = Supervisor::new(SupervisorConfig::default());
    let spec = TaskSpec::new("container_test", "container", "job");
    supervisor
        .spawn(spec, move |ctx| {
            let env = env.clone();
            let once = once.lock().unwrap().take();
            let counted = counted.clone();
            async move {
                let Some((items_rx, end_tx)) = once else {
                    return Ok(());
                };
                let stream = futures_util::stream::unfold(items_rx, move |mut rx| {
                    let counted = counted.clone();
                    async move {
                        let item = rx.recv().await?;
                        counted.fetch_add(1, Ordering::SeqCst);
                        Some((item, rx))
                    }
                });
                let mut follower = Follower::new(&ctx, env);
                let end = follower
                    .pump(pin!(stream), false, false, Mode::Follow)
                    .await;
                let _ = end_tx.send(end);
                Ok(())
            }
        })
        .unwrap();
    Pumped {
        shared,
        items_tx,
        batch_rx,
        end_rx,
        read,
        started: Instant::now(),
        _supervisor: supervisor,
    }
}

fn stdout(nanos: i64, text: &str, newline: bool) -> Item {
    Ok(Frame {
        stream: Some(LogStream::Stdout),
        bytes: Bytes::from(frame(nanos, text, newline)),
    })
}

impl Pumped {
    fn write_lines(&self, from: i64, count: i64) {
        for n in from..from + count {
            self.items_tx
                .send(stdout(1_000 + n, &format!("line {n}"), true))
                .unwrap();
        }
    }

    /// Receives batches until `lines` lines arrived; their messages.
    async fn receive(&mut self, lines: usize) -> Vec<String> {
        let mut messages = Vec::new();
        while messages.len() < lines {
            let batch = tokio::time::timeout(Duration::from_secs(600), self.batch_rx.recv())
                .await
                .expect("a batch in time")
                .expect("the channel is open");
            messages.extend(batch.lines().map(|line| line.message.to_owned()));
        }
        messages
    }

    /// Ends the stream (EOF).
    fn close(&mut self) {
        self.items_tx = mpsc::unbounded_channel().0;
    }

    /// Lines still waiting in the channel.
    fn channel_lines(&mut self) -> usize {
        let mut lines = 0;
        while let Ok(batch) = self.batch_rx.try_recv() {
            lines += batch.len();
        }
        lines
    }

    async fn end(&mut self) -> (StreamEnd, Duration) {
        let end = tokio::time::timeout(Duration::from_secs(600), &mut self.end_rx)
            .await
            .expect("the pump ends in time")
            .expect("the pump reports its end");
        (end, self.started.elapsed())
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_partial_flush_the_head_goes_out_within_the_batch_latency() {
    let mut pumped = pump(4, Duration::from_secs(60));
    pumped.items_tx.send(stdout(1_000, "head", false)).unwrap();
    let messages = pumped.receive(1).await;
    assert_eq!(messages, ["head"]);
    let elapsed = pumped.started.elapsed();
    assert!(
        elapsed <= PARTIAL_FLUSH + BATCH_LATENCY + Duration::from_millis(10),
        "the flushed head went out after {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_containers_stream_is_read_to_its_end() {
    let mut pumped = pump(4, Duration::from_secs(60));
    pumped.write_lines(0, 50);
    assert_eq!(pumped.receive(50).await.len(), 50);
    pumped.shared.removal.mark();
    // Docker serves the rest from its open file after the removal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pumped.write_lines(50, 50);
    let rest = pumped.receive(50).await;
    assert_eq!(rest.first().map(String::as_str), Some("line 50"));
    pumped.close();
    let (end, _) = pumped.end().await;
    assert!(matches!(end, StreamEnd::Eof { lines: 100 }), "{end:?}");
}

#[tokio::test(start_paused = true)]
async fn a_removed_containers_drain_ends_when_nothing_comes_for_the_timeout() {
    let mut pumped = pump(4, Duration::from_secs(60));
    pumped.write_lines(0, 10);
    pumped.receive(10).await;
    let removed = Instant::now();
    pumped.shared.removal.mark();
    let (end, _) = pumped.end().await;
    assert!(
        matches!(end, StreamEnd::RemovalCut { dropped: 0 }),
        "{end:?}"
    );
    let waited = removed.elapsed();
    assert!(
        waited >= DRAIN_IDLE && waited < DRAIN_IDLE + Duration::from_secs(1),
        "cut after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_pipeline_does_not_cut_a_drain_that_progresses_but_a_stalled_one_does() {
    let mut pumped = pump(1, Duration::from_secs(600));
    pumped.shared.removal.mark();
    let removed = Instant::now();
    pumped.write_lines(0, 1_000);
    // The pipeline takes a batch (100 lines) every 3 s: slower than the drain's no-progress
    // bound would allow for the whole drain, never idle for that long.
    let mut received = 0;
    while received < 600 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        received += pumped.receive(1).await.len();
    }
    assert!(removed.elapsed() > DRAIN_IDLE * 3);
    // Then it stops taking: the drain ends one bound later, counting the lines it had read.
    let stalled = Instant::now();
    let (end, _) = pumped.end().await;
    let StreamEnd::RemovalCut { dropped } = end else {
        panic!("{end:?}");
    };
    assert!(stalled.elapsed() <= DRAIN_IDLE + Duration::from_secs(1));
    let delivered = received + pumped.channel_lines();
    assert!(dropped > 0);
    assert_eq!(
        delivered as u64 + dropped,
        pumped.read.load(Ordering::SeqCst) as u64,
        "every line read is delivered or counted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_containers_drain_ends_at_its_cap_even_while_it_progresses() {
    let cap = Duration::from_secs(12);
    let mut pumped = pump(1, cap);
    pumped.shared.removal.mark();
    let removed = Instant::now();
    pumped.write_lines(0, 2_000);
    let mut received = 0;
    let end = loop {
        tokio::select! {
            end = &mut pumped.end_rx => break end.unwrap(),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                if let Ok(batch) = pumped.batch_rx.try_recv() {
                    received += batch.len();
                }
            }
        }
    };
    let StreamEnd::RemovalCut { dropped } = end else {
        panic!("{end:?}");
    };
    let waited = removed.elapsed();
    assert!(
        waited >= cap && waited < cap + Duration::from_secs(3),
        "cut after {waited:?}"
    );
    received += pumped.channel_lines();
    assert!(dropped > 0);
    assert_eq!(
        received as u64 + dropped,
        pumped.read.load(Ordering::SeqCst) as u64
    );
}
