//! The file sink through the pipeline: record format, rotation, idempotency, failures.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
};

use capture_core::{EventBatch, EventBatchBuilder, LogStream, Position, status::SinkState};
use sink_pipeline::{
    Pipeline,
    config::{FileSinkConfig, PipelineConfig, RetryConfig, SinkConfig},
};

use crate::support::{container, fast_retry, numbered, small_batches, start};

fn file_config(data_dir: &Path) -> FileSinkConfig {
    FileSinkConfig {
        retry: fast_retry(),
        ..FileSinkConfig::default_for(data_dir)
    }
}

fn pipeline(data_dir: &Path, file: FileSinkConfig) -> Pipeline {
    let config = PipelineConfig {
        batch: small_batches(100),
        sinks: vec![SinkConfig::File(file)],
    };
    Pipeline::new(config, data_dir).unwrap()
}

/// Every line of the active file and the rotated ones (gunzipped), oldest file first.
fn all_lines(path: &Path) -> Vec<String> {
    let mut files: Vec<(u32, PathBuf)> = Vec::new();
    let parent = path.parent().unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    for entry in std::fs::read_dir(parent).unwrap() {
        let entry_path = entry.unwrap().path();
        let entry_name = entry_path.file_name().unwrap().to_str().unwrap().to_owned();
        let index = if entry_name == name {
            0
        } else if let Some(rest) = entry_name.strip_prefix(&format!("{name}.")) {
            rest.trim_end_matches(".gz").parse().unwrap()
        } else {
            continue;
        };
        files.push((index, entry_path));
    }
    files.sort_by_key(|file| std::cmp::Reverse(file.0));
    let mut lines = Vec::new();
    for (_, file) in files {
        let mut text = String::new();
        let reader = std::fs::File::open(&file).unwrap();
        if file.extension().is_some_and(|extension| extension == "gz") {
            flate2::read::MultiGzDecoder::new(reader)
                .read_to_string(&mut text)
                .unwrap();
        } else {
            std::io::BufReader::new(reader)
                .read_to_string(&mut text)
                .unwrap();
        }
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

fn timestamps_and_ordinals(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                record["timestamp"].as_str().unwrap().to_owned(),
                record["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn records_are_written_exactly_as_the_contract_says() {
    let data_dir = tempfile::tempdir().unwrap();
    let running = start(pipeline(data_dir.path(), file_config(data_dir.path())));
    let web = container(0x4f);
    let mut builder = EventBatchBuilder::new(Arc::clone(&web));
    builder.push(
        LogStream::Stdout,
        Position::new(1_795_460_400_123_456_789, 0),
        b"GET / 200",
    );
    builder.push(
        LogStream::Stderr,
        Position::new(1_795_460_400_123_456_789, 0),
        "quote \" tab \t é \u{1}".as_bytes(),
    );
    builder.push(
        LogStream::Stderr,
        Position::new(1_795_460_401_000_000_000, 0),
        b"bad \xff utf-8",
    );
    running.batch_tx.send(builder.finish()).await.unwrap();
    running.finish().await;

    let lines = all_lines(&data_dir.path().join("logs/containers.jsonl"));
    assert_eq!(lines.len(), 3);
    let id = "4f".repeat(32);
    assert_eq!(
        lines[0],
        format!(
            r#"{{"timestamp":"2026-11-23T19:00:00.123456789Z","container_id":"{id}","container_name":"web-79","image":"nginx:1.27","stream":"stdout","message":"GET / 200","labels":{{"com.example.team":"web"}}}}"#
        )
    );
    let expected = [
        ("2026-11-23T19:00:00.123456789Z", "stdout", "GET / 200"),
        (
            "2026-11-23T19:00:00.123456789Z",
            "stderr",
            "quote \" tab \t é \u{1}",
        ),
        (
            "2026-11-23T19:00:01.000000000Z",
            "stderr",
            "bad \u{FFFD} utf-8",
        ),
    ];
    for (line, (timestamp, stream, message)) in lines.iter().zip(expected) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = record
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "container_id",
                "container_name",
                "image",
                "labels",
                "message",
                "stream",
                "timestamp"
            ],
            "exactly these fields"
        );
        assert_eq!(record["timestamp"], timestamp);
        assert_eq!(record["container_id"], id.as_str());
        assert_eq!(record["container_name"], "web-79");
        assert_eq!(record["image"], "nginx:1.27");
        assert_eq!(record["stream"], stream);
        assert_eq!(record["message"], message);
        assert_eq!(
            record["labels"],
            serde_json::json!({"com.example.team": "web"})
        );
    }
}

#[tokio::test]
async fn rotation_under_load_loses_nothing() {
    // With `fsync`, each rotation also syncs the directory (and the compressor its renames).
    for (compress, fsync) in [(false, false), (true, false), (true, true)] {
        let data_dir = tempfile::tempdir().unwrap();
        let file = FileSinkConfig {
            max_bytes: 64 * 1024,
            max_files: 1000,
            compress,
            fsync,
            ..file_config(data_dir.path())
        };
        let path = file.path.clone();
        let running = start(pipeline(data_dir.path(), file));
        let web = container(1);
        for first in (0..20_000).step_by(50) {
            running
                .batch_tx
                .send(numbered(&web, first, 50))
                .await
                .unwrap();
        }
        running.finish().await;

        let rotated = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert!(rotated > 20, "only {rotated} files: no rotation happened");
        let lines = all_lines(&path);
        let messages: Vec<String> = timestamps_and_ordinals(&lines)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let expected: Vec<String> = (0..20_000).map(|n| format!("line {n}")).collect();
        assert_eq!(messages, expected, "compress = {compress}, fsync = {fsync}");
        if compress {
            assert!(path.with_extension("jsonl.1.gz").exists());
        }
    }
}

#[tokio::test]
async fn replayed_lines_are_not_written_twice_even_across_restarts_and_rotations() {
    let data_dir = tempfile::tempdir().unwrap();
    let web = container(1);
    let db = container(2);
    // Lines of equal timestamps: ordinals 0, 1, 2 at 1000, then 1001.
    let burst = |ordinals: std::ops::Range<u32>, with_next: bool| {
        let mut builder = EventBatchBuilder::new(Arc::clone(&web));
        for ordinal in ordinals {
            builder.push(
                LogStream::Stdout,
                Position::new(1000, ordinal),
                format!("burst {ordinal}").as_bytes(),
            );
        }
        if with_next {
            builder.push(LogStream::Stdout, Position::new(1001, 0), b"after");
        }
        builder.finish()
    };
    // Tiny files, so the run of equal timestamps spans rotated files.
    let file = FileSinkConfig {
        max_bytes: 300,
        max_files: 100,
        ..file_config(data_dir.path())
    };
    let path = file.path.clone();

    let running = start(pipeline(data_dir.path(), file.clone()));
    running.batch_tx.send(numbered(&web, 0, 10)).await.unwrap();
    running.batch_tx.send(numbered(&db, 0, 3)).await.unwrap();
    for ordinal in 0..3 {
        running
            .batch_tx
            .send(burst(ordinal..ordinal + 1, false))
            .await
            .unwrap();
    }
    running.finish().await;
    assert_eq!(all_lines(&path).len(), 16);

    // The source replays from earlier positions after a restart, and says so.
    let replayed = |mut batch: EventBatch| {
        batch.mark_replay();
        batch
    };
    let running = start(pipeline(data_dir.path(), file.clone()));
    let replays = [numbered(&web, 5, 5), numbered(&db, 1, 4), burst(0..5, true)];
    for batch in replays {
        running.batch_tx.send(replayed(batch)).await.unwrap();
    }
    running.finish().await;

    // And once more within one run.
    let running = start(pipeline(data_dir.path(), file));
    running
        .batch_tx
        .send(replayed(burst(0..5, true)))
        .await
        .unwrap();
    running
        .batch_tx
        .send(replayed(burst(0..5, true)))
        .await
        .unwrap();
    running.finish().await;

    let messages: Vec<String> = timestamps_and_ordinals(&all_lines(&path))
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let mut expected: Vec<String> = (0..10).map(|n| format!("line {n}")).collect();
    expected.extend((0..3).map(|n| format!("line {n}")));
    expected.extend((0..3).map(|n| format!("burst {n}")));
    expected.extend((3..5).map(|n| format!("line {n}")));
    expected.extend((3..5).map(|n| format!("burst {n}")));
    expected.push("after".into());
    assert_eq!(messages, expected);
}

#[tokio::test]
async fn a_file_removed_underneath_is_recreated() {
    let data_dir = tempfile::tempdir().unwrap();
    let file = file_config(data_dir.path());
    let path = file.path.clone();
    let mut running = start(pipeline(data_dir.path(), file));
    let web = container(1);
    running.batch_tx.send(numbered(&web, 0, 3)).await.unwrap();
    assert_eq!(
        running
            .ack_rx
            .recv()
            .await
            .unwrap()
            .position
            .timestamp_nanos,
        2
    );
    std::fs::remove_file(&path).unwrap();
    running.batch_tx.send(numbered(&web, 3, 3)).await.unwrap();
    running.finish().await;
    let messages: Vec<String> = timestamps_and_ordinals(&all_lines(&path))
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(messages, ["line 3", "line 4", "line 5"]);
}

#[tokio::test]
async fn an_impossible_path_is_a_clear_error() {
    let data_dir = tempfile::tempdir().unwrap();
    let blocker = data_dir.path().join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let file = FileSinkConfig {
        path: blocker.join("containers.jsonl"),
        ..file_config(data_dir.path())
    };
    let config = PipelineConfig {
        batch: small_batches(100),
        sinks: vec![SinkConfig::File(file)],
    };
    let error = Pipeline::new(config, data_dir.path()).unwrap_err();
    let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(text.contains("cannot open sink \"file\""), "{text}");
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(inner) = source {
        chain.push_str(&format!("{inner}; "));
        source = inner.source();
    }
    assert!(chain.contains("not-a-directory"), "{chain}");
}

#[tokio::test(start_paused = true)]
async fn a_directory_that_disappears_makes_the_sink_retry_then_recover() {
    let data_dir = tempfile::tempdir().unwrap();
    let logs = data_dir.path().join("logs");
    let file = FileSinkConfig {
        retry: RetryConfig {
            failing_after: std::time::Duration::from_secs(1),
            ..fast_retry()
        },
        ..file_config(data_dir.path())
    };
    let path = file.path.clone();
    let mut running = start(pipeline(data_dir.path(), file));
    let web = container(1);
    running.batch_tx.send(numbered(&web, 0, 3)).await.unwrap();
    running.ack_rx.recv().await.unwrap();

    // The directory becomes a regular file: the file can be neither found nor created.
    std::fs::remove_dir_all(&logs).unwrap();
    std::fs::write(&logs, b"").unwrap();
    running.batch_tx.send(numbered(&web, 3, 3)).await.unwrap();
    let status = running
        .status
        .wait_for(|sinks| sinks[0].state == SinkState::Failing)
        .await
        .unwrap()
        .clone();
    let error = status[0].last_error.clone().unwrap();
    assert!(error.contains("logs/containers.jsonl"), "{error}");

    std::fs::remove_file(&logs).unwrap();
    std::fs::create_dir(&logs).unwrap();
    running
        .status
        .wait_for(|sinks| sinks[0].state == SinkState::Ok && sinks[0].buffered_events == 0)
        .await
        .unwrap();
    running.finish().await;
    let messages: Vec<String> = timestamps_and_ordinals(&all_lines(&path))
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(messages, ["line 3", "line 4", "line 5"]);
}

/// A small tmpfs, unmounted (lazily, as the pipeline may still hold a file open) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `dir` (created), or `None` when not running as root.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !test_support::procfs::running_as_root() {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount failed although running as root");
        Some(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The messages of every record under `path`, oldest first.
fn messages(path: &Path) -> Vec<String> {
    timestamps_and_ordinals(&all_lines(path))
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_full_disk_makes_the_sink_retry_without_losing_lines() {
    let data_dir = tempfile::tempdir().unwrap();
    let mount_point = data_dir.path().join("small");
    // Mounting a tmpfs needs root; the directory test above covers the failure path.
    let Some(_tmpfs) = Tmpfs::mount(&mount_point, "64k") else {
        return;
    };
    let filler = mount_point.join("filler");
    std::fs::write(&filler, vec![0u8; 40 * 1024]).unwrap();

    let file = FileSinkConfig {
        path: mount_point.join("containers.jsonl"),
        ..file_config(data_dir.path())
    };
    let path = file.path.clone();
    let running = start(pipeline(data_dir.path(), file));
    let web = container(1);
    for first in (0..200).step_by(50) {
        running
            .batch_tx
            .send(numbered(&web, first, 50))
            .await
            .unwrap();
    }
    let status = running
        .status
        .clone()
        .wait_for(|sinks| sinks[0].state == SinkState::Retrying)
        .await
        .unwrap()
        .clone();
    let error = status[0].last_error.clone().unwrap();
    assert!(error.contains("No space left on device"), "{error}");

    std::fs::remove_file(&filler).unwrap();
    running
        .status
        .clone()
        .wait_for(|sinks| sinks[0].state == SinkState::Ok && sinks[0].buffered_events == 0)
        .await
        .unwrap();
    running.finish().await;
    let expected: Vec<String> = (0..200).map(|n| format!("line {n}")).collect();
    assert_eq!(messages(&path), expected);
}

/// The data dir itself is full: neither the sink nor its disk buffer can write. The sink keeps
/// retrying and turns `failing` with a clear error, the worker holds a bounded amount in memory
/// and pushes back on the input, and once space returns every accepted line is written once.
#[tokio::test(start_paused = true)]
async fn a_full_data_dir_pushes_back_turns_failing_and_recovers() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    // Large enough for everything the pipeline takes in before it pushes back.
    let Some(_tmpfs) = Tmpfs::mount(&data_dir, "8m") else {
        return;
    };
    let file = FileSinkConfig {
        retry: RetryConfig {
            failing_after: std::time::Duration::from_secs(1),
            ..fast_retry()
        },
        ..FileSinkConfig::default_for(&data_dir)
    };
    let path = file.path.clone();
    let running = start(pipeline(&data_dir, file));
    let web = container(1);
    running.batch_tx.send(numbered(&web, 0, 50)).await.unwrap();
    running
        .status
        .clone()
        .wait_for(|sinks| sinks[0].last_success.is_some())
        .await
        .unwrap();

    // Fill what is left of the tmpfs.
    let filler = data_dir.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        while file.write_all(&[0u8; 4096]).is_ok() {}
    }

    // The pipeline accepts a bounded amount, then the input stops moving.
    let mut sent = 50;
    let mut pushed_back = false;
    while sent < 50 * 1000 {
        let send = running.batch_tx.send(numbered(&web, sent, 50));
        match tokio::time::timeout(std::time::Duration::from_secs(60), send).await {
            Ok(result) => result.unwrap(),
            Err(_) => {
                pushed_back = true;
                break;
            }
        }
        sent += 50;
    }
    assert!(
        pushed_back,
        "the input never pushed back ({sent} lines taken)"
    );
    assert!(sent < 50 * 200, "{sent} lines taken before pushing back");

    let mut status = running.status.clone();
    let failing = status.wait_for(|sinks| sinks[0].state == SinkState::Failing);
    let status = tokio::time::timeout(std::time::Duration::from_secs(600), failing)
        .await
        .expect("the sink never turned failing")
        .unwrap()
        .clone();
    let error = status[0].last_error.clone().unwrap();
    assert!(error.contains("No space left on device"), "{error}");
    assert!(error.contains("disk buffer"), "{error}");

    std::fs::remove_file(&filler).unwrap();
    let mut status = running.status.clone();
    let recovered =
        status.wait_for(|sinks| sinks[0].state == SinkState::Ok && sinks[0].buffered_events == 0);
    tokio::time::timeout(std::time::Duration::from_secs(600), recovered)
        .await
        .expect("no recovery within 10 (virtual) minutes of space returning")
        .unwrap();
    running.finish().await;
    let expected: Vec<String> = (0..sent).map(|n| format!("line {n}")).collect();
    assert_eq!(messages(&path), expected);
}
