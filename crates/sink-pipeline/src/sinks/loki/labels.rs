//! Stream label templates: parsed once when the sink is built, rendered once per container and
//! stream of a delivery (never per line).

use std::collections::BTreeMap;

use capture_core::{ContainerInfo, LogStream};

use super::{encode::push_json_str, error::LokiError};

/// The label set used when every configured label renders empty: Loki refuses a stream
/// without labels.
const FALLBACK_LABELS: (&str, &str) = ("job", "log-capturer");

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text copied as it is.
    Text(String),
    /// `{container_name}`.
    ContainerName,
    /// `{container_id}`: the full 64-digit id.
    ContainerId,
    /// `{image}`.
    Image,
    /// `{stream}`: `stdout`, `stderr` or `tty`.
    Stream,
    /// `{label.KEY}`: the container's label `KEY`, empty if it has none.
    ContainerLabel(String),
}

/// A parsed label value template, such as `"{container_name}-{stream}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `{{` and `}}` stand for literal braces.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(index) = rest.find(['{', '}']) {
            literal.push_str(&rest[..index]);
            let brace = rest.as_bytes()[index];
            let after = &rest[index + 1..];
            if after.as_bytes().first() == Some(&brace) {
                literal.push(char::from(brace));
                rest = &after[1..];
                continue;
            }
            if brace == b'}' {
                return Err(format!(
                    "unmatched '}}' in {text:?} (write '}}}}' for a brace)"
                ));
            }
            let Some(end) = after.find('}') else {
                return Err(format!("unclosed '{{' in {text:?}"));
            };
            let name = &after[..end];
            let part = match name {
                "container_name" => Part::ContainerName,
                "container_id" => Part::ContainerId,
                "image" => Part::Image,
                "stream" => Part::Stream,
                _ => match name.strip_prefix("label.") {
                    Some(key) if !key.is_empty() => Part::ContainerLabel(key.to_owned()),
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{name}}} in {text:?} (expected container_name, \
                             container_id, image, stream or label.KEY)"
                        ));
                    }
                },
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Appends the value for `container` and `stream` to `out`.
    pub(crate) fn render_into(
        &self,
        container: &ContainerInfo,
        stream: LogStream,
        out: &mut String,
    ) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::ContainerName => out.push_str(&container.name),
                Part::ContainerId => out.push_str(container.id.as_str()),
                Part::Image => out.push_str(&container.image),
                Part::Stream => out.push_str(stream.as_str()),
                Part::ContainerLabel(key) => {
                    if let Some(value) = container.labels.get(key) {
                        out.push_str(value);
                    }
                }
            }
        }
    }
}

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`, and prefixes `_` to a name that
/// starts with a digit, so any configured name is a valid Prometheus label name.
pub(crate) fn sanitize_label_name(name: &str) -> String {
    let mut sanitized = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        sanitized.push('_');
    }
    sanitized.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    sanitized
}

/// Every configured label: sanitised names in sorted order, each with its parsed template.
#[derive(Debug, Clone)]
pub(crate) struct LabelTemplates {
    labels: Vec<(String, Template)>,
}

/// The labels of one Loki stream, rendered in both forms the encoders need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Labels {
    /// The Prometheus form, `{job="x", stream="stdout"}`: the protobuf `labels` field, the key
    /// that groups lines into streams, and how Loki names a stream in its error messages.
    pub(crate) prometheus: String,
    /// The JSON object form, `{"job":"x","stream":"stdout"}`, for the JSON body's `stream`.
    pub(crate) json: String,
}

impl LabelTemplates {
    /// Parses the configured labels (the defaults when `labels` is empty).
    pub(crate) fn new(labels: &BTreeMap<String, String>) -> Result<LabelTemplates, LokiError> {
        let defaults;
        let labels = if labels.is_empty() {
            defaults = super::LokiSinkConfig::default_labels();
            &defaults
        } else {
            labels
        };
        let mut parsed = Vec::with_capacity(labels.len());
        for (name, value) in labels {
            let sanitized = sanitize_label_name(name);
            if sanitized.is_empty() {
                return Err(LokiError::Config {
                    reason: "labels: a label name is empty".to_owned(),
                });
            }
            let template = Template::parse(value).map_err(|reason| LokiError::Config {
                reason: format!("labels.{name}: {reason}"),
            })?;
            parsed.push((sanitized, template));
        }
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = parsed.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(LokiError::Config {
                reason: format!(
                    "labels: two label names become {:?} once sanitised to [a-zA-Z_][a-zA-Z0-9_]*",
                    pair[0].0
                ),
            });
        }
        Ok(LabelTemplates { labels: parsed })
    }

    /// Renders the label set of `stream` of `container`, leaving out labels that render empty.
    pub(crate) fn render(&self, container: &ContainerInfo, stream: LogStream) -> Labels {
        let mut prometheus = String::from("{");
        let mut json = Vec::with_capacity(64);
        json.push(b'{');
        let mut value = String::new();
        for (name, template) in &self.labels {
            value.clear();
            template.render_into(container, stream, &mut value);
            if !value.is_empty() {
                push_label(&mut prometheus, &mut json, name, &value);
            }
        }
        if json.len() == 1 {
            push_label(
                &mut prometheus,
                &mut json,
                FALLBACK_LABELS.0,
                FALLBACK_LABELS.1,
            );
        }
        prometheus.push('}');
        json.push(b'}');
        Labels {
            prometheus,
            // Only UTF-8 text and ASCII punctuation were written.
            json: String::from_utf8_lossy(&json).into_owned(),
        }
    }
}

/// Appends `name="value"` to both forms of a label set under construction.
fn push_label(prometheus: &mut String, json: &mut Vec<u8>, name: &str, value: &str) {
    if json.len() > 1 {
        prometheus.push_str(", ");
        json.push(b',');
    }
    prometheus.push_str(name);
    prometheus.push_str("=\"");
    push_prometheus_escaped(prometheus, value);
    prometheus.push('"');
    push_json_str(json, name);
    json.push(b':');
    push_json_str(json, value);
}

/// Escapes a label value as Prometheus (and Loki's label parser) expect inside double quotes.
fn push_prometheus_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}
