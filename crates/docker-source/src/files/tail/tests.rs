//! The tail against real files in a temporary directory, rotated the way Docker rotates them.

use std::{fs, io::Write, path::PathBuf};

use super::*;

/// A temporary directory whose `c.log` is written and rotated as Docker does it.
pub(in crate::files) struct Dir {
    pub(in crate::files) dir: tempfile::TempDir,
}

impl Dir {
    pub(in crate::files) fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(in crate::files) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self) -> LogFiles {
        LogFiles::new(&self.path("c.log"), 4)
    }

    pub(in crate::files) fn append(&self, name: &str, text: &str) {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// Docker's rotation with `max_file` files: the oldest deleted, the others renamed up, a
    /// new live file.
    pub(in crate::files) fn rotate(&self, max_file: u32) {
        let _ = fs::remove_file(self.path(&format!("c.log.{}", max_file - 1)));
        for index in (1..max_file - 1).rev() {
            let _ = fs::rename(
                self.path(&format!("c.log.{index}")),
                self.path(&format!("c.log.{}", index + 1)),
            );
        }
        fs::rename(self.path("c.log"), self.path("c.log.1")).unwrap();
        fs::File::create(self.path("c.log")).unwrap();
    }

    /// Replaces `c.log.N` by `c.log.N.gz`, as Docker's compression does.
    fn compress(&self, index: u32) {
        let plain = self.path(&format!("c.log.{index}"));
        let content = fs::read(&plain).unwrap();
        let gz = fs::File::create(self.path(&format!("c.log.{index}.gz"))).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        encoder.write_all(&content).unwrap();
        encoder.finish().unwrap();
        fs::remove_file(plain).unwrap();
    }
}

/// Reads until idle (bounded), returning the content and the progress events.
fn drain(tail: &mut Tail, max: usize) -> (String, Vec<Progress>) {
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    for _ in 0..10_000 {
        match tail.read(&mut buffer, max).unwrap() {
            Progress::Data(_) => {}
            Progress::Idle => return (String::from_utf8(buffer).unwrap(), events),
            other => events.push(other),
        }
    }
    panic!("the tail never went idle");
}

#[test]
fn a_live_file_is_read_as_it_grows() {
    let dir = Dir::new();
    dir.append("c.log", "one\n");
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut tail, 3).0, "one\n");
    assert_eq!(drain(&mut tail, 3).0, "");
    dir.append("c.log", "two\nthr");
    assert_eq!(drain(&mut tail, 64).0, "two\nthr");
    assert_eq!(tail.take_losses(), Losses::default());
}

#[test]
fn no_log_file_yet_opens_nothing() {
    let dir = Dir::new();
    assert!(
        Tail::open(dir.files(), Start::Oldest, None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_renamed_file_is_read_to_its_end_before_the_new_one() {
    let dir = Dir::new();
    dir.append("c.log", "a1\n");
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut tail, 64).0, "a1\n");
    // Written after the last read, then rotated before the next one.
    dir.append("c.log", "a2\n");
    dir.rotate(3);
    dir.append("c.log", "b1\n");
    let (text, events) = drain(&mut tail, 64);
    assert_eq!(text, "a2\nb1\n");
    assert_eq!(events, [Progress::NextFile]);
}

#[test]
fn generations_rotated_and_deleted_while_behind_are_read_through_held_descriptors() {
    let dir = Dir::new();
    dir.append("c.log", "a\n");
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    dir.rotate(3);
    dir.append("c.log", "b\n");
    tail.check().unwrap();
    dir.rotate(3);
    dir.append("c.log", "c\n");
    tail.check().unwrap();
    // max-file=3 deletes the first generation (the one being read) and the second.
    dir.rotate(3);
    dir.rotate(3);
    dir.append("c.log", "e\n");
    let (text, events) = drain(&mut tail, 1);
    // "d" never existed (an empty generation); everything that was written is read once.
    assert_eq!(text, "a\nb\nc\ne\n");
    assert!(events.iter().all(|e| *e == Progress::NextFile));
    assert_eq!(tail.take_losses(), Losses::default());
}

#[test]
fn a_generation_only_seen_and_deleted_before_it_is_reached_is_counted_lost() {
    let dir = Dir::new();
    dir.append("c.log", "a\n");
    let mut tail = Tail::open_with(dir.files(), Start::Oldest, None, 0)
        .unwrap()
        .unwrap();
    dir.rotate(3);
    dir.append("c.log", "b-lost\n");
    tail.check().unwrap();
    dir.rotate(3);
    dir.append("c.log", "c\n");
    tail.check().unwrap();
    // Deleting `.1`'s predecessor: the second generation ("b-lost", now `.1`) is removed.
    fs::remove_file(dir.path("c.log.1")).unwrap();
    let (text, _) = drain(&mut tail, 64);
    assert_eq!(text, "a\nc\n");
    assert_eq!(
        tail.take_losses(),
        Losses {
            rotated_files: 1,
            rotated_bytes: 7,
            truncations: 0
        }
    );
}

#[test]
fn truncation_in_place_is_detected_whether_the_file_shrank_or_grew_again() {
    let dir = Dir::new();
    dir.append("c.log", "first line of the first fill\n");
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut tail, 64).0, "first line of the first fill\n");
    // max-file=1: the file is truncated and written again, shorter.
    fs::File::create(dir.path("c.log")).unwrap();
    dir.append("c.log", "short\n");
    let (text, events) = drain(&mut tail, 64);
    assert_eq!(
        (text.as_str(), events.as_slice()),
        ("short\n", &[Progress::Truncated][..])
    );
    // Truncated again and refilled beyond the previous offset: the start differs.
    fs::File::create(dir.path("c.log")).unwrap();
    dir.append("c.log", "another, longer first line\n");
    let (text, events) = drain(&mut tail, 64);
    assert_eq!(text, "another, longer first line\n");
    assert_eq!(events, [Progress::Truncated]);
    assert_eq!(tail.take_losses().truncations, 2);
}

#[test]
fn compressed_rotated_files_are_read_in_order() {
    let dir = Dir::new();
    dir.append("c.log", "one\n");
    dir.rotate(4);
    dir.append("c.log", "two\n");
    dir.rotate(4);
    dir.append("c.log", "three\n");
    dir.compress(2);
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    assert!(!tail.is_plain());
    let (text, events) = drain(&mut tail, 2);
    assert_eq!(text, "one\ntwo\nthree\n");
    assert_eq!(events, [Progress::NextFile, Progress::NextFile]);
}

#[test]
fn a_generation_compressed_before_its_successor_was_seen_is_recognised() {
    let dir = Dir::new();
    dir.append("c.log", "generation one, long enough to be recognised\n");
    let mut tail = Tail::open(dir.files(), Start::Oldest, None)
        .unwrap()
        .unwrap();
    let mut buffer = Vec::new();
    assert_eq!(tail.read(&mut buffer, 10).unwrap(), Progress::Data(10));
    dir.rotate(3);
    dir.append("c.log", "generation two\n");
    dir.compress(1);
    tail.check().unwrap();
    let (text, _) = drain(&mut tail, 64);
    assert_eq!(
        format!("{}{text}", String::from_utf8(buffer).unwrap()),
        "generation one, long enough to be recognised\ngeneration two\n"
    );
    assert_eq!(tail.take_losses(), Losses::default());
}

#[test]
fn reading_resumes_at_an_offset_of_a_rotated_file() {
    let dir = Dir::new();
    dir.append("c.log", "old1\nold2\n");
    dir.rotate(3);
    dir.append("c.log", "new\n");
    let id = FileId::of(&fs::metadata(dir.path("c.log.1")).unwrap());
    let mut tail = Tail::open(dir.files(), Start::At { id, offset: 5 }, None)
        .unwrap()
        .unwrap();
    assert_eq!(tail.position(), (id, 5));
    assert_eq!(tail.read_range(0, 5).unwrap(), b"old1\n");
    assert_eq!(drain(&mut tail, 64).0, "old2\nnew\n");
    let gone = FileId {
        dev: id.dev,
        ino: 1,
    };
    assert!(
        Tail::open(
            dir.files(),
            Start::At {
                id: gone,
                offset: 0
            },
            None
        )
        .unwrap()
        .is_none()
    );
}

/// How a concurrent writer and the tail fared.
#[derive(Debug)]
struct Outcome {
    /// Lines never read.
    missing: u64,
    losses: Losses,
    /// Lines in one rotated generation.
    lines_per_file: u64,
}

/// A writer rotating as Docker 20.10 does (`max_file` files, `max_size` bytes) while the tail
/// reads concurrently, pausing `pause` every 64 reads (a reader starved of CPU). Asserts that
/// every line read is read once and in order.
fn rotate_concurrently(
    max_file: u32,
    max_size: usize,
    counted: bool,
    pause: Option<std::time::Duration>,
) -> Outcome {
    let dir = Dir::new();
    dir.append("c.log", "");
    let (watcher, _no_loop) = crate::files::watch::Watcher::new();
    let registration = watcher.register(dir.dir.path(), std::ffi::OsStr::new("c.log"));
    let births = if counted { registration.births() } else { None };
    let files = LogFiles::new(&dir.path("c.log"), max_file);
    let mut tail = Tail::open(files, Start::Oldest, births)
        .unwrap()
        .unwrap()
        .with_rotated_size(max_size as u64);
    let lines = 100_000u64;
    let path = dir.dir.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        let live = path.join("c.log");
        let mut file = fs::OpenOptions::new().append(true).open(&live).unwrap();
        let mut size = 0;
        for n in 0..lines {
            let line = format!("{n:08}\n");
            file.write_all(line.as_bytes()).unwrap();
            size += line.len();
            if size >= max_size {
                drop(file);
                rotate_in(&path, max_file);
                file = fs::File::create(&live).unwrap();
                size = 0;
            }
        }
    });
    let mut buffer = Vec::new();
    let mut done = false;
    for reads in 0..10_000_000u64 {
        tail.check().unwrap();
        let progress = tail.read(&mut buffer, 4096).unwrap();
        assert_ne!(progress, Progress::Truncated, "no truncation happened");
        if let Some(pause) = pause
            && reads % 64 == 0
        {
            std::thread::sleep(pause);
        }
        if progress == Progress::Idle {
            if done {
                break;
            }
            done = writer.is_finished();
        }
    }
    writer.join().unwrap();
    let text = String::from_utf8(buffer).unwrap();
    let mut expected = 0u64;
    let mut missing = 0u64;
    for line in text.lines() {
        let n: u64 = line.parse().unwrap();
        assert!(
            n >= expected,
            "line {n} again or out of order (expected {expected})"
        );
        missing += n - expected;
        expected = n + 1;
    }
    missing += lines - expected;
    Outcome {
        missing,
        losses: tail.take_losses(),
        lines_per_file: max_size.div_ceil(9) as u64,
    }
}

/// Docker 20.10's rotation in `dir` (what [`Dir::rotate`] does, for a writer thread): with
/// `max_file` 1, the live file replaces `.1`.
fn rotate_in(dir: &std::path::Path, max_file: u32) {
    if max_file > 1 {
        let _ = fs::remove_file(dir.join(format!("c.log.{}", max_file - 1)));
    }
    for index in (1..max_file.saturating_sub(1)).rev() {
        let _ = fs::rename(
            dir.join(format!("c.log.{index}")),
            dir.join(format!("c.log.{}", index + 1)),
        );
    }
    fs::rename(dir.join("c.log"), dir.join("c.log.1")).unwrap();
}

/// With the count of creations, every generation deleted unseen is counted, exactly: the
/// lines missing are the lines of the files counted, whatever the rotation rate.
#[test]
fn a_concurrent_writer_rotating_fast_loses_nothing_uncounted() {
    let cases = [
        (3, 16 * 1024, None),
        (3, 2 * 1024, None),
        (1, 2 * 1024, None),
        (3, 2 * 1024, Some(std::time::Duration::from_millis(2))),
        (1, 16 * 1024, Some(std::time::Duration::from_millis(5))),
    ];
    for (max_file, max_size, pause) in cases {
        let outcome = rotate_concurrently(max_file, max_size, true, pause);
        assert_eq!(
            outcome.missing,
            outcome.losses.rotated_files * outcome.lines_per_file,
            "max-file={max_file} max-size={max_size} pause={pause:?}: {outcome:?}"
        );
        // A generation never seen counts `max-size`; one listed but not opened, its size when
        // it was listed (a line more, or less while it was still the live file).
        let files = outcome.losses.rotated_files;
        assert!(
            outcome.losses.rotated_bytes <= files * (max_size as u64 + 9),
            "{outcome:?}"
        );
    }
}

/// Without it (polling), a loss is still never silent: it is counted at least once.
#[test]
fn without_the_count_of_creations_a_loss_is_still_counted() {
    for (max_file, pause) in [(3, None), (1, Some(std::time::Duration::from_millis(5)))] {
        let outcome = rotate_concurrently(max_file, 2 * 1024, false, pause);
        assert!(
            outcome.missing == 0 || outcome.losses.rotated_files > 0,
            "max-file={max_file}: {outcome:?}"
        );
    }
}

/// A tail of `dir`'s `c.log` (Docker's `max-file`: `max_file`) from its oldest file, numbered
/// by inotify's count of creations; the watch lasts as long as the returned pair.
fn counted_tail(
    dir: &Dir,
    max_file: u32,
) -> (
    Tail,
    (
        crate::files::watch::Registration,
        crate::files::watch::Watcher,
    ),
) {
    let (watcher, _no_loop) = crate::files::watch::Watcher::new();
    let registration = watcher.register(dir.dir.path(), std::ffi::OsStr::new("c.log"));
    let births = registration.births().expect("inotify counts creations");
    let files = LogFiles::new(&dir.path("c.log"), max_file);
    let tail = Tail::open(files, Start::Oldest, Some(births))
        .unwrap()
        .unwrap();
    (tail, (registration, watcher))
}

/// The tail looks while Docker is in the middle of a rotation (starved of CPU between two
/// renames): `.1` was renamed to `.2`, the live file not yet to `.1`. The generation being
/// read is at `.2` beyond the hole; the live file is the one after it, not two after (the
/// listing at one moment would have it at `.1`): nothing is lost, and the numbers stay tied to
/// the count of creations, so a later loss is counted exactly.
#[test]
fn a_look_in_the_middle_of_a_rotation_counts_nothing_lost() {
    let dir = Dir::new();
    dir.append("c.log", "0\n");
    let (tail, _watch) = counted_tail(&dir, 3);
    let mut tail = tail.with_rotated_size(2);
    assert_eq!(drain(&mut tail, 64).0, "0\n");
    dir.rotate(3);
    dir.append("c.log", "1\n");
    // The next rotation, stopped after its first rename: `.1` (generation 0) is `.2`.
    fs::rename(dir.path("c.log.1"), dir.path("c.log.2")).unwrap();
    tail.check().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "1\n");
    assert_eq!(tail.take_losses(), Losses::default(), "nothing was lost");
    // The rotation completes; then four more while the tail looks away: generation 3 is
    // deleted unread (one file, exactly).
    fs::rename(dir.path("c.log"), dir.path("c.log.1")).unwrap();
    fs::File::create(dir.path("c.log")).unwrap();
    dir.append("c.log", "2\n");
    assert_eq!(drain(&mut tail, 64).0, "2\n");
    for n in 3..=6 {
        dir.rotate(3);
        dir.append("c.log", &format!("{n}\n"));
    }
    tail.check().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "4\n5\n6\n");
    assert_eq!(
        tail.take_losses(),
        Losses {
            rotated_files: 1,
            rotated_bytes: 2,
            truncations: 0
        }
    );
}

/// The same listing as a rotation stopped in the middle (a hole at `.1`, the generation being
/// read at `.2`), but left by a rotated file deleted by hand: the count of creations tells the
/// two apart, and the deleted generation is counted lost.
#[test]
fn a_rotated_file_deleted_by_hand_is_counted_lost_with_the_count_of_creations() {
    let dir = Dir::new();
    dir.append("c.log", "0\n");
    let (tail, _watch) = counted_tail(&dir, 3);
    let mut tail = tail.with_rotated_size(2);
    assert_eq!(drain(&mut tail, 64).0, "0\n");
    for n in 1..=2 {
        dir.rotate(3);
        dir.append("c.log", &format!("{n}\n"));
    }
    fs::remove_file(dir.path("c.log.1")).unwrap();
    tail.check().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "2\n");
    assert_eq!(
        tail.take_losses(),
        Losses {
            rotated_files: 1,
            rotated_bytes: 2,
            truncations: 0
        }
    );
}

/// A hole left by hand behind the generation being read does not stop the tail: the files
/// older than it are not wanted, and the live file is read at once.
#[test]
fn a_hole_behind_the_generation_being_read_does_not_stop_the_tail() {
    let dir = Dir::new();
    dir.append("c.log", "0\n");
    let (mut tail, _watch) = counted_tail(&dir, 4);
    for n in 1..=2 {
        dir.rotate(4);
        dir.append("c.log", &format!("{n}\n"));
        drain(&mut tail, 64);
    }
    dir.rotate(4);
    // `.3` and `.1` (the generation being read) are left, `.2` is deleted.
    fs::remove_file(dir.path("c.log.2")).unwrap();
    dir.append("c.log", "3\n");
    assert_eq!(drain(&mut tail, 64).0, "3\n");
    assert_eq!(tail.take_losses(), Losses::default());
}

mod early;
mod lag;
mod removed;
