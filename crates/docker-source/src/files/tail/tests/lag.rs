//! A new live file listed before the kernel queued its creation: the count of creations taken
//! with that look is one behind (see `look.rs`). Here the file is moved in (a rename is not a
//! creation) and its creation is queued later by linking it again under its name: what the
//! tail sees is what it sees when Docker is descheduled between the two.

use std::{fs, path::Path};

use super::*;

/// Ends the rotation of `dir` (its live file renamed away) with a new, empty live file that
/// inotify has not reported yet; returns the directory holding its second name.
fn move_in_uncounted_live(dir: &Dir) -> tempfile::TempDir {
    let elsewhere = tempfile::tempdir_in(dir.dir.path().parent().unwrap()).unwrap();
    let new = elsewhere.path().join("new");
    fs::File::create(&new).unwrap();
    fs::rename(&new, dir.path("c.log")).unwrap();
    fs::hard_link(dir.path("c.log"), elsewhere.path().join("kept")).unwrap();
    elsewhere
}

/// The kernel queues the live file's creation at last (the same file, created under its name).
fn queue_its_creation(dir: &Dir, elsewhere: &Path) {
    fs::remove_file(dir.path("c.log")).unwrap();
    fs::hard_link(elsewhere.join("kept"), dir.path("c.log")).unwrap();
}

/// A look that numbers the new live file by a generation held (`.1`) while its creation is not
/// counted yet does not tie the counts one too high: a later look that only the count numbers
/// counts no generation lost that was read.
#[test]
fn a_count_one_behind_a_held_generation_counts_nothing_lost() {
    let dir = Dir::new();
    dir.append("c.log", "0\n");
    let (tail, _watch) = counted_tail(&dir, 3);
    let mut tail = tail.with_rotated_size(2);
    assert_eq!(drain(&mut tail, 64).0, "0\n");
    fs::rename(dir.path("c.log"), dir.path("c.log.1")).unwrap();
    let elsewhere = move_in_uncounted_live(&dir);
    tail.check().unwrap();
    queue_its_creation(&dir, elsewhere.path());
    dir.append("c.log", "1\n");
    assert_eq!(drain(&mut tail, 64).0, "1\n");
    // Three rotations while the tail looks away: no file it holds is listed any more, and
    // nothing was deleted unread (generation 2 is `.2`).
    for n in 2..=4 {
        dir.rotate(3);
        dir.append("c.log", &format!("{n}\n"));
    }
    tail.check().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "2\n3\n4\n");
    assert_eq!(tail.take_losses(), Losses::default(), "nothing was lost");
}

/// A look that only the count could number, its live file's creation not counted yet, does
/// not number the files one too low (which would hide a generation deleted unread): it waits
/// until Docker wrote to the live file, and the loss is counted.
#[test]
fn a_count_one_behind_numbers_nothing_and_the_loss_is_counted() {
    let dir = Dir::new();
    dir.append("c.log", "0\n");
    let (tail, _watch) = counted_tail(&dir, 3);
    let mut tail = tail.with_rotated_size(2);
    assert_eq!(drain(&mut tail, 64).0, "0\n");
    // Generations 1 to 3, then 4 (not counted yet): 1 is deleted unread.
    for n in 1..=3 {
        dir.rotate(3);
        dir.append("c.log", &format!("{n}\n"));
    }
    fs::remove_file(dir.path("c.log.2")).unwrap();
    fs::rename(dir.path("c.log.1"), dir.path("c.log.2")).unwrap();
    fs::rename(dir.path("c.log"), dir.path("c.log.1")).unwrap();
    let elsewhere = move_in_uncounted_live(&dir);
    tail.check().unwrap();
    queue_its_creation(&dir, elsewhere.path());
    dir.append("c.log", "4\n");
    tail.check().unwrap();
    assert_eq!(drain(&mut tail, 64).0, "2\n3\n4\n");
    assert_eq!(
        tail.take_losses(),
        Losses {
            rotated_files: 1,
            rotated_bytes: 2,
            truncations: 0
        }
    );
}
