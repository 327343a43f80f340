//! `rm-burst`: `docker run --rm` jobs print 50 000 lines as fast as they can and exit, while a
//! slow Loki (every push answered after 500 ms) holds the pipeline back.
//!
//! Docker removes a job's log file with the job, so the capture is counted against the
//! generator's own sequence (loggen `<tag> <run> <stream> <seq>`, with a run id the scenario
//! chooses). Jobs the capturer follows before their first line must arrive whole, once, in the
//! file sink and at Loki. Jobs that start and end before the capturer could open their logs show
//! what the Docker API cannot give: the scenario reports their loss, and requires each job that
//! lost lines to be counted in `log_capturer_stream_gaps_total{reason="removed"}`.

use std::time::{Duration, Instant};

use anyhow::Result;

use test_support::ledger::{Ledger, Tally};

use super::{
    loki::LokiReceiver,
    process::stop_and_check,
    stage::{Ctx, Outcome, Stage, file_sink},
};
use test_support::wait;
use test_support::{
    capturer::Capturer,
    docker::{self},
};

/// Lines per job.
const LINES: u64 = 50_000;
/// How long Loki takes to answer each push.
const LOKI_DELAY: Duration = Duration::from_millis(500);
/// The longest wait for the capture of a phase once its jobs are gone.
const CATCH_UP: Duration = Duration::from_secs(180);
const STALL: Duration = Duration::from_secs(20);

/// Starts `count` `--rm` jobs, each silent for `delay_secs` before its burst.
fn start_jobs(
    ctx: &Ctx,
    stage: &Stage,
    phase: &str,
    count: usize,
    delay_secs: u32,
) -> Result<Vec<(String, String)>> {
    (0..count)
        .map(|index| {
            let run = format!("{phase}{index}");
            let id = stage.loggen(
                ctx,
                &run,
                &["--rm"],
                &[
                    "--tag",
                    "rm",
                    "--run",
                    &run,
                    "--lines",
                    &LINES.to_string(),
                    "--delay-secs",
                    &delay_secs.to_string(),
                ],
            )?;
            Ok((id, run))
        })
        .collect()
}

/// Waits until Docker has removed every job.
fn wait_removed(jobs: &[(String, String)]) -> Result<Duration> {
    wait::until(
        Duration::from_secs(120),
        "the --rm jobs to be removed",
        || {
            Ok(jobs
                .iter()
                .all(|(id, _)| docker::cli(&["inspect", "--format", "{{.Id}}", id]).is_err()))
        },
    )
}

/// Follows the file capture (and Loki's) until both hold every line of `ids` or stop growing.
fn catch_up(ledger: &mut Ledger, receiver: &LokiReceiver, ids: &[String]) -> Result<()> {
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut seen = (ledger.records, receiver.state().ledger.records);
    while started.elapsed() < CATCH_UP && last_progress.elapsed() < STALL {
        if ledger.tally_of(ids).lost == 0 && receiver.state().ledger.tally_of(ids).lost == 0 {
            break;
        }
        wait::pace(Duration::from_millis(500), || ledger.poll().map(drop))?;
        let now = (ledger.records, receiver.state().ledger.records);
        if now != seen {
            seen = now;
            last_progress = Instant::now();
        }
    }
    Ok(())
}

fn add_truth(ledger: &mut Ledger, jobs: &[(String, String)]) {
    for (id, run) in jobs {
        ledger.add_generated_truth(id, "rm", run, &["out"], LINES);
    }
}

/// The losses the capturer counted: removal gaps (API path) and log files lost (file mode).
fn gaps(capturer: &Capturer) -> Result<f64> {
    let metrics = capturer.scrape()?;
    let removed = metrics
        .sum("log_capturer_stream_gaps_total", &[("reason", "removed")])
        .unwrap_or(0.0);
    let files = metrics
        .sum("log_capturer_log_files_lost_total", &[])
        .unwrap_or(0.0);
    Ok(removed + files)
}

pub(crate) fn rm_burst(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let (followed, unfollowed) = if ctx.ci { (2, 2) } else { (5, 5) };
    let mut stage = Stage::new(ctx, "rm-burst")?;
    // The removal drain is the API path's (file mode reads a removed container's files through
    // the descriptors it holds): that is what runs unless `--read-mode` asks for another.
    if ctx.read_mode.is_none() {
        stage.set_env("LOG_CAPTURER_DOCKER_READ_MODE", "api");
    }
    let started = Instant::now();
    let receiver = LokiReceiver::start()?;
    receiver.set_delay(LOKI_DELAY);
    let data_dir = stage.config.data_dir.clone();
    stage.set_sinks(&format!(
        "{}[[sinks]]\ntype = \"loki\"\nendpoint = \"{}\"\n\
         labels = {{ job = \"chaos\", container_id = \"{{container_id}}\", stream = \"{{stream}}\" }}\n",
        file_sink(&data_dir),
        receiver.endpoint()
    ))?;
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;

    // Jobs followed from before their first line: every line, once, at both sinks.
    let jobs = start_jobs(ctx, &stage, "followed", followed, 2)?;
    let burst = Instant::now();
    let removed_in = wait_removed(&jobs)?;
    add_truth(&mut ledger, &jobs);
    add_truth(&mut receiver.state().ledger, &jobs);
    let ids: Vec<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
    catch_up(&mut ledger, &receiver, &ids)?;
    outcome.recovered_in = Some(burst.elapsed());
    let file = ledger.tally_of(&ids);
    let loki = receiver.state().ledger.tally_of(&ids);
    outcome.lines(file.lost + loki.lost, file.dup);
    outcome.note(format!(
        "{followed} jobs x {LINES} lines followed from their start, all removed {:.1}s after \
         the burst began; file sink {}; Loki (500 ms per push) {}, identical resends {}",
        removed_in.as_secs_f64(),
        describe(&file),
        describe(&loki),
        receiver.state().identical_resends,
    ));

    // Jobs that may end before the capturer opens their logs: what is lost is counted.
    let gaps_before = gaps(&capturer)?;
    let quick = start_jobs(ctx, &stage, "quick", unfollowed, 0)?;
    wait_removed(&quick)?;
    add_truth(&mut ledger, &quick);
    let quick_ids: Vec<String> = quick.iter().map(|(id, _)| id.clone()).collect();
    catch_up(&mut ledger, &receiver, &quick_ids)?;
    let losing_jobs = quick_ids
        .iter()
        .filter(|id| ledger.tally_of(std::slice::from_ref(*id)).lost > 0)
        .count();
    let counted = gaps(&capturer)? - gaps_before;
    let quick_tally = ledger.tally_of(&quick_ids);
    outcome.expect(quick_tally.dup == 0, "quick jobs: lines duplicated");
    outcome.expect(
        counted >= losing_jobs as f64,
        format!("{losing_jobs} quick jobs lost lines but only {counted} gaps were counted"),
    );
    if quick_tally.lost > 0 {
        outcome.deviation(format!(
            "{} of {} lines of {losing_jobs}/{unfollowed} jobs that ended before their logs \
             were opened are lost (Docker removed them); counted as {counted} removal gaps",
            quick_tally.lost, quick_tally.expected
        ));
    } else {
        outcome.note(format!(
            "{unfollowed} quick jobs (no delay): all {} lines captured",
            quick_tally.expected
        ));
    }
    stop_and_check(&stage, capturer, &mut ledger, outcome)?;
    outcome.duration = started.elapsed();
    Ok(())
}

fn describe(tally: &Tally) -> String {
    format!(
        "{}/{} lines, lost={} dup={}",
        tally.received, tally.expected, tally.lost, tally.dup
    )
}
