//! `SIGHUP` (`systemctl reload`, `docker kill -s HUP`): read the configuration again, check it
//! completely, apply what can change while running.
//!
//! The configuration is loaded exactly as at start: the same file (`--config` or
//! `$LOG_CAPTURER_CONFIG`), the environment the process started with, the same flags (flags >
//! environment > file > defaults), and the same validation, so an invalid file is refused with
//! the message it would get at start, naming the key; the running configuration is kept and
//! `log_capturer_config_reloads_total{result="error"}` counts it.
//!
//! A valid file is applied in this order, the only step that can still fail first:
//!
//! 1. the sinks ([`sink_pipeline::PipelineReloader`]): new ones are opened before anything
//!    changes, so a sink that cannot open refuses the whole reload;
//! 2. the container filters ([`docker_source::SourceReloader`]);
//! 3. the health thresholds ([`health_api::HealthReloader`]).
//!
//! Keys that only take effect at a restart ([`diff`]) are named in a warning each, and their
//! running values kept.

mod diff;

use docker_source::SourceReloader;
use health_api::HealthReloader;
use sink_pipeline::{PipelineReloader, SinkChanges};
use tokio::signal::unix::Signal;
use tracing::{debug, error, info, warn};

use crate::{
    cli::Cli,
    config::{Config, ConfigError},
};

/// `log_capturer_config_reloads_total{result}`: reloads applied (`success`) or refused
/// (`error`).
pub(crate) const RELOADS_TOTAL: &str = "log_capturer_config_reloads_total";

/// What a reload reads the configuration from: the command line and the environment of the
/// running process, as they were at start.
#[derive(Debug)]
pub(crate) struct Inputs {
    pub(crate) cli: Cli,
    pub(crate) env: Vec<(String, String)>,
}

/// Applies reloads to the running components.
#[derive(Debug)]
pub(crate) struct Reloader {
    inputs: Inputs,
    /// The configuration in effect: the start's, with the live keys of every applied reload.
    running: Config,
    source: SourceReloader,
    pipeline: PipelineReloader,
    health: HealthReloader,
}

/// What one reload changed.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The live keys that changed.
    pub(crate) live: Vec<String>,
    /// The restart-only keys that differ (kept at their running values).
    pub(crate) restart_only: Vec<String>,
    pub(crate) sinks: SinkChanges,
}

impl Reloader {
    /// Publishes both results of the reload counter at zero.
    pub(crate) fn new(
        inputs: Inputs,
        running: Config,
        source: SourceReloader,
        pipeline: PipelineReloader,
        health: HealthReloader,
    ) -> Reloader {
        for result in ["success", "error"] {
            ::metrics::counter!(RELOADS_TOTAL, "result" => result).increment(0);
        }
        debug!(live_keys = ?diff::live_keys(), "SIGHUP reloads the configuration");
        Reloader {
            inputs,
            running,
            source,
            pipeline,
            health,
        }
    }

    /// Reloads on every `SIGHUP`, one at a time. Never returns: it ends when dropped (at
    /// shutdown; a reload in progress is abandoned with the rest).
    pub(crate) async fn run(mut self, mut hangups: Signal) {
        while hangups.recv().await.is_some() {
            info!(signal = "SIGHUP", "reloading the configuration");
            // Logged and counted inside, success or not.
            let _ = self.reload().await;
        }
        // The signal driver is gone (the runtime is shutting down): nothing more to reload.
        std::future::pending::<()>().await;
    }

    /// Reads, checks and applies the configuration once, logging and counting the outcome.
    pub(crate) async fn reload(&mut self) -> Result<Applied, ConfigError> {
        let outcome = self.try_reload().await;
        match &outcome {
            Ok(applied) => {
                ::metrics::counter!(RELOADS_TOTAL, "result" => "success").increment(1);
                info!(
                    changed = ?applied.live,
                    sinks_added = ?applied.sinks.added,
                    sinks_replaced = ?applied.sinks.replaced,
                    sinks_removed = ?applied.sinks.removed,
                    restart_pending = ?applied.restart_only,
                    "configuration reloaded"
                );
            }
            Err(refused) => {
                ::metrics::counter!(RELOADS_TOTAL, "result" => "error").increment(1);
                error!(
                    key = %refused.key,
                    error = %refused,
                    "configuration reload refused; the running configuration is kept"
                );
            }
        }
        outcome
    }

    async fn try_reload(&mut self) -> Result<Applied, ConfigError> {
        let mut next = Config::load(&self.inputs.cli, self.inputs.env.iter().cloned())?;
        // The running data dir was made absolute when it was locked; the file may name the same
        // directory relatively, which is no change.
        if std::fs::canonicalize(&next.data_dir).is_ok_and(|dir| dir == self.running.data_dir) {
            next.data_dir = self.running.data_dir.clone();
        }
        let applied = diff::with_live_settings(&self.running, &next);
        let restart_only = diff::changed_keys(&applied, &next);
        let live = diff::changed_keys(&self.running, &applied);
        // The running data dir places the default sink, since `data_dir` is restart-only.
        let sinks = self
            .pipeline
            .reconfigure(applied.effective_sinks())
            .await
            .map_err(|error| ConfigError {
                key: "sinks".to_owned(),
                message: capture_core::ErrorChain(&error).to_string(),
            })?;
        // Checked by `Config::load` already; a failure here would leave the filters as they are.
        self.source
            .apply(&applied.docker)
            .map_err(|error| ConfigError {
                key: "docker".to_owned(),
                message: capture_core::ErrorChain(&error).to_string(),
            })?;
        self.health.apply(&applied.health);
        self.running = applied;
        for key in &restart_only {
            warn!(key = %key, "this setting takes effect at the next restart; the running value is kept");
        }
        Ok(Applied {
            live,
            restart_only,
            sinks,
        })
    }
}

#[cfg(test)]
mod tests;
