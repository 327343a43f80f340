//! The JSON-lines record of the contract, written by hand into a reused buffer.
//!
//! `{"timestamp":"…","container_id":"…","container_name":"…","image":"…","stream":"…",
//! "message":"…","labels":{…}}` followed by `\n`, keys in that order. The parts that only depend
//! on the container are rendered once per container, the date part of the timestamp once per
//! second, and messages are escaped exactly as `serde_json` would, with no allocation per line.

use std::sync::Arc;

use capture_core::{
    ContainerInfo, LogLine, LogStream,
    time::{format_second_prefix, parse_rfc3339},
};

/// Renders records; keep one per sink and reuse it for every batch.
#[derive(Debug, Default)]
pub(crate) struct RecordEncoder {
    /// The container whose parts are rendered below. Holding the `Arc` keeps its address from
    /// being reused by another container while it is cached.
    container: Option<Arc<ContainerInfo>>,
    /// `Z","container_id":"…","container_name":"…","image":"…","stream":"`.
    middle: Vec<u8>,
    /// `","labels":{…}}` and the newline.
    tail: Vec<u8>,
    /// The second whose date is in `date`, if any.
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    date: [u8; 20],
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// For each byte: 0 if it is written as is, else the letter after the backslash
/// (`u` for `\u00XX`), as `serde_json` escapes.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` escaped for a JSON string (without the quotes).
pub(crate) fn escape_json_into(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[byte as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..index]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

impl RecordEncoder {
    /// Renders the container's parts unless they are already cached.
    fn prepare(&mut self, container: &Arc<ContainerInfo>) {
        if let Some(cached) = &self.container
            && Arc::ptr_eq(cached, container)
        {
            return;
        }
        self.middle.clear();
        self.middle.extend_from_slice(b"Z\",\"container_id\":\"");
        escape_json_into(&mut self.middle, container.id.as_str());
        self.middle.extend_from_slice(b"\",\"container_name\":\"");
        escape_json_into(&mut self.middle, &container.name);
        self.middle.extend_from_slice(b"\",\"image\":\"");
        escape_json_into(&mut self.middle, &container.image);
        self.middle.extend_from_slice(b"\",\"stream\":\"");
        self.tail.clear();
        self.tail.extend_from_slice(b"\",\"labels\":");
        if serde_json::to_writer(&mut self.tail, &container.labels).is_err() {
            // A map of strings always serialises; keep the record valid regardless.
            self.tail.extend_from_slice(b"{}");
        }
        self.tail.extend_from_slice(b"}\n");
        self.container = Some(Arc::clone(container));
    }

    /// Appends the JSON record of `line` of `container`, newline included.
    pub(crate) fn json_line(
        &mut self,
        out: &mut Vec<u8>,
        container: &Arc<ContainerInfo>,
        line: &LogLine<'_>,
    ) {
        self.prepare(container);
        out.extend_from_slice(b"{\"timestamp\":\"");
        if self.timestamp_into(out, line.position.timestamp_nanos) {
            out.extend_from_slice(&self.middle);
        } else {
            // Out-of-range timestamps are written in the fallback form with no `Z` of ours.
            out.extend_from_slice(&self.middle[1..]);
        }
        out.extend_from_slice(line.stream.as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":\"");
        escape_json_into(out, line.message);
        out.extend_from_slice(&self.tail);
    }

    /// Appends `<timestamp> <container name> <stream> <message>\n`.
    pub(crate) fn text_line(
        &mut self,
        out: &mut Vec<u8>,
        container: &ContainerInfo,
        line: &LogLine<'_>,
    ) {
        if self.timestamp_into(out, line.position.timestamp_nanos) {
            out.push(b'Z');
        }
        out.push(b' ');
        out.extend_from_slice(container.name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(line.stream.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(line.message.as_bytes());
        out.push(b'\n');
    }

    /// Appends `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn` and returns true, or, for a timestamp outside
    /// years 0 to 9999, capture-core's fallback rendering (which ends itself) and false.
    fn timestamp_into(&mut self, out: &mut Vec<u8>, timestamp_nanos: i64) -> bool {
        let second = timestamp_nanos.div_euclid(1_000_000_000);
        let nanos = timestamp_nanos.rem_euclid(1_000_000_000);
        if self.second != Some(second) {
            match format_second_prefix(second) {
                Some(date) => {
                    self.date = date;
                    self.second = Some(second);
                }
                None => {
                    // Rare enough to allocate: capture-core renders it (or, beyond any
                    // calendar, as plain nanoseconds that take no `Z`).
                    let text = capture_core::format_rfc3339_nanos(timestamp_nanos);
                    return match text.strip_suffix('Z') {
                        Some(stripped) => {
                            out.extend_from_slice(stripped.as_bytes());
                            true
                        }
                        None => {
                            out.extend_from_slice(text.as_bytes());
                            false
                        }
                    };
                }
            }
        }
        out.extend_from_slice(&self.date);
        let mut digits = [b'0'; 9];
        let mut rest = nanos;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.extend_from_slice(&digits);
        true
    }
}

/// The fields of a record line that the file sink needs to recover its high-water marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordKey<'a> {
    pub(crate) timestamp_nanos: i64,
    pub(crate) container_id: &'a str,
    pub(crate) stream: LogStream,
}

/// Reads the timestamp, container id and stream of a record line written by
/// [`RecordEncoder::json_line`], without a full JSON parse. `None` for anything else.
pub(crate) fn parse_record_key(line: &[u8]) -> Option<RecordKey<'_>> {
    let rest = line.strip_prefix(b"{\"timestamp\":\"")?;
    let (timestamp, rest) = rest.split_at_checked(30)?;
    let timestamp_nanos = parse_rfc3339(timestamp)?;
    let rest = rest.strip_prefix(b"\",\"container_id\":\"")?;
    let (id, rest) = rest.split_at_checked(64)?;
    let container_id = std::str::from_utf8(id).ok()?;
    let rest = rest.strip_prefix(b"\",\"container_name\":\"")?;
    let rest = skip_json_string(rest)?;
    let rest = rest.strip_prefix(b",\"image\":\"")?;
    let rest = skip_json_string(rest)?;
    let rest = rest.strip_prefix(b",\"stream\":\"")?;
    let end = rest.iter().position(|&byte| byte == b'"')?;
    let stream = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some(RecordKey {
        timestamp_nanos,
        container_id,
        stream,
    })
}

/// Skips the rest of a JSON string whose opening quote is consumed; returns what follows the
/// closing quote.
fn skip_json_string(text: &[u8]) -> Option<&[u8]> {
    let mut index = 0;
    while index < text.len() {
        match text[index] {
            b'\\' => index += 2,
            b'"' => return Some(&text[index + 1..]),
            _ => index += 1,
        }
    }
    None
}
