//! [`PipelineReloader`]: changes the sinks of a running pipeline (a configuration reload).
//!
//! A reload compares the new `[[sinks]]` list with the running one by sink name. A sink whose
//! settings are equal keeps running untouched; one whose settings changed is *replaced* inside
//! its worker, which keeps its queue and disk buffer; a new name is *added*; a missing name is
//! *retired* (see `sink_set.rs` for what each means for deliveries and acknowledgements).
//!
//! Everything that can fail happens before anything changes: the list is validated as at start,
//! new sinks are built and their disk buffers opened, so a refused reload leaves the running
//! sinks exactly as they were. Two exceptions are made safe instead of checked:
//!
//! - A changed file sink that keeps its path is opened by its worker once the old one is closed
//!   (two instances must never write one file); if that open fails, the sink reports `failing`
//!   and retries like any failing sink, its deliveries waiting in its disk buffer.
//! - A sink added under the name, or with the file path, of a sink an earlier reload removed
//!   waits until that one has finished (at most `RETIRE_GRACE`, then it is hard-stopped).
//!
//! A reload that moves a file path from one sink to another (a renamed sink, two sinks swapping
//! paths) is refused: do it in two reloads, so the file never has two writers.

use std::{path::PathBuf, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{SinkConfig, validate_sinks},
    error::{Error, Result},
    open::{build_sink, open_configured, sink_options},
    sink_set::RETIRE_GRACE,
    worker::{PreparedSink, Replacement, ReplacementSink},
};

/// How long a reload waits for a removed sink that conflicts with a new one: its retire grace,
/// then the hard stop's flush.
const RETIREE_WAIT: Duration = RETIRE_GRACE.saturating_add(Duration::from_secs(5));

/// Changes the sinks of a running [`Pipeline`](crate::Pipeline); from
/// [`Pipeline::reloader`](crate::Pipeline::reloader). Reloads are applied one at a time
/// (`&mut self`).
#[derive(Debug)]
pub struct PipelineReloader {
    control_tx: mpsc::Sender<Command>,
    data_dir: PathBuf,
    /// The configured sinks as they run, by name, in configuration order.
    running: Vec<(String, SinkConfig)>,
    /// Sinks added with `add_sink`: never changed by a reload, their names taken.
    custom: Vec<String>,
    /// Sinks earlier reloads removed, whose worker may still be finishing.
    retiring: Vec<Retiring>,
}

/// A sink a reload removed.
#[derive(Debug)]
struct Retiring {
    name: String,
    path: Option<PathBuf>,
    /// Cancelled once its worker has returned.
    done: CancellationToken,
}

/// What a reload changed, by sink name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkChanges {
    /// New sinks: they take every delivery from the next one on.
    pub added: Vec<String>,
    /// Sinks whose settings changed: swapped in their worker between two deliveries.
    pub replaced: Vec<String>,
    /// Sinks no longer configured: they deliver what they hold, then stop.
    pub removed: Vec<String>,
}

impl SinkChanges {
    /// Whether the reload changed no sink.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.replaced.is_empty() && self.removed.is_empty()
    }
}

/// A command to the running pipeline's dispatcher.
#[derive(Debug)]
pub(crate) enum Command {
    /// Apply the plan; answer with the end tokens of the retired sinks.
    Apply {
        plan: Plan,
        reply_tx: oneshot::Sender<Vec<CancellationToken>>,
    },
}

/// The changes of one reload, with every new sink already built.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) removed: Vec<String>,
    pub(crate) replaced: Vec<(String, Replacement)>,
    pub(crate) added: Vec<PreparedSink>,
}

impl PipelineReloader {
    pub(crate) fn new(
        control_tx: mpsc::Sender<Command>,
        data_dir: PathBuf,
        running: Vec<(String, SinkConfig)>,
        custom: Vec<String>,
    ) -> PipelineReloader {
        PipelineReloader {
            control_tx,
            data_dir,
            running,
            custom,
            retiring: Vec::new(),
        }
    }

    /// Makes the pipeline deliver to `sinks` (see the module documentation). Returns once the
    /// dispatcher has applied the change, which it does between two deliveries.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid list (as [`Pipeline::new`](crate::Pipeline::new)
    /// reports it) or a path moved between sinks; [`Error::NoSinks`] for a list that would leave
    /// the pipeline without a sink; [`Error::SinkOpen`] or [`Error::BufferOpen`]
    /// when a new sink cannot be opened; [`Error::SinkStopping`] when a removed sink in the way
    /// does not finish; [`Error::NotRunning`] once the pipeline has stopped. Nothing changed then.
    pub async fn reconfigure(&mut self, sinks: Vec<SinkConfig>) -> Result<SinkChanges> {
        let names = validate_sinks(&sinks)?;
        if names.is_empty() && self.custom.is_empty() {
            // A delivery with no sink would never be acknowledged.
            return Err(Error::NoSinks);
        }
        if let Some(name) = names.iter().find(|name| self.custom.contains(name)) {
            return Err(Error::Config {
                reason: format!("two sinks are named {name:?}"),
            });
        }
        let next: Vec<(String, SinkConfig)> = names.into_iter().zip(sinks).collect();
        let changes = self.diff(&next);
        if changes.is_empty() {
            self.running = next;
            return Ok(changes);
        }
        self.refuse_path_moves(&next, &changes)?;
        self.wait_for_retirees(&next, &changes).await?;
        let plan = self.open(&next, &changes)?;
        let retired = self.commit(plan).await?;
        for (name, done) in changes.removed.iter().zip(retired) {
            let path = self.config_of(name).and_then(file_path).cloned();
            self.retiring.push(Retiring {
                name: name.clone(),
                path,
                done,
            });
        }
        self.running = next;
        Ok(changes)
    }

    fn config_of(&self, name: &str) -> Option<&SinkConfig> {
        self.running
            .iter()
            .find(|(running, _)| running == name)
            .map(|(_, config)| config)
    }

    fn diff(&self, next: &[(String, SinkConfig)]) -> SinkChanges {
        let mut changes = SinkChanges::default();
        for (name, config) in next {
            match self.config_of(name) {
                None => changes.added.push(name.clone()),
                Some(running) if running != config => changes.replaced.push(name.clone()),
                Some(_) => {}
            }
        }
        for (name, _) in &self.running {
            if !next.iter().any(|(next_name, _)| next_name == name) {
                changes.removed.push(name.clone());
            }
        }
        changes
    }

    /// The new or moved file paths of this reload: `(sink, path)`.
    fn new_paths<'a>(
        &self,
        next: &'a [(String, SinkConfig)],
        changes: &SinkChanges,
    ) -> Vec<(&'a str, &'a PathBuf)> {
        next.iter()
            .filter(|(name, _)| changes.added.contains(name) || changes.replaced.contains(name))
            .filter_map(|(name, config)| Some((name.as_str(), file_path(config)?)))
            .filter(|(name, path)| self.config_of(name).and_then(file_path) != Some(*path))
            .collect()
    }

    /// Refuses a file path that another running sink writes until this reload takes effect.
    fn refuse_path_moves(
        &self,
        next: &[(String, SinkConfig)],
        changes: &SinkChanges,
    ) -> Result<()> {
        for (name, path) in self.new_paths(next, changes) {
            let writer = self
                .running
                .iter()
                .find(|(other, config)| other != name && file_path(config) == Some(path));
            if let Some((writer, _)) = writer {
                return Err(Error::Config {
                    reason: format!(
                        "sink {name:?} would write {}, which sink {writer:?} writes until this \
                         reload applies; move a file between sinks in two reloads",
                        path.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Waits until the removed sinks that share a name or a file with a new one have finished.
    async fn wait_for_retirees(
        &mut self,
        next: &[(String, SinkConfig)],
        changes: &SinkChanges,
    ) -> Result<()> {
        self.retiring
            .retain(|retiring| !retiring.done.is_cancelled());
        let paths = self.new_paths(next, changes);
        for retiring in &self.retiring {
            let same_name = changes.added.contains(&retiring.name);
            let same_path = paths
                .iter()
                .any(|(_, path)| retiring.path.as_ref() == Some(*path));
            if !same_name && !same_path {
                continue;
            }
            let finished = tokio::time::timeout(RETIREE_WAIT, retiring.done.cancelled()).await;
            if finished.is_err() {
                return Err(Error::SinkStopping {
                    sink: retiring.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Builds every new sink: added ones with their disk buffer, replacements without (they
    /// keep their worker's). A changed file sink that keeps its path is opened by its worker.
    fn open(&self, next: &[(String, SinkConfig)], changes: &SinkChanges) -> Result<Plan> {
        let mut plan = Plan {
            removed: changes.removed.clone(),
            ..Plan::default()
        };
        for (name, config) in next {
            if changes.added.contains(name) {
                plan.added
                    .push(open_configured(&self.data_dir, config, name)?);
            } else if changes.replaced.contains(name) {
                let old_path = self.config_of(name).and_then(file_path);
                let sink = if old_path.is_some() && old_path == file_path(config) {
                    ReplacementSink::Deferred(Box::new(config.clone()))
                } else {
                    let sink = build_sink(config, name).map_err(|source| Error::SinkOpen {
                        sink: name.clone(),
                        source,
                    })?;
                    ReplacementSink::Opened(sink)
                };
                let options = sink_options(config, name);
                plan.replaced
                    .push((name.clone(), Replacement { options, sink }));
            }
        }
        Ok(plan)
    }

    async fn commit(&self, plan: Plan) -> Result<Vec<CancellationToken>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.control_tx
            .send(Command::Apply { plan, reply_tx })
            .await
            .map_err(|_| Error::NotRunning)?;
        reply_rx.await.map_err(|_| Error::NotRunning)
    }
}

fn file_path(config: &SinkConfig) -> Option<&PathBuf> {
    match config {
        SinkConfig::File(file) => Some(&file.path),
        _ => None,
    }
}
