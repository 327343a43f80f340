//! From batches to push request bodies: grouping lines into Loki streams, splitting a delivery
//! into requests, and the two encodings (JSON and protobuf), written by hand so that no line is
//! copied or allocated except into the request body itself.

use std::{collections::HashMap, ops::Range};

use capture_core::EventBatch;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::labels::{LabelTemplates, Labels};
use crate::record::escape_json_into;

/// Estimated bytes a stream adds to a request besides its labels (JSON framing).
const STREAM_OVERHEAD_BYTES: usize = 32;
/// Estimated bytes an entry adds to a request besides its line (timestamp and framing).
const ENTRY_OVERHEAD_BYTES: usize = 32;

/// One log line as Loki sees it, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// Nanoseconds since the Unix epoch.
    pub(crate) timestamp_nanos: i64,
    /// The message.
    pub(crate) line: &'a str,
}

/// The lines of one label set in a delivery, sorted by timestamp.
#[derive(Debug)]
pub(crate) struct LokiStream<'a> {
    pub(crate) labels: Labels,
    pub(crate) entries: Vec<Entry<'a>>,
}

/// Groups the lines of `batches` into streams by label set. Labels are rendered once per batch
/// and stream (a batch holds one container's lines); entries are sorted by timestamp within
/// each stream, keeping input order among equal timestamps.
pub(crate) fn group_streams<'a>(
    templates: &LabelTemplates,
    batches: &'a [EventBatch],
) -> Vec<LokiStream<'a>> {
    let mut streams: Vec<LokiStream<'a>> = Vec::new();
    let mut index_by_labels: HashMap<String, usize> = HashMap::new();
    for batch in batches {
        // The stream index of each of the batch's Docker streams, found on its first line.
        let mut slots: [Option<usize>; 3] = [None; 3];
        for line in batch.lines() {
            let slot = &mut slots[line.stream.index()];
            let index = match *slot {
                Some(index) => index,
                None => {
                    let labels = templates.render(batch.container(), line.stream);
                    let index = match index_by_labels.get(&labels.prometheus) {
                        Some(&index) => index,
                        None => {
                            index_by_labels.insert(labels.prometheus.clone(), streams.len());
                            streams.push(LokiStream {
                                labels,
                                entries: Vec::new(),
                            });
                            streams.len() - 1
                        }
                    };
                    *slot = Some(index);
                    index
                }
            };
            streams[index].entries.push(Entry {
                timestamp_nanos: line.position.timestamp_nanos,
                line: line.message,
            });
        }
    }
    for stream in &mut streams {
        // Usually sorted already (one container's stream is read in order); the stable sort
        // only runs when batches of several containers or streams share a label set.
        if !stream
            .entries
            .is_sorted_by_key(|entry| entry.timestamp_nanos)
        {
            stream.entries.sort_by_key(|entry| entry.timestamp_nanos);
        }
    }
    streams
}

/// A slice of one stream's entries that goes into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// Index into the delivery's streams.
    pub(crate) stream: usize,
    /// The entries of that stream.
    pub(crate) entries: Range<usize>,
}

/// Splits a delivery into requests of at most `max_entries` entries and about `max_bytes`
/// bytes before compression (a single larger line still gets a request of its own). Requests
/// hold streams in order and a stream's entries in order, so sending them one after another
/// keeps every stream in timestamp order.
pub(crate) fn plan_requests(
    streams: &[LokiStream<'_>],
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Vec<Part>> {
    let max_entries = max_entries.max(1);
    let mut requests = Vec::new();
    let mut current: Vec<Part> = Vec::new();
    let mut entries = 0usize;
    let mut bytes = 0usize;
    for (index, stream) in streams.iter().enumerate() {
        let stream_bytes = stream.labels.json.len() + STREAM_OVERHEAD_BYTES;
        let mut start = 0;
        for (position, entry) in stream.entries.iter().enumerate() {
            let entry_bytes = entry.line.len() + ENTRY_OVERHEAD_BYTES;
            let opening = if position == start { stream_bytes } else { 0 };
            let full = entries + 1 > max_entries || bytes + opening + entry_bytes > max_bytes;
            if full && entries > 0 {
                if position > start {
                    current.push(Part {
                        stream: index,
                        entries: start..position,
                    });
                }
                requests.push(std::mem::take(&mut current));
                start = position;
                entries = 0;
                bytes = 0;
            }
            if position == start {
                bytes += stream_bytes;
            }
            entries += 1;
            bytes += entry_bytes;
        }
        if start < stream.entries.len() {
            current.push(Part {
                stream: index,
                entries: start..stream.entries.len(),
            });
        }
    }
    if !current.is_empty() {
        requests.push(current);
    }
    requests
}

/// A stream's entries as they go into one request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSlice<'s, 'a> {
    pub(crate) labels: &'s Labels,
    pub(crate) entries: &'s [Entry<'a>],
}

/// Splits a request in two halves by entry count, for a request Loki found too large.
/// `None` when it holds a single entry.
pub(crate) fn split_in_half<'s, 'a>(
    slices: &[StreamSlice<'s, 'a>],
) -> Option<(Vec<StreamSlice<'s, 'a>>, Vec<StreamSlice<'s, 'a>>)> {
    let total: usize = slices.iter().map(|slice| slice.entries.len()).sum();
    if total < 2 {
        return None;
    }
    let mut left = total / 2;
    let mut first = Vec::new();
    let mut second = Vec::new();
    for slice in slices {
        if left == 0 {
            second.push(*slice);
        } else if slice.entries.len() <= left {
            left -= slice.entries.len();
            first.push(*slice);
        } else {
            let (head, tail) = slice.entries.split_at(left);
            left = 0;
            first.push(StreamSlice {
                labels: slice.labels,
                entries: head,
            });
            second.push(StreamSlice {
                labels: slice.labels,
                entries: tail,
            });
        }
    }
    Some((first, second))
}

/// Writes `{"streams":[{"stream":{...},"values":[["<nanos>","<line>"],...]},...]}` to `out`.
pub(crate) fn encode_json(slices: &[StreamSlice<'_, '_>], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"streams\":[");
    for (index, slice) in slices.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        out.extend_from_slice(slice.labels.json.as_bytes());
        out.extend_from_slice(b",\"values\":[");
        for (position, entry) in slice.entries.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            push_decimal(out, entry.timestamp_nanos);
            out.extend_from_slice(b"\",");
            push_json_str(out, entry.line);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
}

/// Appends `value` in decimal without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, value: i64) {
    let mut digits = [0u8; 20];
    let mut rest = value.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `text` as a JSON string, escaped exactly as `serde_json` does: `"` and `\`, and
/// control characters (short forms where JSON has them, `\u00XX` otherwise).
pub(crate) fn push_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_json_into(out, text);
    out.push(b'"');
}

/// Writes a `logproto.PushRequest` to `out`, byte for byte as prost would encode the message
/// types of `proto.rs`, but borrowing every line instead of copying it into a `String` first:
///
/// ```text
/// PushRequest    { repeated StreamAdapter streams = 1; }
/// StreamAdapter  { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
/// EntryAdapter   { google.protobuf.Timestamp timestamp = 1; string line = 2;
///                  repeated LabelPairAdapter structuredMetadata = 3; }
/// Timestamp      { int64 seconds = 1; int32 nanos = 2; }
/// ```
///
/// Proto3 leaves out fields at their default (empty strings, zero numbers), so `hash` and
/// `structuredMetadata` never appear.
pub(crate) fn encode_protobuf(slices: &[StreamSlice<'_, '_>], out: &mut Vec<u8>) {
    for slice in slices {
        let stream_len = stream_len(slice);
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(stream_len as u64, out);
        encode_string_field(1, &slice.labels.prometheus, out);
        for entry in slice.entries {
            let (seconds, nanos) = split_timestamp(entry.timestamp_nanos);
            let timestamp_len = timestamp_len(seconds, nanos);
            encode_key(2, WireType::LengthDelimited, out);
            encode_varint(entry_len(timestamp_len, entry.line) as u64, out);
            encode_key(1, WireType::LengthDelimited, out);
            encode_varint(timestamp_len as u64, out);
            if seconds != 0 {
                encode_key(1, WireType::Varint, out);
                encode_varint(seconds as u64, out);
            }
            if nanos != 0 {
                encode_key(2, WireType::Varint, out);
                encode_varint(i64::from(nanos) as u64, out);
            }
            encode_string_field(2, entry.line, out);
        }
    }
}

/// Seconds and non-negative nanoseconds, as `google.protobuf.Timestamp` holds a time.
fn split_timestamp(timestamp_nanos: i64) -> (i64, i32) {
    let seconds = timestamp_nanos.div_euclid(1_000_000_000);
    // The remainder is in [0, 1e9), so it fits an i32.
    let nanos = timestamp_nanos.rem_euclid(1_000_000_000) as i32;
    (seconds, nanos)
}

fn timestamp_len(seconds: i64, nanos: i32) -> usize {
    let mut len = 0;
    if seconds != 0 {
        len += 1 + encoded_len_varint(seconds as u64);
    }
    if nanos != 0 {
        len += 1 + encoded_len_varint(i64::from(nanos) as u64);
    }
    len
}

fn entry_len(timestamp_len: usize, line: &str) -> usize {
    1 + encoded_len_varint(timestamp_len as u64) + timestamp_len + string_field_len(line)
}

fn stream_len(slice: &StreamSlice<'_, '_>) -> usize {
    let entries: usize = slice
        .entries
        .iter()
        .map(|entry| {
            let (seconds, nanos) = split_timestamp(entry.timestamp_nanos);
            let len = entry_len(timestamp_len(seconds, nanos), entry.line);
            1 + encoded_len_varint(len as u64) + len
        })
        .sum();
    string_field_len(&slice.labels.prometheus) + entries
}

fn string_field_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        1 + encoded_len_varint(text.len() as u64) + text.len()
    }
}

fn encode_string_field(tag: u32, text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }
}
