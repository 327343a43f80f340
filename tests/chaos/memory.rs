//! `churn-memory`: the agent's memory stays flat on a host that churns containers.
//!
//! Short-lived containers are run in waves (CI jobs, cron, one-shot tools); each wave is captured
//! whole, then removed, the way a CI runner cleans up. One steady container keeps writing, as a
//! real host's services do. The resident set size is sampled after every wave and once more after
//! `high_water_retention` has passed, when the file sink has forgotten the gone containers' marks;
//! it must end within 5 MiB of where it was after a warm-up wave.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use test_support::ledger::Ledger;

use super::{
    process::{conclude, settle},
    stage::{Ctx, Outcome, Stage, file_sink},
};
use test_support::wait;
use test_support::{
    docker::{self},
    procfs,
};

/// Short-lived containers in the whole run (CI: [`CI_CONTAINERS`]).
const CONTAINERS: usize = 5_000;
const CI_CONTAINERS: usize = 300;
/// Containers run (in parallel) and then removed together.
const WAVE: usize = 250;
/// Lines each short-lived container writes before it exits.
const LINES: u64 = 20;
/// The file sink's `high_water_retention` in this scenario: short, so that forgetting happens
/// within the run. `CHAOS_HIGH_WATER_RETENTION=<seconds>` overrides it (`default` leaves the key
/// unset, e.g. to compare with a binary that does not know it).
const RETENTION: Duration = Duration::from_secs(30);
/// How far the resident set may end above its post-warm-up start.
const RSS_SLACK: u64 = 5 << 20;
/// Generators need no network; without one they start faster and do not depend on the bridge.
const NO_NETWORK: &[&str] = &["--network", "none"];
/// The longest wait for the retention window after the last wave.
const FINAL_WAIT_CAP: Duration = Duration::from_secs(120);
/// Containers removed per `docker rm`.
const REMOVE_BATCH: usize = 50;
/// How long a wave may take to be captured whole.
const WAVE_CAPTURE_TIMEOUT: Duration = Duration::from_secs(180);

/// The retention to configure (`None`: leave the key out) and how long to wait for it.
fn retention() -> Result<(Option<String>, Duration)> {
    match std::env::var("CHAOS_HIGH_WATER_RETENTION") {
        Ok(value) if value == "default" => Ok((None, RETENTION)),
        Ok(value) => {
            let seconds: u64 = value
                .parse()
                .with_context(|| format!("CHAOS_HIGH_WATER_RETENTION={value}: seconds"))?;
            Ok((Some(format!("{seconds}s")), Duration::from_secs(seconds)))
        }
        Err(_) => Ok((Some(format!("{}s", RETENTION.as_secs())), RETENTION)),
    }
}

/// Runs `count` short-lived generators, waits until their lines are all captured, removes them.
fn wave(
    ctx: &Ctx,
    stage: &Stage,
    ledger: &mut Ledger,
    name: &str,
    count: usize,
    expected: &mut u64,
) -> Result<()> {
    let lines = LINES.to_string();
    let specs: Vec<Vec<String>> = (0..count)
        .map(|index| {
            let tag = format!("{name}c{index}");
            stage.run_args(
                &tag,
                NO_NETWORK,
                ctx.loggen,
                &["--tag", &tag, "--lines", &lines],
            )
        })
        .collect();
    let ids = stage.containers.run_many(&specs)?;
    *expected += LINES * ids.len() as u64;
    let target = *expected;
    wait::until(WAVE_CAPTURE_TIMEOUT, "a wave to be captured", || {
        ledger.poll()?;
        Ok(churned_lines(ledger).0 >= target)
    })
    .with_context(|| format!("wave {name}: {} of {target} lines", churned_lines(ledger).0))?;
    for batch in ids.chunks(REMOVE_BATCH) {
        let mut args = vec!["rm", "--force", "--volumes"];
        args.extend(batch.iter().map(String::as_str));
        docker::cli(&args)?;
    }
    Ok(())
}

/// Distinct and duplicated lines of the short-lived containers (not the steady one).
fn churned_lines(ledger: &Ledger) -> (u64, u64) {
    ledger.captured(|tag| tag != STEADY_TAG)
}

/// The steady container's loggen tag.
const STEADY_TAG: &str = "steady";

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

pub(crate) fn churn_memory(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let total = if ctx.ci { CI_CONTAINERS } else { CONTAINERS };
    let mut stage = Stage::new(ctx, "churn-memory")?;
    let started = Instant::now();
    let (configured, window) = retention()?;
    let mut sinks = file_sink(&stage.config.data_dir);
    if let Some(value) = &configured {
        sinks.push_str(&format!("high_water_retention = \"{value}\"\n"));
    }
    stage.set_sinks(&sinks)?;
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    let pid = capturer.pid();
    // A steady service beside the churn: its batches keep the file sink delivering.
    let steady = stage.loggen(
        ctx,
        "steady",
        NO_NETWORK,
        &["--tag", STEADY_TAG, "--lines", "0", "--rate", "5"],
    )?;
    let mut expected = 0;
    wave(
        ctx,
        &stage,
        &mut ledger,
        "warm",
        WAVE.min(total),
        &mut expected,
    )?;
    let start = procfs::rss_bytes(pid)?;
    let mut samples = vec![start];
    let mut churned = 0;
    let mut index = 0;
    while churned < total {
        let count = WAVE.min(total - churned);
        wave(
            ctx,
            &stage,
            &mut ledger,
            &format!("w{index}"),
            count,
            &mut expected,
        )?;
        churned += count;
        index += 1;
        let rss = procfs::rss_bytes(pid)?;
        samples.push(rss);
        eprintln!(
            "churn-memory: {churned} containers in {:.0}s, RSS {:.1} MiB",
            started.elapsed().as_secs_f64(),
            mib(rss)
        );
    }
    let churn_took = started.elapsed();
    // The last wave's marks are forgotten one window (plus a sweep period) after its lines; a
    // window longer than the wait cap (the default hour) is not waited for.
    let forgotten_by = (window + window / 4 + Duration::from_secs(5)).min(FINAL_WAIT_CAP);
    wait::pace(forgotten_by, || ledger.poll().map(drop))?;
    let end = procfs::rss_bytes(pid)?;
    let peak = samples.iter().copied().max().unwrap_or(start).max(end);
    let (distinct, dup) = churned_lines(&ledger);
    outcome.expect(
        end <= start + RSS_SLACK,
        format!(
            "RSS grew {:.1} MiB (start {:.1}, end {:.1})",
            mib(end.saturating_sub(start)),
            mib(start),
            mib(end)
        ),
    );
    let listed = capturer.health_status()?.1["tasks"]
        .as_array()
        .map_or(0, |tasks| tasks.len());
    // The steady container is the only one left; its lines count against Docker's copy.
    let (_, complete) = settle(&mut ledger, std::slice::from_ref(&steady))?;
    outcome.expect(
        complete,
        "the steady container's lines are not all captured",
    );
    conclude(&stage, capturer, &mut ledger, total + 1, outcome)?;
    let lost_churned = expected.saturating_sub(distinct.min(expected));
    outcome.lost = outcome.lost.map(|lost| lost + lost_churned);
    outcome.expect(
        lost_churned == 0,
        format!("{lost_churned} churned lines lost"),
    );
    outcome.expect(dup == 0, format!("{dup} churned lines duplicated"));
    let every: Vec<String> = samples
        .iter()
        .map(|rss| format!("{:.1}", mib(*rss)))
        .collect();
    outcome.note(format!(
        "{total} containers ({WAVE} per wave, {LINES} lines each, removed after capture) in \
         {:.0}s; high_water_retention {}; RSS MiB after warm-up {:.1}, peak {:.1}, end {:.1} \
         (+{:.1}); after each wave: {}; {listed} tasks in /health at the end",
        churn_took.as_secs_f64(),
        configured.as_deref().unwrap_or("default (1h)"),
        mib(start),
        mib(peak),
        mib(end),
        mib(end.saturating_sub(start)),
        every.join(" ")
    ));
    outcome.duration = started.elapsed();
    Ok(())
}
