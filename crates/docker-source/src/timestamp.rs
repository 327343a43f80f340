//! Docker's timestamp prefix (`2026-11-24T14:26:08.41783204Z `) parsed to nanoseconds.
//!
//! Every line of a `timestamps=1` log stream starts with one. The RFC 3339 parsing itself is
//! `capture_core::time` (a fixed-layout fast path for Docker's layout, `jiff` for anything
//! else); this module finds where the prefix ends, and reads the API's own times.

use capture_core::time::{parse_any, parse_utc_at_start};

/// The longest prefix looked at: a timestamp with an offset and nine fraction digits is 35 bytes.
pub(crate) const MAX_PREFIX_BYTES: usize = 48;

/// What the start of a line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// A timestamp (nanoseconds since the epoch) and the prefix length, its space included.
    Found(i64, usize),
    /// No space yet and fewer than [`MAX_PREFIX_BYTES`] bytes: the prefix may continue.
    NeedMore,
    /// Not a timestamp prefix.
    Invalid,
}

/// Scans the timestamp prefix at the start of `bytes`.
pub(crate) fn scan_prefix(bytes: &[u8]) -> Prefix {
    if let Some(found) = parse_fast(bytes) {
        return Prefix::Found(found.0, found.1);
    }
    let window = &bytes[..bytes.len().min(MAX_PREFIX_BYTES)];
    match window.iter().position(|&b| b == b' ' || b == b'\n') {
        Some(end) if window[end] == b' ' => match parse_any(&window[..end]) {
            Some(nanos) => Prefix::Found(nanos, end + 1),
            None => Prefix::Invalid,
        },
        Some(_) => Prefix::Invalid,
        None if bytes.len() < MAX_PREFIX_BYTES => Prefix::NeedMore,
        None => Prefix::Invalid,
    }
}

/// Parses a complete prefix (timestamp and space) at the start of `bytes`.
#[cfg(test)]
pub(crate) fn parse_prefix(bytes: &[u8]) -> Option<(i64, usize)> {
    match scan_prefix(bytes) {
        Prefix::Found(nanos, len) => Some((nanos, len)),
        Prefix::NeedMore | Prefix::Invalid => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z ` in UTC.
#[inline]
fn parse_fast(b: &[u8]) -> Option<(i64, usize)> {
    let (nanos, end) = parse_utc_at_start(b)?;
    (b.get(end) == Some(&b' ')).then_some((nanos, end + 1))
}

/// A time of the Docker API (`Created`, `State.StartedAt`, `State.FinishedAt`) in nanoseconds
/// since the epoch; `None` for Docker's zero time (`0001-01-01T00:00:00Z`: it never happened),
/// a missing or an unreadable value.
pub(crate) fn api_time_nanos(time: Option<&str>) -> Option<i64> {
    let nanos = parse_any(time?.as_bytes())?;
    (nanos > 0).then_some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times_parse_and_the_zero_time_is_none() {
        assert_eq!(
            api_time_nanos(Some("2026-11-24T14:26:08.41783204Z")),
            Some(jiff_nanos("2026-11-24T14:26:08.41783204Z"))
        );
        assert_eq!(api_time_nanos(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(api_time_nanos(Some("garbage")), None);
        assert_eq!(api_time_nanos(None), None);
    }

    fn jiff_nanos(text: &str) -> i64 {
        i64::try_from(text.parse::<jiff::Timestamp>().unwrap().as_nanosecond()).unwrap()
    }

    #[test]
    fn the_prefix_ends_after_its_space() {
        let line = b"2026-11-24T14:26:08.41783204Z message";
        let (nanos, len) = parse_fast(line).expect("Docker's layout");
        assert_eq!(nanos, jiff_nanos("2026-11-24T14:26:08.41783204Z"));
        assert_eq!(&line[len..], b"message");
    }

    #[test]
    fn offsets_take_the_slow_path() {
        let line = b"2026-11-24T15:26:08.5+01:00 x";
        assert_eq!(parse_fast(line), None);
        assert_eq!(
            parse_prefix(line),
            Some((jiff_nanos("2026-11-24T14:26:08.5Z"), 28))
        );
    }

    #[test]
    fn garbage_is_invalid_and_short_input_needs_more() {
        assert_eq!(scan_prefix(b"hello world"), Prefix::Invalid);
        assert_eq!(scan_prefix(b"2026-11-24T14:26"), Prefix::NeedMore);
        assert_eq!(scan_prefix(b"2026-13-24T14:26:08Z x"), Prefix::Invalid);
        assert_eq!(scan_prefix(b"2026-11-24T14:26:08.Z x"), Prefix::Invalid);
        assert_eq!(scan_prefix(b"2026-11-24T14:26:08Z\n"), Prefix::Invalid);
        assert_eq!(scan_prefix(&[b'9'; 60]), Prefix::Invalid);
        assert_eq!(scan_prefix(b""), Prefix::NeedMore);
    }
}
