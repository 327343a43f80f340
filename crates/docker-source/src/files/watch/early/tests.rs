//! Early registrations against real inotify on a temporary "containers" directory. No loop
//! reads the events: `holds_early` and `Births::count` dispatch them, so each step is exact.

use std::io::Read as _;

use super::*;
use crate::files::tests::ContainersRoot as Root;

const ID: &str = "ab0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd";

fn content(mut file: &File) -> String {
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    text
}

/// Docker creates the directory (`create`), then the log file (`start`); the job writes and is
/// removed. The watcher held the file from its creation; the follower that registers later
/// takes it over, as the container's first file.
#[test]
fn a_new_containers_log_file_is_held_from_its_creation_and_claimed_by_its_follower() {
    let root = Root::new();
    std::fs::create_dir(root.container(ID)).unwrap();
    assert!(root.watcher.holds_early(ID).is_none(), "no log file yet");
    assert_eq!(root.watcher.early_count(), 1, "the directory is registered");
    std::fs::write(root.live(ID), "line\n").unwrap();
    assert!(
        root.watcher.holds_early(ID).is_some(),
        "opened as it was created"
    );
    std::fs::remove_dir_all(root.container(ID)).unwrap();
    assert!(
        root.watcher.holds_early(ID).is_some(),
        "still held once Docker deleted it"
    );

    let live_name = format!("{ID}-json.log");
    let registration = root
        .watcher
        .register(&root.container(ID), OsStr::new(&live_name));
    assert_eq!(root.watcher.early_count(), 0, "claimed");
    let births = registration.births().expect("told of creations");
    let held = births.take_preopened();
    assert_eq!(held.len(), 1);
    assert!(births.is_first(held[0].count), "the container's first file");
    assert_eq!(content(&held[0].file), "line\n");
}

/// The `local` driver: the container's `local-logs/` is registered as Docker creates it, and
/// its `container.log` held from its creation; released with the container.
#[test]
fn a_new_containers_local_log_is_held_from_its_creation_and_claimed_by_its_follower() {
    let root = Root::new();
    let local = root.container(ID).join("local-logs");
    std::fs::create_dir(root.container(ID)).unwrap();
    assert!(root.watcher.holds_early(ID).is_none());
    std::fs::create_dir(&local).unwrap();
    assert!(root.watcher.holds_early(ID).is_none(), "no log file yet");
    assert_eq!(
        root.watcher.early_count(),
        2,
        "both directories are registered"
    );
    std::fs::write(local.join("container.log"), "entry").unwrap();
    assert_eq!(
        root.watcher.holds_early(ID),
        Some(crate::files::Driver::Local)
    );
    std::fs::remove_dir_all(root.container(ID)).unwrap();

    let registration = root.watcher.register(&local, OsStr::new("container.log"));
    assert_eq!(
        root.watcher.early_count(),
        1,
        "the local directory's is claimed"
    );
    let births = registration.births().unwrap();
    let held = births.take_preopened();
    assert_eq!(held.len(), 1);
    assert!(births.is_first(held[0].count));
    assert_eq!(content(&held[0].file), "entry");
    root.watcher.release_early(ID);
    assert_eq!(root.watcher.early_count(), 0);
}

/// The log file was created before the watcher read the directory's creation: it is found by
/// a look, as the first file (count 0), and a later rotation is counted from it.
#[test]
fn a_log_file_created_before_its_directory_was_registered_is_the_first() {
    let root = Root::new();
    std::fs::create_dir(root.container(ID)).unwrap();
    std::fs::write(root.live(ID), "first\n").unwrap();
    assert!(root.watcher.holds_early(ID).is_some());
    let live_name = format!("{ID}-json.log");
    let registration = root
        .watcher
        .register(&root.container(ID), OsStr::new(&live_name));
    let births = registration.births().unwrap();
    assert_eq!(births.count().unwrap().created, 0, "no creation counted");
    let mut rotated = root.live(ID).into_os_string();
    rotated.push(".1");
    std::fs::rename(root.live(ID), &rotated).unwrap();
    std::fs::write(root.live(ID), "second\n").unwrap();
    assert_eq!(
        births.count().unwrap().created,
        1,
        "the rotation is counted"
    );
    let held = births.take_preopened();
    let counts: Vec<_> = held.iter().map(|h| h.count.map(|c| c.created)).collect();
    assert_eq!(counts, [Some(0), Some(1)]);
    assert!(births.is_first(held[0].count));
    assert!(!births.is_first(held[1].count));
    assert_eq!(content(&held[0].file), "first\n");
    assert_eq!(content(&held[1].file), "second\n");
}

/// A follower registered after the directory existed counts from its registration: its
/// oldest file is not known to be the first.
#[test]
fn a_directory_registered_late_is_not_counted_from_the_first_file() {
    let root = Root::new();
    std::fs::create_dir(root.container(ID)).unwrap();
    root.watcher.release_early(ID);
    let registration = root
        .watcher
        .register(&root.container(ID), OsStr::new("c.log"));
    let births = registration.births().unwrap();
    std::fs::write(root.container(ID).join("c.log"), "line\n").unwrap();
    assert_eq!(births.count().unwrap().created, 1);
    let held = births.take_preopened();
    assert_eq!(held.len(), 1);
    assert!(!births.is_first(held[0].count));
}

/// What the source does not claim is closed: released at once, or after [`EARLY_KEEP`]; past
/// [`EARLY_MAX`], new directories are left to the source's events; names that are not
/// container ids are ignored.
#[test]
fn unclaimed_containers_are_bounded_released_and_expired() {
    let root = Root::new();
    std::fs::create_dir(root.container(ID)).unwrap();
    std::fs::write(root.live(ID), "line\n").unwrap();
    assert!(root.watcher.holds_early(ID).is_some());
    root.watcher.release_early(ID);
    assert!(root.watcher.holds_early(ID).is_none());
    assert_eq!(root.watcher.watched_dirs(), 0, "its watch is removed");

    std::fs::create_dir(root.dir.path().join("not-a-container")).unwrap();
    for n in 0..=EARLY_MAX {
        std::fs::create_dir(root.container(&format!("{n:064x}"))).unwrap();
    }
    assert!(root.watcher.holds_early(ID).is_none());
    assert_eq!(root.watcher.early_count(), EARLY_MAX, "bounded");
    root.watcher.expire_early();
    assert_eq!(root.watcher.early_count(), EARLY_MAX, "kept for a while");
    root.watcher.expire_early_after(Duration::ZERO);
    assert_eq!(root.watcher.early_count(), 0);
    assert_eq!(root.watcher.watched_dirs(), 0);
}
