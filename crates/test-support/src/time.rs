//! Timestamps and durations for the harness: the wall clock in nanoseconds, the capturer's
//! RFC 3339 timestamps (parsed by `capture_core::time`, their one home), durations as the command
//! line gives them (`humantime`), and `mm:ss` for progress lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as i128)
}

/// Parses an RFC 3339 timestamp into nanoseconds since the Unix epoch; `None` when it is not one.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    capture_core::time::parse_rfc3339(text.as_bytes()).map(i128::from)
}

/// Parses a duration as the command line gives it: `90s`, `10m`, `1h`, `500ms`, `1m30s`, or a
/// bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    if text.is_empty() {
        bail!("an empty duration");
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .with_context(|| format!("{text:?} is not a duration"));
    }
    humantime::parse_duration(text)
        .with_context(|| format!("{text:?} is not a duration (try 90s, 10m, 1h)"))
}

/// Renders a duration the way [`parse_duration`] reads it, for passing on to the capturer.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// `mm:ss` for progress lines.
pub fn clock(duration: Duration) -> String {
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
        assert!(parse_duration("-3").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
    }
}
