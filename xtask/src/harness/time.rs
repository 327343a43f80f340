//! Timestamps and durations without a date-time dependency.
//!
//! The capturer writes Docker's RFC 3339 timestamps (`2026-11-23T19:00:00.123456789Z`) and the
//! health API writes RFC 3339 too; both are turned into nanoseconds since the Unix epoch so they
//! can be compared with the local wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as i128)
}

/// Parses an RFC 3339 timestamp (`Z` or a `±HH:MM` offset, any number of fraction digits) into
/// nanoseconds since the Unix epoch; `None` when it is not one.
pub(crate) fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !matches!(bytes[10], b'T' | b't' | b' ') || !(1..=12).contains(&month) {
        return None;
    }
    let mut rest = &text[19..];
    let mut fraction_nanos: i128 = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Only the first nine digits are nanoseconds; further digits are below our resolution.
        for (index, digit) in after_dot.bytes().take(digits).enumerate() {
            if index < 9 {
                fraction_nanos = fraction_nanos * 10 + i128::from(digit - b'0');
            }
        }
        for _ in digits..9 {
            fraction_nanos *= 10;
        }
        rest = &after_dot[digits..];
    }
    let offset_seconds: i64 = match rest.as_bytes().first()? {
        b'Z' | b'z' if rest.len() == 1 => 0,
        sign @ (b'+' | b'-') if rest.len() == 6 => {
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + fraction_nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Parses a duration as the command line gives it: `90s`, `10m`, `1h`, `500ms`, `1m30s`, or a
/// bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Ok(Duration::from_secs_f64(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |end| digits + end);
        let Ok(value) = rest[..digits].parse::<f64>() else {
            bail!("{text:?} is not a duration (try 90s, 10m, 1h)");
        };
        let unit_seconds = match &rest[digits..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => bail!("{text:?}: unknown unit {other:?} (use ms, s, m or h)"),
        };
        total += Duration::from_secs_f64(value * unit_seconds);
        rest = &rest[unit_end..];
    }
    if text.is_empty() {
        bail!("an empty duration");
    }
    Ok(total)
}

/// Renders a duration the way [`parse_duration`] reads it, for passing on to the capturer.
pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// `mm:ss` for progress lines.
pub(crate) fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!("{:02}:{:02}", seconds / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{format_duration, parse_duration, parse_rfc3339_nanos};

    #[test]
    fn rfc3339_timestamps_become_unix_nanoseconds() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("2024-02-29T12:00:00.123456789Z"),
            Some(1_709_208_000_123_456_789)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-02-29T13:00:00.5+01:00"),
            Some(1_709_208_000_500_000_000)
        );
        assert_eq!(parse_rfc3339_nanos("yesterday"), None);
    }

    #[test]
    fn durations_parse_in_the_units_the_cli_accepts() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("10 parsecs").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
    }
}
