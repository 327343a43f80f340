//! Which files hold a container's log, from its inspection, and whether the agent can read
//! them.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use bollard::models::ContainerInspectResponse;
use tokio::sync::Notify;

use super::{Driver, tail::LogFiles};

/// A container's log files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileTarget {
    pub(crate) driver: Driver,
    pub(crate) files: LogFiles,
    /// Whether Docker may truncate the live file in place (`max-size` set and `max-file` below
    /// 2): only then is the start of the file compared on every read.
    pub(crate) may_truncate: bool,
    /// Docker's `max-size` in bytes (0: no rotation), the size counted for each rotated file
    /// lost before it was seen.
    pub(crate) rotated_size: u64,
}

impl FileTarget {
    /// The files of an inspected container whose driver writes files: `json-file` at its
    /// `LogPath`, `local` in `<container dir>/local-logs/` (Docker does not publish that path;
    /// the container directory is the one holding its `hostname` file).
    pub(crate) fn of(response: &ContainerInspectResponse) -> Option<FileTarget> {
        let log_config = response.host_config.as_ref()?.log_config.as_ref()?;
        let driver = Driver::from_name(log_config.typ.as_deref()?)?;
        let option = |key: &str| {
            log_config
                .config
                .as_ref()
                .and_then(|config| config.get(key))
                .map(String::as_str)
        };
        let (live, default_max_file) = match driver {
            Driver::JsonFile => (PathBuf::from(response.log_path.as_deref()?), 1),
            Driver::Local => {
                let container_dir = Path::new(response.hostname_path.as_deref()?).parent()?;
                (container_dir.join("local-logs").join("container.log"), 5)
            }
        };
        if live.as_os_str().is_empty() {
            return None;
        }
        let max_file = option("max-file")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(default_max_file);
        let rotated_size = match (driver, option("max-size")) {
            (_, Some(size)) => size_in_bytes(size).unwrap_or(0),
            (Driver::JsonFile, None) => 0,
            (Driver::Local, None) => LOCAL_DEFAULT_MAX_SIZE,
        };
        let has_max_size = match driver {
            Driver::JsonFile => option("max-size").is_some_and(|size| size != "-1"),
            Driver::Local => true,
        };
        Some(FileTarget {
            driver,
            files: LogFiles::new(&live, max_file),
            may_truncate: has_max_size && max_file < 2,
            rotated_size,
        })
    }

    /// Whether the agent can list the directory of the log files (and so open them: Docker
    /// creates them readable by the directory's owner and group).
    pub(crate) fn is_readable(&self) -> bool {
        std::fs::read_dir(self.files.dir()).is_ok()
    }
}

/// The `local` driver's `max-size` when none is set (20 MB).
const LOCAL_DEFAULT_MAX_SIZE: u64 = 20 * 1000 * 1000;

/// A size as Docker's log options write it (`10m`, `1.5g`, `512k`, `100`, an optional
/// `b`/`ib`): decimal multiples, as Docker reads them (`units.FromHumanSize`); `None` if it
/// is not one (or is `-1`, no limit).
fn size_in_bytes(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let text = text.strip_suffix('i').unwrap_or(text);
    let (number, multiplier) = match text.char_indices().last()? {
        (at, unit @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            let power = "kmgtp".find(unit)? as u32 + 1;
            (&text[..at], 1000u64.checked_pow(power)?)
        }
        _ => (text, 1),
    };
    let number: f64 = number.trim().parse().ok()?;
    (number >= 0.0).then_some((number * multiplier as f64) as u64)
}

/// What the source tells a file follower about its container: it may have stopped (a `die`
/// event), or it was removed (a `destroy`): read what is held to its end and finish.
#[derive(Debug, Default)]
pub(crate) struct FileSignal {
    notify: Notify,
    removed: AtomicBool,
}

impl FileSignal {
    /// The container stopped (or may have): the follower looks.
    pub(crate) fn stopped(&self) {
        self.notify.notify_one();
    }

    /// The container was removed: the follower reads what it holds and ends.
    pub(crate) fn removed(&self) {
        self.removed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Waits for the next signal (one sent while nobody waited is kept).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{HostConfig, HostConfigLogConfig};

    use super::*;

    fn inspected(driver: &str, options: &[(&str, &str)]) -> ContainerInspectResponse {
        ContainerInspectResponse {
            log_path: Some(if driver == "json-file" {
                "/var/lib/docker/containers/abc/abc-json.log".to_owned()
            } else {
                String::new()
            }),
            hostname_path: Some("/var/lib/docker/containers/abc/hostname".to_owned()),
            host_config: Some(HostConfig {
                log_config: Some(HostConfigLogConfig {
                    typ: Some(driver.to_owned()),
                    config: Some(
                        options
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect::<HashMap<_, _>>(),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn json_file_and_local_have_files_other_drivers_do_not() {
        let json = FileTarget::of(&inspected("json-file", &[])).unwrap();
        assert_eq!(json.driver, Driver::JsonFile);
        assert_eq!(
            json.files.live(),
            Path::new("/var/lib/docker/containers/abc/abc-json.log")
        );
        assert!(!json.may_truncate, "no max-size: the file only grows");
        let local = FileTarget::of(&inspected("local", &[])).unwrap();
        assert_eq!(
            local.files.live(),
            Path::new("/var/lib/docker/containers/abc/local-logs/container.log")
        );
        assert!(!local.may_truncate);
        for driver in ["journald", "none", "syslog", "fluentd"] {
            assert!(
                FileTarget::of(&inspected(driver, &[])).is_none(),
                "{driver}"
            );
        }
    }

    #[test]
    fn docker_sizes_are_read_as_decimal_multiples() {
        assert_eq!(size_in_bytes("1m"), Some(1_000_000));
        assert_eq!(size_in_bytes("10k"), Some(10_000));
        assert_eq!(size_in_bytes("1.5g"), Some(1_500_000_000));
        assert_eq!(size_in_bytes("100"), Some(100));
        assert_eq!(size_in_bytes("2MB"), Some(2_000_000));
        assert_eq!(size_in_bytes("-1"), None);
        assert_eq!(size_in_bytes("lots"), None);
        let rotating = inspected("json-file", &[("max-size", "1m"), ("max-file", "3")]);
        assert_eq!(FileTarget::of(&rotating).unwrap().rotated_size, 1_000_000);
        assert_eq!(
            FileTarget::of(&inspected("json-file", &[]))
                .unwrap()
                .rotated_size,
            0
        );
        assert_eq!(
            FileTarget::of(&inspected("local", &[]))
                .unwrap()
                .rotated_size,
            LOCAL_DEFAULT_MAX_SIZE
        );
    }

    #[test]
    fn only_a_size_limit_without_rotation_truncates_in_place() {
        let truncating = inspected("json-file", &[("max-size", "1m")]);
        assert!(FileTarget::of(&truncating).unwrap().may_truncate);
        let rotating = inspected("json-file", &[("max-size", "1m"), ("max-file", "3")]);
        assert!(!FileTarget::of(&rotating).unwrap().may_truncate);
        let local_one = inspected("local", &[("max-file", "1")]);
        assert!(FileTarget::of(&local_one).unwrap().may_truncate);
    }
}
