//! Which keys a reload applies live, and which differences wait for a restart.
//!
//! The live keys are each crate's own list ([`docker_source::DockerConfig::LIVE_KEYS`],
//! [`health_api::HealthConfig::LIVE_KEYS`]) plus the whole `[[sinks]]` list. Every other key,
//! including any key added later, is restart-only by default: the differences are found by
//! comparing the configurations as TOML, key by key, so none can be missed.

use toml::Value;

use crate::config::Config;

/// The top-level key of the sink list, live as a whole.
const SINKS: &str = "sinks";

/// Every live key, as `section.key` (for documentation and tests).
pub(crate) fn live_keys() -> Vec<String> {
    let docker = docker_source::DockerConfig::LIVE_KEYS
        .iter()
        .map(|key| format!("docker.{key}"));
    let health = health_api::HealthConfig::LIVE_KEYS
        .iter()
        .map(|key| format!("health.{key}"));
    docker
        .chain(health)
        .chain(std::iter::once(SINKS.to_owned()))
        .collect()
}

/// `running` with the live keys of `next`: the configuration a reload puts in effect.
pub(crate) fn with_live_settings(running: &Config, next: &Config) -> Config {
    let mut applied = running.clone();
    applied.docker = running.docker.with_live_settings(&next.docker);
    applied.health = running.health.with_live_settings(&next.health);
    applied.sinks = next.sinks.clone();
    applied
}

/// The keys whose values differ, as `section.key` (or `sinks`), in a stable order.
pub(crate) fn changed_keys(before: &Config, after: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    match (Value::try_from(before), Value::try_from(after)) {
        (Ok(before), Ok(after)) => compare("", &before, &after, &mut changed),
        // Rendering plain settings cannot fail in practice; if it does, say so rather than
        // claim nothing changed.
        _ => changed.push("<the configuration cannot be compared>".to_owned()),
    }
    changed
}

/// Tables are compared key by key (a key on one side only differs); anything else, arrays
/// included, as a whole.
fn compare(path: &str, before: &Value, after: &Value, changed: &mut Vec<String>) {
    match (before, after) {
        (Value::Table(before), Value::Table(after)) => {
            let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let nested = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (before.get(key), after.get(key)) {
                    (Some(before), Some(after)) => compare(&nested, before, after, changed),
                    _ => changed.push(nested),
                }
            }
        }
        _ if before != after => changed.push(path.to_owned()),
        _ => {}
    }
}
