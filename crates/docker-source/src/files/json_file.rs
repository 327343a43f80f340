//! Docker's `json-file` format: one JSON object per line,
//! `{"log":"<text>\n","stream":"stdout","attrs":{...},"time":"2026-11-23T19:00:00.123456789Z"}`.
//!
//! `log` is the message with its newline; the pieces Docker splits a long line into (16 KiB
//! each) carry no newline but the last. Docker omits `log` when it is empty and `attrs` when no
//! `labels`/`env`/`tag` log option asks for them; `attrs` is accepted and not used (the record's
//! labels are the container's, from the API). Invalid UTF-8 was already replaced by Docker when
//! it wrote the file. A line that is not such an object is malformed: counted, skipped, never a
//! panic.

use std::borrow::Cow;

use capture_core::{LogStream, time::parse_rfc3339};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::value::RawValue;

use super::{Entry, EntryFormat, Step};

/// The longest line accepted: a 16 KiB piece whose every byte is escaped (`\u0000`: six bytes)
/// plus the other fields, with room for large `attrs`.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// One line of the file, borrowed from it. `log` is kept as JSON (validated, not unescaped):
/// Docker's only escape in most lines is the closing `\n`, and the text before it is the
/// message as written, with nothing to copy.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    log: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default)]
    #[allow(dead_code)]
    attrs: Option<IgnoredAny>,
}

/// The `json-file` parser. It keeps the text of the last line that held escapes (unescaping
/// needs a copy) and whether it is skipping the rest of an over-long line.
#[derive(Debug, Default)]
pub(crate) struct JsonFile {
    unescaped: String,
    /// The previous step cut an over-long line: skip up to its newline without counting it
    /// again.
    discarding: bool,
}

impl EntryFormat for JsonFile {
    fn next<'a>(&'a mut self, buffer: &'a [u8]) -> Step<'a> {
        let Some(end) = memchr::memchr(b'\n', buffer) else {
            if buffer.len() < MAX_LINE_BYTES {
                return Step::NeedMore;
            }
            // An over-long line: drop what is here, and the rest of it as it comes.
            let counted = !std::mem::replace(&mut self.discarding, true);
            return malformed(buffer.len(), counted);
        };
        if std::mem::take(&mut self.discarding) {
            return Step::Skip { len: end + 1 };
        }
        match self.parse(&buffer[..end]) {
            Some(entry) => Step::Entry {
                entry,
                len: end + 1,
            },
            None => Step::Malformed { len: end + 1 },
        }
    }

    fn max_entry_bytes(&self) -> usize {
        MAX_LINE_BYTES
    }
}

impl JsonFile {
    fn parse<'a>(&'a mut self, line: &'a [u8]) -> Option<Entry<'a>> {
        let parsed: Line<'a> = serde_json::from_slice(line).ok()?;
        let stream = match &*parsed.stream {
            "stdout" => LogStream::Stdout,
            "stderr" => LogStream::Stderr,
            _ => return None,
        };
        let timestamp_nanos = parse_rfc3339(parsed.time.as_bytes())?;
        let (text, complete) = match parsed.log {
            None => (&[][..], false),
            Some(log) => self.text_of(log)?,
        };
        Some(Entry {
            stream,
            timestamp_nanos,
            text,
            complete,
        })
    }

    /// The message of a `log` value (a JSON string), and whether it ends its line (Docker's
    /// closing `\n`, which is not part of the message). Without an escape but that one, the
    /// message is the JSON text itself; otherwise serde_json unescapes it into `unescaped`.
    /// `None`: not a string.
    fn text_of<'a>(&'a mut self, log: &'a RawValue) -> Option<(&'a [u8], bool)> {
        let json = log.get().as_bytes();
        let inner = json.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        match memchr::memchr(b'\\', inner) {
            None => return Some((inner, false)),
            Some(at) if &inner[at..] == b"\\n" => return Some((&inner[..at], true)),
            Some(_) => {}
        }
        self.unescaped = serde_json::from_str::<String>(log.get()).ok()?;
        let text = self.unescaped.as_bytes();
        Some(match text.split_last() {
            Some((b'\n', rest)) => (rest, true),
            _ => (text, false),
        })
    }
}

fn malformed(len: usize, counted: bool) -> Step<'static> {
    if counted {
        Step::Malformed { len }
    } else {
        Step::Skip { len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(input: &[u8]) -> Vec<String> {
        let render = |text: &[u8]| format!("{:?}", String::from_utf8_lossy(text));
        crate::files::tests::steps(&mut JsonFile::default(), input, render, true)
    }

    #[test]
    fn docker_lines_parse_with_escapes_partials_and_attrs() {
        let input = concat!(
            r#"{"log":"a\u003cb\u003e\u0026\"\u0009c\n","stream":"stdout","time":"1970-01-01T00:00:01.000000002Z"}"#,
            "\n",
            r#"{"log":"piece","stream":"stderr","attrs":{"tag":"x"},"time":"1970-01-01T00:00:03Z"}"#,
            "\n",
            r#"{"stream":"stdout","time":"1970-01-01T00:00:04Z"}"#,
            "\n",
            r#"{"log":"été\n","stream":"stdout","time":"1970-01-01T01:00:05+01:00"}"#,
            "\n",
        );
        assert_eq!(
            steps(input.as_bytes()),
            [
                "stdout@1000000002 \"a<b>&\\\"\\tc\"",
                "stderr@3000000000 \"piece\" (partial)",
                "stdout@4000000000 \"\" (partial)",
                "stdout@5000000000 \"été\"",
            ]
        );
    }

    #[test]
    fn malformed_lines_are_skipped_one_by_one_and_an_unfinished_line_waits() {
        let input = concat!(
            "not json\n",
            r#"{"log":"x\n","stream":"stdin","time":"1970-01-01T00:00:01Z"}"#,
            "\n",
            r#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#,
            "\n",
            r#"{"log":"x\n","stream":"stdout"}"#,
            "\n",
            r#"{"log":"\ud800\n","stream":"stdout","time":"1970-01-01T00:00:01Z"}"#,
            "\n",
            r#"{"log":5,"stream":"stdout","time":"1970-01-01T00:00:01Z"}"#,
            "\n",
            "\n",
            r#"{"log":"ok\n","stream":"stdout","time":"1970-01-01T00:00:01Z"}"#,
            "\n",
            r#"{"log":"unfinished"#,
        );
        assert_eq!(
            steps(input.as_bytes()),
            [
                "malformed",
                "malformed",
                "malformed",
                "malformed",
                "malformed",
                "malformed",
                "malformed",
                "stdout@1000000000 \"ok\""
            ]
        );
    }

    #[test]
    fn an_over_long_line_counts_once_and_is_skipped_to_its_end() {
        let mut format = JsonFile::default();
        let long = vec![b'x'; MAX_LINE_BYTES];
        assert_eq!(format.next(&long), Step::Malformed { len: long.len() });
        assert_eq!(format.next(&long), Step::Skip { len: long.len() });
        assert_eq!(format.next(b"xx\nnext"), Step::Skip { len: 3 });
        assert_eq!(format.next(b"next"), Step::NeedMore);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut line = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let alphabet = b"{}\":,\\nlogstreamtime0123Z-T.\n\xff";
                line.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = steps(&line);
        }
    }
}
