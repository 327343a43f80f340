//! The checkpoint file: round trips, corrupt and old versions, removals.

use super::*;

fn id(n: u8) -> ContainerId {
    ContainerId::new(format!("{n:02x}").repeat(32)).unwrap()
}

#[test]
fn cursors_round_trip_through_the_file_and_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = Checkpoints::load(dir.path());
    assert!(checkpoints.get(&id(1)).is_none());
    let ack = |stream, nanos, ordinal| Acknowledgement {
        container_id: id(1),
        stream,
        position: Position::new(nanos, ordinal),
    };
    checkpoints.acknowledge(&ack(LogStream::Stdout, 10, 1));
    checkpoints.acknowledge(&ack(LogStream::Stdout, 10, 0));
    checkpoints.acknowledge(&ack(LogStream::Stderr, 7, 0));
    assert!(checkpoints.is_dirty());
    let (path, bytes) = checkpoints.snapshot();
    write_atomically(&path, &bytes).unwrap();
    assert!(!checkpoints.is_dirty());

    let loaded = Checkpoints::load(dir.path());
    assert_eq!(
        loaded.get(&id(1)),
        Some([Some(Position::new(10, 1)), Some(Position::new(7, 0)), None].into())
    );
}

#[test]
fn file_hints_round_trip_and_leave_the_format_unchanged_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = Checkpoints::load(dir.path());
    checkpoints.acknowledge(&Acknowledgement {
        container_id: id(3),
        stream: LogStream::Stdout,
        position: Position::new(10, 0),
    });
    let (path, bytes) = checkpoints.snapshot();
    assert!(!String::from_utf8_lossy(&bytes).contains("\"files\""));
    let hint = FileHint {
        file: crate::files::tail::FileId { dev: 7, ino: 8 },
        offset: 120,
        entry_start: 60,
        entry_timestamp: 10,
        last: [Some(Position::new(10, 0)), None, None].into(),
    };
    checkpoints.set_file_hint(&id(3), hint);
    assert!(checkpoints.is_dirty());
    let (_, bytes) = checkpoints.snapshot();
    write_atomically(&path, &bytes).unwrap();
    let mut loaded = Checkpoints::load(dir.path());
    assert_eq!(loaded.file_hint(&id(3)), Some(hint));
    loaded.remove(&id(3));
    assert_eq!(loaded.file_hint(&id(3)), None);
}

/// A checkpoint file cut short inside its first object.
const NOT_JSON: &[u8] = b"{not json";

#[test]
fn a_corrupt_file_is_set_aside_and_the_source_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(CHECKPOINT_FILE), NOT_JSON).unwrap();
    let checkpoints = Checkpoints::load(dir.path());
    assert_eq!(checkpoints.containers().count(), 0);
    assert!(dir.path().join("checkpoints.json.corrupt").exists());
    assert!(!dir.path().join(CHECKPOINT_FILE).exists());
}

#[test]
fn removed_containers_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = Checkpoints::load(dir.path());
    checkpoints.acknowledge(&Acknowledgement {
        container_id: id(2),
        stream: LogStream::Tty,
        position: Position::new(1, 0),
    });
    checkpoints.remove(&id(2));
    assert!(checkpoints.get(&id(2)).is_none());
}

#[test]
fn a_missing_file_is_a_first_start_and_a_written_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = Checkpoints::load(dir.path());
    assert!(checkpoints.is_first_start());
    assert_eq!(checkpoints.previous_boundary_nanos(), None);
    checkpoints.see_daemon(1_000);
    checkpoints.mark_dirty();
    let (path, bytes) = checkpoints.snapshot();
    write_atomically(&path, &bytes).unwrap();
    // Even with no container at all, the next start is not a first start.
    let loaded = Checkpoints::load(dir.path());
    assert!(!loaded.is_first_start());
    assert_eq!(loaded.previous_boundary_nanos(), Some(1_000));
}

#[test]
fn version_2_keeps_entries_without_cursors_read_through_and_drained_marks() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = Checkpoints::load(dir.path());
    // Monitored from its first line: an entry with no cursor.
    checkpoints.monitor(&id(1), ContainerCheckpoint::default());
    let floor = Position::new(500, u32::MAX);
    checkpoints.monitor(
        &id(2),
        ContainerCheckpoint {
            streams: [Some(floor); 3].into(),
            read_through_nanos: Some(500),
            drained_finished_at_nanos: None,
        },
    );
    // A second `monitor` does not replace what is there.
    checkpoints.monitor(&id(2), ContainerCheckpoint::default());
    checkpoints.advance_read_through(&id(2), 900);
    checkpoints.advance_read_through(&id(2), 800);
    checkpoints.set_drained(&id(2), Some(1_234));
    checkpoints.see_daemon(2_000);
    let (path, bytes) = checkpoints.snapshot();
    write_atomically(&path, &bytes).unwrap();

    let loaded = Checkpoints::load(dir.path());
    assert_eq!(loaded.entry(&id(1)), Some(ContainerCheckpoint::default()));
    assert_eq!(
        loaded.entry(&id(2)),
        Some(ContainerCheckpoint {
            streams: [Some(floor); 3].into(),
            read_through_nanos: Some(900),
            drained_finished_at_nanos: Some(1_234),
        })
    );
    assert_eq!(loaded.previous_boundary_nanos(), Some(2_000));
}

#[test]
fn a_version_1_file_keeps_its_cursors_and_its_last_write_is_the_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let version_1 = format!(
        r#"{{"version": 1, "containers": {{"{}": {{"stdout": {{"timestamp_nanos": 10, "ordinal": 2}}, "stderr": {{"timestamp_nanos": 7, "ordinal": 0}}}}}}}}"#,
        id(3).as_str()
    );
    let path = dir.path().join(CHECKPOINT_FILE);
    fs::write(&path, version_1).unwrap();
    let written = modified_nanos(&path).unwrap();
    let mut loaded = Checkpoints::load(dir.path());
    assert!(!loaded.is_first_start());
    assert_eq!(loaded.previous_boundary_nanos(), Some(written));
    assert_eq!(
        loaded.get(&id(3)),
        Some([Some(Position::new(10, 2)), Some(Position::new(7, 0)), None].into())
    );
    // It is rewritten as version 2 at the first save.
    assert!(loaded.is_dirty());
    let (path, bytes) = loaded.snapshot();
    write_atomically(&path, &bytes).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""version": 2"#), "{text}");
    assert_eq!(
        Checkpoints::load(dir.path()).get(&id(3)),
        Some([Some(Position::new(10, 2)), Some(Position::new(7, 0)), None].into())
    );
}

#[test]
fn a_version_1_file_with_file_hints_keeps_them_in_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let version_1 = format!(
        r#"{{"version": 1, "containers": {{"{id}": {{"stdout": {{"timestamp_nanos": 10, "ordinal": 0}}}}}}, "files": {{"{id}": {{"dev": 7, "ino": 8, "offset": 120, "entry_start": 60, "entry_timestamp": 10, "last": [{{"timestamp_nanos": 10, "ordinal": 0}}, null, null]}}}}}}"#,
        id = id(4).as_str()
    );
    fs::write(dir.path().join(CHECKPOINT_FILE), version_1).unwrap();
    let hint = FileHint {
        file: crate::files::tail::FileId { dev: 7, ino: 8 },
        offset: 120,
        entry_start: 60,
        entry_timestamp: 10,
        last: [Some(Position::new(10, 0)), None, None].into(),
    };
    let mut loaded = Checkpoints::load(dir.path());
    assert!(!loaded.is_first_start());
    assert_eq!(loaded.file_hint(&id(4)), Some(hint));
    assert_eq!(
        loaded.get(&id(4)),
        Some([Some(Position::new(10, 0)), None, None].into())
    );
    let (path, bytes) = loaded.snapshot();
    write_atomically(&path, &bytes).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(r#""version": 2"#), "{text}");
    assert_eq!(Checkpoints::load(dir.path()).file_hint(&id(4)), Some(hint));
}

#[test]
fn an_unknown_version_is_set_aside_as_a_first_start() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(CHECKPOINT_FILE),
        br#"{"version": 99, "containers": {}}"#,
    )
    .unwrap();
    let checkpoints = Checkpoints::load(dir.path());
    assert!(checkpoints.is_first_start());
    assert!(dir.path().join("checkpoints.json.corrupt").exists());
}

#[tokio::test(start_paused = true)]
async fn the_boundary_is_rewritten_at_a_bounded_pace_while_no_cursor_moves() {
    let dir = tempfile::tempdir().unwrap();
    let mut checkpoints = Checkpoints::load(dir.path());
    let mut writes = 0;
    let mut now_nanos = 0;
    // A minute of an idle agent that sees the daemon on every one-second tick.
    for _ in 0..60 {
        tokio::time::advance(Duration::from_secs(1)).await;
        now_nanos += 1_000_000_000;
        checkpoints.see_daemon(now_nanos);
        if checkpoints.is_dirty() {
            let (path, bytes) = checkpoints.snapshot();
            write_atomically(&path, &bytes).unwrap();
            writes += 1;
            assert_eq!(
                Checkpoints::load(dir.path()).previous_boundary_nanos(),
                Some(now_nanos),
                "the written boundary is the time of the write"
            );
        }
    }
    let every = BOUNDARY_REFRESH.as_secs();
    assert_eq!(writes, 60 / every, "one write every {every} s");
    // The boundary never moves back.
    checkpoints.see_daemon(5);
    let (_, bytes) = checkpoints.snapshot();
    let file: FileV2 = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(file.daemon_seen_at_nanos, Some(now_nanos));
}
