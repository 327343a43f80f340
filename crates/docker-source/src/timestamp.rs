//! Docker's timestamp prefix (`2026-11-24T14:26:08.41783204Z `) parsed to nanoseconds.
//!
//! Every line of a `timestamps=1` log stream starts with one. Docker 20.10 writes nine fraction
//! digits, newer daemons trim trailing zeros (RFC 3339 "nano" layout); both take the hand-rolled
//! fixed-layout fast path, which costs a few nanoseconds. Anything else (an offset instead of
//! `Z`, for example) falls back to `jiff`.

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
        Some(end) if window[end] == b' ' => match parse_slow(&window[..end]) {
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

#[inline]
fn digit(bytes: &[u8], at: usize) -> Option<i64> {
    let d = bytes[at].wrapping_sub(b'0');
    (d < 10).then_some(i64::from(d))
}

#[inline]
fn two(bytes: &[u8], at: usize) -> Option<i64> {
    Some(digit(bytes, at)? * 10 + digit(bytes, at + 1)?)
}

/// A whole RFC 3339 timestamp (no trailing space), as log files store it: the fast path for
/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, `jiff` for anything else.
pub(crate) fn parse_timestamp(text: &[u8]) -> Option<i64> {
    match parse_fast_utc(text) {
        Some((nanos, end)) if end == text.len() => Some(nanos),
        _ => parse_slow(text),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z ` in UTC.
#[inline]
fn parse_fast(b: &[u8]) -> Option<(i64, usize)> {
    let (nanos, end) = parse_fast_utc(b)?;
    (b.get(end) == Some(&b' ')).then_some((nanos, end + 1))
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` in UTC at the start of `b`: nanoseconds and the length.
#[inline]
fn parse_fast_utc(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = two(b, 0)? * 100 + two(b, 2)?;
    let month = two(b, 5)?;
    let day = two(b, 8)?;
    let hour = two(b, 11)?;
    let minute = two(b, 14)?;
    let second = two(b, 17)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // A leap second (60) is accepted and folds into the next minute, as Go's parser allows it.
    if second > 60 {
        return None;
    }
    let mut at = 19;
    let mut fraction = 0i64;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && at - start < 9 {
            match digit(b, at) {
                Some(d) => fraction = fraction * 10 + d,
                None => break,
            }
            at += 1;
        }
        let digits = at - start;
        if digits == 0 {
            return None;
        }
        fraction *= 10i64.pow(9 - digits as u32);
    }
    if b.get(at) != Some(&b'Z') {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some((
        seconds.checked_mul(1_000_000_000)?.checked_add(fraction)?,
        at + 1,
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Any RFC 3339 timestamp `jiff` accepts (offsets, lower-case separators).
fn parse_slow(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let timestamp: jiff::Timestamp = text.parse().ok()?;
    i64::try_from(timestamp.as_nanosecond()).ok()
}

/// A time of the Docker API (`Created`, `State.StartedAt`, `State.FinishedAt`) in nanoseconds
/// since the epoch; `None` for Docker's zero time (`0001-01-01T00:00:00Z`: it never happened),
/// a missing or an unreadable value.
pub(crate) fn api_time_nanos(time: Option<&str>) -> Option<i64> {
    let nanos = parse_slow(time?.as_bytes())?;
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
    fn fast_path_matches_jiff_for_every_fraction_length() {
        for text in [
            "2026-11-24T14:26:08.41783204Z",
            "2026-11-24T14:26:08.417832041Z",
            "2026-11-24T14:26:08.4Z",
            "2026-11-24T14:26:08Z",
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59.999999999Z",
            "2024-03-01T00:00:00.000000001Z",
            "1969-12-31T23:59:59.5Z",
            "2099-12-31T23:59:59.123Z",
        ] {
            let line = format!("{text} message");
            let (nanos, len) = parse_fast(line.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(nanos, jiff_nanos(text), "{text}");
            assert_eq!(len, text.len() + 1);
            assert_eq!(&line[len..], "message");
        }
    }

    #[test]
    fn whole_timestamps_parse_as_log_files_store_them() {
        for text in [
            "2026-11-24T14:26:08.417832041Z",
            "2026-11-24T14:26:08Z",
            "2026-11-24T15:26:08.5+01:00",
        ] {
            assert_eq!(
                parse_timestamp(text.as_bytes()),
                Some(jiff_nanos(text)),
                "{text}"
            );
        }
        assert_eq!(parse_timestamp(b"2026-11-24T14:26:08.4Z "), None);
        assert_eq!(parse_timestamp(b"2026-11-24T14:26:08"), None);
        assert_eq!(parse_timestamp(b""), None);
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
