//! Unit tests of the shared types.

use std::{sync::Arc, time::SystemTime};

use crate::{
    ContainerId, ContainerInfo, EventBatchBuilder, LogStream, Position, format_rfc3339_nanos,
    status::{TaskSnapshot, TaskState, UnreadableContainer, UnreadableReason},
};

fn info() -> Arc<ContainerInfo> {
    let id = ContainerId::new("ab".repeat(32)).unwrap();
    Arc::new(ContainerInfo::new(id, "/web-1", "nginx:1.27"))
}

#[test]
fn container_id_is_validated_and_lower_cased() {
    assert!(ContainerId::new("abc").is_err());
    assert!(ContainerId::new("zz".repeat(32)).is_err());
    let id = ContainerId::new("AB".repeat(32)).unwrap();
    assert_eq!(id.as_str(), "ab".repeat(32));
    assert_eq!(id.short(), "abababababab");
    assert_eq!(id.task_id(), format!("container_{}", "ab".repeat(32)));
}

#[test]
fn container_name_loses_dockers_leading_slash() {
    assert_eq!(info().name, "web-1");
}

#[test]
fn positions_order_by_timestamp_then_ordinal() {
    let first = Position::new(10, 0);
    let same_time = first.next_for(10);
    let later = same_time.next_for(11);
    assert_eq!(same_time, Position::new(10, 1));
    assert_eq!(later, Position::new(11, 0));
    assert!(first < same_time && same_time < later);
}

#[test]
fn batch_keeps_lines_in_order_and_acknowledges_last_of_each_stream() {
    let mut builder = EventBatchBuilder::new(info());
    builder.push(LogStream::Stdout, Position::new(1, 0), b"a");
    builder.push(LogStream::Stderr, Position::new(2, 0), b"");
    builder.push(LogStream::Stdout, Position::new(3, 0), b"ccc");
    let batch = builder.finish();

    let lines: Vec<_> = batch.lines().map(|l| (l.stream, l.message)).collect();
    assert_eq!(
        lines,
        [
            (LogStream::Stdout, "a"),
            (LogStream::Stderr, ""),
            (LogStream::Stdout, "ccc")
        ]
    );
    assert_eq!(batch.line(2).unwrap().message, "ccc");
    assert!(batch.line(3).is_none());
    assert_eq!(batch.message_bytes(), 4);

    let acks: Vec<_> = batch
        .acknowledgements()
        .map(|a| (a.stream, a.position))
        .collect();
    assert_eq!(
        acks,
        [
            (LogStream::Stdout, Position::new(3, 0)),
            (LogStream::Stderr, Position::new(2, 0))
        ]
    );
}

#[test]
fn replay_is_marked_per_stream_and_defaults_to_live() {
    let mut builder = EventBatchBuilder::new(info());
    builder.push(LogStream::Stdout, Position::new(1, 0), b"a");
    assert!(!builder.is_replay(LogStream::Stdout));
    builder.set_replay(LogStream::Stdout, true);
    builder.set_replay(LogStream::Tty, true);
    builder.set_replay(LogStream::Tty, false);
    let batch = builder.finish();
    assert!(batch.is_replay(LogStream::Stdout));
    assert!(!batch.is_replay(LogStream::Stderr));
    assert!(!batch.is_replay(LogStream::Tty));
}

#[test]
fn invalid_utf8_is_replaced_and_counted() {
    let mut builder = EventBatchBuilder::new(info());
    assert!(!builder.push(LogStream::Stdout, Position::new(1, 0), b"\xff\xfeok"));
    assert!(builder.push(LogStream::Stdout, Position::new(2, 0), b"fine"));
    let batch = builder.finish();
    assert_eq!(batch.invalid_utf8_lines(), 1);
    assert_eq!(batch.line(0).unwrap().message, "\u{FFFD}\u{FFFD}ok");
}

#[test]
fn timestamps_format_with_nine_fraction_digits() {
    assert_eq!(
        format_rfc3339_nanos(1_795_460_400_123_456_789),
        "2026-11-23T19:00:00.123456789Z"
    );
    assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
}

#[test]
fn task_snapshot_serialises_to_the_contract_shape() {
    let snapshot = TaskSnapshot {
        id: "container_x".into(),
        kind: "container".into(),
        name: "web-1".into(),
        state: TaskState::Running,
        started_at: SystemTime::UNIX_EPOCH,
        last_heartbeat: SystemTime::UNIX_EPOCH,
        restarts: 0,
        last_error: None,
        mode: None,
    };
    let json = serde_json::to_value(&snapshot).unwrap();
    assert_eq!(json["type"], "container");
    assert_eq!(json["state"], "running");
    assert_eq!(json["started_at"], "1970-01-01T00:00:00Z");
    assert!(json["last_error"].is_null());
    assert!(json.get("mode").is_none(), "no mode, no key");
    let with_mode = TaskSnapshot {
        mode: Some("files".into()),
        ..snapshot
    };
    assert_eq!(serde_json::to_value(&with_mode).unwrap()["mode"], "files");
}

#[test]
fn unreadable_container_serialises_to_the_contract_shape() {
    for reason in UnreadableReason::ALL {
        let entry = UnreadableContainer {
            id: "ab".repeat(32),
            name: "quiet".into(),
            driver: "none".into(),
            reason,
        };
        let json = serde_json::to_value(&entry).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{json}");
        for key in ["id", "name", "driver", "reason"] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        // The label value of the metric and the JSON value are one name.
        assert_eq!(json["reason"], reason.as_str());
    }
}

mod error_chain {
    use crate::ErrorChain;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(String, #[source] Option<Box<Layer>>);

    fn chain(messages: &[&str]) -> Layer {
        messages
            .iter()
            .rev()
            .fold(None, |inner, message| {
                Some(Layer(message.to_string(), inner.map(Box::new)))
            })
            .unwrap()
    }

    #[test]
    fn every_cause_is_shown_once_in_order() {
        let error = chain(&[
            "request failed",
            "connect",
            "Permission denied (os error 13)",
        ]);
        assert_eq!(
            ErrorChain(&error).to_string(),
            "request failed: connect: Permission denied (os error 13)"
        );
    }

    #[test]
    fn a_cause_already_in_its_error_message_is_not_repeated() {
        let error = chain(&[
            "client: client error (Connect)",
            "client error (Connect)",
            "refused",
        ]);
        assert_eq!(
            ErrorChain(&error).to_string(),
            "client: client error (Connect): refused"
        );
    }
}

#[test]
fn userinfo_is_split_from_every_kind_of_url() {
    use crate::url::{split_userinfo, strip_userinfo};

    let cases = [
        ("https://u:p@h:1/a?b#c", "https://h:1/a?b#c"),
        ("http://u@h", "http://h"),
        ("tcp://a:b@c@10.0.0.1:2376", "tcp://10.0.0.1:2376"),
        ("https://h/path@not-userinfo", "https://h/path@not-userinfo"),
        ("https://h?q=a@b", "https://h?q=a@b"),
        ("unix:///var/run/docker.sock", "unix:///var/run/docker.sock"),
        ("", ""),
    ];
    for (url, stripped) in cases {
        assert_eq!(strip_userinfo(url), stripped, "{url}");
    }
    let (_, userinfo) = split_userinfo("https://a:b@c@host");
    let userinfo = userinfo.unwrap();
    assert_eq!(userinfo.username, "a");
    assert_eq!(userinfo.password.as_deref(), Some("b@c"));
    let (_, userinfo) = split_userinfo("https://%3Atoken@host");
    assert_eq!(userinfo.unwrap().username, ":token");
    assert!(split_userinfo("https://host").1.is_none());
}
