//! Deliveries as OTLP `ExportLogsServiceRequest`s, built with the published message
//! definitions (`opentelemetry-proto`): requests of at most `max_records` records, one
//! `ResourceLogs` per container in each, one `ScopeLogs` named `log-capturer`.

use std::ops::Range;

use capture_core::{ContainerInfo, EventBatch, LogLine, LogStream};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

use super::config::{OtlpSinkConfig, SeverityByStream};
use crate::sinks::template::Template;

/// The instrumentation scope of every record.
pub(crate) const SCOPE_NAME: &str = "log-capturer";
/// The semantic-convention attribute naming a record's stream.
pub(crate) const STREAM_ATTRIBUTE: &str = "log.iostream";

/// A run of one batch's lines in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) batch: usize,
    pub(crate) lines: Range<usize>,
}

/// How a container's resource and its records are described, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct RecordFormat {
    attributes: Vec<(String, Template)>,
    container_labels: Vec<String>,
    severity: SeverityByStream,
}

impl RecordFormat {
    pub(crate) fn new(config: &OtlpSinkConfig) -> Result<RecordFormat, String> {
        let mut attributes = Vec::with_capacity(config.resource_attributes.len());
        for (key, text) in &config.resource_attributes {
            let template = Template::parse(text)
                .map_err(|error| format!("resource_attributes.{key}: {error}"))?;
            if template.uses_stream() {
                return Err(format!(
                    "resource_attributes.{key}: {{stream}} is a record attribute ({STREAM_ATTRIBUTE}), \
                     not a resource's"
                ));
            }
            attributes.push((key.clone(), template));
        }
        Ok(RecordFormat {
            attributes,
            container_labels: config.container_labels.clone(),
            severity: config.severity,
        })
    }

    /// The resource of `container`: the semantic-convention attributes, then the configured
    /// ones.
    fn resource(&self, container: &ContainerInfo) -> Resource {
        let (image_name, image_tag) = split_image(&container.image);
        let mut attributes = vec![
            string("container.id", container.id.as_str()),
            string("container.name", &container.name),
            string("container.image.name", image_name),
        ];
        if let Some(tag) = image_tag {
            attributes.push(KeyValue {
                key: "container.image.tags".to_owned(),
                value: Some(AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue {
                        values: vec![string_value(tag)],
                    })),
                }),
                ..KeyValue::default()
            });
        }
        for key in &self.container_labels {
            if let Some(value) = container.labels.get(key) {
                attributes.push(string(&format!("container.label.{key}"), value));
            }
        }
        for (key, template) in &self.attributes {
            let mut value = String::new();
            template.render_into(container, LogStream::Stdout, &mut value);
            if !value.is_empty() {
                attributes.push(KeyValue {
                    key: key.clone(),
                    value: Some(string_value(&value)),
                    ..KeyValue::default()
                });
            }
        }
        Resource {
            attributes,
            ..Resource::default()
        }
    }

    fn record(&self, line: &LogLine<'_>) -> LogRecord {
        let severity = match line.stream {
            LogStream::Stdout => self.severity.stdout,
            LogStream::Stderr => self.severity.stderr,
            LogStream::Tty => self.severity.tty,
        };
        let (severity_number, severity_text) = severity
            .map(|severity| severity.number_and_text())
            .map_or((0, String::new()), |(number, text)| {
                (number, text.to_owned())
            });
        LogRecord {
            // Docker's own timestamp; a time before 1970 cannot be expressed and is left unset.
            time_unix_nano: u64::try_from(line.position.timestamp_nanos).unwrap_or(0),
            severity_number,
            severity_text,
            body: Some(string_value(line.message)),
            attributes: vec![string(STREAM_ATTRIBUTE, line.stream.as_str())],
            ..LogRecord::default()
        }
    }
}

/// Splits the delivery into requests of at most `max_records` records, in input order.
pub(crate) fn plan_requests(batches: &[EventBatch], max_records: usize) -> Vec<Vec<Piece>> {
    let mut requests = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut room = max_records;
    for (batch, lines) in batches.iter().enumerate() {
        let mut start = 0;
        while start < lines.len() {
            let end = lines.len().min(start + room);
            current.push(Piece {
                batch,
                lines: start..end,
            });
            room -= end - start;
            start = end;
            if room == 0 {
                requests.push(std::mem::take(&mut current));
                room = max_records;
            }
        }
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

/// Splits a request's pieces into two halves by record count; `None` for a single record.
pub(crate) fn split_in_half(pieces: &[Piece]) -> Option<(Vec<Piece>, Vec<Piece>)> {
    let total: usize = pieces.iter().map(|piece| piece.lines.len()).sum();
    if total < 2 {
        return None;
    }
    let mut first_room = total / 2;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for piece in pieces {
        let take = piece.lines.len().min(first_room);
        first_room -= take;
        let middle = piece.lines.start + take;
        if take > 0 {
            first.push(Piece {
                batch: piece.batch,
                lines: piece.lines.start..middle,
            });
        }
        if middle < piece.lines.end {
            second.push(Piece {
                batch: piece.batch,
                lines: middle..piece.lines.end,
            });
        }
    }
    Some((first, second))
}

/// The request for `pieces`: one `ResourceLogs` per container (by id and name, in order of
/// first appearance), its records in input order.
pub(crate) fn build_request(
    format: &RecordFormat,
    batches: &[EventBatch],
    pieces: &[Piece],
) -> ExportLogsServiceRequest {
    let mut resource_logs: Vec<(&ContainerInfo, ResourceLogs)> = Vec::new();
    for piece in pieces {
        let batch = &batches[piece.batch];
        let container = batch.container().as_ref();
        let index = match resource_logs
            .iter()
            .position(|(seen, _)| seen.id == container.id && seen.name == container.name)
        {
            Some(index) => index,
            None => {
                resource_logs.push((container, new_resource_logs(format, container)));
                resource_logs.len() - 1
            }
        };
        let records = &mut resource_logs[index].1.scope_logs[0].log_records;
        records.extend(
            piece
                .lines
                .clone()
                .filter_map(|index| batch.line(index))
                .map(|line| format.record(&line)),
        );
    }
    ExportLogsServiceRequest {
        resource_logs: resource_logs.into_iter().map(|(_, logs)| logs).collect(),
    }
}

fn new_resource_logs(format: &RecordFormat, container: &ContainerInfo) -> ResourceLogs {
    ResourceLogs {
        resource: Some(format.resource(container)),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: SCOPE_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..InstrumentationScope::default()
            }),
            ..ScopeLogs::default()
        }],
        ..ResourceLogs::default()
    }
}

/// `nginx:1.27` → (`nginx`, `1.27`); `registry:5000/app@sha256:…` → (`registry:5000/app`,
/// none): the semantic conventions' `container.image.name` and `container.image.tags`. An image given by id (`sha256:…`) is a name without tag.
pub(crate) fn split_image(image: &str) -> (&str, Option<&str>) {
    if image.starts_with("sha256:") {
        return (image, None);
    }
    let reference = image.split_once('@').map_or(image, |(name, _)| name);
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            (&reference[..colon], Some(&reference[colon + 1..]))
        }
        None => (reference, None),
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(string_value(value)),
        ..KeyValue::default()
    }
}

fn string_value(value: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(value.to_owned())),
    }
}
