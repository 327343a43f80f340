//! Stream label templates: parsed once when the sink is built, rendered once per container and
//! stream of a delivery (never per line).

use std::collections::BTreeMap;

use capture_core::{ContainerInfo, LogStream};

use super::{encode::push_json_str, error::LokiError};
use crate::sinks::template::Template;

/// The label set used when every configured label renders empty: Loki refuses a stream
/// without labels.
const FALLBACK_LABELS: (&str, &str) = ("job", "log-capturer");

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
