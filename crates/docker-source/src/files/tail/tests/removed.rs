//! A removed container's files: the tail's own descriptors and the live files the watcher
//! opened as Docker created them, whatever their counts of creations say.

use std::fs;

use super::*;

#[test]
fn a_removed_containers_files_are_read_to_their_end() {
    let dir = Dir::new();
    dir.append("c.log", "a\n");
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    dir.rotate(3);
    dir.append("c.log", "b\n");
    tail.check().unwrap();
    let path = dir.dir.path().to_path_buf();
    fs::remove_dir_all(&path).unwrap();
    assert_eq!(drain(&mut tail, 64).0, "a\nb\n");
    assert_eq!(drain(&mut tail, 64).0, "");
}

/// A removed container whose tail fell behind while Docker rotated through every file: the
/// live files the watcher opened as they were created are all that is left, and they are read
/// in order; the ones it no longer kept are counted lost.
#[test]
fn a_removed_containers_files_opened_as_they_were_created_are_read_in_order() {
    for (rotations, kept_lost) in [(3u64, 0u64), (12, 12 - 8)] {
        let dir = Dir::new();
        dir.append("c.log", "0\n");
        let (watcher, _no_loop) = crate::files::watch::Watcher::new();
        let registration = watcher.register(dir.dir.path(), std::ffi::OsStr::new("c.log"));
        let births = registration.births().expect("inotify counts creations");
        let mut tail = Tail::open(dir.files(), Start::Oldest, Some(births.clone()))
            .unwrap()
            .unwrap()
            .with_rotated_size(2);
        for n in 1..=rotations {
            dir.rotate(2);
            dir.append("c.log", &format!("{n}\n"));
            // The watcher reads the creation and opens the new live file.
            births.count().unwrap();
        }
        fs::remove_dir_all(dir.dir.path()).unwrap();
        tail.removed().unwrap();
        let text = drain(&mut tail, 64).0;
        let expected: String = std::iter::once(0)
            .chain(kept_lost + 1..=rotations)
            .map(|n| format!("{n}\n"))
            .collect();
        assert_eq!(text, expected, "{rotations} rotations");
        let losses = tail.take_losses();
        assert_eq!(losses.rotated_files, kept_lost, "{rotations} rotations");
        assert_eq!(losses.rotated_bytes, kept_lost * 2, "{rotations} rotations");
    }
}

/// A tail of `dir` read through its first generation, the watch counting creations (the test
/// takes the watcher's files itself, `take_preopened`), and the watch to keep.
fn read_first_generation(
    dir: &Dir,
) -> (
    Tail,
    crate::files::watch::Births,
    (
        crate::files::watch::Registration,
        crate::files::watch::Watcher,
    ),
) {
    dir.append("c.log", "0\n");
    let (tail, watch) = counted_tail(dir, 2);
    let mut tail = tail.with_rotated_size(2);
    assert_eq!(drain(&mut tail, 64).0, "0\n");
    let births = watch.0.births().unwrap();
    (tail, births, watch)
}

/// Rotates `dir` (`max-file=2`) writing `n\n` in each new generation; the watcher opens each.
fn rotate_through(
    dir: &Dir,
    births: &crate::files::watch::Births,
    generations: std::ops::RangeInclusive<u64>,
) {
    for n in generations {
        dir.rotate(2);
        dir.append("c.log", &format!("{n}\n"));
        births.count().unwrap();
    }
}

fn count(created: u64) -> Option<crate::files::watch::BirthCount> {
    Some(crate::files::watch::BirthCount {
        created,
        overflows: 0,
    })
}

/// The kernel shows a new file a moment before it reports its creation: a file the watcher
/// opened in that moment carries the count of the generation before. A removed container's
/// tail still reads it (it is not the generation held under that number), once (opened again
/// for its own creation, it is the same inode), and counts exactly the generation it skipped.
#[test]
fn a_file_opened_before_its_creation_was_reported_is_the_next_generation() {
    let dir = Dir::new();
    let (mut tail, births, _watch) = read_first_generation(&dir);
    rotate_through(&dir, &births, 1..=1);
    births.take_preopened();
    // Generation 1 under the count of generation 0.
    births.push_preopened(count(0), fs::File::open(dir.path("c.log")).unwrap());
    fs::remove_dir_all(dir.dir.path()).unwrap();
    tail.removed().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "1\n");
    assert_eq!(tail.take_losses(), Losses::default());

    let dir = Dir::new();
    let (mut tail, births, _watch) = read_first_generation(&dir);
    rotate_through(&dir, &births, 1..=2);
    births.take_preopened();
    // Generation 2, opened for creation 1 (reported late) and again for its own.
    births.push_preopened(count(1), fs::File::open(dir.path("c.log")).unwrap());
    births.push_preopened(count(2), fs::File::open(dir.path("c.log")).unwrap());
    fs::remove_dir_all(dir.dir.path()).unwrap();
    tail.removed().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "2\n");
    let lost = tail.take_losses();
    assert_eq!(
        (lost.rotated_files, lost.rotated_bytes),
        (1, 2),
        "generation 1"
    );
}

/// After an overflow of the kernel's queue the counts are no longer tied to the numbers (no
/// look can tie them again: the container was removed). The files the watcher opened are
/// still read, in order and once; the generations between them are counted exactly, the one
/// before the first as possibly lost (inexact).
#[test]
fn files_opened_after_an_overflow_of_the_kernels_queue_are_read_in_order() {
    let dir = Dir::new();
    let (mut tail, births, _watch) = read_first_generation(&dir);
    births.overflow();
    rotate_through(&dir, &births, 1..=3);
    fs::remove_dir_all(dir.dir.path()).unwrap();
    tail.removed().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "1\n2\n3\n");
    assert_eq!(
        tail.take_losses().rotated_files,
        1,
        "inexact: one may be lost"
    );

    // With the directory still there, the next look ties the counts to the numbers again.
    let dir = Dir::new();
    let (mut tail, births, _watch) = read_first_generation(&dir);
    births.overflow();
    rotate_through(&dir, &births, 1..=3);
    tail.check().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "1\n2\n3\n");
    assert_eq!(tail.take_losses(), Losses::default());
}

/// A removed container whose files the follower never opened: a tail of the files the watcher
/// opened as Docker created them, read from the oldest (the ones it no longer kept, before it,
/// are the follower's to count); none, no tail.
#[test]
fn a_removed_container_never_opened_is_read_from_the_files_the_watcher_opened() {
    for (rotations, first_kept) in [(2u64, 1u64), (12, 12 - 7)] {
        let dir = Dir::new();
        let (watcher, _no_loop) = crate::files::watch::Watcher::new();
        let registration = watcher.register(dir.dir.path(), std::ffi::OsStr::new("c.log"));
        let births = registration.births().expect("inotify counts creations");
        dir.append("c.log", "1\n");
        births.count().unwrap();
        rotate_through(&dir, &births, 2..=rotations);
        fs::remove_dir_all(dir.dir.path()).unwrap();
        let (tail, first) = Tail::of_removed(dir.files(), Some(births.clone()))
            .unwrap()
            .expect("the watcher opened files");
        assert!(!first, "registered after the directory was created");
        let mut tail = tail.with_rotated_size(2);
        tail.removed().unwrap();
        let expected: String = (first_kept..=rotations).map(|n| format!("{n}\n")).collect();
        assert_eq!(drain(&mut tail, 64).0, expected, "{rotations} rotations");
        assert_eq!(tail.take_losses(), Losses::default());
        assert!(
            Tail::of_removed(dir.files(), Some(births))
                .unwrap()
                .is_none()
        );
    }
    assert!(
        Tail::of_removed(Dir::new().files(), None)
            .unwrap()
            .is_none()
    );
}

/// With no descriptor to spare, a newer generation is only seen; the watcher opened it as it
/// was created, so the tail holds it after all, and reads it once the container is removed.
/// Those it had no room for are counted lost, up to the last creation.
#[test]
fn a_generation_only_seen_is_read_through_the_file_the_watcher_opened() {
    let dir = Dir::new();
    dir.append("c.log", "0\n");
    let (watcher, _no_loop) = crate::files::watch::Watcher::new();
    let registration = watcher.register(dir.dir.path(), std::ffi::OsStr::new("c.log"));
    let births = registration.births().expect("inotify counts creations");
    let files = LogFiles::new(&dir.path("c.log"), 3);
    let mut tail = Tail::open_with(files, Start::Oldest, Some(births.clone()), 0)
        .unwrap()
        .unwrap()
        .with_rotated_size(2);
    dir.rotate(3);
    dir.append("c.log", "1\n");
    // Generation 1 is listed, not opened; the look's count has the watcher open it.
    tail.check().unwrap();
    rotate_through(&dir, &births, 2..=3);
    fs::remove_dir_all(dir.dir.path()).unwrap();
    tail.removed().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "0\n1\n");
    let lost = tail.take_losses();
    assert_eq!(
        (lost.rotated_files, lost.rotated_bytes),
        (2, 4),
        "no room for 2 and 3"
    );
}

/// Generations Docker created after the last file the watcher opened (it could not open them
/// in time) are counted lost, exactly: the count of creations says how many.
#[test]
fn generations_created_after_the_last_file_held_are_counted_lost() {
    let dir = Dir::new();
    let (mut tail, births, _watch) = read_first_generation(&dir);
    rotate_through(&dir, &births, 1..=2);
    births.take_preopened();
    fs::remove_dir_all(dir.dir.path()).unwrap();
    tail.removed().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "");
    let lost = tail.take_losses();
    assert_eq!((lost.rotated_files, lost.rotated_bytes), (2, 4));
}
