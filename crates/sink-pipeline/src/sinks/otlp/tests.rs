//! Unit tests of the OTLP sink: request planning, image names, and secrets kept out of
//! `Debug` and the printed configuration.

use std::{collections::BTreeMap, sync::Arc};

use capture_core::{ContainerId, ContainerInfo, EventBatchBuilder, LogStream, Position};

use super::{
    OtlpSinkConfig,
    encode::{Piece, plan_requests, split_image, split_in_half},
};

fn piece(batch: usize, lines: std::ops::Range<usize>) -> Piece {
    Piece { batch, lines }
}

#[test]
fn requests_hold_at_most_max_records_across_batches() {
    let info = Arc::new(ContainerInfo::new(
        ContainerId::new("ab".repeat(32)).unwrap(),
        "web",
        "nginx",
    ));
    let batch = |count: i64| {
        let mut builder = EventBatchBuilder::new(Arc::clone(&info));
        for timestamp in 0..count {
            builder.push(LogStream::Stdout, Position::new(timestamp, 0), b"x");
        }
        builder.finish()
    };
    let batches = [batch(3), batch(0), batch(4)];
    assert_eq!(
        plan_requests(&batches, 3),
        [
            vec![piece(0, 0..3)],
            vec![piece(2, 0..3)],
            vec![piece(2, 3..4)]
        ]
    );
    assert_eq!(
        plan_requests(&batches, 5),
        [vec![piece(0, 0..3), piece(2, 0..2)], vec![piece(2, 2..4)]]
    );
    assert!(plan_requests(&batches[1..2], 5).is_empty());
}

#[test]
fn halves_split_by_record_count() {
    let pieces = [piece(0, 0..3), piece(1, 5..6)];
    assert_eq!(
        split_in_half(&pieces),
        Some((vec![piece(0, 0..2)], vec![piece(0, 2..3), piece(1, 5..6)]))
    );
    assert_eq!(split_in_half(&[piece(0, 4..5)]), None);
}

#[test]
fn images_split_into_name_and_tag() {
    assert_eq!(split_image("nginx:1.27"), ("nginx", Some("1.27")));
    assert_eq!(split_image("nginx"), ("nginx", None));
    assert_eq!(
        split_image("registry:5000/app/web"),
        ("registry:5000/app/web", None)
    );
    assert_eq!(
        split_image("registry:5000/web:2@sha256:00ff"),
        ("registry:5000/web", Some("2"))
    );
    assert_eq!(split_image("sha256:00ff"), ("sha256:00ff", None));
}

#[test]
fn header_values_and_endpoint_credentials_are_never_shown() {
    let mut config = OtlpSinkConfig::new("https://user:url-secret@otel.example.com:4318");
    config.headers.0 = BTreeMap::from([("Authorization".into(), "Bearer header-secret".into())]);
    let debug = format!("{config:?}");
    let printed = toml::to_string(&config).unwrap();
    for shown in [&debug, &printed] {
        assert!(!shown.contains("url-secret"), "{shown}");
        assert!(!shown.contains("header-secret"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(shown.contains("otel.example.com:4318"), "{shown}");
    }
    let userinfo = config.endpoint.userinfo().unwrap();
    assert_eq!(userinfo.password.as_deref(), Some("url-secret"));
}
