//! What a configuration reload may change in a running source, and the handle that changes it.
//!
//! The live keys of `[docker]` are [`DockerConfig::LIVE_KEYS`]: the container filters. Every
//! other key takes effect at the next start. A [`SourceReloader`] sends new settings on a `watch`
//! channel; the discovery loop applies them (`source/reload.rs`): containers that no longer match
//! are released (their task reads what Docker has and completes), running containers that now
//! match are monitored from the moment the new filters took effect.

use tokio::sync::watch;

use crate::{DockerConfig, Result, filter::ContainerFilter};

impl DockerConfig {
    /// The keys of `[docker]` a running source applies when the configuration is reloaded.
    pub const LIVE_KEYS: &'static [&'static str] = DockerConfig::FILTER_KEYS;

    /// These (running) settings with the [live keys](DockerConfig::LIVE_KEYS) taken from `next`:
    /// what a running source applies of `next`.
    #[must_use]
    pub fn with_live_settings(&self, next: &DockerConfig) -> DockerConfig {
        DockerConfig {
            include_names: next.include_names.clone(),
            exclude_names: next.exclude_names.clone(),
            include_labels: next.include_labels.clone(),
            exclude_labels: next.exclude_labels.clone(),
            include_images: next.include_images.clone(),
            exclude_images: next.exclude_images.clone(),
            ..self.clone()
        }
    }
}

/// Changes the live settings of a running [`DockerSource`](crate::DockerSource): get it with
/// [`DockerSource::reloader`](crate::DockerSource::reloader) before `run`.
#[derive(Debug, Clone)]
pub struct SourceReloader {
    pub(crate) settings_tx: watch::Sender<DockerConfig>,
}

impl SourceReloader {
    /// Checks `next`'s live keys and hands them to the source, which applies them
    /// asynchronously. Returns whether anything changed. Keys that are not live are ignored (the
    /// caller warns about them).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) or [`Error::Glob`](crate::Error::Glob) for a
    /// filter that does not compile; nothing is changed then.
    pub fn apply(&self, next: &DockerConfig) -> Result<bool> {
        ContainerFilter::new(next)?;
        let changed = self.settings_tx.send_if_modified(|running| {
            let updated = running.with_live_settings(next);
            if updated == *running {
                return false;
            }
            *running = updated;
            true
        });
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of `[docker]`, as the configuration file spells it.
    fn keys(config: &DockerConfig) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(config).unwrap() {
            serde_json::Value::Object(map) => map,
            other => panic!("not a table: {other}"),
        }
    }

    #[test]
    fn exactly_the_live_keys_are_taken_from_the_next_settings() {
        let running = DockerConfig::default();
        let next = DockerConfig {
            host: Some("tcp://127.0.0.1:2375".into()),
            include_names: vec!["web-*".into()],
            exclude_names: vec!["*-debug".into()],
            include_labels: vec!["team=web".into()],
            exclude_labels: vec!["noisy".into()],
            include_images: vec!["nginx:*".into()],
            exclude_images: vec!["busybox:*".into()],
            stream_threads: 4,
            batch_max_lines: 7,
            ..DockerConfig::default()
        };
        let applied = keys(&running.with_live_settings(&next));
        let (running, next) = (keys(&running), keys(&next));
        for (key, value) in &applied {
            let expected = if DockerConfig::LIVE_KEYS.contains(&key.as_str()) {
                &next[key]
            } else {
                &running[key]
            };
            assert_eq!(value, expected, "docker.{key}");
        }
        for key in DockerConfig::LIVE_KEYS {
            assert!(applied.contains_key(*key), "docker.{key} is not a key");
            assert_ne!(
                running[*key], next[*key],
                "the test must change docker.{key}"
            );
        }
    }

    #[test]
    fn the_reloader_refuses_bad_filters_and_reports_changes() {
        let (settings_tx, settings_rx) = watch::channel(DockerConfig::default());
        let reloader = SourceReloader { settings_tx };
        let bad = DockerConfig {
            include_names: vec!["[".into()],
            ..DockerConfig::default()
        };
        assert!(reloader.apply(&bad).is_err());
        assert!(!settings_rx.has_changed().unwrap());
        let restart_only = DockerConfig {
            stream_threads: 8,
            ..DockerConfig::default()
        };
        assert!(!reloader.apply(&restart_only).unwrap(), "not a live key");
        let filtered = DockerConfig {
            exclude_names: vec!["db-*".into()],
            ..DockerConfig::default()
        };
        assert!(reloader.apply(&filtered).unwrap());
        assert_eq!(settings_rx.borrow().exclude_names, ["db-*"]);
        assert_eq!(settings_rx.borrow().stream_threads, 1);
    }
}
