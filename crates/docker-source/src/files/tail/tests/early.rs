//! A new container's files, held by the watcher since Docker created its directory
//! (`watch/early.rs`): reading from the oldest file starts with the generations Docker deleted
//! before the follower looked, and counts exactly those nothing held.

use std::{fs, path::Path};

use super::*;
use crate::files::{tests::ContainersRoot, watch::Births};

const ID: &str = "cd0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

/// Docker's containers directory with one container, whose log is rotated with `max-file=2`.
struct Container(ContainersRoot);

impl Container {
    fn created() -> Container {
        let root = ContainersRoot::new();
        fs::create_dir(root.container(ID)).unwrap();
        // The watcher reads the directory's creation and registers it.
        assert!(root.watcher.holds_early(ID).is_none());
        Container(root)
    }

    fn live(&self) -> std::path::PathBuf {
        self.0.live(ID)
    }

    fn rotated(&self) -> std::path::PathBuf {
        let mut path = self.live().into_os_string();
        path.push(".1");
        path.into()
    }

    /// Docker starts a generation: `max-file=2` deletes `.1`, renames the live file to it, and
    /// creates a new one holding `text`. The watcher reads each creation; `true` if it holds
    /// the container's files since its directory's creation.
    fn write_generation(&self, text: &str) -> bool {
        if self.live().exists() {
            let _ = fs::remove_file(self.rotated());
            fs::rename(self.live(), self.rotated()).unwrap();
        }
        fs::write(self.live(), text).unwrap();
        self.0.watcher.holds_early(ID).is_some()
    }

    /// The follower registers: it takes the registration made at the directory's creation.
    fn births(&self) -> (crate::files::watch::Registration, Births) {
        let live_name = format!("{ID}-json.log");
        let registration = self
            .0
            .watcher
            .register(&self.0.container(ID), Path::new(&live_name).as_os_str());
        let births = registration.births().expect("told of creations");
        (registration, births)
    }

    fn open(&self, births: Births) -> Tail {
        Tail::open(LogFiles::new(&self.live(), 2), Start::Oldest, Some(births))
            .unwrap()
            .expect("files")
    }
}

#[test]
fn the_generations_docker_deleted_before_the_first_look_are_read_from_the_watchers_files() {
    let container = Container::created();
    for text in ["1\n", "2\n", "3\n"] {
        assert!(container.write_generation(text));
    }
    // Docker kept 2 and 3; the watcher holds 1 since its creation.
    let (_registration, births) = container.births();
    let mut tail = container.open(births);
    assert_eq!(drain(&mut tail, 64).0, "1\n2\n3\n");
    assert_eq!(tail.take_losses(), Losses::default());
}

#[test]
fn the_generations_nothing_held_before_the_first_look_are_counted_lost() {
    let container = Container::created();
    for text in ["1\n", "2\n", "3\n", "4\n"] {
        assert!(container.write_generation(text));
    }
    let (_registration, births) = container.births();
    // As if the watcher could not keep the first two open: Docker deleted them.
    let held = births.take_preopened();
    assert_eq!(held.len(), 4);
    let mut tail = container.open(births);
    assert_eq!(drain(&mut tail, 64).0, "3\n4\n");
    let losses = tail.take_losses();
    assert_eq!(losses.rotated_files, 2, "{losses:?}");
}

/// A directory registered late (the follower's own registration) promises nothing about
/// generations older than its first look: none is counted.
#[test]
fn a_late_registration_counts_nothing_before_its_first_look() {
    let container = Container::created();
    container.0.watcher.release_early(ID);
    for text in ["1\n", "2\n", "3\n"] {
        assert!(!container.write_generation(text));
    }
    let (_registration, births) = container.births();
    let mut tail = container.open(births);
    assert_eq!(drain(&mut tail, 64).0, "2\n3\n");
    assert_eq!(tail.take_losses(), Losses::default());
}
