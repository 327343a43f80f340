//! Faults of the capturer's own process: SIGKILL, SIGTERM under load, a damaged checkpoint file.

use std::time::{Duration, Instant};

use anyhow::Result;

use test_support::ledger::Ledger;

use super::stage::{Ctx, Generators, Outcome, Stage, kill_all};
use test_support::capturer::Capturer;
use test_support::wait;

/// The longest wait for the capture to hold every line Docker has at the end of a scenario.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// The drain also ends when no record arrived for this long.
pub(crate) const DRAIN_STALL: Duration = Duration::from_secs(30);
/// How long the capturer may take to exit after SIGTERM: its `shutdown_grace` (10 s) plus the
/// time to be scheduled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a restarted capturer may take before new records appear.
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the file grows again after a (re)start, or (when the generators had nothing
/// more to say) every container has a running task again; how long that took.
fn resumed(ledger: &mut Ledger, capturer: &Capturer, containers: usize) -> Result<Duration> {
    let before = ledger.records;
    wait::until(RESUME_TIMEOUT, "new records after a restart", || {
        ledger.poll()?;
        Ok(ledger.records > before || capturer.container_tasks_in("running")? >= containers)
    })
}

/// Kills the generators, takes Docker's truth and waits for the capture to hold it; returns how
/// long that took and whether it is complete.
pub(crate) fn settle(ledger: &mut Ledger, ids: &[String]) -> Result<(Duration, bool)> {
    kill_all(ids);
    ledger.add_truth(ids)?;
    ledger.drain(DRAIN_TIMEOUT, DRAIN_STALL)
}

/// Stops the capturer and fills in lost and dup from the ledger.
pub(crate) fn conclude(
    stage: &Stage,
    capturer: Capturer,
    ledger: &mut Ledger,
    containers: usize,
    outcome: &mut Outcome,
) -> Result<()> {
    stop_and_check(stage, capturer, ledger, outcome)?;
    let tally = ledger.tally();
    outcome.lines(tally.lost, tally.dup);
    outcome.note(format!(
        "{} lines from {containers} containers, {} records, out-of-order {}",
        tally.expected, ledger.records, tally.out_of_order
    ));
    Ok(())
}

/// Stops the capturer (SIGTERM must exit 0), reads the last records and checks the file holds
/// whole records and the capturer never panicked; the lines are for the caller to judge.
pub(crate) fn stop_and_check(
    stage: &Stage,
    capturer: Capturer,
    ledger: &mut Ledger,
    outcome: &mut Outcome,
) -> Result<()> {
    let code = capturer.stop(STOP_TIMEOUT);
    ledger.poll()?;
    outcome.expect(matches!(code, Ok(0)), format!("final SIGTERM: {code:?}"));
    outcome.expect(
        ledger.malformed == 0 && ledger.truncated() == 0,
        format!(
            "{} malformed records, {} torn lines",
            ledger.malformed,
            ledger.truncated()
        ),
    );
    let logs = stage.capturer_logs();
    outcome.expect(!logs.contains("panicked"), "the capturer panicked");
    Ok(())
}

/// Ends a line-counting scenario: [`settle`] then [`conclude`]; returns the drain time.
pub(crate) fn finish(
    stage: &Stage,
    capturer: Capturer,
    ledger: &mut Ledger,
    ids: &[String],
    outcome: &mut Outcome,
) -> Result<Duration> {
    let (drained, complete) = settle(ledger, ids)?;
    outcome.expect(complete, format!("not caught up after {drained:?}"));
    conclude(stage, capturer, ledger, ids.len(), outcome)?;
    Ok(drained)
}

/// `kill-9`: SIGKILL the capturer every interval under load and restart it at once.
pub(crate) fn kill_9(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let (kills, interval) = if ctx.ci {
        (3, Duration::from_secs(10))
    } else {
        (9, Duration::from_secs(20))
    };
    let mut stage = Stage::new(ctx, "kill-9")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let mut capturer = stage.spawn()?;
    let ids = Generators {
        extra: &["--size", "100"],
        ..Generators::forever("load", 4, 1000)
    }
    .run(ctx, &stage)?;
    let mut worst = Duration::ZERO;
    for _ in 0..kills {
        wait::pace(interval, || ledger.poll().map(drop))?;
        capturer.send_signal("KILL")?;
        drop(capturer);
        capturer = stage.spawn()?;
        worst = worst.max(resumed(&mut ledger, &capturer, ids.len())?);
    }
    wait::pace(interval, || ledger.poll().map(drop))?;
    finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    outcome.recovered_in = Some(worst);
    outcome.note(format!(
        "{kills} SIGKILLs every {}s at 8000 lines/s; recovered_in = slowest restart to new records",
        interval.as_secs()
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// Lines per second per generator in `sigterm-under-load` (5 generators: 50 k lines/s).
const SIGTERM_RATE: u64 = 10_000;
const SIGTERM_GENERATORS: usize = 5;
/// How long each generator writes.
const SIGTERM_WRITE: Duration = Duration::from_secs(40);

/// `sigterm-under-load`: SIGTERM at 50 k lines/s; it must exit 0 within its grace; restarted,
/// it loses and doubles nothing.
pub(crate) fn sigterm_under_load(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = Stage::new(ctx, "sigterm-under-load")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    let lines = (SIGTERM_RATE * SIGTERM_WRITE.as_secs()).to_string();
    let rate = SIGTERM_RATE.to_string();
    // Started together, so the SIGTERM falls while all of them write.
    let specs: Vec<Vec<String>> = (0..SIGTERM_GENERATORS)
        .map(|index| {
            let tag = format!("load{index}");
            stage.run_args(
                &format!("load-{index}"),
                &[],
                ctx.loggen,
                &[
                    "--tag",
                    &tag,
                    "--lines",
                    &lines,
                    "--rate",
                    &rate,
                    "--size",
                    "100",
                    "--hold-secs",
                    "-1",
                ],
            )
        })
        .collect();
    let ids = stage.containers.run_many(&specs)?;
    let writing = Instant::now();
    wait::until(Duration::from_secs(30), "the first records", || {
        Ok(ledger.poll()? > 0 || ledger.records > 0)
    })?;
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    let read_before = capturer
        .scrape()?
        .sum("log_capturer_lines_total", &[])
        .unwrap_or(0.0);
    let measured = Instant::now();
    wait::pace(Duration::from_secs(4), || ledger.poll().map(drop))?;
    let read_after = capturer
        .scrape()?
        .sum("log_capturer_lines_total", &[])
        .unwrap_or(0.0);
    let rate_seen = (read_after - read_before) / measured.elapsed().as_secs_f64();
    let stopping = Instant::now();
    let code = capturer.stop(STOP_TIMEOUT);
    let exit_time = stopping.elapsed();
    outcome.expect(
        matches!(code, Ok(0)),
        format!("SIGTERM under load: {code:?}"),
    );
    outcome.expect(
        exit_time <= SHUTDOWN_GRACE + Duration::from_millis(500),
        format!("exit took {exit_time:?}, grace is {SHUTDOWN_GRACE:?}"),
    );
    let capturer = stage.spawn()?;
    let resume = resumed(&mut ledger, &capturer, ids.len())?;
    let remaining = SIGTERM_WRITE.saturating_sub(writing.elapsed()) + Duration::from_secs(2);
    wait::pace(remaining, || ledger.poll().map(drop))?;
    let drained = finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    outcome.recovered_in = Some(resume);
    outcome.note(format!(
        "read {rate_seen:.0} lines/s before SIGTERM; exited {code:?} in {:.2}s; \
         recovered_in = restart to new records; drain {:.1}s after the writers ended",
        exit_time.as_secs_f64(),
        drained.as_secs_f64()
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// Turns a checkpoint file's bytes into damaged ones.
type Damage = fn(&[u8]) -> Vec<u8>;

/// `corrupt-checkpoint`: the cursor file truncated, then garbled, between runs; the capturer
/// starts, warns, follows `read_from` (here `beginning`) for the affected containers, and the
/// file sink's idempotence keeps the output free of duplicates.
pub(crate) fn corrupt_checkpoint(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = Stage::new(ctx, "corrupt-checkpoint")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let checkpoints = stage.config.data_dir.join("checkpoints.json");
    let mut capturer = stage.spawn()?;
    let ids = Generators::forever("gen", 2, 100).run(ctx, &stage)?;
    let damages: [(&str, Damage); 2] = [
        ("truncated to half", |bytes| {
            bytes[..bytes.len() / 2].to_vec()
        }),
        ("garbled", |_| b"\x00\xff{\"version\": garbage ]]".to_vec()),
    ];
    let mut worst = Duration::ZERO;
    for (what, damage) in damages {
        wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
        let code = capturer.stop(STOP_TIMEOUT);
        outcome.expect(matches!(code, Ok(0)), format!("SIGTERM: {code:?}"));
        let original = std::fs::read(&checkpoints).unwrap_or_default();
        outcome.expect(
            !original.is_empty(),
            "no checkpoints.json after a clean stop",
        );
        std::fs::write(&checkpoints, damage(&original))?;
        // Lines written while the capturer is down must be read on the next start.
        wait::pace(Duration::from_secs(2), || ledger.poll().map(drop))?;
        let restarted = Instant::now();
        capturer = stage.spawn()?;
        resumed(&mut ledger, &capturer, ids.len())?;
        worst = worst.max(restarted.elapsed());
        // Only this start's log counts: the earlier ones may hold the previous warning.
        let log = std::fs::read_to_string(stage.last_log()).unwrap_or_default();
        let warning = log
            .lines()
            .find(|line| line.contains("WARN") && line.contains("checkpoint"))
            .map(|line| line.chars().take(240).collect::<String>());
        outcome.expect(warning.is_some(), format!("{what}: no warning logged"));
        let warning = warning.unwrap_or_default();
        outcome.note(format!("{what}: {warning}"));
    }
    wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
    finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    let set_aside = std::fs::read_dir(&stage.config.data_dir)?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with("checkpoints") && name != "checkpoints.json"
        })
        .count();
    outcome.note(format!(
        "{set_aside} damaged file(s) set aside; read_from=beginning re-reads, the file sink skips \
         what it has; recovered_in = restart to new records"
    ));
    outcome.recovered_in = Some(worst);
    outcome.duration = started.elapsed();
    Ok(())
}
