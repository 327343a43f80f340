//! OTLP/HTTP log requests decoded with the published message definitions
//! (`opentelemetry-proto`), never with the sink's own code.

use std::{collections::BTreeMap, io::Read as _};

use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use prost::Message as _;

use super::Reply;

/// Decodes a request body by its framing headers, as an OpenTelemetry Collector does.
pub(super) fn decode(headers: &BTreeMap<String, String>, body: &[u8]) -> ExportLogsServiceRequest {
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf"),
        "OTLP/HTTP protobuf"
    );
    let raw = match headers.get("content-encoding").map(String::as_str) {
        Some("gzip") => {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut raw)
                .expect("a gzip body");
            raw
        }
        None => body.to_vec(),
        Some(other) => panic!("unexpected content-encoding {other}"),
    };
    ExportLogsServiceRequest::decode(raw.as_slice()).expect("an ExportLogsServiceRequest")
}

/// 200 with an empty `ExportLogsServiceResponse`: everything accepted.
pub(super) fn success() -> Reply {
    response(ExportLogsServiceResponse::default())
}

/// 200 with a partial success: `rejected` records refused for `message`.
pub fn partial_success(rejected: i64, message: &str) -> Reply {
    response(ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: message.to_owned(),
        }),
    })
}

fn response(message: ExportLogsServiceResponse) -> Reply {
    Reply::Full {
        status: 200,
        headers: Vec::new(),
        content_type: "application/x-protobuf".to_owned(),
        body: message.encode_to_vec(),
    }
}

/// The value of attribute `key` among `attributes`.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
}

/// A string `AnyValue`'s text.
pub fn string_value(value: &AnyValue) -> Option<&str> {
    match &value.value {
        Some(Value::StringValue(text)) => Some(text),
        _ => None,
    }
}
