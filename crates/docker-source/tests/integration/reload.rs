//! Filters changed while the source runs: a container they exclude is drained and completed, one
//! they include again is read from the change on, and flipping back and forth never reads a line
//! twice; a container the change does not concern loses nothing.

use std::collections::BTreeMap;

use capture_core::status::TaskState;
use docker_source::{DockerConfig, ReadMode};

use crate::harness::{self, Harness, Sink, config, docker_line_count, loggen, unique};

/// The highest sequence number of each loggen stream label in `lines`.
fn last_seqs<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut last = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        if let [_, _, stream, seq, ..] = fields[..]
            && let Ok(seq) = seq.parse::<u64>()
        {
            let entry = last.entry(stream.to_owned()).or_insert(seq);
            *entry = (*entry).max(seq);
        }
    }
    last
}

fn unix_nanos() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_nanos()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_changes_drain_and_resume_without_reading_a_line_twice() {
    filter_changes_drain_and_resume(ReadMode::Api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_changes_drain_and_resume_file_followers_without_reading_a_line_twice() {
    filter_changes_drain_and_resume(ReadMode::Files).await;
}

async fn filter_changes_drain_and_resume(read_mode: ReadMode) {
    let _shared = harness::process_lock().read().await;
    test_support::docker::loggen_image();
    let label = unique("reload");
    let dir = tempfile::tempdir().unwrap();
    let included = DockerConfig {
        read_mode,
        ..config(&label)
    };
    let excluded = DockerConfig {
        exclude_labels: vec!["flip".into()],
        ..included.clone()
    };
    let harness = Harness::start(included.clone(), dir.path(), Sink::default());
    let sink = harness.sink.clone();
    let rate = ["--lines", "0", "--rate", "500", "--stream", "both"];
    let flip = loggen(
        &label,
        &["--label", "flip=yes"],
        &[&["--tag", "flip"], &rate[..]].concat(),
    );
    let steady = loggen(&label, &[], &[&["--tag", "steady"], &rate[..]].concat());
    let (flip_id, steady_id) = (flip.id().to_owned(), steady.id().to_owned());
    sink.wait_until("lines of both", |c| {
        c.count(&flip_id) >= 500 && c.count(&steady_id) >= 500
    })
    .await;
    let mode = if read_mode == ReadMode::Files {
        "files"
    } else {
        "api"
    };
    assert_eq!(harness.task_mode(&flip_id).as_deref(), Some(mode));

    let drained = exclude_and_drain(&harness, &excluded, &flip_id, &steady_id).await;
    include_from_now(&harness, &included, &flip_id, drained).await;
    flip_quickly(&harness, &excluded, &included, &flip_id, &steady_id).await;

    flip.stop();
    steady.stop();
    let flip_last = last_seqs(
        test_support::docker::logs(&flip_id)
            .iter()
            .map(String::as_str),
    );
    let steady_kept = docker_line_count(&steady_id);
    sink.wait_until("every line to the end", |c| {
        let captured = c.lines.get(&flip_id).into_iter().flatten();
        last_seqs(captured.map(|line| line.message.as_str())) == flip_last
            && c.count(&steady_id) >= steady_kept
    })
    .await;
    assert_no_line_twice(&sink, &steady_id, steady_kept);
    harness.stop().await;
}

/// Excluded: the task drains what Docker has and completes; nothing more is read. Returns how
/// many lines of `flip_id` were read.
async fn exclude_and_drain(
    harness: &Harness,
    excluded: &DockerConfig,
    flip_id: &str,
    steady_id: &str,
) -> usize {
    let sink = &harness.sink;
    assert!(harness.reloader.apply(excluded).unwrap());
    harness
        .wait_task(flip_id, "drained and completed", |state| {
            state != Some(TaskState::Running)
        })
        .await;
    assert!(
        matches!(
            harness.task_state(flip_id),
            None | Some(TaskState::Completed)
        ),
        "the released task completed (or, completed and acknowledged, left): {:?}",
        harness.task_state(flip_id)
    );
    // Batches the task sent before it completed are ahead of the other container's later ones
    // in the channel: once those arrive, the drain has arrived whole.
    let steady_then = sink.with(|c| c.count(steady_id));
    sink.wait_until("more lines of the other container", |c| {
        c.count(steady_id) >= steady_then + 100
    })
    .await;
    let drained = sink.with(|c| c.count(flip_id));
    let steady_then = sink.with(|c| c.count(steady_id));
    sink.wait_until("more lines of the other container", |c| {
        c.count(steady_id) >= steady_then + 500
    })
    .await;
    assert_eq!(
        sink.with(|c| c.count(flip_id)),
        drained,
        "read after its drain"
    );
    drained
}

/// Included again: read from the change on, not what it wrote while excluded.
async fn include_from_now(
    harness: &Harness,
    included: &DockerConfig,
    flip_id: &str,
    drained: usize,
) {
    let sink = &harness.sink;
    let included_at = unix_nanos();
    assert!(harness.reloader.apply(included).unwrap());
    sink.wait_until("lines after the inclusion", |c| {
        c.count(flip_id) >= drained + 500
    })
    .await;
    let first_after = sink.with(|c| c.lines[flip_id][drained].position.timestamp_nanos);
    assert!(
        first_after >= included_at,
        "a line written while excluded was read ({first_after} < {included_at})"
    );
}

/// Flipped quickly, each flip either drains and restarts the task or takes it back while it
/// drains: no line may be read twice either way.
async fn flip_quickly(
    harness: &Harness,
    excluded: &DockerConfig,
    included: &DockerConfig,
    flip_id: &str,
    steady_id: &str,
) {
    let sink = &harness.sink;
    for _ in 0..5 {
        let before = sink.with(|c| c.count(steady_id));
        assert!(harness.reloader.apply(excluded).unwrap());
        sink.wait_until("the other container going on", |c| {
            c.count(steady_id) >= before + 20
        })
        .await;
        assert!(harness.reloader.apply(included).unwrap());
    }
    let before = sink.with(|c| c.count(flip_id));
    sink.wait_until("lines after the last flip", |c| {
        c.count(flip_id) >= before + 500
    })
    .await;
}

/// No line read twice nor out of order; none of the untouched container lost.
fn assert_no_line_twice(sink: &Sink, steady_id: &str, steady_kept: usize) {
    sink.with(|c| {
        assert_eq!(c.out_of_order_positions, 0);
        let report = c.report();
        for sequence in &report.sequences {
            assert_eq!(sequence.duplicated, 0, "{sequence:?}");
            if sequence.key.container == steady_id {
                assert_eq!(sequence.lost, 0, "{sequence:?}");
            }
        }
        assert_eq!(c.count(steady_id), steady_kept);
    });
}
