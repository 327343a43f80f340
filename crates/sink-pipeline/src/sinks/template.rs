//! Value templates of the sinks' configurations (`"{container_name}-{stream}"`): parsed once
//! when a sink is built, rendered once per container and stream of a delivery, never per line.

use capture_core::{ContainerInfo, LogStream};

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

    /// Whether the template names `{stream}`, which only per-stream values can render.
    pub(crate) fn uses_stream(&self) -> bool {
        self.parts.contains(&Part::Stream)
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
