//! The watcher against real inotify on temporary directories.

use super::*;

#[tokio::test]
async fn a_write_in_a_watched_directory_wakes_its_follower_only() {
    let (watcher, watch_loop) = Watcher::new();
    let watch_loop = watch_loop.expect("inotify works here");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watch_loop.run(shutdown.clone()));
    let watched = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut registration = watcher.register(watched.path(), OsStr::new("c.log"));
    let mut bystander = watcher.register(other.path(), OsStr::new("c.log"));
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
async fn a_write_wakes_an_armed_follower_once_and_disarms_it() {
    let (watcher, watch_loop) = Watcher::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watch_loop.unwrap().run(shutdown.clone()));
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("c.log");
    std::fs::write(&live, b"first\n").unwrap();
    let mut registration = watcher.register(dir.path(), OsStr::new("c.log"));
    let mut other = watcher.register(dir.path(), OsStr::new("c.log"));
    let append = |text: &[u8]| {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        file.write_all(text).unwrap();
    };
    let woken = async |registration: &mut Registration, within_ms: u64| {
        tokio::time::timeout(Duration::from_millis(within_ms), registration.changed())
            .await
            .is_ok()
    };

    append(b"unarmed\n");
    assert!(
        !woken(&mut registration, 300).await,
        "no event per write while busy"
    );
    assert!(registration.arm(), "armed now: read once more");
    assert!(!registration.arm(), "already armed");
    append(b"armed\n");
    assert!(
        woken(&mut registration, 10_000).await,
        "a write wakes an armed follower"
    );
    // The other follower of the directory is woken by the same event, armed or not.
    assert!(woken(&mut other, 10_000).await);

    // One-shot: that write disarmed the directory; the writer's next writes cost it nothing.
    // (Taking the count waits for the dispatch of every event so far, the disarming included.)
    registration.births().unwrap().count();
    append(b"after the event\n");
    append(b"and another\n");
    assert!(
        !woken(&mut registration, 300).await,
        "one event per arming, not one per write"
    );
    assert!(registration.arm(), "the write disarmed it: armed again");

    // A second registration of the directory keeps the writes the first one is armed for.
    let third = watcher.register(dir.path(), OsStr::new("c.log"));
    append(b"still armed\n");
    assert!(woken(&mut registration, 10_000).await);
    drop(third);
    assert!(registration.arm());

    registration.disarm();
    // Drain what the writes above left, then a write is not reported any more.
    let _ = woken(&mut registration, 300).await;
    let _ = woken(&mut other, 300).await;
    append(b"disarmed\n");
    assert!(!woken(&mut registration, 300).await, "disarmed");
    assert!(!woken(&mut other, 300).await);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_change_while_the_follower_is_busy_is_not_missed() {
    let (watcher, watch_loop) = Watcher::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watch_loop.unwrap().run(shutdown.clone()));
    let dir = tempfile::tempdir().unwrap();
    let mut registration = watcher.register(dir.path(), OsStr::new("c.log"));
    std::fs::write(dir.path().join("c.log"), b"x").unwrap();
    // Not waiting yet: the loop leaves a permit.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    tokio::time::timeout_at(deadline, registration.changed())
        .await
        .expect("the permit left by the event");
    shutdown.cancel();
    task.await.unwrap();
}

#[test]
fn every_creation_of_the_live_file_is_counted_by_the_time_the_count_is_taken() {
    let (watcher, _watch_loop) = Watcher::new();
    let dir = tempfile::tempdir().unwrap();
    let registration = watcher.register(dir.path(), OsStr::new("c.log"));
    let births = registration.births().expect("inotify counts creations");
    let live = dir.path().join("c.log");
    assert_eq!(births.count().unwrap().created, 0);
    for rotation in 1..=50u64 {
        std::fs::File::create(&live).unwrap();
        std::fs::write(dir.path().join("other.log"), b"x").unwrap();
        std::fs::rename(&live, dir.path().join("c.log.1")).unwrap();
        // No loop runs: the count itself reads what the kernel queued.
        let count = births.count().unwrap();
        assert_eq!(count.created, rotation);
        assert_eq!(count.overflows, 0);
    }
    assert!(
        Watcher::polling()
            .register(dir.path(), OsStr::new("c.log"))
            .births()
            .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn polling_backs_off_while_idle_and_speeds_up_on_data() {
    let watcher = Watcher::polling();
    let dir = tempfile::tempdir().unwrap();
    let mut registration = watcher.register(dir.path(), OsStr::new("c.log"));
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
    let registration = watcher.register(Path::new("/nonexistent/log/dir"), OsStr::new("c.log"));
    assert!(registration.is_polling());
    assert_eq!(watcher.watched_dirs(), 0);
}

/// A file opened for a creation whose count an overflow of the kernel's queue may have made
/// wrong (one between the count and the confirming read) is handed over without a count.
#[test]
fn a_file_opened_across_an_overflow_of_the_kernels_queue_carries_no_count() {
    let (watcher, _watch_loop) = Watcher::new();
    let dir = tempfile::tempdir().unwrap();
    let registration = watcher.register(dir.path(), OsStr::new("c.log"));
    let births = registration.births().expect("inotify counts creations");
    std::fs::write(dir.path().join("c.log"), b"x").unwrap();
    for (overflows_at_confirm, counted) in [(0, true), (1, false)] {
        let mut opening = births::Opening::default();
        opening.created(vec![registration.interest.clone()], 0);
        opening.confirm(overflows_at_confirm);
        let taken = births.take_preopened();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].count.is_some(), counted, "{overflows_at_confirm}");
    }
}

/// Arming and disarming replace the watch's mask in place (the same watch, creations in both
/// masks): no creation is missed while a follower switches, so the counts stay exact.
#[test]
fn arming_and_disarming_the_watch_misses_no_creation() {
    let (watcher, _watch_loop) = Watcher::new();
    let dir = tempfile::tempdir().unwrap();
    let mut registration = watcher.register(dir.path(), OsStr::new("c.log"));
    let births = registration.births().expect("inotify counts creations");
    let live = dir.path().join("c.log");
    for rotation in 1..=50u64 {
        std::fs::File::create(&live).unwrap();
        if rotation % 2 == 1 {
            assert!(registration.arm());
        } else {
            registration.disarm();
        }
        std::fs::rename(&live, dir.path().join("c.log.1")).unwrap();
        if rotation % 10 == 0 {
            assert_eq!(births.count().unwrap().created, rotation);
        }
    }
}
