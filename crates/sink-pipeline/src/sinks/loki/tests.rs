//! Unit tests of the Loki sink: templates, encodings, request splitting, answer classes.

use std::{collections::BTreeMap, sync::Arc};

use capture_core::{
    ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position,
};
use prost::Message as _;
use reqwest::StatusCode;

use super::{
    LokiAuth, LokiSink, LokiSinkConfig,
    encode::{
        Entry, StreamSlice, encode_json, encode_protobuf, group_streams, plan_requests,
        push_json_str, split_in_half,
    },
    http::{PushOutcome, classify},
    labels::{LabelTemplates, Labels, sanitize_label_name},
    proto,
};
use crate::{sink::SinkError, sinks::template::Template};

fn container(name: &str) -> Arc<ContainerInfo> {
    let id = ContainerId::new(format!("{:0>64}", name.len())).unwrap();
    let mut info = ContainerInfo::new(id, name, "nginx:1.27");
    info.labels.insert("com.example.team".into(), "web".into());
    Arc::new(info)
}

fn batch(container: &Arc<ContainerInfo>, lines: &[(LogStream, i64, &str)]) -> EventBatch {
    let mut builder = EventBatchBuilder::new(Arc::clone(container));
    for &(stream, timestamp, message) in lines {
        builder.push(stream, Position::new(timestamp, 0), message.as_bytes());
    }
    builder.finish()
}

fn templates(labels: &[(&str, &str)]) -> LabelTemplates {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    LabelTemplates::new(&labels).unwrap()
}

fn labels(prometheus: &str, json: &str) -> Labels {
    Labels {
        prometheus: prometheus.to_owned(),
        json: json.to_owned(),
    }
}

#[test]
fn templates_mix_text_placeholders_and_escaped_braces() {
    let web = container("web-1");
    let mut out = String::new();
    Template::parse("{{{container_name}}}/{stream}@{image}#{label.com.example.team}{label.none}")
        .unwrap()
        .render_into(&web, LogStream::Stderr, &mut out);
    assert_eq!(out, "{web-1}/stderr@nginx:1.27#web");

    out.clear();
    Template::parse("{container_id}")
        .unwrap()
        .render_into(&web, LogStream::Stdout, &mut out);
    assert_eq!(out, web.id.as_str());

    for bad in ["{nope}", "{container_name", "a } b", "{label.}"] {
        assert!(Template::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn label_names_are_sanitised_to_prometheus_rules() {
    assert_eq!(
        sanitize_label_name("com.example/team-x"),
        "com_example_team_x"
    );
    assert_eq!(sanitize_label_name("9lives"), "_9lives");
    assert_eq!(sanitize_label_name("ok_Name9"), "ok_Name9");
    assert_eq!(sanitize_label_name("café"), "caf_");

    // Two names that sanitise alike would silently overwrite each other: refused.
    let clash: BTreeMap<String, String> = [("a.b", "1"), ("a-b", "2")]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    assert!(LabelTemplates::new(&clash).is_err());
}

#[test]
fn labels_render_sorted_without_empty_values_in_both_forms() {
    let web = container("web-1");
    let rendered = templates(&[
        ("team.name", "{label.com.example.team}"),
        ("missing", "{label.absent}"),
        ("job", "say \"hi\"\\"),
        ("stream", "{stream}"),
    ])
    .render(&web, LogStream::Stdout);
    assert_eq!(
        rendered.prometheus,
        r#"{job="say \"hi\"\\", stream="stdout", team_name="web"}"#
    );
    assert_eq!(
        rendered.json,
        r#"{"job":"say \"hi\"\\","stream":"stdout","team_name":"web"}"#
    );

    // The defaults apply when no label is configured.
    let defaults = LabelTemplates::new(&BTreeMap::new()).unwrap();
    assert_eq!(
        defaults.render(&web, LogStream::Tty).prometheus,
        r#"{container_name="web-1", job="log-capturer", stream="tty"}"#
    );

    // Loki refuses a stream without labels: an all-empty set falls back to a job label.
    let empty = templates(&[("team", "{label.absent}")]).render(&web, LogStream::Stdout);
    assert_eq!(empty.prometheus, r#"{job="log-capturer"}"#);
}

#[test]
fn json_strings_are_escaped_exactly_like_serde_json() {
    for text in [
        "plain",
        "quote \" backslash \\ slash /",
        "tab\tnewline\ncr\r bell\u{7} nul\0 esc\u{1b} bs\u{8} ff\u{c}",
        "unicode é ☃ 😀 \u{7f}",
        "",
    ] {
        let mut out = Vec::new();
        push_json_str(&mut out, text);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(text).unwrap()
        );
    }
}

#[test]
fn json_encoding_of_a_small_batch_is_exact() {
    let web = container("web-1");
    let batches = [batch(
        &web,
        &[
            (
                LogStream::Stdout,
                1_700_000_000_000_000_002,
                "second \"quoted\"",
            ),
            (LogStream::Stderr, 1_700_000_000_000_000_000, "oops"),
            (LogStream::Stdout, 1_700_000_000_000_000_001, "first"),
        ],
    )];
    let templates = templates(&[("app", "{container_name}"), ("stream", "{stream}")]);
    let streams = group_streams(&templates, &batches);
    let slices: Vec<StreamSlice<'_, '_>> = streams
        .iter()
        .map(|stream| StreamSlice {
            labels: &stream.labels,
            entries: &stream.entries,
        })
        .collect();
    let mut out = Vec::new();
    encode_json(&slices, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        concat!(
            r#"{"streams":["#,
            r#"{"stream":{"app":"web-1","stream":"stdout"},"values":["#,
            r#"["1700000000000000001","first"],["1700000000000000002","second \"quoted\""]]},"#,
            r#"{"stream":{"app":"web-1","stream":"stderr"},"values":[["1700000000000000000","oops"]]}"#,
            r#"]}"#
        )
    );
}

#[test]
fn protobuf_encoding_matches_prost_and_round_trips() {
    let web = labels(r#"{app="web", stream="stdout"}"#, "");
    let db = labels(r#"{app="db"}"#, "");
    let web_entries = [
        Entry {
            timestamp_nanos: 1_700_000_000_123_456_789,
            line: "GET / 200",
        },
        // Whole seconds (nanos 0), an empty line and a time before 1970 exercise the
        // fields proto3 leaves out and negative varints.
        Entry {
            timestamp_nanos: 1_700_000_001_000_000_000,
            line: "",
        },
        Entry {
            timestamp_nanos: -1_500_000_000,
            line: &"x".repeat(300),
        },
    ];
    let db_entries = [Entry {
        timestamp_nanos: 0,
        line: "ready ☃",
    }];
    let slices = [
        StreamSlice {
            labels: &web,
            entries: &web_entries,
        },
        StreamSlice {
            labels: &db,
            entries: &db_entries,
        },
    ];
    let mut ours = Vec::new();
    encode_protobuf(&slices, &mut ours);

    let expected = proto::PushRequest {
        streams: slices
            .iter()
            .map(|slice| proto::StreamAdapter {
                labels: slice.labels.prometheus.clone(),
                entries: slice
                    .entries
                    .iter()
                    .map(|entry| proto::EntryAdapter {
                        timestamp: Some(proto::Timestamp {
                            seconds: entry.timestamp_nanos.div_euclid(1_000_000_000),
                            nanos: entry.timestamp_nanos.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: entry.line.to_owned(),
                        structured_metadata: Vec::new(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    assert_eq!(ours, expected.encode_to_vec());
    let decoded = proto::PushRequest::decode(ours.as_slice()).unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(
        decoded.streams[0].entries[2].timestamp,
        Some(proto::Timestamp {
            seconds: -2,
            nanos: 500_000_000
        })
    );

    // Through snappy's block format and back.
    let compressed = snap::raw::Encoder::new().compress_vec(&ours).unwrap();
    let decompressed = snap::raw::Decoder::new()
        .decompress_vec(&compressed)
        .unwrap();
    assert_eq!(
        proto::PushRequest::decode(decompressed.as_slice()).unwrap(),
        expected
    );
}

#[test]
fn lines_are_grouped_by_label_set_and_sorted_within_each_stream() {
    // Two containers share a label set when the templates do not tell them apart.
    let (web, api) = (container("web"), container("apis"));
    let batches = [
        batch(
            &web,
            &[
                (LogStream::Stdout, 30, "w30"),
                (LogStream::Stdout, 10, "w10"),
            ],
        ),
        batch(
            &api,
            &[(LogStream::Stdout, 20, "a20"), (LogStream::Stderr, 5, "a5")],
        ),
    ];
    let templates = templates(&[("job", "x"), ("stream", "{stream}")]);
    let streams = group_streams(&templates, &batches);
    assert_eq!(streams.len(), 2);
    let lines = |index: usize| -> Vec<&str> {
        streams[index]
            .entries
            .iter()
            .map(|entry| entry.line)
            .collect()
    };
    assert_eq!(
        streams[0].labels.prometheus,
        r#"{job="x", stream="stdout"}"#
    );
    assert_eq!(lines(0), ["w10", "a20", "w30"]);
    assert_eq!(
        streams[1].labels.prometheus,
        r#"{job="x", stream="stderr"}"#
    );
    assert_eq!(lines(1), ["a5"]);
}

#[test]
fn deliveries_split_into_requests_by_entries_and_bytes_in_order() {
    let web = container("web");
    let lines: Vec<(LogStream, i64, &str)> = (0..10)
        .map(|index| (LogStream::Stdout, index, "0123456789"))
        .chain((0..3).map(|index| (LogStream::Stderr, index, "0123456789")))
        .collect();
    let batches = [batch(&web, &lines)];
    let templates = templates(&[("stream", "{stream}")]);
    let streams = group_streams(&templates, &batches);

    // By entries: 13 entries, 4 per request.
    let requests = plan_requests(&streams, 4, usize::MAX);
    let sizes: Vec<Vec<(usize, std::ops::Range<usize>)>> = requests
        .iter()
        .map(|parts| {
            parts
                .iter()
                .map(|part| (part.stream, part.entries.clone()))
                .collect()
        })
        .collect();
    assert_eq!(
        sizes,
        vec![
            vec![(0, 0..4)],
            vec![(0, 4..8)],
            vec![(0, 8..10), (1, 0..2)],
            vec![(1, 2..3)],
        ]
    );

    // By bytes: every entry and stream is covered exactly once, each request within the
    // limit, and a stream's entries stay in order across requests.
    let max_bytes = 200;
    let requests = plan_requests(&streams, usize::MAX, max_bytes);
    assert!(requests.len() > 1);
    let mut next = [0usize; 2];
    for parts in &requests {
        let mut estimate = 0;
        for part in parts {
            assert_eq!(part.entries.start, next[part.stream]);
            next[part.stream] = part.entries.end;
            estimate +=
                streams[part.stream].labels.json.len() + 32 + part.entries.len() * (10 + 32);
        }
        assert!(estimate <= max_bytes, "{estimate} > {max_bytes}");
    }
    assert_eq!(next, [10, 3]);

    // A single line larger than the limit still gets a request of its own.
    let huge = "y".repeat(500);
    let batches = [batch(
        &web,
        &[(LogStream::Stdout, 1, &huge), (LogStream::Stdout, 2, "z")],
    )];
    let streams = group_streams(&templates, &batches);
    assert_eq!(plan_requests(&streams, 100, 100).len(), 2);
}

#[test]
fn a_request_splits_in_halves_down_to_single_entries() {
    let a = labels("{a}", "");
    let b = labels("{b}", "");
    let entries: Vec<Entry<'_>> = (0..3)
        .map(|index| Entry {
            timestamp_nanos: index,
            line: "l",
        })
        .collect();
    let slices = [
        StreamSlice {
            labels: &a,
            entries: &entries,
        },
        StreamSlice {
            labels: &b,
            entries: &entries[..1],
        },
    ];
    let (first, second) = split_in_half(&slices).unwrap();
    let count =
        |slices: &[StreamSlice<'_, '_>]| slices.iter().map(|c| c.entries.len()).sum::<usize>();
    assert_eq!((count(&first), count(&second)), (2, 2));
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 2);
    assert_eq!(second[0].entries[0].timestamp_nanos, 2);
    assert!(split_in_half(&slices[1..]).is_none());
}

#[test]
fn answers_are_classified_for_retry_drop_or_operator() {
    let outcome =
        |code: u16, body: &str| classify(StatusCode::from_u16(code).unwrap(), body.into());
    assert!(matches!(outcome(204, ""), Ok(PushOutcome::Accepted)));
    assert!(matches!(
        outcome(400, "entry for stream '{a=\"b\"}' has timestamp too old"),
        Ok(PushOutcome::TimestampRefused(_))
    ));
    assert!(matches!(
        outcome(
            400,
            "entry with timestamp x ignored, reason: 'entry out of order' for stream"
        ),
        Ok(PushOutcome::TimestampRefused(_))
    ));
    assert!(matches!(
        outcome(400, "line too long"),
        Ok(PushOutcome::Invalid(_))
    ));
    assert!(matches!(outcome(413, ""), Ok(PushOutcome::TooLarge(_))));
    for transient in [408, 429, 500, 502, 503] {
        assert!(
            matches!(outcome(transient, ""), Err(SinkError::Transient(_))),
            "{transient}"
        );
    }
    for permanent in [401, 403, 404, 405, 301] {
        assert!(
            matches!(outcome(permanent, ""), Err(SinkError::Permanent(_))),
            "{permanent}"
        );
    }
}

#[test]
fn config_parses_with_defaults_and_prints_secrets_redacted() {
    let config: LokiSinkConfig = toml::from_str(
        "endpoint = \"http://127.0.0.1:3100\"\n\
         [auth]\ntype = \"basic\"\nusername = \"u\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    assert_eq!(config.labels, LokiSinkConfig::default_labels());
    assert_eq!(config.max_request_bytes, 1024 * 1024);
    assert_eq!(config.request_timeout, std::time::Duration::from_secs(10));
    let printed = toml::to_string(&config).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");

    let bearer: LokiSinkConfig = toml::from_str(
        "endpoint = \"https://loki\"\ncompression = \"snappy\"\nout_of_order = \"rewrite_timestamp\"\n\
         auth = { type = \"bearer\", token_env = \"LOKI_TOKEN\" }\n",
    )
    .unwrap();
    assert!(matches!(bearer.auth, Some(LokiAuth::Bearer { .. })));
    assert!(toml::from_str::<LokiSinkConfig>("endpoint = \"x\"\nbogus = 1\n").is_err());
}

#[test]
fn bad_configurations_fail_permanently_when_the_sink_is_built() {
    let build = |edit: fn(&mut LokiSinkConfig)| {
        let mut config = LokiSinkConfig::new("http://127.0.0.1:3100");
        edit(&mut config);
        LokiSink::new(config)
    };
    assert!(build(|_| {}).is_ok());
    let failures: [fn(&mut LokiSinkConfig); 7] = [
        |config| config.endpoint = "ftp://loki".into(),
        |config| config.endpoint = "not a url".into(),
        |config| config.max_entries = 0,
        |config| config.tenant_id = Some("bad\nvalue".into()),
        |config| {
            config.auth = Some(LokiAuth::Bearer {
                token: None,
                token_file: Some("/nonexistent/log-capturer/token".into()),
                token_env: None,
            });
        },
        |config| {
            config.auth = Some(LokiAuth::Basic {
                username: "u".into(),
                password: None,
                password_file: None,
                password_env: Some("LOG_CAPTURER_TEST_UNSET_PASSWORD_VARIABLE".into()),
            });
        },
        |config| {
            config.auth = Some(LokiAuth::Basic {
                username: "u".into(),
                password: Some("p".into()),
                password_file: None,
                password_env: Some("ALSO".into()),
            });
        },
    ];
    for (index, failure) in failures.into_iter().enumerate() {
        assert!(
            matches!(build(failure), Err(SinkError::Permanent(_))),
            "case {index}"
        );
    }
}

#[test]
fn debug_shows_no_secret_of_the_auth_or_the_endpoint() {
    let mut config = LokiSinkConfig::new("https://user:url-secret@loki.example.com");
    config.auth = None;
    let with_url = format!("{config:?}");
    config.endpoint = "https://loki.example.com".into();
    config.auth = Some(LokiAuth::Basic {
        username: "user".into(),
        password: Some("inline-secret".into()),
        password_file: None,
        password_env: None,
    });
    let with_basic = format!("{config:?}");
    config.auth = Some(LokiAuth::Bearer {
        token: Some("token-secret".into()),
        token_file: None,
        token_env: None,
    });
    let with_bearer = format!("{config:?}");
    for shown in [&with_url, &with_basic, &with_bearer] {
        for secret in ["url-secret", "inline-secret", "token-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("loki.example.com"), "{shown}");
    }
    assert!(with_basic.contains("<redacted>"), "{with_basic}");
}
