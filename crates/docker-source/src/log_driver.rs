//! Whether a container's log driver can be read back through `/containers/{id}/logs`.
//!
//! Discovery asks before it starts a task, so a container whose logs cannot be read by design is
//! listed in `/health` under `unreadable` instead of becoming a task that fails.
//!
//! What Docker does (checked against Docker 20.10):
//! - `none` keeps nothing: the logs endpoint answers 501, whatever the options.
//! - `json-file`, `local` and `journald` read their own logs.
//! - The built-in drivers that only send (`syslog`, `gelf`, `fluentd`, `awslogs`, `splunk`,
//!   `gcplogs`, `logentries`, `etwlogs`) are read from Docker's *dual logging* cache, which is on
//!   unless the container's `cache-disabled` log option is true. The daemon's own `log-opts`
//!   `cache-disabled` is copied into every container's options when it is created, so the
//!   options `inspect` shows are the ones in force.
//! - A plugin driver may read its own logs, and is cached otherwise; with the cache off there is
//!   no way to ask, so the stream is tried: a 501 then is a counted failure, as for any container
//!   that was expected to be readable.

use std::collections::HashMap;

use bollard::models::ContainerInspectResponse;
use capture_core::status::UnreadableReason;

/// The built-in drivers that cannot read back what they send: readable only through the cache.
const SEND_ONLY_DRIVERS: [&str; 8] = [
    "syslog",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "gcplogs",
    "logentries",
    "etwlogs",
];

/// The log option that turns Docker's dual logging cache off.
const CACHE_DISABLED_OPTION: &str = "cache-disabled";

/// A container whose logs cannot be read by design: its driver and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable {
    pub(crate) driver: String,
    pub(crate) reason: UnreadableReason,
}

/// Why the inspected container's logs cannot be read, or `None` if they are expected to be.
pub(crate) fn unreadable(response: &ContainerInspectResponse) -> Option<Unreadable> {
    let log_config = response.host_config.as_ref()?.log_config.as_ref()?;
    let driver = log_config.typ.as_deref()?;
    let reason = reason(driver, log_config.config.as_ref())?;
    Some(Unreadable {
        driver: driver.to_owned(),
        reason,
    })
}

fn reason(driver: &str, options: Option<&HashMap<String, String>>) -> Option<UnreadableReason> {
    if driver == "none" {
        return Some(UnreadableReason::LogDriverNone);
    }
    let cache_disabled = options
        .and_then(|options| options.get(CACHE_DISABLED_OPTION))
        .is_some_and(|value| parse_go_bool(value) == Some(true));
    (SEND_ONLY_DRIVERS.contains(&driver) && cache_disabled)
        .then_some(UnreadableReason::DualLoggingDisabled)
}

/// Go's `strconv.ParseBool`, which Docker uses for the option: anything else is refused by the
/// daemon when the container is created, so `None` never hides a disabled cache.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{HostConfig, HostConfigLogConfig};

    use super::*;

    fn inspected(driver: Option<&str>, options: &[(&str, &str)]) -> ContainerInspectResponse {
        let config = options
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        ContainerInspectResponse {
            host_config: Some(HostConfig {
                log_config: Some(HostConfigLogConfig {
                    typ: driver.map(str::to_owned),
                    config: Some(config),
                }),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    fn reason_of(driver: &str, options: &[(&str, &str)]) -> Option<UnreadableReason> {
        unreadable(&inspected(Some(driver), options)).map(|found| found.reason)
    }

    #[test]
    fn none_is_unreadable_whatever_its_options() {
        let found = unreadable(&inspected(Some("none"), &[])).expect("unreadable");
        assert_eq!(found.driver, "none");
        assert_eq!(found.reason, UnreadableReason::LogDriverNone);
        assert_eq!(
            reason_of("none", &[("cache-disabled", "false")]),
            Some(UnreadableReason::LogDriverNone)
        );
    }

    #[test]
    fn drivers_that_read_their_own_logs_are_readable_even_without_the_cache() {
        for driver in ["json-file", "local", "journald"] {
            assert_eq!(reason_of(driver, &[]), None, "{driver}");
            assert_eq!(reason_of(driver, &[("cache-disabled", "true")]), None);
        }
    }

    #[test]
    fn send_only_drivers_are_readable_only_through_the_cache() {
        for driver in SEND_ONLY_DRIVERS {
            assert_eq!(reason_of(driver, &[]), None, "{driver}: cached by default");
            assert_eq!(reason_of(driver, &[("cache-disabled", "false")]), None);
            for disabled in ["true", "1", "t", "TRUE", "True"] {
                assert_eq!(
                    reason_of(driver, &[("cache-disabled", disabled)]),
                    Some(UnreadableReason::DualLoggingDisabled),
                    "{driver} cache-disabled={disabled}"
                );
            }
        }
    }

    #[test]
    fn plugins_and_unknown_shapes_are_tried() {
        // A plugin may read its own logs; only the stream can tell.
        assert_eq!(
            reason_of(
                "grafana/loki-docker-driver:latest",
                &[("cache-disabled", "true")]
            ),
            None
        );
        // Docker refuses an option it cannot parse at creation; never guess "disabled".
        assert_eq!(reason_of("syslog", &[("cache-disabled", "yes")]), None);
        assert_eq!(unreadable(&inspected(None, &[])), None);
        assert_eq!(unreadable(&ContainerInspectResponse::default()), None);
    }
}
