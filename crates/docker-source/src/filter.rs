//! Which containers are monitored: name, label and image filters, and the agent's own container.

use std::{collections::BTreeMap, fs};

use capture_core::ContainerInfo;
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{DockerConfig, Error, Result};

/// `key` or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelMatch {
    key: String,
    value: Option<String>,
}

impl LabelMatch {
    pub(crate) fn parse(key: &'static str, text: &str) -> Result<LabelMatch> {
        let (label, value) = match text.split_once('=') {
            Some((label, value)) => (label, Some(value.to_owned())),
            None => (text, None),
        };
        if label.is_empty() {
            return Err(Error::config(
                key,
                format!("{text:?}: a label filter is `key` or `key=value`"),
            ));
        }
        Ok(LabelMatch {
            key: label.to_owned(),
            value,
        })
    }

    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(actual), Some(expected)) => actual == expected,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The compiled filters of the `[docker]` table.
#[derive(Debug, Clone)]
pub(crate) struct ContainerFilter {
    include_names: Option<GlobSet>,
    exclude_names: Option<GlobSet>,
    include_images: Option<GlobSet>,
    exclude_images: Option<GlobSet>,
    include_labels: Vec<LabelMatch>,
    exclude_labels: Vec<LabelMatch>,
}

/// Compiles `patterns` (of the setting `key`) into one set; `None` when there is none.
pub(crate) fn globs(key: &'static str, patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|source| Error::Glob {
            key,
            pattern: pattern.clone(),
            source,
        })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|source| Error::Glob {
        key,
        pattern: patterns.join(", "),
        source,
    })
}

impl ContainerFilter {
    pub(crate) fn new(config: &DockerConfig) -> Result<ContainerFilter> {
        let labels = |key, entries: &[String]| {
            entries
                .iter()
                .map(|entry| LabelMatch::parse(key, entry))
                .collect::<Result<Vec<_>>>()
        };
        Ok(ContainerFilter {
            include_names: globs("include_names", &config.include_names)?,
            exclude_names: globs("exclude_names", &config.exclude_names)?,
            include_images: globs("include_images", &config.include_images)?,
            exclude_images: globs("exclude_images", &config.exclude_images)?,
            include_labels: labels("include_labels", &config.include_labels)?,
            exclude_labels: labels("exclude_labels", &config.exclude_labels)?,
        })
    }

    /// Whether the container's logs are captured: it matches every include filter that is set
    /// and no exclude filter.
    pub(crate) fn accepts(&self, info: &ContainerInfo) -> bool {
        let included =
            |set: &Option<GlobSet>, text: &str| set.as_ref().is_none_or(|set| set.is_match(text));
        let excluded =
            |set: &Option<GlobSet>, text: &str| set.as_ref().is_some_and(|set| set.is_match(text));
        included(&self.include_names, &info.name)
            && !excluded(&self.exclude_names, &info.name)
            && included(&self.include_images, &info.image)
            && !excluded(&self.exclude_images, &info.image)
            && self.include_labels.iter().all(|m| m.matches(&info.labels))
            && !self.exclude_labels.iter().any(|m| m.matches(&info.labels))
    }

    /// The same filters without the image keys: what a container listing can decide on. A
    /// listing's image is not trusted (Docker shows the image id once the tag points
    /// elsewhere), so the image keys are left to the inspection.
    pub(crate) fn names_and_labels(&self) -> ContainerFilter {
        ContainerFilter {
            include_images: None,
            exclude_images: None,
            ..self.clone()
        }
    }
}

impl DockerConfig {
    /// The effective container filter in words, one `# ` comment line per filter, for
    /// `--check-config` (the output stays valid TOML).
    pub fn filter_summary(&self) -> String {
        // What an empty list means, and what a non-empty one means beyond its entries.
        let list = |entries: &[String], empty: &str, rule: &str| {
            if entries.is_empty() {
                return empty.to_owned();
            }
            let quoted: Vec<String> = entries.iter().map(|entry| format!("{entry:?}")).collect();
            format!("{}{rule}", quoted.join(", "))
        };
        let rows = [
            (
                "include_names",
                list(&self.include_names, "(every name)", ""),
            ),
            ("exclude_names", list(&self.exclude_names, "(none)", "")),
            (
                "include_images",
                list(&self.include_images, "(every image)", ""),
            ),
            ("exclude_images", list(&self.exclude_images, "(none)", "")),
            (
                "include_labels",
                list(&self.include_labels, "(any labels)", " (all must match)"),
            ),
            (
                "exclude_labels",
                list(&self.exclude_labels, "(none)", " (any match excludes)"),
            ),
        ];
        let mut text = String::from(
            "# Containers captured: every include filter matches and no exclude filter does\n\
             # (names and images are globs; labels are `key` or `key=value`; the agent's own\n\
             # container is never captured).\n",
        );
        for (key, value) in rows {
            text.push_str(&format!("#   docker.{key:<15} {value}\n"));
        }
        text
    }
}

/// How the agent recognises its own container, so it never captures its own logs (which would
/// feed back: every line it logs about a line would be captured as a line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SelfContainer {
    /// The full id, from the bind mounts Docker sets up (`/etc/hostname`...) or the cgroup path.
    full_id: Option<String>,
    /// The host name, when it looks like a short id and the process runs in a container.
    short_id: Option<String>,
}

impl SelfContainer {
    /// Looks at `/proc/self/mountinfo`, `/proc/self/cgroup`, `/.dockerenv` and `$HOSTNAME`.
    pub(crate) fn detect() -> SelfContainer {
        let full_id = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| id_from_mountinfo(&text))
            .or_else(|| {
                fs::read_to_string("/proc/self/cgroup")
                    .ok()
                    .and_then(|text| id_from_cgroup(&text))
            });
        let short_id = if full_id.is_none() && fs::metadata("/.dockerenv").is_ok() {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|host| host.len() == 12 && host.bytes().all(|b| b.is_ascii_hexdigit()))
        } else {
            None
        };
        SelfContainer { full_id, short_id }
    }

    /// Whether `id` (a full id) is the agent's own container.
    pub(crate) fn is(&self, id: &str) -> bool {
        self.full_id.as_deref() == Some(id)
            || self
                .short_id
                .as_deref()
                .is_some_and(|short| id.starts_with(short))
    }

    /// The detected id, for logging.
    pub(crate) fn describe(&self) -> Option<&str> {
        self.full_id.as_deref().or(self.short_id.as_deref())
    }
}

/// The 64-hex id that follows `marker` in `text`, if any.
fn hex_id_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let candidate = &rest[at + marker.len()..];
        if candidate.len() >= 64 && candidate.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit) {
            let end_ok = candidate
                .as_bytes()
                .get(64)
                .is_none_or(|b| !b.is_ascii_hexdigit());
            if end_ok {
                return Some(&candidate[..64]);
            }
        }
        rest = &rest[at + marker.len()..];
    }
    None
}

/// Docker bind-mounts `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` from
/// `.../containers/<id>/` into a container. Only those mount points count: the host's own
/// mount table lists other containers' paths (their shm mounts), which must not match.
fn id_from_mountinfo(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        if !matches!(
            mount_point,
            "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf"
        ) {
            return None;
        }
        hex_id_after(root, "/containers/").map(str::to_owned)
    })
}

/// cgroup v1 paths name the container: `/docker/<id>` or `docker-<id>.scope`.
fn id_from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        hex_id_after(line, "/docker/")
            .or_else(|| hex_id_after(line, "docker-"))
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_core::ContainerId;

    fn info(name: &str, image: &str, labels: &[(&str, &str)]) -> ContainerInfo {
        let mut info = ContainerInfo::new(ContainerId::new("ab".repeat(32)).unwrap(), name, image);
        info.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        info
    }

    fn filter(edit: impl FnOnce(&mut DockerConfig)) -> ContainerFilter {
        let mut config = DockerConfig::default();
        edit(&mut config);
        ContainerFilter::new(&config).unwrap()
    }

    #[test]
    fn empty_filters_accept_everything() {
        assert!(filter(|_| {}).accepts(&info("web", "nginx", &[])));
    }

    #[test]
    fn names_images_and_labels_filter() {
        let f = filter(|c| {
            c.include_names = vec!["web-*".into()];
            c.exclude_names = vec!["*-debug".into()];
            c.include_images = vec!["nginx:*".into()];
            c.include_labels = vec!["team=web".into(), "capture".into()];
            c.exclude_labels = vec!["noisy=true".into()];
        });
        let good = [("team", "web"), ("capture", "")];
        assert!(f.accepts(&info("web-1", "nginx:1.27", &good)));
        assert!(!f.accepts(&info("db-1", "nginx:1.27", &good)));
        assert!(!f.accepts(&info("web-debug", "nginx:1.27", &good)));
        assert!(!f.accepts(&info("web-1", "redis:7", &good)));
        assert!(!f.accepts(&info("web-1", "nginx:1.27", &[("team", "web")])));
        assert!(!f.accepts(&info(
            "web-1",
            "nginx:1.27",
            &[("team", "db"), ("capture", "")]
        )));
        let noisy = [("team", "web"), ("capture", ""), ("noisy", "true")];
        assert!(!f.accepts(&info("web-1", "nginx:1.27", &noisy)));
    }

    #[test]
    fn excluded_images_are_not_captured() {
        let f = filter(|c| c.exclude_images = vec!["busybox*".into(), "*/debug:*".into()]);
        assert!(!f.accepts(&info("a", "busybox:1.36", &[])));
        assert!(!f.accepts(&info("b", "busybox", &[])));
        assert!(!f.accepts(&info("c", "registry.local/debug:7", &[])));
        assert!(f.accepts(&info("d", "nginx:1.27", &[])));
    }

    #[test]
    fn an_exclude_beats_an_include_of_the_same_kind() {
        let f = filter(|c| {
            c.include_images = vec!["nginx:*".into()];
            c.exclude_images = vec!["nginx:*-debug".into()];
            c.include_names = vec!["web-*".into()];
            c.exclude_names = vec!["web-canary".into()];
            c.include_labels = vec!["team".into()];
            c.exclude_labels = vec!["team=ops".into()];
        });
        let web = [("team", "web")];
        assert!(f.accepts(&info("web-1", "nginx:1.27", &web)));
        assert!(!f.accepts(&info("web-1", "nginx:1.27-debug", &web)));
        assert!(!f.accepts(&info("web-canary", "nginx:1.27", &web)));
        assert!(!f.accepts(&info("web-1", "nginx:1.27", &[("team", "ops")])));
    }

    #[test]
    fn the_summary_names_every_filter_and_what_empty_means() {
        let mut config = DockerConfig::default();
        let empty = config.filter_summary();
        for key in [
            "include_names",
            "exclude_names",
            "include_images",
            "exclude_images",
            "include_labels",
            "exclude_labels",
        ] {
            assert!(empty.contains(&format!("docker.{key}")), "{empty}");
        }
        assert!(
            empty.contains("(every name)") && empty.contains("(every image)"),
            "{empty}"
        );
        assert!(empty.lines().all(|line| line.starts_with('#')), "{empty}");
        config.exclude_images = vec!["busybox*".into()];
        config.include_labels = vec!["team=web".into(), "tier".into()];
        let set = config.filter_summary();
        assert!(set.contains("\"busybox*\""), "{set}");
        assert!(
            set.contains("\"team=web\", \"tier\" (all must match)"),
            "{set}"
        );
    }

    #[test]
    fn bad_filters_are_configuration_errors() {
        let config = DockerConfig {
            include_names: vec!["[".into()],
            ..DockerConfig::default()
        };
        assert!(matches!(
            ContainerFilter::new(&config),
            Err(Error::Glob { .. })
        ));
        let config = DockerConfig {
            exclude_images: vec!["a{b".into()],
            ..DockerConfig::default()
        };
        assert!(matches!(
            ContainerFilter::new(&config),
            Err(Error::Glob {
                key: "exclude_images",
                ..
            })
        ));
        let config = DockerConfig {
            include_labels: vec!["=x".into()],
            ..DockerConfig::default()
        };
        assert!(matches!(
            ContainerFilter::new(&config),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn own_container_is_found_in_mountinfo_but_not_from_other_containers_mounts() {
        let id = "0123456789abcdef".repeat(4);
        let inside = format!(
            "605 600 8:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(id_from_mountinfo(&inside).as_deref(), Some(id.as_str()));
        let host =
            format!("99 30 0:50 / /var/lib/docker/containers/{id}/mounts/shm rw - tmpfs shm rw\n");
        assert_eq!(id_from_mountinfo(&host), None);
        let cgroup = format!("12:memory:/docker/{id}\n");
        assert_eq!(id_from_cgroup(&cgroup).as_deref(), Some(id.as_str()));
        assert_eq!(id_from_cgroup("0::/user.slice/session-1.scope\n"), None);
        let me = SelfContainer {
            full_id: None,
            short_id: Some(id[..12].to_owned()),
        };
        assert!(me.is(&id));
        assert!(!me.is(&"f".repeat(64)));
    }
}
