//! `[[docker.multiline]]` rules: their configuration and validation, compiled once, and which
//! rule a container gets.
//!
//! A container gets, in this order:
//! 1. the rule its label `log-capturer.multiline` names: a configured rule of that name, else
//!    the preset of that name with the default limits; `off` turns multiline off for it. An
//!    unknown name is logged once (a warning) and the container's lines pass through.
//! 2. the first configured rule whose `match_*` keys all match it (a rule without any `match_*`
//!    key applies only through the label);
//! 3. nothing: its lines pass through.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use capture_core::ContainerInfo;
use globset::GlobSet;
use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{MultilinePreset, Step, presets::Phase};
use crate::{
    Error, Result,
    filter::{LabelMatch, globs},
};

#[cfg(test)]
mod tests;

/// The container label that names a container's multiline rule or preset (or `off`).
pub const MULTILINE_LABEL: &str = "log-capturer.multiline";
/// The label value that turns multiline off for a container that a rule would match.
const LABEL_OFF: &str = "off";

const DEFAULT_MAX_LINES: usize = 1000;
/// Loki's default `max_line_size`: a larger event would be refused there.
const DEFAULT_MAX_BYTES: usize = 256 * 1024;
const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_MAX_LINES: usize = 1_000_000;
/// Batches index their text with `u32` offsets: stay well below.
const MAX_MAX_BYTES: usize = u32::MAX as usize / 4;

/// One `[[docker.multiline]]` table: which containers, how lines are joined, and the limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// The rule's name, unique; a container's `log-capturer.multiline` label may name it.
    pub name: String,
    /// Globs on the container name.
    pub match_names: Vec<String>,
    /// `key` or `key=value`; every entry must match.
    pub match_labels: Vec<String>,
    /// Globs on the container's image.
    pub match_images: Vec<String>,
    /// A built-in rule (`java`, `python`, `go`); exclusive with the patterns.
    pub preset: Option<MultilinePreset>,
    /// A line matching this regular expression starts an event.
    pub start_pattern: Option<String>,
    /// A line matching this regular expression continues the open event.
    pub continue_pattern: Option<String>,
    /// An event reaching this many lines is emitted; the next line starts a new event.
    pub max_lines: usize,
    /// An event that the next line would take past this many bytes is emitted first.
    pub max_bytes: usize,
    /// An open event is emitted once no line came for this long.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            name: String::new(),
            match_names: Vec::new(),
            match_labels: Vec::new(),
            match_images: Vec::new(),
            preset: None,
            start_pattern: None,
            continue_pattern: None,
            max_lines: DEFAULT_MAX_LINES,
            max_bytes: DEFAULT_MAX_BYTES,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }
}

/// How a rule tells what a line does.
#[derive(Debug)]
enum Matcher {
    Preset(MultilinePreset),
    /// At least one of the two is set (validated).
    Custom {
        start: Option<Regex>,
        continuation: Option<Regex>,
    },
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    matcher: Matcher,
    pub(crate) max_lines: u32,
    pub(crate) max_bytes: usize,
    pub(crate) flush_timeout: Duration,
}

impl Rule {
    /// What `line` does, given the phase of the stream's open event (`None`: none is open).
    pub(crate) fn step(&self, open: Option<Phase>, line: &[u8]) -> (Step, Phase) {
        match &self.matcher {
            Matcher::Preset(preset) => preset.step(open, line),
            Matcher::Custom {
                start,
                continuation,
            } => (
                custom_step(start.as_ref(), continuation.as_ref(), open.is_some(), line),
                Phase::Body,
            ),
        }
    }

    /// A preset with the default limits (what a label naming a preset gets).
    fn preset(preset: MultilinePreset, inactivity_timeout: Duration) -> Rule {
        Rule {
            name: preset.as_str().to_owned(),
            matcher: Matcher::Preset(preset),
            max_lines: DEFAULT_MAX_LINES as u32,
            max_bytes: DEFAULT_MAX_BYTES,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT.min(inactivity_timeout / 2),
        }
    }
}

/// A custom rule: `start_pattern` starts an event (and wins over `continue_pattern`); while one
/// is open, a line matching `continue_pattern` joins it. Without `continue_pattern`, every line
/// that does not start an event joins the open one; without `start_pattern`, every line that
/// does not continue one starts one.
fn custom_step(
    start: Option<&Regex>,
    continuation: Option<&Regex>,
    open: bool,
    line: &[u8],
) -> Step {
    let continues = |line| continuation.is_none_or(|regex| regex.is_match(line));
    match start {
        Some(start) if start.is_match(line) => Step::Start,
        Some(_) if open && continues(line) => Step::Join,
        Some(_) => Step::Alone,
        None if continues(line) => {
            if open {
                Step::Join
            } else {
                Step::Alone
            }
        }
        None => Step::Start,
    }
}

/// The containers a rule applies to by configuration: every `match_*` key given must match.
#[derive(Debug)]
struct ContainerMatch {
    names: Option<GlobSet>,
    images: Option<GlobSet>,
    labels: Vec<LabelMatch>,
}

impl ContainerMatch {
    fn matches(&self, info: &ContainerInfo) -> bool {
        self.names
            .as_ref()
            .is_none_or(|set| set.is_match(&info.name))
            && self
                .images
                .as_ref()
                .is_none_or(|set| set.is_match(&info.image))
            && self.labels.iter().all(|label| label.matches(&info.labels))
    }
}

/// Every rule, compiled once; shared by the container tasks.
#[derive(Debug)]
pub(crate) struct MultilineRules {
    /// In configuration order; the match is `None` for a rule that applies only by label.
    configured: Vec<(Option<ContainerMatch>, Arc<Rule>)>,
    /// [`MultilinePreset::ALL`] with the default limits.
    presets: Vec<Arc<Rule>>,
    /// Unknown label values already warned about.
    warned: Mutex<HashSet<String>>,
}

impl MultilineRules {
    /// Validates and compiles `configs`; `flush_timeout`s must be shorter than the stream's
    /// `inactivity_timeout`.
    pub(crate) fn new(configs: &[MultilineConfig], inactivity_timeout: Duration) -> Result<Self> {
        let mut names = HashSet::new();
        let mut configured = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            if !names.insert(config.name.as_str()) {
                return Err(invalid(
                    index,
                    "name",
                    format!("{:?} is used by an earlier rule", config.name),
                ));
            }
            configured.push(compile(index, config, inactivity_timeout)?);
        }
        let presets = MultilinePreset::ALL
            .into_iter()
            .map(|preset| Arc::new(Rule::preset(preset, inactivity_timeout)))
            .collect();
        Ok(MultilineRules {
            configured,
            presets,
            warned: Mutex::default(),
        })
    }

    /// The rule for `info` (see the module documentation), if any.
    pub(crate) fn for_container(&self, info: &ContainerInfo) -> Option<Arc<Rule>> {
        if let Some(name) = info.labels.get(MULTILINE_LABEL) {
            return self.by_label(info, name);
        }
        self.configured
            .iter()
            .find(|(matcher, _)| matcher.as_ref().is_some_and(|m| m.matches(info)))
            .map(|(_, rule)| Arc::clone(rule))
    }

    fn by_label(&self, info: &ContainerInfo, name: &str) -> Option<Arc<Rule>> {
        if name == LABEL_OFF {
            return None;
        }
        let found = self
            .configured
            .iter()
            .map(|(_, rule)| rule)
            .chain(&self.presets)
            .find(|rule| rule.name == name);
        if found.is_none() && self.first_warning(name) {
            warn!(
                container_id = %info.id,
                container_name = %info.name,
                label = MULTILINE_LABEL,
                value = name,
                "unknown multiline rule: neither a [[docker.multiline]] name nor a preset (java, python, go); lines pass through unjoined (warned once per name)"
            );
        }
        found.cloned()
    }

    /// Whether `name` is warned about for the first time (it is remembered).
    pub(super) fn first_warning(&self, name: &str) -> bool {
        self.warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned())
    }
}

fn invalid(index: usize, key: &'static str, reason: impl Into<String>) -> Error {
    Error::Multiline {
        index,
        key,
        reason: reason.into(),
        source: None,
    }
}

fn compile(
    index: usize,
    config: &MultilineConfig,
    inactivity_timeout: Duration,
) -> Result<(Option<ContainerMatch>, Arc<Rule>)> {
    check_name(index, &config.name)?;
    check_limits(index, config, inactivity_timeout)?;
    let rule = Rule {
        name: config.name.clone(),
        matcher: matcher(index, config)?,
        max_lines: config.max_lines as u32,
        max_bytes: config.max_bytes,
        flush_timeout: config.flush_timeout,
    };
    Ok((container_match(index, config)?, Arc::new(rule)))
}

fn check_name(index: usize, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(invalid(index, "name", "required, without spaces"));
    }
    if name == LABEL_OFF {
        return Err(invalid(
            index,
            "name",
            "`off` is the label value that turns multiline off",
        ));
    }
    Ok(())
}

fn check_limits(
    index: usize,
    config: &MultilineConfig,
    inactivity_timeout: Duration,
) -> Result<()> {
    if !(2..=MAX_MAX_LINES).contains(&config.max_lines) {
        return Err(invalid(
            index,
            "max_lines",
            format!("must be between 2 and {MAX_MAX_LINES}"),
        ));
    }
    if !(1..=MAX_MAX_BYTES).contains(&config.max_bytes) {
        return Err(invalid(
            index,
            "max_bytes",
            "must be above zero and at most 1 GiB",
        ));
    }
    if config.flush_timeout.is_zero() || config.flush_timeout >= inactivity_timeout {
        return Err(invalid(
            index,
            "flush_timeout",
            format!(
                "must be above zero and shorter than docker.inactivity_timeout ({})",
                humantime::format_duration(inactivity_timeout)
            ),
        ));
    }
    Ok(())
}

fn matcher(index: usize, config: &MultilineConfig) -> Result<Matcher> {
    let patterns = config.start_pattern.is_some() || config.continue_pattern.is_some();
    match config.preset {
        Some(_) if patterns => Err(invalid(
            index,
            "preset",
            "a rule takes either `preset` or `start_pattern`/`continue_pattern`, not both",
        )),
        Some(preset) => Ok(Matcher::Preset(preset)),
        None if !patterns => Err(invalid(
            index,
            "start_pattern",
            "a rule needs a `preset`, or a `start_pattern` and/or a `continue_pattern`",
        )),
        None => Ok(Matcher::Custom {
            start: regex(index, "start_pattern", config.start_pattern.as_deref())?,
            continuation: regex(
                index,
                "continue_pattern",
                config.continue_pattern.as_deref(),
            )?,
        }),
    }
}

fn regex(index: usize, key: &'static str, pattern: Option<&str>) -> Result<Option<Regex>> {
    let Some(pattern) = pattern else {
        return Ok(None);
    };
    if pattern.is_empty() {
        return Err(invalid(
            index,
            key,
            "must not be empty (it would match every line)",
        ));
    }
    Regex::new(pattern)
        .map(Some)
        .map_err(|source| Error::Multiline {
            index,
            key,
            reason: format!("{pattern:?} is not a valid regular expression"),
            source: Some(Box::new(source)),
        })
}

fn container_match(index: usize, config: &MultilineConfig) -> Result<Option<ContainerMatch>> {
    if config.match_names.is_empty()
        && config.match_labels.is_empty()
        && config.match_images.is_empty()
    {
        return Ok(None);
    }
    let glob_set = |key, patterns: &[String]| {
        globs(key, patterns).map_err(|error| match error {
            Error::Glob {
                pattern, source, ..
            } => Error::Multiline {
                index,
                key,
                reason: format!("{pattern:?} is not a valid glob"),
                source: Some(Box::new(source)),
            },
            other => other,
        })
    };
    let labels = config
        .match_labels
        .iter()
        .map(|text| {
            LabelMatch::parse("match_labels", text).map_err(|_| {
                invalid(
                    index,
                    "match_labels",
                    format!("{text:?}: a label match is `key` or `key=value`"),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(ContainerMatch {
        names: glob_set("match_names", &config.match_names)?,
        images: glob_set("match_images", &config.match_images)?,
        labels,
    }))
}
