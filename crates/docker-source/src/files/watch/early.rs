//! Containers seen created before the source knows them. Docker's `containers/` directory is
//! watched; each new container's directory is registered the moment its creation is read (from
//! the watcher's thread), so its json-file log file is opened as soon as Docker creates it, at
//! the container's start (`births.rs`); so is its `local-logs/` directory, for the `local`
//! driver's `container.log`. A `--rm` job that runs and is removed before the source
//! could look at it (its events wait behind others' inspections on a busy host) is then still
//! held, and read whole (`files/mode.rs`).
//!
//! A follower that registers for such a directory takes the registration over
//! ([`EarlyMap::claim`]): its count of creations starts at the container's first live file, so
//! a removed container's follower knows when the oldest file held is the first one, and that
//! nothing was lost before it ([`super::Births::is_first`]), and a tail opened at the oldest file
//! starts with the held files Docker deleted first (`tail/preopened.rs`). The live file found
//! when the directory's watch is added (Docker may create it first) is that first file, count
//! 0; if its creation was queued after the watch, that event is not counted again
//! ([`super::Interest::is_initial_file`]).
//!
//! Bounds: at most [`EARLY_MAX`] directories are held unclaimed, each for at most
//! [`EARLY_KEEP`]; the source releases at once those it will not read from files. Past them, a
//! container is found through the source's events alone, as before.

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::File,
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use inotify::{Event, EventMask, WatchMask, Watches};
use tracing::debug;

use super::{BirthCount, Interest, Shared, Watcher, births::Preopened, mask};
use crate::files::Driver;

/// Containers held before any follower claims them, at most.
pub(crate) const EARLY_MAX: usize = 256;
/// How long a container's files are held for a follower that has not claimed them.
pub(crate) const EARLY_KEEP: Duration = Duration::from_secs(60);

/// Docker's containers directory, watched for new containers.
#[derive(Debug)]
pub(super) struct Root {
    wd: i32,
    dir: PathBuf,
}

impl Root {
    pub(super) fn is(&self, wd: i32) -> bool {
        self.wd == wd
    }
}

/// A new container's directory (or its `local-logs/`), registered before any follower.
#[derive(Debug)]
struct Early {
    wd: i32,
    interest: Arc<Interest>,
    since: Instant,
}

/// The unclaimed early registrations, by the directory registered.
#[derive(Debug, Default)]
pub(super) struct EarlyMap(HashMap<PathBuf, Early>);

/// The `local` driver's directory in a container's directory, and its live file.
const LOCAL_DIR: &str = "local-logs";
const LOCAL_LIVE: &str = "container.log";

impl EarlyMap {
    /// The registration of the live file `live`, if one was made when its directory was
    /// created: the follower takes it over.
    pub(super) fn claim(&mut self, live: &Path) -> Option<(i32, Arc<Interest>)> {
        let dir = live.parent()?;
        if self.0.get(dir)?.interest.live != live {
            return None;
        }
        let early = self.0.remove(dir)?;
        Some((early.wd, early.interest))
    }

    /// The registrations of container `id` (its directory, its `local-logs/`).
    fn of(root: &Path, id: &str) -> [PathBuf; 2] {
        let dir = root.join(id);
        let local = dir.join(LOCAL_DIR);
        [dir, local]
    }

    /// The container directory whose watch is `wd`, if it is an early registration.
    fn container_dir(&self, wd: i32) -> Option<&Path> {
        self.0
            .iter()
            .find(|(dir, early)| early.wd == wd && dir.file_name() != Some(OsStr::new(LOCAL_DIR)))
            .map(|(dir, _)| dir.as_path())
    }
}

/// An event of the containers directory: a new container's directory is registered.
pub(super) fn created(
    shared: &mut Shared,
    watches: &Watches,
    event: &Event<&OsStr>,
    overflows: u64,
) {
    if !event.mask.contains(EventMask::CREATE | EventMask::ISDIR) {
        return;
    }
    let (Some(name), Some(root)) = (event.name, shared.root.as_ref()) else {
        return;
    };
    if !is_container_id(name) {
        return;
    }
    let dir = root.dir.join(name);
    let mut live_name = name.to_owned();
    live_name.push("-json.log");
    register(shared, watches, dir, &live_name, overflows);
}

/// A directory created in a watched one: a new container's `local-logs/` is registered.
pub(super) fn subdir_created(
    shared: &mut Shared,
    watches: &Watches,
    wd: i32,
    event: &Event<&OsStr>,
    overflows: u64,
) {
    if event.name != Some(OsStr::new(LOCAL_DIR))
        || !event.mask.contains(EventMask::CREATE | EventMask::ISDIR)
    {
        return;
    }
    let Some(container) = shared.early.container_dir(wd) else {
        return;
    };
    let dir = container.join(LOCAL_DIR);
    register(shared, watches, dir, OsStr::new(LOCAL_LIVE), overflows);
}

/// Registers `dir` before any follower, opening its live file if Docker created it already.
fn register(
    shared: &mut Shared,
    watches: &Watches,
    dir: PathBuf,
    live_name: &OsStr,
    overflows: u64,
) {
    if shared.early.0.len() >= EARLY_MAX || shared.early.0.contains_key(&dir) {
        return;
    }
    let wd = match watches.clone().add(&dir, mask(false) | WatchMask::MASK_ADD) {
        Ok(wd) => wd,
        Err(error) => {
            debug!(dir = %dir.display(), error = %error, "cannot watch a new container's directory");
            return;
        }
    };
    // The live file, if Docker created it before the watch: the first (its number unknown if
    // Docker rotated already). Listed after the watch was added, so no creation falls between.
    let initial = open_initial(&dir.join(live_name));
    let first = match &initial {
        None => Some(1),
        Some((_, _, rotated)) => (!rotated).then_some(0),
    };
    let first = first.map(|created| BirthCount { created, overflows });
    let interest = Arc::new(Interest::new(shared.next_id, &dir, live_name, first));
    shared.next_id += 1;
    if let Some((file, inode, _)) = initial {
        interest.initial.store(inode, Ordering::Release);
        let count = first.filter(|first| first.created == 0);
        interest.preopened.push(Preopened { count, file });
    }
    let number = shared.listen(wd, &dir, interest.clone());
    let early = Early {
        wd: number,
        interest,
        since: Instant::now(),
    };
    shared.early.0.insert(dir, early);
}

/// The live file `live` opened, its inode, and whether a rotated file exists beside it.
fn open_initial(live: &Path) -> Option<(File, u64, bool)> {
    let file = File::open(live).ok()?;
    let inode = file.metadata().ok()?.ino();
    let rotated = |suffix: &str| {
        let mut path = live.as_os_str().to_owned();
        path.push(suffix);
        Path::new(&path).exists()
    };
    Some((file, inode, rotated(".1") || rotated(".1.gz")))
}

/// Docker names a container's directory by its 64-hex-digit id.
fn is_container_id(name: &OsStr) -> bool {
    name.len() == 64 && name.as_encoded_bytes().iter().all(u8::is_ascii_hexdigit)
}

impl Watcher {
    /// Watches Docker's containers directory for new containers (see the module docs).
    pub(crate) fn watch_containers(&self, dir: &Path) -> io::Result<()> {
        let Some((_, watches)) = &self.events else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "inotify is not available",
            ));
        };
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let wd = watches
            .clone()
            .add(dir, WatchMask::CREATE | WatchMask::ONLYDIR)?;
        shared.root = Some(Root {
            wd: wd.get_watch_descriptor_id(),
            dir: dir.to_path_buf(),
        });
        Ok(())
    }

    /// The driver whose files of the container are held since its creation, with a file opened
    /// (the events queued so far are dispatched first: a removed container made all of its
    /// own).
    pub(crate) fn holds_early(&self, container: &str) -> Option<Driver> {
        if let Some((events, _)) = &self.events {
            events.drain(&self.shared);
        }
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let root = &shared.root.as_ref()?.dir;
        let [dir, local] = EarlyMap::of(root, container);
        let holds = |dir: &PathBuf| {
            shared
                .early
                .0
                .get(dir)
                .is_some_and(|early| !early.interest.preopened.is_empty())
        };
        if holds(&local) {
            Some(Driver::Local)
        } else if holds(&dir) {
            Some(Driver::JsonFile)
        } else {
            None
        }
    }

    /// The source will not read the container from files: its files are closed.
    pub(crate) fn release_early(&self, container: &str) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(root) = shared.root.as_ref().map(|root| root.dir.clone()) else {
            return;
        };
        for dir in EarlyMap::of(&root, container) {
            if let Some(early) = shared.early.0.remove(&dir) {
                self.unregister_in(&mut shared, early.wd, early.interest.id);
            }
        }
    }

    /// Closes the files of containers no follower claimed within [`EARLY_KEEP`].
    pub(crate) fn expire_early(&self) {
        self.expire_early_after(EARLY_KEEP);
    }

    fn expire_early_after(&self, keep: Duration) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let expired: Vec<PathBuf> = shared
            .early
            .0
            .iter()
            .filter(|(_, early)| early.since.elapsed() >= keep)
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in expired {
            if let Some(early) = shared.early.0.remove(&dir) {
                self.unregister_in(&mut shared, early.wd, early.interest.id);
            }
        }
    }

    /// How many containers are held unclaimed.
    #[cfg(test)]
    pub(crate) fn early_count(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .early
            .0
            .len()
    }
}

#[cfg(test)]
mod tests;
