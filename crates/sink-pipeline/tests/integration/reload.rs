//! Sinks changed while the pipeline runs (`PipelineReloader`): added, removed, replaced,
//! refused; every line delivered once to every sink that had it, acknowledgements never held.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use capture_core::{Acknowledgement, ContainerInfo};
use sink_pipeline::{
    Error, Pipeline, PipelineReloader,
    config::{BufferConfig, FileSinkConfig, LokiSinkConfig, PipelineConfig, SinkConfig},
};
use tokio::sync::mpsc;

use crate::support::{Running, container, fast_retry, numbered, small_batches, start};

/// How long a test waits for something the pipeline does within milliseconds.
const PROMPTLY: Duration = Duration::from_secs(10);

fn file_sink(name: &str, path: PathBuf) -> SinkConfig {
    SinkConfig::File(FileSinkConfig {
        name: Some(name.to_owned()),
        path,
        retry: fast_retry(),
        ..FileSinkConfig::default_for(Path::new("/unused"))
    })
}

fn started(data_dir: &Path, sinks: Vec<SinkConfig>) -> (Running, PipelineReloader) {
    let pipeline = Pipeline::new(
        PipelineConfig {
            batch: small_batches(10),
            sinks,
        },
        data_dir,
    )
    .unwrap();
    let reloader = pipeline.reloader();
    (start(pipeline), reloader)
}

/// Sends lines `first..first + count` of `web` (10 per batch) and waits for their
/// acknowledgement.
async fn send_acknowledged(
    running: &mut Running,
    web: &Arc<ContainerInfo>,
    first: i64,
    count: i64,
) {
    for start in (first..first + count).step_by(10) {
        running
            .batch_tx
            .send(numbered(web, start, 10))
            .await
            .unwrap();
    }
    let last = first + count - 1;
    wait_acknowledged(&mut running.ack_rx, last, PROMPTLY).await;
}

async fn wait_acknowledged(
    ack_rx: &mut mpsc::UnboundedReceiver<Acknowledgement>,
    last: i64,
    within: Duration,
) {
    tokio::time::timeout(within, async {
        while let Some(ack) = ack_rx.recv().await {
            if ack.position.timestamp_nanos >= last {
                return;
            }
        }
        panic!("the pipeline stopped acknowledging");
    })
    .await
    .unwrap_or_else(|_| panic!("line {last} not acknowledged within {within:?}"));
}

/// The timestamps (line numbers) in a file sink's file, in file order.
fn written(path: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let message = record["message"].as_str().unwrap();
            message.trim_start_matches("line ").parse().unwrap()
        })
        .collect()
}

fn range(first: i64, end: i64) -> Vec<i64> {
    (first..end).collect()
}

#[tokio::test]
async fn an_added_sink_takes_every_delivery_from_the_next_one_on() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let (mut running, mut reloader) = started(dir.path(), vec![file_sink("a", a.clone())]);
    let web = container(1);
    send_acknowledged(&mut running, &web, 0, 100).await;

    let changes = reloader
        .reconfigure(vec![file_sink("a", a.clone()), file_sink("b", b.clone())])
        .await
        .unwrap();
    assert_eq!(changes.added, ["b"]);
    assert!(changes.replaced.is_empty() && changes.removed.is_empty());
    assert_eq!(running.status.borrow().len(), 2, "b is listed at once");
    send_acknowledged(&mut running, &web, 100, 100).await;
    running.finish().await;

    assert_eq!(written(&a), range(0, 200));
    assert_eq!(written(&b), range(100, 200));
}

#[tokio::test]
async fn a_removed_sink_gets_nothing_more_and_leaves_the_status_list() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let (mut running, mut reloader) = started(
        dir.path(),
        vec![file_sink("a", a.clone()), file_sink("b", b.clone())],
    );
    let web = container(1);
    send_acknowledged(&mut running, &web, 0, 100).await;

    let changes = reloader
        .reconfigure(vec![file_sink("a", a.clone())])
        .await
        .unwrap();
    assert_eq!(changes.removed, ["b"]);
    send_acknowledged(&mut running, &web, 100, 100).await;
    let mut status = running.status.clone();
    tokio::time::timeout(PROMPTLY, status.wait_for(|sinks| sinks.len() == 1))
        .await
        .expect("the removed sink leaves the status list")
        .unwrap();
    assert_eq!(status.borrow()[0].name, "a");
    running.finish().await;

    assert_eq!(written(&a), range(0, 200));
    assert_eq!(written(&b), range(0, 100));
}

#[tokio::test]
async fn a_changed_sink_is_swapped_without_losing_or_doubling_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (
        dir.path().join("first.jsonl"),
        dir.path().join("second.jsonl"),
    );
    let (mut running, mut reloader) = started(dir.path(), vec![file_sink("main", first.clone())]);
    let web = container(1);
    // Lines keep coming while the sink is changed twice: once in place (same file, new
    // rotation size: built by the worker after the old one is closed), once to a new file.
    let batch_tx = running.batch_tx.clone();
    let feeder = tokio::spawn({
        let web = Arc::clone(&web);
        async move {
            for start in (0..3000).step_by(10) {
                batch_tx.send(numbered(&web, start, 10)).await.unwrap();
                if start % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut resized = file_sink("main", first.clone());
    if let SinkConfig::File(file) = &mut resized {
        file.max_bytes = 1 << 40;
    }
    let changes = reloader.reconfigure(vec![resized]).await.unwrap();
    assert_eq!(changes.replaced, ["main"]);
    let moved = file_sink("main", second.clone());
    let changes = reloader.reconfigure(vec![moved]).await.unwrap();
    assert_eq!(changes.replaced, ["main"]);
    feeder.await.unwrap();
    wait_acknowledged(&mut running.ack_rx, 2999, PROMPTLY).await;
    running.finish().await;

    let mut lines = written(&first);
    let before_move = lines.len();
    lines.extend(written(&second));
    assert_eq!(lines, range(0, 3000), "each line once, in order");
    assert!(
        before_move > 0,
        "the first file was written before the move"
    );
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let (mut running, mut reloader) = started(
        dir.path(),
        vec![file_sink("a", a.clone()), file_sink("b", b.clone())],
    );
    let web = container(1);
    send_acknowledged(&mut running, &web, 0, 50).await;

    let same_file = vec![file_sink("a", a.clone()), file_sink("c", a.clone())];
    let bad_name = vec![file_sink("a/b", a.clone())];
    let moved_path = vec![file_sink("a", a.clone()), file_sink("c", b.clone())];
    let bad_loki = vec![
        file_sink("a", a.clone()),
        SinkConfig::Loki(LokiSinkConfig {
            max_entries: 0,
            ..LokiSinkConfig::new("http://127.0.0.1:9")
        }),
    ];
    for (what, sinks) in [
        ("two sinks on one file", same_file),
        ("a bad name", bad_name),
        ("a file moved between sinks", moved_path),
    ] {
        let error = reloader.reconfigure(sinks).await.unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{what}: {error}");
    }
    let error = reloader.reconfigure(bad_loki).await.unwrap_err();
    assert!(matches!(error, Error::SinkOpen { .. }), "{error}");
    let error = reloader.reconfigure(Vec::new()).await.unwrap_err();
    assert!(matches!(error, Error::NoSinks), "{error}");

    send_acknowledged(&mut running, &web, 50, 50).await;
    assert_eq!(running.status.borrow().len(), 2);
    running.finish().await;
    assert_eq!(written(&a), range(0, 100));
    assert_eq!(written(&b), range(0, 100));
}

#[tokio::test]
async fn a_removed_sink_stuck_in_a_delivery_holds_acknowledgements_only_for_its_grace() {
    // A "Loki" that accepts connections and never answers: the delivery hangs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let stuck = SinkConfig::Loki(LokiSinkConfig {
        name: Some("stuck".into()),
        request_timeout: Duration::from_secs(600),
        buffer: BufferConfig::default(),
        ..LokiSinkConfig::new(endpoint)
    });
    let (mut running, mut reloader) = started(dir.path(), vec![file_sink("a", a.clone()), stuck]);
    let web = container(1);
    running.batch_tx.send(numbered(&web, 0, 10)).await.unwrap();
    // Give the stuck sink its delivery; it is not acknowledged while the sink holds it.
    let held = tokio::time::timeout(Duration::from_millis(500), running.ack_rx.recv()).await;
    assert!(held.is_err(), "acknowledged while a sink still holds it");

    let started_at = tokio::time::Instant::now();
    let changes = reloader
        .reconfigure(vec![file_sink("a", a.clone())])
        .await
        .unwrap();
    assert_eq!(changes.removed, ["stuck"]);
    running.batch_tx.send(numbered(&web, 10, 10)).await.unwrap();
    // The removed sink is hard-stopped at its grace (10 s): its delivery goes to its disk
    // buffer and the acknowledgements flow again.
    wait_acknowledged(&mut running.ack_rx, 19, Duration::from_secs(20)).await;
    let waited = started_at.elapsed();
    assert!(
        waited >= Duration::from_secs(9),
        "a delivery the stuck sink held was acknowledged after {waited:?}"
    );
    running.finish().await;
    silent.abort();
    assert_eq!(written(&a), range(0, 20));
    // What the stuck sink held was persisted for its return.
    let buffered: u64 = std::fs::read_dir(dir.path().join("buffer/stuck"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!(
        buffered > 0,
        "the stuck sink's delivery is in its disk buffer"
    );
}
