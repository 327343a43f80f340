//! Unit tests of the record encoder, the batcher, the buffer codec and the disk buffer.

use std::{collections::BTreeMap, sync::Arc};

use capture_core::{
    ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position,
    format_rfc3339_nanos,
};

use crate::{
    batcher::Batcher,
    buffer::DiskBuffer,
    config::{BatchConfig, BufferConfig, WhenFull},
    record::{RecordEncoder, escape_json_into, parse_record_key},
};

fn container() -> Arc<ContainerInfo> {
    let id = ContainerId::new("ab".repeat(32)).unwrap();
    let mut info = ContainerInfo::new(id, "web-1", "nginx:1.27");
    info.labels = BTreeMap::from([("com.example.team".to_owned(), "web".to_owned())]);
    Arc::new(info)
}

fn batch_of(lines: &[(LogStream, i64, u32, &str)]) -> EventBatch {
    let mut builder = EventBatchBuilder::new(container());
    for (stream, timestamp, ordinal, message) in lines {
        builder.push(
            *stream,
            Position::new(*timestamp, *ordinal),
            message.as_bytes(),
        );
    }
    builder.finish()
}

#[test]
fn record_is_the_contract_byte_for_byte() {
    let batch = batch_of(&[(LogStream::Stdout, 1_795_460_400_123_456_789, 0, "GET / 200")]);
    let mut out = Vec::new();
    let line = batch.line(0).unwrap();
    RecordEncoder::default().json_line(&mut out, batch.container(), &line);
    let expected = format!(
        "{{\"timestamp\":\"2026-11-23T19:00:00.123456789Z\",\"container_id\":\"{}\",\
         \"container_name\":\"web-1\",\"image\":\"nginx:1.27\",\"stream\":\"stdout\",\
         \"message\":\"GET / 200\",\"labels\":{{\"com.example.team\":\"web\"}}}}\n",
        "ab".repeat(32)
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn messages_are_escaped_exactly_like_serde_json() {
    let samples = [
        "plain",
        "quote \" backslash \\ slash /",
        "tab\tnewline\ncarriage\rbell\u{7}nul\u{0}esc\u{1b}\u{8}\u{c}",
        "unicode é 日本 🦀 \u{7f} \u{FFFD}",
        "",
    ];
    for sample in samples {
        let mut out = Vec::new();
        escape_json_into(&mut out, sample);
        let expected = serde_json::to_string(sample).unwrap();
        assert_eq!(
            format!("\"{}\"", String::from_utf8(out).unwrap()),
            expected,
            "{sample:?}"
        );
    }
}

#[test]
fn timestamps_render_like_capture_core_and_parse_back() {
    let mut encoder = RecordEncoder::default();
    let batch = batch_of(&[(LogStream::Stdout, 0, 0, "x")]);
    let mut rng = fastrand::Rng::with_seed(7);
    let samples = [
        0i64,
        1,
        999_999_999,
        951_782_400_000_000_000,
        4_102_444_800_000_000_000,
    ]
    .into_iter()
    .chain((0..2000).map(|_| rng.i64(0..=253_402_300_799_999_999_i64)));
    for timestamp in samples {
        let mut builder = EventBatchBuilder::new(Arc::clone(batch.container()));
        builder.push(LogStream::Stdout, Position::new(timestamp, 0), b"x");
        let one = builder.finish();
        let mut out = Vec::new();
        encoder.json_line(&mut out, one.container(), &one.line(0).unwrap());
        let record: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(record["timestamp"], format_rfc3339_nanos(timestamp));
        let key = parse_record_key(&out).unwrap();
        assert_eq!(key.timestamp_nanos, timestamp);
        assert_eq!(key.stream, LogStream::Stdout);
        assert_eq!(key.container_id, "ab".repeat(32));
    }
}

#[test]
fn record_key_is_found_behind_names_with_escapes() {
    let id = ContainerId::new("cd".repeat(32)).unwrap();
    let info = Arc::new(ContainerInfo::new(
        id,
        "we\"ird\\\",\"image\":\"x",
        "img\"\\",
    ));
    let mut builder = EventBatchBuilder::new(info);
    builder.push(LogStream::Stderr, Position::new(5, 0), b"m");
    let batch = builder.finish();
    let mut out = Vec::new();
    RecordEncoder::default().json_line(&mut out, batch.container(), &batch.line(0).unwrap());
    let key = parse_record_key(&out).unwrap();
    assert_eq!(key.stream, LogStream::Stderr);
    assert_eq!(key.timestamp_nanos, 5);
}

#[test]
fn batcher_fills_by_count_and_by_bytes() {
    let by_count = BatchConfig {
        max_events: 3,
        ..BatchConfig::default()
    };
    let mut batcher = Batcher::new(by_count);
    assert!(!batcher.push(batch_of(&[
        (LogStream::Stdout, 1, 0, "a"),
        (LogStream::Stdout, 2, 0, "b")
    ])));
    assert!(batcher.push(batch_of(&[(LogStream::Stdout, 3, 0, "c")])));
    let (batches, events) = batcher.take().unwrap();
    assert_eq!((batches.len(), events), (2, 3));
    assert!(batcher.take().is_none());
    assert!(batcher.deadline().is_none());

    let by_bytes = BatchConfig {
        max_bytes: 10,
        ..BatchConfig::default()
    };
    let mut batcher = Batcher::new(by_bytes);
    assert!(!batcher.push(batch_of(&[(LogStream::Stdout, 1, 0, "12345")])));
    assert!(!batcher.push(batch_of(&[])), "empty batches are ignored");
    assert!(batcher.push(batch_of(&[(LogStream::Stdout, 2, 0, "67890")])));
}

fn numbered(from: i64, count: i64) -> EventBatch {
    let lines: Vec<(LogStream, i64, u32, String)> = (from..from + count)
        .map(|n| (LogStream::Stdout, n, 0, format!("line {n}")))
        .collect();
    let mut builder = EventBatchBuilder::new(container());
    for (stream, timestamp, ordinal, message) in &lines {
        builder.push(
            *stream,
            Position::new(*timestamp, *ordinal),
            message.as_bytes(),
        );
    }
    builder.finish()
}

fn timestamps(batches: &[EventBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|batch| {
            batch
                .lines()
                .map(|line| line.position.timestamp_nanos)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn buffer_round_trips_batches_and_resumes_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        segment_bytes: 200,
        ..BufferConfig::default()
    };
    let mut buffer = DiskBuffer::open(dir.path(), &config).unwrap();
    let mut mixed = EventBatchBuilder::new(container());
    mixed.push(LogStream::Stderr, Position::new(7, 3), "é\"\n".as_bytes());
    let originals = [numbered(0, 3), mixed.finish(), numbered(10, 2)];
    for batch in &originals {
        buffer
            .append(std::slice::from_ref(batch), batch.len() as u64, false)
            .unwrap();
    }
    buffer.sync().unwrap();
    assert_eq!(buffer.unread_events(), 6);

    let first = buffer.read_next().unwrap();
    assert_eq!(timestamps(&first.batches), [0, 1, 2]);
    assert_eq!(first.batches[0].container(), originals[0].container());
    buffer.consume(&first);
    drop(buffer);

    let mut buffer = DiskBuffer::open(dir.path(), &config).unwrap();
    assert_eq!(buffer.unread_events(), 3);
    let second = buffer.read_next().unwrap();
    let line = second.batches[0].line(0).unwrap();
    assert_eq!(
        (line.stream, line.position, line.message),
        (LogStream::Stderr, Position::new(7, 3), "é\"\n")
    );
    buffer.consume(&second);
    let third = buffer.read_next().unwrap();
    assert_eq!(timestamps(&third.batches), [10, 11]);
    buffer.consume(&third);
    assert!(buffer.is_empty());
    assert!(buffer.read_next().is_none());
    assert_eq!(buffer.take_dropped_events(), 0);
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "seg")
        })
        .count();
    assert_eq!(segments, 0, "read segments are deleted");
}

#[test]
fn the_buffer_codec_keeps_each_streams_replay_flag() {
    let mut replayed = EventBatchBuilder::new(container());
    replayed.push(LogStream::Stdout, Position::new(1, 0), b"again");
    replayed.push(LogStream::Stderr, Position::new(2, 0), b"live");
    replayed.set_replay(LogStream::Stdout, true);
    let batches = [numbered(0, 2), replayed.finish()];
    let mut bytes = Vec::new();
    crate::buffer::codec::encode(&mut bytes, &batches);
    let decoded = crate::buffer::codec::decode(&bytes).unwrap();
    let flags = |batch: &EventBatch| LogStream::ALL.map(|stream| batch.is_replay(stream));
    assert_eq!(flags(&decoded[0]), [false; 3]);
    assert_eq!(flags(&decoded[1]), [true, false, false]);
    assert_eq!(decoded[1].container(), batches[1].container());
}

#[test]
fn buffer_segments_that_fill_are_synced_before_their_appends_count_as_durable() {
    let dir = tempfile::tempdir().unwrap();
    // Every record fills its segment, so each append after the first rolls over.
    let config = BufferConfig {
        segment_bytes: 1,
        ..BufferConfig::default()
    };
    let mut buffer = DiskBuffer::open(dir.path(), &config).unwrap();
    for n in 0..3 {
        buffer.append(&[numbered(n, 2)], 2, false).unwrap();
    }
    // The worker appends a run of deliveries, then syncs once and only then completes them:
    // the two full segments must be part of that sync, not only the one being written.
    let unsynced = buffer.unsynced_segments();
    let first = unsynced[0];
    assert_eq!(unsynced, [first, first + 1, first + 2]);
    buffer.sync().unwrap();
    assert!(buffer.unsynced_segments().is_empty());
    buffer.append(&[numbered(10, 1)], 1, false).unwrap();
    assert_eq!(buffer.unsynced_segments(), [first + 3]);
    buffer.sync().unwrap();
    assert!(buffer.unsynced_segments().is_empty());

    // Reading everything deletes the segments; nothing is left to sync for them.
    buffer.append(&[numbered(20, 1)], 1, false).unwrap();
    while let Some(record) = buffer.read_next() {
        buffer.consume(&record);
    }
    assert!(buffer.is_empty());
    buffer.sync().unwrap();
    assert!(buffer.unsynced_segments().is_empty());

    // `fsync = "never"` keeps no file open for a sync that will not come.
    let never = BufferConfig {
        fsync: crate::config::FsyncPolicy::Never,
        ..config
    };
    let mut buffer = DiskBuffer::open(&dir.path().join("never"), &never).unwrap();
    for n in 0..3 {
        buffer.append(&[numbered(n, 1)], 1, false).unwrap();
    }
    assert_eq!(
        buffer.unsynced_segments().len(),
        1,
        "only the segment being written"
    );
}

#[test]
fn buffer_blocks_or_drops_oldest_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let block = BufferConfig {
        max_bytes: 600,
        segment_bytes: 150,
        ..BufferConfig::default()
    };
    let mut buffer = DiskBuffer::open(&dir.path().join("block"), &block).unwrap();
    let mut appended = 0;
    while buffer.append(&[numbered(appended, 1)], 1, false).is_ok() {
        appended += 1;
    }
    assert!(appended > 1);
    assert_eq!(buffer.unread_events(), appended as u64);
    assert_eq!(buffer.take_dropped_events(), 0);

    let drop_oldest = BufferConfig {
        when_full: WhenFull::DropOldest,
        ..block
    };
    let mut buffer = DiskBuffer::open(&dir.path().join("drop"), &drop_oldest).unwrap();
    for n in 0..100 {
        buffer.append(&[numbered(n, 1)], 1, false).unwrap();
    }
    let dropped = buffer.take_dropped_events();
    assert!(dropped > 0);
    let mut remaining = Vec::new();
    while let Some(record) = buffer.read_next() {
        remaining.extend(timestamps(&record.batches));
        buffer.consume(&record);
    }
    assert_eq!(
        dropped + remaining.len() as u64,
        100,
        "every event is either kept or counted"
    );
    let expected: Vec<i64> = (100 - remaining.len() as i64..100).collect();
    assert_eq!(remaining, expected, "the newest are kept, in order");
}

#[test]
fn sinks_parse_from_the_contract_toml_and_get_unique_names() {
    let text = r#"
        [batch]
        max_age = "250ms"

        [[sinks]]
        type = "file"
        path = "/var/log/log-capturer/containers.jsonl"

        [[sinks]]
        type = "file"
        path = "/tmp/second.jsonl"
        max_files = 3
        buffer = { max_bytes = 1000, when_full = "drop_oldest", fsync = "never" }
        retry = { initial_backoff = "1s", max_backoff = "1m" }

        [[sinks]]
        type = "stdout"
        format = "text"

        [[sinks]]
        type = "loki"
        endpoint = "http://127.0.0.1:3100"
        labels = { job = "log-capturer", container_name = "{container_name}", stream = "{stream}" }
    "#;
    let config: crate::config::PipelineConfig = toml::from_str(text).unwrap();
    assert_eq!(config.batch.max_age, std::time::Duration::from_millis(250));
    assert_eq!(config.batch.max_events, 10_000);
    let names = crate::config::resolve_sink_names(&config.sinks).unwrap();
    assert_eq!(names, ["file", "file-2", "stdout", "loki"]);
    let crate::config::SinkConfig::File(second) = &config.sinks[1] else {
        panic!("not a file sink");
    };
    assert_eq!(second.max_files, 3);
    assert_eq!(second.buffer.when_full, WhenFull::DropOldest);
    assert_eq!(second.retry.max_backoff, std::time::Duration::from_secs(60));

    let unknown = "[[sinks]]\ntype = \"file\"\npath = \"x\"\nmax_size = 1\n";
    assert!(toml::from_str::<crate::config::PipelineConfig>(unknown).is_err());
    let unknown_type = "[[sinks]]\ntype = \"kafka\"\n";
    assert!(toml::from_str::<crate::config::PipelineConfig>(unknown_type).is_err());
}

#[test]
fn file_sink_default_lives_in_the_data_dir() {
    let config = crate::config::FileSinkConfig::default_for(std::path::Path::new("/data"));
    assert_eq!(
        config.path,
        std::path::Path::new("/data/logs/containers.jsonl")
    );
}

/// A batch of stdout lines `(timestamp, message)` of [`container`], live or replayed.
fn stdout_batch(lines: &[(i64, &str)], replay: bool) -> EventBatch {
    let mut builder = EventBatchBuilder::new(container());
    for (timestamp, message) in lines {
        builder.push(
            LogStream::Stdout,
            Position::new(*timestamp, 0),
            message.as_bytes(),
        );
    }
    builder.set_replay(LogStream::Stdout, replay);
    builder.finish()
}

fn file_messages(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["message"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_file_sink_skips_only_replayed_lines_and_writes_live_lines_after_a_clock_step() {
    use crate::sink::Sink;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::FileSinkConfig::default_for(dir.path());
    let mut sink = crate::sinks::file::FileSink::open(&config, "file").unwrap();
    sink.deliver(&[stdout_batch(&[(100, "a"), (200, "b")], false)])
        .await
        .unwrap();
    // The clock stepped back: live lines older than the mark are new lines.
    sink.deliver(&[stdout_batch(
        &[(150, "stepped"), (160, "after step")],
        false,
    )])
    .await
    .unwrap();
    // A reopen replays: what is at or below the last line written (160) is skipped.
    sink.deliver(&[stdout_batch(
        &[(150, "stepped"), (160, "after step"), (170, "new")],
        true,
    )])
    .await
    .unwrap();
    drop(sink);
    // The mark recovered from the file is the last line written (170), not the largest (200).
    let mut sink = crate::sinks::file::FileSink::open(&config, "file").unwrap();
    sink.deliver(&[stdout_batch(&[(170, "new"), (180, "next")], true)])
        .await
        .unwrap();
    assert_eq!(
        file_messages(&config.path),
        ["a", "b", "stepped", "after step", "new", "next"]
    );
}

#[tokio::test]
async fn the_file_sink_writes_a_live_line_equal_to_its_mark_but_not_a_replayed_one() {
    use crate::sink::Sink;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::FileSinkConfig::default_for(dir.path());
    let mut sink = crate::sinks::file::FileSink::open(&config, "file").unwrap();
    sink.deliver(&[stdout_batch(&[(100, "a")], false)])
        .await
        .unwrap();
    sink.deliver(&[stdout_batch(&[(100, "a")], true)])
        .await
        .unwrap();
    sink.deliver(&[stdout_batch(&[(90, "b")], false)])
        .await
        .unwrap();
    assert_eq!(file_messages(&config.path), ["a", "b"]);
}
