//! The configuration: embedded defaults, a TOML file, `LOG_CAPTURER_<SECTION>_<KEY>` environment
//! overrides and flags, merged in that order of increasing precedence, then deserialised once so
//! that every error names the offending key.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::cli::Cli;

/// The prefix of environment overrides.
const ENV_PREFIX: &str = "LOG_CAPTURER_";

/// Top-level keys that are not sections (checked before splitting an environment name).
const TOP_LEVEL_KEYS: &[&str] = &["data_dir", "shutdown_grace"];

/// Sections that environment overrides may address.
const SECTIONS: &[&str] = &["docker", "supervisor", "health", "pipeline", "log"];

/// Keys whose value is a list; in the environment they are comma-separated. The container
/// filters are the only lists the overridable sections hold.
const LIST_KEYS: &[&str] = docker_source::DockerConfig::FILTER_KEYS;

/// Key names whose values are secrets, redacted by `--check-config`.
const SECRET_WORDS: &[&str] = &["password", "token", "secret"];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Checkpoints, disk buffers and the default file sink live here.
    #[serde(default = "default_data_dir")]
    pub(crate) data_dir: PathBuf,
    /// How long the ordered shutdown may take before what is left is cancelled.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub(crate) shutdown_grace: Duration,
    #[serde(default)]
    pub(crate) docker: docker_source::DockerConfig,
    #[serde(default)]
    pub(crate) supervisor: SupervisorSection,
    #[serde(default)]
    pub(crate) health: health_api::HealthConfig,
    #[serde(default)]
    pub(crate) pipeline: sink_pipeline::config::BatchConfig,
    /// None configured means one file sink at `<data_dir>/logs/containers.jsonl`.
    #[serde(default)]
    pub(crate) sinks: Vec<sink_pipeline::config::SinkConfig>,
    #[serde(default)]
    pub(crate) log: LogSection,
}

/// `[supervisor]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SupervisorSection {
    /// How often tasks heartbeat.
    #[serde(with = "humantime_serde")]
    pub(crate) heartbeat_interval: Duration,
    /// How long without a heartbeat before a task is declared dead.
    #[serde(with = "humantime_serde")]
    pub(crate) task_timeout: Duration,
}

impl Default for SupervisorSection {
    fn default() -> Self {
        SupervisorSection {
            heartbeat_interval: Duration::from_secs(30),
            task_timeout: Duration::from_secs(300),
        }
    }
}

/// `[log]`: the agent's own logs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    /// `text` or `json`.
    pub(crate) format: LogFormat,
    /// A tracing filter: `info`, `debug`, `log_capturer=debug,info`...
    pub(crate) level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// The format of the agent's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./log-capturer-data")
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// A configuration error: the process exits with code 64 (EX_USAGE) and this message.
#[derive(Debug)]
pub(crate) struct ConfigError {
    /// The key (`docker.read_from`), flag or file the error is about.
    pub(crate) key: String,
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration at `{}`: {}",
            self.key, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

fn error(key: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.to_string(),
    }
}

/// Parses `[[sinks]]` one entry at a time, by its `type`, so an error names the field
/// (`sinks[1].batch_size`): serde's internally tagged enums buffer their content and would
/// report only `sinks[1]`.
fn take_sinks(table: &mut Table) -> Result<Vec<sink_pipeline::config::SinkConfig>, ConfigError> {
    use sink_pipeline::config::SinkConfig;

    fn parse<T: serde::de::DeserializeOwned>(at: &str, entry: Table) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(Value::Table(entry)).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                at.to_owned()
            } else {
                format!("{at}.{path}")
            };
            error(key, e.inner())
        })
    }

    let Some(sinks) = table.remove("sinks") else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = sinks else {
        return Err(error(
            "sinks",
            format!(
                "expected an array of tables ([[sinks]]), found {}",
                sinks.type_str()
            ),
        ));
    };
    let mut parsed = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("sinks[{index}]");
        let Value::Table(mut entry) = entry else {
            return Err(error(
                at,
                format!("expected a table, found {}", entry.type_str()),
            ));
        };
        let kind = match entry.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(other) => {
                return Err(error(
                    format!("{at}.type"),
                    format!("expected a string, found {}", other.type_str()),
                ));
            }
            None => {
                return Err(error(
                    format!("{at}.type"),
                    "missing; expected one of `file`, `stdout`, `loki`, `otlp`",
                ));
            }
        };
        parsed.push(match kind.as_str() {
            "file" => SinkConfig::File(parse(&at, entry)?),
            "stdout" => SinkConfig::Stdout(parse(&at, entry)?),
            "loki" => SinkConfig::Loki(parse(&at, entry)?),
            "otlp" => SinkConfig::Otlp(parse(&at, entry)?),
            _ => {
                return Err(error(
                    format!("{at}.type"),
                    format!(
                        "unknown sink type `{kind}`; expected one of `file`, `stdout`, `loki`, `otlp`"
                    ),
                ));
            }
        });
    }
    Ok(parsed)
}

impl Config {
    /// Loads the configuration for `cli`, with `env` as the process environment.
    pub(crate) fn load(
        cli: &Cli,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match &cli.config {
            Some(path) => read_file(path)?,
            None => Table::new(),
        };
        apply_env(&mut table, env)?;
        apply_flags(&mut table, cli);
        let explicit_deadlines = DOCKER_DEADLINES.map(|key| is_set(&table, "docker", key));
        let sinks = take_sinks(&mut table)?;
        let mut config: Config = serde_path_to_error::deserialize(Value::Table(table))
            .map_err(|e| error(e.path().to_string(), e.inner()))?;
        config.sinks = sinks;
        config.fit_docker_deadlines(explicit_deadlines);
        config.validate()?;
        Ok(config)
    }

    /// The Docker source's own deadlines must fire before the supervisor's heartbeat timeout.
    /// Their defaults (60 s, 30 s) suit the default 5-minute timeout; when an operator shortens
    /// the timeout (`--task-timeout 3s`) without setting them, they shrink to half of it. Values
    /// set explicitly are kept, and validation names them if they do not fit.
    fn fit_docker_deadlines(&mut self, explicit: [bool; 2]) {
        let half = self.supervisor.task_timeout / 2;
        let [inactivity_set, request_set] = explicit;
        if !inactivity_set {
            self.docker.inactivity_timeout = self.docker.inactivity_timeout.min(half);
        }
        if !request_set {
            let floor = Duration::from_secs(1);
            self.docker.request_timeout = self.docker.request_timeout.min(half.max(floor));
        }
    }

    /// Checks the relations between keys that serde cannot.
    fn validate(&self) -> Result<(), ConfigError> {
        let supervisor = &self.supervisor;
        if supervisor.heartbeat_interval.is_zero() {
            return Err(error("supervisor.heartbeat_interval", "must be above zero"));
        }
        if supervisor.task_timeout <= supervisor.heartbeat_interval {
            return Err(error(
                "supervisor.task_timeout",
                format!(
                    "must be longer than supervisor.heartbeat_interval ({:?} <= {:?})",
                    supervisor.task_timeout, supervisor.heartbeat_interval
                ),
            ));
        }
        self.docker
            .validate(supervisor.task_timeout)
            .map_err(|e| match &e {
                docker_source::Error::Config { key, .. }
                | docker_source::Error::Glob { key, .. } => error(format!("docker.{key}"), e),
                // The cause (the regex crate's reason) is what the operator needs to fix it.
                docker_source::Error::Multiline { index, key, .. } => error(
                    format!("docker.multiline[{index}].{key}"),
                    capture_core::ErrorChain(&e),
                ),
                _ => error("docker", e),
            })?;
        self.health.validate().map_err(|e| match &e {
            health_api::Error::Config { key, .. } => error(format!("health.{key}"), e),
            _ => error("health", e),
        })?;
        Ok(())
    }

    /// The sinks to run: the configured ones, or the embedded default file sink.
    pub(crate) fn effective_sinks(&self) -> Vec<sink_pipeline::config::SinkConfig> {
        if self.sinks.is_empty() {
            vec![sink_pipeline::config::SinkConfig::File(
                sink_pipeline::config::FileSinkConfig::default_for(&self.data_dir),
            )]
        } else {
            self.sinks.clone()
        }
    }

    /// What `--check-config` prints: the effective container filter in words (as TOML
    /// comments), then the effective configuration.
    pub(crate) fn check_report(&self) -> String {
        format!(
            "{}\n{}",
            self.docker.filter_summary(),
            self.to_redacted_toml()
        )
    }

    /// The effective configuration as TOML, secrets redacted (for `--check-config`).
    pub(crate) fn to_redacted_toml(&self) -> String {
        let mut value = match Value::try_from(self) {
            Ok(value) => value,
            Err(e) => return format!("# cannot render the configuration: {e}\n"),
        };
        if let Value::Table(table) = &mut value
            && self.sinks.is_empty()
        {
            let sinks = Value::try_from(self.effective_sinks()).unwrap_or(Value::Array(vec![]));
            table.insert("sinks".to_owned(), sinks);
        }
        redact(&mut value);
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The Docker deadlines that [`Config::fit_docker_deadlines`] adjusts unless set explicitly.
const DOCKER_DEADLINES: [&str; 2] = ["inactivity_timeout", "request_timeout"];

fn is_set(table: &Table, section: &str, key: &str) -> bool {
    table
        .get(section)
        .and_then(Value::as_table)
        .is_some_and(|section| section.contains_key(key))
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| error("--config", format!("cannot read {}: {e}", path.display())))?;
    text.parse::<Table>()
        .map_err(|e| error(path.display().to_string(), e.to_string().trim_end()))
}

/// Applies `LOG_CAPTURER_<SECTION>_<KEY>` variables. `LOG_CAPTURER_CONFIG` names the file and is
/// handled by clap.
fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        if rest == "config" {
            continue;
        }
        let (section, key) = if TOP_LEVEL_KEYS.contains(&rest.as_str()) {
            (None, rest.as_str())
        } else {
            match SECTIONS
                .iter()
                .find_map(|s| rest.strip_prefix(s)?.strip_prefix('_').map(|k| (*s, k)))
            {
                Some((section, key)) => (Some(section), key),
                None => {
                    return Err(error(
                        name.clone(),
                        format!(
                            "unknown variable: expected {ENV_PREFIX}<SECTION>_<KEY> with a section \
                             of {SECTIONS:?}, or one of {TOP_LEVEL_KEYS:?}"
                        ),
                    ));
                }
            }
        };
        set(table, section, key, env_value(key, &value));
    }
    Ok(())
}

/// An environment value: a list for list keys (comma-separated), else a TOML value when it parses
/// as one (numbers, booleans, arrays), else a string.
fn env_value(key: &str, raw: &str) -> Value {
    if LIST_KEYS.contains(&key) && !raw.trim_start().starts_with('[') {
        let items = raw
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_owned()));
        return Value::Array(items.collect());
    }
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut parsed) => parsed
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn apply_flags(table: &mut Table, cli: &Cli) {
    let string = |s: &String| Value::String(s.clone());
    if let Some(dir) = &cli.data_dir {
        set(table, None, "data_dir", string(dir));
    }
    if let Some(host) = &cli.docker_host {
        set(table, Some("docker"), "host", string(host));
    }
    if let Some(listen) = &cli.health_listen {
        set(table, Some("health"), "listen", string(listen));
    }
    // A repeated filter flag replaces the whole list of the file or environment, like any
    // other key: the flags are the complete answer for that filter.
    for (key, values) in cli.filter_flags() {
        if !values.is_empty() {
            let list = values.iter().map(string).collect();
            set(table, Some("docker"), key, Value::Array(list));
        }
    }
    if let Some(interval) = &cli.heartbeat_interval {
        set(
            table,
            Some("supervisor"),
            "heartbeat_interval",
            string(interval),
        );
    }
    if let Some(timeout) = &cli.task_timeout {
        set(table, Some("supervisor"), "task_timeout", string(timeout));
    }
    if let Some(format) = cli.log_format {
        set(
            table,
            Some("log"),
            "format",
            Value::String(format.as_str().to_owned()),
        );
    }
}

fn set(table: &mut Table, section: Option<&str>, key: &str, value: Value) {
    let target = match section {
        None => table,
        Some(section) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                // A scalar where a section belongs: replace it; deserialisation names the key
                // if the new table is wrong in turn.
                *entry = Value::Table(Table::new());
            }
            match entry {
                Value::Table(inner) => inner,
                _ => return,
            }
        }
    };
    target.insert(key.to_owned(), value);
}

fn redact(value: &mut Value) {
    match value {
        Value::Table(table) => {
            for (key, inner) in table.iter_mut() {
                let key = key.to_ascii_lowercase();
                let is_reference = key.ends_with("_file") || key.ends_with("_env");
                if !is_reference && SECRET_WORDS.iter().any(|word| key.contains(word)) {
                    *inner = Value::String("<redacted>".to_owned());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        // Every URL is stored without its userinfo already; this keeps any other string that
        // holds one (a key added later) from printing it.
        Value::String(text) if text.contains("://") => {
            if let std::borrow::Cow::Owned(stripped) = capture_core::url::strip_userinfo(text) {
                *text = stripped;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
