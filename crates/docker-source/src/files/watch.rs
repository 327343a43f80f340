//! Wakes file followers when their log directory changes: one inotify instance for the whole
//! source, one watch per directory, one [`Notify`] per follower.
//!
//! The kernel queues an event per write, rename, creation or deletion in a watched directory
//! (merging identical consecutive ones); [`WatchLoop::run`] reads them through the inotify
//! crate's stream (one read per batch of events) and wakes the followers concerned. `Notify` keeps one permit, so a change that
//! happens while a follower is busy reading still wakes its next wait: nothing is missed and an
//! idle container costs nothing. Where inotify is not available (no instance left, too many
//! watches, a file system without it), a follower polls instead, backing off from
//! [`POLL_MIN`] to [`POLL_MAX`] while nothing changes.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::StreamExt;
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The quickest poll, right after a change was seen.
pub(crate) const POLL_MIN: Duration = Duration::from_millis(25);
/// The slowest poll, for a directory where nothing happens.
pub(crate) const POLL_MAX: Duration = Duration::from_secs(1);

/// What changes in a log directory wake its follower.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
}

/// The followers waiting on each watch, by watch descriptor number.
type Listeners = HashMap<i32, (WatchDescriptor, Vec<(u64, Arc<Notify>)>)>;

#[derive(Debug, Default)]
struct Shared {
    listeners: Listeners,
    next_id: u64,
}

/// Registers directories; cheap to clone. Without inotify, every registration polls.
#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    watches: Option<Watches>,
    shared: Arc<Mutex<Shared>>,
}

/// Reads the inotify events and wakes the followers (run it on any runtime).
#[derive(Debug)]
pub(crate) struct WatchLoop {
    inotify: Inotify,
    shared: Arc<Mutex<Shared>>,
}

impl Watcher {
    /// A watcher and the loop that serves it; without inotify (logged), a polling watcher and
    /// no loop.
    pub(crate) fn new() -> (Watcher, Option<WatchLoop>) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        match Inotify::init() {
            Ok(inotify) => (
                Watcher {
                    watches: Some(inotify.watches()),
                    shared: shared.clone(),
                },
                Some(WatchLoop { inotify, shared }),
            ),
            Err(error) => {
                warn!(error = %error, "inotify is not available; file followers poll their directories");
                (Watcher::polling(), None)
            }
        }
    }

    /// A watcher whose registrations all poll.
    pub(crate) fn polling() -> Watcher {
        Watcher {
            watches: None,
            shared: Arc::default(),
        }
    }

    /// Starts watching `dir` for one follower. A directory that cannot be watched is polled.
    pub(crate) fn register(&self, dir: &Path) -> Registration {
        let notify = Arc::new(Notify::new());
        let watch = self.watches.clone().and_then(|mut watches| {
            match watches.add(dir, mask()) {
                Ok(wd) => Some(wd),
                Err(error) => {
                    debug!(dir = %dir.display(), error = %error, "cannot watch the log directory; polling it");
                    None
                }
            }
        });
        let watch = watch.map(|wd| {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let id = shared.next_id;
            shared.next_id += 1;
            shared
                .listeners
                .entry(wd.get_watch_descriptor_id())
                .or_insert_with(|| (wd.clone(), Vec::new()))
                .1
                .push((id, notify.clone()));
            (wd.get_watch_descriptor_id(), id)
        });
        Registration {
            watcher: self.clone(),
            notify,
            watch,
            poll_delay: POLL_MIN,
        }
    }

    fn unregister(&self, wd: i32, id: u64) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((descriptor, listeners)) = shared.listeners.get_mut(&wd) else {
            return;
        };
        listeners.retain(|(other, _)| *other != id);
        if listeners.is_empty() {
            let descriptor = descriptor.clone();
            shared.listeners.remove(&wd);
            // The kernel already dropped the watch of a deleted directory: nothing to undo.
            if let Some(mut watches) = self.watches.clone() {
                let _ = watches.remove(descriptor);
            }
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
    notify: Arc<Notify>,
    /// The watch descriptor number and this registration's id; `None`: polling.
    watch: Option<(i32, u64)>,
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
            self.notify.notified().await;
        } else {
            tokio::time::sleep(self.poll_delay).await;
            self.poll_delay = (self.poll_delay * 2).min(POLL_MAX);
        }
    }

    /// The follower found new data: poll quickly again.
    pub(crate) fn saw_data(&mut self) {
        self.poll_delay = POLL_MIN;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some((wd, id)) = self.watch {
            self.watcher.unregister(wd, id);
        }
    }
}

impl WatchLoop {
    /// Reads events until `shutdown`, waking the followers of each directory that changed
    /// (all of them if the kernel's queue overflowed).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let WatchLoop { inotify, shared } = self;
        let mut events = match inotify.into_event_stream(vec![0u8; 16 * 1024]) {
            Ok(events) => events,
            Err(error) => {
                warn!(error = %error, "cannot poll the inotify instance; file followers fall back to their idle timers");
                return;
            }
        };
        loop {
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => wake(&shared, &event),
                Some(Err(error)) => {
                    warn!(error = %error, "reading inotify events failed; file followers fall back to their idle timers");
                    return;
                }
                None => return,
            }
        }
    }
}

/// Notifies the listeners of the event's directory (all of them if the kernel's queue
/// overflowed and events were lost).
fn wake(shared: &Mutex<Shared>, event: &inotify::EventOwned) {
    let shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
    if event.mask.contains(inotify::EventMask::Q_OVERFLOW) {
        for (_, listeners) in shared.listeners.values() {
            for (_, notify) in listeners {
                notify.notify_one();
            }
        }
        return;
    }
    if let Some((_, listeners)) = shared.listeners.get(&event.wd.get_watch_descriptor_id()) {
        for (_, notify) in listeners {
            notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_in_a_watched_directory_wakes_its_follower_only() {
        let (watcher, watch_loop) = Watcher::new();
        let watch_loop = watch_loop.expect("inotify works here");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch_loop.run(shutdown.clone()));
        let watched = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let mut registration = watcher.register(watched.path());
        let mut bystander = watcher.register(other.path());
        assert!(!registration.is_polling());
        assert_eq!(watcher.watched_dirs(), 2);

        std::fs::write(watched.path().join("c.log"), b"line\n").unwrap();
        tokio::time::timeout(Duration::from_secs(10), registration.changed())
            .await
            .expect("the write wakes the follower");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), bystander.changed())
                .await
                .is_err(),
            "another directory's follower stays asleep"
        );

        drop(registration);
        drop(bystander);
        assert_eq!(watcher.watched_dirs(), 0);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_change_while_the_follower_is_busy_is_not_missed() {
        let (watcher, watch_loop) = Watcher::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch_loop.unwrap().run(shutdown.clone()));
        let dir = tempfile::tempdir().unwrap();
        let mut registration = watcher.register(dir.path());
        std::fs::write(dir.path().join("c.log"), b"x").unwrap();
        // Not waiting yet: the loop leaves a permit.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        tokio::time::timeout_at(deadline, registration.changed())
            .await
            .expect("the permit left by the event");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn polling_backs_off_while_idle_and_speeds_up_on_data() {
        let watcher = Watcher::polling();
        let dir = tempfile::tempdir().unwrap();
        let mut registration = watcher.register(dir.path());
        assert!(registration.is_polling());
        let mut waits = Vec::new();
        for _ in 0..8 {
            let start = tokio::time::Instant::now();
            registration.changed().await;
            waits.push(start.elapsed().as_millis());
        }
        assert_eq!(waits, [25, 50, 100, 200, 400, 800, 1000, 1000]);
        registration.saw_data();
        let start = tokio::time::Instant::now();
        registration.changed().await;
        assert_eq!(start.elapsed().as_millis(), 25);
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_watched_is_polled() {
        let (watcher, _watch_loop) = Watcher::new();
        let registration = watcher.register(Path::new("/nonexistent/log/dir"));
        assert!(registration.is_polling());
        assert_eq!(watcher.watched_dirs(), 0);
    }
}
