//! The source's side of file mode: which containers are read from files, their cursors and
//! signals, and the removed containers whose tasks still read what they hold.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use bollard::{
    Docker,
    models::{ContainerInspectResponse, HostConfig, HostConfigLogConfig},
};
use capture_core::ContainerId;
use task_supervisor::Supervisor;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{
    Driver,
    cursor::{FileCursor, FileHint},
    follower::FileEnv,
    target::{FileSignal, FileTarget},
    watch::Watcher,
};
use crate::{Error, ReadMode, Result, checkpoint::StreamPositions, stream::TaskEnv};

/// The longest a removed container's task may take to read the files it holds.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// One container read from files.
#[derive(Debug)]
struct FileTask {
    cursor: Arc<FileCursor>,
    signal: Arc<FileSignal>,
}

/// A removed container whose task reads what it holds to the end.
#[derive(Debug)]
struct Draining {
    task_id: String,
    since: Instant,
}

/// File mode's bookkeeping in the source (see the module documentation).
#[derive(Debug)]
pub(crate) struct FileMode {
    read_mode: ReadMode,
    watcher: Watcher,
    /// Each inspected container's log files (`None`: its driver writes none).
    targets: HashMap<ContainerId, Option<FileTarget>>,
    tasks: HashMap<ContainerId, FileTask>,
    draining: HashMap<ContainerId, Draining>,
    /// Docker's containers directory, once watched for new containers (`watch/early.rs`).
    containers_dir: Option<PathBuf>,
}

impl FileMode {
    pub(crate) fn new(read_mode: ReadMode, watcher: Watcher) -> FileMode {
        FileMode {
            read_mode,
            watcher,
            targets: HashMap::new(),
            tasks: HashMap::new(),
            draining: HashMap::new(),
            containers_dir: None,
        }
    }

    /// Finds Docker's containers directory and watches it for new containers, whose log files
    /// are then opened as Docker creates them (`watch/early.rs`). With `read_mode = "files"`
    /// it must be readable: a clear error at start rather than a failure per container.
    pub(crate) async fn watch_root(&mut self, docker: &Docker) -> Result<()> {
        if self.read_mode == ReadMode::Api {
            return Ok(());
        }
        let info = docker.info().await.map_err(|source| Error::Docker {
            operation: "get the daemon's information",
            source,
        })?;
        let root = info
            .docker_root_dir
            .unwrap_or_else(|| "/var/lib/docker".to_owned());
        let path = PathBuf::from(root).join("containers");
        if let Err(source) = std::fs::read_dir(&path) {
            if self.read_mode == ReadMode::Files {
                return Err(Error::FilesUnreadable { path, source });
            }
            debug!(dir = %path.display(), error = %source, "Docker's containers directory is not readable");
            return Ok(());
        }
        match self.watcher.watch_containers(&path) {
            Ok(()) => self.containers_dir = Some(path),
            Err(error) => {
                debug!(dir = %path.display(), error = %error, "cannot watch Docker's containers directory; new containers are found by their events alone");
            }
        }
        Ok(())
    }

    /// A container removed before the source could inspect it: `true` if the watcher holds its
    /// log file since its creation (`watch/early.rs`), and it can be read as a removed
    /// container (its driver's options unknown: its default rotation assumed).
    pub(crate) fn removed_early(&mut self, id: &ContainerId) -> bool {
        let Some(dir) = &self.containers_dir else {
            return false;
        };
        if self.read_mode == ReadMode::Api {
            return false;
        }
        let Some(driver) = self.watcher.holds_early(id.as_str()) else {
            return false;
        };
        let container_dir = dir.join(id.as_str());
        let (typ, log_path) = match driver {
            Driver::JsonFile => ("json-file", container_dir.join(format!("{id}-json.log"))),
            Driver::Local => ("local", PathBuf::new()),
        };
        let response = ContainerInspectResponse {
            log_path: Some(log_path.to_string_lossy().into_owned()),
            // Where the `local` driver's files are found (see `FileTarget::of`).
            hostname_path: Some(
                container_dir
                    .join("hostname")
                    .to_string_lossy()
                    .into_owned(),
            ),
            host_config: Some(HostConfig {
                log_config: Some(HostConfigLogConfig {
                    typ: Some(typ.to_owned()),
                    config: None,
                }),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        };
        self.targets.insert(id.clone(), FileTarget::of(&response));
        true
    }

    /// The container will not be read from files: the watcher closes what it opened early.
    pub(crate) fn release_early(&self, id: &ContainerId) {
        self.watcher.release_early(id.as_str());
    }

    /// Records where an inspected container's log files are.
    pub(crate) fn inspected(&mut self, id: &ContainerId, response: &ContainerInspectResponse) {
        if self.read_mode == ReadMode::Api {
            return;
        }
        self.targets.insert(id.clone(), FileTarget::of(response));
    }

    /// The file-mode environment of a container's next task, or `None` for the API: `auto`
    /// reads files the agent can read, `files` every container whose driver writes files.
    pub(crate) fn env_for(
        &mut self,
        task: &TaskEnv,
        saved_hint: Option<FileHint>,
    ) -> Option<FileEnv> {
        let id = &task.shared.id;
        let target = self.targets.get(id)?.clone()?;
        // A removed container's directory is gone; the watcher may hold its files still.
        if self.read_mode == ReadMode::Auto
            && !target.is_readable()
            && self.watcher.holds_early(id.as_str()).is_none()
        {
            debug!(container_id = %id, dir = %target.files.dir().display(), "log files not readable; reading through the API");
            return None;
        }
        let state = self.tasks.entry(id.clone()).or_insert_with(|| FileTask {
            cursor: Arc::new(FileCursor::new(*task.shared.initial_resume(), saved_hint)),
            signal: Arc::default(),
        });
        Some(FileEnv {
            task: task.clone(),
            target,
            watcher: self.watcher.clone(),
            cursor: state.cursor.clone(),
            signal: state.signal.clone(),
        })
    }

    /// The container may have stopped (a `die` event).
    pub(crate) fn died(&self, id: &ContainerId) {
        if let Some(task) = self.tasks.get(id) {
            task.signal.stopped();
        }
    }

    /// The container was removed. `true`: its file task is still reading and drains what it
    /// holds (the caller must not stop it); it is removed from the supervisor once it ends.
    pub(crate) fn removed(&mut self, id: &ContainerId, task_id: &str, active: bool) -> bool {
        self.targets.remove(id);
        let Some(task) = self.tasks.get(id) else {
            return false;
        };
        if !active {
            self.tasks.remove(id);
            return false;
        }
        task.signal.removed();
        self.draining.insert(
            id.clone(),
            Draining {
                task_id: task_id.to_owned(),
                since: Instant::now(),
            },
        );
        true
    }

    /// The container is no longer read (filtered out, or its task was stopped).
    pub(crate) fn forget(&mut self, id: &ContainerId) {
        self.targets.remove(id);
        self.tasks.remove(id);
    }

    /// The newest resume hint the acknowledged positions cover.
    pub(crate) fn acknowledged(
        &self,
        id: &ContainerId,
        acked: &StreamPositions,
    ) -> Option<FileHint> {
        self.tasks.get(id)?.cursor.commit(acked)
    }

    /// Removes the tasks of removed containers that finished reading; stops those that take
    /// longer than [`DRAIN_LIMIT`].
    pub(crate) async fn reap(&mut self, supervisor: &Supervisor) {
        self.watcher.expire_early();
        let mut ended = Vec::new();
        for (id, draining) in &self.draining {
            let live = supervisor.task(&draining.task_id).is_some_and(|task| {
                matches!(
                    task.state,
                    capture_core::status::TaskState::Running
                        | capture_core::status::TaskState::Restarting
                )
            });
            if !live {
                ended.push(id.clone());
            } else if draining.since.elapsed() >= DRAIN_LIMIT {
                warn!(container_id = %id, "a removed container's log files are still being read after the drain limit; stopping its task");
                supervisor.stop(&draining.task_id).await;
                ended.push(id.clone());
            }
        }
        for id in ended {
            if let Some(draining) = self.draining.remove(&id) {
                info!(container_id = %id, "removed container's log files read to their end");
                supervisor.remove(&draining.task_id);
            }
            self.tasks.remove(&id);
        }
    }

    /// The tasks still draining (stopped at shutdown).
    pub(crate) fn draining_task_ids(&self) -> impl Iterator<Item = &str> {
        self.draining.values().map(|d| d.task_id.as_str())
    }
}

#[cfg(test)]
pub(super) mod tests;
