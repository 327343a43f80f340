//! File mode and `docker run --rm`: Docker deletes a job's log files with the job, so a job
//! the agent is still reading when it is removed is read to its end through the descriptors
//! the agent holds. Counted against the generator's own sequence (loggen `<tag> <run> <stream>
//! <seq>`), since Docker keeps no copy.

use std::time::Duration;

use end_to_end::{Capturer, unique_label};
use test_support::{
    docker::{self, Container},
    ledger::{Ledger, Tally},
    wait,
};

/// Jobs per burst size.
const JOBS: usize = 3;
/// Burst sizes: as fast as loggen writes, and a small one.
const BURSTS: [u64; 2] = [10_000, 50];

/// Starts `JOBS` `--rm` jobs of each burst size, silent for `delay_secs` first.
fn start_jobs(include: &str, phase: &str, delay_secs: u32) -> Vec<(Container, String, u64)> {
    let mut jobs = Vec::new();
    for lines in BURSTS {
        for index in 0..JOBS {
            let run = format!("{phase}{lines}x{index}");
            let container = Container::run(&[
                "--rm",
                "--network",
                "none",
                "--label",
                include,
                docker::loggen_image(),
                "--tag",
                "rm",
                "--run",
                &run,
                "--lines",
                &lines.to_string(),
                "--size",
                "100",
                "--delay-secs",
                &delay_secs.to_string(),
            ]);
            jobs.push((container, run, lines));
        }
    }
    jobs
}

/// Waits until Docker removed every job, then gives the ledger their truth.
fn removed(jobs: &[(Container, String, u64)], ledger: &mut Ledger) -> Vec<String> {
    wait::until(
        Duration::from_secs(120),
        "the --rm jobs to be removed",
        || {
            Ok(jobs.iter().all(|(job, _, _)| {
                docker::cli(&["inspect", "--format", "{{.Id}}", job.id()]).is_err()
            }))
        },
    )
    .unwrap();
    for (job, run, lines) in jobs {
        ledger.add_generated_truth(job.id(), "rm", run, &["out"], *lines);
    }
    jobs.iter().map(|(job, _, _)| job.id().to_owned()).collect()
}

/// What the agent counted as lost: removal gaps and log files deleted unread.
fn counted_losses(capturer: &Capturer) -> f64 {
    let metrics = capturer.scrape().unwrap();
    let gaps = metrics
        .sum("log_capturer_stream_gaps_total", &[("reason", "removed")])
        .unwrap_or(0.0);
    gaps + metrics
        .sum("log_capturer_log_files_lost_total", &[])
        .unwrap_or(0.0)
}

fn assert_whole(tally: &Tally, what: &str) {
    assert!(
        tally.lost == 0 && tally.dup == 0 && tally.out_of_order == 0,
        "{what}: {tally:?}"
    );
}

/// Once Docker removed the `jobs`, every line of each is in `ledger` once, and `capturer`
/// counted no loss.
fn assert_captured_whole(
    capturer: &Capturer,
    ledger: &mut Ledger,
    jobs: &[(Container, String, u64)],
    what: &str,
) {
    let ids = removed(jobs, ledger);
    let (took, complete) = ledger
        .drain(Duration::from_secs(120), Duration::from_secs(20))
        .unwrap();
    let tally = ledger.tally_of(&ids);
    assert!(complete, "{what}: captured in {took:?}: {tally:?}");
    assert_whole(&tally, what);
    assert_eq!(tally.records, tally.expected, "{what}: {tally:?}");
    assert_eq!(counted_losses(capturer), 0.0, "{what}: nothing was lost");
}

#[test]
fn rm_bursts_read_from_files_arrive_whole_once() {
    let label = unique_label("rm-files");
    let include = format!("log-capturer-e2e={label}");
    let data_dir = tempfile::tempdir().unwrap();
    let capturer = Capturer::start_with_env(
        data_dir.path(),
        &["--include-label", &include],
        &[("LOG_CAPTURER_DOCKER_READ_MODE", "files")],
    );
    let mut ledger = Ledger::follow(capturer.records_path());

    // Jobs the agent follows before their first line: every line once, whatever the burst.
    let followed = start_jobs(&include, "followed", 2);
    assert_captured_whole(&capturer, &mut ledger, &followed, "followed jobs");
    // Their tasks read what they held and were removed.
    capturer.wait_health(
        Duration::from_secs(30),
        "no container task left",
        |health| end_to_end::container_tasks(health, "running").is_empty(),
    );

    // Jobs that may end and be removed before the agent opens their logs: never a line twice,
    // and a job whose directory Docker deleted first is counted, never silently lost.
    let before = counted_losses(&capturer);
    let quick = start_jobs(&include, "quick", 0);
    let quick_ids = removed(&quick, &mut ledger);
    ledger
        .drain(Duration::from_secs(60), Duration::from_secs(10))
        .unwrap();
    let losing = quick_ids
        .iter()
        .filter(|id| ledger.tally_for(id).lost > 0)
        .count();
    let tally = ledger.tally_of(&quick_ids);
    assert!(tally.dup == 0 && tally.out_of_order == 0, "{tally:?}");
    let counted = counted_losses(&capturer) - before;
    assert!(
        counted >= losing as f64,
        "{losing} quick jobs lost lines, {counted} losses counted: {tally:?}; the agent's log:\n{}",
        capturer.log_tail()
    );
    capturer.stop(Duration::from_secs(10)).unwrap();
}

/// Two agents on their own data dirs (a second copy shipping elsewhere, or an upgrade run
/// beside the old agent) read the same files: each has every line once, through rotation
/// (`max-size=1m`, `max-file=3`) and `--rm` removal, and neither counts a loss.
#[test]
fn two_agents_with_their_own_data_dirs_each_read_every_line_once() {
    let label = unique_label("two-agents");
    let include = format!("log-capturer-e2e={label}");
    let data_dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let capturers: Vec<Capturer> = data_dirs
        .iter()
        .map(|data_dir| {
            Capturer::start_with_env(
                data_dir.path(),
                &["--include-label", &include],
                &[("LOG_CAPTURER_DOCKER_READ_MODE", "files")],
            )
        })
        .collect();
    let mut jobs = start_jobs(&include, "twice", 2);
    let rotating = Container::run(&[
        "--rm",
        "--network",
        "none",
        "--label",
        &include,
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=3",
        docker::loggen_image(),
        "--tag",
        "rm",
        "--run",
        "rotating",
        "--lines",
        "20000",
        "--size",
        "100",
        "--rate",
        "5000",
        "--delay-secs",
        "2",
    ]);
    jobs.push((rotating, "rotating".to_owned(), 20_000));
    for capturer in &capturers {
        let mut ledger = Ledger::follow(capturer.records_path());
        assert_captured_whole(capturer, &mut ledger, &jobs, "each agent");
    }
    for capturer in capturers {
        capturer.stop(Duration::from_secs(10)).unwrap();
    }
}
