//! Wakes file followers when their log directory changes: one inotify instance for the whole
//! source, one watch per directory, one [`Notify`] per follower; and counts, per follower, the
//! live files Docker created, so a follower knows exactly how many generations were born.
//!
//! The kernel queues an event per rename, creation or deletion in a watched directory, and per
//! write while a follower of it is *armed* (merging identical consecutive ones). Writes are
//! watched only while a follower waits at the end of its files ([`Registration::arm`]), and
//! arming is one-shot: the first write event disarms the directory's followers before they are
//! woken, so a wait costs the writer one event. An event per line costs the writer, dockerd,
//! its fsnotify work and a wake-up of the thread reading the events (a third of its CPU while a
//! busy container is followed, measured with `perf`; and with one-shot arming removed, 50 000
//! wake-ups for 2 M lines of 10 containers). A busy follower reads again after a pause instead;
//! one that arms reads once more before it waits, so a write made before the arming is not
//! missed. Events are read and dispatched under one lock, by
//! [`WatchLoop::run`] when the instance is readable and by any follower that needs the count
//! of creations up to now ([`Births::count`]): once that call returns, every change made
//! before it was called has been dispatched. `Notify` keeps one permit, so a change that
//! happens while a follower is busy reading still wakes its next wait: nothing is missed and
//! an idle container costs nothing. Where inotify is not available (no instance left, too many
//! watches, a file system without it), a follower polls instead, backing off from
//! [`POLL_MIN`] to [`POLL_MAX`] while nothing changes, and has no count of creations.

use std::{
    collections::HashMap,
    ffi::{OsStr, OsString},
    io,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use rustix::event::{EventfdFlags, PollFd, PollFlags};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub(crate) use births::{BirthCount, Births};
use births::{Opening, PreopenQueue};

/// The quickest poll, right after a change was seen.
pub(crate) const POLL_MIN: Duration = Duration::from_millis(25);
/// The slowest poll, for a directory where nothing happens.
pub(crate) const POLL_MAX: Duration = Duration::from_secs(1);
/// The buffer events are read into (many events per read).
const EVENT_BUFFER_BYTES: usize = 16 * 1024;

/// What changes in a log directory wake its followers: always creations, renames and
/// deletions; writes only while one of them is armed.
fn mask(armed: bool) -> WatchMask {
    let always = WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF;
    if armed {
        always | WatchMask::MODIFY
    } else {
        always
    }
}

/// One follower's interest in a directory.
#[derive(Debug)]
struct Interest {
    id: u64,
    notify: Notify,
    /// The live file's name: its creations are counted.
    live_name: OsString,
    /// The live file, opened as soon as it is created.
    live: PathBuf,
    /// Live files created since the registration.
    created: AtomicU64,
    /// The new live files opened as they were created.
    preopened: PreopenQueue,
    /// Whether the follower waits for writes (see the module docs).
    armed: AtomicBool,
    /// The inode of the live file found when an early registration added its watch (0: none),
    /// so that file's creation, if it was queued after the watch, is not counted twice
    /// (`early.rs`).
    initial: AtomicU64,
    /// The count of creations of the container's first live file, when the directory was
    /// registered as it was created (`early.rs`): 0 if that file was found already, else 1.
    /// `None`: registered later, or a file found then may not be the first.
    first: Option<BirthCount>,
}

impl Interest {
    fn new(id: u64, dir: &Path, live_name: &OsStr, first: Option<BirthCount>) -> Interest {
        Interest {
            id,
            notify: Notify::new(),
            live_name: live_name.to_owned(),
            live: dir.join(live_name),
            created: AtomicU64::new(0),
            preopened: PreopenQueue::default(),
            armed: AtomicBool::new(false),
            initial: AtomicU64::new(0),
            first,
        }
    }

    /// Whether a creation of the live file is the one an early registration found already
    /// (asked once, at the first creation reported).
    fn is_initial_file(&self) -> bool {
        let inode = self.initial.swap(0, Ordering::AcqRel);
        inode != 0
            && std::fs::metadata(&self.live)
                .is_ok_and(|meta| std::os::unix::fs::MetadataExt::ino(&meta) == inode)
    }
}

/// One watched directory and the followers waiting on it.
#[derive(Debug)]
struct Watched {
    descriptor: WatchDescriptor,
    dir: PathBuf,
    interests: Vec<Arc<Interest>>,
    /// Whether the kernel's mask has writes (some interest is armed).
    writes: bool,
}

impl Watched {
    /// Asks the kernel for the directory's writes exactly while one of its followers is armed.
    /// A failure (the directory is gone) is left alone: its followers are told of the
    /// deletion, or wake on their timers. The kernel replaces the mask of the same watch in
    /// place, and creations are in both masks: no creation goes uncounted while it changes.
    fn update_writes(&mut self, watches: &Watches) {
        let armed = self
            .interests
            .iter()
            .any(|interest| interest.armed.load(Ordering::Acquire));
        if armed == self.writes {
            return;
        }
        match watches.clone().add(&self.dir, mask(armed)) {
            Ok(descriptor) if descriptor == self.descriptor => self.writes = armed,
            Ok(descriptor) => {
                // A new directory at the same path: not the one followed.
                let _ = watches.clone().remove(descriptor);
            }
            Err(error) => {
                debug!(dir = %self.dir.display(), error = %error, "cannot change the watch of the log directory");
            }
        }
    }
}

/// The watched directories, by watch descriptor number.
type Listeners = HashMap<i32, Watched>;

#[derive(Debug, Default)]
struct Shared {
    listeners: Listeners,
    next_id: u64,
    /// Docker's containers directory, if watched for new containers (`early.rs`).
    root: Option<early::Root>,
    /// New containers' directories registered before any follower (`early.rs`).
    early: early::EarlyMap,
}

impl Shared {
    /// Adds `interest` to the listeners of the directory watched as `wd`; returns its number.
    fn listen(&mut self, wd: WatchDescriptor, dir: &Path, interest: Arc<Interest>) -> i32 {
        let number = wd.get_watch_descriptor_id();
        let watched = self.listeners.entry(number).or_insert_with(|| Watched {
            descriptor: wd,
            dir: dir.to_path_buf(),
            interests: Vec::new(),
            writes: false,
        });
        watched.interests.push(interest);
        number
    }
}

/// The inotify instance, read and dispatched under one lock.
#[derive(Debug)]
struct Events {
    reader: Mutex<Reader>,
    /// Times the kernel's queue overflowed (events were lost): counts of creations taken
    /// before and after one are not comparable.
    overflows: AtomicU64,
    /// A copy of the instance's descriptor, to wait on without the reader's lock (`None` if
    /// it could not be made: only the followers' own counts read events then).
    poll_fd: Option<OwnedFd>,
}

#[derive(Debug)]
struct Reader {
    inotify: Inotify,
    buffer: Vec<u8>,
    /// Reading failed for good (logged once): followers fall back to their timers.
    broken: bool,
}

/// Registers directories; cheap to clone. Without inotify, every registration polls.
#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    events: Option<(Arc<Events>, Watches)>,
    shared: Arc<Mutex<Shared>>,
}

/// Reads the inotify events and wakes the followers (run it on any runtime).
#[derive(Debug)]
pub(crate) struct WatchLoop {
    events: Arc<Events>,
    shared: Arc<Mutex<Shared>>,
}

impl Watcher {
    /// A watcher and the loop that serves it; without inotify (logged), a polling watcher and
    /// no loop.
    pub(crate) fn new() -> (Watcher, Option<WatchLoop>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        match Inotify::init() {
            Ok(inotify) => {
                let watches = inotify.watches();
                let events = Arc::new(Events {
                    poll_fd: inotify.as_fd().try_clone_to_owned().ok(),
                    reader: Mutex::new(Reader {
                        inotify,
                        buffer: vec![0; EVENT_BUFFER_BYTES],
                        broken: false,
                    }),
                    overflows: AtomicU64::new(0),
                });
                (
                    Watcher {
                        events: Some((events.clone(), watches)),
                        shared: shared.clone(),
                    },
                    Some(WatchLoop { events, shared }),
                )
            }
            Err(error) => {
                warn!(error = %error, "inotify is not available; file followers poll their directories");
                (Watcher::polling(), None)
            }
        }
    }

    /// A watcher whose registrations all poll.
    pub(crate) fn polling() -> Watcher {
        Watcher {
            events: None,
            shared: Arc::default(),
        }
    }

    /// Starts watching `dir` for one follower, counting creations of `live_name` in it. A
    /// directory that cannot be watched is polled.
    pub(crate) fn register(&self, dir: &Path, live_name: &OsStr) -> Registration {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        // Registered when Docker created the directory: the follower takes that over.
        if let Some((wd, interest)) = shared.early.claim(&dir.join(live_name)) {
            return Registration {
                watcher: self.clone(),
                interest,
                watch: Some(wd),
                poll_delay: POLL_MIN,
            };
        }
        let interest = Arc::new(Interest::new(shared.next_id, dir, live_name, None));
        shared.next_id += 1;
        // Added under the lock of the listeners: an event of the new watch is dispatched only
        // once its listener is known.
        let watch = self.events.as_ref().and_then(|(_, watches)| {
            // Added to the mask: writes another follower of the directory is armed for stay.
            match watches.clone().add(dir, mask(false) | WatchMask::MASK_ADD) {
                Ok(wd) => Some(wd),
                Err(error) => {
                    debug!(dir = %dir.display(), error = %error, "cannot watch the log directory; polling it");
                    None
                }
            }
        });
        let watch = watch.map(|wd| shared.listen(wd, dir, interest.clone()));
        Registration {
            watcher: self.clone(),
            interest,
            watch,
            poll_delay: POLL_MIN,
        }
    }

    fn unregister(&self, wd: i32, id: u64) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        self.unregister_in(&mut shared, wd, id);
    }

    fn unregister_in(&self, shared: &mut Shared, wd: i32, id: u64) {
        let Some(watched) = shared.listeners.get_mut(&wd) else {
            return;
        };
        watched.interests.retain(|interest| interest.id != id);
        if watched.interests.is_empty() {
            let descriptor = watched.descriptor.clone();
            shared.listeners.remove(&wd);
            // The kernel already dropped the watch of a deleted directory: nothing to undo.
            if let Some((_, watches)) = &self.events {
                let _ = watches.clone().remove(descriptor);
            }
        } else {
            self.update_writes(watched);
        }
    }

    fn update_writes(&self, watched: &mut Watched) {
        if let Some((_, watches)) = &self.events {
            watched.update_writes(watches);
        }
    }

    /// Sets one follower's interest in writes and the kernel's mask to match.
    fn set_armed(&self, wd: i32, interest: &Interest, armed: bool) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        interest.armed.store(armed, Ordering::Release);
        if let Some(watched) = shared.listeners.get_mut(&wd) {
            self.update_writes(watched);
        }
    }

    /// How many directories are watched.
    #[cfg(test)]
    pub(crate) fn watched_dirs(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .listeners
            .len()
    }
}

/// One follower's interest in one directory; dropping it stops the watch when it is the last.
#[derive(Debug)]
pub(crate) struct Registration {
    watcher: Watcher,
    interest: Arc<Interest>,
    /// The watch descriptor number; `None`: polling.
    watch: Option<i32>,
    poll_delay: Duration,
}

impl Registration {
    /// Whether this registration polls instead of being told.
    #[cfg(test)]
    pub(crate) fn is_polling(&self) -> bool {
        self.watch.is_none()
    }

    /// Waits until the directory may have changed: an inotify event (or one that came while
    /// the follower was busy), or the next poll.
    pub(crate) async fn changed(&mut self) {
        if self.watch.is_some() {
            self.interest.notify.notified().await;
        } else {
            tokio::time::sleep(self.poll_delay).await;
            self.poll_delay = (self.poll_delay * 2).min(POLL_MAX);
        }
    }

    /// The follower found new data: poll quickly again.
    pub(crate) fn saw_data(&mut self) {
        self.poll_delay = POLL_MIN;
    }

    /// The follower is busy and reads again without being told: stop reporting each write.
    pub(crate) fn disarm(&mut self) {
        if let Some(wd) = self.watch
            && self.interest.armed.load(Ordering::Acquire)
        {
            self.watcher.set_armed(wd, &self.interest, false);
        }
    }

    /// The follower read to the end of its files and is about to wait: be told of writes
    /// again. `true` if it was not armed: a write made since its last read sent no event, so
    /// it must read once more before it waits.
    pub(crate) fn arm(&mut self) -> bool {
        let Some(wd) = self.watch else {
            return false;
        };
        if self.interest.armed.load(Ordering::Acquire) {
            return false;
        }
        self.watcher.set_armed(wd, &self.interest, true);
        true
    }

    /// The count of the live file's creations, if this registration is told of them.
    pub(crate) fn births(&self) -> Option<Births> {
        self.watch?;
        let (events, _) = self.watcher.events.as_ref()?;
        Some(Births {
            events: events.clone(),
            shared: self.watcher.shared.clone(),
            interest: self.interest.clone(),
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(wd) = self.watch {
            self.watcher.unregister(wd, self.interest.id);
        }
    }
}

impl Events {
    /// Reads and dispatches every queued event. `false` if reading failed for good.
    fn drain(&self, shared: &Mutex<Shared>) -> bool {
        let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        if reader.broken {
            return false;
        }
        let Reader {
            inotify, buffer, ..
        } = &mut *reader;
        let mut opening = Opening::default();
        let watches = inotify.watches();
        let failure = loop {
            match inotify.read_events(buffer) {
                Ok(events) => {
                    let overflows = self.overflows.load(Ordering::Acquire);
                    let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut created = Vec::new();
                    let mut written = Vec::new();
                    for event in events {
                        let wd = event.wd.get_watch_descriptor_id();
                        if event.mask.contains(EventMask::MODIFY) {
                            written.push(wd);
                        }
                        if shared.root.as_ref().is_some_and(|root| root.is(wd)) {
                            early::created(&mut shared, &watches, &event, overflows);
                            continue;
                        }
                        early::subdir_created(&mut shared, &watches, wd, &event, overflows);
                        self.dispatch(&shared, wd, event.mask, event.name, &mut created);
                    }
                    for wd in written {
                        if let Some(watched) = shared.listeners.get_mut(&wd) {
                            watched.update_writes(&watches);
                        }
                    }
                    drop(shared);
                    opening.created(created, overflows);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    opening.confirm(self.overflows.load(Ordering::Acquire));
                    return true;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break error,
            }
        };
        warn!(error = %failure, "reading inotify events failed; file followers fall back to their idle timers");
        reader.broken = true;
        false
    }

    /// Wakes the listeners of the event's directory and counts a creation of their live file
    /// (noting it in `created`); all of them if the kernel's queue overflowed and events were
    /// lost.
    fn dispatch(
        &self,
        shared: &Shared,
        wd: i32,
        mask: EventMask,
        name: Option<&OsStr>,
        created: &mut Vec<Arc<Interest>>,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            self.overflows.fetch_add(1, Ordering::AcqRel);
            for watched in shared.listeners.values() {
                for interest in &watched.interests {
                    interest.notify.notify_one();
                }
            }
            return;
        }
        let Some(watched) = shared.listeners.get(&wd) else {
            return;
        };
        let creation = mask.contains(EventMask::CREATE);
        let write = mask.contains(EventMask::MODIFY);
        for interest in &watched.interests {
            if creation
                && name == Some(interest.live_name.as_os_str())
                && !interest.is_initial_file()
            {
                interest.created.fetch_add(1, Ordering::AcqRel);
                created.push(interest.clone());
            }
            if write {
                // One-shot (see the module docs): the caller takes writes out of the mask.
                interest.armed.store(false, Ordering::Release);
            }
            interest.notify.notify_one();
        }
    }
}

/// Wakes the poller when dropped (also if the loop's future is dropped unfinished).
#[derive(Debug)]
struct StopOnDrop(OwnedFd);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }
}

impl WatchLoop {
    /// Reads events until `shutdown`, waking the followers of each directory that changed
    /// (all of them if the kernel's queue overflowed). The waiting is done by a blocking
    /// thread (`poll(2)` on the instance and on an eventfd that stops it), owned by this
    /// future.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let stop = match rustix::event::eventfd(0, EventfdFlags::CLOEXEC) {
            Ok(stop) => stop,
            Err(error) => {
                warn!(error = %error, "cannot create the inotify loop's stop signal; file followers fall back to their idle timers");
                return;
            }
        };
        let wake = match stop.try_clone() {
            Ok(wake) => StopOnDrop(wake),
            Err(error) => {
                warn!(error = %error, "cannot create the inotify loop's stop signal; file followers fall back to their idle timers");
                return;
            }
        };
        let mut poller = tokio::task::spawn_blocking(move || self.poll_until(&stop));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = &mut poller => return,
        }
        drop(wake);
        let _ = poller.await;
    }

    fn poll_until(self, stop: &OwnedFd) {
        let Some(poll_fd) = self.events.poll_fd.as_ref() else {
            return;
        };
        loop {
            let mut fds = [
                PollFd::new(poll_fd, PollFlags::IN),
                PollFd::new(stop, PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => {
                    warn!(error = %error, "waiting for inotify events failed; file followers fall back to their idle timers");
                    return;
                }
            }
            if !fds[1].revents().is_empty() {
                return;
            }
            if !self.events.drain(&self.shared) {
                return;
            }
        }
    }
}

mod births;
mod early;

#[cfg(test)]
mod tests;
