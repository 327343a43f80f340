//! `rotation`: containers with the standard rotation options (`max-size=1m`, `max-file` 1 and 3)
//! write at 2 000 and 20 000 lines/s and as fast as they can.
//!
//! dockerd sends lines again after each rotation (see `docker-source`'s `cursor.rs`); the file
//! sink must hold each line once at every rate. Docker's own copy is mostly gone once it
//! rotated, so the capture is counted against the generator's own sequence: every loggen line
//! `<tag> <run> <stream> <seq>` it wrote, with a run id the scenario chooses. A line missing
//! there was either deleted by Docker before anyone could read it (its follower skips a file when
//! the reader is a whole file behind; `max-file=1` truncates) or lost by the capturer; the
//! scenario reports it per variant, and fails on any duplicate, and on any loss at 2 000 lines/s
//! with `max-file=3` (Docker keeps two files the follower can fall behind by).

use std::time::{Duration, Instant};

use anyhow::Result;

use test_support::ledger::Ledger;

use super::{
    process::stop_and_check,
    stage::{Ctx, Outcome, Stage},
};
use test_support::docker::{self};
use test_support::wait;

/// A rate (lines/s of a container, half on each stream; 0 = as fast as loggen writes) and how
/// many lines a container writes.
#[derive(Debug, Clone, Copy)]
struct Variant {
    rate: u64,
    lines: u64,
}

fn variants(ci: bool) -> Vec<Variant> {
    let variant = |rate, lines| Variant { rate, lines };
    if ci {
        return vec![variant(2_000, 10_000), variant(20_000, 100_000)];
    }
    vec![
        variant(2_000, 40_000),
        variant(20_000, 200_000),
        variant(0, 200_000),
    ]
}

/// How long the capture may stay still before a variant's count is taken.
const STALL: Duration = Duration::from_secs(10);
/// The longest a variant's capture may take once its containers exited.
const CATCH_UP: Duration = Duration::from_secs(120);

/// One container of a variant.
#[derive(Debug)]
struct Generator {
    id: String,
    run: String,
    max_file: u32,
    variant: Variant,
}

impl Generator {
    fn describe(&self) -> String {
        let rate = match self.variant.rate {
            0 => "full speed".to_owned(),
            rate => format!("{rate}/s"),
        };
        format!("{rate} max-file={}", self.max_file)
    }
}

fn start(ctx: &Ctx, stage: &Stage, variant: Variant, max_file: u32) -> Result<Generator> {
    let run = format!("rot{}m{max_file}", variant.rate);
    let name = format!("{run}-{}", variant.lines);
    let id = stage.loggen(
        ctx,
        &name,
        &[
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            &format!("max-file={max_file}"),
        ],
        &[
            "--tag",
            "rot",
            "--run",
            &run,
            "--lines",
            &(variant.lines / 2).to_string(),
            "--rate",
            &(variant.rate / 2).to_string(),
            "--stream",
            "both",
            // The capturer follows the container before its first line.
            "--delay-secs",
            "2",
        ],
    )?;
    Ok(Generator {
        id,
        run,
        max_file,
        variant,
    })
}

/// Waits for the generators to exit, following the capture meanwhile.
fn wait_exited(ledger: &mut Ledger, generators: &[Generator]) -> Result<()> {
    for generator in generators {
        // `docker wait` blocks until the container exits; the capture is read between.
        docker::cli(&["wait", &generator.id])?;
        ledger.poll()?;
    }
    Ok(())
}

/// Follows the capture until every line of `ids` is in, or it stays still for [`STALL`].
fn catch_up(ledger: &mut Ledger, ids: &[String]) -> Result<()> {
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while started.elapsed() < CATCH_UP && last_progress.elapsed() < STALL {
        if ledger.tally_of(ids).lost == 0 {
            break;
        }
        let mut read = 0;
        wait::pace(Duration::from_millis(500), || {
            read += ledger.poll()?;
            Ok(())
        })?;
        if read > 0 {
            last_progress = Instant::now();
        }
    }
    Ok(())
}

pub(crate) fn rotation(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = Stage::new(ctx, "rotation")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    let skipped_before = capturer
        .scrape()?
        .sum(
            "log_capturer_lines_skipped_total",
            &[("reason", "repeated")],
        )
        .unwrap_or(0.0);
    let (mut lost, mut dup, mut lines) = (0, 0, 0);
    for variant in variants(ctx.ci) {
        let generators = [
            start(ctx, &stage, variant, 1)?,
            start(ctx, &stage, variant, 3)?,
        ];
        wait_exited(&mut ledger, &generators)?;
        for generator in &generators {
            ledger.add_generated_truth(
                &generator.id,
                "rot",
                &generator.run,
                &["out", "err"],
                variant.lines / 2,
            );
        }
        let ids: Vec<String> = generators.iter().map(|g| g.id.clone()).collect();
        catch_up(&mut ledger, &ids)?;
        for generator in &generators {
            let tally = ledger.tally_of(std::slice::from_ref(&generator.id));
            report(outcome, generator, tally.lost, tally.dup);
            lost += tally.lost;
            dup += tally.dup;
            lines += tally.expected;
        }
    }
    let metrics = capturer.scrape()?;
    let repeated = metrics
        .sum(
            "log_capturer_lines_skipped_total",
            &[("reason", "repeated")],
        )
        .unwrap_or(0.0)
        - skipped_before;
    let gaps = metrics
        .sum("log_capturer_stream_gaps_total", &[("reason", "rotated")])
        .unwrap_or(0.0);
    let files_lost = metrics
        .sum("log_capturer_log_files_lost_total", &[])
        .unwrap_or(0.0);
    let recovered = metrics
        .sum("log_capturer_rotation_recovered_lines_total", &[])
        .unwrap_or(0.0);
    stop_and_check(&stage, capturer, &mut ledger, outcome)?;
    outcome.lost = Some(lost);
    outcome.dup = Some(dup);
    outcome.note(format!(
        "{lines} lines written, {} records; copies Docker sent again and the capturer skipped: \
         {repeated}; lines Docker's follower skipped, read back: {recovered}; cursor lines rotated \
         away: {gaps}; log files lost (file mode): {files_lost}",
        ledger.records
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// Records one generator's count: duplicates always fail; a loss fails only where Docker keeps
/// enough to read (2 000 lines/s, `max-file=3`), else it is what Docker itself lost.
fn report(outcome: &mut Outcome, generator: &Generator, lost: u64, dup: u64) {
    let what = generator.describe();
    outcome.note(format!(
        "{what}: {} lines, lost={lost} dup={dup}",
        generator.variant.lines
    ));
    outcome.expect(dup == 0, format!("{what}: {dup} lines duplicated"));
    let docker_keeps_enough = generator.max_file >= 3 && generator.variant.rate == 2_000;
    if lost > 0 {
        if docker_keeps_enough {
            outcome.expect(false, format!("{what}: {lost} lines lost"));
        } else {
            outcome.deviation(format!(
                "{what}: {lost} lines Docker deleted or skipped before they were read"
            ));
        }
    }
}
