//! Loki pushes decoded as Loki does, independently of the sink's encoder: gunzip + JSON, or
//! snappy + protobuf messages declared here with prost.

use std::{collections::BTreeMap, io::Read as _};

use prost::Message as _;

/// One decoded stream of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub labels: BTreeMap<String, String>,
    /// (nanoseconds since the epoch, line), in the order sent.
    pub entries: Vec<(i64, String)>,
}

/// Decodes a push body by its framing headers, as Loki does.
pub(super) fn decode(headers: &BTreeMap<String, String>, body: &[u8]) -> Vec<Stream> {
    let content_type = headers.get("content-type").map(String::as_str);
    let encoding = headers.get("content-encoding").map(String::as_str);
    match (content_type, encoding) {
        (Some("application/json"), Some("gzip")) => {
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut json)
                .expect("a gzip body");
            decode_json(&json)
        }
        (Some("application/x-protobuf"), None) => {
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .expect("a snappy block-format body");
            let request = proto::PushRequest::decode(raw.as_slice()).expect("a PushRequest");
            request
                .streams
                .into_iter()
                .map(|stream| Stream {
                    labels: parse_prometheus_labels(&stream.labels),
                    entries: stream
                        .entries
                        .into_iter()
                        .map(|entry| {
                            let timestamp = entry.timestamp.expect("every entry has a timestamp");
                            (
                                timestamp.seconds * 1_000_000_000 + i64::from(timestamp.nanos),
                                entry.line,
                            )
                        })
                        .collect(),
                })
                .collect()
        }
        other => panic!("unexpected framing {other:?}"),
    }
}

fn decode_json(json: &[u8]) -> Vec<Stream> {
    let value: serde_json::Value = serde_json::from_slice(json).expect("a JSON body");
    value["streams"]
        .as_array()
        .expect("a streams array")
        .iter()
        .map(|stream| Stream {
            labels: stream["stream"]
                .as_object()
                .expect("a stream object")
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
                .collect(),
            entries: stream["values"]
                .as_array()
                .expect("a values array")
                .iter()
                .map(|pair| {
                    let timestamp = pair[0].as_str().expect("a timestamp string");
                    (
                        timestamp.parse().expect("decimal nanoseconds"),
                        pair[1].as_str().expect("a line string").to_owned(),
                    )
                })
                .collect(),
        })
        .collect()
}

/// Parses `{a="b", c="d\"e"}`.
fn parse_prometheus_labels(text: &str) -> BTreeMap<String, String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .expect("labels in braces");
    let mut labels = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted value in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape in {text}"),
                },
                c => value.push(c),
            }
        }
        labels.insert(name, value);
    }
}

/// Loki's `logproto` messages, declared independently of the sink's encoder.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub(super) streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub(super) labels: String,
        #[prost(message, repeated, tag = "2")]
        pub(super) entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub(super) hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub(super) timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub(super) line: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Timestamp {
        #[prost(int64, tag = "1")]
        pub(super) seconds: i64,
        #[prost(int32, tag = "2")]
        pub(super) nanos: i32,
    }
}
