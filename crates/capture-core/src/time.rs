//! RFC 3339 timestamps, the one home for parsing and formatting them.
//!
//! Docker writes `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (20.10 with nine fraction digits, newer daemons
//! trimming trailing zeros) before every line it serves and in every json-file entry; the record
//! format writes nine digits. Both take a fixed-layout fast path that costs a few nanoseconds;
//! anything else (an offset instead of `Z`, lower-case separators) falls back to `jiff`.

use std::time::SystemTime;

use serde::Serializer;

/// Parses a whole RFC 3339 timestamp (nothing before or after it) to nanoseconds since the
/// epoch. `None` for anything that is not one, or is beyond the `i64` range.
///
/// ```
/// use capture_core::time::parse_rfc3339;
///
/// assert_eq!(parse_rfc3339(b"1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
/// assert_eq!(parse_rfc3339(b"1970-01-01T01:00:01+01:00"), Some(1_000_000_000));
/// assert_eq!(parse_rfc3339(b"1970-01-01T00:00:01Z "), None);
/// ```
#[inline]
pub fn parse_rfc3339(text: &[u8]) -> Option<i64> {
    match parse_utc_at_start(text) {
        Some((nanos, end)) if end == text.len() => Some(nanos),
        _ => parse_any(text),
    }
}

/// The fast path alone: `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` in UTC at the start of `b`, as
/// nanoseconds since the epoch and the length it takes. `None` when `b` does not start with that
/// layout (which [`parse_rfc3339`] may still accept).
#[inline]
pub fn parse_utc_at_start(b: &[u8]) -> Option<(i64, usize)> {
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
    let (month, day) = (two(b, 5)?, two(b, 8)?);
    let (hour, minute, second) = (two(b, 11)?, two(b, 14)?, two(b, 17)?);
    // A leap second (60) is accepted and folds into the next minute, as Go's parser allows it.
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let (fraction, at) = fraction_at(b, 19)?;
    if b.get(at) != Some(&b'Z') {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    let nanos = seconds.checked_mul(1_000_000_000)?.checked_add(fraction)?;
    Some((nanos, at + 1))
}

/// Any RFC 3339 timestamp `jiff` accepts.
pub fn parse_any(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let timestamp: jiff::Timestamp = text.parse().ok()?;
    i64::try_from(timestamp.as_nanosecond()).ok()
}

/// An optional `.f{1,9}` at `at`: the fraction in nanoseconds and where it ends.
#[inline]
fn fraction_at(b: &[u8], mut at: usize) -> Option<(i64, usize)> {
    if b.get(at) != Some(&b'.') {
        return Some((0, at));
    }
    at += 1;
    let start = at;
    let mut fraction = 0i64;
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
    Some((fraction * 10i64.pow(9 - digits as u32), at))
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

/// Formats nanoseconds since the epoch as RFC 3339 in UTC with nine fraction digits, the record
/// format's `timestamp`: `2026-11-23T19:00:00.123456789Z`.
pub fn format_rfc3339_nanos(timestamp_nanos: i64) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(timestamp_nanos)) {
        Ok(ts) => format!("{ts:.9}"),
        // Out of jiff's range (year beyond ±9999): not a timestamp Docker writes.
        Err(_) => format!("{timestamp_nanos}ns"),
    }
}

/// Formats a wall-clock time as RFC 3339 (UTC, nanosecond precision trimmed of trailing zeros).
pub fn format_system_time(time: SystemTime) -> String {
    match jiff::Timestamp::try_from(time) {
        Ok(ts) => ts.to_string(),
        Err(_) => "1970-01-01T00:00:00Z".to_owned(),
    }
}

/// Serializes a wall-clock time as [`format_system_time`] writes it (`serialize_with`).
pub fn serialize_rfc3339<S: Serializer>(
    time: &SystemTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_system_time(*time))
}

/// [`serialize_rfc3339`] for an optional time (`null` when absent).
pub fn serialize_rfc3339_opt<S: Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serialize_rfc3339(time, serializer),
        None => serializer.serialize_none(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch, for years 0 to 9999: the part of a
/// record's timestamp a writer renders once per second (the nine digits follow).
pub fn format_second_prefix(second: i64) -> Option<[u8; 20]> {
    let days = second.div_euclid(86_400);
    let of_day = second.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut date = *b"0000-00-00T00:00:00.";
    let put = |date: &mut [u8; 20], at: usize, width: usize, mut value: i64| {
        for index in (at..at + width).rev() {
            date[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(&mut date, 0, 4, year);
    put(&mut date, 5, 2, month);
    put(&mut date, 8, 2, day);
    put(&mut date, 11, 2, of_day / 3600);
    put(&mut date, 14, 2, of_day / 60 % 60);
    put(&mut date, 17, 2, of_day % 60);
    Some(date)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
#[inline]
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
#[inline]
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let (nanos, len) = parse_utc_at_start(line.as_bytes()).expect(text);
            assert_eq!(nanos, jiff_nanos(text), "{text}");
            assert_eq!(len, text.len());
            assert_eq!(parse_rfc3339(text.as_bytes()), Some(nanos), "{text}");
        }
    }

    #[test]
    fn whole_timestamps_only_and_offsets_through_jiff() {
        let offset = "2026-11-24T15:26:08.5+01:00";
        assert_eq!(parse_utc_at_start(offset.as_bytes()), None);
        assert_eq!(parse_rfc3339(offset.as_bytes()), Some(jiff_nanos(offset)));
        assert_eq!(parse_rfc3339(b"2026-11-24T14:26:08.4Z "), None);
        assert_eq!(parse_rfc3339(b"2026-11-24T14:26:08"), None);
        assert_eq!(parse_rfc3339(b"2026-13-24T14:26:08Z"), None);
        assert_eq!(parse_rfc3339(b"2026-11-24T14:26:08.Z"), None);
        assert_eq!(parse_rfc3339(b""), None);
    }

    #[test]
    fn second_prefixes_round_trip_through_the_parser_over_the_whole_nanosecond_range() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..5_000 {
            // i64 nanoseconds reach from 1677 to 2262.
            let second = rng.i64(-9_223_372_035..9_223_372_035);
            let prefix = format_second_prefix(second).expect("years 0 to 9999");
            let mut text = prefix.to_vec();
            text.extend_from_slice(b"000000007Z");
            assert_eq!(parse_rfc3339(&text), Some(second * 1_000_000_000 + 7));
            let jiff = format_rfc3339_nanos(second * 1_000_000_000 + 7);
            assert_eq!(std::str::from_utf8(&text).unwrap(), jiff);
        }
        assert_eq!(format_second_prefix(253_402_300_800), None);
        assert_eq!(
            &format_second_prefix(-62_167_219_200).expect("year 0"),
            b"0000-01-01T00:00:00."
        );
    }
}
