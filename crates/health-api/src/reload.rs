//! What a configuration reload may change in a running health API: the thresholds of the
//! status rules. The listen address and the connection limits take effect at the next start.

use tokio::sync::watch;

use crate::HealthConfig;

impl HealthConfig {
    /// The keys of `[health]` a running API applies when the configuration is reloaded.
    pub const LIVE_KEYS: &'static [&'static str] =
        &["docker_unreachable_grace", "sink_failure_window"];

    /// These (running) settings with the [live keys](HealthConfig::LIVE_KEYS) taken from `next`.
    #[must_use]
    pub fn with_live_settings(&self, next: &HealthConfig) -> HealthConfig {
        HealthConfig {
            docker_unreachable_grace: next.docker_unreachable_grace,
            sink_failure_window: next.sink_failure_window,
            ..self.clone()
        }
    }
}

/// Changes the live settings of a running [`HealthApi`](crate::HealthApi); from
/// [`HealthApi::reloader`](crate::HealthApi::reloader). The next `/health` uses them.
#[derive(Debug, Clone)]
pub struct HealthReloader {
    pub(crate) config_tx: watch::Sender<HealthConfig>,
}

impl HealthReloader {
    /// Applies `next`'s live keys (the others are ignored); returns whether anything changed.
    pub fn apply(&self, next: &HealthConfig) -> bool {
        self.config_tx.send_if_modified(|running| {
            let updated = running.with_live_settings(next);
            let changed = updated != *running;
            *running = updated;
            changed
        })
    }
}
